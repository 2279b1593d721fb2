"""Background fit jobs: a small thread pool, per-job event logs, and a server-sent-events stream.

Why a pool and not a task per request: fitting is CPU-heavy (a backbone pass per image plus the
coreset), so jobs beyond ``workers`` wait their turn instead of slowing each other down. Each job
keeps its events (state changes and ``progress(stage, done, total)`` from the expert's fit hook) so
an SSE client that connects late still sees the whole history. Each job's public record is also
written to the service's SQLite file as it changes, so ``GET /v1/jobs/{id}`` answers after a restart;
a job the restart cut short is reported failed ("interrupted"), never left "running" forever (the
fitted model itself is saved atomically, so it is either there or not).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import shutil
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from eagle_iad.errors import EagleError, HistoryUnavailableError
from eagle_iad.expert import ExpertConfig, fit, save
from eagle_iad.expert.store import ModelChangedError, model_fingerprint, refit_notice
from eagle_iad.history.backend import Lease
from eagle_iad.mllm.serving import ApiError
from eagle_iad.service.store import INTERRUPTED

#: Finished jobs kept for ``GET /v1/jobs/{id}``; older finished ones are forgotten so memory stays bounded.
KEEP_FINISHED = 200
#: Smallest interval between two progress events of the same stage (the final one always goes out).
PROGRESS_INTERVAL_S = 0.05
#: Smallest interval between two writes of a running job's progress to the database.
PERSIST_INTERVAL_S = 1.0


class JobInterrupted(KeyboardInterrupt):
    """Raised in a fit's thread by its progress hook once the service is stopping.

    A :class:`KeyboardInterrupt` (not an ``Exception``), so no ``except Exception`` in the fit code
    swallows it on its way out, and every ``finally`` on the way (the scratch folder) runs.
    """


class JobRecords(Protocol):
    """Where job records outlive the process (the service's SQLite store)."""

    def save_job(self, record: dict[str, Any]) -> None: ...

    def load_job(self, job_id: str) -> dict[str, Any] | None: ...


_log = logging.getLogger(__name__)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass
class FitJob:
    """One fit: its state, its event log, and what it fits."""

    id: str
    category: str
    images: list[Path]
    state: str = "queued"  # queued -> running -> succeeded | failed
    created: str = field(default_factory=_now)
    error: str | None = None
    #: Why it failed, for a client to act on (``model_changed``); ``None`` for other failures.
    error_code: str | None = None
    result: dict[str, Any] | None = None
    #: The model's :func:`~eagle_iad.expert.store.model_fingerprint` when the fit was submitted: the fitted
    #: model replaces only that one (a threshold change, teach or rollback saved meanwhile is not lost).
    replacing: str | None = None
    #: What the model it replaces holds that the fit will not (taught images, a tau set by hand), said in the fit's
    #: warnings (:func:`~eagle_iad.expert.store.refit_notice`); ``None``: nothing.
    replaces: str | None = None
    #: Who started it (the API key's name): the fitted model records it (``fitted_by``).
    by: str | None = None
    events: list[dict[str, Any]] = field(default_factory=list)
    progress: dict[str, Any] | None = None
    cleanup: Path | None = None
    #: Host paths cut out of error messages (the data root, the upload folder): clients see relative names.
    redact: tuple[str, ...] = ()
    #: Where the record is persisted on every state change (and at most every second of progress).
    records: JobRecords | None = None
    #: For a job restored from the database: its image count (the paths are gone).
    image_count: int | None = None
    #: Set when the service stops: the next progress report raises :class:`JobInterrupted`.
    stopping: threading.Event | None = None
    #: The job's locks (:func:`job_lock`, and :func:`fit_lock` with replicas), held from submission to its end.
    lease: Lease | None = None
    #: Read from the history, not run by this process (an earlier run's, or another replica's).
    remote: bool = False
    _last: dict[str, float] = field(default_factory=dict)
    _persisted: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def finished(self) -> bool:
        return self.state in ("succeeded", "failed")

    def emit(self, event: str, **data: Any) -> None:
        with self._lock:
            self.events.append({"event": event, "seq": len(self.events), "time": time.time(), **data})
        now = time.monotonic()
        try:
            if self.records is not None and (event == "state" or now - self._persisted >= PERSIST_INTERVAL_S):
                self._persisted = now
                try:
                    self.records.save_job(self.to_dict())
                except Exception:
                    if event == "state":
                        raise
                    # A progress step that could not be recorded (the history away for a moment): the fit
                    # goes on, and the next step or its end records it.
                    _log.warning("fit job %s: its progress could not be recorded", self.id, exc_info=True)
        finally:
            if event == "state" and self.finished and self.lease is not None:
                lease, self.lease = self.lease, None
                lease.release()  # after the record says how it ended (or failed to): the next fit may start

    @classmethod
    def restored(cls, record: dict[str, Any]) -> FitJob:
        """A finished job from the database: its record, and its final state as the only event."""
        job = cls(id=str(record["id"]), category=str(record["category"]), images=[], state=str(record["state"]),
                  created=str(record["created"]), error=record.get("error"), result=record.get("result"),
                  error_code=record.get("error_code"),
                  progress=record.get("progress"), image_count=int(record.get("images", 0)), remote=True)  # fmt: skip
        final = {"state": job.state, **({"error": job.error} if job.error else {}),
                 **({"error_code": job.error_code} if job.error_code else {}),
                 **({"result": job.result} if job.result else {})}  # fmt: skip
        job.events.append({"event": "state", "seq": 0, "time": time.time(), **final})
        return job

    def report(self, stage: str, done: int, total: int) -> None:
        """The fit hook: rate-limited per stage so a long coreset does not flood the log; it raises
        :class:`JobInterrupted` once the service is stopping (the cooperative stop of a fit thread)."""
        if self.stopping is not None and self.stopping.is_set():
            raise JobInterrupted
        now = time.monotonic()
        if done < total and now - self._last.get(stage, 0.0) < PROGRESS_INTERVAL_S:
            return
        self._last[stage] = now
        self.progress = {"stage": stage, "done": done, "total": total}
        self.emit("progress", stage=stage, done=done, total=total)

    def scrub(self, message: str) -> str:
        """``message`` without the host paths in ``redact``."""
        for prefix in self.redact:
            message = message.replace(prefix + "/", "").replace(prefix, "")
        return message

    def interrupt(self) -> None:
        """Record this job as cut short by the service's stop (failed, ``INTERRUPTED``), uploads removed."""
        self.error = INTERRUPTED
        self.state = "failed"
        self.emit("state", state="failed", error=self.error)
        if self.cleanup is not None:
            shutil.rmtree(self.cleanup, ignore_errors=True)

    def to_dict(self) -> dict[str, Any]:
        record = {
            "id": self.id,
            "category": self.category,
            "state": self.state,
            "created": self.created,
            "images": len(self.images) if self.image_count is None else self.image_count,
            "progress": self.progress,
            "error": self.error,
            "result": self.result,
        }
        if self.error_code is not None:
            record["error_code"] = self.error_code
        return record


#: A fit that found another model in its folder than the one there when it was submitted.
MODEL_CHANGED = ("the model changed while fitting (a threshold change, teach or rollback was saved meanwhile); this "
                 "fit was not saved, so that change is kept: fit again to replace the model")  # fmt: skip

#: A fit whose locks the database dropped (a restart, a failover) before it saved: another replica may be
#: fitting the category now, so this one must not replace the model.
LOST_LOCK = ("the connection holding this fit's lock to the history was lost before the model was saved (the "
             "database restarted?); the previous model is unchanged: start the fit again")  # fmt: skip


def fit_lock(category: str) -> str:
    """The lock a fit of ``category`` holds from submission to its end, in the history's database: with
    replicas sharing a history (docs/PLANT.md), a category is fitted by one of them at a time, never twice."""
    return f"fit:{category}"


def job_lock(job_id: str) -> str:
    """The lock a job holds while it is queued or running: free while its record says running, the
    process running it has died (the database ended its locks with its connection)."""
    return f"job:{job_id}"


class _Leases:
    """Several locks released as one, last taken first."""

    def __init__(self, leases: list[Lease]) -> None:
        self._leases = leases

    def release(self) -> None:
        while self._leases:
            self._leases.pop().release()  # never raises (Lease.release)

    def held(self) -> bool:
        return all(lease.held() for lease in self._leases)


def claim_all(claim: Callable[[str], Lease | None], names: list[str]) -> Lease | None:
    """Every lock in ``names``, or none of them (``None``) if another process holds any."""
    held: list[Lease] = []
    try:
        for name in names:
            lease = claim(name)
            if lease is None:
                _Leases(held).release()
                return None
            held.append(lease)
    except BaseException:  # the database went away half-way: none of them stays held
        _Leases(held).release()
        raise
    return _Leases(held)


class JobManager:
    """Runs fit jobs in a thread pool; ``on_saved(category)`` lets the app drop a cached expert.

    ``claim(name)``: takes a named lock across processes (the history backend's ``try_lock``), or ``None``
    when another holds it. Each job holds its own lock while it is queued or running (a job whose lock is
    free while its record says running has died with its process); with ``exclusive`` (replicas sharing a
    history) it also holds its category's, and a fit of a category queued or running anywhere is refused
    with 409. One service on its own history queues a second fit of a category, as it always did.
    """

    def __init__(
        self, models_dir: Path, workers: int, on_saved: Callable[[str], None], records: JobRecords | None = None,
        claim: Callable[[str], Lease | None] | None = None, exclusive: bool = False,
    ) -> None:  # fmt: skip
        self.models_dir = models_dir
        self._claim = claim
        #: One fit per category at a time (replicas sharing a history); else a second one waits in the pool.
        self._exclusive = exclusive
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="eagle-fit")
        self._jobs: dict[str, FitJob] = {}
        self._on_saved = on_saved
        self._records = records
        self._futures: dict[str, Future[None]] = {}
        #: Jobs replacing their model now: a save takes seconds and cannot be cut short without leaving
        #: the job's record wrong, so a stop waits for it past the grace period.
        self._saving: set[str] = set()
        self._stopping = threading.Event()
        self._stop_lock = threading.Lock()
        self._stopped_at: float | None = None
        #: Jobs the stop cut short (queued or running), for the one line ``eagle serve`` prints.
        self.interrupted = 0

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def stop(self) -> None:
        """Stop taking fits, cancel the queued ones and tell the running ones to stop (idempotent).

        Returns at once: running fits stop at their next progress step, in their own threads.
        """
        with self._stop_lock:
            if self._stopped_at is None:
                self._stopped_at = time.monotonic()
            self._stopping.set()
            for job_id, future in list(self._futures.items()):
                job = self._jobs[job_id]
                if not job.finished and future.cancel():  # never started: it never will
                    self.interrupted += 1
                    job.interrupt()
            self._pool.shutdown(wait=False, cancel_futures=True)

    def shutdown(self, grace_s: float = 0.0) -> int:
        """:meth:`stop`, then wait for running fits until ``grace_s`` after the stop began; the number
        still running then (their records already say interrupted; the process may exit without them)."""
        self.stop()
        assert self._stopped_at is not None
        running = [future for future in self._futures.values() if not future.done()]
        remaining = max(0.0, self._stopped_at + grace_s - time.monotonic())
        _, left = wait_futures(running, timeout=remaining)
        with self._stop_lock:
            saving = [self._futures[job_id] for job_id in self._saving if job_id in self._futures]
        if saving:  # a model being replaced: its record must say what happened, so the save ends first
            wait_futures(saving)
            left = {future for future in left if not future.done()}
        with self._stop_lock:
            for job in self._jobs.values():
                if not job.finished:  # still running past the grace: say so now, the thread may never
                    self.interrupted += 1
                    job.interrupt()
        return len(left)

    def get(self, job_id: str) -> FitJob | None:
        """A job of this process, or a finished one from the database (an earlier run of the service)."""
        job = self._jobs.get(job_id)
        if job is None and self._records is not None:
            record = self._records.load_job(job_id)
            if record is not None and record.get("state") in ("queued", "running") and self._claim is not None:
                lease = self._claim(job_lock(job_id))  # free: the replica running it has died, or just ended it
                if lease is not None:
                    try:
                        record = self._records.load_job(job_id)  # again, under the lock: it may have just ended
                        if record is not None and record.get("state") in ("queued", "running"):
                            record.update(state="failed", error=INTERRUPTED)
                            self._records.save_job(record)
                    finally:
                        lease.release()
            job = None if record is None else FitJob.restored(record)
        return job

    @contextmanager
    def without_fits(self, category: str) -> Iterator[None]:
        """Hold off new fits of ``category`` for the block (a retirement), or 409 ``category_in_use`` naming the
        fit queued or running: on this service (its job id), or with replicas on one that shares the history
        (its category lock is held). Why: a fit that ends after its category was retired would save a model
        under the name again, which the retirement said was gone."""
        with self._stop_lock:  # submit takes it too: no fit of the category is submitted meanwhile
            busy = [job.id for job in self._jobs.values() if job.category == category and not job.finished]
            if busy:
                raise ApiError(409, f"category {category!r} is in use: fit job {', '.join(busy)} is queued or running "
                               "on this service; wait for it to end (or for its failure), then retire it",
                               code="category_in_use")  # fmt: skip
            lease = None
            if self._claim is not None and self._exclusive:
                lease = self._claim(fit_lock(category))
                if lease is None:
                    raise ApiError(409, f"category {category!r} is in use: a fit of it is queued or running on a "
                                   "replica sharing this history; wait for it to end, then retire it",
                                   code="category_in_use")  # fmt: skip
            try:
                yield
            finally:
                if lease is not None:
                    lease.release()

    @property
    def pending(self) -> int:
        """Jobs queued or running (the fit queue depth)."""
        return sum(not job.finished for job in self._jobs.values())

    def submit(
        self,
        category: str,
        images: list[Path],
        config: ExpertConfig,
        cleanup: Path | None = None,
        redact: tuple[str, ...] = (),
        by: str | None = None,
    ) -> FitJob:
        with self._stop_lock:
            if self._stopping.is_set():
                raise ApiError(503, "the service is stopping; submit the fit again once it is back",
                               type_="server_error", code="shutting_down")  # fmt: skip
            lease = None
            job_id = uuid.uuid4().hex
            if self._claim is not None:
                names = [fit_lock(category)] if self._exclusive else []
                lease = claim_all(self._claim, [*names, job_lock(job_id)])
                if lease is None:
                    raise ApiError(409, f"a fit of {category!r} is already queued or running (on this service or "
                                   "a replica sharing its history); wait for it to end, then fit again",
                                   code="fit_in_progress")  # fmt: skip
            try:
                replacing = model_fingerprint(self.models_dir / category)  # what the fitted model may replace
                replaces = refit_notice(self.models_dir / category, category)
            except BaseException:
                if lease is not None:
                    lease.release()
                raise
            job = FitJob(id=job_id, category=category, images=images, cleanup=cleanup, redact=redact,
                         records=self._records, stopping=self._stopping, lease=lease,
                         replacing=replacing, replaces=replaces, by=by)  # fmt: skip
            try:
                job.emit("state", state="queued")
            except BaseException:  # its record could not be stored: no job, so no lock either
                if lease is not None:
                    lease.release()
                raise
            finished = [key for key, old in self._jobs.items() if old.finished]
            for key in finished[: max(0, len(finished) - KEEP_FINISHED + 1)]:
                del self._jobs[key]  # oldest first: dicts keep insertion order
                self._futures.pop(key, None)
            self._jobs[job.id] = job
            self._futures[job.id] = self._pool.submit(self._run, job, config)
        return job

    def _run(self, job: FitJob, config: ExpertConfig) -> None:
        with self._stop_lock:
            if self._stopping.is_set() or job.finished:
                return  # stop() cancelled it, or will record it (it had started when the pool was told)
            job.state = "running"
        try:
            job.emit("state", state="running")
            expert = fit(job.images, job.category, config, progress=job.report)
            model = dataclasses.replace(expert.model, fitted_by=job.by)
            if job.replaces is not None:
                model = dataclasses.replace(model, warnings=[job.replaces, *model.warnings])
            if job.lease is not None and not job.lease.held():  # the database dropped its locks meanwhile
                raise EagleError(LOST_LOCK)
            with self._stop_lock:
                if self._stopping.is_set() or job.finished:
                    raise JobInterrupted  # fitted, but the service is stopping: the previous model stays
                self._saving.add(job.id)
            try:
                save(model, self.models_dir / job.category, replacing=job.replacing)
            finally:
                with self._stop_lock:
                    self._saving.discard(job.id)
            self._on_saved(job.category)
            thresholds = model.thresholds
            with self._stop_lock:
                job.result = {"category": job.category, "tau": thresholds.tau, "s_max": thresholds.s_max,
                              "rule": thresholds.rule, "train_images": len(job.images),
                              "warnings": model.warnings}  # fmt: skip
                job.state = "succeeded"
                job.emit("state", state="succeeded", result=job.result)
        except JobInterrupted:
            with self._stop_lock:
                if not job.finished:  # else shutdown() recorded it when the grace period ran out
                    self.interrupted += 1
                    job.interrupt()
        except ModelChangedError:
            self._fail(job, MODEL_CHANGED, code="model_changed")
        except HistoryUnavailableError:
            self._fail(job, "the history database was unreachable during the fit; start the fit again")
        except EagleError as exc:
            self._fail(job, job.scrub(str(exc)))
        except Exception as exc:  # a bug: reported on the job rather than lost in a worker thread
            self._fail(job, job.scrub(f"{type(exc).__name__}: {exc}"))
        finally:
            if job.cleanup is not None:
                shutil.rmtree(job.cleanup, ignore_errors=True)

    def _fail(self, job: FitJob, error: str, code: str | None = None) -> None:
        with self._stop_lock:
            if job.finished:
                return  # shutdown() already recorded it interrupted (and removed its uploads): keep that
            job.error = error
            job.error_code = code
            job.state = "failed"
            job.emit("state", state="failed", error=job.error, **({"error_code": code} if code else {}))


