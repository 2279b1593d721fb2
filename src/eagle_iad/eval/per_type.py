"""Metrics per defect type: which kinds of defect still pass (issue 29).

One pooled recall hides that a model catches every hole and misses most cuts. Per type, each
defect type (the folder name under ``test/``, :attr:`eagle_iad.data.Sample.defect_type`) is scored
against **all** normal test images, as if the test split held only that kind of defect:

* image AUROC of the normals against that type's images (``None`` without normals);
* recall at tau: the share of that type's images scored at or above tau (the expert's rule);
* the box measures (:mod:`eagle_iad.eval.box_metrics`) over that type's images with a mask.

False alarms come from the normals alone, so they are the same for every type: they are stated
once (``n_normal``, ``false_alarms``) next to the table rather than repeated in each row.

The field is versioned (``version``) and additive: readers of older ``metrics.json`` files find no
``per_type`` key and go on as before; a later change of meaning bumps the version. The MLLM
conditions' per-type accuracy (``eagle eval``) is
:func:`eagle_iad.eval.mllm_metrics.per_type_discrimination`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from eagle_iad.eval.box_metrics import ImageBoxResult, summarise_boxes
from eagle_iad.eval.metrics import auroc, threshold_metrics

__all__ = ["PER_TYPE_VERSION", "expert_per_type"]

#: Version of the ``per_type`` field's layout; bump it when a key changes meaning.
PER_TYPE_VERSION = 1


def expert_per_type(rows: Sequence[dict[str, Any]], tau: float) -> dict[str, Any]:
    """The expert's ``per_type`` field from its per-image rows (``scores.jsonl``'s rows).

    Each row needs ``label``, ``defect_type`` and ``score``; an anomalous row with ``box_metrics``
    (an :class:`ImageBoxResult` as a dict) counts in its type's box measures. Working from the rows
    alone means the table can be rebuilt from ``scores.jsonl`` without the model. Types are sorted
    by name so the table's order is the same on every run.
    """
    normal_scores = [float(r["score"]) for r in rows if r["label"] == 0]
    false_alarms = sum(1 for s in normal_scores if s >= tau)
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        if row["label"] == 1:
            groups.setdefault(str(row["defect_type"]), []).append(row)
    types: dict[str, Any] = {}
    for name, group in sorted(groups.items()):
        scores = np.asarray(normal_scores + [float(r["score"]) for r in group], dtype=np.float64)
        labels = np.r_[np.zeros(len(normal_scores), dtype=np.int64), np.ones(len(group), dtype=np.int64)]
        at_tau = threshold_metrics(labels, scores, tau)
        boxes = summarise_boxes([ImageBoxResult(**r["box_metrics"]) for r in group if "box_metrics" in r], [])
        types[name] = {
            "n_images": len(group),
            "image_auroc": auroc(labels, scores) if normal_scores else None,
            "recall_at_tau": at_tau.recall,
            "caught": at_tau.tp,
            "missed": at_tau.fn,
            "n_with_mask": boxes.n_anomalous_with_mask,
            "pointing_accuracy": boxes.pointing_accuracy,
            "mean_best_iou": boxes.mean_best_iou,
            "n_with_boxes": boxes.n_anomalous_with_boxes,
            "median_area_ratio": boxes.median_area_ratio,
            "touch_rate": boxes.touch_rate,
        }
    return {
        "version": PER_TYPE_VERSION,
        "tau": float(tau),
        "n_normal": len(normal_scores),
        "false_alarms": false_alarms,
        "types": types,
    }
