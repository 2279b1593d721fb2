"""Concurrent ``/v1/inspect`` requests for one category share one expert pass (a micro-batcher).

Why: each request used to run its own backbone and search in its own worker thread, so 16
concurrent inspections ran 16 torch computations at once on two cores, each with its own OpenMP
team, and most of the time went to threads waiting for each other. Here the first request for an
expert becomes the leader: it waits up to ``window_s`` for more requests of the same expert (or
until ``max_batch``), scores them all with :meth:`Expert.inspect_each` (one backbone pass per
image, one search for all patches) and hands each request its own result; requests that arrive
meanwhile form the next batch. Results equal unbatched ones bit for bit (see ``inspect_each``), and
an image that fails fails only its own request.

It is off by default (``EAGLE_INSPECT_BATCH=1``; e.g. 16 turns it on): measured with 16 concurrent
requests at a real ``eagle serve`` (``benchmarks/service_batching.py``) it gave 0.52-0.85x the
images/s on the shared 2-core machine at load 12, 1.05x at load 5. Bit-identical results mean the
backbone must still see each image alone (its float32 numbers depend on the batch size), so
batching only merges the search, which the pruned search has made cheap, while serialising the
backbone passes gives up the request threads' parallelism.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from eagle_iad.errors import ConfigError

#: How long a leader waits for more requests of its expert before scoring (seconds).
DEFAULT_WINDOW_S = 0.004
#: Requests scored together at most; 1 = no batching (the default: see the module docstring).
DEFAULT_MAX_BATCH = 1


def _env_max_batch() -> int:
    raw = os.environ.get("EAGLE_INSPECT_BATCH", str(DEFAULT_MAX_BATCH))
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise ConfigError(f"EAGLE_INSPECT_BATCH must be a whole number >= 1 (1 = no batching), got {raw!r}")
    return value


@dataclass(eq=False)
class _Job:
    rgb: np.ndarray
    done: bool = False
    outcome: Any = field(default=None)


class InspectBatcher:
    """Groups concurrent expert passes per expert object; see the module docstring."""

    def __init__(self, max_batch: int | None = None, window_s: float = DEFAULT_WINDOW_S) -> None:
        self.max_batch = _env_max_batch() if max_batch is None else max_batch
        self.window_s = window_s
        self._cond = threading.Condition()
        self._queues: dict[Any, list[_Job]] = {}
        self._leading: set[Any] = set()
        #: Sizes of the batches scored so far (for tests and the benchmark).
        self.batch_sizes: list[int] = []

    def inspect(self, expert: Any, rgb: np.ndarray) -> Any:
        """``expert.inspect(rgb)``'s result, computed together with concurrent requests of ``expert``."""
        if self.max_batch <= 1:
            return expert.inspect(rgb)
        job = _Job(rgb)
        with self._cond:
            self._queues.setdefault(expert, []).append(job)
            self._cond.notify_all()
        while True:
            with self._cond:
                while not job.done and expert in self._leading:
                    self._cond.wait()
                if job.done:
                    break
                self._leading.add(expert)
                queue = self._queues[expert]
                deadline = time.monotonic() + self.window_s
                while len(queue) < self.max_batch and (left := deadline - time.monotonic()) > 0:
                    self._cond.wait(left)
                # This request first, then the oldest waiting ones.
                queue.remove(job)
                batch = [job, *queue[: self.max_batch - 1]]
                del queue[: self.max_batch - 1]
                if not queue:
                    del self._queues[expert]
                self.batch_sizes.append(len(batch))
            try:
                outcomes: list[Any] = list(expert.inspect_each([j.rgb for j in batch]))
            except BaseException as exc:  # the shared search failed: every request of the batch gets it
                outcomes = [exc] * len(batch)
            with self._cond:
                for member, outcome in zip(batch, outcomes, strict=True):
                    member.outcome, member.done = outcome, True
                self._leading.discard(expert)
                self._cond.notify_all()
        if isinstance(job.outcome, BaseException):
            raise job.outcome
        return job.outcome


#: The service's one batcher (experts are keyed by identity, so categories never mix).
BATCHER = InspectBatcher()
