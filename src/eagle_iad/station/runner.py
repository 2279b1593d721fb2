"""Running stations: take each complete image, inspect it through the service's one path, store the verdict
with its deliveries, put the image away, and deliver in the background until every sink has it.

The order of the steps is what makes a crash harmless:

1. read the image and hash it; a hash this station already stored is not inspected again (a crash
   after step 3 left the file in place: it is only put away now);
2. inspect it with :func:`eagle_iad.service.routes_inspect.run_inspection`, the code path of an upload,
   so the record in the history is the same (plus ``station`` and ``source``);
3. in the history row's transaction, the intake row and one outbox row per sink, held (not yet due) until
   the image is put away (due at once for a camera's frame, whose planned place is final);
4. move the image to ``done/`` (or write its sidecar, the image left at its planned place), to the place
   stored in step 3 or, that name taken meanwhile, beside it (``-1``); then the place it went is stored and
   the outbox rows become due, in one
   transaction (a history refusing that transaction pauses the intake, and the place is stored first at
   the next step; meanwhile it is kept in ``<state>/stations/owed/<station>.json``, so a stop before the
   history takes it is stored first by the next run, exactly). A crash between the move and that
   transaction (or a state folder that could not keep the file): the restart finds the image by its
   content at the planned place or a ``-n`` name beside it; only an image gone from everywhere is
   delivered with its planned place.

A courier thread per sink delivers its outbox rows in order, retrying with backoff: a receiver that cannot be
reached is tried until it can (the rows behind the head wait), and a verdict the receiver refuses ends as a
dead letter (see :meth:`Retry.gives_up`). An image the station cannot read as an image goes to ``failed/`` with
the reason (one that cannot be decoded only once it stayed so a while: see :meth:`HotFolder.undecodable`), and the
refusal to every sink that takes refusals, in the same steps as a verdict (see :meth:`StationRunner._refuse_or_pause`);
anything that is not the image's fault (the disk full, the model being refitted or gone) pauses the
station's intake with a status saying why, and the image stays where it is for the next try.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, NamedTuple

from eagle_iad.atomic import sync_folder
from eagle_iad.errors import EagleError, HistoryUnavailableError, ImageError, ImageTooLargeError
from eagle_iad.history.backend import HistoryBackend, Lease
from eagle_iad.images import max_pixels
from eagle_iad.mllm.serving import ApiError
from eagle_iad.naming import printable
from eagle_iad.ranges import short_repr
from eagle_iad.record import InspectionRecord, iso_time
from eagle_iad.service.context import ServiceState
from eagle_iad.service.routes_inspect import run_inspection, upload_name
from eagle_iad.station.config import SinkConfig, StationConfig, StationsFile, file_digest
from eagle_iad.station.fleet import Publisher
from eagle_iad.station.outbox import (
    HELD,
    REFUSED_PREFIX,
    StationTables,
    intake_key,
    refusal_key,
    refusal_of,
    repeat_key,
    station_lock,
)
from eagle_iad.station.overdue import DeliveryWatch
from eagle_iad.station.parts import (
    REFUSED,
    Arrival,
    DeliveryError,
    NotChecked,
    NotPutAside,
    RefusedError,
    StationConfigError,
    retired_sink_hooks,
    sink_hook,
    source_hook,
    source_says,
)
from eagle_iad.station.recent import Recent, Seconds
from eagle_iad.station.sources.camera import Camera
from eagle_iad.station.sources.folder import FolderTakenError, HotFolder, NotAFileError, identity
from eagle_iad.station.sources.folder import open_regular as _open_image
from eagle_iad.station.status import (
    PAUSE_RETRY_S,
    Intake,
    OwedFiling,
    deliveries_wait,
    forget_owed,
    gone,
    owed_file,
    read_owed,
    unseen,
    write_intake,
    write_owed,
)
from eagle_iad.stops import checkpoint

#: An upload refused for these statuses is the image's own fault (not an image, too large): it goes to failed/.
IMAGE_FAULTS = (400, 413, 415, 422)
#: Images one station takes in a row before the next station's turn (one busy line does not starve another).
TURN = 8
#: Arrivals finished or refused this run that the station remembers, to pass over one its source hands again (a
#: plugin's ``finish`` or ``refuse`` that did not take it away): the most recent ones, so memory stays bounded.
HANDED_MEMORY = 4096
#: Arrivals handed again that one turn passes over before the next station's turn (a source that hands one without
#: end in a single poll must not hold the thread).
PASSED_PER_TURN = 1024
#: Distinct intake errors whose traceback the log shows (once each); more are said by their line only.
TRACEBACKS_SAID = 100

Log = Callable[[str], None]
#: The debug log of what a station says once, then repeats (the outbox's retries during an outage).
_LOG = logging.getLogger("eagle_iad.station")


def _stderr(line: str) -> None:
    """One line to stderr, in one write: ``print`` writes the line and its newline apart, so two threads' lines
    (a courier's and the lock check's) could run together on one line."""
    sys.stderr.write(f"{line}\n")
    sys.stderr.flush()


def _escaping(log: Log) -> Log:
    """``log`` with control characters escaped: a line names files, and a file name is the user's data (a
    newline in one must not forge a second line, nor an escape sequence act on the terminal)."""

    def escaped(line: str) -> None:
        log(printable(line))

    return escaped


def _naming(station: str, log: Log) -> Log:
    """``log`` for a station's source: its lines, ``eagle station: camera ...: ...``, name the station as the
    station's own lines do (a served log of several stations, or a PLC away, said which station it stopped)."""
    bare = "eagle station: "

    def named(line: str) -> None:
        log(f"eagle station {station}: {line[len(bare) :]}" if line.startswith(bare) else line)

    return named


def source_named(source: object) -> str:
    """``source 'zipdrop' (plant_parts.ZipDrop)``: a source as a line names it, by its kind and its class, so a
    plugin's author finds the class at fault (its own messages need not say who they are)."""
    kind = type(source)
    return f"source {getattr(kind, 'kind', '?')!r} ({kind.__module__}.{kind.__qualname__})"


class SourceError(Exception):
    """A source broke its contract in a way the station can name (its ``poll`` yielded something that is no
    :class:`~eagle_iad.station.parts.Arrival`): the intake pauses on this message, which names the source; no
    traceback is logged, the line says all there is to fix."""


def _article(word: str) -> str:
    return f"an {word}" if word[:1].lower() in "aeiou" else f"a {word}"


def _raised_by(exc: BaseException, source: object) -> bool:
    """Whether ``exc`` was raised in the module of ``source``'s class or of a class it derives from (a plugin's
    subclass of the hot folder): its ``poll``, ``finish``, ``refuse``...; the intake's line then names the source.
    Why the traceback's frames: a source is called from many places of the intake, and wrapping each call would put
    the same try in every one."""
    skipped = {"builtins", "typing", __name__, Arrival.__module__}  # the protocol's module, and the station's own
    modules = {kind.__module__ for kind in type(source).__mro__} - skipped
    files = {getattr(sys.modules.get(module), "__file__", None) for module in modules} - {None}
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename in files:
            return True
        tb = tb.tb_next
    return False


class Courier(threading.Thread):
    """Delivers one sink's outbox rows, oldest first, until told to stop."""

    def __init__(
        self, tables: StationTables, station: str, sink: SinkConfig, log: Log,
        changed: Callable[[], None] = lambda: None,
    ) -> None:  # fmt: skip
        """``changed``: called when a delivery becomes overdue or returns after it was (see :class:`DeliveryWatch`),
        so the state file the status reads says it."""
        super().__init__(name=f"eagle-station-{station}-{sink.sink.name}", daemon=True)
        self.tables = tables
        self.station = station
        self.sink = sink
        self.log = log
        #: Says a call of the sink's ``deliver`` that has not returned for HUNG_DELIVERY_S, and when it returns.
        self.watch = DeliveryWatch(station, sink.sink, log, changed)
        self.wake = threading.Event()
        self.halt = threading.Event()
        #: Set by the sink when its connection is (re)made (see :meth:`reachable`), cleared at each try: the head of
        #: the queue, waiting out the backoff of tries that could not reach the receiver, is tried at once.
        self.connected = threading.Event()
        self.last_error: str | None = None
        #: When the first of the current run of failed tries failed (``None``: the last try delivered), and
        #: how many failed since: the log says when a sink starts failing and when it delivers again, once each.
        self.failing_since: float | None = None
        self.failures = 0
        #: Failed reads of the outbox in a row (the history away), and whether it was the history that failed.
        self.outbox_failures = 0
        self.outbox_history = False
        #: Whether the sink's ``deliver`` was said to return something (once: it is counted delivered all the same).
        self._answer_said = False
        #: The look at :attr:`halt` that ends the thread and :meth:`resume` are one at a time: a resume either
        #: keeps the thread going or finds it ended (then a new courier takes over), never a thread ending after.
        self._gate = threading.Lock()
        self._ended = False
        listen = getattr(sink.sink, "when_connected", None)
        if callable(listen):  # an MQTT sink: the courier taking its queue over (resume_couriers) replaces the last
            listen(self.reachable)

    def reachable(self) -> None:
        """The sink's connection is back (called in the sink's own thread: it only sets two events): the head of the
        queue goes at once, not at the end of its backoff (capped at ``retry_max_s``, a minute by default), which
        the tries made while the receiver was away have grown. Rows still go one at a time, in order, and each try
        is counted as any other (a refusal in ``refusals``); a row whose last try the receiver refused waits its
        backoff out (see :meth:`_once`)."""
        self.connected.set()
        self.wake.set()

    def run(self) -> None:
        while True:
            with self._gate:
                if self.halt.is_set():
                    self._ended = True
                    self.watch.close()
                    return
            try:
                self._once()
            except Exception as exc:  # the history file busy or full: say so, wait, go on (never die silently)
                self.last_error = f"outbox: {type(exc).__name__}: {exc}"
                self._outbox_failed(exc)
                self.halt.wait(1.0)
            else:
                self._outbox_works()

    def _outbox_failed(self, exc: Exception) -> None:
        """Say once, as a warning, that the outbox cannot be read (the history away: a PostgreSQL outage);
        the tries after it, one a second, go to the debug log only.

        Why: a line per try and sink (110 INFO lines in 30 s of an outage) buried the log, and at INFO a
        ``--log-level warning`` service showed nothing while its line had stopped.
        """
        self.outbox_failures += 1
        if self.outbox_failures == 1:
            self.outbox_history = isinstance(exc, HistoryUnavailableError) or type(exc).__name__ == "OperationalError"
            self.log(f"eagle station {self.station}: warning: {self.sink.sink.name}: {self.last_error}; retrying "
                     "every 1 s (said again when it works)")  # fmt: skip
        else:
            _LOG.debug("eagle station %s: %s: %s; retrying in 1 s (try %d)", self.station, self.sink.sink.name,
                       self.last_error, self.outbox_failures)  # fmt: skip

    def _outbox_works(self) -> None:
        """After :meth:`_outbox_failed`: one line when the outbox is read again."""
        if not self.outbox_failures:
            return
        what = "history available again" if self.outbox_history else "works again"
        tries = self.outbox_failures
        self.outbox_failures = 0
        self.log(f"eagle station {self.station}: {self.sink.sink.name}: outbox: {what} (after {tries} failed "
                 f"tr{'ies' if tries != 1 else 'y'})")  # fmt: skip

    def resume(self) -> bool:
        """Take back a stop not yet acted on: ``True`` if the thread goes on delivering, ``False`` if it ended."""
        with self._gate:
            if self._ended:
                return False
            self.halt.clear()
            return True

    def _once(self) -> None:
        """One look at the head of the queue: deliver it when due, or wait a little."""
        name = self.sink.sink.name
        due = self.tables.head(self.station, name)
        if due is None:
            self.wake.wait(1.0)
            self.wake.clear()
            return
        wait = due.next_try - time.time()
        # the connection back: a backoff is cut short, unless the receiver refused this row's last try (its
        # last_refused, in the row: a broker that refused a message refuses it again after a reconnection, and
        # trying at once would only spend its refusals faster, towards a dead letter; read from the row, not kept
        # here, so a restart, whose connection is a reconnection too, waits it out as well; an unreachable try
        # since clears it, so a row refused once and then away for an hour does not stall the queue for its whole
        # backoff); a row held for an image not filed yet (HELD) stays held
        back = self.connected.is_set() and due.next_try < HELD and not due.last_refused
        if wait > 0 and not back:  # a backoff, or an image not filed yet: the put-away wakes it once the row is due
            self.wake.wait(min(wait, 1.0))
            self.wake.clear()
            return
        self.connected.clear()  # set again by a reconnection during this try, which is then followed at once
        deliver: Callable[[Mapping[str, Any], str], object] = self.sink.sink.deliver
        try:
            with self.watch.delivering(due.record_id):
                answered = deliver(due.payload, due.record_id)
        except Exception as exc:  # a plugin sink's bug counts as a failed try: the courier must live on
            error = str(exc) if isinstance(exc, DeliveryError) else f"{type(exc).__name__}: {exc}"
            self.last_error = error
            # refused by the receiver, or a sink's bug (anything but a DeliveryError or an OSError): counted towards
            # a dead letter; a receiver that cannot be reached is not (by default: tried until it can be)
            refused = isinstance(exc, RefusedError) or not isinstance(exc, DeliveryError | OSError)
            # (counted in the outbox row: neither a restart nor an unreachable try in between resets it)
            dead = self.tables.failed(due, error, self.sink.retry, refused=refused)
            self.failures += 1
            if self.failing_since is None:  # one line when the sink starts failing, not one per retry
                self.failing_since = time.monotonic()
                waiting = self.tables.owed(self.station, [name])
                self.log(f"eagle station {self.station}: warning: sink {name} is failing: {error}; "
                         f"{deliveries_wait(waiting)} in the outbox (retried with backoff; a line when it delivers "
                         "again)")  # fmt: skip
            if dead:
                self.log(f"eagle station {self.station}: {name} gave up on record {due.record_id} after "
                         f"{due.attempts + 1} tries ({error}); kept as a dead letter")  # fmt: skip
            return
        self.last_error = None
        self.tables.delivered(due.seq)
        if answered is not None and not self._answer_said:  # a plugin's "ok" (or False) for a delivery not made?
            self._answer_said = True
            kind = type(self.sink.sink)
            self.log(f"eagle station {self.station}: warning: sink {name} ({kind.__module__}.{kind.__qualname__}): "
                     f"its deliver() returned {short_repr(answered)}, not None; counted as delivered (said once: "
                     "deliver returns None once delivered, and raises DeliveryError to be retried or RefusedError "
                     "when the receiver refused it)")  # fmt: skip
        if self.failing_since is not None:
            took = time.monotonic() - self.failing_since
            failures, self.failing_since, self.failures = self.failures, None, 0
            waiting = self.tables.owed(self.station, [name])
            self.log(f"eagle station {self.station}: sink {name} delivers again, after {failures} failed "
                     f"tr{'y' if failures == 1 else 'ies'} over {took:.0f} s; {deliveries_wait(waiting)} in the "
                     "outbox")  # fmt: skip


