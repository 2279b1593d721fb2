"""``eagle serve`` under faults: killed mid-work, a full disk, hostile uploads and names, and the API key.

Real ``eagle serve`` processes (SIGKILL needs a process to kill) on a small elpv expert fitted once per
module; the key test runs the app factory in-process so it can walk ``app.routes`` itself, which makes
a route added later fail the test until it is either behind the key or deliberately public.
"""

from __future__ import annotations

import http.client
import json
import logging
import re
import shutil
import signal
import sqlite3
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import BlockingBackend, LiveServer, wait_s
from test_service import KEY, ServeProcess, call, inspect_request, multipart, png, zip_of

from eagle_iad.data import get_layout
from eagle_iad.naming import CATEGORY_NAME_RULE
from eagle_iad.service.settings import SHUTDOWN_GRACE_S
from eagle_iad.service.store import INTERRUPTED

MIB = 1024 * 1024


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """models/mono fitted on 8 elpv cells, a data root with 24 more (a fit long enough to be killed), test cells."""
    import torch

    from eagle_iad.expert import fit, save

    layout = get_layout("elpv")
    train = sorted(s.path for s in layout.samples(None, "mono", "train"))
    test = sorted((s.path for s in layout.samples(None, "mono", "test")), key=str)
    root = tmp_path_factory.mktemp("faults")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        save(fit(train[:8], "mono").model, root / "models" / "mono")
    finally:
        torch.set_num_threads(before)
    many = root / "data" / "many"
    many.mkdir(parents=True)
    for path in train[8:32]:
        shutil.copyfile(path, many / path.name)
    return {"root": root, "models": root / "models", "data": root / "data",
            "images": [path.read_bytes() for path in test[:8]]}  # fmt: skip


def _args(models: Path, state: Path, *extra: str) -> list[str]:
    return ["--models", str(models), "--state-dir", str(state), "--log-level", "warning", *extra]


def _error(response: tuple[int, dict[str, str], Any], status: int, message: str, code: str | None = None) -> None:
    got, _, body = response
    assert got == status, body
    assert message in body["error"]["message"], body
    if code is not None:
        assert body["error"]["code"] == code, body


def _kill(server: ServeProcess) -> None:
    server.process.send_signal(signal.SIGKILL)
    server.process.wait(timeout=wait_s(60))
    server.process.communicate()  # close the pipes


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


class Burst:
    """``count`` concurrent inspections of ``images`` (request ``i`` to ``base_of(i)``, named ``burstNN.png``),
    sorted as they end: answered (200, the record by index), refused (another status) or cut (the
    connection reset or closed mid-answer, as a kill does)."""

    def __init__(self, base_of: Callable[[int], str], images: list[bytes], count: int) -> None:
        self.base_of = base_of
        self.images = images
        self.answered: dict[int, dict[str, Any]] = {}
        self.cut: list[int] = []
        self.refused: list[tuple[int, Any]] = []
        self.threads = [threading.Thread(target=self._one, args=(i,)) for i in range(count)]

    def _one(self, index: int) -> None:
        image = self.images[index % len(self.images)]
        try:
            status, _, body = inspect_request(self.base_of(index), image, filename=f"burst{index:02d}.png")
        except (OSError, http.client.HTTPException):
            self.cut.append(index)
            return
        if status == 200:
            self.answered[index] = body
        else:
            self.refused.append((status, body))

    def start(self) -> Burst:
        for thread in self.threads:
            thread.start()
        return self

    def wait_until(self, enough: Callable[[dict[int, dict[str, Any]]], bool]) -> None:
        """Until ``enough(answered)``, every request ended, or a generous deadline."""
        deadline = time.monotonic() + wait_s(180)
        while not enough(self.answered) and time.monotonic() < deadline and any(t.is_alive() for t in self.threads):
            time.sleep(0.005)

    def join(self, timeout_s: float) -> None:
        for thread in self.threads:
            thread.join(timeout_s)


# --------------------------------------------------------------------------------------------- kills


