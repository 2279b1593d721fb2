"""A camera's frame triggered by a PLC over OPC UA (``trigger = "opcua"``): a Boolean node's rising edge (a "part
present" bit going false -> true) or an integer node's increase (a part counter) takes the next frame read.

Why a subscription, not polling: the PLC's server samples the node itself (at its fastest rate: a sampling
interval of 0) and queues every change it saw (up to :data:`QUEUE_SIZE`) until the next publish (every
:data:`PUBLISH_MS`), so a pulse shorter than any poll we could afford (a bit that is true for 20 ms) still
arrives as false -> true -> false, and no read per tick loads the PLC while the line stands still. The
subscription runs on asyncua's client in a thread of its own with its own event loop (the camera's reader and
the station are threads, not coroutines).

What is a trigger:

- The value read at connect (and at each reconnection) is the starting point, never a trigger: a bit already true
  when the station starts, or a counter at 1234, says nothing about a part arriving now.
- A Boolean: each change from false to true. True -> false takes nothing. The server is asked to publish a node
  each time its value or status changed, and only then (:data:`DATA_CHANGE_TRIGGER`), so the same value twice in a
  row (with the same status) says that changes between were lost (more than :data:`QUEUE_SIZE` between two
  publishes: the server dropped the oldest): true again is a rising edge (the false before it lost) and takes a
  frame; false again is a part whose rising edge was lost, with no frame of its own.
  A value the server flags as the first after changes it dropped (:data:`OVERFLOW`) is a part lost too. All are
  logged, and counted in :attr:`OpcUaTrigger.missed` with the counter's parts below (the station's status).
- An integer (SByte ... UInt64: a part counter): each increase. An increase by k > 1 between two notifications (the
  server coalesced changes, or sampled too slowly) takes ONE frame, a frame being "the scene now" and one frame
  showing one scene, and the log says that k - 1 parts had no frame of their own. A step from the type's largest
  value to its least (a Byte's 255 -> 0) is the counter wrapping: an increase (by 1 to the least). Any other
  decrease (a counter reset) takes nothing; it is logged and counting goes on from there.
- Triggers that come before the camera read the frame for the previous one are one (as the HTTP trigger's; see
  :meth:`~eagle_iad.station.sources.camera.Camera.trigger`); the log says so.
- While disconnected nothing is taken, and nothing is made up at the reconnection: the value read then is the new
  starting point (a counter that rose by 5 meanwhile takes no frame; the log says how far it moved).

A PLC that is unreachable at start or drops does not stop the station: the trigger tries again every
``reconnect_s``, and :meth:`OpcUaTrigger.problem` says why it is not connected, for the station's status. A node
the server does not have, or that holds another type, refuses the station at start when the PLC answers within
:data:`PROBE_S` (:meth:`OpcUaTrigger.probe`); found later (the PLC was down or slow at start, or its program
changed), it is a warning naming the node and the endpoint, tried again every ``reconnect_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from eagle_iad.station.opcua_common import (
    IDENTITY_REFUSED,
    close_quietly,
    need_asyncua,
    new_client,
    on_server,
    quiet_asyncua,
    read_endpoint,
    read_node_id,
    read_user,
    why,
)
from eagle_iad.station.parts import REQUIRED, Options, StationConfigError

if TYPE_CHECKING:
    from asyncua import ua
    from asyncua.client.client import Client

#: Seconds each request to the PLC may take (connect, read, subscribe) before the try counts as failed.
TIMEOUT_S = 10.0
#: Seconds the start-up look (:meth:`OpcUaTrigger.probe`) waits for the PLC, all of it (connect, the node's read).
#: Why not :data:`TIMEOUT_S`: the look runs inside ``POST``/``PATCH /v1/stations`` (holding the service's lock on
#: station changes), where a PLC that does not answer held the request 10 s; a PLC on the line's network answers
#: in milliseconds, so a wrong node is still refused at once, and one that does not answer within this is the
#: station's status warning (the trigger goes on trying in the background) instead of a wait.
PROBE_S = 2.0
#: Milliseconds between the server's publishes of the changes it sampled (the trigger's added latency at most).
PUBLISH_MS = 50.0
#: Changes the server keeps for one publish (oldest dropped beyond): a bit toggling faster than that is no part.
QUEUE_SIZE = 100
#: What makes the server report a sample (the monitored item's ``DataChangeFilter``, with no deadband): a change of
#: its value or of its status, each one. Asked for, not left to the server's default: a server may apply a trigger
#: or deadband of its own to an item without a filter and drop a quick false -> true -> false, or a counter's step.
#: Not ``StatusValueTimestamp``: a PLC that rewrites true with a new timestamp would be reported as true twice,
#: which reads as a rising edge lost (see the module text).
DATA_CHANGE_TRIGGER = "StatusValue"
#: The answers of a server that takes no filter on a monitored item (OPC UA Part 4: filters are optional, and a
#: small PLC may take none): the node is then watched without one, at the server's default (``StatusValue`` by
#: the specification, so usually the same), said once in the log, rather than never subscribed.
FILTER_REFUSED = ("BadMonitoredItemFilterUnsupported", "BadFilterNotAllowed", "BadMonitoredItemFilterInvalid")
#: Seconds without any change after which the connection is looked at (a read of the server's state): a PLC that
#: went away without closing the socket is found within this plus :data:`TIMEOUT_S`.
WATCH_S = 1.0
#: The node's types a trigger takes: a bit (rising edge) or a counter (increase).
BOOLEAN = "Boolean"
INTEGERS = ("SByte", "Byte", "Int16", "UInt16", "Int32", "UInt32", "Int64", "UInt64")
#: Each integer type's range, for a counter that wraps (255 -> 0 of a Byte is the next part, not a reset).
RANGES = {name: ((-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if name.startswith(("SByte", "Int")) else (0, 2**bits - 1))
          for name, bits in zip(INTEGERS, (8, 8, 16, 16, 32, 32, 64, 64), strict=True)}  # fmt: skip
#: How long a stopping trigger waits for a polite disconnect (a PLC gone silent would hold a delete for
#: TIMEOUT_S under the service's station lock).
CLOSE_S = 1.0
#: A value's status bits that say the server dropped changes before it (its queue overflowed): InfoType DataValue
#: (0x400) with the Overflow bit (0x80), as OPC UA Part 4's StatusCode sets them; a server that does not set them
#: (asyncua's own) is seen only by a value published twice in a row.
OVERFLOW = 0x0480
#: Status codes that say the node is not a variable of that server.
_NO_NODE = ("BadNodeIdUnknown", "BadNodeIdInvalid", "BadAttributeIdInvalid")


def _stderr(line: str) -> None:
    print(f"eagle station: {line}", file=sys.stderr, flush=True)


def stamp(at: float) -> str:
    """``at`` (``time.time()``) as ISO 8601 in UTC, to the second: ``2026-03-01T08:15:02Z``."""
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class _NodeError(Exception):
    """The node is not on the server, is no variable, or holds a type that cannot trigger: the configuration's
    fault (at start the station is refused; later, a warning tried again every ``reconnect_s``)."""


class _LostError(Exception):
    """The connection failed under the subscription (the PLC restarted, the network dropped)."""


#: The options a camera with ``trigger = "opcua"`` must give (:class:`OpcUaTrigger` reads them without a default);
#: ``username`` and ``password_env`` may be left out (an anonymous session). The service's OpenAPI document
#: declares them as the trigger's ``required`` (station/part_options.py), which the console's form marks;
#: tests/test_station_part_options.py checks the two agree with what is read.
REQUIRED_OPTIONS = ("trigger_endpoint", "trigger_node")


class OpcUaTrigger:
    """The options ``trigger_endpoint``, ``trigger_node``, ``username``, ``password_env`` of a camera, and the thread
    that watches the node once :meth:`start` is called, calling ``fire`` on each trigger."""

    def __init__(self, options: Options, reconnect_s: float) -> None:
        need_asyncua(options, "trigger", '"opcua"')  # checked now: a missing package is a start-up error
        self.where = options.where
        self.endpoint = read_endpoint(options, "trigger_endpoint")
        self.node_text: str = options.text("trigger_node", REQUIRED).strip()
        self.node = read_node_id(options, "trigger_node", self.node_text)
        self.username, self.password = read_user(options)
        self.reconnect_s = reconnect_s
        #: The node's type once read (:data:`BOOLEAN` or one of :data:`INTEGERS`), ``None`` before.
        self.type_name: str | None = None
        #: Triggers taken since the start (each rising edge or increase while connected).
        self.triggers = 0
        #: Parts seen to have no frame of their own since the start: a counter's increase by k > 1 (k - 1 of them),
        #: a Boolean false twice in a row (its true between lost: at least one). For the station's status.
        self.missed = 0
        #: Where the log lines go (the camera's, which names itself before each: the station's log).
        self.log: Callable[[str], None] = _stderr
        #: Called on each trigger (the camera takes the next frame read); set by the camera.
        self.fire: Callable[[], None] = lambda: None
        self._lock = threading.Lock()
        self._problem: str | None = None
        self._since: float | None = None
        self._connected = False
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._last: Any = None
        #: The status code (its code, without the info bits) of the last value published: a value repeated with
        #: another status is a status change (a sample of uncertain quality), not a lost change.
        self._last_status: int | None = None
        #: Set when a session connected, cleared by the loop that logs why it ended.
        self._connected_once = False
        #: The server's answer to the filter last said (:meth:`_unfiltered`): said once, not at each reconnection.
        self._filter_refused: str | None = None

    # What the station sees.

    def describe(self) -> str:
        """The trigger in words, after "a frame": ``on each rising edge of ns=2;s=PartPresent at
        opc.tcp://plc:4840`` (the rule named once the node's type was read, at the station's start)."""
        if self.type_name == BOOLEAN:
            rule = "each rising edge of"
        elif self.type_name is not None:
            rule = "each increase of counter"
        else:
            rule = "each rising edge (a Boolean) or increase (a counter) of"
        user = f" as {self.username}" if self.username else ""
        return f"on {rule} {self.node_text} at {self.endpoint}{user}"

    def problem(self) -> str | None:
        """Why the trigger takes no frames now (not connected, naming the endpoint and why), or ``None``: connected
        and subscribed. Before the first connection is made (the station just started) it says so too.

        Not watching yet (:meth:`start` not called: a station paused before its first image, which opens neither
        camera nor PLC), it is not connecting, and says so only where the start-up look could not reach the PLC
        (that, not a connection under way); else ``None``: the station's state says it is paused."""
        with self._lock:
            if self._connected:
                return None
            since = "" if self._since is None else f" since {stamp(self._since)}"
            problem = self._problem
            watching = self._thread is not None
        if not watching:
            if problem is None:
                return None
            return f"trigger {self.endpoint} not connected{since}: {problem}; tried again once the station takes images"
        if problem is None:
            return f"trigger {self.endpoint} not connected yet (connecting); no frame is taken meanwhile"
        return (f"trigger {self.endpoint} not connected{since}: {problem}; trying again every {self.reconnect_s:g} s; "
                "no frame is taken meanwhile")  # fmt: skip

    def probe(self) -> None:
        """Connect once, check the node (there, a variable, a Boolean or an integer) and disconnect, all within
        :data:`PROBE_S`: a node or user the server refuses raises :class:`StationConfigError` naming the option; a
        PLC that cannot be reached now, or does not answer within that, is no error: it is :meth:`problem` (the
        station's status) until the trigger connects, and the trigger tries again. Runs on an event loop of its own
        in a short-lived thread (the caller may be inside one)."""
        quiet_asyncua()
        outcome: list[BaseException | None] = []
        connected: list[bool] = []

        async def look() -> None:
            client = new_client(self.endpoint, PROBE_S, self.username, self.password)

            async def connect_and_check() -> None:
                await client.connect()
                connected.append(True)
                await self._check(client)

            try:  # the goodbye outside the bound: a slow one must not turn a node refused into a timeout
                await asyncio.wait_for(connect_and_check(), PROBE_S)
            finally:
                await close_quietly(client, CLOSE_S)

        def run() -> None:
            try:
                asyncio.run(look())
                outcome.append(None)
            except BaseException as exc:
                outcome.append(exc)

        thread = threading.Thread(target=run, name="eagle-trigger-probe", daemon=True)
        thread.start()
        thread.join(PROBE_S + 2 * CLOSE_S + 5)
        found = outcome[0] if outcome else TimeoutError()
        if isinstance(found, _NodeError):
            raise StationConfigError(f"{self.where}: trigger_node {found}") from None
        identity = self._identity(found) if found is not None else None
        if identity is not None:
            raise StationConfigError(f"{self.where}: {identity}") from None
        if found is not None:  # not reached: said by the status at once, not "connecting" while nothing is
            failed = f"the start-up look at {self.node_text} failed" if connected else "cannot connect"
            with self._lock:
                if self._since is None:
                    self._since = time.time()
            self._failed(f"{failed} ({why(found, PROBE_S)})")

    def start(self) -> None:
        """Watch the node in a thread of its own (once; the first poll of the camera calls it)."""
        with self._lock:
            if self._thread is not None or self._closed:
                return
            if self._since is None or self._problem is None:  # not connected since the start-up look, if it said
                self._since = time.time()
            self._thread = threading.Thread(target=self._run, name=f"eagle-trigger-{self.endpoint}", daemon=True)
            self._thread.start()

    def close(self) -> None:
        """Stop watching: the subscription's session is closed and the thread ends."""
        with self._lock:
            self._closed = True
            loop, task, thread = self._loop, self._task, self._thread
        if loop is not None and task is not None:
            with contextlib.suppress(RuntimeError):  # the loop ended already
                loop.call_soon_threadsafe(task.cancel)
        if thread is not None and thread is not threading.current_thread():
            thread.join(TIMEOUT_S + 2)

    # The thread.

    def _run(self) -> None:
        quiet_asyncua()
        asyncio.run(self._main())

    async def _main(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._loop, self._task = asyncio.get_running_loop(), asyncio.current_task()
        said: str | None = None  # the problem last logged: said once, not at every try
        try:
            while True:
                problem = await self._session()
                if self._connected_once:  # connected in between: the same problem again is news
                    self._connected_once, said = False, None
                if problem != said:
                    said = problem
                    self.log(f"trigger {self.endpoint}: not connected: {problem}; trying again every "
                             f"{self.reconnect_s:g} s; no frame is taken meanwhile")  # fmt: skip
                await asyncio.sleep(self.reconnect_s)
        except asyncio.CancelledError:
            pass

    async def _session(self) -> str:
        """Connect, check the node, subscribe and take triggers until the connection fails: why it ended."""
        from asyncua import ua

        client = new_client(self.endpoint, TIMEOUT_S, self.username, self.password)
        stopping = False
        try:
            try:
                await asyncio.wait_for(client.connect(), TIMEOUT_S)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                return self._failed(self._identity(exc) or f"cannot connect ({why(exc, TIMEOUT_S)})")
            try:
                node, value = await self._check(client)
                changes: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
                subscription = await asyncio.wait_for(
                    client.create_subscription(PUBLISH_MS, _Handler(changes)), TIMEOUT_S
                )
                nodeid = client.get_node(node).nodeid
                subscribed = subscription.create_monitored_items([_monitored_item(nodeid)])
                (created,) = await asyncio.wait_for(subscribed, TIMEOUT_S)
                if isinstance(created, ua.StatusCode) and created.name in FILTER_REFUSED:
                    self._unfiltered(created.name)
                    subscribed = subscription.create_monitored_items([_monitored_item(nodeid, filtered=False)])
                    (created,) = await asyncio.wait_for(subscribed, TIMEOUT_S)
                if isinstance(created, ua.StatusCode):  # a Bad code: the node cannot be monitored
                    created.check()
            except _NodeError as exc:
                return self._failed(f"trigger_node {exc}")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                return self._failed(f"cannot subscribe to {self.node_text} ({why(exc, TIMEOUT_S)})")
            self._up(value)
            try:
                await self._watch(client, changes)
            except _LostError as exc:
                return self._failed(f"the connection was lost ({exc})")
            return self._failed("the connection was lost")
        except asyncio.CancelledError:  # stopping: a short goodbye (a silent PLC would hold the stop TIMEOUT_S)
            stopping = True
            raise
        finally:
            await close_quietly(client, CLOSE_S if stopping else TIMEOUT_S)

    async def _check(self, client: Client) -> tuple[ua.NodeId, Any]:
        """The node on this server and its value now; :class:`_NodeError` where it is missing or no trigger."""
        from asyncua.ua.uaerrors import UaStatusCodeError

        node = await on_server(client, self.node)
        if node is None:
            raise _NodeError(f"{self.node_text}: the namespace {self.node.NamespaceUri} is not on {self.endpoint}")
        try:
            data = await asyncio.wait_for(client.get_node(node).read_data_value(), TIMEOUT_S)
        except UaStatusCodeError as exc:
            name = why(exc, TIMEOUT_S)
            if name in _NO_NODE:
                what = "is not a variable" if name == "BadAttributeIdInvalid" else "does not exist"
                raise _NodeError(f"{self.node_text} {what} on {self.endpoint}") from None
            raise
        variant = data.Value
        type_name = getattr(getattr(variant, "VariantType", None), "name", "Null")
        if type_name != BOOLEAN and type_name not in INTEGERS:
            raise _NodeError(f"{self.node_text} on {self.endpoint} holds {type_name}; a trigger node must be a "
                             "Boolean (a part-present bit: each rising edge takes a frame) or an integer (a part "
                             "counter: each increase takes a frame)")  # fmt: skip
        self.type_name = type_name
        return node, None if variant is None else variant.Value

    async def _watch(self, client: Client, changes: asyncio.Queue[tuple[str, Any]]) -> None:
        """Take each change as it comes; look at the connection after :data:`WATCH_S` without one."""
        while True:
            try:
                kind, value = await asyncio.wait_for(changes.get(), WATCH_S)
            except TimeoutError:
                try:
                    await asyncio.wait_for(client.nodes.server_state.read_value(), TIMEOUT_S)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    raise _LostError(why(exc, TIMEOUT_S)) from None
                continue
            if kind == "status":
                raise _LostError(value)
            self._changed(*value)

    def _changed(self, value: Any, status: int | None = None) -> None:
        """One value the server published (``status``: its status code), a trigger or not (see the module). A sample
        of bad quality carries no value of the node's type: it is skipped, the last good value kept (a bit true,
        then unknown, then true again is no new edge)."""
        code = None if status is None else status >> 16  # the code, without the info bits (overflow, limits)
        same_status, self._last_status = code == self._last_status, code
        if self.type_name == BOOLEAN:
            if isinstance(value, bool):
                last, self._last = self._last, value
                if value is last and same_status and status is not None:
                    self._repeated(value)
                    return
                if value and last is False:
                    self._fire()
                if status is not None and status & OVERFLOW == OVERFLOW and last is not None:
                    self._overflowed()
            return
        if isinstance(value, bool) or not isinstance(value, int):
            return
        last, self._last = self._last, value
        if isinstance(last, bool) or not isinstance(last, int):
            return
        low, high = RANGES.get(self.type_name or "", (None, None))
        wrapped = value < last and last == high and low is not None  # the type's largest, then from its least
        value_step = value - low + 1 if wrapped and low is not None else value - last
        if value_step > 0:
            if value_step > 1:
                missed = value_step - 1
                self.missed += missed
                self.log(f"trigger {self.endpoint}: {self.node_text} went from {last} to {value}: one "
                         f"frame taken; {missed} part{'' if missed == 1 else 's'} had no frame of "
                         f"{'its' if missed == 1 else 'their'} own")  # fmt: skip
            self._fire()
        elif value < last:
            self.log(f"trigger {self.endpoint}: {self.node_text} went back from {last} to {value} (a "
                     "reset): no frame; counting on from there")  # fmt: skip

    def _repeated(self, value: bool) -> None:
        """The Boolean published ``value`` twice in a row with the same status: the server dropped the changes
        between (its queue overflowed). True again: its false was lost, this is a rising edge (a frame); false
        again: a part's rising edge was lost, with no frame of its own. Said and counted, not dropped silently."""
        if value:
            self.log(f"trigger {self.endpoint}: {self.node_text} was true twice in a row: the server dropped the "
                     f"changes between (more than {QUEUE_SIZE} between two publishes); taken as a rising edge (one "
                     "frame); parts among the changes dropped had no frame of their own")  # fmt: skip
            self._fire()
            return
        self.missed += 1
        self.log(f"trigger {self.endpoint}: {self.node_text} was false twice in a row: the server dropped the changes "
                 f"between (more than {QUEUE_SIZE} between two publishes); at least 1 part had no frame of its own "
                 f"({self.missed} so far)")  # fmt: skip

    def _overflowed(self) -> None:
        """The server flagged this value as the first after changes it dropped, and it differs from the last one:
        an even number of changes (2 or more) was lost, among them at least one rising edge with no frame."""
        self.missed += 1
        self.log(f"trigger {self.endpoint}: {self.node_text}: the server dropped changes before this one (its queue "
                 f"overflowed: more than {QUEUE_SIZE} between two publishes); at least 1 part had no frame of its own "
                 f"({self.missed} so far)")  # fmt: skip

    def _fire(self) -> None:
        self.triggers += 1
        self.fire()

    def _up(self, value: Any) -> None:
        """Connected and subscribed: ``value`` (read at connect) is the starting point, not a trigger."""
        before, self._last = self._last, value
        self._last_status = None  # the subscription's first value repeats the one read: no change was lost
        with self._lock:
            self._connected, self._problem = True, None
        self._connected_once = True
        rule = "each rising edge takes a frame" if self.type_name == BOOLEAN else "each increase takes a frame"
        moved = "" if before is None or before == value else f"; it was {before} when the connection was lost"
        self.log(f"trigger {self.endpoint}: connected; {self.node_text} ({self.type_name}: {rule}) is "
                 f"{value}{moved}")  # fmt: skip

    def _failed(self, problem: str) -> str:
        """Not connected, for ``problem``: since the start, or since the connection was lost."""
        with self._lock:
            if self._connected:
                self._since = time.time()
            self._connected, self._problem = False, problem
        return problem

    def _unfiltered(self, answer: str) -> None:
        """Say (once per answer) that the server refused the monitored item's filter and the node is watched
        without one: what it reports is then the server's default, usually each change of value or status, but a
        server whose default drops a quick pulse would lose parts there (a counter node is safer on such a PLC)."""
        if self._filter_refused == answer:
            return
        self._filter_refused = answer
        self.log(f"trigger {self.endpoint}: the server refused the filter asking for each change of value or status "
                 f"of {self.node_text} ({answer}); watching it without one, at the server's default (usually the "
                 "same)")  # fmt: skip

    def _identity(self, exc: BaseException) -> str | None:
        """The option to blame when the server refused the session's user, or ``None``."""
        from asyncua.ua.uaerrors import UaStatusCodeError

        name = why(exc, TIMEOUT_S)
        if not isinstance(exc, UaStatusCodeError) or name not in IDENTITY_REFUSED:
            return None
        key = "password_env" if self.password is not None else "username"
        who = f"the user {self.username}" if self.username else "an anonymous session"
        return f"{key}: {self.endpoint} refused {who}: {name}"


def _monitored_item(node: ua.NodeId, filtered: bool = True) -> ua.MonitoredItemCreateRequest:
    """The subscription's one monitored item: ``node``'s value, sampled at the server's fastest (a short pulse is
    seen), up to :data:`QUEUE_SIZE` changes kept between publishes (the oldest dropped, :data:`OVERFLOW` said),
    each change of value or status reported (:data:`DATA_CHANGE_TRIGGER`, no deadband) on a Boolean as on a
    counter. Why not ``subscribe_data_change``: it sends no filter, leaving what is reported to the server.
    ``filtered=False``: no filter, for a server that refused it (:data:`FILTER_REFUSED`)."""
    from asyncua import ua
    from asyncua.ua.attribute_ids import AttributeIds

    parameters = ua.MonitoringParameters(ClientHandle=1, SamplingInterval=0.0, QueueSize=QUEUE_SIZE,
                                         DiscardOldest=True)  # fmt: skip
    if filtered:  # else the empty ExtensionObject, which is no filter on the wire
        trigger = ua.DataChangeTrigger[DATA_CHANGE_TRIGGER]
        parameters.Filter = ua.DataChangeFilter(Trigger=trigger, DeadbandType=ua.DeadbandType.None_.value,
                                                DeadbandValue=0.0)  # fmt: skip
    return ua.MonitoredItemCreateRequest(ItemToMonitor=ua.ReadValueId(NodeId=node, AttributeId=AttributeIds.Value),
                                         MonitoringMode=ua.MonitoringMode.Reporting,
                                         RequestedParameters=parameters)  # fmt: skip


class _Handler:
    """asyncua's subscription handler: each published value, and each status change (a subscription the server
    ended), queued for :meth:`OpcUaTrigger._watch` in the same event loop."""

    def __init__(self, changes: asyncio.Queue[tuple[str, Any]]) -> None:
        self.changes = changes

    def datachange_notification(self, node: Any, val: Any, data: Any) -> None:
        status = getattr(getattr(getattr(getattr(data, "monitored_item", None), "Value", None), "StatusCode", None),
                         "value", None)  # fmt: skip
        self.changes.put_nowait(("value", (val, status if isinstance(status, int) else None)))

    def status_change_notification(self, status: Any) -> None:
        code = getattr(status, "Status", status)
        name = getattr(code, "name", str(code))
        if not getattr(code, "is_good", lambda: False)():
            # asyncua's client says BadShutdown for any lost connection (a pulled cable too): the code, not a
            # story of who ended it
            self.changes.put_nowait(("status", name))