def _exists(path: Path) -> bool:
    """Whether anything is at ``path`` (a link not followed); :class:`OSError` where that is unknown (EACCES, EIO)."""
    try:
        os.lstat(path)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            return False
        raise
    return True


class ProbeWarning(NamedTuple):
    """What a sink's start-up probe warned of: the log ``line``, and ``why`` for the status, where it stays a
    warning until the sink's first delivery; ``looked``: the probe looked and could not reach the receiver (or
    failed), else it could not look at all (:class:`NotChecked`)."""

    line: str
    why: str
    looked: bool


def _probe(sink: SinkConfig, live: Sequence[Any] | None = ()) -> ProbeWarning | None:
    """The sink's optional start-up look at its receiver (its ``station_probe`` hook): the warning it gives (the
    receiver unreachable now, or the look not made: :class:`NotChecked`), or ``None``. ``live``: the sinks of a run
    of this station live now (a change of it; ``None``: another replica's, not known), whose connections a
    :class:`NotChecked`'s second look must not disturb (:attr:`NotChecked.recheck`).

    A :class:`StationConfigError` (a node that does not exist, refused credentials) refuses the station, said
    after the sink's place (``station 'line-1': sink 2 (csvlog): ...``, :attr:`SinkConfig.where`) where its message
    does not start with it already (a plugin's own ``csvlog: ...``; a built-in sink names it itself), so the line
    names the station and the sink as every other refusal of one does; any other failure of a plugin's probe is
    only a warning, as an unreachable receiver is.
    """
    probe = sink_hook(sink.sink, "station_probe")  # never a plugin's own probe() (parts.RETIRED_SINK_HOOKS)
    if probe is None:
        return None
    reachable = "; verdicts wait in the outbox until it is reachable"
    try:
        try:
            why = probe()
        except NotChecked as exc:
            if exc.recheck is None:
                raise
            why = exc.recheck(live)
    except StationConfigError as exc:
        if not sink.where or str(exc).startswith(f"{sink.where}:"):
            raise
        raise StationConfigError(f"{sink.where}: {exc}") from exc
    except NotChecked as exc:
        line = (f"not checked at start: {exc}; a refusal of the sink's connection shows as the sink failing at its "
                "first delivery (in this log and the status)")  # fmt: skip
        return ProbeWarning(line, str(exc), looked=False)
    except Exception as exc:
        failed = f"the start-up check failed: {type(exc).__name__}: {exc}"
        return ProbeWarning(f"{failed}{reachable}", failed, looked=True)
    return None if why is None else ProbeWarning(f"{why}{reachable}", why, looked=True)


class StationBusyError(ApiError):
    """An earlier run of a station still inspects an image or delivers a verdict past the stop's grace: the
    station is not started (again) meanwhile, or both would take the same image."""

    def __init__(self, name: str, *, kept: bool = False) -> None:
        then = "it runs on as it was; try again in a moment" if kept else "try again in a moment"
        super().__init__(409, f"station {name!r}: its run is still finishing the image or delivery it had in hand "
                         f"when it was asked to stop (longer than the service's shutdown grace); {then}",
                         code="station_busy", headers={"Retry-After": "2"})  # fmt: skip


#: Why a station takes no image once its lock in a shared history is gone.
LOST_LOCK = "this station's lock in the history was lost (a database restart?); another process may run it now"


def uncompressed_limit() -> int:
    """Bytes of the largest file a decodable image within the pixel limit (``EAGLE_MAX_PIXELS``) can be: 16-bit RGBA
    (8 bytes a pixel) uncompressed, plus 1 MiB of headers and metadata. A file larger than that cannot be an image the
    station would inspect, so it is refused by its size before a byte of it is read."""
    return max_pixels() * 8 + 2**20


