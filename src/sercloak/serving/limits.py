"""What keeps the emotion service standing under abuse: request limits, a bounded inference
pool, a per-key rate limit, and bodies parsed with limits of their own.

- `Limits`: the numbers, with defaults that hold on a 2-core machine (all of
  them `sercloak serve` options).
- `InferencePool`: inference on a pool of its own threads with a bounded
  queue: a request that finds it full is refused at once (503 with
  Retry-After) instead of waiting, and one that runs past the time limit is
  answered 503 (its thread finishes in the background and still counts
  against the queue until it does). `/healthz` and `/metrics` run on the event
  loop and never wait behind it.
- `BodyBudget` and `read_within`: the bytes of bodies held at once, bounded
  (503), and a body's time to arrive, bounded (408).
- `RateLimits`: a moving-window limit per API key (per client address when
  the service has no keys), from the `limits` library; 429 with Retry-After.
  Per process: behind several workers, a reverse proxy's `limit_req` is the
  global one (docs/serving.md).
- `parse_body`: a request body as a float32 array, or `Refused` naming the
  problem: float32 .npy only (no pickle, no other dtype), JSON with bounded
  nesting and numbers that fit a float32. JSON is parsed in a process of its
  own (`JsonParser`): the parser holds the interpreter's lock for its whole
  run (0.7 s for 8 MiB), which in a thread would stall the event loop that
  answers `/healthz`.

Every refusal carries a `reason` that the metrics count and the access log
writes (`operations.py`).
"""

from __future__ import annotations

import asyncio
import io
import json
import math
import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from multiprocessing import get_context

import numpy as np
from limits import RateLimitItemPerSecond
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

NPY_TYPES = ("application/x-npy", "application/octet-stream")
NPY_HEADER_BYTES = 1024  # a .npy file's header, with room to spare
JSON_BYTES_PER_VALUE = 10  # "-12.345678," : how JSON spells a feature value
MAX_DIGITS = 40  # a JSON number longer than this is no feature value
FLOAT32_MAX = float(np.finfo(np.float32).max)


class Refused(Exception):
    """A request the service refuses: the HTTP status, the reason counted in the metrics,
    the message for the client, and headers (e.g. Retry-After)."""

    def __init__(self, status: int, reason: str, message: str,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.reason, self.headers = status, reason, headers or {}

    def __reduce__(self):  # raised in the JSON parser's process, re-raised here
        return Refused, (self.status, self.reason, str(self), self.headers)


@dataclass(frozen=True)
class Limits:
    max_seconds: float = 60.0  # of speech per request
    max_body_bytes: int = 4 * 2**20  # a minute of float32 .npy features is 3.1 MB
    max_json_bytes: int = 8 * 2**20  # JSON spells each number out: 2-3 times larger
    workers: int = 2  # inference threads
    queue: int = 64  # requests waiting for one of them before 503
    timeout_s: float = 10.0  # per request, from its body's arrival to the answer
    body_timeout_s: float = 30.0  # for a body to arrive
    body_budget_bytes: int = 64 * 2**20  # bodies held at once (`BodyBudget`)
    rate: float = 20.0  # requests per second and key (or address)
    burst: int = 40  # requests one key may send at once (the moving window's size)
    json_depth: int = 4  # nesting of a JSON body: {"features": [[...]]} is 3

    def room_for(self, values: int) -> Limits:
        """These limits with bodies large enough for `values` float32 numbers (what
        `max_seconds` of a bundle's features are): never smaller than set."""
        npy = values * 4 + NPY_HEADER_BYTES
        return replace(self, max_body_bytes=max(self.max_body_bytes, npy),
                       max_json_bytes=max(self.max_json_bytes, values * JSON_BYTES_PER_VALUE))

    def __post_init__(self):
        for name in ("max_seconds", "max_body_bytes", "max_json_bytes", "workers",
                     "timeout_s", "body_timeout_s", "body_budget_bytes", "rate", "burst",
                     "json_depth"):
            if not getattr(self, name) > 0:
                raise ValueError(f"limit {name} must be positive, not {getattr(self, name)}")
        if self.queue < 0:
            raise ValueError(f"limit queue must be 0 or more, not {self.queue}")


class InferencePool:
    """A thread pool of `workers` threads with room for `queue` waiting jobs."""

    def __init__(self, workers: int, queue: int, timeout_s: float):
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="sercloak-inference")
        self._capacity, self._timeout = workers + queue, timeout_s
        self._busy, self._lock = 0, threading.Lock()

    @property
    def busy(self) -> int:
        """Jobs running or waiting."""
        return self._busy

    async def run(self, job, *args):
        """`job(*args)` on the pool, or Refused when the queue is full or it runs late."""
        with self._lock:
            if self._busy >= self._capacity:
                raise Refused(503, "queue_full", "the service is busy: try again shortly",
                              {"Retry-After": "1"})
            self._busy += 1
        future = self._pool.submit(job, *args)
        future.add_done_callback(self._done)  # the place is freed when the job ends
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), self._timeout)
        except TimeoutError as err:
            raise Refused(503, "timeout", f"the request took over {self._timeout:g} s: try "
                                          f"a shorter utterance", {"Retry-After": "2"}) from err

    def _done(self, _future) -> None:
        with self._lock:
            self._busy -= 1

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


