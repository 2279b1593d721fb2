"""Shared fixtures: tiny real-architecture MLLMs, built once per test session (docs/METHOD.md)."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from eagle_iad.mllm.base import GenerateOptions, Reply
from eagle_iad.tgps.prompt import ContentItem

# Tests never reach a model hub: everything they load is built locally.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

#: How much slower than a quiet developer machine this run may be: every wait in the tests (start-up
#: deadlines, joins, subprocess timeouts) is multiplied by it, so a busy machine (``make test-busy``
#: sets 3) stretches the waits instead of failing them. Only waits scale; no test asserts a speed.
SLOWDOWN = max(1.0, float(os.environ.get("EAGLE_TEST_SLOWDOWN", "") or 1))


#: Where a crash of the test process (a segmentation fault in native code) writes every thread's Python stack
#: (``make test-python`` sets it and prints the file's tail when pytest ends by a signal). pytest's own
#: faulthandler writes to stderr, which a CI log may not keep whole; this file is read back onto stdout, so the
#: log names the test and the thread that crashed (CI once showed only "Segmentation fault" after 1,672 tests).
CRASH_LOG = os.environ.get("EAGLE_TEST_CRASH_LOG", "")
_crash_file: list[Any] = []


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    if CRASH_LOG and not _crash_file:
        import faulthandler

        _crash_file.append(open(CRASH_LOG, "w", encoding="utf-8"))  # noqa: SIM115 (open for the whole session)
        faulthandler.enable(file=_crash_file[0], all_threads=True)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_logstart(nodeid: str, location: tuple[str, int | None, str]) -> None:
    if _crash_file:  # the test running when a crash came, named even where no Python frame shows it
        _crash_file[0].seek(0)
        _crash_file[0].truncate()
        _crash_file[0].write(f"running: {nodeid}\n")
        _crash_file[0].flush()


def _crash_handler() -> int | None:
    """The address of the process's SIGSEGV handler (Linux, glibc), None where it cannot be read."""
    import ctypes
    import signal

    class SigAction(ctypes.Structure):
        _fields_ = [("handler", ctypes.c_void_p), ("mask", ctypes.c_ulong * 16), ("flags", ctypes.c_int),
                    ("restorer", ctypes.c_void_p)]  # fmt: skip

    try:
        libc = ctypes.CDLL(None)
        sigaction = libc.sigaction
    except (OSError, TypeError, AttributeError):  # Windows: no C library by that name, no sigaction
        return None
    action = SigAction()
    if sigaction(int(signal.SIGSEGV), None, ctypes.byref(action)) != 0:
        return None
    return int(action.handler or 0)


@pytest.fixture(autouse=True)
def _keeps_the_crash_handler() -> Iterator[None]:
    """A test that leaves the process's SIGSEGV handler replaced fails, naming itself: faulthandler (and the crash
    log above) then say nothing of a later crash. Ray did this in-process (its init takes SIGSEGV, its shutdown sets
    it to the default action): a CI run ended in a bare "Segmentation fault" 1,600 tests later.

    So does a test that leaves the thread's alternate signal stack replaced (eagle_iad/signal_stack.py): OpenVINO's
    CPU plugin made its own buffer the stack and freed it from another thread, and a test sending SIGTERM 400 tests
    later ended the run in a bare "Segmentation fault" (Python's handlers and faulthandler both run on that stack)."""
    from eagle_iad.signal_stack import signal_stack

    before, stack = _crash_handler(), signal_stack()
    yield
    after = _crash_handler()
    assert after == before, (
        "this test left the process's SIGSEGV handler replaced (faulthandler no longer reports a crash)"
    )
    assert signal_stack() == stack, (
        f"this test left the thread's alternate signal stack replaced ({stack} -> {signal_stack()}): a library "
        "that frees it later turns the next signal into a bare segmentation fault (wrap the call in "
        "eagle_iad.signal_stack.keeps_signal_stack)"
    )


def wait_s(seconds: float) -> float:
    """``seconds`` of waiting, stretched by ``EAGLE_TEST_SLOWDOWN`` (default 1)."""
    return seconds * SLOWDOWN


def unprivileged_cli() -> list[str]:
    """``python -m eagle_iad.cli``, as a user whom file permissions bind, even when the tests run as root.

    Root ignores permissions, so a refused write could not be tested; ``setpriv`` drops the
    capabilities that allow it (the test skips, saying so, where setpriv is missing).
    """
    import shutil
    import sys

    launcher = [sys.executable, "-m", "eagle_iad.cli"]
    if os.geteuid() != 0:
        return launcher
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root and setpriv (to drop CAP_DAC_OVERRIDE) is not installed")
    drop = "-dac_override,-dac_read_search"
    return [setpriv, "--bounding-set", drop, "--inh-caps", drop, *launcher]


