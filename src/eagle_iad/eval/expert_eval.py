"""Evaluate a fitted expert on a labelled test split: ranking quality and quality at tau.

Image AUROC says how well scores rank; pixel AUROC and AUPRO (FPR <= 0.3, normalised) say how well
the map localises, where masks exist; the metrics at tau say what a user gets from the
label-free threshold TGPS relies on. The histogram (the paper's Fig. 4) shows why.
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
from eagle_iad.eval.metrics import aupro, auroc, pixel_auroc, threshold_metrics
from eagle_iad.eval.plots import score_histogram
from eagle_iad.expert.patchcore import Expert
from eagle_iad.images import load_mask


@dataclass
class ExpertEvaluation:
    """Metrics and per-image scores of one expert on one test split."""

    category: str
    n_normal: int
    n_anomalous: int
    image_auroc: float | None
    pixel_auroc: float | None
    aupro: float | None
    at_tau: dict[str, Any]
    tau: float
    s_max: float
    per_image: list[dict[str, Any]] = field(default_factory=list)
    #: Defect images without a ground-truth mask: left out of the pixel metrics (reported, not silent).
    defects_without_mask: int = 0

    def summary(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "per_image"}


def evaluate_expert(
    expert: Expert,
    samples: list[Sample],
    out_dir: Path | None = None,
    show_progress: bool = False,
    batch: int = 32,
) -> ExpertEvaluation:
    """Score every test sample; pixel metrics use the samples that have masks (normals count as empty masks)."""
    labels = np.asarray([s.label for s in samples], dtype=np.int64)
    scores: list[float] = []
    masks: list[np.ndarray] = []
    maps: list[np.ndarray] = []
    has_masks = any(s.mask_path is not None for s in samples)
    per_image: list[dict[str, Any]] = []
    bar = tqdm(total=len(samples), desc="evaluate", disable=not show_progress, file=sys.stderr, leave=False)
    for start in range(0, len(samples), batch):
        chunk = samples[start : start + batch]
        results = expert.inspect_many([s.path for s in chunk])
        bar.update(len(chunk))
        for sample, result in zip(chunk, results, strict=True):
            scores.append(result.score)
            per_image.append(
                {
                    "image": str(sample.path),
                    "label": sample.label,
                    "defect_type": sample.defect_type,
                    "score": result.score,
                    "decision": "anomalous" if result.is_anomalous else "normal",
                    "in_band": result.in_band,
                }
            )
            if has_masks and (sample.label == 0 or sample.mask_path is not None):
                shape = result.anomaly_map.shape
                if sample.mask_path is None:
                    masks.append(np.zeros(shape, dtype=bool))
                else:
                    masks.append(load_mask(sample.mask_path, (int(shape[0]), int(shape[1]))))
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
        per_image=per_image,
        defects_without_mask=sum(s.label == 1 and s.mask_path is None for s in samples),
    )
    if out_dir is not None:
        write_evaluation(expert, evaluation, out_dir)
    return evaluation


def write_evaluation(expert: Expert, evaluation: ExpertEvaluation, out_dir: Path) -> None:
    """``metrics.json``, ``scores.jsonl`` and ``histogram.png`` under ``out_dir``."""
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
        f"{evaluation.category}: leave-own-out training vs test scores",
    )
