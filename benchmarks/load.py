"""Load on ``eagle serve``: latency, throughput, memory and lost-request check under concurrent inspections.

What the figures mean. The script starts its own ``eagle serve`` on loopback, fires ``--requests``
concurrent ``POST /v1/inspect`` (multipart image + category, the tire test split: good and defective
images mixed, read once into memory) from a pool of ``--concurrency`` client threads (stdlib
``http.client``, a fresh connection per attempt), and reports per variant:

- latency p50/p95/p99/max (ms): what a client waits for one inspection, end to end, *including* the
  waits and retries after a 429 (``Retry-After`` is honoured; the 429s are counted apart as retries);
- throughput (inspections/s): successful inspections divided by the wall time of the variant (first
  request sent to last answer received); on a 2-core machine it saturates early, so concurrency buys
  throughput only while the server has idle cores, and beyond that it only adds queueing to the latency;
- peak RSS (MiB): the server process's resident memory sampled every ~50 ms from ``/proc/<pid>/status``,
  and ``VmHWM`` (the kernel's own high-water mark, which also sees peaks between samples) at the end;
- history: ``GET /v1/inspections?limit=1`` before and after the load; the ``total`` must have grown by
  exactly the number of successful inspections, otherwise an answered request is missing from the
  SQLite history and the script prints LOST and exits 1.

Variants, compared with ratios in one run: expert only at concurrency 1 (the reference: pure service
time per request) and at ``--concurrency C``; with ``--mllm tiny`` also the full EAGLE verdict at
concurrency C through a tiny *random-weight* Qwen2.5-VL built with :mod:`eagle_iad.testing.tiny` (its
timings are those of a 64-wide toy model, not of a real MLLM: they show the queue, 429 and service
overhead, not model speed). Each variant gets its own server process with its own state dir: peak RSS
and VmHWM are per-process high-water marks, so in a shared process a later variant would inherit an
earlier one's peak, and the MLLM variant needs ``--mllm`` at server start anyway. Server start-up and
one warm-up inspection (model and backbone loading) happen before the clock starts and are not counted.

Bounds: at most ``--requests`` (<= 5000) inspections and ``--max-seconds`` of load per variant (after
that no new request is sent; those in flight finish). Only loopback hosts are accepted, and the server
is always stopped at the end (also on errors and Ctrl-C).

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/load.py [--models DIR] [--requests 64] [--concurrency 8]
        [--max-seconds 120] [--mllm tiny] [--json runs/load.json]
"""

from __future__ import annotations

import argparse
import http.client
import ipaddress
import json
import math
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "mvtec3d-tire"
MAX_REQUESTS = 5000
JSON_VERSION = 1
#: A 429's Retry-After is honoured up to this many seconds (a broken header must not stall the run).
MAX_RETRY_AFTER_S = 30.0


class LoadError(Exception):
    """A user error or a failed precondition, printed as one line."""


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``; anything else (0.0.0.0 included) is refused."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def free_port(host: str) -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of already sorted values (0 for none)."""
    if not sorted_values:
        return 0.0
    rank = max(1, math.ceil(q / 100.0 * len(sorted_values)))
    return float(sorted_values[min(rank, len(sorted_values)) - 1])


def multipart(category: str, filename: str, data: bytes) -> tuple[bytes, str]:
    """A ``POST /v1/inspect`` body: the ``category`` field and the ``image`` file."""
    boundary = uuid.uuid4().hex
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="category"\r\n\r\n{category}\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="{filename}"\r\n'
        "Content-Type: image/png\r\n\r\n"
    ).encode()
    return head + data + f"\r\n--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


# --------------------------------------------------------------------------------------------- server


class MemorySampler:
    """VmRSS of one process every ``interval`` seconds in a daemon thread; the peak is kept."""

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        self.pid = pid
        self.interval = interval
        self.peak_kib = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def status_kib(self, key: str) -> int | None:
        """One ``/proc/<pid>/status`` field in KiB (None when the process or the field is gone)."""
        try:
            with open(f"/proc/{self.pid}/status", encoding="ascii") as handle:
                for line in handle:
                    if line.startswith(key + ":"):
                        return int(line.split()[1])
        except (OSError, ValueError, IndexError):
            return None
        return None

    def _run(self) -> None:
        while not self._stop.is_set():
            rss = self.status_kib("VmRSS")
            if rss is not None:
                self.peak_kib = max(self.peak_kib, rss)
                self.samples += 1
            self._stop.wait(self.interval)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)


