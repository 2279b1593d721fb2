"""Which input size, scoring and threshold rule catch the defects that still pass? One run (issue 29).

For each data set and input size this fits the product's model once (``eagle_iad.expert.fit``)
and then scores every training image (leave-own-out: its own bank rows excluded, as the fit's
threshold pass does) and every test image several ways, all from that one model:

- ``plain``: the product's score, the largest patch distance;
- ``flip``: test-time flip, each patch's distance averaged with its distance in the horizontally
  flipped image (grid flipped back), then the largest;
- ``global``: an image-level statistic beside the patches, for defects larger than a patch's
  receptive field: the image's mean patch embedding, its distance to the nearest training image's
  (leave-own-out for training images), put on the patch score's scale by robust z-scores
  (median, 1.4826 x MAD of the training values) and the larger of the two kept, so a normal image
  whose global distance is typical scores exactly as ``plain`` and every rule still calibrates on
  the training images alone;
- ``pyramid A+B``: two input sizes' scores folded the same way (robust z, the larger), the
  image-pyramid form of "more than one feature scale".

Every variant's tau comes from its own leave-own-out training scores under each threshold rule
(ksigma k=3, mad k=3, quantile q=0.99, evt p=0.99); the table shows recall and false alarms at each,
image AUROC, and the recall a threshold could reach at one false alarm among the normal test images
(the variant's ceiling, chosen with the test labels, so not a setting a user can have). On tire the
per-type image AUROC and recall at the ksigma tau follow. ``native`` is the training images' median
long side rounded up to a multiple of 32 (tire 400 px -> 416; elpv 300 px -> 320, the default).
Each size is fitted at each ``--exposures`` setting (``image``, the default since issue 29's study:
each image's brightness and contrast set to ImageNet's; ``none``: the pixels' own); the rows are
labelled ``size/exposure``, and pyramids pair sizes of one exposure.

    .venv/bin/python benchmarks/score_study.py [--sizes 320,native,448] [--exposures none,image] [--varied-size 320]
        [--datasets tire,elpv,tire-varied,elpv-varied] [--limit-train N] [--limit-test N] [--out DIR]

``tire-varied`` and ``elpv-varied`` are the same images cropped to a seeded 70-100% of each side (the
defect's mask kept inside) and turned by a seeded multiple of 90 degrees, training and test alike:
images whose sizes and orientations vary. On them the product's fixed input (``resize``: every image
stretched to the median aspect) is compared with ``--preprocess scale`` (each image at its own aspect
ratio and one pixel scale).

Tire is read from ``../shared/data/mvtec3d-tire`` (skipped with a message when absent); elpv
(mono) uses the demo's 200 seeded training cells unless ``--limit-train`` says otherwise.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from real_sets import real_set
from run_record import write_run_record

from eagle_iad.data import Sample
from eagle_iad.errors import EagleError
from eagle_iad.eval.metrics import auroc
from eagle_iad.expert import Expert, ExpertConfig, fit
from eagle_iad.expert.fitting import _image_shape
from eagle_iad.expert.preprocess import prepare
from eagle_iad.images import load_rgb
from eagle_iad.tgps.thresholds import compute_thresholds

RULES = ("ksigma", "mad", "quantile", "evt")
FORMAT_VERSION = 1
#: 1.4826 x MAD estimates the standard deviation of normally distributed values (as the mad rule).
MAD_SCALE = 1.4826


@dataclass
class Passes:
    """One model's scores of one image set, each way; ``global_`` is the image-level distance."""

    plain: np.ndarray
    flip: np.ndarray
    global_: np.ndarray
    seconds_plain: float
    seconds_flip: float


def _grid(expert: Expert, rgb: np.ndarray, own: int | None) -> tuple[np.ndarray, torch.Tensor]:
    """One image's stitched patch-distance grid and its patches (a training image's own rows excluded)."""
    tensor, geometry = prepare(rgb, expert.model.config)
    patches = expert.embed(tensor)
    flat = patches.reshape(-1, patches.shape[-1])
    groups = None if own is None else torch.full((flat.shape[0],), own, dtype=torch.long)
    dist, _ = expert.search.search(flat, exclude_groups=groups)
    views = dist.reshape(patches.shape[0], *expert.model.grid).numpy()
    return geometry.stitch(views), flat


