"""``benchmarks/teach.py``'s Effect step teaches only what ``teach`` takes without ``force``: a false alarm the
base model calls unrecognised is refused by the guard as one scoring above its limit is, and counted so,
rather than stopping the benchmark with teach's ConfigError."""

from __future__ import annotations

import numpy as np
from bench_scripts import load_benchmark


def test_the_effect_step_leaves_out_unrecognised_and_high_scoring_false_alarms() -> None:
    bench = load_benchmark("teach")
    scores = np.asarray([1.0, 9.0, 2.0, 1.5, 3.0])
    unrecognised = np.asarray([False, False, True, False, True])
    assert bench._guarded([0, 1, 2, 3, 4], scores, unrecognised, 5.0) == (
        [0, 3],
        "3 (2 unrecognised, 1 above the limit)",
    )
    assert bench._guarded([0, 3], scores, unrecognised, 5.0) == ([0, 3], "0")
    assert bench._guarded([], scores, unrecognised, 5.0) == ([], "0")