class BodyBudget:
    """The bytes of request bodies the service holds at once (being read, parsed or waiting
    for inference), at most `limit`: a body is counted at its declared length (the size
    limit when it declares none) from before it is read until its answer, and one that
    does not fit is refused at once (503). Slow or many large bodies then cost a bounded
    amount of memory and take no place on the inference pool."""

    def __init__(self, limit: int):
        self._limit, self._held = limit, 0

    @asynccontextmanager
    async def hold(self, size: int):
        if self._held + size > self._limit:
            raise Refused(503, "bodies_full", "the service holds too many large bodies: try "
                                              "again shortly, or send .npy", {"Retry-After": "1"})
        self._held += size  # one event loop: no lock needed
        try:
            yield
        finally:
            self._held -= size


async def read_within(read, seconds: float):
    """`await read()`, or Refused 408 when it takes over `seconds` (a slow body)."""
    try:
        async with asyncio.timeout(seconds):
            return await read()
    except TimeoutError as err:
        raise Refused(408, "slow_body", f"the body did not arrive within {seconds:g} s") \
            from err


class RateLimits:
    """At most `burst` requests in any `burst / rate` seconds per identity (a moving
    window: bursts up to `burst`, `rate` per second sustained)."""

    def __init__(self, rate: float, burst: int):
        self._item = RateLimitItemPerSecond(burst, max(1, math.ceil(burst / rate)))
        self._limiter = MovingWindowRateLimiter(MemoryStorage())

    def check(self, identity: str) -> None:
        if not self._limiter.hit(self._item, identity):
            reset = self._limiter.get_window_stats(self._item, identity).reset_time
            wait = max(1, math.ceil(reset - time.time()))
            raise Refused(429, "rate_limited", f"too many requests: at most "
                                               f"{self._item.amount} in "
                                               f"{self._item.multiples} s",
                          {"Retry-After": str(wait)})


def declared_length(header: str | bytes | None) -> int | None:
    """A Content-Length header as a number of bytes; None when there is none or it is not
    a number (the one reading of it: the body budget's and the metrics')."""
    return int(header) if header is not None and header.isdigit() else None


def media_type(content_type: str) -> str:
    return content_type.split(";")[0].strip().lower()


def body_limit(limits: Limits, content_type: str) -> int:
    """The largest body of this content type."""
    return limits.max_json_bytes if media_type(content_type) == "application/json" \
        else limits.max_body_bytes


class JsonParser:
    """JSON bodies parsed one at a time in a process of their own (which ends with the
    service, however the service ends)."""

    def __init__(self):
        self._pool = None
        self._lock = threading.Lock()

    async def parse(self, body: bytes, depth: int, timeout: float) -> np.ndarray:
        """The features of a JSON body, parsed in the parser's process while this request
        waits without holding a thread (the inference pool's are for inference)."""
        with self._lock:
            if self._pool is None:  # started on first use, a fresh interpreter (no fork)
                self._pool = ProcessPoolExecutor(1, mp_context=get_context("spawn"),
                                                 initializer=_follow_parent,
                                                 initargs=(os.getpid(),))
            pool = self._pool
        try:
            return await asyncio.wait_for(asyncio.wrap_future(pool.submit(_json, body, depth)),
                                          timeout)
        except BrokenProcessPool as err:  # the parser died (e.g. out of memory): start anew
            with self._lock:
                self._pool = None
            raise Refused(503, "parser_failed", "the JSON parser stopped: try again, or send "
                                                ".npy", {"Retry-After": "1"}) from err
        except TimeoutError as err:
            raise Refused(503, "timeout", "the JSON body took too long to parse: send .npy",
                          {"Retry-After": "2"}) from err

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)


