"""How each station is doing, from its tables: throughput, backlog, latency, sinks, dead letters, warnings.

Read from the history file with a read-only connection, so ``eagle station status`` answers while
``eagle station run`` holds the state folder, and says the same after it stopped. The end-to-end
latency of an image is from when the station first saw it to when its last sink confirmed delivery
(to when its verdict was stored, for a station without sinks); the percentiles are over the last
1,000 images whose deliveries all ended.
"""

from __future__ import annotations

import errno
import json
import os
import sqlite3
import time
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from eagle_iad.atomic import atomic_write_text
from eagle_iad.history import open_backend
from eagle_iad.history.backend import Connection
from eagle_iad.history.sqlite import SqliteConnection, SqliteHistory
from eagle_iad.record import iso_time
from eagle_iad.station.config import DEFAULT_DUPLICATES, StationConfig
from eagle_iad.station.outbox import REFUSED_PREFIX
from eagle_iad.station.parts import refusal
from eagle_iad.station.recent import RECENT_S, Seconds, within

#: Images the latency percentiles are computed over (the most recent).
LATENCY_WINDOW = 1000
#: Seconds the images/s figure is averaged over.
RATE_WINDOW_S = 60.0
#: Seconds a paused intake waits before trying its image again.
PAUSE_RETRY_S = 5.0
#: The folder of the state folder where each running station says how its intake is (``<name>.json``).
INTAKE_FOLDER = "stations"


def unseen(exc: OSError) -> str:
    """An error met looking at a source's backlog, in words (``No such file or directory: /x/incoming``)."""
    return f"{exc.strerror or exc}: {exc.filename}" if exc.filename else str(exc)


def gone(exc: OSError, folder: Path | None = None) -> bool:
    """Whether ``exc``, met looking at a source's backlog, says its folder itself is gone (unmounted, deleted:
    ENOENT or ENOTDIR on ``folder``, when the source has one): then no image waits there that this process could
    take. Anything else (EACCES, EIO, ESTALE, a name too long) may hide images that still wait."""
    if exc.errno not in (errno.ENOENT, errno.ENOTDIR):
        return False
    if folder is None or exc.filename is None:
        return True
    return os.path.abspath(os.fsdecode(exc.filename)) == os.path.abspath(folder)


def deliveries(count: int) -> str:
    """``1 delivery (a verdict or a refusal)``, ``3 deliveries (verdicts and refusals)``: what an outbox count
    counts. A sink's queue holds the station's refusals in line with its verdicts, so a count of its rows said as
    "verdicts" would call a refusal a verdict."""
    return "1 delivery (a verdict or a refusal)" if count == 1 else f"{count} deliveries (verdicts and refusals)"


def deliveries_wait(count: int) -> str:
    """``1 delivery (a verdict or a refusal) waits``, ``3 deliveries (verdicts and refusals) wait``."""
    return f"{deliveries(count)} {'waits' if count == 1 else 'wait'}"


def duration(seconds: float) -> str:
    """``45 s``, ``12 min``, ``3.5 h``: an age as a person reads it."""
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _seconds(listed: Any) -> Seconds:
    """The ``(second, count)`` pairs of an intake file's list (one not such, from a damaged file: skipped)."""
    if not isinstance(listed, list):
        return ()
    return tuple((one[0], one[1]) for one in listed
                 if isinstance(one, list) and len(one) == 2 and all(type(n) is int for n in one))  # fmt: skip


