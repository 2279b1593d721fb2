"""``eagle teach``: the greedy continued from a bank, the taught model against reference computations, the
guards that keep a defect from being taught, and the same teach through the CLI and the service.

The coreset tests check the continuation against the literal loop (same picks) and the covering radius
against the greedy's own last pick distance; the model tests recompute the new images' leave-own-out
scores by brute force, and tau, s_max and the map threshold by the rules, from the saved numbers.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from threadpoolctl import threadpool_limits

from eagle_iad.data import get_layout
from eagle_iad.errors import ConfigError, ImageError
from eagle_iad.expert.coreset import ApproximateGreedyCoreset, _LazyGreedy
from eagle_iad.expert.store import labelled_parts
from eagle_iad.tgps.thresholds import compute_thresholds

ROOT = Path(__file__).resolve().parents[1]


def _points(count: int, dim: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((12, dim)) * 4.0
    return (centres[rng.integers(0, 12, count)] + rng.standard_normal((count, dim))).astype(np.float64)


def _literal_continuation(points: np.ndarray, min_dist: np.ndarray, radius: float) -> np.ndarray:
    """The definition: pick the farthest point until every point is within ``radius`` (float64 updates)."""
    min_dist = min_dist.copy()
    sq = np.einsum("ij,ij->i", points, points)
    picks = []
    with threadpool_limits(limits=1, user_api="blas"):
        while True:
            pick = int(np.argmax(min_dist))
            if min_dist[pick] <= radius:
                break
            picks.append(pick)
            dist = points @ points[pick]
            dist *= -2.0
            dist += sq
            dist += sq[pick]
            np.maximum(dist, 0.0, out=dist)
            np.sqrt(dist, out=dist)
            np.minimum(min_dist, dist, out=min_dist)
    return np.array(picks, dtype=np.int64)


def test_extending_a_bank_skips_covered_points_and_picks_what_the_literal_loop_over_all_picks() -> None:
    """A new point already within the radius of its nearest bank row is left out of the loop (it can never
    be picked, and its distance decides nothing): the picks are the literal loop's over every new point."""
    sampler = ApproximateGreedyCoreset(ratio=0.1, seed=0)
    bank = _points(2000, 24, 3).astype(np.float32)
    new = _points(3000, 24, 4).astype(np.float32)
    nearest = torch.cdist(torch.from_numpy(new).double(), torch.from_numpy(bank).double()).argmin(dim=1).numpy()
    points = sampler.project(new)
    used, where = np.unique(nearest, return_inverse=True)
    rows = sampler.project(bank[used])[where.reshape(-1)]
    min_dist = np.sqrt(((points - rows) ** 2).sum(axis=1)).astype(np.float32)
    radius = float(np.quantile(min_dist, 0.25))  # a quarter of the new points are covered already
    extension = sampler.extend(bank, new, radius, nearest=nearest)
    literal = _literal_continuation(points, min_dist, radius)
    assert len(literal) > 10 and extension.radius == radius
    assert np.array_equal(extension.chosen, np.sort(literal))
    assert sampler.extend(bank, new, float(min_dist.max()), nearest=nearest).chosen.size == 0  # all covered


def test_the_added_images_leave_own_out_is_the_whole_grown_banks() -> None:
    """A teach's scores from the guard's distances and a search of the added rows equal a search of the
    whole grown bank with the own image excluded."""
    from eagle_iad.expert.leave_own_out import leave_own_out, leave_own_out_added
    from eagle_iad.expert.search import make_search

    old = torch.from_numpy(_points(3000, 32, 5).astype(np.float32))
    new = torch.from_numpy(_points(1200, 32, 6).astype(np.float32))
    ids = torch.arange(4, dtype=torch.int32).repeat_interleave(300)  # 4 new images of 300 patches
    chosen = torch.from_numpy(np.random.default_rng(7).choice(1200, 150, replace=False)).sort().values
    selected = torch.zeros(1200, dtype=torch.bool)
    selected[chosen] = True
    old_search = make_search("pruned")
    old_search.fit(old, torch.full((3000,), 99, dtype=torch.int32))  # other images' rows
    base, _ = old_search.search(new)
    added = make_search("pruned")
    added.fit(new[chosen].contiguous(), ids[chosen].contiguous())
    fast = leave_own_out_added(new, ids, selected, base, added, 4)
    grown = make_search("pruned")
    grown.fit(torch.cat([old, new[chosen]]), torch.cat([torch.full((3000,), 99, dtype=torch.int32), ids[chosen]]))
    whole = leave_own_out(new, ids, selected, grown, 4)
    np.testing.assert_allclose(fast.patch_scores, whole.patch_scores, rtol=1e-6)
    np.testing.assert_allclose(fast.image_scores, whole.image_scores, rtol=1e-6)
    none = leave_own_out_added(new, ids, torch.zeros(1200, dtype=torch.bool), base, None, 4)
    np.testing.assert_array_equal(none.patch_scores, base.numpy())  # nothing added: the old bank's distances


def test_the_kept_patches_are_each_images_highest_scoring_and_the_floor_the_next() -> None:
    """select_tails against a sort done by hand: top k of the scored patches (ties by patch order), the
    (k+1)-th score as the floor (0 when an image has no more), and an image whose every patch was
    selected is scored over all of them, as leave_own_out scores it."""
    from eagle_iad.expert.tails import select_tails

    scores = np.array([5, 1, 7, 7, 3, 9, 2, 4, 8, 6], dtype=np.float32)
    ids = torch.tensor([0, 0, 0, 0, 0, 1, 1, 1, 2, 2], dtype=torch.int32)
    selected = torch.tensor([0, 0, 0, 0, 1, 1, 0, 0, 1, 1], dtype=torch.bool)  # image 2: every patch selected
    features = np.arange(10, dtype=np.float32)[:, None].repeat(3, axis=1)
    tails = select_tails(scores, ids, selected, 3, lambda rows: features[rows], per_image=2)
    # image 0 scores patches 0-3: 7 (2), 7 (3), then 5 (0) is the floor; image 1: 4 (7), 2 (6), no floor;
    # image 2: all of its patches, 8 (8), 6 (9).
    assert tails.rows[:, 0].tolist() == [2, 3, 7, 6, 8, 9]
    assert tails.image_ids.tolist() == [0, 0, 1, 1, 2, 2]
    assert tails.distances.tolist() == [7, 7, 4, 2, 8, 6]
    assert tails.floors.tolist() == [5.0, 0.0, 0.0]


def test_old_images_are_rescored_exactly_from_their_kept_patches_or_bounded_above() -> None:
    """rescore against the brute-force score of every patch after rows are added: equal where it says
    exact; where the kept patches all fell below the floor, the floor, which is at least the true score;
    the kept distances lowered to the added rows are each patch's distance to the grown bank."""
    from eagle_iad.expert.leave_own_out import leave_own_out
    from eagle_iad.expert.search import make_search
    from eagle_iad.expert.tails import rescore, select_tails

    rng = np.random.default_rng(3)
    patches = torch.from_numpy(_points(2000, 16, 11).astype(np.float32))  # 10 images of 200 patches
    ids = torch.arange(10, dtype=torch.int32).repeat_interleave(200)
    selected = torch.zeros(2000, dtype=torch.bool)
    selected[torch.from_numpy(rng.choice(2000, 300, replace=False))] = True
    search = make_search("pruned")
    search.fit(patches[selected].contiguous(), ids[selected].contiguous())
    before = leave_own_out(patches, ids, selected, search, 10)
    tails = select_tails(before.patch_scores, ids, selected, 10, lambda rows: patches[rows], per_image=3)
    # Rows added near some of each image's highest-scoring patches (a teach of look-alike images).
    order = np.argsort(-before.patch_scores)
    near = patches[torch.from_numpy(order[:40].copy())] + 0.01
    added = make_search("pruned")
    added.fit(near.contiguous())
    rescored = rescore(tails, added, 10)
    grown = make_search("pruned")
    others = torch.full((40,), 99, dtype=torch.int32)  # the added rows are no old image's own
    grown.fit(torch.cat([patches[selected], near]), torch.cat([ids[selected], others]))
    whole = leave_own_out(patches, ids, selected, grown, 10)
    truth = whole.image_scores
    assert 0 < int(rescored.exact.sum()) < 10  # both cases are exercised
    np.testing.assert_allclose(rescored.scores[rescored.exact], truth[rescored.exact], rtol=1e-6)
    assert bool(np.all(rescored.scores[~rescored.exact] >= truth[~rescored.exact] - 1e-5))
    np.testing.assert_array_equal(rescored.scores[~rescored.exact], tails.floors[~rescored.exact])
    assert bool(np.all(rescored.scores <= before.image_scores + 1e-5))  # adding rows never raises a score
    mine = [np.flatnonzero(((ids == i) & ~selected).numpy()) for i in range(10)]
    kept = np.concatenate([m[np.argsort(-before.patch_scores[m], kind="stable")[:3]] for m in mine])
    np.testing.assert_allclose(rescored.tails.distances, whole.patch_scores[kept], rtol=1e-6)


