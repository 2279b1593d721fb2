"""Seeded subsets of a split: the one training-set (and test-set) selection every caller shares.

The CLI's ``--limit-train``/``--limit-test``, ``eagle eval``'s ``--limit``, the demo, the eval runner and
the benchmarks must pick the same images for the same limit and seed, or a model fitted by one would
not be the model another reports on; so the draw lives here, once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

import numpy as np

from eagle_iad.data.base import Sample
from eagle_iad.errors import ConfigError

T = TypeVar("T")


def subsample(items: Sequence[T], limit: int | None, seed: int) -> list[T]:
    """A seeded, order-preserving subset of at most ``limit`` items (all of them when ``limit`` is None)."""
    if limit is None or limit >= len(items):
        return list(items)
    keep = np.sort(np.random.default_rng(seed).choice(len(items), size=limit, replace=False))
    return [items[int(i)] for i in keep]


def select_training(samples: list[Sample], limit: int | None, seed: int) -> list[Sample]:
    """A seeded, order-preserving subset of at most ``limit`` training samples."""
    if limit is None or limit >= len(samples):
        return samples
    if limit < 2:
        raise ConfigError("--limit-train must be at least 2")
    return subsample(samples, limit, seed)


def select_test(samples: list[Sample], limit: int | None, seed: int) -> list[Sample]:
    """A seeded subset of at most ``limit`` test samples that keeps the normal/anomalous ratio."""
    if limit is None or limit >= len(samples):
        return samples
    normal = [s for s in samples if s.label == 0]
    anomalous = [s for s in samples if s.label == 1]
    n_normal = min(len(normal), max(1, round(limit * len(normal) / len(samples))))
    picked = select_training(normal, n_normal, seed) if n_normal >= 2 else normal[:n_normal]
    rest = limit - len(picked)
    picked += select_training(anomalous, rest, seed) if rest >= 2 else anomalous[:rest]
    return sorted(picked, key=lambda s: str(s.path))


#: The rule :func:`select_balanced` draws by, recorded in an ``eagle eval`` run's configuration with ``--limit``
#: (``limit_selection``): a run whose images were drawn by another rule (the first images in sorted order,
#: before this existed) is then refused as a changed configuration instead of being resumed with other images.
BALANCED_SELECTION = "seeded, half anomalous, spread over defect types (v1)"


def select_balanced(
    items: Sequence[T], limit: int | None, seed: int, label: Callable[[T], int], group: Callable[[T], str]
) -> list[T]:
    """A seeded subset of at most ``limit`` items, half normal and half anomalous, in the input order.

    Why balanced: a small run's accuracy means something only with both classes; the class that runs
    short is filled in by the other. The anomalous half is spread over the defect types (``group``): the
    types take turns in a seeded order, each giving its next seeded item, so 4 anomalous images of a set
    with 4 types are one of each, not the first 4 files of the first type.
    """
    if limit is None or limit >= len(items):
        return list(items)
    normal = [i for i, item in enumerate(items) if label(item) == 0]
    anomalous = [i for i, item in enumerate(items) if label(item) != 0]
    n_anomalous = min(len(anomalous), limit // 2)
    n_normal = min(len(normal), limit - n_anomalous)
    n_anomalous = min(len(anomalous), limit - n_normal)
    rng = np.random.default_rng(seed)
    keep = [normal[int(i)] for i in rng.choice(len(normal), size=n_normal, replace=False)]
    by_group: dict[str, list[int]] = {}
    for index in anomalous:
        by_group.setdefault(group(items[index]), []).append(index)
    queues = [[members[int(i)] for i in rng.permutation(len(members))] for _, members in sorted(by_group.items())]
    queues = [queues[int(i)] for i in rng.permutation(len(queues))]
    while len(keep) < n_normal + n_anomalous:
        for queue in queues:
            if queue and len(keep) < n_normal + n_anomalous:
                keep.append(queue.pop(0))
    return [items[i] for i in sorted(keep)]
