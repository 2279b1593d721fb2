"""``/v1/stations``: stations created, listed, paused, resumed, triggered, retried and deleted through the service.

A station created here is the same thing a stations file declares (its body is a ``[[station]]`` table
as JSON, with ``sinks`` for the file's ``[[station.sink]]``) and is kept in the history file, so
``eagle serve`` starts it again after a restart, paused or not as it was left. Path options (a hot
folder, a folder sink) must lie inside the service's ``--data-root``: an API key must not be enough to
make the server read or write anywhere else. ``install`` is what ``eagle serve`` adds to the app
(``create_app(..., extensions=[install])``): the routes, the start and stop of the stations with the
service, and their figures in ``/metrics``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import fields, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit, urlunsplit

from fastapi import APIRouter, Body, Depends, FastAPI, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from eagle_iad.mllm.serving import ApiError
from eagle_iad.record import iso_time
from eagle_iad.service import schemas
from eagle_iad.service.access import API_NAME, ENGINEER, OPERATOR, VIEWER, Role, audit_detail, caller
from eagle_iad.service.context import ServiceState, require_key
from eagle_iad.service.metrics import label
from eagle_iad.station.config import (
    DEFAULT_DUPLICATES,
    DUPLICATES,
    StationConfig,
    same_source,
    station_from_table,
    two_on_one_source,
)
from eagle_iad.station.fleet import NOT_SEEN_AFTER_S, PublishedRun, forget_run, hide_roots, published
from eagle_iad.station.outbox import StationTables
from eagle_iad.station.ownership import StationOwnership, forget_owed_quietly
from eagle_iad.station.part_options import schema_extra, sink_kinds, source_kinds
from eagle_iad.station.parts import Options
from eagle_iad.station.runner import Running, StationBusyError, StationManager
from eagle_iad.station.status import (
    StationFacts,
    deliveries,
    open_read_only,
    service_retry,
    station_figures,
    station_status,
)

LOG = logging.getLogger("eagle_iad.station")


#: What makes a served station's line a warning: ``warning:``, a dead letter, an image not inspected, the intake
#: paused, and a camera's: its PLC trigger away or parts that had no frame (the line goes on without pictures of
#: them), the camera itself not opened.
WARNING_MARKS = (": warning: ", " gave up on record ", ": not inspected: ", ": intake paused: ", ": not connected: ",
                 " had no frame of its own", " had no frame of their own", ": cannot be opened")  # fmt: skip


def station_log(line: str) -> None:
    """A served station's line at its level: a warning (:data:`WARNING_MARKS`: something an administrator must act
    on, or the line took no image meanwhile) as one, so ``--log-level warning`` keeps those and drops the start-up and
    recovery lines."""
    (LOG.warning if any(mark in line for mark in WARNING_MARKS) else LOG.info)(line)


router = APIRouter(prefix="/v1", dependencies=[Depends(require_key)], responses=schemas.ERROR_RESPONSES,
                   tags=["stations"])  # fmt: skip


class StationBody(BaseModel):
    """A station to create: a ``[[station]]`` table of a stations file, as JSON (docs/STATIONS.md)."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(description="1-64 letters, digits, '_', '.', '-'")
    category: str = Field(description="the fitted category that scores the station's images")
    backlog_limit: int | None = Field(None, description="warn when more images wait (default 1000)")
    deadline_s: float | None = Field(None, description="warn when the p95 latency is over this (default 10)")
    # its choices and default from the one declaration a stations file reads too (checked there, as the file's)
    duplicates: str | None = Field(
        None,
        description="a file whose content the station already inspected: refuse tells the sinks it as a refusal "
        f"naming the earlier record, skip sends nothing; one of {', '.join(DUPLICATES)} (default {DEFAULT_DUPLICATES})",
        # x-default: the default a body without it gets (the field's own None keeps PATCH's "unchanged"); the
        # console's form reads choices and default from here (clients/ts/src/generated/station-options.ts)
        json_schema_extra={"enum": [*DUPLICATES, None], "x-default": DEFAULT_DUPLICATES},
    )
    # x-kinds: each built-in kind's options, ranges and defaults (station/part_options.py, pinned to what the parts
    # read by tests/test_station_part_options.py): the console's create form reads them (STATION_SOURCES, STATION_SINKS)
    source: dict[str, Any] = Field(
        description="the source's table: kind and its options (docs/STATIONS.md)",
        json_schema_extra=schema_extra(source_kinds()),
    )
    sinks: list[dict[str, Any]] = Field(
        default_factory=list,
        description="one table per sink: kind and its options",
        json_schema_extra=schema_extra(sink_kinds()),
    )


class SinkInfo(BaseModel):
    kind: str
    pending: int
    delivered: int
    dead_letters: int
    last_error: str | None
    oldest_pending_s: float | None = Field(
        None, description="seconds the oldest delivery this sink still owes has waited since it was stored (null: none)"
    )


class RecentLatency(BaseModel):
    """The p95 latency of the images whose deliveries ended lately, as the deadline warning judges it."""

    p95: float = Field(description="seconds: file seen -> every sink delivered")
    images: int = Field(description="how many images it is over")
    window_s: float = Field(description="how far back it looks (300: the last 5 minutes)")


class RunBy(BaseModel):
    """Who runs a station of a stations file (``eagle station run``), as its heartbeat in the history says."""

    host: str = Field(description="the machine that runs it")
    pid: int = Field(description="the process id of eagle station run there")
    file: str = Field(
        description="the stations file it runs, a path on that machine (its name only, for a viewer or operator)"
    )
    started: str = Field(description="when that process started (UTC, ISO 8601)")
    heartbeat: str = Field(description="its last heartbeat (UTC, ISO 8601, on the history database's clock)")
    heartbeat_age_s: float = Field(description="seconds since that heartbeat, on the history database's clock")
    every_s: float = Field(description="seconds between its heartbeats")
    not_seen_after_s: float = Field(description="after this long without a heartbeat it is shown as not seen")
    silent: bool = Field(description="no heartbeat for longer than not_seen_after_s and not stopped: not seen")
    stopped: str | None = Field(description="when its command stopped it cleanly (null: it did not)")


