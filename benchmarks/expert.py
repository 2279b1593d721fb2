"""Where the expert's time and memory go, each optimised step as a ratio to its reference, in one run.

Prints: fit time by stage; the greedy coreset against the literal reference loop (kept here) on
the same projected bank, with the picks compared; the machine's float32 GEMM throughput and the
exact nearest-neighbour search's achieved rate as a fraction of it (faiss and torch); the
leave-own-out training pass against one plain scoring pass of the same patches; inspection
images/s of 64 images one at a time and in chunks (4, as `eagle inspect`; the fit batch); peak
memory of whole fits by training-set size, each in a fresh process (``--sizes``; beyond the 441
normal elpv mono cells the set is the real cells again under the 8 flips/rotations of the square,
then those 3% darker per round, written as PNGs to a temporary folder).

    .venv/bin/python benchmarks/expert.py [--train 200] [--reference-picks 300] [--sizes 200,1000] [--with-5000]
    .venv/bin/python benchmarks/expert.py --memory-only --sizes 200,1000,5000 [--memory-size 64]
    .venv/bin/python benchmarks/expert.py --inspect-model runs/demo/model
    .venv/bin/python benchmarks/expert.py --memory-only --sizes 200,5000 --memory-size 320 --memory-ratio 0.1 -k M
    .venv/bin/python benchmarks/expert.py --inspect-models M/fit-200-320px,M/fit-5000-320px
    .venv/bin/python benchmarks/expert.py --coreset-memory 200,1000 [--coreset-ratio 0.01] [--against REV]
    .venv/bin/python benchmarks/expert.py --pooling [--train 10] [--inspect 16] [--size 320]

The memory fits use a small input (``--memory-size``, 64 px = 8 x 8 patches per image) and a 1%
coreset so that 5,000 images fit in minutes on two cores; what they show is how memory grows with
the number of training patches, whatever the input size.

The reference greedy costs one full pass over the projected bank per pick, the same for every
pick, so by default it is timed on its first ``--reference-picks`` picks and extrapolated (and
those picks are checked against the fast sampler's); ``--reference-picks 0`` runs it whole.
Every figure is a best-of or single wall time on whatever else the machine runs: read the load
average printed with them.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from eagle_iad.data import Sample, get_layout
from eagle_iad.data.selection import select_training
from eagle_iad.expert import Expert, ExpertConfig, fit, load_expert
from eagle_iad.expert.coreset import ApproximateGreedyCoreset
from eagle_iad.expert.leave_own_out import leave_own_out_scores
from eagle_iad.expert.patchcore import INSPECT_BATCH
from eagle_iad.expert.search import FaissExactSearch, NearestNeighbourSearch, PrunedExactSearch, TorchExactSearch
from eagle_iad.expert.store import save


def timed(fn: Callable[[], Any], repeat: int = 1) -> tuple[float, Any]:
    """Best wall time of ``repeat`` calls (least disturbed by other load) and the last result."""
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def load() -> str:
    return "load average " + " ".join(f"{v:.2f}" for v in os.getloadavg())


def train_paths(count: int, folder: Path) -> list[Path]:
    """``count`` elpv mono training cells: the real ones, then flipped/rotated copies as PNGs, then
    those again 3% darker per round (so that no two are identical: an identical copy scores 0)."""
    cells = get_layout("elpv").samples(None, "mono", "train")
    if count <= len(cells):
        return [s.path for s in select_training(cells, count, 0)]
    from PIL import Image

    from eagle_iad.images import load_rgb

    paths = [s.path for s in cells]
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(len(cells), count):
        rgb = load_rgb(cells[i % len(cells)].path)
        variant = (i // len(cells)) % 8
        rgb = np.rot90(rgb[:, ::-1] if variant >= 4 else rgb, k=variant % 4)
        shade = i // (8 * len(cells))  # past the 8 symmetries (3,528 cells): 3% darker a round, not copies
        if shade:
            rgb = np.clip(rgb.astype(np.float32) * (1.0 - 0.03 * shade), 0, 255).astype(np.uint8)
        path = folder / f"cell_{i}.png"
        Image.fromarray(np.ascontiguousarray(rgb)).save(path)
        paths.append(path)
    return paths


def reference_greedy(points: np.ndarray, sq_norms: np.ndarray, min_dist: np.ndarray, picks: int) -> np.ndarray:
    """The greedy loop as first written: one full matrix-vector product per pick, one BLAS thread
    (the definition: a multi-threaded product rounds the rows at the threads' split differently)."""
    from threadpoolctl import threadpool_limits

    chosen = np.empty(picks, dtype=np.int64)
    with threadpool_limits(limits=1, user_api="blas"):
        for i in range(picks):
            pick = int(np.argmax(min_dist))
            chosen[i] = pick
            np.minimum(min_dist, ApproximateGreedyCoreset._distances(points, sq_norms, pick), out=min_dist)
    return chosen


def bench_coreset(features: np.ndarray, reference_picks: int) -> None:
    from eagle_iad.expert import coreset

    sampler = ApproximateGreedyCoreset()
    target = int(features.shape[0] * sampler.ratio)
    project_s, points = timed(lambda: sampler.project(features))
    sq_norms = np.einsum("ij,ij->i", points, points)
    start_s, min_dist = timed(lambda: sampler.initial_distances(points, sq_norms))

    def lazy() -> np.ndarray:
        with coreset._one_blas_thread():  # as ApproximateGreedyCoreset.select runs it
            chosen: np.ndarray = coreset._LazyGreedy(points, sq_norms, min_dist.copy()).run(target, None)
        return chosen

    fast_s, fast = timed(lazy)
    picks = target if reference_picks <= 0 else min(target, reference_picks)
    ref_s, ref = timed(lambda: reference_greedy(points, sq_norms, min_dist.copy(), picks))
    ref_total = ref_s * target / picks
    how = "measured" if picks == target else f"{picks} picks timed, x{target / picks:.1f} extrapolated"
    print(f"\n== greedy coreset: {target} picks from {points.shape[0]} x {points.shape[1]} ({load()})")
    print(f"projection {project_s:.2f} s, anchor distances {start_s:.2f} s (both shared with the reference)")
    print(f"lazy blocked greedy {fast_s:.2f} s; reference loop {ref_total:.1f} s ({how})")
    print(f"speed-up {ref_total / fast_s:.1f}x; picks identical: {bool(np.array_equal(fast[:picks], ref))}")


def gemm_kernel() -> str:
    """Which BLAS runs the float32 matmuls: torch's (MKL here) and numpy's (OpenBLAS, with its core type)."""
    blas = "MKL" if "mkl" in torch.__config__.show().lower() else "torch's BLAS"
    isa = torch.backends.cpu.get_cpu_capability()
    try:
        from threadpoolctl import threadpool_info

        numpy_blas = ", ".join(
            f"{i.get('internal_api')} {i.get('architecture', '')}".strip()
            for i in threadpool_info()
            if i["user_api"] == "blas"
        )
    except ImportError:
        numpy_blas = "unknown"
    env = {k: os.environ[k] for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE") if k in os.environ}
    return f"torch: {blas} {isa}; numpy: {numpy_blas or 'none'} {env or '(OPENBLAS_CORETYPE unset)'}"


def bench_search(features: torch.Tensor, ids: torch.Tensor, selected: torch.Tensor, n: int, rows: int) -> None:
    """Search timings at torch's thread count and at one thread.

    Two threads on two cores shared with other processes spend most of each small operation waiting
    at OpenMP barriers (an elementwise subtraction took 42 ms with two threads, 0.5 ms with one, at
    load 5.6), so both are shown, each against the GEMM rate measured at the same thread count.
    """
    default = torch.get_num_threads()
    for threads in sorted({default, 1}, reverse=True):
        torch.set_num_threads(threads)
        try:
            _bench_search(features, ids, selected, n, rows)
        finally:
            torch.set_num_threads(default)


def _bench_search(features: torch.Tensor, ids: torch.Tensor, selected: torch.Tensor, n: int, rows: int) -> None:
    bank, bank_ids = features[selected].contiguous(), ids[selected].contiguous()
    unselected = features[~selected]
    step = max(1, unselected.shape[0] // rows)
    queries = unselected[::step][:rows].contiguous()
    dim = features.shape[1]
    flop = 2.0 * queries.shape[0] * bank.shape[0] * dim
    a, b = torch.randn(1024, dim), torch.randn(dim, bank.shape[0])
    gemm_s, _ = timed(lambda: torch.mm(a, b), repeat=3)
    peak = 2.0 * 1024 * dim * bank.shape[0] / gemm_s / 1e9
    print(f"\n== exact 1-NN search: {queries.shape[0]} queries x {bank.shape[0]} bank x {dim} ({load()})")
    print(
        f"machine float32 GEMM (1024 x {dim} @ {dim} x {bank.shape[0]}, {torch.get_num_threads()} threads): "
        f"{peak:.1f} GFLOP/s [{gemm_kernel()}]"
    )
    print("rates are brute-force-equivalent (2 x queries x bank x dim / time); 'pruned' does fewer FLOPs")
    times = {}
    for name, search in searches().items():
        search.fit(bank, bank_ids)
        plain_s, _ = timed(partial(search.search, queries), repeat=2)
        times[name] = plain_s
        rate = flop / plain_s / 1e9
        extra = ""
        if isinstance(search, PrunedExactSearch):
            st = search.stats
            extra = (
                f"; full comparisons {st['checked'] / max(1, st['queries']):.1f} per query, "
                f"{st['fallback']} of {st['queries']} queries left to the plain search"
            )
        print(f"{name:6s} {plain_s:.2f} s = {rate:.1f} GFLOP/s = {rate / peak:.2f} of the GEMM rate{extra}")
    print(
        f"inspect search: pruned / faiss (the old default) time {times['pruned'] / times['faiss']:.2f}x, "
        f"pruned / torch {times['pruned'] / times['torch']:.2f}x"
    )
    subset = torch.zeros(n, dtype=torch.bool)
    subset[: max(2, n // 4)] = True
    keep = subset[ids.long()]
    sub_f, sub_ids, sub_sel = features[keep], ids[keep], selected[keep]
    loo_flop = 2.0 * sub_f.shape[0] * bank.shape[0] * dim
    print(f"\n== leave-own-out pass vs one plain pass of the same patches ({int(subset.sum())} images)")
    loo = {}
    for name, search in searches().items():
        search.fit(bank, bank_ids)
        own = sub_f[~sub_sel].contiguous()
        plain_s, _ = timed(partial(search.search, own))
        loo_s, _ = timed(partial(leave_own_out_scores, sub_f, sub_ids, sub_sel, search, int(subset.sum())))
        loo[name] = loo_s
        rate = loo_flop / loo_s / 1e9
        print(
            f"{name:6s} plain {plain_s:.2f} s  leave-own-out {loo_s:.2f} s  ratio {loo_s / plain_s:.2f}x; "
            f"leave-own-out {rate:.1f} GFLOP/s = {rate / peak:.2f} of the GEMM rate"
        )
    print(f"leave-own-out: pruned / faiss (the old default) time {loo['pruned'] / loo['faiss']:.2f}x")


def searches() -> dict[str, NearestNeighbourSearch]:
    return {"torch": TorchExactSearch(), "faiss": FaissExactSearch(), "pruned": PrunedExactSearch()}


class PeakMemory:
    """Samples ``/proc/self/status`` so the peak anonymous memory can be told from mapped scratch pages."""

    def __init__(self) -> None:
        self.peak_anon_kb = 0
        self.peak_file_kb = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
            self.peak_anon_kb = max(self.peak_anon_kb, int(fields.get("RssAnon", "0 kB").split()[0]))
            self.peak_file_kb = max(self.peak_file_kb, int(fields.get("RssFile", "0 kB").split()[0]))

    def stop(self) -> dict[str, float]:
        self._stop.set()
        self._thread.join()
        # VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the forking parent into the child.
        status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
        return {
            "peak_rss_mib": int(status["VmHWM"].split()[0]) / 1024,
            "peak_anon_mib": self.peak_anon_kb / 1024,
            "peak_file_mib": self.peak_file_kb / 1024,
        }


def memory_child(count: int, ratio: float, size: int, keep: str) -> None:
    """One fit in this (fresh) process; prints its timings and peak memory as JSON (and saves the
    model under ``keep``, if given, for ``benchmarks/inspect_stages.py --model``)."""
    with tempfile.TemporaryDirectory(prefix="eagle-bench-") as folder:
        paths = train_paths(count, Path(folder))
        monitor = PeakMemory()
        start = time.perf_counter()
        model = fit(paths, "bench", ExpertConfig(coreset_ratio=ratio, size=size, native_up_to=0)).model
        total = time.perf_counter() - start
        peak = monitor.stop()
        if keep:
            save(model, Path(keep) / f"fit-{count}-{size}px")
        patches = int(model.selected.numel())
        bank = int(model.bank.shape[0])
        print(json.dumps({"images": count, "patches": patches, "bank": bank, "fit_s": total, **model.timings, **peak}))


def extract_child(count: int, size: int, folder: Path) -> None:
    """Write ``count`` images' training features to ``folder/features.f32``, as a fit does."""
    from eagle_iad.expert.backbones import build_backbone
    from eagle_iad.expert.features import RowFile
    from eagle_iad.expert.fitting import _embed_training, with_input_size
    from eagle_iad.expert.preprocess import backbone_image_size

    paths = train_paths(count, folder / "png")
    config = with_input_size(ExpertConfig(size=size, native_up_to=0), paths)
    extractor = build_backbone(config.backbone, backbone_image_size(config))
    features = _embed_training(extractor, paths, config, False, None, folder).features
    assert isinstance(features, RowFile)
    features.close()
    print(json.dumps({"rows": features.rows, "dim": features.dim}))


def coreset_child(folder: Path, rows: int, dim: int, ratio: float, module: str) -> None:
    """The greedy coreset on the features in ``folder`` (this code, or a coreset module file); prints JSON."""
    import hashlib
    import importlib.util

    from eagle_iad.expert import coreset
    from eagle_iad.expert.features import RowFile

    if module:
        spec = importlib.util.spec_from_file_location("coreset_variant", module)
        assert spec is not None and spec.loader is not None
        coreset = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = coreset  # dataclasses look their module up there
        spec.loader.exec_module(coreset)
    features = RowFile.__new__(RowFile)  # the existing file, read only
    features.path, features.dim, features.rows, features._writer = folder / "features.f32", dim, rows, None

    def status() -> dict[str, int]:
        lines = Path("/proc/self/status").read_text().splitlines()
        return {k: int(v.split()[0]) for k, v in (line.split(":", 1) for line in lines) if v.strip().endswith("kB")}

    base = status()["VmRSS"]
    start = time.perf_counter()
    chosen = coreset.ApproximateGreedyCoreset(ratio=ratio).select(features)
    seconds = time.perf_counter() - start
    peak = status()["VmHWM"]
    digest = hashlib.sha256(np.ascontiguousarray(chosen, dtype=np.int64).tobytes()).hexdigest()[:16]
    print(
        json.dumps(
            {"picks": int(chosen.size), "s": seconds, "base_mib": base / 1024, "peak_mib": peak / 1024, "sha": digest}
        )
    )


def bench_coreset_memory(sizes: list[int], ratio: float, size: int, against: str) -> None:
    """The fit's coreset stage on real features on disk, each variant in a fresh process on the same file.

    ``against`` (a git revision) adds that revision's ``coreset.py`` as a second variant, run with this
    checkout's other modules.
    """
    print(f"\n== the fit's coreset stage (features on disk), input {size} px, ratio {ratio} ({load()})")

    def child(*extra: str) -> dict[str, Any]:
        done = subprocess.run([sys.executable, __file__, *extra], capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"benchmark child {extra[:2]} failed:\n{done.stderr}")
        result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        return result

    with tempfile.TemporaryDirectory(prefix="eagle-bench-") as scratch:
        variants = [("this checkout", "")]
        if against:
            old = Path(scratch) / "coreset_against.py"
            source = subprocess.run(
                ["git", "show", f"{against}:src/eagle_iad/expert/coreset.py"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            old.write_text(source)
            variants.append((against, str(old)))
        for count in sizes:
            folder = Path(scratch) / str(count)
            folder.mkdir()
            shape = child("--extract-child", str(count), "--size", str(size), "--folder", str(folder))
            results = []
            for name, module in variants:
                r = child(
                    "--coreset-child", str(folder), "--rows", str(shape["rows"]), "--dim", str(shape["dim"]),
                    "--coreset-ratio", str(ratio), "--module", module,
                )  # fmt: skip
                results.append(r)
                print(
                    f"{count:5d} images ({shape['rows']} patches, {r['picks']} picks), {name}: {r['s']:.0f} s, "
                    f"peak RSS {r['peak_mib']:.0f} MiB ({r['peak_mib'] - r['base_mib']:.0f} above the "
                    f"{r['base_mib']:.0f} held before: {(r['peak_mib'] - r['base_mib']) * 2**20 / shape['rows']:.0f} "
                    f"bytes per patch)  ({load()})",
                    flush=True,
                )
            if len(results) == 2:
                new, old_r = results
                print(
                    f"      this / {against}: time {new['s'] / old_r['s']:.2f}x, peak RSS "
                    f"{new['peak_mib'] / old_r['peak_mib']:.2f}x; picks identical: {new['sha'] == old_r['sha']}"
                )
            (folder / "features.f32").unlink()


def bench_memory(sizes: list[int], ratio: float, size: int, keep: str) -> None:
    print(f"\n== whole fits in fresh processes, input {size} px, coreset ratio {ratio} ({load()})")
    for count in sizes:
        out = subprocess.run(
            [
                sys.executable,
                __file__,
                "--memory-child",
                str(count),
                "--memory-ratio",
                str(ratio),
                "--memory-size",
                str(size),
                "--keep-models",
                keep,
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        r = json.loads(out.strip().splitlines()[-1])
        print(
            f"{count:5d} images ({r['patches']} patches, bank {r['bank']}): fit {r['fit_s']:.0f} s "
            f"(features {r['features_s']:.0f} / coreset {r['coreset_s']:.0f} / training scores "
            f"{r['train_scores_s']:.0f} / map calibration {r['calibration_s']:.0f} / "
            f"references {r['references_s']:.0f}); "
            f"peak RSS {r['peak_rss_mib']:.0f} MiB (anonymous {r['peak_anon_mib']:.0f}, "
            f"file-backed {r['peak_file_mib']:.0f})  ({load()})",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", type=int, default=200, help="training cells for the main fit")
    parser.add_argument("--inspect", type=int, default=64, help="test cells for the batch throughput")
    parser.add_argument("--reference-picks", type=int, default=300, help="0 = time the whole reference greedy")
    parser.add_argument("--search-queries", type=int, default=8192, help="queries for the search timings")
    parser.add_argument("--sizes", default="200,1000", help="training-set sizes for the memory fits ('' = none)")
    parser.add_argument("--with-5000", action="store_true", help="add a 5000-image memory fit (long)")
    parser.add_argument("--memory-ratio", type=float, default=0.01, help="coreset ratio of the memory fits")
    parser.add_argument("--memory-size", type=int, default=64, help="input side of the memory fits (8 x 8 patches)")
    parser.add_argument("--memory-only", action="store_true", help="only the memory fits")
    parser.add_argument("-k", "--keep-models", default="", help="save each memory fit's model in this folder")
    parser.add_argument("--inspect-model", help="only the inspect figures, with this saved model (runs/demo/model)")
    parser.add_argument("--inspect-models", help="only: inspection speed of these saved models (comma-separated)")
    parser.add_argument(
        "--inspect-images", default="", help="with --inspect-models: the images under this folder, not elpv test cells"
    )
    parser.add_argument("--size", type=int, default=320, help="input side of the main fit (fit's default 320)")
    parser.add_argument("--coreset-ratio", type=float, default=0.1, help="coreset ratio of the main fit (default 0.1)")
    parser.add_argument(
        "--coreset-memory", default="", help="only the coreset stage's memory at these training-set sizes (e.g. 1000)"
    )
    parser.add_argument("--against", default="", help="with --coreset-memory: also run this git revision's coreset")
    parser.add_argument("--pooling", action="store_true", help="only: channel pooling, one product vs the reference")
    parser.add_argument("--memory-child", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--extract-child", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--coreset-child", default="", help=argparse.SUPPRESS)
    parser.add_argument("--folder", default="", help=argparse.SUPPRESS)
    parser.add_argument("--rows", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--dim", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--module", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        memory_child(args.memory_child, args.memory_ratio, args.memory_size, args.keep_models)
        return
    if args.extract_child:
        extract_child(args.extract_child, args.size, Path(args.folder))
        return
    if args.coreset_child:
        coreset_child(Path(args.coreset_child), args.rows, args.dim, args.coreset_ratio, args.module)
        return
    if args.pooling:
        with tempfile.TemporaryDirectory(prefix="eagle-bench-") as folder:
            bench_pooling(train_paths(args.train, Path(folder)), args.inspect, args.size)
        return
    if args.coreset_memory:
        sizes = [int(v) for v in args.coreset_memory.split(",")]
        bench_coreset_memory(sizes, args.coreset_ratio, args.size, args.against)
        return

    print(f"torch threads {torch.get_num_threads()}, cpus {os.cpu_count()}, {load()}")
    if args.inspect_models:
        images = Path(args.inspect_images) if args.inspect_images else None
        bench_inspect_models(args.inspect_models.split(","), args.inspect, images=images)
        return
    if args.inspect_model:
        bench_inspect(load_expert(args.inspect_model), args.inspect)
        return
    if not args.memory_only:
        with tempfile.TemporaryDirectory(prefix="eagle-bench-") as folder:
            paths = train_paths(args.train, Path(folder))
            main_fit(paths, args)
    sizes = [int(s) for s in args.sizes.split(",") if s] + ([5000] if args.with_5000 else [])
    if sizes:
        bench_memory(sizes, args.memory_ratio, args.memory_size, args.keep_models)


def bench_pooling(paths: list[Path], count: int, size: int) -> None:
    """The channel pooling as one matrix product against PatchCore's pool-after-pool reference.

    Both on the backbone's real stage maps (``size`` px), and both inside ``Expert.inspect`` of the
    same ``count`` test cells with a model fitted on ``paths`` (the module's ``aggregate`` swapped
    for the reference), interleaved, best of 3; the scores must agree to float rounding.
    """
    import eagle_iad.expert.patchcore as patchcore_module
    from eagle_iad.expert import ExpertConfig, fit
    from eagle_iad.expert.features import aggregate, aggregate_reference

    expert = fit(paths, "bench", ExpertConfig(size=size, native_up_to=0, seed=0))
    test = [s.path for s in get_layout("elpv").samples(None, "mono", "test")[:count]]
    variants = {"reference poolings": aggregate_reference, "one product": aggregate}
    best: dict[str, float] = dict.fromkeys(variants, float("inf"))
    scores: dict[str, list[float]] = {}
    for _ in range(3):
        for name, function in variants.items():
            patchcore_module.aggregate = function  # type: ignore[attr-defined]
            try:
                expert.inspect(test[0])  # warm-up (cached pooling map, allocator)
                seconds, results = timed(lambda: [expert.inspect(p) for p in test])
            finally:
                patchcore_module.aggregate = aggregate  # type: ignore[attr-defined]
            best[name] = min(best[name], seconds)
            scores[name] = [float(r.score) for r in results]
    difference = max(abs(a - b) for a, b in zip(*scores.values(), strict=True))
    print(f"\n== channel pooling: inspect {len(test)} elpv cells at {size} px ({load()})")
    reference = len(test) / best["reference poolings"]
    for name in variants:
        rate = len(test) / best[name]
        print(f"{name:<20} {rate:6.2f} images/s  {rate / reference:5.2f}x")
    print(f"largest score difference {difference:.3g} (scores around {np.median(scores['one product']):.3g})")


def bench_inspect_models(paths: list[str], count: int, repeat: int = 3, images: Path | None = None) -> None:
    """Images/s of ``eagle inspect``'s scoring with each saved model on the same ``count`` elpv test
    cells (or the first ``count`` PNGs under ``images``, sorted), rounds interleaved (best of ``repeat``)
    so that a change in the machine's load hits every model alike, and each model's rate as a ratio to
    the first's: e.g. a model fitted on 5,000 images against one fitted on 200 (its bank, hence its
    search, is what differs), or one product's model at two input sizes."""
    if images is not None:
        test = sorted(images.rglob("*.png"))[:count]
    else:
        test = [s.path for s in get_layout("elpv").samples(None, "mono", "test")[:count]]
    experts = [load_expert(p) for p in paths]
    for expert in experts:
        expert.inspect_many(test[:2])  # warm-up
    best = [float("inf")] * len(experts)
    for _ in range(repeat):
        for i, expert in enumerate(experts):
            seconds, _ = timed(lambda: expert.inspect_many(test, batch=INSPECT_BATCH))  # noqa: B023 (called at once)
            best[i] = min(best[i], seconds)
    print(f"\n== inspect {len(test)} images with each model, best of {repeat} ({load()})")
    for path, expert, seconds in zip(paths, experts, best, strict=True):
        model = expert.model
        rate = len(test) / seconds
        print(
            f"{path}: {len(model.train_images)} training images, bank {model.bank.shape[0]}: {rate:.2f} images/s "
            f"({seconds / best[0]:.2f}x the first's time)"
        )


def bench_inspect(expert: Expert, count: int) -> None:
    """Images/s of ``eagle inspect``'s scoring on the same ``count`` images: one image per call, then
    all in one call, in chunks of ``INSPECT_BATCH`` (what ``eagle inspect`` uses) and of the model's
    ``batch_size`` (what it used before).

    Batching saves per-call overhead (thread hand-offs, which cost most when other work shares the
    cores) but allocates larger transient tensors, whose fresh pages the kernel must fault in, so
    which wins depends on the machine and its load: this prints all three.
    """
    test: list[Sample] = get_layout("elpv").samples(None, "mono", "test")
    test_paths = [s.path for s in test[:count]]
    model = expert.model
    expert.inspect_many(test_paths[:2])  # warm-up
    one_s, _ = timed(lambda: [expert.inspect(p) for p in test_paths])
    rates = {}
    for size in dict.fromkeys((INSPECT_BATCH, model.config.batch_size)):
        batch_s, _ = timed(lambda: expert.inspect_many(test_paths, batch=size))  # noqa: B023 (called at once)
        rates[size] = len(test_paths) / batch_s
    single = len(test_paths) / one_s
    print(
        f"\n== inspect {len(test_paths)} images: {model.grid[0] * model.grid[1]} patches per image x bank "
        f"{model.bank.shape[0]}, maps included ({load()})"
    )
    print(
        f"one at a time {single:.2f} images/s; "
        + "; ".join(
            f"in chunks of {size}{' (eagle inspect)' if size == INSPECT_BATCH else ' (the model batch_size)'} "
            f"{rate:.2f} images/s ({rate / single:.2f}x)"
            for size, rate in rates.items()
        )
    )


def main_fit(paths: list[Path], args: argparse.Namespace) -> None:
    config = ExpertConfig(size=args.size, native_up_to=0, coreset_ratio=args.coreset_ratio)
    fit_s, expert = timed(lambda: fit(paths, "bench", config))
    model, t = expert.model, expert.model.timings
    print(f"\n== fit on {args.train} elpv mono cells ({load()})")
    print(
        f"total {fit_s:.1f} s = features {t['features_s']:.1f} s + coreset {t['coreset_s']:.1f} s + "
        f"training scores {t['train_scores_s']:.1f} s  (bank {model.bank.shape[0]} of {model.selected.numel()})"
    )

    bench_inspect(expert, args.inspect)

    from eagle_iad.expert.preprocess import prepare
    from eagle_iad.images import load_rgb

    config = model.config
    embedded = [
        expert.embed(torch.cat([prepare(load_rgb(p), config)[0] for p in paths[i : i + 16]]))
        for i in range(0, len(paths), 16)
    ]
    features = torch.cat(embedded).reshape(-1, model.bank.shape[1]).contiguous()
    print(f"\nre-embedded training features give the fitted bank: {torch.equal(features[model.selected], model.bank)}")
    bench_coreset(features.numpy(), args.reference_picks)
    bench_search(features, model.patch_image_ids, model.selected, args.train, args.search_queries)


if __name__ == "__main__":
    main()
