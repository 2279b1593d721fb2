"""``eagle serve``: the inspection service (categories, fit jobs, inspections, history, metrics).

``create_app(settings)`` builds the FastAPI app; the CLI only parses options and runs uvicorn.
``create_app`` is imported on first use: the settings and their table (:mod:`eagle_iad.service.limits`)
are read by ``eagle serve --help``, which must not load FastAPI and torch to print a help screen.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from eagle_iad.service.settings import ServiceSettings

if TYPE_CHECKING:
    from eagle_iad.service.app import create_app

__all__ = ["ServiceSettings", "create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from eagle_iad.service.app import create_app

        return create_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
