"""Run an exported expert (docs/DEPLOY.md) through ONNX Runtime or OpenVINO behind the ``Expert`` API.

Why a subclass of :class:`Expert`: verdicts, boxes, pictures, the MLLM pipeline and the service all
take an ``Expert`` and read only its thresholds, calibration, config and ``inspect_many``; giving
them the exported graph behind the same surface is what keeps "everything after the map" one piece
of Python code for every runtime. The host does only what the graph does not: decode, resize (and
centre-crop) to the fitted input in uint8, and map the graph's input-sized map back to the frame.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np
import torch

from eagle_iad.choices import RUNTIMES as RUNTIMES
from eagle_iad.errors import ConfigError, ModelFormatError
from eagle_iad.expert.backbones import BackboneId
from eagle_iad.expert.coverage import Coverage
from eagle_iad.expert.encodings import parse_colours, parse_encodings
from eagle_iad.expert.export import (
    EXPORT_KIND,
    EXPORT_SCHEMA_VERSIONS,
    FORMATS,
    GRAPH_OUTPUTS,
    NO_VERDICT_FLAGS,
    ONNX_FILE,
    SIDECAR,
    check_sidecar_checksum,
    graph_opset,
)
from eagle_iad.expert.geometry import ViewGeometry
from eagle_iad.expert.lighting import ExposureRange
from eagle_iad.expert.patchcore import Expert, ExpertConfig, ExpertModel, ExpertResult, inspect_chunk, progress_bar
from eagle_iad.expert.preprocess import check_stored_mode, preprocessor_of
from eagle_iad.file_hash import file_sha256
from eagle_iad.images import ImageSource, load_rgb
from eagle_iad.signal_stack import keeps_signal_stack
from eagle_iad.tgps.calibration import MapCalibration
from eagle_iad.tgps.thresholds import Thresholds


def host_input(rgb: np.ndarray, config: ExpertConfig) -> tuple[np.ndarray, ViewGeometry]:
    """The graph's uint8 ``H x W x 3`` input for one image, and how its map goes back to the frame.

    The mode's own host form (:meth:`~eagle_iad.expert.preprocess.Preprocessor.host_pixels`): the
    same PIL resize (and crop) the torch path makes before normalising, stopped at uint8.
    """
    return preprocessor_of(config).host_pixels(rgb, config)


#: What a graph's outputs come back as: ``score`` ``N``, ``map`` ``N x H x W`` and the stitched patch grid
#: ``patches`` ``N x H/8 x W/8`` (``None`` from a graph exported before it had that output).
GraphOutputs = tuple[np.ndarray, np.ndarray, np.ndarray | None]


class GraphRunner(Protocol):
    """One compiled graph: uint8 ``N x H x W x 3`` → :data:`GraphOutputs`."""

    #: The graph's output names, in order (:data:`~eagle_iad.expert.export.GRAPH_OUTPUTS` or its first two).
    outputs: list[str]

    def __call__(self, images: np.ndarray) -> GraphOutputs: ...


def _check_names(path: Path, inputs: list[str], outputs: list[str]) -> None:
    """The graph's inputs and outputs: ``image`` → ``score``, ``map`` and (schema 3) ``patches``."""
    if inputs != ["image"] or tuple(outputs) not in (GRAPH_OUTPUTS, GRAPH_OUTPUTS[:2]):
        raise ModelFormatError(
            f"{path}: graph inputs/outputs are {(inputs, outputs)}, expected (['image'], {list(GRAPH_OUTPUTS)}) "
            f"or, exported before schema 3, (['image'], {list(GRAPH_OUTPUTS[:2])})"
        )


class OnnxRunner:
    """ONNX Runtime on the CPU."""

    def __init__(self, path: Path, opset: int) -> None:
        import onnxruntime as ort

        try:
            self.session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        except Exception as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelFormatError(
                f"{path}: onnxruntime {ort.__version__} cannot run this graph (opset {opset}): {first}"
            ) from None
        self.outputs = [o.name for o in self.session.get_outputs()]
        _check_names(path, [i.name for i in self.session.get_inputs()], self.outputs)

    def __call__(self, images: np.ndarray) -> GraphOutputs:
        found = self.session.run(self.outputs, {"image": images})
        patches = None if len(found) < 3 else np.asarray(found[2], dtype=np.float32)
        return np.asarray(found[0], dtype=np.float32), np.asarray(found[1], dtype=np.float32), patches


