"""The expert's verdict on one image, and the pictures that go with it.

This is the record the CLI prints, the service will return and the MLLM stage (TGPS) builds on:
score against tau and s_max, decision, low-confidence band flag, the merged defect boxes, and the
rendered heatmap overlay and boxed picture on the *original* image.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from eagle_iad.atomic import atomic_write_bytes
from eagle_iad.expert.patchcore import Expert, ExpertResult, ReferenceUnavailableError
from eagle_iad.expert.preprocess import FEATURE_STRIDE
from eagle_iad.expert.references import REFERENCE_SUFFIX
from eagle_iad.images import ImageSource, load_rgb
from eagle_iad.naming import picture_stems
from eagle_iad.tgps.calibration import fallback_calibration, legend_scale, score_factor
from eagle_iad.tgps.regions import Box, find_boxes
from eagle_iad.tgps.render import (
    RenderStyle,
    draw_candidates,
    hatch_uninspected,
    heatmap_overlay,
    label_boxes,
    render,
    save_png,
    with_legend,
)
from eagle_iad.tgps.thresholds import is_near

#: The heatmap legend's label for where weak boxes were cut (:func:`boxes_cut_below`), ``boxes 110.10``.
BOXES_MARK = "boxes"

#: The decision on an image that is not like the training images at all (expert/coverage.py).
UNRECOGNISED = "unrecognised"


@dataclass
class ExpertVerdict:
    """What the expert says about one image (JSON-ready via :meth:`to_dict`).

    ``boxes`` are the visual prompt's boxes, ranked strongest first: only an anomalous verdict has
    any. ``candidates`` are a normal verdict's strongest regions by the same rule, kept for a reader
    who asks to see them (drawn dashed and yellow, never as the red prompt). ``map`` holds the raw
    map statistics in score units, the category's colour scale and pixel threshold, and how much of
    the image the expert inspected.
    """

    image: str
    category: str
    score: float
    tau: float
    s_max: float
    decision: str
    in_band: bool
    boxes: list[Box]
    width: int
    height: int
    pictures: dict[str, str] = field(default_factory=dict)
    candidates: list[Box] = field(default_factory=list)
    region_rule: str = "paper"
    map: dict[str, Any] = field(default_factory=dict)
    #: The nearest normal training image (docs/METHOD.md, "Nearest normal reference"): ``index`` into
    #: the model's training images, its ``image`` name, the ``bank_row`` that links them, and
    #: ``unavailable`` (why no picture can be shown) or ``None``. ``None`` when the search found none.
    reference: dict[str, Any] | None = None
    #: ``|score - tau|`` is below the category's near-threshold margin (one standard deviation of its
    #: training scores, :func:`eagle_iad.tgps.thresholds.near_margin`): a second look is advised, whichever
    #: side of tau the score fell. ``None`` when the margin is unknown (fewer than two training scores, or
    #: an export written before its sidecar carried the margin: schema 1 and 2).
    near_threshold: bool | None = None
    #: The share of the image's patches beyond what the category's normal patches cover, and whether that
    #: makes it "unrecognised": not like the training images at all (noise, a blocked camera, another
    #: product, or a defect over much of the part; expert/coverage.py). Then the decision is
    #: ``unrecognised`` and no box is drawn. ``None``: a model saved before coverage existed or fitted on
    #: fewer than 10 images, or an export written before its graph gave the patch grid (schema 1 and 2).
    foreign_share: float | None = None
    unrecognised: bool | None = None

    @property
    def is_anomalous(self) -> bool:
        return self.decision == "anomalous"

    @property
    def colour_scale(self) -> tuple[float, float]:
        low, high = self.map["colour_scale"]
        return float(low), float(high)

    @property
    def map_factor(self) -> float:
        """Map units → the image score's scale (:func:`eagle_iad.tgps.calibration.score_factor`)."""
        return score_factor(float(self.map["map_tau"]), self.tau)

    def legend_scale(self) -> tuple[float, float]:
        """The heatmap's colour scale on the image score's scale, the threshold at tau."""
        low, high = self.colour_scale
        return legend_scale(low, high, float(self.map["map_tau"]), self.tau)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        # ``strength``: the number the text and the picture's tag show for the box (Box.strength)
        factor = self.map_factor if "map_tau" in self.map else 1.0
        for key, boxes in (("boxes", self.boxes), ("candidates", self.candidates)):
            data[key] = [dict(box.to_dict(), rank=rank, strength=box.strength(factor))
                         for rank, box in enumerate(boxes, start=1)]  # fmt: skip
        return data