def schema_6_of_an_earlier_release(version: int = 6) -> list[str]:
    """The statements of a schema-6 history as an earlier eagle-iad of schema 6 made it (``version``: marked as that
    version instead, a history of the current version that lacks what no version adds), from its own DDL (not by
    dropping columns: SQLite has ``DROP COLUMN`` only from 3.35, and eagle-iad supports 3.34): no
    ``station_intake.files`` nor ``.unfiled``, no ``outbox.refusals`` nor ``.last_refused``, no
    ``stations.created_by``, no ``station_faults``, ``station_refusals`` nor ``station_runs``, no ``outbox_held``
    index, no ``audit.category`` nor its index (none has a version of its own), written in SQLite's dialect (a
    backend's ``ddl`` translates each ``CREATE``)."""
    from eagle_iad.history.schema import statements

    earlier = []
    for sql in statements():
        if any(name in sql for name in ("station_faults", "station_refusals", "station_runs", "outbox_held",
                                        "audit_category")):  # fmt: skip
            continue
        for line in ("    files INTEGER NOT NULL DEFAULT 1,\n", "    unfiled INTEGER NOT NULL DEFAULT 0,\n",
                     "    refusals INTEGER NOT NULL DEFAULT 0,\n",
                     "    last_refused INTEGER NOT NULL DEFAULT 0,\n"):  # fmt: skip
            sql = sql.replace(line, "")
        earlier.append(sql.replace(",\n    created_by TEXT\n", "\n").replace(",\n    category TEXT\n", "\n"))
    lacking = ("files", "unfiled", "refusals", "last_refused")
    assert sum(f"{column} INTEGER" in sql for sql in earlier for column in lacking) == 0
    assert sum("created_by" in sql or "category TEXT\n" in sql for sql in earlier) == 0
    return [*earlier, f"INSERT INTO schema_version VALUES ({version})"]


def copy_elpv_cells(root: Path) -> Path:
    """A folder-layout dataset of real elpv cells in ``root/cells``: 6 training normals, 3 normal + 3 cracked tests."""
    import shutil

    from eagle_iad.data import get_layout

    layout = get_layout("elpv")
    test = layout.samples(None, "mono", "test")
    groups = {
        "train/good": layout.samples(None, "mono", "train")[:6],
        "test/good": [s for s in test if s.label == 0][:3],
        "test/crack": [s for s in test if s.label == 1][:3],
    }
    for sub, samples in groups.items():
        folder = root / "cells" / sub
        folder.mkdir(parents=True)
        for sample in samples:
            shutil.copy(sample.path, folder / sample.path.name)
    return root


def start_ray(ray: Any, **options: Any) -> None:
    """``ray.init(**options)`` that tolerates a slow machine: longer timeouts, and one retry.

    Ray waits a fixed 30 s for its raylet to register (not configurable); on two busy cores that can
    run out, so a failed start is logged with its reason, shut down, and tried once more. Worker
    registration and GCS request timeouts are stretched by ``EAGLE_TEST_SLOWDOWN`` through the
    ``RAY_*`` variables the raylet reads.
    """
    os.environ.setdefault("RAY_worker_register_timeout_seconds", str(int(wait_s(60))))
    # Ray starts its workers at niceness 15: beside other work at normal priority they get ~1% of a
    # core (under `make test-busy` an actor had 12 s of CPU in 11 minutes), so the test would crawl.
    os.environ.setdefault("RAY_worker_niceness", "0")
    os.environ.setdefault("RAY_gcs_server_request_timeout_seconds", str(int(wait_s(60))))
    for attempt in (1, 2):
        try:
            ray.init(**options)
            return
        except Exception as exc:  # Ray raises a bare Exception on a start-up timeout
            ray.shutdown()
            if attempt == 2:
                raise
            logging.getLogger("eagle_iad.tests").warning("Ray did not start (%s: %s); retrying once",
                                                         type(exc).__name__, exc)  # fmt: skip


MLLM_FAMILIES = (
    "qwen2_5_vl", "qwen2_vl", "llava", "llava_next", "llava_onevision", "internvl", "idefics3", "smolvlm",
    "qwen3_vl", "glm4v", "gemma3", "minicpmv4_6", "minicpmv4_7",
)  # fmt: skip
#: Where the tiny-MLLM tests run: ``cpu`` by default; ``EAGLE_TEST_DEVICE=cuda`` on a GPU machine
#: runs the same exactness checks in bf16 there.
MLLM_TEST_DEVICE = os.environ.get("EAGLE_TEST_DEVICE", "cpu")


