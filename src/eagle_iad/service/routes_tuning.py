"""``/v1/categories/{name}/evidence`` and ``/dashboard``: what a threshold would do, and how a category fares.

The console tunes a threshold against images whose truth is known (the user's labels in the history,
and the test images of ``eagle eval-expert`` runs on the same category), and charts the history per
day. Both answers are computed here from data the service already holds; host paths never leave it
(an evaluation image is named by its defect type and file name only).
"""

from __future__ import annotations

import json
from pathlib import Path, PurePath
from typing import Any

from fastapi import APIRouter, Depends, Request

from eagle_iad.errors import ConfigError, ModelFormatError
from eagle_iad.expert.export import SIDECAR
from eagle_iad.expert.runtime import check_runtime, parse_sidecar
from eagle_iad.expert.store import MANIFEST, read_manifest
from eagle_iad.mllm.serving import ApiError
from eagle_iad.service import schemas
from eagle_iad.service.access import VIEWER
from eagle_iad.service.context import ServiceState, require_key, service
from eagle_iad.service.security import check_name, hide_models_dir

router = APIRouter(prefix="/v1", dependencies=[Depends(require_key)], responses=schemas.ERROR_RESPONSES)


def _manifest(state: ServiceState, name: str) -> dict[str, Any]:
    """What the evidence and the dashboard need of a category (its ``category`` and ``thresholds.tau``): the
    fitted model's manifest, or, for an export this service runs (``--runtime onnx|openvino``), its sidecar.

    Both answers are the history and the evaluation runs read against the threshold, which an export's
    sidecar carries as the manifest does; reading only manifests answered 404 "no fitted category" for every
    category such a service runs, so the console's category page had no dashboard and no threshold preview.
    An export's sidecar is checked as the category listing checks it (409 ``model_invalid`` when it would not
    load); a folder with neither a sidecar (under those runtimes) nor a manifest is 404.
    """
    directory = state.settings.models_dir / check_name(name)
    if state.settings.runtime != "torch" and (directory / SIDECAR).is_file():
        try:
            folder, record = parse_sidecar(directory)
            check_runtime(folder, record, state.settings.runtime)
            return {"category": record.get("category", name), "thresholds": {"tau": float(record["tau"])}}
        except (ModelFormatError, ConfigError, KeyError, TypeError, ValueError) as exc:
            reason = hide_models_dir(str(exc), directory.parent)
            raise ApiError(409, f"category {name!r} cannot be read: {reason}", code="model_invalid") from None
    if not (directory / MANIFEST).is_file():
        raise ApiError(404, f"no fitted category {name!r}", code="category_not_found")
    try:
        return read_manifest(directory)
    except (ModelFormatError, KeyError, TypeError) as exc:
        reason = hide_models_dir(str(exc), directory.parent)
        raise ApiError(409, f"category {name!r} cannot be read: {reason}", code="model_invalid") from None


def _evaluation_items(runs_dir: Path | None, category: str) -> list[dict[str, Any]]:
    """The per-image scores of every evaluation run on ``category`` (``scores.jsonl`` beside its metrics)."""
    items: list[dict[str, Any]] = []
    if runs_dir is None or not runs_dir.is_dir():
        return items
    for run in sorted(runs_dir.iterdir()):
        metrics_path, scores_path = run / "metrics.json", run / "scores.jsonl"
        if run.name.startswith(".") or not metrics_path.is_file() or not scores_path.is_file():
            continue
        if not scores_path.resolve().is_relative_to(runs_dir.resolve()):
            continue  # a symlink out of the runs dir is not read
        try:
            metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
            if metrics.get("category") != category:
                continue
            run_tau = metrics.get("tau")
            for line in scores_path.read_text(encoding="utf-8").splitlines():
                row = json.loads(line) if line.strip() else None
                if not isinstance(row, dict) or row.get("label") not in (0, 1) or row.get("score") is None:
                    continue
                image = PurePath(str(row.get("image", "")))
                name = f"{row['defect_type']}/{image.name}" if row.get("defect_type") else image.name
                digest = row.get("sha256")
                items.append({"source": "evaluation", "id": f"{run.name}/{name}", "name": name,
                              "score": float(row["score"]), "label": "anomalous" if row["label"] == 1 else "normal",
                              "run": run.name, "run_tau": None if run_tau is None else float(run_tau),
                              "sha256": digest if isinstance(digest, str) else None})  # fmt: skip
        except (json.JSONDecodeError, UnicodeDecodeError, OSError, ValueError, TypeError, AttributeError):
            continue  # an unreadable run offers no evidence; /v1/evaluations says why
    return items


