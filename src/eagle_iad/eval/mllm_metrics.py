"""MMAD metrics from stored records: anomaly discrimination, per-task accuracy, CAAS trigger and flips.

All functions take the plain records of ``results.jsonl`` so a report can be rebuilt from the file
alone. Metrics never include timings: a resumed run and an uninterrupted one must give identical
``metrics.json``.

Anomaly discrimination (docs/METHOD.md §5): positive = anomalous = option ``A`` of the anomaly question.
An unparsable reply is counted (``unparsable``) and is wrong for its image, never read as "No".
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from eagle_iad.eval.per_type import PER_TYPE_VERSION
from eagle_iad.eval.protocol import ANOMALY_TYPE
from eagle_iad.tgps.answers import UNPARSABLE

Record = dict[str, Any]


def _ratio(num: int, den: int) -> float | None:
    return num / den if den else None


def discrimination(records: Iterable[Record]) -> dict[str, Any]:
    """Accuracy ((acc on normal + acc on anomalous) / 2), precision, recall, F1 on the anomaly question.

    With a single class present the accuracy is that class's accuracy; rates with an empty
    denominator are ``None`` (not computable) rather than a misleading 0.
    """
    rows = [r for r in records if r["qtype"] == ANOMALY_TYPE]
    tp = sum(1 for r in rows if r["label"] == 1 and r["answer"] == "A")
    fn = sum(1 for r in rows if r["label"] == 1 and r["answer"] != "A")
    tn = sum(1 for r in rows if r["label"] == 0 and r["answer"] == "B")
    fp = sum(1 for r in rows if r["label"] == 0 and r["answer"] == "A")
    n_normal = sum(1 for r in rows if r["label"] == 0)
    n_anomalous = tp + fn
    acc_normal = _ratio(tn, n_normal)
    acc_anomalous = _ratio(tp, n_anomalous)
    parts = [a for a in (acc_normal, acc_anomalous) if a is not None]
    precision = _ratio(tp, tp + fp)
    recall = acc_anomalous
    f1 = None
    if precision is not None and recall is not None:
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "n": len(rows),
        "n_normal": n_normal,
        "n_anomalous": n_anomalous,
        "accuracy": sum(parts) / len(parts) if parts else None,
        "accuracy_normal": acc_normal,
        "accuracy_anomalous": acc_anomalous,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "tp": tp,
        "fp": fp,
        "tn": tn,
        "fn": fn,
        "unparsable": sum(1 for r in rows if r["answer"] == UNPARSABLE),
    }


def per_type_discrimination(records: Iterable[Record]) -> dict[str, Any]:
    """Per defect type, the anomaly discrimination of one condition on one class (issue 29).

    Each type's entry is :func:`discrimination` over all normal records plus that type's records,
    so ``accuracy`` is the MMAD accuracy a test split holding only that type would give and
    ``accuracy_anomalous`` is the share of that type answered "defect". The normals' false alarms
    are the same for every type and stated once. Types only mean something within one class (one
    product's "cut" is not another's), so this is computed per class, never over classes pooled.
    """
    rows = [r for r in records if r["qtype"] == ANOMALY_TYPE]
    normals = [r for r in rows if r["label"] == 0]
    groups: dict[str, list[Record]] = {}
    for row in rows:
        if row["label"] == 1:
            groups.setdefault(str(row.get("defect_type")), []).append(row)
    return {
        "version": PER_TYPE_VERSION,
        "n_normal": len(normals),
        "false_alarms": sum(1 for r in normals if r["answer"] == "A"),
        "types": {name: discrimination(normals + group) for name, group in sorted(groups.items())},
    }


def task_accuracy(records: Iterable[Record]) -> dict[str, dict[str, Any]]:
    """Plain accuracy per MMAD task type (the anomaly question included), with unparsable counts."""
    out: dict[str, dict[str, Any]] = {}
    for r in records:
        entry = out.setdefault(r["qtype"], {"n": 0, "correct": 0, "unparsable": 0})
        entry["n"] += 1
        entry["correct"] += int(bool(r["correct"]))
        entry["unparsable"] += int(r["answer"] == UNPARSABLE)
    for entry in out.values():
        entry["accuracy"] = entry["correct"] / entry["n"]
    return dict(sorted(out.items()))


def caas_effect(records: Sequence[Record]) -> dict[str, Any]:
    """CAAS trigger rate in ``eagle`` and the flip table of ``eagle`` against ``tgps``.

    ``tgps`` is ``eagle`` without CAAS (same prompt), so on the items where CAAS fired the pair
    isolates what the attention scaling changed: ``wrong_to_right`` / ``right_to_wrong`` /
    ``changed_still_wrong`` / ``unchanged``. The flips are ``None`` when ``tgps`` was not run.
    """
    eagle = [r for r in records if r["condition"] == "eagle"]
    triggered = [r for r in eagle if r.get("caas_applied")]
    out: dict[str, Any] = {
        "n": len(eagle),
        "triggered": len(triggered),
        "trigger_rate": _ratio(len(triggered), len(eagle)),
        "flips": None,
    }
    tgps = {(r["image"], r["question_id"]): r for r in records if r["condition"] == "tgps"}
    if not tgps:
        return out
    flips = {"wrong_to_right": 0, "right_to_wrong": 0, "changed_still_wrong": 0, "unchanged": 0}
    for r in triggered:
        before = tgps.get((r["image"], r["question_id"]))
        if before is None:
            continue
        if before["answer"] == r["answer"]:
            flips["unchanged"] += 1
        elif r["correct"] and not before["correct"]:
            flips["wrong_to_right"] += 1
        elif before["correct"] and not r["correct"]:
            flips["right_to_wrong"] += 1
        else:
            flips["changed_still_wrong"] += 1
    out["flips"] = flips
    return out


def condition_metrics(records: Sequence[Record]) -> dict[str, Any]:
    """Discrimination + task accuracy of one condition's records."""
    return {"anomaly": discrimination(records), "tasks": task_accuracy(records)}


def _class_metrics(records: Sequence[Record]) -> dict[str, Any]:
    """:func:`condition_metrics` of one class, with its per-type discrimination (types are per class)."""
    return {**condition_metrics(records), "per_type": per_type_discrimination(records)}


def compute_metrics(records: Sequence[Record], conditions: Sequence[str]) -> dict[str, Any]:
    """Per condition, overall and per class; CAAS effect overall and per class. Deterministic in ``records``."""
    categories = sorted({r["category"] for r in records})
    result: dict[str, Any] = {"conditions": {}, "caas": {}}
    for condition in conditions:
        rows = [r for r in records if r["condition"] == condition]
        result["conditions"][condition] = {
            "overall": condition_metrics(rows),
            "per_class": {c: _class_metrics([r for r in rows if r["category"] == c]) for c in categories},
        }
    if "eagle" in conditions:
        result["caas"] = {
            "overall": caas_effect(records),
            "per_class": {c: caas_effect([r for r in records if r["category"] == c]) for c in categories},
        }
    return result