class Server:
    """One ``eagle serve`` subprocess on a loopback port; :meth:`stop` is safe to call twice."""

    def __init__(self, models: Path, state_dir: Path, host: str, mllm: str | None, threads: int | None) -> None:
        if not is_loopback(host):
            raise LoadError(f"--host {host} is not a loopback address")
        self.host = host
        self.port = free_port(host)
        self.log_path = state_dir.parent / f"{state_dir.name}.log"
        command = [sys.executable, "-m", "eagle_iad.cli", "serve", "--models", str(models),
                   "--state-dir", str(state_dir), "--host", host, "--port", str(self.port),
                   "--log-level", "warning"]  # fmt: skip
        if mllm is not None:
            command += ["--mllm", mllm]
        env = {**os.environ, "HF_HUB_OFFLINE": "1"}
        env.pop("EAGLE_API_KEY", None)  # the server is ours and on loopback: no key
        if threads is not None:
            env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        # Its own session: a Ctrl-C in the terminal reaches only this script, which then stops the server
        # in order (a server killed mid-request by the same SIGINT would look like lost requests).
        self.process = subprocess.Popen(command, env=env, stdout=self._log, stderr=subprocess.STDOUT,
                                        start_new_session=True)  # fmt: skip

    @property
    def pid(self) -> int:
        return self.process.pid

    def request(self, method: str, path: str, body: bytes | None = None, content_type: str | None = None,
                timeout: float = 600.0) -> tuple[int, dict[str, str], bytes]:  # fmt: skip
        """One request on a fresh connection: (status, lower-cased headers, body)."""
        connection = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        try:
            headers = {} if content_type is None else {"Content-Type": content_type}
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            data = response.read()
            return response.status, {k.lower(): v for k, v in response.getheaders()}, data
        finally:
            connection.close()

    def wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise LoadError(f"eagle serve exited with status {self.process.returncode}:\n{self.log_tail()}")
            try:
                if self.request("GET", "/healthz", timeout=5)[0] == 200:
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise LoadError(f"eagle serve did not answer /healthz within {timeout:.0f} s:\n{self.log_tail()}")
            time.sleep(0.2)

    def history_total(self) -> int:
        try:
            status, _, data = self.request("GET", "/v1/inspections?limit=1", timeout=60)
        except (OSError, http.client.HTTPException) as exc:
            self.check_alive("history")
            raise LoadError(f"GET /v1/inspections failed: {type(exc).__name__}: {exc}") from exc
        if status != 200:
            raise LoadError(f"GET /v1/inspections answered {status}: {data[:300]!r}")
        return int(json.loads(data)["total"])

    def check_alive(self, what: str) -> None:
        """Raise with the exit status and the log's tail if the server has exited (crashed or was killed)."""
        code = self.process.poll()
        if code is None:
            return
        how = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit status {code}"
        raise LoadError(f"[{what}] eagle serve (pid {self.pid}) ended during the load ({how}); its log:\n"
                        f"{self.log_tail() or '(empty)'}")  # fmt: skip

    def log_tail(self, chars: int = 3000) -> str:
        self._log.flush()
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self._log.close()


@contextmanager
def running_server(models: Path, state_dir: Path, host: str, mllm: str | None,
                   threads: int | None, start_timeout: float) -> Iterator[Server]:  # fmt: skip
    server = Server(models, state_dir, host, mllm, threads)
    try:
        server.wait_healthy(start_timeout)
        yield server
    finally:
        server.stop()


# ----------------------------------------------------------------------------------------------- load


@dataclass
class Outcome:
    """One logical inspection: final status (0: no answer), end-to-end latency, 429s met on the way."""

    status: int
    latency_s: float
    retries_429: int
    error: str = ""


