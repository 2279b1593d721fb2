"""Stopped is not crashed: SIGTERM and SIGINT end every command cleanly, and scratch never piles up.

Real ``eagle`` processes (a signal needs a process to receive it). Each one is told, through the
``EAGLE_TEST_PAUSE`` hook (eagle_iad/stops.py), to announce and wait at a known point with its work
under way (a fit's features on disk, a report's staging folder, an export's scratch), so the signal
lands there and not after a guessed sleep. Then: the conventional exit status (130 / 143), one
``eagle: stopped by ...`` line, no scratch folder in ``TMPDIR``, no staging folder, and the previous
model or report byte for byte. A SIGKILL leaves the scratch folder (nothing can run in the process);
the next command that makes scratch there removes it, and never one whose owner still runs.

The fits use the real backbone on a few elpv cells at ``--size 64`` (seconds); ``eagle attention``
uses the tiny random Qwen2.5-VL (eagle_iad/testing/tiny.py).
"""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import wait_s

from eagle_iad import scratch
from eagle_iad.data import get_layout
from eagle_iad.outputs import record_outputs
from eagle_iad.stops import PAUSE_ENV, PAUSED

SRC = Path(__file__).resolve().parents[1] / "src"
SIGNALS = {"SIGINT": (signal.SIGINT, 130), "SIGTERM": (signal.SIGTERM, 143)}
SMALL_FIT = ["--size", "64", "--coreset-ratio", "0.01", "--quiet"]


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