class StationInfo(BaseModel):
    """A station's configuration summary and figures (the JSON ``eagle station status`` prints, and its state)."""

    station: str
    category: str
    state: str = Field(
        description="running, paused, waiting: <why> (intake paused by a fault, or the source cannot take images: a "
        "camera's PLC trigger away), error: <what>; for one run by eagle "
        "station run also stopped: <when> and not seen since <time> (no heartbeat for longer than run_by's limit)"
    )
    created_by: str = Field(
        description="who created it: the name of the API key (kept in the history, restarted "
        "with the service; api where the service has no keys), or file (a stations file)"
    )
    source: str
    inspected: int
    failed: int
    backlog: int
    images_per_s: float
    latency_s: dict[str, float] | None = Field(
        description="p50, p95, p99 seconds: file seen -> every sink delivered, over the last latency_images images"
    )
    latency_images: int = Field(
        description="how many images latency_s is over: the last 1,000 whose deliveries all ended, or fewer"
    )
    latency_recent_s: RecentLatency | None = Field(
        description="the p95 of the images delivered in the last window_s (null: none): what the warning "
        "of a p95 over the deadline is of",
    )  # fmt: skip
    last_verdict: dict[str, Any] | None
    sinks: dict[str, SinkInfo]
    duplicates: int | None = Field(
        description="files of a content already inspected, put away with no new verdict, since the station "
        "started (null: not running here); warned of while any came in the last 5 minutes",
    )  # fmt: skip
    ignored: int | None = Field(
        description="files the source found it does not take (another suffix, a subfolder, a hidden image), "
        "since the station started (null: not running here); warned of while any was found in the last 5 minutes",
    )  # fmt: skip
    replaced: int | None = Field(
        None,
        description="files replaced under their name by another file before the station took them (each lost, "
        "never inspected), since the station started (null: not running here); warned of while any was in the "
        "last 5 minutes",
    )  # fmt: skip
    warnings: list[str]
    spec: dict[str, Any] | None = Field(description="the body it was created with (null: from a stations file)")
    run_by: RunBy | None = Field(
        None,
        description="a station of a stations file that eagle station run runs (not this service): who runs it and "
        "its heartbeat; read-only through the API (null: the service's own)",
    )


class PauseBody(BaseModel):
    """``POST /v1/stations/{name}/pause`` and ``/resume``: an optional body saying why, for the audit log."""

    model_config = ConfigDict(extra="forbid", strict=True)
    why: schemas.PlainText | None = Field(
        None, max_length=500, description="why (a jam, a changeover): in the audit row"
    )


class Requeued(BaseModel):
    requeued: int = Field(description="dead letters put back in their sinks' queues")


def _manager(request: Request) -> StationManager:
    manager: StationManager = request.app.state.stations
    return manager


def _state(request: Request) -> ServiceState:
    state: ServiceState = request.app.state.service
    return state


def config_from_body(state: ServiceState, body: dict[str, Any]) -> Any:
    """The checked station of an API body; its path options must lie inside the data root."""
    root = state.settings.data_root
    table = {key: value for key, value in body.items() if key != "sinks" and value is not None}
    table["sink"] = list(body.get("sinks") or [])
    no_paths = None if root is not None else "this service has no --data-root, so stations cannot use server folders"
    options = Options(table, "station", root or Path.cwd(), root, no_paths)
    settings = state.settings
    return station_from_table(options, settings.models_dir, kept={"state": settings.state_dir,
                                                                   "files": settings.files_dir})  # fmt: skip


#: A URL in a spec, a source's description or a delivery error (``https://…``, ``rtsp://…``, ``opc.tcp://…``).
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")


def shown_url(url: str) -> str:
    """``url`` as a viewer may see it: its password ``***`` and its query and fragment ``…`` (a webhook's
    ``?sig=``, a camera's ``?token=``): a viewer key must not be enough to read a line's credentials."""
    try:
        parts = urlsplit(url)
        password, host, port = parts.password, parts.hostname or "", parts.port
    except ValueError:  # not a URL after all (a port out of range): keep only its scheme and host part
        scheme, _, rest = url.partition("://")
        return f"{scheme}://{rest.split('@')[-1].split('/')[0].split('?')[0]}/…"
    netloc = parts.netloc
    if password is not None:
        host = f"[{host}]" if ":" in host else host
        netloc = f"{parts.username}:***@{host}" + (f":{port}" if port is not None else "")
    return urlunsplit(parts._replace(netloc=netloc, query="…" if parts.query else "",
                                     fragment="…" if parts.fragment else ""))  # fmt: skip


def _shown_match(match: re.Match[str]) -> str:
    url = match.group(0)
    kept = url.rstrip(".,;:)")  # the punctuation of the sentence the URL ends ("HTTP 500 from <url>: ...")
    return shown_url(kept) + url[len(kept) :]


def _public(state: ServiceState, value: Any) -> Any:
    """``value`` (a station's answer) with every URL shown by :func:`shown_url` and every host path under the
    data root (or the state or models folder) relative to it, as the rest of the API shows paths."""
    if isinstance(value, dict):
        return {key: _public(state, item) for key, item in value.items()}
    if isinstance(value, list):
        return [_public(state, item) for item in value]
    if not isinstance(value, str):
        return value
    settings = state.settings
    return hide_roots(_URL.sub(_shown_match, value), (settings.data_root, settings.state_dir, settings.models_dir))


def _public_info(state: ServiceState, info: dict[str, Any]) -> dict[str, Any]:
    return {key: _public(state, value) for key, value in info.items()}


class _Rows:
    """A query's rows, read whole, as a cursor answers them."""

    def __init__(self, rows: list[tuple[Any, ...]]) -> None:
        self._rows = rows
        self.rowcount = len(rows)

    def fetchone(self) -> Any:
        return self._rows[0] if self._rows else None

    def fetchall(self) -> list[Any]:
        return list(self._rows)


class _StoreReader:
    """The service's own history connection as a reader of station figures (a shared history).

    Why not a connection of its own per station: a listing opened one per station it showed, each through a
    backend that had never connected, so with the database away it read as a wrong URL (400 with the server's
    name and error) instead of the 503 ``history_unavailable`` every other route gives; and every console
    poll cost the database as many connections as there are stations."""

    def __init__(self, state: ServiceState) -> None:
        self._store = state.store

    def execute(self, sql: str, params: Sequence[Any] = ()) -> _Rows:
        return _Rows(self._store.read(sql, params))

    def close(self) -> None:
        """Nothing to close: the connection is the service's."""


def _reader(state: ServiceState) -> Any:
    """Where station figures are read: the service's connection to a shared history, or SQLite read-only."""
    return _StoreReader(state) if state.store.shared else open_read_only(state.settings.history_url)