def test_sigkill_during_a_burst_of_inspections_then_restart(fitted: dict[str, Any], tmp_path: Path) -> None:
    """After the kill, the history holds every inspection answered 200 and, of the requests the kill cut
    off, at most those whose row was committed before the answer could be sent (that window exists in
    any server); every row has all its pictures, every picture folder has its row, the file is sound."""
    state = tmp_path / "state"
    args = _args(fitted["models"], state)
    server = ServeProcess(args)
    burst = Burst(lambda index: server.base, fitted["images"], 12).start()  # under --max-inspections (16)
    burst.wait_until(lambda answered: len(answered) >= 3)
    _kill(server)
    burst.join(wait_s(60))
    answered, cut, refused = burst.answered, burst.cut, burst.refused
    assert not refused, refused
    assert len(answered) >= 3 and cut, f"{len(answered)} answered, {len(cut)} cut: the kill missed the burst"

    restarted = ServeProcess(args)
    try:
        page = call("GET", f"{restarted.base}/v1/inspections?limit=500")[2]
        rows = {row["id"]: row for row in page["items"]}
        assert page["total"] == len(rows)
        answered_ids = {body["id"] for body in answered.values()}
        assert answered_ids <= set(rows)  # nothing answered 200 is lost
        assert len(set(rows) - answered_ids) <= len(cut)  # nothing stored that was never asked for
        for index, body in answered.items():
            assert rows[body["id"]]["image_name"] == f"burst{index:02d}.png"
            assert rows[body["id"]]["score"] == body["score"]
        files = state / "files"
        assert {folder.name for folder in files.iterdir()} == set(rows)  # no orphan picture folders
        for row in rows.values():
            assert set(row["pictures"]) == {"heatmap", "box", "reference"}
            for link in row["pictures"].values():
                assert (files / link.removeprefix("/v1/files/")).is_file(), link  # no row without its pictures
        assert not [path for path in files.rglob("*") if path.name.endswith(".tmp")]
        assert inspect_request(restarted.base, fitted["images"][0])[0] == 200  # and it keeps working
    finally:
        restarted.stop()
    with sqlite3.connect(state / "eagle.sqlite3") as db:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert db.execute("SELECT COUNT(*) FROM inspections").fetchone()[0] == len(rows) + 1


def _first_progress(base: str, job_id: str) -> dict[str, Any]:
    """Read the job's event stream until its first progress event (the fit is under way)."""
    request = urllib.request.Request(f"{base}/v1/jobs/{job_id}/events")
    with urllib.request.urlopen(request, timeout=wait_s(120)) as stream:
        for raw in stream:
            line = raw.decode().strip()
            if line.startswith("data: "):
                event = json.loads(line[len("data: ") :])
                assert event.get("state") not in ("succeeded", "failed"), event
                if event["event"] == "progress":
                    return dict(event)
    raise AssertionError("the job's stream ended without progress")


def test_sigkill_during_a_fit_keeps_the_previous_model(fitted: dict[str, Any], tmp_path: Path) -> None:
    models, state = tmp_path / "models", tmp_path / "state"
    shutil.copytree(fitted["models"], models)
    before = _snapshot(models / "mono")
    args = _args(models, state, "--data-root", str(fitted["data"]))
    server = ServeProcess(args)
    try:
        old = inspect_request(server.base, fitted["images"][0])[2]
        body = json.dumps({"folder": "many", "options": {"coreset_ratio": 0.5}}).encode()
        status, _, started = call("POST", f"{server.base}/v1/categories/mono/fit", body=body,
                                  content_type="application/json")  # fmt: skip
        assert status == 202, started
        job_id = started["job"]["id"]
        progress = _first_progress(server.base, job_id)
        assert progress["done"] < progress["total"], progress
    finally:
        _kill(server)
    restarted = ServeProcess(args)
    try:
        job = call("GET", f"{restarted.base}/v1/jobs/{job_id}")[2]
        assert (job["state"], job["error"], job["result"]) == ("failed", INTERRUPTED, None)
        again = inspect_request(restarted.base, fitted["images"][0])[2]
        assert (again["score"], again["tau"]) == (old["score"], old["tau"])  # answered by the previous model
    finally:
        restarted.stop()
    assert sorted(p.name for p in models.iterdir()) == ["mono"]  # no staging copy left behind
    assert _snapshot(models / "mono") == before
    assert list((state / "uploads").iterdir()) == []


