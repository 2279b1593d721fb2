"""Where the work runs: in this process (``local``) or on a Ray cluster (``ray``).

Both executors get the same shards (one per category, so a worker keeps one expert hot) and push
every record through the same ``sink`` (the run store's durable append), so the JSONL — and hence
the metrics — do not depend on the executor. Ray is an optional extra (``pip install eagle-iad[ray]``).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any, Protocol

from eagle_iad.errors import ConfigError, EagleError, remote_cause
from eagle_iad.eval.protocol import WorkItem
from eagle_iad.eval.runner import Key, Worker, WorkerConfig
from eagle_iad.registry import PLUGINS_ENV, Registry, load_plugins, plugin_search_paths, plugin_spec

Sink = Callable[[dict[str, Any]], None]


class Executor(Protocol):
    """Runs every (item, condition) of ``shards`` not in ``done`` and hands each record to ``sink``."""

    def run(self, shards: dict[str, list[WorkItem]], config: WorkerConfig, done: set[Key], sink: Sink) -> None: ...


class LocalExecutor:
    """One worker in this process; records are stored one by one as they are produced."""

    def run(self, shards: dict[str, list[WorkItem]], config: WorkerConfig, done: set[Key], sink: Sink) -> None:
        worker = Worker(config)
        for items in shards.values():
            for record in worker.run(items, done):
                sink(record)


class RayExecutor:
    """A pool of Ray actors, each holding an expert cache and one MLLM backend.

    Work is sharded by category and cut into chunks of ``chunk`` items so records reach the driver
    (and the JSONL) while a category is still running; a crash loses at most the chunks in flight.
    """

    def __init__(
        self, address: str | None = None, num_workers: int = 2, chunk: int = 4, gpus_per_worker: float = 0.0
    ) -> None:
        self.address = address
        self.num_workers = num_workers
        self.chunk = chunk
        #: GPUs each actor reserves (an MLLM per actor: 1 on a GPU cluster, 0 for CPU-only runs).
        self.gpus_per_worker = gpus_per_worker

    def run(self, shards: dict[str, list[WorkItem]], config: WorkerConfig, done: set[Key], sink: Sink) -> None:
        try:
            import ray
        except ImportError as exc:
            raise ConfigError("--executor ray needs Ray: pip install 'eagle-iad[ray]'") from exc
        # The actors are other processes, possibly on other machines, whose environment is the cluster's: each
        # is handed the plugins this process loaded (a model's plugin rule, mode or backbone) and the folders it
        # found them in, and loads them before any work (not through Ray's runtime_env, which a cluster the
        # caller already started would not take).
        plugins = plugin_spec()
        paths = plugin_search_paths(plugins)
        if not ray.is_initialized():
            ray.init(address=self.address, include_dashboard=False, log_to_driver=False)

        @ray.remote
        class _Actor:
            def __init__(self, worker_config: WorkerConfig, plugins: str, paths: list[str]) -> None:
                # An error here would reach the driver as "the actor died" with Ray's traceback as its text;
                # kept, it is raised by run, whose task error the driver unwraps to the EagleError itself.
                self.error: EagleError | None = None
                try:
                    _load_plugins_in_worker(plugins, paths)
                    self.worker = Worker(worker_config)
                except EagleError as exc:
                    self.error = exc

            def run(self, items: list[dict[str, Any]], skip: list[Key]) -> list[dict[str, Any]]:
                if self.error is not None:
                    raise self.error
                return list(self.worker.run([WorkItem.from_dict(i) for i in items], set(skip)))

        count = max(1, min(self.num_workers, len(shards)))
        actors = [
            _Actor.options(num_gpus=self.gpus_per_worker).remote(config, plugins, paths)  # type: ignore[attr-defined]
            for _ in range(count)
        ]
        # Each category goes to one actor (round robin), so an actor loads each expert once.
        pending: dict[Any, None] = {}
        for index, items in enumerate(shards.values()):
            actor = actors[index % len(actors)]
            for start in range(0, len(items), self.chunk):
                chunk = items[start : start + self.chunk]
                skip = [k for k in done if any(k[0] == i.image for i in chunk)]
                pending[actor.run.remote([i.to_dict() for i in chunk], skip)] = None
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                pending.pop(ref)
                try:
                    records = ray.get(ref)
                except ray.exceptions.RayTaskError as exc:
                    raise remote_cause(exc) from None
                for record in records:
                    sink(record)


def _load_plugins_in_worker(plugins: str, paths: list[str]) -> None:
    """In a Ray actor: the driver's plugin folders on the module search path, then its plugins loaded.

    ``EAGLE_PLUGINS`` is set too, so a process the worker starts (a fit worker) loads them as well.
    """
    for path in paths:
        if os.path.isdir(path) and path not in sys.path:
            sys.path.append(path)
    if plugins:
        os.environ[PLUGINS_ENV] = plugins
        load_plugins(plugins)


#: ``factory(address, num_workers, gpus_per_worker) -> Executor`` by name.
EXECUTOR_REGISTRY: Registry[Callable[[str | None, int, float], Executor]] = Registry("executor")
EXECUTOR_REGISTRY.add("local", lambda _address, _workers, _gpus: LocalExecutor())
EXECUTOR_REGISTRY.add("ray", lambda address, workers, gpus: RayExecutor(address, workers, gpus_per_worker=gpus))


def make_executor(
    name: str, address: str | None = None, num_workers: int = 2, gpus_per_worker: float = 0.0
) -> Executor:
    """The executor called ``name`` (see :data:`EXECUTOR_REGISTRY`)."""
    return EXECUTOR_REGISTRY.get(name)(address, num_workers, gpus_per_worker)
