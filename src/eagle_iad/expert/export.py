"""Export a fitted expert as one ONNX or OpenVINO graph with a JSON sidecar (docs/DEPLOY.md).

Why one graph from uint8 pixels to score and map: a station without Python's ML stack should need
only a runtime and the sidecar, and every step that decides a verdict (normalisation, backbone,
patch aggregation, exact nearest-neighbour search against the memory bank, stitching, upsampling,
Gaussian smoothing) must be the same arithmetic as the torch path, or "the exported model scores
differently". Each step below is written to match the torch code it mirrors operation for
operation; the tests compare both on real images.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import sys
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from eagle_iad import __version__
from eagle_iad.choices import EXPORT_FORMATS
from eagle_iad.errors import ConfigError, ModelFormatError, OutputError, one_of
from eagle_iad.expert.features import aggregate
from eagle_iad.expert.geometry import FEATURE_STRIDE
from eagle_iad.expert.graph_search import GraphSearch
from eagle_iad.expert.patchcore import Expert
from eagle_iad.expert.preprocess import EXPOSURE_MEAN, EXPOSURE_MIN_SPREAD, EXPOSURE_SPREAD, preprocessor_of
from eagle_iad.file_hash import file_sha256 as file_sha256
from eagle_iad.images import IMAGENET_MEAN, IMAGENET_STD
from eagle_iad.outputs import check_output_path, staged_folder
from eagle_iad.scratch import scratch_folder
from eagle_iad.tgps.calibration import fallback_calibration

#: Schema 2 adds ``checksum``: the SHA-256 of the sidecar's own bytes (see :func:`seal_sidecar`), so a
#: hand-edited tau is refused like a hand-edited model; schema 1 exports still load, unchecked.
#: Schema 3 adds the graph's ``patches`` output (the stitched patch grid) and the sidecar's ``verdict``
#: (the close-call margin and the coverage): what a close call and an unrecognised image are told by,
#: and what gives a box torch's patch score. Schema 1 and 2 exports still load, and say they cannot
#: tell either nor give a patch score (:data:`NO_VERDICT_FLAGS`).
EXPORT_SCHEMA_VERSION = 3
#: Every sidecar schema a runtime reads (the TypeScript local runtime lists the same).
EXPORT_SCHEMA_VERSIONS = (1, 2, 3)
#: The graph's outputs, in order; an export of schema 1 or 2 has the first two only.
GRAPH_OUTPUTS = ("score", "map", "patches")
#: What an export written before schema 3 says about itself (its verdicts' ``near_threshold`` and
#: ``unrecognised`` are null, and its boxes' ``strength`` is not the torch path's number).
NO_VERDICT_FLAGS = (
    "this export predates close calls, unrecognised images and boxes' patch scores (export schema {version}): "
    "near_threshold, unrecognised and each box's patch_score are null, and a box's strength is its map peak on "
    "the score's scale, not the largest patch score under it; export the fitted model again to have them"
)
#: What stands in the ``checksum`` field while the sidecar's bytes are hashed.
CHECKSUM_PLACEHOLDER = "sha256:" + "0" * 64
EXPORT_KIND = "eagle-export"
SIDECAR = "eagle-export.json"
ONNX_FILE = "model.onnx"
ONNX_DATA = "model.onnx.data"
OPENVINO_XML = "model.xml"
OPENVINO_BIN = "model.bin"
FORMATS = EXPORT_FORMATS
#: One protobuf holds at most 2 GiB; above this many bytes of weights and bank the graph's tensors go
#: to ``model.onnx.data`` (ONNX external data) instead, with margin for the graph itself.
EXTERNAL_DATA_BYTES = 1_800_000_000
#: scipy's ``gaussian_filter`` default: the kernel reaches ``truncate * sigma`` pixels each side.
GAUSSIAN_TRUNCATE = 4.0


def gaussian_kernel(sigma: float, truncate: float = GAUSSIAN_TRUNCATE) -> np.ndarray:
    """scipy.ndimage's 1-D Gaussian weights (radius ``int(truncate * sigma + 0.5)``, summing to one)."""
    radius = int(truncate * float(sigma) + 0.5)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    phi = np.exp(-0.5 / (float(sigma) ** 2) * x**2)
    weights: np.ndarray = phi / phi.sum()
    return weights


