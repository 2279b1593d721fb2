"""Builders for tests and benchmarks only: tiny random-weight MLLMs of the real architectures.

Nothing in the product imports this package (``tests/test_layers.py`` fails if a module does):
its models answer at random and exist so the MLLM code paths run without downloading weights.
"""