@torch.no_grad()
def score_all(expert: Expert, samples: Sequence[Sample], training: bool) -> tuple[Passes, np.ndarray]:
    """Plain and flip scores and the mean patch embedding of each image (leave-own-out when ``training``)."""
    plain, flip, descriptors = [], [], []
    seconds_plain = seconds_flip = 0.0
    for index, sample in enumerate(samples):
        rgb = load_rgb(sample.path)
        own = index if training else None
        start = time.perf_counter()
        grid, patches = _grid(expert, rgb, own)
        seconds_plain += time.perf_counter() - start
        start = time.perf_counter()
        mirrored, _ = _grid(expert, np.ascontiguousarray(rgb[:, ::-1]), own)
        seconds_flip += time.perf_counter() - start
        both = (grid + mirrored[:, ::-1]) / 2
        if training:  # the fit's rule: a training image's score is the largest over its unselected patches
            free = ~expert.model.selected[index * grid.size : (index + 1) * grid.size].numpy().reshape(grid.shape)
            if free.any():
                grid, both = np.where(free, grid, -np.inf), np.where(free, both, -np.inf)
        plain.append(float(grid.max()))
        flip.append(float(both.max()))
        descriptors.append(patches.double().mean(dim=0).numpy())
    empty = np.zeros(0)
    return Passes(np.array(plain), np.array(flip), empty, seconds_plain, seconds_flip), np.array(descriptors)


def global_distances(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each image's distance to the nearest training descriptor (a training image's own left out)."""
    inner = np.linalg.norm(train[:, None, :] - train[None, :, :], axis=-1)
    np.fill_diagonal(inner, np.inf)
    outer = np.linalg.norm(test[:, None, :] - train[None, :, :], axis=-1)
    return inner.min(axis=1), outer.min(axis=1)


def robust(train: np.ndarray) -> tuple[float, float]:
    """Median and 1.4826 x MAD of the training values (a scale of 1 where every value is equal)."""
    median = float(np.median(train))
    spread = MAD_SCALE * float(np.median(np.abs(train - median)))
    return median, spread if spread > 0 else 1.0


def fold(base: tuple[np.ndarray, np.ndarray], other: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """``base``'s scores where ``other`` is no more unusual, else ``other``'s robust z on ``base``'s scale."""
    (base_train, base_test), (other_train, other_test) = base, other
    bm, bs = robust(base_train)
    om, os_ = robust(other_train)

    def one(b: np.ndarray, o: np.ndarray) -> np.ndarray:
        folded: np.ndarray = np.maximum(b, bm + bs * (o - om) / os_)
        return folded

    return one(base_train, other_train), one(base_test, other_test)


def measure(train: np.ndarray, test: np.ndarray, samples: Sequence[Sample]) -> dict[str, Any]:
    """AUROC, each rule's tau / recall / false alarms, the one-false-alarm ceiling, per defect type."""
    labels = np.array([s.label for s in samples])
    normal, defect = test[labels == 0], test[labels == 1]
    row: dict[str, Any] = {"image_auroc": auroc(labels, test), "n_normal": int(normal.size)}
    for rule in RULES:
        tau = compute_thresholds(train, rule).tau
        row[rule] = {"tau": tau, "recall": float(np.mean(defect >= tau)), "false_alarms": int(np.sum(normal >= tau))}
    ranked = np.sort(normal)
    row["recall_at_1fa"] = float(np.mean(defect > ranked[-2])) if ranked.size >= 2 else None
    tau = row["ksigma"]["tau"]
    types: dict[str, Any] = {}
    for kind in sorted({s.defect_type for s in samples if s.label == 1}):
        chosen = np.array([s.label == 0 or s.defect_type == kind for s in samples])
        kind_scores = test[chosen]
        kind_labels = labels[chosen]
        types[kind] = {
            "image_auroc": auroc(kind_labels, kind_scores),
            "recall": float(np.mean(kind_scores[kind_labels == 1] >= tau)),
            "images": int(np.sum(kind_labels)),
        }
    row["per_type"] = types
    return row