def reflect_indices(length: int, radius: int) -> np.ndarray:
    """Source index of each padded position under scipy's ``reflect`` border (``d c b a | a b c d``)."""
    indices: np.ndarray = np.pad(np.arange(length), radius, mode="symmetric")
    return indices


class DeployGraph(nn.Module):
    """uint8 ``N x H x W x 3`` RGB → (``score`` ``N``, ``map`` ``N x H x W``, ``patches`` ``N x H/8 x W/8``),
    as :class:`Expert` computes them: ``patches`` is the stitched patch grid (``ExpertResult.patch_scores``,
    ``-inf`` where no tile reaches), what an image's share beyond the coverage radius is counted on."""

    offset: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor
    kernel_rows: torch.Tensor
    kernel_cols: torch.Tensor
    pad_rows: torch.Tensor
    pad_cols: torch.Tensor

    def __init__(self, expert: Expert) -> None:
        super().__init__()
        model = expert.model
        config = model.config
        if not isinstance(expert.extractor, nn.Module):
            raise ConfigError(f"backbone {model.backbone.name} is not a torch module and cannot be exported")
        self.extractor = expert.extractor
        self.pretrain_dim = config.pretrain_dim
        self.target_dim = config.target_dim
        form = preprocessor_of(config).export_form(config)
        self.input_hw = form.input_hw
        self.origins = form.origins
        self.tile = form.tile
        self.grid = model.grid
        self.search = GraphSearch(model.bank)
        offset = model.map_offset
        height, width = self.input_hw
        cells = (height // FEATURE_STRIDE, width // FEATURE_STRIDE)
        self.register_buffer("offset", torch.zeros(cells) if offset is None else offset.float().clone())
        self.exposure = config.exposure
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN, dtype=torch.float32))
        self.register_buffer("std", torch.tensor(IMAGENET_STD, dtype=torch.float32))
        kernel = torch.from_numpy(gaussian_kernel(config.sigma).astype(np.float32))
        radius = (kernel.numel() - 1) // 2
        self.register_buffer("kernel_rows", kernel.reshape(1, 1, -1, 1))
        self.register_buffer("kernel_cols", kernel.reshape(1, 1, 1, -1))
        self.register_buffer("pad_rows", torch.from_numpy(reflect_indices(height, radius)).long())
        self.register_buffer("pad_cols", torch.from_numpy(reflect_indices(width, radius)).long())

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        height, width = self.input_hw
        # preprocess.normalise: float32 / 255, then (x - mean) / std, channels first.
        x = image.to(torch.float32) / 255.0
        if self.exposure == "image":
            x = graph_exposure(x)
        x = ((x - self.mean) / self.std).permute(0, 3, 1, 2)
        if self.tile:
            size = self.tile
            views = torch.stack([x[:, :, t : t + size, left : left + size] for t, left in self.origins], dim=1)
            x = views.reshape(-1, 3, size, size)
        shallow, deep = self.extractor(x)
        patches = aggregate(shallow, deep, self.pretrain_dim, self.target_dim)
        queries = patches.reshape(-1, self.target_dim)
        # graph_search.GraphSearch finds the nearest row exactly; its distance is recomputed directly.
        _, dist = self.search(queries)
        grids = dist.reshape(-1, len(self.origins), self.grid[0], self.grid[1])
        rows, cols = height // FEATURE_STRIDE, width // FEATURE_STRIDE
        if len(self.origins) == 1:
            stitched = grids[:, 0]
        else:  # geometry.Tiles.stitch: maximum where tiles overlap
            placed = []
            for index, (top, left) in enumerate(self.origins):
                r, c = top // FEATURE_STRIDE, left // FEATURE_STRIDE
                pad = (c, cols - c - self.grid[1], r, rows - r - self.grid[0])
                placed.append(F.pad(grids[:, index], pad, value=-math.inf))
            stitched = torch.stack(placed, dim=1).amax(dim=1)
        score = stitched.reshape(stitched.shape[0], -1).amax(dim=1)
        # patchcore.input_map on Expert.evidence_grid: bilinear up, then scipy's separable Gaussian.
        evidence = (stitched - self.offset).unsqueeze(1)
        up = F.interpolate(evidence, size=(height, width), mode="bilinear", align_corners=False)
        up = F.conv2d(up.index_select(2, self.pad_rows), self.kernel_rows)
        up = F.conv2d(up.index_select(3, self.pad_cols), self.kernel_cols)
        return score, up[:, 0], stitched


