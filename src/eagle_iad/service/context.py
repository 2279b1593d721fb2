"""The service's shared state (settings, history, jobs, metrics, expert cache, MLLM) and its dependencies.

Routes get it from ``request.app.state.service`` through :func:`service`, so there are no module
globals and two apps (tests) never share state.
"""

from __future__ import annotations

import logging
import math
import queue
import shutil
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from fastapi import Request

from eagle_iad.errors import ModelFormatError
from eagle_iad.expert import Expert, load_versioned
from eagle_iad.expert.export import SIDECAR
from eagle_iad.expert.store import MANIFEST, TENSORS, clean_leftovers
from eagle_iad.mllm.base import Backend, GenerateOptions, Reply
from eagle_iad.mllm.serving import ApiError, GenerationWorker, Job
from eagle_iad.scratch import clean_stale
from eagle_iad.service.access import MetricsCallers, caller
from eagle_iad.service.audit import PENDING, AuditLog
from eagle_iad.service.idempotency import InFlight
from eagle_iad.service.jobs import JobManager, job_lock
from eagle_iad.service.keys import KeyTable
from eagle_iad.service.lock import StateLock
from eagle_iad.service.metrics import Metrics
from eagle_iad.service.security import hide_models_dir
from eagle_iad.service.settings import ServiceSettings
from eagle_iad.service.state_note import write_note
from eagle_iad.service.storage import StorageWatch
from eagle_iad.service.store import InspectionStore, is_inspection_id
from eagle_iad.tgps.prompt import ContentItem

#: Seconds a pictures folder without a history row must be left alone when replicas share the history:
#: far longer than any inspection takes to store its row after writing its pictures.
ORPHAN_AGE_S = 600


def runtime_mismatch(directory: Path, runtime: str) -> ApiError | None:
    """409 ``wrong_runtime`` where the category folder holds the kind of model this service's ``--runtime`` does
    not run (a fitted model under ``onnx|openvino``, an export under ``torch``), saying which and the flag that
    runs it; ``None`` otherwise.

    Why: answered as a missing model ("no fitted category", or "eagle-export.json is missing ... can be rolled
    back to"), it sent an integrator looking for a broken model when the service was started with the wrong flag.
    """
    from eagle_iad.expert.manifest import EXPORT_NAMES, export_format

    name = directory.name
    if runtime == "torch":
        if (directory / MANIFEST).is_file():
            return None
        fmt = export_format(directory)
        if fmt is None:
            return None
        what = f"an {EXPORT_NAMES[fmt]} export" if fmt in EXPORT_NAMES else "an export"
        flag = "openvino" if fmt == "openvino" else "onnx|openvino"
        return ApiError(409, f"category {name!r} is {what} (written by eagle export), and this service runs fitted "
                             f"models (--runtime torch): serve the export folders with eagle serve --runtime {flag}",
                        code="wrong_runtime")  # fmt: skip
    if (directory / SIDECAR).is_file() or not (directory / MANIFEST).is_file():
        return None
    return ApiError(409, f"category {name!r} is a fitted model, not an export, and this service runs exports "
                         f"(--runtime {runtime}): serve the fitted models with eagle serve --runtime torch, or "
                         f"export it (eagle export --model MODELS/{name}) into the folder this service serves",
                    code="wrong_runtime")  # fmt: skip


_log = logging.getLogger(__name__)


class ExpertCache:
    """Loaded experts per category, each with the number of the model version it is (what an inspection
    records), reloaded when the model directory's files change (a refit, a teach, a threshold change)."""

    def __init__(self, models_dir: Path, runtime: str = "torch") -> None:
        self.models_dir = models_dir
        self.runtime = runtime
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[tuple[int, ...], Expert, int | None]] = {}

    def _signature(self, category: str) -> tuple[int, ...]:
        directory = self.models_dir / category
        try:
            names = (MANIFEST, TENSORS) if self.runtime == "torch" else (SIDECAR,)
            stats = [(directory / name).stat() for name in names]
        except FileNotFoundError as exc:
            mismatch = runtime_mismatch(directory, self.runtime)
            if mismatch is not None:
                raise mismatch from None
            if (directory / MANIFEST).is_file():  # a fitted category whose other file is gone: not a missing one
                missing = Path(exc.filename).name if exc.filename else "a model file"
                raise ApiError(409, f"category {category!r} cannot be loaded: {missing} is missing (its versions, "
                               f"GET /v1/categories/{category}/versions, can be rolled back to)",
                               code="model_invalid") from None  # fmt: skip
            raise ApiError(404, f"no fitted category {category!r}", code="category_not_found") from None
        return tuple(v for s in stats for v in (s.st_ino, s.st_mtime_ns, s.st_size))

    def get(self, category: str) -> Expert:
        return self.loaded(category)[0]

    def loaded(self, category: str) -> tuple[Expert, int | None]:
        """The category's expert and the number of its model version (:func:`~eagle_iad.expert.load_versioned`)."""
        with self._lock:
            signature = self._signature(category)
            cached = self._cache.get(category)
            if cached is not None and cached[0] == signature:
                return cached[1], cached[2]
            try:
                expert, version = load_versioned(self.models_dir / category, self.runtime)
            except ModelFormatError as exc:
                reason = hide_models_dir(str(exc), self.models_dir)  # no host paths in answers
                raise ApiError(409, f"category {category!r} cannot be loaded: {reason}", code="model_invalid") from None
            self._cache[category] = (signature, expert, version)
            if self.runtime != "torch":  # an old export's limits (runtime.export_warnings): /v1/categories lists
                for warning in expert.model.warnings:  # them; the log says them once per load, not per request
                    _log.warning("category %r (--runtime %s): %s", category, self.runtime, warning)
            return expert, version

    def drop(self, category: str) -> None:
        with self._lock:
            self._cache.pop(category, None)


