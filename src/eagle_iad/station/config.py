"""``stations.toml``: the stations one ``eagle station run`` process runs, read and checked before any work.

```toml
models = "models"                 # fitted categories, as `eagle serve --models` (relative: to this file)
state = "eagle-service"           # history, pictures, outbox (default: eagle serve's, <models>/../eagle-service)

[[station]]
name = "line-1"
category = "tire"
backlog_limit = 500               # warn when more images wait
deadline_s = 5.0                  # warn when the p95 latency (image appeared -> every sink delivered) is over
source = { kind = "folder", path = "incoming" }

[[station.sink]]
kind = "webhook"
url = "https://mes.example/eagle"
secret_env = "EAGLE_WEBHOOK_SECRET"
```

Why check everything first: a station that starts and then fails on its first image at 3 a.m. is
worse than one that refuses to start with one line naming the field. Every source and sink reads and
checks its own table (:class:`~eagle_iad.station.parts.Options`); this module adds the file's own keys.
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from eagle_iad.errors import EagleError, one_of
from eagle_iad.naming import category_name_problem, printable
from eagle_iad.ranges import Range
from eagle_iad.station import sinks as _sinks  # noqa: F401  (registers the built-in sinks)
from eagle_iad.station import sources as _sources  # noqa: F401  (registers the built-in sources)

if TYPE_CHECKING:
    from eagle_iad.service.settings import ServiceSettings
from eagle_iad.registry import plugin_hint
from eagle_iad.station.parts import (
    REQUIRED,
    SINKS,
    SOURCES,
    Options,
    Retry,
    Sink,
    Source,
    StationConfigError,
)

T = TypeVar("T")

STATION_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
STATION_NAME_RULE = "1-64 letters, digits, '_', '.', '-', starting with a letter or digit"
BACKLOG_LIMIT = Range(1, 10**9)
DEADLINE_S = Range(0.0, 86400.0, low_open=True)


@dataclass
class SinkConfig:
    sink: Sink
    retry: Retry
    #: Whether the sink is sent the station's refusals too (images it could not inspect), in the verdicts' queue:
    #: the option ``refusals`` every sink takes (default: its class's ``takes_refusals``, true for the built-in sinks,
    #: false for a plugin that does not say), as ``name`` and the retry options; read there, so this default is the
    #: one of a sink that does not say (a plugin written before refusals existed, reading ``payload["record"]``).
    refusals: bool = False
    #: Where its errors point (``<file>: station 'line-1': sink 2 (csvlog)``): a plugin sink's start-up look
    #: refusing the station is said with it, as a built-in sink's own errors are (see ``runner._probe``).
    where: str = ""


#: The choices of a station's ``duplicates`` (see :attr:`StationConfig.duplicates`), and its default: declared once,
#: read by a stations file's table and by the service's station body (``POST``/``PATCH /v1/stations``) alike.
DUPLICATES = ("refuse", "skip")
DEFAULT_DUPLICATES = "refuse"


@dataclass
class StationConfig:
    """One station: its name, the category that scores its images, one source and its sinks."""

    name: str
    category: str
    source: Source
    sinks: list[SinkConfig] = field(default_factory=list)
    backlog_limit: int = 1000
    deadline_s: float = 10.0
    #: A file whose content the station already inspected (a frozen camera sending the same image for the next
    #: part): ``"refuse"`` tells every sink that takes refusals that this part was not inspected (naming the earlier
    #: record), so a PLC or MES waiting for an answer per part gets one; ``"skip"``: nothing is sent (the log and
    #: the status' warning only).
    duplicates: str = DEFAULT_DUPLICATES
    #: The source's table as given (a stations file's ``[station.source]``, the body's ``source``): what
    #: :func:`same_source` compares for a source with no claim of its own.
    source_table: dict[str, Any] = field(default_factory=dict)
    #: Where a refusal of its source is said (``stations.toml: station 'line-1': source (zipdrop)``), as
    #: :attr:`SinkConfig.where` for a sink: put before a plugin's start-up refusal that does not say it.
    source_where: str = ""


@dataclass
class StationsFile:
    path: Path
    models_dir: Path
    state_dir: Path
    stations: list[StationConfig]
    #: The history as a URL (``postgresql://...``, shared with replicas: docs/PLANT.md); None: the state folder's file.
    history: str | None = None
    #: The pictures folder (shared with replicas); None: ``<state>/files``.
    files: Path | None = None
    #: The SHA-256 of the bytes read: a run records it, and it and ``eagle station status`` tell the file edited
    #: since (a change needs a restart: see :func:`file_digest`).
    digest: str = ""

    def make_folders(self) -> None:
        """Create the state and pictures folders, or one line naming the field (``state``, ``files``) that
        cannot be: before anything else is opened."""
        settings = self.settings()
        for key, folder in (("state", settings.state_dir), ("files", settings.files_dir)):
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                why = exc.strerror or exc
                raise StationConfigError(f"{self.path}: {key} {folder} cannot be created: {why}") from None

    def named(self, name: str) -> StationConfig:
        """The station called ``name`` (a command's ``--station``); one that is not in the file is refused, naming
        the ones that are: a typo must not select nothing and report 0 quietly."""
        for station in self.stations:
            if station.name == name:
                return station
        known = ", ".join(station.name for station in self.stations)
        raise StationConfigError(f"{self.path}: --station {printable(name)!r} is not a station of this file (its "
                                 f"stations: {known})")  # fmt: skip

    def check_sink(self, name: str, station: str | None, in_outbox: list[str]) -> None:
        """Refuse ``name`` (a command's ``--sink``, with its ``--station`` if any) unless a sink of that station (of
        any station) has it, or the outbox does (``in_outbox``: a sink removed from the file may still have rows):
        one line naming the sinks, not 0 rows requeued quietly."""
        chosen = self.stations if station is None else [self.named(station)]
        configured = list(dict.fromkeys(sink.sink.name for config in chosen for sink in config.sinks))
        if name in configured or name in in_outbox:
            return
        known = ", ".join(configured) or "none"
        only = [sink for sink in dict.fromkeys(in_outbox) if sink not in configured]
        if only:
            known += f"; only in the outbox: {', '.join(printable(sink) for sink in only)}"
        who = "this file's stations (their" if station is None else f"station {station!r} (its"
        raise StationConfigError(f"{self.path}: --sink {printable(name)!r} is not a sink of {who} sinks: {known})")

    def unfitted(self, config: StationConfig) -> str | None:
        """Why ``config``'s model folder is missing (a station read with ``fitted=False``), or ``None``."""
        if (self.models_dir / config.category).is_dir():
            return None
        return f"category {unfitted(config.category, self.models_dir)}"

    def has_run(self) -> bool:
        """Whether its history exists (a shared database, or the state folder's file): a command that only reads
        or fixes what a run left (status, retry) looks first, since opening the history would create it."""
        settings = self.settings()
        return settings.history is not None or settings.database.is_file()

    def settings(self) -> ServiceSettings:
        """The service settings this file's stations run under (the same history and folders as ``eagle serve``)."""
        from eagle_iad.service.settings import ServiceSettings

        return ServiceSettings(models_dir=self.models_dir, state_dir=self.state_dir, history=self.history,
                               files=self.files)  # fmt: skip

    def close(self) -> None:
        for station in self.stations:
            source_close = getattr(station.source, "close", None)  # a camera's reader thread; a folder has none
            if source_close is not None:
                source_close()
            for sink in station.sinks:
                sink.sink.close()


def unfitted(category: str, models_dir: Path) -> str:
    """Why a station's ``category`` cannot be loaded from ``models_dir``: no model folder (say how to make one)."""
    return f"{category!r} is not fitted in {models_dir} (eagle fit ... --out {models_dir / category})"


def _table(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise StationConfigError(f"{where} must be a table, not {value!r}")
    return value


def read_stations(path: Path, *, fitted: bool = True, looking: bool = False) -> StationsFile:
    """The checked stations of ``path``; a :class:`StationConfigError` naming the field otherwise. ``fitted``:
    refuse a station whose category has no model folder (``False`` for ``eagle station status``, which reads only
    the history and must answer exactly when a model went missing: :meth:`StationsFile.unfitted` says it).
    ``looking``: read for ``eagle station status``, whose parts refuse nothing only a run needs now (a hot folder
    gone: the status says so as a warning, and answers; see :attr:`Options.looking`)."""
    try:
        text = path.read_bytes().decode("utf-8")
        data = tomllib.loads(text)
    except FileNotFoundError:
        raise StationConfigError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise StationConfigError(f"{path}: cannot be read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise StationConfigError(f"{path}: not valid TOML: {exc}") from None
    base = path.resolve().parent
    top = Options(data, str(path), base)
    models_dir: Path = top.path("models", REQUIRED)
    state_dir: Path = top.path("state", str(models_dir.parent / "eagle-service"))
    history: str | None = top.text("history")
    files: Path | None = top.path("files")
    top._read.add("station")
    top.done()
    for key, folder in (("state", state_dir), ("files", files)):
        if folder is not None and folder.exists() and not folder.is_dir():
            raise top.error(key, f"{folder} is not a folder")
    from eagle_iad.service.settings import ServiceSettings

    settings = ServiceSettings(models_dir=models_dir, state_dir=state_dir, history=history, files=files)
    kept = {"state": state_dir, "files": settings.files_dir}  # what a recursive hot folder must not hold
    if fitted and not models_dir.is_dir():
        raise StationConfigError(f"{path}: models {models_dir} is not a folder of fitted categories")
    tables = data.get("station")
    if not isinstance(tables, list) or not tables:
        raise StationConfigError(f"{path}: no [[station]] tables; declare at least one station")
    stations: list[StationConfig] = []
    for number, raw in enumerate(tables, start=1):
        table = _table(raw, f"{path}: station {number}")
        where = f"{path}: station {number}"
        options = Options(table, where, base, looking=looking)
        stations.append(station_from_table(options, models_dir, fitted, kept))
    names = [s.name for s in stations]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise StationConfigError(f"{path}: station names must differ; {', '.join(repeated)} is used twice")
    seen: list[tuple[str, Any]] = []
    for station, raw in zip(stations, tables, strict=True):
        source = raw.get("source")
        other = same_source(station.source, source, seen)
        if other is not None:
            raise StationConfigError(f"{path}: {two_on_one_source(other, station.name, source)}")
        seen.append((station.name, source))
    folders: dict[Path, str] = {}
    recursive: list[tuple[Path, str]] = []
    for station in stations:  # two stations on one hot folder would each inspect (and race to move) every image
        folder = getattr(station.source, "folder", None) if station.source.kind == "folder" else None
        if isinstance(folder, Path):
            other = folders.setdefault(folder.resolve(), station.name)
            if other != station.name:
                raise StationConfigError(f"{path}: stations {other!r} and {station.name!r} both take the images of "
                                         f"{folder.resolve()}; give each station its own folder")  # fmt: skip
            if getattr(station.source, "recursive", False) is True:
                recursive.append((folder.resolve(), station.name))
    frames: dict[tuple[Path, str], str] = {}
    for station in stations:  # a camera's start takes the frames it saved and never inspected: they must be its own
        folder, prefix = getattr(station.source, "frames", None), getattr(station.source, "name_prefix", None)
        if station.source.kind == "camera" and isinstance(folder, Path) and isinstance(prefix, str):
            other = frames.setdefault((folder.resolve(), prefix), station.name)
            if other != station.name:
                raise StationConfigError(f"{path}: stations {other!r} and {station.name!r} both save camera frames "
                                         f"in {folder.resolve()} as {prefix}-*.png; give each camera station its own "
                                         "name_prefix (or frames folder)")  # fmt: skip
    for outer, taker in recursive:  # one taking its subfolders takes those of a station on one of them too
        for inner, other in folders.items():
            if other != taker and outer in inner.parents:
                raise StationConfigError(f"{path}: station {taker!r} takes the images of {outer} and its subfolders "
                                         f"(recursive = true), so those of station {other!r} in {inner} too; give "
                                         "each station its own folder")  # fmt: skip
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    return StationsFile(path, models_dir, state_dir, stations, history, files, digest)


def same_source(source: Source, table: Any, others: Iterable[tuple[str, Any]]) -> str | None:
    """The first of ``others`` (``(station, source table)``) whose source table is ``table``, for a source that
    holds no claim of its own; else ``None``.

    Why: two stations on one source each take every image, so each part is inspected and reported twice. A hot
    folder and a camera's frames refuse that themselves, across processes, by a lock naming the holder
    (``claim``: sources/folder_lock.py); a plugin source without a ``claim`` has no such guard, and the same kind
    with the very same options is the one case the station can tell without knowing what the options mean."""
    if callable(getattr(source, "claim", None)):
        return None
    return next((name for name, other in others if other == table), None)


def two_on_one_source(other: str, name: str, table: Any) -> str:
    """The refusal of :func:`same_source`'s pair, naming both stations and the source's kind."""
    kind = table.get("kind") if isinstance(table, dict) else None
    return (f"stations {other!r} and {name!r} both take their images from the same source ({kind} with the same "
            "options); two stations on one source would each inspect every image: give each station its own source "
            "(a plugin source can refuse it itself with a claim, see docs/STATIONS.md)")  # fmt: skip


def file_digest(path: Path) -> str:
    """The SHA-256 of the stations file as it is now (as :attr:`StationsFile.digest`), ``""`` when it cannot be
    read (removed, renamed): a run compares it with the one it started with."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return ""


def _check_links(sink: Sink, source: Source, options: Options) -> None:
    """A folder sink that hard-links a hot folder's images across file systems is refused now (one line naming
    both): every link would fail with EXDEV, retried for ever, every later verdict waiting behind it."""
    cross_device = getattr(sink, "cross_device", None)
    folder = getattr(source, "folder", None)
    if source.kind != "folder" or not callable(cross_device) or not isinstance(folder, Path):
        return
    images = getattr(source, "done", folder) if getattr(source, "after", "move") == "move" else folder
    problem = cross_device(images)
    if problem is not None:
        raise StationConfigError(f"{options.where}: {problem}")


def _check_walk(source: Source, sinks: list[SinkConfig], kept: dict[str, Path], where: str) -> None:
    """A hot folder taken with its subfolders (``recursive``) must not hold a folder the station or the service
    writes into: a folder sink's copies would be taken again, refused as duplicates, the refusal's copy taken
    again, without end; the service's ``kept`` folders (state, pictures, models) would lose what they keep. One
    line naming both (paths resolved, after symbolic links). The walk is told to skip them all the same (see
    ``HotFolder.keep_out``). Without ``recursive`` no subfolder is entered: a folder sink there (even at the hot
    folder itself, which writes only into its normal/, anomalous/, unrecognised/, undecided/, refused/) is never
    taken again."""
    folder = getattr(source, "folder", None)
    keep_out = getattr(source, "keep_out", None)
    if source.kind != "folder" or not isinstance(folder, Path) or not callable(keep_out):
        return
    recursive = getattr(source, "recursive", False) is True
    hot = folder.resolve()
    for sink in sinks:
        path = getattr(sink.sink, "folder", None)
        if sink.sink.kind != "folder" or not isinstance(path, Path):
            continue
        path = path.resolve()
        keep_out(path, f"folder sink {sink.sink.name!r}'s folder (not entered: its copies are no new images)")
        if recursive and (path == hot or hot in path.parents):
            raise StationConfigError(f"{where}: sink {sink.sink.name!r} (folder) writes in {path}, inside hot folder "
                                     f"{hot}, which the station takes with its subfolders (recursive = true): its "
                                     "copies would be taken again, without end; give the sink a path outside the "
                                     "hot folder")  # fmt: skip
    for key, kept_dir in kept.items():
        path = kept_dir.resolve()
        keep_out(path, f"the service's {key} folder (not entered: the service keeps its files there)")
        if recursive and (path == hot or hot in path.parents):
            raise StationConfigError(f"{where}: source: hot folder {hot} holds the service's {key} folder {path} and "
                                     "is taken with its subfolders (recursive = true): the station would take and "
                                     "move what the service keeps; give the station a folder outside it")  # fmt: skip


def unknown_kind(kind: str, known: Iterable[str], part: str) -> str:
    """The refusal of a source's or sink's ``kind`` no part registers: the kinds that are, and the usual cause of a
    name that looks right (a plugin's kind, its module not loaded: a stations file or a kept station written when
    it was), said as every registry's refusal of a plugin's name says it (:func:`plugin_hint`)."""
    return f"is {kind!r}; choose one of {one_of(known)} {plugin_hint(part)}"


def _built(factory: Callable[..., T], where: str, *args: Any) -> T:
    """``factory(*args)`` (a source or sink made from its options), a failure that is not already one line
    naming the field (a plugin's ``ValueError`` in its ``__init__``, a factory that does not take its arguments)
    said as a :class:`StationConfigError` naming ``where`` (the station, the part's position and kind), the plugin's
    class, and the exception: what a built-in part's refusal says, not a traceback from the CLI or a 500 from the
    service. ``KeyboardInterrupt``/``SystemExit`` are no refusal and go through."""
    try:
        return factory(*args)
    except EagleError:  # one line of the project's own, with its status (409 folder_in_use, 503 ...), as it is
        raise
    except Exception as exc:
        name = getattr(factory, "__qualname__", None) or type(factory).__qualname__
        module = getattr(factory, "__module__", None)
        cls = f"{module}.{name}" if module else name
        said = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__  # a bare raise ValueError()
        raise StationConfigError(f"{where}: {said} (raised by {cls})") from exc


def station_from_table(
    options: Options, models_dir: Path, fitted: bool = True, kept: dict[str, Path] | None = None
) -> StationConfig:
    """One station from its table (a ``[[station]]`` of the file, or the body of ``POST /v1/stations``);
    ``fitted``: its category must have a model folder in ``models_dir``. ``kept``: the service's other folders the
    runner knows (``state``, ``files``), which a recursive hot folder must not hold, nor ``models_dir``."""
    table = options.table
    name = options.text("name", REQUIRED)
    if not STATION_NAME.fullmatch(name):
        raise options.error("name", f"{printable(name)!r} is not a station name: use {STATION_NAME_RULE}")
    where = f"{options.where.rpartition('station')[0]}station {name!r}"
    options.where = where
    category = options.text("category", REQUIRED)
    problem = category_name_problem(category)
    if problem is not None:
        raise options.error("category", problem)
    if fitted and not (models_dir / category).is_dir():
        raise options.error("category", unfitted(category, models_dir))
    backlog_limit = options.integer("backlog_limit", 1000, BACKLOG_LIMIT)
    deadline_s = options.number("deadline_s", 10.0, DEADLINE_S)
    duplicates = options.text("duplicates", DEFAULT_DUPLICATES, DUPLICATES)
    options._read.update({"source", "sink"})
    options.done()
    source_table = _table(table.get("source"), f"{where}: source") if "source" in table else None
    if source_table is None:
        raise StationConfigError(f'{where}: source is missing (source = {{ kind = "folder", path = "..." }})')
    source_options = options.nested(source_table, f"{where}: source")
    kind = source_options.text("kind", REQUIRED)
    if kind not in SOURCES:
        raise source_options.error("kind", unknown_kind(kind, SOURCES.names(), "source"))
    source: Source = _built(SOURCES.get(kind), f"{where}: source ({kind})", source_options)
    source_options.done()
    sink_tables = table.get("sink", [])
    if not isinstance(sink_tables, list):
        raise StationConfigError(f"{where}: sink must be [[station.sink]] tables")
    sinks: list[SinkConfig] = []
    used: set[str] = set()
    for index, raw in enumerate(sink_tables, start=1):
        sink_options = options.nested(_table(raw, f"{where}: sink {index}"), f"{where}: sink {index}")
        sink_kind = sink_options.text("kind", REQUIRED)
        if sink_kind not in SINKS:
            raise sink_options.error("kind", unknown_kind(sink_kind, SINKS.names(), "sink"))
        sink_options.where = f"{where}: sink {index} ({sink_kind})"
        kinds = [t.get("kind") for t in sink_tables if isinstance(t, dict)]
        if kinds.count(sink_kind) > 1 and "name" not in raw:
            raise sink_options.error("name", f"is missing: {kinds.count(sink_kind)} sinks are {sink_kind!r}, so each "
                                             "needs a name (its queue of verdicts is kept under it)")  # fmt: skip
        sink_name = sink_options.text("name", sink_kind)
        if not STATION_NAME.fullmatch(sink_name) or sink_name in used:
            raise sink_options.error("name", f"{sink_name!r} must be a unique name of letters, digits, '_', '.', '-'")
        used.add(sink_name)
        sink: Sink = _built(SINKS.get(sink_kind), sink_options.where, sink_options, sink_name)
        retry = Retry.read(sink_options)
        # a plugin sink written before refusals existed reads payload["record"]: sent refusals only where its
        # class says it takes them (the built-in sinks do), or its table asks for them
        refusals = sink_options.flag("refusals", bool(getattr(type(sink), "takes_refusals", False)))
        sink_options.done()
        sinks.append(SinkConfig(sink, retry, refusals, sink_options.where))
        _check_links(sink, source, sink_options)
    _check_walk(source, sinks, {**(kept or {}), "models": models_dir}, where)
    return StationConfig(name, category, source, sinks, backlog_limit, deadline_s, duplicates,
                         dict(source_table or {}), f"{where}: source ({kind})")  # fmt: skip
