"""A live emotion service under good traffic and under abuse: throughput, latency, refusals.

    python bench/serve.py --bundle BUNDLE [--requests 400] [--soak 120]

Starts `sercloak serve` on 127.0.0.1 (a free port) in its own process, with
one API key per client and its access log in a temporary folder.

**Good traffic** (the per-key rate limit lifted: it measures the service's
capacity, and each client here sends as fast as it can, far above what one
user's key may): 8 and 32 concurrent clients (threads, one keep-alive
connection and one key each) send cloaked features of 3 s utterances (301
frames, float32 .npy) until `--requests` requests are answered per level.
Latency is per request, from sending to the whole answer. Targets: 0
errors, p99 <= 100 ms at 8 clients on 2 cores, throughput within 10% of the
service before issue 29's limits (355 requests/s at 8 clients).

**Abuse soak** (a fresh service with every default limit): 64 clients for `--soak`
seconds, 20% of their requests
hostile, drawn at random (seeded): bodies at the size limit (8 MiB of JSON
and 60 s of float32 features, the longest accepted), int8 floods, JSON
bombs (100,000 nested brackets, a 400-digit number), wrong keys, bodies sent
slowly (a few bytes at a time over a second). Meanwhile a probe asks
`/healthz` every 50 ms. Targets: no 500 (an answer the service did not
mean: every refusal is a 4xx, a 429 or a 503 with its reason counted in
/metrics), `/healthz` p99 <= 100 ms throughout, resident memory at the end
within 10% of after warm-up (whose last step is one request of each largest
body the service reads, 60 s of .npy features and 8 MiB of JSON, so what is
sized by the largest legitimate request is in the baseline). Last line: key=value figures.
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
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from sercloak.serving.bundle import open_bundle
from sercloak.serving.client import Client

CLIENTS_SOAK = 64
HOSTILE_SHARE = 0.2
HOSTILE = ("max_json", "max_npy", "int8", "deep_json", "long_number", "wrong_key", "slow_body")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def key(i: int) -> str:
    return f"bench-client-{i:03d}-" + "k" * 24


def start(bundle: Path, folder: Path, *options: str) -> tuple[subprocess.Popen, int]:
    port = free_port()
    keys = folder / "keys.txt"
    keys.touch(mode=0o600)
    keys.write_text("".join(key(i) + "\n" for i in range(CLIENTS_SOAK)))
    process = subprocess.Popen([sys.executable, "-m", "sercloak", "serve", "--bundle",
                                str(bundle), "--port", str(port), "--api-key-file", str(keys),
                                "--access-log", str(folder / "access.log"), *options])
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


def headers_for(i: int, bundle_id: str, content_type: str = "application/x-npy") -> dict:
    return {"Content-Type": content_type, "X-Bundle-Id": bundle_id,
            "Authorization": f"Bearer {key(i)}"}


def client_loop(port: int, body: bytes, bundle_id: str, n: int, i: int) -> tuple[list, int]:
    """`n` requests on one keep-alive connection with key `i`: latencies (s) and errors."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    latencies, errors = [], 0
    for _ in range(n):
        start = time.perf_counter()
        try:
            connection.request("POST", "/v1/emotion", body=body,
                               headers=headers_for(i, bundle_id))
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
        results = list(pool.map(lambda i: client_loop(port, body, bundle_id, per_client, i),
                                range(clients)))
    wall = time.perf_counter() - start
    latencies = np.array([t for r in results for t in r[0]]) * 1000
    return {"rps": len(latencies) / wall, "p50_ms": float(np.percentile(latencies, 50)),
            "p99_ms": float(np.percentile(latencies, 99)),
            "errors": sum(r[1] for r in results), "requests": len(latencies)}


def npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def hostile_bodies(feats: np.ndarray) -> dict[str, tuple[bytes, str]]:
    """Each kind of hostile request's (body, content type), made once."""
    longest = np.resize(feats, (6000, feats.shape[1])).astype(np.float32)  # 60 s: accepted
    max_json = b'{"features": [[' + b"1.0," * (2 * 2**20 - 8) + b"1.0]]}"  # 8 MiB
    return {
        "max_json": (max_json, "application/json"),
        "max_npy": (npy(longest), "application/x-npy"),
        "int8": (npy(feats.astype(np.int8)), "application/x-npy"),
        "deep_json": (b'{"features": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
                      "application/json"),
        "long_number": (b'{"features": [[' + b"9" * 400 + b"]]}", "application/json"),
        "wrong_key": (npy(feats), "application/x-npy"),
        "slow_body": (npy(feats), "application/x-npy"),
    }


def send(connection: http.client.HTTPConnection, body: bytes, headers: dict,
         slow: bool) -> int:
    if not slow:
        connection.request("POST", "/v1/emotion", body=body, headers=headers)
    else:  # the headers, then the body a few bytes at a time over about a second
        connection.putrequest("POST", "/v1/emotion")
        for name, value in {**headers, "Content-Length": str(len(body))}.items():
            connection.putheader(name, value)
        connection.endheaders()
        pieces = np.array_split(np.frombuffer(body, np.uint8), 20)
        for piece in pieces:
            connection.send(piece.tobytes())
            time.sleep(0.05)
    response = connection.getresponse()
    response.read()
    return response.status