@pytest.mark.parametrize("name", ["SIGTERM", "SIGINT"])
def test_a_stop_signal_interrupts_the_fit_jobs_and_exits_cleanly(
    fitted: dict[str, Any], tmp_path: Path, name: str
) -> None:
    """SIGTERM/SIGINT during a fit job: the conventional status, one line, the job recorded interrupted
    (before and after a restart), its scratch removed, the previous model byte for byte. At start-up the
    service removes scratch that a killed fit left (its lock free) in its ``--scratch`` folder."""
    signum, status = {"SIGINT": (signal.SIGINT, 130), "SIGTERM": (signal.SIGTERM, 143)}[name]
    models, state, scratch = tmp_path / "models", tmp_path / "state", tmp_path / "scratch"
    shutil.copytree(fitted["models"], models)
    scratch.mkdir()
    stale = scratch / "eagle-fit-4199999-killed"  # left by a SIGKILL: nobody holds its lock
    stale.mkdir()
    (stale / ".eagle-scratch.lock").touch()
    (stale / "features.f32").write_bytes(bytes(4096))
    before = _snapshot(models / "mono")
    args = _args(models, state, "--data-root", str(fitted["data"]), "--scratch", str(scratch))
    server = ServeProcess(args)
    try:
        assert not stale.exists()
        body = json.dumps({"folder": "many", "options": {"coreset_ratio": 0.5}}).encode()
        status_code, _, started = call("POST", f"{server.base}/v1/categories/mono/fit", body=body,
                                       content_type="application/json")  # fmt: skip
        assert status_code == 202, started
        job_id = started["job"]["id"]
        progress = _first_progress(server.base, job_id)
        assert progress["done"] < progress["total"], progress
        assert [p.name.split("-")[:2] for p in scratch.iterdir()] == [["eagle", "fit"]]
        server.process.send_signal(signum)
        _, err = server.process.communicate(timeout=wait_s(SHUTDOWN_GRACE_S + 120))
    finally:
        if server.process.poll() is None:
            _kill(server)
    assert server.process.returncode == status, err
    assert f"eagle: stopped by {name}: eagle serve --models {models} (1 fit job interrupted); " in err, err
    assert "Traceback" not in err, err
    assert list(scratch.iterdir()) == []
    assert sorted(p.name for p in models.iterdir()) == ["mono"] and _snapshot(models / "mono") == before
    assert list((state / "uploads").iterdir()) == []
    with sqlite3.connect(state / "eagle.sqlite3") as db:  # recorded by the stopping service itself
        record = json.loads(db.execute("SELECT record FROM fit_jobs WHERE id = ?", (job_id,)).fetchone()[0])
    assert (record["state"], record["error"]) == ("failed", INTERRUPTED)
    restarted = ServeProcess(args)
    try:
        job = call("GET", f"{restarted.base}/v1/jobs/{job_id}")[2]
        assert (job["state"], job["error"], job["result"]) == ("failed", INTERRUPTED, None)
    finally:
        restarted.stop()


# ----------------------------------------------------------------------------------------- full disk


def _user_namespace_tmpfs() -> str | None:
    """Why a private tmpfs cannot be mounted here (None: it can)."""
    if shutil.which("unshare") is None:
        return "no unshare command"
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", "mount -t tmpfs -o size=1m tmpfs /mnt"],
                           capture_output=True, text=True, timeout=wait_s(30))  # fmt: skip
    return None if probe.returncode == 0 else f"unprivileged user namespaces unavailable: {probe.stderr.strip()}"


def _noise_png(seed: int, side: int = 512) -> bytes:
    return png(np.random.default_rng(seed).integers(0, 256, (side, side, 3), dtype=np.uint8))


