"""The FastAPI app of ``eagle serve``: routes, auth, body limits, metrics, and the optional MLLM.

``create_app(settings)`` wires the pieces together; the MLLM (``settings.mllm`` or an injected
backend, for tests) is served through ``eagle serve-mllm``'s own app: its ``/v1/chat/completions``
and ``/v1/models`` routes are reused as they are, and its bounded worker queue is shared with
``/v1/inspect`` so both wait in one line that answers 429 when full.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from eagle_iad import __version__
from eagle_iad.choices import RECENT_S
from eagle_iad.expert.model_warnings import FAR_ABOVE_S_MAX, FLAGGED_SHARE
from eagle_iad.history.backend import short_connects
from eagle_iad.mllm.base import Backend, served_model_name
from eagle_iad.mllm.server import create_mllm_app
from eagle_iad.mllm.serving import ApiError
from eagle_iad.registry import load_plugins
from eagle_iad.service import (
    errors,
    routes_access,
    routes_categories,
    routes_inspect,
    routes_teach,
    routes_tuning,
    routes_versions,
    schemas,
)
from eagle_iad.service.access import INSPECTING, METRICS_CONNECT_TIMEOUT_S, VIEWER, Caller, metrics_caller
from eagle_iad.service.console import mount_console
from eagle_iad.service.context import ServiceState, require_key
from eagle_iad.service.settings import ServiceSettings
from eagle_iad.service.store import HEALTH_WAIT_S

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_log = logging.getLogger(__name__)

#: How long ``/healthz`` waits for the key table after the history's own check (:func:`auth_mode`): a
#: busy history was already waited for, so then only a known answer (a key seen before) is given.
_AUTH_WAIT_S = {"ok": HEALTH_WAIT_S, "busy": 0.0}


#: The code of a refusal Starlette makes itself (a multipart body with too many files or fields, too large a
#: part), by status, so it has one as every refusal does (docs/SERVICE.md, "Limits"); any other 4xx:
#: ``invalid_request``.
STARLETTE_CODES = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}


#: Routes answered without the API key when one is set: liveness for load balancers, the API's own
#: description, and the console's files (none of them holds data). tests/test_service_faults.py checks
#: every other route of the app refuses a request without the key.
PUBLIC_PATHS = ("/healthz", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc", "/")


def mib(size: int) -> str:
    """Bytes in MiB as a person reads them ("32 MiB", "81.3 MiB"): a limit of 33554432 bytes says nothing
    at a glance, and the console's own check of a file's size words it the same way."""
    text = f"{size / (1024 * 1024):.1f}".removesuffix(".0")
    return f"{text} MiB"


def _declared_length(scope: Scope) -> int | None:
    """The request's ``Content-Length``, when it sent a usable one."""
    for key, value in scope.get("headers", []):
        if key == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def auth_mode(state: ServiceState, wait_s: float | None = None) -> str | None:
    """How callers are told apart (:mod:`eagle_iad.service.access`), for the console's key screen to word its
    request right: ``keys`` (named keys, ``eagle keys add``; an ``EAGLE_API_KEY`` may be set too), ``api_key``
    (the single ``EAGLE_API_KEY`` only) or ``open`` (no key at all). It says which kind of key to ask for,
    never a key or a name: what a caller without a key learns anyway from the first 401.

    ``wait_s``: wait at most so long for the history (which holds the key table), ``None`` (not known) when
    it stays busy longer or fails: ``/healthz`` must answer within its own bound whatever holds the history.
    """
    try:
        if state.keys.any_ever(wait_s=wait_s):
            return "keys"
    except Exception as exc:  # busy or gone since health() looked: not known, and /healthz must not fail
        _log.debug("healthz: the key table could not be read (%s)", exc)
        return None
    return "api_key" if state.settings.api_key is not None else "open"


class BodyLimit:
    """Refuse (413) request bodies over ``limit`` bytes before any route parses them.

    The body is read here (at most ``limit`` bytes kept) and replayed to the app, so multipart
    parsing never sees more than the limit, whatever Content-Length claims or chunking hides.
    An oversized body is drained, not stored, so the client reliably receives the 413.
    """

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        too_large = False
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body = message.get("body", b"")
            size += len(body)
            if size > self.limit:
                too_large = True
                chunks.clear()
                if size > 4 * self.limit:
                    break  # stop draining a flood; the connection is closed after the answer
            elif body:
                chunks.append(body)
            more = bool(message.get("more_body", False))
        if too_large:
            declared = _declared_length(scope)
            known = size if more is False else declared  # drained to the end, or stopped early: what it claimed
            of = f" of {mib(known)}" if known is not None and known > self.limit else ""
            too_big = ApiError(
                413, f"request body{of} exceeds the limit of {mib(self.limit)}", code="payload_too_large"
            )
            await too_big.response()(scope, receive, send)
            return
        replayed = False
        data = b"".join(chunks)

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": data, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


