"""What an operator needs around the emotion service: API keys, Prometheus metrics and a
structured access log.

- **Keys** (`ApiKeys`): one per line of a file (blank lines and ``#`` comments
  skipped); a request names one as ``Authorization: Bearer KEY``. Every key is
  compared in constant time (`hmac.compare_digest`, all keys, every time), and
  no key ever reaches a log line, a metric or an error message.
- **Metrics** (`Metrics`): requests by endpoint and status, a latency
  histogram, request bytes, and refused requests by reason, at ``/metrics``.
  With several worker processes they are summed over workers (Prometheus'
  multiprocess mode: `PROMETHEUS_MULTIPROC_DIR`, set by ``sercloak serve``).
- **Access log** (`access_record`): one JSON line per request (time,
  endpoint, method, status, latency, request bytes, bundle id, and the reason
  for a refusal); never features, payloads, headers or keys. Lines are written
  by a background thread, so a slow disk never holds a request up.
- **Security headers** (`SECURITY_HEADERS`) on every answer: a Content
  Security Policy that lets the page load nothing but this origin's own files,
  no sniffing, no referrer, no framing; HSTS under HTTPS.

- **Lingering** (`linger`): a refusal answered before its body was read (a
  missing key, a rate limit, a wrong type, a full budget) first reads and drops
  what is left of the body, up to 8 MiB or 2 s, as nginx's `lingering_close`
  does: for a request that asks to close its connection (urllib, and so
  `sercloak predict`, always does) uvicorn otherwise closes it as soon as the
  answer is written, under a client still sending, which then gets a reset
  instead of the answer.

`Operations` applies all five to every HTTP request. It is plain ASGI
middleware: Starlette's ``@app.middleware("http")`` streams every response
through extra queues, and replacing it (with the log written by a thread)
took the service from 288 to 355 requests/s at 8 clients (bench/serve.py).
"""

from __future__ import annotations

import asyncio
import atexit
import hmac
import json
import logging
import logging.handlers
import os
import queue
import time
from pathlib import Path

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from starlette.responses import JSONResponse

from .limits import declared_length

OPEN_PATHS = ("/healthz", "/")  # and /static/...: never need a key
# a refusal's reason when the handler named none (`limits.Refused` names its own)
REASONS = {400: "unreadable_body", 401: "unauthorized", 404: "not_found",
           405: "method_not_allowed", 409: "wrong_bundle", 413: "too_large",
           415: "unsupported_type", 422: "bad_features", 429: "rate_limited",
           503: "overloaded"}
SECURITY_HEADERS = [
    (b"content-security-policy",
     b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
     b"connect-src 'self'; media-src 'self' blob:; base-uri 'none'; form-action 'none'; "
     b"frame-ancestors 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
]
HSTS = (b"strict-transport-security", b"max-age=31536000")
LINGER_BYTES, LINGER_SECONDS = 8 * 2**20, 2.0


class ApiKeys:
    """The keys a service accepts, read from a file."""

    def __init__(self, file: Path | str):
        file = Path(file)
        try:
            lines = file.read_text(encoding="utf-8").splitlines()
            mode = file.stat().st_mode
        except OSError as err:
            raise ValueError(f"{file}: cannot read the API key file ({err.strerror})") from err
        if mode & 0o077:
            raise ValueError(f"{file}: the API key file can be read by others (mode "
                             f"{mode & 0o777:o}): `chmod 600 {file}` first")
        self._keys = [line.strip().encode() for line in lines
                      if line.strip() and not line.strip().startswith("#")]
        if not self._keys:
            raise ValueError(f"{file}: no API key in it (one key per line)")
        short = sum(len(k) < 16 for k in self._keys)
        if short:
            raise ValueError(f"{file}: {short} key(s) shorter than 16 characters: use long "
                             f"random keys (e.g. `python -c 'import secrets; "
                             f"print(secrets.token_urlsafe(32))'`)")

    def __len__(self) -> int:
        return len(self._keys)

    def first(self) -> str:
        """The file's first key: what a client holding this file sends."""
        return self._keys[0].decode()

    def check(self, authorization: str | None) -> str | None:
        """None when `authorization` ("Bearer KEY") names a key; else why not (never
        quoting what was sent)."""
        if not authorization:
            return "no API key: send the header 'Authorization: Bearer <key>'"
        given_bytes = bearer_key(authorization)
        if given_bytes is None:
            return "the Authorization header must be 'Bearer <key>'"
        matched = False
        for key in self._keys:  # every key, whatever matched: the time says nothing
            matched |= hmac.compare_digest(key, given_bytes)
        return None if matched else "the API key is not valid for this service"


def bearer_key(authorization: str) -> bytes | None:
    """The key of an "Authorization: Bearer KEY" header as the service compares it (the
    scheme in any case, the key stripped), or None when it names none: what a key's
    rate limit is counted by, however the header is spelled."""
    scheme, _, given = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        return None
    return given.strip().encode()


def needs_key(path: str) -> bool:
    return path not in OPEN_PATHS and not path.startswith("/static/")


def endpoint_of(path: str) -> str:
    """A bounded label for metrics and logs: known routes by name, the rest as 'other'."""
    if path.startswith("/static/"):
        return "/static"
    if path.startswith("/v1/bundle/files/"):
        return "/v1/bundle/files"
    known = (*OPEN_PATHS, "/metrics", "/openapi.json", "/v1/emotion", "/v1/bundle")
    return path if path in known else "other"


class Metrics:
    """The service's Prometheus metrics (one registry per app, so tests can make several)."""

    def __init__(self):
        self.registry = CollectorRegistry()
        self.requests = Counter("sercloak_requests", "Requests by endpoint and status",
                                ["endpoint", "status"], registry=self.registry)
        self.latency = Histogram("sercloak_request_seconds", "Request latency",
                                 ["endpoint"], registry=self.registry,
                                 buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10))
        self.request_bytes = Histogram("sercloak_request_bytes", "Request body size",
                                       ["endpoint"], registry=self.registry,
                                       buckets=(1e2, 1e3, 1e4, 1e5, 1e6, 4e6, 8e6, 1.6e7))
        self.refused = Counter("sercloak_refused", "Refused requests by reason",
                               ["reason"], registry=self.registry)

    def observe(self, endpoint: str, status: int, seconds: float, size: int,
                refused: str | None) -> None:
        self.requests.labels(endpoint, str(status)).inc()
        self.latency.labels(endpoint).observe(seconds)
        self.request_bytes.labels(endpoint).observe(size)
        if refused is not None:
            self.refused.labels(refused).inc()

    def exposition(self) -> tuple[bytes, str]:
        """The text format Prometheus scrapes; summed over worker processes in
        multiprocess mode."""
        registry = self.registry
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST


