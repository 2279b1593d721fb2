"""The review queue (issue 24): which inspections wait for a person and why, over the store, the API and the CLI.

Every reason of eagle_iad/review.py is exercised by a row made for it, next to rows that must stay out
(clear verdicts, labelled ones), and the answers are checked exactly.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from conftest import LiveServer, wait_s
from fastapi.testclient import TestClient

from eagle_iad.review import REASONS
from eagle_iad.service.store import Inspection, InspectionStore

#: (id, category, in_band, near_threshold, unrecognised, decision, expert_decision, label): the history written here.
ROWS: list[tuple[str, str, bool, bool | None, bool | None, str | None, str | None, str | None]] = [
    ("clear", "mono", False, False, False, "normal", None, None),  # a clear expert verdict: not queued
    ("band", "mono", True, True, False, "anomalous", None, None),
    ("close", "mono", False, True, False, "normal", None, None),
    ("done", "mono", True, True, False, "anomalous", None, "normal"),  # labelled: out of the queue
    ("foreign", "mono", False, False, True, "unrecognised", None, None),
    ("disagree", "mono", False, False, False, "normal", "anomalous", None),  # the MLLM said no, the expert yes
    ("agree", "mono", False, False, False, "anomalous", "anomalous", None),
    ("unread", "mono", False, None, None, None, "normal", None),  # a custom question: no anomaly decision, not queued
    ("garbled", "mono", False, False, False, "unparsable", "anomalous", None),  # a reply that cannot be read
    ("odd", "mono", False, False, True, "normal", "unrecognised", None),  # not a disagreement: not recognised
    ("other", "tiles", True, False, False, "anomalous", None, None),
]


def _history(path: Path | str) -> None:
    store = InspectionStore(path)
    for index, (ident, category, in_band, near, foreign, decision, expert, label) in enumerate(ROWS):
        time = f"2026-12-04T08:{index:02d}:00.000+00:00"
        verdict: dict[str, Any] = {} if expert is None else {"expert_decision": expert, "reply": "..."}
        store.add(Inspection(id=ident, time=time, category=category, image_name=f"{ident}.png", score=1.0 + index,
                             tau=5.0, s_max=6.0, decision=decision, in_band=in_band, answer=None, caas_applied=False,
                             verdict=verdict, pictures={}, label=label, label_time=None if label is None else time,
                             near_threshold=near, unrecognised=foreign))  # fmt: skip
    store.close()


def test_the_queue_holds_each_unsure_unlabelled_inspection_with_its_reasons(tmp_path: Path) -> None:
    _history(tmp_path / "h.sqlite3")
    store = InspectionStore(tmp_path / "h.sqlite3")
    try:
        total, rows = store.review(50)
        assert total == 7
        assert [(row.id, [r.code for r in reasons]) for row, reasons in rows] == [
            ("band", ["band", "close_call"]),
            ("close", ["close_call"]),
            ("foreign", ["unrecognised"]),
            ("disagree", ["disagreement"]),
            ("garbled", ["undecided"]),
            ("odd", ["unrecognised"]),
            ("other", ["band"]),
        ]
        assert [row.id for row, _ in store.review(2, 2)[1]] == ["foreign", "disagree"]  # oldest first, paged
        assert [row.id for row, _ in store.review(50, 0, "tiles")[1]] == ["other"]
        labelled = store.set_label("close", "normal", "2026-12-04T09:00:00.000+00:00", by="anna", note="dust, wiped")
        assert labelled is not None and (labelled.label_by, labelled.label_note) == ("anna", "dust, wiped")
        assert store.review(50)[0] == 6
        cleared = store.set_label("close", None, "2026-12-04T09:01:00.000+00:00", by="anna")
        assert cleared is not None and (cleared.label, cleared.label_by, cleared.label_note) == (None, None, None)
        assert store.review(50)[0] == 7  # back in the queue
    finally:
        store.close()


def test_the_api_serves_the_queue_and_a_label_with_a_note_takes_an_item_out(tmp_path: Path) -> None:
    from eagle_iad.service import ServiceSettings, create_app

    settings = ServiceSettings(models_dir=tmp_path / "models", state_dir=tmp_path / "state")
    _history(settings.database)
    with TestClient(create_app(settings)) as client:
        page = client.get("/v1/review", params={"limit": 2}).json()
        assert (page["total"], page["limit"], page["offset"], page["next_offset"]) == (7, 2, 0, 2)
        assert page["reasons"] == [{"code": r.code, "words": r.words} for r in REASONS]
        first = page["items"][0]
        assert first["record"]["id"] == "band" and first["record"]["image_name"] == "band.png"
        assert first["reasons"] == [{"code": "band", "words": REASONS[0].words},
                                    {"code": "close_call", "words": REASONS[1].words}]  # fmt: skip
        answer = client.put("/v1/inspections/band/label", json={"label": "anomalous", "note": "  crack at the busbar ",
                                                                "by": "Anna (shift B)"})  # fmt: skip
        assert answer.status_code == 200
        record = answer.json()
        # the open local mode lets the reviewer name themself; the note is kept trimmed
        assert (record["label"], record["label_by"], record["label_note"]) == ("anomalous", "Anna (shift B)",
                                                                                "crack at the busbar")  # fmt: skip
        assert [i["record"]["id"] for i in client.get("/v1/review").json()["items"]] == [
            "close", "foreign", "disagree", "garbled", "odd", "other"]  # fmt: skip
        assert client.get("/v1/review", params={"category": "tiles"}).json()["total"] == 1
        too_long = client.put("/v1/inspections/close/label", json={"label": "normal", "note": "x" * 501})
        assert too_long.status_code == 400
        assert client.get("/v1/review", params={"category": ".."}).status_code == 400


def test_eagle_review_lists_and_labels_from_a_terminal(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from eagle_iad.cli import main
    from eagle_iad.cli.db import os_user

    db = tmp_path / "h.sqlite3"
    _history(db)
    assert main(["review", "list", "--db", str(db), "--category", "mono", "--limit", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "6 to review (the oldest 2 shown)"
    assert lines[1] == ("band  2026-12-04T08:01:00.000+00:00  mono  band.png  score 2.00 / threshold 5.00  anomalous: "
                        f"{REASONS[0].words}; {REASONS[1].words}")  # fmt: skip
    assert lines[2].startswith("close  ") and lines[2].endswith(f"normal: {REASONS[1].words}")
    assert main(["review", "list", "--db", str(db), "--category", "mono", "--limit", "3"]) == 0
    # finding 6: an obvious crack over much of a cell is unrecognised too; the words must not rule it out
    assert capsys.readouterr().out.splitlines()[3].endswith(
        "unrecognised: not like the training images (another product, a blocked camera, or a defect over much of "
        "the part?)")  # fmt: skip
    assert main(["review", "list", "--db", str(db), "--json"]) == 0
    assert [i["record"]["id"] for i in json.loads(capsys.readouterr().out)["items"]][:2] == ["band", "close"]
    assert main(["review", "label", "foreign", "defective", "--note", "a glove in the frame", "--by", "kai",
                 "--db", str(db)]) == 0  # fmt: skip
    stored = json.loads(capsys.readouterr().out)
    # --by is anyone's word: the record says it came from this machine's login, not from a keyed user (finding 1)
    assert (stored["label"], stored["label_by"], stored["label_note"]) == (
        "anomalous", f"cli:{os_user()} as kai", "a glove in the frame")  # fmt: skip
    assert main(["review", "label", "band", "normal", "--by", f" {os_user()} ", "--db", str(db)]) == 0
    assert json.loads(capsys.readouterr().out)["label_by"] == f"cli:{os_user()}"  # its own name: nothing to mark
    assert main(["review", "label", "nope", "normal", "--db", str(db)]) == 2
    assert f"no inspection 'nope' in {db}" in capsys.readouterr().err
    assert main(["review", "list", "--db", str(tmp_path / "missing.sqlite3")]) == 2
    assert "no history at" in capsys.readouterr().err


def _http(method: str, url: str, body: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
    """``(status, JSON)`` of one real HTTP request (errors included: their JSON body)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=wait_s(30)) as answer:
            return int(answer.status), dict(json.loads(answer.read()))
    except urllib.error.HTTPError as refused:
        return int(refused.code), dict(json.loads(refused.read()))


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_a_label_based_on_a_revision_someone_moved_is_refused_and_theirs_is_kept(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Two operators on one part: each label carries the ``label_revision`` its operator saw, so the second
    is refused (409 ``label_changed``, naming who labelled it and when) instead of silently replacing the
    first, which stays stored. On PostgreSQL the two work on two replicas sharing the history, and two labels
    sent at the same moment on the same revision: exactly one is stored. Without ``expected_revision`` a label
    is stored as before (the last wins), so older clients keep working."""
    from eagle_iad.service import ServiceSettings, create_app

    url = str(tmp_path / "h.sqlite3") if kind == "sqlite" else request.getfixturevalue("postgres").new_database()
    _history(url)
    replicas = 1 if kind == "sqlite" else 2
    apps = [create_app(ServiceSettings(models_dir=tmp_path / "models", state_dir=tmp_path / f"state{i}",
                                       history=url, files=tmp_path / "files")) for i in range(replicas)]  # fmt: skip
    with ExitStack() as serving:
        servers = [serving.enter_context(LiveServer(app)) for app in apps]
        ana, kai = servers[0].base + "/v1/inspections", servers[-1].base + "/v1/inspections"
        seen_by_ana = _http("GET", f"{ana}/band")[1]
        seen_by_kai = _http("GET", f"{kai}/band")[1]
        assert seen_by_ana["label_revision"] is None  # never labelled: revision 0, sent as it is (null)
        based_on_ana, based_on_kai = seen_by_ana["label_revision"], seen_by_kai["label_revision"]
        status, stored = _http(
            "PUT",
            f"{ana}/band/label",
            {"label": "anomalous", "note": "crack", "by": "ana", "expected_revision": based_on_ana},
        )
        assert status == 200 and (stored["label"], stored["label_revision"]) == ("anomalous", 1), stored
        status, refused = _http(
            "PUT", f"{kai}/band/label", {"label": "normal", "by": "kai", "expected_revision": based_on_kai}
        )
        assert status == 409 and refused["error"]["code"] == "label_changed", refused
        message = refused["error"]["message"]
        # in the words a person labels with: the image's name, "defective", a readable UTC time, no revisions
        at = stored["label_time"][:10] + " " + stored["label_time"][11:19] + " UTC"
        assert message == (
            f"band.png was labelled defective by ana at {at} (note: crack) while you were looking. Your label was "
            "not stored: look at it again, then label it if you still disagree."
        ), message
        # the same facts as fields: a client words them itself, the time in its own zone
        assert refused["error"]["label_changed"] == {
            "id": "band", "image_name": "band.png", "label": "anomalous", "labelled_by": "ana",
            "labelled_at": stored["label_time"], "label_note": "crack", "label_revision": 1,
        }, refused  # fmt: skip
        kept = _http("GET", f"{kai}/band")[1]
        assert (kept["label"], kept["label_by"], kept["label_note"], kept["label_revision"]) == (
            "anomalous", "ana", "crack", 1)  # fmt: skip
        # kai looked again (revision 1) and still disagrees: now it is stored, as revision 2
        status, relabelled = _http("PUT", f"{kai}/band/label", {"label": "normal", "by": "kai", "expected_revision": 1})
        assert status == 200 and (relabelled["label_by"], relabelled["label_revision"]) == ("kai", 2), relabelled
        # a clear is a revision too: a label based on the one before it is refused, saying it was cleared
        assert _http("PUT", f"{ana}/band/label", {"label": None, "expected_revision": 2})[0] == 200
        status, refused = _http("PUT", f"{kai}/band/label", {"label": "normal", "by": "kai", "expected_revision": 2})
        assert status == 409 and refused["error"]["message"].startswith("band.png had its label cleared while you"), (
            refused
        )
        assert refused["error"]["label_changed"]["label"] is None, refused
        assert refused["error"]["label_changed"]["label_revision"] == 3, refused
        assert _http("GET", f"{ana}/band")[1]["label"] is None
        # without expected_revision: no check, the last label wins (clients from before revisions)
        status, unchecked = _http("PUT", f"{kai}/band/label", {"label": "normal", "by": "kai"})
        assert status == 200 and (unchecked["label"], unchecked["label_revision"]) == ("normal", 4), unchecked

        # the same revision sent by both at the same moment: one label is stored, the other refused
        answers: dict[str, tuple[int, dict[str, Any]]] = {}
        start = threading.Barrier(2)

        def label(who: str, base: str, verdict: str) -> None:
            start.wait(wait_s(10))
            answers[who] = _http("PUT", f"{base}/close/label", {"label": verdict, "by": who, "expected_revision": 0})

        threads = [threading.Thread(target=label, args=("ana", ana, "anomalous")),
                   threading.Thread(target=label, args=("kai", kai, "normal"))]  # fmt: skip
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(wait_s(30))
        assert sorted(status for status, _ in answers.values()) == [200, 409], answers
        winner = next(who for who, (status, _) in answers.items() if status == 200)
        stored = _http("GET", f"{ana}/close")[1]
        assert (stored["label_by"], stored["label_revision"]) == (winner, 1), stored


@pytest.mark.parametrize("isolation", ["read committed", "repeatable read"])
def test_a_label_waiting_for_another_replicas_label_is_refused_not_unreachable(postgres: Any, isolation: str) -> None:
    """Two replicas label one part on the same revision, the second while the first's write still holds the
    row: once the first commits, the second is refused with the label now stored (409 ``label_changed``),
    also on a database whose default isolation is ``repeatable read``, where a statement that waited for the
    row would otherwise fail to serialise (a psycopg ``OperationalError``: 503 "history unreachable")."""
    import psycopg

    from eagle_iad.service.store import LabelChangedError

    url = postgres.new_database(default_transaction_isolation=isolation)
    _history(url)
    store = InspectionStore(url)
    other = psycopg.connect(url, autocommit=True)  # the first replica, its label written but not committed yet
    try:
        other.execute("BEGIN ISOLATION LEVEL READ COMMITTED")
        other.execute("UPDATE inspections SET label = 'anomalous', label_by = 'ana', label_time = 't', "
                      "label_revision = 1 WHERE id = 'band'")  # fmt: skip
        outcome: list[BaseException | Inspection | None] = []

        def label() -> None:
            try:
                outcome.append(store.set_label("band", "normal", "2026-12-04T09:00:00.000+00:00", by="kai", expected=0))
            except BaseException as exc:  # handed to the test's thread
                outcome.append(exc)

        thread = threading.Thread(target=label)
        thread.start()
        deadline = time.monotonic() + wait_s(30)
        while time.monotonic() < deadline:  # until the second waits for the first's row lock
            waiting = other.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()"
            ).fetchone()
            if waiting is not None and waiting[0]:
                break
            time.sleep(0.01)
        else:
            raise AssertionError("the second label never waited for the first")
        other.execute("COMMIT")
        thread.join(wait_s(30))
        assert len(outcome) == 1 and isinstance(outcome[0], LabelChangedError), outcome
        assert outcome[0].current.label_by == "ana" and outcome[0].current.label_revision == 1
        kept = store.get("band")
        assert kept is not None and (kept.label, kept.label_by, kept.label_revision) == ("anomalous", "ana", 1)
    finally:
        other.close()
        store.close()


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_a_stored_label_is_answered_with_what_this_request_stored(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The record a label answers with is the one its own write stored, even when another replica labels the
    part right after it: not a later read, which would show the other's label as if it were this one's."""
    url = str(tmp_path / "h.sqlite3") if kind == "sqlite" else request.getfixturevalue("postgres").new_database()
    _history(url)
    store, replica = InspectionStore(url), InspectionStore(url)
    reads = store.get

    def read_after_another_label(inspection_id: str) -> Inspection | None:
        replica.set_label(inspection_id, "normal", "2026-12-04T09:00:01.000+00:00", by="kai")  # lands in between
        return reads(inspection_id)

    try:
        monkeypatch.setattr(store, "get", read_after_another_label)
        stored = store.set_label("band", "anomalous", "2026-12-04T09:00:00.000+00:00", by="ana", note="crack",
                                 expected=0)  # fmt: skip
        assert stored is not None
        assert (stored.label, stored.label_by, stored.label_note, stored.label_revision) == (
            "anomalous", "ana", "crack", 1)  # fmt: skip
        assert stored.label_time == "2026-12-04T09:00:00.000+00:00" and stored.id == "band"
        unchecked = store.set_label("close", "normal", "2026-12-04T09:00:02.000+00:00", by="ana")
        assert unchecked is not None and (unchecked.label_by, unchecked.label_revision) == ("ana", 1)
        assert store.set_label("nope", "normal", "2026-12-04T09:00:03.000+00:00", expected=0) is None
        assert store.set_label("nope", "normal", "2026-12-04T09:00:03.000+00:00") is None
    finally:
        store.close()
        replica.close()


class _SqliteBefore335:
    """A connection as SQLite 3.34 (RHEL 9's python3.11) answers: ``RETURNING`` is a syntax error. Once the
    label's ``UPDATE`` ran, another replica tries to label the same part (it must wait for this transaction)."""

    def __init__(self, raw: Any, replica: InspectionStore, log: list[str]) -> None:
        self.raw, self.replica, self.log = raw, replica, log
        self.threads: list[threading.Thread] = []

    def execute(self, sql: str, params: Any = ()) -> Any:
        import sqlite3

        if "RETURNING" in sql:
            raise sqlite3.OperationalError('near "RETURNING": syntax error')
        cursor = self.raw.execute(sql, params)
        if sql.startswith("UPDATE inspections SET label") and not self.threads:
            thread = threading.Thread(target=self._label_meanwhile, args=(params[6],))  # the inspection id
            thread.start()
            self.threads.append(thread)
            time.sleep(0.2)  # time for the replica to reach BEGIN IMMEDIATE and wait there
        return cursor

    def _label_meanwhile(self, inspection_id: str) -> None:
        self.replica.set_label(inspection_id, "normal", "2026-12-04T09:00:09.000+00:00", by="kai")
        self.log.append("kai")

    def close(self) -> None:
        self.raw.close()


@pytest.mark.parametrize("version", [(3, 34, 1), (3, 35, 0)])
def test_a_label_on_sqlite_before_3_35_answers_as_returning_does(
    version: tuple[int, int, int], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite before 3.35 (RHEL 9's python3.11 links 3.34.1) has no ``UPDATE ... RETURNING``: the label is
    written, then its row read back in the same ``BEGIN IMMEDIATE`` transaction, and the answers are those of
    the ``RETURNING`` path: the row this request stored (not a replica's label given right after), a
    revision someone moved refused with what is stored now (409 ``label_changed``), ``None`` for no such
    inspection."""
    import sqlite3

    from eagle_iad.service.store import LabelChangedError

    monkeypatch.setattr(sqlite3, "sqlite_version_info", version)
    url = str(tmp_path / "h.sqlite3")
    _history(url)
    store, replica = InspectionStore(url), InspectionStore(url)
    log: list[str] = []
    old = _SqliteBefore335(store._db.raw, replica, log)  # type: ignore[attr-defined]
    if version < (3, 35):
        store._db = old
    try:
        stored = store.set_label("band", "anomalous", "2026-12-04T09:00:00.000+00:00", by="ana", note="crack",
                                 expected=0)  # fmt: skip
        assert stored is not None
        assert (stored.id, stored.label, stored.label_by, stored.label_note, stored.label_revision) == (
            "band", "anomalous", "ana", "crack", 1)  # fmt: skip
        assert stored.label_time == "2026-12-04T09:00:00.000+00:00"
        for thread in old.threads:  # the replica's label, which waited for this one, comes after it
            thread.join(wait_s(30))
        if version < (3, 35):
            assert log == ["kai"]
            after = store.get("band")
            assert after is not None and (after.label, after.label_by, after.label_revision) == ("normal", "kai", 2)
        moved = 2 if version < (3, 35) else 1
        disagreeing = "anomalous" if version < (3, 35) else "normal"  # the same label would agree: no conflict
        with pytest.raises(LabelChangedError) as refused:
            store.set_label("band", disagreeing, "2026-12-04T09:00:01.000+00:00", by="lea", expected=0)
        assert refused.value.expected == 0
        assert (refused.value.current.label_by, refused.value.current.label_revision) == (
            "kai" if version < (3, 35) else "ana", moved)  # fmt: skip
        unchecked = store.set_label("close", "normal", "2026-12-04T09:00:02.000+00:00", by="ana", note="dust")
        assert unchecked is not None
        assert (unchecked.id, unchecked.label_by, unchecked.label_revision) == ("close", "ana", 1)
        kept = store.set_label("close", "normal", "2026-12-04T09:00:03.000+00:00", by="ana", keep_note=True,
                               expected=1)  # fmt: skip
        assert kept is not None and (kept.label_note, kept.label_revision) == ("dust", 2)
        cleared = store.set_label("close", None, "2026-12-04T09:00:04.000+00:00", expected=2)
        assert cleared is not None and (cleared.label, cleared.label_by, cleared.label_revision) == (None, None, 3)
        assert store.set_label("nope", "normal", "2026-12-04T09:00:05.000+00:00", expected=0) is None
        assert store.set_label("nope", "normal", "2026-12-04T09:00:05.000+00:00") is None
    finally:
        for thread in old.threads:
            thread.join(wait_s(30))
        store.close()
        replica.close()


def test_eagle_review_label_with_the_revision_seen_keeps_a_label_given_since(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``eagle review label --expected-revision N`` has the API's protection: a part someone labelled since is
    left as they labelled it, and the error names them; ``eagle review list`` shows the revision of a part
    labelled and cleared before (0, never labelled, goes unsaid)."""
    from eagle_iad.cli import main

    db = tmp_path / "h.sqlite3"
    _history(db)
    store = InspectionStore(db)
    try:
        store.set_label("close", "normal", "2026-12-04T09:00:00.000+00:00", by="anna")
        store.set_label("close", None, "2026-12-04T09:01:00.000+00:00", by="anna")  # back in the queue, revision 2
        first = store.set_label("band", "anomalous", "2026-12-04T09:02:00.000+00:00", by="anna", expected=0)
        assert first is not None and first.label_revision == 1
    finally:
        store.close()
    assert main(["review", "list", "--db", str(db), "--category", "mono"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert listed[1].startswith("close  ") and listed[1].endswith("  (label revision 2)"), listed
    assert "label revision" not in listed[2], listed  # never labelled: no revision shown
    assert main(["review", "label", "band", "normal", "--by", "kai", "--expected-revision", "0", "--db", str(db)]) == 2
    said = capsys.readouterr().err
    assert "band.png was labelled defective by anna at 2026-12-04 09:02:00 UTC while you were looking" in said, said
    assert "revision" not in said, said
    store = InspectionStore(db)
    try:
        kept = store.get("band")
        assert kept is not None and (kept.label, kept.label_by, kept.label_revision) == ("anomalous", "anna", 1)
    finally:
        store.close()
    assert (
        main(["review", "label", "close", "defective", "--by", "kai", "--expected-revision", "2", "--db", str(db)]) == 0
    )
    assert json.loads(capsys.readouterr().out)["label_revision"] == 3
    assert main(["review", "label", "close", "normal", "--expected-revision", "-1", "--db", str(db)]) == 2
    assert "--expected-revision" in capsys.readouterr().err


def test_the_decision_filter_tells_unrecognised_from_undecided(tmp_path: Path) -> None:
    """``decision=unrecognised`` is a filter value (declared once, in eagle_iad/review.py) and
    ``decision=undecided`` no longer answers images that were not recognised."""
    from eagle_iad.service import ServiceSettings, create_app

    settings = ServiceSettings(models_dir=tmp_path / "models", state_dir=tmp_path / "state")
    _history(settings.database)
    with TestClient(create_app(settings)) as client:

        def ids(decision: str) -> list[str]:
            answer = client.get("/v1/inspections", params={"decision": decision})
            assert answer.status_code == 200, answer.text
            return [item["id"] for item in answer.json()["items"]]

        assert ids("unrecognised") == ["foreign"]
        assert ids("undecided") == ["garbled", "unread"]
        refused = client.get("/v1/inspections", params={"decision": "maybe"})
        assert refused.status_code == 400
        assert "'anomalous', 'normal', 'unrecognised' or 'undecided'" in refused.json()["error"]["message"]


def test_a_cli_label_is_audited_and_keeps_its_note_when_the_label_is_unchanged(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``eagle review label`` writes the audit row the API writes, its actor ``cli:<login name>`` (``--by``
    is anyone's word: it goes in the detail, and the record's ``label_by`` is the actor's, marked as given:
    ``cli:ana-os as kai``, never a bare name that reads as a keyed user's), and leaves the service's journal
    to the service; without
    ``--note`` a relabel with the same label keeps the note, a changed label drops it, and ``--note ''``
    clears it."""
    import getpass

    from eagle_iad.cli import main
    from eagle_iad.service import ServiceSettings, create_app
    from eagle_iad.service.audit import PENDING

    monkeypatch.setattr(getpass, "getuser", lambda: "ana-os")
    settings = ServiceSettings(models_dir=tmp_path / "models", state_dir=tmp_path / "state")
    _history(settings.database)
    state = ["--state-dir", str(settings.state_dir)]
    journalled = {"time": "2026-12-04T08:59:00.000+00:00", "actor": "eve", "role": "engineer", "method": "POST",
                  "route": "/r", "path": "/p", "status": 200, "detail": None}  # fmt: skip
    journal = settings.state_dir / PENDING
    journal.write_text(json.dumps(journalled) + "\n")  # the service's: it alone moves it into the log

    def label(*words: str) -> dict[str, Any]:
        assert main(["review", "label", *words, "--by", "kai", *state]) == 0
        return dict(json.loads(capsys.readouterr().out))

    assert label("close", "normal", "--note", "dust, wiped")["label_note"] == "dust, wiped"
    assert label("close", "normal")["label_note"] == "dust, wiped"  # the same label: the note stays
    assert label("close", "defective")["label_note"] is None  # another label: the old note does not fit it
    assert label("close", "anomalous", "--note", "crack")["label_note"] == "crack"
    cleared = label("close", "anomalous", "--note", "")
    assert (cleared["label_note"], cleared["label_by"]) == (None, "cli:ana-os as kai")  # said: cleared
    assert journal.read_text() == json.dumps(journalled) + "\n"
    assert sorted(p.name for p in settings.state_dir.iterdir() if p.name.startswith("audit")) == [PENDING]
    with TestClient(create_app(settings)) as client:
        rows = client.get("/v1/audit").json()["items"]
        assert len(rows) == 6 and rows[0]["actor"] == "eve"  # the journal, moved in by the service as it started
        newest = rows[1]
        assert tuple(newest[k] for k in ("actor", "role", "method", "route", "path", "status", "detail")) == (
            "cli:ana-os", "operator", "PUT", "/v1/inspections/{inspection_id}/label", "/v1/inspections/close/label",
            200, "label anomalous (defective) of close.png (mono), was anomalous by cli:ana-os as kai (note: crack) "
            "(by kai, eagle review label)")  # fmt: skip
        # the record the console shows says the same: from the command line, kai's word
        assert client.get("/v1/inspections/close").json()["label_by"] == "cli:ana-os as kai"
        # the API takes the CLI's word too, stored as the history's
        answer = client.put("/v1/inspections/band/label", json={"label": "defective"})
        assert answer.status_code == 200 and answer.json()["label"] == "anomalous"
        assert client.get("/v1/audit").json()["items"][0]["detail"] == "label anomalous (defective) of band.png (mono)"
        # mono's rows: the CLI's five labels and the API's one (paths naming the inspections), not the journalled one
        mono = client.get("/v1/audit?category=mono").json()
        assert mono["total"] == 6
        assert {row["route"] for row in mono["items"]} == {"/v1/inspections/{inspection_id}/label"}
        refused = client.put("/v1/inspections/band/label", json={"label": "broken"})
        assert refused.status_code == 400
        assert "'normal', 'anomalous' or 'defective'" in refused.json()["error"]["message"]


def test_an_unknown_category_is_refused_naming_the_known_ones(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A mistyped ``--category`` (``?category=``) is an error naming the known categories (the history's
    and the models'), not "0 to review"; a category with a model but no inspection yet is an empty queue."""
    from eagle_iad.cli import main
    from eagle_iad.service import ServiceSettings, create_app

    settings = ServiceSettings(models_dir=tmp_path / "models", state_dir=tmp_path / "state")
    (settings.models_dir / "glass").mkdir(parents=True)
    _history(settings.database)
    flags = ["--state-dir", str(settings.state_dir), "--models", str(settings.models_dir)]
    assert main(["review", "list", "--category", "mnoo", *flags]) == 2
    assert capsys.readouterr().err == "eagle: error: no category 'mnoo'; known categories: glass, mono, tiles\n"
    assert main(["review", "list", "--category", "mnoo", "--state-dir", str(settings.state_dir)]) == 2
    assert capsys.readouterr().err == ("eagle: error: no category 'mnoo'; known categories: mono, tiles (those in "
                                       "the history; --models names the fitted ones too)\n")  # fmt: skip
    assert main(["review", "list", "--category", "glass", *flags]) == 0
    assert capsys.readouterr().out == "0 to review\n"
    with TestClient(create_app(settings)) as client:
        refused = client.get("/v1/review", params={"category": "mnoo"})
        assert refused.status_code == 404
        error = refused.json()["error"]
        assert error["code"] == "category_not_found"
        assert error["message"] == "no category 'mnoo'; known categories: glass, mono, tiles"
        assert client.get("/v1/review", params={"category": "glass"}).json()["total"] == 0
    # the service noted its models folder in the state folder: the same flags now name the fitted ones too
    assert main(["review", "list", "--category", "mnoo", "--state-dir", str(settings.state_dir)]) == 2
    assert capsys.readouterr().err == f"eagle: error: {error['message']}\n"


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_relabel_keeps_the_note_of_an_unchanged_label_on_each_backend(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """The store's ``keep_note``, decided inside the ``UPDATE`` (the stored label as it was), on SQLite and
    PostgreSQL alike."""
    where = str(tmp_path / "h.sqlite3") if backend == "sqlite" else request.getfixturevalue("postgres").new_database()
    _history(where)
    store = InspectionStore(where)
    try:
        when = "2026-12-04T09:00:00.000+00:00"
        first = store.set_label("close", "normal", when, by="kai", note="dust")
        assert first is not None and first.label_note == "dust"
        kept = store.set_label("close", "normal", when, by="kai", keep_note=True)
        assert kept is not None and (kept.label, kept.label_note, kept.label_revision) == ("normal", "dust", 2)
        changed = store.set_label("close", "anomalous", when, by="kai", keep_note=True)
        assert changed is not None and (changed.label, changed.label_note) == ("anomalous", None)
        said = store.set_label("close", "anomalous", when, by="kai", note="crack", keep_note=True)
        assert said is not None and said.label_note == "crack"
    finally:
        store.close()


def test_a_corrected_label_keeps_the_earlier_one_and_an_agreeing_one_is_no_conflict(tmp_path: Path) -> None:
    """t-shift findings 1, 11 and 13: a label corrected by someone else keeps the earlier label and its note in
    ``label_history`` and in the audit (image, category, what it replaced and by whom, the note); a second
    operator giving the label the part already has (their revision is stale) is answered 200, saying who
    labelled it so, and their note is kept in the history while the first one's label stands; a note or why with
    a control character (other than a newline or tab) is refused with a 400 saying which, lengths counted in
    characters."""
    from eagle_iad.service import ServiceSettings, create_app

    settings = ServiceSettings(models_dir=tmp_path / "models", state_dir=tmp_path / "state")
    _history(settings.database)
    with TestClient(create_app(settings)) as client:

        def label(body: dict[str, Any]) -> Any:
            return client.put("/v1/inspections/band/label", json=body)

        first = label({"label": "normal", "note": "scuff only", "by": "omar", "expected_revision": 0}).json()
        assert first["notices"] == [] and [e["by"] for e in first["label_history"]] == ["omar"]
        corrected = label({"label": "defective", "note": "a cut, omar mislabelled", "by": "olga",
                           "expected_revision": 1}).json()  # fmt: skip
        assert (corrected["label"], corrected["label_by"], corrected["label_note"]) == (
            "anomalous", "olga", "a cut, omar mislabelled")  # fmt: skip
        assert [(e["label"], e["by"], e["note"], e["previous"]) for e in corrected["label_history"]] == [
            ("normal", "omar", "scuff only", None),
            ("anomalous", "olga", "a cut, omar mislabelled", "normal"),
        ]
        audit = client.get("/v1/audit").json()["items"]
        assert audit[0]["detail"] == ("label anomalous (defective) of band.png (mono), was normal by omar (note: scuff "
                                      "only); note: a cut, omar mislabelled")  # fmt: skip
        assert audit[1]["detail"] == "label normal (normal) of band.png (mono); note: scuff only"
        # oscar saw revision 1 too and also says defective: no conflict, olga's label stands, his note is kept
        agreed = label({"label": "anomalous", "note": "agree - oscar", "by": "oscar", "expected_revision": 1})
        assert agreed.status_code == 200, agreed.text
        record = agreed.json()
        assert (record["label_by"], record["label_note"], record["label_revision"]) == (
            "olga", "a cut, omar mislabelled", 3)  # fmt: skip
        assert record["label_history"][-1] | {"time": "t"} == {
            "revision": 3, "label": "anomalous", "by": "oscar", "time": "t", "note": "agree - oscar",
            "previous": "anomalous", "agreed": True}  # fmt: skip
        [notice] = record["notices"]
        assert notice.startswith("band.png was already labelled defective by olga at 2026-")
        assert notice.endswith("their label stands, and yours, with your note, is kept in its label history")
        assert client.get("/v1/audit").json()["items"][0]["detail"] == (
            "label anomalous (defective) of band.png (mono): agrees with olga, whose label stands; note: agree - oscar"
        )
        # another label on a stale revision is still a conflict
        assert label({"label": "normal", "by": "omar", "expected_revision": 1}).status_code == 409
        assert client.get("/v1/inspections/band").json()["label_history"] == record["label_history"]

        # control characters: refused, saying which; newlines and tabs kept, CRLF as a newline; emoji are one each
        for bad, code in (("nul\x00byte", "U+0000"), ("\u202egnp.evitceted", "U+202E"), ("bell\x07", "U+0007")):
            refused = client.put("/v1/inspections/close/label", json={"label": "normal", "note": bad})
            assert refused.status_code == 400, refused.text
            assert f"is the control character {code}" in refused.json()["error"]["message"], refused.text
        kept = client.put("/v1/inspections/close/label", json={"label": "normal", "note": "a\tb\r\nc 🛞" + "x" * 492})
        assert kept.status_code == 200, kept.text
        assert kept.json()["label_note"] == "a\tb\nc 🛞" + "x" * 492
        why = client.post("/v1/categories/mono/threshold", json={"tau": 3.0, "why": "esc\x1b[2J"})
        assert why.status_code == 400 and "U+001B" in why.json()["error"]["message"], why.text


def test_a_part_judged_by_an_older_model_version_says_so_against_the_current_one(tmp_path: Path) -> None:
    """The queue keeps parts for days; one judged by an older version names it and its tau beside the current
    model's (t-shift F15), and one judged by the current version says nothing."""
    from eagle_iad.service import ServiceSettings, create_app

    settings = ServiceSettings(models_dir=tmp_path / "models", state_dir=tmp_path / "state")
    model = settings.models_dir / "mono"
    for number, tau in ((1, 5.0), (2, 4.25)):  # the version folders' model.json: the current one is version 2's
        (model / "versions" / str(number)).mkdir(parents=True)
        text = json.dumps({"category": "mono", "thresholds": {"tau": tau}, "version_marker": number})
        (model / "versions" / str(number) / "model.json").write_text(text, encoding="utf-8")
    (model / "model.json").write_text(text, encoding="utf-8")
    store = InspectionStore(settings.database)
    for index, (ident, version) in enumerate((("old", 1), ("new", 2))):
        store.add(Inspection(id=ident, time=f"2026-12-04T08:0{index}:00.000+00:00", category="mono",
                             image_name=f"{ident}.png", score=5.1, tau=5.0 if version == 1 else 4.25, s_max=6.0,
                             decision="anomalous", in_band=True, answer=None, caas_applied=False, verdict={},
                             pictures={}, near_threshold=True, model_version=version))  # fmt: skip
    store.close()
    with TestClient(create_app(settings)) as client:
        items = {item["record"]["id"]: item for item in client.get("/v1/review").json()["items"]}
    assert items["old"]["current_model"] == items["new"]["current_model"] == {"version": 2, "tau": 4.25}
    assert items["old"]["judged_by_older"] == (
        "judged by version 1 (threshold 5.00); the model is now version 2 (threshold 4.25), which may decide it "
        "otherwise"
    )
    assert items["new"]["judged_by_older"] is None


def test_agreements_do_not_stale_the_first_labellers_correction_and_a_retry_is_no_agreement(tmp_path: Path) -> None:
    """rev1 finding 14: an agreed label moves ``label_revision`` on, but it changes nothing the first labeller saw:
    their correction on the revision they saw is stored (not a 409 naming themselves), and a label they already
    gave, sent again on the revision before it (a client retrying a request whose answer was lost), answers the
    stored record: no ``agreed`` entry, no notice "already labelled by <yourself>"."""
    from eagle_iad.service import ServiceSettings, create_app

    settings = ServiceSettings(models_dir=tmp_path / "models", state_dir=tmp_path / "state")
    _history(settings.database)
    with TestClient(create_app(settings)) as client:

        def label(body: dict[str, Any]) -> Any:
            return client.put("/v1/inspections/band/label", json=body)

        assert label({"label": "normal", "note": "scuff", "by": "omar", "expected_revision": 0}).status_code == 200
        oscar = label({"label": "normal", "by": "oscar", "expected_revision": 0}).json()  # agrees: revision 2
        assert oscar["label_revision"] == 2 and oscar["label_history"][-1]["agreed"] is True
        retried = label({"label": "normal", "note": "scuff", "by": "omar", "expected_revision": 0})
        assert retried.status_code == 200, retried.text
        assert retried.json()["notices"] == [] and retried.json()["label_revision"] == 2
        assert len(retried.json()["label_history"]) == 2
        corrected = label({"label": "defective", "note": "a cut after all", "by": "omar", "expected_revision": 1})
        assert corrected.status_code == 200, corrected.text
        assert (corrected.json()["label"], corrected.json()["label_by"], corrected.json()["label_revision"]) == (
            "anomalous", "omar", 3)  # fmt: skip
        # a label changed since (not only agreed) is still a conflict
        assert label({"label": "normal", "by": "oscar", "expected_revision": 2}).status_code == 409


def test_a_label_without_a_revision_check_that_cannot_be_written_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """rev1 finding 16: a label with no ``expected`` whose row keeps changing under it (a writer without the labels
    lock) fails after LABEL_TRIES saying so, not "labelled ... while you were looking" as if a check had failed."""
    from contextlib import contextmanager

    from eagle_iad.service.store import LabelChangedError

    db = tmp_path / "h.sqlite3"
    _history(db)
    store = InspectionStore(db)
    real = store.transaction

    class Unmoved:
        rowcount = 0

    @contextmanager
    def racing() -> Any:
        with real() as db:

            class Proxy:
                def execute(self, sql: str, params: Any = ()) -> Any:
                    return Unmoved() if sql.startswith("UPDATE inspections SET label") else db.execute(sql, params)

                def __getattr__(self, name: str) -> Any:
                    return getattr(db, name)

            yield Proxy()

    monkeypatch.setattr(store, "transaction", racing)
    try:
        with pytest.raises(LabelChangedError) as raised:
            store.set_label("band", "normal", "2026-12-04T09:00:00.000+00:00", by="anna")
    finally:
        store.close()
    said = str(raised.value)
    assert "while you were looking" not in said, said
    assert "band.png's label was changed 5 times by another writer" in said and "not stored" in said, said


def test_a_forced_teach_labels_an_inspection_whose_label_was_cleared_in_the_teachers_name(tmp_path: Path) -> None:
    """rev1 finding 4: a part labelled then cleared (no label, revision 2) is labelled normal by the teacher of a
    forced teach, as a part never labelled is, also where that happened after the teach read it (unlabelled all
    the same); one labelled since keeps its label, said in words, never "None by None"."""
    from eagle_iad.expert.teach import TeachImage
    from eagle_iad.service.routes_teach import label_taught
    from eagle_iad.service.teaching import inspection_images

    db = tmp_path / "h.sqlite3"
    _history(db)
    store = InspectionStore(db)
    files = tmp_path / "files"
    try:
        for ident in ("band", "close"):
            store.set_label(ident, "normal", "2026-12-04T09:00:00.000+00:00", by="omar")
            store.set_label(ident, None, "2026-12-04T09:01:00.000+00:00", by="omar")
            (files / ident).mkdir(parents=True)
            (files / ident / "image").write_bytes(b"x")
        [band] = inspection_images(store, files, "mono", ["band"])
        assert (band.label, band.label_revision) == (None, 2)
        stale = TeachImage("close.png", b"", inspection="close", label=None, label_revision=0)  # read before both
        store.add(Inspection(id="later", time="2026-12-04T08:30:00.000+00:00", category="mono", image_name="later.png",
                             score=1.0, tau=5.0, s_max=6.0, decision="normal", in_band=False, answer=None,
                             caas_applied=False, verdict={}, pictures={}))  # fmt: skip
        store.set_label("later", "anomalous", "2026-12-04T09:02:00.000+00:00", by="ana")
        labelled = TeachImage("later.png", b"", inspection="later", label=None, label_revision=0)
        entry = {"images": [{"inspection": "band"}, {"inspection": "close"}, {"inspection": "later"}]}
        notices = label_taught(store, [band, stale, labelled], entry, "sam", "forced")
        for ident in ("band", "close"):
            stored = store.get(ident)
            assert stored is not None and (stored.label, stored.label_by) == ("normal", "sam"), notices
        assert notices[0].endswith("it is now labelled normal by sam, who taught it"), notices
        assert notices[1].endswith("it is now labelled normal by sam, who taught it"), notices
        assert notices[2] == ("later.png (inspection later) was taught, and labelled meanwhile: defective by ana; "
                              "that label is kept")  # fmt: skip
        kept = store.get("later")
        assert kept is not None and (kept.label, kept.label_by) == ("anomalous", "ana")
        assert "None" not in " ".join(notices)
    finally:
        store.close()


def test_eagle_review_label_says_the_answers_notices(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """rev1 finding 3: ``eagle review label`` says what ``PUT .../label`` answers in ``notices``, on stderr and in
    its JSON: that the part was already labelled so by someone else, whose label stands, and (with ``--models``)
    that a part labelled defective is inside its category's current model."""
    from eagle_iad.cli import main
    from eagle_iad.service import routes_inspect

    db = tmp_path / "h.sqlite3"
    _history(db)
    store = InspectionStore(db)
    try:
        store.set_label("band", "normal", "2026-12-04T09:00:00.000+00:00", by="olga", expected=0)
    finally:
        store.close()
    args = ["review", "label", "band", "normal", "--by", "kai", "--expected-revision", "0", "--db", str(db)]
    assert main(args) == 0
    out, err = capsys.readouterr()
    [notice] = json.loads(out)["notices"]
    assert notice.startswith("band.png was already labelled normal by olga at 2026-12-04 09:00:00 UTC; their label")
    assert f"eagle: note: {notice}" in err, err
    seen: list[tuple[Path, str]] = []

    def taught(models_dir: Path, stored: Inspection) -> list[str]:
        seen.append((models_dir, stored.id))
        return [f"{stored.image_name} is inside the current model of {stored.category}"]

    monkeypatch.setattr(routes_inspect, "taught_notice", taught)
    models = tmp_path / "models"
    assert main(["review", "label", "close", "defective", "--by", "kai", "--db", str(db), "--models", str(models)]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["notices"] == ["close.png is inside the current model of mono"]
    assert "eagle: note: close.png is inside the current model of mono" in err and seen == [(models, "close")]


def test_eagle_review_label_given_only_the_state_dir_finds_the_noted_models(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``eagle review label`` with ``--state-dir`` alone says a part labelled defective is one the current model was
    fitted on, from the models folder the service noted in the state folder, as ``eagle review list`` finds it
    (``models_folder``); it read only ``--models``, so the notice was silently missing."""
    from eagle_iad.cli import main
    from eagle_iad.expert.manifest import FORMAT, SCHEMA_VERSION
    from eagle_iad.service import ServiceSettings, create_app

    settings = ServiceSettings(models_dir=tmp_path / "models", state_dir=tmp_path / "state")
    digest = "cd" * 32
    (settings.models_dir / "mono").mkdir(parents=True)
    (settings.models_dir / "mono" / "model.json").write_text(
        json.dumps({"format": FORMAT, "schema_version": SCHEMA_VERSION, "category": "mono",
                    "training": {"images": ["good-7.png"], "sha256": [digest]}}),
        encoding="utf-8",
    )  # fmt: skip
    with TestClient(create_app(settings)) as client:  # the service notes its history and models in the state folder
        assert client.get("/healthz").status_code == 200
    store = InspectionStore(settings.database)
    try:
        store.add(Inspection(id="seen", time="2026-12-04T08:00:00.000+00:00", category="mono", image_name="seen.png",
                             score=5.5, tau=5.0, s_max=6.0, decision="anomalous", in_band=True, answer=None,
                             caas_applied=False, verdict={}, pictures={}, image_sha256=digest))  # fmt: skip
    finally:
        store.close()
    args = ["review", "label", "seen", "defective", "--by", "kai", "--state-dir", str(settings.state_dir)]
    assert main(args) == 0
    out, err = capsys.readouterr()
    notice = (
        "seen.png is inside the current model of mono as good-7.png, one of the images it was fitted on: the model "
        "takes it for normal and passes parts like it; refit without it"
    )
    assert json.loads(out)["notices"] == [notice]
    assert err == f"eagle: note: {notice}\n"


def test_a_part_judged_by_the_version_the_current_model_is_a_rollback_copy_of_is_not_judged_by_an_older(
    tmp_path: Path,
) -> None:
    """rev1 finding 9: after ``rollback --to 1`` the current model (version 3) is version 1's model and threshold, so
    a part judged by version 1 is not flagged "judged by version 1 ... which may decide it otherwise"; one judged by
    version 2 (another threshold) still is."""
    from eagle_iad.service import ServiceSettings, create_app

    settings = ServiceSettings(models_dir=tmp_path / "models", state_dir=tmp_path / "state")
    model = settings.models_dir / "mono"

    def manifest(tau: float, history: list[dict[str, Any]]) -> str:
        return json.dumps({"category": "mono", "config": {"k": 1}, "thresholds": {"tau": tau},
                           "training": {"images": ["a.png"]}, "tensors": {"file": "t", "sha256": "ab" * 32},
                           "history": history})  # fmt: skip

    texts = {1: manifest(5.0, []), 2: manifest(4.25, [{"action": "threshold"}]),
             3: manifest(5.0, [{"action": "threshold"}, {"action": "rollback", "to": 1}])}  # fmt: skip
    for number, text in texts.items():
        (model / "versions" / str(number)).mkdir(parents=True)
        (model / "versions" / str(number) / "model.json").write_text(text, encoding="utf-8")
    (model / "model.json").write_text(texts[3], encoding="utf-8")
    store = InspectionStore(settings.database)
    for index, (ident, version) in enumerate((("first", 1), ("second", 2))):
        store.add(Inspection(id=ident, time=f"2026-12-04T08:0{index}:00.000+00:00", category="mono",
                             image_name=f"{ident}.png", score=5.1, tau=5.0 if version == 1 else 4.25, s_max=6.0,
                             decision="anomalous", in_band=True, answer=None, caas_applied=False, verdict={},
                             pictures={}, near_threshold=True, model_version=version))  # fmt: skip
    store.close()
    with TestClient(create_app(settings)) as client:
        items = {item["record"]["id"]: item for item in client.get("/v1/review").json()["items"]}
    assert items["first"]["current_model"] == {"version": 3, "tau": 5.0}
    assert items["first"]["judged_by_older"] is None
    assert items["second"]["judged_by_older"] == (
        "judged by version 2 (threshold 4.25); the model is now version 3 (threshold 5.00), which may decide it "
        "otherwise"
    )


def _served(models: Path, state: Path, *history: str) -> Any:
    """``eagle serve`` (a real process) on ``state`` with the models folder ``models``, expert only."""
    from test_service import ServeProcess

    return ServeProcess(["--models", str(models), "--state-dir", str(state), *history, "--log-level", "warning"])


def test_review_list_names_the_known_categories_as_the_service_does(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Finding 4: ``--category`` with a typo and ``--history H`` named only the history's categories while
    ``GET /v1/review`` named the fitted ones too: the CLI finds the service's models folder in the note it
    left in its state folder (service/state_note.py), or says that it named those of the history alone."""
    from test_service import call

    from eagle_iad.cli import main

    models, state = tmp_path / "models", tmp_path / "state"
    for name in ("elpv-b", "elpv-mono"):
        (models / name).mkdir(parents=True)
    server = _served(models, state)
    try:
        status, _, body = call("GET", f"{server.base}/v1/review?category=elpv-mnoo")
    finally:
        server.stop()
    assert (status, body["error"]["message"]) == (404, "no category 'elpv-mnoo'; known categories: elpv-b, elpv-mono")
    for flags in (["--history", str(state / "eagle.sqlite3")], ["--state-dir", str(state)]):
        assert main(["review", "list", "--category", "elpv-mnoo", *flags]) == 2
        assert capsys.readouterr().err == f"eagle: error: {body['error']['message']}\n"
    (state / "eagle-serve.json").unlink()  # a service from before the note: the CLI says what it could not see
    assert main(["review", "list", "--category", "elpv-mnoo", "--history", str(state / "eagle.sqlite3")]) == 2
    assert capsys.readouterr().err == (
        "eagle: error: no category 'elpv-mnoo': the history has no inspections and there are no models yet "
        "(those in the history; --models names the fitted ones too)\n"
    )
    assert main(["review", "list", "--category", "elpv-mnoo", "--state-dir", str(state), "--models", str(models)]) == 2
    assert capsys.readouterr().err == f"eagle: error: {body['error']['message']}\n"


def test_the_cli_given_a_state_folder_whose_service_keeps_its_history_in_postgresql_names_that_history(
    postgres: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Finding 5: ``--state-dir`` of a service whose history is a PostgreSQL database said "no history at
    state/eagle.sqlite3: has eagle serve run with these flags?". The service notes its history in the state
    folder, password left out (the server trusts local connections, so the one given here is never checked:
    it must only never be written), and the CLI names the ``--history`` to pass."""
    from eagle_iad.cli import main

    url = postgres.new_database()
    secret = url.replace("postgresql://postgres@", "postgresql://postgres:pa55-w0rd@") + "?password=pa55-w0rd"
    public = url
    models, state = tmp_path / "models", tmp_path / "state"
    models.mkdir()
    server = _served(models, state, "--history", secret)
    try:
        note = (state / "eagle-serve.json").read_text()
        assert "pa55" not in note
        noted = json.loads(note)
        assert (noted["history"], noted["models"], noted["pid"]) == (public, str(models.resolve()), server.process.pid)
        assert main(["review", "list", "--state-dir", str(state)]) == 2
        err = capsys.readouterr().err
        assert err == (f"eagle: error: no history at {state / 'eagle.sqlite3'}: the service that last ran on the "
                       f"state folder {state} (pid {server.process.pid}, started {noted['started']}) keeps its "
                       f"history at {public}: pass --history {public}\n")  # fmt: skip
        assert main(["review", "list", "--state-dir", str(state), "--history", public]) == 0
        assert capsys.readouterr().out == "0 to review\n"
    finally:
        server.stop()
    assert not list(state.glob(".eagle-serve.json.*"))  # written atomically: no temporary file left


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("postgresql://eagle:s3cret@db:5432/eagle", "postgresql://eagle@db:5432/eagle"),
        ("postgresql://eagle@db/eagle?password=s3cret&sslmode=require", "postgresql://eagle@db/eagle?sslmode=require"),
        ("postgresql://eagle@db/eagle?sslmode=require&password=s3cret", "postgresql://eagle@db/eagle?sslmode=require"),
        ("postgresql://eagle:p%40ss@h1,h2:5433/eagle", "postgresql://eagle@h1,h2:5433/eagle"),
        # the client key's passphrase is a secret too, and every password given, however often and spelled
        (
            "postgresql://eagle@db/eagle?sslpassword=k3y&sslmode=verify-full",
            "postgresql://eagle@db/eagle?sslmode=verify-full",
        ),
        ("postgresql://eagle@db/eagle?password=a&password=b", "postgresql://eagle@db/eagle"),
        ("postgresql://eagle@db/eagle?Password=a&x=1&pass%77ord=b&SSLpassword=c", "postgresql://eagle@db/eagle?x=1"),
        ("postgresql://eagle:pa?ss@db/eagle?sslmode=require", "postgresql://eagle@db/eagle?sslmode=require"),
        ("/srv/state/eagle.sqlite3", "/srv/state/eagle.sqlite3"),
    ],
)
def test_the_noted_history_leaves_any_password_out(given: str, kept: str) -> None:
    from eagle_iad.service.state_note import without_password

    assert without_password(given) == kept


def test_a_service_whose_note_cannot_be_written_still_serves_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The note only helps the CLI: a state folder where it cannot be written (here a folder in its place) is a
    warning naming it, never a service that does not start."""
    from eagle_iad.service import ServiceSettings, create_app

    settings = ServiceSettings(models_dir=tmp_path / "models", state_dir=tmp_path / "state")
    (settings.state_dir / "eagle-serve.json").mkdir(parents=True)
    with caplog.at_level("WARNING", logger="eagle_iad.service.state_note"), TestClient(create_app(settings)) as client:
        assert client.get("/healthz").status_code == 200
    [warned] = [r.getMessage() for r in caplog.records if r.name == "eagle_iad.service.state_note"]
    assert warned.startswith(f"could not note where the history is in {settings.state_dir / 'eagle-serve.json'} ")
