"""The stations ``eagle station run`` runs, published in the history (``station_runs``) so every replica lists them.

Why: such a station's state, backlog, sinks and warnings were seen only with ``eagle station status`` on the
machine running it, so a plant admin watching one console could not see that a line's station stopped. Now the
command writes each station's figures (what ``eagle station status`` shows) and its state into the history every
:data:`HEARTBEAT_S` and at each change of state, with who runs it (host, process id, the stations file) and a
heartbeat time; a clean stop marks the station stopped. A replica sharing the history lists these rows read-only.

The heartbeat is written and judged on the *database's* clock (:attr:`HistoryBackend.clock`): the runner's machine
and the replica's may disagree by minutes, and a station must not look alive, or silent, because of it. A row
whose heartbeat is older than :data:`NOT_SEEN_AFTER_S` (a process killed, a machine off, its network down) is
shown as ``not seen since <time>``, never as running.

A row is written only while this process holds the station's lock (with a shared history another process may hold
it after a database restart, and it writes the row then); the stop marks only the row this process wrote.
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from eagle_iad.record import iso_time
from eagle_iad.station.status import duration, station_status

if TYPE_CHECKING:
    from eagle_iad.service.store import InspectionStore


class Stations(Protocol):
    """What the publisher needs of :class:`~eagle_iad.station.runner.StationManager` (named so, not imported: the
    runner imports this module)."""

    def all(self) -> list[Any]: ...


_LOG = logging.getLogger("eagle_iad.station")

#: Seconds between two heartbeats of ``eagle station run`` (each with every station's figures).
HEARTBEAT_S = 5.0
#: Seconds without a heartbeat after which a station is shown as ``not seen since <time>``: six heartbeats, so a
#: busy database or a slow look at a hot folder does not make a live station flap.
NOT_SEEN_AFTER_S = 30.0
#: Seconds between the looks at each station's state, so a change (paused, waiting, running again) is written at
#: once rather than at the next heartbeat.
STATE_LOOK_S = 0.25


class _Reader:
    """The store's own connection as a reader of station figures (:func:`station_status` takes a connection)."""

    def __init__(self, store: InspectionStore) -> None:
        self._store = store

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return _Rows(self._store.read(sql, params))

    def close(self) -> None:
        """Nothing to close: the connection is the store's."""


class _Rows:
    def __init__(self, rows: list[tuple[Any, ...]]) -> None:
        self._rows = rows

    def fetchone(self) -> Any:
        return self._rows[0] if self._rows else None

    def fetchall(self) -> list[Any]:
        return list(self._rows)


def hide_roots(value: Any, roots: Sequence[str | Path | None]) -> Any:
    """``value`` (figures, a message) with every path under one of ``roots`` made relative to it (the root itself:
    ``.``), as the API shows paths: so a viewer key does not learn the folders of the machine that runs a station.
    The longest root first, and only at a path's boundary (``/srv/eagle`` leaves ``/srv/eagle2`` alone)."""
    if isinstance(value, dict):
        return {key: hide_roots(item, roots) for key, item in value.items()}
    if isinstance(value, list):
        return [hide_roots(item, roots) for item in value]
    if not isinstance(value, str):
        return value
    text = value
    named = {str(root) for root in roots if root is not None}
    for root in sorted((root for root in named if root not in ("", "/")), key=len, reverse=True):  # longest first
        text = re.sub(re.escape(root) + r"(/|(?![^\s'\"(),;]))", lambda m: "" if m.group(1) == "/" else ".", text)
    return text


