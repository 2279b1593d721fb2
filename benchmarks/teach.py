"""Teaching normal images against a refit on the union, and what a teach of false alarms changes, in one run.

For each set (elpv mono; the tire when ../shared has it) at the defaults:

1. **Equivalence.** Fit on the first ``--base`` training images, then for N in ``--sizes`` teach the
   next N training images (``eagle_iad.expert.teach``) and refit from scratch on the base plus those
   N. Prints the share of test images on which the two models decide alike, tau of each and their
   relative difference, and the seconds of each (teach: load, embed, extend, rescore, save; refit:
   fit and save) with the ratio.
2. **Effect.** Split the normal test images in two halves (even and odd positions); teach the base
   model the false alarms of the first half that the guard lets through (not unrecognised, not above
   the guard limit: ``teach`` refuses those unless forced); print false alarms on the second half and
   recall on the defects before and after.
3. **Guard.** How many defects and how many false alarms score above the guard limit, and how many the
   base model calls unrecognised (both refused unless forced): the checks that stop a defect, or an
   image unlike the training images, from being taught as normal.

For the middle N, a second refit on the same images with another coreset seed is compared with the
first: how much two refits differ by themselves, the yardstick for the teach's agreement.

    .venv/bin/python benchmarks/teach.py [--base 180] [--sizes 1 10 50]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

SHARED_TIRE = Path(__file__).resolve().parents[2] / "shared" / "data" / "mvtec3d-tire"


def _decisions(expert: Any, paths: list[Path]) -> tuple[np.ndarray, np.ndarray]:
    """Each image's decision and whether it is a close call (the console's caution: ``near_threshold``)."""
    from eagle_iad.tgps.thresholds import is_near, near_margin

    results = expert.inspect_many(paths)
    tau, margin = expert.model.thresholds.tau, near_margin(expert.model.train_scores)
    near = [bool(is_near(result.score, tau, margin)) for result in results]
    return np.asarray([result.is_anomalous for result in results]), np.asarray(near)


def _alike(first: Any, second: Any, paths: list[Path]) -> tuple[float, str]:
    """The share decided alike; of the images decided otherwise, how many either model calls a close call (and
    how many test images either calls one).

    Why the second figure: a decision that flips between two fits of the same images (another coreset seed
    flips some too) is worth knowing about only if the verdict gave no caution; one flagged as a close call
    already tells the operator to look again.
    """
    (a, near_a), (b, near_b) = _decisions(first, paths), _decisions(second, paths)
    differ = a != b
    flagged = int((differ & (near_a | near_b)).sum())
    return float(np.mean(~differ)), f"{flagged} of {int(differ.sum())} ({int((near_a | near_b).sum())} in all)"


def _guarded(
    candidates: list[int], scores: np.ndarray, unrecognised: np.ndarray, limit: float
) -> tuple[list[int], str]:
    """The images among ``candidates`` that ``teach`` takes without ``force``, and the Effect table's "refused
    by the guard" cell: how many it refuses and why (unrecognised, or scoring above the guard limit)."""
    allowed = [i for i in candidates if not unrecognised[i] and scores[i] <= limit]
    refused = len(candidates) - len(allowed)
    if not refused:
        return allowed, "0"
    foreign = sum(1 for i in candidates if unrecognised[i])
    return allowed, f"{refused} ({foreign} unrecognised, {refused - foreign} above the limit)"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", type=int, default=180, help="training images of the model that is taught")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 10, 50], help="images taught (N)")
    parser.add_argument("--sets", nargs="+", default=["elpv", "tire"], help="which sets (elpv, tire)")
    args = parser.parse_args()

    import torch

    from eagle_iad.data import get_layout
    from eagle_iad.expert import Expert, fit, save
    from eagle_iad.expert.store import load
    from eagle_iad.expert.teach import TeachImage, guard_limit, teach

    torch.set_num_threads(2)
    sets: list[tuple[str, str, str, Path | None]] = []
    if "elpv" in args.sets:
        sets.append(("elpv mono", "elpv", "mono", None))
    if "tire" in args.sets:
        if (SHARED_TIRE / "tire").is_dir():
            sets.append(("tire", "mvtec", "tire", SHARED_TIRE))
        else:
            print(f"(tire left out: no images at {SHARED_TIRE})")
    work = Path(tempfile.mkdtemp(prefix="eagle-teach-bench-"))
    equivalence = [
        "| set | N | decisions alike | decided otherwise: close calls (close calls in all) | tau taught | tau refit "
        "| tau difference | teach s | refit s | "
        "refit / teach | bank taught | bank refit |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    effect = [
        "| set | taught (false alarms of half A) | refused by the guard | false alarms on half B before | after "
        "| recall before | after | tau before | after |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    guard = [
        "| set | defects above the guard limit | false alarms above it | normal images above it "
        "| unrecognised: defects / false alarms / normal images |",
        "|---|---|---|---|---|",
    ]
    try:
        for name, layout_name, category, root in sets:
            layout = get_layout(layout_name)
            train = [s.path for s in layout.samples(root, category, "train")]
            test = layout.samples(root, category, "test")
            test_paths = [s.path for s in test]
            labels = np.asarray([s.label for s in test])
            base = train[: args.base]
            print(f"{name}: fitting the base model on {len(base)} images", flush=True)
            start = time.perf_counter()
            base_expert = fit(base, category)
            base_dir = work / f"{category}-base"
            save(base_expert.model, base_dir)
            print(f"  base fit {time.perf_counter() - start:.1f} s", flush=True)
            base_results = base_expert.inspect_many(test_paths)
            base_scores = np.asarray([r.score for r in base_results])
            base_decisions = np.asarray([r.is_anomalous for r in base_results])
            coverage = base_expert.model.coverage  # teach refuses what it calls unrecognised, as it refuses a score
            base_foreign = np.asarray(
                [bool(coverage is not None and coverage.unrecognised(r.foreign_share)) for r in base_results]
            )
            for size in args.sizes:
                extra = train[args.base : args.base + size]
                if len(extra) < size:
                    print(f"  N={size}: only {len(extra)} more training images; skipped", flush=True)
                    continue
                taught_dir = work / f"{category}-taught-{size}"
                shutil.copytree(base_dir, taught_dir)
                start = time.perf_counter()
                result = teach(taught_dir, [TeachImage(p.name, p) for p in extra], why="benchmark", by="bench",
                               force=True)  # fmt: skip
                teach_s = time.perf_counter() - start
                start = time.perf_counter()
                refit = fit(base + extra, category)
                save(refit.model, work / f"{category}-refit-{size}")
                refit_s = time.perf_counter() - start
                taught = Expert(load(taught_dir))
                alike, flagged = _alike(taught, refit, test_paths)
                tau_t, tau_r = result.model.thresholds.tau, refit.model.thresholds.tau
                equivalence.append(
                    f"| {name} | {size} | {alike:.1%} | {flagged} | {tau_t:.3f} | {tau_r:.3f} "
                    f"| {abs(tau_t - tau_r) / tau_r:.2%} "
                    f"| {teach_s:.1f} | {refit_s:.1f} | {refit_s / teach_s:.1f}x | {result.entry['bank_after']} "
                    f"| {refit.model.bank.shape[0]} |"
                )
                print(equivalence[-1], flush=True)
                if size == args.sizes[1 if len(args.sizes) > 1 else 0]:
                    # How far two refits on the same images differ (another coreset seed): the yardstick.
                    from eagle_iad.expert import ExpertConfig

                    other = fit(base + extra, category, ExpertConfig(seed=1))
                    alike2, flagged2 = _alike(other, refit, test_paths)
                    tau_o = other.model.thresholds.tau
                    equivalence.append(
                        f"| {name} | {size}: refit seed 1 vs refit seed 0 | {alike2:.1%} | {flagged2} | {tau_o:.3f} "
                        f"| {tau_r:.3f} "
                        f"| {abs(tau_o - tau_r) / tau_r:.2%} | – | – | – | {other.model.bank.shape[0]} | "
                        f"{refit.model.bank.shape[0]} |"
                    )
                    print(equivalence[-1], flush=True)

            normal = np.flatnonzero(labels == 0)
            half_a, half_b = normal[0::2], normal[1::2]
            limit = guard_limit(base_expert.model.thresholds, base_expert.model.train_scores)
            false_a = [int(i) for i in half_a if base_decisions[i]]
            allowed, refused = _guarded(false_a, base_scores, base_foreign, limit)
            defects = labels == 1
            effect_dir = work / f"{category}-effect"
            shutil.copytree(base_dir, effect_dir)
            if allowed:
                taught_model = teach(effect_dir, [TeachImage(test_paths[i].name, test_paths[i]) for i in allowed],
                                     why="false alarms of half A", by="bench").model  # fmt: skip
                after = Expert(taught_model).inspect_many(test_paths)
                after_decisions = np.asarray([r.is_anomalous for r in after])
                tau_after = taught_model.thresholds.tau
            else:
                after_decisions, tau_after = base_decisions, base_expert.model.thresholds.tau
            effect.append(
                f"| {name} | {len(allowed)} | {refused} | {int(base_decisions[half_b].sum())} of "
                f"{len(half_b)} | {int(after_decisions[half_b].sum())} of {len(half_b)} | "
                f"{base_decisions[defects].mean():.3f} | {after_decisions[defects].mean():.3f} | "
                f"{base_expert.model.thresholds.tau:.3f} | {tau_after:.3f} |"
            )
            print(effect[-1], flush=True)
            false_all = (labels == 0) & base_decisions
            guard.append(
                f"| {name} | {int((base_scores[defects] > limit).sum())} of {int(defects.sum())} | "
                f"{int((base_scores[false_all] > limit).sum())} of {int(false_all.sum())} | "
                f"{int((base_scores[labels == 0] > limit).sum())} of {int((labels == 0).sum())} | "
                f"{int(base_foreign[defects].sum())} of {int(defects.sum())} / "
                f"{int(base_foreign[false_all].sum())} of {int(false_all.sum())} / "
                f"{int(base_foreign[labels == 0].sum())} of {int((labels == 0).sum())} |"
            )
            print(guard[-1], flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("\nEquivalence (teach N images vs refit on the union):\n" + "\n".join(equivalence))
    print("\nEffect (teach the false alarms of half A of the normal test images):\n" + "\n".join(effect))
    print("\nGuard (scores above s_max + (s_max - median training score)):\n" + "\n".join(guard))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
