"""Which EfficientNet-Lite should be the embedded default? Quality on real data against cost.

Fits and evaluates every packaged backbone on the tire images (if ``../shared/data`` exists) and on
elpv mono (200 seeded training cells, the full test split), then prints one table with image
AUROC, pixel AUROC / AUPRO (tire only), fit time and inspection throughput, and each backbone's
cost as a ratio to efficientnet_lite0.

    .venv/bin/python benchmarks/backbones.py [--elpv-train 200] [--skip-tire]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from eagle_iad.data import Sample, get_layout
from eagle_iad.data.selection import select_training
from eagle_iad.eval.expert_eval import evaluate_expert
from eagle_iad.expert import ExpertConfig, fit

TIRE = Path(__file__).resolve().parents[2] / "shared" / "data" / "mvtec3d-tire"
BACKBONES = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")


def run(backbone: str, train: list[Sample], test: list[Sample]) -> dict[str, float | None]:
    config = ExpertConfig(backbone=backbone)
    start = time.perf_counter()
    expert = fit([s.path for s in train], "bench", config)
    fit_s = time.perf_counter() - start
    start = time.perf_counter()
    ev = evaluate_expert(expert, test)
    eval_s = time.perf_counter() - start
    return {
        "image_auroc": ev.image_auroc,
        "pixel_auroc": ev.pixel_auroc,
        "aupro": ev.aupro,
        "bal_acc_at_tau": float(ev.at_tau["balanced_accuracy"]),
        "fit_s": fit_s,
        "images_per_s": len(test) / eval_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--elpv-train", type=int, default=200)
    parser.add_argument("--skip-tire", action="store_true")
    args = parser.parse_args()
    datasets: dict[str, tuple[list[Sample], list[Sample]]] = {}
    if TIRE.exists() and not args.skip_tire:
        mvtec = get_layout("mvtec")
        datasets["tire"] = (mvtec.samples(TIRE, "tire", "train"), mvtec.samples(TIRE, "tire", "test"))
    elpv = get_layout("elpv")
    datasets["elpv-mono"] = (
        select_training(elpv.samples(None, "mono", "train"), args.elpv_train, 0),
        elpv.samples(None, "mono", "test"),
    )
    rows: list[tuple[str, str, dict[str, float | None]]] = []
    for name, (train, test) in datasets.items():
        for backbone in BACKBONES:
            print(f"... {name} / {backbone} ({len(train)} train, {len(test)} test)", flush=True)
            rows.append((name, backbone, run(backbone, train, test)))

    def fmt(value: float | None) -> str:
        return "-" if value is None else f"{value:.3f}"

    print(
        "\n| data | backbone | image AUROC | pixel AUROC | AUPRO | bal. acc @tau | fit s | img/s | "
        "fit cost vs lite0 | inspect cost vs lite0 |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, backbone, r in rows:
        base = next(x for n, b, x in rows if n == name and b == BACKBONES[0])
        fit_ratio = float(r["fit_s"] or 0) / float(base["fit_s"] or 1)
        inspect_ratio = float(base["images_per_s"] or 0) / float(r["images_per_s"] or 1)
        print(
            f"| {name} | {backbone} | {fmt(r['image_auroc'])} | {fmt(r['pixel_auroc'])} | {fmt(r['aupro'])} | "
            f"{fmt(r['bal_acc_at_tau'])} | {fmt(r['fit_s'])} | {fmt(r['images_per_s'])} | "
            f"{fit_ratio:.2f}x | {inspect_ratio:.2f}x |"
        )


if __name__ == "__main__":
    main()
