"""Fitting PatchCore on normal images: features, coreset, leave-own-out thresholds, map calibration.

Split from the expert (expert/patchcore.py), which only scores: a fit is a pipeline of steps that
run once per category, each timed and reported, and its checks (every training image scorable, a
threshold above 0) refuse a model nothing could use before it is saved. Returns an
:class:`~eagle_iad.expert.patchcore.Expert` directly, so a fresh model is used without a save/load
round trip.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from eagle_iad.errors import ConfigError, ImageError, OutputError
from eagle_iad.expert.backbones import FeatureExtractor
from eagle_iad.expert.config import ExpertConfig
from eagle_iad.expert.coreset import Extension, greedy_samples, kept_rows, make_sampler
from eagle_iad.expert.coverage import fit_coverage
from eagle_iad.expert.encodings import (
    count_encodings,
    depth_warning,
    mixed_colour_warning,
    mixed_warning,
)
from eagle_iad.expert.features import RowFile
from eagle_iad.expert.geometry import ViewGeometry
from eagle_iad.expert.leave_own_out import leave_own_out
from eagle_iad.expert.lighting import ExposureRange
from eagle_iad.expert.model_warnings import fit_warnings
from eagle_iad.expert.patchcore import (
    Expert,
    ExpertModel,
    embed_runs,
    extractor_for,
    input_map,
    progress_bar,
    split_grids,
)
from eagle_iad.expert.preprocess import INPUT_MULTIPLE, input_size_for, prepare, preprocessor_of
from eagle_iad.expert.references import thumbnail
from eagle_iad.expert.search import make_search
from eagle_iad.expert.tails import select_tails
from eagle_iad.file_hash import file_sha256
from eagle_iad.images import colour_mode, decode_problems, load_rgb, unusable_error
from eagle_iad.outputs import SPACE_ERRNOS
from eagle_iad.scratch import scratch_folder, scratch_root
from eagle_iad.stops import checkpoint
from eagle_iad.tgps.calibration import calibrate_maps
from eagle_iad.tgps.thresholds import Thresholds, compute_thresholds

#: ``progress(stage, done, total)``: the fitting stages (``features``, ``coreset``, ``training scores``)
#: report here as they advance, so a service can stream progress without scraping tqdm output.
FitProgress = Callable[[str, int, int], None]


def _reporter(bar: tqdm[Any], stage: str = "", hook: FitProgress | None = None) -> Callable[[int, int], None]:
    """Adapt a tqdm bar (and the optional ``hook``) to the ``progress(done, total)`` callbacks of the fitting steps."""

    def report(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()
        if hook is not None:
            hook(stage, done, total)

    return report


@dataclass(frozen=True)
class TrainingPatches:
    """The training patches (image after image) and, per image, its patch grid and geometry.

    Every image of a fixed-grid mode has the same grid and views; a ``scale`` model's images each have
    their own (their input follows their shape), so the fit splits its per-patch results by ``counts``.
    """

    features: torch.Tensor | RowFile
    grids: list[tuple[int, int]]
    geometries: list[ViewGeometry]
    counts: list[int]

    def split(self, values: np.ndarray) -> list[np.ndarray]:
        """Per-patch values (training order) as each image's ``views x h x w`` grids."""
        return split_grids(values, self.counts, self.grids)


def _embed_training(
    extractor: FeatureExtractor,
    paths: Sequence[Path],
    config: ExpertConfig,
    show_progress: bool,
    hook: FitProgress | None = None,
    scratch: Path | None = None,
) -> TrainingPatches:
    """The training patches, each image's grid, geometry and patch count.

    Images share a backbone pass in batches of ``batch_size``, split where the input size changes (a
    ``scale`` model's images have their own). Without ``scratch`` the patches are an
    ``N x D`` tensor; with ``scratch`` (a folder) each batch is appended to a float32 :class:`RowFile`
    there (image after image) instead of being concatenated in RAM, so memory stays flat as the
    training set grows; the values are the same float32 numbers either way.
    """
    chunks: list[torch.Tensor] = []
    stored = None if scratch is None else RowFile(scratch / "features.f32", config.target_dim)
    grids: list[tuple[int, int]] = []
    geometries: list[ViewGeometry] = []
    counts: list[int] = []

    try:
        with progress_bar(len(paths), "features", show_progress) as bar:
            for start in range(0, len(paths), config.batch_size):
                views: list[torch.Tensor] = []
                for path in paths[start : start + config.batch_size]:
                    try:
                        rgb = load_rgb(path)
                    except ImageError as exc:
                        raise ImageError(f"training image rejected: {exc}") from exc
                    tensor, geometry = prepare(rgb, config)
                    views.append(tensor)
                    geometries.append(geometry)
                patches, batch_counts, batch_grids = embed_runs(extractor, views, config)
                counts.extend(batch_counts)
                grids.extend(batch_grids)
                if stored is None:
                    chunks.append(patches)
                else:
                    stored.append(patches.numpy())
                bar.update(min(config.batch_size, len(paths) - start))
                checkpoint("fit features")  # test hook: features on disk, the fit under way
                if hook is not None:
                    hook("features", min(start + config.batch_size, len(paths)), len(paths))
    finally:
        if stored is not None:
            stored.close()
    features = torch.cat(chunks) if stored is None else stored
    return TrainingPatches(features, grids, geometries, counts)


