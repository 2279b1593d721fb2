"""What a station is made of: a source that yields images, sinks that receive verdicts, and their tables.

Sources and sinks are each a :class:`~eagle_iad.registry.Registry`, as threshold rules and samplers
are: a new kind (a camera, an OPC UA server, a message queue) is one file whose class registers under
a ``kind`` name; ``stations.toml`` names that kind, and a plugin module (``EAGLE_PLUGINS``) can add one
without touching this package. Each part reads its own options from its TOML table through
:class:`Options`, so a bad value is one line naming the station, the part and the field.
"""

from __future__ import annotations

import functools
import inspect
import multiprocessing.process
import os
import ssl
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, NamedTuple, Protocol, cast

from eagle_iad.errors import ConfigError, one_of
from eagle_iad.ranges import Range, short_repr
from eagle_iad.registry import Registry


class StationConfigError(ConfigError):
    """A station's configuration is wrong; the message names the file, station, part and field."""


class DeliveryError(Exception):
    """One delivery failed and may succeed later (the receiver down or unreachable: connection refused or reset,
    a name that does not resolve, a timeout, HTTP 5xx, 401, 403, 404, 408 or 429, a malformed HTTP answer, a broker
    away): retried with backoff, and by default without limit (see :class:`Retry`), the rows behind it waiting in
    order."""


class RefusedError(DeliveryError):
    """The receiver answered and refused this verdict (HTTP 4xx other than 401, 403, 404, 408 and 429, a message the
    broker rejects, a node the server will not write, an image the folder sink no longer finds): trying again is
    unlikely to help, so after :data:`REFUSED_ATTEMPTS` such tries (or ``max_attempts``, when set) the verdict
    becomes a dead letter and the rows behind it go on."""


class NotChecked(Exception):  # noqa: N818  (not an error: the station starts)
    """A sink's start-up probe could not look at its receiver, for a reason that says nothing of the configuration
    (a broker that admits only the sink's own client id refused the probe's): one warning line naming why, and the
    station starts; the sink's first delivery tells, a refusal then showing as the sink failing.

    ``recheck``: a second look that can tell (the MQTT sink's connects as the sink itself), given the sinks of a
    run of the station live now (``None``: not known, another replica's), which it must not disturb; it returns
    or raises as a probe does."""

    def __init__(self, why: str, recheck: Callable[[Sequence[Any] | None], str | None] | None = None) -> None:
        super().__init__(why)
        self.recheck = recheck


