"""The OPC UA sink: each verdict written to variables of a PLC's (or SCADA's) OPC UA server.

Why write to the PLC's own variables: a line's controller already speaks OPC UA, and a reject gate
wants a flag and a number in its own address space, not a message to parse. The stations file maps
the fields the sink knows (``decision``, ``anomalous``, ``score``, ``tau``, ``time``, ``record_id``,
``image``, ``station``, ``reason``, ``image_name``, ``model_version``, and the handshake's ``sequence`` and
``ack``) to node ids (``ns=3;s="DB_Vision"."Verdict"``, ``nsu=urn:plc;i=42``); each
node id is parsed at start-up, so a typo is a start-up error and not a failed delivery.

An image the station refused is written as a verdict is, in the same two requests: ``decision`` ``refused``,
``anomalous`` true (a part that was not inspected must not pass a gate reading only that flag), ``score`` and
``tau`` NaN, ``reason`` why (a verdict writes ``""`` there), ``record_id`` the refusal's key (``refused-...``).

A verdict is two Write requests: every mapped field but ``record_id`` first, then ``record_id`` alone,
only once the first was accepted, so a PLC that watches ``record_id`` (a data-change trigger) reads a
complete verdict the moment it changes; with ``sequence`` mapped, a third request writes it, a counter one
higher per verdict, and with ``ack`` mapped the delivery then waits (up to ``ack_timeout_s``, else a failed try)
until the PLC wrote that sequence to the ack node: a PLC that scans its variables every 10-100 ms sees every
verdict of a backlog, not only the latest, and a verdict counts as delivered once the PLC took it. Without the
handshake ``min_interval_s`` at least spaces the verdicts. The value written has the variable's own data type, read from
the server once per connection (``score`` into a ``Float`` variable is a float32; ``anomalous`` into an
``Int16`` is 0 or 1; ``time`` into a ``DateTime`` is a date); a variable of ``BaseDataType`` gets the
field's own type (String, Boolean, Double). A node that is not on the server, a data type the field
cannot be written as, a refused write (``BadNotWritable``, ``BadUserAccessDenied``), a refused session
or an unreachable server raises :class:`DeliveryError`, naming the node or the endpoint, and the
outbox retries with its backoff; the record id is the idempotency key (rewriting a verdict rewrites
the same values).

The connection is made on the first delivery, not at start-up (``eagle station status`` reads the
same file and must not connect, and a server that is down at start must not stop the station); it is
then kept. A request that fails because the connection was lost (the PLC restarted) is tried once
more on a fresh connection in the same try; any other failure drops the connection, and the next try
makes a new one. When a station starts, :meth:`OpcUaSink.station_probe` connects once, reads the nodes' data
types and disconnects: a node the server does not have, a data type the field cannot be written as or
a user the server refuses stops the station with one line naming the field; a server that is down is
only a warning. asyncua is asyncio: the sink owns a private event loop in a thread of its own, which the
courier's :meth:`deliver` hands each verdict to, and :meth:`close` disconnects and stops. Security
policy ``None`` only for now (no signing, no encryption, no certificates): a server that demands a
secure channel refuses the session, and the error says so. asyncua is an optional dependency
(``pip install 'eagle-iad[opcua]'``), imported when a stations file names this sink.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import math
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar

from eagle_iad.ranges import Range, short_repr
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
from eagle_iad.station.parts import (
    REFUSED,
    REQUIRED,
    SINKS,
    DeliveryError,
    Options,
    RefusedError,
    Retry,
    StationConfigError,
    refusal,
)

if TYPE_CHECKING:
    from asyncua import ua
    from asyncua.client.client import Client

TIMEOUT_S = Range(0.0, 600.0, low_open=True)

#: The fields the sink can write, and what each one is: ``text``, ``time`` (ISO 8601 text, or a date),
#: ``flag`` (a boolean) or ``number`` (a double).
FIELDS: dict[str, str] = {
    "decision": "text",
    "anomalous": "flag",
    "score": "number",
    "tau": "number",
    "time": "time",
    "record_id": "text",
    "image": "text",
    "station": "text",
    "reason": "text",
    "image_name": "text",
    "model_version": "count",
    "sequence": "count",
    "ack": "count",
}
#: The handshake's nodes (see :class:`OpcUaSink`): ``sequence`` is written last, alone, a counter one higher for
#: each verdict; ``ack`` is the node the PLC writes the sequence back to once it took that verdict, which the
#: sink reads and never writes.
SEQUENCE, ACK = "sequence", "ack"
#: The variant type written to a variable whose data type says nothing (``BaseDataType``).
DEFAULT_TYPE = {"text": "String", "time": "String", "flag": "Boolean", "number": "Double", "count": "UInt32"}
_INTEGERS = {"SByte", "Byte", "Int16", "UInt16", "Int32", "UInt32", "Int64", "UInt64"}
_TEXT = {"String", "LocalizedText"}
#: The variable data types (OPC UA built-in types) each kind of field can be written as.
ACCEPTED = {
    "text": _TEXT,
    "time": _TEXT | {"DateTime"},
    "flag": {"Boolean", "Float", "Double"} | _INTEGERS | _TEXT,
    "number": {"Float", "Double"} | _TEXT,
    "count": _INTEGERS | {"Float", "Double"} | _TEXT,
}
#: The highest sequence a variable of each integer type holds; the counter goes back to 1 after it (0 is the
#: variable's value before any verdict, so a PLC never takes it for one).
_SEQUENCE_MAX = {"SByte": 2**7 - 1, "Byte": 2**8 - 1, "Int16": 2**15 - 1, "UInt16": 2**16 - 1, "Int32": 2**31 - 1}
_SEQUENCE_DEFAULT_MAX = 2**31 - 1  # UInt32, Int64, UInt64, a double (exact), text
#: Seconds between two reads of the ``ack`` node while the sink waits for the PLC.
ACK_POLL_S = 0.02
ACK_TIMEOUT_S = Range(0.0, 3600.0, low_open=True)
MIN_INTERVAL_S = Range(0.0, 60.0)
#: The field written after the others, alone, so a PLC triggered by its change reads a complete verdict.
LAST = "record_id"
#: The fields that are the verdict (the handshake's two are not).
VERDICT_FIELDS = [field for field in FIELDS if field not in (SEQUENCE, ACK)]
#: The highest numeric id of an OPC UA built-in data type (i=1 Boolean ... i=25 DiagnosticInfo).
_BUILTIN_TYPES = 25
_BASE_DATA_TYPE = 24
#: A request refused with a status code naming one of these failed for the connection's sake, not the request's.
_CONNECTION_WORDS = ("Session", "SecureChannel", "Connect", "Shutdown", "Halted", "Timeout", "Communication")


@dataclass(frozen=True)
class Target:
    """One field and the node it goes to, as the stations file wrote it and parsed."""

    field: str
    text: str
    node: Any  # asyncua.ua.NodeId (or ExpandedNodeId for an ``nsu=`` id), resolved per connection


def _targets(options: Options) -> list[Target]:
    """``nodes`` read and checked now (fields known, node ids well formed), ``record_id`` last."""
    table = options._get("nodes", REQUIRED, (dict,), "a table of field = node id")  # Options has no public table
    known = ", ".join(FIELDS)
    if not table:
        raise options.error("nodes", f"is empty; map at least one of {known} to a node id")
    targets: list[Target] = []
    seen: dict[str, str] = {}
    for field, text in table.items():
        key = f"nodes.{field}"
        if field not in FIELDS:
            raise options.error(key, f"is not a field the sink writes; use {known}")
        node = read_node_id(options, key, text)
        canonical = node.to_string()
        if canonical in seen:
            raise options.error(key, f"{text!r} is the node nodes.{seen[canonical]} already names")
        seen[canonical] = field
        targets.append(Target(field, str(text).strip(), node))
    fields = {target.field for target in targets}
    if ACK in fields and SEQUENCE not in fields:
        raise options.error("nodes.ack", "needs nodes.sequence: the PLC acknowledges a verdict by writing its "
                                         "sequence back to the ack node")  # fmt: skip
    if fields <= {ACK, SEQUENCE}:
        raise options.error("nodes", f"maps only the handshake; map at least one of {', '.join(VERDICT_FIELDS)} too")
    # stable: the file's order, then record_id, then sequence (then ack, which is read, not written)
    order = {LAST: 1, SEQUENCE: 2, ACK: 3}
    return sorted(targets, key=lambda target: order.get(target.field, 0))


def _values(payload: Mapping[str, Any], key: str) -> dict[str, Any]:
    """Every field's value for one verdict (a missing score or threshold is NaN), or one refusal."""
    refused = refusal(payload)
    if refused is not None:
        return {
            "decision": REFUSED,
            "anomalous": True,  # not inspected: a gate that reads only this flag must not pass the part
            "score": math.nan,
            "tau": math.nan,
            "time": str(refused.get("time") or ""),
            "record_id": key,
            "image": str(payload.get("image") or ""),
            "station": str(payload.get("station") or ""),
            "reason": str(refused.get("reason") or ""),
            "image_name": str(refused.get("image_name") or ""),
            "model_version": 0,  # not inspected: no model scored it
        }
    record = payload["record"]
    decision = record.get("decision")

    def number(value: Any) -> float:
        return math.nan if value is None else float(value)

    return {
        "decision": str(decision or "undecided"),
        # A part the expert cannot recognise as this product must not pass a gate that reads only this flag.
        "anomalous": decision in ("anomalous", "unrecognised"),
        "score": number(record.get("score")),
        "tau": number(record.get("tau")),
        "time": str(record.get("time") or ""),
        "record_id": key,
        "image": str(payload.get("image") or ""),
        "station": str(payload.get("station") or ""),
        "reason": "",  # a refusal's reason, written before, does not stay beside a verdict
        # the name the camera gave the file (``image`` may be done/cam-1.png for a reused cam.png): the PLC's key
        "image_name": str(record.get("image_name") or ""),
        "model_version": int(record.get("model_version") or 0),
    }