@pytest.mark.parametrize("radius", [2.0, 4.5])
def test_the_lazy_greedy_stopped_by_a_radius_picks_what_the_literal_loop_picks(radius: float) -> None:
    points = _points(5000, 24, 1)
    min_dist = np.random.default_rng(2).uniform(0.0, 12.0, 5000).astype(np.float32)
    sq = np.einsum("ij,ij->i", points, points)
    with threadpool_limits(limits=1, user_api="blas"):
        lazy = _LazyGreedy(points, sq, min_dist.copy()).run(5000, None, radius=radius)
    literal = _literal_continuation(points, min_dist, radius)
    assert len(literal) > 10
    assert np.array_equal(lazy, literal)


def test_the_covering_radius_is_the_greedys_last_pick_distance() -> None:
    """No projection (16 dims): the bank's smallest pairwise distance is min_dist at the greedy's last pick."""
    points = _points(3000, 16, 3).astype(np.float32)
    sampler = ApproximateGreedyCoreset(ratio=0.05, seed=0)
    chosen = sampler.select(points)
    sq = np.einsum("ij,ij->i", points, points)
    min_dist = sampler.initial_distances(points, sq)
    last = 0.0
    with threadpool_limits(limits=1, user_api="blas"):
        for _ in range(chosen.size):  # the literal loop (its picks are ``chosen``, tests/test_expert_math.py)
            pick = int(np.argmax(min_dist))
            last = float(min_dist[pick])
            dist = np.sqrt(np.maximum(sq + sq[pick] - 2.0 * (points @ points[pick]), 0.0))
            np.minimum(min_dist, dist, out=min_dist)
    bank = points[chosen].astype(np.float64)
    pairwise = np.linalg.norm(bank[:, None, :] - bank[None, :, :], axis=2)
    np.fill_diagonal(pairwise, np.inf)
    radius = sampler.covering_radius(points[chosen])
    assert radius == pytest.approx(float(pairwise.min()), rel=1e-5)
    assert radius == pytest.approx(last, rel=1e-5)
    assert sampler.select_covering(points).radius == pytest.approx(radius, rel=1e-5)  # what a fit keeps


def test_extend_covers_every_new_patch_within_the_radius_and_adds_nothing_already_covered() -> None:
    points = _points(6000, 200, 4).astype(np.float32)  # 200 dims: projected to 128, as real features are
    sampler = ApproximateGreedyCoreset(ratio=0.1, seed=0)
    bank = points[sampler.select(points[:4000])]
    radius = sampler.covering_radius(bank)
    extension = sampler.extend(bank, points[4000:], radius)
    assert extension.radius == radius and 0 < extension.chosen.size < 2000
    grown = sampler.project(np.concatenate([bank, points[4000:][extension.chosen]]))
    new = sampler.project(points[4000:])
    nearest = np.sqrt(((new[:, None, :] - grown[None, :, :]) ** 2).sum(axis=2)).min(axis=1)
    assert float(nearest.max()) <= radius * (1 + 1e-5)
    again = sampler.extend(np.concatenate([bank, points[4000:][extension.chosen]]), points[4000:], radius)
    assert again.chosen.size == 0  # the same images once more: already covered
    # Starting from the nearest rows in feature space (an upper bound): a few more picks, the same cover.
    from eagle_iad.expert.search import TorchExactSearch

    search = TorchExactSearch()
    search.fit(torch.from_numpy(bank))
    _, nearest = search.search(torch.from_numpy(points[4000:]))
    bounded = sampler.extend(bank, points[4000:], radius, nearest=nearest.numpy())
    assert bounded.chosen.size >= extension.chosen.size
    grown = sampler.project(np.concatenate([bank, points[4000:][bounded.chosen]]))
    nearest_after = np.sqrt(((new[:, None, :] - grown[None, :, :]) ** 2).sum(axis=2)).min(axis=1)
    assert float(nearest_after.max()) <= radius * (1 + 1e-5)


# ----------------------------------------------------------------------------------------------- the model


@pytest.fixture(scope="module")
def cells() -> dict[str, list[Path]]:
    layout = get_layout("elpv")
    train = [s.path for s in layout.samples(None, "mono", "train")]
    test = layout.samples(None, "mono", "test")
    return {
        "base": train[:10],
        "extra": train[10:13],
        "more": train[13:15],
        "cracked": [s.path for s in test if s.label == 1][:40],
    }


@pytest.fixture(scope="module")
def fitted(cells: dict[str, list[Path]], tmp_path_factory: pytest.TempPathFactory) -> Path:
    from eagle_iad.expert import fit, save

    folder = tmp_path_factory.mktemp("teach") / "mono"
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        save(fit(cells["base"], "mono").model, folder)
    finally:
        torch.set_num_threads(before)
    return folder


def _copy(model: Path, tmp_path: Path) -> Path:
    target = tmp_path / "mono"
    shutil.copytree(model, target)
    return target