def native_size(samples: Sequence[Sample]) -> int:
    """The training images' median long side, rounded up to a multiple of 32."""
    longest = float(np.median([max(_image_shape(s.path)) for s in samples]))
    return int(-(-longest // 32) * 32)


def datasets(names: list[str], limit_train: int | None, limit_test: int | None, seed: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in names:
        base = name.removesuffix("-varied")
        if base not in ("tire", "elpv"):
            raise EagleError(f"unknown dataset {name!r}; known: tire, elpv, tire-varied, elpv-varied")
        found = real_set(base, limit_train, limit_test, seed, tag="score-study")
        if found is not None:
            out[name] = found
    return out


def run_size(size: int, train: list[Sample], test: list[Sample], exposure: str = "image") -> dict[str, Any]:
    """Fit at one input size and exposure and score both image sets every way."""
    start = time.perf_counter()
    # the size is the input's long side here (``native`` is a size of the study's own), as an explicit --size is
    config = replace(ExpertConfig(), size=size, native_up_to=0, exposure=exposure)
    expert = fit([s.path for s in train], "study", config)
    fit_s = time.perf_counter() - start
    train_passes, train_desc = score_all(expert, train, training=True)
    test_passes, test_desc = score_all(expert, test, training=False)
    g_train, g_test = global_distances(train_desc, test_desc)
    return {
        "size": size,
        "input_hw": list(expert.model.config.input_hw or ()),
        "fit_s": fit_s,
        "train": train_passes,
        "test": test_passes,
        "global": (g_train, g_test),
        # The product's own numbers, to show the study's plain scores are the product's.
        "fit_train_scores": np.asarray(expert.model.train_scores),
        "inspect_scores": np.array([r.score for r in expert.inspect_many([s.path for s in test])]),
    }


def variants(runs: dict[str, dict[str, Any]]) -> dict[str, tuple[np.ndarray, np.ndarray, float]]:
    """Variant name -> (train scores, test scores, inspection seconds per image)."""
    out: dict[str, tuple[np.ndarray, np.ndarray, float]] = {}
    for label, run in runs.items():
        n = run["test"].plain.size
        per_plain = run["test"].seconds_plain / n
        per_flip = (run["test"].seconds_plain + run["test"].seconds_flip) / n
        plain = (run["train"].plain, run["test"].plain)
        flip = (run["train"].flip, run["test"].flip)
        out[f"{label} plain"] = (*plain, per_plain)
        out[f"{label} flip"] = (*flip, per_flip)
        out[f"{label} global"] = (*fold(plain, run["global"]), per_plain)
        out[f"{label} flip+global"] = (*fold(flip, run["global"]), per_flip)
    labels = list(runs)
    for i, a in enumerate(labels):
        for b in labels[i + 1 :]:
            if a.split("/")[1:] != b.split("/")[1:]:  # a pyramid folds two sizes of one exposure
                continue
            for way in ("plain", "flip"):
                ta, tb = out[f"{a} {way}"], out[f"{b} {way}"]
                train, test = fold((ta[0], ta[1]), (tb[0], tb[1]))
                out[f"pyramid {a}+{b} {way}"] = (train, test, ta[2] + tb[2])
    return out


# ---------------------------------------------------------------- sizes and orientations that vary

#: The varied sets keep 70-100% of each side of every image (independently, so the aspect ratio varies too).
CROP_LOW = 0.7


def vary(samples: Sequence[Sample], folder: Path, seed: int) -> list[Sample]:
    """Each image cropped to a seeded window and turned by a seeded multiple of 90 degrees, written as PNG.

    A defect's mask box is kept inside the window where it fits (elpv has no masks: a crop can cut a
    crack off a defective cell; both ways of preprocessing see the same images, so the comparison holds).
    """
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    out: list[Sample] = []
    for index, sample in enumerate(samples):
        rgb = load_rgb(sample.path)
        height, width = rgb.shape[:2]
        mask = None
        if sample.mask_path is not None:
            mask = np.asarray(Image.open(sample.mask_path).convert("L")) > 0
        ch = int(height * rng.uniform(CROP_LOW, 1.0))
        cw = int(width * rng.uniform(CROP_LOW, 1.0))
        top, left = int(rng.integers(0, height - ch + 1)), int(rng.integers(0, width - cw + 1))
        if mask is not None and mask.any():
            rows, cols = np.nonzero(mask)
            if rows.max() - rows.min() < ch and cols.max() - cols.min() < cw:
                top = int(np.clip(top, rows.max() - ch + 1, rows.min()))
                left = int(np.clip(left, cols.max() - cw + 1, cols.min()))
            else:
                top, left, ch, cw = 0, 0, height, width
        turns = int(rng.integers(0, 4))
        crop = np.rot90(rgb[top : top + ch, left : left + cw], turns)
        name = f"{index:04d}.png"
        Image.fromarray(np.ascontiguousarray(crop)).save(folder / name)
        mask_path = None
        if mask is not None:
            mask_path = folder / f"{index:04d}_mask.png"
            piece = np.rot90(mask[top : top + ch, left : left + cw], turns)
            Image.fromarray((np.ascontiguousarray(piece) * 255).astype(np.uint8)).save(mask_path)
        out.append(replace(sample, path=folder / name, mask_path=mask_path))
    return out


def run_varied(
    train: list[Sample], test: list[Sample], size: int, folder: Path, seed: int, exposures: Sequence[str] = ("image",)
) -> tuple[list[Sample], dict[str, tuple[np.ndarray, np.ndarray, float]], dict[str, float]]:
    """The fixed input (``resize``) against ``--preprocess scale`` on varied copies of a data set, each exposure."""
    train_v = vary(train, folder / "train", seed)
    test_v = vary(test, folder / "test", seed + 1)
    found: dict[str, tuple[np.ndarray, np.ndarray, float]] = {}
    fit_times: dict[str, float] = {}
    modes = (("resize", "fixed input"), ("scale", "own aspect, fixed scale (--preprocess scale)"))
    for exposure, (mode, label) in ((e, m) for e in exposures for m in modes):
        start = time.perf_counter()
        config = ExpertConfig(size=size, native_up_to=0, preprocess=mode, exposure=exposure)
        expert = fit([s.path for s in train_v], "varied", config)
        label = f"{label}, exposure {exposure}"
        fit_times[f"{mode}_{exposure}_fit_s"] = time.perf_counter() - start
        start = time.perf_counter()
        scores = np.array([r.score for r in expert.inspect_many([s.path for s in test_v])])
        per_image = (time.perf_counter() - start) / len(test_v)
        found[f"{size} {label}"] = (np.asarray(expert.model.train_scores), scores, per_image)
    return test_v, found, fit_times


def markdown(rows: list[dict[str, Any]], baseline_s: dict[str, float]) -> str:
    head = ["data", "variant", "image AUROC", "recall @1 FA (ceiling)"]
    head += [f"{rule}: recall / FA" for rule in RULES] + ["inspect cost"]
    types = sorted({t for row in rows if row["data"] == "tire" for t in row["per_type"]})
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        ceiling = "–" if row["recall_at_1fa"] is None else f"{row['recall_at_1fa']:.3f}"  # under 2 normals: none
        cells = [row["data"], row["variant"], f"{row['image_auroc']:.3f}", ceiling]
        cells += [f"{row[r]['recall']:.3f} / {row[r]['false_alarms']} of {row['n_normal']}" for r in RULES]
        cells.append(f"{row['seconds_per_image'] / baseline_s[row['data']]:.2f}x")
        lines.append("| " + " | ".join(cells) + " |")
    if types:
        lines += ["", "| tire variant | " + " | ".join(f"{t}: AUROC / recall @ksigma" for t in types) + " |"]
        lines.append("|" + "---|" * (len(types) + 1))
        for row in rows:
            if row["data"] == "tire":
                per = row["per_type"]
                cells = [f"{per[t]['image_auroc']:.3f} / {per[t]['recall']:.3f}" if t in per else "–" for t in types]
                lines.append(f"| {row['variant']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--sizes", default="320,native,448", help="comma-separated long sides, or native")
    parser.add_argument(
        "--datasets", default="tire,elpv,tire-varied,elpv-varied", help="comma-separated: tire, elpv, and their -varied"
    )
    parser.add_argument(
        "--exposures", default="none,image", help="comma-separated exposure settings to fit each size at"
    )
    parser.add_argument("--varied-size", type=int, default=320, help="long side for the -varied sets")
    parser.add_argument("--limit-train", type=int, default=None, help="seeded training subset per dataset")
    parser.add_argument("--limit-test", type=int, default=None, help="seeded test subset (keeps the class ratio)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the subsets")
    parser.add_argument("--out", help="folder for score_study.md and score_study.json")
    args = parser.parse_args(argv)
    rows: list[dict[str, Any]] = []
    baseline_s: dict[str, float] = {}
    checks: dict[str, Any] = {}
    try:
        data = datasets(
            [d.strip() for d in args.datasets.split(",") if d.strip()], args.limit_train, args.limit_test, args.seed
        )
        for name, (train, test) in data.items():
            if name.endswith("-varied"):
                with tempfile.TemporaryDirectory(prefix="eagle-varied-") as folder:
                    print(
                        f"[score-study] {name}: {len(train)} train, {len(test)} test, cropped and turned",
                        file=sys.stderr,
                    )
                    exposures = [e.strip() for e in args.exposures.split(",") if e.strip()]
                    test_v, found_v, fit_times = run_varied(
                        train, test, args.varied_size, Path(folder), args.seed, exposures
                    )
                    checks[name] = fit_times
                    baseline_s[name] = next(iter(found_v.values()))[2]
                    for variant, (train_scores, test_scores, seconds) in found_v.items():
                        row = measure(train_scores, test_scores, test_v)
                        rows.append({"data": name, "variant": variant, "seconds_per_image": seconds, **row})
                continue
            sizes: list[int] = []
            for text in args.sizes.split(","):
                size = native_size(train) if text.strip() == "native" else int(text)
                if size not in sizes:
                    sizes.append(size)
            runs: dict[str, dict[str, Any]] = {}
            exposures = [e.strip() for e in args.exposures.split(",") if e.strip()]
            for size, exposure in ((size, exposure) for exposure in exposures for size in sizes):
                label = f"{size}/{exposure}"
                print(f"[score-study] {name} at {label}: {len(train)} train, {len(test)} test", file=sys.stderr)
                run = run_size(size, train, test, exposure)
                runs[label] = run
                checks[f"{name} {label}"] = {
                    "input_hw": run["input_hw"],
                    "fit_s": run["fit_s"],
                    "test_plain_vs_inspect_max_diff": float(np.max(np.abs(run["test"].plain - run["inspect_scores"]))),
                    "train_plain_vs_fit_max_diff": float(np.max(np.abs(run["train"].plain - run["fit_train_scores"]))),
                }
                print(f"[score-study] {json.dumps(checks[f'{name} {label}'])}", file=sys.stderr)
            found = variants(runs)
            baseline_s[name] = found[f"{next(iter(runs))} plain"][2]
            for variant, (train_scores, test_scores, seconds) in found.items():
                row = measure(train_scores, test_scores, test)
                rows.append({"data": name, "variant": variant, "seconds_per_image": seconds, **row})
    except EagleError as exc:
        print(f"score-study: error: {exc}", file=sys.stderr)
        return 2
    table = markdown(rows, baseline_s)
    print(table)
    if args.out:
        document = {"format_version": FORMAT_VERSION, "checks": checks, "rows": rows}
        write_run_record(Path(args.out), "score_study", argv, document, table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