def access_logger(file: Path | str | None) -> logging.Logger:
    """JSON lines to `file` (appended), or to stderr when None, written by a background
    thread (flushed at exit)."""
    logger = logging.getLogger(f"sercloak.access.{file}")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    if not logger.handlers:
        handler = (logging.FileHandler(file, encoding="utf-8") if file is not None
                   else logging.StreamHandler())
        handler.setFormatter(logging.Formatter("%(message)s"))
        lines: queue.SimpleQueue = queue.SimpleQueue()
        writer = logging.handlers.QueueListener(lines, handler)
        writer.start()
        atexit.register(writer.stop)
        logger.addHandler(logging.handlers.QueueHandler(lines))
    return logger


def access_record(endpoint: str, method: str, status: int, seconds: float, size: int,
                  bundle_id: str, refused: str | None) -> str:
    """One access log line: what happened, never what was sent."""
    record = {"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "endpoint": endpoint,
              "method": method, "status": status, "latency_ms": round(1000 * seconds, 2),
              "request_bytes": size, "bundle_id": bundle_id}
    if refused is not None:
        record["refused"] = refused
    return json.dumps(record)


def refusal(scope, status: int) -> str | None:
    """Why a request was refused: what its handler named (`limits.Refused`), else what its
    status says; None when it was answered."""
    named = scope.get("state", {}).get("refused")
    return named or (REASONS.get(status) if status >= 400 else None)


async def linger(receive, most_bytes: int = LINGER_BYTES,
                 seconds: float = LINGER_SECONDS) -> None:
    """Read and drop what is left of a request's body (at most `most_bytes`, for at most
    `seconds`), so a client still sending it reads the refusal instead of a reset."""
    read = 0
    try:
        async with asyncio.timeout(seconds):
            while read <= most_bytes:
                message = await receive()
                if message["type"] != "http.request" or not message.get("more_body", False):
                    return
                read += len(message.get("body", b""))
    except TimeoutError:
        pass  # answered all the same: a client this slow may miss it


class Operations:
    """ASGI middleware: the API key check, the metrics and the access log of every HTTP
    request (`api_keys` None: no key wanted)."""

    def __init__(self, app, *, api_keys: ApiKeys | None, metrics: Metrics,
                 log: logging.Logger, bundle_id: str):
        self.app, self.api_keys, self.metrics = app, api_keys, metrics
        self.log, self.bundle_id = log, bundle_id

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, path = time.perf_counter(), scope["path"]
        scope.setdefault("state", {})  # where a handler names its refusal (shared by copies)
        headers = dict(scope["headers"])
        size = declared_length(headers.get(b"content-length")) or 0
        status, answering = 500, False  # 500: what the client gets if the app raises first
        body_left = scope["method"] not in ("GET", "HEAD", "OPTIONS")

        async def receive_noting_end():
            nonlocal body_left
            message = await receive()
            body_left = message["type"] == "http.request" and message.get("more_body", False)
            return message

        async def send_noting_status(message) -> None:
            nonlocal status, answering
            if message["type"] == "http.response.start":
                if body_left:
                    await linger(receive)
                status, answering = message["status"], True
                headers = [*message.get("headers", []), *SECURITY_HEADERS]
                if scope.get("scheme") == "https":
                    headers.append(HSTS)
                message = {**message, "headers": headers}
            await send(message)

        try:
            refused = (self.api_keys.check(headers.get(b"authorization", b"").decode("latin-1"))
                       if self.api_keys is not None and needs_key(path) else None)
            if refused is not None:
                response = JSONResponse({"detail": refused}, status_code=401,
                                        headers={"WWW-Authenticate": "Bearer"})
                await response(scope, receive_noting_end, send_noting_status)
            else:
                await self.app(scope, receive_noting_end, send_noting_status)
        except Exception:
            # an answer the service did not mean: still with its headers, counted, logged
            # (by the server, to which it goes on)
            if not answering:
                scope["state"]["refused"] = "error"
                await JSONResponse({"detail": "internal error"}, status_code=500)(
                    scope, receive_noting_end, send_noting_status)
            raise
        finally:
            seconds, endpoint = time.perf_counter() - started, endpoint_of(path)
            refused = refusal(scope, status)
            self.metrics.observe(endpoint, status, seconds, size, refused)
            self.log.info(access_record(endpoint, scope["method"], status, seconds, size,
                                        self.bundle_id, refused))