class Publisher(threading.Thread):
    """Writes the figures of each station of ``manager`` into ``station_runs``: every :data:`HEARTBEAT_S`, and at
    once when a station's state changes. Best effort: a history away (a restart) is tried again at the next
    beat, and a failure never stops a station (its lines in the log say what is wrong).

    ``roots``: the folders of this machine (the data root, state and models folders, the stations file's folder)
    that the published figures show relative to (:func:`hide_roots`): every replica's viewers read them, and the
    replica can only hide its own folders, not this machine's."""

    def __init__(self, store: InspectionStore, manager: Stations, file: Path,
                 owns: dict[str, Callable[[], bool]] | None = None, every_s: float = HEARTBEAT_S,
                 roots: Sequence[str | Path | None] = ()) -> None:  # fmt: skip
        super().__init__(name="eagle-station-heartbeat", daemon=True)
        self.store = store
        self.manager = manager
        self.file = str(file.resolve())
        self.owns = owns
        self.every_s = every_s
        self.roots = list(roots)
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self.started = time.time()
        self._stop_event = threading.Event()
        self._states: dict[str, str] = {}
        self._failing = False

    def run(self) -> None:
        last = 0.0
        while not self._stop_event.is_set():
            states = {running.name: running.state() for running in self.manager.all()}
            if states != self._states or time.monotonic() - last >= self.every_s:
                self.publish(states)
                last = time.monotonic()
            self._stop_event.wait(STATE_LOOK_S)

    def publish(self, states: dict[str, str] | None = None) -> None:
        """One heartbeat: each station's figures and state, as this process sees them now."""
        states = {running.name: running.state() for running in self.manager.all()} if states is None else states
        for running in self.manager.all():
            name = running.name
            if self.owns is not None and not self.owns[name]():  # another process may run it now: its row
                continue
            try:
                figures = station_status(_Reader(self.store), running.runner.config, running.runner.intake())
                figures = hide_roots(figures, self.roots)
                self._write(name, states.get(name, running.state()), figures)
            except Exception as exc:  # the history away: the next beat tries again; said once, not each beat
                if not self._failing:
                    _LOG.warning("eagle station %s: its status could not be published in the history (%s); the "
                                 "replicas show it as not seen until it is, tried every %g s", name, exc,
                                 self.every_s)  # fmt: skip
                self._failing = True
                continue
            if self._failing:
                _LOG.info("eagle station %s: its status is published in the history again", name)
                self._failing = False
        self._states = states  # a failed write is tried again at the next beat

    def _write(self, name: str, state: str, figures: dict[str, Any]) -> None:
        """Upsert ``name``'s row; never over a row this very process (host, pid, start time) marked stopped: a
        heartbeat still blocked in the history when :meth:`halt` gave up waiting would otherwise land after
        :meth:`stopped` and show the station running (then "not seen") instead of stopped."""
        clock = self.store.backend.clock
        with self.store.transaction() as db:
            db.execute(
                "INSERT INTO station_runs (name, host, pid, file, state, figures, every_s, started, beat, stopped) "
                f"VALUES (?, ?, ?, ?, ?, ?, ?, ?, {clock}, NULL) ON CONFLICT (name) DO UPDATE SET host = "
                "excluded.host, pid = excluded.pid, file = excluded.file, state = excluded.state, figures = "
                "excluded.figures, every_s = excluded.every_s, started = excluded.started, beat = excluded.beat, "
                "stopped = NULL WHERE station_runs.stopped IS NULL OR station_runs.host <> excluded.host OR "
                "station_runs.pid <> excluded.pid OR station_runs.started <> excluded.started",
                (name, self.host, self.pid, self.file, state, json.dumps(figures), self.every_s, self.started),
            )  # fmt: skip

    def forget_removed(self) -> None:
        """Forget the rows of stations this file on this host ran before and no longer declares (removed from the
        file, or renamed), once stopped cleanly: a replica would list them as stopped for ever. Best effort."""
        names = [running.name for running in self.manager.all()]
        marks = ", ".join("?" for _ in names) or "''"
        try:
            with self.store.transaction() as db:
                db.execute(f"DELETE FROM station_runs WHERE host = ? AND file = ? AND stopped IS NOT NULL AND name "
                           f"NOT IN ({marks})", (self.host, self.file, *names))  # fmt: skip
        except Exception as exc:  # the history away: the rows stay listed as stopped, which they are
            _LOG.debug("stations of %s: stopped rows not forgotten (%s)", self.file, exc)

    def halt(self) -> None:
        """No more heartbeats (before the stations stop: their last state is :meth:`stopped`'s)."""
        self._stop_event.set()
        if self.is_alive():
            self.join(timeout=30)

    def stopped(self) -> None:
        """A clean stop: each row this process wrote says ``stopped`` (one another process wrote since is left).
        A heartbeat still in flight (:meth:`halt` waits 30 s) cannot undo it: :meth:`_write` leaves a row this
        process marked stopped alone."""
        if self.is_alive():
            _LOG.warning("stations of %s: a heartbeat is still being written after %g s (the history is slow); the "
                         "stop is written now and that heartbeat cannot undo it", self.file, 30.0)  # fmt: skip
        try:
            with self.store.transaction() as db:
                db.execute(f"UPDATE station_runs SET state = 'stopped', stopped = {self.store.backend.clock}, beat = "
                           f"{self.store.backend.clock} WHERE host = ? AND pid = ? AND file = ?",
                           (self.host, self.pid, self.file))  # fmt: skip
        except Exception as exc:  # the history away at the stop: the replicas show it as not seen, which it is
            _LOG.warning("stations of %s: their stop could not be written in the history (%s); the replicas show "
                         "them as not seen after %g s", self.file, exc, NOT_SEEN_AFTER_S)  # fmt: skip


