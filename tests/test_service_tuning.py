"""``/v1/categories/{name}/evidence`` and ``/dashboard``: labelled scores for the threshold preview and
per-day figures from the history, checked against hand-computed numbers on a history written here."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from eagle_iad.data import get_layout
from eagle_iad.service.store import Inspection, InspectionStore


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """models/mono: a real expert fitted on 4 elpv cells (the routes read its manifest only)."""
    import torch

    from eagle_iad.expert import fit, save

    root = tmp_path_factory.mktemp("tuning")
    train = [s.path for s in get_layout("elpv").samples(None, "mono", "train")][:4]
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        save(fit(train, "mono").model, root / "models" / "mono")
    finally:
        torch.set_num_threads(before)
    return root / "models"


#: (time, category, name, score, tau, decision, in_band, label): two days of mono, one other category.
ROWS: list[tuple[str, str, str, float | None, float | None, str | None, bool, str | None]] = [
    ("2026-11-29T08:00:00.000+00:00", "mono", "a.png", 10.0, 12.0, "normal", False, "normal"),
    ("2026-11-29T09:00:00.000+00:00", "mono", "b.png", 13.0, 12.0, "anomalous", True, "normal"),  # false alarm
    ("2026-11-29T23:59:59.999+00:00", "mono", "c.png", 20.0, 12.0, "anomalous", False, None),
    ("2026-11-30T00:00:00.000+00:00", "mono", "d.png", 11.0, 12.0, "normal", False, "anomalous"),  # miss
    ("2026-11-30T01:00:00.000+00:00", "mono", "e.png", 15.0, 14.0, None, True, "anomalous"),  # flagged, undecided
    ("2026-11-30T02:00:00.000+00:00", "mono", "f.png", None, None, None, False, None),  # a custom question
    ("2026-11-30T03:00:00.000+00:00", "other", "g.png", 99.0, 1.0, "anomalous", False, "normal"),
]


@pytest.fixture
def client(models: Path, tmp_path: Path) -> Any:
    from eagle_iad.service import ServiceSettings, create_app

    runs = tmp_path / "runs"
    for run, category in (("eval-mono", "mono"), ("eval-other", "other")):
        (runs / run).mkdir(parents=True)
        (runs / run / "metrics.json").write_text(json.dumps({"category": category, "tau": 12.5}))
        lines = [{"image": "/host/secret/good/001.png", "label": 0, "defect_type": "good", "score": 9.5},
                 {"image": "/host/secret/crack/001.png", "label": 1, "defect_type": "crack", "score": 30.25},
                 {"image": "/host/secret/x.png", "label": None, "score": 1.0}]  # fmt: skip
        (runs / run / "scores.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    (runs / "broken").mkdir()
    (runs / "broken" / "metrics.json").write_text(json.dumps({"category": "mono"}))
    (runs / "broken" / "scores.jsonl").write_text("{not json\n")
    settings = ServiceSettings(models_dir=models, state_dir=tmp_path / "state", runs_dir=runs)
    store = InspectionStore(settings.database)
    for index, (time, category, name, score, tau, decision, in_band, label) in enumerate(ROWS):
        store.add(Inspection(id=f"i{index}", time=time, category=category, image_name=name, score=score, tau=tau,
                             s_max=None, decision=decision, in_band=in_band, answer=None, caas_applied=False,
                             verdict={}, pictures={"box": f"/v1/files/i{index}/box.png"}, label=label,
                             label_time=None if label is None else time))  # fmt: skip
    store.close()
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def test_dashboard_counts_per_day_and_rates(client: Any) -> None:
    answer = client.get("/v1/categories/mono/dashboard").json()
    day1, day2 = answer["days"]
    assert day1 == {"day": "2026-11-29", "inspections": 3, "scored": 3, "rejected": 2, "flagged": 2, "in_band": 1,
                    "score_min": 10.0, "score_mean": pytest.approx(43 / 3), "score_max": 20.0, "labelled_normal": 2,
                    "labelled_anomalous": 0, "false_alarms": 1, "misses": 0}  # fmt: skip
    assert day2 == {"day": "2026-11-30", "inspections": 3, "scored": 2, "rejected": 0, "flagged": 1, "in_band": 1,
                    "score_min": 11.0, "score_mean": 13.0, "score_max": 15.0, "labelled_normal": 0,
                    "labelled_anomalous": 2, "false_alarms": 0, "misses": 1}  # fmt: skip
    totals = answer["totals"]
    assert (totals["day"], totals["inspections"], totals["scored"], totals["rejected"]) == ("all", 6, 5, 2)
    assert (totals["score_min"], totals["score_max"], totals["score_mean"]) == (10.0, 20.0, pytest.approx(69 / 5))
    assert (answer["reject_rate"], answer["false_alarm_rate"], answer["miss_rate"]) == (pytest.approx(2 / 6), 0.5, 0.5)


def test_dashboard_of_an_unused_or_unknown_category(client: Any, models: Path) -> None:
    response = client.get("/v1/categories/nope/dashboard")
    assert response.status_code == 404 and response.json()["error"]["code"] == "category_not_found"
    assert client.get("/v1/categories/..%2Fx/dashboard").status_code in (400, 404)


def test_evidence_lists_labelled_history_then_evaluation_images_without_host_paths(client: Any) -> None:
    answer = client.get("/v1/categories/mono/evidence").json()
    assert answer["category"] == "mono" and isinstance(answer["tau"], float)
    items = answer["items"]
    assert [(i["source"], i["id"], i["name"], i["score"], i["label"]) for i in items] == [
        ("history", "i0", "a.png", 10.0, "normal"),
        ("history", "i1", "b.png", 13.0, "normal"),
        ("history", "i3", "d.png", 11.0, "anomalous"),
        ("history", "i4", "e.png", 15.0, "anomalous"),
        ("evaluation", "eval-mono/good/001.png", "good/001.png", 9.5, "normal"),
        ("evaluation", "eval-mono/crack/001.png", "crack/001.png", 30.25, "anomalous"),
    ]
    assert items[0]["pictures"] == {"box": "/v1/files/i0/box.png"} and items[0]["time"] == ROWS[0][0]
    assert (items[4]["run"], items[4]["run_tau"]) == ("eval-mono", 12.5)
    assert "/host/" not in json.dumps(answer)
    assert client.get("/v1/categories/nope/evidence").status_code == 404


def test_evidence_counts_each_image_file_once(models: Path, tmp_path: Path) -> None:
    """The same file labelled in the history and scored by evaluation runs is one image in the preview."""
    from eagle_iad.service import ServiceSettings, create_app

    runs = tmp_path / "runs"
    for run, rows in (("run-1", [("good/001.png", 0, 9.5, "aa"), ("good/002.png", 0, 8.0, "cc")]),
                      ("run-2", [("good/001.png", 0, 9.6, "aa"), ("crack/003.png", 1, 31.0, "bb"),
                                 ("crack/004.png", 1, 29.0, None)])):  # fmt: skip
        (runs / run).mkdir(parents=True)
        (runs / run / "metrics.json").write_text(json.dumps({"category": "mono", "tau": 12.5}))
        lines = [{"image": f"/data/{image}", "label": label, "defect_type": image.split("/")[0], "score": score,
                  **({} if digest is None else {"sha256": digest})}
                 for image, label, score, digest in rows]  # fmt: skip
        (runs / run / "scores.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    settings = ServiceSettings(models_dir=models, state_dir=tmp_path / "state", runs_dir=runs)
    store = InspectionStore(settings.database)
    history = [("h0", "001.png", 9.4, "normal", "aa"), ("h1", "001 again.png", 9.4, "anomalous", "aa"),
               ("h2", "old.png", 5.0, "normal", None), ("h3", "003.png", 31.0, "anomalous", "bb")]  # fmt: skip
    for index, (ident, name, score, label, digest) in enumerate(history):
        time = f"2026-12-0{index + 1}T08:00:00.000+00:00"
        store.add(Inspection(id=ident, time=time, category="mono", image_name=name, score=score, tau=12.0, s_max=None,
                             decision="normal", in_band=False, answer=None, caas_applied=False, verdict={}, pictures={},
                             label=label, label_time=time, image_sha256=digest))  # fmt: skip
    store.close()
    with TestClient(create_app(settings)) as test_client:
        items = test_client.get("/v1/categories/mono/evidence").json()["items"]
    assert [(i["id"], i["label"], i.get("also")) for i in items] == [
        ("h1", "anomalous", ["h0", "run-1/good/001.png", "run-2/good/001.png"]),  # the newest word on file "aa"
        ("h2", "normal", None),  # no digest (stored before digests): counted as it is
        ("h3", "anomalous", ["run-2/crack/003.png"]),
        ("run-1/good/002.png", "normal", None),
        ("run-2/crack/004.png", "anomalous", None),  # a run row without a digest
    ]
    assert "sha256" not in json.dumps(items)