class QueuedBackend:
    """A :class:`Backend` whose ``generate`` goes through the bounded MLLM worker queue.

    Why: inspections and ``/v1/chat/completions`` share one model; both must wait in the same
    bounded line, and a full line answers 429 with Retry-After instead of growing memory.
    """

    def __init__(self, worker: GenerationWorker) -> None:
        self.worker = worker
        self.name = worker.backend.name

    def generate(
        self, items: Sequence[ContentItem], images: Mapping[str, np.ndarray], options: GenerateOptions
    ) -> Reply:
        done = threading.Event()
        outcome: list[Reply | BaseException | None] = [None]

        def finish(reply: Reply | None, error: BaseException | None) -> None:
            outcome[0] = error if error is not None else reply
            done.set()

        job = Job(list(items), dict(images), options, None)
        try:
            self.worker.submit(job, finish)
        except queue.Full:
            raise ApiError(
                429,
                f"the MLLM queue is full ({self.worker.queue_size} waiting); retry later",
                type_="rate_limit_error",
                code="queue_full",
                headers={"Retry-After": str(self.worker.retry_after_s())},
            ) from None
        done.wait()
        result = outcome[0]
        if isinstance(result, BaseException):
            raise result
        assert result is not None
        return result


class ModelChanges:
    """The model changes (a threshold change, a teach, a rollback, a retirement) this process is making now, by
    category: what a retirement refuses to cut short, by name (409 ``category_in_use``), and what refuses a
    change of a category being retired. Why not only the save's own check: a teach scores its images for
    minutes before its save would find the category gone; said at once, nobody's work is lost."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: dict[str, list[str]] = {}

    def running(self, category: str) -> list[str]:
        """What is changing ``category`` now (``"a teach"``), oldest first."""
        with self._lock:
            return list(self._running.get(category, []))

    @contextmanager
    def making(self, category: str, what: str, *, alone: bool = False) -> Iterator[None]:
        """Hold ``what`` as a change of ``category`` for the block; with ``alone``, first refuse (409) while any
        other change of it runs. Any change is refused while a retirement of it runs."""
        with self._lock:
            now = self._running.get(category, [])
            busy = now if alone else [item for item in now if item == RETIREMENT]
            if busy:
                raise ApiError(409, f"category {category!r} is in use: {', '.join(busy)} of it is in progress on this "
                               "service; try again when it has ended", code="category_in_use")  # fmt: skip
            self._running.setdefault(category, []).append(what)
        try:
            yield
        finally:
            with self._lock:
                left = self._running.get(category, [])
                left.remove(what)
                if not left:
                    self._running.pop(category, None)


#: What :class:`ModelChanges` calls a category's retirement.
RETIREMENT = "its retirement"


class ServiceState:
    """Everything the routes share."""

    def __init__(self, settings: ServiceSettings, backend: Backend | None) -> None:
        self.settings = settings
        for directory in (settings.models_dir, settings.files_dir, settings.uploads_dir):
            directory.mkdir(parents=True, exist_ok=True)
        # Everything below cleans up after the previous run: only with the folder to ourselves.
        self.lock = StateLock(settings.state_dir)
        self.lock.acquire()
        try:
            self.store = InspectionStore(settings.history_url)
        except BaseException:
            self.lock.release()
            raise
        self.store.log_upgrade()  # a migration at start is said (older versions refuse the history from now on)
        # Where this service's history and models are, for the CLI given only --state-dir (service/state_note.py).
        write_note(settings.state_dir, settings.history_url, settings.models_dir)
        # Fits cut short by the last stop will never finish: say so, and drop their uploaded images. With
        # a shared history, only those no live replica is running (each holds its job's lock).
        self.store.interrupt_unfinished_jobs(lambda job: self.store.backend.try_lock(job_lock(job["id"])))
        for leftover in settings.uploads_dir.iterdir():
            shutil.rmtree(leftover, ignore_errors=True)
        self._drop_orphan_pictures()
        clean_leftovers(settings.models_dir)  # a fit killed mid-save: the old model back, staging copies gone
        clean_stale()  # scratch folders of fits killed (SIGKILL, out of memory) in this or any earlier process
        self.metrics = Metrics()
        self.metrics_callers = MetricsCallers()  # /metrics answers them during a history outage too
        #: Whether writes are refused for lack of disk space (507): /healthz, /metrics and one log line each way.
        self.storage = StorageWatch({"state": settings.state_dir, "files": settings.files_dir,
                                     "models": settings.models_dir}, settings.min_free_bytes)  # fmt: skip
        self.keys = KeyTable(self.store)
        self.audit = AuditLog(self.store, settings.state_dir / PENDING)
        self.audit.drain()  # rows journalled while the log was busy, before this start
        self.experts = ExpertCache(settings.models_dir, settings.runtime)
        self.jobs = JobManager(settings.models_dir, settings.fit_workers, self.experts.drop, self.store,
                               self.store.backend.try_lock, exclusive=self.store.shared)  # fmt: skip
        self.backend = backend
        self.inspections_in_progress = 0
        self.idempotent = InFlight()  # upload keys whose first request is running (service/idempotency.py)
        self._recent_inspection_s: deque[float] = deque(maxlen=32)
        self._inspection_lock = threading.Lock()
        self.worker: GenerationWorker | None = None
        self.queued: QueuedBackend | None = None
        self.jobs_left_running = 0
        #: Set when the service is stopping (at the signal, before the open requests are answered): live
        #: feeds end so that they do not hold the stop up for the whole grace period.
        self.stopping = threading.Event()
        #: Run when the app starts and (first) when it stops: parts the CLI adds to the service (its stations).
        self.on_start: list[Callable[[], None]] = []
        self.on_close: list[Callable[[], None]] = []
        #: The model changes running now, by category (a retirement waits for none and refuses them all).
        self.model_changes = ModelChanges()
        #: Who uses a category, for a retirement to refuse naming them: each returns lines such as
        #: ``station 'line-1' (runs on this service)``; the CLI adds its stations' (station/routes.py).
        self.category_users: list[Callable[[str], list[str]]] = []

    def _drop_orphan_pictures(self) -> None:
        """Pictures of inspections a kill cut short (never stored), and half-written picture files.

        With a shared history another replica may be writing an inspection's pictures now, before its
        row: there, only folders untouched for :data:`ORPHAN_AGE_S` are taken for orphans.
        """
        oldest = time.time() - ORPHAN_AGE_S if self.store.shared else math.inf
        # An inspection's folder is named by its id (store.new_inspection_id: 32 hex digits); a folder with
        # another kind of name is none of the service's (someone's own, beside them) and is left alone.
        folders = [folder for folder in self.settings.files_dir.iterdir()
                   if is_inspection_id(folder.name) and folder.is_dir() and not folder.is_symlink()
                   and folder.stat().st_mtime <= oldest]  # fmt: skip
        stored = self.store.stored_ids([folder.name for folder in folders])  # in batches, not a query per folder
        removed = 0
        for folder in folders:
            if folder.name not in stored:
                shutil.rmtree(folder, ignore_errors=True)
                removed += 1
                continue
            for partial in folder.glob(".*.tmp"):  # save_png's temporary files
                partial.unlink(missing_ok=True)
        if removed:  # said, not silent: an admin who restored a files folder newer than its history sees why it shrank
            _log.info("removed %d picture folder%s without a history row from %s (inspections a stop or a kill cut "
                      "short before they were stored)", removed, "" if removed == 1 else "s",
                      self.settings.files_dir)  # fmt: skip

    def begin_stop(self) -> None:
        """At the stop signal: live feeds end and running fits start stopping, before open requests finish."""
        self.stopping.set()
        self.jobs.stop()

    def close(self) -> None:
        """Stop the fit jobs (waiting at most the grace period), close the history, give the lock up.

        ``jobs_left_running``: fits that did not reach a progress step within the grace period; their
        records already say interrupted, and the caller may end the process without them.
        """
        self.stopping.set()
        for stop in self.on_close:
            stop()
        self.jobs_left_running = self.jobs.shutdown(self.settings.shutdown_grace_s)
        self.store.close()
        self.lock.release()

    def admit_inspection(self) -> None:
        """Count one more inspection in progress, or refuse it (429) when ``max_inspections`` are."""
        with self._inspection_lock:
            if self.inspections_in_progress >= self.settings.max_inspections:
                recent = self._recent_inspection_s
                mean = sum(recent) / len(recent) if recent else 1.0
                raise ApiError(
                    429,
                    f"{self.inspections_in_progress} inspections are in progress (the limit); retry later",
                    type_="rate_limit_error",
                    code="too_many_inspections",
                    headers={"Retry-After": str(max(1, math.ceil(mean)))},
                )
            self.inspections_in_progress += 1

    def release_inspection(self, seconds: float) -> None:
        """One inspection ended after ``seconds`` (kept to estimate Retry-After)."""
        with self._inspection_lock:
            self.inspections_in_progress -= 1
            self._recent_inspection_s.append(seconds)

    def attach_worker(self, worker: GenerationWorker) -> None:
        self.worker = worker
        self.queued = QueuedBackend(worker)


def service(request: Request) -> ServiceState:
    """The app's :class:`ServiceState`."""
    state: ServiceState = request.app.state.service
    return state


def require_key(request: Request) -> None:
    """Router dependency: every ``/v1`` route needs a caller (401 otherwise); the route's own
    :func:`eagle_iad.service.access.requires` then checks the caller's role (403)."""
    caller(request)