@dataclass(frozen=True)
class Intake:
    """How a running station's intake is: taking images (``paused`` None) or paused, why and since when; or
    paused by the user (``eagle serve``'s pause), which is what its state shows first, as the API's does."""

    paused: str | None = None
    #: When the intake paused (seconds since the epoch).
    since: float | None = None
    #: Paused by the user: takes no image until resumed.
    user_paused: bool = False
    #: ``(sink, why, since)`` of each sink not checked at start (:class:`~eagle_iad.station.parts.NotChecked`):
    #: a warning until the sink delivers after ``since`` (seconds since the epoch).
    unchecked: tuple[tuple[str, str, float], ...] = ()
    #: ``(sink, why, since)`` of each sink whose start-up probe could not reach its receiver (refused, no answer):
    #: a warning until the sink delivers after ``since``, as :attr:`unchecked`, so a sink that cannot be reached
    #: is not shown as healthy while no verdict has yet failed to reach it.
    unreached: tuple[tuple[str, str, float], ...] = ()
    #: Files put away without a new verdict since the station started, their content inspected before (a camera
    #: re-sending an image): no sink hears of them, so the status counts them for the integrator to notice.
    duplicates: int = 0
    #: ``(name, record id)`` of the last such file: which image it repeated.
    last_duplicate: tuple[str, str] | None = None
    #: When they came lately (:class:`~eagle_iad.station.recent.Recent`): the status warns of those of the last
    #: :data:`RECENT_S` only.
    duplicate_seconds: Seconds = ()
    #: Files the source found it does not take (a ``.gif``, a subfolder), since the station started: each name
    #: counted when the log says it (once, and again if it comes back after it went).
    ignored: int = 0
    #: The last of them, with why (``cam2.gif (suffix .gif not taken ...)``).
    last_ignored: str | None = None
    #: When they were found lately (:class:`~eagle_iad.station.recent.Recent`): warned of for :data:`RECENT_S`.
    ignored_seconds: Seconds = ()
    #: The SHA-256 of the stations file the process started with (``eagle station run``; ``None``: the service, or
    #: an older version), and the sinks it runs: ``eagle station status`` reads the file as it is now, so it says
    #: when that differs from what runs (an edit needs a restart).
    file_sha256: str | None = None
    sinks: tuple[str, ...] = ()
    #: Files replaced under their name before the station took them (a writer renaming frames onto one name faster
    #: than ``settle_s``), since the station started: each lost, never inspected, and no sink hears of it.
    replaced: int = 0
    #: The name of the last of them.
    last_replaced: str | None = None
    #: When they were lately (:class:`~eagle_iad.station.recent.Recent`): warned of for :data:`RECENT_S`.
    replaced_seconds: Seconds = ()
    #: What keeps the source from taking images now, as it says (a camera's PLC trigger not connected, naming the
    #: endpoint and why), or ``None``: a warning while it lasts.
    source_warning: str | None = None
    #: What the station says of the images its source hands again after they were finished or refused (a plugin's
    #: ``finish`` that did not take one away: passed over, neither inspected nor told again), while it does; or
    #: ``None``. A warning: such an image stays in the source, and its author must fix the plugin.
    handed_again: str | None = None
    #: ``(sink, label, began)`` of each sink whose delivery in progress has not returned for
    #: :data:`~eagle_iad.station.overdue.HUNG_DELIVERY_S` (``label``: its kind, and a plugin's class; ``began``:
    #: seconds since the epoch): a warning while it lasts, as the queue behind it waits unseen otherwise.
    hung: tuple[tuple[str, str, float], ...] = ()

    def state(self) -> str:
        """``paused`` (by a user), ``waiting: <why>`` (the intake paused, or the source cannot take images: a
        camera's PLC trigger away), or ``running``: a station that takes no image is never said to run."""
        if self.user_paused:
            return "paused"
        if self.paused is not None:
            return f"waiting: {self.paused}"
        return "running" if self.source_warning is None else f"waiting: {self.source_warning}"


def intake_file(state_dir: Path, station: str) -> Path:
    return state_dir / INTAKE_FOLDER / f"{station}.json"


def write_intake(state_dir: Path, station: str, intake: Intake | None) -> None:
    """What a running station's process says of its intake, for ``eagle station status`` (another process) to
    read; ``None``: the station stopped. Best effort: a state folder that is full (a reason to pause) must not
    stop the station, so a failure to write is ignored (the log says why the intake paused)."""
    path = intake_file(state_dir, station)
    try:
        if intake is None:
            path.unlink(missing_ok=True)
            return
        path.parent.mkdir(exist_ok=True)
        atomic_write_text(path, json.dumps({"pid": os.getpid(), "paused": intake.paused, "since": intake.since,
                                            "user_paused": intake.user_paused,
                                            "unchecked": [list(one) for one in intake.unchecked],
                                            "unreached": [list(one) for one in intake.unreached],
                                            "duplicates": intake.duplicates,
                                            "last_duplicate": intake.last_duplicate,
                                            "duplicate_seconds": [list(one) for one in intake.duplicate_seconds],
                                            "ignored": intake.ignored, "last_ignored": intake.last_ignored,
                                            "ignored_seconds": [list(one) for one in intake.ignored_seconds],
                                            "file_sha256": intake.file_sha256, "sinks": list(intake.sinks),
                                            "replaced": intake.replaced, "last_replaced": intake.last_replaced,
                                            "replaced_seconds": [list(one) for one in intake.replaced_seconds],
                                            "source_warning": intake.source_warning,
                                            "handed_again": intake.handed_again,
                                            "hung": [list(one) for one in intake.hung]}),
                          )  # fmt: skip
    except OSError:
        pass