#: How often a job's stream asks whether its caller's key still works (seconds).
RECHECK_S = 1.0
#: The comment a stream ends with once its caller's key was revoked (or its role no longer reads).
ACCESS_ENDED = b": access ended: the key was revoked or its role no longer allows this stream\n\n"


async def sse_stream(
    job: FitJob, after: int = -1, poll_s: float = 0.1, allowed: Callable[[], bool] | None = None
) -> AsyncIterator[bytes]:
    """Every event of ``job`` with ``seq > after`` as ``text/event-stream`` frames, until it finishes.

    ``after`` is the client's ``Last-Event-ID`` (a reconnecting EventSource resumes where it stopped).
    ``allowed`` (:func:`eagle_iad.service.access.still_allowed`) is asked every :data:`RECHECK_S`: once it
    says no (the key was revoked), the stream ends with nothing more.
    """
    sent = max(0, after + 1)
    checked = time.monotonic()
    while True:
        if allowed is not None and time.monotonic() - checked >= RECHECK_S:
            if not await asyncio.to_thread(allowed):
                yield ACCESS_ENDED
                return
            checked = time.monotonic()
        events = job.events[sent:]
        for event in events:
            yield f"id: {event['seq']}\nevent: {event['event']}\ndata: {json.dumps(event)}\n\n".encode()
        sent += len(events)
        if job.finished and sent >= len(job.events):
            return
        await asyncio.sleep(poll_s)
