"""A live emotion service under concurrent clients: throughput, latency, errors.

    python bench/serve.py --bundle BUNDLE [--requests 400]

Starts `sercloak serve` on 127.0.0.1 (a free port) in its own process, then
8 and 32 concurrent clients (threads, one keep-alive connection each) send
cloaked features of 3 s utterances (301 frames, float32 .npy) until
`--requests` requests are answered per level. Latency is per request, from
sending to the whole answer. Targets: 0 errors, p99 <= 100 ms at 8 clients
on 2 cores. Last line: key=value figures.
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from sercloak.serving.bundle import read_manifest
from sercloak.serving.client import Client


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(bundle: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "sercloak", "serve", "--bundle",
                                str(bundle), "--port", str(port)])
    for _ in range(300):
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            connection.request("GET", "/healthz")
            if connection.getresponse().status == 200:
                return process, port
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit("the service did not start in 30 s")


def client_loop(port: int, body: bytes, bundle_id: str, n: int) -> tuple[list[float], int]:
    """`n` requests on one keep-alive connection: latencies (s) and errors."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Content-Type": "application/x-npy", "X-Bundle-Id": bundle_id}
    latencies, errors = [], 0
    for _ in range(n):
        start = time.perf_counter()
        try:
            connection.request("POST", "/v1/emotion", body=body, headers=headers)
            response = connection.getresponse()
            answer = response.read()
            if response.status != 200 or "utterance" not in json.loads(answer):
                errors += 1
        except (OSError, http.client.HTTPException, ValueError):
            errors += 1
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        latencies.append(time.perf_counter() - start)
    return latencies, errors


def level(port: int, body: bytes, bundle_id: str, clients: int, requests: int) -> dict:
    per_client = max(1, requests // clients)
    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        results = list(pool.map(lambda _: client_loop(port, body, bundle_id, per_client),
                                range(clients)))
    wall = time.perf_counter() - start
    latencies = np.array([t for r in results for t in r[0]]) * 1000
    return {"rps": len(latencies) / wall, "p50_ms": float(np.percentile(latencies, 50)),
            "p99_ms": float(np.percentile(latencies, 99)),
            "errors": sum(r[1] for r in results), "requests": len(latencies)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bundle", type=Path, required=True)
    parser.add_argument("--requests", type=int, default=400, help="per concurrency level")
    args = parser.parse_args()
    bundle_id = read_manifest(args.bundle)["bundle_id"]
    t = np.arange(3 * 16000) / 16000
    client = Client.from_bundle(args.bundle, seed=0)
    feats = client((0.3 * np.sin(2 * np.pi * 180 * t)).astype(np.float32))
    buffer = io.BytesIO()
    np.save(buffer, feats, allow_pickle=False)
    process, port = start(args.bundle)
    try:
        level(port, buffer.getvalue(), bundle_id, 2, 20)  # warm-up
        figures = {}
        for clients in (8, 32):
            result = level(port, buffer.getvalue(), bundle_id, clients, args.requests)
            print(f"{clients} clients: {result}")
            figures.update({f"clients{clients}_{k}": round(v, 1) for k, v in result.items()})
    finally:
        process.terminate()
        process.wait(timeout=10)
    print(" ".join(f"{k}={v}" for k, v in figures.items()) + f" frames={len(feats)}")


if __name__ == "__main__":
    main()