def read_intake(state_dir: Path, station: str) -> Intake | None:
    """What the process running ``station`` last said of its intake; ``None``: no process runs it (none wrote
    the file, or the one that did has ended, a kill included)."""
    try:
        data = json.loads(intake_file(state_dir, station).read_bytes())
        pid = int(data["pid"])
        os.kill(pid, 0)
    except PermissionError:  # a process of another user: alive
        pass
    except (OSError, ValueError, KeyError, TypeError):
        return None
    paused, since = data.get("paused"), data.get("since")
    duplicates = data.get("duplicates")
    last = data.get("last_duplicate")
    last_duplicate = (str(last[0]), str(last[1])) if isinstance(last, list) and len(last) == 2 else None
    ignored, last_ignored = data.get("ignored"), data.get("last_ignored")
    file_sha256, sinks = data.get("file_sha256"), data.get("sinks")
    replaced, last_replaced = data.get("replaced"), data.get("last_replaced")
    source_warning, handed_again = data.get("source_warning"), data.get("handed_again")
    return Intake(str(paused) if paused is not None else None, float(since) if isinstance(since, int | float) else None,
                  data.get("user_paused") is True, _sink_warnings(data.get("unchecked")),
                  _sink_warnings(data.get("unreached")), duplicates if isinstance(duplicates, int) else 0,
                  last_duplicate, _seconds(data.get("duplicate_seconds")),
                  ignored if isinstance(ignored, int) else 0,
                  last_ignored if isinstance(last_ignored, str) else None,
                  _seconds(data.get("ignored_seconds")), file_sha256 if isinstance(file_sha256, str) else None,
                  tuple(str(sink) for sink in sinks) if isinstance(sinks, list) else (),
                  replaced if type(replaced) is int else 0,
                  last_replaced if isinstance(last_replaced, str) else None,
                  _seconds(data.get("replaced_seconds")),
                  source_warning=source_warning if isinstance(source_warning, str) else None,
                  handed_again=handed_again if isinstance(handed_again, str) else None,
                  hung=_sink_warnings(data.get("hung")))  # fmt: skip


def file_changed(intake: Intake | None, digest: str, path: Path) -> str | None:
    """The status' warning when the stations file ``path`` (its SHA-256 now: ``digest``) is not the one the process
    running the station started with, or ``None``. What the status shows of the sinks is then the file's, not what
    runs: the warning names the sinks that do."""
    if intake is None or intake.file_sha256 is None or intake.file_sha256 == digest:
        return None
    runs = ", ".join(intake.sinks) or "none"
    return (f"{path.name} changed since the running process started with it (it runs the sinks {runs}); restart it "
            "to apply the change (SIGTERM, then start again: nothing is lost); the sinks and figures below are "
            "of the file as it is now")  # fmt: skip


def _orphaned(db: Connection, station: str, sinks: set[str]) -> list[str]:
    """A warning per sink name that ``station``'s outbox still owes deliveries to but that is none of its ``sinks``
    (removed from its stations file, or by a change before they were dropped with it): they wait for no courier,
    and the sink figures list only the sinks the station has, so without this nothing would show them (a
    delete refused for them would name pending deliveries no status shows)."""
    owed: dict[str, list[int]] = {}
    for sink_name, state, count in db.execute(
        "SELECT sink, state, COUNT(*) FROM outbox WHERE station = ? AND state IN ('pending', 'dead') GROUP BY sink, "
        "state ORDER BY sink", (station,),
    ).fetchall():  # fmt: skip
        if str(sink_name) not in sinks:
            owed.setdefault(str(sink_name), [0, 0])[0 if state == "pending" else 1] += int(count)
    return [f"sink {sink_name!r}, which this station no longer has, is still owed {deliveries(pending + dead)} "
            f"({pending} pending, {dead} dead letter{'' if dead == 1 else 's'}); they go nowhere"
            for sink_name, (pending, dead) in owed.items()]  # fmt: skip


