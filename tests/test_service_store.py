"""The service's SQLite file: schema migration, fit-job records, and what a restart does to them."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from eagle_iad.errors import ConfigError
from eagle_iad.service.jobs import FitJob, JobManager
from eagle_iad.service.store import INTERRUPTED, SCHEMA_VERSION, Inspection, InspectionStore

V1_SCHEMA = """
CREATE TABLE schema_version (version INTEGER NOT NULL);
INSERT INTO schema_version VALUES (1);
CREATE TABLE inspections (
    id TEXT PRIMARY KEY, seq INTEGER NOT NULL UNIQUE, time TEXT NOT NULL, category TEXT NOT NULL,
    image_name TEXT NOT NULL, score REAL, tau REAL, s_max REAL, decision TEXT, in_band INTEGER NOT NULL,
    answer TEXT, caas_applied INTEGER NOT NULL, verdict TEXT NOT NULL, pictures TEXT NOT NULL
);
INSERT INTO inspections VALUES ('a', 1, 't', 'tire', 'x.png', 2.0, 1.0, 3.0, 'anomalous', 1, 'A', 1, '{}', '{}');
"""


def test_a_v1_file_is_migrated_in_place_keeping_its_history(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    with sqlite3.connect(path) as db:
        db.executescript(V1_SCHEMA)
    store = InspectionStore(path)
    total, rows = store.page(10, 0)
    assert total == 1 and rows[0].id == "a" and rows[0].caas_applied is True and rows[0].label is None
    assert rows[0].station is None and rows[0].source is None  # schema 4's columns, empty for an upload
    assert store.set_label("a", "normal", "t2") is not None  # the migrated table takes labels
    assert store.caas_counts() == (1, 1)
    store.save_job({"id": "j", "created": "c", "state": "succeeded"})
    store.close()
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT version FROM schema_version").fetchone() == (SCHEMA_VERSION,)
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"fit_jobs", "station_intake", "outbox", "stations", "idempotency"} <= tables


def test_a_newer_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "new.sqlite3"
    InspectionStore(path).close()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE schema_version SET version = 99")
    with pytest.raises(ConfigError, match=r"new\.sqlite3: schema 99 is newer than this eagle-iad reads"):
        InspectionStore(path)


def test_unfinished_jobs_become_interrupted_on_the_next_start(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite3"
    store = InspectionStore(path)
    for job_id, state in (("q", "queued"), ("r", "running"), ("s", "succeeded"), ("f", "failed")):
        store.save_job({"id": job_id, "created": "2026-11-28T00:00:00+00:00", "state": state, "error": None,
                        "category": "tire", "images": 3, "progress": None, "result": None})  # fmt: skip
    store.close()
    store = InspectionStore(path)
    assert store.interrupt_unfinished_jobs() == 2
    states = {job_id: (store.load_job(job_id) or {}).get("state") for job_id in "qrsf"}
    assert states == {"q": "failed", "r": "failed", "s": "succeeded", "f": "failed"}
    assert (store.load_job("r") or {})["error"] == INTERRUPTED and (store.load_job("f") or {})["error"] is None
    assert store.load_job("nope") is None
    assert store.interrupt_unfinished_jobs() == 0


def test_a_restored_job_answers_like_a_live_one(tmp_path: Path) -> None:
    store = InspectionStore(tmp_path / "h.sqlite3")
    live = FitJob(id="j1", category="tire", images=[Path("a.png"), Path("b.png")], records=store)
    live.emit("state", state="queued")
    live.report("features", 2, 2)
    live.state, live.result = "succeeded", {"tau": 1.0}
    live.emit("state", state="succeeded", result=live.result)
    manager = JobManager(tmp_path / "models", 1, lambda _: None, store)
    try:
        restored = manager.get("j1")
        assert restored is not None and restored.to_dict() == live.to_dict()
        assert restored.finished and [e["event"] for e in restored.events] == ["state"]
        assert restored.events[0]["state"] == "succeeded" and restored.events[0]["result"] == {"tau": 1.0}
        assert manager.get("missing") is None
    finally:
        manager.shutdown()
        store.close()


def test_inspections_still_page_after_jobs_are_written(tmp_path: Path) -> None:
    store = InspectionStore(tmp_path / "h.sqlite3")
    record = Inspection(id="i", time="t", category="c", image_name="n", score=1.0, tau=2.0, s_max=3.0,
                        decision="normal", in_band=False, answer=None, caas_applied=False, verdict={},
                        pictures={})  # fmt: skip
    store.add(record)
    store.save_job({"id": "j", "created": "c", "state": "queued"})
    assert store.page(5, 0, decision="normal")[1] == [record]
    assert store.caas_counts() == (1, 0)
    store.close()


def test_labels_are_stored_filtered_and_cleared(tmp_path: Path) -> None:
    store = InspectionStore(tmp_path / "h.sqlite3")
    for index, decision in enumerate(("anomalous", "normal", "normal")):
        store.add(Inspection(id=f"i{index}", time="t", category="c", image_name=f"{index}.png", score=1.0, tau=2.0,
                             s_max=3.0, decision=decision, in_band=False, answer=None, caas_applied=False,
                             verdict={}, pictures={}))  # fmt: skip
    labelled = store.set_label("i1", "anomalous", "2026-11-30T23:00:00+00:00")
    assert labelled is not None and labelled.label == "anomalous" and labelled.label_time == "2026-11-30T23:00:00+00:00"
    assert labelled.to_dict()["label"] == "anomalous" and labelled.decision == "normal"  # the verdict is kept
    assert store.set_label("missing", "normal", "t") is None
    assert [r.id for r in store.page(10, 0, label="anomalous")[1]] == ["i1"]
    assert [r.id for r in store.page(10, 0, label="labelled")[1]] == ["i1"]
    assert [r.id for r in store.page(10, 0, label="unlabelled")[1]] == ["i2", "i0"]
    assert store.page(10, 0, decision="normal", label="anomalous")[0] == 1
    cleared = store.set_label("i1", None, "t")
    assert cleared is not None and cleared.label is None and cleared.label_time is None
    with pytest.raises(ValueError, match="label must be one of"):
        store.set_label("i0", "broken", "t")
    store.close()


#: The inspections table as schema 5 declares it by hand: schema 3's columns, the additive ``reference``,
#: ``answered_by``, ``label_by``, ``label_note``, ``near_threshold`` and ``unrecognised``, 4's ``station`` and
#: ``source``, and the additive ``image_sha256``, ``model_version``, ``label_revision`` and ``label_history``
#: (opening an older file adds the missing ones); the columns derived from the record must match.
V4_INSPECTIONS = """CREATE TABLE IF NOT EXISTS inspections (
    id TEXT PRIMARY KEY,
    seq INTEGER NOT NULL UNIQUE,
    time TEXT NOT NULL,
    category TEXT NOT NULL,
    image_name TEXT NOT NULL,
    score REAL,
    tau REAL,
    s_max REAL,
    decision TEXT,
    in_band INTEGER NOT NULL,
    answer TEXT,
    caas_applied INTEGER NOT NULL,
    verdict TEXT NOT NULL,
    pictures TEXT NOT NULL,
    reference TEXT,
    answered_by TEXT,
    label TEXT,
    label_time TEXT,
    label_by TEXT,
    label_note TEXT,
    label_revision INTEGER,
    label_history TEXT,
    near_threshold INTEGER,
    unrecognised INTEGER,
    station TEXT,
    source TEXT,
    image_sha256 TEXT,
    model_version INTEGER,
    warnings TEXT
);"""


def test_the_columns_derived_from_the_record_are_schema_4() -> None:
    from eagle_iad.history.schema import _inspections_table

    assert _inspections_table() + ";" == V4_INSPECTIONS


def test_a_field_added_to_the_record_becomes_a_column_of_an_existing_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What another field costs: one line in eagle_iad/record.py (here: a subclass with one more field)."""
    import dataclasses

    from eagle_iad import record as record_module
    from eagle_iad.service import store as store_module

    path = tmp_path / "h.sqlite3"
    store = InspectionStore(path)
    old = Inspection(id="old", time="t", category="c", image_name="a.png", score=1.0, tau=2.0, s_max=3.0,
                     decision="normal", in_band=False, answer=None, caas_applied=False, verdict={"v": 1},
                     pictures={"heatmap": "/v1/files/old/h.png"})  # fmt: skip
    store.add(old)
    store.close()

    @dataclasses.dataclass(frozen=True)
    class Wider(record_module.InspectionRecord):
        backend: str | None = record_module.doc("which MLLM backend answered", None)

    monkeypatch.setattr(record_module, "InspectionRecord", Wider)
    store = InspectionStore(path)
    try:
        new = Wider(**{**old.to_dict(), "id": "new", "backend": "hf:tiny"})
        store.add(new)
        assert store.get("new") == new
        assert store.get("old") == Wider(**old.to_dict())  # stored before the field existed: None
        assert store_module.SCHEMA_VERSION == 7
    finally:
        store.close()
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT version FROM schema_version").fetchone() == (7,)


