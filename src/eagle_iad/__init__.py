"""EAGLE-IAD: a PatchCore expert and threshold-guided prompting for frozen multimodal LLMs."""

__version__ = "0.1.0"