def _sink_warnings(listed: Any) -> tuple[tuple[str, str, float], ...]:
    """The ``(sink, why, since)`` triples of an intake file's list (one not such, from a damaged file: skipped)."""
    return tuple((str(one[0]), str(one[1]), float(one[2])) for one in listed or ()
                 if isinstance(one, list) and len(one) == 3 and isinstance(one[2], int | float))  # fmt: skip


#: The folder of :data:`INTAKE_FOLDER` where a station keeps the place of an image its history refused to store.
OWED_FOLDER = "owed"


@dataclass(frozen=True)
class OwedFiling:
    """An image put away whose place the history could not store (the database locked, full or away): its
    record's content hash, id, the place it went, and whether this was the image's first filing (not a repeat
    of a content already inspected, whose record keeps its place). A refusal's too: its key as ``record_id``, and
    no content hash (``""``) for a file that could not be read."""

    digest: str
    record_id: str
    at: str
    first: bool
    #: The place planned for the image when it was stored (the intake's ``moved_to`` until a filing is stored; the
    #: row shared by the files not read has none): a restart applies the file only while the history still says
    #: that, or still holds the record's rows (``None``: a file written before this was kept; only held rows then
    #: make it apply).
    planned: str | None = None


def owed_file(state_dir: Path, station: str) -> Path:
    return state_dir / INTAKE_FOLDER / OWED_FOLDER / f"{station}.json"


def write_owed(state_dir: Path, station: str, owed: OwedFiling) -> None:
    """Keep ``owed`` where a restart finds it: beside the station's state file, not in the history, which is
    what just refused it. Written atomically (fsynced, then renamed), so a kill leaves the previous file or
    this one, never half of it; only the process holding the station's lock runs it, so one writer at a time.
    Raises :class:`OSError` (the state folder full): the caller says so, and a restart falls back on finding
    the image by its content. The folder is fsynced after the rename: a power loss right after must not lose
    the file the history could not take."""
    path = owed_file(state_dir, station)
    atomic_write_text(path, json.dumps({"station": station, "digest": owed.digest, "record_id": owed.record_id,
                                        "at": owed.at, "first": owed.first, "planned": owed.planned}),
                      durable=True)  # fmt: skip


def read_owed(state_dir: Path, station: str) -> OwedFiling | None:
    """The filing ``station`` still owes its history (a run stopped before the history took it), or ``None``.
    Raises :class:`ValueError` for a file that is not one this module wrote (the caller says so and goes on
    without it: the restart then finds the image by its content, as without the file)."""
    path = owed_file(state_dir, station)
    try:
        data = json.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: cannot be read: {exc}") from None
    fields = ("record_id", "at")
    if (not isinstance(data, dict) or data.get("station") != station or not isinstance(data.get("first"), bool)
            or not isinstance(data.get("digest"), str)
            or not all(isinstance(data.get(key), str) and data[key] for key in fields)):  # fmt: skip
        raise ValueError(f"{path}: not an owed filing of station {station!r}")
    planned = data.get("planned")
    return OwedFiling(data["digest"], data["record_id"], data["at"], data["first"],
                      planned if isinstance(planned, str) and planned else None)  # fmt: skip


def forget_owed(state_dir: Path, station: str) -> None:
    """The history stored the owed place: the file goes (raises :class:`OSError` if it cannot be removed)."""
    owed_file(state_dir, station).unlink(missing_ok=True)


def open_read_only(database: Path | str) -> Connection:
    """A connection that reads the history: SQLite read-only (the running station keeps writing), or the
    shared database a history URL names."""
    backend = open_backend(database)
    if isinstance(backend, SqliteHistory):
        return SqliteConnection(sqlite3.connect(f"file:{backend.path}?mode=ro", uri=True))
    return backend.connect()


