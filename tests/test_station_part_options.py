"""The declared options of each source and sink (``station/part_options.py``: the OpenAPI document's ``x-kinds``, the
console's create form) are the ones the real parts read: same keys, types (the reader each key is read with: a
declared integer read as a number, a path read as plain text, is drift), required keys, defaults (``x-default``'s words
too), ranges and choices (both ways).

Why read through the parts rather than compare with constants: a part's default lives in its constructor
(``options.number("every_ms", 1000.0, EVERY_MS)``); a recording :class:`Options` sees exactly what the service reads
when it creates a station (``station_from_table``, as ``POST /v1/stations`` does), so a default or range changed in a
part and not in the declaration fails here, not in the console's form in front of a user.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from eagle_iad.ranges import Range
from eagle_iad.station.config import station_from_table
from eagle_iad.station.part_options import sink_kinds, source_kinds
from eagle_iad.station.parts import REQUIRED, Options

cv2 = pytest.importorskip("cv2")
pytest.importorskip("asyncua")
pytest.importorskip("paho.mqtt")


#: The JSON Schema type each reader of :class:`Options` declares (``table``: ``_get`` of a table, ``nodes``).
READER_TYPES = {
    "text": "string", "path": "string", "secret": "string", "number": "number", "integer": "integer",
    "flag": "boolean", "table": "object",
}  # fmt: skip


def declared_reader(entry: dict[str, Any]) -> str:
    """The :class:`Options` reader a declared option promises (what the console's form offers for it): a server
    path (``x-path``) and a secret's variable name (``x-secret``) are strings read by their own readers."""
    if entry["type"] == "string":
        return "path" if entry.get("x-path") else "secret" if entry.get("x-secret") else "text"
    return {"number": "number", "integer": "integer", "boolean": "flag", "object": "table"}[entry["type"]]


class Recording(Options):
    """:class:`Options` that records, for each key a part reads, the readers it was read with (the outermost:
    ``path`` reads through ``text``), its default, range and choices."""

    def __init__(self, *args: Any, parts: list[Recording] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.parts = parts if parts is not None else []
        self.parts.append(self)
        self.reads: dict[str, dict[str, Any]] = {}
        self._depth = 0  # inside a reader: a nested reader's call is not the part's

    def nested(self, table: Any, where: str) -> Options:
        return Recording(table, where, self.base, self.root, self.no_paths, looking=self.looking, parts=self.parts)

    @contextmanager
    def _reading(self, key: str, reader: str) -> Iterator[dict[str, Any]]:
        read = self.reads.setdefault(key, {})
        if self._depth == 0:
            read.setdefault("readers", []).append(reader)
        self._depth += 1
        try:
            yield read
        finally:
            self._depth -= 1

    def _get(self, key: str, default: Any, kinds: tuple[type, ...], what: str) -> Any:
        with self._reading(key, "table") as read:  # a part's own _get: a table (the OPC UA sink's nodes)
            read["default"] = default
            return super()._get(key, default, kinds, what)

    def number(self, key: str, default: float, limits: Range) -> float:
        with self._reading(key, "number") as read:
            read["limits"] = limits
            return super().number(key, default, limits)

    def integer(self, key: str, default: int, limits: Range) -> int:
        with self._reading(key, "integer") as read:
            read["limits"] = limits
            return super().integer(key, default, limits)

    def text(self, key: str, default: Any = None, choices: tuple[str, ...] = ()) -> Any:
        with self._reading(key, "text") as read:
            if choices:
                read["choices"] = list(choices)
            return super().text(key, default, choices)

    def flag(self, key: str, default: bool) -> bool:
        with self._reading(key, "flag"):
            return super().flag(key, default)

    def path(self, key: str, default: Any = None) -> Any:
        with self._reading(key, "path"):
            return super().path(key, default)

    def secret(self, key: str) -> str | None:
        with self._reading(key, "secret"):
            return super().secret(key)


def _video(path: Path) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (32, 32))
    import numpy as np

    for _ in range(3):
        writer.write(np.zeros((32, 32, 3), dtype=np.uint8))
    writer.release()
    return path


def _read(root: Path, source: dict[str, Any], sinks: list[dict[str, Any]]) -> list[Recording]:
    """Every part's reads of one station body, created as the service creates one (inside its data root)."""
    table = {"name": "line-1", "category": "mono", "source": source, "sink": sinks}
    top = Recording(table, "station", root, root)
    station_from_table(top, root / "models", fitted=False)
    return top.parts[1:]  # the station's own table first


def _described(default: Any, kind: str, words: str) -> bool:
    """Whether an ``x-default``'s words (``"1883, or 8883 with tls"``, ``"its kind"``) name the default read."""
    text = words.replace("its kind", kind)
    return re.search(rf"(?<![\w.]){re.escape(str(default))}(?![\w.])", text) is not None


def _trigger(declared: dict[str, Any], table: dict[str, Any]) -> str | None:
    """The trigger choice (a key of the kind's ``x-triggers``) a part's ``table`` makes, as the part reads it: its
    ``trigger``, else every_n_frames where given, else the declared default; None for a kind without triggers."""
    if "x-triggers" not in declared:
        return None
    if "trigger" in table:
        return str(table["trigger"])
    return "every_n_frames" if "every_n_frames" in table else str(declared["x-default-trigger"])


def _compare(kind: str, declared: dict[str, Any], reads: dict[str, dict[str, Any]], table: dict[str, Any]) -> list[str]:
    """What the declaration of ``kind`` says otherwise than its part, given ``table``, read (empty: nothing)."""
    wrong: list[str] = []
    properties, required = declared["properties"], list(declared["required"])
    # a trigger's options are read only with that trigger, and those it declares required (a camera's
    # trigger_node with trigger "opcua") are read without a default there: the form marks them
    trigger = _trigger(declared, table)
    if trigger is not None:
        mode = declared["x-triggers"][trigger]
        needed = mode.get("required", [])  # none declared: each option read without a default is a drift
        wrong += [f"{kind}.{key}: required by trigger {trigger}, not among its options"
                  for key in needed if key not in mode["options"]]  # fmt: skip
        wrong += [f"{kind}.{key}: required by trigger {trigger}, not read" for key in needed if key not in reads]
        required += needed
    wrong += [f"{kind}.{key}: required, not declared" for key in required if key not in properties]
    for key, read in reads.items():
        if key == "kind":
            continue
        entry = properties.get(key)
        if entry is None:
            wrong.append(f"{kind}.{key}: read by the part, not declared")
            continue
        readers, promised = read["readers"], declared_reader(entry)
        if promised not in readers or any(READER_TYPES[reader] != entry["type"] for reader in readers):
            wrong.append(f"{kind}.{key}: {entry['type']} ({promised}) declared, read as {readers}")
        default = read.get("default")
        if (default is REQUIRED) != (key in required):
            said, how = ("required", "with") if key in required else ("optional", "without")
            wrong.append(f"{kind}.{key}: {said} declared, read {how} a default")
        if default is REQUIRED:
            pass
        elif "x-default" in entry:
            if "default" in entry:
                wrong.append(f"{kind}.{key}: both default {entry['default']!r} and x-default declared")
            if not _described(default, kind, entry["x-default"]):
                wrong.append(f"{kind}.{key}: x-default {entry['x-default']!r} declared, {default!r} read")
        elif entry.get("default") != default:
            wrong.append(f"{kind}.{key}: default {entry.get('default')!r} declared, {default!r} read")
        if "limits" in read:
            bounds = {name: entry[name] for name in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")
                      if name in entry}  # fmt: skip
            if bounds != read["limits"].schema():
                wrong.append(f"{kind}.{key}: range {bounds} declared, {read['limits'].schema()} read")
        if entry.get("enum") != read.get("choices"):
            wrong.append(f"{kind}.{key}: choices {entry.get('enum')} declared, {read.get('choices')} read")
    return wrong


def test_each_declared_option_is_what_its_part_reads(tmp_path: Path) -> None:
    (tmp_path / "hot").mkdir()
    (tmp_path / "sorted").mkdir()
    video = str(_video(tmp_path / "clip.avi").relative_to(tmp_path))
    plc = {"trigger": "opcua", "trigger_endpoint": "opc.tcp://127.0.0.1:4840", "trigger_node": "ns=2;s=Part"}
    sources = [
        {"kind": "folder", "path": "hot"},
        {"kind": "camera", "url": video},
        {"kind": "camera", "url": video, "every_n_frames": 2},
        {"kind": "camera", "device": 0, "trigger": "http"},
        {"kind": "camera", "url": video, **plc},
    ]
    sinks = [
        {"kind": "folder", "path": "sorted"},
        {"kind": "webhook", "url": "http://127.0.0.1:9/verdicts"},
        {"kind": "mqtt", "host": "127.0.0.1"},
        {"kind": "opcua", "endpoint": "opc.tcp://127.0.0.1:4840", "nodes": {"decision": "ns=2;s=Decision"}},
    ]
    declared_sources, declared_sinks = source_kinds(), sink_kinds()
    seen: dict[str, set[str]] = {}
    wrong: list[str] = []
    for source in sources:
        # the second station's sink: an MQTT sink with tls, whose port's default is the other one its x-default says
        tls = [{"kind": "mqtt", "host": "127.0.0.1", "tls": True}]
        parts = _read(tmp_path, source, sinks if source is sources[0] else tls if source is sources[1] else [])
        for part in parts:
            kind = part.table["kind"]
            declared = (declared_sources if part is parts[0] else declared_sinks)[kind]
            wrong += _compare(kind, declared, part.reads, part.table)
            seen.setdefault(("source:" if part is parts[0] else "sink:") + kind, set()).update(part.reads)
    assert sorted(set(wrong)) == []
    # and nothing is declared that no part reads (an option the form would offer, refused by the service)
    for prefix, declared in (("source:", declared_sources), ("sink:", declared_sinks)):
        for kind, entry in declared.items():
            assert sorted(set(entry["properties"]) - seen[prefix + kind]) == [], kind
    assert list(declared_sources) == ["folder", "camera"]
    assert list(declared_sinks) == ["folder", "webhook", "mqtt", "opcua"]


def test_the_openapi_document_carries_them_for_the_console() -> None:
    from eagle_iad.station.routes import StationBody

    schema = StationBody.model_json_schema()["properties"]
    assert schema["source"]["x-kinds"] == source_kinds()
    assert schema["source"]["x-kind-order"] == ["folder", "camera"]
    assert schema["sinks"]["x-kinds"]["mqtt"]["properties"]["qos"] == {
        "type": "integer", "description": "MQTT quality of service", "default": 1, "minimum": 0, "maximum": 2,
    }  # fmt: skip
    camera = schema["source"]["x-kinds"]["camera"]
    assert camera["x-triggers"]["opcua"] == {
        "options": ["trigger_endpoint", "trigger_node", "username", "password_env"],
        "required": ["trigger_endpoint", "trigger_node"], "table": {"trigger": "opcua"},
    }  # fmt: skip
    assert {mode: entry["required"] for mode, entry in camera["x-triggers"].items() if mode != "opcua"} == {
        "every_n_frames": [], "every_ms": [], "http": [],
    }  # fmt: skip
    assert camera["properties"]["every_ms"] == {
        "type": "number", "description": camera["properties"]["every_ms"]["description"], "default": 1000.0,
        "exclusiveMinimum": 0.0, "maximum": 86_400_000.0,
    }  # fmt: skip