def count_once(history: list[dict[str, Any]], evaluation: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each image file once, by its SHA-256: an image labelled in the history and scored by an evaluation run
    (or inspected twice, or in two runs) would otherwise count twice in the preview's rates.

    The history's newest labelled inspection of a file speaks for it (the user's latest word, scored by the
    latest model), then the runs in name order; the others are named in its ``also``. Items without a
    digest (stored before digests, or a run written before them) are each counted, as before.
    """
    kept: dict[str, dict[str, Any]] = {}
    chosen: set[int] = set()
    for item in [*reversed(history), *evaluation]:
        digest = item.pop("sha256", None)
        if digest is None:
            chosen.add(id(item))
        elif digest in kept:
            kept[digest].setdefault("also", []).append(item["id"])
        else:
            kept[digest] = item
            chosen.add(id(item))
    return [item for item in [*history, *evaluation] if id(item) in chosen]


@router.get("/categories/{name}/evidence", dependencies=VIEWER, response_model=schemas.CategoryEvidence)
def category_evidence(name: str, request: Request) -> dict[str, Any]:
    """Scores whose truth is known, for previewing a threshold: labelled history items, then evaluation images.

    History items are the inspections of this category the user labelled (oldest first); evaluation
    items are the test images of runs whose ``metrics.json`` names the model's category. A run scored
    by an older fit of the model may not match today's scores: each item carries its run and the
    threshold that run used. Each image file counts once (:func:`count_once`).
    """
    state = service(request)
    manifest = _manifest(state, name)
    history = [{"source": "history", "id": row.id, "name": row.image_name, "score": row.score, "label": row.label,
                "time": row.time, "pictures": row.pictures, "sha256": row.image_sha256}
               for row in state.store.labelled(name)]  # fmt: skip
    category = str(manifest.get("category", name))
    items = count_once(history, _evaluation_items(state.settings.runs_dir, category))
    return {"category": name, "tau": manifest["thresholds"]["tau"], "items": items}


def _rate(part: int, whole: int) -> float | None:
    return None if whole == 0 else part / whole


@router.get("/categories/{name}/dashboard", dependencies=VIEWER, response_model=schemas.CategoryDashboard)
def category_dashboard(name: str, request: Request) -> dict[str, Any]:
    """Per UTC day from the history: inspections, rejects, score range, and false alarms and misses on labels.

    Rates are over the whole history: ``reject_rate`` = rejected / inspections, ``false_alarm_rate`` =
    false alarms / items labelled normal, ``miss_rate`` = misses / items labelled anomalous (the
    expert judged as ``eagle eval-expert`` does: flagged iff score >= the threshold then in force);
    ``null`` when the denominator is zero. A category without inspections has no days.
    """
    state = service(request)
    _manifest(state, name)  # 404 for an unknown category, rather than an empty dashboard
    days = state.store.daily(name)
    counted = ("inspections", "scored", "rejected", "flagged", "in_band", "labelled_normal", "labelled_anomalous",
               "false_alarms", "misses")  # fmt: skip
    totals: dict[str, Any] = {key: sum(int(day[key]) for day in days) for key in counted}
    scored = [day for day in days if day["score_min"] is not None]
    weights = sum(int(day["scored"]) for day in scored)
    totals.update(
        day="all",
        score_min=min((day["score_min"] for day in scored), default=None),
        score_max=max((day["score_max"] for day in scored), default=None),
        score_mean=None if not scored else sum(day["score_mean"] * day["scored"] for day in scored) / weights,
    )
    return {
        "category": name,
        "days": days,
        "totals": totals,
        "reject_rate": _rate(totals["rejected"], totals["inspections"]),
        "false_alarm_rate": _rate(totals["false_alarms"], totals["labelled_normal"]),
        "miss_rate": _rate(totals["misses"], totals["labelled_anomalous"]),
    }
