"""Several ``eagle serve`` replicas behind one address: one PostgreSQL history, one models folder, one
pictures folder (docs/PLANT.md). Real processes (SIGKILL needs one) on a real PostgreSQL
(eagle_iad/testing/postgres.py), with the same checks as the single service's fault tests."""

from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path
from typing import Any

from conftest import wait_s
from test_service import ServeProcess, call, inspect_request
from test_service_faults import Burst, _first_progress, _kill, fitted

from eagle_iad.service.store import INTERRUPTED, InspectionStore

__all__ = ["fitted"]  # the module-scoped fixture: an elpv expert, a data root and test cells


def _replica(fitted: dict[str, Any], models: Path, root: Path, url: str, name: str) -> ServeProcess:
    return ServeProcess(["--models", str(models), "--state-dir", str(root / name), "--history", url,
                         "--files", str(root / "files"), "--data-root", str(fitted["data"]),
                         "--log-level", "warning"])  # fmt: skip


def _threshold(base: str, tau: float, why: str) -> tuple[int, Any]:
    status, _, body = call("POST", f"{base}/v1/categories/mono/threshold", content_type="application/json",
                           body=json.dumps({"tau": tau, "why": why}).encode())  # fmt: skip
    return status, body


def test_replicas_share_one_history_and_each_others_changes(
    fitted: dict[str, Any], tmp_path: Path, postgres: Any
) -> None:
    url = postgres.new_database()
    models = tmp_path / "models"
    shutil.copytree(fitted["models"], models)
    a = _replica(fitted, models, tmp_path, url, "a")
    b = _replica(fitted, models, tmp_path, url, "b")
    try:
        image, other = fitted["images"][0], fitted["images"][1]
        # An inspection answered by one is in the history of both, with its pictures.
        status, _, first = inspect_request(a.base, image, filename="one.png")
        assert status == 200, first
        status, _, seen = call("GET", f"{b.base}/v1/inspections/{first['id']}")
        assert status == 200 and seen["score"] == first["score"] and seen["image_name"] == "one.png"
        picture = call("GET", b.base + first["pictures"]["heatmap"], raw=True)
        assert picture[0] == 200 and picture[2][:8] == b"\x89PNG\r\n\x1a\n"
        # An Idempotency-Key holds across replicas: a retry that lands on the other one gets the stored record.
        key = {"Idempotency-Key": "retry-1"}
        status, _, kept = inspect_request(a.base, image, filename="k.png", headers=key)
        assert status == 200
        status, headers, replayed = inspect_request(b.base, image, filename="k.png", headers=key)
        assert status == 200 and replayed == kept and headers.get("idempotent-replayed") == "true"
        status, _, refused = inspect_request(b.base, other, filename="k.png", headers=key)
        assert status == 422 and refused["error"]["code"] == "idempotency_key_reused", refused
        assert call("GET", f"{a.base}/v1/inspections?limit=50")[2]["total"] == 2
        # A threshold saved through one replica is used by the other for its next inspection.
        status, changed = _threshold(a.base, 123.5, "a replica test")
        assert status == 200 and changed["tau"] == 123.5, changed
        status, _, after = inspect_request(b.base, image, filename="after.png")
        assert status == 200 and after["tau"] == 123.5 and after["score"] == first["score"]
        # Changes racing on both replicas: each one is saved, or refused with 409; none is lost.
        answers: list[tuple[int, Any]] = []

        def change(base: str, tau: float) -> None:
            answers.append(_threshold(base, tau, f"race {tau}"))

        threads = [threading.Thread(target=change, args=((a if n % 2 else b).base, 200.0 + n)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(wait_s(120))
        saved = [body["tau"] for status, body in answers if status == 200]
        refused_codes = {body["error"]["code"] for status, body in answers if status != 200}
        assert len(answers) == 8 and saved and refused_codes <= {"model_changed"}, answers
        history = call("GET", f"{b.base}/v1/categories/mono")[2]["history"]
        races = [entry for entry in history if str(entry.get("why", "")).startswith("race ")]
        assert len(races) == len(saved)  # every 200 is in the model's history, and nothing else is
        final = call("GET", f"{a.base}/v1/categories/mono")[2]["tau"]
        assert final in saved and inspect_request(a.base, image)[2]["tau"] == final
    finally:
        a.stop()
        b.stop()


def test_a_burst_over_two_replicas_loses_nothing_when_one_is_killed(
    fitted: dict[str, Any], tmp_path: Path, postgres: Any
) -> None:
    """Requests spread over both; one replica is SIGKILLed mid-burst. Every answered inspection is stored
    once, every row has its pictures, the survivor keeps answering, and the storage order has no gaps."""
    url = postgres.new_database()
    a = _replica(fitted, fitted["models"], tmp_path, url, "a")
    b = _replica(fitted, fitted["models"], tmp_path, url, "b")
    burst = Burst(lambda index: (a if index % 2 else b).base, fitted["images"], 16)
    try:
        burst.start().wait_until(lambda answered: sum(index % 2 for index in answered) >= 2)
        _kill(a)
        burst.join(wait_s(120))
        answered, cut, refused = burst.answered, burst.cut, burst.refused
        assert not refused, refused
        assert all(index % 2 == 0 for index in range(16) if index not in answered and index not in cut)
        assert not [index for index in cut if index % 2 == 0]  # the survivor's requests were all answered
        assert status_ok(inspect_request(b.base, fitted["images"][0], filename="after.png"))
    finally:
        if a.process.poll() is None:
            _kill(a)
        b.stop()
    store = InspectionStore(url)
    try:
        total, rows = store.page(500, 0)
        by_id = {row.id: row for row in rows}
        assert total == len(by_id)
        answered_ids = {body["id"] for body in answered.values()}
        assert answered_ids <= set(by_id)  # nothing answered 200 is lost
        assert len(set(by_id) - answered_ids - {r.id for r in rows if r.image_name == "after.png"}) <= len(cut)
        for index, body in answered.items():
            assert by_id[body["id"]].image_name == f"burst{index:02d}.png"
            assert by_id[body["id"]].score == body["score"]
        seqs = [seq for seq, _ in store.since(0, limit=500)]
        assert seqs == list(range(1, total + 1))  # one storage order, no gaps, across both replicas
    finally:
        store.close()
    files = tmp_path / "files"
    for row in rows:
        for link in row.pictures.values():
            assert (files / link.removeprefix("/v1/files/")).is_file(), link  # no row without its pictures
    orphans = {folder.name for folder in files.iterdir()} - set(by_id)
    assert len(orphans) <= len(cut)  # only the killed replica's unanswered inspections (docs/PLANT.md)


def status_ok(response: tuple[int, dict[str, str], Any]) -> bool:
    return response[0] == 200


def test_a_category_is_fitted_by_one_replica_at_a_time(fitted: dict[str, Any], tmp_path: Path, postgres: Any) -> None:
    url = postgres.new_database()
    models = tmp_path / "models"
    shutil.copytree(fitted["models"], models)
    body = json.dumps({"folder": "many", "options": {"coreset_ratio": 0.5}}).encode()
    a = _replica(fitted, models, tmp_path, url, "a")
    b = _replica(fitted, models, tmp_path, url, "b")
    try:
        status, _, started = call(
            "POST", f"{a.base}/v1/categories/mono/fit", body=body, content_type="application/json"
        )
        assert status == 202, started
        job_id = started["job"]["id"]
        _first_progress(a.base, job_id)
        status, _, refused = call("POST", f"{b.base}/v1/categories/mono/fit", body=body,
                                  content_type="application/json")  # fmt: skip
        assert status == 409 and refused["error"]["code"] == "fit_in_progress", refused
        status, _, seen = call("GET", f"{b.base}/v1/jobs/{job_id}")  # the job's record is shared too
        assert status == 200 and seen["state"] == "running"
        status, _, refused = call("GET", f"{b.base}/v1/jobs/{job_id}/events")  # its stream is on a
        assert status == 409 and refused["error"]["code"] == "job_elsewhere", refused
        _kill(a)  # the lock dies with its holder's connection (once the server sees the session end)
        deadline = time.monotonic() + wait_s(60)
        while (dead := call("GET", f"{b.base}/v1/jobs/{job_id}")[2])["state"] == "running":
            assert time.monotonic() < deadline, dead
            time.sleep(0.2)
        assert (dead["state"], dead["error"]) == ("failed", INTERRUPTED), dead
        deadline = time.monotonic() + wait_s(60)
        while True:
            status, _, again = call("POST", f"{b.base}/v1/categories/mono/fit", body=body,
                                    content_type="application/json")  # fmt: skip
            if status == 202 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert status == 202, again
        # A replica starting now leaves the running fit of another replica alone.
        restarted = _replica(fitted, models, tmp_path, url, "a")
        try:
            alive = call("GET", f"{restarted.base}/v1/jobs/{again['job']['id']}")[2]
            assert alive["state"] in ("queued", "running", "succeeded"), alive
        finally:
            restarted.stop()
    finally:
        if a.process.poll() is None:
            _kill(a)
        b.stop()
