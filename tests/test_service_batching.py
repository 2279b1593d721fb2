"""The service's micro-batcher: concurrent inspections of one expert share a pass, results unchanged."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import pytest

from eagle_iad.data import get_layout
from eagle_iad.errors import ConfigError
from eagle_iad.expert import Expert, ExpertConfig, fit
from eagle_iad.images import load_rgb
from eagle_iad.service.batching import InspectBatcher


@pytest.fixture(scope="module")
def expert() -> Expert:
    cells = get_layout("elpv").samples(None, "mono", "train")[:6]
    return fit([c.path for c in cells], "mono", ExpertConfig(size=64, native_up_to=0, coreset_ratio=0.1))


def _test_images(count: int) -> list[np.ndarray]:
    return [load_rgb(s.path) for s in get_layout("elpv").samples(None, "mono", "test")[:count]]


def _concurrently(batcher: InspectBatcher, expert: Expert, images: list[Any]) -> list[Any]:
    outcomes: list[Any] = [None] * len(images)
    start = threading.Barrier(len(images))

    def one(index: int) -> None:
        start.wait()
        try:
            outcomes[index] = batcher.inspect(expert, images[index])
        except Exception as exc:  # recorded, compared below
            outcomes[index] = exc

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(images))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes


def _assert_same(batched: Any, alone: Any) -> None:
    assert batched.score == alone.score
    assert batched.is_anomalous == alone.is_anomalous and batched.in_band == alone.in_band
    assert np.array_equal(batched.patch_scores, alone.patch_scores)
    assert np.array_equal(batched.crop_map, alone.crop_map)
    assert np.array_equal(batched.anomaly_map, alone.anomaly_map)


def test_batched_results_equal_unbatched_ones_exactly(expert: Expert) -> None:
    images = _test_images(6)
    batcher = InspectBatcher(max_batch=6, window_s=2.0)  # a long window: all six join one batch
    outcomes = _concurrently(batcher, expert, images)
    assert max(batcher.batch_sizes) > 1 and sum(batcher.batch_sizes) == 6
    for image, outcome in zip(images, outcomes, strict=True):
        _assert_same(outcome, expert.inspect(image))


def test_a_failing_image_fails_only_its_own_request(expert: Expert) -> None:
    images: list[Any] = _test_images(4)
    images.insert(2, np.zeros((0, 7, 3), dtype=np.uint8))  # an empty image: preparing it fails
    batcher = InspectBatcher(max_batch=5, window_s=2.0)
    outcomes = _concurrently(batcher, expert, images)
    assert batcher.batch_sizes == [5]
    with pytest.raises(type(outcomes[2])):
        expert.inspect(images[2])  # the same error as alone
    assert isinstance(outcomes[2], Exception)
    for index in (0, 1, 3, 4):
        _assert_same(outcomes[index], expert.inspect(images[index]))


def test_batches_never_mix_experts(expert: Expert) -> None:
    other = Expert(expert.model, expert.extractor)  # the same model loaded twice: two experts
    images = _test_images(4)
    batcher = InspectBatcher(max_batch=4, window_s=0.5)
    outcomes = _concurrently_two(batcher, [expert, other, expert, other], images)
    assert sorted(batcher.batch_sizes) == [2, 2]
    for image, outcome in zip(images, outcomes, strict=True):
        _assert_same(outcome, expert.inspect(image))


def _concurrently_two(batcher: InspectBatcher, experts: list[Expert], images: list[Any]) -> list[Any]:
    outcomes: list[Any] = [None] * len(images)
    start = threading.Barrier(len(images))

    def one(index: int) -> None:
        start.wait()
        outcomes[index] = batcher.inspect(experts[index], images[index])

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(images))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes


def test_bad_batch_setting_is_a_one_line_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EAGLE_INSPECT_BATCH", "zero")
    with pytest.raises(
        ConfigError, match=r"^EAGLE_INSPECT_BATCH must be a whole number >= 1 \(1 = no batching\), got 'zero'$"
    ):
        InspectBatcher()
