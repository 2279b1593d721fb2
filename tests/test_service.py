"""``eagle serve``: the HTTP API against a real server process on loopback with a real SQLite file.

One ``eagle serve`` subprocess (no key) serves a temp models dir holding one small elpv expert; the
last test stops it and restarts it on the same database with ``EAGLE_API_KEY`` set, which checks
both that history survives a restart and that every ``/v1`` route then needs the key. The MLLM
paths (full verdict, ``/v1/chat/completions``, 429 on a full queue) use the same app factory served
in-process by uvicorn, so a blocking fake backend can be controlled from the test.
"""

from __future__ import annotations

import http.client
import io
import json
import os
import re
import socket
import stat
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import BlockingBackend, LiveServer, wait_s
from PIL import Image

from eagle_iad.data import get_layout

KEY = "s3cret-key-of-the-tests"


def multipart(fields: Mapping[str, str], files: Sequence[tuple[str, str, bytes, str]]) -> tuple[bytes, str]:
    """Encode form fields and ``(field, filename, data, content_type)`` files as multipart/form-data."""
    boundary = uuid.uuid4().hex
    out = io.BytesIO()
    for name, value in fields.items():
        out.write(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    for name, filename, data, content_type in files:
        out.write(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
            f"Content-Type: {content_type}\r\n\r\n".encode()
        )
        out.write(data + b"\r\n")
    out.write(f"--{boundary}--\r\n".encode())
    return out.getvalue(), f"multipart/form-data; boundary={boundary}"


def call(
    method: str,
    url: str,
    *,
    body: bytes | None = None,
    content_type: str | None = None,
    key: str | None = None,
    raw: bool = False,
    headers: Mapping[str, str] | None = None,
) -> tuple[int, dict[str, str], Any]:
    """One HTTP request; returns (status, lower-cased headers, decoded JSON or raw bytes)."""
    headers = {**(headers or {}), **({} if content_type is None else {"Content-Type": content_type})}
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    request = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=wait_s(120)) as response:
            status, head, data = response.status, dict(response.headers.items()), response.read()
    except urllib.error.HTTPError as exc:
        status, head, data = exc.code, dict(exc.headers.items()), exc.read()
    head = {k.lower(): v for k, v in head.items()}
    if raw or not head.get("content-type", "").startswith("application/json"):
        return status, head, data
    return status, head, json.loads(data)


def png(rgb: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG")
    return buffer.getvalue()


def zip_of(members: Sequence[tuple[str, bytes]], symlink: str | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members:
            archive.writestr(name, data)
        if symlink is not None:
            info = zipfile.ZipInfo("link.png")
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(info, symlink)
    return buffer.getvalue()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class ServeProcess:
    """``eagle serve`` as a subprocess on a free loopback port."""

    def __init__(self, args: Sequence[str], api_key: str | None = None, prefix: Sequence[str] = ()) -> None:
        """``prefix``: a command the service runs under (e.g. ``unshare`` for a private tmpfs)."""
        self.port = free_port()
        command = [*prefix, sys.executable, "-m", "eagle_iad.cli", "serve", *args, "--port", str(self.port)]
        env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
        env.pop("EAGLE_API_KEY", None)
        if api_key is not None:
            env["EAGLE_API_KEY"] = api_key
        self.process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + wait_s(90)
        while True:
            assert self.process.poll() is None, self.process.communicate()[1]
            try:
                if call("GET", f"{self.base}/healthz")[0] == 200:
                    break
            except (urllib.error.URLError, ConnectionError):
                pass
            assert time.monotonic() < deadline, "eagle serve did not come up"
            time.sleep(0.2)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=wait_s(30))


@pytest.fixture(scope="module")
def cells() -> dict[str, list[Path]]:
    layout = get_layout("elpv")
    train = [s.path for s in layout.samples(None, "mono", "train")]
    test = layout.samples(None, "mono", "test")
    return {
        "train": train[:8],
        "upload": train[8:14],
        "anomalous": [s.path for s in test if s.label == 1][:2],
        "normal": [s.path for s in test if s.label == 0][:1],
    }


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory, cells: dict[str, list[Path]]) -> dict[str, Path]:
    """models/mono (fitted on 8 cells), a data root with a folder of cells, a runs dir, state dir and db."""
    import torch

    from eagle_iad.expert import fit, save

    root = tmp_path_factory.mktemp("service")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        save(fit(cells["train"], "mono").model, root / "models" / "mono")
    finally:
        torch.set_num_threads(before)
    data = root / "data"
    (data / "cells").mkdir(parents=True)
    for path in cells["upload"][:4]:
        (data / "cells" / path.name).write_bytes(path.read_bytes())
    (data / "escape").symlink_to(root / "models")  # a link out of the data root
    (data / "broken").mkdir()
    for name in ("a.png", "b.png"):
        (data / "broken" / name).write_text("not an image")  # found by suffix, refused by the fit
    runs = root / "runs"
    (runs / "run-a").mkdir(parents=True)
    (runs / "run-a" / "metrics.json").write_text(json.dumps({"image_auroc": 0.9}))
    (runs / "run-a" / "run.json").write_text(json.dumps({"hash": "abc"}))
    (runs / "run-a" / "curves").mkdir()
    Image.new("RGB", (8, 8), (255, 0, 0)).save(runs / "run-a" / "histogram.png")
    Image.new("RGB", (8, 8), (0, 0, 255)).save(runs / "run-a" / "curves" / "layer.png")
    (runs / "run-a" / "notes.txt").write_text("not a figure")
    (runs / "not-a-run").mkdir()
    return {"root": root, "models": root / "models", "data": data, "runs": runs, "state": root / "state",
            "db": root / "history.sqlite3"}  # fmt: skip


def serve_args(workspace: dict[str, Path]) -> list[str]:
    return [
        "--models", str(workspace["models"]), "--data-root", str(workspace["data"]), "--runs", str(workspace["runs"]),
        "--state-dir", str(workspace["state"]), "--db", str(workspace["db"]), "--max-upload-mb", "1",
        "--max-pixels", "1000000", "--max-zip-mb", "4", "--max-zip-files", "20", "--log-level", "warning",
    ]  # fmt: skip


@pytest.fixture(scope="module")
def server(workspace: dict[str, Path]) -> Iterator[ServeProcess]:
    process = ServeProcess(serve_args(workspace))
    try:
        yield process
    finally:
        process.stop()


def _error(response: tuple[int, dict[str, str], Any], status: int, *needles: str) -> None:
    code, _, body = response
    assert code == status, body
    for needle in needles:
        assert needle in body["error"]["message"], body


def inspect_request(base: str, data: bytes, category: str = "mono", filename: str = "cell.png",
                    content_type: str = "image/png", key: str | None = None,
                    headers: Mapping[str, str] | None = None,
                    **fields: str) -> tuple[int, dict[str, str], Any]:  # fmt: skip
    body, ctype = multipart({"category": category, **fields}, [("image", filename, data, content_type)])
    return call("POST", f"{base}/v1/inspect", body=body, content_type=ctype, key=key, headers=headers)