class Eagle:
    """``python -m eagle_iad.cli ARGS`` with its own ``TMPDIR``, paused at ``pause`` (if given)."""

    def __init__(self, args: list[str], tmpdir: Path, cwd: Path, pause: str | None = None) -> None:
        env = {**os.environ, "PYTHONPATH": str(SRC), "TMPDIR": str(tmpdir), "OMP_NUM_THREADS": "1",
               "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}  # fmt: skip
        env.pop(PAUSE_ENV, None)
        if pause is not None:
            env[PAUSE_ENV] = pause
        self.process = subprocess.Popen([sys.executable, "-m", "eagle_iad.cli", *args], env=env, cwd=cwd,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
        self.stderr: list[str] = []

    def wait_paused(self, name: str) -> None:
        """Read stderr until the process says it waits at ``name`` (it fails the test if it ends first)."""
        assert self.process.stderr is not None
        deadline = time.monotonic() + wait_s(300)
        for line in self.process.stderr:
            self.stderr.append(line)
            if line.strip() == f"{PAUSED}{name}":
                return
            assert time.monotonic() < deadline, "".join(self.stderr)
        out, err = self.process.communicate()
        raise AssertionError(f"ended (status {self.process.returncode}) before pausing at {name!r}:\n"
                             f"{''.join(self.stderr)}{err}{out}")  # fmt: skip

    def finish(self) -> tuple[int, str, str]:
        out, err = self.process.communicate(timeout=wait_s(120))
        return self.process.returncode, out, "".join(self.stderr) + err

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.communicate(timeout=wait_s(60))


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A small real model (8 cells, size 64) and its cells."""
    import torch

    from eagle_iad.expert import ExpertConfig, fit, save

    root = tmp_path_factory.mktemp("stops")
    cells = sorted(s.path for s in get_layout("elpv").samples(None, "mono", "train"))[:8]
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        save(fit(cells, "mono", ExpertConfig(size=64, native_up_to=0, coreset_ratio=0.01)).model, root / "model")
    finally:
        torch.set_num_threads(before)
    test = [s.path for s in get_layout("elpv").samples(None, "mono", "test")]
    return {"model": root / "model", "image": test[0]}


@pytest.fixture(scope="module")
def tiny_qwen(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("transformers")
    from eagle_iad.testing.tiny import TINY_BUILDERS

    return TINY_BUILDERS["qwen2_5_vl"](tmp_path_factory.mktemp("tiny") / "qwen")


@dataclass(frozen=True)
class Case:
    """One command stopped at ``pause``; ``kept``: the folder (relative to the work dir) that must not change."""

    argv: list[str]
    pause: str
    kept: str
    #: Files the command may leave in ``out`` on purpose (``eagle eval``'s run record and its checked test files:
    #: a stopped run resumes).
    resumable: tuple[str, ...] = ()


def _case(command: str, fitted: dict[str, Path], work: Path, request: pytest.FixtureRequest) -> Case:
    import shutil

    shutil.copytree(fitted["model"], work / "model")
    previous = work / "out"
    previous.mkdir()
    (previous / "report.md").write_text("the previous report\n")
    record_outputs(previous, ["report.md"])  # an earlier run's report: the command may replace it, a stop must not
    if command == "fit":
        return Case(["fit", "--layout", "elpv", "--category", "mono", "--limit-train", "8", *SMALL_FIT,
                     "--out", "model"], "fit features", "model")  # fmt: skip
    if command == "eval-expert":
        return Case(["eval-expert", "--layout", "elpv", "--category", "mono", "--model", "model", "--limit-test",
                     "4", "--quiet", "--out", "out"], "staging", "out")  # fmt: skip
    if command == "eval":
        (work / "models").mkdir()
        # --quiet: a missing expert's fit draws progress bars (no newline) over the line the test waits for.
        return Case(["eval", "--layout", "elpv", "--models", "models", "--conditions", "expert", "--limit", "2",
                     "--limit-train", "4", "--quiet", "--out", "out"], "fit features", "model",
                    ("run.json", ".lock", "preflight.json"))  # fmt: skip
    if command == "export":
        return Case(["export", "--model", "model", "--format", "onnx", "--out", "exported"], "scratch export", "model")
    assert command == "attention"
    mllm = request.getfixturevalue("tiny_qwen")
    return Case(["attention", str(fitted["image"]), "--model", "model", "--mllm", f"hf:{mllm}", "--max-new-tokens",
                 "2", "--out", "out"], "staging", "out")  # fmt: skip


@pytest.mark.parametrize("name", SIGNALS)
@pytest.mark.parametrize("command", ["fit", "eval-expert", "eval", "export", "attention"])
def test_a_signal_stops_the_command_cleanly(
    command: str, name: str, fitted: dict[str, Path], tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    signum, status = SIGNALS[name]
    work, tmpdir = tmp_path / "work", tmp_path / "tmp"
    work.mkdir()
    tmpdir.mkdir()
    case = _case(command, fitted, work, request)
    before = {path.name: _snapshot(path) for path in work.iterdir()}
    eagle = Eagle(case.argv, tmpdir, work, pause=case.pause)
    try:
        eagle.wait_paused(case.pause)
        if case.pause.startswith(("fit", "scratch")):
            kind = "fit" if case.pause == "fit features" else "export"
            assert [p.name.split("-")[:2] for p in tmpdir.iterdir()] == [["eagle", kind]]
        else:
            assert [p.name for p in (work / case.kept).iterdir() if p.name.startswith(".staging-")]
        eagle.process.send_signal(signum)
        code, _, err = eagle.finish()
    finally:
        eagle.kill()
    assert code == status, err
    lines = [line for line in err.splitlines() if line.startswith("eagle: stopped")]
    assert len(lines) == 1 and lines[0].startswith(f"eagle: stopped by {name}: eagle {command} "), err
    assert lines[0].endswith("; nothing half-written was kept, scratch and staging folders were removed")
    assert "Traceback" not in err, err
    assert list(tmpdir.iterdir()) == []  # no scratch
    after = {path.name: _snapshot(path) for path in work.iterdir()}
    for name in case.resumable:
        after["out"].pop(name, None)
    assert after == before  # the previous model and report as they were; no staging, no new output folder
    assert not [p for p in work.rglob("*") if p.name.startswith((".staging-", ".model.tmp-"))]


def test_sigkill_leaves_scratch_that_the_next_command_removes_but_never_a_live_one(
    fitted: dict[str, Path], tmp_path: Path
) -> None:
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    fit = ["fit", "--layout", "elpv", "--category", "mono", "--limit-train", "8", *SMALL_FIT]
    alive = Eagle([*fit, "--out", "alive"], tmpdir, tmp_path, pause="fit features")
    killed = Eagle([*fit, "--out", "killed"], tmpdir, tmp_path, pause="fit features")
    try:
        alive.wait_paused("fit features")
        killed.wait_paused("fit features")
        killed.process.send_signal(signal.SIGKILL)
        killed.process.communicate(timeout=wait_s(60))
        owners = {int(p.name.split("-")[2]): p for p in tmpdir.iterdir()}
        assert set(owners) == {alive.process.pid, killed.process.pid}  # the killed one's is left behind
        assert (owners[killed.process.pid] / "features.f32").stat().st_size > 0
        # The next command cleans up first, then works (and, once done, leaves nothing of its own).
        nxt = subprocess.run([sys.executable, "-m", "eagle_iad.cli", *fit, "--out", "next", "--scratch", str(tmpdir)],
                             env={**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}, cwd=tmp_path,
                             capture_output=True, text=True, timeout=wait_s(300))  # fmt: skip
        assert nxt.returncode == 0, nxt.stderr
        assert (tmp_path / "next" / "model.json").is_file()
        assert list(tmpdir.iterdir()) == [owners[alive.process.pid]]  # the live owner's folder is untouched
        alive.process.send_signal(signal.SIGTERM)
        code, _, err = alive.finish()
        assert code == 143, err
        assert list(tmpdir.iterdir()) == []
        assert not (tmp_path / "alive").exists() and not (tmp_path / "killed").exists()
    finally:
        alive.kill()
        killed.kill()


# ------------------------------------------------------------------------------------- in-process units


def _to_main_thread(signum: int) -> None:
    """``signum`` sent to this process's main thread, where Python runs its handlers, as a terminal's Ctrl-C or a
    ``kill`` reaches a command's. Not ``os.kill(os.getpid(), ...)``: the kernel hands a process's signal to any
    thread not blocking it, and by this test the pytest process holds threads of earlier tests' libraries (a
    video reader, a native pool) whose small stacks the C handler may overflow: a CI run ended at this test in a
    bare "Segmentation fault", with not even faulthandler's stacks (its handler could not run on that stack)."""
    signal.pthread_kill(threading.main_thread().ident or 0, signum)


def test_a_signal_raises_stopped_once_and_a_publish_step_is_not_cut_in_two() -> None:
    from eagle_iad.stops import Stopped, stop_on_signals, uninterrupted

    before = signal.getsignal(signal.SIGTERM)
    steps: list[str] = []
    with pytest.raises(Stopped) as stopped, stop_on_signals():
        with uninterrupted():
            _to_main_thread(signal.SIGTERM)
            time.sleep(0.01)  # the handler runs here: deferred, not raised
            steps.append("published")
        steps.append("after")  # not reached: raised as the block ended
    assert steps == ["published"]
    assert (stopped.value.signal_name, stopped.value.exit_status) == ("SIGTERM", 143)
    assert isinstance(stopped.value, KeyboardInterrupt)  # so `except Exception` never swallows it
    assert signal.getsignal(signal.SIGTERM) is before  # the handlers are put back
    with pytest.raises(Stopped) as again, stop_on_signals():
        try:
            _to_main_thread(signal.SIGINT)
            time.sleep(wait_s(5))
        finally:
            _to_main_thread(signal.SIGTERM)  # a second signal during the clean-up is ignored
            time.sleep(0.01)
            steps.append("cleaned")
    assert (again.value.signal_name, again.value.exit_status, steps[-1]) == ("SIGINT", 130, "cleaned")


def test_a_step_that_fails_while_a_stop_waits_still_stops() -> None:
    """A signal deferred by an uninterrupted step whose body then raises (an SQLite 'database is locked') is not
    lost under the error: Stopped is raised from it, so the command stops as asked (a caller catching the error
    and going on would otherwise run on with every later signal ignored)."""
    from eagle_iad.stops import Stopped, stop_on_signals, uninterrupted

    with pytest.raises(Stopped) as stopped, stop_on_signals(), uninterrupted():
        _to_main_thread(signal.SIGTERM)
        time.sleep(0.01)  # deferred
        raise OSError("database is locked")
    assert stopped.value.signal_name == "SIGTERM"
    assert isinstance(stopped.value.__cause__, OSError) and str(stopped.value.__cause__) == "database is locked"
    with pytest.raises(OSError, match="no stop asked"), stop_on_signals(), uninterrupted():
        raise OSError("no stop asked")  # no signal: the error alone


# ------------------------------------------------------------------------------ scratch folders in-process


@pytest.fixture
def root(tmp_path: Path) -> Iterator[Path]:
    folder = tmp_path / "scratch"
    folder.mkdir()
    yield folder
    scratch.set_root(None)


def test_a_scratch_folder_is_named_locked_and_removed(root: Path) -> None:
    with scratch.scratch_folder("fit", root) as folder:
        assert folder.parent == root and folder.name.startswith(f"eagle-fit-{os.getpid()}-")
        assert (folder / scratch.LOCK).is_file()
        (folder / "features.f32").write_bytes(b"x" * 100)
        assert scratch.clean_stale(root) == []  # its owner (this process) runs
        assert folder.is_dir()
    assert list(root.iterdir()) == []
    with pytest.raises(KeyboardInterrupt), scratch.scratch_folder("fit", root):
        raise KeyboardInterrupt
    assert list(root.iterdir()) == []


def test_clean_stale_judges_by_the_lock_not_the_pid(root: Path) -> None:
    """A folder whose lock nobody holds is stale even when its pid names a running process (pids are
    reused); one whose lock is held is kept; hidden ones being set up go only when their pid is gone."""
    reused = root / f"eagle-fit-{os.getpid()}-reused"  # this pid runs, but holds no lock on it
    reused.mkdir()
    (reused / scratch.LOCK).touch()
    held = root / "eagle-fit-1-held"
    held.mkdir()
    (held / scratch.LOCK).touch()
    holder = os.open(held / scratch.LOCK, os.O_RDWR)
    fcntl.flock(holder, fcntl.LOCK_EX)
    gone = 2**22 + 12345  # above the default pid_max: no such process
    pending = root / f".eagle-fit-{gone}-abc"
    pending.mkdir()
    unrelated = root / "eagle-notes"
    unrelated.mkdir()
    try:
        assert sorted(scratch.clean_stale(root)) == sorted([reused, pending])
        assert sorted(p.name for p in root.iterdir()) == ["eagle-fit-1-held", "eagle-notes"]
    finally:
        os.close(holder)
    assert scratch.clean_stale(root) == [held]


def test_the_scratch_root_is_tmpdir_unless_set(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import tempfile

    from eagle_iad.errors import ConfigError

    monkeypatch.setattr(tempfile, "tempdir", str(root))
    assert scratch.scratch_root() == root
    other = root / "other"
    other.mkdir()
    scratch.set_root(other)
    assert scratch.scratch_root() == other.resolve()
    with pytest.raises(ConfigError, match="is not a directory"):
        scratch.set_root(root / "missing")


def test_stopping_the_fit_jobs_interrupts_running_and_queued_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In-process: the running fit stops at its next progress report, the queued one never starts,
    neither saves, both say interrupted, and a fit submitted while stopping is refused (503)."""
    import threading

    from eagle_iad.expert import ExpertConfig
    from eagle_iad.mllm.serving import ApiError
    from eagle_iad.service import jobs as jobs_module
    from eagle_iad.service.store import INTERRUPTED

    started = threading.Event()

    def endless_fit(images: object, category: str, config: object, progress: Callable[[str, int, int], None]) -> None:
        started.set()
        while True:
            progress("features", 0, 1)  # raises JobInterrupted once the manager stops
            time.sleep(0.01)

    saved: list[object] = []
    monkeypatch.setattr(jobs_module, "fit", endless_fit)
    monkeypatch.setattr(jobs_module, "save", lambda *args, **kwargs: saved.append(args))
    manager = jobs_module.JobManager(tmp_path, 1, lambda category: None)
    running = manager.submit("a", [], ExpertConfig())
    queued = manager.submit("b", [], ExpertConfig())
    assert started.wait(wait_s(30))
    manager.stop()
    with pytest.raises(ApiError, match="the service is stopping"):
        manager.submit("c", [], ExpertConfig())
    assert manager.shutdown(wait_s(30)) == 0
    for job in (running, queued):
        assert (job.state, job.error, job.result) == ("failed", INTERRUPTED, None)
        assert [e["state"] for e in job.events if e["event"] == "state"][-1] == "failed"
    assert manager.interrupted == 2 and saved == []


def test_a_fit_past_the_grace_period_is_recorded_interrupted_and_never_saves(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fit stuck between progress reports when the grace period ends: ``shutdown`` returns it as still
    running and records it interrupted; when it does finish, it neither saves nor changes that record."""
    import threading

    from eagle_iad.expert import ExpertConfig
    from eagle_iad.service import jobs as jobs_module
    from eagle_iad.service.store import INTERRUPTED

    started, release = threading.Event(), threading.Event()

    def stuck_fit(images: object, category: str, config: object, progress: object) -> object:
        started.set()
        assert release.wait(wait_s(60))
        return object()

    saved: list[object] = []
    monkeypatch.setattr(jobs_module, "fit", stuck_fit)
    monkeypatch.setattr(jobs_module, "save", lambda *args, **kwargs: saved.append(args))
    manager = jobs_module.JobManager(tmp_path, 1, lambda category: None)
    job = manager.submit("a", [], ExpertConfig())
    assert started.wait(wait_s(30))
    assert manager.shutdown(0.0) == 1
    assert (job.state, job.error) == ("failed", INTERRUPTED)
    events = len(job.events)
    release.set()
    deadline = time.monotonic() + wait_s(30)
    while not all(f.done() for f in manager._futures.values()) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert (job.state, job.error, len(job.events), saved, manager.interrupted) == ("failed", INTERRUPTED, events, [], 1)


def test_a_stopped_station_says_what_its_stop_did(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The line a stopped ``eagle station run`` prints says what the stop does, as docs/STATIONS.md does:
    the image being inspected is finished unless that takes past the grace period, then it stays."""
    from types import SimpleNamespace

    from eagle_iad.cli import main
    from eagle_iad.service.settings import SHUTDOWN_GRACE_S
    from eagle_iad.station import config, runner
    from eagle_iad.stops import Stopped

    def stopped(*args: object, **kwargs: object) -> None:
        raise Stopped(signal.SIGINT)

    assert SHUTDOWN_GRACE_S == 10
    read = SimpleNamespace(settings=lambda: SimpleNamespace(shutdown_grace_s=SHUTDOWN_GRACE_S))
    monkeypatch.setattr(config, "read_stations", lambda path: read)
    monkeypatch.setattr(runner, "run_stations", stopped)
    assert main(["station", "run", "examples/stations.toml"]) == 130
    assert capsys.readouterr().err == (
        "eagle: stopped by SIGINT: eagle station run examples/stations.toml: the image being inspected was finished "
        "(stored and put away), or, not finished within the 10 s grace period, stays for the next start; no other "
        "image was taken, and undelivered verdicts wait in the outbox; nothing half-written was kept, scratch and "
        "staging folders were removed\n"
    )