class StationRunner:
    """One station: its source, its couriers and the intake loop's state."""

    def __init__(
        self, config: StationConfig, state: ServiceState, log: Log, *, quiet: bool = False,
        live: Sequence[Any] | None = (),
    ) -> None:  # fmt: skip
        """``live``: the sinks of a run of this station live now, which its sinks' probes must not disturb (see
        :func:`_probe`)."""
        self.config = config
        self.state = state
        self.log = log = _escaping(log)
        self.quiet = quiet
        if isinstance(config.source, HotFolder | Camera):
            # its lines (a file it cannot look at, a PLC away) go where the station's go, naming the station
            config.source.log = _naming(config.name, log)
        self.tables = StationTables(state.store)
        try:
            state.experts.get(config.category)  # loads (and checks) the model now, not at the first image
        except ApiError as exc:
            raise StationConfigError(f"station {config.name!r}: category {exc.message}") from None
        source_probe = source_hook(config.source, "station_probe")
        if source_probe is not None:  # a camera's PLC trigger: a node it does not have refuses the station now
            try:
                source_probe()
            except StationConfigError as exc:  # a plugin's own words: said after the source's place, as a sink's
                where = config.source_where
                if not where or str(exc).startswith(f"{where}:") or f"station {config.name!r}" in str(exc):
                    raise
                raise StationConfigError(f"{where}: {exc}") from exc
        #: What the sinks' probes warned of at start, a receiver unreachable or not checked (logged by :meth:`start`).
        probed = [(sink.sink.name, found) for sink in config.sinks if (found := _probe(sink, live)) is not None]
        self.unreachable = [(name, found.line) for name, found in probed]
        #: What the start says of a sink's methods no longer called as a hook (a ``probe()`` of an older plugin).
        self.retired = [line for sink in config.sinks for line in retired_sink_hooks(sink.sink)]
        #: Sinks not checked at start, or whose receiver the probe could not reach, why, and since when: each a
        #: status warning until a delivery after that (a sink not reached must not read as healthy meanwhile).
        now = time.time()
        self.unchecked = tuple((name, found.why, now) for name, found in probed if not found.looked)
        self.unreached = tuple((name, found.why, now) for name, found in probed if found.looked)
        self.couriers = [Courier(self.tables, config.name, sink, log, self._say_intake) for sink in config.sinks]
        self.paused: str | None = None
        #: Paused by the user (the API's pause): see :attr:`Running.user_paused`.
        self.user_paused = False
        #: When the intake paused (seconds since the epoch), while it is.
        self.paused_since: float | None = None
        #: Inside :meth:`step` (an image taken but maybe not stored yet): not idle, whatever the backlog says.
        self.busy = False
        #: Counts each step's start (before :attr:`busy` is set) and its end (after it is cleared): a look at
        #: :meth:`idle` that a step began or ended during is not taken (see :meth:`StationManager.idle`).
        self.steps = 0
        #: The name of the image being taken now (read, inspected, put away), if any.
        self.current: str | None = None
        self._paused_until = 0.0
        self._arrivals: Iterator[Arrival] | None = None
        #: Set to stop (SIGTERM, a station removed): the image being inspected is finished, no other is started.
        self.halt = threading.Event()
        #: With a shared history: whether this process still holds the station's lock, asked before each image.
        #: A database restart ends every lock at once and another replica may take the station's at once; this
        #: process sees it here, not only at its next look at the station table (SYNC_INTERVAL_S later), so
        #: the two never take the same images meanwhile. ``None``: the station is this process's alone.
        self.owns: Callable[[], bool] | None = None
        #: Why the intake pauses once :attr:`owns` says no: set by the process holding the lock, which knows more
        #: (``eagle station run`` takes the lock back, or names who holds it now: see :class:`FileLocks`).
        self.lost_reason = LOST_LOCK
        #: Whether this runner says its pause for a lost lock and the resume after it in the log; ``False`` where the
        #: process holding the locks says them (``eagle station run``: one line each, for the intake and deliveries).
        self.lock_lines = True
        #: Set by the process holding the lock when it finds the lock lost, or its reason changed: the intake asks
        #: :attr:`owns` at its next turn, not only before the next image (the status says so while none arrives).
        self.recheck = threading.Event()
        #: The intake is paused for the lock (:meth:`_lost`), not for anything else.
        self._paused_for_lock = False
        #: Why :meth:`idle` could not see the source's backlog, as last said (said once, not every check).
        self._unseen: str | None = None
        #: How many held deliveries :meth:`idle` last said stay for the next run (the folder gone).
        self._held_said = 0
        #: Outbox rows may be held for an image that was never filed (a crash before this start, a put-away that
        #: failed): looked at after the next full poll, record by record (see :meth:`_resolve_unfiled`).
        self._unfiled = True
        #: Records whose image the source could not look at, with why as last said (one line each, not one a poll).
        self._unknown: dict[str, str] = {}
        #: An image put away whose place the history could not store (the database locked or away), stored first
        #: at each step. While it is owed no held row is released, as that would send the planned place where the
        #: image may have gone to ``-1``. Kept in a file beside the state file too (:meth:`_keep_owed`), so a
        #: restart stores that exact place first instead of looking for the image by its content (which cannot
        #: tell a copy of the same bytes from the image itself, nor find an image moved on since).
        self._owed: OwedFiling | None = None
        #: Whether :attr:`_owed` is in its file (written once per owed filing, not at every retry).
        self._owed_kept = False
        #: Whether :attr:`_owed` came from the file (an earlier run's): said in one line once stored.
        self._owed_before = False
        #: The state file is written by the API's pause and resume and by the intake thread: one at a time, each
        #: from the state as it is then (an older snapshot never lands last), and none once :meth:`stop` removed it.
        self._said = threading.Lock()
        self._stopped = False
        #: Files of a content already inspected, put away without a verdict since this start, and when lately (see
        #: Intake.duplicates).
        self.duplicates = Recent()
        self.last_duplicate: tuple[str, str] | None = None
        #: How many files the source had found it does not take when the state file was last written: it is written
        #: again when the source finds more (``eagle station status``, another process, warns of them from it).
        self._ignored_told: tuple[int, int, str | None] = (0, 0, None)
        #: Contents inspected by this run whose image could not be put away (the intake paused): the next try puts
        #: that same file away through the path of a content already inspected, and is no duplicate.
        self._unput: set[str] = set()
        #: Files that could not be decoded yet, each as it was (name, size, modification time), whose wait was said:
        #: one line when it starts, not one each time the file settles again (:meth:`_not_settled`).
        self._undecodable_said: dict[tuple[Any, ...], None] = {}
        #: Where :meth:`_put_elsewhere` last found a content put (valid right after it answered ``True``).
        self._put_at = Path()
        #: A source whose ``ignored`` says ``(count, last)`` only (a plugin's, written before the status' window):
        #: its count's growth, counted when this run sees it, and the count seen; and whether an answer it could
        #: not read was said (once).
        self._older_ignored = Recent()
        self._older_seen = 0
        self._older_lock = threading.Lock()
        self._ignored_unread = False
        #: The SHA-256 of the stations file this run started with (``eagle station run``), for the status.
        self.file_sha256: str | None = None
        #: Arrivals finished or refused this run (:meth:`_arrival_key`), with how (what the line says of them): one
        #: the source hands again is passed over, neither inspected nor told to the sinks again (see :meth:`_again`).
        #: Why: a plugin source whose ``finish`` did not take an image away handed it at every poll, and each was
        #: told to the sinks as a new refusal (11,800 in 80 s), never idle. The most recent :data:`HANDED_MEMORY`.
        self._handled: dict[tuple[Any, ...], tuple[str, str]] = {}
        #: Keys handled or passed over during the listing in progress: at its end, the others are forgotten (the
        #: source took them away, as it must), so a later file of that name and content is a new arrival again.
        self._listed: set[tuple[Any, ...]] = set()
        #: What was said of each arrival passed over (its status warning), while the source still hands it.
        self._again_said: dict[tuple[Any, ...], str] = {}
        #: Arrivals passed over in the last full listing: the source counts them in its backlog, but the station
        #: will not take them, so ``--until-idle`` does not wait for them.
        self.handed_again = 0
        #: The intake errors whose traceback was logged (once each: the intake retries every PAUSE_RETRY_S).
        self._tracebacks: set[str] = set()

    def intake(self) -> Intake:
        ignored, last_ignored, ignored_seconds = self._ignored()
        return Intake(self.paused, self.paused_since, self.user_paused, self.unchecked, self.unreached,
                      self.duplicates.total, self.last_duplicate, self.duplicates.seconds(), ignored, last_ignored,
                      ignored_seconds, self.file_sha256,
                      tuple(sink.sink.name for sink in self.config.sinks), *self._replaced(),
                      source_warning=self.source_warning(), handed_again=self._handed_again(),
                      hung=tuple(hung for courier in self.couriers if (hung := courier.watch.overdue()) is not None),
                      )  # fmt: skip

    def _handed_again(self) -> str | None:
        """The status' warning of the arrivals the source still hands after they were finished or refused (the
        last one said, and how many), or ``None``."""
        said = list(self._again_said.values())
        if not said:
            return None
        more = len(said) - 1
        others = f" (and {more} other image{'' if more == 1 else 's'} so; the log names each)" if more else ""
        return said[-1] + others

    def source_warning(self) -> str | None:
        """What the source says keeps it from taking images now (:func:`source_says`), or ``None``."""
        return source_says(self.config.source)

    def _replaced(self) -> tuple[int, str | None, Seconds]:
        """The files the source saw replaced under their name before it took them (a hot folder's ``replaced``: see
        :meth:`HotFolder.replaced`); a source that does not say: none."""
        says = getattr(self.config.source, "replaced", None)
        return says() if isinstance(self.config.source, HotFolder) and callable(says) else (0, None, ())

    def _ignored(self) -> tuple[int, str | None, Seconds]:
        """What the source says of the files it found it does not take (a hot folder's ``ignored``: how many since
        the start, the last with why, when lately); a source that does not say (or a plugin's that fails): none.

        A plugin source written before the window says ``(count, last)``: its count's growth is taken as happening
        when this run sees it (the status and the intake thread ask often), so its warning still shows and clears
        as the hot folder's; any other answer is said once in the log (it would otherwise vanish silently)."""
        says = getattr(self.config.source, "ignored", None)
        if callable(says):
            try:
                found = says()
            except Exception:  # a plugin source's own ``ignored``: the status must still answer
                return 0, None, ()
            if isinstance(found, tuple) and len(found) in (2, 3) and isinstance(found[0], int):
                last = None if found[1] is None else str(found[1])
                if len(found) == 3 and isinstance(found[2], tuple):
                    return found[0], last, found[2]
                if len(found) == 2:
                    with self._older_lock:
                        if found[0] > self._older_seen:
                            self._older_ignored.add(found[0] - self._older_seen)
                        self._older_seen = found[0]
                    return found[0], last, self._older_ignored.seconds()
            if not self._ignored_unread:
                self._ignored_unread = True
                self.log(f"eagle station {self.config.name}: warning: its source's ignored() answered "
                         f"{short_repr(found)}, not (count, last) nor (count, last, seconds): the files it does not "
                         "take are not shown in the status")  # fmt: skip
        return 0, None, ()

    def _say_ignored(self) -> None:
        """Write the state file when the source found files it does not take, or files replaced before it took them,
        since it was last written."""
        found = (self._ignored()[0], self._replaced()[0], self.source_warning())
        if found != self._ignored_told:
            self._ignored_told = found
            self._say_intake()

    def set_user_paused(self, paused: bool) -> None:
        """Paused or resumed by the user: said in the state file at once, so ``eagle station status`` (another
        process, reading only that file) shows ``paused`` as the API does."""
        if paused != self.user_paused:
            self.user_paused = paused
            self._say_intake()

    def _say_intake(self, running: bool = True) -> None:
        """Tell ``eagle station status`` (another process) how the intake is, or that it stopped (for good)."""
        with self._said:
            if self._stopped:
                return
            self._stopped = not running
            write_intake(self.state.settings.state_dir, self.config.name, self.intake() if running else None)

    def start(self) -> None:
        claim = getattr(self.config.source, "claim", None)
        if callable(claim):  # a hot folder, a camera's frames: one station on it, whichever process (folder_lock.py)
            claim(self.config.name, self.state.settings.state_dir)
        # Read now, not when the runner was built: a runner that replaces a running one (a PATCH) is built while
        # the old one still runs, and may still keep a filing in this file until it stops.
        try:
            self._owed = read_owed(self.state.settings.state_dir, self.config.name)
        except ValueError as exc:  # not a file this module wrote: held rows are resolved by content, as without it
            self.log(f"eagle station {self.config.name}: warning: {exc}; ignored (images not filed are looked for "
                     "by their content)")  # fmt: skip
        self._owed_kept = self._owed_before = self._owed is not None
        self._say_intake()
        sinks = [courier.sink.sink.name for courier in self.couriers]
        orphans = self.tables.orphans(self.config.name, sinks)
        recover = source_hook(self.config.source, "station_recover")  # a camera's frames saved, never taken: first
        recovered = None if recover is None else recover(self.config.name, self.tables.filed_by)
        # Before the couriers, so a delivery due at once does not connect first (an MQTT sink connects now, in its
        # own thread, rather than at its first delivery: its retained status says online while the station runs,
        # and its reconnection wakes the courier); after every step that can fail, so none leaves a connection.
        for configured in self.config.sinks:
            open_sink = sink_hook(configured.sink, "station_start")  # a Thread's own start is no hook
            if open_sink is not None:
                open_sink(self.config.name, self.config.category)
        for courier in self.couriers:
            courier.start()
        self.log(f"eagle station {self.config.name}: {self.config.category} from {self.config.source.describe()}")
        for courier in self.couriers:
            self.log(f"eagle station {self.config.name}:   -> {courier.sink.sink.describe()}")
        for sink, why in self.unreachable:
            self.log(f"eagle station {self.config.name}: warning: sink {sink}: {why}")
        for line in self.retired:
            self.log(f"eagle station {self.config.name}: note: {line}")
        for sink, count in orphans.items():
            self.log(f"eagle station {self.config.name}: warning: {deliveries_wait(count)} for a sink named {sink!r}, "
                     "which this station no longer has; give a sink that name to deliver them")  # fmt: skip
        if recovered is not None:
            self.log(f"eagle station {self.config.name}: {recovered}")

    def stop(self, grace_s: float) -> None:
        self.halt_couriers()
        deadline = time.monotonic() + grace_s
        for courier in self.couriers:
            courier.join(max(0.0, deadline - time.monotonic()))
        for courier in self.couriers:  # a deliver that does not return: the stop cannot cut it short, so says it
            late = courier.watch.in_progress() if courier.is_alive() else None
            if late is not None:
                self.log(f"eagle station {self.config.name}: warning: sink {courier.watch.name!r} "
                         f"({courier.watch.label}): its delivery of record {late[0]} has not returned after "
                         f"{late[1]:.0f} s and the stop's grace is over; the stop does not wait for it: the delivery "
                         "stays owed in the outbox and goes again (same key) when the station next runs, unless it "
                         "returns first")  # fmt: skip
        self._say_intake(running=False)

    def halt_couriers(self) -> None:
        for courier in self.couriers:
            courier.halt.set()
            courier.wake.set()

    def resume_couriers(self) -> None:
        """Couriers stopped by :meth:`halt_couriers` deliver again: each goes on, or a new one takes its sink."""
        for index, courier in enumerate(self.couriers):
            if courier.resume():
                continue
            again = Courier(self.tables, self.config.name, courier.sink, self.log, self._say_intake)
            again.last_error, again.failing_since, again.failures = courier.last_error, courier.failing_since, \
                courier.failures  # fmt: skip
            self.couriers[index] = again
            again.start()

    def close(self) -> None:
        """Close the sinks and the source (the runner stopped, or never started: a replacement refused)."""
        for sink in self.config.sinks:
            sink.sink.close()
        close = getattr(self.config.source, "close", None)
        if callable(close):
            close()

    def step(self) -> int:
        """Take up to :data:`TURN` complete images; how many were taken (inspected, repeated or refused)."""
        # (a lock found lost, or its holder named, is said in the status at once: see recheck)
        if self.paused is not None and time.monotonic() < self._paused_until and not self.recheck.is_set():
            return 0
        taken = 0
        self.steps += 1
        self.busy = True
        try:
            taken = self._turn()
        finally:
            self.busy = False
            self.steps += 1
        return taken

    def _lost(self) -> bool:
        """Whether this process no longer holds the station's lock (see :attr:`owns`): then the intake pauses."""
        if self.owns is None or self.owns():
            return False
        self._arrivals = None
        # the service stops it at its next look at the station table; eagle station run takes the lock back
        self._pause(self.lost_reason, say=self.lock_lines)
        self._paused_for_lock = True
        return True

    def _turn(self) -> int:
        if not self._file_owed():  # this process's own image, put away: its place is stored, lock or not
            return 0
        # a paused intake resumes and held rows are released below even when no image waits: only by the lock's
        # holder (a replica that took it may be filing its images, whose rows are held in the shared outbox)
        asked = self.recheck.is_set()
        self.recheck.clear()
        if (self.paused is not None or self._unfiled or asked) and self._lost():
            return 0
        taken = passed = 0
        # a stop is prompt: the next image stays for the next start
        while taken < TURN and passed < PASSED_PER_TURN and not self.halt.is_set():
            if self._arrivals is None:
                self._listed = set()
                self._arrivals = self.config.source.poll()
            try:
                arrival = next(self._arrivals, None)
            except OSError as exc:  # the hot folder gone (unmounted, deleted) or not listable: wait, in one line
                self._arrivals = None
                # a folder made again under the path that another station locked first: why, and who, as it is
                taken = isinstance(exc, FolderTakenError)
                self._pause(str(exc) if taken else f"images cannot be listed: {unseen(exc)}")
                if gone(exc, getattr(self.config.source, "folder", None)):
                    # an unmounted folder is not an empty one: rows of its images stay held (the source cannot
                    # say where they are); only a source that never moves an image releases an older run's
                    self._resolve_unfiled()
                break
            except BaseException:
                self._arrivals = None  # a source that raised is listed afresh next time
                raise
            self._say_ignored()  # the listing is made at the first arrival asked for
            if arrival is not None and not isinstance(arrival, Arrival):
                self._arrivals = None
                what = _article(type(arrival).__name__)
                raise SourceError(
                    f"{source_named(self.config.source)}: its poll() yielded {what} "
                    f"({short_repr(arrival)}), not an Arrival (eagle_iad.station.parts.Arrival)"
                )
            if arrival is None:
                self._arrivals = None
                self._listed_all()
                if self._resolve_unfiled():
                    self._resume()  # nothing left that it paused on (the image taken away meanwhile)
                break
            if self._lost():  # asked before each image
                break
            self.current = arrival.name
            try:
                took = self._take(arrival)
            finally:
                self.current = None
            if took is None:  # handed again after it was finished or refused: passed over
                passed += 1
                continue
            if not took:
                self._arrivals = None  # paused: the same image is the first one next time
                break
            self._resume()
            taken += 1
        return taken

    def idle(self) -> bool:
        """Nothing waits in the source and nothing is owed to a sink (dead letters aside).

        A hot folder that is gone (unmounted, deleted: ENOENT or ENOTDIR on the folder itself) has no backlog
        this process can see, and counts as none waiting; any other error looking at it (EACCES, EIO, ESTALE)
        may hide images that wait, so it is not idle, and the next look tries again.
        """
        sinks = [courier.sink.sink.name for courier in self.couriers]
        try:
            backlog = self.config.source.backlog()
        except OSError as exc:
            why = unseen(exc)
            is_gone = gone(exc, getattr(self.config.source, "folder", None))
            if self._unseen != why:
                self._unseen = why
                then = "counted as none waiting" if is_gone else "not idle while images may wait there, looking again"
                self.log(f"eagle station {self.config.name}: {'' if is_gone else 'warning: '}no backlog visible "
                         f"({why}); {then}")  # fmt: skip
            if not is_gone:
                return False
            # Deliveries held for an image stored but not filed wait for the folder (to find where the image is),
            # and so do those queued behind them: not for this run, which would wait for a folder that is gone;
            # the next run resolves them.
            owed = self.tables.owed(self.config.name, sinks, held=False)
            waiting = self.tables.owed(self.config.name, sinks) - owed
            if waiting and owed == 0 and self._held_said != waiting:  # said once, not at every look
                self._held_said = waiting
                one = waiting == 1
                self.log(f"eagle station {self.config.name}: {waiting} deliver{'y' if one else 'ies'} "
                         f"wait{'s' if one else ''} for images not filed yet and stay{'s' if one else ''} for the "
                         "next run (the folder is gone)")  # fmt: skip
            return owed == 0
        self._unseen = None
        coming = getattr(self.config.source, "coming", None)  # a video file waiting for triggers: not its end yet
        if callable(coming) and coming():
            return False
        # arrivals the source hands again after they were finished or refused are not taken: not waited for
        return backlog <= self.handed_again and self.tables.owed(self.config.name, sinks) == 0

    def _drained(self) -> bool:
        """No image waits in the source (a poll took all): one left unfiled is not there to be filed any more."""
        try:
            return self.config.source.backlog() <= self.handed_again  # those handed again are not taken
        except OSError:
            return False  # not seen: maybe there; the next poll looks again

    def _resolve_unfiled(self) -> bool:
        """Deliver the rows still held for images left unfiled (see :attr:`_unfiled`), so a sink's queue is never
        stuck behind an image taken away, and resolve alike the refusals no sink took whose files are not known to
        be put aside (:meth:`StationTables.unfiled`); called between images only. ``False``: the intake paused (the
        lock lost, or the history refused a look or an update: the rows stay held, and are looked at again at the
        next try).

        Where the source can say (``waiting``, ``filed_at``: a hot folder), record by record after each full poll:
        an image still in the source is left to its next put-away, one found put away (a crash after the move)
        is delivered from where it is, and the rest go with the place planned for them, a line each. A record
        whose image the source cannot look at (EACCES, EIO, a stale handle, the folder unmounted) stays held, and
        is looked at again after the next poll. Other sources: all at once, once the source has no backlog. A
        source whose deliveries never wait (``moves_files`` false: a camera) holds none, and an older run's held
        rows go with their planned place, final.
        """
        if not self._unfiled or self._owed is not None:
            return True
        if self.owns is not None and self._lost():  # every release asks: the rows may be the lock holder's now
            return False
        source, station = self.config.source, self.config.name
        waiting, filed_at = getattr(source, "waiting", None), getattr(source, "filed_at", None)
        moves = getattr(source, "moves_files", True)
        look = moves and callable(waiting) and callable(filed_at)
        if moves and not look and not self._drained():
            return True
        unresolved = False
        unknown: dict[str, str] = {}

        def cannot_tell(what: str, key: str, exc: OSError, stays: str = "its deliveries stay held") -> None:
            """One line per record or refusal whose image cannot be looked at, said again only when the reason
            changes (its rows stay held and are looked at after every poll)."""
            why = unseen(exc)
            unknown[key] = why
            if self._unknown.get(key) != why:
                self.log(f"eagle station {station}: {what} {key}: cannot tell where its image is ({why}); {stays}, "
                         "looked at again after the next poll")  # fmt: skip

        try:
            for held in self.tables.held(station):
                planned = held.planned or "unknown"
                if look and held.digest and held.name and held.planned and callable(waiting) and callable(filed_at):
                    try:
                        if waiting(held.name, held.digest):
                            unresolved = True  # its repeat put-away files it; looked at again after the next poll
                            continue
                        at = filed_at(held.name, held.digest, Path(held.planned),
                                      refused=held.record_id.startswith(REFUSED_PREFIX))  # fmt: skip
                    except OSError as exc:  # neither there nor not there: held, looked at again after the next poll
                        unresolved = True
                        cannot_tell("record", held.record_id, exc)
                        continue
                    if at is not None:
                        self.tables.filed(station, held.digest, held.record_id, str(at), first=True)
                        self.log(f"eagle station {station}: record {held.record_id}: its image was found put away "
                                 f"at {at}; delivered from there")  # fmt: skip
                        continue
                if held.digest is None and held.record_id.startswith(REFUSED_PREFIX):
                    refused = (held.payload or {}).get("refused") or {}
                    # the name the source listed it under (a subfolder's image: its path relative to the folder)
                    image_name = str(refused.get("image_name") or "")
                    image = (held.payload or {}).get("image")
                    unread = refused.get("image_sha256") is None
                    listed = getattr(source, "listed", None)
                    try:
                        if unread and moves and image_name and callable(listed):
                            seen = listed(image_name)
                            if seen is not None and refusal_of(held.record_id, station, image_name, seen):
                                # the file refused, not put aside yet (a fresh process's first polls wait for it to
                                # settle): its next refusal, under this key, puts it aside and files these rows
                                unresolved = True
                                continue
                        there = bool(image) and _exists(Path(str(image)))
                    except OSError as exc:  # neither there nor not there: held, looked at again after the next poll
                        unresolved = True
                        cannot_tell("refusal", held.record_id, exc)
                        continue
                    count = self.tables.release_held(station, held.record_id, unplaced=moves and not there)
                    whose = (f"a file that could not be read, {image_name}, was not put aside before the last stop "
                             "and is no longer where it arrived" if unread else
                             f"{image_name}: its intake row now tells a later file of the same content")  # fmt: skip
                    place = (
                        f"the place planned for it, {image}"
                        if there or not moves
                        else f"no place ({image} is not there)"
                    )
                    self.log(f"eagle station {station}: refusal {held.record_id} ({whose}); {count} deliveries go "
                             f"with {place}")  # fmt: skip
                    continue
                count = self.tables.release_held(station, held.record_id)
                why = "never filed (gone from the source)" if moves else "filed where planned"
                self.log(f"eagle station {station}: record {held.record_id}: image {why}; {count} deliveries go "
                         f"with the place planned for it, {planned}")  # fmt: skip
            # Refusals no sink takes have no rows to hold: their intake rows say the file is not put aside yet, and
            # while they do, a file of that name and content is taken for it (not counted again). One whose file is
            # gone is resolved here, or every later file of that name and content would be counted for none.
            for refusal in self.tables.unfiled(station):
                image_name, digest, aside = refusal.name or "", refusal.digest or "", refusal.planned
                if look and aside and callable(waiting) and callable(filed_at):
                    try:
                        if waiting(image_name, digest):
                            unresolved = True  # refused again, under this key, it is put aside and filed
                            continue
                        at = filed_at(image_name, digest, Path(aside), refused=True)
                    except OSError as exc:  # neither there nor not there: looked at again after the next poll
                        unresolved = True
                        cannot_tell("refusal", refusal.record_id, exc, f"{image_name} stays counted as not put aside")
                        continue
                    if at is not None:
                        self.tables.filed(station, digest, refusal.record_id, str(at), first=True)
                        self.log(f"eagle station {station}: refusal {refusal.record_id} ({image_name}): its file was "
                                 f"found put aside at {at}")  # fmt: skip
                        continue
                self.tables.release_unfiled(station, digest, refusal.record_id)
                why = "is no longer where it arrived, nor found put aside" if moves else "was put where planned"
                self.log(f"eagle station {station}: refusal {refusal.record_id} ({image_name}): its file {why}; it "
                         f"keeps the place planned for it, {aside or 'none'}, and a later file of that name and "
                         "content is another file")  # fmt: skip
        except Exception as exc:  # the database locked, full or away: held rows stay held, looked at next try
            self._unknown.update(unknown)
            self._wake_couriers()  # what was released before the failure
            self._pause(f"the deliveries held for images not filed yet could not be looked at: "
                        f"{type(exc).__name__}: {exc}")  # fmt: skip
            return False
        self._unknown = unknown  # said once per record and reason, while it lasts
        self._unfiled = unresolved
        self._wake_couriers()
        return True

    def _wake_couriers(self) -> None:
        for courier in self.couriers:
            courier.wake.set()

    def _pause(self, reason: str, *, say: bool = True) -> None:
        """Pause the intake for ``reason`` (tried again every :data:`PAUSE_RETRY_S`), in one line per reason;
        ``say``: ``False`` where another part of the process says it (a lost lock, by ``eagle station run``)."""
        self._unfiled = True  # an image stored but maybe not filed: its rows wait until it is, or it is gone
        self._paused_until = time.monotonic() + PAUSE_RETRY_S
        self._paused_for_lock = False
        if self.paused == reason:
            return
        self.paused = reason
        if self.paused_since is None:
            self.paused_since = time.time()
        self._say_intake()  # before the line: whoever reads the line and then the status finds them agreeing
        if say:
            self.log(f"eagle station {self.config.name}: intake paused: {reason}; retrying every {PAUSE_RETRY_S:g} s")

    def fail(self, error: str, exc: BaseException | None = None) -> None:
        """The intake raised ``error`` (a plugin source's bug): paused as for any other reason, so it is one
        line when it starts failing and one when it resumes, and the status says so meanwhile. ``exc``: the
        exception, whose traceback the log shows once per distinct error (a developer must find the failing line;
        the retries every PAUSE_RETRY_S say nothing more), except a :class:`SourceError` (its line says it all) and
        an :class:`OSError` (a condition of the machine, not a line of code)."""
        self._arrivals = None
        self._pause(f"intake failed: {error}")
        if exc is None or isinstance(exc, SourceError | OSError):
            return
        # Told apart by where it was raised, not by its words: a message carrying a count, a time or a temporary
        # path would be a new traceback every PAUSE_RETRY_S, and fill the allowance before a new bug came.
        frames = traceback.extract_tb(exc.__traceback__)  # every frame: two bugs failing in one helper differ
        path = " < ".join(f"{frame.filename}:{frame.lineno}" for frame in reversed(frames))
        where = f"{type(exc).__qualname__} at {path}" if frames else error
        if where in self._tracebacks:
            return
        if len(self._tracebacks) < TRACEBACKS_SAID:
            self._tracebacks.add(where)
            lines = "".join(traceback.format_exception(exc)).rstrip("\n").splitlines()
            self.log(f"eagle station {self.config.name}: the intake's error, said once: {lines[0]}")
            for line in lines[1:]:
                self.log(f"eagle station {self.config.name}: | {line}")

    def failed_as(self, exc: Exception) -> str:
        """What the intake's line says of ``exc``: the source named (:func:`source_named`) where it was raised in
        its class's module, as a plugin's own message need not say who it is."""
        if isinstance(exc, SourceError):
            return str(exc)
        said = f"{type(exc).__name__}: {exc}"
        return f"{source_named(self.config.source)}: {said}" if _raised_by(exc, self.config.source) else said

    def _arrival_key(self, arrival: Arrival, digest: str) -> tuple[Any, ...]:
        """What tells one arrival from another for :meth:`_again`: where the source has it and its name, its
        content, and what the source (``settled``) and the read (``identity``) saw of the file, so a later file of
        the same name and content (the next part: another inode, another change time) is another arrival."""
        return str(arrival.path), arrival.name, digest, arrival.settled, arrival.identity

    def _handled_now(self, arrival: Arrival, digest: str, how: str, method: str) -> None:
        """``arrival`` was finished or refused (``how``, by the source's ``method``): remembered (:attr:`_handled`)
        unless the source has certainly taken it away: a file read from its place (``identity`` known) that is no
        longer there as that very file. Why: remembered, a later arrival of the same name and content is passed
        over, and a *new* one (a part sent again, its file a copy) would then never be taken, as nothing finishes it;
        only a source still holding what it was given back is the fault this memory guards against. An arrival
        handed as bytes (a push source's) cannot be looked at so: it is remembered by its content and name."""
        if arrival.identity is not None:
            try:
                still = identity(os.stat(arrival.path)) == arrival.identity
            except OSError:
                still = False
            if not still:
                return
        key = self._arrival_key(arrival, digest)
        self._handled.pop(key, None)
        self._handled[key] = (how, method)
        self._listed.add(key)
        while len(self._handled) > HANDED_MEMORY:
            del self._handled[next(iter(self._handled))]

    def _again(self, arrival: Arrival, digest: str) -> bool:
        """Whether the source hands ``arrival`` again after this run finished or refused it: it is passed over (not
        inspected, not told to the sinks again, not finished again), said in one line and a status warning while
        the source hands it. A source whose ``finish`` or ``refuse`` takes an image away (every built-in) never
        does; a plugin's that did not sent the same refusal to the sinks at every poll, each under a new key."""
        key = self._arrival_key(arrival, digest)
        handled = self._handled.get(key)
        if handled is None:
            return False
        self._listed.add(key)
        if key not in self._again_said:
            how, method = handled
            then = "not told to the sinks again" if how == "refused" else "not inspected again, nor told to the sinks"
            said = (f"{source_named(self.config.source)} handed {arrival.name} again after it was {how}: its "
                    f"{method}() did not take it away; {then}")  # fmt: skip
            self._again_said[key] = said
            self.log(f"eagle station {self.config.name}: warning: {said}")
            self._say_intake()  # the status warns while the source hands it
        return True

    def _listed_all(self) -> None:
        """A listing ended: the arrivals finished or refused that it did not hand are forgotten (taken away, as
        they must be), and so are their warnings; those it handed again are counted (see :attr:`handed_again`)."""
        listed, self._listed = self._listed, set()
        self._handled = {key: how for key, how in self._handled.items() if key in listed}
        again = {key: said for key, said in self._again_said.items() if key in listed}
        self.handed_again = len(again)
        if again != self._again_said:
            self._again_said = again
            self._say_intake()

    def _resume(self) -> None:
        if self.paused is None:
            return
        self.paused = self.paused_since = None
        self._say_intake()
        if not (self._paused_for_lock and not self.lock_lines):  # else said by the process that took the lock back
            self.log(f"eagle station {self.config.name}: intake resumed")
        self._paused_for_lock = False

    def _take(self, arrival: Arrival) -> bool | None:
        """Handle one image; ``False`` when the intake paused on it (it stays for the next try), ``None`` when it
        was passed over (handed again after it was finished or refused: see :meth:`_again`)."""
        name, source = self.config.name, self.config.source
        if arrival.refused is not None:  # the source could not keep it (a frame not saved): told, never inspected
            digest = "" if arrival.data is None else hashlib.sha256(arrival.data).hexdigest()
            return self._refuse_or_pause(arrival, digest, arrival.refused)
        try:
            if arrival.data is not None:
                data = arrival.data
            else:  # the bytes and which file they came from, read together: see Arrival.identity
                limit, said = self._byte_limit()
                with _open_image(arrival.path) as handle:
                    before = identity(os.fstat(handle.fileno()))
                    if before[2] > limit:  # refused before a byte is read: a 400 MB junk file must not be loaded
                        return self._too_large(arrival, f"{before[2]} bytes", limit, said)
                    data = handle.read(limit + 1)  # a file system whose sizes lie (some FUSE) is bounded too
                    after = identity(os.fstat(handle.fileno()))
                if len(data) > limit and before == after:
                    return self._too_large(arrival, "more bytes than its size says", limit, said)
                if before != after:  # written to while read: not the file's bytes
                    self._say(f"{arrival.name}: still being written; left for a later poll")
                    return True
                settled = arrival.settled
                if settled is not None and (after[2], after[3]) != (settled.size, settled.mtime_ns):
                    # changed between settling and the read (a writer that started again, or another file renamed
                    # over it): the bytes may be a half-written file, however still they kept while read; the next
                    # poll sees the change and the file settles again before it is read
                    self._say(f"{arrival.name}: changed since it settled; left for a later poll")
                    return True
                # a size that differs from the bytes read while the file stays the same (some FUSE file systems
                # report it so): what the file gives is read as it is, once, not left for every later poll
                arrival = replace(arrival, data=data, identity=after)
        except FileNotFoundError:
            return True  # taken away before its turn
        except (PermissionError, NotAFileError) as exc:  # the image's own fault: it must not hold up every later image
            return self._refuse_or_pause(arrival, "", f"{arrival.name}: cannot be read: {exc.strerror or exc}")
        except OSError as exc:
            self._pause(f"{arrival.path}: cannot be read: {exc.strerror or exc}")
            return False
        digest = hashlib.sha256(data).hexdigest()
        if self._again(arrival, digest):
            return None
        prior = self.tables.intake(name, digest) if source.dedupe else None
        if prior is not None and prior.state == "done":
            to = Path(prior.moved_to) if prior.moved_to else source.planned(arrival)
            # the image itself, stored but not put away yet (a put-away that failed, a crash before it: its rows
            # still held), is filed now; anything else is a file the line sent again
            first = (digest in self._unput or self.tables.refusal_rows(name, str(prior.record_id)) == "held"
                     or self._put_elsewhere(arrival, digest, to) is False)  # fmt: skip
            told = not first and self.config.duplicates == "refuse" and any(c.sink.refusals for c in self.couriers)
            planned_repeat = getattr(source, "planned_repeat", None)  # this file's place, not the earlier one's
            place = Path(planned_repeat(arrival, to)) if callable(planned_repeat) else to
            if told and not self._tell_repeat(arrival, digest, str(prior.record_id), place):
                return False
            how = "refused" if told else "inspected" if first else "put away as a repeat"
            if not self._put_away(arrival, to, {"id": prior.record_id}, digest, repeat=True, how=how):
                return False
            self._unput.discard(digest)
            if first:
                self._say(f"{arrival.name}: same content as record {prior.record_id}; not inspected again")
                return True
            self.last_duplicate = (arrival.name, str(prior.record_id))
            self.duplicates.add()
            self._say_intake()  # counted in the status (another process reads the state file)
            # logged even when quiet (the service): the log and the status are the trace of an image the line sent
            # again (with duplicates = "skip", the only one: no sink hears of this file)
            told_as = "told to the sinks as refused" if told else "no new verdict"
            self.log(f"eagle station {name}: {arrival.name}: same content as record {prior.record_id}; "
                     f"not inspected again, {told_as}")  # fmt: skip
            return True
        to = source.planned(arrival)
        sinks = [courier.sink.sink.name for courier in self.couriers]

        def also(db: Any, record: InspectionRecord) -> None:
            payload = {"station": name, "record": record.to_dict(), "image": str(to), "source": arrival.source}
            self.tables.write_done(db, name, intake_key(digest, record.id, source.dedupe), arrival.name, record.id,
                                   str(to), arrival.appeared, sinks, payload,
                                   held=getattr(source, "moves_files", True))  # fmt: skip

        try:
            # the whole name the source gave (a hot folder's subfolders, however many it takes), not an upload's last
            # few folders: it is the part's name in the line's own tree
            named = upload_name(arrival.name, folders=None)
            record = run_inspection(self.state, self.config.category, data, named, None, False,
                                    origin=(name, arrival.source), also=also)  # fmt: skip
        except ApiError as exc:
            if exc.code == "invalid_image" and self._not_settled(arrival, exc.message):
                return True
            if exc.status in IMAGE_FAULTS:
                return self._refuse_or_pause(arrival, digest, exc.message)
            self._pause(exc.message)
            return False
        except EagleError as exc:
            undecodable = isinstance(exc, ImageError) and not isinstance(exc, ImageTooLargeError)
            if undecodable and self._not_settled(arrival, str(exc)):
                return True
            return self._refuse_or_pause(arrival, digest, str(exc))
        checkpoint("station stored")
        if not self._put_away(arrival, to, record, intake_key(digest, str(record["id"]), source.dedupe)):
            if self._owed is None:  # not put away (not only its place owed): the next try is no duplicate
                self._unput.add(digest)
            return False  # stored: the next try only puts it away (its hash is in the intake)
        score = record.get("score")
        shown = "no score" if score is None else f"score {score:.4g} (tau {record.get('tau'):.4g})"
        self._say(f"{arrival.name}: {record.get('decision') or 'undecided'}, {shown}, record {record['id']}")
        return True

    def _tell_repeat(self, arrival: Arrival, digest: str, prior: str, to: Path) -> bool:
        """Tell every sink that takes refusals that ``arrival``, of the content of record ``prior``, was not
        inspected (``duplicates = "refuse"``): a part whose camera sent an earlier part's image still gets an
        answer, ``refused`` (a gate rejects it), naming the earlier record in ``refused.repeat_of`` and this file's
        own planned place ``to`` in ``image`` (the source's ``planned_repeat``), not the earlier file's. Written before
        the file is put away, under a key derived from the file (:func:`repeat_key`), so a crash in between tells
        it once. ``False`` (the intake paused) when the history cannot take it now; the file stays for the next
        try."""
        name = self.config.name
        sinks = [courier.sink.sink.name for courier in self.couriers if courier.sink.refusals]
        if not sinks:
            return True
        key = repeat_key(name, arrival.name, digest, arrival.settled)
        reason = (f"same content as record {prior}: not inspected again (a camera that sent an earlier part's image "
                  "again, or the file copied in twice); this part has no verdict of its own")  # fmt: skip
        payload = {"event": REFUSED, "station": name, "image": str(to), "source": arrival.source,
                   "refused": {"id": key, "category": self.config.category, "image_name": arrival.name,
                               "image_sha256": digest, "reason": reason, "time": iso_time(),
                               "repeat_of": prior}}  # fmt: skip
        try:
            self.tables.write_repeat(name, key, sinks, payload)
        except Exception as exc:  # the database locked, full or away: the file stays for the next try
            self._pause(f"{arrival.name}: same content as record {prior}, and the history could not store its "
                        f"refusal for the sinks: {type(exc).__name__}: {exc}")  # fmt: skip
            return False
        self._wake_couriers()
        return True

    def _byte_limit(self) -> tuple[int, str]:
        """The most bytes an image file of the source may have (read at all), and where that limit comes from: the
        source's own (a hot folder's ``max_file_mb``), else the largest file an image within the pixel limit can be
        uncompressed (:func:`uncompressed_limit`). Not the service's upload limit (32 MiB): a line camera's 12-MP
        RGB frame is 36 MB as a ``.bmp`` or uncompressed ``.tif``, and a station must take what it could inspect."""
        own = getattr(self.config.source, "max_bytes", None)
        if isinstance(own, int) and own > 0:
            return own, "the source's max_file_mb"
        return uncompressed_limit(), (
            "the largest an uncompressed image within the pixel limit can be: 8 bytes a pixel and 1 MiB of headers; "
            "the source's max_file_mb sets the station's own"
        )

    def _too_large(self, arrival: Arrival, size: str, limit: int, said: str) -> bool | None:
        """Refuse the file of ``arrival`` by its size, unread (as a file that cannot be read: it is put aside as any
        refusal is, and told to the sinks that take refusals)."""
        why = f"{arrival.name}: {size}, over the limit of {limit} bytes ({said}); not read"
        return self._refuse_or_pause(arrival, "", why)

    def _not_settled(self, arrival: Arrival, reason: str) -> bool:
        """Whether an image that could not be decoded is left in its source for now (its writer may have stalled
        half-way, longer than it took to settle: see :meth:`HotFolder.undecodable`) rather than refused."""
        undecodable = getattr(self.config.source, "undecodable", None)
        left = undecodable(arrival) if callable(undecodable) else None
        settled = arrival.settled
        key = (arrival.name, *((settled.size, settled.mtime_ns) if settled is not None else ()))
        if left is None:
            self._undecodable_said.pop(key, None)
            return False
        if key in self._undecodable_said:  # tried again each time it settles: said once per file as it is
            return True
        if len(self._undecodable_said) >= 10_000:  # names taken meanwhile (decoded at last, taken away): bounded
            self._undecodable_said.clear()
        self._undecodable_said[key] = None
        self._say(f"{arrival.name}: cannot be decoded yet ({reason}); left in place and tried again each time it "
                  f"settles again, without a line; if it stays so, unchanged, {left:.0f} s more, it is refused: put "
                  "aside as the source puts refusals (the hot folder: failed/ with its reason, or its sidecar) and "
                  "told to the sinks that take refusals, in one more line")  # fmt: skip
        return True

    def _put_away(
        self, arrival: Arrival, to: Path, record: dict[str, Any], digest: str, repeat: bool = False,
        how: str = "inspected",
    ) -> bool:  # fmt: skip
        """The source's ``finish``, then the place the image went stored and its deliveries made due (see
        :meth:`StationTables.filed`); a failure (the disk full for a sidecar) pauses the intake instead of ending
        it. An image put elsewhere than ``to`` (that name taken meanwhile: ``-1``) is stored and delivered from
        there (``repeat``: a content already inspected, whose record stays where it is, unless a crash left it
        unfiled). ``how``: what a line says of the image if the source hands it again (:meth:`_again`)."""
        try:
            actual = self.config.source.finish(arrival, to, record)
        except OSError as exc:
            self._pause(f"{arrival.name}: inspected, but it could not be put away: {exc.strerror or exc}")
            return False
        self._handled_now(arrival, digest.split(":")[0], how, "finish")
        at = to if actual is None else actual
        self._sync_move(Path(at))
        self._owed = OwedFiling(digest, str(record["id"]), str(at), not repeat, str(to))
        self._owed_kept = self._owed_before = False
        return self._file_owed()

    def _sync_move(self, at: Path) -> None:
        """Make the image's new name at ``at`` (``done/``, ``failed/``) durable (its folder fsynced) before its
        deliveries are made due: after a power cut a sink's verdict must not name a file that is not there. (The
        name it left in the hot folder needs no sync: the history's fsynced commits know its content, so an image
        a power cut brought back is put away again, never inspected again.) Best effort: a folder its file system
        cannot sync, or an error syncing it, leaves the move as durable as that file system makes it."""
        if not getattr(self.config.source, "moves_files", True):
            return
        try:
            sync_folder(at.parent)
        except OSError as exc:
            _LOG.debug("station %s: %s could not be synced: %s", self.config.name, at.parent, exc)

    def _file_owed(self) -> bool:
        """Store the place of the image last put away, if not stored yet (see :attr:`_owed`), and make its
        deliveries due; ``False`` (the intake paused) when the history cannot take it now (the place is then kept
        in a file, for a restart)."""
        owed = self._owed
        if owed is None:
            return True
        try:
            if self._owed_before and not self._still_owed(owed):
                return True
            self.tables.filed(self.config.name, owed.digest, owed.record_id, owed.at, first=owed.first)
        except Exception as exc:  # the database locked, full or away: the image is filed, only its place is owed
            self._keep_owed(owed)
            self._pause(f"record {owed.record_id} was put at {owed.at}, but the history could not store that: "
                        f"{type(exc).__name__}: {exc}")  # fmt: skip
            return False
        self._owed = None
        if self._owed_kept:
            self._owed_kept = False
            self._forget_owed()
        if self._owed_before:
            self._owed_before = False
            self.log(f"eagle station {self.config.name}: record {owed.record_id}: the place of its image, owed to "
                     f"the history since an earlier run, is stored: {owed.at}; delivered from there")  # fmt: skip
        self._wake_couriers()
        return True

    def _still_owed(self, owed: OwedFiling) -> bool:
        """Whether an earlier run's owed filing (from its file) still says something the history lacks: the
        record's rows are still held, or its stored place is still the one planned for it. Otherwise another run
        filed the image since (found by its content, or moved on), and storing this older place would overwrite the
        newer one: the file is dropped, in one line."""
        name = self.config.name
        if any(held.record_id == owed.record_id for held in self.tables.held(name)):
            return True
        prior = self.tables.intake(name, owed.digest)
        stored = None if prior is None or prior.record_id != owed.record_id else prior.moved_to
        if owed.first and owed.planned is not None and stored == owed.planned:
            return True
        self._owed = None
        self._owed_before = False
        if self._owed_kept:
            self._owed_kept = False
            self._forget_owed()
        self.log(f"eagle station {name}: record {owed.record_id}: the place of its image kept since an earlier run "
                 f"({owed.at}) is out of date (the history says {stored or 'nothing of it'}, and holds none of its "
                 "deliveries); dropped")  # fmt: skip
        self._wake_couriers()
        return False

    def _keep_owed(self, owed: OwedFiling) -> None:
        """Write ``owed`` to its file (once), so a stop before the history takes it loses nothing. The history is
        what refused it, so it cannot hold it; the state folder can. A state folder that cannot take it either is
        one line: a restart then looks for the image by its content, as before there was a file."""
        if self._owed_kept:
            return
        state_dir = self.state.settings.state_dir
        try:
            write_owed(state_dir, self.config.name, owed)
        except OSError as exc:
            self.log(f"eagle station {self.config.name}: warning: the place of record {owed.record_id}'s image "
                     f"({owed.at}) could not be kept in {owed_file(state_dir, self.config.name)} "
                     f"({exc.strerror or exc}); stopped before the history stores it, the next run looks for the "
                     "image by its content")  # fmt: skip
            return
        self._owed_kept = True

    def _forget_owed(self) -> None:
        """The owed place is stored: its file goes. One that cannot be removed is only a line: the next run
        stores the same place again, which changes nothing."""
        state_dir = self.state.settings.state_dir
        try:
            forget_owed(state_dir, self.config.name)
        except OSError as exc:
            self.log(f"eagle station {self.config.name}: warning: {owed_file(state_dir, self.config.name)} could "
                     f"not be removed ({exc.strerror or exc}); the next run stores the same place again")  # fmt: skip

    def _refuse_or_pause(self, arrival: Arrival, digest: str, reason: str) -> bool | None:
        """Put an image that cannot be inspected aside with its reason and tell every sink that takes refusals
        (``True``), or pause if the history or the put-aside fails (the image stays for the next try); ``None``:
        passed over, handed again after it was refused (see :meth:`_again`).

        In the steps of a verdict (see the module), so no sink misses a refusal and none is told of a place the
        image is not at: the intake row (``failed``) and the held outbox rows in one transaction, then the image
        put aside, then where it went stored and the rows made due (:meth:`_file_owed`). A crash in between
        leaves held rows that the next start resolves as a verdict's: the image refused again keeps the key (see
        :func:`refusal_key`), one found put aside is delivered from there, one gone with the place planned.
        ``digest``: ``""`` for a file that could not be read.
        """
        name, source = self.config.name, self.config.source
        if self._again(arrival, digest):
            return None
        planned_refusal = getattr(source, "planned_refusal", None)
        planned = Path(planned_refusal(arrival)) if callable(planned_refusal) else arrival.path
        sinks = [courier.sink.sink.name for courier in self.couriers if courier.sink.refusals]
        try:
            again = self.tables.held_refusal(name, digest, arrival.name)
            place = None if again is None else self.tables.refusal_place(name, again)
            if again is not None and place and self._put_elsewhere(arrival, digest, Path(place), refused=True):
                # the earlier file was put aside before a kill kept that from being stored: this one is another file
                self.tables.filed(name, digest, again, str(self._put_at), first=True)
                self.log(f"eagle station {name}: refusal {again} ({arrival.name}): its file was found put aside at "
                         f"{self._put_at}; {arrival.name} now is another file of that content")  # fmt: skip
                again = None
            key = refusal_key(name, arrival.name, digest, arrival.settled, again)
            if not digest and self.tables.refusal_rows(name, key) == "told":
                # another file that looked the same (2 s time stamps, cp -p), its refusal long told: a new one
                key = refusal_key(name, arrival.name, digest, arrival.settled, None, fresh=True)
            payload = {"event": REFUSED, "station": name, "image": str(planned), "source": arrival.source,
                       "refused": {"id": key, "category": self.config.category, "image_name": arrival.name,
                                   "image_sha256": digest or None, "reason": reason, "time": iso_time()}}  # fmt: skip
            self.tables.write_failed(name, digest, arrival.name, reason, arrival.appeared, key=key,
                                     planned=str(planned), sinks=sinks, payload=payload)  # fmt: skip
        except Exception as exc:  # the database locked, full or away: nothing stored, the image stays for the next try
            self._pause(f"{arrival.name}: not inspected ({reason}), and the history could not store that: "
                        f"{type(exc).__name__}: {exc}")  # fmt: skip
            return False
        checkpoint("station refusal stored")
        try:
            actual = source.refuse(arrival, reason)
        except NotPutAside as exc:
            self._handled_now(arrival, digest, "refused", "refuse")
            return self._refused_nowhere(arrival.name, key, reason, str(exc))
        except OSError as exc:
            self._pause(f"{arrival.name}: not inspected ({reason}), and it could not be put aside: "
                        f"{exc.strerror or exc}")  # fmt: skip
            return False
        self._handled_now(arrival, digest, "refused", "refuse")
        self.log(f"eagle station {name}: {arrival.name}: not inspected: {reason}")
        checkpoint("station refusal put aside")
        at = planned if actual is None else Path(actual)
        self._sync_move(at)
        self._owed = OwedFiling(digest, key, str(at), True, str(planned))
        self._owed_kept = self._owed_before = False
        return self._file_owed()  # False: put aside, its place stored first at the next step

    def _put_elsewhere(self, arrival: Arrival, digest: str, place: Path, *, refused: bool = False) -> bool | None:
        """Whether the content ``digest`` of ``arrival`` was put aside or away at ``place`` (or a name beside it)
        by an earlier file: ``True`` (where, in :attr:`_put_at`), ``False`` (not there: ``arrival`` is that very
        file, stored before a kill or a failed put-away kept it from being put there), ``None``: not known (a
        source that cannot say, ``place`` being ``arrival``'s own, as in sidecar mode, or the look failing).

        Why: after a kill between putting a file aside and storing where, the same name and content may arrive
        again before the restart has looked; only the place tells the file put aside from the one now waiting."""
        filed_at = getattr(self.config.source, "filed_at", None)
        if not callable(filed_at) or place == arrival.path:
            return None
        try:
            at = (
                filed_at(arrival.name, digest, place, refused=refused)
                if refused
                else filed_at(arrival.name, digest, place)
            )
        except (OSError, TypeError):  # TypeError: a plugin source's filed_at without refused=
            return None
        if at is None:
            return False
        self._put_at = Path(at)
        return True

    def _refused_nowhere(self, image: str, key: str, reason: str, why: str) -> bool:
        """The source put the image of refusal ``key`` nowhere (:class:`NotPutAside`, ``why``): its held rows go at
        once, with ``image`` null, there being no place to store. ``False`` (the intake paused) when the history
        cannot take that now: the rows stay held, and the look after the next poll releases them (see
        :meth:`_resolve_unfiled`)."""
        name = self.config.name
        self.log(f"eagle station {name}: {image}: not inspected: {reason}; not put aside ({why}): told with no place")
        try:
            self.tables.release_held(name, key, unplaced=True)
        except Exception as exc:  # the database locked, full or away
            self._pause(f"refusal {key}: its image was not put aside ({why}), and the history could not store that: "
                        f"{type(exc).__name__}: {exc}")  # fmt: skip
            return False
        self._wake_couriers()
        return True

    def _say(self, line: str) -> None:
        if not self.quiet:
            self.log(f"eagle station {self.config.name}: {line}")