@dataclass
class VariantResult:
    name: str
    mllm: str | None
    concurrency: int
    requests: int
    outcomes: list[Outcome] = field(default_factory=list)
    not_sent: int = 0
    wall_s: float = 0.0
    peak_rss_kib: int = 0
    rss_samples: int = 0
    vm_hwm_kib: int | None = None
    history_before: int = 0
    history_after: int = 0
    #: 1-minute load average of the machine before and after the load (other jobs on the cores skew timings).
    loadavg: tuple[float, float] = (0.0, 0.0)

    @property
    def ok(self) -> int:
        return sum(1 for o in self.outcomes if o.status == 200)

    @property
    def lost(self) -> int:
        return self.ok - (self.history_after - self.history_before)

    def figures(self) -> dict[str, Any]:
        latencies = sorted(1000.0 * o.latency_s for o in self.outcomes if o.status == 200)
        errors = Counter(str(o.status) if o.status else "no_answer" for o in self.outcomes if o.status != 200)
        first_errors = sorted({o.error for o in self.outcomes if o.error})[:5]
        return {
            "name": self.name,
            "mllm": self.mllm,
            "concurrency": self.concurrency,
            "requests": self.requests,
            "sent": len(self.outcomes),
            "not_sent": self.not_sent,
            "ok": self.ok,
            "errors": dict(sorted(errors.items())),
            "error_samples": first_errors,
            "retries_429": sum(o.retries_429 for o in self.outcomes),
            "latency_ms": {
                "p50": percentile(latencies, 50),
                "p95": percentile(latencies, 95),
                "p99": percentile(latencies, 99),
                "max": latencies[-1] if latencies else 0.0,
                "mean": sum(latencies) / len(latencies) if latencies else 0.0,
            },
            "wall_s": self.wall_s,
            "loadavg_1m": {"before": self.loadavg[0], "after": self.loadavg[1]},
            "throughput_per_s": self.ok / self.wall_s if self.wall_s > 0 else 0.0,
            "peak_rss_mib": self.peak_rss_kib / 1024.0,
            "rss_samples": self.rss_samples,
            "vm_hwm_mib": None if self.vm_hwm_kib is None else self.vm_hwm_kib / 1024.0,
            "history": {
                "before": self.history_before,
                "after": self.history_after,
                "added": self.history_after - self.history_before,
                "lost": self.lost,
            },
        }


def inspect_once(server: Server, body: bytes, content_type: str, deadline: float, stop: threading.Event) -> Outcome:
    """One inspection, retried after each 429 (waiting Retry-After) until answered, the deadline or a stop."""
    start = time.perf_counter()
    retries = 0
    while True:
        try:
            status, headers, data = server.request("POST", "/v1/inspect", body, content_type)
        except (OSError, http.client.HTTPException) as exc:
            return Outcome(0, time.perf_counter() - start, retries, f"{type(exc).__name__}: {exc}")
        if status != 429:
            error = "" if status == 200 else f"{status}: {data[:200].decode('utf-8', 'replace')}"
            return Outcome(status, time.perf_counter() - start, retries, error)
        retries += 1
        try:
            pause = min(MAX_RETRY_AFTER_S, max(0.0, float(headers.get("retry-after", "1"))))
        except ValueError:
            pause = 1.0
        if time.monotonic() + pause > deadline or stop.wait(pause):
            return Outcome(429, time.perf_counter() - start, retries, "429: still queue-full at the deadline")


def run_load(server: Server, bodies: Sequence[tuple[bytes, str]], requests: int, concurrency: int,
             max_seconds: float, result: VariantResult) -> None:  # fmt: skip
    """Fire ``requests`` inspections from ``concurrency`` threads; at most ``concurrency`` in flight."""
    stop = threading.Event()
    start = time.perf_counter()
    deadline = time.monotonic() + max_seconds
    pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="load")
    pending: set[Future[Outcome]] = set()
    sent = 0
    try:
        while sent < requests or pending:
            while sent < requests and len(pending) < concurrency and time.monotonic() < deadline:
                body, ctype = bodies[sent % len(bodies)]
                pending.add(pool.submit(inspect_once, server, body, ctype, deadline, stop))
                sent += 1
            if not pending:
                break  # the deadline passed with nothing in flight
            done, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
            result.outcomes.extend(future.result() for future in done)
            if time.monotonic() > deadline + MAX_RETRY_AFTER_S + 600:
                raise LoadError("requests in flight did not finish long after --max-seconds")
    finally:
        stop.set()
        result.wall_s = time.perf_counter() - start
        result.not_sent = requests - sent
        pool.shutdown(wait=False, cancel_futures=True)


