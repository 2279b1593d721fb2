"""Would an int8 OpenVINO backbone pass issue 26's check? Float32 against int8 on tire and elpv, in one run.

For each set: fit at the defaults (or take ``--elpv-model`` / ``--tire-model``), export to OpenVINO,
quantize the backbone's convolutions with NNCF's post-training quantization calibrated on the
set's seeded training images, as many as the model has (its own, for a model fitted here or by
``eagle fit --limit-train`` with the same count), and inspect every test image with both graphs. The search, the
smoothing and everything after the backbone stay float32 (quantizing them moved scores by up to 5x:
the search's proof and distances need float32). Prints per set: decisions at tau alike, image AUROC
of each, the largest score change, ms per image of each, and whether the issue's acceptance check
(decisions alike on at least 99% and AUROC within 0.005) holds.

    pip install nncf   # not a dependency of eagle-iad: this study is why
    .venv/bin/python benchmarks/export_int8.py [--datasets elpv,tire] [--limit-test N]

The result decides whether ``eagle export`` offers int8 (docs/DEPLOY.md, "int8").
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from real_sets import real_set

from eagle_iad.eval.metrics import auroc
from eagle_iad.expert import ExpertConfig, fit, load_expert, save
from eagle_iad.expert.export import OPENVINO_XML, export_expert
from eagle_iad.expert.runtime import host_input
from eagle_iad.images import load_rgb

AGREEMENT = 0.99
AUROC_DROP = 0.005


def backbone_only(model: Any) -> Any:
    """NNCF's ignored scope that leaves only the backbone's convolutions to quantize.

    Every other operation type is ignored, and so are the map's Gaussian smoothing convolutions
    (single-channel kernels), which are ``Convolution`` nodes like the backbone's.
    """
    import nncf

    keep = {"Convolution", "GroupConvolution"}
    skip = {"Parameter", "Result", "Constant", "Convert"}
    smoothing = []
    for op in model.get_ordered_ops():
        if op.get_type_name() == "Convolution":
            shape = op.input(1).get_partial_shape()
            if shape.is_static and tuple(shape.to_shape())[:2] == (1, 1):
                smoothing.append(op.get_friendly_name())
    types = sorted({op.get_type_name() for op in model.get_ordered_ops()} - keep - skip)
    return nncf.IgnoredScope(names=smoothing, types=types, validate=False)


def study(name: str, model_dir: str | None, limit_test: int | None, scratch: Path) -> dict[str, Any] | None:
    import nncf
    import openvino as ov

    chosen = real_set(name, None, limit_test, 0, tag="int8")
    if chosen is None:
        return None
    train, test = chosen
    if model_dir is None:
        expert = fit([s.path for s in train], name if name == "tire" else "mono", ExpertConfig())
        model_dir = str(save(expert.model, scratch / f"{name}-model"))
    expert = load_expert(model_dir)
    config = expert.model.config
    tau = expert.thresholds.tau
    folder = scratch / f"{name}-openvino"
    export_expert(expert, "openvino", folder)
    core = ov.Core()
    graph = core.read_model(str(folder / OPENVINO_XML))
    # The set's seeded training images (those `eagle fit --limit-train` picks; a model keeps only names).
    calibration = [host_input(load_rgb(s.path), config)[0][None] for s in train[: len(expert.model.train_images)]]
    start = time.perf_counter()
    quantized = nncf.quantize(
        graph, nncf.Dataset(calibration), subset_size=len(calibration), ignored_scope=backbone_only(graph)
    )
    quantize_s = time.perf_counter() - start
    inputs = [host_input(load_rgb(s.path), config)[0][None] for s in test]
    labels = np.array([s.label for s in test])
    rows: dict[str, Any] = {"set": name, "train": len(calibration), "test": len(test), "quantize_s": quantize_s}
    scores = {}
    for kind, model in (("float32", graph), ("int8", quantized)):
        compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        compiled(inputs[0])  # first-run allocations
        start = time.perf_counter()
        scores[kind] = np.array([float(compiled(x)[compiled.output("score")][0]) for x in inputs])
        rows[f"{kind}_ms"] = (time.perf_counter() - start) / len(inputs) * 1000
        rows[f"{kind}_auroc"] = auroc(labels, scores[kind])
    rows["agreement"] = float(np.mean((scores["float32"] >= tau) == (scores["int8"] >= tau)))
    rows["max_rel_change"] = float(np.max(np.abs(scores["int8"] - scores["float32"]) / np.abs(scores["float32"])))
    rows["passes"] = rows["agreement"] >= AGREEMENT and rows["float32_auroc"] - rows["int8_auroc"] <= AUROC_DROP
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="elpv,tire")
    parser.add_argument("--limit-test", type=int, help="test images per set (default: all)")
    parser.add_argument("--elpv-model", help="a fitted elpv model (default: fit one at the defaults)")
    parser.add_argument("--tire-model", help="a fitted tire model (default: fit one at the defaults)")
    args = parser.parse_args(argv)
    try:
        import nncf
    except ImportError:
        print("this study needs NNCF: pip install nncf", file=sys.stderr)
        return 2
    nncf.set_log_level(logging.ERROR)  # its per-node notes go to stdout, where the table goes
    given = {"elpv": args.elpv_model, "tire": args.tire_model}
    results = []
    with tempfile.TemporaryDirectory(prefix="eagle-int8-") as scratch:
        for name in args.datasets.split(","):
            row = study(name, given.get(name), args.limit_test, Path(scratch))
            if row is not None:
                results.append(row)
    print("| set | train / test | decisions alike | AUROC float32 | AUROC int8 | largest score change "
          "| ms/image float32 | ms/image int8 | int8 / float32 time | passes |")  # fmt: skip
    print("|---" * 10 + "|")
    for r in results:
        print(
            f"| {r['set']} | {r['train']} / {r['test']} | {r['agreement']:.1%} | {r['float32_auroc']:.4f} "
            f"| {r['int8_auroc']:.4f} | {r['max_rel_change']:.1%} | {r['float32_ms']:.1f} | {r['int8_ms']:.1f} "
            f"| {r['int8_ms'] / r['float32_ms']:.2f} | {'yes' if r['passes'] else 'no'} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