def compile_openvino(path: str | Path) -> Any:
    """``path`` compiled by OpenVINO's CPU plugin, held to float32 (its default on CPUs with bf16 units is bf16).
    The calling thread keeps its own alternate signal stack: the plugin replaces it with a buffer it frees later,
    maybe from another thread, and the next SIGTERM this thread took would crash the process
    (:mod:`eagle_iad.signal_stack`)."""
    import openvino as ov

    with keeps_signal_stack():
        return ov.Core().compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})


class OpenVinoRunner:
    """OpenVINO's CPU plugin, held to float32 (:func:`compile_openvino`)."""

    def __init__(self, path: Path, opset: int | None) -> None:
        import openvino as ov

        try:
            self.compiled = compile_openvino(path)
        except Exception as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            where = "" if opset is None else f" (opset {opset})"
            raise ModelFormatError(f"{path}: OpenVINO {ov.__version__} cannot run this graph{where}: {first}") from None
        self.outputs = [o.get_any_name() for o in self.compiled.outputs]
        _check_names(path, [i.get_any_name() for i in self.compiled.inputs], self.outputs)
        self.request = self.compiled.create_infer_request()

    def __call__(self, images: np.ndarray) -> GraphOutputs:
        outputs = self.request.infer({"image": images})
        score = outputs[self.compiled.output("score")]
        heat = outputs[self.compiled.output("map")]
        patches = None if len(self.outputs) < 3 else np.array(outputs[self.compiled.output("patches")], np.float32)
        return np.array(score, dtype=np.float32), np.array(heat, dtype=np.float32), patches


def export_folder(path: str | Path) -> Path:
    """The export folder for ``path`` (the folder itself, or one of its files)."""
    given = Path(path)
    folder = given.parent if given.is_file() else given
    if not folder.is_dir():
        raise ModelFormatError(f"{path}: no such export folder")
    if not (folder / SIDECAR).is_file():
        raise ModelFormatError(
            f"{folder}: no {SIDECAR}; --runtime onnx|openvino takes a folder written by 'eagle export' "
            "(a fitted model folder runs with --runtime torch)"
        )
    return folder


