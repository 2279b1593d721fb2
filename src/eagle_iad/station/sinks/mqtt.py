"""The MQTT sink: each verdict published as JSON to a broker the line's systems (SCADA, MES, dashboards)
already subscribe to, the last one retained, and the station's presence on a status topic.

Why these topics: a subscriber picks what it wants with MQTT's wildcards, so the default topic
``eagle/{station}/{category}/{decision}`` lets a reject gate listen to ``eagle/+/+/anomalous`` only.
``last_topic`` holds the last verdict *retained*, so a screen that connects late shows it at once;
``status_topic`` is ``online`` (retained) while the sink is connected and ``offline`` once it closed
or, through the broker's last will, once the connection died without a goodbye.

An image the station refused (see :func:`~eagle_iad.station.parts.refusal`) is published on ``topic`` only, with
``{decision}`` as ``refused`` (``eagle/line-1/tire/refused``): never on ``last_topic``, whose retained message stays
the last verdict (a screen must not show a refusal where it shows the last part's decision).

A verdict counts as delivered only when the broker acknowledged both publications (QoS 1: its PUBACK;
under MQTT 5 a PUBACK with a failure reason, such as *not authorized*, is a failed try). Anything else
(not connected, no PUBACK within ``timeout_s``) raises :class:`DeliveryError` and the outbox retries
with its backoff: the record id is the idempotency key (in the payload's ``record.id`` and, under MQTT 5,
the ``Idempotency-Key`` user property), the same on every retry, so a subscriber drops repeats.

The connection is made when the station starts running with the sink (:meth:`MqttSink.station_start`, called by the
runner: a SCADA screen reads the retained ``online`` as the station being at work, so it must not wait for the
first part), in paho's network thread, so a broker that is down neither blocks nor stops the start: its verdicts
wait in the outbox. Not when the sink is merely built (``eagle station status`` reads the same file and must not
connect). paho's thread keeps the connection, reconnecting with waits from ``retry_base_s`` doubling up to
``retry_max_s``; each time it is back, :meth:`MqttSink.when_connected`'s listener (the courier) is told, so the
verdicts that waited go at once instead of at the end of their own, longer backoff. A sink never started (used
alone) connects at its first delivery. A station deleted clears the retained messages it left
(:meth:`MqttSink.station_forget`), so a screen does not show a station that is gone.
When a station starts, :meth:`MqttSink.station_probe` connects once and disconnects (no will, nothing
published): a broker that refuses the credentials or whose certificate fails verification refuses the
station with one line naming the field; one that is down or silent is a warning, and so is one that refuses
the probe's own client id (not checked: :class:`~eagle_iad.station.parts.NotChecked`).
paho-mqtt is an optional dependency (``pip install 'eagle-iad[mqtt]'``), imported when a stations file
names this sink, so the other sinks work without it.
"""

from __future__ import annotations

import contextlib
import json
import math
import secrets
import select
import ssl
import string
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from eagle_iad.ranges import Range
from eagle_iad.station.parts import (
    REFUSED,
    REQUIRED,
    SINKS,
    DeliveryError,
    NotChecked,
    Options,
    RefusedError,
    Retry,
    StationConfigError,
    refusal,
)

if TYPE_CHECKING:
    from paho.mqtt.client import Client, ConnectFlags, DisconnectFlags
    from paho.mqtt.properties import Properties
    from paho.mqtt.reasoncodes import ReasonCode