def _files(folder: Path) -> dict[str, bytes]:
    """Every file of a model folder, its versions included, by relative path."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _brute_force(model: Any, features: torch.Tensor, per_image: int) -> np.ndarray:
    """Each of the first images' leave-own-out score (``features``: all of their patches, image after image):
    its unselected patches' largest distance to the model's bank without its own rows, in float64."""
    count = features.shape[0] // per_image
    distances = torch.cdist(features.double(), model.bank.double())
    own = model.patch_image_ids[: count * per_image].long()[:, None] == model.bank_image_ids.long()[None, :]
    distances[own] = float("inf")
    nearest = distances.min(dim=1).values.reshape(count, per_image)
    unselected = ~model.selected[: count * per_image].reshape(count, per_image)
    return np.asarray([float(nearest[i][unselected[i]].max()) for i in range(count)])


def test_a_teach_matches_the_reference_computations(fitted: Path, cells: dict[str, list[Path]], tmp_path: Path) -> None:
    from eagle_iad.expert.store import load
    from eagle_iad.expert.teach import TeachImage, teach

    model_dir = _copy(fitted, tmp_path)
    old = load(model_dir)
    result = teach(model_dir, [TeachImage(p.name, p) for p in cells["extra"]], why="new batch", by="ana")
    new = load(model_dir)
    n_old, n_new = len(old.train_images), len(cells["extra"])
    assert len(new.train_images) == n_old + n_new
    assert new.train_images[n_old:] == [f"taught-1/{i + 1:04d}-{p.name}" for i, p in enumerate(cells["extra"])]
    # The old bank is kept as it was; the rows added belong to the new images.
    assert torch.equal(new.bank[: old.bank.shape[0]], old.bank)
    assert set(new.bank_image_ids[old.bank.shape[0] :].tolist()) <= set(range(n_old, n_old + n_new))
    assert old.coreset_radius is not None  # recorded by the fit: the greedy's last pick distance
    sampler = ApproximateGreedyCoreset(ratio=old.config.coreset_ratio, seed=old.config.seed)
    assert old.coreset_radius == pytest.approx(sampler.covering_radius(old.bank.numpy()), rel=1e-4)
    assert new.coreset_radius == old.coreset_radius
    # The new images' scores: their unselected patches against the bank without their own rows (brute force).
    per_image = old.patch_image_ids.shape[0] // n_old
    assert new.patch_image_ids.shape[0] == (n_old + n_new) * per_image
    from eagle_iad.expert import Expert

    expert = Expert(new)
    from eagle_iad.expert.teach import _embed
    from eagle_iad.images import load_rgb

    features = _embed(expert, [load_rgb(p) for p in cells["extra"]], None)[0]
    old_features = _embed(expert, [load_rgb(p) for p in cells["base"]], None)[0]
    everyone = torch.cat([old_features, features])
    np.testing.assert_allclose(new.train_scores[n_old:], _brute_force(new, everyone, per_image)[n_old:], rtol=1e-5)
    # The old images' scores: exact from their kept patches, as a brute force over all of their patches finds
    # them against the grown bank; some are lower than the fit's (a taught row came nearer).
    assert result.entry["rescored"] == {"exact": n_old, "bounded": 0}
    np.testing.assert_allclose(new.train_scores[:n_old], _brute_force(new, everyone, per_image)[:n_old], rtol=1e-5)
    assert int(np.sum(new.train_scores[:n_old] < old.train_scores - 1e-3)) >= 1
    # The taught model keeps the new images' highest-scoring patches too: a second teach rescores them.
    assert old.tails is not None and new.tails is not None
    assert torch.equal(new.tails.rows[: old.tails.rows.shape[0]], old.tails.rows)
    assert np.bincount(new.tails.image_ids.numpy(), minlength=n_old + n_new).tolist() == [8] * (n_old + n_new)
    # A second teach rescores all thirteen from their kept patches (the first teach's new ones included, with
    # their ids shifted and their own rows left out): a brute force over every patch of the grown bank again.
    second = teach(model_dir, [TeachImage(p.name, p) for p in cells["more"]], why="second batch", by="ana")
    grown = load(model_dir)
    n_all = n_old + n_new
    assert second.entry["rescored"] == {"exact": n_all, "bounded": 0}
    np.testing.assert_allclose(grown.train_scores[:n_all], _brute_force(grown, everyone, per_image), rtol=1e-5)
    model_dir = _copy(fitted, tmp_path / "again")  # what follows starts from the first teach's state
    teach(model_dir, [TeachImage(p.name, p) for p in cells["extra"]], why="new batch", by="ana")
    # tau and s_max by the rule on all scores; the map threshold by the rule on all map maxima.
    assert new.thresholds == compute_thresholds(new.train_scores, old.thresholds.rule, **old.thresholds.params)
    assert new.map_maxima is not None and old.map_maxima is not None and new.map_maxima.shape == (n_old + n_new,)
    np.testing.assert_array_equal(new.map_maxima[:n_old], old.map_maxima)
    assert new.calibration is not None and old.calibration is not None
    map_tau = compute_thresholds(new.map_maxima, old.calibration.rule, **old.thresholds.params).tau
    assert new.calibration.map_tau == pytest.approx(map_tau, rel=1e-12)
    assert new.references is not None and len(new.references) == n_old + n_new
    entry = new.history[-1]
    assert entry == result.entry
    assert (entry["action"], entry["by"], entry["why"], entry["change"]) == ("teach", "ana", "new batch", 1)
    assert entry["before"] == old.thresholds.to_dict() and entry["after"] == new.thresholds.to_dict()
    digests = [hashlib.sha256(p.read_bytes()).hexdigest() for p in cells["extra"]]
    assert [i["sha256"] for i in entry["images"]] == digests
    assert (entry["bank_before"], entry["bank_after"]) == (old.bank.shape[0], new.bank.shape[0])
    # A taught image now scores at most what it scored before (its own patches are covered).
    after = expert.inspect_many(cells["extra"])
    for image, scored in zip(entry["images"], after, strict=True):
        assert scored.score <= image["score_before"] + 1e-3
    # A threshold restore cannot undo a teach.
    from eagle_iad.expert.store import change_threshold

    with pytest.raises(ConfigError, match=r"change 1 \(version 2\) taught images to the model, which a threshold"):
        change_threshold(model_dir, why="undo", by="ana", restore=1)


def test_a_training_images_twin_is_skipped_and_a_model_without_their_hashes_cannot_tell(
    fitted: Path, cells: dict[str, list[Path]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A fit keeps each training image's SHA-256 (schema 10): teaching a copy of one (any name) skips it with the
    reason, as a file taught before is skipped; a model saved without them (before schema 10) loads and teaches
    as before, and its teach keeps no hashes (it cannot know the fit's)."""
    import dataclasses

    from eagle_iad.cli import main
    from eagle_iad.expert.store import load, save
    from eagle_iad.expert.teach import TeachImage, teach

    model = load(fitted)
    assert model.train_sha256 == [hashlib.sha256(p.read_bytes()).hexdigest() for p in cells["base"]]
    model_dir = _copy(fitted, tmp_path)
    twin = tmp_path / "twin.png"
    shutil.copyfile(cells["base"][3], twin)
    command = ["teach", str(twin), str(cells["extra"][0]), "--model", str(model_dir), "--why", "dup", "--quiet"]
    assert main(command) == 0
    out, err = capsys.readouterr()
    assert "features:" not in err and "training scores:" not in err  # --quiet: no progress lines
    why = f"the same bytes as training image {model.train_images[3]} (a copy would score near 0 against it)"
    assert json.loads(out)["skipped"] == [{"image": str(twin), "why": why}] and json.loads(out)["images"] == 1
    assert f"eagle: skipped {twin}: {why}\n" in err
    taught = load(model_dir)
    assert taught.train_sha256 == [*model.train_sha256, hashlib.sha256(cells["extra"][0].read_bytes()).hexdigest()]
    with pytest.raises(ConfigError, match=r"every image is in this model already \(twin\.png: the same bytes as "):
        teach(model_dir, [TeachImage("twin.png", twin)], why="dup", by="ana")

    older = tmp_path / "older"
    save(dataclasses.replace(model, train_sha256=None), older)
    assert "sha256" not in json.loads((older / "model.json").read_text())["training"]
    result = teach(older, [TeachImage("twin.png", twin)], why="dup", by="ana")  # cannot tell: taught
    assert result.entry["skipped"] is None and result.model.train_sha256 is None and load(older).train_sha256 is None


def test_the_above_s_max_warning_says_both_scores_and_where_s_max_went() -> None:
    """An image taught above s_max may enter with a training score below s_max (its own coreset rows are left out
    of it): the warning then says s_max stays, not that it is now what it was (tire: 91.44 on inspection, 77.96
    taught, s_max 87.05 before and after)."""
    from eagle_iad.expert.teach import _above_s_max

    stays = _above_s_max("good/020.png", 91.44, 77.96, 87.05, 87.05)
    assert stays == (
        "good/020.png scored 91.44 on inspection, above the largest normal training score (s_max) 87.05: it was "
        "taught, and its training score is 77.96; s_max stays 87.05; check that it is normal"
    )
    assert "s_max rose to 91.2;" in _above_s_max("a.png", 91.44, 91.2, 87.05, 91.2)
    assert "s_max fell to 86.81;" in _above_s_max("a.png", 91.44, 77.96, 87.05, 86.81)


def test_a_model_without_kept_patches_keeps_its_old_scores_and_damaged_ones_are_refused(
    fitted: Path, cells: dict[str, list[Path]], tmp_path: Path
) -> None:
    """A model saved before schema 9 has no kept patches: a teach keeps its old images' scores (an upper
    bound, as before) and says so; kept patches that do not match the training images fail the load."""
    import dataclasses

    from safetensors.torch import load_file, save_file

    from eagle_iad.errors import ModelFormatError
    from eagle_iad.expert.store import load, save
    from eagle_iad.expert.teach import TeachImage, teach

    model_dir = tmp_path / "older"
    old = dataclasses.replace(load(fitted), tails=None)
    save(old, model_dir)
    result = teach(model_dir, [TeachImage(p.name, p) for p in cells["extra"]], why="new batch", by="ana")
    assert result.entry["rescored"] is None and result.model.tails is None
    np.testing.assert_array_equal(result.model.train_scores[: len(old.train_images)], old.train_scores)

    damaged = _copy(fitted, tmp_path)
    tensors = load_file(str(damaged / "tensors.safetensors"))
    tensors["tail_image_ids"] = tensors["tail_image_ids"].flip(0).contiguous()  # not image after image
    save_file(tensors, str(damaged / "tensors.safetensors"))
    from eagle_iad.expert.manifest import manifest_checksum
    from eagle_iad.file_hash import file_sha256

    data = json.loads((damaged / "model.json").read_text())
    data["tensors"]["sha256"] = file_sha256(damaged / "tensors.safetensors")
    data["checksum"] = manifest_checksum(data)
    (damaged / "model.json").write_text(json.dumps(data))
    with pytest.raises(ModelFormatError, match=r"the kept patches \(tail_\*\) do not match the 10 training images"):
        load(damaged)


