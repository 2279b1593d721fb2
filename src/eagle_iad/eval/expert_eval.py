"""Evaluate a fitted expert on a labelled test split: ranking quality and quality at tau.

Image AUROC says how well scores rank; pixel AUROC and AUPRO (FPR <= 0.3, normalised) say how well
the map localises, where masks exist; the metrics at tau say what a user gets from the
label-free threshold TGPS relies on. The histogram (the paper's Fig. 4) shows why. The box
measures (:mod:`eagle_iad.eval.box_metrics`) say whether the pictures point at the defect, using
exactly the boxes the product draws (:func:`eagle_iad.verdict.make_verdict`); the boxes grid shows it.
``per_type`` (:mod:`eagle_iad.eval.per_type`) repeats the image and box measures for each defect
type against all normals, so a kind of defect that still passes is not averaged away.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from eagle_iad.atomic import atomic_write_text
from eagle_iad.data import Sample
from eagle_iad.eval.box_metrics import BoxMetrics, ImageBoxResult, evaluate_image_boxes, summarise_boxes
from eagle_iad.eval.metrics import aupro, auroc, pixel_auroc, threshold_metrics
from eagle_iad.eval.per_type import expert_per_type
from eagle_iad.eval.plots import BoxPanel, boxes_grid, score_histogram
from eagle_iad.expert.patchcore import Expert
from eagle_iad.file_hash import file_sha256
from eagle_iad.images import load_mask, load_rgb
from eagle_iad.naming import plural
from eagle_iad.verdict import make_verdict

#: Most anomalous test images drawn in ``boxes_grid.png``.
GRID_IMAGES = 12


@dataclass
class ExpertEvaluation:
    """Metrics and per-image scores of one expert on one test split."""

    #: The model's category (its ``model.json``).
    category: str
    n_normal: int
    n_anomalous: int
    image_auroc: float | None
    pixel_auroc: float | None
    aupro: float | None
    at_tau: dict[str, Any]
    tau: float
    s_max: float
    boxes: dict[str, Any] = field(default_factory=dict)
    per_image: list[dict[str, Any]] = field(default_factory=list)
    #: Per-image box measures of the anomalous images with a non-empty mask, and the number of
    #: boxes drawn on each normal image: kept so several categories can be pooled (:func:`pool_boxes`).
    box_results: list[ImageBoxResult] = field(default_factory=list, repr=False)
    normal_box_counts: list[int] = field(default_factory=list, repr=False)
    #: Defect images without a ground-truth mask: left out of the pixel metrics (reported, not silent).
    defects_without_mask: int = 0
    #: The first mask file the layout looked for and did not find (a misnamed mask, say), and where and
    #: under which names the layout reads masks (:func:`eagle_iad.data.mask_names`); None when unknown.
    first_missing_mask: str | None = None
    mask_names: str | None = None
    #: Defect images the product drew at least one box on, with a mask or not.
    defects_with_boxes: int = 0
    #: Flagged defect and normal images (at or above tau) that the product calls *unrecognised* (not like the
    #: training images, expert/coverage.py): they do not pass, but get no boxes, so the report tells them apart
    #: from those flagged by score. None when the model keeps no coverage (fewer than 10 training images, or
    #: saved before the check): nothing could be unrecognised.
    unrecognised_defects: int | None = None
    unrecognised_normals: int | None = None
    #: Images below tau that are unrecognised all the same: counted as passed by the metrics at tau, which read
    #: the score alone, though the product would not pass them (None as above).
    unrecognised_below_tau: int | None = None
    #: Image and box measures per defect type, each type against all normals (:func:`expert_per_type`).
    per_type: dict[str, Any] = field(default_factory=dict)
    #: The test images' category when it differs from the model's (``eagle eval-expert
    #: --allow-category-mismatch``); None when they agree.
    data_category: str | None = None

    @property
    def heading(self) -> str:
        """The category the report and figures are headed with: both names when model and data differ."""
        if self.data_category is None:
            return self.category
        return f"{self.data_category} (evaluated with a model of {self.category})"

    def summary(self) -> dict[str, Any]:
        hidden = {"per_image", "box_results", "normal_box_counts"}
        return {k: v for k, v in self.__dict__.items() if k not in hidden}


def pool_boxes(evaluations: list[ExpertEvaluation]) -> BoxMetrics:
    """Box measures over several evaluations' images together (e.g. all categories of a run)."""
    return summarise_boxes(
        [r for e in evaluations for r in e.box_results], [c for e in evaluations for c in e.normal_box_counts]
    )


