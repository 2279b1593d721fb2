"""``RUN/report.md`` and ``RUN/report.html``: the tables and pictures of one ``eagle eval`` run.

Both files are rendered from the same table rows so they cannot disagree. Published MMAD numbers
(docs/METHOD.md §5) appear only in their own, labelled table — never as rows among the measured ones.
Figures use matplotlib's object API (no pyplot global state), like the rest of the package.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from eagle_iad.atomic import atomic_write_text
from eagle_iad.eval.expert_eval import summary_mask_note
from eagle_iad.eval.plots import save_figure
from eagle_iad.mllm.attention import mark_random, sliding_window_note

#: MMAD 1-shot anomaly-discrimination accuracy (%), DS-MVTec / VisA, as published (docs/METHOD.md §5).
PUBLISHED_MMAD: tuple[tuple[str, str, str], ...] = (
    ("Qwen2.5-VL-7B (MMAD paper)", "86.40", "75.59"),
    ("AnomalyGPT (MMAD paper)", "82.84", "74.88"),
    ("GPT-4o (MMAD paper)", "81.33", "66.42"),
    ("EAGLE (paper, best of five backbones)", "94.4", "88.1"),
)

#: The key ``run.json``, a record and ``metrics.json`` carry (``true``) when a tiny random test model answered.
RANDOM_MARK = "random_test_model"
#: The report's first line then: such numbers are noise, whatever their tables look like.
RANDOM_BANNER = (
    "Answers from a random test model: not a measurement. The MLLM is a tiny random test model (built by "
    "python -m eagle_iad.testing.tiny): its answers are random noise, so the MLLM numbers below measure nothing."
)
#: The report's line for a run made with ``--force-caas`` (its ``run.json`` config says ``force_caas: true``).
FORCED_CAAS_NOTE = (
    "CAAS forced (--force-caas): the eagle condition applied CAAS to every image, not only in the expert's "
    "low-confidence band, so its numbers are not the product's (band rule)."
)

Table = tuple[list[str], list[list[str]]]
_CSS = "body{font-family:sans-serif;max-width:1100px}table{border-collapse:collapse}td,th{border:1px solid #bbb}"


def _fmt(value: Any, percent: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        return f"{100 * value:.2f}" if percent else f"{value:.3f}"
    return str(value)


def _md(table: Table) -> str:
    head, rows = table
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _html(table: Table) -> str:
    head, rows = table
    cells = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{cells}</tr></thead><tbody>{body}</tbody></table>"


def discrimination_table(metrics: dict[str, Any]) -> Table:
    """One row per (condition, scope): overall first, then each class."""
    head = ["condition", "scope", "n", "accuracy %", "acc normal %", "acc anomalous %", "precision", "recall", "F1",
            "unparsable"]  # fmt: skip
    rows: list[list[str]] = []
    for condition, entry in metrics["conditions"].items():
        scopes = [("overall", entry["overall"]), *entry["per_class"].items()]
        for scope, values in scopes:
            a = values["anomaly"]
            if not a["n"]:
                continue
            rows.append([
                condition, scope, str(a["n"]), _fmt(a["accuracy"], True), _fmt(a["accuracy_normal"], True),
                _fmt(a["accuracy_anomalous"], True), _fmt(a["precision"]), _fmt(a["recall"]), _fmt(a["f1"]),
                str(a["unparsable"]),
            ])  # fmt: skip
    return head, rows


def task_table(metrics: dict[str, Any]) -> Table:
    """Accuracy per MMAD task type and condition (overall)."""
    head = ["condition", "task", "n", "accuracy %", "unparsable"]
    rows = [
        [condition, task, str(v["n"]), _fmt(v["accuracy"], True), str(v["unparsable"])]
        for condition, entry in metrics["conditions"].items()
        for task, v in entry["overall"]["tasks"].items()
    ]
    return head, rows


#: The flip columns count only the eagle items CAAS acted on (each against its tgps answer), not all eagle items:
#: their header says so, as a researcher read "eagle items 24 ... unchanged 5" as 19 items changed.
CAAS_FLIP_NOTE = (
    "The four 'applied:' columns count only the eagle items where CAAS was applied, each against the same item's tgps "
    "answer (they add up to 'CAAS applied' where tgps answered every one)."
)


def caas_table(metrics: dict[str, Any]) -> Table:
    head = ["scope", "eagle items", "CAAS applied", "trigger rate %", "applied: wrong→right", "applied: right→wrong",
            "applied: changed, still wrong", "applied: unchanged"]  # fmt: skip
    rows: list[list[str]] = []
    caas = metrics.get("caas") or {}
    if not caas:
        return head, rows
    for scope, v in [("overall", caas["overall"]), *caas["per_class"].items()]:
        flips = v["flips"] or {}
        rows.append([
            scope, str(v["n"]), str(v["triggered"]), _fmt(v["trigger_rate"], True),
            *(str(flips.get(k, "–")) for k in ("wrong_to_right", "right_to_wrong", "changed_still_wrong", "unchanged")),
        ])  # fmt: skip
    return head, rows


def expert_table(expert: dict[str, Any]) -> Table:
    """One row per class; ``anomalous without mask`` shows a layout that read no masks (a wrong ``--layout``)."""
    head = ["class", "normal", "anomalous", "anomalous without mask", "image AUROC", "pixel AUROC", "AUPRO", "tau",
            "s_max"]  # fmt: skip
    rows = [
        [c, str(v["n_normal"]), str(v["n_anomalous"]), str(v.get("defects_without_mask", "–")),
         _fmt(v["image_auroc"]), _fmt(v["pixel_auroc"]), _fmt(v["aupro"]), _fmt(v["tau"]), _fmt(v["s_max"])]
        for c, v in expert.items()
    ]  # fmt: skip
    return head, rows


def mask_notes(expert: dict[str, Any]) -> str | None:
    """The expert section's note on defect images without a mask, per class (None when every one has one)."""
    notes = [f"{c}: {note}" for c, v in expert.items() if (note := summary_mask_note(v)) is not None]
    return None if not notes else "Masks: " + ". ".join(notes) + "."