def graph_exposure(x: torch.Tensor) -> torch.Tensor:
    """preprocess.expose for a batch of ``N x H x W x 3`` float32 pixels in ``[0, 1]``, in the graph's float32.

    The host takes the statistics in float64; here each mean is of each row first, then of the rows,
    and the centre is refined once by the mean of what is left (``m + mean(x - m)``). Why: a runtime may
    sum a reduction's values in order, and the gain (up to 0.226 x 255) multiplies the error of the
    centre, which grows with the image's brightness: one plain float32 mean missed the parity bound
    (1e-4) in a box score at 192 px, and two-step means alone missed it on bright, flat 2048-px inputs
    (2.4e-4 with ONNX Runtime); with the refinement the step is within float32 rounding of the host's
    there (2.5e-6)
    (tests/test_exposure.py exports it alone to both runtimes).
    """
    first = _mean_of_rows(x)
    centre = first + _mean_of_rows(x - first)
    spread = _mean_of_rows((x - centre) ** 2).sqrt()
    return (x - centre) * (EXPOSURE_SPREAD / spread.clamp(min=EXPOSURE_MIN_SPREAD)) + EXPOSURE_MEAN


def _mean_of_rows(x: torch.Tensor) -> torch.Tensor:
    """Each ``N x H x W x 3`` image's mean, as ``N x 1 x 1 x 1``: of each row first, then of the rows (short sums)."""
    return x.mean(dim=(2, 3), keepdim=True).mean(dim=1, keepdim=True)


def graph_opset(path: Path) -> int:
    """The default-domain opset an ONNX file declares (read without its external data)."""
    import onnx

    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf's DecodeError and friends: the file is not an ONNX model
        raise ModelFormatError(f"{path}: cannot be read as an ONNX graph ({type(exc).__name__}: {exc})") from None
    for entry in proto.opset_import:
        if entry.domain in ("", "ai.onnx"):
            return int(entry.version)
    raise ModelFormatError(f"{path}: declares no ONNX opset")


#: The logger and message start of a note the ONNX exporter's IR library logs on every export (an empty
#: list attribute it types as INTS, which is right for every such attribute in this graph): noise on stderr.
AMBIGUOUS_ATTRIBUTE = ("onnx_ir._convenience", "Attribute type is ambiguous because it is an empty sequence")