def _info(state: ServiceState, running: Running) -> dict[str, Any]:
    db = _reader(state)
    try:
        figures = station_status(db, running.runner.config, running.runner.intake(), service_retry(running.name))
    finally:
        db.close()
    created_by = "file" if running.spec is None else _creator(state, running.name)
    return _public_info(state, {**figures, "state": running.state(), "created_by": created_by, "spec": running.spec})


def _creator(state: ServiceState, name: str) -> str:
    """Who created kept station ``name``: its API key's name, as the audit log names it, or ``api`` where that is
    not known (the service has no keys, or it was created before the name was kept)."""
    return StationTables(state.store).creator(name) or API_NAME


def _ownership(request: Request) -> StationOwnership:
    ownership: StationOwnership = request.app.state.station_ownership
    return ownership


def _elsewhere(request: Request, name: str) -> tuple[dict[str, Any], bool] | None:
    """``(spec, paused)`` of a station the table keeps and this replica does not run (None: not such): another
    replica sharing the history runs it, or it was not started (a newer check refuses its spec, a folder gone;
    see :attr:`StationOwnership.not_started`), and is still there to be fixed, paused or deleted."""
    if _manager(request).get(name) is not None:
        return None
    for found, spec, paused in StationTables(_state(request).store).specs():
        if found == name:
            return spec, paused
    return None


def _get(request: Request, name: str) -> Running:
    running = _manager(request).get(name)
    if running is None:
        if _elsewhere(request, name) is not None:
            why = _ownership(request).why_not_started(name)
            if why is not None or not _state(request).store.shared:
                raise ApiError(409, f"station {name!r} was not started: {why or 'not yet'}",
                               code="station_not_started")  # fmt: skip
            raise ApiError(409, f"station {name!r} runs on another replica sharing this history; only that one can "
                           "do this", code="station_elsewhere")  # fmt: skip
        if (run := _run_elsewhere(request, name)) is not None:
            _refuse_run_by_file(request, run)
        raise ApiError(404, f"no station {name!r}", code="station_not_found")
    return running


def _remote_info(
    state: ServiceState, name: str, spec: dict[str, Any], paused: bool, not_started: str | None = None
) -> dict[str, Any]:  # fmt: skip
    """A station another replica runs, as this one sees it: its figures from the shared tables (all but its
    backlog, which only its replica sees), its state as the shared table says; or one kept but not started
    (``not_started``: why, and what fixes it), its state ``error: not started: <why>``."""
    source = spec.get("source") or {}
    where = next((str(source[key]) for key in ("path", "url", "device") if source.get(key) is not None), "")
    defaults = {f.name: f.default for f in fields(StationConfig)}
    sinks = [(str(sink.get("name") or sink.get("kind")), str(sink.get("kind"))) for sink in spec.get("sinks", [])]
    runs = not_started is None and state.store.shared  # else it runs nowhere: no replica's backlog to point to
    facts = StationFacts(
        name, str(spec.get("category")), f"{source.get('kind')} {where}{' (on another replica)' if runs else ''}"
        .replace("  ", " ").strip(), None, sinks, int(spec.get("backlog_limit", defaults["backlog_limit"])),
        float(spec.get("deadline_s", defaults["deadline_s"])), retry=service_retry(name), runs=runs,
    )  # fmt: skip
    db = _reader(state)
    try:
        figures = station_figures(db, facts)
    finally:
        db.close()
    if not runs:
        shown = f"error: not started: {not_started or 'not yet'}"
    else:
        shown = "paused" if paused else "running: on another replica"
    return _public_info(state, {**figures, "state": shown, "created_by": _creator(state, name), "spec": spec})


def _kept_info(
    request: Request, name: str, spec: dict[str, Any], paused: bool, faults: dict[str, str] | None = None
) -> dict[str, Any]:  # fmt: skip
    """:func:`_remote_info` of a kept station this replica does not run, with why if it was not started (by this
    replica, or by the last one that tried: a station whose lock nobody runs is not "on another replica")."""
    return _remote_info(_state(request), name, spec, paused, _ownership(request).why_not_started(name, faults))


def _remote_specs(request: Request) -> list[tuple[str, dict[str, Any], bool]]:
    """The table's stations this replica does not run: another replica's, or kept but not started."""
    state, manager = _state(request), _manager(request)
    return [row for row in StationTables(state.store).specs() if manager.get(row[0]) is None]


@router.get("/stations", dependencies=VIEWER, response_model=list[StationInfo])
def list_stations(request: Request) -> list[dict[str, Any]]:
    state = _state(request)
    here = [_info(state, running) for running in _manager(request).all()]
    remote = _remote_specs(request)
    faults = StationTables(state.store).faults() if remote else {}
    listed = here + [_kept_info(request, *row, faults=faults) for row in remote]
    names = {info["station"] for info in listed}
    whole = _sees_paths(request)
    return listed + [_run_info(state, run, whole) for run in published(state.store) if run.name not in names]


#: A station's figures a damaged ``station_runs`` row may lack, so the listing still answers (with what it has).
_NO_FIGURES: dict[str, Any] = {
    "category": "", "source": "", "inspected": 0, "failed": 0, "backlog": 0, "images_per_s": 0.0, "latency_s": None,
    "latency_images": 0, "latency_recent_s": None, "last_verdict": None, "sinks": {}, "duplicates": None,
    "ignored": None, "warnings": [],
}  # fmt: skip


def _sees_paths(request: Request) -> bool:
    """Whether the caller is shown where a stations file lies on the machine that runs it (engineer and above:
    those who go there to change it); a viewer or operator is shown its name only, as the service's own stations'
    folders are shown relative to the data root."""
    return caller(request).role >= Role.engineer


def _run_info(state: ServiceState, run: PublishedRun, whole: bool) -> dict[str, Any]:
    """A station ``eagle station run`` runs, as its last heartbeat said, its state judged by its age here;
    ``whole``: with its stations file's path on that machine (else its name only, in ``run_by`` and the words)."""
    if not whole:
        run = replace(run, file=Path(run.file).name)
    figures = {**_NO_FIGURES, **run.figures}
    warning = run.warning()
    warnings = [warning, *figures["warnings"]] if warning is not None else list(figures["warnings"])
    run_by = {
        "host": run.host, "pid": run.pid, "file": run.file, "started": iso_time(run.started),
        "heartbeat": iso_time(run.beat), "heartbeat_age_s": round(max(0.0, run.age), 3), "every_s": run.every_s,
        "not_seen_after_s": NOT_SEEN_AFTER_S, "silent": run.silent,
        "stopped": None if run.stopped is None else iso_time(run.stopped),
    }  # fmt: skip
    shown = {**figures, "station": run.name, "warnings": warnings, "state": run.state(), "created_by": "file",
             "spec": None}  # fmt: skip
    return {**_public_info(state, shown), "run_by": run_by}


