"""The options of each built-in source and sink as JSON Schema, for ``POST /v1/stations``'s OpenAPI document.

Why: a station's ``source`` and ``sinks`` are free-form tables in the body (each part reads and checks its own table
with :class:`~eagle_iad.station.parts.Options`), so the schema alone told a client nothing of a camera's trigger or a
sink's limits; the console's create form had to retype them or offer only a hot folder. Each entry here takes its
range and choices from the constant the part itself checks against (``EVERY_MS``, ``TRIGGER_KINDS``, ...), and
``tests/test_station_part_options.py`` reads every real part's table through a recording :class:`Options` and
compares what it reads (key, the reader and so the type, required or not, default, range, choices) with this
declaration, so the two cannot drift apart.

The schema goes into the ``x-kinds`` of ``StationBody``'s ``source`` and ``sinks`` (the generated TypeScript client's
``STATION_SOURCES`` and ``STATION_SINKS``). Keywords beyond JSON Schema: ``x-path`` (a server path, relative to the
service's data root), ``x-secret`` (the name of an environment variable starting with ``EAGLE_STATION_``),
``x-default`` (what the part uses when the option is absent, where that is not one fixed value: words),
``x-one-of`` (exactly one of these options), ``x-triggers`` (a camera's trigger choices: the options each shows,
those of them it must be given, ``required``, and the table each writes; ``x-trigger-order``: their order).
"""

from __future__ import annotations

from typing import Any, cast

from pydantic import JsonValue

from eagle_iad.ranges import Range
from eagle_iad.station.parts import ATTEMPTS, BACKOFF_S, SERVICE_SECRET_PREFIX, UNLIMITED
from eagle_iad.station.sinks import mqtt, opcua, webhook
from eagle_iad.station.sources import camera, folder
from eagle_iad.station.sources.opcua_trigger import REQUIRED_OPTIONS as OPCUA_REQUIRED