class Running:
    """A station the manager runs: its runner, its intake thread and what the user or a fault made of it."""

    def __init__(self, runner: StationRunner, spec: dict[str, Any] | None, log: Log) -> None:
        self.runner = runner
        #: The body it was created with through ``/v1/stations`` (None: declared in a stations file).
        self.spec = spec
        self.log = log
        #: The last unexpected error of its intake (a bug in a plugin source), until an image goes through.
        self.error: str | None = None
        self.halt = runner.halt  # one flag: the loop ends, and a turn takes no further image
        #: The loop's look at :attr:`halt` that ends it and :meth:`resume` are one at a time (see :meth:`resume`).
        self._gate = threading.Lock()
        self._ended = False
        #: The source is closed by the intake thread as it ends (:meth:`close_source`, a stop past the grace).
        self._close_at_end = False
        #: When it was last told to stop (:meth:`halt_all`; monotonic), until :meth:`resume`.
        self._halted_at: float | None = None
        #: Says once that a stopped run is still finishing its image long past the grace (:meth:`close_source`).
        self._late: threading.Timer | None = None
        self.thread = self._new_thread()

    def _new_thread(self) -> threading.Thread:
        return threading.Thread(target=self._run, name=f"eagle-station-{self.runner.config.name}", daemon=True)

    @property
    def name(self) -> str:
        return self.runner.config.name

    @property
    def user_paused(self) -> bool:
        """Paused by the user: takes no image until resumed (the runner keeps it, to say it in the state file)."""
        return self.runner.user_paused

    @user_paused.setter
    def user_paused(self, paused: bool) -> None:
        self.runner.set_user_paused(paused)

    def state(self) -> str:
        if self.user_paused:
            return "paused"
        if self.error is not None:
            return f"error: {self.error}"
        if self.runner.paused is not None:
            return f"waiting: {self.runner.paused}"
        source = self.runner.source_warning()  # a camera whose PLC trigger is away takes no image: not running
        return "running" if source is None else f"waiting: {source}"

    def alive(self) -> bool:
        """Whether its intake thread or one of its couriers still runs (a stop waits for none of them past its
        grace: an inspection of a large image, a delivery to a slow receiver)."""
        return self.thread.is_alive() or any(courier.is_alive() for courier in self.runner.couriers)

    def halt_all(self) -> None:
        """Tell the intake and the couriers to stop: the image in hand is finished, each courier's try too."""
        if self._halted_at is None:
            self._halted_at = time.monotonic()
        self.halt.set()
        self.runner.halt_couriers()

    def stopping(self, why: str) -> None:
        """It is stopped for good (``why``: ``"was deleted"``): while its intake finishes the image in hand, a
        station started on its hot folder is told to try again in a moment, not to stop this one (see
        :meth:`HotFolder.finishing`); the folder stays locked until :meth:`close_source` lets it go."""
        finishing = getattr(self.runner.config.source, "finishing", None)
        if callable(finishing):
            finishing(why)

    def wait(self, grace_s: float) -> bool:
        """Wait up to ``grace_s`` for the intake thread and the couriers to end: whether all of them did."""
        deadline = time.monotonic() + grace_s
        self.thread.join(max(0.0, deadline - time.monotonic()))
        for courier in self.runner.couriers:
            courier.join(max(0.0, deadline - time.monotonic()))
        return not self.alive()

    def resume(self) -> None:
        """Take back a stop that did not end in time (:meth:`halt_all`, :meth:`wait`): the station runs on as it
        was, the image in hand finished by the same thread, or a new thread takes the next one."""
        with self._gate:
            going = not self._ended
            self.halt.clear()
            self._halted_at = None
        if not going:
            self.thread.join()
            self._ended = False
            self.thread = self._new_thread()
            self.thread.start()
        self.runner.resume_couriers()

    def close_source(self, why: str = "was stopped", grace_s: float = 0.0) -> None:
        """Close the source (a hot folder's lock released) once the intake thread has ended: now if it has (or
        never started), else by that thread as it ends. A thread still finishing an image past the stop's grace
        may still move a file in the folder: until it ends, the folder stays locked, so no other station on it
        starts and takes the same image. One still running :data:`LATE_GRACES` times ``grace_s`` (the service's
        shutdown grace) after it was told to stop is said in one line, naming the station (``why``: how it was
        stopped) and the image, as the folder is held by nothing the API lists meanwhile."""
        with self._gate:
            if self.thread.is_alive() and not self._ended:
                self._close_at_end = True
                halted = self._halted_at if self._halted_at is not None else time.monotonic()
                late = LATE_GRACES * grace_s
                self._late = threading.Timer(max(0.0, halted + late - time.monotonic()), self._say_late, (why, late))
                self._late.daemon = True
                self._late.start()
                return
        _close_source(self.runner)

    def _say_late(self, why: str, late_s: float) -> None:
        with self._gate:
            if self._ended:
                return
        image = self.runner.current
        what = f"image {image!r}" if image is not None else "its intake's step (no image in hand)"
        folder = getattr(self.runner.config.source, "folder", None)
        held = f"; its hot folder {folder} stays locked (a station started on it is refused) until that ends" \
            if folder is not None else ""  # fmt: skip
        self.log(f"eagle station {self.name}: warning: it {why} but is still finishing {what} {late_s:g} s after it "
                 f"was told to stop ({LATE_GRACES}x the shutdown grace){held}")  # fmt: skip

    def _run(self) -> None:
        try:
            self._loop()
        finally:
            with self._gate:
                self._ended = True
                close = self._close_at_end
                late, self._late = self._late, None
            if late is not None:
                late.cancel()
            if close:
                _close_source(self.runner)

    def _loop(self) -> None:
        source = self.runner.config.source
        while True:
            with self._gate:
                if self.halt.is_set():
                    self._ended = True
                    return
            if self.user_paused:
                self.halt.wait(0.2)
                continue
            try:
                taken = self.runner.step()
            except Exception as exc:  # a bug in a source must not end the station: say it (once), retry
                self.error = self.runner.failed_as(exc)
                self.runner.fail(self.error, exc)
                self.halt.wait(PAUSE_RETRY_S)
                continue
            if self.runner.paused is None:
                self.error = None  # a step went through: the intake works again (its resume said so)
            if not taken:
                self.halt.wait(source.poll_s)