def _converted(value: Any, type_name: str) -> Any:
    """``value`` as the variable's built-in type (``type_name`` is one :data:`ACCEPTED` allows for its field)."""
    from asyncua import ua

    if type_name in _TEXT:
        text = ("true" if value else "false") if isinstance(value, bool) else str(value)
        return ua.LocalizedText(text) if type_name == "LocalizedText" else text
    if type_name == "Boolean":
        return bool(value)
    if type_name in _INTEGERS:
        return int(value)
    if type_name == "DateTime":
        return datetime.fromisoformat(value)
    return float(value)


#: A node's statuses that refuse the value for good (the server will not take it, however often asked): such a
#: verdict ends as a dead letter (RefusedError); any other bad status is retried as an unreachable server is.
REFUSED_STATUSES = ("BadNotWritable", "BadUserAccessDenied", "BadTypeMismatch", "BadOutOfRange")


class _LostError(Exception):
    """The connection failed under a request: worth one more go on a fresh connection."""


class _NodeError(RefusedError):
    """A mapped node the server does not have, or cannot take the field's values: the configuration's fault
    (a failed try for a delivery; at start-up, :meth:`OpcUaSink.station_probe` refuses the station)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class OpcUaSink:
    """A :class:`~eagle_iad.station.parts.Sink` writing to variables of an OPC UA server (asyncua's client)."""

    kind: ClassVar[str] = "opcua"
    takes_refusals: ClassVar[bool] = True

    def __init__(self, options: Options, name: str) -> None:
        self.name = name
        self.where = options.where
        need_asyncua(options, "kind", "opcua")  # checked now: a missing package is a start-up error
        self.endpoint = read_endpoint(options, "endpoint")
        self.targets = _targets(options)
        self.username, self.password = read_user(options)
        self.timeout_s = options.number("timeout_s", 10.0, TIMEOUT_S)
        fields = {target.field for target in self.targets}
        #: The handshake (see the module): the ack node, and how long the PLC is given to write the sequence back.
        self.ack: Target | None = next((t for t in self.targets if t.field == ACK), None)
        if self.ack is None and "ack_timeout_s" in options.table:
            raise options.error("ack_timeout_s", "needs nodes.ack (the node the PLC writes each sequence back to)")
        self.ack_timeout_s = options.number("ack_timeout_s", 10.0, ACK_TIMEOUT_S)
        #: The least time between two verdicts' writes (a PLC that scans its variables, and has no handshake).
        self.min_interval_s = options.number("min_interval_s", 0.0, MIN_INTERVAL_S)
        self.sequenced = SEQUENCE in fields
        self.max_attempts = Retry.read(options).max_attempts
        self._lock = threading.Lock()
        self._closed = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._inflight: concurrent.futures.Future[None] | None = None
        #: Owned by the loop's thread: the connection, and per target its node id and variant type on it.
        self._client: Client | None = None
        self._resolved: list[tuple[Target, ua.NodeId, str]] | None = None
        #: The last sequence written (read from the server at each connection: what it holds is the last one
        #: written, so the count goes on across restarts without being stored), the verdict (its key and sequence)
        #: whose acknowledgement is awaited, and when the last verdict's writes ended (``time.monotonic``).
        self._sequence: int | None = None
        self._pending: tuple[str, int] | None = None
        self._last_write: float | None = None

    @property
    def delivery_bound_s(self) -> float:
        """The most one delivery waits (connect, read the data types, three writes, all once more on a fresh
        connection, the pacing and the PLC's acknowledgement): its guard, and the watch's bound (overdue.py)."""
        return 10 * self.timeout_s + 5 + self.min_interval_s + (self.ack_timeout_s if self.ack is not None else 0)

    def describe(self) -> str:
        mapped = ", ".join(f"{t.field} -> {t.text}" for t in self.targets)
        user = f"user {self.username}" if self.username else "anonymous"
        paced = [f"acknowledged within {self.ack_timeout_s:g} s"] if self.ack is not None else []
        paced += [f"at least {self.min_interval_s:g} s apart"] if self.min_interval_s else []
        more = "".join(f", {each}" for each in paced)
        return f"opcua {self.endpoint}: {mapped} ({user}, security None, timeout {self.timeout_s:g} s{more})"

    def deliver(self, payload: Mapping[str, Any], key: str) -> None:
        values = _values(payload, key)
        with self._lock:
            if self._closed:
                raise DeliveryError(f"{self.endpoint}: the sink is closing")
            loop = self._started()
            future = asyncio.run_coroutine_threadsafe(self._deliver(values, key), loop)
            self._inflight = future
        # connect, read the data types, three writes (and all of it once more on a fresh connection), the pacing
        # and the wait for the PLC's acknowledgement
        guard = self.delivery_bound_s
        try:
            future.result(timeout=guard)
        except concurrent.futures.CancelledError:
            raise DeliveryError(f"{self.endpoint}: the sink is closing") from None
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise DeliveryError(f"{self.endpoint}: no answer within {guard:g} s") from None
        finally:
            with self._lock:
                self._inflight = None

    def station_probe(self) -> str | None:
        """Connect once, check every mapped node exists and takes its field, disconnect: why the server is
        unreachable now, or None.

        A node that is not there, a data type the field cannot be written as, or a user the server refuses
        raises :class:`StationConfigError` naming the field. The check runs on an event loop of its own in a
        short-lived thread (the caller may be inside one), joined before returning: the sink's own loop and
        connection are still made at the first delivery.
        """
        quiet_asyncua()
        outcome: list[str | BaseException | None] = []

        def run() -> None:
            try:
                outcome.append(asyncio.run(self._probe()))
            except BaseException as exc:
                outcome.append(exc)

        thread = threading.Thread(target=run, name=f"eagle-probe-{self.name}", daemon=True)
        thread.start()
        guard = 4 * self.timeout_s + 5  # connect, read, (a subtype's read,) disconnect: each within timeout_s
        thread.join(guard)
        if not outcome:
            return f"{self.endpoint}: no answer within {guard:g} s"
        result = outcome[0]
        if isinstance(result, BaseException):
            raise result
        return result

    def _new_client(self) -> Client:
        """A client for the endpoint with the sink's timeout and credentials (not connected yet)."""
        return new_client(self.endpoint, self.timeout_s, self.username, self.password)

    async def _probe(self) -> str | None:
        from asyncua.ua.uaerrors import UaStatusCodeError

        client = self._new_client()
        try:
            await asyncio.wait_for(client.connect(), self.timeout_s)
        except Exception as exc:
            await self._close_quietly(client)
            why = self._why(exc)
            if isinstance(exc, UaStatusCodeError) and why in IDENTITY_REFUSED:
                key = "password_env" if self.password is not None else "username"
                who = f"the user {self.username}" if self.username else "an anonymous session"
                raise StationConfigError(f"{self.where}: {key}: {self.endpoint} refused {who}: {why}") from None
            return f"{self.endpoint}: cannot connect ({why})"
        try:
            await asyncio.wait_for(self._resolve(client), 2 * self.timeout_s)
        except _NodeError as exc:
            raise StationConfigError(f"{self.where}: nodes.{exc.field}: {exc}") from None
        except DeliveryError as exc:  # a read refused (not the node's absence): the first delivery says more
            return str(exc)
        except _LostError as exc:
            return f"{self.endpoint}: {exc}"
        except TimeoutError:
            return f"{self.endpoint}: no answer within {self.timeout_s:g} s"
        finally:
            await self._close_quietly(client)
        return None

    def close(self) -> None:
        """Disconnect (closing the session) and stop the sink's event loop."""
        with self._lock:
            self._closed = True
            loop, thread, inflight = self._loop, self._thread, self._inflight
        if loop is None or thread is None:
            return
        if inflight is not None:
            inflight.cancel()
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self._drop(), loop).result(timeout=self.timeout_s + 1)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(self.timeout_s + 1)
        if not thread.is_alive():
            loop.close()

    # ------------------------------------------------------------------ the event loop's thread

    def _started(self) -> asyncio.AbstractEventLoop:
        """The sink's event loop, running in its own thread (started at the first delivery)."""
        if self._loop is None:
            quiet_asyncua()
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=loop.run_forever, name=f"eagle-opcua-{self.name}", daemon=True)
            thread.start()
            self._loop, self._thread = loop, thread
        return self._loop

    async def _deliver(self, values: Mapping[str, Any], key: str) -> None:
        fresh = self._client is None
        while True:
            try:
                resolved = await self._connected()
                pending = self._pending
                # this verdict's last try ended waiting for the PLC: taken since, it is not written again
                if pending is not None and pending[0] == key and await self._read_ack(resolved) == pending[1]:
                    self._pending = None
                    return
                if self._last_write is not None and self.min_interval_s:
                    await asyncio.sleep(max(0.0, self._last_write + self.min_interval_s - time.monotonic()))
                sequence = await self._write(resolved, values)
                self._last_write = time.monotonic()
                if self.ack is not None and sequence is not None:
                    self._pending = (key, sequence)
                    await self._acknowledged(resolved, key, sequence)
                    self._pending = None
                return
            except _LostError as exc:
                await self._drop()
                if fresh:
                    raise DeliveryError(f"{self.endpoint}: {exc}") from None
                fresh = True  # the connection died since the last verdict (a PLC restart): once more, anew

    async def _connected(self) -> list[tuple[Target, ua.NodeId, str]]:
        """Each target's node id and variant type on a live connection (made and checked if there is none)."""

        if self._client is None:
            client = self._new_client()
            try:
                await asyncio.wait_for(client.connect(), self.timeout_s)
            except BaseException as exc:
                await self._close_quietly(client)  # what the half-made connection started (tasks, socket)
                if isinstance(exc, asyncio.CancelledError):
                    raise
                raise DeliveryError(f"{self.endpoint}: cannot connect ({self._why(exc)})") from None
            self._client = client
        if self._resolved is None:
            self._resolved = await self._resolve(self._client)
        if self.sequenced and self._sequence is None:
            self._sequence = _whole(await self._read(self._resolved, SEQUENCE))
        return self._resolved

    async def _read(self, resolved: list[tuple[Target, ua.NodeId, str]], field: str) -> Any:
        """The current value of ``field``'s node (``sequence``, ``ack``)."""
        assert self._client is not None
        node = next(node for target, node, _ in resolved if target.field == field)
        try:
            return await asyncio.wait_for(self._client.get_node(node).read_value(), self.timeout_s)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            raise self._failed(exc, f"reading nodes.{field}") from None

    async def _read_ack(self, resolved: list[tuple[Target, ua.NodeId, str]]) -> int | None:
        return _whole(await self._read(resolved, ACK))

    async def _acknowledged(self, resolved: list[tuple[Target, ua.NodeId, str]], key: str, sequence: int) -> None:
        """Wait until the PLC wrote ``sequence`` to the ack node; a :class:`DeliveryError` after ``ack_timeout_s``
        (a failed try: the outbox retries, and the retry first looks whether the PLC took it meanwhile)."""
        assert self.ack is not None
        deadline = time.monotonic() + self.ack_timeout_s
        while True:
            seen = await self._read_ack(resolved)
            if seen == sequence:
                return
            if time.monotonic() >= deadline:
                raise DeliveryError(
                    f"{self.endpoint}: the PLC did not acknowledge sequence {sequence} (record {key}) within "
                    f"{self.ack_timeout_s:g} s: nodes.ack {self.ack.text} holds {short_repr(seen)}"
                )
            await asyncio.sleep(ACK_POLL_S)

    async def _resolve(self, client: Client) -> list[tuple[Target, ua.NodeId, str]]:
        """Every target's node on this server (``nsu=`` resolved), checked to exist, with its variant type."""
        from asyncua.ua.attribute_ids import AttributeIds

        try:
            nodes = [await self._node_id(client, target) for target in self.targets]
            results = await client.uaclient.read(_read_parameters(nodes, AttributeIds.DataType))
        except (DeliveryError, asyncio.CancelledError):
            raise
        except Exception as exc:
            raise self._failed(exc, "reading the nodes' data types") from None
        resolved = []
        for target, node, result in zip(self.targets, nodes, results, strict=True):
            status = result.StatusCode
            if status is not None and not status.is_good():
                raise self._node_error(target, status, "reading its data type")
            data_type = result.Value.Value if result.Value is not None else None
            type_name = await self._type_name(client, target, node, data_type)
            if type_name not in ACCEPTED[FIELDS[target.field]]:
                raise _NodeError(
                    target.field,
                    f"node {target.text} on {self.endpoint} holds {type_name}; {target.field} cannot be written "
                    f"as {type_name} (it takes {', '.join(sorted(ACCEPTED[FIELDS[target.field]]))})",
                )
            resolved.append((target, node, type_name))
        return resolved

    async def _node_id(self, client: Client, target: Target) -> ua.NodeId:
        resolved = await on_server(client, target.node)
        if resolved is None:
            uri = target.node.NamespaceUri
            raise _NodeError(target.field, f"node {target.text}: the namespace {uri} is not on {self.endpoint}")
        return resolved

    async def _type_name(self, client: Client, target: Target, node: ua.NodeId, data_type: Any) -> str:
        """The built-in type a variable of ``data_type`` holds (the field's own for ``BaseDataType``)."""
        from asyncua import ua

        builtin = (
            isinstance(data_type, ua.NodeId)
            and data_type.NamespaceIndex == 0
            and isinstance(data_type.Identifier, int)
            and 1 <= data_type.Identifier <= _BUILTIN_TYPES
        )
        if builtin:
            identifier = int(data_type.Identifier)
            if identifier == _BASE_DATA_TYPE:
                return DEFAULT_TYPE[FIELDS[target.field]]
            return ua.VariantType(identifier).name
        try:  # a subtype (UtcTime, an enumeration, a PLC's own type): asyncua walks up to a built-in one
            variant = await client.get_node(node).read_data_type_as_variant_type()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            raise self._failed(exc, f"reading the data type of node {target.text}") from None
        return DEFAULT_TYPE[FIELDS[target.field]] if variant.name == "Variant" else str(variant.name)

    async def _write(self, resolved: list[tuple[Target, ua.NodeId, str]], values: Mapping[str, Any]) -> int | None:
        """The fields but ``record_id`` in one Write request, then ``record_id`` in a second one, then the next
        ``sequence`` alone in a third (where mapped); the sequence written, or ``None``."""
        from asyncua import ua
        from asyncua.ua.attribute_ids import AttributeIds

        first = [item for item in resolved if item[0].field not in (LAST, SEQUENCE, ACK)]
        last = [item for item in resolved if item[0].field == LAST]
        counter = [item for item in resolved if item[0].field == SEQUENCE]
        sequence = None
        if counter:
            top = _SEQUENCE_MAX.get(counter[0][2], _SEQUENCE_DEFAULT_MAX)
            previous = self._sequence or 0
            sequence = previous + 1 if 0 <= previous < top else 1
            values = {**values, SEQUENCE: sequence}
        for batch in (first, last, counter):
            if not batch:
                continue
            params = ua.WriteParameters()
            for target, node, type_name in batch:
                item = ua.WriteValue()
                item.NodeId = node
                item.AttributeId = AttributeIds.Value
                # the value alone, no timestamps: many PLCs refuse a write that sets them (BadWriteNotSupported)
                variant = ua.Variant(_converted(values[target.field], type_name), ua.VariantType[type_name])
                item.Value = _value_only(variant)
                params.NodesToWrite.append(item)
            assert self._client is not None
            try:
                results = await self._client.uaclient.write(params)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                raise self._failed(exc, "the write") from None
            for (target, _, _), status in zip(batch, results, strict=True):
                if not status.is_good():
                    self._resolved = None  # the address space may have changed (a PLC program download)
                    raise self._node_error(target, status, "the write")
        if sequence is not None:
            self._sequence = sequence
        return sequence

    def _node_error(self, target: Target, status: ua.StatusCode, doing: str) -> DeliveryError:
        if status.name in ("BadNodeIdUnknown", "BadNodeIdInvalid"):
            return _NodeError(target.field, f"node {target.text} does not exist on {self.endpoint}")
        refused = RefusedError if status.name in REFUSED_STATUSES else DeliveryError
        return refused(f"node {target.text} on {self.endpoint}: {doing} was refused: {status.name}")

    async def _drop(self) -> None:
        """Close the connection (quietly: it may be dead already) and forget what was read through it."""
        client, self._client, self._resolved, self._sequence = self._client, None, None, None
        if client is not None:
            await self._close_quietly(client)

    async def _close_quietly(self, client: Client) -> None:
        await close_quietly(client, self.timeout_s)

    def _failed(self, exc: Exception, doing: str) -> Exception:
        """A request's failure: the connection's (:class:`_LostError`), or the server's refusal of it."""
        from asyncua.ua.uaerrors import UaStatusCodeError

        if isinstance(exc, UaStatusCodeError) and not any(word in self._why(exc) for word in _CONNECTION_WORDS):
            return DeliveryError(f"{self.endpoint}: {doing} was refused: {self._why(exc)}")
        return _LostError(self._why(exc))

    def _why(self, exc: BaseException) -> str:
        """A failure in words: the status code's name, the socket's reason, or a timeout."""
        return why(exc, self.timeout_s)


def _whole(value: Any) -> int | None:
    """A sequence node's value as a whole number (``None``: not one, e.g. an empty text)."""
    value = getattr(value, "Text", value)  # a LocalizedText's text
    try:
        return int(value.strip()) if isinstance(value, str) else int(value)
    except (TypeError, ValueError, OverflowError):
        return None


def _read_parameters(nodes: list[Any], attribute: Any) -> Any:
    from asyncua import ua

    params = ua.ReadParameters()
    for node in nodes:
        item = ua.ReadValueId()
        item.NodeId = node
        item.AttributeId = attribute
        params.NodesToRead.append(item)
    return params


def _value_only(variant: Any) -> Any:
    """A DataValue with the value and nothing else (older asyncua names its status field StatusCode_)."""
    from asyncua import ua

    names = {field.name for field in dataclasses.fields(ua.DataValue)}
    return ua.DataValue(variant, **{"StatusCode_" if "StatusCode_" in names else "StatusCode": None})


SINKS.add(OpcUaSink.kind, OpcUaSink)