def test_a_models_threshold_warnings_follow_its_teaches_and_threshold_changes(
    fitted: Path, cells: dict[str, list[Path]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A warning about the threshold describes the scores and tau it came from: a teach or a threshold change
    recomputes it, where the fit's words were kept before (a taught model still said the fit's tau)."""
    import dataclasses

    from eagle_iad.cli import main
    from eagle_iad.expert.model_warnings import fit_warnings, rewarned
    from eagle_iad.expert.store import change_threshold, load
    from eagle_iad.expert.teach import TeachImage, teach

    model_dir = _copy(fitted, tmp_path)
    old = load(model_dir)
    # Ten images: ksigma's k = 3 puts tau above every score (docs/METHOD.md), so the band is empty.
    assert old.warnings == fit_warnings(10, old.train_scores, old.thresholds)
    assert len(old.warnings) == 1 and old.warnings[0].startswith(f"tau ({old.thresholds.tau:.4g}) is not below")
    # What describes the fit and not the threshold stays, in its place after the threshold's.
    noted = dataclasses.replace(old, warnings=[*old.warnings, "a note of the fit"])
    higher = dataclasses.replace(old.thresholds, tau=old.thresholds.tau + 1)
    moved = rewarned(noted, old.train_scores, higher)
    assert moved == [*fit_warnings(10, old.train_scores, higher), "a note of the fit"] and moved[0] != old.warnings[0]

    taught = teach(model_dir, [TeachImage(p.name, p) for p in cells["extra"]], why="new batch", by="ana").model
    assert taught.thresholds.tau != old.thresholds.tau
    assert load(model_dir).warnings == taught.warnings == fit_warnings(13, taught.train_scores, taught.thresholds)
    assert taught.warnings != old.warnings  # the fit's tau is no longer in them

    # A tau under s_max opens the band, and one that calls no more than a tenth of the training images anomalous
    # (here 1 of 13, between the two highest scores) is inside no normal part's score: no warning is left.
    highest = np.sort(taught.train_scores)[-2:]
    below = float(highest.mean())
    assert change_threshold(model_dir, why="band", by="ana", tau=below)[0].warnings == []
    # One at the median calls half of them anomalous, and says so.
    median = float(np.median(taught.train_scores))
    assert change_threshold(model_dir, why="median", by="ana", tau=median)[0].warnings == [
        f"tau ({median:.4g}) calls 7 of the 13 training images anomalous (54%), each a normal part: it lies inside the "
        f"normal parts' scores, so expect about that share of normal parts flagged; a tau above {highest[0]:.4g} calls "
        "at most 10% of them anomalous"
    ]
    capsys.readouterr()
    above = taught.thresholds.s_max + 1
    assert main(["threshold", "--model", str(model_dir), "--tau", str(above), "--why", "shut", "--by", "ana"]) == 0
    out, err = capsys.readouterr()
    expected = fit_warnings(13, taught.train_scores, load(model_dir).thresholds)
    assert len(expected) == 1 and expected[0].startswith(f"tau ({above:.4g}) is not below")
    assert json.loads(out)["warnings"] == expected == load(model_dir).warnings
    assert err == f"eagle: warning: {expected[0]}\n"


def test_a_teach_warns_of_mixed_inputs_as_a_fit_over_all_the_images_does(
    fitted: Path, cells: dict[str, list[Path]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Teaching a colour JPEG and a 16-bit PNG that uses 12 bits to a model fitted on greyscale 8-bit PNGs gives
    the warnings a fit over all of them gives (mixed encodings, mixed colour modes, few bits), printed by
    ``eagle teach``; the fit's words were kept before, so the teach said nothing of the mix."""
    from PIL import Image

    from eagle_iad.cli import main
    from eagle_iad.expert import fit
    from eagle_iad.expert.encodings import mixed_colour_warning, mixed_warning
    from eagle_iad.expert.store import load

    model_dir = _copy(fitted, tmp_path)
    folder = tmp_path / "mixed"
    folder.mkdir()
    grey = np.asarray(Image.open(cells["extra"][0]).convert("L"))
    tinted = np.stack([grey, grey, np.clip(grey.astype(np.int16) + 12, 0, 255).astype(np.uint8)], axis=-1)
    Image.fromarray(tinted).save(folder / "a-colour.jpg", quality=95)
    Image.fromarray(np.asarray(Image.open(cells["extra"][1]).convert("L")).astype(np.uint16) * 16).save(
        folder / "b-deep.png"
    )  # at most 255 * 16 = 4080: 12 of 16 bits
    assert main(["teach", str(folder), "--model", str(model_dir), "--why", "mix", "--by", "ana", "--force",
                 "--quiet"]) == 0  # fmt: skip
    out, err = capsys.readouterr()
    taught = load(model_dir)

    def inputs(warnings: list[str]) -> list[str]:
        return [w for w in warnings if w.startswith("the training images mix") or "16-bit PNG" in w]

    union = fit([*cells["base"], folder / "a-colour.jpg", folder / "b-deep.png"], "mono").model.warnings
    assert len(inputs(union)) == 3
    assert inputs(taught.warnings) == inputs(union)
    assert inputs(json.loads(out)["warnings"]) == inputs(union)
    for warning in inputs(union):
        assert f"eagle: warning: {warning}" in err
    # A second teach of plain images keeps them, once each, with the counts of all the images.
    again = tmp_path / "again"
    again.mkdir()
    shutil.copy(cells["more"][0], again / cells["more"][0].name)
    assert main(["teach", str(again), "--model", str(model_dir), "--why", "more", "--by", "ana", "--force",
                 "--quiet"]) == 0  # fmt: skip
    capsys.readouterr()
    again_taught = load(model_dir)
    assert again_taught.train_colours == {"colour": 1, "grey": 12}
    assert inputs(again_taught.warnings) == [
        *mixed_warning(again_taught.train_encodings or {}),
        *mixed_colour_warning(again_taught.train_colours),
        inputs(union)[2],
    ]
    assert (
        "12 lossless" in inputs(again_taught.warnings)[0]
        and "12 greyscale, 1 colour" in inputs(again_taught.warnings)[1]
    )


def test_an_unreadable_image_refuses_the_whole_teach_and_changes_nothing(
    fitted: Path, cells: dict[str, list[Path]], tmp_path: Path
) -> None:
    from eagle_iad.expert.teach import TeachImage, teach

    model_dir = _copy(fitted, tmp_path)
    before = _files(model_dir)
    images = [TeachImage("good.png", cells["extra"][0]), TeachImage("broken.png", b"\x89PNG\r\n\x1a\nnot a png")]
    with pytest.raises(ImageError, match=r"^broken\.png: .*; nothing was taught$"):
        teach(model_dir, images, why="x", by="ana")
    truncated = tmp_path / "trunc.png"  # a file, not an upload: the message names the file and nothing else
    truncated.write_bytes(cells["extra"][0].read_bytes()[:-2000])
    with pytest.raises(ImageError, match=rf"^{re.escape(str(truncated))}: [^:]*truncated.*; nothing was taught$"):
        teach(model_dir, [TeachImage(str(truncated), truncated)], why="x", by="ana")
    with pytest.raises(ConfigError, match="--why must say why"):
        teach(model_dir, images[:1], why="  ", by="ana")
    # Every unusable image is named in the one refusal (it named the first only: one teach per bad file).
    several = [images[1], TeachImage("empty.png", b""), images[0], TeachImage(str(truncated), truncated)]
    with pytest.raises(ImageError) as info:
        teach(model_dir, several, why="x", by="ana")
    assert str(info.value) == (
        "3 of the 4 images cannot be used: broken.png: not a recognised image format; empty.png: file "
        f"is empty (0 bytes); {truncated}: image data is truncated or corrupt (image file is truncated); fix or "
        "remove them (nothing was taught)"
    )
    assert _files(model_dir) == before


def test_a_defect_is_refused_unless_forced_and_the_labels_guard_the_teach(
    fitted: Path, cells: dict[str, list[Path]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from eagle_iad.expert import Expert
    from eagle_iad.expert.store import load
    from eagle_iad.expert.teach import LabelledImage, TeachImage, guard_limit, teach

    model_dir = _copy(fitted, tmp_path)
    model = load(model_dir)
    expert = Expert(model)
    limit = guard_limit(model.thresholds, model.train_scores)
    assert limit == model.thresholds.s_max + (model.thresholds.s_max - float(np.median(model.train_scores)))
    from PIL import Image

    far = tmp_path / "red-block.png"  # a cracked cell with a red block on it: far from any normal cell
    pixels = np.asarray(Image.open(cells["cracked"][0]).convert("RGB")).copy()
    pixels[100:200, 100:200] = (255, 0, 0)
    Image.fromarray(pixels).save(far)
    assert expert.inspect(far).score > limit
    before = _files(model_dir)
    with pytest.raises(ConfigError, match=rf"not taught: {far.name} scores [0-9.]+, far above the largest normal"):
        teach(model_dir, [TeachImage(far.name, far)], why="x", by="ana")
    extra = cells["extra"][0]
    digest = hashlib.sha256(extra.read_bytes()).hexdigest()
    with pytest.raises(ConfigError, match=rf"{extra.name} is labelled defective in the history \(inspection abc\)"):
        teach(model_dir, [TeachImage(extra.name, extra)], why="x", by="ana", labelled_defective={digest: "abc"})
    # A labelled defect the model catches and the taught model would pass: teaching that very image hides it.
    spot = tmp_path / "red-spot.png"  # an 8-pixel red spot: caught (above tau), yet under the guard's limit
    pixels = np.asarray(Image.open(cells["cracked"][0]).convert("RGB")).copy()
    pixels[150:158, 150:158] = (255, 0, 0)  # 164 against tau 155 and the limit 174 (10 px: 188, 6 px: 133)
    Image.fromarray(pixels).save(spot)
    assert model.thresholds.tau <= expert.inspect(spot).score <= limit
    with pytest.raises(ConfigError, match=r"the taught model would pass 1 image\(s\) labelled defective: d1 \(score"):
        teach(model_dir, [TeachImage(spot.name, spot)], why="x", by="ana", labelled=[LabelledImage("d1", spot)])
    # Named by the image's file name where it is known (the part a person can find), its inspection beside it.
    with pytest.raises(ConfigError, match=r"labelled defective: red-spot\.png \(inspection d1\) \(score [0-9.]+ < tau"):
        teach(model_dir, [TeachImage(spot.name, spot)], why="x", by="ana",
              labelled=[LabelledImage("d1", spot, name="red-spot.png")])  # fmt: skip
    assert _files(model_dir) == before
    # A labelled defect the model already missed does not stop a teach (it is not the teach's doing).
    missed = cells["cracked"][0]
    assert expert.inspect(missed).score < model.thresholds.tau
    other = _copy(fitted, tmp_path / "other")
    allowed = teach(other, [TeachImage(extra.name, extra)], why="x", by="ana", labelled=[LabelledImage("m1", missed)])
    assert allowed.entry["defects_passing"] == [] and allowed.entry["labelled"]["before"]["misses"] == 1
    # The same file twice, or once more later: taught once, the rest listed as skipped.
    twice = teach(other, [TeachImage("a.png", cells["extra"][1]), TeachImage("b.png", cells["extra"][1]),
                          TeachImage("c.png", extra)], why="x", by="ana")  # fmt: skip
    assert [i["name"] for i in twice.entry["images"]] == ["taught-2/0001-a.png"]
    assert twice.entry["skipped"] == ["b.png", "c.png"]
    assert twice.entry["skipped_why"] == [
        "given twice (as a.png)",
        f"taught before (change 1, as taught-1/0001-{extra.name})",
    ]
    with pytest.raises(ConfigError, match=r"every image is in this model already \(d\.png: taught before \(change 1, "):
        teach(other, [TeachImage("d.png", extra)], why="x", by="ana")
    forced = teach(model_dir, [TeachImage(far.name, far)], why="it is normal, really", by="ana", force=True,
                   labelled=[LabelledImage("d1", far), LabelledImage("gone", tmp_path / "missing.png"),
                             LabelledImage("n1", cells["extra"][1], "normal")])  # fmt: skip
    # Each guard it was forced past is on the record, the labelled defect it now passes too (t-shift finding 2).
    [above, passes] = forced.entry["forced"]
    assert "far above" in above and re.fullmatch(
        r"the taught model would pass 1 image\(s\) labelled defective: d1 \(score [0-9.]+ < tau [0-9.]+\)", passes
    )
    from eagle_iad.expert.versions import list_versions

    assert list_versions(model_dir)[-1]["forced"] == forced.entry["forced"]
    assert list_versions(other)[-1]["forced"] is None
    from eagle_iad.cli import main

    capsys.readouterr()
    assert main(["versions", "--model", str(model_dir)]) == 0
    [line] = [line for line in capsys.readouterr().out.splitlines() if " teach " in line]
    assert f" teach +1 images FORCED ({above}; {passes}) by ana: it is normal, really " in line, line
    # Taught, it is a training image far above the others: the model's warnings name it by its taught name.
    named = [w for w in forced.model.warnings if "training image scores far above the others" in w]
    assert len(named) == 1 and f": taught-1/0001-{far.name} (" in named[0], forced.model.warnings
    assert forced.entry["defects_checked"] == 1 and [d["where"] for d in forced.entry["defects_passing"]] == ["d1"]
    # The labelled images scored before and after (the missing one left out): the defect now passes.
    assert forced.entry["labelled"]["before"]["images"] == forced.entry["labelled"]["after"]["images"] == 2
    assert forced.entry["labelled"]["before"]["misses"] == 0 and forced.entry["labelled"]["after"]["misses"] == 1


def test_a_refusal_of_an_image_encoded_unlike_the_training_images_says_so(
    fitted: Path, cells: dict[str, list[Path]], tmp_path: Path
) -> None:
    """A good part saved as JPEG scores far above a model fitted on PNGs, and the teach said only "it looks
    defective" (t-odd finding 9) where an inspection of the same file warns of the encoding: the refusal now
    carries that warning, word for word, and a refusal of a PNG does not."""
    from PIL import Image

    from eagle_iad.expert.encodings import input_warning
    from eagle_iad.expert.store import load
    from eagle_iad.expert.teach import TeachImage, teach

    model_dir = _copy(fitted, tmp_path)
    model = load(model_dir)
    assert model.train_encodings == {"lossless": 10}
    pixels = np.asarray(Image.open(cells["cracked"][0]).convert("RGB")).copy()
    pixels[100:200, 100:200] = (255, 0, 0)  # far above any normal cell, as PNG and as JPEG
    png, jpeg = tmp_path / "block.png", tmp_path / "block.jpg"
    Image.fromarray(pixels).save(png)
    Image.fromarray(pixels).save(jpeg, quality=95)
    note = input_warning(model.train_encodings, "jpeg 4:2:0 q95")
    assert note is not None and note.startswith("a JPEG (jpeg 4:2:0 q95) inspected by a model fitted on lossless")
    before = _files(model_dir)
    with pytest.raises(ConfigError) as refused:
        teach(model_dir, [TeachImage(jpeg.name, jpeg)], why="a good part", by="ana")
    assert re.fullmatch(
        r"not taught: block\.jpg scores [0-9.]+, far above the largest normal score [0-9.]+ \(limit [0-9.]+\): it "
        r"looks defective; or its encoding is to blame, as an inspection of it warns: "
        + re.escape(note)
        + r" \(check the images, or force the teach\)",
        str(refused.value),
    )
    with pytest.raises(ConfigError) as refused:
        teach(model_dir, [TeachImage(png.name, png)], why="a good part", by="ana")
    assert str(refused.value).endswith("): it looks defective (check the images, or force the teach)")
    assert _files(model_dir) == before


def test_an_unrecognised_image_is_refused_unless_forced_and_one_above_s_max_is_taught_with_a_warning(
    fitted: Path, cells: dict[str, list[Path]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A black frame (a blocked camera) scores under the guard's limit, yet the model calls it unrecognised:
    teaching it would make a blocked camera pass and raise s_max, so it is refused with the share beyond
    the training images, as an inspection says it, unless forced. A defective cell scoring above s_max but
    under the limit is taught (a false alarm is above tau by definition), named in the record's warnings."""
    from PIL import Image

    from eagle_iad.cli import main
    from eagle_iad.expert import Expert
    from eagle_iad.expert.store import load
    from eagle_iad.expert.teach import TeachImage, guard_limit, teach
    from eagle_iad.expert.versions import list_versions

    model_dir = _copy(fitted, tmp_path)
    model = load(model_dir)
    expert = Expert(model)
    limit = guard_limit(model.thresholds, model.train_scores)
    assert model.coverage is not None and model.coverage.limit == 0.2
    black = tmp_path / "black.png"
    Image.fromarray(np.zeros((300, 300, 3), dtype=np.uint8)).save(black)
    seen = expert.inspect(black)
    assert seen.foreign_share is not None and model.coverage.unrecognised(seen.foreign_share)
    assert seen.score < limit  # the score alone would let it through
    reason = (f"black.png is unrecognised: {seen.foreign_share:.0%} of it is beyond the training images (20% or "
              "more makes an image unlike them)")  # fmt: skip
    assert reason.startswith("black.png is unrecognised: 90% of it")
    before = _files(model_dir)
    with pytest.raises(ConfigError) as refused:
        teach(model_dir, [TeachImage(black.name, black)], why="x", by="ana")
    assert str(refused.value) == f"not taught: {reason} (check the images, or force the teach)"
    assert _files(model_dir) == before and [v["action"] for v in list_versions(model_dir)] == ["fit"]
    # With a normal cell beside it: the whole teach is refused, naming only the unrecognised image.
    with pytest.raises(ConfigError) as refused:
        teach(model_dir, [TeachImage("good.png", cells["extra"][0]), TeachImage(black.name, black)], why="x", by="a")
    assert str(refused.value) == f"not taught: {reason} (check the images, or force the teach)"
    assert _files(model_dir) == before
    # The command line says the same and leaves the model as it was.
    capsys.readouterr()
    assert main(["teach", str(black), "--model", str(model_dir), "--why", "x", "--by", "ana"]) == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"eagle: error: not taught: {reason.replace('black.png', str(black))} (check the images, or force the teach)"
    )
    assert _files(model_dir) == before
    # Forced: taught, the reason on the record, and the s_max it raised with it.
    forced = teach(model_dir, [TeachImage(black.name, black)], why="a black frame is normal here", by="ana",
                   force=True)  # fmt: skip
    assert forced.entry["forced"] == [reason]
    # ... but a black frame does not widen the exposure range (rev1 finding 8): its warning says so
    [dark] = forced.entry["warnings"]
    assert dark.startswith("black.png: taught, but its exposure (mean grey 0.0, spread 0.0) lies far outside"), dark
    assert load(model_dir).train_exposure == model.train_exposure
    kept = load(model_dir).history[-1]
    assert kept["forced"] == [reason] and kept["before"]["s_max"] == model.thresholds.s_max
    assert kept["after"]["s_max"] == forced.model.thresholds.s_max > model.thresholds.s_max
    assert [v["action"] for v in list_versions(model_dir)] == ["fit", "teach"]

    # A defective cell above s_max and under the limit, like the training images: taught, with a warning.
    high = next(p for p in cells["cracked"] if model.thresholds.s_max < expert.inspect(p).score <= limit)
    assert not model.coverage.unrecognised(expert.inspect(high).foreign_share)
    other = _copy(fitted, tmp_path / "other")
    capsys.readouterr()
    assert main(["teach", str(high), "--model", str(other), "--why", "x", "--by", "ana"]) == 0
    out, err = capsys.readouterr()
    entry = load(other).history[-1]
    score, s_max = entry["images"][0]["score_before"], entry["after"]["s_max"]
    assert score > model.thresholds.s_max and entry["forced"] is None
    # Both of its scores: its training score (leave-own-out, its own coreset rows left out) is what s_max follows,
    # and is below its inspection score; the warning says where s_max went, never that it rose when it did not.
    trained = entry["images"][0]["score"]
    assert trained < score
    moved = f"s_max fell to {s_max:.4g}"
    if s_max >= model.thresholds.s_max:
        moved = f"s_max rose to {s_max:.4g}" if s_max > model.thresholds.s_max else f"s_max stays {s_max:.4g}"
    assert (s_max > model.thresholds.s_max) == (trained > model.thresholds.s_max)  # only this image could lift it
    warning = (f"{high} scored {score:.4g} on inspection, above the largest normal training score (s_max) "
               f"{model.thresholds.s_max:.4g}: it was taught, and its training score is {trained:.4g}; {moved}; check "
               "that it is normal")  # fmt: skip
    assert entry["warnings"] == [warning]
    answer = json.loads(out)
    assert answer["warnings"] == [warning, *load(other).warnings]
    assert err.splitlines()[-len(answer["warnings"]) :] == [f"eagle: warning: {w}" for w in answer["warnings"]]
    # An image under s_max gives no warning.
    quiet = teach(other, [TeachImage(p.name, p) for p in cells["extra"]], why="new batch", by="ana")
    assert quiet.entry["warnings"] is None


def test_two_images_of_one_name_are_told_apart_in_the_messages_and_the_record(
    fitted: Path, cells: dict[str, list[Path]], tmp_path: Path
) -> None:
    """Images that share a file name (two inspections' ``frame.png``, ``x.png`` of two folders) are named with
    their inspection or source path where they are refused or skipped, and with the name they are stored under
    (``taught-N/000k-x.png``, as the record's images) in the record's warnings."""
    from PIL import Image

    from eagle_iad.expert import Expert
    from eagle_iad.expert.store import load
    from eagle_iad.expert.teach import TeachImage, guard_limit, teach

    model_dir = _copy(fitted, tmp_path)
    model = load(model_dir)
    expert = Expert(model)
    black = tmp_path / "b" / "frame.png"
    black.parent.mkdir()
    Image.fromarray(np.zeros((300, 300, 3), dtype=np.uint8)).save(black)
    good = tmp_path / "a" / "frame.png"
    good.parent.mkdir()
    shutil.copy(cells["extra"][0], good)
    share = f"{expert.inspect(black).foreign_share:.0%}"
    why = f"is unrecognised: {share} of it is beyond the training images (20% or more makes an image unlike them)"
    tail = " (check the images, or force the teach)"
    with pytest.raises(ConfigError) as refused:  # the service's teach of two inspections' frame.png
        two = [TeachImage("frame.png", good, inspection="i1", label="normal"),
               TeachImage("frame.png", black, inspection="i2", label="normal")]  # fmt: skip
        teach(model_dir, two, why="x", by="a")
    assert str(refused.value) == f"not taught: frame.png (inspection i2) {why}{tail}"
    with pytest.raises(ConfigError) as refused:  # a folder's images named by their file names
        teach(model_dir, [TeachImage("frame.png", good), TeachImage("frame.png", black)], why="x", by="a")
    assert str(refused.value) == f"not taught: frame.png ({black}) {why}{tail}"
    # The same bytes under one name in two folders: taught once, the skip names which one.
    twin = tmp_path / "c" / "frame.png"
    twin.parent.mkdir()
    shutil.copy(good, twin)
    limit = guard_limit(model.thresholds, model.train_scores)
    high = next(p for p in cells["cracked"] if model.thresholds.s_max < expert.inspect(p).score <= limit)
    shutil.copy(high, tmp_path / "a" / "x.png")
    shutil.copy(cells["extra"][1], tmp_path / "c" / "x.png")
    result = teach(model_dir, [TeachImage("frame.png", good), TeachImage("frame.png", twin),
                               TeachImage("x.png", tmp_path / "a" / "x.png"),
                               TeachImage("x.png", tmp_path / "c" / "x.png")], why="x", by="a")  # fmt: skip
    entry = result.entry
    assert entry["skipped"] == [f"frame.png ({twin})"]
    assert entry["skipped_why"] == [f"given twice (as frame.png ({good}))"]
    assert [i["name"] for i in entry["images"]] == ["taught-1/0001-frame.png", "taught-1/0002-x.png",
                                                    "taught-1/0003-x.png"]  # fmt: skip
    # The warning names the stored name, so the record tells which x.png scored high.
    (warning,) = entry["warnings"]
    score = entry["images"][1]["score_before"]
    s_max = model.thresholds.s_max
    assert warning.startswith(f"x.png (stored as taught-1/0002-x.png) scored {score:.4g} on inspection, above "
                              f"the largest normal training score (s_max) {s_max:.4g}: it was taught")  # fmt: skip


def test_eagle_teach_from_the_command_line(fitted: Path, cells: dict[str, list[Path]], tmp_path: Path) -> None:
    model_dir = _copy(fitted, tmp_path)
    folder = tmp_path / "new"
    folder.mkdir()
    for path in cells["extra"][:2]:
        shutil.copy(path, folder / path.name)
    run = subprocess.run(
        [sys.executable, "-m", "eagle_iad.cli", "teach", str(folder), "--model", str(model_dir), "--why", "batch 7",
         "--by", "ana"], capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    answer = json.loads(run.stdout)
    manifest = json.loads((model_dir / "model.json").read_text())
    assert (answer["change"], answer["version"], answer["images"], answer["tau"]) == (
        1, manifest["history"][0]["version"], 2, manifest["thresholds"]["tau"]
    )  # fmt: skip
    assert answer["rescored"] == manifest["history"][0]["rescored"] == {"exact": 10, "bounded": 0}
    assert manifest["training"]["tails"] == {"per_image": 8, "rows": 12 * 8}
    by = manifest["history"][0]["by"]  # --by is anyone's word: marked as given on this machine
    assert by.startswith("cli:") and by.endswith(" as ana") and len(manifest["training"]["images"]) == 12
    missing = subprocess.run(
        [sys.executable, "-m", "eagle_iad.cli", "teach", str(tmp_path / "nope.png"), "--model", str(model_dir),
         "--why", "x"], capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert missing.returncode == 2
    nope = tmp_path / "nope.png"
    assert missing.stderr.strip() == f"eagle: error: {nope}: no such file or folder; nothing was taught"


# ----------------------------------------------------------------------------------------------- the service


def test_the_service_teaches_labelled_inspections_and_keeps_their_images(
    fitted: Path, cells: dict[str, list[Path]], tmp_path: Path
) -> None:
    from fastapi.testclient import TestClient

    from eagle_iad.service.app import create_app
    from eagle_iad.service.settings import ServiceSettings

    models = tmp_path / "models"
    models.mkdir()
    shutil.copytree(fitted, models / "mono")
    settings = ServiceSettings(models_dir=models, state_dir=tmp_path / "state", data_root=tmp_path)
    with TestClient(create_app(settings)) as client:
        ids = []
        for path in cells["extra"][:2]:
            answer = client.post(
                "/v1/inspect", data={"category": "mono"}, files={"image": (path.name, path.read_bytes(), "image/png")}
            )
            assert answer.status_code == 200, answer.text
            ids.append(answer.json()["id"])
            kept = tmp_path / "state" / "files" / ids[-1] / "image"
            assert kept.read_bytes() == path.read_bytes()
        assert client.get(f"/v1/files/{ids[0]}/image").status_code == 404  # kept, not served
        body: dict[str, Any] = {"inspections": ids, "why": "new batch of glass", "by": "ana"}
        # An inspection nobody labelled normal is refused unless forced (a wrong id would teach whatever it names).
        unlabelled = client.post("/v1/categories/mono/teach", json=body)
        assert (unlabelled.status_code, unlabelled.json()["error"]["code"]) == (400, "not_taught")
        assert (f"{cells['extra'][0].name} (inspection {ids[0]}) is labelled normal by nobody: label it normal first"
                in unlabelled.json()["error"]["message"])  # fmt: skip
        # Forced, it is on the record, and the inspection nobody labelled is labelled normal in the teacher's name.
        assert client.put(f"/v1/inspections/{ids[0]}/label", json={"label": "normal"}).status_code == 200
        taught = client.post("/v1/categories/mono/teach", json=body | {"force": True})
        assert taught.status_code == 200, taught.text
        change, category = taught.json()["change"], taught.json()["category"]
        second = f"{cells['extra'][1].name} (inspection {ids[1]})"
        assert change["forced"] == [f"{second} is labelled normal by nobody: label it normal first (a wrong id would "
                                    "teach whatever it names)"]  # fmt: skip
        assert taught.json()["notices"] == [f"{second} was labelled normal by nobody: it is now labelled normal by "
                                            "ana, who taught it"]  # fmt: skip
        now = client.get(f"/v1/inspections/{ids[1]}").json()
        assert (now["label"], now["label_by"], now["label_note"]) == (
            "normal", "ana", "taught as normal (forced: labelled by nobody before): new batch of glass")  # fmt: skip
        assert category["train_images"] == 12 and category["history"][-1] == change
        # Stored under the file's own name (what the version comparison shows), the inspection kept beside it.
        assert [(i["name"], i["inspection"]) for i in change["images"]] == [
            (f"taught-1/{n + 1:04d}-{p.name}", i) for n, (i, p) in enumerate(zip(ids, cells["extra"][:2], strict=True))
        ]
        unknown = client.post("/v1/categories/mono/teach", json={"inspections": ["nope"], "why": "x"})
        assert (unknown.status_code, unknown.json()["error"]["message"]) == (
            400, "category 'mono': no inspection 'nope' in the history; nothing was taught",
        )  # fmt: skip
        empty = client.post("/v1/categories/mono/teach", json={"why": "x"})
        assert empty.status_code == 400 and "give the inspections to teach" in empty.json()["error"]["message"]
        # A labelled defect guards the teach: the same image labelled defective is refused.
        labelled = client.put(f"/v1/inspections/{ids[0]}/label", json={"label": "anomalous"})
        assert labelled.status_code == 200, labelled.text
        # ... and, taught already, the label's answer says it is inside the current model (t-shift finding 2/4).
        [notice] = labelled.json()["notices"]
        assert notice.startswith(f"{cells['extra'][0].name} is inside the current model of mono as taught-1/0001-")
        assert "taught as normal by ana at " in notice and "(new batch of glass)" in notice
        assert client.put(f"/v1/inspections/{ids[1]}/label", json={"label": "normal"}).json()["notices"] == []
        refused = client.post("/v1/categories/mono/teach", json={"inspections": [ids[0]], "why": "x"})
        assert refused.status_code == 400
        assert f"is labelled defective in the history (inspection {ids[0]})" in refused.json()["error"]["message"]
        assert client.post("/v1/categories/nope/teach", json={"inspections": ids, "why": "x"}).status_code == 404
        # A threshold change records the labelled history's figures at the tau before and after, as a teach does.
        score = client.get(f"/v1/inspections/{ids[0]}").json()["score"]
        tau = client.get("/v1/categories/mono").json()["tau"]
        changed = client.post("/v1/categories/mono/threshold", json={"tau": score + 1.0, "why": "looser"})
        assert changed.status_code == 200, changed.text
        entry = changed.json()["history"][-1]
        other = client.get(f"/v1/inspections/{ids[1]}").json()["score"]  # labelled normal (to be taught)
        # ... and which parts it counted (inspection ids and labels): a count of as many other parts is not theirs
        both = labelled_parts([(ids[0], "anomalous"), (ids[1], "normal")])
        assert both != labelled_parts([(ids[0], "normal"), (ids[1], "normal")])  # relabelled: not the same parts
        assert entry["labelled"] == {
            "before": {"images": 2, "false_alarms": int(other >= tau), "misses": int(score < tau), "parts": both},
            "after": {"images": 2, "false_alarms": int(other >= score + 1.0), "misses": 1, "parts": both},
        }
        versions = client.get("/v1/categories/mono/versions").json()["versions"]
        assert [v["action"] for v in versions] == ["fit", "teach", "threshold"]
        assert versions[1]["forced"] == change["forced"]
        # The teach names the inspections it took (the console lists what is labelled normal and not yet taught).
        assert versions[1]["inspections_added"] == ids and versions[0].get("inspections_added") is None
        assert versions[-1]["labelled"] == entry["labelled"]
        # the teach scored the one inspection labelled normal then (to be taught) before and after
        assert [versions[1]["labelled"][when]["images"] for when in ("before", "after")] == [1, 1]
        assert versions[1]["labelled"]["after"]["parts"] == labelled_parts([(ids[0], "normal")])
        # What the current model was taught, read from its own history: a version pruned by hand (the teach's own)
        # does not make the taught parts look untaught, and a rollback to the fit undoes them.
        assert client.get("/v1/categories/mono/versions").json()["taught_inspections"] == ids
        shutil.rmtree(models / "mono" / "versions" / "2")
        assert client.get("/v1/categories/mono/versions").json()["taught_inspections"] == ids
        back = client.post("/v1/categories/mono/rollback", json={"to": 1, "why": "undo the teach"})
        assert back.status_code == 200, back.text
        assert client.get("/v1/categories/mono/versions").json()["taught_inspections"] == []


def test_the_service_refuses_an_unrecognised_image_with_the_reason_and_warns_of_one_above_s_max(
    fitted: Path, cells: dict[str, list[Path]], tmp_path: Path
) -> None:
    """POST /v1/categories/{name}/teach: an inspection the model called unrecognised is refused (400
    not_taught, the share in the message, the model unchanged) unless forced; a cell above s_max is taught
    and its warning is in the answer's change."""
    from fastapi.testclient import TestClient
    from PIL import Image

    from eagle_iad.expert import Expert
    from eagle_iad.expert.store import load
    from eagle_iad.expert.teach import guard_limit
    from eagle_iad.service.app import create_app
    from eagle_iad.service.settings import ServiceSettings

    models = tmp_path / "models"
    models.mkdir()
    shutil.copytree(fitted, models / "mono")
    model = load(fitted)
    expert = Expert(model)
    limit = guard_limit(model.thresholds, model.train_scores)
    high = next(p for p in cells["cracked"] if model.thresholds.s_max < expert.inspect(p).score <= limit)
    black = tmp_path / "black.png"
    Image.fromarray(np.zeros((300, 300, 3), dtype=np.uint8)).save(black)
    settings = ServiceSettings(models_dir=models, state_dir=tmp_path / "state", data_root=tmp_path)
    with TestClient(create_app(settings)) as client:
        ids = {}
        for path in (black, high):
            answer = client.post(
                "/v1/inspect", data={"category": "mono"}, files={"image": (path.name, path.read_bytes(), "image/png")}
            )
            assert answer.status_code == 200, answer.text
            ids[path] = answer.json()["id"]
            assert client.put(f"/v1/inspections/{ids[path]}/label", json={"label": "normal"}).status_code == 200
        inspected = client.get(f"/v1/inspections/{ids[black]}").json()
        assert inspected["decision"] == "unrecognised", inspected
        before = _files(models / "mono")
        refused = client.post("/v1/categories/mono/teach", json={"inspections": [ids[black]], "why": "x"})
        assert (refused.status_code, refused.json()["error"]["code"]) == (400, "not_taught")
        assert refused.json()["error"]["message"] == (
            "category 'mono': not taught: black.png is unrecognised: 90% of it is beyond the training "
            "images (20% or more makes an image unlike them) (check the images, or force the teach)"
        )
        assert _files(models / "mono") == before
        warned = client.post("/v1/categories/mono/teach", json={"inspections": [ids[high]], "why": "a false alarm"})
        assert warned.status_code == 200, warned.text
        change = warned.json()["change"]
        assert change["forced"] is None and len(change["warnings"]) == 1
        # The file's own name, as inspected: not the inspection id glued to it.
        assert change["warnings"][0].startswith(f"{high.name} scored ")
        s_max = f"{model.thresholds.s_max:.4g}"
        assert f"above the largest normal training score (s_max) {s_max}: it was taught" in change["warnings"][0]
        # Forced: taught, on the record (the share is smaller now: the cell taught widened the coverage).
        body = {"inspections": [ids[black]], "why": "x", "force": True}
        forced = client.post("/v1/categories/mono/teach", json=body)
        assert forced.status_code == 200, forced.text
        [reason] = forced.json()["change"]["forced"]
        assert re.fullmatch(r"black\.png is unrecognised: [0-9]+% of it is beyond the training images "
                            r"\(20% or more makes an image unlike them\)", reason)  # fmt: skip
        # The version made by force says so in the versions list and in the audit row (t-shift finding 2).
        assert client.get("/v1/categories/mono/versions").json()["versions"][-1]["forced"] == [reason]
        assert client.get("/v1/audit").json()["items"][0]["detail"] == f"taught 1 image(s): x, forced past: {reason}"


def test_a_change_made_during_a_teach_is_kept_and_the_teach_refused(
    fitted: Path, cells: dict[str, list[Path]], tmp_path: Path
) -> None:
    from eagle_iad.expert.store import change_threshold, load
    from eagle_iad.expert.teach import TeachImage, teach

    model_dir = _copy(fitted, tmp_path)
    changed: list[str] = []

    def meanwhile(stage: str, done: int, total: int) -> None:  # another user's change lands mid-teach
        if stage == "features" and not changed:
            change_threshold(model_dir, why="meanwhile", by="bo", tau=99.0)
            changed.append(stage)

    with pytest.raises(
        ConfigError,
        match=r"version 2 \(threshold set to 99 by bo at .*\) was made while this change was prepared, so the model "
        "changed while it ran and nothing was saved: run the command again",
    ):
        teach(model_dir, [TeachImage(p.name, p) for p in cells["extra"][:1]], why="x", by="ana", progress=meanwhile)
    kept = load(model_dir)
    assert kept.thresholds.tau == 99.0 and [e["why"] for e in kept.history] == ["meanwhile"]


#: The child of the crash test: teaches one image and SIGKILLs itself at the save step named in argv[3].
_CRASHING_TEACH = """
import os, signal, sys
from pathlib import Path
from eagle_iad.expert import store
from eagle_iad.expert.teach import TeachImage, teach

def crash(name):
    if name == sys.argv[3]:
        os.kill(os.getpid(), signal.SIGKILL)

store._step_hook = crash
image = Path(sys.argv[2])
teach(sys.argv[1], [TeachImage(image.name, image)], why="x", by="ana")
sys.exit(3)
"""


@pytest.mark.parametrize("step", ["staging created", "tensors written", "staged", "exchanged", "saved"])
def test_kill_at_each_step_of_a_teach_leaves_the_old_or_the_taught_model(
    fitted: Path, cells: dict[str, list[Path]], tmp_path: Path, step: str
) -> None:
    """A real process SIGKILLed at each step of the teach's save (a fork would inherit torch's threads)."""
    import signal

    from eagle_iad.expert.store import load
    from eagle_iad.expert.versions import list_versions

    model_dir = _copy(fitted, tmp_path)
    before = _files(model_dir)
    child = subprocess.run([sys.executable, "-c", _CRASHING_TEACH, str(model_dir), str(cells["extra"][0]), step],
                           capture_output=True, text=True, timeout=600)  # fmt: skip
    assert child.returncode == -signal.SIGKILL, child.stderr
    model = load(model_dir)  # a reader recovers a retired copy, if the crash left one
    taught = step in ("exchanged", "saved")
    assert len(model.train_images) == (11 if taught else 10)
    listed = list_versions(model_dir)
    assert [v["action"] for v in listed] == (["fit", "teach"] if taught else ["fit"]) and listed[-1]["current"]
    if not taught:
        assert _files(model_dir) == before