def per_type_table(metrics: dict[str, Any]) -> Table:
    """MLLM conditions per class and defect type: each type against all of its class's normals.

    ``acc anomalous %`` is the share of that type answered "defect"; ``accuracy %`` is the MMAD
    accuracy a test split of the normals and that type alone would give. Runs written before
    ``per_type`` existed give no rows.
    """
    head = ["condition", "class", "defect type", "images", "acc anomalous %", "accuracy %", "normals", "false alarms"]
    rows: list[list[str]] = []
    for condition, entry in metrics["conditions"].items():
        for category, values in entry["per_class"].items():
            per_type = values.get("per_type") or {}
            for name, a in (per_type.get("types") or {}).items():
                rows.append([
                    condition, category, name, str(a["n_anomalous"]), _fmt(a["accuracy_anomalous"], True),
                    _fmt(a["accuracy"], True), str(per_type["n_normal"]), str(per_type["false_alarms"]),
                ])  # fmt: skip
    return head, rows


def expert_per_type_table(expert: dict[str, Any]) -> Table:
    """The expert's image and box measures per class and defect type (each type against all normals)."""
    head = ["class", "defect type", "images", "image AUROC", "recall at tau", "caught / missed", "normals",
            "false alarms", "pointing acc.", "mean best-box IoU", "median box/defect area"]  # fmt: skip
    rows: list[list[str]] = []
    for category, v in expert.items():
        per_type = v.get("per_type") or {}
        for name, t in (per_type.get("types") or {}).items():
            rows.append([
                category, name, str(t["n_images"]), _fmt(t["image_auroc"]), _fmt(t["recall_at_tau"]),
                f"{t['caught']} / {t['missed']}", str(per_type["n_normal"]), str(per_type["false_alarms"]),
                _fmt(t["pointing_accuracy"]), _fmt(t["mean_best_iou"]), _fmt(t["median_area_ratio"]),
            ])  # fmt: skip
    return head, rows


def box_table(expert: dict[str, Any], overall: dict[str, Any] | None) -> Table:
    """Box and map quality per class, then all classes pooled (``–`` where a class has no masks)."""
    head = ["class", "anomalous with mask", "pointing acc.", "mean best-box IoU", "median box/defect area",
            "boxes touch defect", "boxes on normals", "normals with boxes"]  # fmt: skip

    def row(scope: str, b: dict[str, Any]) -> list[str]:
        return [scope, str(b["n_anomalous_with_mask"]), _fmt(b["pointing_accuracy"]), _fmt(b["mean_best_iou"]),
                _fmt(b["median_area_ratio"]), _fmt(b["touch_rate"]), str(b["normal_boxes"]),
                f"{b['normal_images_with_boxes']} of {b['n_normal']}"]  # fmt: skip

    rows = [row(c, v["boxes"]) for c, v in expert.items() if v.get("boxes")]
    if overall and len(rows) > 1:
        rows.append(row("all classes", overall))
    return head, rows


def published_table() -> Table:
    return ["published (not measured here)", "DS-MVTec accuracy %", "VisA accuracy %"], [
        list(r) for r in PUBLISHED_MMAD
    ]