def counts_files(database: Path | str, db: Connection) -> bool:
    """Whether the history's intake counts each refused file (``station_intake.files``, of no version of its own):
    not yet in a history a reader opened before its upgrade (an older ``eagle station run`` still running, a
    PostgreSQL before ``eagle db upgrade``), where each refused content counts one, as it did."""
    return "files" in open_backend(database).columns(db, "station_intake")


@dataclass(frozen=True)
class StationFacts:
    """What the figures need to know of a station besides its tables: from its running configuration, or
    (a station another replica runs) from the spec kept in the history."""

    name: str
    category: str
    source: str
    #: Images waiting in its source (``None``: not visible from this process).
    backlog: int | None
    #: ``(name, kind)`` of each sink.
    sinks: list[tuple[str, str]]
    backlog_limit: int
    deadline_s: float
    #: Why the backlog could not be seen here (the hot folder gone), when it could not.
    backlog_error: str | None = None
    #: How its intake is (``None``: not known here, or not running).
    intake: Intake | None = None
    #: Whether ``backlog_error`` says the folder is gone (none waiting), not that images may wait unseen.
    backlog_gone: bool = True
    #: What requeues its dead letters where it runs, as the dead-letter warning names it: ``eagle station retry``
    #: for a stations file's station; a station of the service (:func:`service_retry`) is out of that command's
    #: reach, which reads a stations file.
    retry: str = "eagle station retry"
    #: Its ``duplicates`` (:attr:`StationConfig.duplicates`): whether a repeated content is told to the sinks.
    duplicates: str = DEFAULT_DUPLICATES
    #: Whether it runs somewhere (here, or on another replica): where ``backlog`` is ``None`` the warnings then say
    #: the backlog is another replica's to see. ``False``: a kept station not started anywhere (a plugin not
    #: loaded, a newer check refusing its spec), whose state says why; it has no backlog anyone sees.
    runs: bool = True

    @classmethod
    def of(cls, config: StationConfig, intake: Intake | None = None) -> StationFacts:
        backlog: int | None = None
        error: str | None = None
        is_gone = True
        try:
            backlog = config.source.backlog()
        except OSError as exc:  # the hot folder gone (unmounted, deleted): say so, not a traceback or a 500
            error = unseen(exc)
            is_gone = gone(exc, getattr(config.source, "folder", None))
        except Exception as exc:  # a plugin source's bug: the figures must still answer
            error = f"{type(exc).__name__}: {exc}"
            is_gone = False
        return cls(config.name, config.category, config.source.describe(), backlog,
                   [(s.sink.name, s.sink.kind) for s in config.sinks], config.backlog_limit,
                   config.deadline_s, error, intake, is_gone,
                   duplicates=getattr(config, "duplicates", DEFAULT_DUPLICATES))  # fmt: skip


def service_retry(name: str) -> str:
    """What requeues the dead letters of station ``name`` of the service: the console's button, or its route."""
    return f"the console's Retry on the Stations page, or POST /v1/stations/{name}/retry,"


def station_status(
    db: Connection, config: StationConfig, intake: Intake | None = None, retry: str | None = None,
    files: bool = True,
) -> dict[str, Any]:  # fmt: skip
    """One station's figures (the JSON ``eagle station status`` prints); ``intake``: how its intake is, as the
    process running it says; ``retry``: what requeues its dead letters there (see :attr:`StationFacts.retry`);
    ``files``: see :func:`station_figures`."""
    facts = StationFacts.of(config, intake)
    return station_figures(db, facts if retry is None else replace(facts, retry=retry), files)


def _age(db: Connection, record_id: str, payload: str, now: float) -> tuple[str, float] | None:
    """When the outbox row of ``record_id`` (its ``payload``) was stored (ISO 8601, as the history has it) and how
    many seconds ago. A verdict's is its record's time; a refusal has no record, and its intake row may be shared
    (the files not read share one, rewritten at each refusal), so its time is the one its payload says, written
    once with its rows (a refusal stored again keeps them as they are)."""
    if record_id.startswith(REFUSED_PREFIX):
        try:
            said = refusal(json.loads(payload))
        except (ValueError, AttributeError):  # not JSON, or not an object
            return None
        stored = None if said is None else said.get("time")
    else:
        row = db.execute("SELECT time FROM inspections WHERE id = ?", (record_id,)).fetchone()
        stored = None if row is None else row[0]
    if stored is None:
        return None
    try:
        return str(stored), now - datetime.fromisoformat(str(stored)).timestamp()
    except ValueError:
        return None


