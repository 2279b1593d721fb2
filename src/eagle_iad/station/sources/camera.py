"""A camera or stream through OpenCV: a USB device, an RTSP/HTTP stream or a video file, one frame taken
on a trigger (every N-th frame, every T ms, a call to :meth:`Camera.trigger`, or a PLC's signal over OPC UA).

Why a reader thread: a live stream does not wait for the station. Its frames pile up in OpenCV's (and
the network's) buffer while an image is inspected, and a frame read later would be seconds old. The
reader reads every frame as it comes (``grab``; only the frames the trigger selects are decoded into
pixels), so the frame taken is the current one and its time stamp is when it arrived. Selected frames
wait in a small queue (:data:`QUEUE`); when the station falls behind a live source, the oldest is
dropped (counted, and logged) rather than the newest delayed. A video file is not live: its reader
waits for room in the queue instead of dropping, the trigger's ``every_ms`` counts in the file's own
time (its frame rate), and the file's end finishes the source, so ``--until-idle`` ends once every
frame the trigger selected was inspected. A stream that drops is reopened after ``reconnect_s``.

:meth:`Camera.trigger` takes the next frame read, in any mode; with ``trigger = "http"`` those are the
only frames taken. The service calls it for ``POST /v1/stations/<name>/trigger``; ``eagle station
run`` has no HTTP route, so it refuses a ``trigger = "http"`` camera at start (the same table is valid in
the service). With ``trigger = "opcua"`` the PLC's node triggers the frames (a Boolean's
rising edge, an integer counter's increase: :mod:`~eagle_iad.station.sources.opcua_trigger`), in the service and
in ``eagle station run`` alike; a video file waiting for such triggers plays at its own pace, as for ``"http"``.

Each frame taken is PNG-encoded (lossless: the inspection sees exactly the pixels OpenCV decoded) and
saved as ``<frames>/<name_prefix>-<frame index>.png`` *before* it is handed over, so the verdict's
``image`` names a file that exists when a sink (the folder sink's copy) reads it, even after a crash
between storing the verdict and the next frame; the bytes are handed over too, not read back. A name
already in the folder (a restart counts frames from 0 again) gets ``-1``, ``-2``, ...: a saved frame is
never replaced. A frame the station refuses goes to ``<frames>/failed/`` with the reason beside it, as
in a hot folder. A frame saved but never taken (the station killed between the save and storing its
record, or stopped while its intake was paused) is taken first at the next start, under its own name
(see :meth:`Camera.station_recover`): the part it shows still gets an answer. The record's ``source``
names the camera, the frame index and the capture time (ISO 8601, UTC, milliseconds). A still scene
repeats frames, so repeated content is inspected again (``dedupe = False``). Frames left so must be this
station's own: while it runs, a camera holds its ``frames`` folder and ``name_prefix`` (:meth:`Camera.claim`,
``folder_lock.py``), so another camera on both, or a hot folder on that folder, is refused, in any process.

OpenCV is an optional dependency (``pip install 'eagle-iad[camera]'``), imported when a stations file
names this source, so the other sources work without it. Nothing is opened while the file is read
(``eagle station status`` reads the same file and must not take the camera from a running station),
except that a video file is checked to be one.
"""

from __future__ import annotations

import contextlib
import hashlib
import heapq
import os
import re
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import urlsplit, urlunsplit

from eagle_iad.atomic import atomic_write_text
from eagle_iad.errors import FolderInUseError
from eagle_iad.ranges import Range
from eagle_iad.station.parts import SOURCES, Arrival, FiledBy, NotPutAside, Options
from eagle_iad.station.sources.folder import FAILED, first_free, move_new
from eagle_iad.station.sources.folder_lock import FramesLock, lock_frames
from eagle_iad.station.sources.opcua_trigger import OpcUaTrigger
from eagle_iad.stops import checkpoint

if TYPE_CHECKING:
    import cv2

