"""PatchCore: fit a memory bank of normal patches, score new images against it (SPEC §1).

:class:`ExpertModel` is the fitted state (plain tensors and records, what ``store`` saves);
:class:`Expert` pairs it with a loaded backbone and a search index and answers queries. Fitting
returns an ``Expert`` directly so a freshly fitted model can be used without a save/load round trip.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy.ndimage import gaussian_filter
from tqdm import tqdm

from eagle_iad.errors import ConfigError, ImageError, ModelFormatError
from eagle_iad.expert.backbones import DEFAULT_BACKBONE, BackboneId, FeatureExtractor, build_backbone
from eagle_iad.expert.coreset import make_sampler
from eagle_iad.expert.features import aggregate
from eagle_iad.expert.search import DEFAULT_SEARCH, NearestNeighbourSearch, make_search
from eagle_iad.images import Geometry, ImageSource, load_rgb, to_tensor
from eagle_iad.tgps.thresholds import DEFAULT_RULE, Thresholds, compute_thresholds, leave_own_out_scores


@dataclass(frozen=True)
class ExpertConfig:
    """Every setting that changes what a fitted model computes; saved with the model."""

    backbone: str = DEFAULT_BACKBONE
    resize: int = 256
    crop: int = 224
    pretrain_dim: int = 1024
    target_dim: int = 1024
    sampler: str = "greedy"
    coreset_ratio: float = 0.1
    projection_dim: int = 128
    seed: int = 0
    search: str = DEFAULT_SEARCH
    rule: str = DEFAULT_RULE
    rule_k: float = 3.0
    rule_q: float = 0.99
    rule_p: float = 0.99
    rule_value: float | None = None
    sigma: float = 4.0
    batch_size: int = 16

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ExpertConfig:
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(data) - known
        if unknown:
            raise ModelFormatError(f"unknown expert settings {sorted(unknown)}")
        return cls(**data)

    def validate(self) -> None:
        if self.crop > self.resize:
            raise ConfigError(f"crop ({self.crop}) must not exceed resize ({self.resize})")
        if self.crop < 32 or self.crop % 16:
            raise ConfigError(f"crop must be a multiple of 16 and at least 32, got {self.crop}")
        if self.batch_size < 1:
            raise ConfigError("batch size must be at least 1")


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


@dataclass
class ExpertResult:
    """The expert's answer for one image: score, verdict, and maps in crop and original coordinates."""

    score: float
    is_anomalous: bool
    in_band: bool
    patch_scores: np.ndarray
    crop_map: np.ndarray
    anomaly_map: np.ndarray
    geometry: Geometry


def _progress(total: int, desc: str, enabled: bool) -> tqdm[Any]:
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
        self.extractor = extractor or build_backbone(model.config.backbone, model.config.crop)
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
        """Image scores (``B``) and patch-score grids (``B x h x w``) for prepared tensors."""
        patches = self.embed(batch)
        count, _, dim = patches.shape
        dist, _ = self.search.search(patches.reshape(-1, dim))
        grids = dist.reshape(count, *self.model.grid).numpy()
        return grids.reshape(count, -1).max(axis=1), grids

    def anomaly_map(self, patch_scores: np.ndarray, geometry: Geometry) -> tuple[np.ndarray, np.ndarray]:
        """Patch grid → crop-sized map (bilinear, Gaussian sigma) → original-image map."""
        crop = self.model.config.crop
        grid = torch.from_numpy(np.ascontiguousarray(patch_scores, dtype=np.float32))[None, None]
        up = F.interpolate(grid, size=(crop, crop), mode="bilinear", align_corners=False)[0, 0].numpy()
        smooth = gaussian_filter(up, sigma=self.model.config.sigma).astype(np.float32)
        return smooth, geometry.map_to_original(smooth)

    def inspect_many(
        self, sources: Sequence[ImageSource | np.ndarray], show_progress: bool = False
    ) -> list[ExpertResult]:
        """Score images (paths, bytes or RGB arrays) in batches; results keep the input order."""
        config = self.model.config
        results: list[ExpertResult] = []
        with _progress(len(sources), "inspect", show_progress) as bar:
            for start in range(0, len(sources), config.batch_size):
                chunk = sources[start : start + config.batch_size]
                tensors, geometries = [], []
                for source in chunk:
                    rgb = source if isinstance(source, np.ndarray) else load_rgb(source)
                    tensor, geometry = to_tensor(rgb, config.resize, config.crop)
                    tensors.append(tensor)
                    geometries.append(geometry)
                scores, grids = self.score_tensors(torch.stack(tensors))
                for score, grid, geometry in zip(scores, grids, geometries, strict=True):
                    crop_map, full_map = self.anomaly_map(grid, geometry)
                    value = float(score)
                    results.append(
                        ExpertResult(
                            score=value,
                            is_anomalous=self.thresholds.is_anomalous(value),
                            in_band=self.thresholds.in_band(value),
                            patch_scores=grid,
                            crop_map=crop_map,
                            anomaly_map=full_map,
                            geometry=geometry,
                        )
                    )
                bar.update(len(chunk))
        return results

    def inspect(self, source: ImageSource | np.ndarray) -> ExpertResult:
        """Score one image."""
        return self.inspect_many([source])[0]