class StationManager:
    """The stations of one process (``eagle station run``, or ``eagle serve``'s ``/v1/stations``).

    Each station's intake runs in its own thread, so a stop (SIGTERM) never cuts an image between
    storing its verdict and putting it away: the thread finishes the image it holds, then ends.
    """

    def __init__(self, state: ServiceState, log: Log = _stderr, *, quiet: bool = False) -> None:
        self.state = state
        self.log = _escaping(log)
        self.quiet = quiet
        self.tables = StationTables(state.store)
        self._lock = threading.Lock()
        self._running: dict[str, Running] = {}
        #: Stations removed whose intake thread or a courier had not ended within the grace (an inspection or a
        #: delivery in flight): no station of that name starts until they have, or it would take the same image.
        self._stopping: dict[str, Running] = {}

    def add(
        self, config: StationConfig, *, spec: dict[str, Any] | None = None, paused: bool = False,
        owns: Callable[[], bool] | None = None,
    ) -> Running:  # fmt: skip
        """Start ``config`` (its model is loaded and its sinks probed now: a category that cannot be loaded, or
        a receiver that answers that the configuration is wrong, fails here). ``owns``: whether this process
        still holds the station's lock in a shared history (:attr:`StationRunner.owns`)."""
        runner = self._prepare(config)
        runner.owns = owns
        return self._launch(runner, spec, paused)

    def add_all(
        self, configs: list[StationConfig], owns: Mapping[str, Callable[[], bool]] | None = None, *,
        lock_lines: bool = True, file_sha256: str | None = None,
    ) -> None:  # fmt: skip
        """Start every station of ``configs`` once all of them loaded their models and probed their sinks: one
        that cannot start refuses them all before any takes an image. ``lock_lines``: see
        :attr:`StationRunner.lock_lines`; ``file_sha256``: the stations file's (:attr:`StationRunner.file_sha256`)."""
        for runner in [self._prepare(config) for config in configs]:
            runner.owns = None if owns is None else owns.get(runner.config.name)
            runner.lock_lines = lock_lines
            runner.file_sha256 = file_sha256
            self._launch(runner, None, False)

    def _prepare(self, config: StationConfig) -> StationRunner:
        with self._lock:
            if config.name in self._running:
                raise StationConfigError(f"station {config.name!r} exists already")
        return self.prepare(config)

    def prepare(
        self, config: StationConfig, owns: Callable[[], bool] | None = None, live: Sequence[Any] | None = ()
    ) -> StationRunner:  # fmt: skip
        """A runner of ``config``, checked (its model loaded, its sinks probed) but not started: what
        :meth:`replace` starts, or what a change is checked with (then :meth:`StationRunner.close`). ``live``: the
        sinks of the run it changes, still connected (``None``: on another replica, not known)."""
        # outside the lock: loading a model and probing the sinks take seconds, which must not hold up the others
        runner = StationRunner(config, self.state, self.log, quiet=self.quiet, live=live)
        runner.owns = owns
        return runner

    def _refuse_while_stopping(self, name: str) -> None:
        """Under :attr:`_lock`: :class:`StationBusyError` while an earlier run of ``name`` still has a thread."""
        old = self._stopping.get(name)
        if old is None:
            return
        if old.alive():
            raise StationBusyError(name)
        del self._stopping[name]

    def check_startable(self, name: str) -> None:
        """:class:`StationBusyError` while an earlier run of ``name`` still has a thread (it may still write)."""
        with self._lock:
            self._refuse_while_stopping(name)

    def _launch(self, runner: StationRunner, spec: dict[str, Any] | None, paused: bool) -> Running:
        with self._lock:
            if runner.config.name in self._running:
                raise StationConfigError(f"station {runner.config.name!r} exists already")
            self._refuse_while_stopping(runner.config.name)
            runner.user_paused = paused  # said in the state file by its start, below
            running = Running(runner, spec, self.log)
            self._running[runner.config.name] = running
        try:
            running.runner.start()
        except BaseException:
            runner.halt_couriers()  # those it started before it failed
            release = getattr(runner.config.source, "release", None)
            if callable(release):  # the hot folder (camera frames folder) it locked
                release()
            with self._lock:
                self._running.pop(runner.config.name, None)
            raise
        running.thread.start()
        return running

    def replace(
        self, name: str, runner: StationRunner, *, spec: dict[str, Any] | None, paused: bool, grace_s: float,
        between: Callable[[], None] | None = None,
    ) -> Running:  # fmt: skip
        """Stop ``name`` and start ``runner`` (built and checked by :meth:`prepare`) in its place, once the old
        one's intake thread and couriers have really ended: two never take the same image, nor deliver the same
        verdict. One that does not end within ``grace_s`` (an inspection or a delivery in flight) is resumed as it
        was and :class:`StationBusyError` raised; ``runner`` is then not started (the caller closes it).
        ``between``: called once the old run ended, before the new one starts, with nothing of the station moving
        (the outbox rows of the sinks a change removes, counted and dropped there); what it raises resumes the old
        run as it was, and is raised."""
        with self._lock:
            old = self._running.get(name)
        if old is None:
            raise StationConfigError(f"station {name!r} is not running here")
        old.halt_all()
        if not old.wait(grace_s):
            old.resume()
            raise StationBusyError(name, kept=True)
        if between is not None:
            try:
                between()
            except BaseException:
                old.resume()
                raise
        with self._lock:
            if self._running.get(name) is old:
                del self._running[name]
        old.runner.stop(0.0)  # every thread ended: only says the intake stopped
        old.runner.close()
        return self._launch(runner, spec, paused)

    def get(self, name: str) -> Running | None:
        with self._lock:
            return self._running.get(name)

    def all(self) -> list[Running]:
        with self._lock:
            return list(self._running.values())

    def remove(self, name: str, grace_s: float, why: str = "was deleted", *, forget: bool = False) -> bool:
        """Stop and forget ``name``; ``False`` when there is no such station. A thread of it that has not ended
        within ``grace_s`` (an inspection in flight) keeps any station of that name from starting until it has,
        and its hot folder locked: a station started on that folder meanwhile is refused with ``why`` (how it was
        stopped, ``"was deleted"``) and told to try again in a moment (409 ``folder_finishing``). ``forget``: the
        station is deleted, not merely stopped here: its sinks clear what they left on their receivers (an MQTT
        sink's retained status and last verdict), which a stop keeps for the station's next run."""
        with self._lock:
            running = self._running.pop(name, None)
        if running is None:
            return False
        self._stop(running, grace_s, why, forget=forget)
        if running.alive():
            with self._lock:
                self._stopping[name] = running
        return True

    def idle(self) -> bool:
        """Every station idle, each judged between two of its steps.

        Why the step count: reading :attr:`StationRunner.busy` and then looking at the source is two moments; a
        step begun between them (an image taken, inspected, its folder taken away meanwhile) made the look see no
        backlog and nothing owed yet (its verdict not stored), and ``--until-idle`` ended mid-image without the
        lines the image's outcome says. A look during which a step began or ended, or that one was in, is not taken.
        """
        for running in self.all():
            runner = running.runner
            steps = runner.steps
            if runner.busy or not runner.idle() or runner.busy or runner.steps != steps:
                return False
        return True

    def stop(self, grace_s: float) -> None:
        """Stop every station: each finishes the image it holds (within ``grace_s``), couriers their try."""
        running = self.all()
        for one in running:
            one.halt.set()
        deadline = time.monotonic() + grace_s
        for one in running:
            self._stop(one, max(0.0, deadline - time.monotonic()), "was stopped")

    def _stop(self, running: Running, grace_s: float, why: str, *, forget: bool = False) -> None:
        running.stopping(why)  # no longer listed: its folder, locked until its image is done, says why
        running.halt_all()
        deadline = time.monotonic() + grace_s
        running.thread.join(max(0.0, deadline - time.monotonic()))
        running.runner.stop(max(0.0, deadline - time.monotonic()))
        for sink in running.runner.config.sinks:
            clear = sink_hook(sink.sink, "station_forget") if forget else None
            if clear is not None:
                try:
                    clear()
                except Exception as exc:  # a plugin's failure must not keep the station from being deleted
                    self.log(f"eagle station {running.name}: warning: sink {sink.sink.name}: what it left on its "
                             f"receiver was not cleared: {type(exc).__name__}: {exc}")  # fmt: skip
            sink.sink.close()
        # past the grace: by the intake thread as it ends, its folder locked until then
        running.close_source(why, self.state.settings.shutdown_grace_s)


