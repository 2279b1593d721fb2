"""One translation of the engine's errors into HTTP answers, for every route of the service.

The engine raises an :class:`~eagle_iad.errors.EagleError` subclass for every problem a user can
fix, with a message that already says what and where. Routes need not catch them one call site at
a time: whatever escapes a route is answered here in the one error shape, with the engine's own
message and a status that says whose problem it is. A failing MLLM backend is the server's upstream
failing, not the client's request (502, as the chat route answers); nothing the engine reports ever
becomes a bare 500 with a trace.
"""

from __future__ import annotations

import errno
import logging
import sqlite3

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from eagle_iad.errors import (
    BackboneUnavailableError,
    BackendError,
    ConfigError,
    DataError,
    EagleError,
    FolderFinishingError,
    FolderInUseError,
    HistoryUnavailableError,
    ImageError,
    ImageTooElongatedError,
    ImageTooLargeError,
    ModelFormatError,
    OutputError,
)
from eagle_iad.mllm.serving import ApiError
from eagle_iad.service.storage import disk_full_error, is_disk_full

_log = logging.getLogger(__name__)

#: ``(error type, HTTP status, error type in the body, error code)``; the first type that matches wins,
#: so subclasses come before their parents. Statuses follow the routes' own refusals of the same kind.
STATUS_BY_ERROR: tuple[tuple[type[EagleError], int, str, str], ...] = (
    (BackendError, 502, "server_error", "backend_error"),  # the MLLM upstream failed
    (BackboneUnavailableError, 503, "server_error", "backbone_unavailable"),  # weights missing on the host
    (HistoryUnavailableError, 503, "server_error", "history_unavailable"),  # the shared history away for now
    (ImageTooElongatedError, 413, "invalid_request_error", "image_too_elongated"),  # a thin strip, not a big one
    (ImageTooLargeError, 413, "invalid_request_error", "too_many_pixels"),
    (ImageError, 400, "invalid_request_error", "invalid_image"),
    (FolderFinishingError, 409, "invalid_request_error", "folder_finishing"),  # free once its last image is done
    (FolderInUseError, 409, "invalid_request_error", "folder_in_use"),  # another station takes its images
    (ConfigError, 400, "invalid_request_error", "invalid_option"),
    (DataError, 422, "invalid_request_error", "invalid_data"),
    (ModelFormatError, 409, "invalid_request_error", "model_invalid"),
    (OutputError, 409, "invalid_request_error", "output_conflict"),
)


#: Errors that pass by themselves, with the ``Retry-After`` (seconds) their answer carries.
RETRY_AFTER_BY_ERROR: tuple[tuple[type[EagleError], str], ...] = ((FolderFinishingError, "2"),)


def api_error(exc: EagleError) -> ApiError:
    """The answer to an engine error: its status and code by type, its message unchanged."""
    for kind, status, type_, code in STATUS_BY_ERROR:
        if isinstance(exc, kind):
            retry = next((after for of, after in RETRY_AFTER_BY_ERROR if isinstance(exc, of)), None)
            headers = None if retry is None else {"Retry-After": retry}
            return ApiError(status, str(exc), type_=type_, code=code, headers=headers)
    return ApiError(400, str(exc), code="invalid_request")


def _unavailable() -> JSONResponse:
    return ApiError(503, "the history database is unreachable; retry shortly", type_="server_error",
                    code="history_unavailable", headers={"Retry-After": "2"}).response()  # fmt: skip


def install(app: FastAPI) -> None:
    """Answer every :class:`EagleError` a route lets escape through :func:`api_error`."""

    @app.exception_handler(EagleError)
    async def _engine_error(_: Request, exc: EagleError) -> JSONResponse:
        if isinstance(exc, OutputError) and exc.__cause__ is not None and is_disk_full(exc.__cause__):
            return disk_full_error().response()  # e.g. a threshold change whose model save found no room
        error = api_error(exc)
        if error.status >= 500:  # the operator needs to know; the client got the message
            _log.warning("%s (answered %d)", exc, error.status)
        return error.response()

    def _refused(request: Request, exc: Exception) -> JSONResponse:
        """503 for a request the history's absence refused; the log says so once per outage, not per request
        (:meth:`~eagle_iad.service.store.InspectionStore.unavailable` counts them for the line when it is back)."""
        state = getattr(request.app.state, "service", None)
        if state is None:
            _log.warning("%s %s: the history database is unreachable (%s)", request.method, request.url.path,
                         " ".join(str(exc).split()))  # fmt: skip
        else:
            state.store.unavailable(str(exc) or type(exc).__name__, f"{request.method} {request.url.path}")
        return _unavailable()

    @app.exception_handler(HistoryUnavailableError)
    async def _history_away(request: Request, exc: HistoryUnavailableError) -> JSONResponse:
        """The shared history cannot be reached now: 503 (clients retry), its server named only in the log."""
        return _refused(request, exc)

    @app.exception_handler(OSError)
    async def _os_error(request: Request, exc: OSError) -> JSONResponse:
        """A full disk is 507 and a name the filesystem cannot hold addresses nothing (404), wherever they
        happen; any other OSError is the server's fault and stays a 500 with its trace in the log."""
        if is_disk_full(exc):
            return disk_full_error().response()
        if exc.errno == errno.ENAMETOOLONG:
            return ApiError(404, "not found: a name in the path is longer than the filesystem allows",
                            code="not_found").response()  # fmt: skip
        _log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        return ApiError(500, "internal error (the server log has the details)", type_="server_error").response()

    @app.exception_handler(sqlite3.OperationalError)
    async def _database_error(request: Request, exc: sqlite3.OperationalError) -> JSONResponse:
        """SQLite reports a full disk as its own error (``SQLITE_FULL``): the same 507 as any write."""
        if is_disk_full(exc):
            return disk_full_error().response()
        _log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        return ApiError(500, "internal error (the server log has the details)", type_="server_error").response()

    try:
        import psycopg
    except ImportError:  # no PostgreSQL history possible: nothing to map
        return

    @app.exception_handler(psycopg.OperationalError)
    async def _history_unreachable(request: Request, exc: psycopg.OperationalError) -> JSONResponse:
        """The shared history's server went away (restarted, network): 503, the next request reconnects."""
        return _refused(request, exc)