def _embed_training(
    extractor: FeatureExtractor,
    paths: Sequence[Path],
    config: ExpertConfig,
    show_progress: bool,
    hook: FitProgress | None = None,
    scratch: Path | None = None,
) -> tuple[torch.Tensor, tuple[int, int]]:
    """``n_images x patches x D`` training features, and the patch grid.

    With ``scratch`` (a folder), batches are written straight into a float32 memory-mapped file
    there instead of being concatenated in RAM, so memory stays flat as the training set grows;
    the values are the same float32 numbers either way.
    """
    chunks: list[torch.Tensor] = []
    stored: np.ndarray | None = None
    grid = (0, 0)
    with _progress(len(paths), "features", show_progress) as bar:
        for start in range(0, len(paths), config.batch_size):
            tensors = []
            for path in paths[start : start + config.batch_size]:
                try:
                    rgb = load_rgb(path)
                except ImageError as exc:
                    raise ImageError(f"training image rejected: {exc}") from exc
                tensors.append(to_tensor(rgb, config.resize, config.crop)[0])
            with torch.no_grad():
                shallow, deep = extractor(torch.stack(tensors))
                grid = (int(shallow.shape[2]), int(shallow.shape[3]))
                patches = aggregate(shallow, deep, config.pretrain_dim, config.target_dim)
            if scratch is None:
                chunks.append(patches)
            else:
                if stored is None:
                    shape = (len(paths), *patches.shape[1:])
                    stored = np.lib.format.open_memmap(scratch / "features.npy", "w+", np.float32, shape)
                stored[start : start + len(tensors)] = patches.numpy()
            bar.update(len(tensors))
            if hook is not None:
                hook("features", min(start + len(tensors), len(paths)), len(paths))
    return (torch.cat(chunks) if stored is None else torch.from_numpy(stored)), grid


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

    The training features live in a scratch file in a private temporary folder (``TMPDIR``), so
    memory holds only the coreset's projection and the bank; the folder is removed when the fit
    ends, fails or is interrupted.
    """
    with tempfile.TemporaryDirectory(prefix="eagle-fit-") as scratch:
        return _fit(paths, category, config, extractor, show_progress, progress, Path(scratch))


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
    sampler = make_sampler(config.sampler, config.coreset_ratio, config.seed, config.projection_dim)
    search = make_search(config.search)
    extractor = extractor or build_backbone(config.backbone, config.crop)
    timings: dict[str, float] = {}

    start = time.perf_counter()
    embedded, grid = _embed_training(extractor, image_paths, config, show_progress, progress, scratch)
    n_images, per_image, dim = embedded.shape
    features = embedded.reshape(-1, dim).contiguous()
    patch_image_ids = torch.arange(n_images, dtype=torch.int32).repeat_interleave(per_image)
    timings["features_s"] = time.perf_counter() - start

    start = time.perf_counter()
    with _progress(0, "coreset", show_progress) as bar:
        chosen = torch.from_numpy(sampler.select(features.numpy(), progress=_reporter(bar, "coreset", progress)))
    selected = torch.zeros(features.shape[0], dtype=torch.bool)
    selected[chosen] = True
    bank = features[chosen].contiguous()
    bank_ids = patch_image_ids[chosen].contiguous()
    timings["coreset_s"] = time.perf_counter() - start

    start = time.perf_counter()
    search.fit(bank, bank_ids)
    with _progress(0, "training scores", show_progress) as bar:
        train_scores = leave_own_out_scores(
            features, patch_image_ids, selected, search, n_images, progress=_reporter(bar, "training scores", progress)
        )
    thresholds = compute_thresholds(
        train_scores, config.rule, k=config.rule_k, q=config.rule_q, p=config.rule_p, value=config.rule_value
    )
    timings["train_scores_s"] = time.perf_counter() - start

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
    )
    return Expert(model, extractor, search)