def _check_training_images(paths: Sequence[Path]) -> None:
    """Decode every training image once before any work; one error naming every one that cannot be used.

    Why: the fit met a bad file only when it reached it, so a folder with three went through three runs,
    each a minute of features lost. Decoding costs seconds (threads) beside the backbone's pass.
    """
    problems = decode_problems(paths, workers=max(1, min(8, os.cpu_count() or 1)))
    if len(problems) == 1:
        raise ImageError(f"training image rejected: {problems[0]}")
    if problems:
        raise unusable_error(problems, len(paths), "training images", "nothing was fitted")


def _image_shape(path: Path) -> tuple[int, int]:
    """``(height, width)`` from the header, after EXIF rotation (as :func:`load_rgb` decodes it)."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            width, height = image.size
            orientation = image.getexif().get(0x0112, 1)
    except (OSError, ValueError, SyntaxError) as exc:
        raise ImageError(f"training image rejected: {path}: image data is truncated or corrupt ({exc})") from exc
    return (width, height) if orientation in (5, 6, 7, 8) else (height, width)


def with_input_size(
    config: ExpertConfig, paths: Sequence[Path], shapes: Sequence[tuple[int, int]] | None = None
) -> ExpertConfig:
    """Fix a whole-frame input size from the training images' median aspect ratio (unless already set).

    The long side is ``size``, or the images' own median long side (rounded up to a multiple of 32)
    where that lies above ``size`` and at most ``native_up_to``: downscaling a 400-px tire to 320 lost
    the detail that ranks its defects (docs/METHOD.md), while images much larger than that are the
    tile mode's. Both results are recorded in the model (``size``, ``input_hw``).
    """
    if not preprocessor_of(config).sized_from_images or config.input_hw is not None:
        return config
    shapes = list(shapes) if shapes is not None else [_image_shape(path) for path in paths]
    aspect = float(np.median([h / w for h, w in shapes]))
    size = native_side(config.size, config.native_up_to, float(np.median([max(shape) for shape in shapes])))
    height, width = input_size_for(round(1000 * aspect), 1000, size)
    sized = replace(config, size=size, input_hw=(height, width))
    fields: dict[str, Any] = dict(preprocessor_of(config).fitted_fields(sized, shapes))
    return replace(sized, **fields)


def native_side(size: int, native_up_to: int, long_side: float) -> int:
    """``size``, or ``long_side`` rounded up to a multiple of 32 where ``size < long_side <= native_up_to``."""
    if size < long_side <= native_up_to:
        return int(-(-long_side // INPUT_MULTIPLE) * INPUT_MULTIPLE)
    return size


def _relative_names(paths: Sequence[Path]) -> list[str]:
    """Training image names relative to their common folder (unique, and no absolute paths saved)."""
    parents = [str(p.resolve().parent) for p in paths]
    base = Path(os.path.commonpath(parents)) if parents else Path()
    return [str(p.resolve().relative_to(base)) for p in paths]


def fit(
    paths: Iterable[Path | str],
    category: str,
    config: ExpertConfig | None = None,
    extractor: FeatureExtractor | None = None,
    show_progress: bool = False,
    progress: FitProgress | None = None,
) -> Expert:
    """Fit PatchCore on normal images and set the TGPS thresholds from leave-own-out scores.

    ``progress(stage, done, total)`` is called as each stage advances (independently of the tqdm bars
    that ``show_progress`` draws), e.g. by the service to stream a fit job's progress.

    The training features live in a scratch file in a private, locked scratch folder
    (:func:`eagle_iad.scratch.scratch_folder`: ``--scratch`` or ``TMPDIR``), so memory holds only the
    coreset's projection and the bank; the folder is removed when the fit ends, fails or is stopped
    (SIGINT/SIGTERM), and by the next fit's clean-up after a SIGKILL.
    """
    root = scratch_root()
    try:
        with scratch_folder("fit", root) as scratch:
            return _fit(paths, category, config, extractor, show_progress, progress, scratch)
    except OSError as exc:
        if exc.errno not in SPACE_ERRNOS:
            raise
        raise OutputError(
            f"{root}: no room for the fit's scratch features ({exc.strerror}); set --scratch (or TMPDIR) to a "
            "folder on a disk with more free space"
        ) from None


def _check_scorable(scores: np.ndarray, bank_ids: torch.Tensor, patches: int, config: ExpertConfig) -> None:
    """Refuse a fit whose training images cannot all be scored against the others' bank entries.

    A training image is scored against the bank minus its own patches; when the coreset kept patches
    of one image only (a tiny ``coreset_ratio``, very few images, or identical images whose farthest
    points all come from the first), that image has nothing to be compared with and its score is
    infinite: no threshold can rest on it.
    """
    if bool(np.all(np.isfinite(scores))):
        return
    owners = sorted({int(i) for i in bank_ids.tolist()})
    raise ConfigError(
        f"the coreset keeps {int(bank_ids.shape[0])} of {patches} training patches, all from training image "
        f"{owners[0] + 1}, so that image cannot be scored against the others (the threshold needs that): the "
        f"training images may be identical, or the coreset is too small (coreset_ratio {config.coreset_ratio}, "
        f"coreset_points {config.coreset_points}); give varied normal images or a larger coreset_ratio"
    )


def _check_threshold(thresholds: Thresholds, scores: np.ndarray, config: ExpertConfig) -> None:
    """Refuse a learned threshold of 0 or less, or below every training score: every normal training image
    (and, for 0, every image at all) would be anomalous.

    Scores are distances, so an image equal to a training image scores 0, and ``score >= tau`` holds
    for every image when tau is 0. When every training image scores 0 against the others, the images
    are identical (or show nothing: a constant colour). When they do not, the scores vary and no sensible
    rule puts tau at or below 0 or below the lowest leave-own-out score (ksigma, mad and quantile give at
    least the smallest score once their parameters are in range; evt with a very small p can fall below),
    so a tau below every training score is the rule's or its parameters' doing: the message says so,
    naming them, rather than blaming images that are fine. A tau set by hand (``eagle threshold``, rule
    ``fixed`` after the fit) is a person's choice and only warned about (model_warnings.far_threshold_warnings).
    """
    finite = scores[np.isfinite(scores)]
    if thresholds.tau > 0 and (finite.size == 0 or thresholds.tau >= float(np.min(finite))):
        return
    if finite.size == 0 or thresholds.tau >= float(np.min(finite)):  # tau is a training score: 0, the images'
        spread = (
            "all score 0 against each other"
            if finite.size == 0 or float(np.max(finite)) == 0
            else "score too close to 0"
        )
        raise ConfigError(
            f"the {len(scores)} training images {spread} (rule {config.rule} gives tau {thresholds.tau}), so every "
            "image would be called anomalous: the images are identical or show no variation; give varied normal "
            "images"
        )
    # tau below every training score: no sensible rule does that, so the rule or its parameters are the cause.
    params = ", ".join(f"{name} {value:g}" for name, value in thresholds.params.items())
    rule = f"rule {thresholds.rule}" + (f" with {params}" if params else "")
    lowest = float(np.min(finite))
    raise ConfigError(
        f"{rule} gives tau {thresholds.tau:.6g}, below the lowest training score {lowest:.6g} (training scores "
        f"{lowest:.6g} to {float(np.max(finite)):.6g}, median {float(np.median(finite)):.6g}), so every normal "
        "training image would be called anomalous: the rule or its parameters are the likely cause (the training "
        "images do vary); choose another value or rule"
    )


#: Training images whose aspect ratios differ by more than this factor are stretched differently by one
#: fixed input; the ``scale`` mode keeps each one's own (a warning says so).
ASPECT_SPREAD = 1.1


def stretch_warning(config: ExpertConfig, shapes: Sequence[tuple[int, int]]) -> list[str]:
    """A warning where one fixed input stretches training images of different aspect ratios differently.

    Measured (docs/MEASUREMENTS.md, "The defects that still pass"): on tire images cropped and turned at
    random, each image at its own aspect (``--preprocess scale``) ranked defects at image AUROC 0.797
    against 0.692; on images of one shape the two modes are the same. Not the default: a ``scale`` model
    cannot be exported (one graph has one input size).
    """
    mode = preprocessor_of(config)
    whole = mode.sized_from_images and mode.fixed_grid and mode.views_per_image(config) == 1  # not tiles
    if not whole or config.input_hw is None or not shapes:
        return []
    aspects = [h / w for h, w in shapes]
    low, high = min(aspects), max(aspects)
    if high / low <= ASPECT_SPREAD:
        return []
    height, width = config.input_hw
    return [
        f"the training images' aspect ratios (height / width) range from {low:.3g} to {high:.3g}, and preprocess "
        f"{config.preprocess!r} stretches every image to {height}x{width}; --preprocess scale keeps each image's own "
        "aspect at one pixel scale, which ranked defects better on images that vary (docs/MEASUREMENTS.md, "
        "'The defects that still pass'), but cannot be exported"
    ]


def sample_warning(config: ExpertConfig, patches: int, bank_rows: int) -> list[str]:
    """A warning where the greedy coreset chose from a sample, so the fit is not the method of record's.

    Why a warning and not only the summary's ``coreset_from``: the sample's bank is sparser than the exact
    greedy's, every normal image scores higher against it and the threshold rises with them while defects
    score about the same, so a user who adds a few images past the boundary sees tau jump. Measured on tire
    (docs/METHOD.md, "Large training sets"): tau 2.0-4.6 above the exact greedy's at equal false alarms; a
    threshold rule that allowed for the sparser bank, tried, lowered tau by 0.35-0.82 only.
    """
    if config.sampler != "greedy" or not greedy_samples(patches, config.coreset_points, config.coreset_ratio):
        return []
    exact = kept_rows(patches, config.coreset_ratio)
    return [
        f"the greedy coreset chose from a sample: {patches:,} training patches are more than twice --coreset-points "
        f"{config.coreset_points:,}, so the fit's bank has {bank_rows:,} rows where the exact greedy keeps {exact:,}; "
        "against a sparser bank normal images score higher and a tau learned from the training images rises with "
        "them, catching fewer defects at equal false alarms (measured: docs/METHOD.md, 'Large training sets'): "
        "where that matters, fit with --coreset-points 0 (the exact greedy: a longer fit, and every inspection "
        "searches the larger bank) or set tau with eagle threshold --tau, chosen on labelled images"
    ]


def _fit(
    paths: Iterable[Path | str],
    category: str,
    config: ExpertConfig | None,
    extractor: FeatureExtractor | None,
    show_progress: bool,
    progress: FitProgress | None,
    scratch: Path,
) -> Expert:
    config = config or ExpertConfig()
    config.validate()
    image_paths = [Path(p) for p in paths]
    if len(image_paths) < 2:
        raise ConfigError(
            f"category {category!r} has {len(image_paths)} training image(s); at least 2 normal images are "
            "needed (the threshold is learned by scoring each image against the others)"
        )
    _check_training_images(image_paths)
    shapes = [_image_shape(path) for path in image_paths] if preprocessor_of(config).sized_from_images else []
    config = with_input_size(config, image_paths, shapes)
    sampler = make_sampler(
        config.sampler, config.coreset_ratio, config.seed, config.projection_dim, config.coreset_points
    )
    search = make_search(config.search)
    extractor = extractor or extractor_for(config)
    timings: dict[str, float] = {}

    start = time.perf_counter()
    training = _embed_training(extractor, image_paths, config, show_progress, progress, scratch)
    features = training.features
    assert isinstance(features, RowFile)  # with a scratch folder: rows on disk, one chunk in memory at a time
    n_images = len(image_paths)
    patch_image_ids = torch.arange(n_images, dtype=torch.int32).repeat_interleave(torch.tensor(training.counts))
    grid = training.grids[0]  # every image's, but a ``scale`` model's: the first training image's
    timings["features_s"] = time.perf_counter() - start

    start = time.perf_counter()
    with progress_bar(0, "coreset", show_progress) as bar:
        report = _reporter(bar, "coreset", progress)
        if hasattr(sampler, "select_covering"):
            selection = sampler.select_covering(features, progress=report)
        else:  # a plugin sampler written before select_covering: its picks, no radius
            selection = Extension(sampler.select(features, progress=report), None)
        chosen = torch.from_numpy(selection.chosen)
    selected = torch.zeros(features.rows, dtype=torch.bool)
    selected[chosen] = True
    bank = torch.from_numpy(features.take(chosen.numpy()))
    bank_ids = patch_image_ids[chosen].contiguous()
    timings["coreset_s"] = time.perf_counter() - start

    start = time.perf_counter()
    search.fit(bank, bank_ids)
    with progress_bar(0, "training scores", show_progress) as bar:
        own_out = leave_own_out(
            features, patch_image_ids, selected, search, n_images, progress=_reporter(bar, "training scores", progress)
        )
    train_scores = own_out.image_scores
    _check_scorable(train_scores, bank_ids, features.rows, config)
    thresholds = compute_thresholds(train_scores, config.rule, **config.rule_params)
    _check_threshold(thresholds, train_scores, config)
    # Each image's highest-scoring patches, from the rows on disk: what lets a teach rescore it exactly.
    tails = select_tails(own_out.patch_scores, patch_image_ids, selected, n_images, features.take)
    timings["train_scores_s"] = time.perf_counter() - start

    start = time.perf_counter()
    view_grids = training.split(own_out.patch_scores)
    geometries = training.geometries
    map_offset = None
    if config.position_baseline:  # a fixed-grid mode (validated): every stitched grid has one shape
        stitched = [g.stitch(views) for g, views in zip(geometries, view_grids, strict=True)]
        mean_grid = np.mean(stitched, axis=0, dtype=np.float64)
        map_offset = torch.from_numpy((mean_grid - np.median(mean_grid)).astype(np.float32))
    offset = 0.0 if map_offset is None else map_offset.numpy()
    maxima: list[float] = []

    def train_maps() -> Iterable[np.ndarray]:
        for geometry, views in zip(geometries, view_grids, strict=True):
            smooth = input_map(geometry.stitch(views) - offset, geometry.input_shape, config.sigma)
            maxima.append(float(smooth.max()))  # kept: a teach recomputes map_tau from them
            yield smooth

    calibration = calibrate_maps(train_maps(), thresholds)
    timings["calibration_s"] = time.perf_counter() - start

    start = time.perf_counter()
    references: list[bytes] = []
    modes: dict[str, int] = {}
    exposure: ExposureRange | None = None
    for path in image_paths:  # one decode gives each image's reference picture, colour mode and exposure
        rgb = load_rgb(path)
        references.append(thumbnail(rgb))
        mode = colour_mode(rgb)
        modes[mode] = modes.get(mode, 0) + 1
        one = ExposureRange.of([rgb])
        exposure = one if exposure is None else exposure.merged(one)
    colours = dict(sorted(modes.items()))
    timings["references_s"] = time.perf_counter() - start

    encodings = count_encodings(image_paths)
    names = _relative_names(image_paths)
    model = ExpertModel(
        category=category,
        config=config,
        backbone=extractor.ident,
        grid=grid,
        bank=bank,
        bank_image_ids=bank_ids,
        patch_image_ids=patch_image_ids,
        selected=selected,
        train_images=names,
        train_scores=train_scores,
        thresholds=thresholds,
        timings=timings,
        calibration=calibration,
        map_offset=map_offset,
        references=references,
        warnings=fit_warnings(n_images, train_scores, thresholds, names)
        + stretch_warning(config, shapes)
        + sample_warning(config, features.rows, int(bank.shape[0]))
        + mixed_warning(encodings)
        + mixed_colour_warning(colours)
        + depth_warning(image_paths),
        coverage=fit_coverage(own_out.patch_scores, n_images),
        map_maxima=np.asarray(maxima, dtype=np.float64),
        coreset_radius=selection.radius,
        tails=tails,
        train_sha256=[file_sha256(path) for path in image_paths],
        train_encodings=encodings,
        train_colours=colours,
        train_exposure=exposure,
    )
    return Expert(model, extractor, search)
