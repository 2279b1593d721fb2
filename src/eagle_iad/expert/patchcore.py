"""PatchCore: score new images against a fitted memory bank of normal patches (docs/METHOD.md §1).

:class:`ExpertModel` is the fitted state (plain tensors and records, what ``store`` saves);
:class:`Expert` pairs it with a loaded backbone and a search index and answers queries. The settings
live in expert/config.py (re-exported here, where callers have always found them) and the fit in
expert/fitting.py (``eagle_iad.expert.fit``), which returns an ``Expert`` directly.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy.ndimage import gaussian_filter
from tqdm import tqdm

from eagle_iad.errors import ImageError, ModelFormatError
from eagle_iad.expert.backbones import BackboneId, FeatureExtractor, build_backbone
from eagle_iad.expert.config import DEFAULT_PREPROCESS as DEFAULT_PREPROCESS
from eagle_iad.expert.config import DEFAULT_REGION_RULE as DEFAULT_REGION_RULE
from eagle_iad.expert.config import DEFAULT_SIZE as DEFAULT_SIZE
from eagle_iad.expert.config import MAX_SIZE as MAX_SIZE
from eagle_iad.expert.config import PRESETS as PRESETS
from eagle_iad.expert.config import ExpertConfig as ExpertConfig
from eagle_iad.expert.coverage import Coverage
from eagle_iad.expert.features import aggregate
from eagle_iad.expert.geometry import ViewGeometry
from eagle_iad.expert.lighting import ExposureRange
from eagle_iad.expert.preprocess import FEATURE_STRIDE, backbone_image_size, prepare, preprocessor_of
from eagle_iad.expert.search import NearestNeighbourSearch, make_search
from eagle_iad.expert.tails import Tails
from eagle_iad.images import ImageSource, load_rgb
from eagle_iad.tgps.calibration import MapCalibration
from eagle_iad.tgps.thresholds import Thresholds, near_margin


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
    #: How far normal patches reach, and what share beyond that makes an image unrecognised
    #: (expert/coverage.py); ``None`` for models saved before it existed.
    coverage: Coverage | None = None
    #: Each training image's leave-own-out map maximum, in training order: what ``map_tau`` is computed
    #: from, kept so that a teach (expert/teach.py) recomputes it without the old maps. ``None``: saved
    #: before schema 6 (a teach then scales ``map_tau`` with tau, and says so).
    map_maxima: np.ndarray | None = None
    #: The greedy coreset's covering radius in its projection (its last pick's distance): recorded by the fit
    #: (schema 6), found from the bank by the first teach of an older model. ``None``: unknown or not greedy.
    coreset_radius: float | None = None
    #: Each training image's highest-scoring patches and the largest score of the rest (expert/tails.py):
    #: what lets a teach rescore the old images exactly. ``None``: saved before schema 9 (a teach then
    #: keeps the old images' scores, an upper bound).
    tails: Tails | None = None
    #: Who fitted it (the service: the API key's name); ``None``: not recorded (``eagle fit``, older models).
    #: What its first version's ``by`` shows (expert/versions.py).
    fitted_by: str | None = None
    #: Each training image's SHA-256 (of its file's bytes, as a teach records a taught file's), in training order
    #: (schema 10): a teach skips an image whose bytes are a training image's. ``None``: saved before schema 10
    #: (a teach cannot tell a training image given again).
    train_sha256: list[str] | None = None
    #: ``{encoding: number of training images}`` (:func:`eagle_iad.images.image_encoding`: ``lossless``,
    #: ``jpeg 4:2:0 q95``, ...), so a verdict on an input of another encoding or quality can say so
    #: (expert/encodings.py).
    #: ``None``: saved before schema 10, or fitted on decoded frames; then no verdict warns.
    train_encodings: dict[str, int] | None = None
    #: ``{grey | colour: number of training images}`` (:func:`eagle_iad.images.colour_mode`), so a verdict on a
    #: greyscale input of a colour-fitted model (or the reverse) can say so (expert/encodings.py). ``None``: saved
    #: before schema 11, or fitted on decoded frames; then no verdict warns about colour.
    train_colours: dict[str, int] | None = None
    #: The range of the training images' raw brightness and contrast (expert/lighting.py: each image's mean and
    #: spread of grey levels before the exposure step), so a verdict on a photo far outside it can say so.
    #: ``None``: saved before schema 12, or fitted on decoded frames; then no verdict warns about exposure.
    train_exposure: ExposureRange | None = None


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
    #: The share of the image's patches beyond the category's coverage radius; ``None`` when unknown.
    foreign_share: float | None = None


def progress_bar(total: int, desc: str, enabled: bool) -> tqdm[Any]:
    """A tqdm bar on stderr (stdout is a command's JSON), drawn only when ``enabled``."""
    return tqdm(total=total, desc=desc, disable=not enabled, file=sys.stderr, leave=False, dynamic_ncols=True)


def extractor_for(config: ExpertConfig) -> FeatureExtractor:
    """The backbone a model of ``config`` runs on, built at the size its preprocessing gives it."""
    return build_backbone(config.backbone, backbone_image_size(config))


class Expert:
    """A fitted PatchCore model ready to score images."""

    def __init__(
        self,
        model: ExpertModel,
        extractor: FeatureExtractor | None = None,
        search: NearestNeighbourSearch | None = None,
    ) -> None:
        self.model = model
        self.extractor = extractor or extractor_for(model.config)
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

    def near_margin(self) -> float | None:
        """The close-call margin around tau (:func:`eagle_iad.tgps.thresholds.near_margin` of the training
        scores); ``None`` when unknown. An exported expert reads it from its sidecar instead."""
        return near_margin(self.model.train_scores)

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
        count, per_view, dim = patches.shape
        grid = self._grid_of(batch, per_view)
        dist, rows = self.search.search(patches.reshape(-1, dim))
        return dist.reshape(count, *grid).numpy(), rows.reshape(count, *grid).numpy()

    def _grid_of(self, views: torch.Tensor, per_view: int) -> tuple[int, int]:
        """The fitted grid, or (a ``scale`` model, whose images each have their own) the one the input size gives.

        Not chosen by the patch count: a portrait image in a landscape-trained ``scale`` model has as many
        patches as the fitted grid, in the transposed shape.
        """
        if preprocessor_of(self.model.config).fixed_grid:
            return self.model.grid
        grid = view_grid(views)
        if grid[0] * grid[1] != per_view:  # a backbone whose stride-8 stage is not at 1/8 of the input
            raise ModelFormatError(f"{per_view} patches per view do not form the {grid[0]}x{grid[1]} grid of its input")
        return grid

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
                for run in same_shape_runs(views):
                    view_grids, view_rows = self._search_views(torch.cat(views[run]))
                    offsets = np.cumsum([0] + [len(v) for v in views[run]])
                    for index, geometry in enumerate(geometries[run]):
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
            foreign_share=None if self.model.coverage is None else self.model.coverage.share(grid),
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
        prepared: list[tuple[int, torch.Tensor, tuple[int, int], ViewGeometry]] = []
        for index, rgb in enumerate(images):
            try:
                tensor, geometry = prepare(rgb, self.model.config)
                embedded = self.embed(tensor)
                prepared.append((index, embedded, self._grid_of(tensor, embedded.shape[1]), geometry))
                outcomes.append(ImageError("not scored"))  # replaced below
            except Exception as exc:  # handed to that image's request alone
                outcomes.append(exc)
        if not prepared:
            return outcomes
        # One search for every patch of every image (each image's grid may differ: a ``scale`` model).
        patches = torch.cat([embedded.reshape(-1, embedded.shape[-1]) for _, embedded, _, _ in prepared])
        dist, rows = self.search.search(patches)
        start = 0
        for index, embedded, grid, geometry in prepared:
            views, stop = embedded.shape[0], start + embedded.shape[0] * embedded.shape[1]
            try:
                grids = dist[start:stop].reshape(views, *grid).numpy()
                row_grids = rows[start:stop].reshape(views, *grid).numpy()
                outcomes[index] = self._result(grids, row_grids, geometry)
            except Exception as exc:  # e.g. a map that cannot be drawn back onto this image
                outcomes[index] = exc
            start = stop
        return outcomes

    def inspect(self, source: ImageSource | np.ndarray) -> ExpertResult:
        """Score one image."""
        return self.inspect_many([source])[0]


def view_grid(views: torch.Tensor) -> tuple[int, int]:
    """The patch grid of prepared ``V x 3 x H x W`` views: one patch per 8 x 8 input pixels (the stride-8 stage)."""
    return int(views.shape[-2]) // FEATURE_STRIDE, int(views.shape[-1]) // FEATURE_STRIDE


def same_shape_runs(views: Sequence[torch.Tensor]) -> list[slice]:
    """Consecutive stretches of prepared images whose views share one shape (all of them, but in ``scale``).

    Such a stretch can share one backbone pass; fit, teach and inspection all cut a batch this way, so a
    teach embeds an image with the very numbers a fit on it would have.
    """
    runs: list[slice] = []
    start = 0
    for index in range(1, len(views) + 1):
        if index == len(views) or views[index].shape != views[start].shape:
            runs.append(slice(start, index))
            start = index
    return runs


@torch.no_grad()
def embed_runs(
    extractor: FeatureExtractor, views: Sequence[torch.Tensor], config: ExpertConfig
) -> tuple[torch.Tensor, list[int], list[tuple[int, int]]]:
    """Prepared images' patches (image after image, ``N x D``), each image's patch count and view grid."""
    chunks: list[torch.Tensor] = []
    counts: list[int] = []
    grids: list[tuple[int, int]] = []
    for run in same_shape_runs(views):
        images = list(views[run])
        shallow, deep = extractor(torch.cat(images))
        patches = aggregate(shallow, deep, config.pretrain_dim, config.target_dim)
        chunks.append(patches.reshape(-1, patches.shape[-1]))
        counts.extend([patches.shape[1] * images[0].shape[0]] * len(images))  # views x patches per view
        grids.extend([(int(shallow.shape[2]), int(shallow.shape[3]))] * len(images))
    return torch.cat(chunks), counts, grids


def split_grids(values: np.ndarray, counts: Sequence[int], grids: Sequence[tuple[int, int]]) -> list[np.ndarray]:
    """Per-patch values (image after image) as each image's ``views x h x w`` grids."""
    ends = np.cumsum(counts)
    return [values[end - n : end].reshape(-1, *grid) for end, n, grid in zip(ends, counts, grids, strict=True)]


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
