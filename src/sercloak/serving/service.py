"""`sercloak serve`: the emotion service. It only ever sees protected features.

    POST /v1/emotion   protected features, `application/x-npy` (float32, read without
                       pickle) or JSON {"features": [...]}: cloaked log-mel (frames × mel
                       bins) for a spectrogram bundle, the noisy sequence (windows × steps
                       × k) for an embedding bundle, the label the device recognised (a 1 ×
                       classes one-hot row) for a label bundle; header X-Bundle-Id must name
                       the bundle served. Returns probabilities per 2 s window and for the
                       utterance (a label bundle: the label, no windows). Audio is never
                       accepted.
    GET  /healthz      liveness, and whether the service wants an API key
    GET  /metrics      Prometheus metrics (`operations.Metrics`)
    GET  /v1/bundle    the bundle's manifest (settings, labels, measured privacy)
    GET  /v1/bundle/files/NAME   the manifest's exact bytes, its signature, and the
                       client part's files: what the browser page checks (hashes and
                       signature, against a key the user pins) and computes with
    GET  /             the browser demo (static/: plain JavaScript under Subresource
                       Integrity, served from the package, no external network)
    GET  /openapi.json the API's description, only with `--docs` (no Swagger page: it
                       would load its scripts from a CDN into the origin that holds the key)

Every refused request gets a 4xx or 503 whose `detail` names the problem and
whose reason is counted in /metrics (`limits.Refused`, `operations.REASONS`):
a missing or wrong bundle id (409), a body over the size limit (413; JSON's
is smaller, `Limits.max_json_bytes`), more
than `Limits.max_seconds` of speech (413), a content type other than the two
above or a dtype other than float32 (415), an unreadable, truncated or
pickled .npy or malformed, too deep or out-of-range JSON (400), features of
the wrong shape, mel count, steps, dimensions or length, non-finite or out of
range (422), too many requests for one key (429 with Retry-After), a full
inference queue or a request past the time limit (503 with Retry-After).
Inference runs on a bounded pool of its own threads (`limits.InferencePool`);
`/healthz` and `/metrics` run on the event loop and never wait behind it.

With an API key file, every endpoint but /healthz, the page and its static
files wants ``Authorization: Bearer KEY`` and answers 401 without a valid
one; every answer carries security headers; every request is counted in the
metrics and written to the access log (`operations.py`). `--allow-origin`
lets a page served elsewhere (`sercloak client`) post features (CORS).
`app_from_environment` builds the same app in each of uvicorn's worker
processes (``sercloak serve --workers N``).
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import tempfile
from contextlib import asynccontextmanager
from dataclasses import asdict
from pathlib import Path

import numpy as np
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict

from .bundle import CLIENT_FILES, MANIFEST, SIGNATURE
from .inference import BadFeatures, EmotionModel
from .limits import (
    BodyBudget,
    InferencePool,
    JsonParser,
    Limits,
    RateLimits,
    Refused,
    body_limit,
    check_type,
    declared_length,
    parse_body,
    read_within,
)
from .operations import ApiKeys, Metrics, Operations, access_logger, bearer_key
from .page import PAGE, STATIC

SERVED_FILES = (MANIFEST, SIGNATURE, *CLIENT_FILES)  # what /v1/bundle/files/ may send


class Health(BaseModel):
    status: str
    bundle_id: str
    api_key_required: bool


class Window(BaseModel):
    start_s: float
    end_s: float
    probabilities: dict[str, float]


class Utterance(BaseModel):
    label: str
    probabilities: dict[str, float]


class Emotion(BaseModel):
    bundle_id: str
    labels: list[str]
    windows: list[Window]
    utterance: Utterance


class Manifest(BaseModel):
    """A bundle manifest (`bundle.py` says what it holds)."""

    model_config = ConfigDict(extra="allow")
    format: str
    bundle_id: str
    design: str
    files: dict[str, str]
    labels: list[str]


class Problem(BaseModel):
    detail: str


PROBLEMS = {status: {"model": Problem} for status in (400, 401, 409, 413, 415, 422, 429, 503)}


def _declared(request: Request, limit: int) -> int:
    """The body's declared length (Refused 413 over `limit`), or `limit` when it declares
    none: what the body budget counts it as."""
    declared = declared_length(request.headers.get("content-length"))
    if declared is None:
        return limit
    if declared > limit:
        raise Refused(413, "too_large", f"body of {declared} bytes is over the limit of "
                                        f"{limit} bytes")
    return declared


async def _body(request: Request, limit: int) -> bytes:
    """The request body, refused as soon as it grows past `limit` bytes."""
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise Refused(413, "too_large", f"body is over the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


# what `sercloak serve --workers N` hands each worker process (they import this module)
ENV_BUNDLE, ENV_KEYS, ENV_LOG = "SERCLOAK_BUNDLE", "SERCLOAK_API_KEY_FILE", "SERCLOAK_ACCESS_LOG"
ENV_OPTIONS = "SERCLOAK_SERVE_OPTIONS"  # limits, docs, origins: JSON


M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter


def give_back_large_buffers(threshold: int = 2**18) -> None:
    """Have glibc map every allocation of `threshold` bytes or more on its own, so a freed
    body-sized buffer goes back to the system. By default glibc raises that threshold to
    the largest block it has freed (up to 32 MiB), after which 8 MiB bodies come from its
    heap and leave it fragmented: the service's resident memory then only grows. Linux with
    glibc only; elsewhere nothing changes."""
    try:
        ctypes.CDLL("libc.so.6").mallopt(M_MMAP_THRESHOLD, threshold)
    except (OSError, AttributeError):
        pass


def create_app(bundle: Path | str, api_keys: ApiKeys | None = None,
               access_log: Path | str | None = None, limits: Limits = Limits(),
               docs: bool = False, allow_origins: tuple[str, ...] = ()) -> FastAPI:
    """The service of `bundle`; with `api_keys`, only for their holders; its access log
    appended to `access_log` (default: stderr)."""
    give_back_large_buffers()
    model = EmotionModel(bundle, max_seconds=limits.max_seconds)
    limits = limits.room_for(model.max_values)  # a longer --max-seconds, larger bodies
    pool = InferencePool(limits.workers, limits.queue, limits.timeout_s)
    budget = BodyBudget(limits.body_budget_bytes)
    json_parser = JsonParser()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        pool.close()  # the service stops: its threads and the JSON parser's process too
        json_parser.close()

    app = FastAPI(title="sercloak emotion service", docs_url=None, redoc_url=None,
                  openapi_url="/openapi.json" if docs else None, lifespan=lifespan,
                  description="Emotion recognition from cloaked log-mel features. "
                              f"Bundle {model.bundle_id}.")
    metrics, rates = Metrics(), RateLimits(limits.rate, limits.burst)
    app.add_middleware(Operations, api_keys=api_keys, metrics=metrics,
                       log=access_logger(access_log), bundle_id=model.bundle_id)
    if allow_origins:  # a page served elsewhere (`sercloak client`) posts features here;
        # outermost (added last), so a browser's preflight, which carries no key, is
        # answered before the key check, and refusals carry the headers it needs to read them
        app.add_middleware(CORSMiddleware, allow_origins=list(allow_origins),
                           allow_methods=["GET", "POST"], max_age=600,
                           allow_headers=["Authorization", "Content-Type", "X-Bundle-Id"])

    @app.exception_handler(Refused)
    async def refused(request: Request, err: Refused) -> JSONResponse:
        request.state.refused = err.reason
        return JSONResponse({"detail": str(err)}, err.status, headers=err.headers)

    def rate_limit(request: Request) -> None:
        """Per API key (its hash: no key is kept; the key as `Operations` checked it, so
        spelling the header another way is the same key), or per address without keys."""
        key = bearer_key(request.headers.get("authorization", "")) if api_keys else None
        rates.check(hashlib.sha256(key).hexdigest() if key else
                    request.client.host if request.client else "unknown")

    app.include_router(_operations(model, metrics, api_keys is not None))
    app.include_router(_bundle(model), dependencies=[Depends(rate_limit)])
    app.include_router(_emotion(model, limits, pool, json_parser, budget),
                       dependencies=[Depends(rate_limit)])
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


def _operations(model: EmotionModel, metrics: Metrics, keyed: bool) -> APIRouter:
    """Liveness, metrics and the page: on the event loop, never behind inference."""
    router = APIRouter()

    @router.get("/healthz", response_model=Health)
    async def healthz() -> Health:
        return Health(status="ok", bundle_id=model.bundle_id, api_key_required=keyed)

    @router.get("/metrics", include_in_schema=False)
    async def prometheus() -> Response:
        content, media_type = metrics.exposition()
        return Response(content, media_type=media_type)

    @router.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(PAGE)

    return router


def _bundle(model: EmotionModel) -> APIRouter:
    """The manifest, and the exact bytes of what the page checks and computes with."""
    router = APIRouter()

    @router.get("/v1/bundle", response_model=Manifest, responses=PROBLEMS)
    async def bundle_manifest() -> dict:
        return model.manifest

    @router.get("/v1/bundle/files/{name:path}", responses=PROBLEMS,
                response_class=FileResponse)
    async def bundle_file(name: str) -> FileResponse:
        file = model.bundle.folder / name
        if name not in SERVED_FILES or not file.is_file():
            raise Refused(404, "not_found", f"the bundle has no client file {name!r}")
        return FileResponse(file, media_type="application/octet-stream")

    return router


def _emotion(model: EmotionModel, limits: Limits, pool: InferencePool,
             json_parser: JsonParser, budget: BodyBudget) -> APIRouter:
    """POST /v1/emotion: the body read within its own time and the body budget, JSON parsed
    in a process of its own, inference (and .npy parsing) on the bounded pool."""
    router = APIRouter()

    def answer(features: np.ndarray | bytes, content_type: str) -> dict:
        if isinstance(features, bytes):
            features = parse_body(features, content_type, limits.json_depth)
        try:
            return model.predict(features)
        except BadFeatures as err:
            reason = "too_long" if err.status == 413 else "bad_features"
            raise Refused(err.status, reason, str(err)) from err

    @router.post("/v1/emotion", response_model=Emotion, responses=PROBLEMS)
    async def emotion(request: Request) -> dict:
        given = request.headers.get("x-bundle-id")
        if given != model.bundle_id:
            raise Refused(409, "wrong_bundle", f"X-Bundle-Id {given!r} does not match the "
                                               f"bundle served ({model.bundle_id}): features "
                                               f"protected for another bundle cannot be read")
        content_type = request.headers.get("content-type", "")
        kind = check_type(content_type)  # before a byte of the body is read
        limit = body_limit(limits, content_type)
        async with budget.hold(_declared(request, limit)):
            body = await read_within(lambda: _body(request, limit), limits.body_timeout_s)
            if kind == "application/json":
                body = await json_parser.parse(body, limits.json_depth, limits.timeout_s)
            return await pool.run(answer, body, content_type)

    return router


def app_from_environment() -> FastAPI:
    """`create_app` from what `sercloak serve` put in the environment: the app factory of
    each worker process."""
    keys = os.environ.get(ENV_KEYS)
    options = json.loads(os.environ.get(ENV_OPTIONS) or "{}")
    return create_app(os.environ[ENV_BUNDLE], ApiKeys(keys) if keys else None,
                      os.environ.get(ENV_LOG) or None, Limits(**options.get("limits", {})),
                      options.get("docs", False), tuple(options.get("allow_origins", ())))


def serve(bundle: Path, host: str, port: int, key_file: Path | None, access_log: Path | None,
          ssl_keyfile: Path | None, ssl_certfile: Path | None, workers: int, limits: Limits,
          docs: bool, allow_origins: tuple[str, ...]) -> None:
    """Run the service of `bundle` on uvicorn until stopped: one process, or `workers`
    processes that each build the app from the environment (their metrics summed)."""
    import uvicorn

    keys = ApiKeys(key_file) if key_file else None  # refuse a bad file now, not per worker
    if (ssl_keyfile is None) != (ssl_certfile is None):
        raise ValueError("HTTPS needs both --ssl-keyfile and --ssl-certfile")
    for file in (ssl_keyfile, ssl_certfile):
        if file is not None and not file.is_file():
            raise FileNotFoundError(f"{file}: no such file")
    if workers < 1:
        raise ValueError(f"--workers must be at least 1, not {workers}")
    scheme = "https" if ssl_certfile else "http"
    print(f"serving {bundle} on {scheme}://{host}:{port}, {workers} worker(s), "
          + (f"{len(keys)} API key(s)" if keys else "no API key")
          + f"; at most {limits.max_seconds:g} s of speech, {limits.rate:g} requests/s per "
            f"key; access log to {access_log or 'stderr'}"
          + ("; /openapi.json on" if docs else ""), flush=True)
    options = dict(host=host, port=port, log_level="warning",
                   ssl_keyfile=None if ssl_keyfile is None else str(ssl_keyfile),
                   ssl_certfile=None if ssl_certfile is None else str(ssl_certfile))
    if workers == 1:
        uvicorn.run(create_app(bundle, keys, access_log, limits, docs, allow_origins),
                    **options)
        return
    os.environ.update({ENV_BUNDLE: str(bundle), ENV_KEYS: str(key_file or ""),
                       ENV_LOG: str(access_log or ""),
                       ENV_OPTIONS: json.dumps({"limits": asdict(limits), "docs": docs,
                                                "allow_origins": list(allow_origins)})})
    with tempfile.TemporaryDirectory(prefix="sercloak-metrics-") as metrics_dir:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
        uvicorn.run("sercloak.serving.service:app_from_environment", factory=True,
                    workers=workers, **options)