def parse_sidecar(path: str | Path) -> tuple[Path, dict[str, Any]]:
    """The export folder and its sidecar, checked as far as a listing may without hashing the graph: an
    eagle export of a schema this eagle reads, its own checksum, a known format, and each graph file it names
    present with a SHA-256 listed. :func:`read_sidecar` adds the graph's hashes (what a load needs)."""
    folder = export_folder(path)
    where = folder / SIDECAR
    try:
        raw = where.read_bytes()
        record = json.loads(raw.decode("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFormatError(f"{where}: not a readable export sidecar ({exc})") from None
    if not isinstance(record, dict) or record.get("kind") != EXPORT_KIND:
        kind = record.get("kind") if isinstance(record, dict) else None
        raise ModelFormatError(f"{where}: not an eagle export sidecar (kind {kind!r})")
    version = record.get("schema_version")
    if version not in EXPORT_SCHEMA_VERSIONS:
        raise ModelFormatError(
            f"{where}: export schema version {version!r} is unknown to this eagle (it reads "
            f"{', '.join(map(str, EXPORT_SCHEMA_VERSIONS))}); re-export the model with this version"
        )
    check_sidecar_checksum(raw, record, where)
    if record.get("format") not in FORMATS:
        raise ModelFormatError(f"{where}: unknown export format {record.get('format')!r}")
    try:
        hashes = dict(record["graph"]["sha256"])
        graph_file = str(record["graph"]["file"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFormatError(f"{where}: malformed sidecar (graph {exc})") from None
    if graph_file not in hashes:
        raise ModelFormatError(f"{where}: the sidecar lists no SHA-256 for its graph {graph_file}")
    for name in hashes:
        file = folder / name
        if Path(name).name != name or not file.is_file():
            raise ModelFormatError(f"{file}: graph file named by the sidecar is missing")
    return folder, record


def check_runtime(folder: Path, record: dict[str, Any], runtime: str) -> None:
    """:class:`ConfigError` where ``runtime`` does not run this export's format (onnx runs ONNX exports only)."""
    fmt = record["format"]
    if runtime == "onnx" and fmt != "onnx":
        raise ConfigError(f"{folder}: is an {fmt} export; --runtime onnx runs ONNX exports (use --runtime {fmt})")


def read_sidecar(path: str | Path) -> tuple[Path, dict[str, Any]]:
    """The export folder and its verified sidecar: :func:`parse_sidecar`'s checks, and each graph file
    matching its SHA-256."""
    folder, record = parse_sidecar(path)
    for name, expected in dict(record["graph"]["sha256"]).items():
        file = folder / name
        if file_sha256(file) != expected:
            raise ModelFormatError(
                f"{file}: does not match its sidecar (SHA-256 differs): the file was changed or corrupted "
                "after export; export the model again"
            )
    return folder, record


def _model_record(record: dict[str, Any], where: Path) -> ExpertModel:
    """The fitted model's description as the code after the map reads it; the bank lives in the graph."""
    try:
        config = ExpertConfig.from_dict(dict(record["config"]))
        thresholds = Thresholds.from_dict(dict(record["thresholds"]))
        raw = record["map"].get("calibration")
        calibration = None if raw is None else MapCalibration.from_dict(dict(raw))
        backbone = BackboneId(str(record["backbone"]["name"]), str(record["backbone"]["sha256"]))
        grid = (int(record["grid"][0]), int(record["grid"][1]))
        category = str(record["category"])
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ModelFormatError(f"{where}: malformed sidecar ({exc})") from None
    check_stored_mode(config, where)  # a plugin's mode, as a fitted model says: load it with EAGLE_PLUGINS
    rules = _verdict_rules(record, where)
    coverage = None if rules is None else rules[1]
    encodings = _sidecar_rule(record, where, "encodings", parse_encodings)
    colours = _sidecar_rule(record, where, "colours", parse_colours)
    exposure = _sidecar_rule(record, where, "exposure", ExposureRange.parse)
    empty_ids = torch.empty(0, dtype=torch.int32)
    return ExpertModel(
        category=category,
        config=config,
        backbone=backbone,
        grid=grid,
        bank=torch.empty(0, config.target_dim),
        bank_image_ids=empty_ids,
        patch_image_ids=empty_ids,
        selected=torch.empty(0, dtype=torch.bool),
        train_images=[],
        train_scores=np.empty(0),
        thresholds=thresholds,
        created=str(record.get("source", {}).get("created", "")),
        calibration=calibration,
        coverage=coverage,
        warnings=export_warnings(record),
        train_encodings=encodings,
        train_colours=colours,
        train_exposure=exposure,
    )


#: What a sidecar field parses into.
T = TypeVar("T")


def _sidecar_rule(record: dict[str, Any], where: Path, key: str, parse: Callable[[object, str], T]) -> T | None:
    """What the training images were like, as the sidecar's ``verdict.<key>`` carries it (``encodings``, ``colours``,
    ``exposure``): ``None`` where it carries none (an export written before the field, or of a model saved before
    it: its verdicts then warn about nothing of that kind), refused as malformed where it is there but unreadable."""
    rules = record.get("verdict")
    raw = rules.get(key) if isinstance(rules, dict) else None
    if raw is None:
        return None
    try:
        return parse(raw, f"verdict.{key}")
    except ValueError as exc:
        raise ModelFormatError(f"{where}: malformed sidecar ({exc})") from None


def export_warnings(record: dict[str, Any]) -> list[str]:
    """What an export cannot do that a re-export would (the inspect command prints it, the service lists it)."""
    version = record.get("schema_version")
    return [NO_VERDICT_FLAGS.format(version=version)] if version in (1, 2) else []


def _verdict_rules(record: dict[str, Any], where: Path) -> tuple[float | None, Coverage | None] | None:
    """The sidecar's close-call margin and coverage (schema 3); ``None`` for an export written before them."""
    if record.get("schema_version") in (1, 2):
        return None
    try:
        rules = record["verdict"]
        margin = rules["near_margin"]
        if margin is not None:
            margin = float(margin)
            if not (np.isfinite(margin) and margin > 0):
                raise ValueError(f"near_margin {margin!r} is not a finite number > 0")
        coverage = None if rules["coverage"] is None else Coverage.from_dict(dict(rules["coverage"]))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ModelFormatError(f"{where}: malformed sidecar (verdict {exc})") from None
    return margin, coverage


#: Images per run for an export written before the sidecar said (no limit: each chunk whole).
WHOLE_CHUNK = 1 << 30


def _images_per_run(record: dict[str, Any], where: Path) -> int:
    """The sidecar's ``search.images_per_run``, refused when present but not a positive integer."""
    search = record.get("search")
    if search is None:
        return WHOLE_CHUNK
    value = search.get("images_per_run") if isinstance(search, dict) else None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ModelFormatError(f"{where}: malformed sidecar (search.images_per_run {value!r})")
    return value


class GraphExpert(Expert):
    """An :class:`Expert` whose score and map come from an exported graph (``onnx`` or ``openvino``)."""

    def __init__(self, path: str | Path, runtime: str) -> None:
        # No super().__init__(): there is no backbone or bank to load, the graph holds both.
        if runtime not in RUNTIMES or runtime == "torch":
            raise ConfigError(f"runtime {runtime!r} does not run exports; choose onnx or openvino")
        folder, record = read_sidecar(path)
        self.folder = folder
        self.export = record
        self.runtime = runtime
        self.model = _model_record(record, folder / SIDECAR)
        # an export before schema 3 has neither: its ``model.warnings`` says so and that a re-export fixes it
        rules = _verdict_rules(record, folder / SIDECAR)
        self._near_margin = None if rules is None else rules[0]
        graph = folder / str(record["graph"]["file"])
        declared = record["graph"].get("opset")
        opset = None
        if graph.name == ONNX_FILE:
            opset = graph_opset(graph)
            if declared != opset:
                raise ModelFormatError(
                    f"{graph}: declares opset {opset} but its sidecar says {declared!r}; export the model again"
                )
        #: Images per run of the graph (the sidecar's ``search.images_per_run``; an export written
        #: before it has none, and its graph takes each chunk whole, as it did).
        self.per_run = _images_per_run(record, folder / SIDECAR)
        check_runtime(folder, record, runtime)
        if runtime == "onnx":
            self.runner: GraphRunner = OnnxRunner(graph, int(declared))
        else:
            self.runner = OpenVinoRunner(graph, opset)
        if rules is not None and len(self.runner.outputs) < len(GRAPH_OUTPUTS):
            raise ModelFormatError(
                f"{graph}: has no 'patches' output, which its sidecar's schema {record['schema_version']} "
                "promises; export the model again"
            )

    def near_margin(self) -> float | None:
        """The close-call margin the sidecar carries (``None`` for an export written before it)."""
        return self._near_margin

    def embed(self, batch: torch.Tensor) -> torch.Tensor:
        raise ConfigError(f"an exported expert ({self.runtime}) has no patch embeddings; use --runtime torch")

    def score_tensors(self, batch: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        raise ConfigError(f"an exported expert ({self.runtime}) scores images, not tensors; use inspect_many")

    def inspect_many(
        self, sources: Sequence[ImageSource | np.ndarray], show_progress: bool = False, batch: int | None = None
    ) -> list[ExpertResult]:
        """As :meth:`Expert.inspect_many`, with the graph computing score and input-sized map."""
        config = self.model.config
        size = inspect_chunk(config, batch)
        results: list[ExpertResult] = []
        with progress_bar(len(sources), f"inspect ({self.runtime})", show_progress) as bar:
            for start in range(0, len(sources), size):
                chunk = sources[start : start + size]
                prepared = [host_input(s if isinstance(s, np.ndarray) else load_rgb(s), config) for s in chunk]
                pixels = np.stack([p for p, _ in prepared])
                runs = [self.runner(pixels[i : i + self.per_run]) for i in range(0, len(pixels), self.per_run)]
                scores = np.concatenate([score for score, _, _ in runs])
                maps = np.concatenate([heat for _, heat, _ in runs])
                coverage = self.model.coverage
                for (_, geometry), value, heat, grid in zip(prepared, scores, maps, _patch_grids(runs), strict=True):
                    score = float(value)
                    results.append(
                        ExpertResult(
                            score=score,
                            is_anomalous=self.thresholds.is_anomalous(score),
                            in_band=self.thresholds.in_band(score),
                            patch_scores=grid,
                            crop_map=heat,
                            anomaly_map=geometry.to_original(heat),
                            geometry=geometry,
                            # the share beyond the coverage radius, on the stitched grid as Expert._result counts it
                            foreign_share=None if coverage is None or grid.size == 0 else coverage.share(grid),
                        )
                    )
                bar.update(len(chunk))
        return results


#: An export before schema 3 gives no patch grid: an empty one is what ``verdict.patch_map`` reads as none.
NO_PATCH_GRID = np.empty((0, 0), dtype=np.float32)


def _patch_grids(runs: list[GraphOutputs]) -> list[np.ndarray]:
    """Each image's stitched patch grid, for the verdict's box patch scores and coverage share as the torch
    path has them (``ExpertResult.patch_scores``); :data:`NO_PATCH_GRID` for a graph without that output."""
    grids: list[np.ndarray] = []
    for score, _, patches in runs:
        grids.extend([NO_PATCH_GRID] * len(score) if patches is None else list(patches))
    return grids