def soak_client(port: int, feats: np.ndarray, hostile: dict, bundle_id: str, deadline: float,
                i: int) -> dict:
    """Requests with key `i` until `deadline`, HOSTILE_SHARE of them hostile."""
    rng = np.random.default_rng(i)
    good = npy(feats)
    out = {"latencies": [], "good": 0, "good_errors": 0, "hostile": 0, "refused": {},
           "500": 0, "dropped": 0}
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    while time.perf_counter() < deadline:
        kind = HOSTILE[rng.integers(len(HOSTILE))] if rng.random() < HOSTILE_SHARE else None
        if kind is None:
            body, headers = good, headers_for(i, bundle_id)
        else:
            body, content_type = hostile[kind]
            headers = headers_for(i, bundle_id, content_type)
            if kind == "wrong_key":
                headers["Authorization"] = "Bearer wrong-" + "x" * 30
        start = time.perf_counter()
        try:
            status = send(connection, body, headers, kind == "slow_body")
        except (OSError, http.client.HTTPException):  # the service may close on a refusal
            out["dropped"] += 1
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            continue
        out["500"] += status == 500
        if kind is None:
            out["good"] += 1
            out["latencies"].append(time.perf_counter() - start)
            out["good_errors"] += status != 200
            if status != 200:
                out["refused"][status] = out["refused"].get(status, 0) + 1
        else:
            out["hostile"] += 1
            if status != 200:
                out["refused"][status] = out["refused"].get(status, 0) + 1
    return out


def probe(port: int, deadline: float, out: list) -> None:
    """/healthz every 50 ms until `deadline`: its latencies (s)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        try:
            connection.request("GET", "/healthz")
            connection.getresponse().read()
            out.append(time.perf_counter() - start)
        except (OSError, http.client.HTTPException):
            out.append(float("inf"))
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        time.sleep(0.05)


def resident_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def refusals_counted(port: int) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.request("GET", "/metrics", headers={"Authorization": f"Bearer {key(0)}"})
    text = connection.getresponse().read().decode()
    return int(sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith("sercloak_refused_total{")))


def soak(process: subprocess.Popen, port: int, feats: np.ndarray, bundle_id: str,
         seconds: float) -> dict:
    hostile = hostile_bodies(feats)
    # the warm-up's last step: one of each largest body the service reads, so buffers sized
    # by the largest legitimate request are in the baseline; what grows after it is what
    # the abuse leaves behind
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    for kind in ("max_npy", "max_json"):
        body, content_type = hostile[kind]
        send(connection, body, headers_for(0, bundle_id, content_type), False)
    connection.close()
    counted_before = refusals_counted(port)
    before = resident_mb(process.pid)
    deadline = time.perf_counter() + seconds
    health: list[float] = []
    prober = threading.Thread(target=probe, args=(port, deadline, health))
    prober.start()
    with ThreadPoolExecutor(CLIENTS_SOAK) as pool:
        runs = list(pool.map(lambda i: soak_client(port, feats, hostile, bundle_id, deadline,
                                                   i), range(CLIENTS_SOAK)))
    prober.join()
    after = resident_mb(process.pid)
    latencies = np.array([t for r in runs for t in r["latencies"]]) * 1000
    refused: dict[int, int] = {}
    for r in runs:
        for status, n in r["refused"].items():
            refused[status] = refused.get(status, 0) + n
    total = {k: sum(r[k] for r in runs) for k in ("good", "good_errors", "hostile", "500",
                                                   "dropped")}
    counted = refusals_counted(port) - counted_before
    return {"soak_clients": CLIENTS_SOAK, "soak_good": total["good"],
            "soak_good_errors": total["good_errors"],
            "soak_good_p99_ms": round(float(np.percentile(latencies, 99)), 1),
            "soak_hostile": total["hostile"], "soak_dropped": total["dropped"],
            "soak_500": total["500"],
            **{f"soak_{status}": n for status, n in sorted(refused.items())},
            "soak_refusals_counted": counted,
            "soak_every_refusal_counted": counted == sum(refused.values()),
            "soak_healthz_p99_ms": round(float(np.percentile(np.array(health) * 1000, 99)), 1),
            "soak_healthz_max_ms": round(float(np.max(health) * 1000), 1),
            "soak_rss_start_mb": round(before, 1), "soak_rss_end_mb": round(after, 1),
            "soak_rss_growth_pct": round(100 * (after - before) / before, 1)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bundle", type=Path, required=True)
    parser.add_argument("--requests", type=int, default=400, help="per concurrency level")
    parser.add_argument("--soak", type=float, default=120, help="seconds of the soak (0: none)")
    args = parser.parse_args()
    bundle_id = open_bundle(args.bundle).manifest["bundle_id"]
    t = np.arange(3 * 16000) / 16000
    client = Client.from_bundle(args.bundle, seed=0)
    feats = client((0.3 * np.sin(2 * np.pi * 180 * t)).astype(np.float32))
    figures = {}
    with tempfile.TemporaryDirectory() as folder:
        process, port = start(args.bundle, Path(folder), "--rate", "100000", "--burst",
                              "100000")
        try:
            level(port, npy(feats), bundle_id, 2, 20)  # warm-up
            for clients in (8, 32):
                result = level(port, npy(feats), bundle_id, clients, args.requests)
                print(f"{clients} clients: {result}")
                figures.update({f"clients{clients}_{k}": round(v, 1)
                                for k, v in result.items()})
        finally:
            process.terminate()
            process.wait(timeout=30)
    if args.soak > 0:
        with tempfile.TemporaryDirectory() as folder:
            process, port = start(args.bundle, Path(folder))
            try:
                level(port, npy(feats), bundle_id, 2, 20)  # warm-up
                result = soak(process, port, feats, bundle_id, args.soak)
                print(f"soak: {result}")
                figures.update(result)
            finally:
                process.terminate()
                process.wait(timeout=30)
    print(" ".join(f"{k}={v}" for k, v in figures.items()) + f" frames={len(feats)}")


if __name__ == "__main__":
    main()