def run_variant(name: str, models: Path, work: Path, host: str, mllm: str | None, mllm_label: str | None,
                bodies: Sequence[tuple[bytes, str]], warmup: tuple[bytes, str], args: argparse.Namespace,
                concurrency: int) -> VariantResult:  # fmt: skip
    result = VariantResult(name, mllm_label, concurrency, args.requests)
    print(f"[{name}] starting eagle serve{' --mllm ' + mllm if mllm else ''} ...", file=sys.stderr, flush=True)
    with running_server(models, work / f"state-{name}", host, mllm, args.server_threads, args.start_timeout) as server:
        status, _, data = server.request("POST", "/v1/inspect", warmup[0], warmup[1])
        if status != 200:
            raise LoadError(f"[{name}] the warm-up inspection answered {status}: {data[:300]!r}")
        result.history_before = server.history_total()
        sampler = MemorySampler(server.pid)
        sampler.start()
        load_before = os.getloadavg()[0]
        print(f"[{name}] {args.requests} requests, concurrency {concurrency} ...", file=sys.stderr, flush=True)
        try:
            run_load(server, bodies, args.requests, concurrency, args.max_seconds, result)
        finally:
            sampler.stop()
        result.loadavg = (load_before, os.getloadavg()[0])
        server.check_alive(name)
        result.peak_rss_kib, result.rss_samples = sampler.peak_kib, sampler.samples
        result.vm_hwm_kib = sampler.status_kib("VmHWM")
        result.history_after = server.history_total()
    return result


# -------------------------------------------------------------------------------------------- inputs


def fit_tire(data: Path, out: Path, limit_train: int, seed: int) -> None:
    """Fit the tire expert on a seeded subset of its training images (progress bars on stderr)."""
    from eagle_iad.data import get_layout
    from eagle_iad.data.selection import select_training
    from eagle_iad.expert import fit, save

    samples = select_training(get_layout("mvtec").samples(data, "tire", "train"), limit_train, seed)
    print(f"fitting the tire expert on {len(samples)} training images ...", file=sys.stderr, flush=True)
    save(fit([s.path for s in samples], "tire", show_progress=True).model, out / "tire")
    print(f"\nfitted; saved to {out / 'tire'}", file=sys.stderr, flush=True)


def load_bodies(data: Path, category: str, seed: int) -> list[tuple[bytes, str]]:
    """The category's test split (good and defective), read once, shuffled so the mix is spread."""
    from eagle_iad.data import get_layout

    samples = get_layout("mvtec").samples(data, category, "test")
    if not samples:
        raise LoadError(f"no test images for {category!r} under {data}")
    bodies = [multipart(category, f"{s.defect_type}_{s.path.name}", s.path.read_bytes()) for s in samples]
    random.Random(seed).shuffle(bodies)
    return bodies


def build_tiny_mllm(out: Path) -> Path:
    from eagle_iad.testing.tiny import build_tiny_qwen2_5_vl

    print("building a tiny random-weight Qwen2.5-VL (NOT a real model) ...", file=sys.stderr, flush=True)
    path: Path = build_tiny_qwen2_5_vl(out / "tiny-qwen2.5-vl")
    return path


# ------------------------------------------------------------------------------------------- report


def ratio(a: float, b: float) -> float | None:
    return a / b if b else None