def test_a_full_disk_answers_507_and_stores_nothing(fitted: dict[str, Any], tmp_path: Path) -> None:
    """The state folder on a 3 MiB tmpfs (a private mount in a user namespace, no root needed)."""
    reason = _user_namespace_tmpfs()
    if reason is not None:
        pytest.skip(f"cannot simulate a full disk: {reason} (the --min-free-mb floor test still runs)")
    state = tmp_path / "state"
    state.mkdir()
    mount = ["unshare", "-rm", "sh", "-c", 'mount -t tmpfs -o size=3m tmpfs "$0" && exec "$@"', str(state)]
    server = ServeProcess(_args(fitted["models"], state, "--min-free-mb", "0"), prefix=mount)
    try:
        inside = Path(f"/proc/{server.process.pid}/root") / state.relative_to("/")  # the service's view
        assert shutil.disk_usage(inside).total <= 3 * MIB
        uploads = [("files", f"{i}.png", _noise_png(i), "image/png") for i in range(6)]  # ~4.7 MiB of images
        body, ctype = multipart({}, uploads)
        _error(call("POST", f"{server.base}/v1/categories/full/fit", body=body, content_type=ctype), 507,
               "the service's disk is full; nothing was stored", "insufficient_storage")  # fmt: skip
        assert list((inside / "uploads").iterdir()) == []
        assert not (fitted["models"] / "full").exists()
        filler = inside / "filler"
        with filler.open("wb") as handle:  # take every byte that is left
            try:
                while True:
                    handle.write(b"\0" * 65536)
                    handle.flush()
            except OSError:
                pass
        _error(inspect_request(server.base, fitted["images"][0]), 507, "disk is full", "insufficient_storage")
        assert list((inside / "files").iterdir()) == []  # no half-written pictures
        status, _, health = call("GET", f"{server.base}/healthz")  # what a load balancer and monitoring see
        assert (status, health["status"], health["storage"]) == (503, "degraded", health["storage"]), health
        assert health["storage"].startswith("refusing: ")
        assert "eagle_storage_refusing 1" in call("GET", f"{server.base}/metrics")[2].decode()
        filler.unlink()
        status, _, record = inspect_request(server.base, fitted["images"][0])
        assert status == 200, record  # room again: the service carries on
        page = call("GET", f"{server.base}/v1/inspections")[2]
        assert [row["id"] for row in page["items"]] == [record["id"]]
        assert {p.name for p in (inside / "files").iterdir()} == {record["id"]}
        # Stored, but within RECOVERY_QUIET_S of a 507, and the 3 MiB disk never has RECOVERY_BYTES free: the
        # refusal goes on (its end is tested in-process, where the quiet time can be shortened).
        assert call("GET", f"{server.base}/healthz")[2]["status"] == "degraded"
    finally:
        server.stop()
    log = server.process.communicate()[1]
    said = [line for line in log.splitlines() if "storage: writes" in line]  # one line, not one per request
    assert len(said) == 1, log
    first = "storage: writes are refused for lack of disk space (507, first on POST /v1/categories/{name}/fit)"
    assert first in said[0]


def test_the_free_space_floor_refuses_before_writing(fitted: dict[str, Any], tmp_path: Path) -> None:
    from eagle_iad.service import ServiceSettings, create_app

    settings = ServiceSettings(models_dir=fitted["models"], state_dir=tmp_path / "state", min_free_bytes=1 << 60)
    with LiveServer(create_app(settings)) as live:
        body, ctype = multipart({}, [("files", f"{i}.png", _noise_png(i, 64), "image/png") for i in range(2)])
        _error(call("POST", f"{live.base}/v1/categories/floor/fit", body=body, content_type=ctype), 507,
               "not enough free disk space for this request", "insufficient_storage")  # fmt: skip
        _error(inspect_request(live.base, fitted["images"][0]), 507,
               "MiB free (--min-free-mb)", "insufficient_storage")  # fmt: skip
    assert list((tmp_path / "state" / "uploads").iterdir()) == []
    assert list((tmp_path / "state" / "files").iterdir()) == []