def _follow_parent(parent: int) -> None:
    """In the parser's process: end when the service's process has gone (killed, it could
    not say so), instead of waiting forever for work."""
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch, daemon=True).start()


def check_type(content_type: str) -> str:
    """The media type of a body the service reads, or Refused 415."""
    kind = media_type(content_type)
    if kind not in (*NPY_TYPES, "application/json"):
        raise Refused(415, "unsupported_type", f"content type {kind or '(none)'!r}: send "
                                               f"application/x-npy or application/json "
                                               f"features (never audio)")
    return kind


def parse_body(body: bytes, content_type: str, json_depth: int) -> np.ndarray:
    """A request body as the features it carries (not yet checked against the bundle),
    parsed here (the service parses JSON in `JsonParser`'s process)."""
    kind = check_type(content_type)
    return _npy(body) if kind in NPY_TYPES else _json(body, json_depth)


def _npy(body: bytes) -> np.ndarray:
    if not body.startswith(b"\x93NUMPY"):
        raise Refused(400, "unreadable_body", "the body is not a .npy array (no NumPy magic "
                                              "string)")
    try:
        x = np.load(io.BytesIO(body), allow_pickle=False)
    except ValueError as err:  # an object array needs pickle
        if "allow_pickle" in str(err):
            raise Refused(400, "unreadable_body", "an object array (it needs pickle): "
                                                  "refused") from err
        raise Refused(400, "unreadable_body", f"unreadable .npy body ({err})") from err
    except Exception as err:  # truncated or garbled
        raise Refused(400, "unreadable_body", f"unreadable .npy body ({err})") from err
    if x.dtype != np.float32:
        raise Refused(415, "wrong_dtype", f"features must be float32 (little-endian '<f4'), "
                                          f"not {x.dtype}: other types are refused so that "
                                          f"a small body cannot become a large array")
    return x


def _number(text: str) -> float:
    if len(text) > MAX_DIGITS:
        raise ValueError(f"a number of {len(text)} characters")
    value = float(text)
    if not math.isfinite(value) or abs(value) > FLOAT32_MAX:
        raise ValueError(f"{text[:20]} does not fit a float32")
    return value


def _constant(name: str) -> float:
    raise ValueError(f"{name} is not a number JSON allows")


def _json(body: bytes, depth: int) -> np.ndarray:
    deepest = _nesting(body)
    if deepest > depth:
        raise Refused(400, "json_too_deep", f"JSON nested {deepest} levels deep: at most "
                                            f"{depth}")
    try:
        data = json.loads(body, parse_int=_number, parse_float=_number,
                          parse_constant=_constant)
    except (ValueError, RecursionError) as err:
        raise Refused(400, "bad_json", f"unreadable JSON body ({err})") from err
    if not isinstance(data, dict) or not isinstance(data.get("features"), list):
        raise Refused(400, "bad_json", 'JSON body must be {"features": [[...], ...]} of '
                                       'numbers')
    try:
        return np.asarray(data["features"], dtype=np.float32)
    except (ValueError, TypeError) as err:
        raise Refused(400, "bad_json", f"features are not a regular array of numbers "
                                       f"({err})") from err


_OPEN, _CLOSE = frozenset(b"[{"), frozenset(b"]}")


def _nesting(body: bytes) -> int:
    """The deepest nesting of brackets in a JSON body, counted without parsing it (so a
    hostile body never reaches the recursive parser): brackets inside strings are skipped
    by counting only outside quotes, a quote being escaped when an odd number of
    backslashes comes before it."""
    counts = np.frombuffer(body, dtype=np.uint8)
    position = np.arange(len(counts))
    backslash = counts == ord("\\")
    # backslashes in a row ending at each position: from the last byte that is not one
    run = position - np.maximum.accumulate(np.where(backslash, -1, position))
    escaped = np.zeros(len(counts), dtype=bool)
    escaped[1:] = run[:-1] % 2 == 1
    inside = np.cumsum((counts == ord('"')) & ~escaped) % 2 == 1
    step = (np.isin(counts, list(_OPEN)).astype(np.int32)
            - np.isin(counts, list(_CLOSE)).astype(np.int32))
    step[inside] = 0
    return int(np.cumsum(step).max(initial=0))
