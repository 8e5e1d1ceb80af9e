"""A live emotion service under concurrent clients: throughput, latency, errors.

    python bench/serve.py --bundle BUNDLE [--requests 400] [--soak 60]

Starts `sercloak serve` on 127.0.0.1 (a free port) in its own process, with
an API key and its access log in a temporary folder, then 8 and 32
concurrent clients (threads, one keep-alive connection each) send cloaked
features of 3 s utterances (301 frames, float32 .npy) until `--requests`
requests are answered per level. Latency is per request, from sending to the
whole answer. Targets: 0 errors, p99 <= 100 ms at 8 clients on 2 cores.

Then a soak: 8 clients for `--soak` seconds, 5% of their requests hostile
(features of the wrong shape, NaN, another bundle's id, a body over the size
limit, garbage bytes, no key), drawn at random (seeded). Targets: no 5xx
answer, the service's resident memory at the end within 10% of what it was
after warm-up; the p99 latency of the good requests is reported. Last line:
key=value figures.
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from sercloak.serving.bundle import open_bundle
from sercloak.serving.client import Client


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


KEY = "bench-" + "k" * 32
HOSTILE = ("shape", "nan", "bundle", "oversized", "garbage", "no_key")


def start(bundle: Path, folder: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    (folder / "keys.txt").write_text(KEY + "\n")
    process = subprocess.Popen([sys.executable, "-m", "sercloak", "serve", "--bundle",
                                str(bundle), "--port", str(port), "--api-key-file",
                                str(folder / "keys.txt"), "--access-log",
                                str(folder / "access.log")])
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
    headers = {"Content-Type": "application/x-npy", "X-Bundle-Id": bundle_id,
               "Authorization": f"Bearer {KEY}"}
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


def hostile_request(kind: str, feats: np.ndarray, bundle_id: str) -> tuple[bytes, dict]:
    headers = {"Content-Type": "application/x-npy", "X-Bundle-Id": bundle_id,
               "Authorization": f"Bearer {KEY}"}
    body = npy(feats)
    if kind == "shape":
        body = npy(feats[:, : feats.shape[1] // 2])
    elif kind == "nan":
        bad = feats.copy()
        bad[::7] = np.nan
        body = npy(bad)
    elif kind == "bundle":
        headers["X-Bundle-Id"] = "0" * 16
    elif kind == "oversized":
        body = b"\x93NUMPY" + bytes(9 * 2**20)
    elif kind == "garbage":
        body = bytes(range(256)) * 8
    elif kind == "no_key":
        del headers["Authorization"]
    return body, headers


def soak_client(port: int, feats: np.ndarray, bundle_id: str, deadline: float,
                seed: int) -> dict:
    """Requests until `deadline`, 5% hostile: good latencies, answers by status class."""
    rng = np.random.default_rng(seed)
    good_body = npy(feats)
    good_headers = hostile_request("none", feats, bundle_id)[1]
    out = {"latencies": [], "good_errors": 0, "hostile": 0, "hostile_4xx": 0, "5xx": 0,
           "dropped": 0}
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    while time.perf_counter() < deadline:
        hostile = rng.random() < 0.05
        body, headers = ((hostile_request(HOSTILE[rng.integers(len(HOSTILE))], feats,
                                          bundle_id)) if hostile else (good_body, good_headers))
        start = time.perf_counter()
        try:
            connection.request("POST", "/v1/emotion", body=body, headers=headers)
            response = connection.getresponse()
            response.read()
            status = response.status
        except (OSError, http.client.HTTPException):  # the service may close on a refusal
            out["dropped" if hostile else "good_errors"] += 1
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            continue
        out["5xx"] += status >= 500
        if hostile:
            out["hostile"] += 1
            out["hostile_4xx"] += 400 <= status < 500
        else:
            out["latencies"].append(time.perf_counter() - start)
            out["good_errors"] += status != 200
    return out


def resident_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def soak(process: subprocess.Popen, port: int, feats: np.ndarray, bundle_id: str,
         seconds: float, clients: int = 8) -> dict:
    before = resident_mb(process.pid)
    deadline = time.perf_counter() + seconds
    with ThreadPoolExecutor(clients) as pool:
        runs = list(pool.map(lambda i: soak_client(port, feats, bundle_id, deadline, i),
                             range(clients)))
    after = resident_mb(process.pid)
    latencies = np.array([t for r in runs for t in r["latencies"]]) * 1000
    total = {k: sum(r[k] for r in runs) for k in runs[0] if k != "latencies"}
    return {"soak_good": len(latencies), "soak_good_errors": total["good_errors"],
            "soak_good_p99_ms": round(float(np.percentile(latencies, 99)), 1),
            "soak_hostile": total["hostile"] + total["dropped"],
            "soak_hostile_4xx": total["hostile_4xx"], "soak_hostile_dropped": total["dropped"],
            "soak_5xx": total["5xx"], "soak_rss_start_mb": round(before, 1),
            "soak_rss_end_mb": round(after, 1),
            "soak_rss_growth_pct": round(100 * (after - before) / before, 1)}


def npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bundle", type=Path, required=True)
    parser.add_argument("--requests", type=int, default=400, help="per concurrency level")
    parser.add_argument("--soak", type=float, default=60, help="seconds of the soak (0: none)")
    args = parser.parse_args()
    bundle_id = open_bundle(args.bundle).manifest["bundle_id"]
    t = np.arange(3 * 16000) / 16000
    client = Client.from_bundle(args.bundle, seed=0)
    feats = client((0.3 * np.sin(2 * np.pi * 180 * t)).astype(np.float32))
    with tempfile.TemporaryDirectory() as folder:
        process, port = start(args.bundle, Path(folder))
        try:
            level(port, npy(feats), bundle_id, 2, 20)  # warm-up
            figures = {}
            for clients in (8, 32):
                result = level(port, npy(feats), bundle_id, clients, args.requests)
                print(f"{clients} clients: {result}")
                figures.update({f"clients{clients}_{k}": round(v, 1)
                                for k, v in result.items()})
            if args.soak > 0:
                result = soak(process, port, feats, bundle_id, args.soak)
                print(f"soak: {result}")
                figures.update(result)
        finally:
            process.terminate()
            process.wait(timeout=30)
    print(" ".join(f"{k}={v}" for k, v in figures.items()) + f" frames={len(feats)}")


if __name__ == "__main__":
    main()
