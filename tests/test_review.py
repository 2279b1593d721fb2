"""The review queue (issue 24): which inspections wait for a person and why, over the store, the API and the CLI.

Every reason of eagle_iad/review.py is exercised by a row made for it, next to rows that must stay out
(clear verdicts, labelled ones), and the answers are checked exactly.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
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


def _history(path: Path) -> None:
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

    db = tmp_path / "h.sqlite3"
    _history(db)
    assert main(["review", "list", "--db", str(db), "--category", "mono", "--limit", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "6 to review (the oldest 2 shown)"
    assert lines[1] == ("band  2026-12-04T08:01:00.000+00:00  mono  band.png  score 2.00 / threshold 5.00  anomalous: "
                        f"{REASONS[0].words}; {REASONS[1].words}")  # fmt: skip
    assert lines[2].startswith("close  ") and lines[2].endswith(f"normal: {REASONS[1].words}")
    assert main(["review", "list", "--db", str(db), "--json"]) == 0
    assert [i["record"]["id"] for i in json.loads(capsys.readouterr().out)["items"]][:2] == ["band", "close"]
    assert main(["review", "label", "foreign", "defective", "--note", "a glove in the frame", "--by", "kai",
                 "--db", str(db)]) == 0  # fmt: skip
    stored = json.loads(capsys.readouterr().out)
    assert (stored["label"], stored["label_by"], stored["label_note"]) == ("anomalous", "kai", "a glove in the frame")
    assert main(["review", "label", "nope", "normal", "--db", str(db)]) == 2
    assert f"no inspection 'nope' in {db}" in capsys.readouterr().err
    assert main(["review", "list", "--db", str(tmp_path / "missing.sqlite3")]) == 2
    assert "no history at" in capsys.readouterr().err