class _DropAmbiguousAttribute(logging.Filter):
    """Drops :data:`AMBIGUOUS_ATTRIBUTE`'s note and nothing else."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(AMBIGUOUS_ATTRIBUTE[1])


@contextlib.contextmanager
def _quiet_ambiguous_attribute() -> Iterator[None]:
    """Silence :data:`AMBIGUOUS_ATTRIBUTE` while the export runs; every other message still goes through."""
    source = logging.getLogger(AMBIGUOUS_ATTRIBUTE[0])
    drop = _DropAmbiguousAttribute()
    source.addFilter(drop)
    try:
        yield
    finally:
        source.removeFilter(drop)


def _export_onnx(graph: DeployGraph, folder: Path, external_above: int) -> tuple[list[str], str | None]:
    height, width = graph.input_hw
    dummy = torch.zeros((2, height, width, 3), dtype=torch.uint8)
    batch = torch.export.Dim("N", min=1, max=4096)
    # The exporter reports its progress on stdout and warns about torchvision ops it will not need;
    # the command's stdout is its JSON summary, so both go to stderr / are dropped.
    logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)
    with (
        torch.no_grad(),
        contextlib.redirect_stdout(sys.stderr),
        warnings.catch_warnings(),
        _quiet_ambiguous_attribute(),
    ):
        warnings.simplefilter("ignore", FutureWarning)  # the exporter's own use of deprecated torch APIs
        program = torch.onnx.export(
            graph,
            (dummy,),
            dynamo=True,
            input_names=["image"],
            output_names=list(GRAPH_OUTPUTS),
            dynamic_shapes={"image": {0: batch}},
            optimize=True,
            verbose=False,
        )
    assert program is not None
    size = sum(t.numel() * t.element_size() for t in graph.state_dict().values())
    external = size > external_above
    program.save(str(folder / ONNX_FILE), external_data=external)
    if external:
        produced = sorted(p.name for p in folder.iterdir() if p.name != ONNX_FILE)
        if produced != [ONNX_DATA]:
            raise ModelFormatError(f"the ONNX exporter wrote external data as {produced}, expected {ONNX_DATA}")
        return [ONNX_FILE, ONNX_DATA], ONNX_DATA
    return [ONNX_FILE], None


def _export_openvino(onnx_path: Path, folder: Path) -> list[str]:
    import openvino as ov

    converted = ov.convert_model(str(onnx_path))
    # compress_to_fp16 defaults to True: half-precision weights would change every score.
    ov.save_model(converted, str(folder / OPENVINO_XML), compress_to_fp16=False)
    return [OPENVINO_XML, OPENVINO_BIN]


def sidecar_record(
    expert: Expert, fmt: str, files: list[str], external: str | None, opset: int, search: dict[str, Any]
) -> dict[str, Any]:
    """The sidecar: everything a runtime needs besides the graph (docs/DEPLOY.md, "The sidecar")."""
    model = expert.model
    config = model.config
    form = preprocessor_of(config).export_form(config)
    input_hw, origins = form.input_hw, form.origins
    calibration = model.calibration or fallback_calibration(model.thresholds)
    rule = config.region_rule if model.calibration is not None else "paper"
    height, width = input_hw
    return {
        "schema_version": EXPORT_SCHEMA_VERSION,
        "kind": EXPORT_KIND,
        "eagle_version": __version__,
        "format": fmt,
        "category": model.category,
        "graph": {
            "file": files[0],
            "external_data": external,
            "opset": opset,
            "sha256": {},  # filled by the caller once the files are final
            "inputs": {"image": {"dtype": "uint8", "shape": ["N", height, width, 3], "layout": "NHWC RGB"}},
            "outputs": {
                "score": {"dtype": "float32", "shape": ["N"]},
                "map": {"dtype": "float32", "shape": ["N", height, width]},
                "patches": {"dtype": "float32", "shape": ["N", height // FEATURE_STRIDE, width // FEATURE_STRIDE]},
            },
        },
        "verdict": verdict_rules(expert),
        "search": search,
        "backbone": {"name": model.backbone.name, "sha256": model.backbone.sha256},
        "grid": list(model.grid),
        "preprocessing": {
            "mode": config.preprocess,
            "input_hw": [height, width],
            "resample": "PIL bilinear, antialiased when shrinking, uint8 RGB",
            "size": config.size,
            "tile": config.tile,
            "tile_overlap": config.tile_overlap,
            "tile_origins": [list(o) for o in origins],
            "resize": config.resize,
            "crop": config.crop,
            "exposure": config.exposure,
        },
        "tau": model.thresholds.tau,
        "s_max": model.thresholds.s_max,
        "thresholds": model.thresholds.to_dict(),
        "map": {
            "sigma": config.sigma,
            "normalisation": "score units (no per-image normalisation)",
            "map_tau": calibration.map_tau,
            "colour_scale": [calibration.colour_min, calibration.colour_max],
            "calibrated": model.calibration is not None,
            "calibration": None if model.calibration is None else model.calibration.to_dict(),
            "position_baseline": model.map_offset is not None,
        },
        "regions": {
            "rule": rule,
            "map_tau": None if model.calibration is None else calibration.map_tau,
            "baseline": None if model.calibration is None else calibration.colour_min,
            "top_k": 3,
            "min_area_fraction": "min(0.001, (8 / H) * (8 / W))",
            "feature_stride": FEATURE_STRIDE,
        },
        "config": config.to_dict(),
        "source": {"created": model.created},
    }


def verdict_rules(expert: Expert) -> dict[str, Any]:
    """What turns a score and a patch grid into the verdict's flags, as the torch path computes them
    (``eagle_iad.verdict.make_verdict``): the close-call margin (one standard deviation of the training
    scores, :func:`eagle_iad.tgps.thresholds.near_margin`; ``null`` without two training scores) and the
    coverage (:mod:`eagle_iad.expert.coverage`; ``null`` for a fit on fewer than 10 images)."""
    model = expert.model
    return {
        "near_margin": expert.near_margin(),
        "near_rule": "|score - tau| < near_margin",
        "coverage": None if model.coverage is None else model.coverage.to_dict(),
        "coverage_rule": "foreign_share = share of finite patches > radius; unrecognised iff foreign_share >= limit",
        # what the training images were encoded as (expert/encodings.py), so a verdict on a JPEG of a PNG-fitted
        # export warns as the fitted model's does; null where the model does not know (saved before schema 10),
        # and absent from exports written before it: both warn about nothing
        "encodings": model.train_encodings,
        # the training images' colour modes ({grey | colour: count}), so a greyscale input of a colour-fitted
        # export warns as the fitted model's verdict does; null or absent (older exports): no colour warning
        "colours": model.train_colours,
        # the range of the training images' grey mean and spread (expert/lighting.py), so a photo far outside it
        # warns as the fitted model's verdict does; null or absent (older exports, older models): no such warning
        "exposure": None if model.train_exposure is None else model.train_exposure.to_dict(),
    }


def seal_sidecar(record: dict[str, Any]) -> str:
    """The sidecar's text with ``checksum`` set to the SHA-256 of that same text with the placeholder in it.

    Why the bytes and not canonical JSON (as a model's manifest does): the TypeScript runtime checks
    it too, and JavaScript prints numbers differently from Python, so only the file's own bytes hash
    alike in both. An export is written once and never edited, so byte-exactness costs nothing.
    """
    text = json.dumps({**record, "checksum": CHECKSUM_PLACEHOLDER}, indent=2) + "\n"
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    return text.replace(f'"checksum": "{CHECKSUM_PLACEHOLDER}"', f'"checksum": "sha256:{digest}"')


def check_sidecar_checksum(raw: bytes, record: dict[str, Any], where: Path) -> None:
    """Refuse a schema-2 sidecar whose bytes differ from what the export wrote (a hand edit, a corruption)."""
    if record.get("schema_version") == 1:
        if "checksum" in record:  # a schema number typed over a newer sidecar, to skip the check
            raise ModelFormatError(f"{where}: was edited by hand (schema_version 1 predates the checksum it carries)")
        return  # written before sidecars carried a checksum
    recorded = record.get("checksum")
    field = f'"checksum": "{recorded}"'.encode()
    if not isinstance(recorded, str) or raw.count(field) != 1:
        raise ModelFormatError(f"{where}: checksum is missing; the sidecar was edited by hand or is incomplete")
    restored = raw.replace(field, f'"checksum": "{CHECKSUM_PLACEHOLDER}"'.encode())
    if "sha256:" + hashlib.sha256(restored).hexdigest() != recorded:
        raise ModelFormatError(
            f"{where}: was edited by hand (its checksum does not match its contents); export the model again"
        )


def check_export_target(out: str | os.PathLike[str], fmt: str) -> Path:
    """The export folder to write, refused before any work when it is not new (or an empty folder)."""
    if fmt not in FORMATS:
        raise ConfigError(f"unknown export format {fmt!r}; choose one of {one_of(FORMATS)}")
    target = check_output_path(out, "an export", "./export", from_parent=True)
    if target.is_dir() and any(target.iterdir()):
        raise OutputError(f"{os.fspath(out)}: exists and is not empty; give a new folder for the export")
    return target


def export_expert(
    expert: Expert,
    fmt: str,
    out: str | os.PathLike[str],
    external_above: int = EXTERNAL_DATA_BYTES,
    report: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Write ``out`` (a new folder) with the graph and its sidecar, the sidecar last; return the sidecar."""
    target = check_export_target(out, fmt)
    graph = DeployGraph(expert).eval()
    # the sidecar marks an export complete (a service watching the folder loads what it names): moved in last
    with staged_folder(target, ledger=False, last=(SIDECAR,)) as staging, scratch_folder("export") as scratch:
        onnx_dir = staging if fmt == "onnx" else scratch
        files, external = _export_onnx(graph, onnx_dir, external_above)
        opset = graph_opset(onnx_dir / ONNX_FILE)
        if fmt == "openvino":
            files, external = _export_openvino(onnx_dir / ONNX_FILE, staging), None
        patches = len(graph.origins) * graph.grid[0] * graph.grid[1]
        record = sidecar_record(expert, fmt, files, external, opset, graph.search.describe(patches))
        record["graph"]["sha256"] = {name: file_sha256(staging / name) for name in files}
        (staging / SIDECAR).write_text(seal_sidecar(record), encoding="utf-8")
        if report is not None and external is not None:
            report(
                f"the graph is larger than one 2 GiB protobuf: its tensors are in {external} beside {files[0]} "
                "(keep both files together)"
            )
    return record