def _run_elsewhere(request: Request, name: str) -> PublishedRun | None:
    """The row of ``name`` in ``station_runs`` when neither this replica runs it nor the table keeps it."""
    if _manager(request).get(name) is not None:
        return None
    found = published(_state(request).store, name)
    return found[0] if found else None


def _action(request: Request) -> str:
    """What a refused request asked, in the words of :meth:`PublishedRun.refusal`."""
    path = request.url.path.rstrip("/")
    if request.method == "PATCH":
        return "change"
    if request.method == "DELETE":
        return "delete"
    return next((word for word in ("retry", "trigger", "pause") if path.endswith(f"/{word}")), "pause")


def _refuse_run_by_file(request: Request, run: PublishedRun) -> None:
    """409 ``station_run_by_file``: the station is run by ``eagle station run`` on a machine, not by this service
    (its stations file named by its path there to an engineer, by its name to the roles below)."""
    if not _sees_paths(request):
        run = replace(run, file=Path(run.file).name)
    raise ApiError(409, run.refusal(_action(request)), code="station_run_by_file")


@router.post("/stations", dependencies=ENGINEER, status_code=201, response_model=StationInfo)
def create_station(body: StationBody, request: Request) -> dict[str, Any]:
    with _ownership(request).changing:
        return _create(body, request)


def _create(body: StationBody, request: Request) -> dict[str, Any]:
    state, manager = _state(request), _manager(request)
    if manager.get(body.name) is not None or _elsewhere(request, body.name) is not None:
        raise ApiError(409, f"station {body.name!r} exists already; change it with PATCH /v1/stations/{body.name}, "
                       "or delete it first", code="station_exists")  # fmt: skip
    if (run := _run_elsewhere(request, body.name)) is not None:  # its intake and outbox rows are under the name
        raise ApiError(409, f"station {body.name!r} exists already: it is run by eagle station run {run.file} on "
                       f"{run.host} ({run.state()}); choose another name", code="station_exists")  # fmt: skip
    spec = body.model_dump(exclude_none=True)
    config = config_from_body(state, spec)
    _refuse_same_source(state, manager, config.name, config.source, spec)
    ownership = _ownership(request)
    if not ownership.claim(config.name):
        raise ApiError(409, f"station {body.name!r} is being created through another replica", code="station_exists")
    tables = StationTables(state.store)
    try:
        _start_clean(manager, tables, config.name)
        # Kept first: a replica's look at the table between the start and the save must not take the new
        # station for one deleted through another replica.
        tables.save_spec(config.name, spec, datetime.now(UTC).isoformat(), _key_name(request))
        try:
            running = manager.add(config, spec=spec, owns=ownership.holds(config.name))
        except BaseException:
            tables.delete_spec(config.name)
            raise
    except BaseException:
        ownership.release(config.name)
        raise
    sinks = ", ".join(str(sink.get("kind")) for sink in spec.get("sinks", []))
    audit_detail(request, f"created {config.name}: {spec['source'].get('kind')} -> {config.category} -> {sinks}",
                 category=config.category)  # fmt: skip
    return _info(state, running)


def _refuse_same_source(
    state: ServiceState, manager: StationManager, name: str, source: Any, spec: dict[str, Any]
) -> None:
    """409 ``source_in_use`` where another station kept by the service (any replica's) has the very same source
    table and the source holds no claim of its own (a plugin's: see :func:`~eagle_iad.station.config.same_source`):
    the two would each inspect every image. A hot folder or a camera is refused by its own lock instead."""
    others = [(other, kept.get("source")) for other, kept, _ in StationTables(state.store).specs() if other != name]
    others += [(run.name, run.runner.config.source_table) for run in manager.all()  # a stations file's
               if run.spec is None and run.name != name]  # fmt: skip
    other = same_source(source, spec.get("source"), others)
    if other is not None:
        raise ApiError(409, two_on_one_source(other, name, spec.get("source")), code="source_in_use")


def _key_name(request: Request) -> str | None:
    """The name of the API key of ``request`` (``None`` where the service has no keys: the open local mode)."""
    who = caller(request)
    return None if who.open else who.name


def _start_clean(manager: StationManager, tables: StationTables, name: str) -> None:
    """A new station ``name`` (its lock held) takes over nothing of an earlier one: intake and outbox rows still
    under that name (written by a run that finished its last image after its delete, by a station deleted through
    another replica before that one stopped it, or by a delete of an earlier version, which kept them) are
    removed, so its sinks never get an old station's verdicts. 409 ``station_busy`` while a run of that name
    here has not ended: it could still write some."""
    manager.check_startable(name)
    intake, outbox = tables.forget(name)
    if intake or outbox:
        LOG.warning("station %r: removed %d intake rows and %d outbox rows left by an earlier station of that name; "
                    "the new one starts clean", name, intake, outbox)  # fmt: skip


def _merge(target: Any, patch: Any) -> Any:
    """JSON Merge Patch (RFC 7396): an object's fields replaced one by one, ``null`` removing one."""
    if not isinstance(patch, dict):
        return patch
    merged = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = _merge(merged.get(key), value)
    return merged


def patched_spec(spec: dict[str, Any], patch: Any) -> dict[str, Any]:
    """``spec`` changed by ``patch``: a JSON merge patch, except that ``sinks`` is merged sink by sink, by position
    (``{"sinks": [{}, {"verify_tls": null}]}`` removes a field of the second sink and keeps the first as it is;
    ``null`` in place of a sink removes it, one past the end adds one), so a change needs neither the whole body
    nor the sinks' credentials, which ``GET`` does not show."""
    if not isinstance(patch, dict):
        raise ApiError(400, "the body of PATCH /v1/stations/{name} is a JSON object of the fields to change",
                       code="invalid_option")  # fmt: skip
    changed = _merge(spec, {key: value for key, value in patch.items() if key != "sinks"})
    if "sinks" not in patch:
        return dict(changed)
    sinks = patch["sinks"]
    if sinks is None:
        changed.pop("sinks", None)
        return dict(changed)
    if not isinstance(sinks, list) or not all(sink is None or isinstance(sink, dict) for sink in sinks):
        raise ApiError(400, "sinks: a list with one object (the fields to change) or null (remove it) per sink, by "
                       "position", code="invalid_option")  # fmt: skip
    old = list(spec.get("sinks") or [])
    merged = []
    for index in range(max(len(old), len(sinks))):
        if index >= len(sinks):
            merged.append(old[index])
        elif sinks[index] is not None:
            merged.append(_merge(old[index] if index < len(old) else {}, sinks[index]))
    changed["sinks"] = merged
    return dict(changed)