def _latencies(db: Connection, name: str, sinks: bool) -> tuple[np.ndarray, np.ndarray]:
    """The end-to-end latencies (seconds) of the last :data:`LATENCY_WINDOW` images of station ``name`` whose
    deliveries all ended (whose verdict was stored, without ``sinks``), and when each ended (seconds since the
    epoch): the most recent first."""
    if sinks:
        rows = db.execute(
            "SELECT MAX(o.delivered) - i.appeared, MAX(o.delivered) FROM station_intake i JOIN outbox o "
            "ON o.station = i.station AND o.record_id = i.record_id WHERE i.station = ? AND i.state = 'done' "
            "GROUP BY i.record_id, i.appeared HAVING SUM(CASE WHEN o.state <> 'delivered' THEN 1 ELSE 0 END) = 0 "
            "ORDER BY MAX(o.delivered) DESC LIMIT ?",
            (name, LATENCY_WINDOW),
        ).fetchall()
    else:
        rows = db.execute(
            "SELECT time - appeared, time FROM station_intake WHERE station = ? AND state = 'done' ORDER BY time DESC "
            "LIMIT ?", (name, LATENCY_WINDOW),
        ).fetchall()  # fmt: skip
    rows = [row for row in rows if row[0] is not None and row[1] is not None]
    return np.array([float(row[0]) for row in rows]), np.array([float(row[1]) for row in rows])