def timing_table(timing: dict[str, Any]) -> Table:
    head = ["condition", "records", "seconds (sum of latencies)", "items/s"]
    rows = [[c, str(v["n"]), f"{v['seconds']:.2f}", _fmt(v["items_per_s"])] for c, v in timing.items()]
    return head, rows


#: Each condition's marker (a condition keeps its marker in both of its curves, correct and wrong).
_MARKERS = ("o", "s", "^", "D", "v", "P")


def attention_figure(records: Sequence[dict[str, Any]]) -> Figure | None:
    """Mean per-layer attention share on the query image, correct vs wrong answers, per condition.

    ``None`` when no record carries attention. Conditions often give identical curves (``tgps`` and ``eagle``
    where CAAS never acted): each condition has its own marker, drawn hollow and smaller for each later
    condition so the earlier ones stay visible underneath, and a curve identical to one drawn before says so
    in the legend (``= tgps, correct``). Layers are whole numbers, and so are the ticks. A model's
    sliding-window layers (the records' ``sliding_window``) are marked ``N*`` with the note below the plot:
    their share is local by design (:func:`eagle_iad.mllm.attention.sliding_window_note`).
    """
    groups: dict[tuple[str, bool], list[dict[str, float]]] = {}
    for r in records:
        if r.get("attention_share"):
            groups.setdefault((r["condition"], bool(r["correct"])), []).append(r["attention_share"])
    if not groups:
        return None
    conditions = sorted({condition for condition, _ in groups})
    fig = Figure(figsize=(7.5, 4.2), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    drawn: dict[tuple[tuple[int, ...], tuple[float, ...]], str] = {}
    for (condition, correct), shares in sorted(groups.items()):
        layers = sorted({int(k) for s in shares for k in s})
        means = [sum(s.get(str(layer), 0.0) for s in shares) / len(shares) for layer in layers]
        outcome = "correct" if correct else "wrong"
        label = f"{condition}, {outcome} (n={len(shares)})"
        curve = (tuple(layers), tuple(round(m, 12) for m in means))
        if curve in drawn:
            label += f" = {drawn[curve]}"
        else:
            drawn[curve] = f"{condition}, {outcome}"
        index = conditions.index(condition)
        ax.plot(layers, means, marker=_MARKERS[index % len(_MARKERS)], markersize=9 - 1.5 * (index % 4),
                markerfacecolor="none", linestyle="-" if correct else "--", label=label)  # fmt: skip
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("decoder layer")
    ax.set_ylabel("attention share on query image")
    ax.set_title("First generated token's attention: correct (solid) vs wrong (dashed)")
    ax.legend(loc="best", fontsize="small")
    note = attention_sliding_note(records)
    if note is not None:
        import textwrap

        shown = sorted({int(k) for shares in groups.values() for s in shares for k in s})
        sliding = {int(layer) for r in records if r.get("sliding_window") for layer in r["sliding_window"]["layers"]}
        ax.set_xticks(shown, [f"{layer}*" if layer in sliding else str(layer) for layer in shown])
        ax.set_xlabel("decoder layer (* sliding window: local attention)")
        fig.text(0.01, 0.01, textwrap.fill(note, 120), fontsize=6.5, color="0.25", va="bottom")
        fig.tight_layout(rect=(0.0, 0.08, 1.0, 1.0))
    else:
        fig.tight_layout()
    return fig


def attention_sliding_note(records: Sequence[dict[str, Any]]) -> str | None:
    """The sliding-window note of the model that answered (records with ``sliding_window``), or None."""
    found = next((r["sliding_window"] for r in records if r.get("sliding_window")), None)
    return None if found is None else sliding_window_note(found["layers"], int(found["window"]))


def attention_curves(records: Sequence[dict[str, Any]], path: Path, random_model: bool = False) -> bool:
    """:func:`attention_figure` saved to ``path``; False (and nothing written) when no record carries attention.

    ``random_model`` (a run marked ``random_test_model``): the figure carries the caption ``eagle attention``'s
    pictures carry (:func:`eagle_iad.mllm.attention.mark_random`), at its top and in its PNG ``Description``.
    """
    fig = attention_figure(records)
    if fig is None:
        return False
    caption = None
    if random_model:
        caption = mark_random(fig, fontsize=10)
        note = attention_sliding_note(records)
        fig.tight_layout(rect=(0.0, 0.0 if note is None else 0.08, 1.0, 1.0))  # room for the caption above the axes
    lines = [line for line in (caption, attention_sliding_note(records)) if line]
    save_figure(fig, path, description="\n".join(lines) if lines else None)
    return True


def fits_table(fits: dict[str, Any]) -> Table:
    """The experts this run fitted because ``--models`` had none, with their fit's warnings."""
    head = ["class", "model", "training images", "backbone", "tau", "fit options", "warnings"]
    rows = [
        [c, str(f["model"]), str(f["train_images"]), str(f["backbone"]), _fmt(f["tau"]),
         ", ".join(f"{k}={v}" for k, v in sorted(f.get("options", {}).items())) or "–",
         " / ".join(f.get("warnings", [])) or "none"]
        for c, f in sorted(fits.items())
    ]  # fmt: skip
    return head, rows


def write_report(
    out: Path,
    metrics: dict[str, Any],
    timing: dict[str, Any],
    pictures: dict[str, str],
    fits: dict[str, Any] | None = None,
) -> None:
    """Write ``report.md`` and ``report.html``; ``pictures`` maps captions to paths relative to ``out``.

    ``fits``: the experts this run fitted (``RUN/fits.json``), listed with their warnings.
    """
    sections: list[tuple[str, Table | None, str | None]] = [
        ("Anomaly discrimination (measured)", discrimination_table(metrics["mllm"]), None),
        ("Accuracy per task type (measured)", task_table(metrics["mllm"]), None),
        ("Anomaly discrimination per defect type (measured)", per_type_table(metrics["mllm"]),
         "Each defect type against all normal images of its class; false alarms are the normals' and the same "
         "for every type of a class."),
        ("CAAS trigger rate and flips against tgps (measured)", caas_table(metrics["mllm"]), CAAS_FLIP_NOTE),
        ("Expert (PatchCore) per class (measured)", expert_table(metrics["expert"]), mask_notes(metrics["expert"])),
        ("Experts fitted by this run", fits_table(fits) if fits else None,
         "Fitted because --models had no model of the class; their warnings are also in each model.json."
         if fits else "None: every class's expert was already in --models."),
        ("Expert boxes and maps per class (measured)", box_table(metrics["expert"], metrics.get("expert_boxes")),
         "Anomalous images with a ground-truth mask: does the map's peak lie on the defect, how well does the "
         "best drawn box fit a defect (IoU), how much larger are the boxes (median), do they touch it at all; "
         "and boxes drawn on normal images."),
        ("Expert per defect type (measured)", expert_per_type_table(metrics["expert"]),
         "Each defect type against all normal test images of its class: image AUROC, share of the type at or "
         "above tau, and the box measures over the type's images with a mask."),
        ("Throughput (this machine; not part of metrics.json)", timing_table(timing), None),
        ("Published MMAD reference points (NOT measured in this run)", published_table(),
         "1-shot anomaly-discrimination accuracy as published; shown for orientation only."),
    ]  # fmt: skip
    config = metrics["config"]
    intro = (
        f"Layout `{config['layout']}`, MLLM `{config['mllm']}`, conditions {', '.join(config['conditions'])}, "
        f"{config['shots']}-shot, tasks `{config['tasks']}`; config hash `{metrics['config_hash']}`."
    )
    if config.get("force_caas"):  # not the product's rule: every eagle answer below was sharpened
        intro += f" {FORCED_CAAS_NOTE}"
    md = ["# EAGLE-IAD evaluation", "", intro, ""]
    body = [f"<h1>EAGLE-IAD evaluation</h1><p>{html.escape(intro)}</p>"]
    if metrics.get(RANDOM_MARK):
        md[1:1] = ["", f"**{RANDOM_BANNER}**"]
        body.insert(1, f"<p><strong>{html.escape(RANDOM_BANNER)}</strong></p>")
    for title, table, note in sections:
        md += [f"## {title}", ""]
        body.append(f"<h2>{html.escape(title)}</h2>")
        if note:
            md += [note, ""]
            body.append(f"<p><em>{html.escape(note)}</em></p>")
        if table is not None:
            md += [_md(table), ""]
            body.append(_html(table))
    md += ["## Pictures", ""]
    body.append("<h2>Pictures</h2>")
    for caption, rel in pictures.items():
        md += [f"### {caption}", "", f"![{caption}]({rel})", ""]
        body.append(f'<h3>{html.escape(caption)}</h3><img src="{html.escape(rel)}" alt="{html.escape(caption)}">')
    page = (
        '<!doctype html><html><head><meta charset="utf-8"><title>EAGLE-IAD evaluation</title>'
        f"<style>{_CSS}</style></head><body>{''.join(body)}</body></html>\n"
    )
    atomic_write_text(out / "report.md", "\n".join(md))
    atomic_write_text(out / "report.html", page)