#: ``PATCH /v1/stations/{name}?discard_pending=true``: a change that removes a sink still owing verdicts.
DISCARD_REMOVED = Query(False, description="make the change even though a sink it removes (or renames) still owes "
                        "verdicts (pending deliveries, dead letters): they are dropped, and so are those still owed "
                        "to sinks removed earlier; without it such a change is 409 station_undelivered, the station "
                        "left as it was (rows owed to sinks removed earlier stay a warning and refuse only a change "
                        "that gives a sink their name)")  # fmt: skip


@router.patch("/stations/{name}", dependencies=ENGINEER, response_model=StationInfo)
def update_station(
    name: str, request: Request, patch: Annotated[dict[str, Any], Body(description="the fields to change")],
    discard_pending: bool = DISCARD_REMOVED,
) -> dict[str, Any]:  # fmt: skip
    """Change a station created through the service, in place: its name, records and undelivered deliveries
    (verdicts and refusals) stay. What fixes a kept station a newer check refuses at the start (the log line says
    the exact patch). A sink it removes takes its queue with it: 409 ``station_undelivered`` while that still owes
    deliveries, unless ``?discard_pending=true`` (which drops what sinks removed earlier are still owed too)."""
    with _ownership(request).changing:
        return _update(name, patch, request, discard_pending)


def _sink_names(spec: dict[str, Any]) -> set[str]:
    """The names a spec's sinks' rows are kept under in the outbox (``name``, else the kind)."""
    return {str(sink.get("name") or sink.get("kind")) for sink in spec.get("sinks") or [] if isinstance(sink, dict)}


def _owed_by_removed(
    tables: StationTables, name: str, before: set[str], after: set[str], discard: bool
) -> dict[str, tuple[int, int]]:
    """``{sink: (pending, dead)}`` that a change of ``name`` would drop (``discard``) or refuse for: 409
    ``station_undelivered`` naming each while any is owed, unless ``discard``. What the change itself would
    orphan or misdeliver is refused: a sink it removes or renames (one of ``before``, the sinks the station had,
    not in ``after``, those it will have), whose rows would wait unseen (the status lists only the sinks the
    station has); and a sink it adds under a name rows are still owed to (a sink removed earlier), which would be
    sent them. Rows owed to a sink removed earlier that the change leaves alone are not its doing: they stay a
    status warning and do not refuse an unrelated change (a ``deadline_s``), and ``discard`` drops them too."""
    owed_now = sorted(tables.owed_by_sink(name).items())
    if discard:  # every name whose queue does not stay: the change's removals and the older orphans alike
        return {sink: counts for sink, counts in owed_now if sink not in before & after}
    removed = {sink: counts for sink, counts in owed_now if sink in before and sink not in after}
    adopted = {sink: counts for sink, counts in owed_now if sink not in before and sink in after}
    if removed:
        total = sum(pending + dead for pending, dead in removed.values())
        raise ApiError(409, f"station {name!r}: the change removes sinks that still owe {deliveries(total)} "
                       f"({_owed_text(removed)}); it would drop them. Let them be delivered (GET /v1/stations/{name} "
                       f"shows each sink's pending; POST /v1/stations/{name}/retry requeues dead letters), or send "
                       "the change with ?discard_pending=true to drop them", code="station_undelivered")  # fmt: skip
    if adopted:
        total = sum(pending + dead for pending, dead in adopted.values())
        raise ApiError(409, f"station {name!r}: the change gives a sink the name of one this station no longer has, "
                       f"still owed {deliveries(total)} ({_owed_text(adopted)}); they would go to the new sink. Send "
                       "the change with ?discard_pending=true to drop them first, or give the sink another name",
                       code="station_undelivered")  # fmt: skip
    return {}


def _owed_text(owed: dict[str, tuple[int, int]]) -> str:
    """``sink 'mqtt': 1 pending, 0 dead letters; ...``: what each sink owes, for an answer or an audit row."""
    return "; ".join(f"sink {sink!r}: {pending} pending, {dead} dead letter{'' if dead == 1 else 's'}"
                     for sink, (pending, dead) in owed.items())  # fmt: skip


def _drop_removed(
    tables: StationTables, name: str, before: set[str], after: set[str], discard: bool
) -> dict[str, tuple[int, int]]:
    """:func:`_owed_by_removed`, then the outbox rows of the sinks whose queues do not stay (not in both ``before``
    and ``after``) removed, delivered ones too (a sink given one of those names later starts clean); without
    ``discard``, a sink removed earlier that is still owed keeps its rows (a status warning until a change or a
    delete with ``?discard_pending=true`` drops them). What the dropped rows owed, for the audit. Called with
    nothing of the station running, so no verdict is stored for a removed sink after the count."""
    owed = _owed_by_removed(tables, name, before, after, discard)
    kept = before & after
    left = set() if discard else set(tables.owed_by_sink(name)) - kept
    tables.drop_sinks(name, [sink for sink in tables.outbox_sinks(name) if sink not in kept and sink not in left])
    return owed


def _changed_detail(
    name: str, patch: dict[str, Any], dropped: dict[str, tuple[int, int]], category: tuple[Any, str] | None = None
) -> str:
    """The audit row's detail of a change: the fields changed, a change of category from what to what (the row is
    filed under the new one), and what a removed sink's queue dropped."""
    moved = f"; category {category[0]} -> {category[1]}" if category is not None and category[0] != category[1] else ""
    return f"changed {name}: {sorted(patch)}{moved}" + (
        f"; dropped undelivered: {_owed_text(dropped)}" if dropped else ""
    )


def checked_body(spec: dict[str, Any]) -> dict[str, Any]:
    """``spec`` checked as ``POST /v1/stations`` checks its body (no key it does not know, each field's type):
    a 400 naming the field, so a ``PATCH`` never keeps what a ``POST`` refuses."""
    try:
        StationBody.model_validate(spec)
    except ValidationError as exc:
        said = "; ".join(f"{'.'.join(str(part) for part in error['loc']) or 'body'}: {error['msg']}"
                         for error in exc.errors())  # fmt: skip
        raise ApiError(400, f"station {spec.get('name')!r}: {said}", code="invalid_option") from None
    return spec


