"""Images/s of 16 concurrent ``/v1/inspect`` requests at a real ``eagle serve``, with and without batching.

Fits one elpv mono model (``--train`` cells, ``--size`` px, ``--coreset-ratio``), then starts
``eagle serve`` twice on loopback ports, once without the micro-batcher (``EAGLE_INSPECT_BATCH=1``,
the default) and once with it (``=16``), fires ``--rounds`` rounds of ``--concurrent`` simultaneous
inspections of real test cells at each, and prints images/s, the ratio, and whether every score
was the same in both runs.

    .venv/bin/python benchmarks/service_batching.py [--train 40] [--size 224] [--concurrent 16] [--rounds 2]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from eagle_iad.data import get_layout


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def inspect(base: str, name: str, data: bytes) -> dict[str, Any]:
    boundary = uuid.uuid4().hex
    body = io.BytesIO()
    body.write(f'--{boundary}\r\nContent-Disposition: form-data; name="category"\r\n\r\nmono\r\n'.encode())
    body.write(
        f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="{name}"\r\n'
        "Content-Type: image/png\r\n\r\n".encode()
    )
    body.write(data + f"\r\n--{boundary}--\r\n".encode())
    request = urllib.request.Request(
        f"{base}/v1/inspect",
        data=body.getvalue(),
        method="POST",
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    with urllib.request.urlopen(request, timeout=600) as response:
        result: dict[str, Any] = json.loads(response.read())
        return result


def run_server(work: Path, batch: int, images: list[tuple[str, bytes]], rounds: int) -> tuple[float, list[float]]:
    port = free_port()
    env = {**os.environ, "EAGLE_INSPECT_BATCH": str(batch)}
    state = work / f"state-{batch}"
    command = [sys.executable, "-m", "eagle_iad.cli", "serve", "--models", str(work / "models"), "--port", str(port),
               "--state-dir", str(state), "--max-inspections", str(len(images)), "--log-level", "warning"]  # fmt: skip
    server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                urllib.request.urlopen(f"{base}/healthz", timeout=5).read()
                break
            except OSError:
                time.sleep(0.2)
        inspect(base, *images[0])  # warm-up: loads the model
        scores: list[float] = [0.0] * len(images)
        best = float("inf")
        for _ in range(rounds):
            start_line = threading.Barrier(len(images))

            def one(index: int, start_line: threading.Barrier = start_line) -> None:
                start_line.wait()
                scores[index] = float(inspect(base, *images[index])["score"])

            threads = [threading.Thread(target=one, args=(i,)) for i in range(len(images))]
            began = time.perf_counter()
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            best = min(best, time.perf_counter() - began)
        return len(images) / best, scores
    finally:
        server.terminate()
        server.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", type=int, default=40)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--coreset-ratio", type=float, default=0.1)
    parser.add_argument("--concurrent", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="eagle-bench-serve-") as folder:
        work = Path(folder)
        subprocess.run(
            [sys.executable, "-m", "eagle_iad.cli", "fit", "--layout", "elpv", "--category", "mono",
             "--out", str(work / "models" / "mono"), "--limit-train", str(args.train), "--size", str(args.size),
             "--coreset-ratio", str(args.coreset_ratio), "--quiet"],
            check=True,
        )  # fmt: skip
        test = get_layout("elpv").samples(None, "mono", "test")[: args.concurrent]
        images = [(s.path.name, s.path.read_bytes()) for s in test]
        print(f"{len(images)} concurrent inspections, model: {args.train} cells at {args.size} px, "
              f"coreset {args.coreset_ratio}; load average {os.getloadavg()[0]:.2f}")  # fmt: skip
        results = {}
        for batch in (1, 16):
            rate, scores = run_server(work, batch, images, args.rounds)
            results[batch] = (rate, scores)
            label = "batched (EAGLE_INSPECT_BATCH=16)" if batch > 1 else "one at a time (EAGLE_INSPECT_BATCH=1)"
            print(f"{label}: {rate:.2f} images/s (best of {args.rounds}; load {os.getloadavg()[0]:.2f})", flush=True)
        print(f"batched / unbatched images/s: {results[16][0] / results[1][0]:.2f}x; "
              f"scores identical: {results[16][1] == results[1][1]}")  # fmt: skip


if __name__ == "__main__":
    main()