def _close_source(runner: StationRunner) -> None:
    close = getattr(runner.config.source, "close", None)
    if callable(close):
        close()


#: How many shutdown graces after a stop a run still finishing its image is said in the log (once).
LATE_GRACES = 5

#: Seconds between checks that ``eagle station run`` still holds its stations' locks in a shared history, and
#: between its tries to take a lost one back.
LEASE_CHECK_S = 5.0


class FileLocks:
    """The locks ``eagle station run`` holds in a shared history, one per station of its file, and what it does
    when the database drops one (a restart, a failover: every session's locks end with it).

    Why not exit: the line would stop until a person (or a service manager) started the command again, while the
    service's own stations ride the same restart out. So a lost lock pauses that station (its intake, by
    :attr:`StationRunner.owns`, and its couriers, as another process may deliver the same outbox rows once it holds
    the lock), and every :data:`LEASE_CHECK_S` the lock is asked for again. Taken back: the station goes on where it
    was. Held by another process meanwhile (a replica of the service, another ``eagle station run`` of the same
    file): this one keeps waiting, taking nothing, and says who holds it; when that process ends, its lock ends
    with it and this one takes the station back, so the line never stops while one of them runs. One line when a
    station pauses, one when another process is found holding it, one when it resumes.
    """

    def __init__(self, backend: HistoryBackend, manager: StationManager, log: Log) -> None:
        self.backend = backend
        self.manager = manager
        self.log = _escaping(log)
        self._lock = threading.Lock()
        self._leases: dict[str, Lease] = {}
        #: Stations whose lock is lost: when it was found lost (monotonic), and who held it at the last look.
        self._lost: dict[str, tuple[float, str | None]] = {}

    def take(self, name: str) -> bool:
        """Hold ``name``'s lock now (``False``: another process holds it)."""
        lease = self.backend.try_lock(station_lock(name))
        if lease is None:
            return False
        with self._lock:
            self._leases[name] = lease
        return True

    def holder(self, name: str) -> str:
        """Who holds ``name``'s lock, as the database says (``another process`` where it cannot say)."""
        try:
            who = self.backend.lock_holder(station_lock(name))
        except Exception:  # the database away again: the next look says
            who = None
        return who or "another process"

    def owns(self, name: str) -> Callable[[], bool]:
        """Whether this process holds ``name``'s lock now (asked by its station before each image)."""

        def held() -> bool:
            with self._lock:
                lease = self._leases.get(name)
            return lease is not None and lease.held()

        return held

    def check(self) -> None:
        """Find the locks the database dropped and pause their stations; take lost ones back, resuming them."""
        with self._lock:
            names = list(self._leases)
        for name in names:
            with self._lock:
                lease = self._leases.get(name)
            if name not in self._lost and lease is not None and lease.held():
                continue
            running = self.manager.get(name)
            if running is None:
                continue
            runner = running.runner
            if name not in self._lost:
                self._lose(name, runner)
            try:
                again = self.backend.try_lock(station_lock(name))
            except Exception as exc:  # the database still away: the next check tries again
                _LOG.debug("eagle station %s: its lock could not be asked for (%s); trying again", name, exc)
                continue
            if again is None:
                self._held_elsewhere(name, runner)
                continue
            with self._lock:
                old, self._leases[name] = self._leases.get(name), again
            if old is not None:
                old.release()
            since, _ = self._lost.pop(name)
            runner.resume_couriers()
            runner.lost_reason = LOST_LOCK
            runner.recheck.set()
            self.log(f"eagle station {name}: took its lock in the history back after {time.monotonic() - since:.0f} "
                     "s; intake and deliveries resume")  # fmt: skip

    def _lose(self, name: str, runner: StationRunner) -> None:
        """``name``'s lock is gone: its intake and couriers pause, in one line."""
        self._lost[name] = (time.monotonic(), None)
        runner.halt_couriers()
        runner.lost_reason = (f"{LOST_LOCK}; deliveries wait too, while this process takes the lock back (tried "
                              f"every {LEASE_CHECK_S:g} s)")  # fmt: skip
        runner.recheck.set()  # the status says so at the intake's next turn, not only at the next image
        self.log(f"eagle station {name}: warning: its lock in the history was lost (a database restart?); intake "
                 f"and deliveries paused, taking the lock back every {LEASE_CHECK_S:g} s (a line when it "
                 "resumes)")  # fmt: skip

    def _held_elsewhere(self, name: str, runner: StationRunner) -> None:
        """Another process took ``name``'s lock: this one waits, taking nothing, and says who (once per holder)."""
        since, said = self._lost[name]
        who = self.holder(name)
        if who == said:
            return
        self._lost[name] = (since, who)
        runner.lost_reason = (f"its lock in the history is held by {who}, which runs this station now; this process "
                              "takes no image and delivers nothing until that lock is free")  # fmt: skip
        runner.recheck.set()
        self.log(f"eagle station {name}: warning: its lock in the history is held by {who}; this process takes no "
                 f"image and delivers nothing while it is, and takes the station back when it is free (asked every "
                 f"{LEASE_CHECK_S:g} s)")  # fmt: skip

    def release(self) -> None:
        with self._lock:
            leases, self._leases = list(self._leases.values()), {}
        for lease in leases:
            lease.release()