def _update(name: str, patch: dict[str, Any], request: Request, discard: bool = False) -> dict[str, Any]:
    state, manager, ownership = _state(request), _manager(request), _ownership(request)
    running = manager.get(name)
    if running is not None and running.spec is None:
        raise ApiError(409, f"station {name!r} comes from a stations file; change it there", code="station_from_file")
    kept = next(((spec, paused) for found, spec, paused in StationTables(state.store).specs() if found == name), None)
    if kept is None:
        if (run := _run_elsewhere(request, name)) is not None:
            _refuse_run_by_file(request, run)
        raise ApiError(404, f"no station {name!r}", code="station_not_found")
    old, paused = kept
    was_category = old.get("category")
    spec = patched_spec(old, patch)
    if spec.get("name") != name:
        raise ApiError(400, f"name: a station's name cannot change (create {spec.get('name')!r} with POST "
                       "/v1/stations)", code="invalid_option")  # fmt: skip
    checked_body(spec)
    config = config_from_body(state, spec)  # 400 naming the field (or an unknown one): the station stays as it was
    if spec.get("source") != old.get("source"):  # a twin kept from before this check must stay changeable
        _refuse_same_source(state, manager, name, config.source, spec)
    tables = StationTables(state.store)
    grace = state.settings.shutdown_grace_s
    # the sinks whose queues stay: those of the run (or the kept spec) that the change keeps (in both), by name
    before = {s.sink.name for s in running.runner.config.sinks} if running is not None else _sink_names(old)
    after = {s.sink.name for s in config.sinks}
    _owed_by_removed(tables, name, before, after, discard)  # 409 at once, before anything is stopped
    dropped: dict[str, tuple[int, int]] = {}
    if running is not None:
        # Built and checked first (its model loaded, its sinks probed): a change that cannot start leaves the
        # station running as it was. Then the spec is saved and the old run stopped; the new one starts only once
        # the old one's intake and couriers have ended (409, the old one running on, if not within the grace).
        old = running.spec or old
        paused = running.user_paused
        runner = manager.prepare(config, owns=ownership.holds(name), live=[s.sink for s in running.runner.config.sinks])
        try:
            tables.update_spec(name, spec)

            def drop_removed() -> None:  # the old run ended: counted again, with nothing storing verdicts now
                dropped.update(_drop_removed(tables, name, before, after, discard))

            started = manager.replace(name, runner, spec=spec, paused=paused, grace_s=grace, between=drop_removed)
        except BaseException as refused:
            runner.close()
            try:
                tables.update_spec(name, old)
            except Exception as exc:  # the history away: the answer says what refused the change first
                LOG.error("station %r: its previous spec could not be written back after a change refused (%s): "
                          "%s", name, refused, exc)  # fmt: skip
            if manager.get(name) is None:  # stopped, and the change failed to start: started again as it was
                try:
                    manager.add(config_from_body(state, old), spec=old, paused=paused, owns=ownership.holds(name))
                except Exception as exc:  # kept as it was, listed as not started (its next change starts it)
                    ownership.release(name)  # a replica's next sync may start it (this one's included)
                    ownership.failed(name, f"{type(exc).__name__}: {exc}")
                    LOG.error("station %r was not started again as it was, after a change refused (%s): %s", name,
                              refused, exc)  # fmt: skip
            raise
    elif ownership.claim(name):  # kept but not started (or its replica gone): started here with the change
        try:
            dropped = _drop_removed(tables, name, before, after, discard)  # before its couriers start
            tables.update_spec(name, spec)
            try:
                started = manager.add(config, spec=spec, paused=paused, owns=ownership.holds(name))
            except BaseException:
                tables.update_spec(name, old)
                raise
        except BaseException:
            ownership.release(name)
            raise
        ownership.started(name)
    else:  # another replica runs it: checked here as it will be there, then restarted there within SYNC_INTERVAL_S
        # its model and its sinks' start-up checks: a 400 here, not a stop there (its live sinks are not known here)
        manager.prepare(config, live=None).close()
        dropped = _drop_removed(tables, name, before, after, discard)
        tables.update_spec(name, spec)
        audit_detail(request, _changed_detail(name, patch, dropped, (was_category, config.category)),
                     category=config.category)  # fmt: skip
        return _kept_info(request, name, spec, paused)
    # of the category it inspects after the change (a change of category says the old one in its detail)
    audit_detail(request, _changed_detail(name, patch, dropped, (was_category, config.category)),
                 category=config.category)  # fmt: skip
    return _info(state, started)


@router.get("/stations/{name}", dependencies=VIEWER, response_model=StationInfo)
def get_station(name: str, request: Request) -> dict[str, Any]:
    if (found := _elsewhere(request, name)) is not None:
        return _kept_info(request, name, *found)
    if (run := _run_elsewhere(request, name)) is not None:
        return _run_info(_state(request), run, _sees_paths(request))
    return _info(_state(request), _get(request, name))


def _set_paused(request: Request, name: str, paused: bool, body: PauseBody | None) -> dict[str, Any]:
    with _ownership(request).changing:
        was, info = _set_paused_now(request, name, paused)
    # The audit row says what changed: the station, from what state, and why when the caller said.
    verb, state = ("paused", "paused") if paused else ("resumed", "running")
    change = f"already {state}: no change" if was == paused else f"was {'paused' if was else 'running'}"
    why = ((body.why if body is not None else None) or "").strip()  # control characters: escaped by the log
    category = info.get("category") or None  # "" where a replica's row does not say
    audit_detail(request, f"{verb} {name} ({change})" + (f": {why}" if why else ""), category=category)
    return info


def _set_paused_now(request: Request, name: str, paused: bool) -> tuple[bool, dict[str, Any]]:
    """``(paused before, the station's info after)``."""
    if (found := _elsewhere(request, name)) is not None:
        StationTables(_state(request).store).set_paused(name, paused)  # its replica follows within SYNC_INTERVAL_S
        return found[1], _kept_info(request, name, found[0], paused)
    running = _get(request, name)
    was = running.user_paused
    running.user_paused = paused
    if running.spec is not None:
        StationTables(_state(request).store).set_paused(name, paused)
    return was, _info(_state(request), running)


