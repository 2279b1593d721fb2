"""The web console's static files, served at ``/`` next to the API.

The console is a Vite build (``web/``) written into this package's ``webui`` folder, so an installed
wheel or an editable checkout serves it without configuration; ``--web DIR`` points elsewhere. The
console routes by URL hash (``/#/history``), so only real files are served here and no path is
guessed: a missing file is a 404 like any other. Strict headers keep a hostile upload's picture or
an injected script from running in the console's origin.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException
from fastapi.responses import HTMLResponse
from starlette.routing import Match, Mount
from starlette.staticfiles import StaticFiles
from starlette.types import Message, Receive, Scope, Send

#: Where ``npm run build`` (``web/``) writes the console.
PACKAGED_CONSOLE = Path(__file__).with_name("webui")

#: The console loads only its own scripts and styles; pictures may be blob: URLs (authorised fetches).
CONSOLE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' blob: data:; style-src 'self' 'unsafe-inline'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}

NOT_BUILT = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>EAGLE-IAD</title></head>
<body><h1>EAGLE-IAD service</h1><p>The web console is not built. Run <code>make web</code> in the repository
(or start <code>eagle serve --web DIR</code> with a built console). The API is at <a href="/docs">/docs</a>,
its OpenAPI document at <a href="/openapi.json">/openapi.json</a>.</p></body></html>"""


def _api_routes(app: object) -> list[Any]:
    """The app's routes, those of included routers one by one (FastAPI 0.16x keeps those lazily)."""
    routes = list(getattr(getattr(app, "router", None), "routes", []))
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:  # older FastAPI lists every route itself
        return [route for route in routes if not isinstance(route, Mount)]
    return [route for route in iter_route_contexts(routes) if hasattr(route, "matches")]


class ConsoleFiles(StaticFiles):
    """Static files with the console's security headers on every answer."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = str(scope.get("path", ""))
        if path == "/v1" or path.startswith("/v1/"):
            # An API path never gets a console file: a route that exists for other methods answers
            # 405 (the router prefers this full-path mount over such a partial match), others 404.
            for route in _api_routes(scope.get("app")):
                if route.matches(scope)[0] == Match.PARTIAL:
                    scope["route"] = route  # /metrics labels the answer by the route's template
                    raise HTTPException(405)
            scope.pop("endpoint", None)  # counted as "unmatched", not as a console file
            raise HTTPException(404)

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [(k.lower().encode(), v.encode()) for k, v in CONSOLE_HEADERS.items()]
                message["headers"] = headers
            await send(message)

        await super().__call__(scope, receive, with_headers)


def mount_console(app: FastAPI, directory: Path | None) -> Path | None:
    """Serve the console from ``directory`` (default: the packaged build) at ``/``; return the folder used.

    Mounted last, so every API route keeps precedence over a file of the same name.
    """
    folder = directory if directory is not None else PACKAGED_CONSOLE
    if (folder / "index.html").is_file():
        app.mount("/", ConsoleFiles(directory=folder, html=True), name="console")
        return folder

    @app.get("/", include_in_schema=False)
    def not_built() -> HTMLResponse:
        return HTMLResponse(NOT_BUILT, headers=CONSOLE_HEADERS)

    return None