def _idle(manager: StationManager) -> bool:
    """:meth:`StationManager.idle`, ``False`` while the history cannot say (a shared one away: a restart)."""
    try:
        return manager.idle()
    except Exception as exc:  # the outbox not readable now: not idle, looked at again in a moment
        _LOG.debug("stations: idle not known (%s)", exc)
        return False


#: Seconds between two looks at the stations file while ``eagle station run`` runs (an edit needs a restart).
FILE_CHECK_S = 2.0


def _say_file_changed(stations: StationsFile, seen: str, log: Log) -> str:
    """One warning line when the stations file changed since the last look and is not the one this run started
    with (an edit is not applied while running: the status says so too, see
    :func:`~eagle_iad.station.status.file_changed`); the file's digest now."""
    now = file_digest(stations.path)
    if now != seen and now != stations.digest:
        how = "changed" if now else "was removed or cannot be read"
        log(f"eagle station: warning: {stations.path} {how} since this run started; restart to apply (SIGTERM, then "
            "start again: nothing is lost); this run goes on with the file as it started")  # fmt: skip
    return now


def run_stations(stations: StationsFile, *, until_idle: bool = False, quiet: bool = False, log: Log = _stderr) -> None:
    """Run every station of ``stations`` in this process until stopped (SIGTERM, SIGINT) or, with
    ``until_idle``, until no image waits and every verdict is delivered (or a dead letter). With a shared history
    a station whose lock the database dropped pauses until this process holds it again (see :class:`FileLocks`)."""
    for station in stations.stations:  # nothing here could ever trigger it: a run that took 0 frames and said nothing
        if getattr(station.source, "http_trigger", False):
            raise StationConfigError(
                f'{stations.path}: station {station.name!r}: source: trigger = "http" takes a frame only on POST '
                f"/v1/stations/{station.name}/trigger, a route of the service, and eagle station run has no HTTP "
                "route: nothing could trigger it here; run this station under eagle serve (its stations file, or POST "
                "/v1/stations), or take frames by time or count here (every_ms, every_n_frames)"
            )
    settings = stations.settings()
    stations.make_folders()
    state = ServiceState(settings, backend=None)
    manager = StationManager(state, log, quiet=quiet)
    locks = FileLocks(state.store.backend, manager, log)
    publisher: Publisher | None = None
    try:
        for station in stations.stations:  # with a shared history, another process may run it already
            if not locks.take(station.name):
                where = state.store.backend.describe()
                raise StationConfigError(f"{stations.path}: station {station.name!r} runs in another process sharing "
                                         f"the history {where} ({locks.holder(station.name)}); stop it there "
                                         "first")  # fmt: skip
        # With a shared history another process may take a lock this one lost: each station asks before each image.
        owns = {s.name: locks.owns(s.name) for s in stations.stations}
        # the lines of a lost lock are FileLocks', for the intake and the deliveries at once
        shared = state.store.shared
        manager.add_all(stations.stations, owns if shared else None, lock_lines=not shared,
                        file_sha256=stations.digest or None)  # fmt: skip
        # each station's figures and state in the history, for every replica sharing it to list (fleet.py)
        # the figures with this machine's folders relative (every replica's viewers read them; see fleet.hide_roots)
        roots = (stations.path.resolve().parent, settings.data_root, settings.state_dir, settings.models_dir)
        publisher = Publisher(state.store, manager, stations.path, owns if shared else None, roots=roots)
        publisher.forget_removed()
        publisher.publish()
        publisher.start()
        checked = looked = time.monotonic()
        seen = stations.digest
        while not (until_idle and _idle(manager)):
            time.sleep(0.1)
            if time.monotonic() - looked >= FILE_CHECK_S:
                looked = time.monotonic()
                seen = _say_file_changed(stations, seen, log)
            if shared and time.monotonic() - checked >= LEASE_CHECK_S:
                checked = time.monotonic()
                locks.check()
    finally:
        if publisher is not None:
            publisher.halt()
        manager.stop(settings.shutdown_grace_s)
        if publisher is not None:
            publisher.stopped()  # while the locks are still held: no other process writes these rows yet
        locks.release()
        state.close()