class Options:
    """One TOML table read field by field; every error names ``where`` (file, station, part) and the field.

    Why a reader object: the same checks (type, range, unknown keys) for every source and sink, and the
    message a user sees names exactly what to fix. :meth:`done` refuses keys no one read (a typo such as
    ``urll`` is an error, not a silently ignored option).
    """

    def __init__(
        self, table: Mapping[str, Any], where: str, base: Path, root: Path | None = None, no_paths: str | None = None,
        *, looking: bool = False,
    ) -> None:  # fmt: skip
        self.table = dict(table)
        self.where = where
        #: Read to look at the station (``eagle station status``), not to run it: a part does not refuse what only a
        #: run needs there now (a hot folder that is gone: the status must answer exactly then, saying so).
        self.looking = looking
        #: Relative paths in the file are relative to the file's folder.
        self.base = base
        #: Where path options must lead (a station created through the service: its data root), or None.
        self.root = root
        #: Why no path option is accepted at all (a service without a data root), or None.
        self.no_paths = no_paths
        self._read: set[str] = set()

    def nested(self, table: Mapping[str, Any], where: str) -> Options:
        """Options for a table inside this one (a station's source or sink): same base and root."""
        return Options(table, where, self.base, self.root, self.no_paths, looking=self.looking)

    def error(self, key: str, problem: str) -> StationConfigError:
        return StationConfigError(f"{self.where}: {key} {problem}")

    def _get(self, key: str, default: Any, kinds: tuple[type, ...], what: str) -> Any:
        self._read.add(key)
        if key not in self.table:
            if default is _REQUIRED:
                raise self.error(key, "is missing")
            return default
        value = self.table[key]
        if isinstance(value, bool) and bool not in kinds:
            raise self.error(key, f"must be {what}, not {value!r}")
        if not isinstance(value, kinds):
            raise self.error(key, f"must be {what}, not {value!r}")
        return value

    def text(self, key: str, default: Any = None, choices: tuple[str, ...] = ()) -> Any:
        """A string option; blank is refused as empty, except a value that is one of ``choices`` (a separator
        ``"\\t"`` or ``" "`` is a choice, not a blank), and with ``choices`` any other value is refused naming them,
        each quoted (:func:`one_of`: a list of ``,`` ``;`` ``\\t`` is unreadable bare)."""
        value = self._get(key, _REQUIRED if default is _REQUIRED else default, (str,), "a string")
        if choices and value in choices:
            return value
        if isinstance(value, str) and not value.strip():
            raise self.error(key, "is empty")
        if choices and value is not None:
            raise self.error(key, f"is {value!r}; choose one of {one_of(choices)}")
        return value

    def number(self, key: str, default: float, limits: Range) -> float:
        value = self._get(key, default, (int, float), "a number")
        if not limits.contains(value):
            raise self.error(key, f"must be {_shown(limits)}, not {short_repr(value)}")
        return float(value)

    def integer(self, key: str, default: int, limits: Range) -> int:
        value = self._get(key, default, (int,), "a whole number")
        if not limits.contains(value):
            raise self.error(key, f"must be {_shown(limits)}, not {short_repr(value)}")
        return int(value)

    def flag(self, key: str, default: bool) -> bool:
        return bool(self._get(key, default, (bool,), "true or false"))

    def path(self, key: str, default: Any = None) -> Any:
        value = self.text(key, default)
        if value is None:
            return None
        if self.no_paths is not None:
            raise self.error(key, f"names a server path, but {self.no_paths}")
        try:
            path = Path(value).expanduser()
            path = (path if path.is_absolute() else self.base / path).resolve()
        except (RuntimeError, ValueError, OSError) as exc:  # ~nosuchuser, an embedded NUL, a loop of links
            raise self.error(key, f"{short_repr(value)} is not a usable path: {exc}") from None
        if self.root is not None and not path.is_relative_to(self.root):
            raise self.error(key, f"{value!r} is outside the service's data root (stations created through the "
                                  "service read and write only inside --data-root)")  # fmt: skip
        return path

    def secret(self, key: str) -> str | None:
        """The value of the environment variable the option ``key`` names (a password, a signing secret).

        A secret is named, never written in the stations file. A station created through the service
        (``root`` set) may name only variables starting with :data:`SERVICE_SECRET_PREFIX`: otherwise an API
        key would be enough to have any of the server's variables (``EAGLE_API_KEY`` itself) sent as a
        password to an endpoint the caller controls.
        """
        name = self.text(key)
        if name is None:
            return None
        if self.root is not None and not name.startswith(SERVICE_SECRET_PREFIX):
            raise self.error(key, f"names {name}; a station created through the service may only use variables "
                                  f"starting with {SERVICE_SECRET_PREFIX}")  # fmt: skip
        value = os.environ.get(name)
        if not value:
            raise self.error(key, f"names {name}, which is not set in the environment")
        return value

    def tls_context(self, key: str, ca_file: Path | None) -> ssl.SSLContext:
        """A verifying TLS context (with ``ca_file``'s CA, when given); a file that is no certificate is
        an error naming ``key``."""
        try:
            return ssl.create_default_context(cafile=None if ca_file is None else str(ca_file))
        except (ssl.SSLError, OSError, ValueError) as exc:
            raise self.error(key, f"{ca_file} is not a PEM certificate file: {exc}") from None

    def done(self) -> None:
        unknown = sorted(set(self.table) - self._read)
        if unknown:
            raise StationConfigError(f"{self.where}: unknown option {', '.join(map(repr, unknown))}")


def _shown(limits: Range) -> str:
    return f"in {limits}" if limits.low is not None and limits.high is not None else str(limits)


#: The environment variables a station created through the service may name for its secrets.
SERVICE_SECRET_PREFIX = "EAGLE_STATION_"

#: Marks a required option (``Options.text("url", REQUIRED)``).
_REQUIRED: Any = object()
REQUIRED: Any = _REQUIRED