def evaluate_expert(
    expert: Expert,
    samples: list[Sample],
    out_dir: Path | None = None,
    show_progress: bool = False,
    batch: int = 32,
    mask_names: str | None = None,
) -> ExpertEvaluation:
    """Score every test sample; pixel metrics use the samples that have masks (normals count as empty masks).

    ``mask_names`` (where and under which names the samples' layout reads masks) is quoted in the report
    when defect images have no mask.
    """
    labels = np.asarray([s.label for s in samples], dtype=np.int64)
    scores: list[float] = []
    masks: list[np.ndarray] = []
    maps: list[np.ndarray] = []
    has_masks = any(s.mask_path is not None for s in samples)
    per_image: list[dict[str, Any]] = []
    box_results: list[ImageBoxResult] = []
    normal_box_counts: list[int] = []
    bar = tqdm(total=len(samples), desc="evaluate", disable=not show_progress, file=sys.stderr, leave=False)
    for start in range(0, len(samples), batch):
        chunk = samples[start : start + batch]
        results = expert.inspect_many([s.path for s in chunk])
        bar.update(len(chunk))
        for sample, result in zip(chunk, results, strict=True):
            scores.append(result.score)
            # Exactly what the product draws, so the measures judge the pictures users see.
            verdict = make_verdict(expert, str(sample.path), result)
            row: dict[str, Any] = {
                "image": str(sample.path),
                # the file's identity: the threshold preview counts it once when it is in the history too
                "sha256": file_sha256(sample.path),
                "label": sample.label,
                "defect_type": sample.defect_type,
                "score": result.score,
                "decision": "anomalous" if result.is_anomalous else "normal",
                "in_band": result.in_band,
                # as the inspection verdict says it: not like the training images (no boxes), None without coverage
                "unrecognised": verdict.unrecognised,
                "foreign_share": verdict.foreign_share,
                "mask": None if sample.mask_path is None else str(sample.mask_path),
                "boxes": [box.to_dict() for box in verdict.boxes],
            }
            shape = (int(result.anomaly_map.shape[0]), int(result.anomaly_map.shape[1]))
            mask = None if sample.mask_path is None else load_mask(sample.mask_path, shape)
            if sample.label == 0:
                normal_box_counts.append(len(verdict.boxes))
            elif mask is not None and mask.any():
                box_result = evaluate_image_boxes(result.anomaly_map, mask, verdict.boxes)
                box_results.append(box_result)
                row["box_metrics"] = box_result.to_dict()
            per_image.append(row)
            if has_masks and (sample.label == 0 or mask is not None):
                masks.append(np.zeros(shape, dtype=bool) if mask is None else mask)
                maps.append(result.anomaly_map)
    bar.close()
    score_arr = np.asarray(scores)
    both_classes = bool(labels.min() != labels.max()) if labels.size else False
    thresholds = expert.thresholds
    have_regions = bool(masks) and any(m.any() for m in masks) and any((~m).any() for m in masks)
    evaluation = ExpertEvaluation(
        category=expert.model.category,
        n_normal=int((labels == 0).sum()),
        n_anomalous=int((labels == 1).sum()),
        image_auroc=auroc(labels, score_arr) if both_classes else None,
        pixel_auroc=pixel_auroc(masks, maps) if have_regions else None,
        aupro=aupro(masks, maps, fpr_limit=0.3) if have_regions else None,
        at_tau=threshold_metrics(labels, score_arr, thresholds.tau).as_dict(),
        tau=thresholds.tau,
        s_max=thresholds.s_max,
        boxes=summarise_boxes(box_results, normal_box_counts).to_dict(),
        per_image=per_image,
        box_results=box_results,
        normal_box_counts=normal_box_counts,
        defects_without_mask=sum(s.label == 1 and s.mask_path is None for s in samples),
        first_missing_mask=next((str(s.mask_sought) for s in samples if s.label == 1 and s.mask_sought), None),
        mask_names=mask_names,
        defects_with_boxes=sum(r["label"] == 1 and bool(r["boxes"]) for r in per_image),
        **_unrecognised_counts(per_image, has_coverage=expert.model.coverage is not None),
        per_type=expert_per_type(per_image, thresholds.tau),
        data_category=_data_category(samples, expert.model.category),
    )
    if out_dir is not None:
        write_evaluation(expert, evaluation, out_dir)
    return evaluation


