"""A numeric option's allowed interval, declared once beside the option and read everywhere.

Why a type and not ``if value < 0`` checks where each option is used: the same bound must hold in
the CLI (refused at parse time, exit 2), the service (400), the Python API
(:meth:`eagle_iad.expert.ExpertConfig.validate`), the OpenAPI schema (``minimum`` /
``exclusiveMinimum``, hence the TypeScript client and the console's form) and the help text. A
range written once cannot drift between them. Torch-free: the help screens read it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from eagle_iad.errors import ConfigError


def short_repr(value: Any, limit: int = 40) -> str:
    """``repr(value)``, cut when long: an error message names a hostile 400-digit number, it does not echo it."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:20]}... ({len(text)} characters)"


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e15 else repr(float(value))


@dataclass(frozen=True)
class Range:
    """``low <= x <= high`` (``low_open``/``high_open``: strict); ``None`` means unbounded on that side."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def __str__(self) -> str:
        if self.low is not None and self.high is not None:
            left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
            return f"{left}{_number(self.low)}, {_number(self.high)}{right}"
        if self.low is not None:
            return f"{'>' if self.low_open else '>='} {_number(self.low)}"
        if self.high is not None:
            return f"{'<' if self.high_open else '<='} {_number(self.high)}"
        return "any finite number"

    def contains(self, value: float) -> bool:
        """Compared exactly: an int of any size is compared as an int (``float(10**400)`` overflows)."""
        if isinstance(value, float) and not math.isfinite(value):
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return not (self.high is not None and (value >= self.high if self.high_open else value > self.high))

    def check(self, name: str, value: Any) -> None:
        """:class:`ConfigError` naming ``name``, its range and the value when ``value`` is outside it."""
        if isinstance(value, bool) or not isinstance(value, int | float) or not self.contains(value):
            shown = "in " + str(self) if self.low is not None and self.high is not None else str(self)
            raise ConfigError(f"{name} must be {shown}, got {short_repr(value)}")

    def schema(self) -> dict[str, float]:
        """JSON Schema keywords for the bound (OpenAPI 3.1 style: ``exclusiveMinimum`` is a number)."""
        entry: dict[str, float] = {}
        if self.low is not None:
            entry["exclusiveMinimum" if self.low_open else "minimum"] = self.low
        if self.high is not None:
            entry["exclusiveMaximum" if self.high_open else "maximum"] = self.high
        return entry