def test_the_held_deliveries_are_found_by_an_index_made_at_the_next_open_of_an_existing_file(tmp_path: Path) -> None:
    """A station looks for its held deliveries (station, state, next_try) after every full poll: an index serves
    that look, and a file of the same schema version made before the index existed gets it at its next open,
    its version unchanged (an older eagle-iad still reads it)."""
    from eagle_iad.station.outbox import HELD, PENDING, StationTables

    path = tmp_path / "h.sqlite3"
    InspectionStore(path).close()
    with sqlite3.connect(path) as db:
        db.execute("DROP INDEX IF EXISTS outbox_held")  # as a file written before the indexes existed
        db.execute("DROP INDEX IF EXISTS station_intake_record")
    store = InspectionStore(path)
    try:
        assert store.upgrade.before == store.upgrade.after == SCHEMA_VERSION
        assert StationTables(store).held("line-1") == []
    finally:
        store.close()
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT version FROM schema_version").fetchone() == (SCHEMA_VERSION,)
        plan = db.execute("EXPLAIN QUERY PLAN SELECT record_id FROM outbox WHERE station = ? AND state = ? AND "
                          "next_try = ?", ("line-1", PENDING, HELD)).fetchall()  # fmt: skip
        joined = db.execute("EXPLAIN QUERY PLAN SELECT i.name FROM station_intake i WHERE i.station = ? AND "
                            "i.record_id = ?", ("line-1", "x")).fetchall()  # fmt: skip
    assert any("outbox_held" in str(row[-1]) for row in plan), plan
    assert any("station_intake_record" in str(row[-1]) for row in joined), joined  # the join to each held record