@dataclass(frozen=True)
class PublishedRun:
    """A station ``eagle station run`` runs (or ran), as its row in ``station_runs`` says."""

    name: str
    host: str
    pid: int
    file: str
    #: Its state as the process said at its last heartbeat (``running``, ``paused``, ``waiting: <why>``, ``stopped``).
    said: str
    figures: dict[str, Any]
    every_s: float
    started: float
    #: The last heartbeat (seconds since the epoch, on the database's clock).
    beat: float
    #: When it was stopped cleanly (None: it was not).
    stopped: float | None
    #: Seconds since the last heartbeat, on the database's clock.
    age: float

    @property
    def silent(self) -> bool:
        """No heartbeat for longer than :data:`NOT_SEEN_AFTER_S` and not stopped cleanly: killed, or cut off."""
        return self.stopped is None and self.age > NOT_SEEN_AFTER_S

    def runner(self) -> str:
        return f"eagle station run on {self.host}"

    def state(self) -> str:
        """What a replica shows: the process's own word while it beats, ``stopped`` after a clean stop, and
        ``not seen since <time>`` once it fell silent (never ``running``: nobody knows that it is)."""
        if self.stopped is not None:
            return f"stopped: {self.runner()} stopped at {iso_time(self.stopped)}"
        if self.silent:
            return (f"not seen since {iso_time(self.beat)}: {self.runner()} (pid {self.pid}) sent no heartbeat for "
                    f"{duration(self.age)}")  # fmt: skip
        return self.said

    def warning(self) -> str | None:
        """The warning a silent or stopped station adds to its figures (which are as of its last heartbeat)."""
        if self.stopped is not None:
            return (f"not running: {self.runner()} ({self.file}) was stopped at {iso_time(self.stopped)}; these "
                    "figures are as of then")  # fmt: skip
        if self.silent:
            return (f"not seen for {duration(self.age)}: {self.runner()} (pid {self.pid}, {self.file}) sent no "
                    f"heartbeat since {iso_time(self.beat)} (expected every {self.every_s:g} s): it was killed, its "
                    "machine is down or cannot reach the history; these figures are as of then")  # fmt: skip
        return None

    def refusal(self, action: str) -> str:
        """Why ``action`` through the API is refused, and what does it instead (where the station runs)."""
        instead = {
            "retry": f"run eagle station retry {self.file} --station {self.name} on {self.host}",
            "change": f"change it in {self.file} on {self.host} and restart eagle station run there",
            "delete": f"remove it from {self.file} on {self.host} and restart eagle station run there",
            "pause": f"stop eagle station run {self.file} on {self.host} (SIGTERM; images wait in its hot folder) and "
            "start it again to resume",
            "trigger": f"trigger it in the process that runs it, on {self.host}",
        }.get(action, f"do it where it runs: {self.file} on {self.host}")
        return (f"station {self.name!r} is run by eagle station run {self.file} on {self.host} (pid {self.pid}), "
                f"not by this service: read-only here; {instead}")  # fmt: skip


def published(store: InspectionStore, name: str | None = None) -> list[PublishedRun]:
    """The rows of ``station_runs`` (only ``name``'s, when given), by name (the store's open made the table)."""
    where = "" if name is None else " WHERE name = ?"
    rows = store.read(f"SELECT name, host, pid, file, state, figures, every_s, started, beat, stopped, "
                      f"{store.backend.clock} - beat FROM station_runs{where} ORDER BY name",
                      () if name is None else (name,))  # fmt: skip
    found = []
    for row in rows:
        try:
            figures = json.loads(row[5])
        except ValueError:  # a damaged row: shown with no figures rather than failing the list
            figures = {}
        found.append(PublishedRun(str(row[0]), str(row[1]), int(row[2]), str(row[3]), str(row[4]),
                                  figures if isinstance(figures, dict) else {}, float(row[6]), float(row[7]),
                                  float(row[8]), None if row[9] is None else float(row[9]),
                                  float(row[10])))  # fmt: skip
    return found


def forget_run(store: InspectionStore, name: str) -> bool:
    """Remove ``name``'s row from the listings (and ``/metrics``): a station stopped cleanly that its file no longer
    runs, or one not seen for longer than :data:`NOT_SEEN_AFTER_S` (its command killed on a machine that is gone
    for good: nothing else would ever remove it, and its ``eagle_station_run_up 0`` would alert for ever). Only the
    row goes: the records, intake and outbox stay, and a command that still runs lists it again at its next
    heartbeat. False: the row was not such any more when asked again in the delete (it beat again meanwhile)."""
    clock = store.backend.clock
    with store.transaction() as db:
        gone = db.execute(f"DELETE FROM station_runs WHERE name = ? AND (stopped IS NOT NULL OR {clock} - beat > ?)",
                          (name, NOT_SEEN_AFTER_S)).rowcount  # fmt: skip
    return bool(gone)