def _unrecognised_counts(per_image: list[dict[str, Any]], has_coverage: bool) -> dict[str, int | None]:
    """How many flagged defect and normal images are unrecognised, and how many below tau are too."""
    if not has_coverage:
        return {"unrecognised_defects": None, "unrecognised_normals": None, "unrecognised_below_tau": None}
    flagged = [r for r in per_image if r["unrecognised"] and r["decision"] == "anomalous"]
    return {
        "unrecognised_defects": sum(r["label"] == 1 for r in flagged),
        "unrecognised_normals": sum(r["label"] == 0 for r in flagged),
        "unrecognised_below_tau": sum(bool(r["unrecognised"]) and r["decision"] != "anomalous" for r in per_image),
    }


def _data_category(samples: list[Sample], model_category: str) -> str | None:
    """The samples' category when they all share one that is not the model's; None otherwise."""
    categories = {s.category for s in samples}
    if len(categories) == 1 and (only := categories.pop()) != model_category:
        return only
    return None


def write_evaluation(expert: Expert, evaluation: ExpertEvaluation, out_dir: Path) -> None:
    """``metrics.json``, ``scores.jsonl``, ``histogram.png``, ``boxes_grid.png`` and ``report.md`` under ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / "metrics.json", json.dumps(evaluation.summary(), indent=2) + "\n")
    atomic_write_text(out_dir / "scores.jsonl", "".join(json.dumps(row) + "\n" for row in evaluation.per_image))
    normal = [r["score"] for r in evaluation.per_image if r["label"] == 0]
    anomalous = [r["score"] for r in evaluation.per_image if r["label"] == 1]
    score_histogram(
        out_dir / "histogram.png",
        expert.model.train_scores,
        normal,
        anomalous,
        evaluation.tau,
        evaluation.s_max,
        f"{evaluation.heading}: leave-own-out training vs test scores",
    )
    boxes_grid(
        out_dir / "boxes_grid.png",
        [_panel(row) for row in grid_rows(evaluation.per_image)],
        f"{evaluation.heading}: {grid_caption(evaluation.per_image, short=True)}",
    )
    atomic_write_text(out_dir / "report.md", evaluation_report(evaluation))


def grid_caption(per_image: list[dict[str, Any]], short: bool = False) -> str:
    """What ``boxes_grid.png`` shows: the true defect (green) only where its images have masks.

    Why: on a category without masks (elpv) the title promised a green ground truth the grid does not have.
    ``short`` is the picture's title (and ``eagle eval``'s picture list); the long form is ``report.md``'s.
    """
    masked = [row["mask"] is not None for row in grid_rows(per_image)]
    if short:
        drawn = "drawn boxes (red, by rank)"
        truth = " and true defect (green)" if all(masked) else " and true defect (green) where masked"
    else:
        drawn = "Drawn boxes (red, numbered by rank)"
        truth = " and the true defect (green outline)" if all(masked) else (
            " and the true defect (green outline) on the images with a mask"
        )  # fmt: skip
    if not any(masked):
        truth = " (no ground-truth masks: no true defect drawn)"
    return f"{drawn}{truth}, grouped by defect type"


def grid_rows(per_image: list[dict[str, Any]], limit: int = GRID_IMAGES) -> list[dict[str, Any]]:
    """Up to ``limit`` anomalous images for the grid: those with masks first, defect types in turn.

    Taking the types in turn (sorted, then by path within a type) shows every kind of defect when
    there are fewer than ``limit`` kinds, and the choice is the same on every run. The chosen images
    are then grouped by type (masked ones first), so the grid reads type by type, like the
    per-type table of ``report.md``.
    """
    anomalous = sorted((r for r in per_image if r["label"] == 1), key=lambda r: (r["mask"] is None, r["image"]))
    queues: dict[tuple[bool, str], list[dict[str, Any]]] = {}
    for row in anomalous:
        queues.setdefault((row["mask"] is None, str(row["defect_type"])), []).append(row)
    picked: list[dict[str, Any]] = []
    for without_mask in (False, True):
        groups = [queue for (no_mask, _), queue in sorted(queues.items()) if no_mask == without_mask]
        while len(picked) < limit and any(groups):
            for queue in groups:
                if queue and len(picked) < limit:
                    picked.append(queue.pop(0))
    return sorted(picked, key=lambda r: (r["mask"] is None, str(r["defect_type"]), r["image"]))


def _panel(row: dict[str, Any]) -> BoxPanel:
    rgb = load_rgb(row["image"])
    shape = (int(rgb.shape[0]), int(rgb.shape[1]))
    mask = None if row["mask"] is None else load_mask(row["mask"], shape)
    corners = [(int(b["x0"]), int(b["y0"]), int(b["x1"]), int(b["y1"])) for b in row["boxes"]]
    name = "/".join(Path(row["image"]).parts[-2:])
    kind = str(row["defect_type"])
    # Label every panel with its type; MVTec-style paths already start with it, so it is not repeated.
    label = name if name.startswith(f"{kind}/") else f"{kind}: {name}"
    return BoxPanel(rgb, mask, corners, f"{label}\nscore {row['score']:.4g}, {row['decision']}")


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def evaluation_report(evaluation: ExpertEvaluation) -> str:
    """``report.md``: every metric of the run in one table, and the pictures."""
    t = evaluation.at_tau
    b = evaluation.boxes
    n_normal, n_anom = evaluation.n_normal, evaluation.n_anomalous
    rows = [
        ("image AUROC", _fmt(evaluation.image_auroc)),
        ("pixel AUROC", _fmt(evaluation.pixel_auroc)),
        ("AUPRO (FPR <= 0.3)", _fmt(evaluation.aupro)),
        ("tau / s_max", f"{evaluation.tau:.4g} / {evaluation.s_max:.4g}"),
        ("recall at tau", f"{_fmt(t['recall'])} ({t['tp']} of {t['tp'] + t['fn']} anomalous)"),
        ("false alarms at tau", f"{t['fp']} of {t['fp'] + t['tn']} normal"),
        ("flagged as unrecognised (not like the training images; no boxes)", _unrecognised(evaluation)),
        ("balanced accuracy at tau", _fmt(t["balanced_accuracy"])),
        ("precision at tau", _fmt(t["precision"])),
        ("pointing accuracy (map peak on the defect)", f"{_fmt(b.get('pointing_accuracy'))} "
         f"({plural(b.get('n_anomalous_with_mask', 0), 'anomalous image')} with a mask)"),
        ("mean best-box IoU", _fmt(b.get("mean_best_iou"))),
        ("median box / defect area", _area_ratio(evaluation)),
        ("share of anomalous images whose boxes touch the defect", _fmt(b.get("touch_rate"))),
        ("boxes drawn on normal images", f"{b.get('normal_boxes', 0)} on {b.get('normal_images_with_boxes', 0)} "
         f"of {b.get('n_normal', 0)} images"),
    ]  # fmt: skip
    lines = [
        f"# Expert evaluation: {evaluation.heading}",
        "",
        f"{n_normal} normal and {n_anom} anomalous test images. Box measures use the boxes the product draws, "
        "on anomalous images with a ground-truth mask (n/a where there is none).",
        "",
        *missing_masks_report(evaluation),
        "| metric | value |",
        "|---|---|",
        *(f"| {name} | {value} |" for name, value in rows),
        "",
        *per_type_report(evaluation.per_type),
        "## Pictures",
        "",
        "Score histogram with tau and s_max: [histogram.png](histogram.png)",
        "",
        "![score histogram](histogram.png)",
        "",
        f"{grid_caption(evaluation.per_image)}: [boxes_grid.png](boxes_grid.png)",
        "",
        f"![{'boxes and ground truth' if evaluation.defects_without_mask < evaluation.n_anomalous else 'boxes'}]"
        "(boxes_grid.png)",
        "",
    ]
    return "\n".join(lines)


def _unrecognised(evaluation: ExpertEvaluation) -> str:
    """How many flagged images were flagged as unrecognised rather than by score, defects and normals apart."""
    if evaluation.unrecognised_defects is None or evaluation.unrecognised_normals is None:
        return "n/a (the model keeps no coverage: fitted on fewer than 10 images, or before the check)"
    t = evaluation.at_tau
    text = (f"{evaluation.unrecognised_defects} of {t['tp']} flagged anomalous, "
            f"{evaluation.unrecognised_normals} of {t['fp']} flagged normal")  # fmt: skip
    if evaluation.unrecognised_below_tau:
        text += (f"; {plural(evaluation.unrecognised_below_tau, 'image')} below tau unrecognised too "
                 "(counted as passed here; the product does not pass them)")  # fmt: skip
    return text


def _boxes_drawn(evaluation: ExpertEvaluation) -> str:
    """How many anomalous images have boxes, and why the others have none (the product boxes only some)."""
    t = evaluation.at_tau
    unrecognised = evaluation.unrecognised_defects or 0
    by_score = t["tp"] - unrecognised
    has = "has" if evaluation.defects_with_boxes == 1 else "have"
    text = (f"{evaluation.defects_with_boxes} of {evaluation.n_anomalous} anomalous images {has} boxes: "
            f"the product boxes only the {by_score} flagged by score")  # fmt: skip
    if by_score > evaluation.defects_with_boxes:
        text += f" ({by_score - evaluation.defects_with_boxes} of them without a region)"
    left = [f"the {unrecognised} flagged as unrecognised"] if unrecognised else []
    left += [f"the {t['fn']} below tau"] if t["fn"] else []
    return text + (f", not {' nor '.join(left)}" if left else "")


def _area_ratio(evaluation: ExpertEvaluation) -> str:
    """The median box / defect area and what it rests on: masked images with boxes, out of all with boxes."""
    b = evaluation.boxes
    drawn = _boxes_drawn(evaluation)
    if b.get("median_area_ratio") is None:
        why = "no anomalous image has a mask" if not b.get("n_anomalous_with_mask") else "no masked image has boxes"
        return f"n/a: {why} ({drawn})"
    masked = b.get("n_anomalous_with_boxes", 0)
    return f"{_fmt(b['median_area_ratio'], 2)} (over {plural(masked, 'masked image')} with boxes; {drawn})"


def missing_mask_note(evaluation: ExpertEvaluation) -> str | None:
    """One sentence on the defect images without a mask: how many, the first file looked for, the names read."""
    return summary_mask_note(evaluation.summary())


def summary_mask_note(summary: dict[str, Any]) -> str | None:
    """:func:`missing_mask_note` from an evaluation's summary (``metrics.json``'s per-class entry)."""
    missing = summary.get("defects_without_mask") or 0
    if not missing:
        return None
    text = f"{missing} of {summary['n_anomalous']} defect images {'has' if missing == 1 else 'have'} no mask"
    if summary.get("first_missing_mask") is not None:
        text += f" (first looked for: {summary['first_missing_mask']}"
        if summary.get("mask_names") is not None:
            text += f"; masks are read as {summary['mask_names']}"
        text += ")"
    elif summary.get("mask_names") is not None:
        text += f" (masks are read as {summary['mask_names']})"
    return text + "; pixel AUROC, AUPRO and the box measures leave them out"


def missing_masks_report(evaluation: ExpertEvaluation) -> list[str]:
    """``report.md``'s note on defect images without a mask (nothing when every one has a mask)."""
    note = missing_mask_note(evaluation)
    return [] if note is None else [f"**Masks:** {note}.", ""]