def _option(
    kind: str,
    description: str,
    default: Any = None,
    limits: Range | None = None,
    choices: tuple[str, ...] | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    entry: dict[str, Any] = {"type": kind, "description": description}
    if default is not None:
        entry["default"] = default
    if limits is not None:
        entry.update(limits.schema())
    if choices is not None:
        entry["enum"] = list(choices)
    entry.update(extra or {})
    return entry


def _path(description: str, default: str | None = None) -> dict[str, Any]:
    return _option(
        "string", f"{description} (a folder or file inside the service's data root)", default, extra={"x-path": True}
    )


def _secret(description: str) -> dict[str, Any]:
    return _option(
        "string",
        f"{description}: the name of an environment variable of the server starting with {SERVICE_SECRET_PREFIX}",
        extra={"x-secret": True},
    )


def _kind(title: str, properties: dict[str, dict[str, Any]], required: list[str], **extra: Any) -> dict[str, Any]:
    # x-order: the order to offer them in (the document's keys are sorted)
    return {
        "title": title,
        "type": "object",
        "properties": properties,
        "required": required,
        "x-order": list(properties),
        **extra,
    }


#: Every sink's options beside its own: its queue's name, which refusals it is sent, and how it retries.
_SINK_COMMON: dict[str, dict[str, Any]] = {
    "name": _option(
        "string",
        "the sink's name (its queue of verdicts is kept under it; needed when two sinks have one kind)",
        extra={"x-default": "its kind"},
    ),
    "max_attempts": _option(
        "integer",
        "tries before a verdict becomes a dead letter (0: until delivered; a refused one after 10 refusals)",
        UNLIMITED,
        ATTEMPTS,
    ),
    "retry_base_s": _option("number", "seconds of the first wait before a retry (doubling from there)", 1.0, BACKOFF_S),
    "retry_max_s": _option("number", "the longest wait between two tries, in seconds", 60.0, BACKOFF_S),
    "refusals": _option("boolean", "also send the images the station could not inspect", True),
}


def schema_extra(kinds: dict[str, dict[str, Any]]) -> dict[str, JsonValue]:
    """The ``json_schema_extra`` of the body's ``source`` or ``sinks``: the kinds, and their order (the document's
    keys are sorted; the console offers them as declared, the usual one first)."""
    return cast(dict[str, JsonValue], {"x-kinds": kinds, "x-kind-order": list(kinds)})


def source_kinds() -> dict[str, dict[str, Any]]:
    """The built-in sources' options (``x-kinds`` of the body's ``source``)."""
    folder_source = _kind(
        "A hot folder",
        {
            "path": _path("the hot folder: each image written into it is inspected once it stopped changing"),
            "settle_s": _option(
                "number", "how long a file must stay unchanged to count as complete, in seconds", 1.0, folder.SETTLE_S
            ),
            "poll_s": _option("number", "seconds between two looks at the folder", 0.2, folder.POLL_S),
            "recursive": _option("boolean", "also take the images of its subfolders (up to 8 levels)", False),
            "after": _option(
                "string",
                "what becomes of an inspected image: moved to done/, or left with a sidecar file",
                "move",
                choices=folder.AFTER,
            ),
            "max_file_mb": _option(
                "number", "refuse a file larger than this many MB (0: no limit)", 0.0, folder.MAX_FILE_MB
            ),
        },
        ["path"],
    )
    opcua_trigger = {
        "trigger_endpoint": _option("string", "the PLC's OPC UA endpoint (opc.tcp://host:4840)"),
        "trigger_node": _option(
            "string",
            "the node whose rising edge (a Boolean) or increase (an integer counter) "
            "takes a frame, e.g. ns=2;s=Line1.PartPresent",
        ),
        "username": _option("string", "the PLC's user name (none: anonymous)"),
        "password_env": _secret("the PLC user's password"),
    }
    camera_source = _kind(
        "A camera, stream or video file",
        {
            "url": _option(
                "string",
                "a stream (rtsp://, http://, https://) or a video file inside the service's data root, read to its end",
            ),
            "device": _option("integer", "a USB camera's index on the server", 0, camera.DEVICE),
            "every_n_frames": _option("integer", "take every N-th frame", 1, camera.EVERY_N_FRAMES),
            "every_ms": _option(
                "number",
                "take a frame every this many milliseconds (of the video's own time for a file)",
                1000.0,
                camera.EVERY_MS,
            ),
            "trigger": _option(
                "string",
                "take a frame on each POST /v1/stations/<name>/trigger (http), or on each signal "
                "of a PLC's node (opcua)",
                choices=camera.TRIGGER_KINDS,
            ),
            **opcua_trigger,
            "reconnect_s": _option(
                "number", "seconds before a dropped stream (or the PLC) is tried again", 5.0, camera.RECONNECT_S
            ),
            "poll_s": _option("number", "seconds between two looks for a frame while none waits", 0.05, camera.POLL_S),
            "name_prefix": _option(
                "string",
                "the saved frames' names start with this (1-64 letters, digits, '_', '.', '-')",
                "frame",
                extra={"pattern": camera.NAME_PREFIX.pattern},
            ),
            "frames": _path("where the frames taken are saved as PNG", "frames"),
        },
        [],
        **{
            "x-one-of": ["url", "device"],
            # the trigger modes (one at most; none: every_ms): what each shows, which of those it must be given
            # (the PLC's endpoint and node; its user may be left out), and the table it writes
            "x-triggers": {
                "every_n_frames": {"options": ["every_n_frames"], "required": [], "table": {}},
                "every_ms": {"options": ["every_ms"], "required": [], "table": {}},
                **{
                    kind: {
                        "options": list(camera.OPCUA_OPTIONS) if kind == camera.OPCUA else [],
                        "required": list(OPCUA_REQUIRED) if kind == camera.OPCUA else [],
                        "table": {"trigger": kind},
                    }
                    for kind in camera.TRIGGER_KINDS
                },
            },
            "x-default-trigger": "every_ms",
            # the choices in the part's order (the document's keys are sorted)
            "x-trigger-order": [*camera.TRIGGERS[:2], *camera.TRIGGER_KINDS],
        },
    )
    return {"folder": folder_source, "camera": camera_source}


def sink_kinds() -> dict[str, dict[str, Any]]:
    """The built-in sinks' options (``x-kinds`` of the body's ``sinks``), each with the options every sink takes."""
    folder_sink = _kind(
        "A folder",
        {
            "path": _path(
                "images copied into normal/, anomalous/, unrecognised/ or undecided/ with their records; "
                "refused images into refused/ with why"
            ),
            "link": _option("boolean", "hard-link the images instead of copying them (one file system)", False),
        },
        ["path"],
    )
    webhook_sink = _kind(
        "A webhook",
        {
            "url": _option(
                "string", "each verdict POSTed as JSON to this http:// or https:// URL, retried until delivered"
            ),
            "secret_env": _secret("the HMAC key that signs each body (X-Eagle-Signature-256)"),
            "timeout_s": _option("number", "seconds one POST may take", 10.0, webhook.TIMEOUT_S),
            "verify_tls": _option("boolean", "verify the https:// server's certificate", True),
            "ca_file": _path("a PEM file of the CA that signed the server's certificate"),
        },
        ["url"],
    )
    mqtt_sink = _kind(
        "An MQTT broker",
        {
            "host": _option("string", "the broker's host name or address (no scheme)"),
            "port": _option(
                "integer", "the broker's port", None, mqtt.PORT, extra={"x-default": "1883, or 8883 with tls"}
            ),
            "tls": _option("boolean", "connect with TLS", False),
            "topic": _option(
                "string",
                "each verdict's topic; placeholders " + ", ".join(f"{{{f}}}" for f in mqtt.VERDICT_FIELDS),
                mqtt.DEFAULT_TOPIC,
            ),
            "status_topic": _option("string", "the station's retained online/offline topic", mqtt.DEFAULT_STATUS_TOPIC),
            "last_topic": _option("string", "the retained last verdict of each category", mqtt.DEFAULT_LAST_TOPIC),
            "qos": _option("integer", "MQTT quality of service", 1, mqtt.QOS),
            "username": _option("string", "the broker's user name"),
            "password_env": _secret("the broker user's password"),
            "ca_file": _path("a PEM file of the CA that signed the broker's certificate (with tls)"),
            "client_id": _option("string", "the MQTT client id (none: one made up by the client)"),
            "protocol": _option("string", "the MQTT protocol version", "5", choices=mqtt.PROTOCOLS),
            "timeout_s": _option("number", "seconds a publication may wait for the broker", 10.0, mqtt.TIMEOUT_S),
        },
        ["host"],
    )
    opcua_sink = _kind(
        "An OPC UA server (a PLC)",
        {
            "endpoint": _option("string", "the server's endpoint (opc.tcp://host:4840)"),
            "nodes": {
                "type": "object",
                "description": "the node id each field is written to (map at least one verdict field; sequence and ack "
                "are the handshake)",
                "properties": {
                    name: {"type": "string", "description": f"{name} ({what})"} for name, what in opcua.FIELDS.items()
                },
                "additionalProperties": False,
            },
            "username": _option("string", "the server's user name (none: anonymous)"),
            "password_env": _secret("the user's password"),
            "timeout_s": _option("number", "seconds a request to the server may take", 10.0, opcua.TIMEOUT_S),
            "ack_timeout_s": _option(
                "number",
                "seconds the PLC is given to write the sequence back to the ack node",
                10.0,
                opcua.ACK_TIMEOUT_S,
            ),
            "min_interval_s": _option(
                "number", "the least time between two verdicts' writes, in seconds", 0.0, opcua.MIN_INTERVAL_S
            ),
        },
        ["endpoint", "nodes"],
    )
    kinds = {"folder": folder_sink, "webhook": webhook_sink, "mqtt": mqtt_sink, "opcua": opcua_sink}
    for entry in kinds.values():
        entry["properties"].update(
            {key: dict(value) for key, value in _SINK_COMMON.items() if key not in entry["properties"]}
        )
        entry["x-order"] = list(entry["properties"])
    return kinds
