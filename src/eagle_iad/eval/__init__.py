"""Evaluation: image/pixel AUROC, AUPRO, fixed-threshold metrics and the score-histogram figure.

The metrics are implemented with numpy (and scipy for connected components) rather than
scikit-learn so the product has no heavy runtime dependency for evaluation; the tests check them
against scikit-learn and against a slow reference implementation of the MVTec AD PRO definition.
"""