def _all(count: int, noun: str) -> str:
    """ "all 5 normal test images", but "the 1 normal test image" (and "the 0 ...")."""
    return f"{'all' if count > 1 else 'the'} {plural(count, noun)}"


def per_type_report(per_type: dict[str, Any]) -> list[str]:
    """``report.md``'s per-type section (empty without defect types, e.g. a normal-only split).

    The normals' count and false alarms are stated once above the table: every type is scored
    against the same normals, so repeating them in each row would suggest they differ.
    """
    types: dict[str, Any] = per_type.get("types") or {}
    if not types:
        return []
    lines = [
        "## Per defect type",
        "",
        f"Each type against {_all(per_type['n_normal'], 'normal test image')} "
        f"({plural(per_type['false_alarms'], 'false alarm')} at tau, shared by every type). Recall is the share of "
        "that type's images at or above tau; the box measures use that type's images with a mask.",
        "",
        "| defect type | images | image AUROC | recall at tau | caught / missed | with mask | pointing accuracy "
        "| mean best-box IoU | median box / defect area |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, v in types.items():
        lines.append(
            f"| {name} | {v['n_images']} | {_fmt(v['image_auroc'])} | {_fmt(v['recall_at_tau'])} | "
            f"{v['caught']} / {v['missed']} | {v['n_with_mask']} | {_fmt(v['pointing_accuracy'])} | "
            f"{_fmt(v['mean_best_iou'])} | {_fmt(v['median_area_ratio'], 2)} |"
        )
    return [*lines, ""]
