"""The history on both backends: the same operations give the same answers on SQLite and on a real
PostgreSQL (eagle_iad/testing/postgres.py), both migrate an older schema, and what replicas rely on holds
(one storage order, named locks that die with their holder, a unique key lost to another writer)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from contextlib import closing
from pathlib import Path
from typing import Any, ClassVar

import pytest
from conftest import LiveServer, schema_6_of_an_earlier_release, wait_s

from eagle_iad.cli import main
from eagle_iad.errors import ConfigError, HistoryUnavailableError
from eagle_iad.history import BACKENDS, history_backend, open_backend
from eagle_iad.history.backend import HistoryBackend, positional_to_format, redact, scrub, secrets_of
from eagle_iad.history.schema import MIGRATIONS, SCHEMA_VERSION, path_category
from eagle_iad.history.sqlite import SqliteHistory
from eagle_iad.service.access import Caller
from eagle_iad.service.audit import AuditLog
from eagle_iad.service.keys import KeyTable, LastAdminError, parse_role
from eagle_iad.service.store import AlreadyStoredError, Inspection, InspectionStore
from eagle_iad.station.outbox import StationTables
from eagle_iad.station.parts import Retry
from eagle_iad.testing.postgres import free_port


def _record(index: int, **changes: Any) -> Inspection:
    values: dict[str, Any] = dict(
        id=f"i{index:03d}", time=f"2026-12-0{1 + index % 3}T10:00:{index % 60:02d}+00:00", category="c" if index % 4
        else "d", image_name=f"{index}.png", score=float(index % 7), tau=3.0, s_max=5.0,
        decision="anomalous" if index % 7 >= 3 else "normal", in_band=3 <= index % 7 < 5, answer=None,
        caas_applied=index % 5 == 0, verdict={"expert_decision": "anomalous" if index % 7 >= 3 else "normal",
        "n": index}, pictures={"heatmap": f"/v1/files/i{index:03d}/heatmap.png"},
        image_sha256=f"{index:064x}",
    )  # fmt: skip
    values.update(changes)
    return Inspection(**values)


def scenario(store: InspectionStore) -> dict[str, Any]:
    """Every kind of statement the service makes, and what each read returns."""
    out: dict[str, Any] = {}
    tables = StationTables(store)
    for index in range(12):
        record = _record(index)
        if index == 5:  # an MLLM that disagreed with the expert: in the review queue for that reason
            record = _record(index, decision="normal", answer="No.")
        if index % 3 == 0:  # a station's verdict: intake and outbox rows in the inspection's transaction
            store.add(
                record,
                lambda db, r=record: StationTables.write_done(
                    db, "line1", r.image_sha256 or "", r.image_name, r.id, "done/x", 1.0, ["mqtt", "file"], {"id": r.id}
                ),
            )
        else:
            store.add(record)
    out["page"] = store.page(5, 2)
    out["page_filtered"] = store.page(50, 0, category="c", decision="anomalous")
    out["undecided"] = store.page(50, 0, decision="undecided")[0]
    out["get"] = store.get("i004")
    out["label"] = store.set_label("i004", "anomalous", "2026-12-05T00:00:00+00:00", by="ana", note="crack")
    store.set_label("i006", "normal", "2026-12-05T00:00:01+00:00", by="bo")
    # a correction keeps the label it replaced, and a second operator's same label is kept beside the first's
    store.set_label("i007", "normal", "2026-12-05T00:00:02+00:00", by="omar", note="scuff only", expected=0)
    store.set_label("i007", "anomalous", "2026-12-05T00:00:03+00:00", by="olga", note="a cut", expected=1)
    out["agreed"] = store.set_label("i007", "anomalous", "2026-12-05T00:00:04+00:00", by="oscar", note="cut",
                                    expected=1)  # fmt: skip
    out["relabelled"] = store.get("i007")
    out["labelled"] = store.labelled("c")
    out["labelled_defective"] = store.labelled_defective()
    out["review"] = [(record.id, [reason.code for reason in reasons]) for record, reasons in store.review(50, 0)[1]]
    out["review_total"] = store.review(50, 0, "c")[0]
    out["daily"] = store.daily("c")
    out["since"] = [(seq, record.id) for seq, record in store.since(4, "c", limit=3)]
    out["last_seq"] = store.last_seq()
    out["caas"] = store.caas_counts()
    with store.transaction() as db:
        db.execute("INSERT INTO idempotency (key, fingerprint, record_id, created) VALUES (?, ?, ?, ?)",
                   ("k1", "f1", "i002", "t"))  # fmt: skip
    out["by_key"] = store.by_idempotency_key("k1")
    out["by_missing_key"] = store.by_idempotency_key("nope")
    store.save_job({"id": "j1", "created": "c1", "category": "c", "state": "running"})
    store.save_job({"id": "j2", "created": "c2", "category": "c", "state": "succeeded"})
    out["interrupted"] = store.interrupt_unfinished_jobs()
    out["job"] = store.load_job("j1")
    keys = KeyTable(store)
    keys.add("ana", parse_role("engineer"))
    keys.add("bo", parse_role("viewer"))
    keys.revoke("bo")
    out["keys"] = [(info.name, str(info.role), info.revoked is not None) for info in keys.list()]
    keys.add("cy", parse_role("admin"))
    try:  # the last admin key: refused by the count in the revoke's own transaction, on either backend
        keys.revoke("cy")
    except LastAdminError as exc:
        out["last_admin"] = str(exc)
    keys.add("dee", parse_role("admin"))
    out["revoked_admin"] = keys.revoke("cy").name  # another admin left: allowed
    audit = AuditLog(store)
    audit.write("t1", Caller("ana", parse_role("engineer")), "POST", "/v1/x", "/v1/x", 200, "tau 3")
    out["audit"] = [{k: v for k, v in row.items() if k != "seq"} for row in audit.page(10, 0)[1]]
    # One category's rows (its path and below it), matched the same on both: not a category whose name it starts.
    for path in ("/v1/categories/mono/threshold", "/v1/categories/mono", "/v1/categories/mono2/teach"):
        audit.write("t2", Caller("eve", parse_role("engineer")), "POST", path, path, 200, None)
    # a label and a deletion of one of its inspections: their paths name the inspection, the writer the category
    for path in ("/v1/inspections/i001/label", "/v1/inspections/i002"):
        audit.write("t3", Caller("eve", parse_role("operator")), "PUT", path, path, 200, None, category="mono")
    audit.write("t3", Caller("eve", parse_role("operator")), "PUT", "/v1/inspections/i003/label",
                "/v1/inspections/i003/label", 200, None, category="mono2")  # fmt: skip
    # a row an older eagle-iad wrote, without a category: found by its path, as it was
    with store.transaction() as db:
        db.execute(
            "INSERT INTO audit (time, actor, role, method, route, path, status) VALUES "
            "('t4', 'old', 'engineer', 'POST', '/v1/categories/{name}/teach', '/v1/categories/mono/teach', 200)"
        )
    out["audit_mono"] = [row["path"] for row in audit.page(10, 0, category="mono")[1]]
    assert out["audit_mono"] == ["/v1/categories/mono/teach", "/v1/inspections/i002", "/v1/inspections/i001/label",
                                 "/v1/categories/mono", "/v1/categories/mono/threshold"]  # fmt: skip
    # compared whole: "_" is no wildcard (a LIKE 'm_no' would find mono's rows)
    assert audit.page(10, 0, category="m_no") == (0, [])
    assert [row[0] for row in store.read("SELECT category FROM audit ORDER BY seq")] == [
        None, "mono", "mono", "mono2", "mono", "mono", "mono2", None]  # fmt: skip
    out["audit_eve_csv"] = audit.csv("eve", "mono2").splitlines()[1:]
    out["intake"] = tables.intake("line1", _record(3).image_sha256 or "")
    tables.write_failed("line1", "ff", "bad.png", "not an image", 2.0)
    tables.write_failed("line1", "ff", "bad.png", "still not an image", 3.0)  # a retried file replaces its row
    out["failed_intake"] = tables.intake("line1", "ff")
    for _ in range(2):  # a refusal stored again (refused again after a crash): its row is not written twice
        tables.write_failed("line1", "fe", "empty.png", "empty", 4.0, key="refused-1", planned="failed/empty.png",
                            sinks=["mqtt"], payload={"event": "refused"})  # fmt: skip
    out["refused_intake"] = tables.intake("line1", "fe")
    out["refused_files"] = store.read("SELECT files FROM station_intake WHERE station = 'line1' AND digest = 'fe'")
    assert out["refused_files"] == [(1,)]  # stored again under its key: the same file, counted once
    out["held_refusal"] = tables.held_refusal("line1", "fe", "empty.png")
    assert out["held_refusal"] == "refused-1"
    # the same bytes under another name, while refused-1 is not put aside yet: counted in the row, which keeps
    # telling empty.png's refusal (so empty.png refused again is still that file)
    tables.write_failed("line1", "fe", "copy.png", "empty", 5.0, key="refused-2", planned="failed/copy.png",
                        sinks=["audit"], payload={"event": "refused"})  # fmt: skip
    out["refused_copy"] = store.read("SELECT name, record_id, files FROM station_intake WHERE station = 'line1' AND"
                                     " digest = 'fe'")  # fmt: skip
    assert out["refused_copy"] == [("empty.png", "refused-1", 2)]
    assert tables.held_refusal("line1", "fe", "empty.png") == "refused-1"
    assert [r[0] for r in store.read("SELECT record_id FROM outbox WHERE record_id = ?", ("refused-1",))] == [
        "refused-1"
    ]
    # copy.png refused again before its put-aside (a second kill, a put-aside that failed): found by its own name,
    # so not counted again; so is a third file no sink takes (unfiled); each named for the restart's look
    assert tables.held_refusal("line1", "fe", "copy.png") == "refused-2"
    tables.write_failed("line1", "fe", "copy.png", "empty", 5.0, key="refused-2", planned="failed/copy.png",
                        sinks=["audit"], payload={"event": "refused"})  # fmt: skip
    tables.write_failed("line1", "fe", "third.png", "empty", 6.0, key="refused-3", planned="failed/third.png")
    assert tables.held_refusal("line1", "fe", "third.png") == "refused-3"
    tables.write_failed("line1", "fe", "third.png", "empty", 6.0, key="refused-3", planned="failed/third.png")
    out["refused_others"] = store.read("SELECT name, record_id, files FROM station_intake WHERE station = 'line1'"
                                       " AND digest = 'fe'")  # fmt: skip
    assert out["refused_others"] == [("empty.png", "refused-1", 3)]
    held = [(h.record_id, h.digest, h.name, h.planned) for h in tables.held("line1") if h.digest == "fe"]
    assert held == [("refused-1", "fe", "empty.png", "failed/empty.png"), ("refused-2", "fe", "copy.png",
                    "failed/copy.png")]  # fmt: skip
    assert [(h.record_id, h.name) for h in tables.unfiled("line1")] == [("refused-3", "third.png")]
    assert tables.refusal_place("line1", "refused-2") == "failed/copy.png"
    tables.filed("line1", "fe", "refused-2", "failed/copy.png", first=True)  # put aside: done with
    tables.release_unfiled("line1", "fe", "refused-3")  # gone: a later third.png is another file
    assert tables.held_refusal("line1", "fe", "copy.png") is None
    assert tables.held_refusal("line1", "fe", "third.png") is None
    assert tables.held_refusal("line1", "fe", "empty.png") == "refused-1"
    head = tables.head("line1", "mqtt")
    assert head is not None
    tables.delivered(head.seq)
    second = tables.head("line1", "mqtt")
    assert second is not None
    out["dead"] = tables.failed(second, "broker down", Retry(max_attempts=1, base_s=0.1, max_s=1.0))
    out["requeued"] = tables.requeue_dead("line1", "mqtt")
    out["owed"] = tables.owed("line1", ["mqtt", "file"])
    heads = (tables.head("line1", "mqtt"), tables.head("line1", "file"))
    out["heads"] = [(due.record_id, due.attempts) for due in heads if due is not None]
    tables.save_spec("line2", {"kind": "folder"}, "c1")
    tables.set_paused("line2", True)
    out["specs"] = tables.specs()
    return out


@pytest.fixture
def pg_url(postgres: Any) -> str:
    url: str = postgres.new_database()
    return url


def test_the_same_operations_give_the_same_answers_on_sqlite_and_postgresql(tmp_path: Path, pg_url: str) -> None:
    lite = InspectionStore(tmp_path / "h.sqlite3")
    pg = InspectionStore(pg_url)
    try:
        expected, got = scenario(lite), scenario(pg)
    finally:
        lite.close()
        pg.close()
    assert got.keys() == expected.keys()
    for key in expected:
        assert got[key] == expected[key], key
    # and the answers are the right ones, not merely equal
    assert expected["page"][0] == 12 and [r.id for r in expected["page"][1]] == ["i009", "i008", "i007", "i006", "i005"]
    assert expected["daily"][0]["day"] == "2026-12-01" and sum(day["inspections"] for day in expected["daily"]) == 9
    assert expected["since"] == [(6, "i005"), (7, "i006"), (8, "i007")]
    assert expected["interrupted"] == 1 and expected["job"]["state"] == "failed"
    assert expected["keys"] == [("ana", "engineer", False), ("bo", "viewer", True)]
    assert ("i005", ["disagreement"]) in expected["review"]
    assert expected["failed_intake"].reason == "still not an image"
    assert expected["dead"] is True and expected["requeued"] == 1
    relabelled = expected["relabelled"]
    assert relabelled == expected["agreed"]
    assert (relabelled.label, relabelled.label_by, relabelled.label_note) == ("anomalous", "olga", "a cut")
    assert relabelled.label_revision == 3 and relabelled.label_history == [
        {"revision": 1, "label": "normal", "by": "omar", "time": "2026-12-05T00:00:02+00:00", "note": "scuff only",
         "previous": None},
        {"revision": 2, "label": "anomalous", "by": "olga", "time": "2026-12-05T00:00:03+00:00", "note": "a cut",
         "previous": "normal"},
        {"revision": 3, "label": "anomalous", "by": "oscar", "time": "2026-12-05T00:00:04+00:00", "note": "cut",
         "previous": "anomalous", "agreed": True},
    ]  # fmt: skip


OLD_SCHEMA_5 = [  # an older eagle-iad's history: no label_by/label_note/image_sha256... columns, api_keys without seq
    "CREATE TABLE schema_version (version INTEGER NOT NULL)",
    "INSERT INTO schema_version VALUES (5)",
    "CREATE TABLE inspections (id TEXT PRIMARY KEY, seq INTEGER NOT NULL UNIQUE, time TEXT NOT NULL, "
    "category TEXT NOT NULL, image_name TEXT NOT NULL, score REAL, tau REAL, s_max REAL, decision TEXT, "
    "in_band INTEGER NOT NULL, answer TEXT, caas_applied INTEGER NOT NULL, verdict TEXT NOT NULL, "
    "pictures TEXT NOT NULL, label TEXT, label_time TEXT, station TEXT, source TEXT)",
    "INSERT INTO inspections VALUES ('a', 1, 't', 'tire', 'x.png', 2.0, 1.0, 3.0, 'anomalous', 1, 'A', 1, '{}', "
    "'{}', 'normal', 't2', NULL, NULL)",
    "CREATE TABLE api_keys (name TEXT PRIMARY KEY, role TEXT NOT NULL, digest TEXT NOT NULL UNIQUE, "
    "created TEXT NOT NULL, revoked TEXT)",
    "INSERT INTO api_keys VALUES ('zoe', 'admin', 'd1', '2026-12-01T08:00:00+00:00', NULL)",
    "INSERT INTO api_keys VALUES ('bo', 'viewer', 'd2', '2026-12-01T09:00:00+00:00', NULL)",
    "INSERT INTO api_keys VALUES ('al', 'viewer', 'd3', '2026-12-01T09:00:00+00:00', NULL)",
    # an outbox without refusals (added at the next open, no version of its own)
    "CREATE TABLE outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, station TEXT NOT NULL, sink TEXT NOT NULL, "
    "record_id TEXT NOT NULL, payload TEXT NOT NULL, state TEXT NOT NULL DEFAULT 'pending', "
    "attempts INTEGER NOT NULL DEFAULT 0, next_try REAL NOT NULL DEFAULT 0, last_error TEXT, delivered REAL, "
    "UNIQUE (station, sink, record_id))",
    "INSERT INTO outbox (station, sink, record_id, payload, attempts) VALUES ('line-1', 'webhook', 'a', '{}', 4)",
]


def test_text_with_a_nul_character_is_stored_and_looked_up_on_postgresql_as_on_sqlite(
    tmp_path: Path, pg_url: str
) -> None:
    """PostgreSQL's text cannot hold U+0000 (SQLite's can): an id in a URL (``/v1/jobs/%00``), an operator's
    note or an MLLM's answer with one failed with a traceback there (500, the label or the inspection lost),
    and a verdict whose JSON held ``\\u0000`` broke every review query (``verdict::jsonb``) for good. Now
    each is stored with U+FFFD in its place. A lookup's NUL becomes U+FFFD too: a made-up id holding one finds
    nothing, as on SQLite, while a text stored with U+FFFD in its place is found by it (SQLite tells the two
    apart)."""
    answers = []
    for store in (InspectionStore(tmp_path / "h.sqlite3"), InspectionStore(pg_url)):
        try:
            record = _record(1, decision="normal", answer="No.\x00", verdict={"expert_decision": "anomalous",
                             "question": "is it \x00 broken?", "note": "a \\u0000 b"})  # fmt: skip
            store.add(record)
            store.add(_record(2))
            store.add(_record(7, id="i\ufffd7"))
            review = [(r.id, [reason.code for reason in why]) for r, why in store.review(50, 0)[1]]
            labelled = store.set_label("i001", "normal", "2026-12-05T00:00:00+00:00", by="ana\x00", note="x\x00y")
            assert labelled is not None
            answers.append(
                {
                    "missing": (store.get("i\x00"), store.load_job("j\x00"), store.by_idempotency_key("k\x00")),
                    "stand-in": store.get("i\x007") is not None,
                    "review": review,
                    "kept": (
                        labelled.answer,
                        labelled.label_by,
                        labelled.label_note,
                        labelled.verdict["note"],
                        labelled.verdict["question"],
                    ),
                }
            )
        finally:
            store.close()
    lite, pg = answers
    assert lite["missing"] == pg["missing"] == (None, None, None)
    assert (lite["stand-in"], pg["stand-in"]) == (False, True)
    assert lite["review"] == pg["review"] == [("i001", ["disagreement"])]
    assert pg["kept"] == ("No.\ufffd", "ana\ufffd", "x\ufffdy", "a \\u0000 b", "is it \ufffd broken?")
    assert lite["kept"] == ("No.\x00", "ana\x00", "x\x00y", "a \\u0000 b", "is it \x00 broken?")


def _kept_said(kind: str, url: str, before: int) -> str:
    """What a migration from ``before`` says of the copy kept (history/keep.py), written out."""
    going_back = "(docs/OPERATIONS.md, 'Going back to an older release')"
    if kind == "postgresql":
        return (f"no copy at schema {before} was kept: postgresql is not copied by eagle-iad: take a pg_dump before "
                f"upgrading {going_back}")  # fmt: skip
    return f"a copy at schema {before} is kept at {url}.schema{before}.bak: the older eagle-iad runs on it {going_back}"


def _older_history(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest, statements: list[str]
) -> tuple[str, HistoryBackend]:
    """A history of an older release's layout (``statements``) on ``kind``: its URL and backend."""
    url = str(tmp_path / "old.sqlite3") if kind == "sqlite" else request.getfixturevalue("pg_url")
    backend = open_backend(url)
    db = backend.connect()
    for statement in statements:
        db.execute(backend.ddl(statement) if statement.startswith("CREATE") else statement)
    db.close()
    return url, backend


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_eagle_db_upgrade_migrates_an_older_history_keeping_its_rows(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest, capsys: pytest.CaptureFixture[str]
) -> None:
    url, backend = _older_history(kind, tmp_path, request, OLD_SCHEMA_5)
    assert main(["db", "status", "--history", url]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["schema"] == 5 and status["this_version_reads"] == SCHEMA_VERSION == 7
    assert status["pending"] == [{"version": 6, "adds": MIGRATIONS[6]}, {"version": 7, "adds": MIGRATIONS[7]}]
    assert main(["db", "upgrade", "--history", url]) == 0
    said = capsys.readouterr().err
    # every change it made, those of no version of their own (outbox.refusals, the indexes) too
    assert said == (
        f"history {backend.describe()}: schema 5 -> 7 (6: {MIGRATIONS[6]}; 7: {MIGRATIONS[7]}; added tables fit_jobs, "
        "station_intake, "
        "idempotency, audit, stations, station_faults, station_refusals, station_runs; added columns "
        "inspections.answered_by, "
        "inspections.image_sha256, inspections.label_by, inspections.label_history, inspections.label_note, "
        "inspections.label_revision, "
        "inspections.model_version, inspections.near_threshold, inspections.reference, inspections.unrecognised, "
        "inspections.warnings, "
        "outbox.last_refused, outbox.refusals, api_keys.seq; added indexes inspections_category, station_intake_time, "
        "outbox_due, "
        "outbox_held, station_intake_record, audit_category); " + _kept_said(kind, url, 5) + "\n"
    )
    assert main(["db", "upgrade", "--history", url]) == 0
    assert "schema 7, up to date" in capsys.readouterr().err
    store = InspectionStore(url)
    try:
        (row,) = store.page(5, 0)[1]
        kept = (row.id, row.label, row.label_by, row.caas_applied, row.image_sha256, row.label_history)
        assert kept == ("a", "normal", None, True, None, None)
        assert row.label_revision == 1  # a label given before label revisions existed is revision 1 (schema 7)
        # ... and the first entry of its history at the next relabel
        corrected = store.set_label("a", "anomalous", "t3", by="olga", note="a cut", expected=1)
        assert corrected is not None and corrected.label_history == [
            {"revision": 1, "label": "normal", "by": None, "time": "t2", "note": None, "previous": None},
            {"revision": 2, "label": "anomalous", "by": "olga", "time": "t3", "note": "a cut", "previous": "normal"},
        ]
        keys = KeyTable(store)
        keys.add("ana", parse_role("admin"))  # numbered after the keys that were there
        assert [info.name for info in keys.list()] == ["zoe", "al", "bo", "ana"]  # by time added, then name
        assert store.upgrade.before == 7 and store.upgrade.added_columns == ()
        head = StationTables(store).head("line-1", "webhook")
        assert head is not None
        assert (head.record_id, head.attempts, head.refusals, head.last_refused) == ("a", 4, 0, False)
    finally:
        store.close()


OLD_SCHEMA_3 = [  # the history of a release of schema 3 (05d769e): labels, but no label_by, _note nor _revision
    "CREATE TABLE schema_version (version INTEGER NOT NULL)",
    "INSERT INTO schema_version VALUES (3)",
    "CREATE TABLE inspections (id TEXT PRIMARY KEY, seq INTEGER NOT NULL UNIQUE, time TEXT NOT NULL, "
    "category TEXT NOT NULL, image_name TEXT NOT NULL, score REAL, tau REAL, s_max REAL, decision TEXT, "
    "in_band INTEGER NOT NULL, answer TEXT, caas_applied INTEGER NOT NULL, verdict TEXT NOT NULL, "
    "pictures TEXT NOT NULL, reference TEXT, answered_by TEXT, label TEXT, label_time TEXT)",
    "CREATE INDEX inspections_category ON inspections (category, seq)",
    "CREATE TABLE fit_jobs (id TEXT PRIMARY KEY, created TEXT NOT NULL, record TEXT NOT NULL)",
    "INSERT INTO inspections VALUES ('old', 1, '2026-12-01T10:00:00.000+00:00', 'tire', 'contamination/008.png', "
    "2.0, 1.0, 3.0, 'anomalous', 1, NULL, 0, '{}', '{}', NULL, NULL, 'anomalous', '2026-12-01T10:13:06.000+00:00')",
    "INSERT INTO inspections VALUES ('new', 2, '2026-12-01T10:01:00.000+00:00', 'tire', 'good/000.png', "
    "0.5, 1.0, 3.0, 'normal', 0, NULL, 0, '{}', '{}', NULL, NULL, NULL, NULL)",
]


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_a_label_given_before_label_revisions_counts_as_revision_1_after_the_upgrade(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest, capsys: pytest.CaptureFixture[str]
) -> None:
    """A schema-3 history's label came through the upgrade with ``label_revision`` NULL, which reads "never
    labelled" (revision 0): ``expected_revision: 0`` then overwrote it unseen (the old label only in
    ``label_history``), and ``expected_revision: 1`` was refused as given "while you were looking". Schema 7 counts
    it as revision 1: 0 is refused (409) naming the label and when it was given, without claiming it was given
    meanwhile; 1 is stored; a part never labelled stays at null (revision 0)."""
    from test_review import _http

    from eagle_iad.service import ServiceSettings, create_app

    url, backend = _older_history(kind, tmp_path, request, OLD_SCHEMA_3)
    assert main(["db", "upgrade", "--history", url]) == 0
    said = capsys.readouterr().err
    assert said.startswith(f"history {backend.describe()}: schema 3 -> {SCHEMA_VERSION} (4: ")
    assert f"; 7: {MIGRATIONS[7]}; " in said, said
    app = create_app(ServiceSettings(models_dir=tmp_path / "models", state_dir=tmp_path / "state", history=url,
                                     files=tmp_path / "files"))  # fmt: skip
    with LiveServer(app) as server:
        inspections = server.base + "/v1/inspections"
        seen = _http("GET", f"{inspections}/old")[1]
        assert (seen["label"], seen["label_by"], seen["label_revision"]) == ("anomalous", None, 1), seen
        assert _http("GET", f"{inspections}/new")[1]["label_revision"] is None  # never labelled: revision 0
        status, refused = _http("PUT", f"{inspections}/old/label", {"label": "normal", "expected_revision": 0})
        assert status == 409 and refused["error"]["code"] == "label_changed", refused
        assert refused["error"]["message"] == (
            "contamination/008.png was already labelled defective by someone at 2026-12-01 10:13:06 UTC, with an "
            "earlier eagle-iad (the label came through an upgrade). Your label was not stored: look at it again, "
            "then label it if you still disagree."
        ), refused
        assert refused["error"]["label_changed"]["label_revision"] == 1, refused
        kept = _http("GET", f"{inspections}/old")[1]
        assert (kept["label"], kept["label_revision"], kept["label_history"]) == ("anomalous", 1, None), kept
        status, stored = _http("PUT", f"{inspections}/old/label", {"label": "normal", "by": "kai",
                                                                   "expected_revision": 1})  # fmt: skip
        assert status == 200 and (stored["label"], stored["label_by"], stored["label_revision"]) == (
            "normal", "kai", 2), stored  # fmt: skip
        assert [(entry["revision"], entry["label"], entry["previous"]) for entry in stored["label_history"]] == [
            (1, "anomalous", None), (2, "normal", "anomalous")]  # fmt: skip
        status, first = _http("PUT", f"{inspections}/new/label", {"label": "normal", "expected_revision": 0})
        assert status == 200 and first["label_revision"] == 1, first


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_eagle_serve_that_migrates_an_older_history_says_so_in_a_warning(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """``eagle serve`` started on a schema-5 history (no ``eagle db upgrade`` first) migrated it with only its
    banner in the log; the older replicas then refused it at their next start and nothing said when or why. Now
    one WARNING names both schema versions, every change (as ``eagle db upgrade`` prints them) and who refuses it
    from now on; a second start, with nothing to migrate, says nothing of it."""
    from test_service import ServeProcess

    url, backend = _older_history(kind, tmp_path, request, OLD_SCHEMA_5)
    (tmp_path / "models").mkdir()
    args = ["--models", str(tmp_path / "models"), "--state-dir", str(tmp_path / "state"), "--history", url,
            "--log-level", "warning"]  # fmt: skip
    logs = []
    for _ in range(2):
        server = ServeProcess(args)
        server.stop()
        logs.append(server.process.communicate()[1])
    said = [line for line in logs[0].splitlines() if "schema 5 -> 7" in line]
    assert len(said) == 1, logs[0]
    assert said[0].startswith(f"WARNING:     history {backend.describe()}: schema 5 -> 7 (6: {MIGRATIONS[6]}; "
                              f"7: {MIGRATIONS[7]}; ")  # fmt: skip
    assert said[0].endswith("; eagle-iad versions that read schema 5 refuse it from now on (other replicas, stations, "
                            "the CLI on other machines): upgrade them too (in a plant, run 'eagle db upgrade' before "
                            "starting a new version: docs/PLANT.md); " + _kept_said(kind, url, 5))  # fmt: skip
    assert "schema" not in logs[1], logs[1]


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_keys_and_db_refuse_a_history_that_is_not_there_unless_told_to_start_it(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest, capsys: pytest.CaptureFixture[str]
) -> None:
    """A mistyped SQLite file, or an existing but empty PostgreSQL database: ``eagle keys add`` and ``eagle db
    upgrade`` start no history there without ``--create`` (a key in it is one the running service never sees;
    an upgraded typo is a new, empty history), and ``eagle db status`` says it holds none, not "nothing to do"."""
    from eagle_iad.history.schema import holds_history

    url = str(tmp_path / "nope.sqlite3") if kind == "sqlite" else request.getfixturevalue("pg_url")
    backend = open_backend(url)
    where = f"no history at {tmp_path / 'nope.sqlite3'}"
    if kind == "postgresql":
        where = f"{backend.describe()} holds no EAGLE history (the database is there, without its tables)"
    refused = f"eagle: error: {where}: has eagle serve run with these flags?"

    def empty() -> bool:
        if kind == "sqlite":
            return not (tmp_path / "nope.sqlite3").exists()
        db = backend.connect()
        try:
            return not holds_history(backend, db)
        finally:
            backend.close(db)

    assert main(["keys", "add", "bob", "--role", "admin", "--history", url]) == 2
    assert capsys.readouterr() == ("", f"{refused} (a new service's first key: eagle keys add ... --create)\n")
    new_history = " (a new history: eagle db upgrade ... --create; eagle serve starts one too)\n"
    for action in ("status", "upgrade"):
        assert main(["db", action, "--history", url]) == 2
        assert capsys.readouterr() == ("", refused + new_history)
    assert empty()
    assert main(["db", "upgrade", "--history", url, "--create"]) == 0
    assert capsys.readouterr().err == f"history {backend.describe()}: created at schema {SCHEMA_VERSION}\n"
    assert main(["db", "status", "--history", url]) == 0
    assert json.loads(capsys.readouterr().out)["schema"] == SCHEMA_VERSION
    assert main(["keys", "add", "bob", "--role", "admin", "--history", url]) == 0  # now it is there
    capsys.readouterr()


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_eagle_db_upgrade_names_what_it_adds_to_a_history_of_its_own_version(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest, capsys: pytest.CaptureFixture[str]
) -> None:
    """A history of this schema version an earlier eagle-iad of that version wrote: no ``outbox.refusals``, no
    ``station_faults``, no ``outbox_held`` index, no ``station_intake.files`` nor ``.unfiled`` (none has a version
    of its own). ``eagle db upgrade`` adds them and says so, each one, instead of 'up to date' or a list without
    them; each refusal stored before counts as the one file it counted for, and a content refused again after counts
    one more."""
    url = str(tmp_path / "same.sqlite3") if kind == "sqlite" else request.getfixturevalue("pg_url")
    backend = open_backend(url)
    db = backend.connect()
    for statement in schema_6_of_an_earlier_release(version=SCHEMA_VERSION):
        db.execute(backend.ddl(statement) if statement.startswith("CREATE") else statement)
    for digest, name, reason, appeared in (("d1", "a.png", "empty", 1.0), ("d2", "b.png", "not an image", 2.0)):
        db.execute(
            "INSERT INTO station_intake (station, digest, name, state, reason, appeared, time) "
            "VALUES ('line-1', ?, ?, 'failed', ?, ?, ?)",
            (digest, name, reason, appeared, appeared),
        )
    db.close()
    assert main(["db", "status", "--history", url]) == 0
    assert json.loads(capsys.readouterr().out)["pending"] == [
        {"version": None, "adds": "tables station_faults, station_refusals, station_runs; columns "
         "station_intake.files, station_intake.unfiled, outbox.refusals, outbox.last_refused, audit.category, "
         "stations.created_by; indexes outbox_held, audit_category"}
    ]  # fmt: skip
    assert main(["db", "upgrade", "--history", url]) == 0
    assert capsys.readouterr().err == (
        f"history {backend.describe()}: schema 7 -> 7 (no new version; added tables station_faults, station_refusals, "
        "station_runs; "
        "added columns "
        "station_intake.files, station_intake.unfiled, outbox.last_refused, outbox.refusals, audit.category, "
        "stations.created_by; added indexes outbox_held, audit_category)\n"
    )
    assert main(["db", "upgrade", "--history", url]) == 0
    assert capsys.readouterr().err == f"history {backend.describe()}: schema 7, up to date\n"
    store = InspectionStore(url)
    try:
        StationTables(store).write_failed("line-1", "d1", "c.png", "empty", 3.0)  # the same content, another file
        counted = store.read("SELECT digest, name, files FROM station_intake WHERE state = 'failed' ORDER BY digest")
        assert [tuple(row) for row in counted] == [("d1", "c.png", 2), ("d2", "b.png", 1)]
    finally:
        store.close()


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_an_older_audit_log_gets_its_rows_categories_where_they_tell_them(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """``audit.category`` added to a log an older eagle-iad kept (``?category=`` matched paths only, so a label of a
    tire part was not tire's): a category's row gets its category, a label of an inspection still in the history
    the inspection's; a label of one deleted since, and a key's row, stay without one (the deleted one's category
    is only in its free-text detail). ``?category=tire`` then lists the label, and a row without a category is
    still found by its path."""
    url = str(tmp_path / "old.sqlite3") if kind == "sqlite" else request.getfixturevalue("pg_url")
    backend = open_backend(url)
    db = backend.connect()
    older_audit = (
        "CREATE TABLE audit (seq INTEGER PRIMARY KEY AUTOINCREMENT, time TEXT NOT NULL, actor TEXT NOT NULL, "
        "role TEXT NOT NULL, method TEXT NOT NULL, route TEXT NOT NULL, path TEXT NOT NULL, status INTEGER NOT NULL, "
        "detail TEXT)"
    )
    for statement in [*OLD_SCHEMA_5, older_audit]:  # inspection 'a' is tire's
        db.execute(backend.ddl(statement) if statement.startswith("CREATE") else statement)
    for path in ("/v1/categories/tire/threshold", "/v1/inspections/a/label", "/v1/inspections/gone/label",
                 "/v1/keys", "/v1/categories/glass", "/v1/inspections/a"):  # fmt: skip
        db.execute("INSERT INTO audit (time, actor, role, method, route, path, status) VALUES ('t', 'x', 'admin', "
                   "'PUT', 'r', ?, 200)", (path,))  # fmt: skip
    db.close()
    store = InspectionStore(url)
    try:
        assert "audit.category" in store.upgrade.added_columns and "audit_category" in store.upgrade.added_indexes
        filled = [tuple(row) for row in store.read("SELECT path, category FROM audit ORDER BY seq")]
        assert filled == [("/v1/categories/tire/threshold", "tire"), ("/v1/inspections/a/label", "tire"),
                          ("/v1/inspections/gone/label", None), ("/v1/keys", None),
                          ("/v1/categories/glass", "glass"), ("/v1/inspections/a", "tire")]  # fmt: skip
        audit = AuditLog(store)
        assert [row["path"] for row in audit.page(10, 0, category="tire")[1]] == [
            "/v1/inspections/a", "/v1/inspections/a/label", "/v1/categories/tire/threshold"]  # fmt: skip
        with store.transaction() as db:  # an older replica's row after the upgrade: no category, its path says it
            db.execute("INSERT INTO audit (time, actor, role, method, route, path, status) VALUES ('t', 'x', "
                       "'admin', 'POST', 'r', '/v1/categories/glass/teach', 200)")  # fmt: skip
        assert [row["path"] for row in audit.page(10, 0, category="glass")[1]] == [
            "/v1/categories/glass/teach", "/v1/categories/glass"]  # fmt: skip
    finally:
        store.close()


#: Paths at the edges of what names a category or an inspection, with the category the fill gives each (inspection
#: ``a`` is tire's, ``label`` and ``x%_`` glass's): only exact, case-sensitive prefixes; an id is what follows
#: ``/v1/inspections/`` (less a ``/label`` after a non-empty id) and holds no ``/``; a name is what follows
#: ``/v1/categories/`` up to the first ``/``, never empty.
EDGE_PATHS = [
    ("/v1/categories/", None), ("/v1/categories//threshold", None), ("/V1/CATEGORIES/tire", None),
    ("/v1/categories/tire/fits/j1/events", "tire"), ("/v1/categories/ti re%", "ti re%"), ("/v1/categories", None),
    ("/v1/inspections/", None), ("/v1/inspections/a/", None), ("/v1/inspections/a/notes", None),
    ("/v1/inspections/a/label/label", None), ("/v1/inspections//label", None), ("/V1/INSPECTIONS/a", None),
    ("/v1/inspections/label", "glass"), ("/v1/inspections/label/label", "glass"), ("/v1/inspections/a/label", "tire"),
    ("/v1/inspections/x%_", "glass"), ("/v1/inspections/x%_/label", "glass"), ("/v1/inspections/X%_", None),
    ("/v1/inspectionsa", None), ("/v1/inspections/ab", None), ("/x/v1/categories/tire", None),
]  # fmt: skip


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_the_audit_category_fill_reads_paths_exactly(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """The fill is two set-based statements (review finding: one UPDATE per row inside the upgrade's transaction,
    which holds the schema lock); at the edges it gives what :func:`path_category` and the inspection route's
    pattern give, on both backends: exact prefixes (SQLite's ``LIKE`` would ignore case, and take ``%``, ``_``)."""
    url = str(tmp_path / "old.sqlite3") if kind == "sqlite" else request.getfixturevalue("pg_url")
    backend = open_backend(url)
    db = backend.connect()
    older_audit = (
        "CREATE TABLE audit (seq INTEGER PRIMARY KEY AUTOINCREMENT, time TEXT NOT NULL, actor TEXT NOT NULL, "
        "role TEXT NOT NULL, method TEXT NOT NULL, route TEXT NOT NULL, path TEXT NOT NULL, status INTEGER NOT NULL, "
        "detail TEXT)"
    )
    for statement in [*OLD_SCHEMA_5, older_audit]:
        db.execute(backend.ddl(statement) if statement.startswith("CREATE") else statement)
    for seq, other in ((2, "label"), (3, "x%_")):
        db.execute("INSERT INTO inspections VALUES (?, ?, 't', 'glass', 'y.png', 2.0, 1.0, 3.0, 'anomalous', 1, 'A', "
                   "1, '{}', '{}', NULL, NULL, NULL, NULL)", (other, seq))  # fmt: skip
    for path, _ in EDGE_PATHS:
        db.execute("INSERT INTO audit (time, actor, role, method, route, path, status) VALUES ('t', 'x', 'admin', "
                   "'PUT', 'r', ?, 200)", (path,))  # fmt: skip
    db.close()
    store = InspectionStore(url)
    try:
        filled = [tuple(row) for row in store.read("SELECT path, category FROM audit ORDER BY seq")]
    finally:
        store.close()
    assert filled == EDGE_PATHS
    assert [path_category(path) for path, _ in EDGE_PATHS if path.startswith("/v1/categories")] == [
        category for path, category in EDGE_PATHS if path.startswith("/v1/categories")]  # fmt: skip


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_a_newer_history_is_refused_untouched(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    url = str(tmp_path / "new.sqlite3") if kind == "sqlite" else request.getfixturevalue("pg_url")
    InspectionStore(url).close()
    backend = open_backend(url)
    db = backend.connect()
    db.execute("UPDATE schema_version SET version = 99")
    db.close()
    with pytest.raises(ConfigError, match="schema 99 is newer than this eagle-iad reads"):
        InspectionStore(url)
    db = backend.connect()
    assert db.execute("SELECT version FROM schema_version").fetchone()[0] == 99
    db.close()


@pytest.mark.parametrize("isolation", ["read committed", "repeatable read"])
def test_replicas_number_their_inspections_in_one_order(postgres: Any, isolation: str) -> None:
    """Two writers at once (two replicas' connections): every storage number once, 1..N, and a live feed
    that reads "after the last one I saw" misses none. Also on a database whose default isolation is
    ``repeatable read``, where a snapshot taken before the wait for the lock would number alike."""
    pg_url = postgres.new_database(default_transaction_isolation=isolation)
    stores = [InspectionStore(pg_url), InspectionStore(pg_url)]
    seen: list[int] = []
    done = threading.Event()

    def feed() -> None:  # the live feed's reader, polling while both write
        reader = InspectionStore(pg_url)
        last = 0
        deadline = time.monotonic() + wait_s(300)
        try:
            while (not done.is_set() or last < 60) and time.monotonic() < deadline:
                for seq, _ in reader.since(last):
                    seen.append(seq)
                    last = seq
                time.sleep(0.001)
        finally:
            reader.close()

    def write(store: InspectionStore, start: int) -> None:
        for index in range(start, start + 30):
            store.add(_record(index))

    threads = [threading.Thread(target=write, args=(store, 30 * n)) for n, store in enumerate(stores)]
    reader = threading.Thread(target=feed)
    reader.start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(wait_s(120))
    done.set()
    reader.join(wait_s(120))
    try:
        assert seen == list(range(1, 61))
        assert stores[0].page(100, 0)[0] == 60
    finally:
        for store in stores:
            store.close()


def test_an_idempotency_key_lost_to_another_replica_keeps_nothing(pg_url: str) -> None:
    first, second = InspectionStore(pg_url), InspectionStore(pg_url)

    def remember(key: str, record_id: str) -> Any:
        return lambda db: db.execute(
            "INSERT INTO idempotency (key, fingerprint, record_id, created) VALUES (?, ?, ?, ?)",
            (key, "f", record_id, "t"),
        )

    try:
        first.add(_record(1), remember("k", "i001"))
        with pytest.raises(AlreadyStoredError):
            second.add(_record(2), remember("k", "i002"))
        assert second.get("i002") is None and second.page(10, 0)[0] == 1
        second.add(_record(3))  # the connection is usable after the refused transaction
        found = second.by_idempotency_key("k")
        assert found is not None and found[1].id == "i001"
    finally:
        first.close()
        second.close()


_HOLD = """
import sys, time
from eagle_iad.history import open_backend
lease = open_backend(sys.argv[1]).try_lock("fit:tire")
print("held" if lease is not None else "busy", flush=True)
time.sleep(600)
"""


def test_a_named_lock_excludes_other_processes_and_dies_with_its_holder(pg_url: str) -> None:
    backend = open_backend(pg_url)
    holder = subprocess.Popen([sys.executable, "-c", _HOLD, pg_url], stdout=subprocess.PIPE, text=True,
                              env={**os.environ})  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        assert backend.try_lock("fit:tire") is None  # another process holds it
        other = backend.try_lock("fit:wheel")  # another name is free
        assert other is not None
        other.release()
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=wait_s(30))
        deadline = time.monotonic() + wait_s(30)
        while (lease := backend.try_lock("fit:tire")) is None:  # the server ends the dead session's locks
            assert time.monotonic() < deadline, "the killed holder's lock was never released"
            time.sleep(0.05)
        assert backend.try_lock("fit:tire") is None  # held again, now by this process
        lease.release()
        again = backend.try_lock("fit:tire")
        assert again is not None
        again.release()
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()


def test_the_server_drops_a_vanished_replicas_locks_within_seconds_not_hours(pg_url: str) -> None:
    """A replica whose machine lost power never closes its connections: the server ends them (and their
    locks: the replica's stations and fits) only when its own TCP keepalives give up, which by the operating
    system's default is after more than two hours. Every connection the history opens asks for the same
    prompt keepalives on the server's side as on the client's (a lock connection sits idle at the server)."""
    from eagle_iad.history.postgresql import KEEPALIVES

    backend = open_backend(pg_url)
    lease = backend.try_lock("station:line-1")
    history = backend.connect()
    try:
        assert lease is not None
        for db in (lease._db, history):  # type: ignore[attr-defined]
            shown = {
                name: str(db.execute(f"SHOW {name}").fetchone()[0])
                for name in (
                    "tcp_keepalives_idle",
                    "tcp_keepalives_interval",
                    "tcp_keepalives_count",
                    "tcp_user_timeout",
                )
            }
            assert shown == {"tcp_keepalives_idle": "10", "tcp_keepalives_interval": "5", "tcp_keepalives_count": "3",
                             "tcp_user_timeout": "20000"}, shown  # fmt: skip
        assert KEEPALIVES["keepalives_idle"] == 10 and KEEPALIVES["tcp_user_timeout"] == 20000
    finally:
        history.close()
        if lease is not None:
            lease.release()


def test_sqlite_locks_are_the_processes_own_per_file(tmp_path: Path) -> None:
    one, two = open_backend(tmp_path / "a.sqlite3"), open_backend(tmp_path / "b.sqlite3")
    lease = one.try_lock("fit:c")
    assert lease is not None and one.try_lock("fit:c") is None
    other = two.try_lock("fit:c")  # another history's lock of the same name
    assert other is not None
    lease.release()
    other.release()
    again = one.try_lock("fit:c")
    assert again is not None
    again.release()


def test_history_urls_are_checked_and_passwords_never_shown(tmp_path: Path) -> None:
    assert isinstance(open_backend(f"sqlite:///{tmp_path}/h.sqlite3"), SqliteHistory)
    assert open_backend(f"sqlite:///{tmp_path}/h.sqlite3").describe() == str(tmp_path / "h.sqlite3")
    with pytest.raises(ConfigError, match=r"^history mysql://u:\*\*\*@h/db: unknown kind of database "
                       r"'mysql'; use one of postgresql://\.\.\., sqlite://\.\.\.$"):  # fmt: skip
        open_backend("mysql://u:secret@h/db")
    with pytest.raises(ConfigError, match="sqlite:///relative/file or sqlite:////absolute/file"):
        open_backend("sqlite://")
    assert redact("postgresql://eagle:s3cret@db.plant:5433/eagle") == "postgresql://eagle:***@db.plant:5433/eagle"
    port = free_port()  # nothing listens there
    with pytest.raises(ConfigError) as refused:
        InspectionStore(f"postgresql://eagle:s3cret@127.0.0.1:{port}/eagle")
    message = str(refused.value)
    assert message.startswith(f"history postgresql://eagle:***@127.0.0.1:{port}/eagle: cannot connect (")
    assert "s3cret" not in message


def test_sql_is_translated_outside_quotes_only() -> None:
    assert positional_to_format("SELECT '?%' || x FROM t WHERE a = ? AND b LIKE '%?' AND c % 2 = ?") == (
        "SELECT '?%' || x FROM t WHERE a = %s AND b LIKE '%?' AND c %% 2 = %s"
    )
    assert positional_to_format("SELECT json_extract(verdict, '$.expert_decision') FROM i") == (
        "SELECT (verdict::jsonb ->> 'expert_decision') FROM i"
    )


def test_a_backend_registered_by_a_plugin_serves_the_history(tmp_path: Path) -> None:
    """One class, one registration: a new scheme works wherever a history URL is taken."""

    @history_backend("sqlite-audited")
    class Audited(SqliteHistory):
        opened: ClassVar[list[str]] = []

        def connect(self) -> Any:
            Audited.opened.append(str(self.path))
            return super().connect()

    try:
        store = InspectionStore(f"sqlite-audited:///{tmp_path}/h.sqlite3")
        store.add(_record(1))
        assert store.get("i001") == _record(1) and Audited.opened == [str(tmp_path / "h.sqlite3")]
        store.close()
        assert main(["db", "upgrade", "--history", f"sqlite-audited:///{tmp_path}/h.sqlite3"]) == 0
        assert len(Audited.opened) == 2
    finally:
        BACKENDS.remove("sqlite-audited")


def test_passwords_are_hidden_however_the_url_is_written() -> None:
    assert redact("postgresql://u:p%zzsecret@h/db") == "postgresql://u:***@h/db"
    assert redact("postgresql://u:pw@h1:5432,h2:5433/db?sslmode=require") == (
        "postgresql://u:***@h1:5432,h2:5433/db?sslmode=require"
    )
    assert redact("postgresql://u@h/db?sslmode=require&password=hunter2&x=1") == (
        "postgresql://u@h/db?sslmode=require&password=***&x=1"
    )
    assert redact("postgresql://h/db") == "postgresql://h/db"
    # what libpq reads as the password, whatever it holds: '?', '#', '@', and '#' in a parameter
    assert redact("postgresql://u:pa?ss@host/db") == "postgresql://u:***@host/db"
    assert redact("postgresql://u:pa#ss@host/db") == "postgresql://u:***@host/db"
    assert redact("postgresql://u:p@ss@host/db") == "postgresql://u:***@host/db"
    assert redact("postgresql://u@h/db?password=ab#cd") == "postgresql://u@h/db?password=***"
    assert redact("postgresql://u:pw@[::1]:5432/db") == "postgresql://u:***@[::1]:5432/db"
    # the TLS key's passphrase, and each password however often given (the names percent-decoded, as libpq does)
    assert redact("postgresql://u@h/db?sslpassword=k3y&sslmode=verify-full") == (
        "postgresql://u@h/db?sslpassword=***&sslmode=verify-full"
    )
    assert redact("postgresql://u@h/db?password=a&password=b&pass%77ord=c") == (
        "postgresql://u@h/db?password=***&password=***&pass%77ord=***"
    )
    assert set(secrets_of("postgresql://u@h/db?sslpassword=k3y&pass%77ord=c")) >= {"k3y", "c"}
    assert set(secrets_of("postgresql://u:pa?ss@host/db")) >= {"pa?ss"}
    assert scrub("could not translate host name", "postgresql://u:a@h/db") == "could not translate host name"
    assert scrub(
        'invalid percent-encoded token: "p%zzsecret" and hunter2', "postgresql://u:p%zzsecret@h/db?password=hunter2"
    ) == ('invalid percent-encoded token: "***" and ***')


def test_a_history_that_goes_away_after_start_is_unavailable_not_misconfigured(postgres: Any, pg_url: str) -> None:
    """A connection that worked once and fails now is HistoryUnavailableError (the service's 503); a lost lock
    connection says so through held(), and releasing it does not raise."""
    import psycopg

    store = InspectionStore(pg_url)
    store.add(_record(1))
    backend = store.backend
    lease = backend.try_lock("fit:c")
    assert lease is not None and lease.held()
    with postgres.connect("postgres") as admin:  # end every session of this database, as a restart would
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            (pg_url.rsplit("/", 1)[1],),
        )
    assert not lease.held()
    lease.release()  # no error: the server released it with the session
    with pytest.raises(psycopg.OperationalError):  # the request that meets the dropped connection (503)
        store.page(5, 0)
    assert store.page(5, 0)[0] == 1  # the next one connects again
    store.close()
    moved = type(backend)(pg_url.replace(f":{postgres.port}/", f":{free_port()}/"))
    moved.opened = True  # it had connected before: the server is away now, not the URL wrong
    with pytest.raises(HistoryUnavailableError, match="cannot connect"):
        moved.connect()


def test_healthz_reports_a_history_that_went_away_and_came_back(postgres: Any, pg_url: str, tmp_path: Path) -> None:
    """A PostgreSQL outage is visible: ``/healthz`` answers 503 ``degraded`` with the history unavailable (it said
    ok throughout), without naming the server (it is public); the log says so once, and once when it is back."""
    import logging

    from fastapi.testclient import TestClient

    from eagle_iad.service import ServiceSettings, create_app

    said: list[str] = []

    class Lines(logging.Handler):  # on the store's own logger: whatever another test did to "eagle_iad"'s
        def emit(self, record: logging.LogRecord) -> None:
            said.append(record.getMessage())

    logger = logging.getLogger("eagle_iad.service.store")
    lines = Lines(logging.WARNING)
    logger.addHandler(lines)
    (tmp_path / "models").mkdir()
    settings = ServiceSettings(models_dir=tmp_path / "models", state_dir=tmp_path / "state", history=pg_url)
    try:
        _went_away_and_came_back(postgres, pg_url, TestClient(create_app(settings)))
    finally:
        logger.removeHandler(lines)
    assert len(said) == 2, said
    assert said[0].startswith(f"history {redact(pg_url)} is unavailable (")
    assert said[0].endswith("; seen by /healthz); requests that need it answer 503 history_unavailable until it is "
                            "back")  # fmt: skip
    assert re.fullmatch(rf"history {re.escape(redact(pg_url))} is available again after \d+ s; 0 requests were refused "
                        r"\(503\) meanwhile", said[1]), said  # fmt: skip


def test_an_outage_is_one_line_when_requests_meet_it_and_one_with_their_count_when_it_ends(
    postgres: Any, pg_url: str, tmp_path: Path
) -> None:
    """Every request refused during a PostgreSQL outage logged its own WARNING (15 identical lines in 11 s at
    1.5 requests/s). Now: one line when the history goes away (naming the server, password hidden, and the request
    that met it), none for the requests refused after it, and one when it is back with their count; /metrics
    still answers meanwhile, with ``eagle_history_up 0`` (1 before and after)."""
    import logging

    from fastapi.testclient import TestClient

    from eagle_iad.service import ServiceSettings, create_app

    said: list[str] = []

    class Lines(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            said.append(record.getMessage())

    loggers = [logging.getLogger(name) for name in ("eagle_iad.service.store", "eagle_iad.service.errors")]
    lines = Lines(logging.WARNING)
    for logger in loggers:
        logger.addHandler(lines)
    (tmp_path / "models").mkdir()
    settings = ServiceSettings(models_dir=tmp_path / "models", state_dir=tmp_path / "state", history=pg_url)
    try:
        with TestClient(create_app(settings)) as client:
            assert "\neagle_history_up 1.0\n" in client.get("/metrics").text
            backend = client.app.state.service.store.backend
            conninfo = backend.conninfo
            backend.conninfo = conninfo.replace(f":{postgres.port}/", f":{free_port()}/")  # the server away
            with postgres.connect("postgres") as admin:
                admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s "
                    "AND pid <> pg_backend_pid()", (pg_url.rsplit("/", 1)[1],),
                )  # fmt: skip
            for _ in range(5):
                answer = client.get("/v1/inspections")
                assert (answer.status_code, answer.json()["error"]["code"]) == (503, "history_unavailable")
            metrics = client.get("/metrics")
            assert metrics.status_code == 200, metrics.text
            assert "\neagle_history_up 0.0\n" in metrics.text
            assert metrics.text.count("# TYPE eagle_history_up gauge") == 1
            assert client.get("/healthz").status_code == 503
            backend.conninfo = conninfo
            assert client.get("/v1/inspections").status_code == 200
            assert "\neagle_history_up 1.0\n" in client.get("/metrics").text
    finally:
        for logger in loggers:
            logger.removeHandler(lines)
    assert len(said) == 2, said
    assert said[0].startswith(f"history {redact(pg_url)} is unavailable (")
    assert said[0].endswith("; seen by GET /v1/inspections); requests that need it answer 503 history_unavailable "
                            "until it is back")  # fmt: skip
    assert re.fullmatch(rf"history {re.escape(redact(pg_url))} is available again after \d+ s; 5 requests were refused "
                        r"\(503\) meanwhile", said[1]), said  # fmt: skip


def test_metrics_during_an_unreachable_postgresql_tries_one_short_connection_per_need(
    postgres: Any, pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A scrape during an unreachable PostgreSQL took 30-40 s (a blackholed server): the key check, the CAAS rate
    and ``eagle_history_up`` each waited the 10 s connect timeout, past Prometheus' 10 s scrape timeout. Now every
    connection /metrics opens uses METRICS_CONNECT_TIMEOUT_S (requests keep the 10 s), the history's gauge is read
    first, and while it finds the history away the readers that need it are not tried: two short attempts (the
    key, the gauge), and an answer with ``eagle_history_up 0``. A port nothing listens on stands for the
    blackholed server (it refuses at once; the timeouts asked for are what is checked, not the time taken)."""
    import psycopg
    from fastapi.testclient import TestClient

    from eagle_iad.history.postgresql import CONNECT_TIMEOUT_S
    from eagle_iad.service import ServiceSettings, create_app
    from eagle_iad.service.access import METRICS_CONNECT_TIMEOUT_S
    from eagle_iad.service.keys import Role

    asked: list[int] = []
    real_connect = psycopg.connect

    def connect(*args: Any, **kwargs: Any) -> Any:
        asked.append(kwargs["connect_timeout"])
        return real_connect(*args, **kwargs)

    monkeypatch.setattr(psycopg, "connect", connect)
    (tmp_path / "models").mkdir()
    app = create_app(ServiceSettings(models_dir=tmp_path / "models", state_dir=tmp_path / "state", history=pg_url))
    scraper = {"Authorization": f"Bearer {app.state.service.keys.add('scraper', Role.viewer)}"}
    with TestClient(app) as client:
        before = client.get("/metrics", headers=scraper)
        assert "\neagle_history_up 1.0\n" in before.text and "\neagle_history_caas_rate " in before.text
        backend = client.app.state.service.store.backend
        backend.conninfo = backend.conninfo.replace(f":{postgres.port}/", f":{free_port()}/")  # the server away
        with postgres.connect("postgres") as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                (pg_url.rsplit("/", 1)[1],),
            )
        asked.clear()
        metrics = client.get("/metrics", headers=scraper)
        assert metrics.status_code == 200, metrics.text
        assert "\neagle_history_up 0.0\n" in metrics.text
        assert "eagle_history_caas_rate" not in metrics.text  # not tried: it would have waited for a connection too
        assert "eagle_http_requests_total" in metrics.text  # what needs no history is there
        # the gauge's (and the key check's, where its use of the dropped connection did not fail first): short ones
        assert asked in ([2], [2, 2]) and METRICS_CONNECT_TIMEOUT_S == 2, asked
        asked.clear()
        assert client.get("/v1/inspections", headers=scraper).status_code == 503
        assert asked and set(asked) == {CONNECT_TIMEOUT_S}  # a request keeps the longer one


def _went_away_and_came_back(postgres: Any, pg_url: str, client: Any) -> None:
    with client:
        answer = client.get("/healthz")
        assert (answer.status_code, answer.json()["status"], answer.json()["history"]) == (200, "ok", "ok")
        backend = client.app.state.service.store.backend
        conninfo = backend.conninfo
        backend.conninfo = conninfo.replace(f":{postgres.port}/", f":{free_port()}/")  # the server away
        with postgres.connect("postgres") as admin:  # and its sessions ended, as a stop would
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                (pg_url.rsplit("/", 1)[1],),
            )
        for _ in range(3):
            answer = client.get("/healthz")
            assert answer.status_code == 503, answer.text
            assert answer.json()["status"] == "degraded"
            assert answer.json()["history"] == "unavailable: the history database is unreachable"
        backend.conninfo = conninfo
        answer = client.get("/healthz")
        assert (answer.status_code, answer.json()["status"], answer.json()["history"]) == (200, "ok", "ok")


def test_a_file_that_is_not_a_history_database_is_named_not_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = tmp_path / "fake.sqlite3"
    fake.write_text("garbage, not a database\n" * 100)
    with pytest.raises(ConfigError) as refused:
        open_backend(fake).connect()
    assert str(refused.value) == (
        f"history {fake}: not a database, or a damaged one (file is not a database); give the history file that "
        "eagle serve or eagle station writes (a damaged one: restore it from a backup), or a new path"
    )
    assert main(["review", "list", "--history", str(fake)]) == 2
    assert capsys.readouterr().err == f"eagle: error: {refused.value}\n"
    assert fake.read_text() == "garbage, not a database\n" * 100  # left as it was


def test_a_label_history_keeps_its_newest_entries_and_a_revision_gone_from_it_is_a_conflict(tmp_path: Path) -> None:
    """A part relabelled without end keeps its newest ``LABEL_HISTORY_KEPT`` entries (the row every listing reads
    stays bounded; the audit log keeps each one); the first kept revision says how many went. A retry based on a
    kept revision is still recognised, and a stale change still refused."""
    from eagle_iad.record import LABEL_HISTORY_KEPT
    from eagle_iad.service.store import LabelChangedError

    store = InspectionStore(tmp_path / "h.sqlite3")
    try:
        store.add(_record(1))
        total = LABEL_HISTORY_KEPT + 5
        for revision in range(total):
            label = ("normal", "anomalous")[revision % 2]
            store.set_label("i001", label, f"2026-12-05T00:{revision // 60:02d}:{revision % 60:02d}+00:00",
                            by="omar", note=f"n{revision}", expected=revision)  # fmt: skip
        record = store.get("i001")
        assert record is not None and record.label_revision == total
        history = record.label_history or []
        assert [entry["revision"] for entry in history] == list(range(6, total + 1))
        assert history[0]["note"] == "n5" and history[-1]["note"] == f"n{total - 1}"
        # omar's own last label again, based on a revision still kept: the retry is recognised (nothing written)
        again = store.set_label("i001", "normal", "2026-12-05T01:00:00+00:00", by="omar", note=f"n{total - 1}",
                                expected=total - 1)  # fmt: skip
        assert again is not None and again.label_revision == total
        # another label based on revision 3 (gone from the kept entries): refused, as any stale change
        with pytest.raises(LabelChangedError):
            store.set_label("i001", "anomalous", "2026-12-05T01:00:01+00:00", by="ana", expected=3)
        final = store.get("i001")
        assert final is not None and len(final.label_history or []) == LABEL_HISTORY_KEPT
    finally:
        store.close()


SCHEMA_3_WITH_FIT_JOBS = [  # last week's release's history: inspections (labelled) and fit jobs, nothing of schema 4-6
    "CREATE TABLE schema_version (version INTEGER NOT NULL)",
    "INSERT INTO schema_version VALUES (3)",
    "CREATE TABLE inspections (id TEXT PRIMARY KEY, seq INTEGER NOT NULL UNIQUE, time TEXT NOT NULL, "
    "category TEXT NOT NULL, image_name TEXT NOT NULL, score REAL, tau REAL, s_max REAL, decision TEXT, "
    "in_band INTEGER NOT NULL, answer TEXT, caas_applied INTEGER NOT NULL, verdict TEXT NOT NULL, "
    "pictures TEXT NOT NULL, label TEXT, label_time TEXT)",
    *(
        f"INSERT INTO inspections VALUES ('r{i}', {i}, 't{i}', 'tire', '{i}.png', {i / 3}, 1.0, 3.0, 'normal', 0, "
        f"NULL, 0, '{{}}', '{{}}', {'NULL' if i % 2 else repr('anomalous')}, NULL)"
        for i in range(1, 6)
    ),
    "CREATE TABLE fit_jobs (id TEXT PRIMARY KEY, created TEXT NOT NULL, record TEXT NOT NULL)",
    "INSERT INTO fit_jobs VALUES ('j1', 't0', '{}')",
]


def _schema_3_history(path: Path) -> list[tuple[Any, ...]]:
    """An SQLite history as last week's release (schema 3) left it; its inspections' rows, in order."""
    import sqlite3

    with sqlite3.connect(path) as db:
        for statement in SCHEMA_3_WITH_FIT_JOBS:
            db.execute(statement)
    with sqlite3.connect(path) as db:
        return db.execute("SELECT * FROM inspections ORDER BY seq").fetchall()


def test_a_migration_of_an_sqlite_history_keeps_a_copy_at_its_older_schema_that_the_older_release_reads(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A schema-3 history (last week's release) migrated (then to 6) had no way back: the older release refuses it
    and its manual had no backup section. Now the open that migrates it first writes ``<file>.schema3.bak`` (SQLite's
    backup API), at schema 3 with every row, in the old layout, one file; the WARNING names it; a second open (and
    a later migration from that schema) writes none and leaves the one there byte for byte. Without room for it (the
    margin over its size larger than any disk), none is written, the WARNING says so and the migration goes on."""
    import logging
    import sqlite3

    from eagle_iad.history import keep

    history = tmp_path / "h.sqlite3"
    rows = _schema_3_history(history)
    copy = tmp_path / "h.sqlite3.schema3.bak"
    (tmp_path / ".h.sqlite3.schema3.bak.4242.tmp").write_bytes(b"a copy a kill cut short")
    caplog.set_level(logging.WARNING, logger="eagle_iad.service.store")
    store = InspectionStore(history)
    try:
        assert store.kept == keep.KeptCopy(3, copy)
        assert (store.upgrade.before, store.upgrade.after) == (3, SCHEMA_VERSION)
        store.log_upgrade()
        assert (
            caplog.records[-1]
            .getMessage()
            .endswith(
                f"; a copy at schema 3 is kept at {copy}: the older eagle-iad runs on it (docs/OPERATIONS.md, "
                "'Going back to an older release')"
            )
        )
        assert [r.id for r in store.page(10, 0)[1]] == ["r5", "r4", "r3", "r2", "r1"]
    finally:
        store.close()
    # one file (no -wal beside it), and no leftover of an earlier try
    assert sorted(p.name for p in tmp_path.iterdir() if "bak" in p.name) == ["h.sqlite3.schema3.bak"]
    with closing(sqlite3.connect(copy)) as old:
        assert old.execute("SELECT version FROM schema_version").fetchall() == [(3,)]
        assert old.execute("SELECT * FROM inspections ORDER BY seq").fetchall() == rows
        assert old.execute("SELECT * FROM fit_jobs").fetchall() == [("j1", "t0", "{}")]
        assert "label_by" not in {row[1] for row in old.execute("PRAGMA table_info(inspections)")}
    kept_bytes = copy.read_bytes()
    store = InspectionStore(history)
    store.close()
    assert store.kept is None and store.upgrade.before == SCHEMA_VERSION
    # another schema-3 history of that name migrated later (a restored one): the copy there is kept as it is
    history.unlink()
    for leftover in tmp_path.glob("h.sqlite3-*"):
        leftover.unlink()
    _schema_3_history(history)
    store = InspectionStore(history)
    store.close()
    assert store.kept == keep.KeptCopy(3, copy) and copy.read_bytes() == kept_bytes

    # no room: no copy, said plainly, and the history is migrated all the same
    full = tmp_path / "full.sqlite3"
    rows = _schema_3_history(full)
    monkeypatch.setattr(keep, "COPY_MARGIN_BYTES", 1 << 62)
    store = InspectionStore(full)
    try:
        store.log_upgrade()
        assert store.kept is not None and store.kept.path is None and store.upgrade.after == SCHEMA_VERSION
        said = caplog.records[-1].getMessage()
        assert re.search(
            rf"; no copy at schema 3 was kept: not enough free disk in {re.escape(str(tmp_path))} \([0-9.]+ MiB free, "
            r"[0-9.]+ MiB needed\); the migration goes on, so only a backup taken before it leads back "
            r"\(docs/OPERATIONS.md, 'Going back to an older release'\)$",
            said,
        ), said
        assert len(store.page(10, 0)[1]) == len(rows) == 5
    finally:
        store.close()
    assert not list(tmp_path.glob("full.sqlite3.schema*"))