@router.post("/stations/{name}/pause", dependencies=OPERATOR, response_model=StationInfo)
def pause_station(name: str, request: Request, body: PauseBody | None = None) -> dict[str, Any]:
    """Stop taking images (the image in hand is finished; deliveries go on). A station another replica
    sharing the history runs is paused there within seconds (docs/PLANT.md). An optional ``why`` goes into the
    audit row."""
    return _set_paused(request, name, True, body)


@router.post("/stations/{name}/resume", dependencies=OPERATOR, response_model=StationInfo)
def resume_station(name: str, request: Request, body: PauseBody | None = None) -> dict[str, Any]:
    """Take images again; an optional ``why`` goes into the audit row."""
    return _set_paused(request, name, False, body)


@router.post("/stations/{name}/retry", dependencies=OPERATOR, response_model=Requeued)
def retry_station(name: str, request: Request) -> dict[str, Any]:
    """Dead letters back in their queues, tries counted afresh (the receiver was fixed)."""
    if _elsewhere(request, name) is None:
        _get(request, name)  # 404 for no such station (one that runs elsewhere: its outbox is shared)
    return {"requeued": StationTables(_state(request).store).requeue_dead(name)}


@router.post("/stations/{name}/trigger", dependencies=OPERATOR, status_code=202, response_model=None)
def trigger_station(name: str, request: Request) -> Response:
    """Take the next frame now (a camera source with ``trigger = "http"``)."""
    source = _get(request, name).runner.config.source
    trigger = getattr(source, "trigger", None)
    if not callable(trigger):
        raise ApiError(409, f"station {name!r}'s source ({source.kind}) takes no trigger", code="no_trigger")
    trigger()
    return Response(status_code=202)


#: ``DELETE /v1/stations/{name}?discard_pending=true``: delete a station whose sinks still owe deliveries.
DISCARD_PENDING = Query(False, description="delete the station even though its sinks still owe deliveries (verdicts "
                        "and refusals: pending, dead letters): they are dropped with it; without it such a delete is "
                        "409 station_undelivered, the station left as it was")  # fmt: skip


def _refuse_undelivered(tables: StationTables, name: str) -> None:
    """409 ``station_undelivered`` naming how many deliveries ``name``'s sinks still owe (pending, dead letters; its
    refusals too, in the same queues): deleting the station drops them, which only ``?discard_pending=true`` asks
    for."""
    pending, dead = tables.undelivered(name)
    if not pending and not dead:
        return
    letters = "dead letter" if dead == 1 else "dead letters"
    raise ApiError(409, f"station {name!r}: its sinks still owe {deliveries(pending + dead)}: {pending} pending, "
                   f"{dead} {letters}; deleting it would drop them. Let them be delivered (GET /v1/stations/{name} "
                   f"shows each sink's pending; POST /v1/stations/{name}/retry requeues dead letters), or delete it "
                   "with ?discard_pending=true to drop them", code="station_undelivered")  # fmt: skip


@router.delete("/stations/{name}", dependencies=ENGINEER, status_code=204, response_model=None)
def delete_station(name: str, request: Request, discard_pending: bool = DISCARD_PENDING) -> Response:
    """Stop and forget the station: its intake (counters, repeats it knows) and its outbox go, so a station
    created again under this name starts clean; its inspections stay in the history. 409
    ``station_undelivered`` while its sinks still owe deliveries (verdicts and refusals, pending or dead letters),
    the station left as it was, unless ``?discard_pending=true``."""
    with _ownership(request).changing:
        return _delete(name, request, discard_pending)


def _deleted_detail(request: Request, tables: StationTables, name: str) -> None:
    """The audit row's detail of a delete: what each sink still owed, dropped with it (``?discard_pending=true``,
    which the recorded path does not show), so the audit says which verdicts were never delivered."""
    owed = tables.owed_by_sink(name)
    # the category it inspected, from its kept spec, so the audit by category lists the delete (read before it goes)
    category = next((spec.get("category") for found, spec, _ in tables.specs() if found == name), None)
    audit_detail(request, f"deleted {name}" + (f"; dropped undelivered: {_owed_text(owed)}" if owed else ""),
                 category=category if isinstance(category, str) else None)  # fmt: skip


def _delete(name: str, request: Request, discard: bool) -> Response:
    state = _state(request)
    tables = StationTables(state.store)
    if _elsewhere(request, name) is not None:
        if not discard:
            _refuse_undelivered(tables, name)
        _deleted_detail(request, tables, name)
        tables.delete_spec(name, forget=True)  # its replica stops it within SYNC_INTERVAL_S
        _ownership(request).not_started.pop(name, None)
        forget_owed_quietly(state, name)
        return Response(status_code=204)
    run = _run_elsewhere(request, name)
    # stopped cleanly by its command, or not seen for longer than the limit (killed on a machine that may be gone
    # for good, where nobody will ever edit its file): only its row is forgotten from the listings and /metrics
    if run is not None and (run.stopped is not None or run.silent) and forget_run(state.store, name):
        how = (f"stopped at {iso_time(run.stopped)}" if run.stopped is not None else
               f"not seen since {iso_time(run.beat)}, pid {run.pid}")  # fmt: skip
        # filed under the category its last heartbeat named, as every other station row is (audit.category)
        category = run.figures.get("category")
        audit_detail(request, f"forgot {name} (run by eagle station run {run.file} on {run.host}, {how}): only its "
                     "row in the listings; its records, intake and outbox stay, and a run of it lists it again",
                     category=category if isinstance(category, str) and category else None)  # fmt: skip
        return Response(status_code=204)
    running = _get(request, name)
    if running.spec is None:
        raise ApiError(409, f"station {name!r} comes from a stations file; remove it there", code="station_from_file")
    # Intake and couriers halted first, so what the sinks owe is counted with nothing moving: a verdict stored
    # after the count would otherwise be dropped unasked. Refused: the station runs on as it was.
    grace = state.settings.shutdown_grace_s
    running.halt_all()
    ended = running.wait(grace)
    if not discard:
        try:
            if not ended and running.runner.config.sinks:  # an image in hand may still owe its sinks a verdict
                raise StationBusyError(name, kept=True)
            _refuse_undelivered(tables, name)
        except BaseException:
            running.resume()
            raise
    _deleted_detail(request, tables, name)
    _manager(request).remove(name, grace if ended else 0.0, forget=True)
    tables.delete_spec(name, forget=True)
    _ownership(request).release(name)
    forget_owed_quietly(state, name)  # a station created again under its name must not store an old run's place
    return Response(status_code=204)