class Settled(NamedTuple):
    """What a source saw of a file when it counted it complete (its stat, as its last look before yielding it).

    The station compares the file it reads with it: bytes read from a file that changed since it settled
    may be a half-written one (a writer that started again). ``ctime_ns`` and ``mode`` date a refusal of a
    file that could not be read: a later ``chmod`` changes them, so the fixed file is tried again.
    """

    size: int
    mtime_ns: int
    ctime_ns: int
    mode: int
    #: Its inode number (0: not known), which tells a file refused unread from another of the same stat.
    ino: int = 0


@dataclass(frozen=True)
class Arrival:
    """One image a source hands the station: its bytes (or the file holding them) and where it came from."""

    #: The file holding the image (a hot folder's file; for a camera frame, a name only: see ``data``).
    path: Path
    #: What the record's ``source`` field says (the file's path; a camera's frame and time).
    source: str
    #: The name the history shows (the file's name).
    name: str
    #: When the station first saw it (``time.time()``), for the end-to-end latency.
    appeared: float
    #: The encoded image itself when it is not in a file (a camera frame, PNG-encoded); ``None``: read ``path``
    #: (the station then hands the source's ``finish`` and ``refuse`` the bytes it read, here).
    data: bytes | None = None
    #: What the file was when the station read it (device, inode, size, modification time in ns), or ``None``:
    #: a file replaced under the same name meanwhile is another image, which a source must not put away as this one.
    identity: tuple[int, int, int, int] | None = None
    #: The file as the source last saw it before counting it complete (``None``: a source that does not say, or a
    #: frame in memory). The station inspects only bytes read from a file still of that size and modification
    #: time; one changed since is left for a later poll, where it settles again.
    settled: Settled | None = None
    #: Why the source could not hand this image as it must, so it is not inspected but refused, with this reason
    #: (told to every sink that takes refusals, counted in ``failed``), or ``None``: a camera's frame taken on a
    #: trigger that could not be saved in its ``frames`` folder. Why not skip it: the part was there, and the PLC
    #: waiting for its answer must get one. ``path`` then names where it would have been saved (nothing is there).
    refused: str | None = None


#: The ``event`` of a refusal's payload: an image the station could not inspect (a verdict's payload has no
#: ``event``; it has ``record``). See docs/STATIONS.md, "Refused images are delivered", for every field.
REFUSED = "refused"


