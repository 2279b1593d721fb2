"""A hot-folder station's overhead: sustained images/s and end-to-end latency, against ``eagle inspect``.

Fits one elpv mono model at the demo's settings (``--train`` cells, 224 px, 1% coreset), then, in one
run, on the same ``--images`` real test cells:

1. ``eagle inspect`` in one process (pictures written, as the station writes them): images/s;
2. ``eagle station run`` with a webhook sink (a receiver in this process), a folder sink and, where Debian's
   ``mosquitto`` is installed, an MQTT sink (a broker this script starts on a free port), fed a
   burst of all images at once (renamed into the hot folder, so ``settle_s = 0`` is safe): images/s
   from the burst's first file to its last delivery;
3. the same station fed at ``--pace`` x the burst's rate, one image at a time: the end-to-end latency
   percentiles (file renamed in -> every sink confirmed), from ``eagle station status``.

It prints the figures and the station's overhead as a ratio of the two images/s.

    .venv/bin/python benchmarks/station.py [--train 60] [--images 120] [--pace 0.5]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from eagle_iad.data import get_layout


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Receiver:
    """Counts webhook deliveries (distinct record ids) and when the last one arrived."""

    def __init__(self) -> None:
        self.keys: set[str] = set()
        self.last = 0.0
        self.port = free_port()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers["Content-Length"]))
                outer.keys.add(str(self.headers["Idempotency-Key"]))
                outer.last = time.time()
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def drop(cell: Path, folder: Path, name: str) -> None:
    """Write under a temporary name, then rename in: the station never sees a partial file."""
    temporary = folder / f".{name}.tmp"
    shutil.copyfile(cell, temporary)
    os.rename(temporary, folder / name)


def wait_for(count: int, receiver: Receiver, process: subprocess.Popen[str], limit_s: float) -> None:
    deadline = time.monotonic() + limit_s
    while len(receiver.keys) < count:
        if process.poll() is not None:
            raise SystemExit(f"the station ended early (status {process.returncode})")
        if time.monotonic() > deadline:
            raise SystemExit(f"only {len(receiver.keys)} of {count} verdicts delivered in {limit_s:g} s")
        time.sleep(0.01)


def start_broker(work: Path) -> tuple[subprocess.Popen[bytes], int] | None:
    """A Mosquitto broker on a free loopback port (None where mosquitto is not installed)."""
    binary = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if os.access("/usr/sbin/mosquitto", os.X_OK) else None)
    if binary is None:
        return None
    port = free_port()
    work.mkdir(parents=True, exist_ok=True)
    lines = [f"listener {port} 127.0.0.1", "allow_anonymous true", "persistence false"]
    if os.geteuid() == 0:
        lines.append("user root")
    (work / "mosquitto.conf").write_text("\n".join(lines) + "\n")
    process = subprocess.Popen([binary, "-c", str(work / "mosquitto.conf")], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return process, port
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit("mosquitto did not start")


def station_run(
    work: Path, models: Path, warmup: Path, cells: list[Path], pace: float | None, rate: float | None,
    mqtt_port: int | None,
) -> dict[str, Any]:  # fmt: skip
    """One station process: a burst (``pace`` None) or paced drops; its images/s and latency percentiles."""
    receiver = Receiver()
    incoming = work / "incoming"
    incoming.mkdir(parents=True)
    stations = work / "stations.toml"
    stations.write_text(
        f"""models = "{models}"
state = "state"
[[station]]
name = "bench"
category = "mono"
source = {{ kind = "folder", path = "incoming", settle_s = 0, poll_s = 0.02 }}
[[station.sink]]
kind = "webhook"
url = "http://127.0.0.1:{receiver.port}/"
[[station.sink]]
kind = "folder"
path = "sorted"
"""
        + (
            ""
            if mqtt_port is None
            else f"""[[station.sink]]