def comparisons(variants: dict[str, dict[str, Any]], concurrency: int) -> dict[str, dict[str, float | None]]:
    """Throughput and latency ratios between variants: concurrency C vs 1, and EAGLE (tiny MLLM) vs expert."""
    out: dict[str, dict[str, float | None]] = {}
    pairs = [(f"expert c{concurrency} / expert c1", f"expert-c{concurrency}", "expert-c1"),
             (f"mllm-tiny c{concurrency} / expert c{concurrency}", f"mllm-tiny-c{concurrency}",
              f"expert-c{concurrency}")]  # fmt: skip
    for label, a, b in pairs:
        if a in variants and b in variants and a != b:
            va, vb = variants[a], variants[b]
            out[label] = {
                "throughput": ratio(va["throughput_per_s"], vb["throughput_per_s"]),
                "p50": ratio(va["latency_ms"]["p50"], vb["latency_ms"]["p50"]),
                "p95": ratio(va["latency_ms"]["p95"], vb["latency_ms"]["p95"]),
                "peak_rss": ratio(va["peak_rss_mib"], vb["peak_rss_mib"]),
            }
    return out


def fmt_ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}x"


def print_report(report: dict[str, Any]) -> None:
    print(f"eagle serve load, category {report['category']}, {report['test_images']} test images "
          f"(good + defective), {report['cpu_count']} CPUs")  # fmt: skip
    if report["mllm"] == "tiny":
        print("NOTE: the MLLM variant uses a tiny RANDOM-WEIGHT Qwen2.5-VL: its MLLM timings are not those of a "
              "real model (they show queueing, 429 handling and service overhead only).")  # fmt: skip
    header = (f"{'variant':<16}{'req':>5}{'ok':>5}{'errors':>14}{'429s':>6}{'p50 ms':>9}{'p95 ms':>9}"
              f"{'p99 ms':>9}{'max ms':>9}{'insp/s':>8}{'RSS MiB':>9}{'HWM MiB':>9}{'load':>11}  history")  # fmt: skip
    print(header)
    for v in report["variants"].values():
        errors = ",".join(f"{k}:{n}" for k, n in v["errors"].items()) or "0"
        lat = v["latency_ms"]
        hwm = "n/a" if v["vm_hwm_mib"] is None else f"{v['vm_hwm_mib']:.0f}"
        history = v["history"]
        check = "ok" if history["lost"] == 0 else f"LOST {history['lost']}"
        load = f"{v['loadavg_1m']['before']:.1f}-{v['loadavg_1m']['after']:.1f}"
        print(f"{v['name']:<16}{v['requests']:>5}{v['ok']:>5}{errors:>14}{v['retries_429']:>6}{lat['p50']:>9.1f}"
              f"{lat['p95']:>9.1f}{lat['p99']:>9.1f}{lat['max']:>9.1f}{v['throughput_per_s']:>8.2f}"
              f"{v['peak_rss_mib']:>9.0f}{hwm:>9}{load:>11}  +{history['added']} ({check})")  # fmt: skip
        if v["not_sent"]:
            print(f"  {v['name']}: {v['not_sent']} requests not sent (--max-seconds reached)")
        for sample in v["error_samples"]:
            print(f"  {v['name']} error: {sample}")
    print("load: the machine's 1-minute load average before-after the variant (above the CPU count: other jobs "
          "shared the cores and the timings are skewed)")  # fmt: skip
    for label, values in report["comparisons"].items():
        print(f"{label}: throughput {fmt_ratio(values['throughput'])}, p50 {fmt_ratio(values['p50'])}, "
              f"p95 {fmt_ratio(values['p95'])}, peak RSS {fmt_ratio(values['peak_rss'])}")  # fmt: skip


def write_json_atomic(path: Path, payload: dict[str, Any]) -> None:
    """The figures as versioned JSON, replaced in one step (a reader never sees half a file)."""
    from eagle_iad.atomic import atomic_write_text

    atomic_write_text(path, json.dumps(payload, indent=2) + "\n")