#: Frames the trigger selected that may wait for the station; a live source drops the oldest beyond it.
QUEUE = 8
#: URL schemes read as a stream (anything without ``://`` is a video file's path).
STREAM_SCHEMES = ("rtsp", "rtsps", "http", "https")
#: The trigger modes, one of which a source uses (``every_ms = 1000`` when none is given).
TRIGGERS = ("every_n_frames", "every_ms", "trigger")
#: What ``trigger`` takes: a frame on each ``POST /v1/stations/<name>/trigger`` (the service's route), or on each
#: rising edge or increase of a PLC's node over OPC UA (:mod:`~eagle_iad.station.sources.opcua_trigger`).
HTTP, OPCUA = "http", "opcua"
TRIGGER_KINDS = (HTTP, OPCUA)
#: The options of ``trigger = "opcua"`` (the PLC's endpoint, node and user), refused without it.
OPCUA_OPTIONS = ("trigger_endpoint", "trigger_node", "username", "password_env")
DEVICE = Range(0, 1023)
EVERY_N_FRAMES = Range(1, 1_000_000)
EVERY_MS = Range(0.0, 86_400_000.0, low_open=True)
RECONNECT_S = Range(0.1, 3600.0)
POLL_S = Range(0.01, 60.0)
NAME_PREFIX = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
#: Milliseconds OpenCV's FFmpeg backend waits to open a stream, and for a frame, before giving up
#: (then the stream counts as dropped and is reopened after ``reconnect_s``).
OPEN_TIMEOUT_MS = 10_000
READ_TIMEOUT_MS = 10_000
#: Frame rate assumed for a video file that does not say its own.
DEFAULT_FPS = 25.0
#: Seconds between two log lines about dropped frames (the first drop is logged at once).
DROP_LOG_S = 10.0
#: PNG compression level (0-9): frames are encoded once and decoded once, so speed over size.
PNG_LEVEL = 1
#: The most frames saved and never taken that a start takes (see :meth:`Camera.station_recover`). A stop leaves
#: one (frames are saved one at a time, as the station takes them); more, with none of this station's inspected
#: frames among them, are no frames it left (a new history beside an old ``frames`` folder): none is taken.
LEFTOVERS = QUEUE
#: Frames looked up in the history at once by that look, newest first.
LEFTOVER_BATCH = 16
#: How many of the newest frames a start looks at: at most :data:`LEFTOVERS` never taken and the station's last
#: inspected one (the walk stops at either), then :data:`LEFTOVER_BATCH` older ones that must be this station's too.
LOOKED_AT = LEFTOVERS + 1 + LEFTOVER_BATCH


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def shown_url(url: str) -> str:
    """``url`` with its password replaced by ``***`` (the text goes into records, logs and the status)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port is not None else "")
    return urlunsplit(parts._replace(netloc=netloc))


def stamp(at: float) -> str:
    """``at`` (``time.time()``) as ISO 8601 in UTC with milliseconds: ``2025-03-01T08:15:02.123Z``."""
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class _Frame:
    """One selected frame waiting for the station: the pixels (BGR, as OpenCV decodes), when and which."""

    index: int
    at: float
    pixels: Any
    #: The PNG bytes and the file they were saved to, once handed to the station (a second poll after a
    #: paused intake hands the same file again).
    png: bytes | None = None
    file: Path | None = None
    #: Where it would have been saved, once handed to the station as refused (it could not be saved there).
    unsaved: Path | None = None


class Camera:
    """A :class:`~eagle_iad.station.parts.Source` over one OpenCV capture (device, stream or video file)."""

    kind: ClassVar[str] = "camera"
    dedupe = False
    moves_files = False  # a frame stays where it was saved: its planned place

    def __init__(self, options: Options) -> None:
        try:
            import cv2  # noqa: F401  (checked now: a missing package is a start-up error)
        except ImportError:
            raise options.error("kind", "camera needs OpenCV: pip install 'eagle-iad[camera]'") from None
        has_device, has_url = "device" in options.table, "url" in options.table
        if has_device and has_url:
            raise options.error("url", "and device are both given; a source reads one camera, stream or file")
        if not has_device and not has_url:
            raise options.error("url", "is missing; give url (rtsp://, http://, https:// or a video file) or "
                                       "device (a USB camera's index)")  # fmt: skip
        self.device: int | None = options.integer("device", 0, DEVICE) if has_device else None
        self.url: str | None = None
        #: The video file read, or ``None`` for a device or stream (a live source).
        self.file: Path | None = None
        if has_url:
            self.url = self._read_url(options)
        modes = [key for key in TRIGGERS if key in options.table]
        if len(modes) > 1:
            raise options.error(modes[0], f"and {modes[1]} are both given; choose one trigger: every_n_frames, "
                                          f"every_ms or trigger ({', '.join(TRIGGER_KINDS)})")  # fmt: skip
        self.every_n_frames: int | None = None
        self.every_ms: float | None = None
        self.http_trigger = False
        trigger: str | None = None
        if modes == ["every_n_frames"]:
            self.every_n_frames = options.integer("every_n_frames", 1, EVERY_N_FRAMES)
        elif modes == ["trigger"]:
            trigger = options.text("trigger", None, TRIGGER_KINDS)
            self.http_trigger = trigger == HTTP
        else:
            self.every_ms = options.number("every_ms", 1000.0, EVERY_MS)
        self.reconnect_s = options.number("reconnect_s", 5.0, RECONNECT_S)
        #: The PLC whose node triggers each frame (``trigger = "opcua"``), or ``None``.
        self.plc: OpcUaTrigger | None = None
        if trigger == OPCUA:
            self.plc = OpcUaTrigger(options, self.reconnect_s)
            self.plc.fire = self._plc_fired
            self.plc.log = lambda line: self.log(f"eagle station: camera {self.what}: {line}")
        else:
            given = [key for key in OPCUA_OPTIONS if key in options.table]
            if given:
                raise options.error(given[0], 'is an option of trigger = "opcua" (a frame on a PLC\'s signal), which '
                                              "this camera does not have")  # fmt: skip
        self.poll_s = options.number("poll_s", 0.05, POLL_S)
        self.name_prefix: str = options.text("name_prefix", "frame")
        if not NAME_PREFIX.fullmatch(self.name_prefix):
            raise options.error("name_prefix", f"{self.name_prefix!r} must be 1-64 letters, digits, '_', '.', '-', "
                                               "starting with a letter or digit")  # fmt: skip
        #: Where taken frames are saved (made at the start: :meth:`claim`; relative: to the stations file's folder).
        self.frames: Path = options.path("frames", "frames")
        if self.frames.exists() and not self.frames.is_dir():
            raise options.error("frames", f"{self.frames} exists and is not a folder")
        parent = self.frames if self.frames.exists() else self.frames.parent
        #: Why frames cannot be saved now (the last save failed, or, looked at by ``eagle station status``, the
        #: folder cannot be written), or ``None``: a warning in the status while it lasts (see :meth:`warning`).
        self._unsaved: str | None = None
        #: Why a live camera takes no frame now: it cannot be opened (unplugged, the stream down) since when, or None.
        self._unopened: str | None = None
        if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
            unwritable = f"{self.frames} cannot be created or written by this user"
            if not options.looking:
                raise options.error("frames", unwritable)
            # the status must answer exactly then: it says so, and that a run is refused
            self._unsaved = (f"frames {unwritable}: the station cannot start (eagle station run refuses it), and a "
                             "running one refuses each frame it takes, told to the sinks, until it can")  # fmt: skip
        #: Read for ``eagle station status`` (see :attr:`Options.looking`): nothing is started, so only what the
        #: file and folders say is warned of, not a PLC's connection, which this process never makes.
        self.looking = options.looking
        #: Where the log lines go (the reader's reconnections, dropped frames, a file that cannot be read).
        self.log: Callable[[str], None] = _stderr
        #: Frames the trigger selected that a live source dropped because the queue was full.
        self.dropped = 0
        self._queue: deque[_Frame] = deque()
        self._lock = threading.Condition()
        self._halt = threading.Event()
        self._wanted = threading.Event()  # trigger(): take the next frame read
        self._reader: threading.Thread | None = None
        self._ended = False  # a video file read to its end (or that could not be read): no more frames
        self._last_drop_log = -DROP_LOG_S
        #: Frames saved before this start and never taken (see :meth:`station_recover`), oldest first: handed to
        #: the station before any new frame, each until it is finished or refused (or gone).
        self._leftovers: list[Arrival] = []
        #: The frames folder's locks while a station runs (:meth:`claim`; see folder_lock.py), guarded by
        #: :attr:`_claiming` (a stop releases them from another thread than the intake's).
        self._frames_lock: FramesLock | None = None
        #: ``(station, state folder)`` from :meth:`claim` until :meth:`release`: who takes the locks again on a
        #: frames folder made again under its path (:meth:`_keep_lock`). Guarded by :attr:`_claiming` too.
        self._claim: tuple[str, Path] | None = None
        self._claiming = threading.Lock()

    def _read_url(self, options: Options) -> str:
        url: str = options.text("url")
        if "://" in url:
            parts = urlsplit(url)
            if parts.scheme.lower() not in STREAM_SCHEMES or not parts.hostname:
                raise options.error("url", f"{shown_url(url)!r} is not an rtsp://, http:// or https:// URL with a "
                                           "host, nor a video file")  # fmt: skip
            return url
        path: Path = options.path("url")  # relative to the stations file's folder (and checked as every path is)
        if not path.is_file():
            raise options.error("url", f"{path} is not a video file (no such file)")
        import cv2

        capture = cv2.VideoCapture(str(path))
        try:
            if not capture.isOpened():
                raise options.error("url", f"{path} cannot be read as a video by OpenCV")
        finally:
            capture.release()
        self.file = path
        return str(path)

    # What the station sees.

    @property
    def what(self) -> str:
        """The camera in words: the URL (password hidden), the file's path, or ``device N``."""
        return shown_url(self.url) if self.url is not None else f"device {self.device}"

    def describe(self) -> str:
        if self.every_n_frames is not None:
            trigger = "every frame" if self.every_n_frames == 1 else f"every {self.every_n_frames} frames"
        elif self.every_ms is not None:
            trigger = f"every {self.every_ms:g} ms" + (" of the video" if self.file is not None else "")
        elif self.plc is not None:
            trigger = self.plc.describe()
        else:
            trigger = "on each POST /v1/stations/<name>/trigger to the service"
        then = "finished at its end" if self.file is not None else f"reopened {self.reconnect_s:g} s after it drops"
        dropped = f"; {self.dropped} frames dropped so far" if self.dropped else ""
        missed = 0 if self.plc is None else self.plc.missed
        if missed:  # the PLC's parts seen to have no frame of their own (a counter's jump, a Boolean edge lost)
            dropped += f"; {missed} PLC part{'s' if missed > 1 else ''} without a frame so far (the log says which)"
        return f"camera {self.what} (a frame {trigger}, saved in {self.frames}; {then}){dropped}"

    def poll(self) -> Iterator[Arrival]:
        # Started before the frames a stop left are handed: the PLC is watched (and its parts counted) while they are
        # inspected, and a history down at start (the intake pausing on such a frame) does not keep the camera shut.
        # They still go first: a new frame is saved (named) only as it is handed, after them.
        self._start()
        yield from self._left_over()
        handed = -1
        while True:
            with self._lock:
                frame = next((f for f in self._queue if f.index > handed), None)
            if frame is None:
                return
            handed = frame.index
            source = f"{self.what} frame {frame.index} at {stamp(frame.at)}"
            if frame.file is None or frame.png is None:
                problem = self._save(frame)
                if problem is not None or frame.file is None or frame.png is None:
                    # a part was there (its trigger came): the station refuses it, so every sink, the PLC waiting
                    # for its answer included, hears of it; skipped, it was a log line and nothing else
                    if self._unsaved is None:  # one line when it starts; the station says each refusal
                        self.log(f"eagle station: camera {self.what}: frame {frame.index}: {problem}; refused, and so "
                                 "is each frame taken until one is saved again")  # fmt: skip
                    self._unsaved = (f"frames cannot be saved (the last, frame {frame.index} at {stamp(frame.at)}: "
                                     f"{problem}); each frame taken until one is saved again is refused, told to the "
                                     "sinks that take refusals")  # fmt: skip
                    frame.unsaved = self.frames / self._frame_name(frame)
                    yield Arrival(path=frame.unsaved, source=source, name=frame.unsaved.name, appeared=frame.at,
                                  data=frame.png, refused=f"frame {frame.index}: {problem}")  # fmt: skip
                    continue
                if self._unsaved is not None:
                    self._unsaved = None
                    self.log(f"eagle station: camera {self.what}: frames are saved again in {self.frames}")
                checkpoint("camera frame saved")  # a kill here leaves a frame no record names (see station_recover)
            yield Arrival(path=frame.file, source=source, name=frame.file.name, appeared=frame.at, data=frame.png)

    def backlog(self) -> int:
        """Frames waiting; at least 1 while a video file whose frames are taken by count or time has not ended (its
        frames are to come). A file waiting for triggers (``"http"``, ``"opcua"``) counts the frames triggered only:
        between two parts nothing waits, and its status, the console and ``eagle_station_backlog`` said 1 for ever.
        Frames saved before this start and not taken yet (:meth:`station_recover`) wait too."""
        with self._lock:
            waiting = len(self._queue) + len(self._leftovers)
            if self._coming() and not (self.http_trigger or self.plc is not None):
                return max(waiting, 1)
            return waiting

    def coming(self) -> bool:
        """Whether frames are still to come that no backlog counts yet: a video file not read to its end (one waiting
        for triggers included), so ``--until-idle`` waits for its end, as it did when its backlog said 1."""
        with self._lock:
            return self._coming()

    def _coming(self) -> bool:
        return self.file is not None and self._reader is not None and not self._ended

    def planned(self, arrival: Arrival) -> Path:
        return arrival.path

    def finish(self, arrival: Arrival, to: Path, record: Mapping[str, Any]) -> Path | None:
        self._handed(arrival)  # the frame stays where it was saved (its planned place)
        return None

    def station_recover(self, station: str, filed_by: FiledBy) -> str | None:
        """At the station's start (``eagle station run``, the service's): find the frames saved in :attr:`frames`
        before this start and never taken, to hand them to the station first (:meth:`poll`), oldest first, under
        their own names; the line the station logs of them, or ``None`` where there are none.

        Why: a frame is saved before it is handed over (see the module), so a station killed between the save and
        storing the frame's record (or stopped while its intake was paused) left a frame that no record names and
        no sink heard of: the part the PLC triggered got no answer. A hot folder takes such files at its start by
        itself; a camera counts its frames from 0 again and would never look at them.

        Which: the files named as this camera names frames (``<name_prefix>-<index>[-n].png``, not ``failed/``),
        by the time they were saved, newest first, until one that the history says was inspected and filed there
        with that very content (``filed_by``: for each of those paths, the station and content hash of the records
        filed there, see :meth:`~eagle_iad.station.outbox.StationTables.filed_by`; a frame removed and its name
        taken by a later frame is not the one its record names). Frames are saved one at a time as the station
        takes them, so those after it are the ones never taken. Another station's frame there (the same
        ``frames`` and ``name_prefix``), or more than :data:`LEFTOVERS` never taken, means the frames are not only
        this station's: none is taken, and the line says why."""
        pattern = re.compile(re.escape(self.name_prefix) + r"-(\d{8,})(?:-(\d+))?\.png")

        def saved_frames(entries: Iterator[os.DirEntry[str]]) -> Iterator[tuple[int, int, int, Path]]:
            for entry in entries:
                match = pattern.fullmatch(entry.name)
                if match is not None and entry.is_file(follow_symlinks=False):
                    saved = entry.stat(follow_symlinks=False).st_mtime_ns
                    yield saved, int(match[2] or 0), int(match[1]), Path(entry.path)

        try:
            with os.scandir(self.frames) as entries:
                # Only the newest LOOKED_AT can decide (see its comment): a camera never removes its frames, so a
                # folder of a year's frames is not held or sorted whole at each start, just walked once.
                frames = sorted(heapq.nlargest(LOOKED_AT, saved_frames(entries)))
        except FileNotFoundError:
            return None  # no frame was ever saved
        except OSError as exc:
            return (f"warning: camera {self.what}: frames saved before this start in {self.frames} cannot be looked "
                    f"for ({exc.strerror or exc}); any the last run left uninspected stay so")  # fmt: skip

        def owners_of(paths: list[Path]) -> list[tuple[Path, set[str]]]:
            """Each path, newest first as given, with the stations whose records were filed there with its content."""
            found = filed_by([str(path) for path in paths])
            owned = []
            for path in paths:
                filed = found.get(str(path), ())
                content = _sha256(path) if filed else ""  # read only where a record names that place
                owned.append((path, {one for one, digest in filed if content and digest == content}))
            return owned

        def shared(path: Path, by: str) -> str:
            return (f"warning: camera {self.what}: {path.name} in {self.frames} is station {by!r}'s frame (the same "
                    f"frames folder and name_prefix {self.name_prefix!r}): frames saved before this start and never "
                    "inspected are not looked for; give each camera station its own name_prefix")  # fmt: skip

        left: list[tuple[int, int, int, Path]] = []
        while frames:
            batch, frames = frames[-LEFTOVER_BATCH:], frames[:-LEFTOVER_BATCH]
            for position, (path, owners) in zip(
                range(len(batch) - 1, -1, -1), owners_of([f[3] for f in batch[::-1]]), strict=True
            ):
                if owners and station not in owners:
                    return shared(path, sorted(owners)[0])
                if owners:
                    # This station's last inspected frame: those before it were taken too. Where frames are left to
                    # take, the ones just before it must be this station's too: a frames folder and name_prefix shared
                    # with another station (two service stations on the defaults) would hand that station's frame to
                    # this one, a verdict to the wrong PLC; then none is taken, as before recovery existed.
                    older = [f[3] for f in (frames + batch[:position])[::-1][:LEFTOVER_BATCH]] if left else []
                    for other_path, others in owners_of(older):
                        if others - {station}:
                            return shared(other_path, sorted(others - {station})[0])
                    frames = []
                    break
                frame = batch[position]
                left.append(frame)
                if len(left) > LEFTOVERS:
                    return (f"warning: camera {self.what}: more than {LEFTOVERS} frames in {self.frames} named "
                            f"{self.name_prefix}-*.png were never inspected by this station (a new history beside "
                            "an old frames folder?): a stop leaves one, so none is taken; move them away, or into a "
                            "hot folder to inspect them")  # fmt: skip
        if not left:
            return None
        left.reverse()
        with self._lock:
            self._leftovers = [self._leftover(*frame) for frame in left]
        names = ", ".join(frame[3].name for frame in left)
        many = len(left) > 1
        return (f"camera {self.what}: {len(left)} frame{'s' if many else ''} saved before this start and never "
                f"inspected, taken first: {names}")  # fmt: skip

    def _leftover(self, saved_ns: int, again: int, index: int, path: Path) -> Arrival:
        """A frame saved before this start as the station takes it: read from its file (``data`` ``None``), its
        ``source`` naming the frame's index and when it was saved (its capture time is not kept)."""
        at = saved_ns / 1e9
        return Arrival(path=path, source=f"{self.what} frame {index} at {stamp(at)}", name=path.name, appeared=at)

    def _left_over(self) -> Iterator[Arrival]:
        """The frames saved before this start not taken yet (:meth:`station_recover`), oldest first; one gone since
        (removed by hand) is dropped. Each stays until finished or refused: a paused intake hands it again."""
        with self._lock:
            waiting = list(self._leftovers)
        for arrival in waiting:
            if not arrival.path.is_file():
                with self._lock:
                    if arrival in self._leftovers:
                        self._leftovers.remove(arrival)
                continue
            yield arrival

    def planned_refusal(self, arrival: Arrival) -> Path:
        """Where :meth:`refuse` will put the frame: the first free name in ``<frames>/failed/``."""
        return first_free(self.frames / FAILED, arrival.path.name)

    def refuse(self, arrival: Arrival, reason: str) -> Path | None:
        self._handed(arrival)
        if arrival.refused is not None:  # never saved: nothing of it is anywhere to put aside
            raise NotPutAside(f"the frame could not be saved in {self.frames}")
        if not arrival.path.is_file():
            return None
        moved = move_new(arrival.path, self.frames / FAILED)
        atomic_write_text(moved.with_name(moved.name + ".reason.txt"), reason + "\n")
        return moved

    def station_warning(self) -> str | None:
        """What keeps the camera from taking frames now, for the station's status: the camera not opened (since
        when), the PLC trigger not connected (naming its endpoint and why), frames that cannot be saved (each refused
        meanwhile: the last failure), or ``None``. Read for ``eagle station status`` (:attr:`looking`): only a
        ``frames`` folder this user cannot write (a run refuses the station then), the status answering rather than
        failing on it."""
        if self.looking:  # nothing runs here: only the folder's own state
            return self._unsaved
        plc = None if self.plc is None else self.plc.problem()
        said = [one for one in (self._unopened, plc, self._unsaved) if one is not None]
        return "; ".join(said) or None

    def station_probe(self) -> None:
        """The station's start-up look (see :class:`~eagle_iad.station.parts.Source`): a PLC trigger's node that the
        server does not have, or that cannot trigger, refuses the station; a PLC out of reach is only said."""
        if self.plc is not None:
            self.plc.probe()

    def _plc_fired(self) -> None:
        """The PLC's node said a part is there: the next frame read is taken (see :meth:`trigger`)."""
        if self._wanted.is_set():
            self.log(f"eagle station: camera {self.what}: a trigger came before the frame for the previous one was "
                     "read: one frame for both")  # fmt: skip
        self._wanted.set()

    def trigger(self) -> None:
        """Take the next frame read (``POST /v1/stations/<name>/trigger`` calls this in the service).

        With ``trigger = "http"`` these are the only frames taken; with a periodic trigger, an extra one.
        Calls that come before that frame is read are one: a trigger means "the scene now", and the
        frame after it shows the scene for all of them.
        """
        self._wanted.set()

    def claim(self, station: str, state_dir: Path) -> None:
        """Hold the frames folder (created now) and :attr:`name_prefix` for ``station`` while it runs: another camera
        saving frames under this prefix there, or a hot folder on it, in any process sharing the file system, is
        refused (:class:`~eagle_iad.errors.FolderInUseError` naming the holder). Before :meth:`station_recover`: the
        frames it finds under the prefix are then this station's alone (see folder_lock.py)."""
        with self._claiming:
            if self._frames_lock is not None:
                self._claim = (station, state_dir)
                return
            try:
                self.frames.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise FolderInUseError(f"station {station!r}: camera frames folder {self.frames} cannot be created "
                                       f"({exc.strerror or exc})") from None  # fmt: skip
            self._frames_lock = lock_frames(self.frames, self.name_prefix, station, state_dir)
            self._claim = (station, state_dir)

    def _keep_lock(self) -> str | None:
        """While claimed, make sure the frames folder at the path is the one locked before a frame is saved there:
        one removed and made again (its lock files gone with the old one) is made and locked again, in one line;
        otherwise a second camera with this prefix, or a hot folder, started on the new folder would find it free and
        take or interleave this camera's frames. Why the frame cannot be saved where that fails (the folder cannot be
        made, or another station holds it now): the frame is then refused, told to the sinks, as an unsaved frame
        is. One ``stat`` of each lock file when nothing changed."""
        with self._claiming:
            claim, lock = self._claim, self._frames_lock
            if claim is None or (lock is not None and lock.holds()):
                return None
            stopped = None if lock is None else lock.prefix.stopped
            if lock is not None:  # the old folder's (wherever it went): let go, so the one there now can be taken
                self._frames_lock = None
                lock.release()
            try:
                self.frames.mkdir(parents=True, exist_ok=True)
                self._frames_lock = lock_frames(self.frames, self.name_prefix, *claim)
                if stopped is not None:  # a deleted station finishing its frame: a start meanwhile is told so
                    self._frames_lock.finishing(stopped)
            except OSError as exc:
                return f"cannot be saved in {self.frames}: {exc.strerror or exc}"
            except FolderInUseError as exc:
                return (f"its frames folder {self.frames} was replaced (removed and made again) and its locks are not "
                        f"this station's now: {exc}")  # fmt: skip
        self.log(f"eagle station {claim[0]}: camera {self.what}: frames folder {self.frames} replaced (removed and "
                 "made again, or a lock file of it removed): its locks taken again on the folder there now, before "
                 "any frame is saved in it")  # fmt: skip
        return None

    def release(self) -> None:
        """Drop the frames folder's locks (the station stopped, or did not start); again: nothing."""
        with self._claiming:
            self._claim = None
            lock, self._frames_lock = self._frames_lock, None
        if lock is not None:
            lock.release()

    def finishing(self, why: str) -> None:
        """Its station ``why`` (``"was deleted"``) and is finishing its last frame: a station started on the frames
        folder meanwhile is told to try again in a moment (see :meth:`FolderLock.finishing`)."""
        with self._claiming:
            lock = self._frames_lock
        if lock is not None:
            lock.finishing(why)

    def close(self) -> None:
        """Stop the reader thread (it releases the capture); frames still queued are forgotten; the frames folder's
        locks are released (by the runner once its intake thread has ended: see ``Running.close_source``)."""
        self._halt.set()
        if self.plc is not None:
            self.plc.close()
        with self._lock:
            self._lock.notify_all()
        reader = self._reader
        if reader is not None and reader is not threading.current_thread():
            reader.join(timeout=(READ_TIMEOUT_MS / 1000) + 1.0)
        self.release()

    # The reader thread.

    def _start(self) -> None:
        if self._reader is None and not self._halt.is_set():
            self._reader = threading.Thread(target=self._run, name=f"eagle-camera-{self.what}", daemon=True)
            self._reader.start()
            if self.plc is not None:
                self.plc.start()

    def _handed(self, arrival: Arrival) -> None:
        with self._lock:
            self._leftovers = [left for left in self._leftovers if left.path != arrival.path]
            for frame in self._queue:
                if frame.file == arrival.path or (frame.file is None and frame.unsaved == arrival.path):
                    self._queue.remove(frame)
                    break
            self._lock.notify_all()

    def _open(self) -> cv2.VideoCapture:
        import cv2

        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, OPEN_TIMEOUT_MS, cv2.CAP_PROP_READ_TIMEOUT_MSEC, READ_TIMEOUT_MS]
        if self.device is not None:
            return cv2.VideoCapture(self.device, cv2.CAP_ANY, params)
        assert self.url is not None
        return cv2.VideoCapture(self.url, cv2.CAP_ANY, params)

    def _run(self) -> None:
        index = 0  # frames read since the source started (across reopenings): names stay unique in a run
        failing = False  # the last try to open failed (logged once, not at every try)
        while not self._halt.is_set():
            capture = self._open()
            try:
                if not capture.isOpened():
                    if self.file is not None:
                        self.log(f"eagle station: camera {self.what}: cannot be opened; no frames from it")
                        break
                    if not failing:
                        self.log(f"eagle station: camera {self.what}: cannot be opened; trying again every "
                                 f"{self.reconnect_s:g} s")  # fmt: skip
                        self._unopened = (f"camera cannot be opened since {stamp(time.time())}; trying again every "
                                          f"{self.reconnect_s:g} s; no frame is taken meanwhile")  # fmt: skip
                    failing = True
                else:
                    if failing:
                        self.log(f"eagle station: camera {self.what}: opened")
                    failing = False
                    self._unopened = None
                    index = self._read(capture, index)
                    if self.file is not None or self._halt.is_set():
                        break
                    self.log(f"eagle station: camera {self.what}: no frame for {READ_TIMEOUT_MS / 1000:g} s or the "
                             f"stream ended; reopening in {self.reconnect_s:g} s")  # fmt: skip
            finally:
                capture.release()
            self._halt.wait(self.reconnect_s)
        with self._lock:
            self._ended = True
            self._lock.notify_all()

    def _read(self, capture: cv2.VideoCapture, index: int) -> int:
        """Read frames until the capture ends or fails (or the source closes); the next frame's index."""
        import cv2

        fps = capture.get(cv2.CAP_PROP_FPS) if self.file is not None else 0.0
        if not fps > 0:  # also NaN
            fps = DEFAULT_FPS
        started = time.monotonic()
        first = index
        next_due = 0.0  # milliseconds: the first frame read is taken
        while not self._halt.is_set():
            waits = self.http_trigger or self.plc is not None  # frames only on triggers
            if self.file is not None and waits:  # a file waiting for triggers plays at its pace
                self._halt.wait(max(0.0, started + (index - first) / fps - time.monotonic()))
            if not capture.grab():
                return index
            at = time.time()
            wanted = self._wanted.is_set()  # trigger(): this frame, whatever the mode
            if wanted:
                self._wanted.clear()
            if self.every_n_frames is not None:
                take = index % self.every_n_frames == 0
            elif self.every_ms is not None:
                now = (index - first) / fps * 1000 if self.file is not None else time.monotonic() * 1000
                take = now >= next_due
                if take:
                    next_due = now + self.every_ms
            else:
                take = False  # trigger = "http" or "opcua": only on trigger()
            if take or wanted:
                ok, pixels = capture.retrieve()
                if ok and pixels is not None:
                    self._put(_Frame(index, at, pixels))
            index += 1
        return index

    def _put(self, frame: _Frame) -> None:
        with self._lock:
            if self.file is not None:  # a file waits for room: none of its selected frames is lost
                while len(self._queue) >= QUEUE and not self._halt.is_set():
                    self._lock.wait(0.5)
            elif len(self._queue) >= QUEUE:  # the oldest not handed to the station yet (or the oldest)
                self._queue.remove(next((f for f in self._queue if f.file is None), self._queue[0]))
                self.dropped += 1
                now = time.monotonic()
                if now - self._last_drop_log >= DROP_LOG_S:
                    self._last_drop_log = now
                    self.log(f"eagle station: camera {self.what}: the station is slower than the trigger; "
                             f"{self.dropped} frames dropped so far (the oldest waiting)")  # fmt: skip
            self._queue.append(frame)

    def _save(self, frame: _Frame) -> str | None:
        """Encode ``frame`` and save it in :attr:`frames` under a new name; what went wrong, or ``None``."""
        png = self._encode(frame.pixels)
        if png is None:
            return "OpenCV could not encode it as PNG"
        frame.png = png  # refused unsaved, the refusal names its content (image_sha256)
        if (locked := self._keep_lock()) is not None:
            return locked
        partial = self.frames / ".partial"
        written = partial / self._frame_name(frame)
        try:
            partial.mkdir(parents=True, exist_ok=True)
            with open(written, "wb") as handle:  # complete before it appears under its name
                handle.write(png)
            frame.file = move_new(written, self.frames)
        except OSError as exc:
            # a full disk fails the write half-way: the part-frame would hold the room the next frames need
            with contextlib.suppress(OSError):
                written.unlink(missing_ok=True)
            return f"cannot be saved in {self.frames}: {exc.strerror or exc}"
        frame.png = png
        return None

    def _frame_name(self, frame: _Frame) -> str:
        return f"{self.name_prefix}-{frame.index:08d}.png"

    @staticmethod
    def _encode(pixels: Any) -> bytes | None:
        """The frame as PNG (OpenCV's BGR order written as the file's RGB), or ``None`` if it cannot be."""
        import cv2

        ok, encoded = cv2.imencode(".png", pixels, [cv2.IMWRITE_PNG_COMPRESSION, PNG_LEVEL])
        return bytes(encoded.tobytes()) if ok else None


def _sha256(path: Path) -> str:
    """The SHA-256 of the file at ``path`` (``""`` where it cannot be read: it matches no record)."""
    try:
        with open(path, "rb") as handle:
            return hashlib.file_digest(handle, "sha256").hexdigest()
    except OSError:
        return ""


SOURCES.add(Camera.kind, Camera)