def _map_record(expert: Expert, result: ExpertResult) -> dict[str, Any]:
    values = result.anomaly_map
    calibration = expert.model.calibration or fallback_calibration(expert.thresholds)
    inspected = result.geometry.inspected()
    return {
        "min": float(values.min()),
        "max": float(values.max()),
        "mean": float(values.mean()),
        "p99": float(np.quantile(values, 0.99)),
        "map_tau": calibration.map_tau,
        "colour_scale": [calibration.colour_min, calibration.colour_max],
        "inspected_fraction": 1.0 if inspected is None else float(inspected.mean()),
        "preprocess": expert.model.config.preprocess,
        **result.geometry.describe(),
    }


def _cell_fraction(result: ExpertResult) -> float:
    """One feature cell's share of the image: the smallest region the calibrated rule keeps."""
    input_height, input_width = result.geometry.input_shape
    return min(0.001, (FEATURE_STRIDE / input_height) * (FEATURE_STRIDE / input_width))


def patch_map(result: ExpertResult) -> np.ndarray | None:
    """The raw patch grid drawn cell by cell over the original image: what a box's ``patch_score`` reads.

    Each feature cell keeps its own score (no smoothing), so the largest value under a region is a
    patch score on the image score's scale; the cell holding the image's score carries it exactly.
    The torch path and a schema-3 export (its graph's ``patches`` output) go through here alike, so their
    boxes' patch scores agree; ``None`` for an export before schema 3, whose graph keeps its grid inside.
    """
    grid = np.asarray(result.patch_scores, dtype=np.float32)
    finite = grid[np.isfinite(grid)]
    if grid.ndim != 2 or finite.size == 0:
        return None
    grid = np.where(np.isfinite(grid), grid, finite.min())  # a tile layout's uncovered cells, if any
    height, width = result.geometry.input_shape
    cells = grid.repeat(-(-height // grid.shape[0]), axis=0).repeat(-(-width // grid.shape[1]), axis=1)
    return result.geometry.to_original(np.ascontiguousarray(cells[:height, :width]))


def make_verdict(expert: Expert, name: str, result: ExpertResult) -> ExpertVerdict:
    """Turn a raw expert result into a verdict: boxes only when anomalous, ranked, in original coordinates."""
    thresholds = expert.thresholds
    calibration = expert.model.calibration
    rule = expert.model.config.region_rule if calibration is not None else "paper"
    map_tau = None if calibration is None else calibration.map_tau
    baseline = None if calibration is None else calibration.colour_min
    found = find_boxes(result.anomaly_map, rule, map_tau, baseline, min_area_fraction=_cell_fraction(result),
                       patch_values=patch_map(result))  # fmt: skip
    regions = found.boxes
    coverage = expert.model.coverage
    unrecognised = None if coverage is None else coverage.unrecognised(result.foreign_share)
    if unrecognised:  # not a defect of this product: no decision on it, and no box around everything
        return ExpertVerdict(
            image=name, category=expert.model.category, score=result.score, tau=thresholds.tau,
            s_max=thresholds.s_max, decision=UNRECOGNISED, in_band=False, boxes=[], width=result.geometry.width,
            height=result.geometry.height, candidates=[], region_rule=rule,
            map={**_map_record(expert, result), "region_threshold": found.threshold},
            reference=reference_record(expert, result), near_threshold=False,
            foreign_share=result.foreign_share, unrecognised=True,
        )  # fmt: skip
    return ExpertVerdict(
        image=name,
        category=expert.model.category,
        score=result.score,
        tau=thresholds.tau,
        s_max=thresholds.s_max,
        decision="anomalous" if result.is_anomalous else "normal",
        in_band=result.in_band,
        boxes=regions if result.is_anomalous else [],
        width=result.geometry.width,
        height=result.geometry.height,
        candidates=[] if result.is_anomalous else regions,
        region_rule=rule,
        map={**_map_record(expert, result), "region_threshold": found.threshold},
        reference=reference_record(expert, result),
        near_threshold=is_near(result.score, thresholds.tau, expert.near_margin()),
        foreign_share=result.foreign_share,
        unrecognised=unrecognised,
    )


def reference_record(expert: Expert, result: ExpertResult) -> dict[str, Any] | None:
    """Which training image is the nearest normal reference, and whether its picture is available."""
    index = result.reference_image
    if index < 0:
        return None
    model = expert.model
    unavailable = None
    try:
        expert.reference_picture(index)
    except ReferenceUnavailableError as exc:
        unavailable = str(exc)
    return {"index": index, "image": model.train_images[index], "bank_row": result.reference_row,
            "unavailable": unavailable}  # fmt: skip


def region_threshold(verdict: ExpertVerdict) -> float | None:
    """The absolute map value the boxes were cut at (``None`` for the paper's relative rule)."""
    value = verdict.map.get("region_threshold")
    return None if value is None else float(value)


def boxes_cut_below(verdict: ExpertVerdict | Mapping[str, Any]) -> float | None:
    """Where an anomalous verdict's boxes were cut, on the score's scale, when below the threshold; else ``None``.

    The calibrated rule boxes the pixels at or above ``map_tau``; when no region of the map reaches it (weak
    evidence behind an anomalous score, common on small models) :func:`eagle_iad.tgps.regions.find_boxes` cuts
    lower, so the boxes sit on a region colder than the threshold mark. Every surface a person reads (the
    heatmap's legend, ``eagle inspect``'s text, the console's mirror of this in ``web/src/logic/legend.ts``)
    says so from this one value: the region threshold times ``tau / map_tau``, the legend's scale (in map
    units where that factor is degenerate, as the legend then is). ``verdict`` is an :class:`ExpertVerdict`
    or its JSON record (:meth:`ExpertVerdict.to_dict`, what the CLI prints from).
    """
    fields: Mapping[str, Any] = verdict if not isinstance(verdict, ExpertVerdict) else {
        "decision": verdict.decision, "boxes": verdict.boxes, "tau": verdict.tau, "map": verdict.map}  # fmt: skip
    record, tau = fields.get("map"), fields.get("tau")
    if fields.get("decision") != "anomalous" or not fields.get("boxes"):  # a normal verdict draws no boxes
        return None
    if not isinstance(record, Mapping) or tau is None:  # an EAGLE verdict's record: no map of its own
        return None
    cut, map_tau = record.get("region_threshold"), record.get("map_tau")
    if cut is None or map_tau is None or not float(cut) < float(map_tau):
        return None
    return float(cut) * score_factor(float(map_tau), float(tau))


def heatmap_picture(verdict: ExpertVerdict, rgb: np.ndarray, result: ExpertResult) -> np.ndarray:
    """The heatmap on the category's fixed colour scale, uninspected pixels hatched, with its legend.

    Beside the threshold the legend marks where the boxes were cut when that is below it
    (:func:`boxes_cut_below`): a box on a blue region is otherwise a puzzle beside a threshold mark above it.
    """
    overlay = heatmap_overlay(
        rgb, result.anomaly_map, scale=verdict.colour_scale, inspected=result.geometry.inspected()
    )
    # the threshold sits where map_tau does; a degenerate map_tau (no factor) is marked as itself
    map_tau = float(verdict.map["map_tau"])
    marks = {"threshold": verdict.tau} if verdict.map_factor != 1.0 or map_tau == verdict.tau else {"map tau": map_tau}
    cut = boxes_cut_below(verdict)
    if cut is not None:
        marks[BOXES_MARK] = cut
    return with_legend(overlay, verdict.legend_scale(), marks, f"anomaly map ({verdict.category}, on the score scale)")


def evidence_picture(
    verdict: ExpertVerdict,
    rgb: np.ndarray,
    result: ExpertResult,
    style: RenderStyle = "box",
    show_candidates: bool = False,
) -> np.ndarray:
    """The picture a person reads: the visual prompt (anomalous) with ranked, scored boxes.

    A normal verdict shows the plain image, or with ``show_candidates`` its candidate regions as
    dashed yellow frames. Uninspected pixels (a user-chosen crop) are hatched.
    """
    if verdict.is_anomalous:
        threshold = region_threshold(verdict)
        out = render(rgb, result.anomaly_map, verdict.boxes, style, threshold=threshold)
        if style == "box":
            out = label_boxes(out, verdict.boxes, verdict.map_factor)
    else:
        out = draw_candidates(rgb, verdict.candidates) if show_candidates else rgb.copy()
    inspected = result.geometry.inspected()
    if inspected is not None:
        hatch_uninspected(out, rgb, inspected)
    return out


def write_pictures(
    verdict: ExpertVerdict,
    rgb: np.ndarray,
    result: ExpertResult,
    out_dir: Path,
    style: RenderStyle = "box",
    show_candidates: bool = False,
    stem: str | None = None,
    expert: Expert | None = None,
) -> None:
    """Write ``<stem>_heatmap.png``, ``<stem>_<style>.png`` and, when the model keeps reference pictures,
    ``<stem>_reference.jpg`` (the nearest normal training image), and record their paths in the verdict.

    ``stem`` defaults to the image's own; callers writing several images to one folder pass the
    unique stems of :func:`eagle_iad.naming.picture_stems`.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = Path(verdict.image).stem if stem is None else stem
    heatmap_path = out_dir / f"{stem}_heatmap.png"
    save_png(heatmap_path, heatmap_picture(verdict, rgb, result))
    prompt_path = out_dir / f"{stem}_{style}.png"
    save_png(prompt_path, evidence_picture(verdict, rgb, result, style, show_candidates))
    verdict.pictures = {"heatmap": str(heatmap_path), style: str(prompt_path)}
    reference = verdict.reference
    if expert is not None and reference is not None and reference["unavailable"] is None:
        reference_path = out_dir / f"{stem}_reference{REFERENCE_SUFFIX}"
        atomic_write_bytes(reference_path, expert.reference_picture(int(reference["index"])))
        verdict.pictures["reference"] = str(reference_path)


def inspect_images(
    expert: Expert,
    sources: list[ImageSource],
    out_dir: Path | None = None,
    style: RenderStyle = "box",
    show_progress: bool = False,
    show_candidates: bool = False,
) -> list[ExpertVerdict]:
    """Score images and, with ``out_dir``, write their pictures (one unique name per input)."""
    rgbs = [load_rgb(source) for source in sources]
    results = expert.inspect_many(rgbs, show_progress=show_progress)
    verdicts = []
    names = ["upload.png" if isinstance(source, bytes) else str(source) for source in sources]
    for name, stem, rgb, result in zip(names, picture_stems(names), rgbs, results, strict=True):
        verdict = make_verdict(expert, name, result)
        if out_dir is not None:
            write_pictures(verdict, rgb, result, out_dir, style, show_candidates, stem, expert)
        verdicts.append(verdict)
    return verdicts
