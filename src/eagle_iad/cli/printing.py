"""JSON on standard output, shared by every command that prints a result.

One function so every command's JSON is valid JSON: NaN and infinity (an empty metric, a score of a
degenerate model) become null instead of the ``NaN`` Python's json writes and other parsers refuse.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from typing import Any

import numpy as np


def _finite(value: Any) -> Any:
    """``value`` with every NaN or infinity replaced by None (JSON has neither)."""
    if isinstance(value, float):
        return value if np.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


def dumps(value: Any) -> str:
    """Indented JSON that is always valid JSON: non-finite numbers become null, never ``NaN``."""
    return json.dumps(_finite(value), indent=2, allow_nan=False)


def print_warnings(warnings: Iterable[str], lead: str = "") -> None:
    """A model's warnings on stderr, one line each, the same way after a fit, teach, threshold or rollback, and
    an MLLM's load warnings (:func:`eagle_iad.mllm.base.backend_warnings`) wherever one is loaded; ``lead``: what
    leads each line (a service's ``--log-timestamps`` time)."""
    for warning in warnings:
        print(f"{lead}eagle: warning: {warning}", file=sys.stderr)
