"""The camera source (``kind = "camera"``, OpenCV) with real video: a video file written here of real elpv
cells, and an HTTP MJPEG stream served by the test (the stand-in for an IP camera; no RTSP server needed).

What must hold (issue "On the line": camera or stream through OpenCV): a frame is taken on its trigger
(every N-th frame, every T ms, a trigger call) with its capture time in the record's ``source``; the
station inspects exactly those frames, losslessly (the score of a stored frame is the expert's score on
the same pixels), colours kept (a red frame stays red); a video file ends the source, so ``--until-idle``
ends once every selected frame was inspected; a live stream keeps only the newest frames when the station
falls behind; a bad option is one line naming the field.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import test_station
from conftest import wait_s
from test_station import _cells, _env, _history, _run

from eagle_iad.errors import FolderInUseError
from eagle_iad.images import load_rgb
from eagle_iad.station.config import read_stations
from eagle_iad.station.parts import Arrival, Options, StationConfigError
from eagle_iad.verdict import make_verdict

cv2 = pytest.importorskip("cv2", reason="OpenCV is not installed (pip install 'eagle-iad[camera]')")

from eagle_iad.station.sources.camera import QUEUE, Camera  # noqa: E402  (after the OpenCV check)

model_dir = test_station.model_dir  # the module-scoped fixture: a small real model of elpv mono cells

SOURCE_LINE = re.compile(r"^(?P<what>.+) frame (?P<index>\d+) at (?P<at>\S+)$")


def _frames(count: int, size: int = 300) -> list[np.ndarray]:
    """``count`` real elpv cells (RGB, ``size`` px square), cycling through the test split's first 30."""
    cells = [cv2.resize(load_rgb(cell), (size, size)) for cell in _cells(min(count, 30))]
    return [cells[i % len(cells)] for i in range(count)]


def _video(path: Path, frames: list[np.ndarray], fps: float = 10.0) -> Path:
    """A Motion-JPEG .avi of ``frames`` (RGB), as an opencv-python-headless build writes one."""
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (width, height))
    assert writer.isOpened(), "OpenCV cannot write an MJPG .avi here"
    for rgb in frames:
        writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def _decoded(path: Path) -> list[np.ndarray]:
    """Every frame of a video as OpenCV decodes it, in RGB."""
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, bgr = capture.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    capture.release()
    return frames


def _camera_stations(work: Path, models: Path, source: str) -> Path:
    path = work / "stations.toml"
    path.write_text(f"""models = "{models}"
state = "state"

[[station]]
name = "line-1"
category = "mono"
source = {{ kind = "camera", {source} }}

[[station.sink]]
kind = "folder"
path = "sorted"
""")
    return path


def _camera(work: Path, **table: Any) -> Camera:
    options = Options({"kind": "camera", **table}, "test: source", work)
    assert options.text("kind") == Camera.kind  # read by the stations file's reader, as here
    camera = Camera(options)
    options.done()
    return camera


def _drain(camera: Camera, until: int | None = None) -> list[Arrival]:
    """Poll ``camera`` as the station does (each arrival finished) until its backlog is 0 (or ``until`` came)."""
    taken: list[Arrival] = []
    deadline = time.monotonic() + wait_s(60)
    while True:
        for arrival in camera.poll():
            taken.append(arrival)
            camera.finish(arrival, camera.planned(arrival), {})
        if (camera.backlog() == 0 and until is None) or (until is not None and len(taken) >= until):
            return taken
        assert time.monotonic() < deadline, f"the camera handed {len(taken)} frames, then nothing for a minute"
        time.sleep(0.02)


def _capture_time(source: str) -> float:
    match = SOURCE_LINE.match(source)
    assert match is not None, source
    at = datetime.fromisoformat(match["at"])
    assert at.tzinfo is not None and at.utcoffset() == UTC.utcoffset(None), source
    assert re.search(r"\.\d{3}Z$", match["at"]), source  # milliseconds, UTC
    return at.timestamp()


class MjpegStream:
    """An HTTP MJPEG stream (``multipart/x-mixed-replace``) of JPEG frames at ``fps``, as IP cameras serve."""

    def __init__(self, frames: list[np.ndarray], fps: float = 10.0, port: int = 0) -> None:
        self.jpegs = [cv2.imencode(".jpg", cv2.cvtColor(f, cv2.COLOR_RGB2BGR))[1].tobytes() for f in frames]
        self.fps = fps
        self.halt = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.send_header("Cache-Control", "no-cache")
                self.end_headers()
                sent = 0
                try:
                    while not outer.halt.is_set():
                        jpeg = outer.jpegs[sent % len(outer.jpegs)]
                        self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: "
                                         + str(len(jpeg)).encode() + b"\r\n\r\n" + jpeg + b"\r\n")  # fmt: skip
                        self.wfile.flush()
                        sent += 1
                        outer.halt.wait(1 / outer.fps)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/stream.mjpg"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.halt.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def stream() -> Iterator[MjpegStream]:
    served = MjpegStream(_frames(10, size=128))
    try:
        capture = cv2.VideoCapture(served.url)
        ok = capture.isOpened() and capture.read()[0]
        capture.release()
        if not ok:
            pytest.skip(f"OpenCV {cv2.__version__} cannot read an HTTP MJPEG stream here (its FFmpeg backend is "
                        f"missing or lacks http): {served.url} did not open")  # fmt: skip
        yield served
    finally:
        served.stop()


def test_a_video_file_every_tenth_frame_is_inspected_losslessly_and_the_run_ends(
    model_dir: Path, tmp_path: Path
) -> None:
    """30 frames, ``every_n_frames = 10``: frames 0, 10 and 20 (the first frame read is taken, then every
    10th), each inspected once; ``--until-idle`` ends at the file's end."""
    from eagle_iad.expert import load_expert

    video = _video(tmp_path / "line.avi", _frames(30))
    stations = _camera_stations(tmp_path, model_dir, 'url = "line.avi", every_n_frames = 10')
    code, log = _run(stations, "run", "--until-idle")
    assert code == 0, log
    history = _history(tmp_path)
    assert [r.image_name for r in history] == ["frame-00000000.png", "frame-00000010.png", "frame-00000020.png"]
    times = []
    for record, index in zip(history, (0, 10, 20), strict=True):
        match = SOURCE_LINE.match(str(record.source))
        assert match is not None and match["what"] == str(video) and int(match["index"]) == index, record.source
        times.append(_capture_time(str(record.source)))
    assert times == sorted(times) and abs(times[0] - time.time()) < wait_s(600)
    stored = sorted((tmp_path / "sorted").glob("*/*.png"))
    assert len(stored) == 3, stored
    assert sorted(p.name for p in (tmp_path / "frames").glob("*.png")) == [r.image_name for r in history]
    decoded = _decoded(video)
    expert = load_expert(model_dir / "mono")
    for record, index in zip(history, (0, 10, 20), strict=True):
        png = tmp_path / "sorted" / str(record.decision) / f"{record.id}_{record.image_name}"
        pixels = load_rgb(png)
        assert np.array_equal(pixels, decoded[index])  # exactly the frame OpenCV decoded: PNG is lossless
        result = expert.inspect(pixels)
        assert record.score == pytest.approx(result.score, rel=1e-5)
        # the synthetic frames may lie beyond the cells' coverage: the verdict's own rule decides
        assert record.decision == make_verdict(expert, png.name, result).decision


