"""PatchCore: fit a memory bank of normal patches, score new images against it (docs/METHOD.md §1).

:class:`ExpertModel` is the fitted state (plain tensors and records, what ``store`` saves);
:class:`Expert` pairs it with a loaded backbone and a search index and answers queries. Fitting
returns an ``Expert`` directly so a freshly fitted model can be used without a save/load round trip.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy.ndimage import gaussian_filter
from tqdm import tqdm

from eagle_iad.errors import ConfigError, ImageError, ModelFormatError, OutputError
from eagle_iad.expert.backbones import _BACKBONES, DEFAULT_BACKBONE, BackboneId, FeatureExtractor, build_backbone
from eagle_iad.expert.coreset import make_sampler
from eagle_iad.expert.features import RowFile, aggregate
from eagle_iad.expert.leave_own_out import leave_own_out
from eagle_iad.expert.preprocess import ViewGeometry, backbone_image_size, input_size_for, prepare, preprocessor_of
from eagle_iad.expert.references import thumbnails
from eagle_iad.expert.search import DEFAULT_SEARCH, NearestNeighbourSearch, make_search
from eagle_iad.fit_options import MAX_INPUT_SIDE, check_ranges, option_default
from eagle_iad.images import ImageSource, load_rgb
from eagle_iad.outputs import SPACE_ERRNOS
from eagle_iad.scratch import scratch_folder, scratch_root
from eagle_iad.stops import checkpoint
from eagle_iad.tgps.calibration import MapCalibration, calibrate_maps
from eagle_iad.tgps.regions import REGION_RULES
from eagle_iad.tgps.thresholds import DEFAULT_RULE, THRESHOLD_RULES, Thresholds, compute_thresholds, rule_params

#: The default preprocessing and its input size, chosen by measurement (docs/MEASUREMENTS.md, "Choosing the defaults");
#: stated once, in the fit options table.
DEFAULT_PREPROCESS: str = option_default("preprocess")
DEFAULT_SIZE: int = option_default("size")
DEFAULT_REGION_RULE: str = option_default("region_rule")
#: Largest whole-frame input side: bounds the backbone's activation memory per view (the fit options' range).
MAX_SIZE = MAX_INPUT_SIDE


@dataclass(frozen=True)
class ExpertConfig:
    """Every setting that changes what a fitted model computes; saved with the model."""

    backbone: str = DEFAULT_BACKBONE
    #: How an image becomes the network input (expert/preprocess.py): ``resize`` (whole frame, default),
    #: ``tile`` (overlapping tiles of a larger whole-frame input) or ``center-crop`` (the paper's).
    preprocess: str = DEFAULT_PREPROCESS
    #: Long side of the whole-frame input (``resize`` and ``tile``); the other side follows the aspect.
    size: int = DEFAULT_SIZE
    #: The fixed ``(H, W)`` input of ``resize``/``tile``, set by :func:`fit` from the training images.
    input_hw: tuple[int, int] | None = None
    #: ``tile``: the square tile (input pixels) and the least overlap between neighbouring tiles.
    tile: int = option_default("tile")
    tile_overlap: int = option_default("tile_overlap")
    #: ``center-crop``: shorter side resized to ``resize``, then a centre ``crop`` square.
    resize: int = option_default("resize")
    crop: int = option_default("crop")
    pretrain_dim: int = 1024
    target_dim: int = 1024
    sampler: str = option_default("sampler")
    coreset_ratio: float = option_default("coreset_ratio")
    projection_dim: int = 128
    seed: int = option_default("seed")
    search: str = DEFAULT_SEARCH
    rule: str = DEFAULT_RULE
    #: The rule's parameters given explicitly (``k``, ``q``, ``p``, ``value``, a plugin rule's own);
    #: those not given take the rule's defaults (tgps/thresholds.py).
    rule_params: dict[str, float] = field(default_factory=dict)
    sigma: float = 4.0
    #: Subtract where normal images of the category always score high (a specular highlight, a
    #: textured edge) from the map, so the map's peak points at what is unusual *for that position*.
    #: The image score and tau are untouched (docs/METHOD.md, "Calibrated maps and boxes"). Off by
    #: default: on tire it made boxes tighter (box/defect area 5.5 -> 2.1) but cost pixel AUROC
    #: (0.993 -> 0.956) and AUPRO (0.969 -> 0.854), so it stays an option (docs/MEASUREMENTS.md table).
    position_baseline: bool = option_default("position_baseline")
    #: Which map pixels make the boxes (tgps/regions.py): ``calibrated`` (above the category's pixel
    #: threshold from normal training maps) or ``paper`` (2/3 of the image's own map maximum).
    region_rule: str = DEFAULT_REGION_RULE
    batch_size: int = option_default("batch_size")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ExpertConfig:
        known = {f for f in cls.__dataclass_fields__} | {"rule_k", "rule_q", "rule_p", "rule_value"}
        unknown = set(data) - known
        if unknown:
            raise ModelFormatError(f"unknown expert settings {sorted(unknown)}")
        values = dict(data)
        # Models saved before the rule registry held one field per built-in rule parameter.
        legacy = {name: values.pop(f"rule_{name}") for name in ("k", "q", "p", "value") if f"rule_{name}" in values}
        if legacy:
            values["rule_params"] = {k: float(v) for k, v in legacy.items() if v is not None}
        if "rule_params" in values:
            values["rule_params"] = {str(k): float(v) for k, v in dict(values["rule_params"]).items()}
        if values.get("input_hw") is not None:
            values["input_hw"] = (int(values["input_hw"][0]), int(values["input_hw"][1]))
        return cls(**values)

    @classmethod
    def from_preset(cls, preset: str, **overrides: Any) -> ExpertConfig:
        """A named starting point (``default``, ``paper``) with explicit settings on top."""
        if preset not in PRESETS:
            raise ConfigError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
        return cls(**{**PRESETS[preset], **overrides})

    def validate(self) -> None:
        spec = THRESHOLD_RULES.get(self.rule)
        _BACKBONES.get(self.backbone)  # the registry, so a backbone a plugin registered is accepted
        unknown = set(self.rule_params) - set(rule_params())
        if unknown:
            raise ConfigError(f"unknown threshold rule parameters {sorted(unknown)}; known: {', '.join(rule_params())}")
        for param in spec.params:  # a parameter without a default must be given: say so before minutes of fitting
            if param.default is None and param.name not in self.rule_params:
                raise ConfigError(f"rule {self.rule!r} needs {param.name} ({param.help})")
        mode = preprocessor_of(self)  # the registry, so a mode a plugin registered is accepted
        if self.region_rule not in REGION_RULES:
            raise ConfigError(f"unknown region rule {self.region_rule!r}; choose one of {', '.join(REGION_RULES)}")
        mode.validate(self)
        if self.batch_size < 1:
            raise ConfigError("batch size must be at least 1")
        check_ranges({**self.to_dict(), **self.rule_params})

    def views_per_image(self) -> int:
        """How many network inputs one image becomes (tiles), hence its patch count = views x grid."""
        return preprocessor_of(self).views_per_image(self)


#: Named settings: ``paper`` reproduces the published setting exactly (shorter side 256, centre crop
#: 224, boxes at 2/3 of each map's maximum); ``default`` is the product's whole-frame inspection.
PRESETS: dict[str, dict[str, Any]] = {
    "default": {},
    "paper": {
        "preprocess": "center-crop",
        "resize": 256,
        "crop": 224,
        "region_rule": "paper",
        "position_baseline": False,
    },
}


@dataclass
class ExpertModel:
    """The fitted state of one category: memory bank, training-patch bookkeeping, thresholds."""

    category: str
    config: ExpertConfig
    backbone: BackboneId
    grid: tuple[int, int]
    bank: torch.Tensor
    bank_image_ids: torch.Tensor
    patch_image_ids: torch.Tensor
    selected: torch.Tensor
    train_images: list[str]
    train_scores: np.ndarray
    thresholds: Thresholds
    created: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    timings: dict[str, float] = field(default_factory=dict)
    #: The category's map scale (pixel threshold, colour range) from its normal training maps; ``None``
    #: for models saved before it existed (schema 1), which keep the paper's per-image box rule.
    calibration: MapCalibration | None = None
    #: Per-position excess of the normal training maps over their median (a stitched patch grid),
    #: subtracted from every map (``position_baseline``); ``None``: maps are the raw distances.
    map_offset: torch.Tensor | None = None
    #: Threshold changes made after the fit (``eagle threshold``), oldest first: who, when, why, and the
    #: thresholds before and after, so every change is on record and any earlier value can be restored.
    history: list[dict[str, Any]] = field(default_factory=list)
    #: One downsized JPEG per training image, in training order (expert/references.py): what an
    #: inspection shows as its nearest normal image. ``None`` for models saved before schema 4.
    references: list[bytes] | None = None
    #: What is degenerate about the fit although the model is usable (very few images): told to the user
    #: when the fit ends and kept in the manifest (informational, like the timings).
    warnings: list[str] = field(default_factory=list)


@dataclass
class ExpertResult:
    """The expert's answer for one image: score, verdict, and maps in input and original coordinates.

    ``patch_scores`` is the stitched patch grid, ``crop_map`` the smoothed map over the network input
    (the crop, for the paper's preprocessing), ``anomaly_map`` the same map in original pixels, in the
    category's score units. ``geometry.inspected()`` says which original pixels the expert saw.
    """

    score: float
    is_anomalous: bool
    in_band: bool
    patch_scores: np.ndarray
    crop_map: np.ndarray
    anomaly_map: np.ndarray
    geometry: ViewGeometry
    #: The training image (index into ``train_images``) owning the nearest bank row of the image's
    #: highest-scoring patch, and that bank row: the nearest normal reference (docs/METHOD.md).
    reference_image: int = -1
    reference_row: int = -1


def progress_bar(total: int, desc: str, enabled: bool) -> tqdm[Any]:
    """A tqdm bar on stderr (stdout is a command's JSON), drawn only when ``enabled``."""
    return tqdm(total=total, desc=desc, disable=not enabled, file=sys.stderr, leave=False, dynamic_ncols=True)


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


class Expert:
    """A fitted PatchCore model ready to score images."""

    def __init__(
        self,
        model: ExpertModel,
        extractor: FeatureExtractor | None = None,
        search: NearestNeighbourSearch | None = None,
    ) -> None:
        self.model = model
        self.extractor = extractor or build_backbone(model.config.backbone, backbone_image_size(model.config))
        if self.extractor.ident != model.backbone:
            raise ModelFormatError(
                f"model for {model.category!r} was fitted with backbone {model.backbone.name} "
                f"(weights sha256 {model.backbone.sha256[:12]}…) but the available backbone is "
                f"{self.extractor.ident.name} (sha256 {self.extractor.ident.sha256[:12]}…); refit the model "
                "or install the weights it was made with"
            )
        if search is None:
            search = make_search(model.config.search)
            search.fit(model.bank, model.bank_image_ids)
        self.search = search

    @property
    def thresholds(self) -> Thresholds:
        return self.model.thresholds

    @torch.no_grad()
    def embed(self, batch: torch.Tensor) -> torch.Tensor:
        """``B x 3 x S x S`` normalised images to ``B x P x D`` patch embeddings."""
        shallow, deep = self.extractor(batch)
        config = self.model.config
        return aggregate(shallow, deep, config.pretrain_dim, config.target_dim)

    @torch.no_grad()
    def score_tensors(self, batch: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """Per-view scores (``B``) and patch-score grids (``B x h x w``) for prepared view tensors."""
        grids, _rows = self._search_views(batch)
        return grids.reshape(grids.shape[0], -1).max(axis=1), grids

    @torch.no_grad()
    def _search_views(self, batch: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """Patch-score grids and the nearest bank row of every patch (both ``B x h x w``)."""
        patches = self.embed(batch)
        count, _, dim = patches.shape
        dist, rows = self.search.search(patches.reshape(-1, dim))
        return dist.reshape(count, *self.model.grid).numpy(), rows.reshape(count, *self.model.grid).numpy()

    def reference_of(self, view_grids: np.ndarray, view_rows: np.ndarray) -> tuple[int, int]:
        """The training image and bank row nearest to the highest-scoring patch of one image's views.

        The score is the maximum patch distance (tiles stitch by maximum, so the maximum over the
        views is the stitched maximum); that patch's nearest bank row came from one training image,
        the normal image most like the spot that decided the score (docs/METHOD.md).
        """
        flat = int(np.argmax(view_grids))  # first maximum in view, row, column order: deterministic
        row = int(view_rows.reshape(-1)[flat])
        if row < 0:
            return -1, -1
        return int(self.model.bank_image_ids[row]), row

    def reference_picture(self, index: int) -> bytes:
        """The stored picture of training image ``index``, or :class:`ReferenceUnavailableError` saying why."""
        pictures = self.model.references
        if pictures is None:
            raise ReferenceUnavailableError(NO_REFERENCE)
        if not 0 <= index < len(pictures):
            raise ReferenceUnavailableError(f"no reference: training image {index} is not in this model")
        return pictures[index]

    def evidence_grid(self, grid: np.ndarray) -> np.ndarray:
        """The stitched patch grid the map is drawn from: minus the normal positional excess, if any.

        An image of another input size than the training images (impossible for one model) would
        not line up with the offset, so a shape mismatch is an error, not a silent skip.
        """
        offset = self.model.map_offset
        if offset is None:
            return grid
        if tuple(offset.shape) != grid.shape:
            raise ModelFormatError(f"map offset {tuple(offset.shape)} does not match the patch grid {grid.shape}")
        corrected: np.ndarray = grid - offset.numpy()
        return corrected

    def anomaly_map(self, patch_scores: np.ndarray, geometry: ViewGeometry) -> tuple[np.ndarray, np.ndarray]:
        """Stitched patch grid → input-sized map (bilinear, Gaussian sigma) → original-image map."""
        smooth = input_map(patch_scores, geometry.input_shape, self.model.config.sigma)
        return smooth, geometry.to_original(smooth)

    def inspect_many(
        self, sources: Sequence[ImageSource | np.ndarray], show_progress: bool = False, batch: int | None = None
    ) -> list[ExpertResult]:
        """Score images (paths, bytes or RGB arrays) in batches; results keep the input order.

        ``batch`` images share a backbone pass and a search: by default :data:`INSPECT_BATCH`, or the
        model's smaller ``batch_size``.
        """
        config = self.model.config
        size = inspect_chunk(config, batch)
        results: list[ExpertResult] = []
        with progress_bar(len(sources), "inspect", show_progress) as bar:
            for start in range(0, len(sources), size):
                chunk = sources[start : start + size]
                views, geometries = [], []
                for source in chunk:
                    rgb = source if isinstance(source, np.ndarray) else load_rgb(source)
                    tensor, geometry = prepare(rgb, config)
                    views.append(tensor)
                    geometries.append(geometry)
                view_grids, view_rows = self._search_views(torch.cat(views))
                offsets = np.cumsum([0] + [len(v) for v in views])
                for index, geometry in enumerate(geometries):
                    own = slice(offsets[index], offsets[index + 1])
                    results.append(self._result(view_grids[own], view_rows[own], geometry))
                bar.update(len(chunk))
        return results

    def _result(self, view_grids: np.ndarray, view_rows: np.ndarray, geometry: ViewGeometry) -> ExpertResult:
        grid = geometry.stitch(view_grids)
        reference_image, reference_row = self.reference_of(view_grids, view_rows)
        crop_map, full_map = self.anomaly_map(self.evidence_grid(grid), geometry)
        value = float(grid.max())
        return ExpertResult(
            score=value,
            is_anomalous=self.thresholds.is_anomalous(value),
            in_band=self.thresholds.in_band(value),
            patch_scores=grid,
            crop_map=crop_map,
            anomaly_map=full_map,
            geometry=geometry,
            reference_image=reference_image,
            reference_row=reference_row,
        )

    @torch.no_grad()
    def inspect_each(self, images: Sequence[np.ndarray]) -> list[ExpertResult | Exception]:
        """Score RGB images with one backbone pass each and one search for all of their patches.

        For the service's batching of concurrent requests: each image's result equals
        :meth:`inspect` of it alone bit for bit (the backbone's float32 numbers depend on its batch
        size, so it sees each image alone; the ``pruned`` search's answer for a patch does not
        depend on the other queries), while the search's work is done in one call. An image whose
        preparation, backbone pass or maps fail gets its exception in its place; the others are scored.
        """
        outcomes: list[ExpertResult | Exception] = []
        prepared: list[tuple[int, torch.Tensor, ViewGeometry]] = []
        for index, rgb in enumerate(images):
            try:
                tensor, geometry = prepare(rgb, self.model.config)
                prepared.append((index, self.embed(tensor), geometry))
                outcomes.append(ImageError("not scored"))  # replaced below
            except Exception as exc:  # handed to that image's request alone
                outcomes.append(exc)
        if not prepared:
            return outcomes
        patches = torch.cat([embedded for _, embedded, _ in prepared])
        count, _, dim = patches.shape
        dist, rows = self.search.search(patches.reshape(-1, dim))
        grids = dist.reshape(count, *self.model.grid).numpy()
        row_grids = rows.reshape(count, *self.model.grid).numpy()
        start = 0
        for index, embedded, geometry in prepared:
            views = embedded.shape[0]
            try:
                outcomes[index] = self._result(grids[start : start + views], row_grids[start : start + views], geometry)
            except Exception as exc:  # e.g. a map that cannot be drawn back onto this image
                outcomes[index] = exc
            start += views
        return outcomes

    def inspect(self, source: ImageSource | np.ndarray) -> ExpertResult:
        """Score one image."""
        return self.inspect_many([source])[0]


class ReferenceUnavailableError(Exception):
    """No reference picture can be shown; the message says why (and what to do)."""


#: The model schema that first stores reference pictures (expert/manifest.py).
REFERENCE_SCHEMA = 4


#: Why a model has no reference pictures: every fit since schema 4 stores them, so it was fitted
#: before (a schema-3 model re-saved by ``eagle threshold`` is written as schema 4 and still has none).
NO_REFERENCE = f"no reference: model fitted before model schema {REFERENCE_SCHEMA}; refit to get one"


#: Images per backbone pass and search when inspecting (``Expert.inspect_many``). Batching saves
#: per-call overhead, above all the thread hand-offs that stall when other work shares the cores,
#: but larger batches allocate larger transient tensors whose fresh pages the kernel faults in.
#: Measured on 2 cores (``benchmarks/expert.py --inspect-model``, 64 elpv cells, images/s against
#: one image per call): quiet, chunks of 4 gave 0.97x (224 px model) and 1.22x (320 px), chunks of
#: 16 0.66x and 0.72x; beside four busy loops, 4 gave 2.2x and 1.3x, 16 gave 1.75x. Fits keep the
#: model's ``batch_size`` (their features are saved, so their batching is part of the fit).
INSPECT_BATCH = 4


def inspect_chunk(config: ExpertConfig, batch: int | None) -> int:
    """Images per chunk of an inspection: ``batch`` if given, else :data:`INSPECT_BATCH` or the smaller fit batch."""
    size = min(config.batch_size, INSPECT_BATCH) if batch is None else batch
    if size < 1:
        raise ValueError(f"batch must be at least 1, got {size}")
    return size


def input_map(patch_scores: np.ndarray, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Patch grid → map over the network input: bilinear upsampling, then a Gaussian blur (sigma in input px)."""
    grid = torch.from_numpy(np.ascontiguousarray(patch_scores, dtype=np.float32))[None, None]
    up = F.interpolate(grid, size=shape, mode="bilinear", align_corners=False)[0, 0].numpy()
    smooth: np.ndarray = gaussian_filter(up, sigma=sigma).astype(np.float32)
    return smooth


def _embed_training(
    extractor: FeatureExtractor,
    paths: Sequence[Path],
    config: ExpertConfig,
    show_progress: bool,
    hook: FitProgress | None = None,
    scratch: Path | None = None,
) -> tuple[torch.Tensor | RowFile, tuple[int, int], ViewGeometry]:
    """The training patches, the per-view grid and one image's geometry.

    Every training image gets the same input size and views, so one geometry describes how all of
    their patch grids stitch (what the map calibration needs). Without ``scratch`` the patches are
    an ``n_images x (views * h * w) x D`` tensor; with ``scratch`` (a folder) each batch is appended
    to a float32 :class:`RowFile` there (image after image, ``n_images * views * h * w`` rows)
    instead of being concatenated in RAM, so memory stays flat as the training set grows; the
    values are the same float32 numbers either way.
    """
    chunks: list[torch.Tensor] = []
    stored = None if scratch is None else RowFile(scratch / "features.f32", config.target_dim)
    grid = (0, 0)
    geometry: ViewGeometry | None = None
    try:
        with progress_bar(len(paths), "features", show_progress) as bar:
            for start in range(0, len(paths), config.batch_size):
                views = []
                for path in paths[start : start + config.batch_size]:
                    try:
                        rgb = load_rgb(path)
                    except ImageError as exc:
                        raise ImageError(f"training image rejected: {exc}") from exc
                    tensor, geometry = prepare(rgb, config)
                    views.append(tensor)
                with torch.no_grad():
                    shallow, deep = extractor(torch.cat(views))
                    grid = (int(shallow.shape[2]), int(shallow.shape[3]))
                    patches = aggregate(shallow, deep, config.pretrain_dim, config.target_dim)
                    patches = patches.reshape(len(views), -1, patches.shape[-1])
                if stored is None:
                    chunks.append(patches)
                else:
                    stored.append(patches.numpy())
                bar.update(len(views))
                checkpoint("fit features")  # test hook: features on disk, the fit under way
                if hook is not None:
                    hook("features", min(start + len(views), len(paths)), len(paths))
    finally:
        if stored is not None:
            stored.close()
    assert geometry is not None  # at least two training images were checked by the caller
    return (torch.cat(chunks) if stored is None else stored), grid, geometry


def _image_shape(path: Path) -> tuple[int, int]:
    """``(height, width)`` from the header, after EXIF rotation (as :func:`load_rgb` decodes it)."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            width, height = image.size
            orientation = image.getexif().get(0x0112, 1)
    except (OSError, ValueError, SyntaxError) as exc:
        raise ImageError(f"training image rejected: {path}: cannot be read as an image ({exc})") from exc
    return (width, height) if orientation in (5, 6, 7, 8) else (height, width)


def with_input_size(config: ExpertConfig, paths: Sequence[Path]) -> ExpertConfig:
    """Fix a whole-frame input size from the training images' median aspect ratio (unless already set)."""
    if not preprocessor_of(config).sized_from_images or config.input_hw is not None:
        return config
    shapes = [_image_shape(path) for path in paths]
    aspect = float(np.median([h / w for h, w in shapes]))
    height, width = input_size_for(round(1000 * aspect), 1000, config.size)
    return replace(config, input_hw=(height, width))


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
        f"training images may be identical, or the coreset is too small (coreset_ratio {config.coreset_ratio}); "
        "give varied normal images or a larger coreset_ratio"
    )


def _check_threshold(thresholds: Thresholds, scores: np.ndarray, config: ExpertConfig) -> None:
    """Refuse a learned threshold of 0: every image, a training image itself included, would be anomalous.

    Scores are distances, so an image equal to a training image scores 0, and ``score >= tau`` holds
    for every image when tau is 0. A learned tau is 0 only when every training image scores 0 against
    the others, i.e. the images are identical (or show nothing: a constant colour).
    """
    if thresholds.tau > 0:
        return
    spread = "all score 0 against each other" if float(np.max(scores)) == 0 else "score too close to 0"
    raise ConfigError(
        f"the {len(scores)} training images {spread} (rule {config.rule} gives tau {thresholds.tau}), so every "
        "image would be called anomalous: the images are identical or show no variation; give varied normal images"
    )


def fit_warnings(n_images: int, scores: np.ndarray) -> list[str]:
    """What is degenerate about a usable fit, for the user to read (the CLI prints, the service returns them)."""
    warnings = []
    if n_images < FEW_IMAGES:
        warnings.append(
            f"only {n_images} training images: tau rests on {n_images} leave-own-out scores, so expect false alarms "
            f"until the model is fitted on more normal images (at least {FEW_IMAGES})"
        )
    if n_images >= 2 and float(np.ptp(scores)) == 0.0:
        warnings.append(
            f"every training image scores {float(scores[0])!r}: the images vary too little to set a threshold"
        )
    return warnings


#: Below this many training images a fit still works but the threshold is a rough guess (a warning says so).
FEW_IMAGES = 10


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
    config = with_input_size(config, image_paths)
    sampler = make_sampler(config.sampler, config.coreset_ratio, config.seed, config.projection_dim)
    search = make_search(config.search)
    extractor = extractor or build_backbone(config.backbone, backbone_image_size(config))
    timings: dict[str, float] = {}

    start = time.perf_counter()
    features, grid, geometry = _embed_training(extractor, image_paths, config, show_progress, progress, scratch)
    assert isinstance(features, RowFile)  # with a scratch folder: rows on disk, one chunk in memory at a time
    n_images = len(image_paths)
    per_image = features.rows // n_images
    patch_image_ids = torch.arange(n_images, dtype=torch.int32).repeat_interleave(per_image)
    timings["features_s"] = time.perf_counter() - start

    start = time.perf_counter()
    with progress_bar(0, "coreset", show_progress) as bar:
        chosen = torch.from_numpy(sampler.select(features, progress=_reporter(bar, "coreset", progress)))
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
    timings["train_scores_s"] = time.perf_counter() - start

    start = time.perf_counter()
    view_grids = own_out.patch_scores.reshape(n_images, -1, *grid)
    map_offset = None
    if config.position_baseline:
        mean_grid = np.mean([geometry.stitch(views) for views in view_grids], axis=0, dtype=np.float64)
        map_offset = torch.from_numpy((mean_grid - np.median(mean_grid)).astype(np.float32))
    offset = 0.0 if map_offset is None else map_offset.numpy()
    train_maps = (
        input_map(geometry.stitch(views) - offset, geometry.input_shape, config.sigma) for views in view_grids
    )
    calibration = calibrate_maps(train_maps, thresholds)
    timings["calibration_s"] = time.perf_counter() - start

    start = time.perf_counter()
    references = thumbnails(image_paths)
    timings["references_s"] = time.perf_counter() - start

    model = ExpertModel(
        category=category,
        config=config,
        backbone=extractor.ident,
        grid=grid,
        bank=bank,
        bank_image_ids=bank_ids,
        patch_image_ids=patch_image_ids,
        selected=selected,
        train_images=_relative_names(image_paths),
        train_scores=train_scores,
        thresholds=thresholds,
        timings=timings,
        calibration=calibration,
        map_offset=map_offset,
        references=references,
        warnings=fit_warnings(n_images, train_scores),
    )
    return Expert(model, extractor, search)