def refusal(payload: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """What a refusal's payload says of it (its ``refused`` object: ``id``, ``category``, ``image_name``,
    ``image_sha256``, ``reason``, ``time``), or ``None`` for a verdict: how a sink tells the two apart."""
    if payload.get("event") != REFUSED:
        return None
    said = payload.get("refused")
    return said if isinstance(said, Mapping) else {}


class NotPutAside(Exception):  # noqa: N818  (not an error: the refusal is told)
    """A source's :meth:`Source.refuse` put nothing aside: what it was handed is no longer under its name (taken
    away, or, a file that could not be read, another file there since it was listed, which the next poll takes as a
    new arrival) and none of its bytes were read to keep. The refusal is told all the same, its ``image`` null: the
    planned place would name a place that is empty, or that holds the other file (a sink would file it as this
    refusal's image)."""


class Source(Protocol):
    """Where a station's images come from.

    Optional, looked up with ``getattr`` (a plugin source need not have them):

    - ``moves_files: bool`` (default ``True``): whether the deliveries wait for :meth:`finish`, which may put an
      image elsewhere than its :meth:`planned` place (a name taken meanwhile: ``-1``) or write something for it
      (a folder in sidecar mode: its ``.eagle.json``), so they are held until it is done and the place known.
      ``False`` (a camera): the planned place is final and nothing is written, the deliveries are due as the
      verdict is stored.
    - ``waiting(name, digest) -> bool`` and ``filed_at(name, digest, planned, *, refused) -> Path | None``: whether
      the image is still in the source (its next put-away files it), and where an image with that content was put
      (at ``planned`` or a ``-n`` name beside it; ``refused``: by :meth:`refuse`, not :meth:`finish`). With them the
      deliveries of an image a crash left unfiled are resolved one by one after each full poll; without them, all
      at once when the source has no backlog.
    - ``undecodable(arrival) -> float | None``: the station could not decode the image of a settled file; the
      seconds it is still given (it is left where it is, and handed over again once it settled again: a writer
      that stalled half-way), or ``None`` to refuse it now. Without it, such an image is refused at once.
    - ``planned_refusal(arrival) -> Path``: where :meth:`refuse` will put an image (stored with the refusal before
      it is put aside, and what its deliveries say if a crash leaves it unfiled and gone). Without it: the image's
      own place (``arrival.path``).
    - ``planned_repeat(arrival, to) -> Path``: where :meth:`finish` will put an image whose content is already
      filed at ``to`` (a repeat: :meth:`finish` is then given the earlier image's place as ``to``, and must take
      the repeat away all the same), which its refusal's ``image`` names (``duplicates = "refuse"``). Without it:
      ``to``.
    - ``claim(station, state_dir)``, ``release()`` and ``finishing(why)``: take a lock on what the source reads as
      the station starts running (raise :class:`~eagle_iad.errors.FolderInUseError` naming the holder), let it go
      when it stops, and say a deleted station is finishing its last image: two stations on one source would each
      inspect every image (the hot folder's and the camera's locks: ``sources/folder_lock.py``). Without ``claim``
      only a second station with the same kind and options is refused (``config.same_source``).
    - ``coming() -> bool``: whether images are still to come that :meth:`backlog` does not count (a video file
      waiting for triggers, not read to its end): ``--until-idle`` waits for them. Without it: none.
    - ``ignored() -> (count, last, seconds)``: the files it found it does not take: how many since the start, the
      last with why (or ``None``), and when lately (:meth:`~eagle_iad.station.recent.Recent.seconds`), for the
      status' warning. An older ``(count, last)`` is read too, its count's growth taken as happening when the
      station sees it; any other answer is said once in the log.
    - ``station_probe() -> None``: called once when the station is built to run (``eagle station run``, the
      service's start, ``POST``/``PATCH /v1/stations``; not by ``eagle station status``), to look at what the source
      depends on: it raises :class:`StationConfigError` naming the option for what is certainly a configuration
      error (a camera's PLC trigger node that the server does not have); a device out of reach is no error (the
      source says so).
    - ``station_warning() -> str | None``: what keeps the source from taking images now (a camera's PLC trigger not
      connected, naming the endpoint and why), for the status' warnings while it lasts; ``None``: nothing.
    - ``station_recover(station, filed_by) -> str | None``: called once when the station starts running (``eagle
      station run``, the service's start; not by ``eagle station status``, nor for a change only checked), before
      its first poll, for a source that keeps its images where the station cannot see what it took (a camera's
      ``frames`` folder): it finds the images it saved before this start that never reached the intake, by
      ``filed_by`` (:data:`FiledBy`), and hands them first; the line the station logs of them, or ``None``.

    These are the station's hooks (:data:`SOURCE_HOOKS`, found by :func:`source_hook`), named so that a method
    of a plugin's own (a ``probe(sample)``, a ``warning(text)`` helper) is never called as one.
    """

    kind: ClassVar[str]
    #: Seconds between looks for new images while none is waiting (the idle part of the latency).
    poll_s: float
    #: Whether an image whose content this station already inspected is skipped (a hot folder: a file
    #: seen again after a crash, or copied twice). ``False`` for a camera: a still scene repeats frames.
    dedupe: bool

    def describe(self) -> str:
        """One line for the start-up log (``folder /line/incoming, moved to done/ and failed/``)."""

    def poll(self) -> Iterator[Arrival]:
        """The images complete now, oldest first; lazily (a backlog of thousands is not loaded at once)."""

    def backlog(self) -> int:
        """How many images wait (for the status and the backlog warning)."""

    def planned(self, arrival: Arrival) -> Path:
        """Where :meth:`finish` will put an inspected image (stored with its verdict, before the move)."""

    def finish(self, arrival: Arrival, to: Path, record: Mapping[str, Any]) -> Path | None:
        """Put an inspected image away, toward ``to``; the place actually used when that is another (``to`` taken
        meanwhile: ``<name>-1``; a repeat's own place), else ``None``.

        ``to`` is the :meth:`planned` place of an image inspected now, the place stored before a restart for one
        inspected before it, and, for a repeat (a content the station already inspected: a copy, a camera sending
        an earlier part's image again; ``record`` then holds only the earlier ``id``), the earlier image's place
        (see ``planned_repeat``). Whatever ``to`` is, the image must leave the source: an arrival handed again
        after it was finished (or refused) is passed over, with a warning naming the source, and stays where it is."""

    def refuse(self, arrival: Arrival, reason: str) -> Path | None:
        """Put an image that could not be inspected where the user asked, with the reason beside it; where it went
        (the refusal's deliveries say that place), or ``None``: where ``planned_refusal`` said, if the source has
        it, else where it was (nothing was moved). Raises :class:`NotPutAside` where it put nothing aside, nothing
        of the image being left to put there: the deliveries then say no place (``image`` null). Either way the image
        must leave the source: one handed again after its refusal is passed over, with a warning naming the source."""


class Sink(Protocol):
    """Where a station's verdicts go; :meth:`deliver` must be idempotent for a repeated ``key``.

    Optional, found with :func:`sink_hook` (a plugin sink need not have it): ``station_probe(self) -> str |
    None``, called once when a station starts (before anything runs), to look at the receiver without delivering
    anything. It raises :class:`StationConfigError` naming the field for what is certainly a configuration
    error (a node the server does not have, credentials the broker refuses, a certificate that fails
    verification), and returns one line for a receiver that is merely unreachable now (refused, no answer:
    a warning, since its verdicts wait in the outbox), or ``None`` when all is well; it raises :class:`NotChecked`
    when it could not look at all (a warning too). It respects the sink's
    timeout and leaves no thread or connection behind; the real connection is still made at the first
    delivery, or by ``start``. Its older name ``probe`` is never called (:data:`RETIRED_SINK_HOOKS`): a plugin
    sink's own ``probe`` (a method taking a sample, a look meant for something else) was called as the start-up
    look; the start only says, in one line, that such a method is not called (:func:`retired_sink_hooks`).

    Also optional, for a sink with a live connection (the MQTT sink): ``station_start(self, station, category) ->
    None``, called when the station starts running with the sink (before its couriers start; not by ``eagle station
    status``, nor for a change only checked), to connect in the background without blocking; ``when_connected(self,
    listener) -> None``, given the courier's :meth:`~eagle_iad.station.runner.Courier.reachable`, which the sink calls
    each time its connection is made so the verdicts that waited go at once; ``station_forget(self) -> None``,
    called before :meth:`close` when the station is deleted (not at a stop), to clear what it left on the receiver
    (an MQTT broker's retained messages). Found with :func:`sink_hook`: their names say they are the station's
    hooks, so a sink's own ``start`` (a :class:`threading.Thread` subclass's) is never taken for one; the older
    names ``start`` and ``forget`` are still called where the sink is no thread or process (and where such a
    method is no hook, its ``TypeError`` is an error naming the sink and the hooks' names).

    An optional class attribute ``takes_refusals`` (a bool) says whether :meth:`deliver` understands refusals:
    it is the default of the sink's option ``refusals``. A plugin sink without it is sent verdicts only unless
    its table says ``refusals = true``, so one written before refusals existed (reading ``payload["record"]``)
    does not fail on them.
    """

    kind: ClassVar[str]
    #: The sink's name in the outbox, status and errors (``webhook``, ``webhook-2``; or the user's ``name``).
    name: str
    #: Tries before a verdict becomes a dead letter; 0 (the default, :data:`UNLIMITED`): a receiver that cannot be
    #: reached is tried until it can, and only a refusal (:class:`RefusedError`) ends as a dead letter.
    max_attempts: int

    def describe(self) -> str: ...

    def deliver(self, payload: Mapping[str, Any], key: str) -> None:
        """Send one verdict (``key``: the record id, the same on every retry), or one refusal of an image (see
        :func:`refusal`: no ``record``; ``key`` is ``refused-<...>``) to a sink that takes them (the sink's option
        ``refusals``, default ``takes_refusals``); raise DeliveryError to retry, RefusedError when the receiver
        refused it (anything else counts as a refusal too: a bug)."""

    def close(self) -> None: ...


#: The station's optional hooks on a sink (see :class:`Sink`) and the names they had before, which any class may
#: have for another purpose (``threading.Thread.start``): those are called only where the sink is no thread, and
#: never for a hook of :data:`RETIRED_SINK_HOOKS`.
SINK_HOOKS = {"station_start": "start", "station_forget": "forget", "station_probe": "probe"}
#: The hooks whose older name is no longer called at all: ``probe`` is a common name for a method of a plugin's own
#: (it was called as the start-up look, with no way to tell); a sink that has it and no ``station_probe`` is only
#: told of in the start's log (:func:`retired_sink_hooks`).
RETIRED_SINK_HOOKS = frozenset({"station_probe"})
#: The optional hooks of a source that the station calls (see :class:`Source`), by the only names it looks for.
SOURCE_HOOKS = ("station_probe", "station_warning", "station_recover")
#: What a source's ``station_recover`` is given to ask the history: for image paths, the ``(station, content
#: sha256)`` of each inspected record whose image was filed at that path (any station's: one sharing the folder
#: is told apart); a path no record names is absent.
FiledBy = Callable[[Sequence[str]], Mapping[str, Sequence[tuple[str, str]]]]
#: Each hook's call, as an error names it.
_HOOK_CALLS = {
    "station_start": "station_start(station, category)", "station_forget": "station_forget()",
    "station_probe": "station_probe()",
}  # fmt: skip


def source_hook(source: object, hook: str) -> Callable[..., Any] | None:
    """``source``'s station hook ``hook`` (one of :data:`SOURCE_HOOKS`), or ``None`` where it has none.

    Why these names and not ``probe``/``warning``: the station calls a hook at every start (and the status at every
    look), so a plugin source that happens to have a ``probe`` of its own (a method taking a sample, a sensor kept
    under that name) had it called as the start-up look, failing the station's start with a bare ``TypeError`` or
    doing what the plugin meant for something else. Only the declared names are looked for, and nothing older is
    honoured: the source hooks never had other names in a release."""
    if hook not in SOURCE_HOOKS:
        raise ValueError(f"{hook!r} is not a source hook; the hooks are {', '.join(SOURCE_HOOKS)}")
    found = getattr(source, hook, None)
    return cast(Callable[..., Any], found) if callable(found) else None


def source_says(source: object) -> str | None:
    """What ``source`` says keeps it from taking images now (its ``station_warning`` hook: a camera's PLC trigger
    not connected, frames that cannot be saved), or ``None``: a source that does not say, or a plugin's whose hook
    fails (the status must still answer)."""
    says = source_hook(source, "station_warning")
    if says is None:
        return None
    try:
        found = says()
    except Exception:
        return None
    return None if found is None else str(found)


def sink_hook(sink: object, hook: str) -> Callable[..., Any] | None:
    """``sink``'s station hook ``hook`` (a key of :data:`SINK_HOOKS`), or ``None`` where it has none.

    Why not ``getattr(sink, "start")``: a plugin sink that is a :class:`threading.Thread` (or a
    :class:`multiprocessing.Process`) subclass, or any class with a ``start``/``forget`` of its own, would have
    that method called by the station at its start or its delete (a thread started with the station's name as
    its arguments). The hooks' own names cannot collide; the older names ``start``/``forget`` are still honoured,
    for plugins written against them, except where the sink is a thread or a process, whose ``start`` is certainly
    not the hook. The start-up look's older name ``probe`` is not (:data:`RETIRED_SINK_HOOKS`): too many classes
    have a ``probe`` of their own, and a wrong call of it is no ``TypeError`` that could be told apart.

    Any other class's ``start``/``forget`` is taken for the hook, so one that is not (a plugin's own ``start()``)
    would fail the station's start with a bare ``TypeError`` from deep in the runner: an older-named hook that
    does not take the hook's arguments, or raises ``TypeError``, is a :class:`StationConfigError` naming the sink,
    its class and the hooks' names instead."""
    if hook not in SINK_HOOKS:
        raise ValueError(f"{hook!r} is not a sink hook; the hooks are {', '.join(SINK_HOOKS)}")
    found = getattr(sink, hook, None)
    if callable(found):
        return cast(Callable[..., Any], found)
    if hook in RETIRED_SINK_HOOKS or isinstance(sink, threading.Thread | multiprocessing.process.BaseProcess):
        return None
    older = getattr(sink, SINK_HOOKS[hook], None)
    return _older_hook(sink, hook, older) if callable(older) else None


def retired_sink_hooks(sink: object) -> list[str]:
    """What the start says of ``sink``'s methods named as a hook of :data:`RETIRED_SINK_HOOKS` once was, where it
    has no hook by the new name: one line each, that the method is not called and what the hook is named now. A
    plugin written when the start-up look was ``probe()`` is thus told why its look is no longer made (its
    refusals of a bad configuration no longer refuse the station), and one whose ``probe`` is its own learns that
    it is left alone."""
    kind = type(sink)
    said = []
    for hook in sorted(RETIRED_SINK_HOOKS):
        older = SINK_HOOKS[hook]
        if callable(getattr(sink, older, None)) and not callable(getattr(sink, hook, None)):
            said.append(f"sink {getattr(sink, 'name', '?')!r} ({kind.__module__}.{kind.__qualname__}): its {older}() "
                        f"is not called by the station; the start-up look is named {_HOOK_CALLS[hook]} (rename it "
                        "if it is that look)")  # fmt: skip
    return said


def _older_hook(sink: object, hook: str, older: Callable[..., Any]) -> Callable[..., Any]:
    """``older`` (``sink``'s ``start`` or ``forget``) called as the station's hook ``hook``, its ``TypeError``
    (the method is no hook, or one of another shape) said as a :class:`StationConfigError` naming what to do."""
    name = SINK_HOOKS[hook]

    def refused(why: str) -> StationConfigError:
        kind = type(sink)
        return StationConfigError(
            f"sink {getattr(sink, 'name', '?')!r} ({kind.__module__}.{kind.__qualname__}): its {name}() was called "
            f"as the station's hook {_HOOK_CALLS[hook]} (the name it had in older eagle-iad versions) and {why}; "
            f"the station's hooks are named {_HOOK_CALLS['station_start']} and {_HOOK_CALLS['station_forget']}: "
            f"rename the plugin's hook to {hook}, or, if {name}() is no hook, give the class a {hook} that does "
            "nothing"
        )

    @functools.wraps(older)
    def call(*args: Any) -> Any:
        try:
            inspect.signature(older).bind(*args)
        except TypeError as exc:
            raise refused(f"does not take its arguments ({exc})") from exc
        except ValueError:  # no signature to read (a builtin): the call says
            pass
        try:
            return older(*args)
        except TypeError as exc:
            raise refused(f"failed: TypeError: {exc}") from exc

    return call


class SourceFactory(Protocol):
    def __call__(self, options: Options) -> Source: ...


class SinkFactory(Protocol):
    def __call__(self, options: Options, name: str) -> Sink: ...


SOURCES: Registry[SourceFactory] = Registry("station source", StationConfigError)
SINKS: Registry[SinkFactory] = Registry("station sink", StationConfigError)

#: Every sink's retry options: tries before a dead letter (0: see :data:`UNLIMITED`), and the backoff between them.
ATTEMPTS = Range(0, 1000)
BACKOFF_S = Range(0.0, 3600.0, low_open=True)
#: ``max_attempts``'s default: a receiver that cannot be reached is tried until it can (each verdict delivered, in
#: order, however long it is down); a verdict the receiver refuses becomes a dead letter after REFUSED_ATTEMPTS.
UNLIMITED = 0
#: With ``max_attempts`` 0: tries refused by the receiver (:class:`RefusedError`) before a dead letter.
REFUSED_ATTEMPTS = 10


@dataclass(frozen=True)
class Retry:
    """How a sink retries: waits doubling from ``base_s`` up to ``max_s`` (full jitter), until delivered or, with
    ``max_attempts`` set, that many tries; unset (0), only refusals end as a dead letter (:meth:`gives_up`)."""

    max_attempts: int
    base_s: float
    max_s: float

    @classmethod
    def read(cls, options: Options) -> Retry:
        return cls(
            options.integer("max_attempts", UNLIMITED, ATTEMPTS),
            options.number("retry_base_s", 1.0, BACKOFF_S),
            options.number("retry_max_s", 60.0, BACKOFF_S),
        )

    def gives_up(self, attempts: int, refusals: int) -> bool:
        """Whether a verdict tried ``attempts`` times, of which the receiver refused ``refusals`` (in total, whatever
        failed in between: a receiver flapping between refusing it and being unreachable still ends it; counted in its
        outbox row, so a restart does not reset them; a requeue does), is a dead letter now: ``max_attempts`` tries
        where set, else :data:`REFUSED_ATTEMPTS` refusals."""
        if self.max_attempts != UNLIMITED:
            return attempts >= self.max_attempts
        return refusals >= REFUSED_ATTEMPTS