DEFAULT_TOPIC = "eagle/{station}/{category}/{decision}"
DEFAULT_STATUS_TOPIC = "eagle/{station}/status"
DEFAULT_LAST_TOPIC = "eagle/{station}/last"
#: The placeholders each topic template may use (a verdict's topic may name the record; the status may not).
VERDICT_FIELDS = ("station", "category", "decision", "id")
LAST_FIELDS = ("station", "category")
STATUS_FIELDS = ("station",)
#: The user property (MQTT 5) carrying the record id, named as the webhook's header.
KEY_PROPERTY = "Idempotency-Key"
ONLINE, OFFLINE = "online", "offline"
#: Seconds between keep-alive pings: the broker declares the station gone (and publishes the last
#: will, ``offline``) after 1.5 times this without a packet.
KEEPALIVE_S = 30
#: PUBACK reasons (MQTT 5) that refuse the message itself: implementation specific error, not authorized, topic name
#: invalid, payload format invalid. A dead letter in time (RefusedError); any other failure (unspecified, quota
#: exceeded, packet identifier in use) is retried as a broker that is away is.
REFUSED_REASONS = (0x83, 0x87, 0x90, 0x99)
PORT = Range(1, 65535)
QOS = Range(0, 2)
TIMEOUT_S = Range(0.0, 600.0, low_open=True)
PROTOCOLS = ("5", "3.1.1")
#: CONNACK reason codes (MQTT 5; paho gives MQTT 3.1.1's return codes as these) that are the configuration's
#: fault, and the option that is wrong: any other refusal (the broker busy, unavailable) is only a warning.
REFUSED_FIELD = {132: "protocol", 133: "client_id", 134: "password_env", 135: "password_env"}
#: OpenSSL's codes for a certificate that is valid, but not for the host (62) or address (64) asked for.
_HOST_MISMATCH = (62, 64)


#: The longest client id an MQTT 3.1.1 broker must accept; a strict one rejects longer ids.
STRICT_ID_LENGTH = 23


def _id_length(client_id: str) -> str:
    """`` (25 characters: an MQTT 3.1.1 broker may accept only 23)`` for an id past that, else nothing."""
    if len(client_id) <= STRICT_ID_LENGTH:
        return ""
    return f" ({len(client_id)} characters: an MQTT 3.1.1 broker may accept only {STRICT_ID_LENGTH})"


def _template(options: Options, key: str, default: str, allowed: tuple[str, ...]) -> str:
    """A topic template read and checked now, so a typo is a start-up error and not a failed delivery."""
    text: str = options.text(key, default)
    shown = ", ".join(f"{{{name}}}" for name in allowed)
    try:
        names = [name for _, name, _, _ in string.Formatter().parse(text) if name is not None]
    except ValueError as exc:
        raise options.error(key, f"{text!r} is not a topic template ({exc}); placeholders are {shown}") from None
    for name in names:
        if name not in allowed:
            raise options.error(key, f"{text!r} has the unknown placeholder {{{name}}}; use {shown}")
    try:
        sample = text.format(**dict.fromkeys(allowed, "x"))
    except (ValueError, TypeError) as exc:
        raise options.error(key, f"{text!r} is not a topic template ({exc})") from None
    if "+" in sample or "#" in sample or "\0" in sample:
        raise options.error(key, f"{text!r} has a wildcard (+ or #): a message is published to one topic")
    if sample.startswith("$"):
        raise options.error(key, f"{text!r} starts with '$', which brokers keep for themselves")
    return text