# --------------------------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="load.py", description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--models", type=Path, help="fitted experts (<models>/<category>); default: fit tire")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help=f"MVTec-layout root (default {DEFAULT_DATA})")
    parser.add_argument("--category", default="tire", help="category to inspect (default tire)")
    parser.add_argument("--limit-train", type=int, default=30, help="training images when fitting (default 30)")
    parser.add_argument("--requests", type=int, default=64, help=f"per variant (default 64, <= {MAX_REQUESTS})")
    parser.add_argument("--concurrency", type=int, default=8, help="client threads (default 8)")
    parser.add_argument("--max-seconds", type=float, default=120.0, help="load time per variant (default 120)")
    parser.add_argument("--mllm", choices=["tiny"], help="also run the full EAGLE verdict with a tiny random MLLM")
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to serve on (default 127.0.0.1)")
    parser.add_argument("--server-threads", type=int, help="OMP/MKL threads of the server (default: unset)")
    parser.add_argument("--start-timeout", type=float, default=180.0, help="seconds to wait for /healthz")
    parser.add_argument("--seed", type=int, default=0, help="training subset and request order (default 0)")
    parser.add_argument("--json", type=Path, help="write every figure here ({'version': 1, ...}), atomically")
    args = parser.parse_args(argv)
    if not is_loopback(args.host):
        parser.error(f"--host {args.host} is not a loopback address: this script only loads a server on this "
                     "machine (127.0.0.1, ::1 or localhost)")  # fmt: skip
    if not 1 <= args.requests <= MAX_REQUESTS:
        parser.error(f"--requests must be 1..{MAX_REQUESTS}, got {args.requests}")
    if not 1 <= args.concurrency <= 256:
        parser.error(f"--concurrency must be 1..256, got {args.concurrency}")
    if not args.max_seconds > 0:
        parser.error(f"--max-seconds must be positive, got {args.max_seconds}")
    if args.limit_train < 2:
        parser.error(f"--limit-train must be at least 2, got {args.limit_train}")
    if args.server_threads is not None and args.server_threads < 1:
        parser.error(f"--server-threads must be at least 1, got {args.server_threads}")
    if args.models is not None and not (args.models / args.category / "model.json").is_file():
        parser.error(f"--models {args.models} holds no fitted {args.category!r} expert ({args.category}/model.json)")
    return args


def _sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # run the same cleanup as Ctrl-C


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _sigterm)
    try:
        with tempfile.TemporaryDirectory(prefix="eagle-load-") as tmp:
            work = Path(tmp)
            bodies = load_bodies(args.data, args.category, args.seed)
            models = args.models
            if models is None:
                if args.category != "tire":
                    raise LoadError("without --models only the tire expert is fitted; pass --models DIR")
                models = work / "models"
                fit_tire(args.data, models, args.limit_train, args.seed)
            plan: list[tuple[str, str | None, str | None, int]] = [("expert-c1", None, None, 1)]
            if args.concurrency != 1:
                plan.append((f"expert-c{args.concurrency}", None, None, args.concurrency))
            if args.mllm == "tiny":
                spec = f"hf:{build_tiny_mllm(work)}"
                plan.append((f"mllm-tiny-c{args.concurrency}", spec, "tiny-random-qwen2.5-vl", args.concurrency))
            results: dict[str, dict[str, Any]] = {}
            for name, spec_or_none, label, concurrency in plan:
                variant = run_variant(name, models, work, args.host, spec_or_none, label, bodies, bodies[0], args,
                                      concurrency)  # fmt: skip
                results[name] = variant.figures()
    except KeyboardInterrupt:
        print("load.py: interrupted; the server was stopped", file=sys.stderr)
        return 130
    except LoadError as exc:
        print(f"load.py: error: {exc}", file=sys.stderr)
        return 2
    report: dict[str, Any] = {
        "version": JSON_VERSION,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "category": args.category,
        "test_images": len(bodies),
        "models": "fitted by load.py" if args.models is None else str(args.models),
        "limit_train": args.limit_train if args.models is None else None,
        "mllm": args.mllm,
        "mllm_note": "tiny random weights: MLLM timings are not those of a real model" if args.mllm else None,
        "requests": args.requests,
        "concurrency": args.concurrency,
        "max_seconds": args.max_seconds,
        "cpu_count": os.cpu_count(),
        "server_threads": args.server_threads,
        "latency": "end to end per inspection, including Retry-After waits after 429s",
        "variants": results,
        "comparisons": comparisons(results, args.concurrency),
    }
    print_report(report)
    if args.json is not None:
        write_json_atomic(args.json, report)
        print(f"figures written to {args.json}")
    lost = {name: v["history"]["lost"] for name, v in results.items() if v["history"]["lost"] != 0}
    if lost:
        print(f"LOST: inspections answered 200 but missing from the history: {lost}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
