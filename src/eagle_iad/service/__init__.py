"""``eagle serve``: the inspection service (categories, fit jobs, inspections, history, metrics).

``create_app(settings)`` builds the FastAPI app; the CLI only parses options and runs uvicorn.
"""

from eagle_iad.service.app import create_app
from eagle_iad.service.settings import ServiceSettings

__all__ = ["ServiceSettings", "create_app"]
