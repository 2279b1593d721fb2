"""The declared options of each source and sink (``station/part_options.py``: the OpenAPI document's ``x-kinds``, the
console's create form) are the ones the real parts read: same keys, defaults, ranges and choices.

Why read through the parts rather than compare with constants: a part's default lives in its constructor
(``options.number("every_ms", 1000.0, EVERY_MS)``); a recording :class:`Options` sees exactly what the service reads
when it creates a station (``station_from_table``, as ``POST /v1/stations`` does), so a default or range changed in a
part and not in the declaration fails here, not in the console's form in front of a user.
"""

from __future__ import annotations

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


class Recording(Options):
    """:class:`Options` that records, for each key a part reads, its default, range and choices."""

    def __init__(self, *args: Any, parts: list[Recording] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.parts = parts if parts is not None else []
        self.parts.append(self)
        self.reads: dict[str, dict[str, Any]] = {}

    def nested(self, table: Any, where: str) -> Options:
        return Recording(table, where, self.base, self.root, self.no_paths, looking=self.looking, parts=self.parts)

    def _get(self, key: str, default: Any, kinds: tuple[type, ...], what: str) -> Any:
        self.reads.setdefault(key, {})["default"] = default
        return super()._get(key, default, kinds, what)

    def number(self, key: str, default: float, limits: Range) -> float:
        self.reads.setdefault(key, {})["limits"] = limits
        return super().number(key, default, limits)

    def integer(self, key: str, default: int, limits: Range) -> int:
        self.reads.setdefault(key, {})["limits"] = limits
        return super().integer(key, default, limits)

    def text(self, key: str, default: Any = None, choices: tuple[str, ...] = ()) -> Any:
        if choices:
            self.reads.setdefault(key, {})["choices"] = list(choices)
        return super().text(key, default, choices)


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


def _compare(kind: str, declared: dict[str, Any], reads: dict[str, dict[str, Any]]) -> list[str]:
    """What the declaration of ``kind`` says otherwise than its part read (empty: nothing)."""
    wrong: list[str] = []
    properties = declared["properties"]
    for key, read in reads.items():
        if key == "kind":
            continue
        entry = properties.get(key)
        if entry is None:
            wrong.append(f"{kind}.{key}: read by the part, not declared")
            continue
        default = read.get("default")
        if (
            default is not None
            and default is not REQUIRED
            and "x-default" not in entry
            and entry.get("default") != default
        ):
            wrong.append(f"{kind}.{key}: default {entry.get('default')!r} declared, {default!r} read")
        if "limits" in read:
            bounds = {name: entry[name] for name in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")
                      if name in entry}  # fmt: skip
            if bounds != read["limits"].schema():
                wrong.append(f"{kind}.{key}: range {bounds} declared, {read['limits'].schema()} read")
        if "choices" in read and entry.get("enum") != read["choices"]:
            wrong.append(f"{kind}.{key}: choices {entry.get('enum')} declared, {read['choices']} read")
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
        parts = _read(tmp_path, source, sinks if source is sources[0] else [])
        for part in parts:
            kind = part.table["kind"]
            declared = (declared_sources if part is parts[0] else declared_sinks)[kind]
            wrong += _compare(kind, declared, part.reads)
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
        "options": ["trigger_endpoint", "trigger_node", "username", "password_env"], "table": {"trigger": "opcua"},
    }  # fmt: skip
    assert camera["properties"]["every_ms"] == {
        "type": "number", "description": camera["properties"]["every_ms"]["description"], "default": 1000.0,
        "exclusiveMinimum": 0.0, "maximum": 86_400_000.0,
    }  # fmt: skip