class RequestMetrics:
    """Count requests and their latency per route *template* (bounded label set)."""

    def __init__(self, app: ASGIApp, state: ServiceState) -> None:
        self.app = app
        self.state = state

    @staticmethod
    def _route(scope: Scope) -> str:
        """The template of the route that answered (the router leaves it in the scope), e.g. ``/v1/jobs/{job_id}``."""
        path = getattr(scope.get("route"), "path", None)
        if isinstance(path, str):
            return path
        return "console" if scope.get("endpoint") is not None else "unmatched"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = [500]

        async def watch(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            route = self._route(scope)
            self.state.metrics.observe_request(scope["method"], route, status[0], time.perf_counter() - start)
            self.state.storage.answered(scope["method"], route, status[0])  # a 507 from wherever it came


class AuditWrites:
    """Write each successful change to the audit log (:mod:`eagle_iad.service.audit`): every request that is
    not a read, whose route is audited and that answered below 400, with the caller the route identified."""

    def __init__(self, app: ASGIApp, state: ServiceState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return

        async def record_then_send(message: Message) -> None:
            if message["type"] == "http.response.start" and int(message["status"]) < 400:
                known = scope.get("state", {})
                who = known.get("caller")
                if isinstance(who, Caller) and known.get("audited"):
                    route = str(getattr(scope.get("route"), "path", scope["path"]))
                    when = datetime.now(UTC).isoformat(timespec="milliseconds")
                    await run_in_threadpool(self.state.audit.write, when, who, scope["method"], route, scope["path"],
                                            int(message["status"]), known.get("audit_detail"),
                                            known.get("audit_category"))  # fmt: skip
            await send(message)

        await self.app(scope, receive, record_then_send)


def _load_backend(spec: str) -> Backend:
    from eagle_iad.mllm import load_backend

    return load_backend(spec)


#: A part added to the service by a layer above it (the stations' routes): given the app and its state
#: before the console is mounted, it adds routes and start/stop hooks (``state.on_start``, ``on_close``).
Extension = Callable[[FastAPI, ServiceState], None]


def create_app(
    settings: ServiceSettings, backend: Backend | None = None, extensions: Sequence[Extension] = ()
) -> FastAPI:
    """The service app; ``backend`` overrides ``settings.mllm`` (tests inject fakes this way)."""
    load_plugins()  # EAGLE_PLUGINS: a plugin's threshold rule is a fit option of this service too
    routes_categories.FIT_BODY.clear()
    routes_categories.FIT_BODY.update(routes_categories.fit_body())
    if backend is None and settings.mllm:
        backend = _load_backend(settings.mllm)
    state = ServiceState(settings, backend)
    mllm_app: FastAPI | None = None
    if backend is not None:
        name = served_model_name(settings.mllm) if settings.mllm else backend.name
        # No key of its own: its routes are added below behind this service's keys and roles.
        mllm_app = create_mllm_app(backend, model_name=name, queue_size=settings.mllm_queue,
                                   max_body_bytes=settings.max_upload_bytes, api_key=None)  # fmt: skip
        state.attach_worker(mllm_app.state.worker)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if state.worker is not None:
            state.worker.start()
        for start in state.on_start:
            await run_in_threadpool(start)
        try:
            yield
        finally:
            if state.worker is not None:
                await run_in_threadpool(state.worker.stop)
            state.close()

    app = FastAPI(
        title="EAGLE-IAD service",
        version=__version__,
        description="Fit PatchCore experts, inspect images (expert or full EAGLE verdicts), browse history, "
        "evaluation runs and metrics. With keys (eagle keys add, or EAGLE_API_KEY) every /v1 route needs one, "
        "and each route needs a role: viewer, operator, engineer or admin.",
        lifespan=lifespan,
    )
    app.state.service = state
    app.include_router(routes_categories.router)
    app.include_router(routes_teach.router)
    app.include_router(routes_versions.router)
    app.include_router(routes_inspect.router)
    app.include_router(routes_tuning.router)
    app.include_router(routes_access.router)
    if mllm_app is not None:
        # serve-mllm's own routes, each behind a role like every /v1 route (chat is inference: an operator's).
        for route in mllm_app.router.routes:
            path = getattr(route, "path", None)
            if isinstance(route, APIRoute) and path in ("/v1/chat/completions", "/v1/models"):
                role = INSPECTING if path == "/v1/chat/completions" else VIEWER
                app.add_api_route(path, route.endpoint, methods=sorted(route.methods or ()),
                                  dependencies=[Depends(require_key), *role])  # fmt: skip

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return exc.response()

    errors.install(app)  # the engine's own errors, with its message: 400/409/413/422, 502/503 upstream

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:5])
        return ApiError(400, f"invalid request: {problems}", code="invalid_request").response()

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        # Starlette's own refusals (e.g. too many files in one multipart body) in the one error shape.
        code = STARLETTE_CODES.get(exc.status_code, "invalid_request" if exc.status_code < 500 else None)
        return ApiError(exc.status_code, str(exc.detail), code=code, headers=dict(exc.headers or {})).response()

    @app.exception_handler(Exception)
    async def _internal(_: Request, exc: Exception) -> JSONResponse:
        # A bug: the traceback goes to the server log; the client gets the one error shape, no details.
        return ApiError(500, "internal error (the server log has the details)", type_="server_error").response()

    @app.exception_handler(404)
    async def _not_found(request: Request, _: Exception) -> JSONResponse:
        return ApiError(404, f"no route {request.url.path}", code="not_found").response()

    @app.exception_handler(405)
    async def _not_allowed(request: Request, _: Exception) -> JSONResponse:
        return ApiError(405, f"method {request.method} not allowed on {request.url.path}",
                        code="method_not_allowed").response()  # fmt: skip

    def queue_depth() -> float:
        return float(state.worker.waiting if state.worker is not None else 0)

    state.metrics.gauge("eagle_mllm_queue_depth", "MLLM requests waiting for the model.", queue_depth)

    def history_caas_rate() -> float:
        total, caas = state.store.caas_counts()
        return caas / total if total else 0.0

    state.metrics.gauge("eagle_history_caas_rate", "Share of all stored inspections (survives restarts) with CAAS "
                        "applied.", history_caas_rate, needs_history=True)  # fmt: skip
    state.metrics.gauge("eagle_inspections_in_progress", "Inspections being answered (limit: --max-inspections).",
                        lambda: float(state.inspections_in_progress))  # fmt: skip
    state.metrics.gauge("eagle_fit_jobs_pending", "Fit jobs queued or running.", lambda: float(state.jobs.pending))
    state.metrics.text(state.storage.metrics_lines)

    def history_up() -> tuple[float, bool]:
        """1 while the history answers a ``SELECT 1`` (busy behind another query: as it last was), else 0; and
        whether the readers that need the history are tried. Busy (a long query, an export or a prune holding the
        connection) is not down: they are tried then too, waiting for the connection as any request does, so the
        station gauges and the CAAS rate do not drop out of the scrape, breaking ``absent()`` alerts and ``for:``
        windows; only a history found unreachable leaves them out (each would wait for a connection attempt)."""
        health = state.store.health(seen_by="/metrics")
        if health == "busy":
            return float(state.store.available), state.store.available
        return float(health == "ok"), health == "ok"

    state.metrics.history("eagle_history_up", "1 while the history database answers, 0 while it is unavailable.",
                          history_up)  # fmt: skip

    @app.get("/healthz", response_model=schemas.Health,
             responses={503: {"model": schemas.Health, "description": "the history is unavailable, or writes are "
                                                       "refused for lack of disk space"}})  # fmt: skip
    def healthz() -> Any:
        """Liveness, whether the history answers and whether writes find room: 503 ``degraded`` while the history
        does not answer (a PostgreSQL outage) or writes are refused for lack of disk space (507), so a load
        balancer stops sending work this replica can only refuse."""
        history = state.store.health()
        storage = state.storage.health()
        health = {"status": "ok", "version": __version__, "mllm": state.backend is not None,
                  "mllm_queue_waiting": int(queue_depth()), "fit_jobs_pending": state.jobs.pending,
                  "history": history, "storage": storage,
                  "auth": auth_mode(state, wait_s=_AUTH_WAIT_S[history]) if history in _AUTH_WAIT_S else None,
                  "max_upload_bytes": state.settings.max_upload_bytes,
                  "far_above_s_max": FAR_ABOVE_S_MAX, "recent_s": RECENT_S, "flagged_share": FLAGGED_SHARE}  # fmt: skip
        if history.startswith("unavailable") or storage != "ok":
            return JSONResponse({**health, "status": "degraded"}, status_code=503)
        return health

    # Behind the key like every /v1 route: request counts and latencies describe the traffic. Only /healthz,
    # the OpenAPI document and docs, and the console's static files are open (PUBLIC_PATHS).
    # During a history outage (the key table unreadable), a caller identified lately is still answered: the
    # scrape that must see eagle_history_up 0 (access.MetricsCallers).
    @app.get("/metrics", response_class=PlainTextResponse, dependencies=[Depends(metrics_caller), *VIEWER])
    def metrics() -> PlainTextResponse:
        with short_connects(METRICS_CONNECT_TIMEOUT_S):
            text = state.metrics.render()
        return PlainTextResponse(text, media_type="text/plain; version=0.0.4")

    base_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        """FastAPI's document plus the shapes only non-JSON answers use (the SSE ``JobEvent``) and the fit
        options the fit route parses by hand (``FitOptions``, from the fit options table)."""
        if app.openapi_schema is None:
            document = base_openapi()
            document["components"]["schemas"]["JobEvent"] = schemas.JobEvent.model_json_schema()
            document["components"]["schemas"]["InspectionEvent"] = schemas.InspectionEvent.model_json_schema()
            document["components"]["schemas"]["FitOptions"] = routes_categories.fit_options_schema()
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    for extend in extensions:
        extend(app, state)
    mount_console(app, settings.web_dir)
    app.add_middleware(BodyLimit, limit=settings.max_upload_bytes)
    app.add_middleware(RequestMetrics, state=state)
    app.add_middleware(AuditWrites, state=state)
    return app