def _metrics(state: ServiceState, manager: StationManager) -> list[str]:
    """Each station's figures as Prometheus families (labelled by station, and sink)."""
    families: dict[str, tuple[str, str, list[str]]] = {
        "eagle_station_inspected_total": ("counter", "Images a station inspected and stored.", []),
        "eagle_station_failed_total": ("counter", "Files a station refused (not inspected), each one counted.", []),
        "eagle_station_backlog": ("gauge", "Images waiting in a station's source.", []),
        "eagle_station_images_per_second": ("gauge", "Images a station stored per second over the last minute.", []),
        "eagle_station_latency_seconds": ("gauge", "End-to-end latency percentiles (file seen -> all sinks).", []),
        "eagle_station_warnings": (
            "gauge",
            "Warnings a station shows (backlog, deadline, failing sinks, dead letters, paused intake).",
            [],
        ),
        "eagle_station_replaced_total": (
            "counter",
            "Files replaced under their name before the station took them (each lost, never inspected).",
            [],
        ),
        "eagle_station_deliveries_pending": ("gauge", "Deliveries (verdicts and refusals) a sink still owes.", []),
        "eagle_station_dead_letters": ("gauge", "Deliveries (verdicts and refusals) a sink gave up on.", []),
        "eagle_station_oldest_pending_seconds": (
            "gauge",
            "Seconds the oldest delivery a sink still owes has waited since it was stored (0: none waits).",
            [],
        ),
        # the stations of stations files (eagle station run), from the shared table: every replica shows the same
        # value, so take max/min by station, never sum (docs/OPERATIONS.md, alerting)
        "eagle_station_heartbeat_age_seconds": (
            "gauge",
            "Seconds since eagle station run last said how a station it runs is (database clock).",
            [],
        ),
        "eagle_station_run_up": (
            "gauge",
            "1: eagle station run heartbeats for the station; 0: stopped, or not seen for longer than the limit.",
            [],
        ),
        "eagle_station_run_warnings": ("gauge", "Warnings a station run by eagle station run shows.", []),
    }
    for running in manager.all():
        info = _info(state, running)
        station = f'station="{label(running.name)}"'
        families["eagle_station_inspected_total"][2].append(f"eagle_station_inspected_total{{{station}}} "
                                                            f"{info['inspected']}")  # fmt: skip
        families["eagle_station_failed_total"][2].append(f"eagle_station_failed_total{{{station}}} {info['failed']}")
        families["eagle_station_backlog"][2].append(f"eagle_station_backlog{{{station}}} {info['backlog']}")
        families["eagle_station_images_per_second"][2].append(
            f"eagle_station_images_per_second{{{station}}} {info['images_per_s']}"
        )
        for key, quantile in (("p50", "0.5"), ("p95", "0.95"), ("p99", "0.99")):
            if info["latency_s"] is not None:
                families["eagle_station_latency_seconds"][2].append(
                    f'eagle_station_latency_seconds{{{station},quantile="{quantile}"}} {info["latency_s"][key]}'
                )
        families["eagle_station_warnings"][2].append(f"eagle_station_warnings{{{station}}} {len(info['warnings'])}")
        families["eagle_station_replaced_total"][2].append(
            f"eagle_station_replaced_total{{{station}}} {info.get('replaced') or 0}"
        )
        for sink, figures in info["sinks"].items():
            labels = f'{station},sink="{label(sink)}"'
            families["eagle_station_deliveries_pending"][2].append(
                f"eagle_station_deliveries_pending{{{labels}}} {figures['pending']}"
            )
            families["eagle_station_dead_letters"][2].append(
                f"eagle_station_dead_letters{{{labels}}} {figures['dead_letters']}"
            )
            families["eagle_station_oldest_pending_seconds"][2].append(
                f"eagle_station_oldest_pending_seconds{{{labels}}} {figures.get('oldest_pending_s') or 0}"
            )
    for run in published(state.store):
        labels = f'station="{label(run.name)}",host="{label(run.host)}"'
        families["eagle_station_heartbeat_age_seconds"][2].append(
            f"eagle_station_heartbeat_age_seconds{{{labels}}} {round(max(0.0, run.age), 3)}"
        )
        up = int(run.stopped is None and not run.silent)
        families["eagle_station_run_up"][2].append(f"eagle_station_run_up{{{labels}}} {up}")
        warnings = len(run.figures.get("warnings") or []) + int(run.warning() is not None)
        families["eagle_station_run_warnings"][2].append(f"eagle_station_run_warnings{{{labels}}} {warnings}")
    lines: list[str] = []
    for name, (kind, help_text, samples) in families.items():
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}", *samples]
    return lines


def install(app: FastAPI, state: ServiceState) -> None:
    """Add the stations to a service app: routes, start (the kept ones) and stop with it, ``/metrics``."""
    manager = StationManager(state, station_log, quiet=True)
    app.state.stations = manager
    ownership = StationOwnership(state, manager, lambda spec: config_from_body(state, spec))
    app.state.station_ownership = ownership

    def stop() -> None:
        ownership.stop_loop()  # state.stopping is set: the loop ends at its next wake, starting nothing more
        manager.stop(state.settings.shutdown_grace_s)
        ownership.close()

    def users(category: str) -> list[str]:
        """The stations a retirement of ``category`` would leave with nothing to score their images: those this
        service runs (a stations file's, or created here), then those the history keeps (paused ones, and those of
        other replicas sharing it), then those of stations files that ``eagle station run`` runs on other machines
        sharing the history (heard from within :data:`NOT_SEEN_AFTER_S`: one stopped or long silent scores
        nothing now, and its next start says the category is gone), each once."""
        here = {running.runner.config.name: running for running in manager.all()}
        found = [f"station {name!r} (runs on this service)" for name, running in here.items()
                 if running.runner.config.category == category]  # fmt: skip
        named = set(here)
        for name, spec, paused in StationTables(state.store).specs():
            if name not in named and spec.get("category") == category:
                where = "paused" if paused else "on a replica sharing the history, or not started"
                found.append(f"station {name!r} (kept in the history, {where})")
            named.add(name)
        for run in published(state.store):
            if run.name not in named and run.stopped is None and not run.silent and \
                    run.figures.get("category") == category:  # fmt: skip
                found.append(
                    f"station {run.name!r} (run by eagle station run {run.file} on {run.host}, pid "
                    f"{run.pid}: change its category in that file there and restart it)"
                )
        return found

    state.category_users.append(users)
    state.on_start.append(ownership.start)
    state.on_close.insert(0, stop)
    state.metrics.text(lambda: _metrics(state, manager), needs_history=True)
    app.include_router(router)