class MqttSink:
    """A :class:`~eagle_iad.station.parts.Sink` publishing to an MQTT broker (paho-mqtt's client).

    Locks: :attr:`_lock` (the client, its start and close), :attr:`_fence` (the delete's fence, each publication it
    guards, and :attr:`_retained`) and :attr:`_changed` (what paho's thread says of the connection). One order:
    :attr:`_lock` may be held while :attr:`_changed` is taken (a first connection waits for its answer), never
    while :attr:`_fence` is, and nothing of the sink is taken while :attr:`_fence` or :attr:`_changed` is held
    (paho's own locks aside, inside ``publish``). paho's network thread takes :attr:`_fence` and :attr:`_changed`,
    never :attr:`_lock`, and no lock of the sink is held while waiting for that thread to end (:meth:`close`): a
    courier holding the fence while :meth:`close` held :attr:`_lock` in ``loop_stop`` and paho's thread waited for
    the fence in :meth:`_on_connect` (a reconnection) hung a station's stop or delete for good.
    """

    kind: ClassVar[str] = "mqtt"
    takes_refusals: ClassVar[bool] = True

    def __init__(self, options: Options, name: str) -> None:
        self.name = name
        self.where = options.where
        try:
            import paho.mqtt.client  # noqa: F401  (checked now: a missing package is a start-up error)
        except ImportError:
            raise options.error("kind", "mqtt needs the paho-mqtt package: pip install 'eagle-iad[mqtt]'") from None
        self.host: str = options.text("host", REQUIRED)
        if "://" in self.host or "/" in self.host or any(c.isspace() for c in self.host):
            raise options.error("host", f"{self.host!r} is not a host name or address (no scheme, no path)")
        self.tls = options.flag("tls", False)
        self.port = options.integer("port", 8883 if self.tls else 1883, PORT)
        self.topic = _template(options, "topic", DEFAULT_TOPIC, VERDICT_FIELDS)
        self.status_topic = _template(options, "status_topic", DEFAULT_STATUS_TOPIC, STATUS_FIELDS)
        self.last_topic = _template(options, "last_topic", DEFAULT_LAST_TOPIC, LAST_FIELDS)
        self.qos = options.integer("qos", 1, QOS)
        self.username: str | None = options.text("username")
        if self.username is None and options.table.get("password_env") is not None:
            raise options.error("password_env", "needs username (MQTT sends a password only with a user name)")
        self.password: str | None = options.secret("password_env")
        self._password_env: str | None = options.table.get("password_env")
        ca_file = options.path("ca_file")
        if ca_file is not None and not self.tls:
            raise options.error("ca_file", "needs tls = true")
        if ca_file is not None and not ca_file.is_file():
            raise options.error("ca_file", f"{ca_file} is not a file")
        self.client_id: str | None = options.text("client_id")
        self.protocol: str = options.text("protocol", "5", choices=PROTOCOLS)
        self.timeout_s = options.number("timeout_s", 10.0, TIMEOUT_S)
        retry = Retry.read(options)
        self.max_attempts = retry.max_attempts
        #: paho's reconnection waits follow the outbox's backoff (whole seconds, at least one).
        self._reconnect_s = (max(1, math.ceil(retry.base_s)), max(1, math.ceil(retry.max_s)))
        self._context: ssl.SSLContext | None = None
        if self.tls:
            self._context = options.tls_context("ca_file", ca_file)
        self._lock = threading.Lock()
        self._changed = threading.Condition()
        self._client: Client | None = None
        self._running = False  # paho's network thread started (at start, or after the first connection)
        self._closed = False
        self._station = ""
        #: The station's category (:meth:`station_start`): the ``last_topic`` to clear when it is deleted, if no verdict
        #: went there in this run.
        self._category: str | None = None
        #: The retained topics published in this run (``last_topic`` by category), cleared by :meth:`station_forget`.
        #: Under :attr:`_fence` (added where it is published, read where the clearing is queued).
        self._retained: set[str] = set()
        #: Told (in paho's thread) each time the connection is made: the courier, which then tries its queue at once.
        self._listener: Callable[[], None] | None = None
        #: :meth:`station_forget` cleared the retained status: :meth:`close` says no ``offline`` after it.
        self._forgotten = False
        #: :meth:`station_forget` began: nothing of this station is published any more (a courier's try still in
        #: flight past the stop's grace, a reconnection's ``online``), or it would land after the clearing and be
        #: retained for good. Set and read under :attr:`_fence`, which is held across each publication it guards, so
        #: a publication either is queued before the clearing (which the broker then applies after it) or not at all.
        #: Its own lock, not :attr:`_lock`: paho's thread takes it (:meth:`_on_connect`); see "Locks" in the class.
        self._fenced = False
        self._fence = threading.Lock()
        #: Set by paho's thread: connected now, why not (a refused CONNACK, a lost connection), and each
        #: acknowledged message's reason code by message id (a failure code is a refused publication).
        self._up = False
        self._problem: str | None = None
        self._acks: dict[int, ReasonCode] = {}

    @property
    def delivery_bound_s(self) -> float:
        """About the most one delivery waits by its options (the connection, the publication's acknowledgement and
        the status message's, each up to ``timeout_s``): past it, the station's watch says so (overdue.py)."""
        return 3 * self.timeout_s

    def describe(self) -> str:
        security = "TLS" if self.tls else "plain"
        user = f", user {self.username}" if self.username else ""
        return (f"mqtt {self.host}:{self.port} {self.topic} (QoS {self.qos}, MQTT {self.protocol}, {security}{user}; "
                f"last on {self.last_topic}, status on {self.status_topic})")  # fmt: skip

    def deliver(self, payload: Mapping[str, Any], key: str) -> None:
        from paho.mqtt.client import MQTT_ERR_SUCCESS, error_string

        station = str(payload["station"])
        refused_image = refusal(payload)
        record = payload["record"] if refused_image is None else refused_image
        fields = {
            "station": station,
            "category": str(record.get("category")),
            "decision": REFUSED if refused_image is not None else str(record.get("decision") or "undecided"),
            "id": key,
        }
        topic = self.topic.format(**fields)
        last = self.last_topic.format(**fields)
        client = self._connected(station)
        body = json.dumps(payload).encode("utf-8")
        properties = self._properties(key)
        with self._fence:
            if self._fenced:  # the station was deleted while this try was under way: see station_forget
                raise DeliveryError(f"{self._broker()}: the station was deleted; {topic} not published")
            sent = [(topic, client.publish(topic, body, qos=self.qos, retain=False, properties=properties))]
            if refused_image is None:  # a refusal is no verdict: the retained last verdict stays the last verdict
                self._retained.add(last)  # under the fence alone: never _lock inside it (see "Locks")
                sent.append((last, client.publish(last, body, qos=self.qos, retain=True, properties=properties)))
        deadline = time.monotonic() + self.timeout_s
        for where, info in sent:
            if info.rc != MQTT_ERR_SUCCESS:
                raise DeliveryError(f"{self._broker()}: {where} not sent ({error_string(info.rc)})")
            try:
                info.wait_for_publish(max(0.0, deadline - time.monotonic()))
            except (RuntimeError, ValueError) as exc:
                raise DeliveryError(f"{self._broker()}: {where} not sent ({exc})") from None
            if not info.is_published():
                raise DeliveryError(f"{self._broker()}: no acknowledgement for {where} within {self.timeout_s:g} s")
            with self._changed:
                reason = self._acks.pop(info.mid, None)
            if reason is not None and reason.is_failure:
                refused = RefusedError if reason.value in REFUSED_REASONS else DeliveryError
                raise refused(f"{self._broker()}: the broker refused {where}: {reason}")

    def station_probe(self) -> str | None:
        """Connect once, as the sink will, and disconnect: why the broker is unreachable now, or None.

        Runs in the caller's thread (paho's loop driven by hand, no network thread) within ``timeout_s`` for
        the connection and ``timeout_s`` for the CONNACK; with a client id of its own (:meth:`_probe_id`: a
        probe while the station runs, at a ``PATCH``, or on another replica, must not push the live connection
        off), no will set and nothing published, so the status topic is untouched. Credentials the broker refuses,
        a protocol it rejects, or a certificate that fails verification raise :class:`StationConfigError` naming
        the field. A client id it rejects is the probe's own, which says nothing of the sink's; so is *not
        authorized* or *bad user name or password* with ``client_id`` set, as a broker that admits only that id
        (mosquitto's dynamic security binds a user to one) answers the probe's id so too. Both raise
        :class:`NotChecked` with a second look as the sink itself (:meth:`_recheck`), which the station makes
        where no live connection of the sink can be pushed off by it.
        """
        return self._look(self._probe_id(), as_sink=False)

    def _look(self, client_id: str, *, as_sink: bool) -> str | None:
        """:meth:`station_probe` connecting as ``client_id``: the probe's own id, or the sink's (``as_sink``: its
        answer is the sink's, so a refused id or credentials is the configuration's; a clean session, no will)."""
        from paho.mqtt.client import MQTT_ERR_SUCCESS, Client, MQTTv5, MQTTv311
        from paho.mqtt.enums import CallbackAPIVersion

        client = Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=MQTTv5 if self.protocol == "5" else MQTTv311
        )
        client.connect_timeout = self.timeout_s
        if self.username is not None:
            client.username_pw_set(self.username, self.password)
        if self._context is not None:
            client.tls_set_context(self._context)
        answers: list[ReasonCode] = []
        client.on_connect = lambda client, userdata, flags, reason, properties: answers.append(reason)
        try:
            try:
                client.connect(self.host, self.port, keepalive=KEEPALIVE_S)
            except ssl.SSLCertVerificationError as exc:
                raise self._certificate_error(exc) from None
            except TimeoutError:
                return f"{self._broker()}: no answer within {self.timeout_s:g} s"
            except OSError as exc:  # refused, unreachable, no such host, a TLS handshake that failed
                return f"{self._broker()}: {getattr(exc, 'strerror', None) or exc}"
            deadline = time.monotonic() + self.timeout_s
            while not answers:
                sock, left = client.socket(), deadline - time.monotonic()
                if sock is None:
                    return f"{self._broker()}: the connection closed before the broker answered"
                if left <= 0:
                    return f"{self._broker()}: no answer to CONNECT within {self.timeout_s:g} s"
                writing = [sock] if client.want_write() else []
                readable, writable, _ = select.select([sock], writing, [], left)
                rc = client.loop_read() if readable else MQTT_ERR_SUCCESS
                if rc == MQTT_ERR_SUCCESS and writable:
                    rc = client.loop_write()
                if rc != MQTT_ERR_SUCCESS and not answers:
                    return f"{self._broker()}: the connection closed before the broker answered"
            reason = answers[0]
            if not reason.is_failure:
                client.disconnect()  # written at once (no network thread), then the socket is closed
                return None
            key = REFUSED_FIELD.get(reason.value)
            if not as_sink and (key == "client_id" or (key == "password_env" and self.client_id is not None)):
                why = self._not_checked(client_id, str(reason), key == "client_id")
                raise NotChecked(why, lambda live: self._recheck(live, why))
            if key == "client_id":  # the sink's own id: it would be refused alike at every connection
                raise StationConfigError(f"{self.where}: client_id: {self._broker()} rejected the client id "
                                         f"{client_id}{_id_length(client_id)}: {reason}")  # fmt: skip
            if key == "password_env" and self.password is None:
                key = "username"
            if key is None:
                return f"{self._broker()}: the broker refused the connection: {reason}"
            if key == "password_env":
                what, hint = f"the user {self.username}", f" (check username, and the password in {self._password_env})"
            elif key == "username":
                what, hint = "an anonymous connection", " (set username and password_env)"
            else:
                what, hint = "the connection", ""
            raise StationConfigError(f"{self.where}: {key}: {self._broker()} refused {what}: {reason}{hint}")
        finally:
            sock = client.socket()
            if sock is not None:
                sock.close()

    def _not_checked(self, probe_id: str, reason: str, id_refused: bool) -> str:
        """Why the probe says nothing of the sink: the broker refused the probe's own client id (``id_refused``), or
        refused it in words that may mean its id or the credentials."""
        if id_refused:
            sink_id = self._sink_id()
            alike = (f"; the sink's own id {sink_id}{_id_length(sink_id)} may be rejected alike"
                     if len(sink_id) > STRICT_ID_LENGTH else "")  # fmt: skip
            return (f"{self._broker()} rejected the check's own client id {probe_id}{_id_length(probe_id)} "
                    f"({reason}){alike}")  # fmt: skip
        return (f"{self._broker()} refused the check, connecting as {probe_id} ({reason}): the credentials, or a "
                f"broker that admits only client_id {self.client_id}, which refuses any other id alike (a check "
                "under that id would push the live connection off)")  # fmt: skip

    def _recheck(self, live: Sequence[Any] | None, why: str) -> str | None:
        """The second look of a :class:`NotChecked` probe, as the sink itself: where ``live`` (the sinks of a run of
        this station live now; ``None``: not known, another replica's) has none connected to this broker under the
        sink's id, a connection as that id is the sink's answer. Otherwise such a look would push the live
        connection off (its retained ``offline``, a PUBACK in flight lost): unchanged credentials stay not checked
        (the live connection has them), changed ones are refused, as they cannot be checked."""
        sink_id = self._sink_id()
        if live is None:
            raise NotChecked(why)
        same = next((sink for sink in live if isinstance(sink, MqttSink) and sink._identity() == self._identity()),
                    None)  # fmt: skip
        if same is None:
            return self._look(sink_id, as_sink=True)
        if (same.username, same.password) == (self.username, self.password):
            raise NotChecked(f"{why}; the credentials are unchanged, and a check as {sink_id} would push the live "
                             "connection off")  # fmt: skip
        key = "username" if same.username != self.username else "password_env"
        raise StationConfigError(f"{self.where}: {key}: the changed credentials cannot be checked while the station is "
                                 f"connected as {sink_id}, since {why}: delete the station and create it again with "
                                 f"them, which checks them as {sink_id}")  # fmt: skip

    def _identity(self) -> tuple[str, int, str]:
        """What a connection of this sink is known by: the broker and its client id (one live connection each)."""
        return self.host, self.port, self._sink_id()

    def _sink_id(self) -> str:
        """The client id the sink connects with (:meth:`_new_client`)."""
        return self.client_id or f"eagle-station-{self._probe_station}-{self.name}"

    def _probe_id(self) -> str:
        """The probe's client id: its own (``<the sink's client id>-probe-<random hex>``), never the live
        connection's, which a broker would take over: it would drop the live client (publishing its retained
        last will, ``offline``, then ``online`` again) and lose a PUBACK in flight (a verdict sent twice)."""
        return f"{self._sink_id()}-probe-{secrets.token_hex(4)}"

    @property
    def _probe_station(self) -> str:
        """The station's name as the client id's default needs it (``<file>: station 'line-1': sink 1 ...``)."""
        _, _, rest = self.where.rpartition("station '")  # a station name has no quote; a file's path might
        return rest.partition("'")[0] or "station"

    def _certificate_error(self, exc: ssl.SSLCertVerificationError) -> StationConfigError:
        reason = str(exc.verify_message or exc.reason or exc).rstrip(".")
        if exc.verify_code in _HOST_MISMATCH:
            return StationConfigError(f"{self.where}: host {self.host}: the broker's TLS certificate is not for "
                                      f"this host ({reason})")  # fmt: skip
        return StationConfigError(f"{self.where}: ca_file: the TLS certificate of {self._broker()} failed "
                                  f"verification ({reason}); name the CA that signed it in ca_file")  # fmt: skip

    def station_start(self, station: str, category: str) -> None:
        """Connect now, in paho's network thread, and say ``online`` once connected (see :meth:`_on_connect`).

        Called by the runner when the station starts running with this sink (a start, a restart of the service, a
        ``PATCH`` that restarts it, once the old run's sinks are closed): a screen showing the retained status must
        read ``online`` while the station works, not ``offline`` until the next part. Returns at once: paho connects
        and, while the broker is down or refuses, retries with the reconnection waits, so the start is never held up
        (the start-up probe has already warned). A delivery meanwhile waits up to ``timeout_s`` for the first answer.
        """
        with self._lock:
            if self._closed:
                return
            self._station, self._category = station, category  # what a delete clears, whoever connected first
            if self._running:  # paho's thread runs already (a delivery connected first): it reconnects and wakes
                return
            # a client whose first connection, made by a delivery, failed before paho's thread started, is started
            # here: else it never reconnects by itself, says no ``online`` and wakes no courier when the broker is back
            client = self._client = self._client if self._client is not None else self._new_client(station)
            client.connect_async(self.host, self.port, keepalive=KEEPALIVE_S)  # no network here: in paho's thread
            client.loop_start()
            self._running = True

    def when_connected(self, listener: Callable[[], None] | None) -> None:
        """Call ``listener`` (in paho's thread; it must not block) each time the connection is made: the courier,
        woken, tries the head of its queue at once rather than at the end of its backoff, which can be much longer
        than paho's reconnection wait (``retry_max_s``, jittered, against paho's wait from one second up)."""
        with self._changed:
            self._listener = listener

    def station_forget(self) -> None:
        """The station is deleted: clear the retained messages this sink left on the broker, where it is reachable.

        Publishes an empty retained payload (which deletes a retained message) on the status topic and on each
        ``last_topic`` used (the station's category, and any other a verdict of this run went to), waiting up to
        ``timeout_s`` for each acknowledgement, so a screen subscribing later does not show a station that is gone
        as ``offline`` with its last part. Not done at a stop or a ``PATCH``: those keep the station. A sink not
        connected now (the broker down, or a connection still being made past ``timeout_s``) leaves them as they
        are. :meth:`close` then disconnects without ``offline`` (the status is cleared, and a clean goodbye fires no
        last will).

        First, the sink is fenced off (:attr:`_fenced`): a courier's try still in flight (a station stopped past its
        grace is deleted all the same) publishes nothing more, nor does a reconnection before :meth:`close` say
        ``online``; either would otherwise land after the clearing and stay retained. A connection lost after the
        clearing fires its will (``offline``, retained): the reconnection clears the status again, and carries no
        will of its own.
        """
        with self._fence:
            self._fenced = True
        with self._lock:
            client = self._client
            if client is None or self._closed:
                return
            topics = {self._status()}
            if self._category is not None:
                topics.add(self.last_topic.format(station=self._station, category=self._category))
        if not self._wait_first_answer():
            return
        with self._fence:  # what was published before the fence is queued ahead of these: the clearing lands last
            topics |= self._retained  # complete: no try adds to it once fenced
            client.will_clear()  # a reconnection before the close leaves no will (offline) to fire
            sent = [client.publish(topic, b"", qos=1, retain=True) for topic in sorted(topics)]
            self._forgotten = True
        deadline = time.monotonic() + self.timeout_s
        for info in sent:
            with contextlib.suppress(RuntimeError, ValueError):  # lost meanwhile: nothing more to do
                info.wait_for_publish(max(0.0, deadline - time.monotonic()))

    def close(self) -> None:
        """Say ``offline`` (retained) and disconnect cleanly; a clean goodbye does not fire the last will.

        Closed under :attr:`_lock` (no delivery or start takes the client after), then the goodbye and paho's
        thread's end waited for with no lock of the sink held: that thread takes :attr:`_fence` and
        :attr:`_changed` (a reconnection's ``online``), and a courier's try may hold :attr:`_fence` meanwhile.
        Closed once: a second call (a stop, then a delete) finds it done."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            client, running = self._client, self._running
        if client is None:
            return
        with self._fence:
            forgotten = self._forgotten
        with self._changed:
            up = self._up
        if up and not forgotten:
            info = client.publish(self._status(), OFFLINE, qos=1, retain=True)
            with contextlib.suppress(RuntimeError, ValueError):  # gone: the last will says the same
                info.wait_for_publish(self.timeout_s)
        client.disconnect()
        if running:
            client.loop_stop()

    # ------------------------------------------------------------------ the connection

    def _broker(self) -> str:
        return f"mqtt {self.host}:{self.port}"

    def _status(self) -> str:
        return self.status_topic.format(station=self._station)

    def _properties(self, key: str) -> Properties | None:
        if self.protocol != "5":
            return None
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        properties.PayloadFormatIndicator = 1  # UTF-8 text
        properties.ContentType = "application/json"
        properties.UserProperty = [(KEY_PROPERTY, key)]
        return properties

    def _connected(self, station: str) -> Client:
        """The client, connected; the first call connects (and starts paho's thread, which reconnects)."""
        with self._lock:
            if self._closed:
                raise DeliveryError(f"{self._broker()}: the sink is closing")
            if self._client is None:
                self._station = station
                self._client = self._new_client(station)
            client = self._client
            if not self._running:
                self._first_connection(client)
        self._wait_first_answer()
        with self._changed:
            if not self._up:
                why = self._problem or "not connected"
                raise DeliveryError(f"{self._broker()}: {why}; reconnecting in the background")
        return client

    def _wait_first_answer(self) -> bool:
        """Whether connected, after waiting up to ``timeout_s`` while the first connection (:meth:`station_start`'s, in
        paho's thread) has no answer yet: a delivery just after the start is not a failed try for that alone (a
        warning in the log, and a backoff). A connection lost, or refused, is not waited for."""
        deadline = time.monotonic() + self.timeout_s
        with self._changed:
            while not self._up and self._problem is None and time.monotonic() < deadline:
                self._changed.wait(max(0.0, deadline - time.monotonic()))
            return self._up

    def _first_connection(self, client: Client) -> None:
        """Connect in the courier's thread, so a refused or unresolvable broker is this try's error."""
        try:
            client.connect(self.host, self.port, keepalive=KEEPALIVE_S)
        except OSError as exc:  # refused, unreachable, no such host, TLS certificate rejected
            raise DeliveryError(f"{self._broker()}: {getattr(exc, 'strerror', None) or exc}") from None
        client.loop_start()
        self._running = True
        deadline = time.monotonic() + self.timeout_s
        with self._changed:
            while not self._up and self._problem is None and time.monotonic() < deadline:
                self._changed.wait(max(0.0, deadline - time.monotonic()))
            if not self._up and self._problem is None:
                self._problem = f"no answer to CONNECT within {self.timeout_s:g} s"

    def _new_client(self, station: str) -> Client:
        from paho.mqtt.client import Client, MQTTv5, MQTTv311
        from paho.mqtt.enums import CallbackAPIVersion

        client = Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id or f"eagle-station-{station}-{self.name}",
            protocol=MQTTv5 if self.protocol == "5" else MQTTv311,
        )
        client.connect_timeout = self.timeout_s
        client.reconnect_delay_set(*self._reconnect_s)
        if self.username is not None:
            client.username_pw_set(self.username, self.password)
        if self._context is not None:
            client.tls_set_context(self._context)
        client.will_set(self.status_topic.format(station=station), OFFLINE, qos=1, retain=True)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        return client

    # paho's network thread calls these.

    def _on_connect(
        self, client: Client, userdata: Any, flags: ConnectFlags, reason: ReasonCode, properties: Properties | None
    ) -> None:
        if not reason.is_failure:
            with self._fence:
                if not self._fenced:
                    client.publish(self._status(), ONLINE, qos=1, retain=True)
                elif self._forgotten:  # deleted, and cleared: the connection lost since fired its will, offline,
                    client.publish(self._status(), b"", qos=1, retain=True)  # retained; cleared again
        with self._changed:
            self._up = not reason.is_failure
            self._problem = None if self._up else f"the broker refused the connection: {reason}"
            self._changed.notify_all()
            listener = self._listener if self._up else None
        if listener is not None:
            listener()

    def _on_connect_fail(self, client: Client, userdata: Any) -> None:
        """paho's thread could not connect (refused, unreachable, no such host): why, for the next delivery's error.
        paho calls this inside its ``except OSError``, so the error is the exception being handled."""
        exc = sys.exception()
        why = (getattr(exc, "strerror", None) or str(exc)) if isinstance(exc, OSError) else "could not connect"
        with self._changed:
            self._up = False
            self._problem = why
            self._changed.notify_all()

    def _on_disconnect(
        self, client: Client, userdata: Any, flags: DisconnectFlags, reason: ReasonCode, properties: Properties | None
    ) -> None:
        with self._changed:
            self._up = False
            # 128 (unspecified) is paho's word for a connection that dropped; a broker's own reason is worth showing
            self._problem = "connection lost" + ("" if reason.value == 128 else f" ({reason})")
            self._changed.notify_all()

    def _on_publish(
        self, client: Client, userdata: Any, mid: int, reason: ReasonCode, properties: Properties | None
    ) -> None:
        with self._changed:
            self._acks[mid] = reason


SINKS.add(MqttSink.kind, MqttSink)
