"""Stations end to end, with real processes: a hot folder of real elpv cells, a real HTTP receiver,
``eagle station run`` started, killed and restarted as a user's service manager would.

What must hold (issue "On the line"): every image is inspected exactly once, whatever the kill;
every sink gets every verdict at least once, in the order they were stored, with the record id as the
idempotency key on repeats; a receiver that is down gets everything once it is back; one that always
fails ends with dead letters while the station keeps inspecting; a bad configuration is one line
naming the field.
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import hmac
import json
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import schema_6_of_an_earlier_release, unprivileged_cli, wait_s

from eagle_iad.data import get_layout
from eagle_iad.images import load_rgb
from eagle_iad.service.store import InspectionStore
from eagle_iad.station.config import read_stations
from eagle_iad.station.parts import SINKS, StationConfigError
from eagle_iad.station.sinks.webhook import SIGNATURE_HEADER
from eagle_iad.stops import PAUSE_ENV, PAUSED

SECRET = "s3cret-for-tests"
#: Why a hot folder without ``recursive`` does not take a subfolder (said once, as any file it does not take).
SUBFOLDER = "a folder (the station takes no image from subfolders unless the source says recursive = true)"
#: The suffixes a hot folder takes, as its refusals list them (eagle_iad.choices.IMAGE_SUFFIXES, shared with fits).
TOOK = ".png .jpg .jpeg .jpe .jfif .bmp .tif .tiff .gif .webp .pgm .ppm .pbm .pnm .jp2 .j2k"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Receiver:
    """A real HTTP endpoint recording every POST; ``fail`` makes it answer 500 (``None``: 200)."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or _free_port()
        self.received: list[dict[str, Any]] = []
        self.fail = False
        #: Answer 301 to another path (a receiver moved): the station must not count a redirect as delivered.
        self.redirect = False
        #: The status to answer each POST with, from its idempotency key (``None``: as ``fail`` and ``redirect`` say).
        self.answer: Callable[[str], int] | None = None
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> Receiver:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
                outer.received.append({
                    "key": self.headers["Idempotency-Key"],
                    "signed": hmac.compare_digest(self.headers.get(SIGNATURE_HEADER, ""), expected),
                    "body": json.loads(body),
                })  # fmt: skip
                answer = None if outer.answer is None else outer.answer(self.headers["Idempotency-Key"])
                self.send_response(answer or (301 if outer.redirect else 500 if outer.fail else 200))
                if outer.redirect:
                    self.send_header("Location", "/moved")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def keys(self) -> list[str]:
        return [r["key"] for r in self.received]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small real model of elpv mono cells (12 cells, 64 px) in ``models/mono``."""
    import torch

    from eagle_iad.expert import ExpertConfig, fit, save

    root = tmp_path_factory.mktemp("station-models")
    cells = sorted(s.path for s in get_layout("elpv").samples(None, "mono", "train"))[:12]
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        config = ExpertConfig(size=64, native_up_to=0, coreset_ratio=0.05)
        save(fit(cells, "mono", config).model, root / "models" / "mono")
    finally:
        torch.set_num_threads(before)
    return root / "models"


def _cells(count: int) -> list[Path]:
    return sorted(s.path for s in get_layout("elpv").samples(None, "mono", "test"))[:count]


def _drop(folder: Path, cells: list[Path]) -> list[str]:
    """Copy ``cells`` into the hot folder as a camera would (old enough to count as complete)."""
    folder.mkdir(exist_ok=True)
    past = time.time() - 10
    names = []
    for index, cell in enumerate(cells):
        target = folder / f"{index:04d}_{cell.name}"
        shutil.copyfile(cell, target)
        os.utime(target, (past + index * 0.001, past + index * 0.001))
        names.append(target.name)
    return names


def _stations(work: Path, models: Path, sinks: str, source: str = "", settle_s: float = 0.2) -> Path:
    path = work / "stations.toml"
    path.write_text(f"""models = "{models}"
state = "state"

[[station]]
name = "line-1"
category = "mono"
source = {{ kind = "folder", path = "incoming", settle_s = {settle_s}{source} }}
{sinks}
""")
    return path


def _webhook(port: int, **extra: Any) -> str:
    options = "".join(f"\n{key} = {json.dumps(value)}" for key, value in extra.items())
    return f"""
[[station.sink]]
kind = "webhook"
url = "http://127.0.0.1:{port}/verdicts"
secret_env = "EAGLE_TEST_SECRET"
timeout_s = 5{options}
"""


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "EAGLE_TEST_SECRET": SECRET, **extra}


def _run(
    stations: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 300,
    launcher: list[str] | None = None,
) -> tuple[int, str]:  # fmt: skip
    launcher = launcher or [sys.executable, "-m", "eagle_iad.cli"]
    done = subprocess.run([*launcher, "station", *args, str(stations)], cwd=stations.parent, env=env or _env(),
                          capture_output=True, text=True, timeout=wait_s(timeout))  # fmt: skip
    return done.returncode, done.stderr + done.stdout


def _history(work: Path) -> list[Any]:
    store = InspectionStore(work / "state" / "eagle.sqlite3")
    try:
        return store.page(10_000, 0)[1][::-1]  # oldest first
    finally:
        store.close()


def test_the_failed_count_counts_each_refused_file_not_each_content_and_survives_a_restart(
    model_dir: Path, tmp_path: Path
) -> None:
    """Three empty files are one content refused three times: ``failed`` (the figure the service's
    ``eagle_station_failed_total`` and the console's "N refused" show) counts files, as ``failed/`` holds them
    (a file that cannot be read at all, which has no content hash, counts too: see
    :func:`test_a_link_or_fifo_named_like_an_image_is_refused_not_followed_nor_waited_on`). A restart reads the
    same count from the history, and one more empty file adds one."""
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    past = time.time() - 10
    for name in ("a.png", "b.png", "c.png"):
        (incoming / name).write_bytes(b"")
        os.utime(incoming / name, (past, past))
    stations = _stations(tmp_path, model_dir, "")
    code, log = _run(stations, "run", "--until-idle")
    assert code == 0, log
    refused = ["a.png", "b.png", "c.png"]
    assert sorted(p.name for p in (incoming / "failed").iterdir()) == sorted(
        refused + [f"{name}.reason.txt" for name in refused]
    )
    assert (_status(stations)["inspected"], _status(stations)["failed"]) == (0, 3)
    code, log = _run(stations, "run", "--until-idle")  # a restart: nothing new, the same count
    assert code == 0, log
    assert (_status(stations)["inspected"], _status(stations)["failed"]) == (0, 3)
    (incoming / "d.png").write_bytes(b"")
    os.utime(incoming / "d.png", (past, past))
    code, log = _run(stations, "run", "--until-idle")
    assert code == 0, log
    assert (_status(stations)["inspected"], _status(stations)["failed"]) == (0, 4)


def test_status_answers_with_every_figure_while_the_station_s_model_folder_is_missing(
    model_dir: Path, tmp_path: Path
) -> None:
    """``eagle station status`` read the stations file as ``run`` does, refusing a category without a model folder:
    exit 2 and no figures, exactly when the station said ``intake paused: no fitted category``. It now prints every
    station's figures, the missing model first among that station's warnings, as a running station's pause too."""
    shutil.copytree(model_dir, tmp_path / "models")
    _drop(tmp_path / "incoming", _cells(1))
    stations = _stations(tmp_path, tmp_path / "models", "")
    code, log = _run(stations, "run", "--until-idle", "--quiet")
    assert code == 0, log
    (tmp_path / "models" / "mono").rename(tmp_path / "mono-away")
    status = _status(stations)
    assert (status["station"], status["state"], status["inspected"]) == ("line-1", "not running", 1), status
    assert status["warnings"][0] == (
        f"category 'mono' is not fitted in {tmp_path / 'models'} (eagle fit ... --out {tmp_path / 'models' / 'mono'}): "
        "the station cannot start, and a running one takes no image until it is there again"
    ), status
    shutil.rmtree(tmp_path / "models")  # the whole models folder gone: the same
    assert _status(stations)["warnings"][0].startswith("category 'mono' is not fitted in ")


def test_status_reads_a_history_not_upgraded_yet_counting_each_refused_content_once(tmp_path: Path) -> None:
    """``eagle station status`` opens the history read-only, so a history an earlier eagle-iad of schema 6 made
    (an older ``eagle station run`` still running after ``pip install -U``; a PostgreSQL before ``eagle db
    upgrade``) has no ``station_intake.files``: each refused content counts one, as it did, not a crash."""
    from eagle_iad.history import open_backend

    (tmp_path / "models" / "mono").mkdir(parents=True)  # status reads no model
    (tmp_path / "incoming").mkdir()
    stations = _stations(tmp_path, tmp_path / "models", "")
    (tmp_path / "state").mkdir()
    backend = open_backend(str(tmp_path / "state" / "eagle.sqlite3"))
    db = backend.connect()
    for statement in schema_6_of_an_earlier_release():
        db.execute(statement)
    for digest, name in (("d1", "a.png"), ("d2", "b.png")):
        db.execute("INSERT INTO station_intake (station, digest, name, state, reason, appeared, time) "
                   "VALUES ('line-1', ?, ?, 'failed', 'empty', 1.0, 1.0)", (digest, name))  # fmt: skip
    db.close()
    code, out = _run(stations, "status")
    assert code == 0, out
    assert json.loads(out) == [{
        "station": "line-1", "state": "not running", "category": "mono",
        "source": f"folder {tmp_path / 'incoming'} (complete after 0.2 s untouched; moved to done/ or failed/)",
        "inspected": 0, "failed": 2, "backlog": 0, "images_per_s": 0.0, "latency_s": None, "latency_images": 0,
        "latency_recent_s": None, "last_verdict": None, "sinks": {}, "duplicates": None, "ignored": None,
        "replaced": None, "warnings": [],
    }]  # fmt: skip


def test_a_station_inspects_each_image_once_and_delivers_to_every_sink(
    model_dir: Path, tmp_path: Path, receiver: Receiver
) -> None:
    from eagle_iad.expert import load_expert

    names = _drop(tmp_path / "incoming", _cells(6))
    (tmp_path / "incoming" / "broken.png").write_bytes(b"not a png at all")
    os.utime(tmp_path / "incoming" / "broken.png", (time.time() - 10, time.time() - 10))
    stations = _stations(tmp_path, model_dir, _webhook(receiver.port) + '\n[[station.sink]]\nkind = "folder"\n'
                                                                        'path = "sorted"\n')  # fmt: skip
    code, log = _run(stations, "run", "--until-idle")
    assert code == 0, log
    history = _history(tmp_path)
    assert [r.image_name for r in history] == names  # oldest first, each once
    assert {r.station for r in history} == {"line-1"}
    assert [r.source for r in history] == [str(tmp_path / "incoming" / n) for n in names]
    expert = load_expert(model_dir / "mono")  # the same verdict as the expert gives the same image
    for record, cell in zip(history, _cells(6), strict=True):
        result = expert.inspect(load_rgb(cell))
        assert record.score == pytest.approx(result.score, rel=1e-5)
        assert record.decision == ("anomalous" if result.is_anomalous else "normal")
    assert sorted(p.name for p in (tmp_path / "incoming" / "done").iterdir()) == sorted(names)
    assert sorted(p.name for p in (tmp_path / "incoming" / "failed").iterdir()) == ["broken.png",
                                                                                   "broken.png.reason.txt"]  # fmt: skip
    reason = (tmp_path / "incoming" / "failed" / "broken.png.reason.txt").read_text()
    assert reason == "broken.png: not a recognised image format\n"
    assert not [p for p in (tmp_path / "incoming").iterdir() if p.is_file()]
    # the webhook: every verdict once, in order, signed, keyed by the record id; then the refusal (it waited for
    # its writer: 10 x settle_s)
    *verdicts, refused = receiver.received
    assert [r["key"] for r in verdicts] == [r.id for r in history]
    assert all(r["signed"] for r in receiver.received)
    assert [r["body"]["record"]["score"] for r in verdicts] == [r.score for r in history]
    assert {r["body"]["station"] for r in receiver.received} == {"line-1"}
    assert refused["body"]["event"] == "refused" and refused["key"] == refused["body"]["refused"]["id"]
    # the folder sink: each image with its record, under its decision
    for record in history:
        folder = tmp_path / "sorted" / str(record.decision)
        copied = folder / f"{record.id}_{record.image_name}"
        assert copied.read_bytes() == (tmp_path / "incoming" / "done" / record.image_name).read_bytes()
        assert json.loads((folder / f"{copied.name}.json").read_text())["record"]["id"] == record.id
    # status: the counts, no warnings
    code, out = _run(stations, "status")
    status = json.loads(out[out.index("[") :])[0]
    assert (status["inspected"], status["failed"], status["backlog"], status["warnings"]) == (6, 1, 0, [])
    assert status["sinks"]["webhook"]["delivered"] == 7 and status["sinks"]["folder"]["delivered"] == 7
    assert status["latency_s"]["p50"] > 0
    # a second run finds nothing to do, and the same content dropped again is not inspected again: the part is
    # told to the sinks as refused, naming the record it repeats (duplicates = "refuse", the default)
    shutil.copyfile(tmp_path / "incoming" / "done" / names[0], tmp_path / "incoming" / "again.png")
    os.utime(tmp_path / "incoming" / "again.png", (time.time() - 10, time.time() - 10))
    code, log = _run(stations, "run", "--until-idle")
    assert code == 0 and "again.png: same content as record " + history[0].id in log, log
    assert len(_history(tmp_path)) == 6 and len(receiver.received) == 8
    repeat = receiver.received[-1]["body"]
    assert repeat["event"] == "refused" and repeat["refused"]["repeat_of"] == history[0].id
    assert repeat["refused"]["image_name"] == "again.png"
    assert repeat["image"] == str(tmp_path / "incoming" / "done" / "again.png")
    # the very bytes dropped again under the earlier file's own name are kept once: the refusal names that place
    shutil.copyfile(tmp_path / "incoming" / "done" / names[0], tmp_path / "incoming" / names[0])
    os.utime(tmp_path / "incoming" / names[0], (time.time() - 10, time.time() - 10))
    code, log = _run(stations, "run", "--until-idle")
    assert code == 0 and f"{names[0]}: same content as record {history[0].id}" in log, log
    repeat = receiver.received[-1]["body"]
    assert repeat["refused"]["image_name"] == names[0] and len(receiver.received) == 9
    assert repeat["image"] == str(tmp_path / "incoming" / "done" / names[0])
    assert not (tmp_path / "incoming" / names[0]).exists()
    assert not list((tmp_path / "incoming" / "done").glob(f"{Path(names[0]).stem}-*"))


def test_killed_mid_burst_every_image_is_inspected_exactly_once_and_delivered(
    model_dir: Path, tmp_path: Path, receiver: Receiver
) -> None:
    count = 200
    cells = _cells(40) * 5  # 200 files; the same content under other names is a repeat, so make each unique
    names = _drop(tmp_path / "incoming", cells)
    for index, name in enumerate(names):  # a different last byte (after the PNG end): a different content hash
        with open(tmp_path / "incoming" / name, "ab") as handle:
            handle.write(index.to_bytes(4, "big"))
        os.utime(tmp_path / "incoming" / name, (time.time() - 10 + index * 0.001,) * 2)
    stations = _stations(tmp_path, model_dir, _webhook(receiver.port))
    process = subprocess.Popen([sys.executable, "-m", "eagle_iad.cli", "station", "run", "--quiet", str(stations)],
                               cwd=tmp_path, env=_env(), stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        deadline = time.monotonic() + wait_s(300)
        while len(receiver.received) < 30:
            assert process.poll() is None and time.monotonic() < deadline, "the station did not deliver 30 verdicts"
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=wait_s(60))
    finally:
        process.kill()
        process.communicate()
    assert len(_history(tmp_path)) < count  # killed mid-burst
    code, log = _run(stations, "run", "--until-idle", "--quiet")
    assert code == 0, log
    history = _history(tmp_path)
    assert sorted(r.image_name for r in history) == sorted(names)  # every image, exactly once
    ids = [r.id for r in history]
    keys = receiver.keys()
    assert set(keys) == set(ids)  # every verdict delivered at least once ...
    first = sorted(set(keys), key=keys.index)
    assert first == ids  # ... the first deliveries in the order the verdicts were stored
    assert len(keys) - len(ids) <= 1  # a repeat only for the one in flight at the kill, with the same key


def test_a_kill_between_storing_and_moving_does_not_inspect_again(model_dir: Path, tmp_path: Path) -> None:
    names = _drop(tmp_path / "incoming", _cells(2))
    stations = _stations(tmp_path, model_dir, "")
    _kill_after_storing(stations, _env())
    assert [r.image_name for r in _history(tmp_path)] == names[:1]  # stored, not moved
    assert (tmp_path / "incoming" / names[0]).exists()
    code, log = _run(stations, "run", "--until-idle")
    assert code == 0, log
    assert [r.image_name for r in _history(tmp_path)] == names  # the first one not inspected twice
    assert f"{names[0]}: same content as record" in log
    assert sorted(p.name for p in (tmp_path / "incoming" / "done").iterdir()) == names


def test_a_receiver_down_at_first_gets_everything_once_it_is_back(model_dir: Path, tmp_path: Path) -> None:
    port = _free_port()
    names = _drop(tmp_path / "incoming", _cells(5))
    stations = _stations(tmp_path, model_dir, _webhook(port, retry_base_s=0.2, retry_max_s=2.0, max_attempts=1000))
    late = Receiver(port)
    timer = threading.Timer(60, late.start)  # nothing listens on the port for the first minute (the issue's case)
    timer.start()
    try:
        code, log = _run(stations, "run", "--until-idle", "--quiet")
    finally:
        timer.cancel()
        late.stop()
    assert code == 0, log
    # the start-up probe (a connect, no request) found nobody listening: a warning, and the station ran
    assert (f"eagle station line-1: warning: sink webhook: http://127.0.0.1:{port}/verdicts: Connection refused; "
            "verdicts wait in the outbox until it is reachable\n") in log, log  # fmt: skip
    history = _history(tmp_path)
    assert [r.image_name for r in history] == names
    assert late.keys() == [r.id for r in history]  # each once, in order, after the receiver came back
    import sqlite3

    db = sqlite3.connect(tmp_path / "state" / "eagle.sqlite3")
    tries = [row[0] for row in db.execute("SELECT attempts FROM outbox ORDER BY seq")]
    db.close()
    assert tries[0] >= 3, tries  # the head of the queue was tried (and failed) while the receiver was down


def test_a_receiver_that_always_fails_ends_in_dead_letters_that_retry_requeues(
    model_dir: Path, tmp_path: Path, receiver: Receiver
) -> None:
    receiver.fail = True
    names = _drop(tmp_path / "incoming", _cells(4))
    stations = _stations(tmp_path, model_dir, _webhook(receiver.port, retry_base_s=0.05, max_attempts=3))
    code, log = _run(stations, "run", "--until-idle", "--quiet")
    assert code == 0, log
    assert [r.image_name for r in _history(tmp_path)] == names  # the station kept inspecting
    assert len(receiver.received) == 3 * 4  # three tries each
    assert log.count("gave up on record") == 4 and "HTTP 500" in log
    code, out = _run(stations, "status")
    status = json.loads(out[out.index("[") :])[0]
    assert status["sinks"]["webhook"]["dead_letters"] == 4
    assert status["sinks"]["webhook"]["last_error"] == f"HTTP 500 from http://127.0.0.1:{receiver.port}/verdicts"
    assert status["warnings"] == [f"4 dead letters (eagle station retry requeues them); sink webhook: 4, the last "
                                  f"given up on: HTTP 500 from http://127.0.0.1:{receiver.port}/verdicts"]  # fmt: skip
    receiver.fail = False
    receiver.received.clear()
    code, log = _run(stations, "retry")
    assert code == 0 and "4 dead letters back in their queues" in log, log
    code, log = _run(stations, "run", "--until-idle", "--quiet")
    assert code == 0, log
    assert receiver.keys() == [r.id for r in _history(tmp_path)]


def test_retry_before_any_station_ran_creates_nothing_and_says_there_is_nothing_to_retry(
    model_dir: Path, tmp_path: Path
) -> None:
    (tmp_path / "incoming").mkdir()
    stations = _stations(tmp_path, model_dir, "")
    code, out = _run(stations, "retry")
    assert (code, out) == (2, f"eagle: error: {stations}: nothing to retry: no station of this file has run yet (no "
                              f"history at {tmp_path / 'state' / 'eagle.sqlite3'})\n")  # fmt: skip
    assert not (tmp_path / "state").exists()


def test_an_unknown_station_is_one_line_naming_the_known_ones(model_dir: Path, tmp_path: Path) -> None:
    """``--station`` naming no station of the file is a mistake to say, not 0 dead letters requeued quietly."""
    (tmp_path / "incoming").mkdir()
    stations = _stations(tmp_path, model_dir, "")
    code, out = _run(stations, "retry", "--station", "nosuch")
    assert (code, out) == (2, f"eagle: error: {stations}: --station 'nosuch' is not a station of this file (its "
                              "stations: line-1)\n")  # fmt: skip
    assert not (tmp_path / "state").exists()


def test_an_unknown_sink_is_one_line_naming_the_known_ones_and_a_sink_only_in_the_outbox_is_retried(
    tmp_path: Path,
) -> None:
    """``--sink`` naming no sink is a mistake to say, not 0 dead letters requeued quietly; a sink removed from the
    file whose dead letters are still in the outbox is a name to accept (its rows go back in its queue)."""
    (tmp_path / "incoming").mkdir()
    (tmp_path / "models" / "mono").mkdir(parents=True)  # a category folder is all the file's check needs
    stations = _stations(tmp_path, tmp_path / "models", '[[station.sink]]\nkind = "folder"\nname = "sorted"\n'
                                                         'path = "sorted"\n')  # fmt: skip
    code, out = _run(stations, "retry", "--sink", "nosuch")  # before any run: the file's sinks only
    assert (code, out) == (2, f"eagle: error: {stations}: --sink 'nosuch' is not a sink of this file's stations "
                              "(their sinks: sorted)\n")  # fmt: skip
    assert not (tmp_path / "state").exists()
    store = InspectionStore(tmp_path / "state" / "eagle.sqlite3")
    try:
        with store.transaction() as db:
            for sink, record in (("sorted", "r1"), ("old", "r2"), ("old", "r3")):
                db.execute("INSERT INTO outbox (station, sink, record_id, payload, state, attempts) "
                           "VALUES ('line-1', ?, ?, '{}', 'dead', 3)", (sink, record))  # fmt: skip
    finally:
        store.close()
    for args in (["--sink", "nosuch"], ["--station", "line-1", "--sink", "nosuch"]):
        code, out = _run(stations, "retry", *args)
        who = "station 'line-1' (its" if "--station" in args else "this file's stations (their"
        assert (code, out) == (2, f"eagle: error: {stations}: --sink 'nosuch' is not a sink of {who} sinks: sorted; "
                                  "only in the outbox: old)\n")  # fmt: skip
    code, out = _run(stations, "retry", "--sink", "old")
    assert (code, out) == (0, "eagle station retry: 2 dead letters back in their queues\n")
    code, out = _run(stations, "retry", "--station", "line-1", "--sink", "sorted")
    assert (code, out) == (0, "eagle station retry: 1 dead letter back in their queues\n")


def test_retry_needs_no_model_folder(tmp_path: Path) -> None:
    """Requeueing owed deliveries needs no model: a station whose category's folder is gone (or whose models
    folder is) still gets its dead letters back in their queues, where retry refused the file before."""
    (tmp_path / "incoming").mkdir()
    stations = _stations(tmp_path, tmp_path / "models", '[[station.sink]]\nkind = "folder"\nname = "sorted"\n'
                                                         'path = "sorted"\n')  # fmt: skip
    store = InspectionStore(tmp_path / "state" / "eagle.sqlite3")
    try:
        with store.transaction() as db:
            db.execute("INSERT INTO outbox (station, sink, record_id, payload, state, attempts) "
                       "VALUES ('line-1', 'sorted', 'r1', '{}', 'dead', 3)")  # fmt: skip
    finally:
        store.close()
    assert not (tmp_path / "models").exists()
    code, out = _run(stations, "retry")
    assert (code, out) == (0, "eagle station retry: 1 dead letter back in their queues\n")
    (tmp_path / "models").mkdir()  # the models folder there, the category's model not
    code, out = _run(stations, "retry", "--station", "line-1", "--sink", "sorted")
    assert (code, out) == (0, "eagle station retry: 0 dead letters back in their queues\n")


def test_retry_requeues_only_the_dead_letters_of_this_files_stations(tmp_path: Path) -> None:
    """A shared history holds other files' stations: ``retry`` (``--sink`` too) requeues this file's stations' dead
    letters only, and a sink only another file's station has in the outbox is not a name it accepts."""
    (tmp_path / "incoming").mkdir()
    (tmp_path / "models" / "mono").mkdir(parents=True)  # a category folder is all the file's check needs
    stations = _stations(tmp_path, tmp_path / "models", '[[station.sink]]\nkind = "folder"\nname = "sorted"\n'
                                                         'path = "sorted"\n')  # fmt: skip
    store = InspectionStore(tmp_path / "state" / "eagle.sqlite3")
    rows = (("line-1", "old", "r1"), ("line-9", "old", "r2"), ("line-9", "theirs", "r3"), ("line-9", "sorted", "r4"))
    try:
        with store.transaction() as db:
            for station, sink, record in rows:
                db.execute("INSERT INTO outbox (station, sink, record_id, payload, state, attempts) "
                           "VALUES (?, ?, ?, '{}', 'dead', 3)", (station, sink, record))  # fmt: skip
    finally:
        store.close()
    code, out = _run(stations, "retry", "--sink", "theirs")
    assert (code, out) == (2, f"eagle: error: {stations}: --sink 'theirs' is not a sink of this file's stations "
                              "(their sinks: sorted; only in the outbox: old)\n")  # fmt: skip
    code, out = _run(stations, "retry", "--sink", "old")
    assert (code, out) == (0, "eagle station retry: 1 dead letter back in their queues\n")
    code, out = _run(stations, "retry")
    assert (code, out) == (0, "eagle station retry: 0 dead letters back in their queues\n")
    store = InspectionStore(tmp_path / "state" / "eagle.sqlite3")
    try:
        dead = store.read("SELECT station, sink FROM outbox WHERE state = 'dead' ORDER BY record_id")
    finally:
        store.close()
    assert [tuple(row) for row in dead] == [("line-9", "old"), ("line-9", "theirs"), ("line-9", "sorted")]


def test_the_status_says_when_the_last_verdict_was_stored_in_utc_iso_8601(tmp_path: Path) -> None:
    """``last_verdict.time_iso`` is the time as the records' ``time`` reads (UTC, ISO 8601, milliseconds), not
    only the epoch seconds ``time`` (kept: the console and other JSON readers take it as a number)."""
    (tmp_path / "incoming").mkdir()
    (tmp_path / "models" / "mono").mkdir(parents=True)
    stations = _stations(tmp_path, tmp_path / "models", "")
    store = InspectionStore(tmp_path / "state" / "eagle.sqlite3")
    try:
        with store.transaction() as db:
            db.execute("INSERT INTO station_intake (station, digest, name, state, record_id, reason, moved_to, "
                       "appeared, time) VALUES ('line-1', 'd1', 'a.png', 'done', 'r1', NULL, NULL, ?, ?)",
                       (1796550740.0, 1796550741.3))  # fmt: skip
    finally:
        store.close()
    last = _status(stations)["last_verdict"]
    assert (last["image"], last["time"], last["time_iso"]) == ("a.png", 1796550741.3, "2026-12-06T09:52:21.300+00:00")


class Running:
    """``eagle station run`` (no ``--until-idle``) as a service manager starts it, its stderr read line by line."""

    def __init__(
        self, stations: Path, *args: str, env: dict[str, str] | None = None, launcher: list[str] | None = None
    ) -> None:
        self.lines: list[str] = []
        launcher = launcher or [sys.executable, "-m", "eagle_iad.cli"]
        self.process = subprocess.Popen([*launcher, "station", "run", *args, str(stations)], cwd=stations.parent,
                                        env=env or _env(), stderr=subprocess.PIPE, text=True)  # fmt: skip
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line)

    def until(self, done: Any, what: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + wait_s(timeout)
        while not done():
            assert self.process.poll() is None, f"the station ended: {self.log()}"
            assert time.monotonic() < deadline, f"{what}: {self.log()}"
            time.sleep(0.05)

    def saw(self, text: str) -> bool:
        return any(text in line for line in list(self.lines))

    def log(self) -> str:
        return "".join(self.lines)

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout=wait_s(60))
        finally:
            self.process.kill()
            self._reader.join(10)
        return code


def _status(stations: Path) -> dict[str, Any]:
    code, out = _run(stations, "status")
    assert code == 0, out
    return dict(json.loads(out[out.index("[") :])[0])


def _attempts(work: Path) -> list[int]:
    import sqlite3

    db = sqlite3.connect(f"file:{work / 'state' / 'eagle.sqlite3'}?mode=ro", uri=True)
    try:
        return [int(row[0]) for row in db.execute("SELECT attempts FROM outbox ORDER BY seq")]
    finally:
        db.close()


def test_a_stations_file_on_a_shared_history_rides_out_a_database_restart_and_waits_out_another_holder(
    model_dir: Path, tmp_path: Path, receiver: Receiver, postgres: Any
) -> None:
    """A database restart ends every session's locks. ``eagle station run`` used to exit 2 at its next look ("lost
    the lock ... stopped, start again"), and the line stopped until a person started it again. It now pauses the
    station (intake and deliveries, one line), takes the lock back once the server is up, and goes on (one line):
    the images dropped during and after the restart are inspected exactly once, by the same process. A lock another
    process took meanwhile is waited out, taking nothing, naming the holder, until that process lets it go."""
    from eagle_iad.history import open_backend
    from eagle_iad.service.store import InspectionStore
    from eagle_iad.station.outbox import station_lock

    url = postgres.new_database()
    stations = _stations(tmp_path, model_dir, _webhook(receiver.port))
    stations.write_text(f'history = "{url}"\n' + stations.read_text())
    incoming = tmp_path / "incoming"
    cells = _cells(8)

    def drop(index: int) -> None:  # one image of its own name and content
        _drop(incoming, [cells[index]])
        (incoming / f"0000_{cells[index].name}").rename(incoming / f"{index}.png")

    def delivered() -> set[str]:
        return {r["key"] for r in list(receiver.received)}

    station = Running(stations, "--quiet")
    try:
        for index in range(2):
            drop(index)
        station.until(lambda: len(delivered()) == 2, "the first two verdicts")
        postgres.restart(down_s=wait_s(2))
        drop(2)  # while the server starts: the intake may be paused for the history or the lock
        drop(3)
        station.until(lambda: len(delivered()) == 4, "the verdicts of the images dropped after the restart", 90)
        assert station.process.poll() is None and station.saw("took its lock in the history back"), station.log()

        # another process takes the lock while this one has lost it (the server ending its session)
        admin = open_backend(url).connect()
        try:
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory'")
        finally:
            admin.close()
        deadline = time.monotonic() + wait_s(30)
        while (other := open_backend(url).try_lock(station_lock("line-1"))) is None:
            assert time.monotonic() < deadline, f"the ended session's lock was never released: {station.log()}"
            time.sleep(0.02)
        try:
            holder = f"held by eagle-iad on {socket.gethostname()}, pid {os.getpid()}"
            station.until(lambda: station.saw(holder), "a line naming the lock's holder", 60)
            drop(4)
            time.sleep(wait_s(3))
            assert (incoming / "4.png").exists() and len(delivered()) == 4, station.log()  # the holder's to take
            state = _status(stations)["state"]
            assert state.startswith(f"waiting: its lock in the history is {holder}"), state
        finally:
            other.release()
        station.until(lambda: len(delivered()) == 5, "the image taken once the holder let the lock go", 60)
        drop(5)
        station.until(lambda: len(delivered()) == 6, "the next image")
        assert station.stop() == 143
    finally:
        station.process.kill()
    log = station.log()
    assert "eagle: error" not in log and "start again" not in log, log
    assert log.count("its lock in the history was lost") == 2, log  # one line a loss, not one per look
    assert log.count("took its lock in the history back") == 2, log
    assert log.count(holder) == 1, log
    store = InspectionStore(url)
    try:
        history = store.page(10_000, 0)[1][::-1]
    finally:
        store.close()
    assert sorted(r.image_name for r in history) == [f"{i}.png" for i in range(6)]  # each exactly once
    assert delivered() == {r.id for r in history}