def test_health_openapi_and_metrics(server: ServeProcess) -> None:
    status, _, health = call("GET", f"{server.base}/healthz")
    assert status == 200 and health["status"] == "ok" and health["mllm"] is False
    status, _, spec = call("GET", f"{server.base}/openapi.json")
    assert status == 200
    for path in ("/v1/categories", "/v1/categories/{name}", "/v1/categories/{name}/fit", "/v1/jobs/{job_id}",
                 "/v1/jobs/{job_id}/events", "/v1/inspect", "/v1/inspections", "/v1/evaluations"):  # fmt: skip
        assert path in spec["paths"], path
    inspect_schema = spec["paths"]["/v1/inspect"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert inspect_schema["required"] == ["image", "category"]
    page = spec["paths"]["/v1/inspections"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert page["$ref"].endswith("/InspectionPage") and "InspectionRecord" in spec["components"]["schemas"]
    status, head, text = call("GET", f"{server.base}/metrics")
    assert status == 200 and head["content-type"].startswith("text/plain")
    body = text.decode()
    assert 'eagle_http_requests_total{method="GET",route="/healthz",status="200"}' in body
    for name in ("eagle_http_request_duration_seconds_bucket", "eagle_mllm_queue_depth 0.0", "eagle_caas_rate",
                 "eagle_fit_jobs_pending"):  # fmt: skip
        assert name in body


def test_categories(server: ServeProcess, workspace: dict[str, Path]) -> None:
    status, _, listing = call("GET", f"{server.base}/v1/categories")
    assert status == 200 and [c["name"] for c in listing["categories"]] == ["mono"]
    summary = listing["categories"][0]
    assert summary["backbone"] == "efficientnet_lite0" and summary["rule"] == "ksigma"
    assert summary["s_max"] > 0 and summary["tau"] > 0 and summary["created"]
    status, _, detail = call("GET", f"{server.base}/v1/categories/mono")
    assert status == 200 and detail["training_scores"]["count"] == 8 and len(detail["training_scores"]["values"]) == 8
    assert sum(detail["training_scores"]["histogram"]["counts"]) == 8
    # The heatmaps' legend on the score's scale: the colour range times tau / map_tau, the threshold at tau.
    calibration = json.loads((workspace["models"] / "mono" / "model.json").read_text())["calibration"]
    factor = detail["tau"] / calibration["map_tau"]
    low, high = calibration["colour_min"] * factor, calibration["colour_max"] * factor
    assert detail["map_legend"] == pytest.approx({"low": low, "high": high, "threshold": detail["tau"]})
    assert summary["map_legend"] == detail["map_legend"]
    # The model's warnings as its manifest keeps them (eight images are too few for a trusted tau).
    warnings = json.loads((workspace["models"] / "mono" / "model.json").read_text())["warnings"]
    assert detail["warnings"] == summary["warnings"] == warnings and warnings[0].startswith("only 8 training images:")
    # The training images' exposure range (schema 12) and the factors a photo must lie beyond to warn: 2, widened
    # for eight images by the range's own width (expert/lighting.py)
    exposure = json.loads((workspace["models"] / "mono" / "model.json").read_text())["training"]["exposure"]
    (low, high), (flat, harsh) = exposure["mean"], exposure["spread"]
    assert exposure["images"] == 8 and 0 < low < high and 0 < flat < harsh
    assert detail["training_exposure"] == summary["training_exposure"] == {
        **exposure, "mean_factor": pytest.approx(2 * (high / low) ** (2 / 9)),
        "spread_factor": pytest.approx(2 * (harsh / flat) ** (2 / 9)),
    }  # fmt: skip
    _error(call("GET", f"{server.base}/v1/categories/nothing"), 404, "nothing")
    _error(call("GET", f"{server.base}/v1/categories/.."), 400, "invalid category name")
    _error(call("GET", f"{server.base}/v1/categories/..%2F..%2Fetc"), 404)  # the encoded slash never matches a name


def test_inspect_history_and_pictures(server: ServeProcess, cells: dict[str, list[Path]]) -> None:
    sent = "../../Zelle 7 (Charge B) ä.png"
    status, _, record = inspect_request(server.base, cells["anomalous"][0].read_bytes(), filename=sent)
    assert status == 200, record
    assert record["category"] == "mono" and record["decision"] in ("anomalous", "normal")
    assert record["tau"] > 0 and record["answer"] is None and record["caas_applied"] is False
    assert record["image_name"] == "Zelle 7 (Charge B) ä.png"  # the name kept exactly; never a path out
    for link in record["pictures"].values():  # the pictures' own file names are safe: links need no escaping
        assert re.fullmatch(r"/v1/files/[0-9a-f]{32}/Zelle_7__Charge_B____[a-z]+\.(png|jpg)", link), link
    assert record["verdict"]["boxes"] is not None and set(record["pictures"]) == {"heatmap", "box", "reference"}
    status, head, picture = call("GET", server.base + record["pictures"]["heatmap"], raw=True)
    assert status == 200 and head["content-type"] == "image/png" and picture.startswith(b"\x89PNG")
    assert inspect_request(server.base, cells["normal"][0].read_bytes())[0] == 200
    status, _, page = call("GET", f"{server.base}/v1/inspections?limit=1")
    assert status == 200 and page["total"] >= 2 and len(page["items"]) == 1 and page["next_offset"] == 1
    status, _, page2 = call("GET", f"{server.base}/v1/inspections?limit=1&offset=1")
    assert page2["items"][0]["id"] == record["id"]  # newest first
    _error(call("GET", f"{server.base}/v1/inspections?limit=0"), 400, "limit")
    # hostile inputs
    _error(call("GET", f"{server.base}/v1/files/..%2F..%2Fhistory.sqlite3"), 400, "without '..'")
    _error(call("GET", f"{server.base}/v1/files/{record['id']}/nothing.png"), 404)
    _error(inspect_request(server.base, b"<html>not a picture</html>"), 400, "not a recognised image")
    _error(inspect_request(server.base, cells["normal"][0].read_bytes(), category="../models"), 400, "category name")
    _error(inspect_request(server.base, cells["normal"][0].read_bytes(), category="ghost"), 404, "ghost")
    big_bytes = np.random.default_rng(0).integers(0, 256, (700, 700, 3), dtype=np.uint8)
    _error(inspect_request(server.base, png(big_bytes)), 413, "exceeds the limit")  # > 1 MiB body
    chunked = http.client.HTTPConnection("127.0.0.1", server.port, timeout=wait_s(30))  # no Content-Length to trust
    chunked.request("POST", "/v1/inspect", body=iter([b"x" * 65536] * 40), headers={"Content-Type": "image/png"})
    response = chunked.getresponse()
    assert response.status == 413 and b"exceeds the limit" in response.read()
    chunked.close()
    many_pixels = np.zeros((1100, 1000, 3), dtype=np.uint8)  # compresses small but has 1.1 MP
    _error(inspect_request(server.base, png(many_pixels)), 413, "pixels")
    _error(inspect_request(server.base, cells["normal"][0].read_bytes(), question="Is it cracked?"), 400, "--mllm")


def test_an_idempotency_key_stores_one_record_per_upload(server: ServeProcess, cells: dict[str, list[Path]]) -> None:
    """A reloaded console or a retrying client sends an upload again: with its key, the history keeps one record."""

    def total() -> int:
        return int(call("GET", f"{server.base}/v1/inspections?limit=1")[2]["total"])

    data = cells["anomalous"][1].read_bytes()
    key = {"Idempotency-Key": str(uuid.uuid4())}
    before = total()
    answers: list[tuple[int, dict[str, str], Any]] = []
    tries = [threading.Thread(target=lambda: answers.append(inspect_request(server.base, data, headers=key)))
             for _ in range(3)]  # fmt: skip
    for thread in tries:  # at once: the later ones wait for the first instead of inspecting too
        thread.start()
    for thread in tries:
        thread.join()
    assert [status for status, _, _ in answers] == [200, 200, 200], answers
    assert answers[0][2] == answers[1][2] == answers[2][2]  # the one record, field for field
    assert sorted(head.get("idempotent-replayed", "") for _, head, _ in answers) == ["", "true", "true"]
    assert total() == before + 1
    status, head, again = inspect_request(server.base, data, headers=key)  # a retry long after: the stored record
    assert status == 200 and again == answers[0][2] and head["idempotent-replayed"] == "true"
    assert total() == before + 1
    other = cells["normal"][0].read_bytes()
    reused = inspect_request(server.base, other, headers=key)
    _error(reused, 422, "was already used for another request", "send a new key with each upload")
    assert reused[2]["error"]["code"] == "idempotency_key_reused"
    for bad in ("with space", "x" * 256, "zelle-ä"):
        refused = inspect_request(server.base, other, headers={"Idempotency-Key": bad})
        _error(refused, 400, "Idempotency-Key must be 1 to 255 visible ASCII characters")
    assert total() == before + 1
    assert inspect_request(server.base, other)[0] == inspect_request(server.base, other)[0] == 200
    assert total() == before + 3  # without a key, each upload is an inspection (as before)


def _events(base: str, job_id: str) -> list[dict[str, Any]]:
    status, head, stream = call("GET", f"{base}/v1/jobs/{job_id}/events", raw=True)
    assert status == 200 and head["content-type"].startswith("text/event-stream")
    events = []
    for frame in stream.decode().split("\n\n"):
        data = [line[len("data: ") :] for line in frame.splitlines() if line.startswith("data: ")]
        if data:
            events.append(json.loads(data[0]))
    return events


def test_fit_from_zip_streams_progress(server: ServeProcess, cells: dict[str, list[Path]]) -> None:
    archive = zip_of([(f"cells/{p.name}", p.read_bytes()) for p in cells["upload"]])
    body, ctype = multipart({"coreset_ratio": "0.05"}, [("files", "cells.zip", archive, "application/zip")])
    status, _, started = call("POST", f"{server.base}/v1/categories/fresh/fit", body=body, content_type=ctype)
    assert status == 202, started
    job_id = started["job"]["id"]
    assert started["links"]["events"] == f"/v1/jobs/{job_id}/events"
    events = _events(server.base, job_id)
    states = [e["state"] for e in events if e["event"] == "state"]
    assert states == ["queued", "running", "succeeded"], events
    stages = {e["stage"] for e in events if e["event"] == "progress"}
    assert stages == {"features", "coreset", "training scores"}
    features = [e for e in events if e["event"] == "progress" and e["stage"] == "features"]
    assert features[-1]["done"] == features[-1]["total"] == 6
    request = urllib.request.Request(f"{server.base}/v1/jobs/{job_id}/events", headers={"Last-Event-ID": "2"})
    with urllib.request.urlopen(request, timeout=wait_s(30)) as response:  # a reconnect resumes after event 2
        resumed = [json.loads(line[6:]) for line in response.read().decode().splitlines() if line.startswith("data: ")]
    assert [e["seq"] for e in resumed] == [e["seq"] for e in events][3:]
    status, _, job = call("GET", f"{server.base}/v1/jobs/{job_id}")
    assert status == 200 and job["state"] == "succeeded" and job["result"]["train_images"] == 6
    status, _, fresh = call("GET", f"{server.base}/v1/categories/fresh")
    assert status == 200 and fresh["train_images"] == 6
    _error(call("GET", f"{server.base}/v1/jobs/nope"), 404)


def test_fit_from_server_folder(server: ServeProcess, workspace: dict[str, Path]) -> None:
    body = json.dumps({"folder": "cells", "options": {"coreset_ratio": 0.05}}).encode()
    status, _, started = call("POST", f"{server.base}/v1/categories/folder-fit/fit", body=body,
                              content_type="application/json")  # fmt: skip
    assert status == 202, started
    states = [e["state"] for e in _events(server.base, started["job"]["id"]) if e["event"] == "state"]
    assert states[-1] == "succeeded"
    assert (workspace["models"] / "folder-fit" / "model.json").is_file()
    image = next((workspace["data"] / "cells").iterdir()).read_bytes()
    first = inspect_request(server.base, image, category="folder-fit")[2]
    # A refit replaces the model; the service's cached expert is reloaded, not served stale.
    body = json.dumps({"folder": "cells", "options": {"coreset_ratio": 0.05, "rule": "fixed", "tau": 1234.5}}).encode()
    status, _, started = call("POST", f"{server.base}/v1/categories/folder-fit/fit", body=body,
                              content_type="application/json")  # fmt: skip
    assert status == 202 and _events(server.base, started["job"]["id"])[-1]["state"] == "succeeded"
    second = inspect_request(server.base, image, category="folder-fit")[2]
    assert second["tau"] == 1234.5 != first["tau"] and second["decision"] == "normal"


def test_reference_is_the_nearest_normal_training_image(
    server: ServeProcess, workspace: dict[str, Path], cells: dict[str, list[Path]]
) -> None:
    from dataclasses import replace

    from eagle_iad.expert import load, save

    model = load(workspace["models"] / "mono")
    assert model.references is not None
    status, _, record = inspect_request(server.base, cells["anomalous"][1].read_bytes(), filename="lot/cut/001.png")
    assert status == 200, record
    reference = record["reference"]
    assert reference == record["verdict"]["reference"] and reference["unavailable"] is None
    assert reference["image"] == model.train_images[reference["index"]]
    assert int(model.bank_image_ids[reference["bank_row"]]) == reference["index"]
    assert record["pictures"]["reference"] == f"/v1/files/{record['id']}/001_reference.jpg"
    status, head, picture = call("GET", f"{server.base}/v1/inspections/{record['id']}/reference", raw=True)
    assert status == 200 and head["content-type"] == "image/jpeg"
    assert picture == model.references[reference["index"]]
    status, _, page = call("GET", f"{server.base}/v1/inspections?limit=1")
    assert page["items"][0]["reference"] == reference  # History has it too
    fresh = load(workspace["models"] / "fresh")  # fitted from uploads: the pictures live in its model folder
    assert fresh.references is not None and len(fresh.references) == 6
    # A model fitted before schema 4 still inspects; its reference names the image but has no picture.
    save(replace(model, references=None), workspace["models"] / "legacy")
    status, _, old = inspect_request(server.base, cells["normal"][0].read_bytes(), category="legacy")
    assert status == 200, old
    why = "no reference: model fitted before model schema 4; refit to get one"
    assert old["reference"]["unavailable"] == why and "reference" not in old["pictures"]
    status, _, body = call("GET", f"{server.base}/v1/inspections/{old['id']}/reference")
    assert status == 404 and body["error"]["code"] == "no_reference" and body["error"]["message"] == why
    _error(call("GET", f"{server.base}/v1/inspections/nope/reference"), 404, "no inspection 'nope'")
    status, _, again = call("GET", f"{server.base}/v1/inspections/{record['id']}")
    assert status == 200 and again == record
    _error(call("GET", f"{server.base}/v1/inspections/nope"), 404, "no inspection 'nope'")


def test_failed_fit_is_reported(server: ServeProcess, workspace: dict[str, Path]) -> None:
    body = json.dumps({"folder": "broken"}).encode()
    status, _, started = call("POST", f"{server.base}/v1/categories/broken/fit", body=body,
                              content_type="application/json")  # fmt: skip
    assert status == 202, started
    last = _events(server.base, started["job"]["id"])[-1]
    assert last["state"] == "failed", last
    # both bad files named at once, without host paths
    assert last["error"] == (
        "2 of the 2 training images cannot be used: broken/a.png: not a recognised image format; "
        "broken/b.png: not a recognised image format; fix or remove them (nothing was fitted)"
    )
    job = call("GET", f"{server.base}/v1/jobs/{started['job']['id']}")[2]
    assert job["state"] == "failed" and job["error"] == last["error"]
    assert not (workspace["models"] / "broken").exists()


def test_fit_refuses_hostile_inputs(
    server: ServeProcess, cells: dict[str, list[Path]], workspace: dict[str, Path]
) -> None:
    url = f"{server.base}/v1/categories/hostile/fit"
    good = [(p.name, p.read_bytes()) for p in cells["upload"][:2]]
    answers: list[Any] = []  # every refusal below: each must carry a code (docs/SERVICE.md, "Limits")

    def upload(archive: bytes, content_type: str = "application/zip", **fields: str) -> Any:
        body, ctype = multipart(fields, [("files", "x.zip", archive, content_type)])
        answers.append(call("POST", url, body=body, content_type=ctype))
        return answers[-1]

    def post(body: bytes, content_type: str = "application/json", method: str = "POST") -> Any:
        answers.append(call(method, url, body=body, content_type=content_type))
        return answers[-1]

    def coded(response: Any, status: int, code: str, *needles: str) -> None:
        _error(response, status, *needles)
        assert response[2]["error"]["code"] == code, response[2]

    _error(upload(zip_of([*good, ("../../evil.png", good[0][1])])), 400, "unsafe path")
    _error(upload(zip_of([*good, ("/tmp/evil.png", good[0][1])])), 400, "unsafe path")
    _error(upload(zip_of(good, symlink="/etc/passwd")), 400, "symbolic link")
    _error(upload(zip_of([*good, ("notes.png", b"just text, named like a picture")])), 400, "not a recognised image")
    _error(upload(zip_of([(f"{i}.png", good[0][1]) for i in range(25)])), 413, "25 files")
    bomb = zip_of([("bomb.png", b"\0" * (16 * 1024 * 1024))])  # 16 MiB of zeros in a few KiB
    assert len(bomb) < 100_000
    _error(upload(bomb), 413, "expands beyond")
    _error(upload(b"PK\x03\x04 but not really a zip"), 400, "not a valid zip")
    _error(upload(b"GIF89a-but-text", content_type="image/gif"), 400, "not a recognised image")
    _error(upload(zip_of(good), backbone="resnet9000"), 400, "unknown backbone")
    coded(upload(zip_of(good), frobnicate="1"), 400, "invalid_option", "unknown fit options")
    # a form's fields are the options themselves: an 'options' field (the JSON body's word) is one it does not take
    coded(upload(zip_of(good), options='{"size": 128}'), 400, "invalid_option", "unknown fit options ['options']")
    coded(upload(zip_of(good), size="99999"), 400, "invalid_option", "size")
    coded(post(b"{"), 400, "invalid_request", "invalid JSON body")
    coded(post(b"[]"), 400, "invalid_request", "must be an object")
    coded(post(json.dumps({"folder": 3}).encode()), 400, "invalid_path", "'folder' must be a string")
    coded(post(json.dumps({"folder": "cells", "options": [1]}).encode()), 400, "invalid_option", "'options' must")
    coded(post(json.dumps({"folder": "cells", "by": "eve"}).encode()), 400, "invalid_request", "unknown fields ['by']")
    body, ctype = multipart({}, [("image", "a.png", good[0][1], "image/png")])
    coded(post(body, ctype), 400, "invalid_request", "unexpected file field 'image'")
    body, ctype = multipart({}, [("files", "a.png", good[0][1], "image/png")])
    coded(post(body, ctype), 400, "too_few_images", "1 training image(s); at least 2")
    coded(post(b"", method="PUT"), 405, "method_not_allowed")
    # another rule's parameter would be dropped without a word: refused, as `eagle fit` refuses it
    _error(upload(zip_of(good), rule="ksigma", q="0.5"), 400, "q is an option of rule 'quantile', not of 'ksigma'")
    body = json.dumps({"folder": "cells", "options": {"rule": "quantile", "k": 2}}).encode()
    _error(post(body), 400, "k is an option of rule 'ksigma' (or 'mad'), not of 'quantile'")
    for folder in ("../models", "/etc", "cells/../../models", "escape"):
        body = json.dumps({"folder": folder}).encode()
        _error(post(body), 400)
    body = json.dumps({"folder": "cells"}).encode()
    answers.append(call("POST", f"{server.base}/v1/categories/..evil/fit", body=body, content_type="application/json"))
    coded(answers[-1], 400, "invalid_name")
    coded(post(b"{}"), 400, "invalid_request", "either")
    assert [answer[2]["error"] for answer in answers if not answer[2]["error"]["code"]] == []
    assert not (workspace["models"] / "hostile").exists()
    assert not (workspace["root"] / "evil.png").exists() and not Path("/tmp/evil.png").exists()
    assert list((workspace["state"] / "uploads").iterdir()) == []  # refused uploads leave nothing behind


def test_every_refusal_the_service_or_its_chat_makes_names_a_code() -> None:
    """A client tells refusals apart by ``code`` (docs/SERVICE.md, "Limits"); a refusal written without one
    answered ``"code": null`` (a fit's ``options`` form field). Every ``ApiError`` below 500 in the service
    and the MLLM server it mounts names its code; a new route cannot leave it out unseen."""
    import ast

    import eagle_iad

    root = Path(eagle_iad.__file__).parent
    missing = []
    for path in sorted([*(root / "service").rglob("*.py"), *(root / "station").rglob("*.py"),
                        root / "mllm" / "server.py"]):  # fmt: skip
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not (isinstance(node, ast.Call) and getattr(node.func, "id", None) == "ApiError"):
                continue
            status = node.args[0] if node.args else None
            server_side = isinstance(status, ast.Constant) and isinstance(status.value, int) and status.value >= 500
            if not server_side and "code" not in {keyword.arg for keyword in node.keywords}:
                missing.append(f"{path.relative_to(root)}:{node.lineno}")
    assert missing == []


def test_corrupt_category_is_409_without_host_paths(server: ServeProcess, workspace: dict[str, Path]) -> None:
    bad = workspace["models"] / "corrupt"
    bad.mkdir()
    (bad / "model.json").write_text("{not json")
    (bad / "tensors.safetensors").write_bytes(b"")
    try:
        for response in (call("GET", f"{server.base}/v1/categories/corrupt"),
                         inspect_request(server.base, next((workspace["data"] / "cells").iterdir()).read_bytes(),
                                         category="corrupt")):  # fmt: skip
            _error(response, 409, "corrupt")
            assert str(workspace["root"]) not in response[2]["error"]["message"]
        listed = {c["name"]: c for c in call("GET", f"{server.base}/v1/categories")[2]["categories"]}
        assert "error" in listed["corrupt"] and str(workspace["root"]) not in listed["corrupt"]["error"]
    finally:
        for path in bad.iterdir():
            path.unlink()
        bad.rmdir()


def test_evaluations(server: ServeProcess) -> None:
    status, _, body = call("GET", f"{server.base}/v1/evaluations")
    assert status == 200 and [r["name"] for r in body["runs"]] == ["run-a"]
    run = body["runs"][0]
    assert run["metrics"] == {"image_auroc": 0.9} and run["run"] == {"hash": "abc"}
    assert run["plots"] == {
        "histogram.png": "/v1/evaluations/run-a/files/histogram.png",
        "curves/layer.png": "/v1/evaluations/run-a/files/curves/layer.png",
    }
    status, head, figure = call("GET", server.base + run["plots"]["curves/layer.png"], raw=True)
    assert status == 200 and head["content-type"] == "image/png"
    assert Image.open(io.BytesIO(figure)).getpixel((0, 0)) == (0, 0, 255)
    _error(call("GET", f"{server.base}/v1/evaluations/run-a/files/notes.txt"), 404, "no figure")
    _error(call("GET", f"{server.base}/v1/evaluations/run-b/files/histogram.png"), 404)
    _error(call("GET", f"{server.base}/v1/evaluations/run-a/files/..%2F..%2Fmodels%2Fmono%2Fmanifest.json"), 400)
    _error(call("GET", f"{server.base}/v1/evaluations/..%2Fmodels/files/x.png"), 404)


def test_history_filters_by_decision(server: ServeProcess) -> None:
    totals = {}
    for decision in ("anomalous", "normal", "unrecognised", "undecided"):  # a partition of the history
        status, _, page = call("GET", f"{server.base}/v1/inspections?limit=500&decision={decision}")
        assert status == 200
        assert all((item["decision"] == decision) if decision != "undecided" else item["decision"] is None
                   for item in page["items"])  # fmt: skip
        totals[decision] = page["total"]
    everything = call("GET", f"{server.base}/v1/inspections?limit=500")[2]
    assert sum(totals.values()) == everything["total"] and totals["anomalous"] + totals["normal"] >= 2
    status, _, both = call("GET", f"{server.base}/v1/inspections?limit=500&decision=normal&category=mono")
    expected = [i["id"] for i in everything["items"] if i["decision"] == "normal" and i["category"] == "mono"]
    assert [i["id"] for i in both["items"]] == expected and both["total"] == len(expected) >= 1
    _error(call("GET", f"{server.base}/v1/inspections?decision=maybe"), 400, "decision")


def test_labels_correct_the_verdict_beside_it(server: ServeProcess, cells: dict[str, list[Path]]) -> None:
    status, _, record = inspect_request(server.base, cells["normal"][0].read_bytes(), filename="lot7/cut/003.png")
    assert status == 200 and record["image_name"] == "lot7/cut/003.png" and record["label"] is None
    url = f"{server.base}/v1/inspections/{record['id']}/label"
    status, _, labelled = call("PUT", url, body=b'{"label": "anomalous"}', content_type="application/json")
    assert status == 200 and labelled["label"] == "anomalous" and labelled["label_time"]
    assert {k: v for k, v in labelled.items() if not k.startswith("label") and k != "notices"} == {
        k: v for k, v in record.items() if not k.startswith("label")
    }  # the verdict is kept as it was (notices: what the label's answer says besides the record)
    assert labelled["notices"] == [] and [e["label"] for e in labelled["label_history"]] == ["anomalous"]
    page = call("GET", f"{server.base}/v1/inspections?limit=500&label=anomalous")[2]
    assert [item["id"] for item in page["items"]] == [record["id"]]
    unlabelled = call("GET", f"{server.base}/v1/inspections?limit=500&label=unlabelled")[2]
    assert record["id"] not in [item["id"] for item in unlabelled["items"]]
    status, _, cleared = call("PUT", url, body=b'{"label": null}', content_type="application/json")
    assert status == 200 and cleared["label"] is None and cleared["label_time"] is None
    _error(call("PUT", url, body=b'{"label": "broken"}', content_type="application/json"), 400, "label")
    _error(call("PUT", f"{server.base}/v1/inspections/nothing/label", body=b'{"label": "normal"}',
                content_type="application/json"), 404, "no inspection 'nothing'")  # fmt: skip
    _error(call("GET", f"{server.base}/v1/inspections?label=maybe"), 400, "label")


class Feed:
    """A live ``/v1/inspections/events`` connection read frame by frame (real HTTP, no client library)."""

    def __init__(self, base: str, query: str = "", last_event_id: str | None = None, key: str | None = None,
                 path: str = "/v1/inspections/events") -> None:  # fmt: skip
        host, port = base.removeprefix("http://").split(":")
        self.connection = http.client.HTTPConnection(host, int(port), timeout=wait_s(60))
        headers = {"Accept": "text/event-stream", **({} if last_event_id is None else {"Last-Event-ID": last_event_id})}
        if key is not None:
            headers["Authorization"] = f"Bearer {key}"
        self.connection.request("GET", f"{path}{query}", headers=headers)
        self.response = self.connection.getresponse()

    def frame(self) -> dict[str, str]:
        """The next frame's fields (comment-only frames included, as ``{":": text}``)."""
        fields: dict[str, str] = {}
        while True:
            line = self.response.readline().decode()
            if line in ("\n", ""):
                return fields
            key, _, value = line.rstrip("\n").partition(":")
            fields[key or ":"] = value.strip()

    def event(self) -> dict[str, str]:
        while True:
            frame = self.frame()
            if frame.get("event"):
                return frame

    def close(self) -> None:
        self.connection.close()


def test_the_history_feed_streams_each_new_inspection_and_resumes(
    server: ServeProcess, cells: dict[str, list[Path]]
) -> None:
    everything, other = Feed(server.base), Feed(server.base, "?category=elsewhere")
    try:
        assert everything.response.status == 200
        assert everything.response.getheader("Content-Type", "").startswith("text/event-stream")
        opening = everything.frame()
        assert opening["retry"] == "2000" and opening[":"] == "feed open" and opening["id"].isdigit()
        other.frame()
        status, _, record = inspect_request(server.base, cells["normal"][0].read_bytes(), filename="feed-1.png")
        assert status == 200
        first = everything.event()
        data = json.loads(first["data"])
        assert first["event"] == "inspection" and first["id"] == str(data["seq"])
        assert int(first["id"]) > int(opening["id"])  # the opening frame said where the feed stood
        assert {k: data[k] for k in ("id", "time", "category", "image_name", "decision", "station")} == {
            "id": record["id"], "time": record["time"], "category": "mono", "image_name": "feed-1.png",
            "decision": record["decision"], "station": None}  # fmt: skip
        status, _, second_record = inspect_request(server.base, cells["normal"][0].read_bytes(), filename="feed-2.png")
        second = everything.event()
        assert json.loads(second["data"])["id"] == second_record["id"] and int(second["id"]) > int(first["id"])
    finally:
        everything.close()
    # A client that lost the connection resumes after the last event it saw: nothing lost, nothing repeated.
    resumed = Feed(server.base, last_event_id=first["id"])
    try:
        assert resumed.frame()["id"] == first["id"]
        assert json.loads(resumed.event()["data"])["id"] == second_record["id"]
    finally:
        resumed.close()
    # An id from another history (a replaced file) is no promise: the feed starts from the newest record.
    foreign = Feed(server.base, last_event_id="999999999")
    try:
        assert foreign.frame()["id"] == second["id"]
    finally:
        foreign.close()
    # Another category's feed saw neither; a bad category name is refused before the stream opens.
    other.connection.sock.settimeout(3)  # type: ignore[union-attr]
    with pytest.raises(TimeoutError):
        other.event()
    other.close()
    _error(call("GET", f"{server.base}/v1/inspections/events?category=.."), 400, "invalid category name")


def test_openapi_document_matches_the_generated_client(capsys: pytest.CaptureFixture[str]) -> None:
    """The TypeScript client is generated from this document; a route change must regenerate it."""
    from eagle_iad.cli import main

    assert main(["openapi"]) == 0
    committed = (Path(__file__).resolve().parents[1] / "clients" / "ts" / "openapi.json").read_text()
    assert capsys.readouterr().out == committed, "run 'npm run generate -w clients/ts' and commit the result"


def test_console_is_served_with_strict_headers(workspace: dict[str, Path], tmp_path: Path) -> None:
    from eagle_iad.service import create_app

    web = tmp_path / "web"
    (web / "assets").mkdir(parents=True)
    (web / "index.html").write_text("<!doctype html><title>console</title>")
    (web / "assets" / "app.js").write_text("console.log(1)")
    with LiveServer(create_app(_settings(workspace, tmp_path, web_dir=web))) as live:
        status, head, page = call("GET", f"{live.base}/", raw=True)
        assert status == 200 and page == b"<!doctype html><title>console</title>"
        assert "script-src" not in head["content-security-policy"]  # default-src 'self' governs scripts
        assert head["content-security-policy"].startswith("default-src 'self';")
        assert head["x-content-type-options"] == "nosniff"
        assert call("GET", f"{live.base}/assets/app.js", raw=True)[2] == b"console.log(1)"
        _error(call("GET", f"{live.base}/assets/missing.js"), 404)
        _error(call("GET", f"{live.base}/v1/nothing"), 404, "no route /v1/nothing")
        _error(call("POST", f"{live.base}/v1/nothing", body=b"{}", content_type="application/json"), 404)
        assert call("GET", f"{live.base}/v1/categories")[0] == 200  # API routes keep precedence
    empty = tmp_path / "empty"
    empty.mkdir()
    with LiveServer(create_app(_settings(workspace, tmp_path / "b", web_dir=empty))) as live:
        status, head, page = call("GET", f"{live.base}/", raw=True)
        assert status == 200 and b"The web console is not built. Run <code>make web</code>" in page


def test_restart_keeps_history_and_enforces_key(server: ServeProcess, workspace: dict[str, Path]) -> None:
    status, _, before = call("GET", f"{server.base}/v1/inspections?limit=500")
    assert status == 200 and before["total"] >= 2
    body = json.dumps({"folder": "cells"}).encode()
    started = call("POST", f"{server.base}/v1/categories/kept/fit", body=body, content_type="application/json")[2]
    job_id = started["job"]["id"]
    events = call("GET", f"{server.base}/v1/jobs/{job_id}/events", raw=True)[2].decode()
    assert '"state": "succeeded"' in events
    finished = call("GET", f"{server.base}/v1/jobs/{job_id}")[2]
    server.stop()
    restarted = ServeProcess(serve_args(workspace), api_key=KEY)
    try:
        base = restarted.base
        assert call("GET", f"{base}/healthz")[0] == 200  # open for load balancers
        _error(call("GET", f"{base}/metrics"), 401, "API key")  # traffic counts are not public
        assert call("GET", f"{base}/metrics", key=KEY)[0] == 200
        routes = [("GET", "/v1/categories"), ("GET", "/v1/categories/mono"), ("POST", "/v1/categories/mono/fit"),
                  ("GET", "/v1/jobs/x"), ("GET", "/v1/jobs/x/events"), ("POST", "/v1/inspect"),
                  ("GET", "/v1/inspections"), ("GET", "/v1/evaluations"), ("GET", "/v1/files/x/y.png"),
                  ("PUT", "/v1/inspections/x/label")]  # fmt: skip
        for method, path in routes:
            data = b"{}" if method in ("POST", "PUT") else None
            _error(call(method, base + path, body=data, content_type="application/json"), 401, "API key")
            _error(call(method, base + path, body=data, content_type="application/json", key="wrong"), 401)
        status, _, after = call("GET", f"{base}/v1/inspections?limit=500", key=KEY)
        assert status == 200 and after["items"] == before["items"]
        # The finished fit job is still answered after the restart, and its stream ends on its final state.
        assert call("GET", f"{base}/v1/jobs/{job_id}", key=KEY)[2] == finished
        replay = call("GET", f"{base}/v1/jobs/{job_id}/events", key=KEY, raw=True)[2].decode()
        assert replay.startswith("id: 0\nevent: state\ndata: ") and '"state": "succeeded"' in replay
        assert replay.count("event: ") == 1
        picture = after["items"][0]["pictures"]["heatmap"]
        assert call("GET", base + picture, key=KEY, raw=True)[0] == 200
        status, _, record = inspect_request(base, (workspace["data"] / "cells").iterdir().__next__().read_bytes(),
                                            key=KEY)  # fmt: skip
        assert status == 200, record
        assert call("GET", f"{base}/v1/inspections", key=KEY)[2]["total"] == before["total"] + 1
    finally:
        restarted.stop()


# ---------------------------------------------------------------------------------------------------
# With an MLLM: the same app factory, served in-process so the backend can be a controllable fake
# ---------------------------------------------------------------------------------------------------


def _settings(workspace: dict[str, Path], tmp_path: Path, **extra: Any) -> Any:
    from eagle_iad.service import ServiceSettings

    return ServiceSettings(models_dir=workspace["models"], state_dir=tmp_path / "state", **extra)


def test_full_mllm_queue_answers_429(workspace: dict[str, Path], tmp_path: Path) -> None:
    from eagle_iad.service import create_app

    fake = BlockingBackend()
    app = create_app(_settings(workspace, tmp_path, mllm_queue=1), backend=fake)
    chat = {"model": "blocking", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    payload = json.dumps(chat).encode()
    image = next((workspace["data"] / "cells").iterdir()).read_bytes()
    results: list[Any] = []
    with LiveServer(app) as live:
        url = f"{live.base}/v1/chat/completions"
        first = threading.Thread(target=lambda: results.append(inspect_request(live.base, image)))
        first.start()
        assert fake.started.wait(wait_s(30))  # the worker is busy with the inspection's question
        second = threading.Thread(
            target=lambda: results.append(call("POST", url, body=payload, content_type="application/json"))
        )
        second.start()
        deadline = time.monotonic() + wait_s(10)
        while app.state.service.worker.waiting < 1:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert "eagle_mllm_queue_depth 1.0" in call("GET", f"{live.base}/metrics")[2].decode()
        rejected = call("POST", url, body=payload, content_type="application/json")
        _error(rejected, 429, "queue is full")
        assert int(rejected[1]["retry-after"]) >= 1
        rejected_inspect = inspect_request(live.base, image)
        _error(rejected_inspect, 429, "queue is full")
        assert int(rejected_inspect[1]["retry-after"]) >= 1
        files = tmp_path / "state" / "files"
        assert len(list(files.iterdir())) == 1  # the refused inspection left no pictures behind
        fake.release.set()
        first.join(wait_s(30))
        second.join(wait_s(30))
    assert sorted(r[0] for r in results) == [200, 200] and fake.calls == 2
    verdict = next(r[2] for r in results if "verdict" in r[2])
    assert verdict["answer"] == "A" and verdict["decision"] == "anomalous" and verdict["verdict"]["reply"] == "A"


def test_an_inspection_with_an_mllm_runs_the_expert_once(
    workspace: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pictures and the MLLM's prompt come from one expert pass (the pipeline takes the result)."""
    from eagle_iad.expert.patchcore import Expert
    from eagle_iad.service import create_app

    passes: list[int] = []
    original = Expert.inspect

    def counted(self: Expert, *args: Any, **kwargs: Any) -> Any:
        passes.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Expert, "inspect", counted)
    fake = BlockingBackend()
    fake.release.set()
    app = create_app(_settings(workspace, tmp_path), backend=fake)
    image = next((workspace["data"] / "cells").iterdir()).read_bytes()
    with LiveServer(app) as live:
        status, _, record = inspect_request(live.base, image)
    assert status == 200, record
    assert fake.calls == 1 and len(passes) == 1
    assert record["verdict"]["score"] == record["score"] and record["verdict"]["reply"] == "A"


def test_inspections_beyond_the_limit_answer_429(workspace: dict[str, Path], tmp_path: Path) -> None:
    from eagle_iad.service import create_app

    fake = BlockingBackend()
    app = create_app(_settings(workspace, tmp_path, max_inspections=1), backend=fake)
    image = next((workspace["data"] / "cells").iterdir()).read_bytes()
    results: list[Any] = []
    with LiveServer(app) as live:
        first = threading.Thread(target=lambda: results.append(inspect_request(live.base, image)))
        first.start()
        assert fake.started.wait(wait_s(30))  # one inspection in progress (waiting for the model)
        assert "eagle_inspections_in_progress 1.0" in call("GET", f"{live.base}/metrics")[2].decode()
        refused = inspect_request(live.base, image)
        _error(refused, 429, "1 inspections are in progress (the limit)")
        assert refused[2]["error"]["code"] == "too_many_inspections" and int(refused[1]["retry-after"]) >= 1
        fake.release.set()
        first.join(wait_s(30))
        assert results[0][0] == 200
        assert inspect_request(live.base, image)[0] == 200  # the slot was given back
        assert "eagle_inspections_in_progress 0.0" in call("GET", f"{live.base}/metrics")[2].decode()


def test_full_verdict_and_chat_with_tiny_mllm(
    workspace: dict[str, Path], tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """``eagle serve --mllm hf:<tiny Qwen2.5-VL>`` as a real process: full EAGLE verdicts and chat."""
    from eagle_iad.testing.tiny import TINY_BUILDERS

    model_dir = TINY_BUILDERS["qwen2_5_vl"](tmp_path_factory.mktemp("tiny") / "qwen")
    args = ["--models", str(workspace["models"]), "--state-dir", str(tmp_path / "state"), "--mllm", f"hf:{model_dir}",
            "--mllm-queue", "2", "--log-level", "warning"]  # fmt: skip
    server = ServeProcess(args, api_key=KEY)
    image = next((workspace["data"] / "cells").iterdir()).read_bytes()
    try:
        base = server.base
        assert call("GET", f"{base}/healthz")[2]["mllm"] is True
        status, _, record = inspect_request(base, image, key=KEY, attention="true")
        assert status == 200, record
        verdict = record["verdict"]
        assert verdict["condition"] == "eagle" and isinstance(verdict["reply"], str)
        assert record["answer"] == verdict["answer"] and record["caas_applied"] == verdict["caas_applied"]
        assert record["caas_applied"] == record["in_band"]  # CAAS exactly in the band
        assert {"heatmap", "box"} <= set(record["pictures"])
        attention = [k for k in record["pictures"] if k.startswith("attention_L")]
        assert attention and call("GET", base + record["pictures"][attention[0]], key=KEY, raw=True)[0] == 200
        chat = {"model": "qwen", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
        body = json.dumps(chat).encode()
        assert call("POST", f"{base}/v1/chat/completions", body=body, content_type="application/json")[0] == 401
        status, _, completion = call("POST", f"{base}/v1/chat/completions", body=body,
                                     content_type="application/json", key=KEY)  # fmt: skip
        assert status == 200 and completion["object"] == "chat.completion", completion
        assert call("GET", f"{base}/v1/models", key=KEY)[2]["data"][0]["id"] == "qwen"  # folder name, not host path
        metrics = call("GET", f"{base}/metrics", key=KEY)[2].decode()
        assert "eagle_inspections_total 1" in metrics and 'route="/v1/chat/completions",status="200"' in metrics
    finally:
        server.stop()


def test_serve_cli_refuses_bad_options(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from eagle_iad.cli import build_parser, main

    args = build_parser().parse_args(["serve", "--models", str(tmp_path)])
    assert (args.host, args.port, args.mllm) == ("127.0.0.1", 8000, None)  # loopback only by default
    assert main(["serve", "--models", str(tmp_path), "--data-root", str(tmp_path / "missing")]) == 2
    assert "--data-root" in capsys.readouterr().err
    assert main(["serve", "--models", str(tmp_path), "--mllm-queue", "0"]) == 2
    assert "--mllm-queue must be at least 1" in capsys.readouterr().err


def test_threshold_change_is_recorded_applied_at_once_and_restorable(
    workspace: dict[str, Path], tmp_path: Path
) -> None:
    """``POST /v1/categories/{name}/threshold``: recorded, used by the next inspection, restorable."""
    import shutil

    from eagle_iad.service import ServiceSettings, create_app

    models = tmp_path / "models"
    shutil.copytree(workspace["models"] / "mono", models / "mono")
    app = create_app(ServiceSettings(models_dir=models, state_dir=tmp_path / "state"))
    image = next((workspace["data"] / "cells").iterdir()).read_bytes()
    url_of = "{}/v1/categories/mono/threshold".format

    def change(base: str, body: dict[str, Any]) -> tuple[int, dict[str, str], Any]:
        return call("POST", url_of(base), body=json.dumps(body).encode(), content_type="application/json")

    with LiveServer(app) as live:
        base = live.base
        before = inspect_request(base, image)[2]
        fitted_tau, score = before["tau"], before["score"]
        assert before["decision"] == ("anomalous" if score >= fitted_tau else "normal")
        status, _, category = change(base, {"tau": score + 1.0, "why": "too many false alarms", "by": "qe-1"})
        assert status == 200, category
        assert category["tau"] == score + 1.0 and category["rule"] == "fixed"
        (entry,) = category["history"]
        assert (entry["change"], entry["by"], entry["action"]) == (1, "qe-1", "set")
        assert entry["why"] == "too many false alarms"
        assert entry["before"]["tau"] == fitted_tau and entry["after"]["tau"] == score + 1.0
        after = inspect_request(base, image)[2]
        assert (after["tau"], after["score"], after["decision"]) == (score + 1.0, score, "normal")
        status, _, category = change(base, {"restore": 1, "why": "back to the fit's threshold"})
        assert status == 200 and category["tau"] == fitted_tau and len(category["history"]) == 2
        assert category["history"][1]["by"] == "api" and category["history"][1]["restored"] == 1
        assert inspect_request(base, image)[2]["tau"] == fitted_tau
        _error(change(base, {"why": "nothing"}), 400, "give either 'tau'")
        _error(change(base, {"tau": 1.0, "restore": 1, "why": "both"}), 400, "give either 'tau'")
        _error(change(base, {"restore": 9, "why": "no such"}), 400, "restore 9: no such change", "changes: 1..2")
        assert change(base, {"tau": -1.0, "why": "negative"})[0] == 400  # the schema refuses it
        assert change(base, {"tau": 0.0, "why": "zero flags every image"})[0] == 400
        for raw in (b'{"tau": NaN, "why": "x"}', b'{"tau": Infinity, "why": "x"}', b'{"tau": 1e999, "why": "x"}'):
            assert call("POST", url_of(base), body=raw, content_type="application/json")[0] in (400, 422), raw
        assert change(base, {"tau": 1.0, "why": ""})[0] == 400
        _error(call("POST", url_of(base).replace("mono", "nope"), body=b'{"tau": 1, "why": "x"}',
                    content_type="application/json"), 404, "no fitted category")  # fmt: skip
        assert str(models) not in json.dumps(change(base, {"restore": 9, "why": "no such"})[2])  # no host paths
        # A tau far above every score is valid (recorded, restorable), and the category says what it does.
        status, _, far = change(base, {"tau": 1e9, "why": "the expert's flags off for a while"})
        assert status == 200 and far["tau"] == 1e9, far
        assert any("likely flags nothing" in warning for warning in far["warnings"]), far["warnings"]


def test_a_change_to_a_linked_category_says_what_the_server_must_do(workspace: dict[str, Path], tmp_path: Path) -> None:
    """A category folder that is a symbolic link cannot be swapped whole: the answer names the link, not
    the engine's "give the folder itself", which an API caller cannot do (an earlier `make serve` linked)."""
    from eagle_iad.service import ServiceSettings, create_app

    models = tmp_path / "models"
    models.mkdir()
    (models / "mono").symlink_to(workspace["models"] / "mono")
    app = create_app(ServiceSettings(models_dir=models, state_dir=tmp_path / "state"))
    body = json.dumps({"tau": 1.0, "why": "fewer false alarms"}).encode()
    with LiveServer(app) as live:
        answer = call("POST", f"{live.base}/v1/categories/mono/threshold", body=body, content_type="application/json")
    _error(answer, 500, "category 'mono': its folder under the service's --models is a symbolic link")
    assert "give the folder itself" not in json.dumps(answer[2]) and str(models) not in json.dumps(answer[2])


def _count_expert_images(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Images through the expert, counted where every pass goes (``Expert.inspect`` calls it too)."""
    from eagle_iad.expert.patchcore import Expert

    seen: list[int] = []
    original = Expert.inspect_many

    def counted(self: Expert, sources: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append(len(sources))
        return original(self, sources, *args, **kwargs)

    monkeypatch.setattr(Expert, "inspect_many", counted)
    return seen


def test_cli_and_service_inspect_give_the_same_record_with_one_expert_pass_per_image(
    workspace: dict[str, Path], cells: dict[str, list[Path]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``eagle inspect`` and ``/v1/inspect`` both go through ``pipeline.inspect_records``: one expert
    pass per image, and the same record (all but the id, the time and where the pictures live)."""
    from eagle_iad.cli import build_parser, inspect_records, main
    from eagle_iad.record import InspectionRecord
    from eagle_iad.service import create_app

    query = tmp_path / "query"
    query.mkdir()
    names = []
    for path in [*cells["anomalous"][:1], *cells["normal"][:1]]:
        (query / path.name).write_bytes(path.read_bytes())
        names.append(path.name)
    monkeypatch.chdir(query)  # relative names: the CLI's image name is then the upload's file name
    model = str(workspace["models"] / "mono")
    seen = _count_expert_images(monkeypatch)
    argv = ["inspect", *names, "--model", model, "--out", str(tmp_path / "pictures"), "--json", "--quiet"]
    assert main(argv) == 0
    assert sum(seen) == len(names)  # one batch, each image once
    seen.clear()
    cli_records = inspect_records(build_parser().parse_args(argv))
    assert sum(seen) == len(names)
    app = create_app(_settings(workspace, tmp_path))
    seen.clear()
    with LiveServer(app) as live:
        served = []
        for name in names:
            status, _, record = inspect_request(live.base, (query / name).read_bytes(), filename=name)
            assert status == 200, record
            served.append(record)
    assert seen == [1, 1]  # the service: one pass per inspection

    def comparable(record: dict[str, Any]) -> dict[str, Any]:
        verdict = {k: v for k, v in record["verdict"].items() if k != "pictures"}
        return {**{k: v for k, v in record.items() if k not in ("id", "time", "pictures")}, "verdict": verdict}

    for cli_record, record in zip(cli_records, served, strict=True):
        assert isinstance(cli_record, InspectionRecord)
        assert cli_record.model_version == record["model_version"] == 1  # the model that scored it, both ways
        assert comparable(json.loads(json.dumps(cli_record.to_dict()))) == comparable(record)
        assert sorted(cli_record.pictures) == sorted(record["pictures"]) == ["box", "heatmap", "reference"]
        for kind, link in record["pictures"].items():
            assert Path(cli_record.pictures[kind]).name == link.rsplit("/", 1)[1]
            assert (
                Path(cli_record.pictures[kind]).read_bytes()
                == (workspace_files(tmp_path) / link.removeprefix("/v1/files/")).read_bytes()
            )


def workspace_files(tmp_path: Path) -> Path:
    return tmp_path / "state" / "files"


def test_serve_refuses_a_missing_models_folder_and_a_model_given_as_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--models`` mistyped is refused (not created, serving nothing); a model's own folder is refused with
    the way to serve it: its parent, or a link in a models folder."""
    from eagle_iad.cli import main

    missing = tmp_path / "nonexist"
    assert main(["serve", "--models", str(missing)]) == 2
    assert capsys.readouterr().err == (
        f"eagle: error: --models {missing}: no such folder; give the folder of fitted categories "
        "(<models>/<category>/model.json), or create it first for a new, empty service\n"
    )
    assert not missing.exists()
    model = tmp_path / "demo" / "model"
    model.mkdir(parents=True)
    (model / "model.json").write_text("{}")
    assert main(["serve", "--models", str(model), "--state-dir", str(tmp_path / "state")]) == 2
    assert capsys.readouterr().err == (
        f"eagle: error: --models {model} is a model itself, not a folder of models (<models>/<category>): give a "
        f"folder holding it as <category>, e.g. its parent --models {model.parent} (which serves it as 'model'), "
        "or copy it into one (a linked model cannot be taught or rolled back by the service): "
        f"mkdir -p models && cp -r {model} models/<category>\n"
    )
    assert not (tmp_path / "state").exists()


def test_no_command_takes_an_abbreviated_flag(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``eagle serve --model models`` ran as ``--models`` (argparse's prefix matching): every parser, each
    subcommand's and each action's below it (``eagle keys add``), refuses a prefix of a flag."""
    import argparse

    from eagle_iad.cli import build_parser, main

    def parsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
        yield parser
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for child in action.choices.values():
                    yield from parsers(child)

    found = list(parsers(build_parser()))
    assert len(found) > 20 and [p.prog for p in found if p.allow_abbrev] == []
    models = tmp_path / "models"
    models.mkdir()
    with pytest.raises(SystemExit) as exit_:
        main(["serve", "--model", str(models), "--web", str(tmp_path / "no-console")])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.endswith("eagle serve: error: the following arguments are required: --models\n")
    with pytest.raises(SystemExit) as exit_:
        main(["keys", "add", "bob", "--ro", "admin", "--state-dir", str(tmp_path / "state"), "--create"])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.endswith("eagle keys add: error: the following arguments are required: --role\n")
    assert not (tmp_path / "state").exists()


def test_serve_refuses_a_port_in_use_before_it_announces_or_starts_anything(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A port another program listens on: one ``eagle: error:`` line, exit 2, before the banner and before the
    app (history, state folder, stations and their hot-folder locks) starts; it was the banner, the stations
    started, then uvicorn's raw ``[Errno 98] ... address already in use``, exit 3."""
    from eagle_iad.cli import main

    models = tmp_path / "models"
    models.mkdir()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        state = tmp_path / "state"
        assert main(["serve", "--models", str(models), "--state-dir", str(state), "--port", str(port)]) == 2
    assert capsys.readouterr() == ("", (
        f"eagle: error: port {port} on 127.0.0.1 is in use (another eagle serve, or another program: "
        f"ss -ltnp 'sport = :{port}' shows which); stop it, or give another --port\n"
    ))  # fmt: skip
    assert not state.exists()


def test_serve_refuses_a_models_folder_of_the_kind_its_runtime_does_not_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Fitted models under ``--runtime onnx``, exports under the default torch: refused at start with what the
    folder holds and the flag to use (it started with no category and answered each inspection as a missing
    model); a category of the other kind beside ones it runs is named as such per request (409 wrong_runtime)."""
    from fastapi.testclient import TestClient

    from eagle_iad.cli import main
    from eagle_iad.service import ServiceSettings, create_app

    models = tmp_path / "models"
    (models / "tire").mkdir(parents=True)
    (models / "tire" / "model.json").write_text("{}")
    deploy = tmp_path / "deploy"
    (deploy / "tire").mkdir(parents=True)
    (deploy / "tire" / "eagle-export.json").write_text(json.dumps({"format": "onnx"}))
    # --web names no console: refused after the models' checks, so a service that would start ends here anyway
    state = ["--state-dir", str(tmp_path / "state"), "--web", str(tmp_path / "no-console")]
    assert main(["serve", "--runtime", "onnx", "--models", str(models), *state]) == 2
    assert capsys.readouterr().err == (
        f"eagle: error: --models {models} holds fitted models (tire), no exports, and --runtime onnx runs export "
        "folders (written by eagle export): serve the fitted models with --runtime torch (the default), or export "
        f"each (eagle export --model {models / 'tire'} --format onnx --out DIR/tire) and serve that folder\n"
    )
    assert main(["serve", "--models", str(deploy), *state]) == 2
    assert capsys.readouterr().err == (
        f"eagle: error: --models {deploy} holds ONNX exports (written by eagle export: tire), no fitted models, and "
        "eagle serve runs fitted models unless told otherwise: serve the exports with eagle serve --runtime "
        f"onnx|openvino --models {deploy}, or give the folder of fitted models\n"
    )
    assert not (tmp_path / "state").exists()

    png = io.BytesIO()
    Image.new("RGB", (16, 16), (128, 128, 128)).save(png, format="PNG")
    for folder, runtime, said in (
        (models, "onnx", "category 'tire' is a fitted model, not an export, and this service runs exports (--runtime "
         "onnx): serve the fitted models with eagle serve --runtime torch, or export it (eagle export --model "
         "MODELS/tire) into the folder this service serves"),
        (deploy, "torch", "category 'tire' is an ONNX export (written by eagle export), and this service runs fitted "
         "models (--runtime torch): serve the export folders with eagle serve --runtime onnx|openvino"),
    ):  # fmt: skip
        settings = ServiceSettings(models_dir=folder, state_dir=tmp_path / f"state-{runtime}", runtime=runtime)
        with TestClient(create_app(settings)) as client:
            for answer in (
                client.get("/v1/categories/tire"),
                client.post(
                    "/v1/inspect", data={"category": "tire"}, files={"image": ("a.png", png.getvalue(), "image/png")}
                ),
            ):
                assert answer.status_code == 409, answer.text
                assert answer.json()["error"]["code"] == "wrong_runtime"
                assert answer.json()["error"]["message"] == said


def test_healthz_publishes_the_figures_the_console_judges_by(tmp_path: Path) -> None:
    """The console's tuner and inspection cards judge a far-off tau by the model's own factor, and its Stations
    page names the window of the warnings of what happened lately: both read from ``/healthz`` (and in its
    schema, so the generated client has them), not copied into the console where they could drift."""
    from fastapi.testclient import TestClient

    from eagle_iad.expert.model_warnings import FAR_ABOVE_S_MAX, FLAGGED_SHARE
    from eagle_iad.service import ServiceSettings, create_app
    from eagle_iad.station.recent import RECENT_S

    models = tmp_path / "models"
    models.mkdir()
    app = create_app(ServiceSettings(models_dir=models, state_dir=tmp_path / "state"))
    with TestClient(app) as client:
        health = client.get("/healthz").json()
        served = (health["far_above_s_max"], health["recent_s"], health["flagged_share"])
        assert served == (FAR_ABOVE_S_MAX, RECENT_S, FLAGGED_SHARE) == (2.0, 300.0, 0.1)
        schema = client.get("/openapi.json").json()["components"]["schemas"]["Health"]["properties"]
        assert {"far_above_s_max", "recent_s", "flagged_share"} <= set(schema)


def test_healthz_answers_within_its_bound_while_the_history_is_held(tmp_path: Path) -> None:
    """``/healthz`` is what a load balancer polls during a long query or fit: it said ``busy`` after a second,
    then read the key table for ``auth`` waiting as long as the lock was held (8 s here). Now it answers
    within the bound, ``auth`` unknown (``None``) until a key was seen, then ``keys`` without a query."""
    from fastapi.testclient import TestClient

    from eagle_iad.service import ServiceSettings, create_app
    from eagle_iad.service.access import Role

    models = tmp_path / "models"
    models.mkdir()
    app = create_app(ServiceSettings(models_dir=models, state_dir=tmp_path / "state"))
    with TestClient(app) as client:
        assert client.get("/healthz").json()["auth"] == "open"
        store = app.state.service.store

        def probe() -> tuple[float, dict[str, Any]]:
            store._lock.acquire()  # another query holds the history's connection for 8 s
            threading.Timer(8.0, store._lock.release).start()
            start = time.monotonic()
            answer = client.get("/healthz")
            took = time.monotonic() - start
            with store._lock:  # the holder is done
                pass
            assert answer.status_code == 200, answer.text
            return took, answer.json()

        took, health = probe()
        assert took < 2.0 and health["history"] == "busy" and health["auth"] is None, (took, health)
        keys = app.state.service.keys

        def gone(wait_s: float | None = None) -> bool:  # the database dropped after health()'s SELECT 1
            raise ConnectionError("server closed the connection unexpectedly")

        keys.any_ever = gone
        answer = client.get("/healthz")  # answered, auth not known, not a 500
        assert (answer.status_code, answer.json()["history"], answer.json()["auth"]) == (200, "ok", None)
        del keys.any_ever
        keys.add("ana", Role.admin)
        assert client.get("/healthz").json()["auth"] == "keys"
        took, health = probe()  # a key once seen stays seen: no query needed
        assert took < 2.0 and health["history"] == "busy" and health["auth"] == "keys", (took, health)