kind = "mqtt"
host = "127.0.0.1"
port = {mqtt_port}
"""
        )
    )
    process = subprocess.Popen([sys.executable, "-m", "eagle_iad.cli", "station", "run", "--quiet", str(stations)],
                               stderr=subprocess.PIPE, text=True)  # fmt: skip
    assert process.stderr is not None
    for line in process.stderr:  # ready once it has described its sinks
        if "-> folder" in line:
            break
    try:
        drop(warmup, incoming, "warmup.png")  # not one of ``cells``: the same content would not be inspected again
        wait_for(1, receiver, process, 300)
        start = time.time()
        for index, cell in enumerate(cells):
            if pace is not None and rate is not None:
                time.sleep(max(0.0, start + index / (rate * pace) - time.time()))
            drop(cell, incoming, f"{index:05d}_{cell.name}")
        wait_for(len(cells) + 1, receiver, process, 3600)
        seconds = receiver.last - start
    finally:
        process.terminate()
        process.communicate(timeout=120)
    status_text = subprocess.run([sys.executable, "-m", "eagle_iad.cli", "station", "status", str(stations)],
                                 capture_output=True, text=True, check=True).stdout  # fmt: skip
    status = json.loads(status_text)[0]
    receiver.server.shutdown()
    return {"images_per_s": len(cells) / seconds, "seconds": seconds, "latency_s": status["latency_s"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train", type=int, default=60, help="training cells")
    parser.add_argument("--images", type=int, default=120, help="test cells fed to both")
    parser.add_argument("--pace", type=float, default=0.5, help="paced run's rate as a fraction of the burst's")
    args = parser.parse_args()

    import torch

    from eagle_iad.demo import DEMO_CORESET_RATIO, DEMO_SIZE
    from eagle_iad.expert import ExpertConfig, fit, save

    layout = get_layout("elpv")
    train = sorted(s.path for s in layout.samples(None, "mono", "train"))[: args.train]
    cells = sorted(s.path for s in layout.samples(None, "mono", "test"))[: args.images]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        models = work / "models"
        print(f"fitting {len(train)} cells at {DEMO_SIZE} px ...", file=sys.stderr)
        config = ExpertConfig(size=DEMO_SIZE, native_up_to=0, coreset_ratio=DEMO_CORESET_RATIO)  # as the demo
        save(fit(train, "mono", config).model, models / "mono")
        print(f"eagle inspect on {len(cells)} cells in one process ...", file=sys.stderr)
        from eagle_iad.cli import main as eagle

        eagle(["inspect", str(cells[0]), "--model", str(models / "mono"), "--out", str(work / "warm")])  # warm-up
        start = time.perf_counter()
        code = eagle(["inspect", *map(str, cells), "--model", str(models / "mono"), "--out", str(work / "inspect")])
        inspect_s = time.perf_counter() - start
        assert code == 0
        inspect_rate = len(cells) / inspect_s
        broker = start_broker(work / "broker")
        mqtt_port = None if broker is None else broker[1]
        try:
            print("station, burst ...", file=sys.stderr)
            burst = station_run(work / "burst", models, train[0], cells, None, None, mqtt_port)
            print(f"station, paced at {args.pace:g} x the burst's rate ...", file=sys.stderr)
            paced = station_run(work / "paced", models, train[0], cells, args.pace, burst["images_per_s"], mqtt_port)
        finally:
            if broker is not None:
                broker[0].terminate()
                broker[0].wait(30)
    sinks = "webhook + folder" + ("" if mqtt_port is None else " + MQTT")
    threads = torch.get_num_threads()
    print(f"\n{len(cells)} elpv cells, model of {len(train)} cells at {DEMO_SIZE} px, torch threads {threads}, "
          f"load {' '.join(f'{v:.2f}' for v in os.getloadavg())}\n")  # fmt: skip
    print("| run | images/s | p50 s | p95 s | p99 s |")
    print("|---|---|---|---|---|")
    print(f"| eagle inspect, one process | {inspect_rate:.2f} | | | |")
    for name, run in ((f"station burst ({sinks} sinks)", burst),
                      (f"station paced at {args.pace:g} x burst rate", paced)):  # fmt: skip
        latency = run["latency_s"] or {}
        print(f"| {name} | {run['images_per_s']:.2f} | {latency.get('p50', '')} | {latency.get('p95', '')} | "
              f"{latency.get('p99', '')} |")  # fmt: skip
    print(f"\nstation burst / eagle inspect images/s: {burst['images_per_s'] / inspect_rate:.2f}")


if __name__ == "__main__":
    main()