@pytest.fixture(scope="session")
def tiny_mllm_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Saved tiny checkpoints (config + weights + processor + chat template), one per family."""
    pytest.importorskip("transformers")
    from eagle_iad.testing.tiny import TINY_BUILDERS

    root = tmp_path_factory.mktemp("tiny_mllm")
    return {name: TINY_BUILDERS[name](root / name) for name in MLLM_FAMILIES}


@pytest.fixture(scope="session")
def hf_backends(tiny_mllm_dirs: dict[str, Path]) -> Any:
    """Lazily loaded hf backends keyed by ``(family, exact_eager)``, through the public spec loader."""
    from eagle_iad.mllm import load_backend

    cache: dict[tuple[str, bool], Any] = {}

    def get(family: str, exact_eager: bool = False) -> Any:
        key = (family, exact_eager)
        if key not in cache:
            cache[key] = load_backend(
                f"hf:{tiny_mllm_dirs[family]}",
                exact_eager=exact_eager,
                vision_attention="eager",
                device=MLLM_TEST_DEVICE,
            )
        return cache[key]

    return get


@pytest.fixture(scope="session")
def mllm_device() -> str:
    """The device the tiny-MLLM tests use (see ``MLLM_TEST_DEVICE``)."""
    return MLLM_TEST_DEVICE


@pytest.fixture(scope="session")
def prompt_images() -> dict[str, np.ndarray]:
    """Query (56x84: a non-square 2x3 merged Qwen grid), boxed copy and template images."""
    rng = np.random.default_rng(7)
    query = rng.integers(0, 256, (56, 84, 3), dtype=np.uint8)
    boxed = query.copy()
    boxed[10:40, 10:12] = (255, 0, 0)
    template = rng.integers(0, 256, (56, 84, 3), dtype=np.uint8)
    return {"q.png": query, "q_box.png": boxed, "t.png": template}


@pytest.fixture
def torch_single_thread() -> Any:
    """One intra-op thread for the tiny-MLLM tests, restored afterwards.

    Tiny matmuls are dominated by OpenMP synchronisation; on a shared 2-core machine two threads
    made a 3-token generation ~80x slower (1 s vs 12 ms). Results do not depend on the count.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class LiveServer:
    """An ASGI app served by a real ``uvicorn.Server`` on a free loopback port, in a daemon thread.

    Real sockets and real HTTP (not a test client), so the ``openai:`` backend is exercised exactly
    as against a remote ``eagle serve-mllm``; the port is bound before the thread starts (no race).
    """

    def __init__(self, app: Any) -> None:
        import socket
        import threading

        import uvicorn

        self.app = app
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = int(self.sock.getsockname()[1])
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    @property
    def base(self) -> str:
        """``http://127.0.0.1:<port>`` (append ``/v1`` for OpenAI clients)."""
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> LiveServer:
        import time

        self.thread.start()
        deadline = time.monotonic() + wait_s(30)
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=wait_s(10))
        self.sock.close()


#: The name the shared tiny-Qwen server serves its model under.
TINY_SERVED_MODEL = "tiny-qwen"


@pytest.fixture(scope="session")
def live_server() -> Any:
    """``live_server(app)``: a :class:`LiveServer` context manager (for apps a test builds itself)."""
    pytest.importorskip("uvicorn")
    return LiveServer


@pytest.fixture(scope="session")
def tiny_qwen_server(hf_backends: Any) -> Any:
    """``eagle serve-mllm``'s app serving the tiny Qwen2.5-VL (as ``tiny-qwen``) on loopback.

    It shares the in-process backend object, so in-process and over-HTTP answers come from the very
    same weights and the model is loaded once per session.
    """
    pytest.importorskip("uvicorn")
    from eagle_iad.mllm.server import create_mllm_app

    with LiveServer(create_mllm_app(hf_backends("qwen2_5_vl"), model_name=TINY_SERVED_MODEL)) as server:
        yield server


class BlockingBackend:
    """Test double: ``generate`` blocks until released, so a server's MLLM queue fills deterministically."""

    name = "blocking"

    def __init__(self) -> None:
        self.started = threading.Event()
        self.release = threading.Event()
        self.calls = 0

    def generate(
        self, items: Sequence[ContentItem], images: Mapping[str, np.ndarray], options: GenerateOptions
    ) -> Reply:
        self.calls += 1
        self.started.set()
        assert self.release.wait(wait_s(30))
        return Reply(text="A", token_ids=[1], timings={"total_s": 0.0}, caas_applied=False)


@pytest.fixture(scope="session")
def postgres() -> Any:
    """A real PostgreSQL server for the session (eagle_iad/testing/postgres.py), or a skip saying why not."""
    from eagle_iad.testing.postgres import PostgresServer, skip_reason

    reason = skip_reason()
    if reason is not None:
        pytest.skip(reason)
    server = PostgresServer(slowdown=wait_s(1.0)).start()
    try:
        yield server
    finally:
        server.stop()