class _Lines(logging.Handler):
    """The WARNING lines of one logger, whatever another test did to ``eagle_iad``'s handlers."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.said: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.said.append(record.getMessage())


def test_refusing_for_lack_of_space_is_one_warning_each_way_healthz_degraded_and_a_gauge(
    fitted: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full disk (here the --min-free-mb floor over the free space) was visible only through 507 counts: no log
    line, /healthz ok, no gauge. Now: one WARNING at the first 507 (not one per request), /healthz 503 ``degraded``
    with ``storage`` saying why, ``eagle_storage_refusing 1`` and the free bytes per folder in /metrics; one WARNING
    with the count when a refused kind of request is stored again, and all of it back to ok."""
    from eagle_iad.service import ServiceSettings, create_app, storage

    monkeypatch.setattr(storage, "RECOVERY_QUIET_S", 0.0)  # the quiet time has its own test
    settings = ServiceSettings(models_dir=fitted["models"], state_dir=tmp_path / "state", min_free_bytes=1 << 60)
    lines = _Lines()
    logger = logging.getLogger("eagle_iad.service.storage")
    logger.addHandler(lines)
    app = create_app(settings)
    state = app.state.service
    try:
        with LiveServer(app) as live:
            status, _, health = call("GET", f"{live.base}/healthz")
            assert (status, health["status"], health["storage"]) == (200, "ok", "ok")
            assert "eagle_storage_refusing 0" in call("GET", f"{live.base}/metrics")[2].decode()
            for _ in range(3):
                assert inspect_request(live.base, fitted["images"][0])[0] == 507
            assert len(lines.said) == 1, lines.said
            assert lines.said[0].startswith(
                "storage: writes are refused for lack of disk space (507, first on POST /v1/inspect); state "
            ), lines.said
            assert "MiB free" in lines.said[0] and "(--min-free-mb keeps" in lines.said[0]
            status, _, health = call("GET", f"{live.base}/healthz")
            assert (status, health["status"]) == (503, "degraded"), health
            assert health["storage"] == "refusing: writes are refused for lack of disk space (507)"
            assert health["history"] == "ok"
            metrics = call("GET", f"{live.base}/metrics")[2].decode()
            assert "eagle_storage_refusing 1" in metrics
            for folder in ("state", "files", "models"):
                assert re.search(rf'^eagle_storage_free_bytes{{folder="{folder}"}} \d+$', metrics, re.M), metrics
            assert metrics.count("# TYPE eagle_storage_refusing gauge") == 1
            object.__setattr__(state.settings, "min_free_bytes", 0)  # room again (the floor lowered)
            state.storage.floor = 0
            assert inspect_request(live.base, fitted["images"][0])[0] == 200
            deadline = time.monotonic() + wait_s(30)  # the answer is counted as it is sent: it may reach us first
            while len(lines.said) < 2 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert len(lines.said) == 2, lines.said
            assert re.fullmatch(r"storage: writes work again \(POST /v1/inspect stored again\); 3 requests were "
                                r"refused \(507\) over \d+ s", lines.said[1]), lines.said  # fmt: skip
            status, _, health = call("GET", f"{live.base}/healthz")
            assert (status, health["status"], health["storage"]) == (200, "ok", "ok")
            assert "eagle_storage_refusing 0" in call("GET", f"{live.base}/metrics")[2].decode()
    finally:
        logger.removeHandler(lines)