def test_a_video_file_hands_every_selected_frame_once_red_stays_red_and_ends(tmp_path: Path) -> None:
    """A file waits for the station (no frame dropped however far behind it is), and ends the source."""
    red = np.zeros((48, 64, 3), np.uint8)
    red[..., 0] = 255
    _video(tmp_path / "red.avi", [red] * 20)
    camera = _camera(tmp_path, url="red.avi", every_n_frames=1, name_prefix="cam")
    try:
        assert camera.backlog() == 0  # nothing opened until the first poll (``eagle station status``)
        list(camera.poll())  # starts the reader; nothing is finished, so the queue fills
        deadline = time.monotonic() + wait_s(30)
        while camera.backlog() < QUEUE:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        time.sleep(0.3)
        assert camera.backlog() == QUEUE and camera.dropped == 0  # full: the reader waits for room
        arrivals = _drain(camera)
        assert [a.name for a in arrivals] == [f"cam-{i:08d}.png" for i in range(20)]
        assert camera.backlog() == 0 and camera.dropped == 0 and list(camera.poll()) == []
        for arrival in arrivals:  # saved before being handed over, where the verdict's "image" says
            assert arrival.data is not None and arrival.path == tmp_path / "frames" / arrival.name
            assert camera.planned(arrival) == arrival.path and arrival.path.read_bytes() == arrival.data
            rgb = load_rgb(arrival.data)  # the inspection's own decoder
            assert rgb.shape == (48, 64, 3)
            assert rgb[..., 0].min() > 200 and rgb[..., 1:].max() < 60, "the frame's colours changed"
        assert [a.appeared for a in arrivals] == sorted(a.appeared for a in arrivals)
        camera.refuse(arrivals[0], "too many pixels")  # as a hot folder: failed/, the reason beside it
        assert (tmp_path / "frames" / "failed" / "cam-00000000.png").read_bytes() == arrivals[0].data
        assert (tmp_path / "frames" / "failed" / "cam-00000000.png.reason.txt").read_text() == "too many pixels\n"
    finally:
        camera.close()
    assert camera._reader is not None and not camera._reader.is_alive()
    again = _camera(tmp_path, url="red.avi", every_n_frames=10, name_prefix="cam")
    try:  # a second run counts from 0 again: a frame already saved is never replaced
        assert [a.name for a in _drain(again)] == ["cam-00000000.png", "cam-00000010-1.png"]
    finally:
        again.close()


def test_every_ms_on_a_video_file_counts_in_the_files_own_time(tmp_path: Path) -> None:
    """At 10 fps, ``every_ms = 250`` takes frames 0, 3, 6, 9 (0 ms, 300 ms, ...), however fast the file is read."""
    _video(tmp_path / "clip.avi", _frames(12, size=64), fps=10)
    camera = _camera(tmp_path, url="clip.avi", every_ms=250)
    try:
        assert [a.name for a in _drain(camera)] == [f"frame-{i:08d}.png" for i in (0, 3, 6, 9)]
    finally:
        camera.close()


def test_a_live_stream_keeps_the_newest_frames_when_the_station_falls_behind(
    tmp_path: Path, stream: MjpegStream
) -> None:
    camera = _camera(tmp_path, url=stream.url, every_n_frames=1, reconnect_s=0.5)
    try:
        # Starts the reader; on a busy machine a frame may already have arrived, and is then handed
        # over here: a frame handed to the station is kept until it is done with, never dropped.
        early = [int(a.name[len("frame-") : -len(".png")]) for a in camera.poll()]
        deadline = time.monotonic() + wait_s(60)
        while camera.dropped < 3:
            assert time.monotonic() < deadline, "no frame was dropped although none was taken"
            time.sleep(0.05)
        assert camera.backlog() == QUEUE
        arrivals = list(camera.poll())[:QUEUE]
        indexes = [int(a.name[len("frame-") : -len(".png")]) for a in arrivals]
        fresh = [i for i in indexes if i not in early]
        assert len(indexes) == QUEUE and indexes == sorted(set(indexes))  # in order
        assert indexes[: len(early)] == early and fresh[0] >= 3 + len(early)  # the newest of the rest
        assert "frames dropped so far" in camera.describe()
        assert all(a.source.startswith(f"{stream.url} frame ") for a in arrivals)
    finally:
        camera.close()
    assert camera._reader is not None and not camera._reader.is_alive()


def test_a_stream_that_drops_is_reopened(tmp_path: Path, stream: MjpegStream) -> None:
    first = MjpegStream(_frames(3, size=64))
    port = first.server.server_address[1]
    lines: list[str] = []
    camera = _camera(tmp_path, url=first.url, every_n_frames=1, reconnect_s=0.2)
    camera.log = lines.append
    second = None
    try:
        before = _drain(camera, until=2)
        first.stop()  # the connection closes: the stream ended
        deadline = time.monotonic() + wait_s(60)
        while not any("cannot be opened" in line for line in lines):
            assert time.monotonic() < deadline, lines
            time.sleep(0.05)
        # no frame meanwhile: the station's state says so (waiting: <this>), not "running"
        said = camera.station_warning()
        assert said is not None and said.startswith("camera cannot be opened since "), said
        assert said.endswith("; trying again every 0.2 s; no frame is taken meanwhile"), said
        second = MjpegStream(_frames(3, size=64), port=port)
        after = _drain(camera, until=2)
        assert camera.station_warning() is None  # opened again
        assert int(after[0].name[6:14]) > int(before[-1].name[6:14])  # frames counted on across the reopening
        assert [line.split(": ", 2)[2] for line in lines[:3]] == [
            "no frame for 10 s or the stream ended; reopening in 0.2 s",
            "cannot be opened; trying again every 0.2 s",
            "opened",
        ], lines
    finally:
        camera.close()
        first.stop()
        if second is not None:
            second.stop()


