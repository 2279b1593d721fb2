"""One plant, many replicas (docs/PLANT.md): images/s of one and two ``eagle serve`` replicas, and what a
PostgreSQL history adds to each inspection against the embedded SQLite file.

What it runs, all on this machine:

- a real PostgreSQL (Debian's package, a cluster of its own on a free port: eagle_iad/testing/postgres.py);
- the demo's model (elpv mono cells at the demo's settings: 224 px, 1% coreset), fitted once;
- per variant, fresh ``eagle serve`` processes and ``--requests`` inspections of held-out cells from
  ``--concurrency`` client threads: one replica on SQLite, one on PostgreSQL, and two on one PostgreSQL
  with the requests alternating between them (what a round-robin reverse proxy does); then one client
  at a time on SQLite and on PostgreSQL (the latency an inspection pays, end to end, without queueing);
- the history alone: ``--writes`` inspection records stored one after another with the service's own
  store, SQLite against PostgreSQL (median and p95 ms per record): the latency PostgreSQL adds.

Two replicas share the machine's cores: on 2 cores they are not expected to be faster (each inspection is
CPU-bound in the backbone); what they buy is that one replica's death does not stop the line. Every
variant checks that the history grew by exactly the answered inspections.

    .venv/bin/python benchmarks/plant.py [--requests 96] [--concurrency 8] [--writes 500] [--out runs/plant]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from run_record import write_run_record

from eagle_iad.testing.postgres import PostgresServer, free_port, skip_reason


class Replica:
    """One ``eagle serve`` on loopback."""

    def __init__(self, models: Path, state: Path, history: str | None, files: Path | None) -> None:
        self.port = free_port()
        command = [sys.executable, "-m", "eagle_iad.cli", "serve", "--models", str(models), "--state-dir", str(state),
                   "--port", str(self.port), "--log-level", "warning"]  # fmt: skip
        if history is not None:
            command += ["--history", history]
        if files is not None:
            command += ["--files", str(files)]
        env = {**os.environ, "HF_HUB_OFFLINE": "1"}
        env.pop("EAGLE_API_KEY", None)
        self.log = open(state.parent / f"{state.name}.log", "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(command, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 180
        while True:
            if self.process.poll() is not None:
                raise SystemExit(f"eagle serve exited with {self.process.returncode}; see {self.log.name}")
            try:
                if self.request("GET", "/healthz")[0] == 200:
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"eagle serve did not come up; see {self.log.name}")
            time.sleep(0.2)

    def request(self, method: str, path: str, body: bytes | None = None, ctype: str | None = None) -> tuple[int, bytes]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=600)
        try:
            connection.request(method, path, body=body, headers={} if ctype is None else {"Content-Type": ctype})
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()

    def total(self) -> int:
        status, data = self.request("GET", "/v1/inspections?limit=1")
        assert status == 200, data
        return int(json.loads(data)["total"])

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=60)
        self.log.close()


def multipart(data: bytes, name: str) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="category"\r\n\r\nmono\r\n'.encode(),
             f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="{name}"\r\n'
             "Content-Type: image/png\r\n\r\n".encode() + data + b"\r\n", f"--{boundary}--\r\n".encode()]  # fmt: skip
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def load(
    replicas: Sequence[Replica], bodies: Sequence[tuple[bytes, str]], requests: int, concurrency: int
) -> dict[str, Any]:
    """``requests`` inspections, alternating over ``replicas``; images/s from first send to last answer."""
    for replica in replicas:  # warm-up: models loaded, first batch run, before the clock starts
        assert replica.request("POST", "/v1/inspect", *bodies[0])[0] == 200
    before = replicas[0].total()
    latencies: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()

    def one(index: int) -> None:
        body, ctype = bodies[index % len(bodies)]
        start = time.perf_counter()
        while True:
            status, data = replicas[index % len(replicas)].request("POST", "/v1/inspect", body, ctype)
            if status != 429:
                break
            time.sleep(0.2)
        with lock:
            latencies.append(time.perf_counter() - start)
            if status != 200:
                failures.append(f"{status}: {data[:200]!r}")

    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, range(requests)))
    wall = time.perf_counter() - start
    grown = replicas[0].total() - before
    if failures or grown != requests:
        raise SystemExit(f"lost or failed inspections: {len(failures)} failed, history grew {grown} of {requests}")
    ordered = sorted(latencies)
    return {"images_per_s": requests / wall, "p50_ms": 1000 * statistics.median(ordered),
            "p95_ms": 1000 * ordered[int(0.95 * (len(ordered) - 1))], "wall_s": wall}  # fmt: skip


def store_latency(history: str, writes: int) -> dict[str, float]:
    """Store ``writes`` records one after another with the service's store: ms per record."""
    from eagle_iad.service.store import Inspection, InspectionStore

    store = InspectionStore(history)
    times = []
    try:
        for index in range(writes):
            record = Inspection(id=uuid.uuid4().hex, time="2026-12-05T10:00:00+00:00", category="mono",
                                image_name=f"{index}.png", score=1.5, tau=2.0, s_max=3.0, decision="normal",
                                in_band=False, answer=None, caas_applied=False,
                                verdict={"expert_decision": "normal", "regions": [[1, 2, 3, 4]] * 4},
                                pictures={"heatmap": "/v1/files/x/heatmap.png"})  # fmt: skip
            start = time.perf_counter()
            store.add(record)
            times.append(1000 * (time.perf_counter() - start))
    finally:
        store.close()
    times.sort()
    return {"median_ms": statistics.median(times), "p95_ms": times[int(0.95 * (len(times) - 1))]}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=96, help="inspections per variant (default 96)")
    parser.add_argument("--concurrency", type=int, default=8, help="client threads (default 8)")
    parser.add_argument("--writes", type=int, default=500, help="records stored per backend (default 500)")
    parser.add_argument("--train", type=int, default=100, help="elpv mono cells to fit on (default 100)")
    parser.add_argument("--out", type=Path, default=Path("runs/plant"), help="where the run record goes")
    args = parser.parse_args(argv)
    reason = skip_reason()
    if reason is not None:
        raise SystemExit(f"plant benchmark: {reason}")
    from eagle_iad.data import get_layout
    from eagle_iad.demo import DEMO_CORESET_RATIO, DEMO_SIZE
    from eagle_iad.expert import ExpertConfig, fit, save

    work = Path(tempfile.mkdtemp(prefix="eagle-plant-"))
    server = PostgresServer().start()
    try:
        layout = get_layout("elpv")
        train = sorted(s.path for s in layout.samples(None, "mono", "train"))[: args.train]
        test = sorted((s.path for s in layout.samples(None, "mono", "test")), key=str)[:48]
        config = ExpertConfig(size=DEMO_SIZE, native_up_to=0, coreset_ratio=DEMO_CORESET_RATIO)
        print(f"fitting the demo's model on {len(train)} cells ...", file=sys.stderr, flush=True)
        save(fit(train, "mono", config).model, work / "models" / "mono")
        bodies = [multipart(path.read_bytes(), path.name) for path in test]
        variants: dict[str, dict[str, Any]] = {}
        plans = [
            ("1 replica, SQLite", 1, None, args.concurrency),
            ("1 replica, PostgreSQL", 1, "pg", args.concurrency),
            ("2 replicas, PostgreSQL", 2, "pg", args.concurrency),
            ("1 replica, SQLite, one at a time", 1, None, 1),
            ("1 replica, PostgreSQL, one at a time", 1, "pg", 1),
        ]
        for name, count, kind, concurrency in plans:
            history = server.new_database() if kind == "pg" else None
            files = work / f"files-{len(variants)}"
            replicas = [Replica(work / "models", work / f"state-{len(variants)}-{n}", history, files)
                        for n in range(count)]  # fmt: skip
            try:
                print(f"[{name}] {args.requests} inspections, concurrency {concurrency} ...", file=sys.stderr)
                variants[name] = {**load(replicas, bodies, args.requests, concurrency), "concurrency": concurrency}
            finally:
                for replica in replicas:
                    replica.stop()
        lite = store_latency(str(work / "latency.sqlite3"), args.writes)
        pg = store_latency(server.new_database(), args.writes)
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    rows = ["| variant | clients | images/s | vs 1 replica on SQLite | p50 ms | p95 ms |", "|---|---|---|---|---|---|"]
    for name, figures in variants.items():
        base = variants["1 replica, SQLite" + (", one at a time" if figures["concurrency"] == 1 else "")]
        rows.append(f"| {name} | {figures['concurrency']} | {figures['images_per_s']:.2f} | "
                    f"{figures['images_per_s'] / base['images_per_s']:.2f}x | {figures['p50_ms']:.0f} | "
                    f"{figures['p95_ms']:.0f} |")  # fmt: skip
    rows += ["", "| history | store one record, median ms | p95 ms |", "|---|---|---|",
             f"| SQLite (WAL, synchronous=NORMAL) | {lite['median_ms']:.2f} | {lite['p95_ms']:.2f} |",
             f"| PostgreSQL (local, same machine) | {pg['median_ms']:.2f} | {pg['p95_ms']:.2f} |",
             f"| PostgreSQL adds | {pg['median_ms'] - lite['median_ms']:+.2f} | "
             f"{pg['p95_ms'] - lite['p95_ms']:+.2f} |"]  # fmt: skip
    table = "\n".join(rows) + "\n"
    print(table)
    document = {"version": 1, "requests": args.requests, "concurrency": args.concurrency, "cores": os.cpu_count(),
                "load_average": os.getloadavg(), "variants": variants,
                "store": {"sqlite": lite, "postgresql": pg}}  # fmt: skip
    write_run_record(args.out, "plant", None if argv is None else list(argv), document, table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