def test_healthz_ends_a_refusal_for_space_once_the_disk_has_room_without_a_request(tmp_path: Path) -> None:
    """A load balancer that stopped sending work to a degraded replica sends no request that could prove the disk
    has room again: /healthz looks itself, and ends the refusal (logged once) when every folder's disk has
    64 MiB free over the floor; below that it stays degraded."""
    from eagle_iad.service.storage import RECOVERY_BYTES, StorageWatch

    lines = _Lines()
    logger = logging.getLogger("eagle_iad.service.storage")
    logger.addHandler(lines)
    try:
        free = shutil.disk_usage(tmp_path).free
        watch = StorageWatch({"state": tmp_path}, floor=free - RECOVERY_BYTES // 2)  # less than 64 MiB over it
        watch.answered("POST", "/v1/inspect", 507)
        watch.answered("POST", "/v1/inspect", 507)
        watch.answered("GET", "/v1/inspections", 200)  # a read is no proof of room
        assert watch.health().startswith("refusing: ") and watch.refusing
        watch.floor = 0  # room again: free is far over 64 MiB here
        assert free > RECOVERY_BYTES * 2
        assert watch.health() == "ok" and not watch.refusing
        assert watch.health() == "ok"
    finally:
        logger.removeHandler(lines)
    assert len(lines.said) == 2, lines.said
    assert re.fullmatch(r"storage: writes work again \(the disk has room again: \d+ MiB free or more\); 2 requests "
                        r"were refused \(507\) over \d+ s", lines.said[1]), lines.said  # fmt: skip


def test_a_mix_of_refused_and_stored_requests_near_the_floor_is_one_refusal_until_quiet(tmp_path: Path) -> None:
    """Near the floor a large image is refused (507) and a small one stored (200) on the same route. Each success
    used to end the refusal: /healthz flipped between 503 and 200 and two WARNING lines came per alternation. Now
    a success ends it only after RECOVERY_QUIET_S without a 507: one WARNING, /healthz degraded throughout; then
    one success ends it (one WARNING with the count)."""
    from eagle_iad.service.storage import RECOVERY_BYTES, RECOVERY_QUIET_S, StorageWatch

    now = [1000.0]
    lines = _Lines()
    logger = logging.getLogger("eagle_iad.service.storage")
    logger.addHandler(lines)
    try:
        free = shutil.disk_usage(tmp_path).free
        watch = StorageWatch({"state": tmp_path}, floor=free - RECOVERY_BYTES // 2, clock=lambda: now[0])
        for _ in range(5):
            watch.answered("POST", "/v1/inspect", 507)  # a 12 MP image
            now[0] += RECOVERY_QUIET_S / 4
            watch.answered("POST", "/v1/inspect", 200)  # a 1 MP image
            assert watch.refusing and watch.health().startswith("refusing: ")
            now[0] += RECOVERY_QUIET_S / 4
        assert len(lines.said) == 1, lines.said
        now[0] += RECOVERY_QUIET_S / 2 - 0.001  # just under the quiet time since the last 507
        watch.answered("POST", "/v1/inspect", 200)
        assert watch.refusing and len(lines.said) == 1, lines.said
        now[0] += 0.002
        watch.answered("GET", "/v1/inspections", 200)  # a read is still no proof of room
        assert watch.refusing
        watch.answered("POST", "/v1/inspect", 200)
        assert not watch.refusing and watch.health() == "ok"
    finally:
        logger.removeHandler(lines)
    assert len(lines.said) == 2, lines.said
    assert re.fullmatch(r"storage: writes work again \(POST /v1/inspect stored again\); 5 requests were refused "
                        r"\(507\) over \d+ s", lines.said[1]), lines.said  # fmt: skip


# ---------------------------------------------------------------------------------- hostile requests


@pytest.fixture(scope="module")
def strict(fitted: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    """A service with the default body limit (32 MiB), 20 files per fit and 8 MiB of unzipped images."""
    state = tmp_path_factory.mktemp("strict") / "state"
    server = ServeProcess(_args(fitted["models"], state, "--max-zip-files", "20", "--max-zip-mb", "8"))
    server.state = state  # type: ignore[attr-defined]
    try:
        yield server
    finally:
        server.stop()


def test_hostile_uploads_are_refused_with_their_documented_answer(strict: ServeProcess, fitted: dict[str, Any]) -> None:
    fit_url = f"{strict.base}/v1/categories/hostile/fit"
    good = [(f"{i}.png", image) for i, image in enumerate(fitted["images"][:2])]

    def upload(archive: bytes) -> Any:
        body, ctype = multipart({}, [("files", "x.zip", archive, "application/zip")])
        return call("POST", fit_url, body=body, content_type=ctype)

    _error(upload(zip_of([*good, ("../evil.png", good[0][1])])), 400, "zip member '../evil.png' has an unsafe path",
           "zip_unsafe_path")  # fmt: skip
    ratio_bomb = zip_of([*good, ("bomb.png", b"\0" * (3 * MIB))])  # 3 MiB of zeros in ~3 KiB: under the 8 MiB total
    _error(upload(ratio_bomb), 413, "zip member 'bomb.png' inflates more than 100:1 (a zip bomb?)", "zip_too_large")
    _error(upload(zip_of([*good, ("big.png", b"\0" * (16 * MIB))])), 413,
           "zip expands beyond the limit of 8388608 bytes", "zip_too_large")  # fmt: skip
    fifty = [("files", f"{i}.png", good[0][1], "image/png") for i in range(50)]
    body, ctype = multipart({}, fifty)
    _error(call("POST", fit_url, body=body, content_type=ctype), 400, "Too many files. Maximum number of files is 20.")
    body, ctype = multipart({"category": "mono"}, [("image", *item[1:]) for item in fifty])
    _error(call("POST", f"{strict.base}/v1/inspect", body=body, content_type=ctype), 400,
           "Too many files. Maximum number of files is 1.")  # fmt: skip
    huge = b"\0" * (60 * 1000 * 1000)
    for url in (fit_url, f"{strict.base}/v1/inspect"):
        _error(call("POST", url, body=huge, content_type="application/octet-stream"), 413,
               "request body of 57.2 MiB exceeds the limit of 32 MiB", "payload_too_large")  # fmt: skip
    state: Path = strict.state  # type: ignore[attr-defined]
    assert list((state / "uploads").iterdir()) == [] and list((state / "files").iterdir()) == []
    assert sorted(p.name for p in fitted["models"].iterdir()) == ["mono"]


@pytest.mark.parametrize("name", ["..", "../mono", "a/b", "a\x00b", "c" * 300, ".hidden", "-rf", "_private", "a..b"])
def test_bad_category_names_are_refused_everywhere(strict: ServeProcess, fitted: dict[str, Any], name: str) -> None:
    message = f"invalid category name: use {CATEGORY_NAME_RULE}"
    assert CATEGORY_NAME_RULE == "1-64 letters, digits, '_', '.', '-', starting with a letter or digit, without '..'"
    image = fitted["images"][0]
    _error(inspect_request(strict.base, image, category=name), 400, message, "invalid_name")
    quoted = urllib.parse.quote(name, safe="")
    _error(call("GET", f"{strict.base}/v1/inspections?category={quoted}"), 400, message, "invalid_name")
    body = json.dumps({"folder": "x"}).encode()
    for method, path in (("GET", f"/v1/categories/{quoted}"), ("POST", f"/v1/categories/{quoted}/fit")):
        response = call(method, strict.base + path, body=body if method == "POST" else None,
                        content_type="application/json")  # fmt: skip
        if "/" in name:  # the router splits the decoded path: no route has that shape
            _error(response, 404, "no route", "not_found")
        else:
            _error(response, 400, message, "invalid_name")
    assert sorted(p.name for p in fitted["models"].iterdir()) == ["mono"]


# ------------------------------------------------------------------------------------------- API key


def _every_route(app: Any) -> list[tuple[str, list[str], Any]]:
    """``(full path, methods, route)`` of every route, those of included routers too.

    FastAPI 0.16x keeps an included router as one lazy entry of ``app.routes``; its public
    ``iter_route_contexts`` resolves them (older versions list the routes themselves).
    """
    try:
        from fastapi.routing import iter_route_contexts  # type: ignore[attr-defined]
    except ImportError:
        entries = [(route, route) for route in app.routes]
    else:
        entries = [(context, context.original_route) for context in iter_route_contexts(app.routes)]
    found = []
    for entry, route in entries:
        methods = sorted((getattr(entry, "methods", None) or {"GET"}) - {"HEAD"})
        found.append((str(getattr(entry, "path", "")), methods, route))
    assert len(found) > 10, found  # the walk saw the routers' routes, not only the app's own
    return found


def test_every_route_needs_the_key_except_the_public_ones(fitted: dict[str, Any], tmp_path: Path) -> None:
    """Walks ``app.routes`` (the MLLM's routes included): a new route fails here until it is behind the key."""
    from fastapi.routing import APIRoute
    from starlette.routing import Mount

    from eagle_iad.service import ServiceSettings, create_app
    from eagle_iad.service.app import PUBLIC_PATHS
    from eagle_iad.station.routes import install as stations

    settings = ServiceSettings(models_dir=fitted["models"], state_dir=tmp_path / "state", api_key=KEY)
    app = create_app(settings, backend=BlockingBackend(), extensions=[stations])  # as `eagle serve` builds it
    checked: list[tuple[str, str]] = []
    public: set[str] = set()
    with LiveServer(app) as live:
        for path, methods, route in _every_route(app):
            if isinstance(route, Mount):
                assert route.name == "console" and path == "", route  # only the console's static files
                continue
            if path in PUBLIC_PATHS:
                public.add(path)
                assert call(methods[0], live.base + path)[0] == 200, path  # open, and answering
                continue
            assert isinstance(route, APIRoute), route
            url = live.base + path.replace("{path:path}", "x/y.png").replace("{", "").replace("}", "")
            for method in methods:
                data = b"{}" if method == "POST" else None
                for key in (None, "wrong"):
                    _error(call(method, url, body=data, content_type="application/json", key=key), 401,
                           "API key", "invalid_api_key")  # fmt: skip
                checked.append((method, path))
        assert call("GET", f"{live.base}/metrics", key=KEY)[0] == 200
    assert public <= set(PUBLIC_PATHS) and "/healthz" in public
    assert {("GET", "/metrics"), ("GET", "/v1/files/{path:path}"), ("POST", "/v1/inspect"),
            ("GET", "/v1/evaluations/{name}/files/{path:path}"), ("POST", "/v1/chat/completions"),
            ("GET", "/v1/models"), ("POST", "/v1/stations"),
            ("DELETE", "/v1/stations/{name}")} <= set(checked)  # fmt: skip


# ------------------------------------------------------------------------------------- other limits


def test_fit_jobs_beyond_the_limit_answer_429(fitted: dict[str, Any], tmp_path: Path) -> None:
    """A backbone that blocks until released keeps the first fit pending, deterministically."""
    import torch
    from expert_fakes import FakeExtractor

    from eagle_iad.expert import backbones
    from eagle_iad.service import ServiceSettings, create_app

    started, release = threading.Event(), threading.Event()

    class Blocking(FakeExtractor):
        def __call__(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            started.set()
            assert release.wait(wait_s(60))
            return super().__call__(images)

    backbones.register_backbone("blocking-test", lambda _size, _weights: Blocking())
    settings = ServiceSettings(models_dir=tmp_path / "models", state_dir=tmp_path / "state", max_fit_jobs=1)
    files = [("files", f"{i}.png", image, "image/png") for i, image in enumerate(fitted["images"][:2])]
    body, ctype = multipart({"backbone": "blocking-test"}, files)

    def finish(base: str, job_id: str) -> None:
        deadline = time.monotonic() + wait_s(120)
        while call("GET", f"{base}/v1/jobs/{job_id}")[2]["state"] not in ("succeeded", "failed"):
            assert time.monotonic() < deadline, "the fit did not finish"
            time.sleep(0.05)

    try:
        with LiveServer(create_app(settings)) as live:
            status, _, first = call("POST", f"{live.base}/v1/categories/a/fit", body=body, content_type=ctype)
            assert status == 202, first
            assert started.wait(wait_s(60))
            refused = call("POST", f"{live.base}/v1/categories/b/fit", body=body, content_type=ctype)
            _error(refused, 429, "1 fit jobs are queued or running (the limit is 1); retry later", "too_many_fit_jobs")
            assert refused[1]["retry-after"] == "30"
            assert len(list((tmp_path / "state" / "uploads").iterdir())) == 1  # only the running job's images
            release.set()
            finish(live.base, first["job"]["id"])
            status, _, second = call("POST", f"{live.base}/v1/categories/b/fit", body=body, content_type=ctype)
            assert status == 202, second  # the slot was given back
            finish(live.base, second["job"]["id"])
    finally:
        release.set()
        backbones._BACKBONES.remove("blocking-test")


def test_the_services_pixel_limit_is_its_own(fitted: dict[str, Any], tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """``--max-pixels`` decides for uploads; a lower ``EAGLE_MAX_PIXELS`` (the CLI's limit) does not undercut it."""
    from eagle_iad.service import ServiceSettings, create_app

    monkeypatch.setenv("EAGLE_MAX_PIXELS", "1000")
    settings = ServiceSettings(models_dir=fitted["models"], state_dir=tmp_path / "state", max_pixels=100_000)
    with LiveServer(create_app(settings)) as live:
        status, _, record = inspect_request(live.base, fitted["images"][0])  # a 300x300 cell: 90 000 pixels
        assert status == 200, record
        big = png(np.zeros((400, 400, 3), np.uint8))
        _error(inspect_request(live.base, big, filename="big.png"), 413,
               "big.png: 400x400 = 0.2 megapixels exceeds the limit of 0.1 megapixels (the service's --max-pixels "
               "changes it)", "too_many_pixels")  # fmt: skip