def test_an_http_trigger_takes_the_next_frame_only(tmp_path: Path, stream: MjpegStream) -> None:
    camera = _camera(tmp_path, url=stream.url, trigger="http")
    try:
        list(camera.poll())
        time.sleep(1.0)  # frames flow (10 fps), none is taken without a trigger
        assert list(camera.poll()) == [] and camera.backlog() == 0
        asked = time.time()
        camera.trigger()
        (arrival,) = _drain(camera, until=1)
        assert arrival.appeared >= asked - 0.01 and arrival.data is not None
        time.sleep(0.5)
        assert list(camera.poll()) == []  # one trigger, one frame
    finally:
        camera.close()


def test_a_station_on_an_mjpeg_stream_takes_a_frame_every_300_ms(
    model_dir: Path, tmp_path: Path, stream: MjpegStream
) -> None:
    stations = _camera_stations(tmp_path, model_dir, f'url = "{stream.url}", every_ms = 300')
    process = subprocess.Popen([sys.executable, "-m", "eagle_iad.cli", "station", "run", str(stations)],
                               cwd=tmp_path, env=_env(), stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        deadline = time.monotonic() + wait_s(180)
        while len(list((tmp_path / "sorted").glob("*/*.png"))) < 3:
            assert process.poll() is None and time.monotonic() < deadline, "the station did not store 3 frames"
            time.sleep(0.1)
        process.send_signal(signal.SIGTERM)
        _, log = process.communicate(timeout=wait_s(60))
    finally:
        process.kill()
        process.communicate()
    assert process.returncode == 143, log
    history = _history(tmp_path)
    assert len(history) >= 2, log
    times = [_capture_time(str(r.source)) for r in history]
    assert all(str(r.source).startswith(f"{stream.url} frame ") for r in history)
    assert all(later - earlier >= 0.2 for earlier, later in itertools.pairwise(times)), times
    assert len(list((tmp_path / "sorted").glob("*/*.png"))) == len(history)


CONFIG_ERRORS = [
    # (the source table's options, the one line the user gets after "<file>: station 'line-1': source: ")
    ('device = 0, url = "line.avi"', "url and device are both given"),
    ("every_ms = 100", "url is missing; give url (rtsp://, http://, https:// or a video file) or device"),
    ('url = "line.avi", every_n_frames = 5, every_ms = 100',
     'every_n_frames and every_ms are both given; choose one trigger: every_n_frames, every_ms or trigger (http, '
     'opcua)'),
    ('url = "line.avi", every_ms = 100, trigger = "http"', "every_ms and trigger are both given"),
    ('url = "gone.avi"', "url {work}/gone.avi is not a video file (no such file)"),
    ('url = "notes.txt"', "url {work}/notes.txt cannot be read as a video by OpenCV"),
    ('url = "ftp://camera/x"', "url 'ftp://camera/x' is not an rtsp://, http:// or https:// URL with a host"),
    ('url = "rtsp://admin:hunter2@/x"', "url 'rtsp://admin:***@/x' is not an rtsp://"),
    ('url = "line.avi", every_n_frames = 0', "every_n_frames must be in [1, 1000000], not 0"),
    ('url = "line.avi", every_ms = 0', "every_ms must be in (0, 86400000], not 0"),
    ('url = "line.avi", trigger = "gpio"', "trigger is 'gpio'; choose one of 'http', 'opcua'"),
    ("device = -1", "device must be in [0, 1023], not -1"),
    ('url = "line.avi", name_prefix = "a/b"', "name_prefix 'a/b' must be 1-64 letters"),
    ('url = "line.avi", frames = "line.avi"', "frames {work}/line.avi exists and is not a folder"),
    ('url = "line.avi", fps = 5', "unknown option 'fps'"),
]  # fmt: skip


@pytest.mark.parametrize(("options", "message"), CONFIG_ERRORS, ids=[m[:40] for _, m in CONFIG_ERRORS])
def test_a_bad_camera_option_is_one_line_naming_the_field(
    model_dir: Path, tmp_path: Path, options: str, message: str
) -> None:
    _video(tmp_path / "line.avi", _frames(2, size=32))
    (tmp_path / "notes.txt").write_text("not a video\n")
    stations = _camera_stations(tmp_path, model_dir, options)
    with pytest.raises(StationConfigError) as caught:
        read_stations(stations)
    expected = f"{stations}: station 'line-1': source: " + message.format(work=tmp_path)
    assert str(caught.value).startswith(expected) and "\n" not in str(caught.value)
    assert "hunter2" not in str(caught.value)


def test_the_cli_says_a_missing_video_file_in_one_line(model_dir: Path, tmp_path: Path) -> None:
    stations = _camera_stations(tmp_path, model_dir, 'url = "gone.avi", every_n_frames = 10')
    code, out = _run(stations, "run")
    assert code == 2 and out == (f"eagle: error: {stations}: station 'line-1': source: url {tmp_path}/gone.avi is "
                                 "not a video file (no such file)\n"), out  # fmt: skip


def test_an_http_trigger_camera_is_refused_by_eagle_station_run_saying_how_to_trigger(tmp_path: Path) -> None:
    """``eagle station run`` has no HTTP route (finding 9 of the line's tester: such a run took 0 frames and exited
    0 without a word): refused at start, in one line naming the service's route and what works here instead. The
    same table is valid for the service (read_stations accepts it)."""
    (tmp_path / "models" / "mono").mkdir(parents=True)  # refused before any model is loaded
    _video(tmp_path / "line.avi", _frames(5))
    stations = _camera_stations(tmp_path, tmp_path / "models", 'url = "line.avi", trigger = "http"')
    read_stations(stations).close()
    code, out = _run(stations, "run", "--until-idle")
    assert (code, out) == (2, f'eagle: error: {stations}: station \'line-1\': source: trigger = "http" takes a frame '
                              "only on POST /v1/stations/line-1/trigger, a route of the service, and eagle station run "
                              "has no HTTP route: nothing could trigger it here; run this station under eagle serve "
                              "(its stations file, or POST /v1/stations), or take frames by time or count here "
                              "(every_ms, every_n_frames)\n"), out  # fmt: skip


def test_a_frame_the_full_disk_cannot_save_leaves_no_part_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A full disk fails a frame's PNG half-way: the frame is not saved (said so), and its part-file in
    ``frames/.partial`` is removed, not left to take the room the next frames need."""
    import errno

    from eagle_iad.station.sources import camera as camera_module

    _video(tmp_path / "clip.avi", _frames(1, size=32))
    camera = _camera(tmp_path, url="clip.avi", every_n_frames=1)
    real_open = open

    class HalfWritten:
        def __init__(self, path: Any) -> None:
            self.real = real_open(path, "wb")

        def __enter__(self) -> Any:
            return self

        def __exit__(self, *exc: object) -> None:
            self.real.close()

        def write(self, data: bytes) -> int:
            self.real.write(data[: len(data) // 2])
            self.real.flush()
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(camera_module, "open", lambda path, mode="r": HalfWritten(path), raising=False)
    try:
        frame = camera_module._Frame(index=0, at=time.time(), pixels=np.zeros((32, 32, 3), np.uint8))
        assert camera._save(frame) == f"cannot be saved in {tmp_path / 'frames'}: No space left on device"
        assert list((tmp_path / "frames" / ".partial").iterdir()) == []
        assert frame.file is None
    finally:
        camera.close()


def test_a_frames_folder_made_again_while_the_camera_runs_is_locked_again(tmp_path: Path) -> None:
    """A frames folder removed (or renamed away) and made again while the camera runs had no lock files: a second
    camera with the prefix, or a hot folder, started on it found it free. The camera takes its locks again on the
    folder now there before it saves a frame in it (one line); where another station took it meanwhile, the frame is
    refused with why, not saved under that station's nose."""
    from eagle_iad.station.sources import camera as camera_module
    from eagle_iad.station.sources.folder_lock import LOCK_NAME, camera_lock_name, lock_folder, lock_frames

    _video(tmp_path / "clip.avi", _frames(1, size=32))
    camera = _camera(tmp_path, url="clip.avi", every_n_frames=1)
    lines: list[str] = []
    camera.log = lines.append
    frames, state = tmp_path / "frames", tmp_path / "state"
    pixels = np.zeros((32, 32, 3), np.uint8)
    try:
        camera.claim("line-1", state)
        assert camera._save(camera_module._Frame(index=0, at=time.time(), pixels=pixels)) is None
        assert lines == []  # nothing replaced: no line
        frames.rename(tmp_path / "frames-old")  # moved away; an operator makes the folder again
        frames.mkdir()
        assert camera._save(camera_module._Frame(index=1, at=time.time(), pixels=pixels)) is None
        assert (frames / camera_lock_name("frame")).is_file() and (frames / LOCK_NAME).is_file()
        assert lines == [f"eagle station line-1: camera {tmp_path / 'clip.avi'}: frames folder {frames} replaced "
                         "(removed and made again, or a lock file of it removed): its locks taken again on the folder "
                         "there now, before any frame is saved in it"]  # fmt: skip
        with pytest.raises(FolderInUseError, match="is taken by another camera station"):
            lock_frames(frames, "frame", "line-2", state)
        with pytest.raises(FolderInUseError, match="is where a camera station saves its frames"):
            lock_folder(frames, "line-3", state)
        shutil.rmtree(frames)  # removed for good: made again by the camera, and locked
        assert camera._save(camera_module._Frame(index=2, at=time.time(), pixels=pixels)) is None
        assert sorted(p.name for p in frames.iterdir()) == [".eagle-camera-frame.lock", LOCK_NAME, ".partial",
                                                            "frame-00000002.png"]  # fmt: skip
        shutil.rmtree(frames)
        frames.mkdir()
        hot = lock_folder(frames, "line-3", state)  # a hot folder took the folder made again first
        try:
            problem = camera._save(camera_module._Frame(index=3, at=time.time(), pixels=pixels))
            assert problem is not None and problem.startswith(
                f"its frames folder {frames} was replaced (removed and made again) and its locks are not this "
                f"station's now: station 'line-1': camera frames folder {frames} is the hot folder of another station"
            ), problem
            assert not (frames / "frame-00000003.png").exists()
        finally:
            hot.release()
        assert camera._save(camera_module._Frame(index=4, at=time.time(), pixels=pixels)) is None  # free again
        assert (frames / "frame-00000004.png").is_file()
    finally:
        camera.release()
        camera.close()
    assert sorted(p.name for p in frames.iterdir()) == [".partial", "frame-00000004.png"]  # its locks removed


def test_each_frame_of_a_still_scene_is_counted_as_inspected(model_dir: Path, tmp_path: Path) -> None:
    """A still scene (or a blocked lens) repeats a frame's pixels: the camera inspects each frame again, and
    ``inspected`` and ``latency_images`` count each frame, as the records and deliveries do (the tester's line: 22
    triggers, 22 records, 22 deliveries, and "inspected": 6, the intake row of a repeated content replacing the
    earlier frame's)."""
    from test_station import _status

    _video(tmp_path / "still.avi", _frames(1) * 20)
    stations = _camera_stations(tmp_path, model_dir, 'url = "still.avi", every_n_frames = 5')
    code, log = _run(stations, "run", "--until-idle")
    assert code == 0, log
    history = _history(tmp_path)
    assert [r.image_name for r in history] == [f"frame-{i:08d}.png" for i in (0, 5, 10, 15)]
    pngs = {(tmp_path / "frames" / r.image_name).read_bytes() for r in history}
    assert len(pngs) == 1  # one content, four frames
    status = _status(stations)
    assert (status["inspected"], status["latency_images"], status["failed"]) == (4, 4, 0), status
    assert status["sinks"]["folder"]["delivered"] == 4, status


def test_a_frame_that_cannot_be_saved_is_refused_to_the_sinks_not_skipped(model_dir: Path, tmp_path: Path) -> None:
    """A triggered part whose frame cannot be saved (``frames`` made unwritable mid-run: here its ``.partial`` a
    file, which root cannot write through either) was a log line only: no sink heard of it, ``failed`` stayed 0, the
    PLC waited for an answer that never came. Each such frame is refused: told to every sink that takes refusals,
    with ``image`` null (nothing of it is anywhere), counted in ``failed``."""
    import json

    from test_station import _status

    _video(tmp_path / "line.avi", _frames(30, size=64))
    (tmp_path / "frames").mkdir()
    (tmp_path / "frames" / ".partial").write_text("in the way\n")
    stations = _camera_stations(tmp_path, model_dir, 'url = "line.avi", every_n_frames = 10')
    code, log = _run(stations, "run", "--until-idle")
    assert code == 0, log
    assert _history(tmp_path) == []
    why = f"cannot be saved in {tmp_path / 'frames'}: File exists"
    assert (
        f"camera {tmp_path / 'line.avi'}: frame 0: {why}; refused, and so is each frame taken until one is saved again"
        in log
    ), log
    for index in (0, 10, 20):
        assert f"frame-{index:08d}.png: not inspected: frame {index}: {why}" in log, log
    told = sorted((tmp_path / "sorted" / "refused").glob("*.json"))
    assert len(told) == 3, told
    payloads = [json.loads(path.read_text()) for path in told]
    assert sorted(p["refused"]["reason"] for p in payloads) == [f"frame {i}: {why}" for i in (0, 10, 20)]
    assert all(p["image"] is None and len(p["refused"]["image_sha256"]) == 64 for p in payloads), payloads
    status = _status(stations)
    assert (status["inspected"], status["failed"], status["sinks"]["folder"]["delivered"]) == (0, 3, 3), status


def test_frames_that_cannot_be_saved_are_a_warning_while_it_lasts(tmp_path: Path) -> None:
    """The camera says so in the status (its ``warning``) from the first frame it could not save until one is saved
    again; the arrival it hands is refused (``refused``, the reason), and its ``refuse`` puts nothing aside."""
    from eagle_iad.station.parts import NotPutAside

    _video(tmp_path / "clip.avi", _frames(20, size=32))
    (tmp_path / "frames").mkdir()
    (tmp_path / "frames" / ".partial").write_text("in the way\n")
    camera = _camera(tmp_path, url="clip.avi", every_n_frames=10, name_prefix="cam")
    lines: list[str] = []
    camera.log = lines.append
    try:
        assert camera.station_warning() is None
        deadline = time.monotonic() + wait_s(30)
        first: list[Arrival] = []
        while not first:
            assert time.monotonic() < deadline
            first = list(itertools.islice(camera.poll(), 1))
            time.sleep(0.02)
        arrival = first[0]
        why = f"cannot be saved in {tmp_path / 'frames'}: File exists"
        assert (arrival.refused, arrival.name, arrival.path) == (
            f"frame 0: {why}",
            "cam-00000000.png",
            tmp_path / "frames" / "cam-00000000.png",
        )
        warning = camera.station_warning()
        assert warning is not None and warning.startswith("frames cannot be saved (the last, frame 0 at ")
        assert warning.endswith(
            f"{why}); each frame taken until one is saved again is refused, told to the sinks that take refusals"
        ), warning
        with pytest.raises(NotPutAside, match="the frame could not be saved in"):
            camera.refuse(arrival, str(arrival.refused))
        (tmp_path / "frames" / ".partial").unlink()
        assert [a.name for a in _drain(camera)] == ["cam-00000010.png"]
        assert camera.station_warning() is None
        assert (
            lines[-1]
            == f"eagle station: camera {tmp_path / 'clip.avi'}: frames are saved again in {tmp_path / 'frames'}"
        )
    finally:
        camera.close()


def test_the_status_answers_while_the_frames_folder_cannot_be_written(model_dir: Path, tmp_path: Path) -> None:
    """``eagle station status`` failed entirely (exit 2, "source: frames ... cannot be created or written by this
    user") exactly when it must say whether the station can run: it answers, with that as a warning."""
    from conftest import unprivileged_cli

    launcher = unprivileged_cli()
    _video(tmp_path / "line.avi", _frames(10, size=64))
    stations = _camera_stations(tmp_path, model_dir, 'url = "line.avi", every_n_frames = 10')
    code, log = _run(stations, "run", "--until-idle")
    assert code == 0, log
    frames = tmp_path / "frames"
    frames.chmod(0o555)
    try:
        code, out = _run(stations, "status", launcher=launcher)
        assert code == 0, out
        status = json.loads(out[out.index("[") :])[0]
        assert status["state"] == "not running" and status["inspected"] == 1, status
        assert status["warnings"][0] == (
            f"source: frames {frames} cannot be created or written by this user: the "
            "station cannot start (eagle station run refuses it), and a running one "
            "refuses each frame it takes, told to the sinks, until it can"
        ), status
        code, out = _run(stations, "run", "--until-idle", launcher=launcher)
        assert code == 2 and f"source: frames {frames} cannot be created or written by this user" in out, out
    finally:
        frames.chmod(0o755)


def test_a_triggered_video_file_shows_no_backlog_while_no_frame_waits(tmp_path: Path) -> None:
    """A video file waiting for triggers showed backlog 1 for ever (status, console "1 of 1000",
    ``eagle_station_backlog``) while nothing waited: it counts the frames triggered only; ``coming`` says that its
    frames are still to come until its end (what ``--until-idle`` waits for), whatever the trigger."""
    _video(tmp_path / "clip.avi", _frames(20, size=32), fps=10)
    camera = _camera(tmp_path, url="clip.avi", trigger="http")
    try:
        assert list(camera.poll()) == []  # starts the reader, which plays the file at its pace
        assert camera.backlog() == 0
        assert camera.coming()
        camera.trigger()
        deadline = time.monotonic() + wait_s(30)
        while camera.backlog() == 0:
            assert time.monotonic() < deadline, "the trigger took no frame"
            time.sleep(0.02)
        (arrival,) = list(camera.poll())
        camera.finish(arrival, camera.planned(arrival), {})
        assert camera.backlog() == 0
        while camera.coming():
            assert time.monotonic() < deadline, "the file did not end"
            time.sleep(0.02)
        assert camera.backlog() == 0
    finally:
        camera.close()
    counted = _camera(tmp_path, url="clip.avi", every_n_frames=5)
    try:  # by count (or time), a file's frames are to come: at least 1 until its end, as before
        next(iter(counted.poll()), None)  # starts the reader
        assert counted.backlog() >= 1 and counted.coming()
    finally:
        counted.close()


def test_until_idle_waits_for_the_end_of_a_triggered_video_file(model_dir: Path, tmp_path: Path) -> None:
    """Its backlog 0 between two parts, a video file waiting for triggers is not idle before its end: ``--until-idle``
    (:meth:`StationRunner.idle`) must not end the run while the file plays, waiting for the PLC."""
    from eagle_iad.service.context import ServiceState
    from eagle_iad.station.runner import StationRunner

    _video(tmp_path / "clip.avi", _frames(20, size=32), fps=10)
    stations = read_stations(_camera_stations(tmp_path, model_dir, 'url = "clip.avi", trigger = "http"'))
    stations.make_folders()
    state = ServiceState(stations.settings(), backend=None)
    runner = StationRunner(stations.stations[0], state, lambda line: None)
    try:
        assert runner.step() == 0  # starts the reader: no trigger, no frame
        assert runner.config.source.backlog() == 0 and not runner.idle()
        deadline = time.monotonic() + wait_s(30)
        while not runner.idle():
            assert time.monotonic() < deadline, "never idle after the file's end"
            time.sleep(0.05)
        assert not runner.config.source.coming()
    finally:
        runner.close()
        stations.close()


def _delivered(work: Path) -> list[str]:
    """The images the folder sink received: ``<decision>/<record id>_<name>`` of each copy (its payload aside)."""
    return sorted(str(p.relative_to(work / "sorted")) for p in (work / "sorted").rglob("*.png"))


def _top_frames(work: Path) -> list[str]:
    """The files of ``frames/``, but the lock files a killed station leaves there (harmless: see folder_lock.py)."""
    return sorted(p.name for p in (work / "frames").iterdir() if p.is_file() and not p.name.startswith(".eagle-"))


def test_a_frame_saved_just_before_a_kill_is_inspected_and_delivered_once_at_the_next_start(
    model_dir: Path, tmp_path: Path
) -> None:
    """Killed (SIGKILL, a real ``eagle station run``) right after the camera saved a frame, before the station
    stored anything of it: the frame was left in ``frames/`` with no record, and a restart counted frames from 0
    again, never looking at it: no sink heard of that part (its PLC got no answer). The next start takes it first,
    under its own name (no copy, not renamed), says so in one line, and delivers it once; a start after that takes
    nothing twice."""
    from test_station import _kill_after_storing

    _video(tmp_path / "line.avi", _frames(30, size=64))
    stations = _camera_stations(tmp_path, model_dir, 'url = "line.avi", every_n_frames = 10')
    _kill_after_storing(stations, _env(), point="camera frame saved")
    assert _history(tmp_path) == [] and _top_frames(tmp_path) == ["frame-00000000.png"]
    saved = (tmp_path / "frames" / "frame-00000000.png").read_bytes()
    code, log = _run(stations, "run", "--until-idle")
    assert code == 0, log
    said = (f"eagle station line-1: camera {tmp_path / 'line.avi'}: 1 frame saved before this start and never "
            "inspected, taken first: frame-00000000.png")  # fmt: skip
    assert log.count(said) == 1, log
    history = _history(tmp_path)
    names = ["frame-00000000.png", "frame-00000000-1.png", "frame-00000010.png", "frame-00000020.png"]
    assert [r.image_name for r in history] == names  # the frame left first; the new run's 0 took the -1
    assert history[0].image_sha256 == hashlib.sha256(saved).hexdigest()
    match = SOURCE_LINE.match(str(history[0].source))
    assert match is not None and int(match["index"]) == 0, history[0].source
    assert _top_frames(tmp_path) == sorted(names)  # no copy, nothing renamed
    assert (tmp_path / "frames" / "frame-00000000.png").read_bytes() == saved
    assert _delivered(tmp_path) == sorted(f"{r.decision}/{r.id}_{r.image_name}" for r in history)  # each once
    payload = json.loads((tmp_path / "sorted" / str(history[0].decision) / f"{history[0].id}_{names[0]}.json")
                         .read_text())  # fmt: skip
    assert payload["image"] == str(tmp_path / "frames" / names[0]), payload
    code, log = _run(stations, "run", "--until-idle")  # again: the video's 3 new frames, nothing taken twice
    assert code == 0 and "saved before this start" not in log, log
    again = _history(tmp_path)
    assert [r.image_name for r in again[:4]] == names and len(again) == 7
    assert [r.image_name for r in again].count("frame-00000000.png") == 1
    assert _delivered(tmp_path) == sorted(f"{r.decision}/{r.id}_{r.image_name}" for r in again)


def test_a_start_takes_only_frames_its_own_station_left_never_inspected(model_dir: Path, tmp_path: Path) -> None:
    """What a start takes must be frames this station saved and never inspected, not an old folder's frames, nor
    another station's: two camera stations of one file saving under one name are refused (one line); more than a
    stop leaves (a new history beside an old ``frames`` folder) is a warning and none is taken; a frame another
    station inspected among them is a warning and none is taken; ``failed/`` is never looked at."""
    from eagle_iad.station.sources.camera import LEFTOVERS

    _video(tmp_path / "line.avi", _frames(30, size=64))
    stations = _camera_stations(tmp_path, model_dir, 'url = "line.avi", every_n_frames = 10')
    one = stations.read_text()
    stations.write_text(one + one[one.index("[[station]]") :].replace('"line-1"', '"line-2"'))
    code, log = _run(stations, "run", "--until-idle")
    assert (code, log) == (2, f"eagle: error: {stations}: stations 'line-1' and 'line-2' both save camera frames in "
                              f"{tmp_path / 'frames'} as frame-*.png; give each camera station its own name_prefix "
                              "(or frames folder)\n"), log  # fmt: skip
    stations.write_text(one)
    old = [tmp_path / "frames" / f"frame-{i:08d}.png" for i in range(100, 101 + LEFTOVERS)]
    (tmp_path / "frames" / "failed").mkdir(parents=True)
    png = cv2.imencode(".png", _frames(1, size=64)[0])[1].tobytes()
    for path in [*old, tmp_path / "frames" / "failed" / "frame-00000099.png"]:
        path.write_bytes(png)
    code, log = _run(stations, "run", "--until-idle")
    assert code == 0, log
    assert (f"eagle station line-1: warning: camera {tmp_path / 'line.avi'}: more than {LEFTOVERS} frames in "
            f"{tmp_path / 'frames'} named frame-*.png were never inspected by this station (a new history beside an "
            "old frames folder?): a stop leaves one, so none is taken; move them away, or into a hot folder to "
            "inspect them") in log, log  # fmt: skip
    assert [r.image_name for r in _history(tmp_path)] == [f"frame-{i:08d}.png" for i in (0, 10, 20)]
    for path in old:
        path.unlink()
    (tmp_path / "frames" / "frame-00000030.png").write_bytes(png)  # left by a kill, then the file is given away
    stations.write_text(one.replace('"line-1"', '"line-2"'))
    code, log = _run(stations, "run", "--until-idle")
    assert code == 0, log
    shared = (f"eagle station line-2: warning: camera {tmp_path / 'line.avi'}: frame-00000020.png in "
              f"{tmp_path / 'frames'} is station 'line-1''s frame (the same frames folder and name_prefix 'frame'): "
              "frames saved before this start and never inspected are not looked for; give each camera station "
              "its own name_prefix")  # fmt: skip
    assert shared in log, log
    assert "frame-00000030.png" not in {r.image_name for r in _history(tmp_path)}
    assert "frame-00000099.png" not in {r.image_name for r in _history(tmp_path)}
    # line-2 has now inspected frames of its own there (frame-000000X0-1.png), newer than line-1's. A frame left by
    # a kill after them is found before line-2's last inspected frame, but line-1's frames lie just behind it: the
    # folder is shared, the frame may be line-1's part, and it is not handed to line-2 (its verdict would reach
    # line-2's sinks and PLC).
    assert {f"frame-{i:08d}-1.png" for i in (0, 10, 20)} <= {r.image_name for r in _history(tmp_path)}
    (tmp_path / "frames" / "frame-00000031.png").write_bytes(png)
    code, log = _run(stations, "run", "--until-idle")
    assert code == 0, log
    assert shared in log, log
    assert "frame-00000031.png" not in {r.image_name for r in _history(tmp_path)}


def test_a_start_decides_from_the_newest_frames_alone_as_from_the_whole_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A camera never removes its frames, so a start must not hold and sort a year's folder: it keeps the newest
    ``LOOKED_AT``. Those must be all the walk can reach: over folders of 0-10 frames never inspected after this
    station's last one, with another station's frame at various depths behind it, what it takes and says equals the
    walk over every frame (``LOOKED_AT`` unbounded), which one frame fewer does not always give."""
    import eagle_iad.station.sources.camera as camera_module

    _video(tmp_path / "line.avi", _frames(1, size=16))
    png = b"\x89PNG frame"
    digest = hashlib.sha256(png).hexdigest()
    differed = 0
    looked_at = camera_module.LOOKED_AT
    cases = [(left, foreign, older) for left in range(11) for foreign in (None, 1, 9, 16, 17) for older in (0, 16, 40)]
    for case, (left, foreign, older) in enumerate(cases):
        # oldest first: ``older`` frames this station inspected (another station's at ``foreign``, counted back
        # from the newest of them), this station's last inspected frame, then ``left`` never inspected
        frames = tmp_path / f"case-{case}" / "frames"
        frames.mkdir(parents=True)
        owner_of: dict[str, str] = {}
        for index in range(older + 1 + left):
            path = frames / f"frame-{index:08d}.png"
            path.write_bytes(png)
            os.utime(path, ns=(index * 10**9, index * 10**9))
            if index <= older:
                owner_of[str(path)] = "line-2" if foreign is not None and older - index == foreign else "line-1"

        def filed_by(paths: Sequence[str], owners: dict[str, str] = owner_of) -> dict[str, list[tuple[str, str]]]:
            return {path: [(owners[path], digest)] for path in paths if path in owners}

        def recovered(looked_at: int, frames: Path = frames, filed_by: Any = filed_by) -> tuple[str | None, list[str]]:
            monkeypatch.setattr(camera_module, "LOOKED_AT", looked_at)
            camera = _camera(frames.parent, url=str(tmp_path / "line.avi"), frames=str(frames))
            said = camera.station_recover("line-1", filed_by)
            return said, [arrival.name for arrival in camera._leftovers]

        whole = recovered(10**9)
        assert recovered(looked_at) == whole, case
        differed += recovered(looked_at - 1) != whole
    assert differed > 0  # the cases reach the bound: one frame fewer looked at changes an answer


def test_a_service_station_takes_the_frame_a_kill_left_at_its_next_start(model_dir: Path, tmp_path: Path) -> None:
    """The service's camera stations (kept in its history, started with it) look for frames saved and never
    inspected at their start as ``eagle station run`` does: the frame is inspected and delivered once, first."""
    import logging

    from conftest import LiveServer
    from test_service import call
    from test_station_service import _app, _post, _until

    data = tmp_path / "data"
    data.mkdir()
    frames = _frames(30, size=64)
    _video(data / "line.avi", frames)
    body = {"name": "line-1", "category": "mono", "sinks": [{"kind": "folder", "path": "sorted"}],
            "source": {"kind": "camera", "url": "line.avi", "every_n_frames": 10}}  # fmt: skip
    with LiveServer(_app(tmp_path, model_dir, data)) as live:
        assert _post(live.base, "/v1/stations", body)[0] == 201
        _until(live.base, "line-1", lambda i: i["sinks"]["folder"]["delivered"] == 3, "the video's 3 frames")
    left = data / "frames" / "frame-00000030.png"  # saved as the camera saves one, then the kill
    left.write_bytes(cv2.imencode(".png", cv2.cvtColor(frames[5], cv2.COLOR_RGB2BGR))[1].tobytes())
    logger = logging.getLogger("eagle_iad.station")
    lines: list[str] = []
    handler = logging.Handler(logging.INFO)
    handler.emit = lambda record: lines.append(record.getMessage())  # type: ignore[method-assign]
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        with LiveServer(_app(tmp_path, model_dir, data)) as live:
            info = _until(live.base, "line-1", lambda i: i["sinks"]["folder"]["delivered"] == 7, "7 delivered")
            assert info["inspected"] == 7, info
            assert call("GET", f"{live.base}/v1/stations/line-1")[2]["inspected"] == 7
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    said = [line for line in lines if "saved before this start" in line]
    assert said == [f"eagle station line-1: camera {data / 'line.avi'}: 1 frame saved before this start and never "
                    "inspected, taken first: frame-00000030.png"], lines  # fmt: skip
    history = _history(tmp_path)
    assert [r.image_name for r in history][3] == "frame-00000030.png" and len(history) == 7
    assert _delivered(data) == sorted(f"{r.decision}/{r.id}_{r.image_name}" for r in history)


def _camera_body(name: str, **source: Any) -> dict[str, Any]:
    """A service camera station on ``line.avi`` that takes a frame only when triggered: it runs until stopped."""
    return {"name": name, "category": "mono", "sinks": [{"kind": "folder", "path": "sorted"}],
            "source": {"kind": "camera", "url": "line.avi", "trigger": "http", **source}}  # fmt: skip


def _lock_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".eagle-"))


def test_two_service_cameras_on_one_frames_folder_and_prefix_are_refused_naming_the_first(
    model_dir: Path, tmp_path: Path
) -> None:
    """The service refuses a second camera on the default ``frames`` and ``name_prefix`` (409 ``folder_in_use``
    naming the first; not created): their frames would interleave and the start-up recovery could not tell whose
    were left. Another prefix shares the folder; a hot folder on it is refused naming the cameras saving there; a
    PATCH restarts a camera on its own frames and prefix; a delete lets them go, and the service's stop too."""
    import os
    import socket

    from conftest import LiveServer
    from test_service import call
    from test_station_service import _app, _patch, _post

    data = tmp_path / "data"
    data.mkdir()
    _video(data / "line.avi", _frames(5, size=64))
    frames, state = data / "frames", tmp_path / "state"
    with LiveServer(_app(tmp_path, model_dir, data)) as live:
        assert _post(live.base, "/v1/stations", _camera_body("line-1"))[0] == 201
        assert _lock_files(frames) == [".eagle-camera-frame.lock", ".eagle-station.lock"]  # made at the claim
        status, answer = _post(live.base, "/v1/stations", _camera_body("line-2"))
        first = f"pid {os.getpid()} on {socket.gethostname()}, station 'line-1', state folder {state}"
        assert (status, answer["error"]["code"], answer["error"]["message"]) == (409, "folder_in_use", (
            f"station 'line-2': camera frames folder {frames} with name_prefix 'frame' is taken by another camera "
            f"station ({first}); two cameras saving frames under one name would interleave them, and neither start "
            "could tell which frames it left: stop that one first, or give this station its own name_prefix (or "
            "frames folder)"))  # fmt: skip
        assert [s["station"] for s in call("GET", f"{live.base}/v1/stations")[2]] == ["line-1"]
        assert _post(live.base, "/v1/stations", _camera_body("line-2", name_prefix="cam2"))[0] == 201
        hot = {"name": "line-3", "category": "mono", "sinks": [{"kind": "folder", "path": "sorted"}],
               "source": {"kind": "folder", "path": "frames"}}  # fmt: skip
        status, answer = _post(live.base, "/v1/stations", hot)
        second = f"pid {os.getpid()} on {socket.gethostname()}, station 'line-2', state folder {state}"
        assert (status, answer["error"]["code"], answer["error"]["message"]) == (409, "folder_in_use", (
            f"station 'line-3': hot folder {frames} is where a camera station saves its frames ({first}; {second}); "
            "this station would take them away as images of its own: stop that one first, or give this station its "
            "own folder"))  # fmt: skip
        status, answer = _patch(live.base, "line-2", {"source": {"name_prefix": "frame"}})  # onto line-1's
        assert (status, answer["error"]["code"]) == (409, "folder_in_use"), answer
        info = call("GET", f"{live.base}/v1/stations/line-2")[2]  # started again as it was, its prefix held again
        assert (info["state"], info["spec"]["source"]["name_prefix"]) == ("running", "cam2"), info
        assert ".eagle-camera-cam2.lock" in _lock_files(frames)
        status, info = _patch(live.base, "line-1", {"deadline_s": 3})  # restarted on its own frames and prefix
        assert (status, info["state"]) == (200, "running"), info
        assert call("DELETE", f"{live.base}/v1/stations/line-1")[0] == 204
        assert _post(live.base, "/v1/stations", _camera_body("line-4"))[0] == 201
        assert call("DELETE", f"{live.base}/v1/stations/line-2")[0] == 204
        assert _lock_files(frames) == [".eagle-camera-frame.lock", ".eagle-station.lock"]  # line-4's
    assert _lock_files(frames) == []  # released at the service's stop


def test_a_frames_folder_an_eagle_station_run_holds_is_refused_by_the_service_and_the_other_way_round(
    model_dir: Path, tmp_path: Path
) -> None:
    """Across processes: while ``eagle station run`` runs a camera on ``frames`` (its defaults), the service
    refuses a camera on the same folder and prefix naming that process; once it stopped, the service's is
    accepted, and an ``eagle station run`` started then exits in one line naming the service's station."""
    import os
    import socket

    from conftest import LiveServer
    from test_station_service import _app, _post

    data = tmp_path / "data"
    data.mkdir()
    _video(data / "line.avi", _frames(5, size=64))
    stations = _camera_stations(data, model_dir, 'url = "line.avi", every_n_frames = 2')
    frames = data / "frames"
    process = subprocess.Popen([sys.executable, "-m", "eagle_iad.cli", "station", "run", str(stations)],
                               cwd=data, env=_env(), stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        lock = frames / ".eagle-camera-frame.lock"
        deadline = time.monotonic() + wait_s(120)
        while not (lock.exists() and lock.read_text()):
            assert process.poll() is None and time.monotonic() < deadline, "eagle station run never held frames/"
            time.sleep(0.1)
        with LiveServer(_app(tmp_path, model_dir, data)) as live:
            status, answer = _post(live.base, "/v1/stations", _camera_body("line-2"))
            assert (status, answer["error"]["code"]) == (409, "folder_in_use"), answer
            assert answer["error"]["message"].startswith(
                f"station 'line-2': camera frames folder {frames} with name_prefix 'frame' is taken by another camera "
                f"station (pid {process.pid} on {socket.gethostname()}, station 'line-1', state folder "
                f"{data / 'state'}); "
            ), answer  # fmt: skip
            process.send_signal(signal.SIGTERM)
            _, log = process.communicate(timeout=wait_s(60))
            assert process.returncode == 143, log
            assert _post(live.base, "/v1/stations", _camera_body("line-2"))[0] == 201
            refused = subprocess.run([sys.executable, "-m", "eagle_iad.cli", "station", "run", str(stations)],
                                     cwd=data, env=_env(), capture_output=True, text=True,
                                     timeout=wait_s(120))  # fmt: skip
    finally:
        process.kill()
        process.communicate()
    lines = refused.stderr.strip().splitlines()
    assert (refused.returncode, lines) == (2, [
        f"eagle: error: station 'line-1': camera frames folder {frames} with name_prefix 'frame' is taken by another "
        f"camera station (pid {os.getpid()} on {socket.gethostname()}, station 'line-2', state folder "
        f"{tmp_path / 'state'}); two cameras saving frames under one name would interleave them, and neither start "
        "could tell which frames it left: stop that one first, or give this station its own name_prefix (or frames "
        "folder)"]), refused.stderr  # fmt: skip
