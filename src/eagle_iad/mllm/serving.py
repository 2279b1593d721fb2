"""Plumbing that ``eagle serve-mllm`` and ``eagle serve`` share: the error answer and the generation worker.

Both servers answer errors in one OpenAI-style JSON shape (:class:`ApiError`) and run every MLLM call
on one worker thread fed by a bounded queue (:class:`GenerationWorker`), so chat requests and the
inspections' questions wait in the same line for the same model. Neither belongs to the chat route
itself, so they live here, importable by the service without the route's request models.
"""

from __future__ import annotations

import math
import queue
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from fastapi.responses import JSONResponse

from eagle_iad.mllm.base import Backend, GenerateOptions, Reply
from eagle_iad.tgps.prompt import ContentItem


class ApiError(Exception):
    """An error answered as OpenAI-style JSON ``{"error": {"message", "type", "code"}}``."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type_: str = "invalid_request_error",
        code: str | None = None,
        headers: dict[str, str] | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type_
        self.code = code
        self.headers = headers or {}
        #: Further fields of the error object, beside the message (e.g. ``label_changed``: the label stored now).
        self.details = details or {}

    def response(self) -> JSONResponse:
        error = {"message": self.message, "type": self.type, "code": self.code, "param": None}
        body = {"error": {**error, **self.details}}
        return JSONResponse(body, status_code=self.status, headers=self.headers)


@dataclass
class Job:
    """A validated request, ready for the backend; ``query_index`` is the query image's position."""

    items: list[ContentItem]
    images: dict[str, np.ndarray]
    options: GenerateOptions
    query_index: int | None
    cancelled: threading.Event = field(default_factory=threading.Event)


_Done = Callable[[Reply | None, BaseException | None], None]


class GenerationWorker:
    """One thread running ``backend.generate`` for queued jobs, in arrival order.

    ``queue_size`` bounds the jobs *waiting* (the running one is not counted); :meth:`submit`
    raises :class:`queue.Full` when they are all taken. Cancelled jobs (client gone) are skipped.
    """

    def __init__(self, backend: Backend, queue_size: int) -> None:
        if queue_size < 1:
            raise ValueError(f"queue size must be >= 1, got {queue_size}")
        self.backend = backend
        self.queue_size = queue_size
        self._queue: queue.Queue[tuple[Job, _Done] | None] = queue.Queue(maxsize=queue_size)
        self._thread: threading.Thread | None = None
        self._recent_s: list[float] = []

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="eagle-mllm-worker", daemon=True)
            self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Ask the thread to finish after the current job (it is a daemon, so a stuck backend cannot hang exit)."""
        if self._thread is None:
            return
        with suppress(queue.Full):
            self._queue.put(None, timeout=timeout_s)
        self._thread.join(timeout=timeout_s)
        self._thread = None

    def submit(self, job: Job, done: _Done) -> None:
        self._queue.put_nowait((job, done))

    @property
    def waiting(self) -> int:
        """Jobs queued and not yet started."""
        return self._queue.qsize()

    def retry_after_s(self) -> int:
        """Seconds a rejected client should wait: the recent mean generation time times the backlog."""
        mean = sum(self._recent_s) / len(self._recent_s) if self._recent_s else 1.0
        return max(1, math.ceil(mean * (self.waiting + 1)))

    def _run(self) -> None:
        while True:
            entry = self._queue.get()
            if entry is None:
                return
            job, done = entry
            if job.cancelled.is_set():
                continue
            start = time.perf_counter()
            try:
                reply = self.backend.generate(job.items, job.images, job.options)
            except BaseException as exc:  # handed to the waiting request, which answers with an error
                done(None, exc)
            else:
                done(reply, None)
            self._recent_s = [*self._recent_s[-9:], time.perf_counter() - start]