def test_a_receiver_down_longer_than_ten_tries_at_the_default_max_attempts_gets_every_verdict_in_order(
    model_dir: Path, tmp_path: Path
) -> None:
    """The issue's case: a webhook down for minutes at the default ``max_attempts`` (only the backoff made short
    here). An unreachable receiver is retried without limit, its head blocking the rows behind it: no verdict
    becomes a dead letter, the status says how often the first in line was tried, and once the receiver listens
    it gets all of them, once each, in the order they were stored (earlier: dead letters after 10 tries, and the
    later verdicts delivered before the oldest)."""
    port = _free_port()
    _drop(tmp_path / "incoming", _cells(3))
    stations = _stations(tmp_path, model_dir, _webhook(port, retry_base_s=0.05, retry_max_s=0.1))
    station = Running(stations, "--quiet")
    late = Receiver(port)
    try:
        station.until(lambda: station.saw("is failing"), "no line saying the sink fails")
        tried = lambda: len(_attempts(tmp_path)) == 3 and _attempts(tmp_path)[0] >= 15  # noqa: E731
        station.until(lambda: station.saw("gave up") or tried(), "fifteen failed tries of the first verdict")
        assert not station.saw("gave up"), station.log()  # the receiver is unreachable: not a dead letter
        status = _status(stations)
        assert (status["sinks"]["webhook"]["pending"], status["sinks"]["webhook"]["dead_letters"]) == (3, 0), status
        (warning,) = status["warnings"]
        assert "3 deliveries (verdicts and refusals) wait" in warning and "the first in line tried " in warning, warning
        late.start()
        station.until(lambda: len(late.received) >= 3, "the verdicts delivered once the receiver listens")
        assert station.stop() == 143
    finally:
        station.process.kill()
        late.stop()
    assert late.keys() == [r.id for r in _history(tmp_path)], station.log()  # each once, in stored order
    assert "gave up" not in station.log()


def test_a_receiver_busy_is_retried_past_ten_tries_and_one_refusing_a_verdict_makes_it_a_dead_letter(
    model_dir: Path, tmp_path: Path, receiver: Receiver
) -> None:
    """At the default ``max_attempts``: 503 and 429 say "not now", retried however often (here 15 times, more than
    the ten tries that used to end in a dead letter); a 422 refuses the verdict, which becomes a dead letter after
    REFUSED_ATTEMPTS refusals, and the verdicts behind it then go, in order."""
    from eagle_iad.station.parts import REFUSED_ATTEMPTS

    posts: list[str] = []
    first: list[str] = []

    def answer(key: str) -> int:
        posts.append(key)
        first[:] = first or [key]
        if len(posts) <= 12:
            return 503
        if len(posts) <= 15:
            return 429
        return 422 if key == first[0] else 200

    receiver.answer = answer
    _drop(tmp_path / "incoming", _cells(3))
    stations = _stations(tmp_path, model_dir, _webhook(receiver.port, retry_base_s=0.02, retry_max_s=0.05))
    code, log = _run(stations, "run", "--until-idle", "--quiet")
    assert code == 0, log
    ids = [r.id for r in _history(tmp_path)]
    assert posts == [ids[0]] * (15 + REFUSED_ATTEMPTS) + ids[1:], posts  # the head blocked the rows behind it
    assert log.count("gave up on record") == 1, log
    assert f"gave up on record {ids[0]} after {15 + REFUSED_ATTEMPTS} tries (HTTP 422 from " in log, log
    status = _status(stations)
    assert (status["sinks"]["webhook"]["dead_letters"], status["sinks"]["webhook"]["delivered"]) == (1, 2), status


def test_a_dead_letter_requeued_goes_ahead_of_the_rows_stored_after_it(tmp_path: Path) -> None:
    """``eagle station retry`` puts a dead letter back at its place in the line (its ``seq``): it is delivered
    before every row still pending that was stored after it."""
    from eagle_iad.station.outbox import StationTables

    store = InspectionStore(tmp_path / "eagle.sqlite3")
    try:
        with store.transaction() as db:
            for record, state in (("r1", "delivered"), ("r2", "dead"), ("r3", "pending"), ("r4", "dead")):
                db.execute("INSERT INTO outbox (station, sink, record_id, payload, state, attempts) "
                           "VALUES ('line-1', 'webhook', ?, '{}', ?, 3)", (record, state))  # fmt: skip
        tables = StationTables(store)
        head = tables.head("line-1", "webhook")
        assert head is not None and head.record_id == "r3"
        assert tables.requeue_dead("line-1") == 2
        order = []
        while (head := tables.head("line-1", "webhook")) is not None:
            order.append(head.record_id)
            tables.delivered(head.seq)
        assert order == ["r2", "r3", "r4"]
    finally:
        store.close()


def test_refusals_are_counted_in_the_outbox_row_whatever_fails_between_them_and_a_requeue_counts_afresh(
    tmp_path: Path,
) -> None:
    """A receiver flapping between refusing a verdict (422) and being unreachable (503) still makes it a dead letter
    after REFUSED_ATTEMPTS refusals in all (earlier: counted in a row, reset by every 503, so the head waited forever
    and every verdict behind it too); a courier built afresh (a restart, a PATCH) goes on counting from the row; a
    requeued dead letter is counted afresh (earlier: one more refusal made it a dead letter again)."""
    from eagle_iad.station.config import SinkConfig
    from eagle_iad.station.outbox import StationTables
    from eagle_iad.station.parts import REFUSED_ATTEMPTS, DeliveryError, RefusedError, Retry
    from eagle_iad.station.runner import Courier

    class Flapping:
        kind, name = "test", "webhook"

        def __init__(self) -> None:
            self.tries = 0

        def deliver(self, payload: dict[str, Any], key: str) -> None:
            self.tries += 1
            raise (RefusedError if self.tries % 2 else DeliveryError)(f"try {self.tries}")

        def close(self) -> None:
            pass

    store = InspectionStore(tmp_path / "eagle.sqlite3")
    try:
        with store.transaction() as db:
            db.execute(
                "INSERT INTO outbox (station, sink, record_id, payload) VALUES ('line-1', 'webhook', 'r1', '{}')"
            )
        tables, sink, lines = StationTables(store), Flapping(), []
        config = SinkConfig(sink, Retry(0, 0.0, 0.0))  # type: ignore[arg-type]  # no backoff: each call tries
        courier = Courier(tables, "line-1", config, lines.append)
        for _ in range(2 * REFUSED_ATTEMPTS - 3):  # refused, unreachable, refused, ...: REFUSED_ATTEMPTS - 1 refusals
            courier._once()
        courier = Courier(tables, "line-1", config, lines.append)  # rebuilt: the count is the row's
        courier._once()  # unreachable: not a refusal, and no reset either
        assert tables.undelivered("line-1") == (1, 0)
        courier._once()  # the REFUSED_ATTEMPTS-th refusal
        assert tables.head("line-1", "webhook") is None and tables.undelivered("line-1") == (0, 1)
        assert sum("gave up on record r1" in line for line in lines) == 1, lines
        assert tables.requeue_dead("line-1") == 1
        head = tables.head("line-1", "webhook")
        assert head is not None and (head.attempts, head.refusals) == (0, 0)
        courier._once()  # unreachable
        courier._once()  # a refusal after the requeue: the first, not the eleventh
        assert tables.undelivered("line-1") == (1, 0)
        head = tables.head("line-1", "webhook")
        assert head is not None and (head.attempts, head.refusals) == (2, 1)
    finally:
        store.close()


def test_a_reconnection_after_a_restart_does_not_cut_short_the_backoff_of_a_verdict_the_receiver_refused(
    tmp_path: Path,
) -> None:
    """A connection made again cuts a backoff short (the broker was away), but not that of a row the receiver has
    refused (it would refuse it again: trying at once only spends its refusals towards a dead letter). Read from the
    row (``last_refused``), so a courier built afresh (a restart, whose first connection is a reconnection too) waits
    it out as well; earlier that was the courier's memory, and each restart tried such a row at once. Only the last
    try counts: a row refused once and then unreachable (the broker away for an hour) is tried at once when the
    connection is back, by the same courier or one built afresh; the row's total ``refusals`` kept it waiting its
    whole backoff, stalling the queue behind it. A requeued dead letter is due at once."""
    from eagle_iad.station.config import SinkConfig
    from eagle_iad.station.outbox import StationTables
    from eagle_iad.station.parts import DeliveryError, RefusedError, Retry
    from eagle_iad.station.runner import Courier

    class Broker:
        kind, name = "test", "mqtt"

        def __init__(self) -> None:
            self.tried: list[str] = []
            self.answer: type[Exception] | None = RefusedError

        def deliver(self, payload: dict[str, Any], key: str) -> None:
            self.tried.append(key)
            if self.answer is not None:
                raise self.answer(f"try {len(self.tried)}")

        def close(self) -> None:
            pass

    store = InspectionStore(tmp_path / "eagle.sqlite3")
    try:
        with store.transaction() as db:
            db.execute("INSERT INTO outbox (station, sink, record_id, payload) VALUES ('line-1', 'mqtt', 'r1', '{}')")
        tables, sink = StationTables(store), Broker()
        config = SinkConfig(sink, Retry(0, 3600.0, 3600.0))  # type: ignore[arg-type]  # a backoff of 30 to 60 min
        courier = Courier(tables, "line-1", config, lambda line: None)
        courier._once()  # refused: its next try half an hour away or more
        head = tables.head("line-1", "mqtt")
        assert head is not None and (head.attempts, head.refusals) == (1, 1) and head.next_try > time.time() + 1500
        for _ in range(2):  # the same courier reconnected, then one built afresh (a restart) on connecting
            courier.reachable()
            courier._once()
            assert sink.tried == ["r1"], "a refused row was tried again at once on a reconnection"
            courier = Courier(tables, "line-1", config, lambda line: None)
        # its backoff over, the broker away: an unreachable try, whose own backoff is half an hour or more again
        sink.answer = DeliveryError
        with store.transaction() as db:
            db.execute("UPDATE outbox SET next_try = 0 WHERE record_id = 'r1'")
        courier._once()
        head = tables.head("line-1", "mqtt")
        assert head is not None and (head.attempts, head.refusals, head.last_refused) == (2, 1, False)
        assert head.next_try > time.time() + 1500 and sink.tried == ["r1", "r1"]
        # refused once, but the last try was unreachable: the connection back, it is tried at once, by the same
        # courier and by one built afresh (a restart)
        for fresh in (False, True):
            if fresh:
                courier = Courier(tables, "line-1", config, lambda line: None)
            courier.reachable()
            courier._once()
            assert sink.tried == ["r1"] * (3 + fresh), "a row last unreachable waited out its backoff on a reconnection"
        # refused again, given up, requeued: due at once, its refusals counted afresh
        sink.answer = None
        with store.transaction() as db:
            db.execute("UPDATE outbox SET state = 'dead', refusals = 3, last_refused = 1 WHERE record_id = 'r1'")
        assert tables.requeue_dead("line-1") == 1
        head = tables.head("line-1", "mqtt")
        assert head is not None and (head.attempts, head.refusals, head.last_refused) == (0, 0, False)
        courier._once()
        assert sink.tried == ["r1"] * 5 and tables.head("line-1", "mqtt") is None
    finally:
        store.close()