def station_figures(
    db: Connection, config: StationFacts, files: bool = True, now: float | None = None
) -> dict[str, Any]:
    """One station's figures from its tables and ``config``; ``files``: the intake has ``station_intake.files``
    (:func:`counts_files`; a history not upgraded yet has not); ``now``: the time they are of (seconds since the
    epoch; the clock's, unless a test gives one)."""
    name = config.name
    now = time.time() if now is None else now

    def one(sql: str, *params: Any) -> Any:
        return db.execute(sql, params).fetchone()[0]

    inspected = int(one("SELECT COUNT(*) FROM station_intake WHERE station = ? AND state = 'done'", name))
    # files refused, each counted (three empty files are three, though one content: StationTables.write_failed)
    failed = int(one(f"SELECT {'COALESCE(SUM(files), 0)' if files else 'COUNT(*)'} FROM station_intake "
                     "WHERE station = ? AND state = 'failed'", name))  # fmt: skip
    recent = int(one("SELECT COUNT(*) FROM station_intake WHERE station = ? AND time >= ?", name, now - RATE_WINDOW_S))
    latencies, ended = _latencies(db, name, bool(config.sinks))
    latency = {f"p{q}": round(float(np.percentile(latencies, q)), 3) for q in (50, 95, 99)} if latencies.size else None
    sinks: dict[str, dict[str, Any]] = {}
    for sink_name, kind in config.sinks:
        counts = dict(db.execute("SELECT state, COUNT(*) FROM outbox WHERE station = ? AND sink = ? GROUP BY state",
                                 (name, sink_name)).fetchall())  # fmt: skip
        error = db.execute(
            "SELECT last_error FROM outbox WHERE station = ? AND sink = ? AND last_error IS NOT NULL "
            "ORDER BY seq DESC LIMIT 1", (name, sink_name),
        ).fetchone()  # fmt: skip
        pending = int(counts.get("pending", 0))
        waited = None  # how long the oldest delivery still owed has waited: what an alert on a stuck sink wants
        if pending:
            oldest = db.execute("SELECT record_id, payload FROM outbox WHERE station = ? AND sink = ? AND state = "
                                "'pending' ORDER BY seq LIMIT 1", (name, sink_name)).fetchone()  # fmt: skip
            age = None if oldest is None else _age(db, str(oldest[0]), str(oldest[1]), now)
            waited = None if age is None else round(max(0.0, age[1]), 3)
        sinks[sink_name] = {
            "kind": kind,
            "pending": pending,
            "delivered": int(counts.get("delivered", 0)),
            "dead_letters": int(counts.get("dead", 0)),
            "last_error": None if error is None else error[0],
            "oldest_pending_s": waited,
        }
    failing = []  # sinks whose undelivered rows wait behind a failed try: name them, how many, how long
    failing_sinks: set[str] = set()
    for sink_name, figures in sinks.items():
        if not figures["pending"]:
            continue
        head = db.execute(
            "SELECT record_id, last_error, attempts FROM outbox WHERE station = ? AND sink = ? AND state = 'pending' "
            "AND attempts > 0 AND last_error IS NOT NULL ORDER BY seq LIMIT 1", (name, sink_name),
        ).fetchone()  # fmt: skip
        if head is None:
            continue
        oldest = db.execute("SELECT record_id, payload FROM outbox WHERE station = ? AND sink = ? AND state = "
                            "'pending' ORDER BY seq LIMIT 1", (name, sink_name)).fetchone()  # fmt: skip
        age = None if oldest is None else _age(db, str(oldest[0]), str(oldest[1]), now)
        count = figures["pending"]
        since = "" if age is None else f", the oldest stored {duration(age[1])} ago ({age[0]})"
        tries = int(head[2])  # the head of the line: the rows behind it wait for it (their order is kept)
        failing_sinks.add(sink_name)
        failing.append(f"sink {sink_name}: {deliveries_wait(count)}{since}; "
                       f"the first in line tried {tries} time{'' if tries == 1 else 's'}; "
                       f"last error: {head[1]}")  # fmt: skip
    last = db.execute(
        "SELECT name, record_id, time FROM station_intake WHERE station = ? AND state = 'done' ORDER BY time DESC "
        "LIMIT 1", (name,),
    ).fetchone()  # fmt: skip
    last_verdict = None
    if last is not None:
        decision = db.execute("SELECT decision, score FROM inspections WHERE id = ?", (last[1],)).fetchone()
        stored = None if last[2] is None else float(last[2])  # seconds since the epoch (the console reads them)
        last_verdict = {"image": last[0], "record_id": last[1], "time": stored,
                        "time_iso": None if stored is None else iso_time(stored),
                        "decision": None if decision is None else decision[0],
                        "score": None if decision is None else decision[1]}  # fmt: skip
    backlog = config.backlog or 0
    warnings = []
    intake = config.intake
    if intake is not None and intake.paused is not None:
        since = "" if intake.since is None else f" for {duration(now - intake.since)}"
        warnings.append(f"intake paused{since}: {intake.paused}; retried every {PAUSE_RETRY_S:g} s")
    if config.backlog_error is not None:
        then = "counted as none waiting" if config.backlog_gone else "images may wait there unseen"
        warnings.append(f"no backlog visible ({config.backlog_error}); {then}")
    elif config.backlog is None and config.runs:
        warnings.append("backlog not visible here: the station runs on another replica (its figures are shared)")
    if intake is not None and intake.source_warning is not None:
        warnings.append(f"source: {intake.source_warning}")
    if intake is not None and intake.handed_again is not None:
        warnings.append(intake.handed_again)
    lately = f"in the last {duration(RECENT_S)}"
    if intake is not None and (count := within(intake.ignored_seconds, now)):  # found lately: a count since the
        last = "" if intake.last_ignored is None else f", the last: {intake.last_ignored}"  # start never clears
        warnings.append(f"{count} file{'' if count == 1 else 's'} found in the source {lately} that the station "
                        f"ignores (not taken as images){last}; the log names each")  # fmt: skip
    if intake is not None and (count := within(intake.replaced_seconds, now)):  # lately: see RECENT_S
        last = "" if intake.last_replaced is None else f" (the last: {intake.last_replaced})"
        warnings.append(f"{count} file{'' if count == 1 else 's'} {lately} replaced under their name by another file "
                        f"before the station took them{last}: each lost, never inspected, and no sink told; a writer "
                        "that renames frames onto one name needs a smaller settle_s, or a name per frame")  # fmt: skip
    if backlog > config.backlog_limit:
        warnings.append(f"backlog {backlog} is over the limit {config.backlog_limit}")
    # over the images delivered lately, not the figures' last 1,000: one outage long past must not warn for hours
    fresh = latencies[ended >= now - RECENT_S]
    latency_recent = None
    if fresh.size:
        p95 = round(float(np.percentile(fresh, 95)), 3)
        latency_recent = {"p95": p95, "images": int(fresh.size), "window_s": RECENT_S}
        if p95 > config.deadline_s:
            count = fresh.size
            warnings.append(f"p95 latency {p95:g} s over the last {duration(RECENT_S)} ({count} image"
                            f"{'' if count == 1 else 's'}) is over the deadline {config.deadline_s:g} s")  # fmt: skip
    dead = sum(s["dead_letters"] for s in sinks.values())

    def undelivered_since(sink_name: str, since: float) -> bool:
        delivered = one("SELECT MAX(delivered) FROM outbox WHERE station = ? AND sink = ?", name, sink_name)
        return delivered is None or float(delivered) < since

    for sink_name, why, checked in () if intake is None else intake.unchecked:  # until a delivery since
        if undelivered_since(sink_name, checked):
            warnings.append(f"sink {sink_name}: not checked at start: {why}; its first delivery tells")
    # a sink not reached at start, until it delivers; once a delivery to it failed, its failing line says more
    for sink_name, why, checked in () if intake is None else intake.unreached:
        if sink_name not in failing_sinks and undelivered_since(sink_name, checked):
            warnings.append(f"sink {sink_name}: not reached at start: {why}; verdicts wait in the outbox until it is "
                            "reachable")  # fmt: skip
    if intake is not None and (count := within(intake.duplicate_seconds, now)):  # lately: see RECENT_S
        last = (
            ""
            if intake.last_duplicate is None
            else f" (the last: {intake.last_duplicate[0]}, as record {intake.last_duplicate[1]})"
        )
        warnings.append(f"{count} file{'' if count == 1 else 's'} {lately} had the content of an image already "
                        f"inspected{last}: put away, not inspected again; "
                        + ("told to the sinks as refused" if config.duplicates == "refuse"
                           else "no new verdict sent to any sink (duplicates = \"skip\")"))  # fmt: skip
    for sink_name, label, began in () if intake is None else intake.hung:  # a deliver that does not return
        behind = max(0, sinks[sink_name]["pending"] - 1) if sink_name in sinks else 0
        waiting = f"{deliveries_wait(behind)} behind it" if behind else "deliveries stored meanwhile wait behind it"
        warnings.append(f"sink {sink_name!r} ({label}): one delivery has not returned for {duration(now - began)}; "
                        f"{waiting} (its deliver must return or raise within its own timeout)")  # fmt: skip
    warnings += failing
    warnings += _orphaned(db, name, {sink_name for sink_name, _ in config.sinks})
    if dead:  # with why, sink by sink: what the operator must fix before a retry is any use
        given_up: list[str] = []
        for sink_name, figures in sinks.items():
            if not figures["dead_letters"]:
                continue
            last = db.execute(
                "SELECT last_error FROM outbox WHERE station = ? AND sink = ? AND state = 'dead' AND last_error IS NOT "
                "NULL ORDER BY seq DESC LIMIT 1", (name, sink_name),
            ).fetchone()  # fmt: skip
            error = "" if last is None else f", the last given up on: {last[0]}"
            given_up.append(f"sink {sink_name}: {figures['dead_letters']}{error}")
        warnings.append(f"{dead} dead letter{'' if dead == 1 else 's'} ({config.retry} requeues them)"
                        + "".join(f"; {one}" for one in given_up))  # fmt: skip
    return {
        "station": name,
        "category": config.category,
        "source": config.source,
        "inspected": inspected,
        "failed": failed,
        "backlog": backlog,
        "images_per_s": round(recent / RATE_WINDOW_S, 3),
        "latency_s": latency,
        "latency_images": int(latencies.size),
        "latency_recent_s": latency_recent,
        "last_verdict": last_verdict,
        "sinks": sinks,
        "duplicates": None if intake is None else intake.duplicates,
        "ignored": None if intake is None else intake.ignored,
        "replaced": None if intake is None else intake.replaced,
        "warnings": warnings,
    }