def test_a_writer_that_stalls_longer_than_settle_s_gets_its_image_inspected_whole_not_refused(
    model_dir: Path, tmp_path: Path
) -> None:
    """Half a PNG written, then a stall longer than ``settle_s``: the file settles, cannot be decoded, and is left
    in the folder (not sent to failed/ for good); once the writer writes the rest it settles again and is
    inspected whole. A file that stays unchanged and undecodable is refused after UNDECODABLE_SETTLES settle
    periods, with the reason beside it."""
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    data = _cells(1)[0].read_bytes()
    image = incoming / "stalled.png"
    image.write_bytes(data[: len(data) // 2])
    stations = _stations(tmp_path, model_dir, "", settle_s=1.0)
    station = Running(stations)
    try:
        station.until(lambda: station.saw("stalled.png: cannot be decoded yet"), "the half image left in place")
        assert image.exists() and not (incoming / "failed").exists(), station.log()
        with image.open("ab") as handle:  # the writer goes on
            handle.write(data[len(data) // 2 :])
        station.until(lambda: (incoming / "done" / "stalled.png").exists(), "the whole image inspected")
        assert station.stop() == 143
    finally:
        station.process.kill()
    assert "not inspected" not in station.log() and not (incoming / "failed").exists(), station.log()
    assert (incoming / "done" / "stalled.png").read_bytes() == data
    assert [r.image_name for r in _history(tmp_path)] == ["stalled.png"]

    broken = incoming / "broken.png"
    broken.write_bytes(data[: len(data) // 2])
    stations = _stations(tmp_path, model_dir, "", settle_s=0.2)
    code, log = _run(stations, "run", "--until-idle")
    assert code == 0, log
    # one line when its wait starts (not one each time it settles again: 10 here) and one when it is refused
    assert log.count("broken.png: cannot be decoded yet") == 1 and log.count("broken.png: not inspected") == 1, log
    assert (incoming / "failed" / "broken.png").read_bytes() == data[: len(data) // 2]
    assert "truncated" in (incoming / "failed" / "broken.png.reason.txt").read_text()


def test_a_failing_sink_is_one_line_when_it_fails_one_when_it_delivers_again_and_a_status_warning(
    model_dir: Path, tmp_path: Path
) -> None:
    """The receiver refuses connections while the station runs: one log line says so (not one per retry), the
    status names the sink, how many deliveries wait (verdicts and refusals: one queue), since when and the error;
    one line when it is back."""
    import re

    port = _free_port()
    _drop(tmp_path / "incoming", _cells(3))
    stations = _stations(tmp_path, model_dir, _webhook(port, retry_base_s=0.05, retry_max_s=0.2, max_attempts=1000))
    url = f"http://127.0.0.1:{port}/verdicts"
    station = Running(stations, "--quiet")
    late = Receiver(port)
    try:
        station.until(lambda: station.saw("is failing"), "no line saying the sink fails")
        station.until(lambda: len(_attempts(tmp_path)) == 3 and _attempts(tmp_path)[0] >= 10, "ten failed tries")
        status = _status(stations)
        assert (status["state"], status["sinks"]["webhook"]["pending"]) == ("running", 3), status
        (warning,) = status["warnings"]
        assert re.fullmatch(rf"sink webhook: 3 deliveries \(verdicts and refusals\) wait, the oldest stored \d+ s ago "
                            rf"\(\S+\); the first "
                            rf"in line tried \d+ times; last error: "
                            rf"{re.escape(url)}: .*Connection refused.*", warning), warning  # fmt: skip
        late.start()
        station.until(lambda: len(late.received) == 3 and station.saw("delivers again"), "the verdicts delivered")
        assert station.stop() == 143
    finally:
        station.process.kill()
        late.stop()
    log = station.log()
    failing = [line for line in station.lines if "is failing" in line]
    assert len(failing) == 1 and log.count("sink webhook delivers again") == 1, log  # not a line per retry
    assert re.fullmatch(rf"eagle station line-1: warning: sink webhook is failing: {re.escape(url)}: .*Connection "
                        r"refused.*; (1 delivery \(a verdict or a refusal\) waits|[23] deliveries \(verdicts and "
                        r"refusals\) wait) in the outbox \(retried with backoff; a "
                        r"line when it delivers again\)\n", failing[0]), failing[0]  # fmt: skip
    assert re.search(r"eagle station line-1: sink webhook delivers again, after \d+ failed tries over \d+ s; "
                     r"(1 delivery \(a verdict or a refusal\) waits|[02] deliveries \(verdicts and refusals\) "
                     r"wait) in the outbox\n", log), log  # fmt: skip
    status = _status(stations)
    assert (status["state"], status["warnings"], status["sinks"]["webhook"]["delivered"]) == ("not running", [], 3)


def test_a_failing_sinks_warning_says_how_long_a_refusal_at_the_head_of_its_queue_waited(tmp_path: Path) -> None:
    """A refusal at the head of a failing sink's queue has no record to take the age from (its intake row is no
    record's, and the files not read share one): the warning gives the time its payload says, as a verdict's."""
    from eagle_iad.record import iso_time
    from eagle_iad.station.outbox import StationTables
    from eagle_iad.station.parts import Retry
    from eagle_iad.station.status import StationFacts, station_figures

    store = InspectionStore(tmp_path / "eagle.sqlite3")
    tables = StationTables(store)
    try:
        stored = iso_time(time.time() - 600)
        for key, digest in (("refused-1", ""), ("refused-2", "d2")):  # a file not read, then one read
            payload = {"event": "refused", "station": "line-1", "image": None, "source": "x.png",
                       "refused": {"id": key, "image_name": "x.png", "reason": "denied", "time": stored}}  # fmt: skip
            tables.write_failed("line-1", digest, "x.png", "denied", 1.0, key=key, planned="failed/x.png",
                                sinks=["webhook"], payload=payload)  # fmt: skip
        tables.release_held("line-1")
        head = tables.head("line-1", "webhook")
        assert head is not None and head.record_id == "refused-1"
        tables.failed(head, "Connection refused", Retry(0, 1.0, 60.0))
        facts = StationFacts("line-1", "mono", "folder x", 0, [("webhook", "webhook")], 100, 5.0)
        with store.transaction() as db:
            warnings = station_figures(db, facts)["warnings"]
        (warning,) = warnings
        assert re.fullmatch(rf"sink webhook: 2 deliveries \(verdicts and refusals\) wait, the oldest stored \d+ min "
                            rf"ago \({re.escape(stored)}\); the first in line tried 1 time; last error: Connection "
                            "refused", warning), warning  # fmt: skip
    finally:
        store.close()


def test_a_paused_intake_shows_in_the_status_until_it_resumes(model_dir: Path, tmp_path: Path) -> None:
    """``done`` is a file: the first image is inspected but cannot be put away, so the intake pauses; the
    status of the running station says so (its state and a warning), not only its log."""
    (name, _) = _drop(tmp_path / "incoming", _cells(2))
    (tmp_path / "incoming" / "done").write_text("not a folder")
    stations = _stations(tmp_path, model_dir, "")
    station = Running(stations)
    try:
        station.until(lambda: station.saw("intake paused:"), "no pause")
        why = f"{name}: inspected, but it could not be put away: File exists"
        status = _status(stations)
        assert status["state"] == f"waiting: {why}", status
        # (only the pause's: on a busy machine the first image's latency can also be over the deadline, said too)
        paused = [w for w in status["warnings"] if not w.startswith("p95 latency ")]
        assert len(paused) == 1, status
        (warning,) = paused
        assert warning.startswith("intake paused for ") and warning.endswith(f" s: {why}; retried every 5 s"), warning
        (tmp_path / "incoming" / "done").unlink()
        station.until(lambda: station.saw("intake resumed") and len(_history(tmp_path)) == 2, "no resume")
        status = _status(stations)
        still = [w for w in status["warnings"] if not w.startswith("p95 latency ")]
        assert (status["state"], still) == ("running", []), status
        assert station.stop() == 143
    finally:
        station.process.kill()
    assert _status(stations)["state"] == "not running"


def test_a_file_is_complete_after_settle_s_unchanged_on_the_stations_clock_whatever_the_writers_clock(
    tmp_path: Path,
) -> None:
    """Writers on other machines (NFS, SMB) stamp files with their own clocks: one an hour behind is still
    writing (it must not be read half-way), one an hour ahead has finished (it must not wait an hour). A file
    counts as complete once its size and modification time stayed the same for ``settle_s`` between polls."""
    from eagle_iad.station.parts import Options
    from eagle_iad.station.sources.folder import HotFolder

    incoming = tmp_path / "incoming"
    incoming.mkdir()
    folder = HotFolder(Options({"path": "incoming", "settle_s": 1.0, "poll_s": 0.05}, "source", tmp_path))
    now = time.time()
    for name, mtime in (("behind.png", now - 3600), ("ahead.png", now + 3600), ("old.png", now - 10)):
        (incoming / name).write_bytes(b"half an image")
        os.utime(incoming / name, (mtime, mtime))

    def taken() -> list[str]:
        return [arrival.name for arrival in folder.poll()]

    start = time.monotonic()
    assert taken() == []  # just seen: even old.png waits settle_s (it may have just landed from a slow clock)
    time.sleep(0.5)
    with open(incoming / "behind.png", "ab") as handle:  # the writer an hour behind goes on writing
        handle.write(b", the rest")
    os.utime(incoming / "behind.png", (now - 3599, now - 3599))
    assert taken() == []
    time.sleep(max(0.0, start + 1.1 - time.monotonic()))
    assert taken() == ["old.png", "ahead.png"]  # unchanged for settle_s: not later, whatever their stamps say
    time.sleep(1.1)
    assert taken() == ["behind.png", "old.png", "ahead.png"]  # oldest (by stamp) first, as before
    at_once = HotFolder(Options({"path": "incoming", "settle_s": 0}, "source", tmp_path))
    assert len([arrival for arrival in at_once.poll()]) == 3  # settle_s 0: a writer that renames complete files


def test_sidecar_mode_reads_a_sidecar_again_only_once_it_changed(tmp_path: Path) -> None:
    """A poll stats each sidecar and reads only new or changed ones (a folder of thousands of inspected images
    is not thousands of reads a poll): a sidecar rewritten in place with its size and stamp kept is not read
    again, one whose stamp changed is."""
    from eagle_iad.station.parts import Options
    from eagle_iad.station.sources.folder import HotFolder

    incoming = tmp_path / "incoming"
    incoming.mkdir()
    folder = HotFolder(Options({"path": "incoming", "after": "sidecar", "settle_s": 0}, "source", tmp_path))
    image = incoming / "a.png"
    image.write_bytes(b"x" * 1000)
    info = image.stat()
    sidecar = incoming / "a.png.eagle.json"
    sidecar.write_text(json.dumps({"record_id": "r", "size": 1000, "mtime_ns": info.st_mtime_ns}))
    assert [a.name for a in folder.poll()] == [] and [a.name for a in folder.poll()] == []  # marked
    stamp = sidecar.stat().st_mtime_ns
    with open(sidecar, "r+") as handle:  # in place, the same length: now it describes another file
        handle.write(json.dumps({"record_id": "r", "size": 1001, "mtime_ns": info.st_mtime_ns}))
    os.utime(sidecar, ns=(stamp, stamp))
    assert [a.name for a in folder.poll()] == []  # what it read before: the sidecar was not read again
    os.utime(sidecar, ns=(stamp + 1000, stamp + 1000))
    assert [a.name for a in folder.poll()] == ["a.png"]  # changed: read again, and it marks another file


def test_sidecar_mode_leaves_images_in_place(model_dir: Path, tmp_path: Path) -> None:
    names = _drop(tmp_path / "incoming", _cells(2))
    stations = _stations(tmp_path, model_dir, "", source=', after = "sidecar"')
    code, log = _run(stations, "run", "--until-idle")
    assert code == 0, log
    history = _history(tmp_path)
    for record, name in zip(history, names, strict=True):
        mark = json.loads((tmp_path / "incoming" / f"{name}.eagle.json").read_text())
        info = (tmp_path / "incoming" / name).stat()  # what the sidecar describes: another file there is new
        assert mark == {"record_id": record.id, "decision": record.decision, "score": record.score,
                        "size": info.st_size, "mtime_ns": info.st_mtime_ns}  # fmt: skip
    assert sorted(p.name for p in (tmp_path / "incoming").iterdir()) == sorted([*names, *(n + ".eagle.json"
                                                                                          for n in names)])  # fmt: skip


def test_sidecar_mode_takes_names_too_long_for_a_plain_sidecar_and_the_rest_of_the_folder(
    model_dir: Path, tmp_path: Path
) -> None:
    """``<name>.eagle.json`` is over NAME_MAX for a 245-byte name (its stat fails: File name too long) and
    leaves no room for the atomic write's temporary name from 235 bytes on: such an image gets a sidecar with
    a shortened name (the stem cut, a hash of the full name added), and neither stops the rest of the folder."""
    incoming = tmp_path / "incoming"
    names = _drop(incoming, _cells(3))
    for index, length in ((0, 240), (1, 255)):  # 240: the sidecar itself fits, its temporary name does not
        long = incoming / (f"{index}" * (length - 4) + ".png")
        os.rename(incoming / names[index], long)
        names[index] = long.name
    stations = _stations(tmp_path, model_dir, "", source=', after = "sidecar"')
    code, log = _run(stations, "run", "--until-idle", "--quiet", timeout=120)
    assert code == 0 and "failed" not in log and "paused" not in log, log
    history = _history(tmp_path)
    assert sorted(r.image_name for r in history) == sorted(names), log
    marks = sorted(p.name for p in incoming.iterdir() if p.name.endswith(".eagle.json"))
    assert len(marks) == 3 and all(len(m.encode()) <= 245 for m in marks), marks
    assert names[2] + ".eagle.json" in marks  # a name that fits keeps its plain sidecar
    for record in history:
        (mark,) = [m for m in marks if m.startswith(record.image_name[:200])]
        assert json.loads((incoming / mark).read_text())["record_id"] == record.id
    code, log = _run(stations, "run", "--until-idle", "--quiet", timeout=120)
    assert code == 0 and len(_history(tmp_path)) == 3, log  # each marked: none inspected again


DURING = '''
"""Test plugin: something happens during the station's first inspection, as EAGLE_TEST_DURING says:
``replace<sep>name<sep>other`` puts other's bytes under name (a temporary name renamed over it, as a camera
does), ``rename<sep>folder<sep>to`` takes the hot folder away, ``chmod<sep>folder<sep>mode`` (octal) changes
its permissions, ``occupy<sep>file`` writes other bytes at file (another name in done/ taken meanwhile),
``replace-occupy<sep>name<sep>other<sep>file`` does both, ``append<sep>name`` has a writer add to name right
after the station read it (before it is inspected), ``restart<sep>name`` has a writer start name again after it
settled (half of it written when the station opens it, the rest once it was read), ``sigterm`` stops the process;
``say-searches`` says on stderr each time the station looks for an image by its content (a held delivery
resolved so)."""
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

from eagle_iad.station import runner
from eagle_iad.station.sources.folder import HotFolder

what, *paths = os.environ["EAGLE_TEST_DURING"].split(os.pathsep)
real = runner.run_inspection
done = []


def during(*args, **kwargs):
    if not done:
        done.append(True)
        if what == "replace":
            Path(paths[0] + ".new").write_bytes(Path(paths[1]).read_bytes())
            os.replace(paths[0] + ".new", paths[0])
        elif what == "rename":
            os.rename(paths[0], paths[1])
        if what in ("occupy", "replace-occupy"):
            Path(paths[-1]).parent.mkdir(exist_ok=True)
            Path(paths[-1]).write_bytes(b"another file, put there meanwhile")
        if what == "replace-occupy":
            Path(paths[0] + ".new").write_bytes(Path(paths[1]).read_bytes())
            os.replace(paths[0] + ".new", paths[0])
        elif what == "chmod":
            os.chmod(paths[0], int(paths[1], 8))
        elif what == "sigterm":
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)  # the stop is under way before this image is done
    return real(*args, **kwargs)


class Late:
    """The station's handle on the image: the writer adds the rest right after the station read it."""

    def __init__(self, handle, path):
        self.handle, self.path = handle, path

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.handle.close()

    def fileno(self):
        return self.handle.fileno()

    def read(self, *args):
        data = self.handle.read(*args)
        if not done:
            done.append(True)
            with open(self.path, "ab") as more:
                more.write(b"the rest, written late")
        return data


class Restarted(Late):
    """The station's handle on a file its writer started again after it settled: half of it is there (and stays so
    while the station reads it); the writer writes the whole once the station is done reading."""

    def __init__(self, handle, path, whole):
        super().__init__(handle, path)
        self.whole = whole

    def read(self, *args):
        return self.handle.read(*args)

    def __exit__(self, *exc):
        self.handle.close()
        Path(self.path).write_bytes(self.whole)


real_open = runner._open_image


def late_open(path):
    handle = real_open(path)
    return Late(handle, path) if str(path) == paths[0] else handle


def restarted_open(path):
    if str(path) != paths[0] or done:
        return real_open(path)
    done.append(True)
    whole = Path(path).read_bytes()
    Path(path).write_bytes(whole[: len(whole) // 2])
    return Restarted(real_open(path), path, whole)


runner.run_inspection = during
if what == "append":
    runner._open_image = late_open
elif what == "restart":
    runner._open_image = restarted_open
if what == "say-searches":
    real_filed_at = HotFolder.filed_at

    def filed_at(self, name, digest, planned, **kwargs):
        print(f"eagle test: {name} looked for by its content", file=sys.stderr, flush=True)
        return real_filed_at(self, name, digest, planned, **kwargs)

    HotFolder.filed_at = filed_at
'''


def _during(tmp_path: Path, *what: str | Path) -> dict[str, str]:
    """The environment of a station run with the :data:`DURING` plugin doing ``what`` in its first inspection."""
    (tmp_path / "plugin").mkdir(exist_ok=True)
    (tmp_path / "plugin" / "during.py").write_text(DURING)
    return _env(EAGLE_PLUGINS="during", EAGLE_TEST_DURING=os.pathsep.join(map(str, what)),
                PYTHONPATH=f"{tmp_path / 'plugin'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")  # fmt: skip


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_file_replaced_while_inspected_is_not_filed_under_the_old_verdict(model_dir: Path, tmp_path: Path) -> None:
    """The image at a name changes during its inspection: the verdict goes with the bytes inspected (in done/
    and in the folder sink), and the new image stays for the next poll and gets its own verdict."""
    (name,) = _drop(tmp_path / "incoming", _cells(1))
    other = _cells(2)[1]
    stations = _stations(tmp_path, model_dir, '\n[[station.sink]]\nkind = "folder"\npath = "sorted"\n')
    env = _during(tmp_path, "replace", tmp_path / "incoming" / name, other)
    code, log = _run(stations, "run", "--until-idle", env=env)
    assert code == 0, log
    history = _history(tmp_path)
    assert [r.image_sha256 for r in history] == [_sha(_cells(1)[0]), _sha(other)], log  # each inspected once
    assert [r.image_name for r in history] == [name, name]
    done = tmp_path / "incoming" / "done"
    stem, suffix = os.path.splitext(name)
    assert {p.name: _sha(p) for p in done.iterdir()} == {name: _sha(_cells(1)[0]), f"{stem}-1{suffix}": _sha(other)}
    assert not [p for p in (tmp_path / "incoming").iterdir() if p.is_file()]
    for record in history:  # each copy is the image its verdict is about
        copied = tmp_path / "sorted" / str(record.decision) / f"{record.id}_{name}"
        assert _sha(copied) == record.image_sha256


def test_sidecar_mode_a_file_replaced_while_inspected_keeps_the_bytes_inspected_with_their_verdict(
    model_dir: Path, tmp_path: Path
) -> None:
    """After = "sidecar", the image at a name changes during its inspection: no sidecar says that verdict of the
    new bytes; the bytes inspected are kept in done/ with a sidecar describing that copy, and the verdict's place
    (the folder sink's copy, its payload) is that copy; the new image is inspected as a new arrival, its sidecar
    beside it describing it."""
    incoming = tmp_path / "incoming"
    (name,) = _drop(incoming, _cells(1))
    other = _cells(2)[1]
    sink = '\n[[station.sink]]\nkind = "folder"\npath = "sorted"\nmax_attempts = 3\nretry_base_s = 0.05\n'
    stations = _stations(tmp_path, model_dir, sink, source=', after = "sidecar"')
    code, log = _run(stations, "run", "--until-idle", env=_during(tmp_path, "replace", incoming / name, other))
    assert code == 0 and "gave up" not in log, log
    assert f"{name}: replaced while inspected; the bytes inspected (record " in log, log
    history = _history(tmp_path)
    assert [r.image_sha256 for r in history] == [_sha(_cells(1)[0]), _sha(other)], log  # each inspected once
    image, kept = incoming / name, incoming / "done" / name
    places = [image, kept]
    assert _sha(image) == history[1].image_sha256 and _sha(kept) == history[0].image_sha256
    for record, place in zip(history[::-1], places, strict=True):  # each sidecar describes the file beside it
        mark = json.loads(place.with_name(place.name + ".eagle.json").read_text())
        info = place.stat()
        assert (mark["record_id"], mark["size"], mark["mtime_ns"]) == (record.id, info.st_size, info.st_mtime_ns)
    for record, place in zip(history, places[::-1], strict=True):  # each verdict's place holds its bytes
        copied = tmp_path / "sorted" / str(record.decision) / f"{record.id}_{name}"
        assert _sha(copied) == record.image_sha256
        assert json.loads(copied.with_name(copied.name + ".json").read_text())["image"] == str(place)
    code, log = _run(stations, "run", "--until-idle")  # each marked: none inspected again
    assert code == 0 and len(_history(tmp_path)) == 2, log


def test_sidecar_mode_a_file_replaced_while_its_sidecar_is_written_is_not_marked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The image is replaced right as its sidecar is written, by a file of the same size and stamp (a camera
    writing same-sized frames within its file system's stamp resolution): the sidecar would describe the new
    file as inspected. It is looked at again after the write: that sidecar is removed, the bytes inspected are
    kept in done/ with their own, and the new file is a new arrival."""
    from eagle_iad.station.parts import Options
    from eagle_iad.station.sources import folder as hot
    from eagle_iad.station.sources.folder import HotFolder, identity

    incoming = tmp_path / "incoming"
    incoming.mkdir()
    folder = HotFolder(Options({"path": "incoming", "after": "sidecar", "settle_s": 0}, "source", tmp_path))
    folder.log = lambda line: None
    image = incoming / "a.png"
    image.write_bytes(b"x" * 100)
    (arrival,) = folder.poll()
    info = image.stat()
    read = dataclasses.replace(arrival, data=b"x" * 100, identity=identity(info))
    real = hot.atomic_write_text

    def replaced_meanwhile(path: Path, text: str) -> None:
        real(path, text)
        if path == incoming / "a.png.eagle.json":
            (incoming / "new.tmp").write_bytes(b"y" * 100)
            os.utime(incoming / "new.tmp", ns=(info.st_atime_ns, info.st_mtime_ns))
            os.replace(incoming / "new.tmp", image)

    monkeypatch.setattr(hot, "atomic_write_text", replaced_meanwhile)
    kept = folder.finish(read, image, {"id": "r1", "decision": "normal", "score": 0.5})
    assert image.read_bytes() == b"y" * 100 and not (incoming / "a.png.eagle.json").exists()
    assert kept == incoming / "done" / "a.png" and kept.read_bytes() == b"x" * 100
    assert json.loads((incoming / "done" / "a.png.eagle.json").read_text())["record_id"] == "r1"
    assert [a.name for a in folder.poll()] == ["a.png"]


def test_a_file_rewritten_with_the_same_bytes_while_inspected_is_put_away_as_usual(
    model_dir: Path, tmp_path: Path
) -> None:
    """Its inode and stamp change, its bytes do not (a writer that rewrites a file unchanged; a file system whose
    inode numbers are not stable, as CIFS noserverino or some FUSE): it is the image inspected, moved to done/
    once, not copied there and left behind. The same bytes dropped again under that name are not kept twice."""
    incoming = tmp_path / "incoming"
    (name,) = _drop(incoming, _cells(1))
    stations = _stations(tmp_path, model_dir, "")
    code, log = _run(stations, "run", "--until-idle", env=_during(tmp_path, "replace", incoming / name, _cells(1)[0]))
    assert code == 0 and "same content" not in log, log
    assert [r.image_sha256 for r in _history(tmp_path)] == [_sha(_cells(1)[0])]
    assert {p.name: _sha(p) for p in (incoming / "done").iterdir()} == {name: _sha(_cells(1)[0])}, log
    assert not [p for p in incoming.iterdir() if p.is_file()], log
    shutil.copyfile(_cells(1)[0], incoming / name)  # dropped again: done/ holds these very bytes under this name
    os.utime(incoming / name, (time.time() - 10, time.time() - 10))
    code, log = _run(stations, "run", "--until-idle")
    assert code == 0 and f"{name}: same content as record {_history(tmp_path)[0].id}" in log, log
    assert {p.name: _sha(p) for p in (incoming / "done").iterdir()} == {name: _sha(_cells(1)[0])}, log
    assert not [p for p in incoming.iterdir() if p.is_file()], log
    shutil.copyfile(_cells(1)[0], incoming / "again.png")  # under another name: put away under its own
    os.utime(incoming / "again.png", (time.time() - 10, time.time() - 10))
    code, log = _run(stations, "run", "--until-idle")
    assert code == 0 and "again.png: same content as record" in log, log
    assert sorted(p.name for p in (incoming / "done").iterdir()) == sorted([name, "again.png"]), log


@pytest.mark.parametrize("replaced", [False, True], ids=["kept", "replaced"])
def test_an_image_put_away_under_another_name_than_planned_is_delivered_from_there(
    model_dir: Path, tmp_path: Path, replaced: bool
) -> None:
    """``done/<name>`` is taken during the inspection, so the image goes to ``done/<name>-1`` (moved, or the bytes
    read written there when the file was also replaced): the stored place and the sinks' payload say so, and
    the folder sink copies the image inspected instead of dead-lettering."""
    incoming = tmp_path / "incoming"
    (name,) = _drop(incoming, _cells(1))
    other = _cells(2)[1]
    stations = _stations(tmp_path, model_dir, '\n[[station.sink]]\nkind = "folder"\npath = "sorted"\n'
                                              "max_attempts = 3\nretry_base_s = 0.05\n")  # fmt: skip
    occupied = incoming / "done" / name
    what = ("replace-occupy", incoming / name, other, occupied) if replaced else ("occupy", occupied)
    code, log = _run(stations, "run", "--until-idle", env=_during(tmp_path, *what))
    assert code == 0 and "gave up" not in log, log
    history = _history(tmp_path)
    assert [r.image_sha256 for r in history] == [_sha(_cells(1)[0]), *([_sha(other)] if replaced else [])], log
    stem, suffix = os.path.splitext(name)
    first = incoming / "done" / f"{stem}-1{suffix}"
    assert _sha(first) == history[0].image_sha256 and occupied.read_bytes().startswith(b"another file"), log
    for record in history:
        copy = tmp_path / "sorted" / str(record.decision) / f"{record.id}_{name}"
        assert _sha(copy) == record.image_sha256
    payload = json.loads((tmp_path / "sorted" / str(history[0].decision) / f"{history[0].id}_{name}.json").read_text())
    assert payload["image"] == str(first)


def _kill_after_storing(
    stations: Path, env: dict[str, str], meanwhile: Callable[[], None] = lambda: None, *,
    point: str = "station stored", launcher: list[str] | None = None,
) -> None:  # fmt: skip
    """Run ``stations`` until it stored its first verdict (before filing the image), call ``meanwhile``, kill it.
    ``point``: ``station refusal stored`` for its first refusal (stored, the image not put aside yet). With
    ``--until-idle``: a station that never gets there ends (a failure), rather than running on."""
    launcher = launcher or [sys.executable, "-m", "eagle_iad.cli"]
    process = subprocess.Popen([*launcher, "station", "run", "--until-idle", str(stations)], cwd=stations.parent,
                               env={**env, PAUSE_ENV: point}, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert process.stderr is not None
        for line in process.stderr:
            if line.strip() == f"{PAUSED}{point}":
                break
        else:
            pytest.fail(f"the station ended before {point!r}")
        meanwhile()
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=wait_s(60))
    finally:
        process.kill()
        process.communicate()


def test_no_sink_is_sent_the_planned_place_of_an_image_filed_under_another_name(
    model_dir: Path, tmp_path: Path, receiver: Receiver
) -> None:
    """``done/<name>`` is taken during the inspection and the station is killed after storing the verdict, before
    filing the image: while it waits there, the webhook is sent nothing (the payload would name ``done/<name>``,
    where the image never goes); the restart files it at ``done/<name>-1`` and delivers that place."""
    incoming = tmp_path / "incoming"
    (name,) = _drop(incoming, _cells(1))
    stations = _stations(tmp_path, model_dir, _webhook(receiver.port))

    def nothing_sent() -> None:
        time.sleep(3)  # a courier looks at its queue at least once a second
        assert receiver.received == []

    _kill_after_storing(stations, _during(tmp_path, "occupy", incoming / "done" / name), nothing_sent)
    code, log = _run(stations, "run", "--until-idle")
    assert code == 0, log
    stem, suffix = os.path.splitext(name)
    assert [r["body"]["image"] for r in receiver.received] == [str(incoming / "done" / f"{stem}-1{suffix}")], log


def test_a_verdict_whose_image_was_taken_away_before_it_was_filed_is_still_delivered(
    model_dir: Path, tmp_path: Path, receiver: Receiver
) -> None:
    """Killed between storing and filing, and the image removed before the restart: its delivery is not held
    forever (blocking the sink's queue, and ``--until-idle``), it goes with the place planned for it."""
    incoming = tmp_path / "incoming"
    (name,) = _drop(incoming, _cells(1))
    stations = _stations(tmp_path, model_dir, _webhook(receiver.port))
    _kill_after_storing(stations, _env())
    (incoming / name).unlink()
    code, log = _run(stations, "run", "--until-idle", timeout=120)
    assert code == 0 and "image never filed (gone from the source); 1 deliveries go with" in log, log
    assert [r["body"]["image"] for r in receiver.received] == [str(incoming / "done" / name)], log


def test_a_file_still_growing_while_read_is_left_for_a_later_poll(model_dir: Path, tmp_path: Path) -> None:
    """The writer adds to the file while the station reads it (settled, then written again): the bytes read are
    not the file, so it is left, settles again and is inspected whole; never a verdict on part of an image
    filed with the whole one."""
    incoming = tmp_path / "incoming"
    (name,) = _drop(incoming, _cells(1))
    stations = _stations(tmp_path, model_dir, "")
    code, log = _run(stations, "run", "--until-idle", env=_during(tmp_path, "append", incoming / name))
    assert code == 0, log
    assert f"{name}: still being written; left for a later poll" in log, log
    (record,) = _history(tmp_path)
    whole = incoming / "done" / name
    assert whole.read_bytes().endswith(b"the rest, written late") and record.image_sha256 == _sha(whole), log


def test_a_file_changed_between_settling_and_the_read_is_left_for_a_later_poll(model_dir: Path, tmp_path: Path) -> None:
    """The file settled, then its writer started it again before the station read it: half of it is there, and
    it stays so while the station reads it (nothing changes during the read). The bytes read are not the file
    that settled (its size and stamp differ from the settled ones), so they are neither inspected nor refused as
    a broken image: the file is left, settles again once whole, and is inspected whole, once."""
    incoming = tmp_path / "incoming"
    (name,) = _drop(incoming, _cells(1))
    stations = _stations(tmp_path, model_dir, "")
    code, log = _run(stations, "run", "--until-idle", env=_during(tmp_path, "restart", incoming / name))
    assert code == 0, log
    assert f"{name}: changed since it settled; left for a later poll" in log and "not inspected" not in log, log
    (record,) = _history(tmp_path)
    assert record.image_sha256 == _sha(_cells(1)[0]) == _sha(incoming / "done" / name), log
    assert not (incoming / "failed").exists(), log


def test_sidecar_mode_inspects_a_new_image_under_an_inspected_name(model_dir: Path, tmp_path: Path) -> None:
    (name,) = _drop(tmp_path / "incoming", _cells(1))
    stations = _stations(tmp_path, model_dir, "", source=', after = "sidecar"')
    code, log = _run(stations, "run", "--until-idle", "--quiet")
    assert code == 0, log
    image = tmp_path / "incoming" / name
    shutil.copyfile(_cells(2)[1], image)  # the camera writes the next part under the same name
    os.utime(image, (time.time() - 5, time.time() - 5))
    code, log = _run(stations, "run", "--until-idle", "--quiet")
    assert code == 0, log
    history = _history(tmp_path)
    assert [r.image_sha256 for r in history] == [_sha(_cells(1)[0]), _sha(_cells(2)[1])]
    mark = json.loads((tmp_path / "incoming" / f"{name}.eagle.json").read_text())
    assert mark["record_id"] == history[1].id
    assert (mark["size"], mark["mtime_ns"]) == (image.stat().st_size, image.stat().st_mtime_ns)


def test_a_name_of_255_bytes_arriving_twice_is_put_away_under_a_shortened_name(model_dir: Path, tmp_path: Path) -> None:
    """``<name>-1`` and the folder sink's ``<record id>_<name>`` would be over NAME_MAX: the stem is cut, the suffix
    kept, and neither the intake nor the deliveries stop."""
    long = "é" * 60 + "a" * (255 - 120 - 4) + ".png"  # 255 bytes in UTF-8
    broken = "b" * 251 + ".png"
    assert len(long.encode()) == len(broken.encode()) == 255
    incoming = tmp_path / "incoming"
    stations = _stations(tmp_path, model_dir, '\n[[station.sink]]\nkind = "folder"\npath = "sorted"\n'
                                              "max_attempts = 1\n")  # fmt: skip
    for cell in _cells(2):
        incoming.mkdir(exist_ok=True)
        shutil.copyfile(cell, incoming / long)
        (incoming / broken).write_bytes(b"not an image " + cell.name.encode())
        for path in (incoming / long, incoming / broken):
            os.utime(path, (time.time() - 5, time.time() - 5))
        code, log = _run(stations, "run", "--until-idle", "--quiet", timeout=120)
        assert code == 0 and "paused" not in log and "gave up" not in log, log
    history = _history(tmp_path)
    assert [r.image_name for r in history] == [long, long]
    done = sorted(p.name for p in (incoming / "done").iterdir())
    assert done == sorted([long, "é" * 60 + "a" * (255 - 120 - 6) + "-1.png"])
    failed = sorted(p.name for p in (incoming / "failed").iterdir())
    assert len(failed) == 4 and all(len(n.encode()) <= 255 for n in failed), failed
    assert sum(n.endswith(".png.reason.txt") for n in failed) == 2 and sum(n.endswith(".png") for n in failed) == 2
    for record in history:
        (copy,) = [p for p in (tmp_path / "sorted" / str(record.decision)).glob(f"{record.id}_*.png")]
        assert copy.name.startswith(f"{record.id}_éé") and len(copy.name.encode()) <= 255
        assert _sha(copy) == record.image_sha256
        assert json.loads(copy.with_name(copy.name + ".json").read_text())["record"]["id"] == record.id


def test_until_idle_with_the_hot_folder_gone_says_so_in_one_line(model_dir: Path, tmp_path: Path) -> None:
    """The folder taken away while the station runs: ``--until-idle`` cannot see a backlog, says so once, and
    ends (no traceback); the image it was inspecting keeps its verdict."""
    _drop(tmp_path / "incoming", _cells(2))
    stations = _stations(tmp_path, model_dir, "")
    code, log = _run(stations, "run", "--until-idle", env=_during(tmp_path, "rename", tmp_path / "incoming",
                                                                  tmp_path / "unmounted"))  # fmt: skip
    assert code == 0 and "Traceback" not in log, log
    line = (f"eagle station line-1: no backlog visible (No such file or directory: {tmp_path / 'incoming'}); "
            "counted as none waiting\n")  # fmt: skip
    assert log.count(line) == 1, log
    assert len(_history(tmp_path)) == 1


def test_a_hot_folder_renamed_while_it_is_listed_is_gone_not_empty(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The folder renamed away after its listing opened, before its entries were looked at: each entry's look
    finds nothing (it stats the entry's path), which read as an empty folder, so ``--until-idle`` ended saying
    nothing (the flaky run of the test above). The backlog now raises as a listing of a gone folder does, for
    :func:`eagle_iad.station.status.gone` to tell; a file taken away alone still only drops out."""
    from eagle_iad.station import status
    from eagle_iad.station.parts import Options
    from eagle_iad.station.sources import folder as folder_module
    from eagle_iad.station.sources.folder import HotFolder

    incoming = tmp_path / "incoming"
    incoming.mkdir()
    for name in ("a.png", "b.png"):
        (incoming / name).write_bytes(b"an image")
    source = HotFolder(Options({"path": "incoming", "settle_s": 0}, "source", tmp_path))
    real = os.scandir
    then: list[Callable[[], None]] = []

    class Listing:  # the real listing, with ``then`` done once it is open (the folder renamed under it)
        def __init__(self, path: Any) -> None:
            self.entries = real(path)

        def __enter__(self) -> Listing:
            return self

        def __exit__(self, *exc: object) -> None:
            self.entries.close()

        def __iter__(self) -> Iterator[os.DirEntry[str]]:
            while then:
                then.pop()()
            return iter(self.entries)

    monkeypatch.setattr(folder_module.os, "scandir", Listing)
    then.append(lambda: (incoming / "a.png").unlink())  # one file taken away: the other still waits
    assert source.backlog() == 1
    then.append(lambda: incoming.rename(tmp_path / "unmounted"))
    with pytest.raises(FileNotFoundError) as raised:
        source.backlog()
    assert status.gone(raised.value, incoming), raised.value


def test_until_idle_with_the_hot_folder_gone_ends_with_the_held_deliveries_kept_for_the_next_run(
    model_dir: Path, tmp_path: Path, receiver: Receiver
) -> None:
    """The folder taken away during an inspection, with a sink: the image was stored but could not be filed, so its
    delivery is held (where the image went is not known). ``--until-idle`` says so once and ends instead of
    waiting for a folder that is gone; the next run, the folder back, files the image and delivers it."""
    (name,) = _drop(tmp_path / "incoming", _cells(1))
    stations = _stations(tmp_path, model_dir, _webhook(receiver.port))
    env = _during(tmp_path, "rename", tmp_path / "incoming", tmp_path / "unmounted")
    code, log = _run(stations, "run", "--until-idle", env=env, timeout=120)
    assert code == 0 and "Traceback" not in log, log
    assert log.count("1 delivery waits for images not filed yet and stays for the next run") == 1, log
    assert receiver.received == [], log
    (tmp_path / "unmounted").rename(tmp_path / "incoming")
    code, log = _run(stations, "run", "--until-idle")
    assert code == 0, log
    (body,) = [r["body"] for r in receiver.received]
    assert body["image"] == str(tmp_path / "incoming" / "done" / name), body
    assert (tmp_path / "incoming" / "done" / name).is_file()


def test_until_idle_waits_while_the_hot_folder_cannot_be_listed(model_dir: Path, tmp_path: Path) -> None:
    """Only a folder that is gone (ENOENT, ENOTDIR) counts as none waiting: one the station may no longer list
    (EACCES here; EIO, ESTALE alike) may still hold images, so ``--until-idle`` says so once and waits."""
    launcher = unprivileged_cli()  # root would list it anyway
    incoming = tmp_path / "incoming"
    names = _drop(incoming, _cells(2))
    stations = _stations(tmp_path, model_dir, "")
    station = Running(stations, "--until-idle", env=_during(tmp_path, "chmod", incoming, "300"), launcher=launcher)
    try:
        station.until(lambda: station.saw("no backlog visible"), "no line saying the backlog cannot be seen")
        shutil.copyfile(_cells(3)[2], incoming / "late.png")  # an image waits that the station cannot see
        os.utime(incoming / "late.png", (time.time() - 10, time.time() - 10))
        time.sleep(1)  # --until-idle looks ten times a second: it must not end meanwhile
        assert station.process.poll() is None, station.log()
        os.chmod(incoming, 0o755)
        code = station.process.wait(timeout=wait_s(120))
        station._reader.join(10)
    finally:
        os.chmod(incoming, 0o755)
        station.process.kill()
    log = station.log()
    assert code == 0, log
    assert [r.image_name for r in _history(tmp_path)] == [*names, "late.png"], log
    line = (f"eagle station line-1: warning: no backlog visible (Permission denied: {incoming}); not idle while "
            "images may wait there, looking again\n")  # fmt: skip
    assert log.count(line) == 1, log


def test_a_hot_folder_gone_while_running_is_one_line_a_waiting_state_and_one_line_when_it_is_back(
    model_dir: Path, tmp_path: Path
) -> None:
    """The folder unmounted under a running station (no ``--until-idle``): one line when the intake starts
    failing and one when it resumes, not one per retry; meanwhile the station says it waits, and why."""
    from eagle_iad.station.status import read_intake

    incoming = tmp_path / "incoming"
    _drop(incoming, _cells(1))
    stations = _stations(tmp_path, model_dir, "")
    station = Running(stations)
    try:
        station.until(lambda: (incoming / "done").is_dir() and not [p for p in incoming.iterdir() if p.is_file() and
                                                                     p.name != ".eagle-station.lock"],
                      "the first image put away (the running station's lock file stays)")  # fmt: skip
        incoming.rename(tmp_path / "unmounted")
        station.until(lambda: station.saw("intake paused"), "no line saying the folder is gone")
        why = f"images cannot be listed: No such file or directory: {incoming}"
        intake = read_intake(tmp_path / "state", "line-1")  # what eagle station status shows as its state
        assert intake is not None and intake.state() == f"waiting: {why}", station.log()
        figures = _status(stations)  # eagle station status answers exactly then, as the service's GET does
        assert (figures["state"], figures["inspected"], figures["backlog"]) == (f"waiting: {why}", 1, 0), figures
        gone = f"no backlog visible (No such file or directory: {incoming}); counted as none waiting"
        assert gone in figures["warnings"], figures
        time.sleep(wait_s(11))  # two more tries, 5 s apart: no line for either
        (tmp_path / "unmounted").rename(incoming)
        shutil.copyfile(_cells(2)[1], incoming / "next.png")
        os.utime(incoming / "next.png", (time.time() - 10, time.time() - 10))
        station.until(lambda: station.saw("intake resumed") and len(_history(tmp_path)) == 2, "no resume")
        assert _status(stations)["state"] == "running"
        assert station.stop() == 143
    finally:
        station.process.kill()
    log = station.log()
    assert "intake failed" not in log, log
    assert log.count(f"eagle station line-1: intake paused: {why}; retrying every 5 s\n") == 1, log
    assert log.count("intake paused") == 1 and log.count("eagle station line-1: intake resumed\n") == 1, log


def test_a_stop_finishes_the_image_being_inspected_and_starts_no_other(model_dir: Path, tmp_path: Path) -> None:
    names = _drop(tmp_path / "incoming", _cells(4))
    stations = _stations(tmp_path, model_dir, "")
    code, log = _run(stations, "run", env=_during(tmp_path, "sigterm"))
    assert code == 143 and "eagle: stopped by SIGTERM" in log, log
    assert [r.image_name for r in _history(tmp_path)] == names[:1], log
    assert sorted(p.name for p in (tmp_path / "incoming" / "done").iterdir()) == names[:1]
    assert sorted(p.name for p in (tmp_path / "incoming").iterdir() if p.is_file()) == names[1:]  # for the next start


def test_a_newline_in_a_file_name_is_escaped_in_the_log(model_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "incoming").mkdir()
    image = tmp_path / "incoming" / "part\nforged.png"
    shutil.copyfile(_cells(1)[0], image)
    os.utime(image, (time.time() - 5, time.time() - 5))
    code, log = _run(_stations(tmp_path, model_dir, ""), "run", "--until-idle")
    assert code == 0, log
    assert "eagle station line-1: part\\nforged.png: " in log and "\nforged.png" not in log, log


CONFIG_ERRORS = [
    # (what the stations file says, the one line the user gets after "<file>: ")
    ('models = "{models}"\n', "no [[station]] tables; declare at least one station"),
    ('models = "{models}"\n[[station]]\nname = "a b"\ncategory = "mono"\n',
     "station 1: name 'a b' is not a station name: use 1-64 letters, digits, '_', '.', '-', starting with a letter "
     "or digit"),
    ('models = "{models}"\n[[station]]\nname = "l"\ncategory = "nope"\nsource = {{ kind = "folder", path = "in" }}\n',
     "station 'l': category 'nope' is not fitted in {models} (eagle fit ... --out {models}/nope)"),
    ('models = "{models}"\n[[station]]\nname = "l"\ncategory = "mono"\n', "station 'l': source is missing"),
    ('models = "{models}"\n[[station]]\nname = "l"\ncategory = "mono"\nsource = {{ kind = "scanner" }}\n',
     "station 'l': source: kind is 'scanner'; choose one of "),
    ('models = "{models}"\n[[station]]\nname = "l"\ncategory = "mono"\nsource = {{ kind = "folder", path = "gone" }}\n',
     "station 'l': source: path {work}/gone is not a folder"),
    ('models = "{models}"\n[[station]]\nname = "l"\ncategory = "mono"\n'
     'source = {{ kind = "folder", path = "in", settle_s = -1 }}\n',
     "station 'l': source: settle_s must be in [0, 3600], not -1"),
    ('models = "{models}"\n[[station]]\nname = "l"\ncategory = "mono"\nsource = {{ kind = "folder", path = "in", '
     'pth = 1 }}\n', "station 'l': source: unknown option 'pth'"),
    ('models = "{models}"\n[[station]]\nname = "l"\ncategory = "mono"\nsource = {{ kind = "folder", path = "in" }}\n'
     '[[station.sink]]\nkind = "webhook"\nurl = "htp:/x"\n',
     "station 'l': sink 1 (webhook): url 'htp:/x' is not an http:// or https:// URL with a host"),
    ('models = "{models}"\n[[station]]\nname = "l"\ncategory = "mono"\nsource = {{ kind = "folder", path = "in" }}\n'
     '[[station.sink]]\nkind = "webhook"\nurl = "http://h/"\nsecret_env = "EAGLE_NOT_SET_ANYWHERE"\n',
     "station 'l': sink 1 (webhook): secret_env names EAGLE_NOT_SET_ANYWHERE, which is not set in the environment"),
    ('models = "{models}"\n[[station]]\nname = "l"\ncategory = "mono"\nsource = {{ kind = "folder", path = "in" }}\n'
     '[[station.sink]]\nkind = "webhook"\nurl = "http://h/"\nmax_attempts = true\n',
     "station 'l': sink 1 (webhook): max_attempts must be a whole number, not True"),
    ('models = "{models}"\n[[station]]\nname = "l"\ncategory = "mono"\nsource = {{ kind = "folder", path = "in" }}\n'
     '[[station.sink]]\nkind = "pager"\n', "station 'l': sink 1: kind is 'pager'; choose one of 'folder', "),
    ('models = "{models}"\n[[station]]\nname = "l"\ncategory = "mono"\nsource = {{ kind = "folder", path = "in" }}\n'
     '[[station]]\nname = "l"\ncategory = "mono"\nsource = {{ kind = "folder", path = "in" }}\n',
     "station names must differ; l is used twice"),
    ('models = "{models}"\n[[station]]\nname = "a"\ncategory = "mono"\nsource = {{ kind = "folder", path = "in" }}\n'
     '[[station]]\nname = "b"\ncategory = "mono"\nsource = {{ kind = "folder", path = "./x/../in/" }}\n',
     "stations 'a' and 'b' both take the images of {work}/in; give each station its own folder"),
    ('models = "{models}"\nstate = "stations.toml"\n', "state {work}/stations.toml is not a folder"),
    ('models = "{models}"\nfiles = "stations.toml"\n', "files {work}/stations.toml is not a folder"),
    ("models = [\n", "not valid TOML: "),
    ('models = "{models}"\nkind = "folder"\n[[station]]\nname = "l"\ncategory = "mono"\n'
     'source = {{ kind = "folder", path = "in" }}\n', "unknown option 'kind'"),
    ('models = "{models}"\n[[station]]\nname = "l"\ncategory = "mono"\n'
     'source = {{ kind = "folder", path = "~nosuchuser-eagle/in" }}\n',
     "station 'l': source: path '~nosuchuser-eagle/in' is not a usable path: "),
    ('models = "{models}"\n[[station]]\nname = "l"\ncategory = "mono"\nsource = {{ kind = "folder", path = "in" }}\n'
     '[[station.sink]]\nkind = "webhook"\nurl = "http://[::1/x"\n',
     "station 'l': sink 1 (webhook): url 'http://[::1/x' is not a URL: Invalid IPv6 URL"),
    ('models = "{models}"\n[[station]]\nname = "l"\ncategory = "mono"\nsource = {{ kind = "folder", path = "in" }}\n'
     '[[station.sink]]\nkind = "webhook"\nurl = "https://h/"\nca_file = "stations.toml"\n',
     "station 'l': sink 1 (webhook): ca_file {work}/stations.toml is not a PEM certificate file: "),
    ('models = "{models}"\n[[station]]\nname = "l"\ncategory = "mono"\nsource = {{ kind = "folder", path = "in" }}\n'
     '[[station.sink]]\nkind = "webhook"\nurl = "http://h/"\nca_file = "stations.toml"\n',
     "station 'l': sink 1 (webhook): ca_file needs an https:// url (this url is plain http://: no TLS to verify)"),
    ('models = "{models}"\n[[station]]\nname = "l"\ncategory = "mono"\nsource = {{ kind = "folder", path = "in" }}\n'
     '[[station.sink]]\nkind = "webhook"\nurl = "http://a/"\n[[station.sink]]\nkind = "webhook"\nurl = "http://b/"\n',
     "station 'l': sink 1 (webhook): name is missing: 2 sinks are 'webhook', so each needs a name"),
]  # fmt: skip


def assert_refused(path: Path, expected: str, *, cli: bool) -> None:
    """``read_stations`` refuses ``path`` with one line starting ``expected``; with ``cli``, ``eagle station run``
    prints that same line after ``eagle: error:`` and exits 2 (one run per table: the CLI's path is the same
    for every message, and each start costs seconds)."""
    with pytest.raises(StationConfigError) as caught:
        read_stations(path)
    message = str(caught.value)
    assert message.startswith(expected) and "\n" not in message, message
    if cli:
        code, out = _run(path, "run")
        assert (code, out) == (2, f"eagle: error: {message}\n"), out


@pytest.mark.parametrize(("text", "message"), CONFIG_ERRORS, ids=[m[:40] for _, m in CONFIG_ERRORS])
def test_a_bad_stations_file_is_one_line_naming_the_field(
    model_dir: Path, tmp_path: Path, text: str, message: str
) -> None:
    (tmp_path / "in").mkdir()
    path = tmp_path / "stations.toml"
    path.write_text(text.format(models=model_dir))
    expected = f"{path}: " + message.format(models=model_dir, work=tmp_path)
    assert_refused(path, expected, cli=message in (CONFIG_ERRORS[0][1], CONFIG_ERRORS[-1][1]))


@pytest.mark.parametrize("key", ["state", "files"])
def test_a_state_or_files_folder_that_cannot_be_made_is_one_line_naming_it(
    model_dir: Path, tmp_path: Path, key: str
) -> None:
    (tmp_path / "incoming").mkdir()
    stations = _stations(tmp_path, model_dir, "")
    kept = "" if key == "state" else 'state = "state"\n'
    stations.write_text(stations.read_text().replace('state = "state"\n', f'{kept}{key} = "/proc/nope/{key}"\n'))
    code, out = _run(stations, "run")
    assert (code, out) == (2, f"eagle: error: {stations}: {key} /proc/nope/{key} cannot be created: No such file or "
                              "directory\n"), out  # fmt: skip


PLUGIN = '''
"""A sink from outside the package: each verdict as one line of a JSON-lines file."""
import json
from pathlib import Path

from eagle_iad.station.parts import REQUIRED, SINKS, Retry


class JsonLines:
    kind = "jsonl"

    def __init__(self, options, name):
        self.name = name
        self.path = options.path("path", REQUIRED)
        self.max_attempts = Retry.read(options).max_attempts

    def describe(self):
        return f"jsonl {self.path}"

    def deliver(self, payload, key):
        with open(self.path, "a") as handle:
            handle.write(json.dumps({"key": key, "decision": payload["record"]["decision"]}) + "\\n")

    def close(self):
        pass


SINKS.add("jsonl", JsonLines)
'''


def test_a_sink_registered_by_a_plugin_works_from_the_stations_file(model_dir: Path, tmp_path: Path) -> None:
    """The plugin test: one file, one registration, and ``kind = "jsonl"`` runs end to end. The plugin predates
    refusals (it reads ``payload["record"]`` and has no ``takes_refusals``): a broken image is refused but not
    sent to it, so it neither fails on it nor holds its queue."""
    (tmp_path / "plugin_sinks").mkdir()
    (tmp_path / "plugin_sinks" / "jsonl_sink.py").write_text(PLUGIN)
    _drop(tmp_path / "incoming", _cells(3))
    (tmp_path / "incoming" / "zz-broken.png").write_bytes(b"not an image")
    stations = _stations(tmp_path, model_dir, '\n[[station.sink]]\nkind = "jsonl"\npath = "out.jsonl"\n')
    env = _env(EAGLE_PLUGINS="jsonl_sink", PYTHONPATH=f"{tmp_path / 'plugin_sinks'}{os.pathsep}"
                                                      f"{os.environ.get('PYTHONPATH', '')}")  # fmt: skip
    code, log = _run(stations, "run", "--until-idle", env=env)
    assert code == 0, log
    lines = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    history = _history(tmp_path)
    assert lines == [{"key": r.id, "decision": r.decision} for r in history]
    assert len(history) == 3 and (tmp_path / "incoming" / "failed" / "zz-broken.png").exists(), log
    assert "dead letter" not in log, log
    assert "jsonl" not in SINKS  # registered in the station's process only


PROBING_PLUGIN = '''"""Hot folders from outside: one with a probe() and warning() of its own, one with hooks."""
from eagle_iad.station.parts import SOURCES, StationConfigError
from eagle_iad.station.sources.folder import HotFolder


class Sampled(HotFolder):
    """Its probe takes a sample and its warning logs a text: methods of its own, no hooks of the station."""

    kind = "sampled"

    def probe(self, sample):
        raise AssertionError("the plugin's own probe(sample) was called as the station's start-up look")

    def warning(self, text):
        raise AssertionError("the plugin's own warning(text) was called as the station's status hook")


class Hooked(HotFolder):
    """The station's hooks by their names: a start-up look that refuses the station."""

    kind = "hooked"

    def __init__(self, options):
        super().__init__(options)
        self.where = options.where

    def station_probe(self):
        raise StationConfigError(f"{self.where}: the line's interlock is not wired (station_probe)")


SOURCES.add("sampled", Sampled)
SOURCES.add("hooked", Hooked)
'''


def test_a_plugin_sources_own_probe_and_warning_are_not_taken_for_the_stations_hooks(
    model_dir: Path, tmp_path: Path
) -> None:
    """The station looked its source's start-up look and status warning up as ``probe`` and ``warning``: a plugin
    source with methods of its own by those names (a ``probe(sample)``) had them called, its station refused at
    start with a bare ``TypeError``. The hooks are ``station_probe`` and ``station_warning`` (``SOURCE_HOOKS``):
    the plugin's own methods are left alone, and a plugin's declared hook is called."""
    (tmp_path / "plugin_sources").mkdir()
    (tmp_path / "plugin_sources" / "probing_source.py").write_text(PROBING_PLUGIN)
    _drop(tmp_path / "incoming", _cells(2))
    env = _env(EAGLE_PLUGINS="probing_source", PYTHONPATH=f"{tmp_path / 'plugin_sources'}{os.pathsep}"
                                                          f"{os.environ.get('PYTHONPATH', '')}")  # fmt: skip
    stations = _stations(tmp_path, model_dir, "")
    stations.write_text(stations.read_text().replace('kind = "folder"', 'kind = "sampled"'))
    code, log = _run(stations, "run", "--until-idle", env=env)
    assert code == 0 and len(_history(tmp_path)) == 2, log
    assert "AssertionError" not in log and "TypeError" not in log, log
    stations.write_text(stations.read_text().replace('kind = "sampled"', 'kind = "hooked"'))
    _drop(tmp_path / "incoming", _cells(1))
    code, log = _run(stations, "run", "--until-idle", env=env)
    assert (code, log) == (2, f"eagle: error: {stations}: station 'line-1': source: the line's interlock is not "
                              "wired (station_probe)\n"), log  # fmt: skip
    assert len(_history(tmp_path)) == 2


PROBING_SINKS = '''"""Sinks from outside: one with a probe() of its own, one with the start-up look's hook."""
import json

from eagle_iad.station.parts import REQUIRED, SINKS, Retry, StationConfigError


class Sampled:
    """JSON lines, and a probe() of its own: it writes a sample line (what the plugin meant it for), no hook."""

    kind = "sampled"

    def __init__(self, options, name):
        self.name = name
        self.where = options.where
        self.path = options.path("path", REQUIRED)
        self.max_attempts = Retry.read(options).max_attempts

    def describe(self):
        return f"sampled {self.path}"

    def probe(self):
        with open(self.path, "a") as handle:
            handle.write(json.dumps({"sample": True}) + "\\n")

    def deliver(self, payload, key):
        with open(self.path, "a") as handle:
            handle.write(json.dumps({"key": key}) + "\\n")

    def close(self):
        pass


class Hooked(Sampled):
    """The station's hook by its name: a start-up look that refuses the station."""

    kind = "hooked"

    def station_probe(self):
        raise StationConfigError(f"{self.where}: path: the receiver's share is read-only (station_probe)")


SINKS.add("sampled", Sampled)
SINKS.add("hooked", Hooked)
'''


def test_a_plugin_sinks_own_probe_is_not_taken_for_the_start_up_look(model_dir: Path, tmp_path: Path) -> None:
    """The station looked a sink's start-up look up as ``probe``: a plugin sink with a ``probe()`` of its own (here
    one that writes a sample line) had it called at every start. The hook is ``station_probe`` (``SINK_HOOKS``,
    never called by its older name: ``RETIRED_SINK_HOOKS``): the plugin's own method is left alone, the start says
    so in one line, and a plugin's declared hook is called."""
    (tmp_path / "plugin_sinks").mkdir()
    (tmp_path / "plugin_sinks" / "probing_sink.py").write_text(PROBING_SINKS)
    _drop(tmp_path / "incoming", _cells(2))
    env = _env(EAGLE_PLUGINS="probing_sink", PYTHONPATH=f"{tmp_path / 'plugin_sinks'}{os.pathsep}"
                                                        f"{os.environ.get('PYTHONPATH', '')}")  # fmt: skip
    stations = _stations(tmp_path, model_dir, '\n[[station.sink]]\nkind = "sampled"\npath = "out.jsonl"\n')
    code, log = _run(stations, "run", "--until-idle", env=env)
    assert code == 0, log
    lines = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert lines == [{"key": r.id} for r in _history(tmp_path)] and len(lines) == 2, lines  # no sample line
    note = ("eagle station line-1: note: sink 'sampled' (probing_sink.Sampled): its probe() is not called by the "
            "station; the start-up look is named station_probe() (rename it if it is that look)\n")  # fmt: skip
    assert note in log, log
    assert "warning" not in log, log
    stations.write_text(stations.read_text().replace('kind = "sampled"', 'kind = "hooked"'))
    _drop(tmp_path / "incoming", _cells(1))
    code, log = _run(stations, "run", "--until-idle", env=env)
    assert (code, log) == (2, f"eagle: error: {stations}: station 'line-1': sink 1 (hooked): path: the receiver's "
                              "share is read-only (station_probe)\n"), log  # fmt: skip
    assert len(_history(tmp_path)) == 2


def test_backoff_doubles_to_its_ceiling_with_half_of_it_jittered() -> None:
    from eagle_iad.station.outbox import backoff_s
    from eagle_iad.station.parts import Retry

    retry = Retry(10, 1.0, 8.0)
    for attempts, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (9, 8.0), (500, 8.0)]:
        waits = np.array([backoff_s(attempts, retry) for _ in range(200)])
        assert waits.min() >= ceiling / 2 and waits.max() <= ceiling and waits.std() > 0


def test_by_default_only_refusals_end_as_dead_letters_and_an_explicit_max_attempts_ends_any_failure() -> None:
    """``max_attempts`` 0 (the default): an unreachable receiver never makes a dead letter, REFUSED_ATTEMPTS
    refusals of the verdict do; set, it counts every try, as before."""
    from eagle_iad.station.parts import REFUSED_ATTEMPTS, Options, Retry

    default = Retry.read(Options({}, "sink 1 (webhook)", Path(".")))
    assert default.max_attempts == 0
    assert not default.gives_up(100_000, 0) and not default.gives_up(100_000, REFUSED_ATTEMPTS - 1)
    assert default.gives_up(REFUSED_ATTEMPTS, REFUSED_ATTEMPTS)
    three = Retry.read(Options({"max_attempts": 3}, "sink 1 (webhook)", Path(".")))
    assert [three.gives_up(n, 0) for n in (1, 2, 3)] == [False, False, True]
    with pytest.raises(StationConfigError, match=r"max_attempts must be in \[0, 1000\], not -1"):
        Retry.read(Options({"max_attempts": -1}, "sink 1 (webhook)", Path(".")))


def test_the_example_stations_file_reads(model_dir: Path, tmp_path: Path) -> None:
    """examples/stations.toml (``make station``) is a valid file once make has made its folders."""
    example = Path(__file__).resolve().parents[1] / "examples" / "stations.toml"
    (tmp_path / "examples").mkdir()
    shutil.copyfile(example, tmp_path / "examples" / "stations.toml")
    station = tmp_path / "runs" / "station"
    (station / "models").mkdir(parents=True)
    (station / "incoming").mkdir()
    (station / "models" / "elpv-mono").symlink_to(model_dir / "mono")
    stations = read_stations(tmp_path / "examples" / "stations.toml")
    assert [(s.name, s.category, [k.sink.kind for k in s.sinks]) for s in stations.stations] == [
        ("demo-line", "elpv-mono", ["folder"])
    ]
    assert stations.state_dir == station / "state"


def test_a_redirect_is_a_failed_delivery_not_a_silent_loss(model_dir: Path, tmp_path: Path, receiver: Receiver) -> None:
    """urllib would follow a 301 with a body-less GET that a 2xx answers: the verdict would count as delivered."""
    receiver.redirect = True
    _drop(tmp_path / "incoming", _cells(1))
    stations = _stations(tmp_path, model_dir, _webhook(receiver.port, retry_base_s=0.05, max_attempts=2))
    code, log = _run(stations, "run", "--until-idle", "--quiet")
    assert code == 0, log
    assert len(receiver.received) == 2  # two POSTs, no GET followed them
    expected = (f"HTTP 301 from http://127.0.0.1:{receiver.port}/verdicts: redirected to "
                f"http://127.0.0.1:{receiver.port}/moved; deliveries do not follow redirects")  # fmt: skip
    assert expected in log, log


def _certificate(folder: Path, name: str, san: str) -> Path:
    """A self-signed certificate (its own CA) for ``san``, with its key, in ``folder/<name>.pem``."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed (it makes the test's certificates)")
    pem = folder / f"{name}.pem"
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", f"/CN={name}",
                    "-addext", f"subjectAltName={san}", "-keyout", str(pem), "-out", str(pem)],
                   check=True, capture_output=True, timeout=wait_s(60))  # fmt: skip
    return pem


class TlsListener:
    """A TLS server on 127.0.0.1 that completes handshakes and closes: enough for the webhook's start-up probe."""

    def __init__(self, pem: Path) -> None:
        import ssl

        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(pem)
        self.handshakes = 0
        self._sock = context.wrap_socket(socket.create_server(("127.0.0.1", 0)), server_side=True)
        self._sock.settimeout(0.2)
        self.port = int(self._sock.getsockname()[1])
        self._halt = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._halt.is_set():
            try:
                conn, _ = self._sock.accept()  # the handshake happens here
            except OSError:  # a timeout, or a client that refused the certificate
                continue
            self.handshakes += 1
            conn.close()

    def close(self) -> None:
        self._halt.set()
        self._thread.join(wait_s(10))
        self._sock.close()


def test_the_webhook_retries_a_malformed_answer_and_401_403_404_and_refuses_other_4xx(
    tmp_path: Path, receiver: Receiver
) -> None:
    """A malformed HTTP answer (a bad status line, a body cut short, a header line too long) is no refusal of the
    verdict: retried as an unreachable receiver is (earlier: http.client's exception, not an OSError, counted as a
    refusal, a dead letter in time). 401, 403 and 404 describe the receiver as a whole (a token expired, a route not
    deployed): retried too; 400, 409, 410, 413, 415 and 422 refuse the verdict."""
    from eagle_iad.station.parts import DeliveryError, Options, RefusedError
    from eagle_iad.station.sinks.webhook import WebhookSink

    where = "stations.toml: station 'l': sink 1 (webhook)"

    def sink(port: int) -> WebhookSink:
        return WebhookSink(Options({"url": f"http://127.0.0.1:{port}/v", "timeout_s": 5}, where, tmp_path), "webhook")

    codes: list[int] = []
    receiver.answer = lambda key: codes[-1]
    for code in (401, 403, 404, 408, 429, 503):
        codes.append(code)
        with pytest.raises(DeliveryError) as caught:
            sink(receiver.port).deliver({"n": 1}, "k")
        assert type(caught.value) is DeliveryError and str(caught.value) == (
            f"HTTP {code} from http://127.0.0.1:{receiver.port}/v"
        )
    for code in (400, 409, 410, 413, 415, 422):
        codes.append(code)
        with pytest.raises(RefusedError, match=f"^HTTP {code} from "):
            sink(receiver.port).deliver({"n": 1}, "k")
    answers = {
        "BadStatusLine": b"garbage\r\n\r\n",
        "IncompleteRead": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",  # no chunk size
        "LineTooLong": b"HTTP/1.1 200 OK\r\nX-Long: " + b"x" * 70000 + b"\r\n\r\n",
    }
    for name, answer in answers.items():
        with socket.create_server(("127.0.0.1", 0)) as server:
            port = server.getsockname()[1]

            def reply(server: socket.socket = server, answer: bytes = answer) -> None:
                conn, _ = server.accept()
                with conn:
                    conn.recv(65536)
                    conn.sendall(answer)

            thread = threading.Thread(target=reply, daemon=True)
            thread.start()
            with pytest.raises(DeliveryError) as caught:
                sink(port).deliver({"n": 1}, "k")
            thread.join(wait_s(10))
        assert type(caught.value) is DeliveryError, name
        assert str(caught.value).startswith(f"http://127.0.0.1:{port}/v: malformed HTTP answer ({name}: "), caught.value


def test_a_webhook_with_verify_tls_false_and_a_plain_http_url_is_refused(tmp_path: Path) -> None:
    """``verify_tls = false`` with ``http://`` would turn off nothing: refused like ``ca_file`` with ``http://``,
    not accepted silently (the user may believe the url is TLS); with ``https://`` it is accepted. Earlier versions
    accepted both, so the line says what fixes a file written then: which file, station, sink and option."""
    from eagle_iad.station.parts import Options
    from eagle_iad.station.sinks.webhook import WebhookSink

    where = "stations.toml: station 'l': sink 1 (webhook)"
    with pytest.raises(StationConfigError) as caught:
        WebhookSink(Options({"url": "http://h/v", "verify_tls": False}, where, tmp_path), "webhook")
    assert str(caught.value) == (f"{where}: verify_tls = false needs an https:// url (this url is plain http://: "
                                 "no TLS to verify); remove verify_tls from this sink (over http:// it did nothing), "
                                 "or give it an https:// url")  # fmt: skip
    (tmp_path / "ca.pem").write_text("not read: refused before")
    with pytest.raises(StationConfigError) as caught:
        WebhookSink(Options({"url": "http://h/v", "ca_file": "ca.pem"}, where, tmp_path), "webhook")
    assert str(caught.value) == (f"{where}: ca_file needs an https:// url (this url is plain http://: no TLS to "
                                 "verify); remove ca_file from this sink (over http:// it did nothing), or give it an "
                                 "https:// url")  # fmt: skip
    assert WebhookSink(Options({"url": "http://h/v", "verify_tls": True}, where, tmp_path), "webhook").url
    assert WebhookSink(Options({"url": "https://h/v", "verify_tls": False}, where, tmp_path), "webhook").url


def test_the_webhook_probe_connects_only_and_refuses_a_certificate_that_fails_verification(tmp_path: Path) -> None:
    """At start-up the webhook sink connects (and shakes hands over TLS) but sends nothing: a receiver that is
    down is a warning; a certificate that fails verification is one line naming ``ca_file`` or ``url``."""
    from eagle_iad.station.parts import Options
    from eagle_iad.station.sinks.webhook import WebhookSink

    where = "stations.toml: station 'l': sink 1 (webhook)"

    def sink(url: str, **extra: Any) -> WebhookSink:
        return WebhookSink(Options({"url": url, "timeout_s": 5, **extra}, where, tmp_path), "webhook")

    down = _free_port()
    assert sink(f"http://127.0.0.1:{down}/v").station_probe() == f"http://127.0.0.1:{down}/v: Connection refused"
    good = _certificate(tmp_path, "receiver", "IP:127.0.0.1")
    other = _certificate(tmp_path, "elsewhere", "DNS:elsewhere.example")
    for pem in (good, other):
        listener = TlsListener(pem)
        url = f"https://127.0.0.1:{listener.port}/v"
        try:
            with pytest.raises(StationConfigError) as caught:
                sink(url).station_probe()  # self-signed: no CA this sink trusts signed it
            assert str(caught.value) == (f"{where}: ca_file: the TLS certificate of 127.0.0.1:{listener.port} "
                                         "failed verification (self-signed certificate); name the CA that signed it "
                                         "in ca_file")  # fmt: skip
            if pem == good:
                assert sink(url, ca_file=str(pem)).station_probe() is None
                assert sink(url, verify_tls=False).station_probe() is None
            else:
                with pytest.raises(StationConfigError) as caught:
                    sink(url, ca_file=str(pem)).station_probe()
                assert str(caught.value).startswith(f"{where}: url {url}: the TLS certificate is not for 127.0.0.1 "
                                                    "(IP address mismatch"), caught.value  # fmt: skip
        finally:
            listener.close()


def test_a_full_state_disk_pauses_the_intake_and_moves_nothing(model_dir: Path, tmp_path: Path) -> None:
    """The state folder on a 3 MiB tmpfs (a private mount, as test_service_faults does): no verdict can be
    stored, so no image may reach done/; the station says why and waits instead of failing the images."""
    from test_service_faults import _user_namespace_tmpfs

    reason = _user_namespace_tmpfs()
    if reason is not None:
        pytest.skip(f"cannot simulate a full disk: {reason}")
    names = _drop(tmp_path / "incoming", _cells(2))
    stations = _stations(tmp_path, model_dir, "")
    (tmp_path / "state").mkdir()
    mount = ["unshare", "-rm", "sh", "-c", 'mount -t tmpfs -o size=3m tmpfs "$0" && exec "$@"', str(tmp_path / "state")]
    process = subprocess.Popen([*mount, sys.executable, "-m", "eagle_iad.cli", "station", "run", str(stations)],
                               cwd=tmp_path, env=_env(), stderr=subprocess.PIPE, text=True)  # fmt: skip
    seen: list[str] = []
    try:
        assert process.stderr is not None
        for line in process.stderr:
            seen.append(line)
            if "intake paused:" in line:
                break
        else:
            pytest.fail("".join(seen))
        process.send_signal(signal.SIGTERM)
        _, rest = process.communicate(timeout=wait_s(120))
    finally:
        process.kill()
    assert process.returncode == 143, "".join(seen) + rest
    paused = next(line for line in seen if "intake paused:" in line)
    assert "eagle station line-1: intake paused: not enough free disk space for this request: " in paused, paused
    assert sorted(p.name for p in (tmp_path / "incoming").iterdir()) == names  # nothing moved, nothing failed


def test_sidecar_mode_a_file_refused_unread_is_marked_as_that_file_only(tmp_path: Path) -> None:
    """An image refused before it was read (a permission error) gets a sidecar that records its size and stamp:
    a fixed or replaced file under that name is a new arrival, not marked forever by the old refusal."""
    from eagle_iad.station.parts import Arrival, Options
    from eagle_iad.station.sources.folder import HotFolder

    incoming = tmp_path / "incoming"
    incoming.mkdir()
    folder = HotFolder(Options({"path": "incoming", "after": "sidecar", "settle_s": 0}, "source", tmp_path))
    image = incoming / "a.png"
    image.write_bytes(b"x" * 100)
    (arrival,) = folder.poll()
    folder.refuse(Arrival(path=arrival.path, source=arrival.source, name=arrival.name, appeared=arrival.appeared),
                  "a.png: cannot be read: Permission denied")  # fmt: skip
    info = image.stat()
    mark = json.loads((incoming / "a.png.eagle.json").read_text())
    assert mark == {"error": "a.png: cannot be read: Permission denied", "size": 100, "mtime_ns": info.st_mtime_ns,
                    "mode": info.st_mode, "ctime_ns": info.st_ctime_ns}  # fmt: skip
    assert [a.name for a in folder.poll()] == []  # the very file refused: marked
    image.write_bytes(b"y" * 120)  # fixed: another file under that name
    assert [a.name for a in folder.poll()] == ["a.png"]


def test_sidecar_mode_a_file_refused_unread_is_taken_again_once_its_permissions_change(tmp_path: Path) -> None:
    """A chmod (chown, an ACL) that may make a refused file readable changes neither its size nor its stamp: the
    refusal of a file not read also records its mode and ctime, as the listing saw them before the read failed,
    so the file whose permissions changed is taken again; a refusal of bytes read (not an image) stays put."""
    from eagle_iad.station.parts import Arrival, Options
    from eagle_iad.station.sources.folder import HotFolder

    incoming = tmp_path / "incoming"
    incoming.mkdir()
    folder = HotFolder(Options({"path": "incoming", "after": "sidecar", "settle_s": 0}, "source", tmp_path))
    for name in ("unread.png", "broken.png"):
        (incoming / name).write_bytes(b"not an image")
        os.chmod(incoming / name, 0o200)
    unread, broken = sorted(folder.poll(), key=lambda arrival: arrival.name != "unread.png")
    assert unread.settled is not None and stat.S_IMODE(unread.settled.mode) == 0o200
    os.chmod(incoming / "unread.png", 0o644)  # fixed right as the open failed: its refusal must not mark the fix
    folder.refuse(unread, "unread.png: cannot be read: Permission denied")
    folder.refuse(dataclasses.replace(broken, data=b"not an image"), "broken.png: not a recognised image format")
    assert [a.name for a in folder.poll()] == ["unread.png"]
    again = Arrival(path=unread.path, source=unread.source, name=unread.name, appeared=unread.appeared)
    folder.refuse(again, "unread.png: cannot be read: Permission denied")  # no listing's look: the file as it is now
    assert [a.name for a in folder.poll()] == []
    os.chmod(incoming / "unread.png", 0o600)
    os.chmod(incoming / "broken.png", 0o644)
    assert [a.name for a in folder.poll()] == ["unread.png"]


def test_sidecar_mode_an_unreadable_image_is_inspected_once_the_operator_fixed_its_permissions(
    model_dir: Path, tmp_path: Path
) -> None:
    """End to end, as a user whom permissions bind: the image cannot be read, so it gets a refusal sidecar; the
    operator's chmod makes it readable, and the next run inspects it (its sidecar now its verdict)."""
    launcher = unprivileged_cli()  # root would read it anyway
    incoming = tmp_path / "incoming"
    (name,) = _drop(incoming, _cells(1))
    image = incoming / name
    os.chmod(image, 0o000)
    stations = _stations(tmp_path, model_dir, "", source=', after = "sidecar"')
    try:
        code, log = _run(stations, "run", "--until-idle", launcher=launcher)
    finally:
        os.chmod(image, 0o644)
    assert code == 0 and f"{name}: not inspected: {name}: cannot be read: Permission denied" in log, log
    sidecar = incoming / f"{name}.eagle.json"
    assert json.loads(sidecar.read_text())["error"] == f"{name}: cannot be read: Permission denied"
    assert _history(tmp_path) == []
    code, log = _run(stations, "run", "--until-idle", launcher=launcher)
    assert code == 0 and "not inspected" not in log, log
    (record,) = _history(tmp_path)
    assert record.image_sha256 == _sha(image) and json.loads(sidecar.read_text())["record_id"] == record.id


def test_sidecar_mode_a_sidecar_forgotten_by_another_thread_meanwhile_does_not_end_the_poll(tmp_path: Path) -> None:
    """backlog() (idle(), the status, /metrics) looks at sidecars from other threads and forgets one whose
    sidecar is gone: it may do so between the poll's look at what it knows and its pruning."""
    from eagle_iad.station.parts import Options
    from eagle_iad.station.sources.folder import HotFolder

    class Racing(dict):  # type: ignore[type-arg]
        def __iter__(self) -> Iterator[Any]:
            keys = list(super().__iter__())
            for key in keys:  # another thread's _marked pops each right after the poll's snapshot
                self.pop(key, None)
            return iter(keys)

    incoming = tmp_path / "incoming"
    incoming.mkdir()
    folder = HotFolder(Options({"path": "incoming", "after": "sidecar", "settle_s": 0}, "source", tmp_path))
    image = incoming / "a.png"
    image.write_bytes(b"x" * 10)
    (incoming / "a.png.eagle.json").write_text(json.dumps({"record_id": "r"}))
    assert [a.name for a in folder.poll()] == []
    folder._sidecars = Racing(folder._sidecars)
    image.unlink()
    (incoming / "b.png").write_bytes(b"y" * 10)
    assert [a.name for a in folder.poll()] == ["b.png"]


def test_a_file_the_listing_cannot_stat_is_skipped_with_one_line_and_the_rest_taken(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """EIO or ESTALE on one file's stat (a bad sector, a stale NFS handle) skips that file, said once, not at
    every poll; the rest of the folder is taken and the intake goes on."""
    import errno

    from eagle_iad.station.parts import Options
    from eagle_iad.station.sources.folder import HotFolder

    class Entry:
        def __init__(self, entry: os.DirEntry[str]) -> None:
            self.entry, self.name = entry, entry.name

        def stat(self, *, follow_symlinks: bool = True) -> os.stat_result:
            if self.name == "bad.png":
                raise OSError(errno.EIO, os.strerror(errno.EIO))
            return self.entry.stat(follow_symlinks=follow_symlinks)

    class Listing:
        def __init__(self, path: Any) -> None:
            self.listing = real(path)

        def __enter__(self) -> Iterator[Entry]:
            return (Entry(entry) for entry in self.listing.__enter__())

        def __exit__(self, *exc: Any) -> None:
            self.listing.__exit__(*exc)

    real = os.scandir
    monkeypatch.setattr(os, "scandir", Listing)
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    folder = HotFolder(Options({"path": "incoming", "settle_s": 0}, "source", tmp_path))
    lines: list[str] = []
    folder.log = lines.append
    (incoming / "bad.png").write_bytes(b"x")
    (incoming / "good.png").write_bytes(b"y")
    assert [a.name for a in folder.poll()] == ["good.png"]
    assert [a.name for a in folder.poll()] == ["good.png"] and folder.backlog() == 1
    assert len(lines) == 1 and "bad.png: cannot be looked at (Input/output error)" in lines[0], lines


def _bare_runner(tmp_path: Path, source: Any, lines: list[str]) -> Any:
    """A runner of station ``line-1`` on ``source`` with no model and no sink: only its intake (refusals stored in
    a history of its own under ``tmp_path``), its lines in ``lines``."""
    from types import SimpleNamespace

    from eagle_iad.station.outbox import StationTables
    from eagle_iad.station.runner import StationRunner

    runner = StationRunner.__new__(StationRunner)
    runner.config = SimpleNamespace(name="line-1", source=source, category="mono")
    runner.log, runner.quiet, runner.couriers = lines.append, False, []
    runner.state = SimpleNamespace(settings=SimpleNamespace(state_dir=tmp_path / "state", max_upload_bytes=32 << 20))
    runner.tables = StationTables(InspectionStore(tmp_path / "bare.sqlite3"))
    runner._owed, runner._owed_kept, runner._owed_before = None, False, False
    runner._handled, runner._listed, runner._again_said, runner.handed_again = {}, set(), {}, 0
    return runner


def test_a_link_or_fifo_named_like_an_image_is_refused_not_followed_nor_waited_on(tmp_path: Path) -> None:
    """Put under an image's name after the listing saw a file there: a symbolic link is not followed (it could
    make the station read a file outside the folder) and a FIFO not waited on (a read blocks for a writer
    forever); each is refused with one clear reason, moved to failed/ itself (a link's target stays where it is)."""

    from eagle_iad.station.parts import Options
    from eagle_iad.station.sources.folder import HotFolder

    incoming = tmp_path / "incoming"
    incoming.mkdir()
    outside = tmp_path / "outside.png"
    outside.write_bytes(b"not the station's")
    folder = HotFolder(Options({"path": "incoming", "settle_s": 0}, "source", tmp_path))
    for name in ("link.png", "fifo.png"):
        (incoming / name).write_bytes(b"x")
    arrivals = list(folder.poll())
    for name in ("link.png", "fifo.png"):
        (incoming / name).unlink()
    (incoming / "link.png").symlink_to(outside)
    os.mkfifo(incoming / "fifo.png")
    lines: list[str] = []
    runner = _bare_runner(tmp_path, folder, lines)
    started = time.monotonic()
    assert all(runner._take(arrival) for arrival in arrivals)
    assert time.monotonic() - started < 10, lines
    # counted among the station's refused files, with no content hash (none was read): one row, two files, keeping
    # the last refusal's key (so the same refusal stored again is not counted again)
    ((digest, files, key),) = runner.tables.store.read("SELECT digest, files, record_id FROM station_intake")
    assert (digest, files) == ("", 2) and key.startswith("refused-")
    assert sorted(lines) == [
        "eagle station line-1: fifo.png: not inspected: fifo.png: cannot be read: not a regular file",
        "eagle station line-1: link.png: not inspected: link.png: cannot be read: a symbolic link, not followed",
    ]
    assert (incoming / "failed" / "link.png").is_symlink() and outside.read_bytes() == b"not the station's"
    assert stat.S_ISFIFO(os.lstat(incoming / "failed" / "fifo.png").st_mode)
    assert (incoming / "failed" / "fifo.png.reason.txt").read_text() == (
        "fifo.png: cannot be read: not a regular file\n"
    )


def test_a_file_larger_than_any_image_within_the_pixel_limit_is_refused_by_its_size_before_a_byte_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 400 MB junk file must not be loaded to find it is no image: a file over the limit (by default the largest an
    uncompressed image within the pixel limit can be, 40 MP x 8 bytes + 1 MiB: not the service's 32 MiB upload limit,
    which a 12-MP .bmp frame exceeds) is refused from its size alone, unread, put aside with its reason as any refusal
    (one under it is read and inspected: see the next test)."""
    import eagle_iad.station.runner as runner_module
    from eagle_iad.station.parts import Options
    from eagle_iad.station.sources.folder import HotFolder

    incoming = tmp_path / "incoming"
    incoming.mkdir()
    with open(incoming / "big.png", "wb") as handle:  # sparse: 400 MB listed, nothing on the disk
        handle.truncate(400 * 1000 * 1000)
    read: list[str] = []
    opened = runner_module._open_image

    def counting(path: Path) -> Any:
        handle = opened(path)
        real = handle.read

        def reading(*args: Any) -> bytes:
            read.append(path.name)
            return real(*args)

        handle.read = reading  # type: ignore[method-assign]
        return handle

    monkeypatch.setattr(runner_module, "_open_image", counting)
    folder = HotFolder(Options({"path": "incoming", "settle_s": 0}, "source", tmp_path))
    lines: list[str] = []
    runner = _bare_runner(tmp_path, folder, lines)
    for arrival in list(folder.poll()):
        assert runner._take(arrival), lines
    reason = ("big.png: 400000000 bytes, over the limit of 321048576 bytes (the largest an uncompressed image "
              "within the pixel limit can be: 8 bytes a pixel and 1 MiB of headers; the source's max_file_mb sets "
              "the station's own); not read")  # fmt: skip
    assert read == [], lines  # opened (a link or a FIFO is refused as before), never read
    assert f"eagle station line-1: big.png: not inspected: {reason}" in lines, lines
    assert (incoming / "failed" / "big.png").stat().st_size == 400 * 1000 * 1000
    assert (incoming / "failed" / "big.png.reason.txt").read_text() == reason + "\n"


def test_a_hot_folder_s_max_file_mb_refuses_larger_files_unread_and_takes_the_rest(
    model_dir: Path, tmp_path: Path
) -> None:
    """``max_file_mb`` (declared with the source's options): a file over it goes to failed/ with its reason and is
    counted as refused; an image under it is inspected."""
    incoming = tmp_path / "incoming"
    names = _drop(incoming, _cells(1))
    with open(incoming / "big.png", "wb") as handle:
        handle.truncate(2 * 1024 * 1024)
    stations = _stations(tmp_path, model_dir, "", source=", max_file_mb = 1")
    code, log = _run(stations, "run", "--until-idle")
    assert code == 0, log
    reason = "big.png: 2097152 bytes, over the limit of 1048576 bytes (the source's max_file_mb); not read"
    assert f"eagle station line-1: big.png: not inspected: {reason}" in log, log
    assert (incoming / "failed" / "big.png.reason.txt").read_text() == reason + "\n"
    assert [r.image_name for r in _history(tmp_path)] == names
    assert _status(stations)["failed"] == 1
    stations.write_text(stations.read_text().replace("max_file_mb = 1", "max_file_mb = -1"))
    code, log = _run(stations, "run", "--until-idle")
    assert (code, log) == (2, f"eagle: error: {stations}: station 'line-1': source: max_file_mb must be in "
                              "[0, 1048576], not -1\n")  # fmt: skip


@pytest.mark.parametrize(("after", "meanwhile"), [("sidecar", "replaced"), ("sidecar", "taken"), ("move", "taken")])
def test_a_file_not_read_and_no_longer_there_to_put_aside_is_told_with_no_place(
    tmp_path: Path, after: str, meanwhile: str
) -> None:
    """A file that could not be read (permission denied), then taken away, or in sidecar mode replaced by another
    file (the next part's: what failed to open may not be what is there now), before it was put aside: nothing of
    it is anywhere, so :meth:`HotFolder.refuse` says so (:class:`NotPutAside`) and its refusal goes at once with
    ``image`` null, not with the planned place: empty in ``failed/``, or in sidecar mode the image's own place,
    holding the other file, which a folder sink would file as this refusal's image (no hash to tell it by). The
    other file is left unmarked for the next poll."""
    from types import SimpleNamespace

    from eagle_iad.station.parts import Options
    from eagle_iad.station.sources.folder import HotFolder

    incoming = tmp_path / "incoming"
    incoming.mkdir()
    image = incoming / "a.png"
    image.write_bytes(b"x" * 100)
    folder = HotFolder(Options({"path": "incoming", "after": after, "settle_s": 0}, "source", tmp_path))
    (arrival,) = folder.poll()
    image.unlink()
    if meanwhile == "replaced":
        image.write_bytes(b"the next part's image")
    lines: list[str] = []
    runner = _bare_runner(tmp_path, folder, lines)
    sink = SimpleNamespace(refusals=True, sink=SimpleNamespace(name="sorted"))
    runner.couriers = [SimpleNamespace(sink=sink, wake=threading.Event())]
    reason = "a.png: cannot be read: Permission denied"
    assert runner._refuse_or_pause(arrival, "", reason)
    ((payload, next_try),) = runner.tables.store.read("SELECT payload, next_try FROM outbox")
    assert json.loads(payload)["image"] is None and float(next_try) == 0.0  # due now, saying no place
    why = "another file is under its name since it was listed" if meanwhile == "replaced" else "taken away"
    assert lines == [f"eagle station line-1: a.png: not inspected: {reason}; not put aside ({why}): told with no place"]
    assert not (incoming / "failed").exists() or list((incoming / "failed").iterdir()) == []
    assert [a.name for a in folder.poll()] == (["a.png"] if meanwhile == "replaced" else [])


def test_a_read_file_taken_away_before_its_put_aside_with_no_sink_taking_refusals_leaves_nothing_unfiled(
    tmp_path: Path,
) -> None:
    """Sidecar mode, a file read and refused, then taken away before it was put aside, while no sink takes
    refusals: nothing of it is anywhere (:class:`NotPutAside`), so its intake row is not left unfiled for the
    rest of the run, where it would take a later file of its name and content for itself (counted zero times)."""
    import hashlib

    from eagle_iad.station.parts import Options
    from eagle_iad.station.sources.folder import HotFolder

    incoming = tmp_path / "incoming"
    incoming.mkdir()
    image = incoming / "current.png"
    image.write_bytes(b"")
    folder = HotFolder(Options({"path": "incoming", "after": "sidecar", "settle_s": 0}, "source", tmp_path))
    (arrival,) = folder.poll()
    image.unlink()
    lines: list[str] = []
    runner = _bare_runner(tmp_path, folder, lines)
    runner.couriers = []
    digest = hashlib.sha256(b"").hexdigest()
    assert runner._refuse_or_pause(arrival, digest, "current.png: empty file")
    assert runner.tables.store.read("SELECT files, unfiled FROM station_intake WHERE digest = ?", (digest,)) == [(1, 0)]
    assert runner.tables.unfiled("line-1") == []


def test_a_size_that_never_matches_the_bytes_read_is_read_once_not_left_for_every_poll(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Some FUSE file systems report a size other than the bytes a read gives, and keep it: the file does not
    change while read, so it is not "still being written" (it would be left, and said, at every poll, and
    --until-idle never end): the bytes read are inspected (here: refused) once."""

    from eagle_iad.errors import EagleError
    from eagle_iad.station import runner as runner_module
    from eagle_iad.station.parts import Options
    from eagle_iad.station.sources.folder import HotFolder

    class Short:
        def __init__(self, handle: Any) -> None:
            self.handle = handle

        def __enter__(self) -> Short:
            return self

        def __exit__(self, *exc: Any) -> None:
            self.handle.close()

        def fileno(self) -> int:
            return int(self.handle.fileno())

        def read(self, size: int = -1) -> bytes:  # the station reads at most its byte limit (+1)
            return bytes(self.handle.read(size))[:-5]

    real_open = runner_module._open_image
    monkeypatch.setattr(runner_module, "_open_image", lambda path: Short(real_open(path)))
    inspected: list[bytes] = []

    def inspect(state: Any, category: str, data: bytes, *args: Any, **kwargs: Any) -> Any:
        inspected.append(data)
        raise EagleError("not an image")

    monkeypatch.setattr(runner_module, "run_inspection", inspect)
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    (incoming / "a.png").write_bytes(b"x" * 100)
    folder = HotFolder(Options({"path": "incoming", "settle_s": 0}, "source", tmp_path))
    folder.dedupe = False
    lines: list[str] = []
    runner = _bare_runner(tmp_path, folder, lines)
    (arrival,) = folder.poll()
    assert runner._take(arrival) and inspected == [b"x" * 95]
    assert lines == ["eagle station line-1: a.png: not inspected: not an image"], lines
    assert list(folder.poll()) == [] and (incoming / "failed" / "a.png").exists()


def _runner(tmp_path: Path, models: Path, sinks: str = "", source: str = "") -> tuple[Any, Any, list[str]]:
    """One station of a stations file run in this process, step by step: its runner, its service state, its log."""
    from eagle_iad.service.context import ServiceState
    from eagle_iad.station.runner import StationRunner

    # A webhook no one listens on (port 1), its secret_env dropped: this process's environment has no secret.
    webhook = _webhook(1).replace('secret_env = "EAGLE_TEST_SECRET"\n', "")
    stations = read_stations(_stations(tmp_path, models, sinks or webhook, source))
    stations.make_folders()
    state = ServiceState(stations.settings(), backend=None)
    lines: list[str] = []
    return StationRunner(stations.stations[0], state, lines.append), state, lines


def _taken_meanwhile_then_not_stored(runner: Any, monkeypatch: pytest.MonkeyPatch, error: str) -> None:
    """The image's planned place taken by another file during its inspection (so it goes to ``-1``), then the
    history refusing to store where it went with ``error``."""
    import sqlite3

    finish = runner.config.source.finish

    def taken_meanwhile(arrival: Any, to: Path, record: Any) -> Any:
        to.write_bytes(b"another file")
        return finish(arrival, to, record)

    def refused(*args: Any, **kwargs: Any) -> None:
        raise sqlite3.OperationalError(error)

    monkeypatch.setattr(runner.config.source, "finish", taken_meanwhile)
    monkeypatch.setattr(runner.tables, "filed", refused)


def _outbox(state: Any) -> list[tuple[dict[str, Any], float]]:
    return [(json.loads(payload), float(next_try)) for payload, next_try in
            state.store.read("SELECT payload, next_try FROM outbox ORDER BY seq")]  # fmt: skip


def test_a_place_the_history_could_not_store_is_stored_first_and_never_released_as_planned(
    model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The image went to ``done/<name>-1`` (its planned name taken meanwhile), then the history refused to store
    that (the database locked): the intake pauses saying so, its outbox rows stay held while the folder is empty
    (released, they would name ``done/<name>``, where the image is not), and once the history takes it again the
    place is stored first: the rows and the intake say ``-1``, and nothing is "never filed"."""

    from eagle_iad.station.outbox import HELD
    from eagle_iad.station.status import owed_file

    incoming = tmp_path / "incoming"
    (name,) = _drop(incoming, _cells(1))
    runner, state, lines = _runner(tmp_path, model_dir)
    kept = owed_file(tmp_path / "state", "line-1")
    stem, suffix = os.path.splitext(name)
    (incoming / "done").mkdir()
    _taken_meanwhile_then_not_stored(runner, monkeypatch, "database is locked")
    runner.step()  # the first look only starts the file's settling time
    time.sleep(0.3)
    runner.step()
    record_id = runner.state.store.read("SELECT record_id FROM station_intake")[0][0]
    assert runner.paused == (f"record {record_id} was put at {incoming / 'done' / f'{stem}-1{suffix}'}, but the "
                             "history could not store that: OperationalError: database is locked"), lines  # fmt: skip
    assert not (incoming / name).exists() and [r[1] for r in _outbox(state)] == [HELD]
    runner._paused_until = 0.0
    runner.step()  # still refused: nothing is released although the folder is empty
    assert [r[1] for r in _outbox(state)] == [HELD] and runner.paused is not None
    assert json.loads(kept.read_text())["at"] == str(incoming / "done" / f"{stem}-1{suffix}")
    monkeypatch.undo()
    runner._paused_until = 0.0
    runner.step()
    filed = str(incoming / "done" / f"{stem}-1{suffix}")
    assert [(r[0]["image"], r[1]) for r in _outbox(state)] == [(filed, 0.0)], lines
    assert state.store.read("SELECT moved_to FROM station_intake")[0][0] == filed
    assert runner.paused is None and lines[-1].endswith("intake resumed"), lines
    assert not any("never filed" in line for line in lines), lines
    assert not kept.exists()
    state.close()


def test_a_station_that_lost_its_lock_neither_resumes_nor_releases_the_shared_outbox_on_an_empty_folder(
    model_dir: Path, tmp_path: Path
) -> None:
    """The lock lost and no image waiting: the station stays waiting (lock lost), says nothing resumed, and leaves
    the held rows of the station alone (in a shared outbox they may be the new holder's, filing its image now)."""
    from eagle_iad.station.outbox import HELD, PENDING
    from eagle_iad.station.runner import LOST_LOCK

    incoming = tmp_path / "incoming"
    (name,) = _drop(incoming, _cells(1))
    runner, state, lines = _runner(tmp_path, model_dir)
    runner._unfiled = False
    runner.owns = lambda: False
    runner.step()  # the first look only starts the file's settling time
    time.sleep(0.3)
    runner.step()
    assert runner.paused == LOST_LOCK and (incoming / name).exists()
    (incoming / name).unlink()  # taken by the replica holding the lock, which files it now
    with state.store.transaction() as db:
        db.execute("INSERT INTO outbox (station, sink, record_id, payload, state, next_try) VALUES (?, ?, ?, ?, ?, ?)",
                   ("line-1", "webhook", "r1", json.dumps({"image": "planned"}), PENDING, HELD))  # fmt: skip
    for _ in range(2):
        runner._paused_until = 0.0
        runner.step()
        assert runner.paused == LOST_LOCK and runner.intake().state() != "running"
    assert [r[1] for r in _outbox(state)] == [HELD]
    assert not any("resumed" in line or "never filed" in line for line in lines), lines
    state.close()


def test_a_held_delivery_of_an_image_taken_away_is_released_while_other_images_still_wait(
    model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stored, then not filed (a crash), and the image taken away: its held deliveries go with the planned place
    after the next full poll, one line naming the record, although the folder is never empty (another image
    being written keeps a backlog); before, they waited for an empty folder, and the sink's queue with them."""
    incoming = tmp_path / "incoming"
    (name,) = _drop(incoming, _cells(1))
    runner, state, lines = _runner(tmp_path, model_dir)
    monkeypatch.setattr(runner, "_put_away", lambda *args, **kwargs: False)  # killed before filing
    runner.step()
    time.sleep(0.3)
    runner.step()
    monkeypatch.undo()
    assert [r[1] for r in _outbox(state)] != [0.0] and len(_outbox(state)) == 1
    state.close()
    (incoming / name).unlink()
    (incoming / "growing.png").write_bytes(b"not complete yet")  # never settles: the backlog stays 1
    again, state, lines = _runner(tmp_path, model_dir)  # the restart
    again.step()
    assert again.config.source.backlog() == 1
    record_id = state.store.read("SELECT record_id FROM station_intake")[0][0]
    assert [(r[0]["image"], r[1]) for r in _outbox(state)] == [(str(incoming / "done" / name), 0.0)], lines
    assert f"record {record_id}: image never filed (gone from the source); 1 deliveries go with the place " \
           f"planned for it, {incoming / 'done' / name}" in "\n".join(lines), lines  # fmt: skip
    state.close()


def test_an_image_put_away_under_another_name_before_a_crash_is_delivered_from_there_after_the_restart(
    model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Moved to ``done/<name>-1`` (its planned name taken meanwhile), then the process ended before the history
    stored that, and before the place could be kept in its file (a kill, the state folder full): the restart finds
    the image there by its content and delivers that place, not the planned one."""
    from eagle_iad.station.status import owed_file

    incoming = tmp_path / "incoming"
    (name,) = _drop(incoming, _cells(1))
    runner, state, _ = _runner(tmp_path, model_dir)
    (incoming / "done").mkdir()
    _taken_meanwhile_then_not_stored(runner, monkeypatch, "disk I/O error")
    runner.step()
    time.sleep(0.3)
    runner.step()
    monkeypatch.undo()
    state.close()  # the process ends with the place owed
    owed_file(tmp_path / "state", "line-1").unlink()  # as if killed before it was kept
    again, state, lines = _runner(tmp_path, model_dir)
    again.step()
    stem, suffix = os.path.splitext(name)
    filed = str(incoming / "done" / f"{stem}-1{suffix}")
    assert [(r[0]["image"], r[1]) for r in _outbox(state)] == [(filed, 0.0)], lines
    assert state.store.read("SELECT moved_to FROM station_intake")[0][0] == filed
    assert any(f"its image was found put away at {filed}; delivered from there" in line for line in lines), lines
    state.close()


def test_an_owed_place_out_of_date_at_the_start_is_dropped_not_stored_over_a_newer_one(
    model_dir: Path, tmp_path: Path
) -> None:
    """An owed filing left by an earlier run (``<state>/stations/owed/<station>.json``) is applied at the start
    only while the history still holds the record's deliveries or still says the place planned for it. A file
    older than what the history says since (another run found the image and filed it, it moved on) is dropped in
    one line: the newer place stays, and the deliveries name it."""
    from eagle_iad.station.status import owed_file

    incoming = tmp_path / "incoming"
    (name,) = _drop(incoming, _cells(1))
    runner, state, _ = _runner(tmp_path, model_dir)
    runner.step()
    time.sleep(0.3)
    runner.step()
    ((record_id, digest, planned),) = state.store.read("SELECT record_id, digest, moved_to FROM station_intake")
    assert planned == str(incoming / "done" / name) and [r[1] for r in _outbox(state)] == [0.0]
    newer = str(incoming / "done" / "moved-on.png")
    with state.store.transaction() as db:  # filed since by another run, elsewhere
        db.execute("UPDATE station_intake SET moved_to = ?", (newer,))
    stale = str(incoming / "done" / "old-place.png")
    kept = owed_file(tmp_path / "state", "line-1")
    kept.parent.mkdir(parents=True, exist_ok=True)
    kept.write_text(json.dumps({"station": "line-1", "digest": digest, "record_id": record_id, "at": stale,
                                "first": True, "planned": planned}))  # fmt: skip
    state.close()
    again, state, lines = _runner(tmp_path, model_dir)
    again.start()
    try:
        again.step()
        assert state.store.read("SELECT moved_to FROM station_intake")[0][0] == newer, lines
        assert [r[0]["image"] for r in _outbox(state)] == [planned]
        assert not kept.exists()
        assert (f"eagle station line-1: record {record_id}: the place of its image kept since an earlier run "
                f"({stale}) is out of date (the history says {newer}, and holds none of its deliveries); "
                "dropped") in lines, lines  # fmt: skip
    finally:
        again.stop(1.0)
        state.close()


def test_an_owed_filing_is_written_durably_its_folder_synced_after_the_rename(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The owed file is what a restart needs when the history refused the place: its folder is fsynced after the
    atomic rename, so a power loss right after cannot lose its name."""
    import eagle_iad.atomic as atomic
    from eagle_iad.station.status import OwedFiling, owed_file, read_owed, write_owed

    synced: list[Path] = []
    monkeypatch.setattr(atomic, "sync_folder", synced.append)
    owed = OwedFiling("ab" * 32, "r1", "done/x-1.png", True, "done/x.png")
    write_owed(tmp_path, "line-1", owed)
    assert synced == [owed_file(tmp_path, "line-1").parent]
    assert read_owed(tmp_path, "line-1") == owed


@pytest.mark.parametrize("code", ["EINVAL", "ENOTSUP", "EBADF"])
def test_an_owed_filing_on_a_file_system_that_cannot_sync_a_folder_is_kept_not_reported_lost(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: str
) -> None:
    """CIFS and some FUSE file systems refuse a folder's fsync (EINVAL, ENOTSUP, EBADF) after the rename is done:
    the owed file is in place, so that is no failed write (earlier: every retry wrote it again and logged that it
    "could not be kept"). Any other error of the folder's fsync (EIO) still is one."""
    import errno

    from eagle_iad.station.status import OwedFiling, read_owed, write_owed

    real = os.fsync
    raised: list[int] = []
    failure = [getattr(errno, code)]

    def fsync(fd: int) -> None:
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            raised.append(failure[0])
            raise OSError(failure[0], os.strerror(failure[0]))
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    owed = OwedFiling("ab" * 32, "r1", "done/x-1.png", True, "done/x.png")
    write_owed(tmp_path, "line-1", owed)
    assert raised == [getattr(errno, code)] and read_owed(tmp_path, "line-1") == owed
    failure[0] = errno.EIO
    with pytest.raises(OSError) as caught:
        write_owed(tmp_path, "line-1", owed)
    assert caught.value.errno == errno.EIO


def _refuse_filings(work: Path, refused: bool) -> None:
    """Make the history itself refuse (or take again) the write that stores where an image was filed: a trigger
    aborting any change of ``station_intake.moved_to``, as a database would refuse it (locked, full, read-only)."""
    import sqlite3

    db = sqlite3.connect(work / "state" / "eagle.sqlite3")
    try:
        with db:
            db.execute("CREATE TRIGGER refuse_filing BEFORE UPDATE OF moved_to ON station_intake BEGIN "
                       "SELECT RAISE(ABORT, 'filing refused'); END" if refused else
                       "DROP TRIGGER refuse_filing")  # fmt: skip
    finally:
        db.close()


def test_a_place_the_history_refused_survives_a_stop_and_the_next_run_stores_it_exactly(
    model_dir: Path, tmp_path: Path, receiver: Receiver
) -> None:
    """``eagle station run`` puts an image at ``done/<name>-1`` (its planned name taken meanwhile) and the history
    refuses to store that place; the station is stopped while the place is owed. The place was kept in
    ``<state>/stations/owed/line-1.json``: the next run stores that exact place first (one line saying so), with
    no search by content, the webhook gets the verdict with that place, and the file is gone."""
    from eagle_iad.station.status import owed_file

    incoming = tmp_path / "incoming"
    incoming.mkdir()
    stations = _stations(tmp_path, model_dir, _webhook(receiver.port))
    code, log = _run(stations, "run", "--until-idle")  # the history made: nothing to inspect yet
    assert code == 0, log
    _refuse_filings(tmp_path, True)
    (name,) = _drop(incoming, _cells(1))
    stem, suffix = os.path.splitext(name)
    filed = incoming / "done" / f"{stem}-1{suffix}"
    kept = owed_file(tmp_path / "state", "line-1")
    running = Running(stations, env=_during(tmp_path, "occupy", incoming / "done" / name))
    try:
        running.until(lambda: running.saw("but the history could not store that"), "the place refused")
        owed = json.loads(kept.read_text()) if kept.exists() else None
        time.sleep(1.5)  # a courier looks at its queue at least once a second: the held delivery is not sent
    finally:
        code = running.stop()
    assert code == 143, running.log()
    (record,) = _history(tmp_path)
    assert filed.exists() and not (incoming / name).exists() and receiver.received == [], running.log()
    _refuse_filings(tmp_path, False)
    code, log = _run(stations, "run", "--until-idle", env=_during(tmp_path, "say-searches"))
    assert code == 0, log
    assert (f"eagle station line-1: record {record.id}: the place of its image, owed to the history since an "
            f"earlier run, is stored: {filed}; delivered from there") in log, log  # fmt: skip
    assert "looked for by its content" not in log and "found put away" not in log, log
    assert [(r["key"], r["body"]["image"]) for r in receiver.received] == [(record.id, str(filed))], log
    assert owed == {"station": "line-1", "digest": record.image_sha256, "record_id": record.id, "at": str(filed),
                    "first": True, "planned": str(incoming / "done" / name)}, running.log()  # fmt: skip
    assert not kept.exists()
    assert _status(stations)["sinks"]["webhook"]["delivered"] == 1


def test_sidecar_mode_delivers_once_the_sidecar_is_written(
    model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Sidecar mode holds the verdict's deliveries until ``<image>.eagle.json`` is written, as a move does until the
    image is in ``done/``: a sidecar that cannot be written (the disk full) pauses the intake with nothing due, and
    the next try writes it, then makes them due with the image's own place. A camera's frame, for which nothing is
    written, is due at once."""
    import errno

    import eagle_iad.station.sources.folder as folder_module
    from eagle_iad.station.outbox import HELD
    from eagle_iad.station.sources.camera import Camera

    assert Camera.moves_files is False
    incoming = tmp_path / "incoming"
    (name,) = _drop(incoming, _cells(1))
    runner, state, lines = _runner(tmp_path, model_dir, source=', after = "sidecar"')
    runner.config.source.settle_s = 0.0  # taken at the first look

    def full(*args: Any, **kwargs: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr(folder_module, "atomic_write_text", full)
        runner.step()
    assert runner.paused == f"{name}: inspected, but it could not be put away: No space left on device", lines
    assert [r[1] for r in _outbox(state)] == [HELD] and not (incoming / f"{name}.eagle.json").exists()
    runner._paused_until = 0.0
    runner.step()  # the same content again: only its sidecar is written, then its deliveries are due
    assert (incoming / f"{name}.eagle.json").exists() and runner.paused is None, lines
    assert [(r[0]["image"], r[1]) for r in _outbox(state)] == [(str(incoming / name), 0.0)], lines
    state.close()


def test_sidecar_mode_a_kill_after_the_sidecar_delivers_from_the_image_s_place_after_the_restart(
    model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sidecar written, then the process ended before its deliveries were made due: the restart finds the image
    marked by its sidecar (not taken again) and delivers its place; one without its sidecar is taken again."""
    from eagle_iad.station.outbox import HELD

    incoming = tmp_path / "incoming"
    (name,) = _drop(incoming, _cells(1))
    runner, state, _ = _runner(tmp_path, model_dir, source=', after = "sidecar"')
    runner.config.source.settle_s = 0.0
    finish = runner.config.source.finish

    def killed(arrival: Any, to: Path, record: Any, *args: Any, **kwargs: Any) -> bool:
        finish(arrival, to, record)
        return False

    with monkeypatch.context() as patch:
        patch.setattr(runner, "_put_away", killed)
        runner.step()
    assert [r[1] for r in _outbox(state)] == [HELD] and (incoming / f"{name}.eagle.json").exists()
    state.close()
    again, state, lines = _runner(tmp_path, model_dir, source=', after = "sidecar"')
    again.step()
    assert [(r[0]["image"], r[1]) for r in _outbox(state)] == [(str(incoming / name), 0.0)], lines
    assert any(f"its image was found put away at {incoming / name}; delivered from there" in line
               for line in lines), lines  # fmt: skip
    assert len(state.store.read("SELECT id FROM inspections")) == 1
    state.close()


def test_sidecar_mode_a_refused_image_replaced_meanwhile_is_found_in_failed_after_a_kill(
    model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Sidecar mode keeps the bytes of a refused image replaced while it was refused in ``failed/`` (a verdict's in
    ``done/``); killed before that place was stored, the restart looks for them there, and delivers the refusal
    from ``failed/``, not from the image's own place, which holds the next file by then."""
    from eagle_iad.station.outbox import HELD

    incoming = tmp_path / "incoming"
    incoming.mkdir()
    (incoming / "a.png").write_bytes(b"not an image")
    runner, state, _ = _runner(tmp_path, model_dir, source=', after = "sidecar"')
    runner.config.source.settle_s = 0.0  # taken, and refused, at the first look
    refuse = runner.config.source.refuse

    def replaced_then_killed(arrival: Any, reason: str) -> Any:
        (incoming / "a.png").write_bytes(b"not an image either: the next part")  # replaced while refused
        refuse(arrival, reason)
        raise OSError("killed before its place was stored")

    with monkeypatch.context() as patch:
        patch.setattr(runner.config.source, "refuse", replaced_then_killed)
        runner.step()
    kept = incoming / "failed" / "a.png"
    assert kept.read_bytes() == b"not an image" and [r[1] for r in _outbox(state)] == [HELD]
    state.close()
    again, state, lines = _runner(tmp_path, model_dir, source=', after = "sidecar"')
    again.step()
    first = _outbox(state)[0]
    assert (first[0]["image"], first[0]["refused"]["image_sha256"], first[1]) == (
        str(kept), hashlib.sha256(b"not an image").hexdigest(), 0.0), lines  # fmt: skip
    assert any(f"its image was found put away at {kept}; delivered from there" in line for line in lines), lines
    state.close()


def _held_and_not_filed(
    tmp_path: Path, models: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[Any, Any, list[str], str]:
    """One image inspected and stored, then the process "killed" before it was filed: its deliveries held."""
    from eagle_iad.station.outbox import HELD

    (name,) = _drop(tmp_path / "incoming", _cells(1))
    runner, state, lines = _runner(tmp_path, models)
    runner.config.source.settle_s = 0.0  # taken at the first look
    with monkeypatch.context() as patch:
        patch.setattr(runner, "_put_away", lambda *args, **kwargs: False)
        runner.step()
    assert [r[1] for r in _outbox(state)] == [HELD]
    return runner, state, lines, name


def test_a_hot_folder_that_cannot_be_looked_at_says_unknown_not_that_the_image_is_not_there(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only ENOENT and ENOTDIR say an image is not there: a read or listing that fails otherwise (EACCES, EIO,
    ESTALE) raises, and so does a look into a folder that is itself gone (an unmounted folder is not empty)."""
    import errno

    import eagle_iad.station.sources.folder as folder_module
    from eagle_iad.station.parts import Options
    from eagle_iad.station.sources.folder import HotFolder

    incoming, data = tmp_path / "incoming", b"the image's bytes"
    (incoming / "done").mkdir(parents=True)
    folder = HotFolder(Options({"path": "incoming"}, "source", tmp_path))
    digest, planned = hashlib.sha256(data).hexdigest(), incoming / "done" / "a.png"
    (incoming / "a.png").write_bytes(data)
    assert folder.waiting("a.png", digest) and folder.filed_at("a.png", digest, planned) is None
    opened = folder_module.open_regular

    def failing(path: Path) -> Any:
        raise OSError(errno.EIO, "Input/output error", str(path))

    with monkeypatch.context() as patch:
        patch.setattr(folder_module, "open_regular", failing)
        with pytest.raises(OSError, match="Input/output error"):
            folder.waiting("a.png", digest)
        with pytest.raises(OSError, match="Input/output error"):
            folder.filed_at("a.png", digest, planned)
    (incoming / "a.png").rename(incoming / "done" / "a-1.png")
    assert not folder.waiting("a.png", digest)
    assert folder.filed_at("a.png", digest, planned) == incoming / "done" / "a-1.png"
    scandir = os.scandir

    def stale(path: Any) -> Any:
        if Path(path) == incoming / "done":
            raise OSError(errno.ESTALE, "Stale file handle", str(path))
        return scandir(path)

    with monkeypatch.context() as patch:
        patch.setattr(folder_module.os, "scandir", stale)
        with pytest.raises(OSError, match="Stale file handle"):
            folder.filed_at("a.png", digest, planned)
    assert opened is folder_module.open_regular
    (incoming / "done" / "a-1.png").unlink()
    assert not folder.waiting("a.png", digest) and folder.filed_at("a.png", digest, planned) is None
    incoming.rename(tmp_path / "unmounted")
    with pytest.raises(FileNotFoundError):
        folder.waiting("a.png", digest)
    with pytest.raises(FileNotFoundError):
        folder.filed_at("a.png", digest, planned)


def test_a_long_name_refused_under_a_taken_name_is_looked_for_under_the_name_it_went_to(tmp_path: Path) -> None:
    """A 255-byte name goes to ``failed/`` cut short enough for its ``.reason.txt``, and to its ``-1`` there when
    that is taken meanwhile; :meth:`HotFolder.filed_at` looks for it with the same reserve (one, declared once:
    :func:`reserve_in`), so a restart finds it where it went rather than sending the planned place."""
    from eagle_iad.naming import NAME_MAX
    from eagle_iad.station.parts import Options
    from eagle_iad.station.sources.folder import HotFolder

    incoming, data = tmp_path / "incoming", b"not an image"
    incoming.mkdir()
    name = "a" * (NAME_MAX - 4) + ".png"
    (incoming / name).write_bytes(data)
    folder = HotFolder(Options({"path": "incoming", "settle_s": 0}, "source", tmp_path))
    (arrival,) = folder.poll()
    arrival = dataclasses.replace(arrival, data=data)
    planned = folder.planned_refusal(arrival)
    planned.parent.mkdir()
    planned.write_bytes(b"another refused file, meanwhile")
    went = folder.refuse(arrival, "not an image")
    assert went is not None and went != planned and went.with_name(went.name + ".reason.txt").exists()
    assert all(len(p.name.encode()) <= NAME_MAX for p in planned.parent.iterdir())
    assert folder.filed_at(name, hashlib.sha256(data).hexdigest(), planned) == went


def test_deliveries_held_for_an_image_that_cannot_be_looked_at_stay_held_not_released_as_never_filed(
    model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Killed after moving the image to ``done/<name>-1`` and before storing that; at the restart ``done/`` reads
    fail (EIO): the deliveries stay held (one line saying why, not one per poll), nothing says "never filed", and
    once ``done/`` reads again they go with the place the image is at."""
    import errno

    import eagle_iad.station.sources.folder as folder_module
    from eagle_iad.station.outbox import HELD

    runner, state, lines, name = _held_and_not_filed(tmp_path, model_dir, monkeypatch)
    done = tmp_path / "incoming" / "done"
    done.mkdir()
    stem, suffix = os.path.splitext(name)
    filed = done / f"{stem}-1{suffix}"
    (tmp_path / "incoming" / name).rename(filed)
    opened = folder_module.open_regular

    def failing(path: Path) -> Any:
        if Path(path).parent == done:
            raise OSError(errno.EIO, "Input/output error", str(path))
        return opened(path)

    with monkeypatch.context() as patch:
        patch.setattr(folder_module, "open_regular", failing)
        for _ in range(3):
            runner.step()
            assert [r[1] for r in _outbox(state)] == [HELD] and runner._unfiled, lines
    assert not any("never filed" in line for line in lines), lines
    record_id = state.store.read("SELECT record_id FROM station_intake")[0][0]
    said = f"record {record_id}: cannot tell where its image is (Input/output error: {done / name})"
    assert sum(said in line for line in lines) == 1, lines
    runner.step()
    assert [(r[0]["image"], r[1]) for r in _outbox(state)] == [(str(filed), 0.0)], lines
    assert not runner._unfiled and not any("never filed" in line for line in lines), lines
    state.close()


def test_deliveries_held_for_images_of_an_unmounted_folder_stay_held(
    model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The hot folder gone (unmounted) with a verdict's deliveries held: they stay held (its image may be in the
    folder, or in its done/, once it is back), and go once the folder is back and the image found."""
    from eagle_iad.station.outbox import HELD

    runner, state, lines, name = _held_and_not_filed(tmp_path, model_dir, monkeypatch)
    incoming = tmp_path / "incoming"
    (incoming / "done").mkdir()
    (incoming / name).rename(incoming / "done" / name)
    incoming.rename(tmp_path / "unmounted")
    for _ in range(2):
        runner._paused_until = 0.0
        runner.step()
        assert runner.paused is not None and runner.paused.startswith("images cannot be listed"), lines
        assert [r[1] for r in _outbox(state)] == [HELD], lines
    assert not any("never filed" in line for line in lines), lines
    (tmp_path / "unmounted").rename(incoming)
    runner._paused_until = 0.0
    runner.step()
    assert [(r[0]["image"], r[1]) for r in _outbox(state)] == [(str(incoming / "done" / name), 0.0)], lines
    assert runner.paused is None and lines[-1].endswith("intake resumed"), lines
    state.close()


@pytest.mark.parametrize("refusing", ["held", "release_held"])
def test_a_history_refusing_the_look_at_held_deliveries_pauses_the_intake_and_keeps_them_held(
    model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, refusing: str
) -> None:
    """The image taken away before it was filed, and the history locked when the held deliveries are looked at:
    the intake pauses naming the error (no exception out of the step: the station would show it as a plugin's
    bug, after a line saying the intake resumed), the deliveries stay held, and the next try releases them."""
    import sqlite3

    from eagle_iad.station.outbox import HELD

    runner, state, lines, name = _held_and_not_filed(tmp_path, model_dir, monkeypatch)
    (tmp_path / "incoming" / name).unlink()

    def locked(*args: Any, **kwargs: Any) -> Any:
        raise sqlite3.OperationalError("database is locked")

    with monkeypatch.context() as patch:
        patch.setattr(runner.tables, refusing, locked)
        assert runner.step() == 0
        assert runner.paused == ("the deliveries held for images not filed yet could not be looked at: "
                                 "OperationalError: database is locked"), lines  # fmt: skip
        assert [r[1] for r in _outbox(state)] == [HELD] and runner._unfiled, lines
    assert not any("resumed" in line for line in lines), lines
    runner._paused_until = 0.0
    runner.step()
    assert [(r[0]["image"], r[1]) for r in _outbox(state)] == [(str(tmp_path / "incoming" / "done" / name), 0.0)]
    assert not runner._unfiled and runner.paused is None and lines[-1].endswith("intake resumed"), lines
    state.close()


def test_a_station_that_lost_its_lock_releases_nothing_when_its_folder_is_gone(model_dir: Path, tmp_path: Path) -> None:
    """The hot folder gone and the lock lost meanwhile: the release of held rows asks for the lock too, so a
    source whose planned place is final releases no held row (in a shared outbox, the new holder's)."""
    from eagle_iad.station.outbox import HELD, PENDING
    from eagle_iad.station.runner import LOST_LOCK

    (tmp_path / "incoming").mkdir()
    runner, state, lines = _runner(tmp_path, model_dir)
    runner.config.source.moves_files = False  # its held rows are an older run's: released as they are
    runner._unfiled = False
    runner.owns = lambda: False
    with state.store.transaction() as db:
        db.execute("INSERT INTO outbox (station, sink, record_id, payload, state, next_try) VALUES (?, ?, ?, ?, ?, ?)",
                   ("line-1", "webhook", "r1", json.dumps({"image": "planned"}), PENDING, HELD))  # fmt: skip
    (tmp_path / "incoming").rename(tmp_path / "unmounted")
    runner.step()
    assert runner.paused == LOST_LOCK and [r[1] for r in _outbox(state)] == [HELD], lines
    assert not any("filed where planned" in line for line in lines), lines
    state.close()


def test_the_state_file_is_written_one_snapshot_at_a_time_and_not_after_the_stop(
    model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The API's pause and the intake thread both write the station's state file: the one that builds its snapshot
    first writes it first (an older one never lands last), and a pause after the stop does not bring back the file
    the stop removed (``eagle station status`` would show a stopped station as paused)."""
    import eagle_iad.station.runner as runner_module
    from eagle_iad.station.status import intake_file, read_intake

    (tmp_path / "incoming").mkdir()
    runner, state, _ = _runner(tmp_path, model_dir)
    runner.start()
    path = intake_file(state.settings.state_dir, runner.config.name)
    write = runner_module.write_intake
    writing = threading.Event()

    def slow(state_dir: Path, station: str, intake: Any) -> None:
        if not writing.is_set():
            writing.set()
            time.sleep(0.5)  # the intake thread's snapshot, written late
        write(state_dir, station, intake)

    monkeypatch.setattr(runner_module, "write_intake", slow)
    thread = threading.Thread(target=runner._pause, args=("the disk is full",))
    thread.start()
    writing.wait(5)
    runner.set_user_paused(True)
    thread.join()
    said = read_intake(state.settings.state_dir, runner.config.name)
    assert said is not None and said.user_paused and said.paused == "the disk is full"
    runner.stop(1.0)
    assert not path.exists()
    runner.set_user_paused(False)
    runner._pause("another reason")
    assert not path.exists()
    state.close()


def test_with_the_hot_folder_gone_a_delivery_queued_behind_a_held_one_does_not_keep_until_idle_running(
    model_dir: Path, tmp_path: Path
) -> None:
    """A sink's rows go in order, so one due row behind a row held for an image not filed yet cannot go while the
    folder (where that image is) is gone: :meth:`idle` counts neither, says so once, and ``--until-idle`` ends;
    a due row ahead of the held one still keeps it running (it can go)."""
    from eagle_iad.station.outbox import HELD

    (tmp_path / "incoming").mkdir()
    runner, state, lines = _runner(tmp_path, model_dir)
    sink = runner.couriers[0].sink.sink.name
    (tmp_path / "incoming").rename(tmp_path / "unmounted")  # the folder gone

    def queue(record_id: str, next_try: float) -> None:
        with state.store.transaction() as db:
            db.execute("INSERT INTO outbox (station, sink, record_id, payload, state, next_try) VALUES (?, ?, ?, ?, "
                       "'pending', ?)", ("line-1", sink, record_id, "{}", next_try))  # fmt: skip

    queue("ahead", 0.0)
    queue("held", HELD)
    queue("behind", 0.0)
    assert runner.idle() is False  # "ahead" can go
    with state.store.transaction() as db:
        db.execute("DELETE FROM outbox WHERE record_id = 'ahead'")
    assert [runner.idle(), runner.idle()] == [True, True]
    line = (
        "eagle station line-1: 2 deliveries wait for images not filed yet and stay for the next run (the folder "
        "is gone)"
    )
    assert lines.count(line) == 1, lines
    state.close()


def _folder_station(work: Path, models: Path, name: str, folder: Path, source: str = "") -> Path:
    """A stations file in ``work`` (its own state folder) with one station ``name`` on ``folder``."""
    work.mkdir(parents=True, exist_ok=True)
    path = work / "stations.toml"
    path.write_text(f"""models = "{models}"
state = "state"

[[station]]
name = "{name}"
category = "mono"
source = {{ kind = "folder", path = "{folder}", settle_s = 0.2{source} }}
""")
    return path


def _holding(lock: Path, process: subprocess.Popen[str]) -> dict[str, Any]:
    """What the lock file says once ``process`` holds it (it started)."""
    deadline = time.monotonic() + wait_s(120)
    while True:
        assert process.poll() is None, process.communicate()
        try:
            said = json.loads(lock.read_text() or "null")
        except (OSError, ValueError):
            said = None
        if isinstance(said, dict) and said.get("pid") == process.pid:
            return said
        assert time.monotonic() < deadline, "the first station never locked its folder"
        time.sleep(0.1)


@pytest.mark.parametrize("after", ["move", "sidecar"])
def test_a_second_process_on_a_hot_folder_is_refused_naming_the_holder_and_starts_once_it_stopped(
    model_dir: Path, tmp_path: Path, after: str
) -> None:
    """Two ``eagle station run`` (own state folders, stations of other names) on one hot folder: the second is one
    line naming the folder and who holds it (pid, host, station, state folder), exit 2, and inspects nothing; the
    lock file is never taken for an image, and goes with the first's stop, after which the second runs."""
    incoming = tmp_path / "incoming"
    names = _drop(incoming, _cells(2))
    source = f', after = "{after}"'
    first = _folder_station(tmp_path / "a", model_dir, "line-a", incoming, source)
    second = _folder_station(tmp_path / "b", model_dir, "line-b", incoming, source)
    process = subprocess.Popen([sys.executable, "-m", "eagle_iad.cli", "station", "run", str(first)], cwd=first.parent,
                               env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    try:
        lock = incoming / ".eagle-station.lock"
        said = _holding(lock, process)
        state = tmp_path / "a" / "state"
        assert said == {"pid": process.pid, "host": socket.gethostname(), "station": "line-a", "state": str(state)}
        code, log = _run(second, "run", "--until-idle")
        assert (code, log) == (2, (
            f"eagle: error: station 'line-b': hot folder {incoming} is taken by another station (pid {process.pid} on "
            f"{socket.gethostname()}, station 'line-a', state folder {state}); two stations on one folder would each "
            "inspect every image: stop that one first, or give this station its own folder\n"))  # fmt: skip
        assert not (tmp_path / "b" / "state" / "eagle.sqlite3").exists() or _history(tmp_path / "b") == []
        deadline = time.monotonic() + wait_s(120)
        while len(_history(tmp_path / "a")) < 2:
            assert time.monotonic() < deadline and process.poll() is None, "the first station never inspected both"
            time.sleep(0.1)
    finally:
        process.send_signal(signal.SIGTERM)
        out, _ = process.communicate(timeout=wait_s(60))
    assert process.returncode == 143, out
    assert sorted(r.image_name for r in _history(tmp_path / "a")) == sorted(names)  # the lock file never taken
    assert not lock.exists()  # gone with its holder's stop
    code, log = _run(second, "run", "--until-idle")
    assert code == 0, log
    assert _history(tmp_path / "b") == []  # both inspected already (by the first): nothing left for the second


def test_a_hot_folder_made_again_is_locked_again_before_any_image_and_waits_while_another_holds_it(
    model_dir: Path, tmp_path: Path
) -> None:
    """The folder removed and made again under a running station: the lock file went with the old folder, so the
    station takes the lock on the new one before it takes an image there (a second ``eagle station run`` on it is
    refused, as on the first); a new folder another process locked first is not read: the intake waits, naming the
    holder, and takes its images once that one lets go."""
    from eagle_iad.station.sources.folder_lock import lock_folder
    from eagle_iad.station.status import read_intake

    incoming = tmp_path / "incoming"
    _drop(incoming, _cells(1))
    first = _folder_station(tmp_path / "a", model_dir, "line-a", incoming)
    second = _folder_station(tmp_path / "b", model_dir, "line-b", incoming)
    station = Running(first)
    lock = incoming / ".eagle-station.lock"

    def fresh(name: str, cell: int) -> None:
        shutil.copyfile(_cells(cell + 1)[cell], incoming / name)
        os.utime(incoming / name, (time.time() - 10, time.time() - 10))

    try:
        station.until(lambda: len(_history(tmp_path / "a")) == 1, "the first image never inspected")
        incoming.rename(tmp_path / "gone-1")
        incoming.mkdir()
        station.until(lambda: station.saw("its lock taken again"), "the new folder never locked")
        assert json.loads(lock.read_text())["pid"] == station.process.pid
        code, log = _run(second, "run", "--until-idle")
        assert code == 2 and f"hot folder {incoming} is taken by another station (pid {station.process.pid}" in log, log
        fresh("after.png", 1)
        station.until(lambda: len(_history(tmp_path / "a")) == 2, "an image of the new folder never inspected")

        # again, and this time another process (this one) locked the new folder first: made and locked aside, then
        # put in its place
        spare = tmp_path / "spare"
        spare.mkdir()
        held = lock_folder(spare, "line-b", tmp_path / "b" / "state")
        try:
            incoming.rename(tmp_path / "gone-2")
            spare.rename(incoming)
            fresh("meanwhile.png", 2)
            station.until(lambda: station.saw("was replaced (removed and made again) and its lock is not this "
                                              "station's now"), "the holder never said")  # fmt: skip
            intake = read_intake(tmp_path / "a" / "state", "line-a")
            assert intake is not None and f"station 'line-b', state folder {tmp_path / 'b' / 'state'}" in (
                intake.paused or ""), intake  # fmt: skip
            time.sleep(wait_s(6))  # a retry more: still not taken
            assert (incoming / "meanwhile.png").exists() and len(_history(tmp_path / "a")) == 2, station.log()
        finally:
            held.release()
        station.until(lambda: len(_history(tmp_path / "a")) == 3, "the image never taken once the holder let go")
        station.until(lambda: json.loads(lock.read_text())["pid"] == station.process.pid, "the lock never taken")
        assert station.stop() == 143
    finally:
        station.process.kill()
    log = station.log()
    assert [r.image_name for r in _history(tmp_path / "a")][1:] == ["after.png", "meanwhile.png"], log
    assert log.count("its lock taken again") == 2 and log.count("its lock is not this station's now") == 1, log
    assert not lock.exists()  # gone with the stop, from the folder now there


# ---------------------------------------------------------------------------------------------- refusals delivered

BROKEN = b"not a png at all"


def _folder_sink(path: str = "sorted") -> str:
    return f'\n[[station.sink]]\nkind = "folder"\npath = "{path}"\n'


def _rows(work: Path, sql: str) -> list[tuple[Any, ...]]:
    import sqlite3

    db = sqlite3.connect(f"file:{work / 'state' / 'eagle.sqlite3'}?mode=ro", uri=True)
    try:
        return [tuple(row) for row in db.execute(sql)]
    finally:
        db.close()


def test_a_refused_image_reaches_every_sink_in_order_between_the_verdicts(
    model_dir: Path, tmp_path: Path, receiver: Receiver
) -> None:
    """A corrupt image dropped between the second and the third of four cells (refused at once: ``settle_s = 0``, a
    writer that renames complete files in): the webhook gets verdict, verdict, refusal, verdict, verdict, the
    refusal signed, keyed ``refused-<hex>``, with exactly its fields and no record; the folder sink files it under
    ``refused/`` with its JSON; the status counts it once (``failed``), and it is no verdict (``last_verdict``)."""
    incoming = tmp_path / "incoming"
    names = _drop(incoming, _cells(4))
    broken = incoming / "broken.png"
    broken.write_bytes(BROKEN)
    between = os.stat(incoming / names[1]).st_mtime_ns + 500_000  # the cells are 1 ms apart
    os.utime(broken, ns=(between, between))
    stations = _stations(tmp_path, model_dir, _webhook(receiver.port) + _folder_sink(), settle_s=0)
    code, log = _run(stations, "run", "--until-idle")
    assert code == 0, log
    history = _history(tmp_path)
    assert [r.image_name for r in history] == names
    keys = receiver.keys()
    assert len(keys) == 5 and keys[:2] + keys[3:] == [r.id for r in history], keys
    refusal = receiver.received[2]
    key, body = refusal["key"], refusal["body"]
    assert re.fullmatch(r"refused-[0-9a-f]{32}", key) and refusal["signed"]
    failed = incoming / "failed" / "broken.png"
    assert failed.read_bytes() == BROKEN
    reason = "broken.png: not a recognised image format"
    assert body == {
        "event": "refused", "station": "line-1", "image": str(failed), "source": str(broken),
        "refused": {"id": key, "category": "mono", "image_name": "broken.png",
                    "image_sha256": hashlib.sha256(BROKEN).hexdigest(), "reason": reason,
                    "time": body["refused"]["time"]},
    }  # fmt: skip
    refused_at = datetime.fromisoformat(body["refused"]["time"])
    assert datetime.fromisoformat(history[1].time) <= refused_at <= datetime.fromisoformat(history[2].time)
    assert f"eagle station line-1: broken.png: not inspected: {reason}" in log
    # the folder sink: the refused image and its refusal under refused/, nothing under a decision's folder
    copy = tmp_path / "sorted" / "refused" / f"{key}_broken.png"
    assert copy.read_bytes() == BROKEN
    assert json.loads((copy.parent / f"{copy.name}.json").read_text()) == body
    assert not any("broken" in p.name for p in (tmp_path / "sorted").glob("[!r]*/*"))
    # the intake row and each sink's row, stored together under the key; the place it went stored
    assert _rows(tmp_path, "SELECT name, record_id, reason, moved_to FROM station_intake WHERE state = 'failed'") == [
        ("broken.png", key, reason, str(failed))
    ]
    assert _rows(tmp_path, f"SELECT sink, state FROM outbox WHERE record_id = '{key}' ORDER BY seq") == [
        ("webhook", "delivered"), ("folder", "delivered")
    ]  # fmt: skip
    status = _status(stations)
    assert (status["inspected"], status["failed"], status["warnings"]) == (4, 1, [])
    assert status["last_verdict"]["record_id"] == history[-1].id
    assert status["sinks"]["webhook"]["delivered"] == 5 and status["sinks"]["folder"]["delivered"] == 5


def test_a_sink_with_refusals_false_is_sent_the_verdicts_only(
    model_dir: Path, tmp_path: Path, receiver: Receiver
) -> None:
    """``refusals = false`` (an option every sink takes): that sink's queue holds verdicts only; the others still get
    the refusal."""
    names = _drop(tmp_path / "incoming", _cells(2))
    (tmp_path / "incoming" / "broken.png").write_bytes(BROKEN)
    sinks = _webhook(receiver.port, refusals=False) + _folder_sink()
    code, log = _run(_stations(tmp_path, model_dir, sinks, settle_s=0), "run", "--until-idle")
    assert code == 0, log
    assert receiver.keys() == [r.id for r in _history(tmp_path)] and len(names) == 2
    (refused,) = _rows(tmp_path, "SELECT sink, record_id FROM outbox WHERE record_id LIKE 'refused-%'")
    assert refused[0] == "folder" and (tmp_path / "sorted" / "refused" / f"{refused[1]}_broken.png").exists()


def test_a_kill_between_storing_a_refusal_and_putting_the_image_aside_delivers_it_once(
    model_dir: Path, tmp_path: Path, receiver: Receiver
) -> None:
    """Killed right after the refusal's transaction: its intake row and each sink's row are there together, held
    (nothing sent: the image is still in the folder, not where a sink would be told it is). The restart refuses
    it again under the same key and delivers it once, from ``failed/``."""
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    broken = incoming / "broken.png"
    broken.write_bytes(BROKEN)
    stations = _stations(tmp_path, model_dir, _webhook(receiver.port) + _folder_sink(), settle_s=0)
    _kill_after_storing(stations, _env(), point="station refusal stored")
    ((key, planned),) = _rows(tmp_path, "SELECT record_id, moved_to FROM station_intake WHERE state = 'failed'")
    held = _rows(tmp_path, "SELECT sink, record_id, state, next_try FROM outbox ORDER BY seq")
    assert held == [("webhook", key, "pending", 1e18), ("folder", key, "pending", 1e18)]
    assert broken.exists() and planned == str(incoming / "failed" / "broken.png") and receiver.received == []
    code, log = _run(stations, "run", "--until-idle")
    assert code == 0, log
    assert receiver.keys() == [key], log
    assert receiver.received[0]["body"]["image"] == planned and Path(planned).read_bytes() == BROKEN
    assert len(_rows(tmp_path, "SELECT * FROM outbox")) == 2 and _status(stations)["failed"] == 1


def _refusal_killed_at(tmp_path: Path, model_dir: Path, verdicts_only: bool, point: str) -> tuple[Path, Path, Path]:
    """A station with no sink taking refusals (none at all, or a webhook with ``refusals = false``) killed at
    ``point`` while refusing ``incoming/broken.png``: (incoming, broken, the stations file)."""
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    broken = incoming / "broken.png"
    broken.write_bytes(BROKEN)
    sinks = _webhook(_free_port(), refusals=False) if verdicts_only else ""
    stations = _stations(tmp_path, model_dir, sinks, settle_s=0)
    _kill_after_storing(stations, _env(), point=point)
    return incoming, broken, stations


@pytest.mark.parametrize("verdicts_only", [False, True])
def test_a_kill_before_a_refusal_is_put_aside_with_no_sink_taking_refusals_counts_its_file_once(
    model_dir: Path, tmp_path: Path, verdicts_only: bool
) -> None:
    """No sink takes refusals (none at all, or one with ``refusals = false``): the refusal has no outbox rows to tell
    it by, and a kill between storing it and putting the file aside leaves the file in the folder. The restart
    refuses that very file again, so ``failed`` counts it once, not twice; a file of the same name and bytes that
    arrives after it was put aside is another file, counted."""
    incoming, broken, stations = _refusal_killed_at(tmp_path, model_dir, verdicts_only, "station refusal stored")
    assert broken.exists() and _rows(tmp_path, "SELECT state, files FROM station_intake") == [("failed", 1)]
    code, log = _run(stations, "run", "--until-idle")
    assert code == 0, log
    assert not broken.exists() and (incoming / "failed" / "broken.png").read_bytes() == BROKEN
    assert _status(stations)["failed"] == 1 and _rows(tmp_path, "SELECT * FROM outbox") == []
    broken.write_bytes(BROKEN)  # the camera writes the same bytes under the same name again: another file
    code, log = _run(stations, "run", "--until-idle")
    assert code == 0, log
    assert (incoming / "failed" / "broken-1.png").read_bytes() == BROKEN and _status(stations)["failed"] == 2


@pytest.mark.parametrize("sinks", [False, True], ids=["no-sink", "webhook"])
def test_a_kill_before_a_refusal_is_put_aside_then_its_content_under_another_name_counts_each_file_once(
    model_dir: Path, tmp_path: Path, receiver: Receiver, sinks: bool
) -> None:
    """Killed before ``broken.png``'s refusal put it aside; before the restart, the same bytes arrive as
    ``other.png``, older, so refused first. The intake has one row per content: ``other.png``'s refusal took it over,
    ``broken.png`` refused again then looked like a later file (a new key), and ``failed`` said 3 for 2 files (and,
    with a sink, ``broken.png`` was told twice: under its first key, released with the place it went, and anew).
    The row now keeps the refusal not put aside yet: each file counted once, each told once, ``broken.png`` under the
    key stored before the kill."""
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    broken, other = incoming / "broken.png", incoming / "other.png"
    broken.write_bytes(BROKEN)
    stations = _stations(tmp_path, model_dir, _webhook(receiver.port) if sinks else "", settle_s=0)
    _kill_after_storing(stations, _env(), point="station refusal stored")
    ((key, files),) = _rows(tmp_path, "SELECT record_id, files FROM station_intake")
    assert broken.exists() and files == 1 and receiver.received == []
    other.write_bytes(BROKEN)
    past = broken.stat().st_mtime - 5  # older: taken first at the restart
    os.utime(other, (past, past))
    code, log = _run(stations, "run", "--until-idle")
    assert code == 0, log
    failed = incoming / "failed"
    assert sorted(p.name for p in failed.glob("*.png")) == ["broken.png", "other.png"], log
    assert _status(stations)["failed"] == 2, log
    if sinks:
        told = {r["body"]["refused"]["image_name"]: (r["key"], r["body"]["image"]) for r in receiver.received}
        assert len(receiver.received) == 2 and set(told) == {"broken.png", "other.png"}, receiver.received
        assert told["broken.png"] == (key, str(failed / "broken.png")), log
        assert told["other.png"][1] == str(failed / "other.png") and told["other.png"][0] != key, log
    assert _rows(tmp_path, "SELECT unfiled FROM station_intake") == [(0,)]
    broken.write_bytes(BROKEN)  # the same bytes under the same name again, once it was put aside: another file
    code, log = _run(stations, "run", "--until-idle")
    assert code == 0, log
    assert (failed / "broken-1.png").read_bytes() == BROKEN and _status(stations)["failed"] == 3, log


@pytest.mark.parametrize("sinks", [False, True], ids=["no-sink", "webhook"])
def test_a_second_kill_before_the_other_files_refusal_is_put_aside_still_counts_and_tells_each_file_once(
    model_dir: Path, tmp_path: Path, receiver: Receiver, sinks: bool
) -> None:
    """As above, then killed again, before ``other.png``'s put-aside (counted in the row that tells ``broken.png``).
    Its own key was kept nowhere found by its name: refused again at the next restart, it took a new one, so
    ``failed`` said 3 for 2 files and, with a sink, ``other.png`` was told twice (its first rows released with
    ``image`` null as if a later file had taken them over). Its refusal is now kept by its name
    (``station_refusals``) until it is put aside: each file counted once and told once, each under the key stored
    before the kills."""
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    broken, other = incoming / "broken.png", incoming / "other.png"
    broken.write_bytes(BROKEN)
    stations = _stations(tmp_path, model_dir, _webhook(receiver.port) if sinks else "", settle_s=0)
    _kill_after_storing(stations, _env(), point="station refusal stored")
    ((first,),) = _rows(tmp_path, "SELECT record_id FROM station_intake")
    other.write_bytes(BROKEN)
    past = broken.stat().st_mtime - 5  # older: taken first at the restart
    os.utime(other, (past, past))
    _kill_after_storing(stations, _env(), point="station refusal stored")  # other.png's refusal, not put aside
    assert broken.exists() and other.exists() and receiver.received == []
    assert _rows(tmp_path, "SELECT name, record_id, files FROM station_intake") == [("broken.png", first, 2)]
    second = [key for (key,) in _rows(tmp_path, "SELECT DISTINCT record_id FROM outbox WHERE record_id <> "
                                             f"'{first}'")]  # fmt: skip
    assert second == ([] if not sinks else [second[0]])  # other.png's key, stored before the second kill
    code, log = _run(stations, "run", "--until-idle")
    assert code == 0, log
    failed = incoming / "failed"
    assert sorted(p.name for p in failed.glob("*.png")) == ["broken.png", "other.png"], log
    assert _status(stations)["failed"] == 2, log
    if sinks:
        told = sorted((r["body"]["refused"]["image_name"], r["key"], r["body"]["image"]) for r in receiver.received)
        assert told == [("broken.png", first, str(failed / "broken.png")),
                        ("other.png", second[0], str(failed / "other.png"))], log  # fmt: skip
    assert _rows(tmp_path, "SELECT unfiled FROM station_intake") == [(0,)]
    assert _rows(tmp_path, "SELECT * FROM station_refusals") == []  # put aside: nothing more to find it by
    other.write_bytes(BROKEN)  # the same bytes under the same name again, once it was put aside: another file
    code, log = _run(stations, "run", "--until-idle")
    assert code == 0, log
    assert (failed / "other-1.png").read_bytes() == BROKEN and _status(stations)["failed"] == 3, log


@pytest.mark.parametrize("verdicts_only", [False, True])
def test_a_kill_after_a_refusal_no_sink_takes_is_put_aside_files_it_at_the_restart_and_counts_a_later_file(
    model_dir: Path, tmp_path: Path, verdicts_only: bool
) -> None:
    """No sink takes refusals, and the station is killed after putting the refused file aside, before storing where
    it went: the intake row still says the file is not put aside, which would make every later file of that name and
    content this one (counted for none). The restart finds the file in ``failed/`` and stores that place, so a file
    of the same name and bytes that arrives later is another file, counted."""
    incoming, broken, stations = _refusal_killed_at(tmp_path, model_dir, verdicts_only, "station refusal put aside")
    failed = incoming / "failed" / "broken.png"
    assert not broken.exists() and failed.read_bytes() == BROKEN
    assert _rows(tmp_path, "SELECT unfiled, files FROM station_intake") == [(1, 1)]
    code, log = _run(stations, "run", "--until-idle")
    assert code == 0, log
    assert f"(broken.png): its file was found put aside at {failed}" in log, log
    assert _rows(tmp_path, "SELECT moved_to, unfiled, files FROM station_intake") == [(str(failed), 0, 1)]
    assert _status(stations)["failed"] == 1 and _rows(tmp_path, "SELECT * FROM outbox") == []
    broken.write_bytes(BROKEN)  # the camera writes the same bytes under the same name again: another file
    code, log = _run(stations, "run", "--until-idle")
    assert code == 0, log
    assert (incoming / "failed" / "broken-1.png").read_bytes() == BROKEN and _status(stations)["failed"] == 2


@pytest.mark.parametrize("then", ["removed", "replaced"])
def test_a_refusal_no_sink_takes_whose_file_is_gone_after_a_kill_before_its_put_aside_counts_a_later_file(
    model_dir: Path, tmp_path: Path, then: str
) -> None:
    """No sink takes refusals, the station is killed before putting the refused file aside, and the file is then
    removed, or replaced by other bytes, before the restart: nothing will ever put it aside. The restart says so
    and resolves its intake row (it keeps the place planned for it), so a later file of the same name and bytes is
    another file, counted, rather than taken for that one forever."""
    _, broken, stations = _refusal_killed_at(tmp_path, model_dir, False, "station refusal stored")
    assert broken.exists() and _rows(tmp_path, "SELECT unfiled, files FROM station_intake") == [(1, 1)]
    if then == "removed":
        broken.unlink()
    else:
        broken.write_bytes(BROKEN + b", other bytes")  # refused too: another file, counted
    code, log = _run(stations, "run", "--until-idle")
    assert code == 0, log
    assert "(broken.png): its file is no longer where it arrived, nor found put aside" in log, log
    before = 1 if then == "removed" else 2
    assert _status(stations)["failed"] == before
    assert not _rows(tmp_path, "SELECT * FROM station_intake WHERE unfiled = 1")
    broken.write_bytes(BROKEN)  # the same bytes under the same name again: another file
    code, log = _run(stations, "run", "--until-idle")
    assert code == 0, log
    assert _status(stations)["failed"] == before + 1, log


def test_the_place_of_a_refusal_no_sink_takes_refused_by_the_history_is_stored_by_the_next_run(
    model_dir: Path, tmp_path: Path
) -> None:
    """No sink takes refusals, so the refusal's intake row is ``unfiled`` until its place is stored (what tells a
    file refused again after a kill from a later one). The history refuses that place and the station is stopped: the
    next run stores the place kept in the owed file, not dropping it as out of date, and a later file of that name
    and content is another file, counted."""
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    stations = _stations(tmp_path, model_dir, "", settle_s=0)
    code, log = _run(stations, "run", "--until-idle")  # the history made: nothing to inspect yet
    assert code == 0, log
    _refuse_filings(tmp_path, True)
    (incoming / "broken.png").write_bytes(BROKEN)
    running = Running(stations)
    try:
        running.until(lambda: running.saw("but the history could not store that"), "the place refused")
    finally:
        code = running.stop()
    assert code == 143, running.log()
    _refuse_filings(tmp_path, False)
    code, log = _run(stations, "run", "--until-idle")
    assert code == 0, log
    failed = incoming / "failed" / "broken.png"
    assert f"owed to the history since an earlier run, is stored: {failed}" in log, log
    assert _rows(tmp_path, "SELECT moved_to, files FROM station_intake") == [(str(failed), 1)]
    (incoming / "broken.png").write_bytes(BROKEN)
    code, log = _run(stations, "run", "--until-idle")
    assert code == 0, log
    assert (incoming / "failed" / "broken-1.png").exists() and _status(stations)["failed"] == 2


def test_a_refusal_the_history_cannot_store_leaves_neither_its_intake_row_nor_its_deliveries(
    model_dir: Path, tmp_path: Path, receiver: Receiver
) -> None:
    """The outbox refusing the refusal's rows (a trigger, as a database refusing the write) rolls its intake row
    back too: no ``failed`` count, no delivery, and the image left in the folder with the intake paused, saying
    so; once the history takes it, the next try refuses it and delivers it."""
    import sqlite3

    incoming = tmp_path / "incoming"
    incoming.mkdir()
    stations = _stations(tmp_path, model_dir, _webhook(receiver.port), settle_s=0)
    code, log = _run(stations, "run", "--until-idle")  # the history made: nothing to inspect yet
    assert code == 0, log
    db = sqlite3.connect(tmp_path / "state" / "eagle.sqlite3")
    with db:
        db.execute("CREATE TRIGGER refuse_outbox BEFORE INSERT ON outbox BEGIN SELECT RAISE(ABORT, 'outbox full'); END")
    db.close()
    (incoming / "broken.png").write_bytes(BROKEN)
    running = Running(stations)
    try:
        running.until(lambda: running.saw("and the history could not store that"), "the refusal not stored")
    finally:
        code = running.stop()
    assert code == 143, running.log()
    assert "broken.png: not inspected (broken.png: not a recognised image format), and the history could not store " \
           "that: IntegrityError: outbox full" in running.log()  # fmt: skip
    assert _rows(tmp_path, "SELECT * FROM station_intake") == [] and _rows(tmp_path, "SELECT * FROM outbox") == []
    assert (incoming / "broken.png").exists() and not (incoming / "failed").exists() and receiver.received == []
    db = sqlite3.connect(tmp_path / "state" / "eagle.sqlite3")
    with db:
        db.execute("DROP TRIGGER refuse_outbox")
    db.close()
    code, log = _run(stations, "run", "--until-idle")
    assert code == 0, log
    assert [r["body"]["refused"]["image_name"] for r in receiver.received] == ["broken.png"]
    assert _status(stations)["failed"] == 1


def test_an_unreadable_image_is_delivered_once_under_a_stable_key_across_a_kill(
    model_dir: Path, tmp_path: Path, receiver: Receiver
) -> None:
    """A file that cannot be read has no content hash: its refusal's key is derived from the station, its name, size
    and modification time, so the refusal stored before a kill and the one made again after the restart are one
    delivery. The folder sink, which cannot copy it, writes the refusal's JSON alone (no dead letter); the
    ``failed`` count counts the file once, not once per refusal stored."""
    launcher = unprivileged_cli()  # root would read it anyway
    incoming = tmp_path / "incoming"
    (name,) = _drop(incoming, _cells(1))
    image = incoming / name
    os.chmod(image, 0)
    stations = _stations(tmp_path, model_dir, _webhook(receiver.port) + _folder_sink(), settle_s=0)
    failed = incoming / "failed" / name
    try:
        _kill_after_storing(stations, _env(), point="station refusal stored", launcher=launcher)
        ((key, state),) = set(_rows(tmp_path, "SELECT record_id, state FROM outbox"))
        assert re.fullmatch(r"refused-[0-9a-f]{32}", key) and state == "pending" and image.exists()
        code, log = _run(stations, "run", "--until-idle", launcher=launcher)
    finally:
        for path in (image, failed):
            if path.exists():
                os.chmod(path, 0o644)
    assert code == 0, log
    assert receiver.keys() == [key], log
    reason = f"{name}: cannot be read: Permission denied"
    body = receiver.received[0]["body"]
    assert body == {
        "event": "refused", "station": "line-1", "image": str(failed), "source": str(image),
        "refused": {"id": key, "category": "mono", "image_name": name, "image_sha256": None, "reason": reason,
                    "time": body["refused"]["time"]},
    }  # fmt: skip
    assert failed.exists() and "gone from the source" not in log
    json_only = tmp_path / "sorted" / "refused" / f"{key}_{name}.json"
    assert json.loads(json_only.read_text()) == body and not json_only.with_suffix("").exists()
    assert _rows(tmp_path, "SELECT sink, state FROM outbox ORDER BY seq") == [("webhook", "delivered"),
                                                                              ("folder", "delivered")]  # fmt: skip
    assert _status(stations)["failed"] == 1


def test_an_unread_refusal_stays_held_while_its_file_waits_and_one_fixed_meanwhile_is_told_with_no_place(
    model_dir: Path, tmp_path: Path, receiver: Receiver
) -> None:
    """The default ``settle_s``: a restart's first polls yield nothing while the file settles, and the refusal of a
    file that could not be read, stored before a kill, is not released then with a ``failed/`` place the file is not
    at: it stays held while the folder lists that file (same name, size and modification time). Fixed meanwhile
    (``chmod``: readable now), the file is inspected and filed in ``done/``; the refusal then goes first, in order,
    saying it has no place (``image`` null), never a ``failed/`` file that does not exist."""
    launcher = unprivileged_cli()  # root would read it anyway
    incoming = tmp_path / "incoming"
    (name,) = _drop(incoming, _cells(1))
    image = incoming / name
    past = time.time() - 10
    os.utime(image, (past, past))
    os.chmod(image, 0)
    stations = _stations(tmp_path, model_dir, _webhook(receiver.port))
    try:
        _kill_after_storing(stations, _env(), point="station refusal stored", launcher=launcher)
    finally:
        os.chmod(image, 0o644)
    ((key,),) = _rows(tmp_path, "SELECT record_id FROM outbox")
    code, log = _run(stations, "run", "--until-idle", launcher=launcher)
    assert code == 0, log
    (record,) = _history(tmp_path)
    assert receiver.keys() == [key, record.id], log
    body = receiver.received[0]["body"]
    assert body["image"] is None and body["refused"]["image_name"] == name, body
    assert not (incoming / "failed" / name).exists() and (incoming / "done" / name).exists()
    assert f"refusal {key} (a file that could not be read, {name}, was not put aside before the last stop" in log
    assert f"no place ({incoming / 'failed' / name} is not there)" in log


def test_an_unread_files_key_tells_it_from_another_that_looks_the_same_and_is_fresh_once_told(tmp_path: Path) -> None:
    """An unread file's derived key takes its ctime and inode too (a copy with ``cp -p``, or 2 s time stamps, has
    the name, size and modification time of one refused before), and once its rows are no longer held
    (``refusal_rows`` "told") the station takes a fresh key: a new refusal is never skipped as a repeat. Every such
    key of that name, size and modification time is one :func:`refusal_of` recognises in the folder."""
    from eagle_iad.station.outbox import StationTables, refusal_key, refusal_of
    from eagle_iad.station.parts import Settled

    one, copy = Settled(5, 1000, 2000, 0o100000, 7), Settled(5, 1000, 3000, 0o100000, 8)
    key = refusal_key("line-1", "x.png", "", one, None)
    assert key == refusal_key("line-1", "x.png", "", one, None) != refusal_key("line-1", "x.png", "", copy, None)
    fresh = refusal_key("line-1", "x.png", "", one, None, fresh=True)
    assert fresh != key and all(refusal_of(k, "line-1", "x.png", copy) for k in (key, fresh))
    assert not refusal_of(key, "line-1", "x.png", Settled(6, 1000, 2000, 0o100000, 7))
    store = InspectionStore(tmp_path / "eagle.sqlite3")
    tables = StationTables(store)
    try:
        assert tables.refusal_rows("line-1", key) == "none"
        tables.write_failed("line-1", "", "x.png", "denied", 1.0, key=key, sinks=["a", "b"], payload={})
        assert tables.refusal_rows("line-1", key) == "held"
        tables.release_held("line-1", key)
        assert tables.refusal_rows("line-1", key) == "told"
    finally:
        store.close()


@pytest.mark.parametrize("sinks", [["webhook", "folder"], []])
def test_a_refusal_stored_again_under_its_key_counts_its_file_once(tmp_path: Path, sinks: list[str]) -> None:
    """A refusal stored again under the same key (the put-aside failing with ENOSPC and retried at every paused
    try, or a kill before it) counts its file once, whether the file could be read or not, and whether or not a
    sink takes refusals (no outbox rows to tell it by); a refusal under another key is another file."""
    from eagle_iad.station.outbox import StationTables

    store = InspectionStore(tmp_path / "eagle.sqlite3")
    tables = StationTables(store)
    try:
        for digest in ("", "d1"):
            payload = {"event": "refused", "refused": {"id": f"refused-{digest}a"}}
            for _ in range(3):
                tables.write_failed("line-1", digest, "x.png", "denied", 1.0, key=f"refused-{digest}a",
                                    planned="failed/x.png", sinks=sinks, payload=payload)  # fmt: skip
            assert store.read("SELECT files FROM station_intake WHERE digest = ?", (digest,)) == [(1,)]
            tables.write_failed("line-1", digest, "x.png", "denied", 2.0, key=f"refused-{digest}b",
                                planned="failed/x-1.png", sinks=sinks, payload=payload)  # fmt: skip
            assert store.read("SELECT files FROM station_intake WHERE digest = ?", (digest,)) == [(2,)]
        assert len(store.read("SELECT * FROM outbox")) == 4 * len(sinks)
        # the shared row of the files not read is no record's: held rows of an unread file have no intake row
        assert {held.digest for held in tables.held("line-1")} == ({None, "d1"} if sinks else set())
    finally:
        store.close()


@pytest.mark.parametrize("sinks", [["webhook"], []])
def test_a_refusal_not_put_aside_yet_is_found_by_its_key_whether_or_not_a_sink_takes_it(
    tmp_path: Path, sinks: list[str]
) -> None:
    """``held_refusal`` finds the refusal of a file read until its place is stored: by its held rows, or, no sink
    taking refusals, by its intake row still ``unfiled``; once filed, that name and content is a new file."""
    from eagle_iad.station.outbox import StationTables

    store = InspectionStore(tmp_path / "eagle.sqlite3")
    tables = StationTables(store)
    try:
        tables.write_failed("line-1", "d1", "x.png", "broken", 1.0, key="refused-a", planned="failed/x.png",
                            sinks=sinks, payload={"event": "refused", "refused": {"id": "refused-a"}})  # fmt: skip
        assert tables.held_refusal("line-1", "d1", "x.png") == "refused-a"
        assert tables.held_refusal("line-1", "d1", "y.png") is None  # another name: another file
        tables.filed("line-1", "d1", "refused-a", "failed/x.png", first=True)
        assert tables.held_refusal("line-1", "d1", "x.png") is None
        assert store.read("SELECT moved_to, unfiled, files FROM station_intake") == [("failed/x.png", 0, 1)]
    finally:
        store.close()


def test_a_refusal_no_sink_takes_whose_file_is_gone_no_longer_takes_a_later_file_for_it(tmp_path: Path) -> None:
    """The reviewer's case: an empty ``current.png`` refused, no sink taking refusals, and its filing never stored
    (a kill after its put-aside, or its file gone before it). Until the next start resolves it (:meth:`unfiled`,
    then :meth:`filed` or :meth:`release_unfiled`), a file of that name and content is taken for it; after, a later
    empty ``current.png`` is another file, with a key of its own, counted: ``failed`` goes 1 -> 2."""
    from eagle_iad.station.outbox import StationTables

    store = InspectionStore(tmp_path / "eagle.sqlite3")
    tables = StationTables(store)
    try:
        empty = hashlib.sha256(b"").hexdigest()
        for key, planned in (("refused-a", "failed/current.png"), ("refused-b", "failed/current-1.png")):
            assert tables.held_refusal("line-1", empty, "current.png") is None
            tables.write_failed("line-1", empty, "current.png", "empty", 1.0, key=key, planned=planned, sinks=[],
                                payload={"event": "refused", "refused": {"id": key}})  # fmt: skip
            assert tables.held_refusal("line-1", empty, "current.png") == key  # not put aside yet: refused again
            (unfiled,) = tables.unfiled("line-1")
            assert (unfiled.record_id, unfiled.digest, unfiled.name, unfiled.planned) == (key, empty, "current.png",
                                                                                          planned)  # fmt: skip
            if key == "refused-a":  # killed after its put-aside: found there
                tables.filed("line-1", empty, key, planned, first=True)
            else:  # gone before it
                tables.release_unfiled("line-1", empty, key)
            assert tables.unfiled("line-1") == []
        assert store.read("SELECT record_id, moved_to, unfiled, files FROM station_intake") == [
            ("refused-b", "failed/current-1.png", 0, 2)
        ]
    finally:
        store.close()


def test_the_folder_sink_writes_a_refusal_whose_image_is_gone_without_a_dead_letter(tmp_path: Path) -> None:
    """The refused image removed from ``failed/`` (and from where it arrived) before the folder sink got to it: the
    refusal's JSON is written alone; the try succeeds."""
    from eagle_iad.station.parts import Options
    from eagle_iad.station.sinks.folder import FolderSink

    sink = FolderSink(Options({"path": "sorted"}, "sink", tmp_path), "folder")
    payload = {"event": "refused", "station": "line-1", "image": str(tmp_path / "failed" / "gone.png"),
               "source": str(tmp_path / "gone.png"), "refused": {"id": "refused-1", "image_name": "gone.png",
                                                                 "image_sha256": "ab", "reason": "empty"}}  # fmt: skip
    sink.deliver(payload, "refused-1")
    sink.deliver(payload, "refused-1")  # a repeat rewrites the same file
    assert [p.name for p in (tmp_path / "sorted" / "refused").iterdir()] == ["refused-1_gone.png.json"]
    assert json.loads((tmp_path / "sorted" / "refused" / "refused-1_gone.png.json").read_text()) == payload


def _refusal(tmp_path: Path, name: str, digest: str | None = None) -> dict[str, Any]:
    return {"event": "refused", "station": "line-1", "image": str(tmp_path / "failed" / name),
            "source": str(tmp_path / name), "refused": {"id": "refused-1", "image_name": name,
                                                        "image_sha256": digest, "reason": "denied"}}  # fmt: skip


def test_the_folder_sink_never_files_what_is_now_where_a_refused_image_arrived(tmp_path: Path) -> None:
    """A refused image not in ``failed/`` (gone, or never put there): the folder sink does not fall back to where
    it arrived, which holds the next part's bytes by then (and is no path at all for a camera); the JSON alone."""
    from eagle_iad.station.parts import Options
    from eagle_iad.station.sinks.folder import FolderSink

    (tmp_path / "x.png").write_bytes(b"the next part")
    refused = tmp_path / "sorted" / "refused"
    for link in (False, True):
        sink = FolderSink(Options({"path": "sorted", "link": link}, "sink", tmp_path), "folder")
        sink.deliver(_refusal(tmp_path, "x.png"), "refused-1")
        assert [p.name for p in refused.iterdir()] == ["refused-1_x.png.json"]


def test_a_refused_image_the_folder_sink_cannot_link_is_its_json_alone_not_a_blocked_queue(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``link = true``: a refused image the kernel will not hard-link (``fs.protected_hardlinks`` gives EPERM for a
    file this user neither owns nor can read: the permission-denied refusal itself) is no copy, not a failed try
    (which, retried forever at the default ``max_attempts``, would hold every later verdict): the JSON alone."""
    from eagle_iad.station.parts import Options
    from eagle_iad.station.sinks.folder import FolderSink

    (tmp_path / "failed").mkdir()
    (tmp_path / "failed" / "x.png").write_bytes(b"unreadable")

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "link", refuse)
    sink = FolderSink(Options({"path": "sorted", "link": True}, "sink", tmp_path), "folder")
    sink.deliver(_refusal(tmp_path, "x.png"), "refused-1")
    assert [p.name for p in (tmp_path / "sorted" / "refused").iterdir()] == ["refused-1_x.png.json"]


def _plant_link_and_fifo(tmp_path: Path, folder: Path, target: bytes) -> None:
    """``folder/link.png``, a symbolic link to a file outside the hot folder holding ``target``, and
    ``folder/fifo.png``, a FIFO no one writes: what the folder sink must neither follow nor wait on."""
    folder.mkdir()
    (tmp_path / "secret").write_bytes(target)
    (folder / "link.png").symlink_to(tmp_path / "secret")
    os.mkfifo(folder / "fifo.png")


def _deliver_in_time(deliver: Callable[[str], None], fifo: Path) -> list[BaseException]:
    """``deliver("link.png")`` then ``deliver("fifo.png")`` in a thread that must end (not wait on ``fifo``); what
    each raised."""
    errors: list[BaseException] = []

    def both() -> None:
        for name in ("link.png", "fifo.png"):
            try:
                deliver(name)
            except BaseException as exc:
                errors.append(exc)

    thread = threading.Thread(target=both, daemon=True)
    thread.start()
    thread.join(wait_s(30))
    try:
        assert not thread.is_alive(), "the folder sink waits on the FIFO"
    finally:
        if thread.is_alive():  # let the blocked open end (a writer, gone at once)
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
    return errors


@pytest.mark.parametrize("link", [False, True])
def test_a_refused_link_or_fifo_is_neither_followed_nor_waited_on_by_the_folder_sink(
    tmp_path: Path, link: bool
) -> None:
    """A symbolic link or a FIFO the hot folder put aside as it was (refused: not a regular file) is no image to
    file: the folder sink writes the JSON alone, neither copying (nor linking) the link's target nor waiting for a
    writer on the FIFO."""
    from eagle_iad.station.parts import Options
    from eagle_iad.station.sinks.folder import FolderSink

    _plant_link_and_fifo(tmp_path, tmp_path / "failed", b"not the station's to file")
    sink = FolderSink(Options({"path": "sorted", "link": link}, "sink", tmp_path), "folder")
    errors = _deliver_in_time(lambda name: sink.deliver(_refusal(tmp_path, name), f"refused-{name[0]}"),
                              tmp_path / "failed" / "fifo.png")  # fmt: skip
    assert errors == []
    refused = tmp_path / "sorted" / "refused"
    assert sorted(p.name for p in refused.iterdir()) == ["refused-f_fifo.png.json", "refused-l_link.png.json"]


def _verdict(tmp_path: Path, name: str, digest: str) -> dict[str, Any]:
    record = {"id": f"r-{name[0]}", "decision": "normal", "image_name": name, "image_sha256": digest}
    return {
        "station": "line-1",
        "image": str(tmp_path / "done" / name),
        "source": str(tmp_path / name),
        "record": record,
    }


@pytest.mark.parametrize("link", [False, True])
def test_a_link_or_fifo_where_a_verdicts_image_was_filed_is_neither_followed_nor_waited_on_by_the_folder_sink(
    tmp_path: Path, link: bool
) -> None:
    """The verdict's image takes the refusal's way in (:meth:`FolderSink._copy_readable`): a symbolic link put in
    ``done/`` where the image was filed is not followed, even to a file holding the very bytes inspected (the sink
    files the station's own copy, never a file outside the folder), and a FIFO there is not waited on. Neither is
    the image: the try is refused ("replaced"), a dead letter in time, and nothing is filed."""
    from eagle_iad.station.parts import Options, RefusedError
    from eagle_iad.station.sinks.folder import FolderSink

    inspected = b"the bytes inspected"
    _plant_link_and_fifo(tmp_path, tmp_path / "done", inspected)
    sink = FolderSink(Options({"path": "sorted", "link": link}, "sink", tmp_path), "folder")
    digest = hashlib.sha256(inspected).hexdigest()
    errors = _deliver_in_time(lambda name: sink.deliver(_verdict(tmp_path, name, digest), f"r-{name[0]}"),
                              tmp_path / "done" / "fifo.png")  # fmt: skip
    assert [type(e) for e in errors] == [RefusedError, RefusedError]
    assert all("replaced by another since it was inspected" in str(e) for e in errors)
    assert [p.name for p in (tmp_path / "sorted" / "normal").iterdir()] == []


def test_a_verdicts_image_the_folder_sink_cannot_read_now_is_a_failed_try_not_a_refusal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The safe copy is no copy of an image it cannot read (EIO, EACCES); for a verdict that image is still there,
    so the try fails and is retried (:class:`DeliveryError`), never refused into a dead letter as a gone one is."""
    from eagle_iad.station.parts import DeliveryError, Options, RefusedError
    from eagle_iad.station.sinks import folder

    (tmp_path / "done").mkdir()
    (tmp_path / "done" / "x.png").write_bytes(b"inspected")

    def unreadable(path: Path) -> Any:
        raise OSError(errno.EIO, "Input/output error", str(path))

    monkeypatch.setattr(folder, "open_regular", unreadable)
    sink = folder.FolderSink(Options({"path": "sorted"}, "sink", tmp_path), "folder")
    with pytest.raises(DeliveryError, match="Input/output error") as raised:
        sink.deliver(_verdict(tmp_path, "x.png", hashlib.sha256(b"inspected").hexdigest()), "r-x")
    assert not isinstance(raised.value, RefusedError)


class _FillsHalfway:
    """A file opened for writing on a disk that fills up: the first write lands in part, then ``ENOSPC``
    (what a folder sink on a full disk meets in the middle of a copy)."""

    def __init__(self, real: Any) -> None:
        self.real = real

    def __enter__(self) -> _FillsHalfway:
        return self

    def __exit__(self, *exc: object) -> None:
        self.real.close()

    def write(self, data: bytes) -> int:
        self.real.write(data[: max(1, len(data) // 2)])
        self.real.flush()
        raise OSError(errno.ENOSPC, "No space left on device")


@pytest.mark.parametrize("kind", ["verdict", "refusal"])
def test_a_folder_sink_copy_that_fills_the_disk_leaves_no_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    """A full disk fails the copy half-way: the try fails (retried), and the part-copy (``.<name>.tmp``) is
    removed, not left in the sink's folder through the retries, holding the room the next try needs; once there is
    room again, the try delivers the whole image."""
    from eagle_iad.station.parts import DeliveryError, Options
    from eagle_iad.station.sinks import folder

    image = b"inspected bytes " * 4096
    digest = hashlib.sha256(image).hexdigest()
    where = "done" if kind == "verdict" else "failed"
    (tmp_path / where).mkdir()
    (tmp_path / where / "x.png").write_bytes(image)
    payload = _verdict(tmp_path, "x.png", digest) if kind == "verdict" else _refusal(tmp_path, "x.png", digest)
    key = "r-x" if kind == "verdict" else "refused-1"
    real_open = open

    def full(path: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        handle = real_open(path, mode, *args, **kwargs)
        return _FillsHalfway(handle) if "w" in mode else handle

    sink = folder.FolderSink(Options({"path": "sorted"}, "sink", tmp_path), "folder")
    monkeypatch.setattr(folder, "open", full, raising=False)
    with pytest.raises(DeliveryError, match="No space left on device"):
        sink.deliver(payload, key)
    sorted_folder = tmp_path / "sorted" / ("normal" if kind == "verdict" else "refused")
    assert sorted(p.name for p in sorted_folder.iterdir()) == []
    monkeypatch.undo()
    sink.deliver(payload, key)  # room again
    assert sorted(p.name for p in sorted_folder.iterdir()) == [f"{key}_x.png", f"{key}_x.png.json"]
    assert (sorted_folder / f"{key}_x.png").read_bytes() == image


def test_a_folder_sink_rename_that_fails_leaves_no_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The copy complete but its rename into place refused (EIO, a quota): no ``.<name>.tmp`` stays behind."""
    from eagle_iad.station.parts import DeliveryError, Options
    from eagle_iad.station.sinks import folder

    (tmp_path / "done").mkdir()
    (tmp_path / "done" / "x.png").write_bytes(b"inspected")

    def refused(*args: Any, **kwargs: Any) -> None:
        raise OSError(errno.EIO, "Input/output error")

    sink = folder.FolderSink(Options({"path": "sorted"}, "sink", tmp_path), "folder")
    monkeypatch.setattr(folder.os, "replace", refused)
    with pytest.raises(DeliveryError, match="Input/output error"):
        sink.deliver(_verdict(tmp_path, "x.png", hashlib.sha256(b"inspected").hexdigest()), "r-x")
    assert list((tmp_path / "sorted" / "normal").iterdir()) == []


def test_a_sink_whose_probe_could_not_reach_its_receiver_is_a_status_warning_of_its_own(tmp_path: Path) -> None:
    """A start-up probe that looked and could not reach the receiver (an MQTT broker, a webhook: nothing listens)
    is a status warning until the sink's first delivery, as a sink not checked is, and said in the intake file for
    ``eagle station status``; once a delivery to it failed, the sink's failing line says it instead."""
    pytest.importorskip("paho.mqtt")
    from eagle_iad.station.config import SinkConfig
    from eagle_iad.station.parts import Options, Retry
    from eagle_iad.station.runner import ProbeWarning, _probe
    from eagle_iad.station.sinks.mqtt import MqttSink
    from eagle_iad.station.status import Intake, StationFacts, read_intake, station_figures, write_intake

    port = _free_port()  # nothing listens there
    sink = MqttSink(Options({"host": "127.0.0.1", "port": port, "timeout_s": 5}, "sink", tmp_path), "mqtt")
    try:
        found = _probe(SinkConfig(sink, Retry(0, 1.0, 60.0)))
    finally:
        sink.close()
    why = f"mqtt 127.0.0.1:{port}: Connection refused"
    assert found == ProbeWarning(f"{why}; verdicts wait in the outbox until it is reachable", why, looked=True)
    write_intake(tmp_path, "line-1", Intake(unreached=(("mqtt", why, 1000.0),)))
    intake = read_intake(tmp_path, "line-1")
    assert intake == Intake(unreached=(("mqtt", why, 1000.0),))
    store = InspectionStore(tmp_path / "eagle.sqlite3")
    try:
        facts = StationFacts("line-1", "mono", "folder x", 0, [("mqtt", "mqtt")], 100, 5.0, intake=intake)

        def warnings() -> list[str]:
            with store.transaction() as db:
                return list(station_figures(db, facts)["warnings"])

        assert warnings() == [f"sink mqtt: not reached at start: {why}; verdicts wait in the outbox until it is "
                              "reachable"]  # fmt: skip
        with store.transaction() as db:  # a try failed: the failing line, not both
            db.execute("INSERT INTO outbox (station, sink, record_id, payload, attempts, last_error) VALUES "
                       "('line-1', 'mqtt', 'a', '{}', 1, 'mqtt 127.0.0.1: Connection refused')")  # fmt: skip
        (failing,) = warnings()
        assert failing.startswith("sink mqtt: 1 delivery (a verdict or a refusal) waits"), failing
        with store.transaction() as db:
            db.execute("UPDATE outbox SET state = 'delivered', delivered = 1001.0")
        assert warnings() == []
    finally:
        store.close()


def test_a_sink_not_checked_at_start_is_a_status_warning_until_it_delivers(tmp_path: Path) -> None:
    """A sink whose start-up check could not look (:class:`NotChecked`) is named in the status's warnings, in the
    service's answers and in ``eagle station status`` (through the intake file), until its first delivery since."""
    from eagle_iad.station.status import Intake, StationFacts, read_intake, station_figures, write_intake

    write_intake(tmp_path, "line-1", Intake(unchecked=(("mqtt", "mqtt b:1883 refused the check (Not authorized)",
                                                        1000.0),)))  # fmt: skip
    intake = read_intake(tmp_path, "line-1")
    assert intake == Intake(unchecked=(("mqtt", "mqtt b:1883 refused the check (Not authorized)", 1000.0),))
    store = InspectionStore(tmp_path / "eagle.sqlite3")
    try:
        facts = StationFacts("line-1", "mono", "folder x", 0, [("mqtt", "mqtt")], 100, 5.0, intake=intake)

        def warnings() -> list[str]:
            with store.transaction() as db:
                return list(station_figures(db, facts)["warnings"])

        said = ["sink mqtt: not checked at start: mqtt b:1883 refused the check (Not authorized); its first delivery "
                "tells"]  # fmt: skip
        assert warnings() == said
        with store.transaction() as db:
            db.execute("INSERT INTO outbox (station, sink, record_id, payload, state, delivered) VALUES "
                       "('line-1', 'mqtt', 'a', '{}', 'delivered', 999.0)")  # fmt: skip
        assert warnings() == said  # delivered before the check: still not known
        with store.transaction() as db:
            db.execute("INSERT INTO outbox (station, sink, record_id, payload, state, delivered) VALUES "
                       "('line-1', 'mqtt', 'b', '{}', 'delivered', 1001.0)")  # fmt: skip
        assert warnings() == []
    finally:
        store.close()


def test_a_repeated_image_is_logged_and_counted_when_quiet(tmp_path: Path, model_dir: Path) -> None:
    """Under ``eagle serve`` a station is quiet (no line per image), yet a file of content already inspected is
    said in the log (no sink hears of it, so the log is its only trace) and counted in the status' warnings."""
    from eagle_iad.service.context import ServiceState
    from eagle_iad.station.runner import StationRunner
    from eagle_iad.station.status import open_read_only, read_intake, station_status

    incoming = tmp_path / "incoming"
    (name,) = _drop(incoming, _cells(1))
    shutil.copyfile(incoming / name, incoming / "again.png")
    os.utime(incoming / "again.png", (time.time() - 10, time.time() - 10))
    stations = read_stations(_stations(tmp_path, model_dir, ""))
    stations.make_folders()
    state = ServiceState(stations.settings(), backend=None)
    lines: list[str] = []
    runner = StationRunner(stations.stations[0], state, lines.append, quiet=True)
    runner.start()
    try:
        runner.step()  # the first look only starts the files' settling time
        time.sleep(0.3)
        runner.step()
        record_id = state.store.read("SELECT record_id FROM station_intake")[0][0]
        said = [line for line in lines if "same content as record" in line]
        assert len(said) == 1 and f": same content as record {record_id}; " in said[0], lines
        assert runner.intake().duplicates == 1
        assert read_intake(tmp_path / "state", "line-1") == runner.intake()  # what eagle station status reads
        db = open_read_only(state.settings.history_url)
        try:
            warnings = station_status(db, runner.config, runner.intake())["warnings"]
        finally:
            db.close()
        assert any(w.startswith("1 file in the last 5 min had the content") for w in warnings), warnings
    finally:
        runner.stop(1.0)
        state.close()


def test_recent_counts_per_second_over_the_window_and_forgets_the_rest() -> None:
    """What the windowed warnings count: how many lately (the last RECENT_S), the total since the start kept
    apart; the memory is one pair per second that saw any, those past the window dropped, however many happen.
    The clock given: no wall clock waited on."""
    from eagle_iad.station.recent import RECENT_S, Recent, within

    now = [1_800_000_000.25]
    recent = Recent(lambda: now[0])
    assert recent.count() == 0 and recent.seconds() == ()
    for _ in range(1000):  # a burst within one second: one pair
        recent.add()
    assert recent.seconds() == ((1_800_000_000, 1000),) and recent.count() == 1000
    for _ in range(2 * int(RECENT_S)):  # one a second for twice the window
        now[0] += 1
        recent.add()
    assert recent.total == 1000 + 2 * int(RECENT_S)
    assert len(recent.seconds()) <= RECENT_S + 1  # bounded: the burst and the older half are gone
    assert recent.count() == int(RECENT_S) + 1  # the one exactly RECENT_S ago too
    now[0] += RECENT_S + 1  # none for longer than the window: none lately, the total kept
    assert recent.count() == 0 and recent.seconds() == () and recent.total == 1000 + 2 * int(RECENT_S)
    now[0] = 1000.5
    recent.add()
    now[0] = 1000.5 + RECENT_S - 0.1  # still within
    assert recent.count() == 1
    now[0] = 1001.0 + RECENT_S  # its whole second past the window: at most 1 s late, never early
    assert recent.count() == 0
    assert within(((100, 2), (350, 3)), 400.0) == 5 and within(((100, 2), (350, 3)), 401.0) == 3


def test_duplicates_warn_while_some_came_lately_and_the_count_since_the_start_stays(tmp_path: Path) -> None:
    """A station that once saw a file of content already inspected must not warn of it until it restarts (an
    alert on eagle_station_warnings would fire for days): the warning says how many came in the last RECENT_S and
    clears once none did; ``duplicates`` in the figures keeps the count since the start. What ``eagle station
    status`` reads (the intake file, written by the running process) says the same."""
    from eagle_iad.station.recent import RECENT_S
    from eagle_iad.station.status import Intake, StationFacts, read_intake, station_figures, write_intake

    now = 1_800_000_000.0
    intake = Intake(duplicates=7, last_duplicate=("again.png", "r1"),
                    duplicate_seconds=((int(now) - 400, 4), (int(now) - 100, 2), (int(now) - 10, 1)))  # fmt: skip
    write_intake(tmp_path, "line-1", intake)
    assert read_intake(tmp_path, "line-1") == intake
    store = InspectionStore(tmp_path / "eagle.sqlite3")

    def figures(at: float) -> dict[str, Any]:
        facts = StationFacts("line-1", "mono", "folder x", 0, [], 100, 5.0, intake=read_intake(tmp_path, "line-1"))
        with store.transaction() as db:
            return station_figures(db, facts, now=at)

    try:
        shown = figures(now)
        said = "3 files in the last 5 min had the content of an image already inspected (the last: again.png, as"
        assert shown["warnings"] == [f"{said} record r1): put away, not inspected again; told to the sinks as refused"]
        assert shown["duplicates"] == 7
        skipping = dataclasses.replace(
            StationFacts("line-1", "mono", "folder x", 0, [], 100, 5.0, intake=intake), duplicates="skip"
        )
        with store.transaction() as db:
            skipped = station_figures(db, skipping, now=now)["warnings"]
        tail = 'no new verdict sent to any sink (duplicates = "skip")'
        assert skipped == [f"{said} record r1): put away, not inspected again; {tail}"]
        assert figures(now + RECENT_S - 20)["warnings"][0].startswith("1 file in the last 5 min had the content ")
        shown = figures(now + RECENT_S)
        assert shown["warnings"] == [] and shown["duplicates"] == 7
    finally:
        store.close()


def test_files_the_hot_folder_ignores_are_said_once_and_counted_in_the_status(tmp_path: Path) -> None:
    """A camera writing ``.raw``, files with no suffix, into a subfolder or under a hidden name sends nothing and
    the backlog stays 0: each such name is said once (a warning, why) and counted, once unchanged for
    IGNORED_AFTER_S (a writer's temporary name renamed at once is never said). What belongs there untaken
    (done/, failed/, the lock, sidecars, ``.tmp``, ``.DS_Store``) is not. The status warns of those found in the
    last RECENT_S only (a file left there warns no longer after that; the count since the start stays in the
    figures): the clock given, no wall clock waited on."""
    from types import SimpleNamespace

    from eagle_iad.station.parts import Options
    from eagle_iad.station.recent import RECENT_S
    from eagle_iad.station.sources.folder import IGNORED_AFTER_S, HotFolder
    from eagle_iad.station.status import Intake, StationFacts, station_figures

    incoming = tmp_path / "incoming"
    (incoming / "sub").mkdir(parents=True)
    (incoming / "done").mkdir()
    (incoming / "failed").mkdir()
    (incoming / "sub" / "x.png").write_bytes(b"an image in a subfolder")
    for name in ("cam2.raw", "noext", ".hidden.png", ".eagle-station.lock", ".DS_Store", "cam1.png.tmp",
                 "cam0.png.eagle.json", "fresh.raw"):  # fmt: skip
        (incoming / name).write_bytes(b"x")
    old = time.time() - IGNORED_AFTER_S - 1
    for name in ("sub", "done", "failed", "cam2.raw", "noext", ".hidden.png", ".eagle-station.lock", ".DS_Store",
                 "cam1.png.tmp", "cam0.png.eagle.json"):  # fmt: skip
        os.utime(incoming / name, (old, old))
    folder = HotFolder(Options({"path": "incoming", "settle_s": 0}, "source", tmp_path))
    now = [1_800_000_000.0]
    folder._found_ignored.clock = lambda: now[0]
    lines: list[str] = []
    folder.log = lines.append
    assert folder.backlog() == 0 and lines == []  # the status' look says nothing in the log, and counts nothing
    assert folder.ignored() == (0, None, ())
    assert list(folder.poll()) == []
    said = {line.split(": warning: ")[1] for line in lines}
    assert said == {".hidden.png: ignored: hidden (its name starts with a dot)",
                    f"cam2.raw: ignored: suffix .raw not taken (only {TOOK})",
                    f"noext: ignored: no suffix (only {TOOK} are taken)",
                    f"sub: ignored: {SUBFOLDER}"}, lines  # fmt: skip
    assert folder.ignored() == (4, f"sub ({SUBFOLDER})", ((1_800_000_000, 4),))
    now[0] += 100
    assert list(folder.poll()) == [] and len(lines) == 4  # once per name
    os.utime(incoming / "fresh.raw", (old, old))  # now unchanged long enough: said too
    assert list(folder.poll()) == [] and lines[-1].endswith(f"fresh.raw: ignored: suffix .raw not taken (only {TOOK})")
    config = SimpleNamespace(name="line-1", category="mono", source=folder, sinks=[], backlog_limit=100, deadline_s=5.0)
    store = InspectionStore(tmp_path / "h.sqlite3")

    def figures(at: float) -> dict[str, Any]:
        total, last, seconds = folder.ignored()
        facts = StationFacts.of(config, Intake(ignored=total, last_ignored=last, ignored_seconds=seconds))  # type: ignore[arg-type]
        with store.transaction() as db:
            return station_figures(db, facts, now=at)

    try:
        shown = figures(now[0])
        assert shown["warnings"] == [f"5 files found in the source in the last 5 min that the station ignores (not "
                                     f"taken as images), the last: fresh.raw (suffix .raw not taken (only {TOOK})); "
                                     "the log names each"]  # fmt: skip
        assert shown["ignored"] == 5
        shown = figures(1_800_000_000.0 + RECENT_S + 1)  # the first four are past the window, fresh.raw is not
        assert shown["warnings"] == [f"1 file found in the source in the last 5 min that the station ignores (not "
                                     f"taken as images), the last: fresh.raw (suffix .raw not taken (only {TOOK})); "
                                     "the log names each"]  # fmt: skip
        now[0] += RECENT_S + 1  # nothing new since: the files are still there, said once, and warned of no longer
        assert list(folder.poll()) == [] and len(lines) == 5
        shown = figures(now[0])
        assert shown["warnings"] == [] and shown["ignored"] == 5
        assert folder.ignored()[2] == ()  # the memory kept is of the window only
        (incoming / "cam2.raw").unlink()
        assert list(folder.poll()) == []
        (incoming / "cam2.raw").write_bytes(b"x")  # it comes back: said and counted again
        os.utime(incoming / "cam2.raw", (old, old))
        said = f": cam2.raw: ignored: suffix .raw not taken (only {TOOK})"
        assert list(folder.poll()) == [] and lines[-1].endswith(said)
        shown = figures(now[0])
        assert shown["ignored"] == 6 and shown["warnings"][0].startswith("1 file found in the source in the last "), (
            shown
        )
    finally:
        store.close()


def test_a_running_station_tells_eagle_station_status_of_the_files_its_folder_ignores(
    tmp_path: Path, model_dir: Path
) -> None:
    """``eagle station status`` (another process) lists no folder of its own to find what the station ignores: the
    running station writes its intake file when its poll finds such a file, and the status warns from it."""
    from eagle_iad.service.context import ServiceState
    from eagle_iad.station.runner import StationRunner
    from eagle_iad.station.sources.folder import IGNORED_AFTER_S
    from eagle_iad.station.status import open_read_only, read_intake, station_status

    incoming = tmp_path / "incoming"
    incoming.mkdir()
    stations = read_stations(_stations(tmp_path, model_dir, ""))
    stations.make_folders()
    state = ServiceState(stations.settings(), backend=None)
    runner = StationRunner(stations.stations[0], state, lambda line: None, quiet=True)
    runner.start()
    try:
        runner.step()
        assert read_intake(tmp_path / "state", "line-1").ignored == 0  # type: ignore[union-attr]
        (incoming / "cam2.raw").write_bytes(b"x")
        old = time.time() - IGNORED_AFTER_S - 1
        os.utime(incoming / "cam2.raw", (old, old))
        runner.step()
        intake = read_intake(tmp_path / "state", "line-1")
        assert intake is not None and intake.ignored == 1, intake
        db = open_read_only(state.settings.history_url)
        try:
            shown = station_status(db, read_stations(_stations(tmp_path, model_dir, "")).stations[0], intake)
        finally:
            db.close()
        assert shown["ignored"] == 1
        assert shown["warnings"] == [f"1 file found in the source in the last 5 min that the station ignores (not "
                                     f"taken as images), the last: cam2.raw (suffix .raw not taken (only {TOOK})); "
                                     "the log names each"]  # fmt: skip
    finally:
        runner.stop(1.0)
        state.close()


def test_files_replaced_under_their_name_before_they_were_taken_are_counted_and_said_once_a_burst(
    tmp_path: Path,
) -> None:
    """A writer renaming each frame onto one name faster than settle_s loses every frame but the last: each file the
    polls saw replaced by another (another inode, size or stamp) before it was handed over is counted, and the first
    of a burst said in one warning line; a file written in place (same inode) and a new file under the name of one
    handed over are no loss, and a name gone is forgotten."""
    from eagle_iad.station.parts import Options
    from eagle_iad.station.sources.folder import REPLACED_QUIET_S, HotFolder

    incoming = tmp_path / "incoming"
    incoming.mkdir()
    folder = HotFolder(Options({"path": "incoming", "settle_s": 3600}, "source", tmp_path))
    lines: list[str] = []
    folder.log = lines.append

    def frame(number: int) -> None:  # written aside, then renamed onto the name, as a camera driver does
        (incoming / ".frame.tmp").write_bytes(b"frame %d" % number + b"x" * number)
        os.replace(incoming / ".frame.tmp", incoming / "current.png")

    frame(0)
    assert list(folder.poll()) == [] and folder.replaced() == (0, None, ())
    for number in (1, 2, 3):
        frame(number)
        assert list(folder.poll()) == []
    total, last, seconds = folder.replaced()
    assert (total, last, sum(count for _, count in seconds)) == (3, "current.png", 3), lines
    said = (
        f"eagle station: folder {incoming}: warning: current.png was replaced by another file before the "
        "station took it (settle_s 3600 s): the earlier file is lost, never inspected"
    )
    assert len(lines) == 1 and lines[0].startswith(said), lines
    with open(incoming / "current.png", "ab") as handle:  # written on in place: the same file, still settling
        handle.write(b"more")
    assert list(folder.poll()) == [] and folder.replaced()[0] == 3
    folder._replaced_at -= REPLACED_QUIET_S  # type: ignore[operator]  # a quiet minute since: a new burst, a new line
    frame(4)
    assert list(folder.poll()) == [] and folder.replaced()[0] == 4 and len(lines) == 2, lines
    folder.settle_s = 0  # handed over, then another file under the name: no loss
    assert [arrival.name for arrival in folder.poll()] == ["current.png"]
    frame(5)
    assert [arrival.name for arrival in folder.poll()] == ["current.png"] and folder.replaced()[0] == 4, lines
    (incoming / "current.png").unlink()  # gone: forgotten, so a file later under the name is a new one
    assert list(folder.poll()) == []
    folder.settle_s = 3600
    frame(6)
    assert list(folder.poll()) == [] and folder.replaced()[0] == 4 and len(lines) == 2, lines


def test_a_station_counts_frames_renamed_onto_one_name_before_they_settled_in_its_status_and_log(
    model_dir: Path, tmp_path: Path
) -> None:
    """The line's case: frames renamed onto ``current.png`` faster than settle_s. Only the last is inspected; the
    others, lost, are one warning line in the log (not one per frame) and ``eagle station status`` counts them
    (``replaced``) and warns of them."""
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    stations = _stations(tmp_path, model_dir, "", settle_s=3)
    station = Running(stations)
    try:
        station.until(lambda: station.saw("mono from folder"), "the station never started")
        for cell in _cells(5):
            shutil.copyfile(cell, incoming / ".current.tmp")
            os.replace(incoming / ".current.tmp", incoming / "current.png")
            time.sleep(0.5)  # polls every 0.2 s see each frame; settle_s 3 lets none of them settle but the last
        station.until(lambda: len(_history(tmp_path)) == 1, "the last frame never inspected")
        figures = _status(stations)
        assert figures["inspected"] == 1 and figures["replaced"] >= 1, figures
        count = figures["replaced"]
        said = (
            f"{count} file{'' if count == 1 else 's'} in the last 5 min replaced under their name by another file "
            "before the station took them (the last: current.png): each lost, never inspected, and no sink told"
        )
        assert any(warning.startswith(said) for warning in figures["warnings"]), figures
        assert station.stop() == 143
    finally:
        station.process.kill()
    assert station.log().count("was replaced by another file before the station took it") == 1, station.log()


def test_the_p95_warning_is_of_the_deliveries_of_the_last_minutes_not_of_one_outage_long_past(tmp_path: Path) -> None:
    """A 97 s broker outage 25 minutes ago is still in the figures' last 1,000 images on a slow line, but the
    deadline warning is of the images delivered in the last RECENT_S: it clears once deliveries are fast
    again, and warns while they are slow; the status gives that windowed p95 too (``latency_recent_s``), so a
    console shows the figure the warning is of. Rows constructed, the time given: no wall clock."""
    from eagle_iad.station.recent import RECENT_S
    from eagle_iad.station.status import StationFacts, station_figures

    now = 1_800_000_000.0
    store = InspectionStore(tmp_path / "eagle.sqlite3")

    def image(db: Any, index: int, delivered: float, latency: float) -> None:
        record = f"r{index}"
        db.execute("INSERT INTO station_intake (station, digest, name, state, record_id, appeared, time) "
                   "VALUES (?, ?, ?, 'done', ?, ?, ?)", ("line-1", f"d{index}", f"{index}.png", record,
                                                         delivered - latency, delivered - latency + 0.1))  # fmt: skip
        db.execute("INSERT INTO outbox (station, sink, record_id, payload, state, delivered) "
                   "VALUES (?, 'webhook', ?, '{}', 'delivered', ?)", ("line-1", record, delivered))  # fmt: skip

    facts = StationFacts("line-1", "mono", "folder x", 0, [("webhook", "webhook")], 100, 5.0)
    try:
        with store.transaction() as db:
            for index in range(10):  # delivered once the broker was back, 25 minutes ago
                image(db, index, now - 1500 + index, 97.0 - index)
            for index in range(10, 20):  # fast again since
                image(db, index, now - RECENT_S + 10 + index, 0.5)
        with store.transaction() as db:
            figures = station_figures(db, facts, now=now)
        assert figures["latency_s"]["p95"] > 5.0  # the figures keep the last 1,000 images, the outage's too
        assert figures["latency_images"] == 20
        assert figures["latency_recent_s"] == {"p95": 0.5, "images": 10, "window_s": RECENT_S}
        assert figures["warnings"] == [], figures["warnings"]
        with store.transaction() as db:
            for index in range(20, 22):  # slow now: warned of
                image(db, index, now - 5, 30.0)
        with store.transaction() as db:
            figures = station_figures(db, facts, now=now)
        warnings = figures["warnings"]
        assert warnings == ["p95 latency 30 s over the last 5 min (12 images) is over the deadline 5 s"], warnings
        assert figures["latency_recent_s"] == {"p95": 30.0, "images": 12, "window_s": RECENT_S}
        with store.transaction() as db:
            figures = station_figures(db, facts, now=now + 2 * RECENT_S)  # none delivered lately: none to show
        assert figures["latency_recent_s"] is None and figures["warnings"] == []
        assert figures["latency_images"] == 22
    finally:
        store.close()


def test_a_kill_with_no_sink_between_storing_a_verdict_and_putting_the_image_away_is_no_duplicate(
    model_dir: Path, tmp_path: Path
) -> None:
    """With no sink there are no held rows to tell the image stored before a kill from a file sent again: its
    planned place in ``done/`` does (nothing there yet), so the restart puts it away without calling it a repeat."""
    incoming = tmp_path / "incoming"
    _drop(incoming, _cells(1))
    stations = _stations(tmp_path, model_dir, "")
    _kill_after_storing(stations, _env())
    code, log = _run(stations, "run", "--until-idle")
    assert code == 0, log
    assert "not inspected again," not in log, log
    assert not any("already inspected" in warning for warning in _status(stations)["warnings"])


def test_a_file_of_a_refusals_name_and_content_arriving_after_a_kill_past_its_put_aside_is_counted(
    model_dir: Path, tmp_path: Path
) -> None:
    """Killed after the refused file was put aside but before that was stored, while the camera writes the same
    bytes under the same name again: the restart takes the new file before it has looked at the old refusal, and
    the old one's place in ``failed/`` tells them apart, so both files count (it used to be one)."""
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    broken = incoming / "broken.png"
    broken.write_bytes(BROKEN)
    stations = _stations(tmp_path, model_dir, "", settle_s=0)
    _kill_after_storing(stations, _env(), point="station refusal put aside")
    broken.write_bytes(BROKEN)  # the camera writes it again while the station is down
    code, log = _run(stations, "run", "--until-idle")
    assert code == 0, log
    assert sorted(p.name for p in (incoming / "failed").iterdir() if p.suffix == ".png") == [
        "broken-1.png",
        "broken.png",
    ]
    assert _status(stations)["failed"] == 2, log
    assert "its file was found put aside at" in log, log


def test_an_older_named_sink_hook_that_is_no_hook_is_an_error_naming_the_sink_and_the_hooks() -> None:
    """A plugin sink (no thread) with a ``start()`` of its own, taking no arguments: the station calls it as the
    older-named hook ``start(station, category)``. That was a bare ``TypeError`` from the runner that failed the
    station's start; now it is a :class:`StationConfigError` naming the sink, its class and the hooks' new names
    (an older-named hook that takes the arguments is still called, and a ``station_start`` of its own wins)."""
    from eagle_iad.station.parts import StationConfigError, sink_hook

    class Own:
        kind, name = "own", "jsonl"

        def __init__(self) -> None:
            self.calls: list[tuple[Any, ...]] = []

        def start(self) -> None:  # the plugin's own, no hook
            self.calls.append(())

        def forget(self, what: str) -> None:
            self.calls.append((what,))

    sink = Own()
    hook = sink_hook(sink, "station_start")
    assert hook is not None
    with pytest.raises(StationConfigError) as refused:
        hook("line-1", "mono")
    said = str(refused.value)
    assert (
        said.startswith(f"sink 'jsonl' ({__name__}.") and "Own): its start() was called as the station's hook " in said
    )
    assert "station_start(station, category) and station_forget(): rename the plugin's hook to station_start" in said
    forget = sink_hook(sink, "station_forget")
    assert forget is not None
    with pytest.raises(StationConfigError, match=r"its forget\(\) was called as the station's hook station_forget\(\)"):
        forget()
    assert sink.calls == []

    class Older(Own):
        def start(self, station: str, category: str) -> None:  # type: ignore[override]  # the older hook
            self.calls.append((station, category))

    older = Older()
    hook = sink_hook(older, "station_start")
    assert hook is not None
    hook("line-1", "mono")
    assert older.calls == [("line-1", "mono")]

    class Renamed(Own):
        def station_start(self, station: str, category: str) -> None:
            self.calls.append(("new", station))

    renamed = Renamed()
    hook = sink_hook(renamed, "station_start")
    assert hook is not None
    hook("line-1", "mono")
    assert renamed.calls == [("new", "line-1")]


def test_a_plugin_sources_older_ignored_answer_still_warns_and_an_unreadable_one_is_logged_once(
    tmp_path: Path, model_dir: Path
) -> None:
    """A plugin source's ``ignored()`` written before the status' window answers ``(count, last)``: it gave no
    warning and no log line once the runner read only ``(count, last, seconds)``. Its count's growth is now taken
    as happening when the runner sees it (so the warning shows, and clears as the hot folder's does); an answer it
    cannot read is said once in the log instead of vanishing."""
    from eagle_iad.service.context import ServiceState
    from eagle_iad.station.runner import StationRunner
    from eagle_iad.station.status import open_read_only, station_status

    (tmp_path / "incoming").mkdir()
    stations = read_stations(_stations(tmp_path, model_dir, ""))
    stations.make_folders()
    state = ServiceState(stations.settings(), backend=None)
    lines: list[str] = []
    runner = StationRunner(stations.stations[0], state, lines.append, quiet=True)
    answer: Any = (2, "cam2.gif (suffix .gif not taken)")
    runner.config.source.ignored = lambda: answer  # type: ignore[method-assign]  # an older plugin's
    try:
        intake = runner.intake()
        assert (intake.ignored, intake.last_ignored) == (2, "cam2.gif (suffix .gif not taken)")
        assert sum(count for _, count in intake.ignored_seconds) == 2
        answer = (3, "cam3.gif (suffix .gif not taken)")
        assert sum(count for _, count in runner.intake().ignored_seconds) == 3  # one more, counted once
        assert sum(count for _, count in runner.intake().ignored_seconds) == 3
        db = open_read_only(state.settings.history_url)
        try:
            warnings = station_status(db, runner.config, runner.intake())["warnings"]
        finally:
            db.close()
        assert any(
            w.startswith("3 files found in the source in the last 5 min that the station ignores")
            and w.endswith("the last: cam3.gif (suffix .gif not taken); the log names each")
            for w in warnings
        ), warnings
        answer = ["what", "is", "this"]
        assert runner.intake().ignored == 0 and runner.intake().ignored == 0
        said = [line for line in lines if "ignored() answered" in line]
        assert said == [
            "eagle station line-1: warning: its source's ignored() answered ['what', 'is', 'this'], not (count, last) "
            "nor (count, last, seconds): the files it does not take are not shown in the status"
        ], lines
    finally:
        state.close()


def test_until_idle_takes_no_look_that_a_step_began_or_ended_during() -> None:
    """``--until-idle`` asks each station whether it is busy, then looks at its source and outbox: a step begun
    between the two (an image taken, its folder taken away meanwhile, its verdict not stored yet) made the look see
    nothing waiting and nothing owed, and the run ended mid-image without the lines the image's outcome says (a
    flaky run of the held-deliveries test above). A look during which a step began or ended is not taken."""
    from types import SimpleNamespace

    from eagle_iad.station.runner import StationManager

    class Runner:
        def __init__(self, steps_during_look: int) -> None:
            self.busy, self.steps, self.during = False, 0, steps_during_look

        def idle(self) -> bool:
            self.steps += self.during  # the intake thread's step, while the manager looks
            return True

    def manager_idle(*runners: Runner) -> bool:
        fake = SimpleNamespace(all=lambda: [SimpleNamespace(runner=r) for r in runners])
        return StationManager.idle(fake)  # type: ignore[arg-type]

    assert manager_idle(Runner(0), Runner(0))
    assert not manager_idle(Runner(0), Runner(1))  # a step began during the look
    assert not manager_idle(Runner(2))  # one began and ended during it
    busy = Runner(0)
    busy.busy = True
    assert not manager_idle(busy)


def test_a_folder_sink_linking_across_file_systems_is_refused_at_start_naming_both(tmp_path: Path) -> None:
    """``link = true`` with the hot folder on tmpfs and ``path`` on the disk (finding 6 of the line's tester):
    every hard link would fail with EXDEV, retried for ever with every later verdict behind it; the station is
    refused when read, in one line naming both file systems. Copying, or linking on one file system, starts."""
    shm = Path("/dev/shm")
    if not shm.is_dir() or os.stat(shm).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("needs /dev/shm on another file system than the test's folder")
    (tmp_path / "models" / "mono").mkdir(parents=True)  # read_stations only looks for the category's folder
    hot = Path(tempfile.mkdtemp(prefix="eagle-link-", dir=shm))
    try:

        def stations(link: bool, sorted_path: Path) -> Path:
            path = tmp_path / "stations.toml"
            path.write_text(f'models = "models"\nstate = "state"\n[[station]]\nname = "line-1"\ncategory = "mono"\n'
                            f'source = {{ kind = "folder", path = "{hot}" }}\n[[station.sink]]\nkind = "folder"\n'
                            f'path = "{sorted_path}"\nlink = {json.dumps(link)}\n')  # fmt: skip
            return path

        path = stations(True, tmp_path / "sorted")
        with pytest.raises(StationConfigError) as caught:
            read_stations(path)
        message = str(caught.value)
        assert message.startswith(f"{path}: station 'line-1': sink 1 (folder): link = true needs the hot folder and "
                                  f"path on one file system (a hard link cannot cross file systems): the images are "
                                  f"in {hot / 'done'}, on /dev/shm (tmpfs), and path {tmp_path / 'sorted'} is on "
                                  ), message  # fmt: skip
        assert message.endswith("; set link = false to copy them, or choose a path on the hot folder's file system")
        assert "\n" not in message
        read_stations(stations(False, tmp_path / "sorted")).close()  # copies: fine
        read_stations(stations(True, hot / "sorted")).close()  # one file system: fine
    finally:
        shutil.rmtree(hot, ignore_errors=True)


def test_a_verdict_is_durable_before_any_sink_can_have_it(
    model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Power loss is not a kill (finding 8 of the line's tester): the history's commits fsync the WAL
    (``synchronous=FULL``: with NORMAL a commit a sink then delivered could be rolled back by a power cut), and the
    move to ``done/`` is fsynced (its folder) before the transaction that makes the deliveries due."""
    from eagle_iad.station import runner as runner_module

    incoming = tmp_path / "incoming"
    (name,) = _drop(incoming, _cells(1))
    runner, state, lines = _runner(tmp_path, model_dir)
    events: list[str] = []
    real_sync, real_filed = runner_module.sync_folder, runner.tables.filed

    def sync(folder: Path) -> None:
        events.append(f"sync {folder}")
        real_sync(folder)

    def filed(*args: Any, **kwargs: Any) -> None:
        events.append("filed")
        real_filed(*args, **kwargs)

    monkeypatch.setattr(runner_module, "sync_folder", sync)
    monkeypatch.setattr(runner.tables, "filed", filed)
    assert state.store.read("PRAGMA synchronous") == [(2,)]  # FULL
    runner.step()  # the first look only starts the file's settling time
    time.sleep(0.3)
    runner.step()
    assert (incoming / "done" / name).exists(), lines
    assert events == [f"sync {incoming / 'done'}", "filed"], events
    state.close()


def test_an_edit_to_the_stations_file_while_it_runs_is_said_once_and_shown_by_the_status(
    model_dir: Path, tmp_path: Path
) -> None:
    """An edit is not applied while ``eagle station run`` runs (finding 5 of the line's tester: it was ignored
    without a word, and ``eagle station status``, which reads the file as it is now, showed a sink that did not
    run as healthy). The run says so in one warning line, and the status' first warning says the file differs from
    the one the process started with, naming the sinks it runs."""
    stations = _stations(tmp_path, model_dir, '\n[[station.sink]]\nkind = "folder"\npath = "sorted"\n')
    (tmp_path / "incoming").mkdir()
    running = Running(stations)
    try:
        intake = tmp_path / "state" / "stations" / "line-1.json"
        running.until(intake.exists, "the station did not start")
        assert not any("changed" in warning for warning in _status(stations)["warnings"])
        stations.write_text(stations.read_text().replace('path = "sorted"', 'path = "sorted"\nname = "mes"'))
        running.until(lambda: running.saw("changed since this run started"), "the edit was not said")
        line = next(line for line in running.lines if "changed since" in line)
        assert line == (f"eagle station: warning: {stations} changed since this run started; restart to apply "
                        "(SIGTERM, then start again: nothing is lost); this run goes on with the file as it "
                        "started\n")  # fmt: skip
        status = _status(stations)
        assert status["warnings"][0] == (
            "stations.toml changed since the running process started with it (it runs the sinks folder); restart it "
            "to apply the change (SIGTERM, then start again: nothing is lost); the sinks and figures below are of "
            "the file as it is now"
        ), status
        time.sleep(5)  # more looks at the file: the same change is not said again
        assert sum("changed since" in line for line in running.lines) == 1, running.log()
    finally:
        assert running.stop() == 143, running.log()
    # not running: nothing to compare with
    assert not any("changed since" in warning for warning in _status(stations)["warnings"])


@pytest.mark.parametrize("duplicates", ["refuse", "skip"])
def test_a_part_whose_file_repeats_an_inspected_content_still_gets_an_answer(
    model_dir: Path, tmp_path: Path, receiver: Receiver, duplicates: str
) -> None:
    """A frozen camera sends the first part's image for the next two parts (finding 3 of the line's tester: the
    sinks got one message for three parts, and a PLC waiting per part timed out, or a gate passed them). By default
    (``duplicates = "refuse"``) each repeat is told to every sink as a refusal of its own, under its own image name
    and key, naming the earlier record (``refused.repeat_of``), in the order taken; with ``"skip"``, nothing is
    sent, as before. Either way it is not inspected again."""
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    data = _cells(1)[0].read_bytes()
    for n in (1, 2, 3):
        part = incoming / f"part-00{n}.png"
        part.write_bytes(data)
        os.utime(part, (time.time() - 30 + n, time.time() - 30 + n))  # taken in this order
    stations = _stations(tmp_path, model_dir, _webhook(receiver.port))
    if duplicates == "skip":
        stations.write_text(
            stations.read_text().replace('category = "mono"\n', 'category = "mono"\nduplicates = "skip"\n')
        )
    code, log = _run(stations, "run", "--until-idle")
    assert code == 0, log
    (record,) = _history(tmp_path)
    assert record.image_name == "part-001.png"
    bodies = [r["body"] for r in receiver.received]
    assert bodies[0]["record"]["id"] == record.id and all(r["signed"] for r in receiver.received)
    said = [line for line in log.splitlines() if "not inspected again" in line]
    assert len(said) == 2, log
    if duplicates == "skip":
        assert len(bodies) == 1 and all(line.endswith("not inspected again, no new verdict") for line in said)
        return
    assert len(bodies) == 3, bodies
    for body, name in zip(bodies[1:], ("part-002.png", "part-003.png"), strict=True):
        refused = body["refused"]
        assert body["event"] == "refused" and refused["image_name"] == name, body
        # its own file's place in done/, where it is, not the earlier part's (done/part-001.png)
        assert body["image"] == str(incoming / "done" / name) and (incoming / "done" / name).read_bytes() == data
        assert refused["repeat_of"] == record.id and refused["image_sha256"] == record.image_sha256
        assert refused["reason"].startswith(f"same content as record {record.id}: not inspected again")
    keys = receiver.keys()
    assert len(set(keys)) == 3 and keys[1].startswith("refused-") and keys[2].startswith("refused-")
    assert all(line.endswith("not inspected again, told to the sinks as refused") for line in said), said


def test_the_folder_sinks_start_line_names_every_folder_it_writes(tmp_path: Path) -> None:
    """The start line said "copies in normal/, anomalous/, undecided/" and left out unrecognised/, which the sink
    writes (and the manual and console name): the list is read from the one declaration the deliveries use."""
    from eagle_iad.station.sinks.folder import DECISION_FOLDERS

    sink = '\n[[station.sink]]\nkind = "folder"\npath = "sorted"\n'
    stations = read_stations(_stations(tmp_path, tmp_path / "models", sink), fitted=False, looking=True)
    try:
        said = stations.stations[0].sinks[0].sink.describe()
    finally:
        stations.close()
    assert said == (f"folder {tmp_path / 'sorted'} (copies in normal/, anomalous/, unrecognised/, undecided/; refused "
                    "images in refused/)")  # fmt: skip
    assert set(DECISION_FOLDERS.values()) == {"normal", "anomalous", "unrecognised"}
