"""`sercloak serve`: the emotion service. It only ever sees protected features.

    POST /v1/emotion   protected features, `application/x-npy` (float32, read without
                       pickle) or JSON {"features": [...]}: cloaked log-mel (frames × mel
                       bins) for a spectrogram bundle, the noisy sequence (windows × steps
                       × k) for an embedding bundle; header X-Bundle-Id must name the
                       bundle served. Returns probabilities per 2 s window and for the
                       utterance. Audio is never accepted.
    GET  /healthz      liveness, and whether the service wants an API key
    GET  /metrics      Prometheus metrics (`operations.Metrics`)
    GET  /v1/bundle    the bundle's manifest (settings, labels, measured privacy)
    GET  /v1/client    the bundle's client part as JSON (feature settings, mel
                       filterbank, cloak arrays): what the browser demo computes with;
                       for a bundle the page cannot run (voice normalisation, a split
                       network), what to use instead
    GET  /             the browser demo (static/: plain JavaScript, served from the
                       package, no external network)
    GET  /docs         OpenAPI documentation

Every bad request gets a 4xx whose `detail` names the problem: a missing or
wrong bundle id (409), a body over `MAX_BODY_BYTES` (413), a content type
other than the two above (415), an unreadable, truncated or pickled .npy or
malformed JSON (400), and features of the wrong shape, mel count, steps,
dimensions or length, non-finite or out of range (422). Inference runs in a worker thread with
onnxruntime, one thread per request.

With an API key file, every endpoint but /healthz, the page and its static
files wants ``Authorization: Bearer KEY`` and answers 401 without a valid
one; every request is counted in the metrics and written to the access log
(`operations.py`). `app_from_environment` builds the same app in each of
uvicorn's worker processes (``sercloak serve --workers N``).
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np
from fastapi import FastAPI, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, Response
from fastapi.staticfiles import StaticFiles

from .client import CloakArrays
from .inference import BadFeatures, EmotionModel
from .operations import ApiKeys, Metrics, Operations, access_logger

STATIC = Path(__file__).parent / "static"

MAX_BODY_BYTES = 8 * 2**20  # 8 MiB: about 4 minutes of float32 features at 128 mel bins
NPY_TYPES = ("application/x-npy", "application/octet-stream")


async def _body(request: Request) -> bytes:
    """The request body, refused as soon as it grows past MAX_BODY_BYTES."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise HTTPException(413, f"body of {declared} bytes is over the limit of "
                                 f"{MAX_BODY_BYTES} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise HTTPException(413, f"body is over the limit of {MAX_BODY_BYTES} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def parse_features(body: bytes, content_type: str) -> np.ndarray:
    """A request body as an array, or HTTPException naming what is wrong with it."""
    kind = content_type.split(";")[0].strip().lower()
    if kind in NPY_TYPES:
        try:
            return np.load(io.BytesIO(body), allow_pickle=False)
        except Exception as err:  # truncated, garbled, or an object array needing pickle
            problem = ("a pickled (object) array: refused" if "allow_pickle" in str(err)
                       else f"unreadable .npy body ({err})")
            raise HTTPException(400, problem) from err
    if kind == "application/json":
        try:
            data = json.loads(body)
            return np.asarray(data["features"], dtype=np.float32)
        except (ValueError, KeyError, TypeError) as err:
            raise HTTPException(400, 'JSON body must be {"features": [[...], ...]} of numbers '
                                     f"({type(err).__name__}: {err})") from err
    raise HTTPException(415, f"content type {kind or '(none)'!r}: send application/x-npy or "
                             f"application/json features (never audio)")


# what `sercloak serve --workers N` hands each worker process (they import this module)
ENV_BUNDLE, ENV_KEYS, ENV_LOG = "SERCLOAK_BUNDLE", "SERCLOAK_API_KEY_FILE", "SERCLOAK_ACCESS_LOG"


def create_app(bundle: Path | str, api_keys: ApiKeys | None = None,
               access_log: Path | str | None = None) -> FastAPI:
    """The service of `bundle`; with `api_keys`, only for their holders; its access log
    appended to `access_log` (default: stderr)."""
    model = EmotionModel(bundle)
    app = FastAPI(title="sercloak emotion service",
                  description="Emotion recognition from cloaked log-mel features. "
                              f"Bundle {model.bundle_id}.")
    metrics = Metrics()
    app.add_middleware(Operations, api_keys=api_keys, metrics=metrics,
                       log=access_logger(access_log), bundle_id=model.bundle_id)

    @app.get("/healthz")
    def healthz() -> dict:
        return {"status": "ok", "bundle_id": model.bundle_id,
                "api_key_required": api_keys is not None}

    @app.get("/metrics", include_in_schema=False)
    def prometheus() -> Response:
        content, media_type = metrics.exposition()
        return Response(content, media_type=media_type)

    @app.get("/v1/bundle")
    def bundle_manifest() -> dict:
        return model.manifest

    @app.get("/v1/client")
    def client_part() -> dict:
        if model.design != "spectrogram" or model.manifest.get("transform") is not None:
            why = ("a split network's device part" if model.design == "embedding"
                   else "voice normalisation (the WORLD vocoder)")
            return {"bundle_id": model.bundle_id, "design": model.design, "browser": False,
                    "measured": model.manifest.get("measured", {}),
                    "message": f"This bundle's client runs {why}, which this page does not: "
                               f"use the Python client (`sercloak predict FILE --bundle "
                               f"BUNDLE --server URL`)."}
        cloak = CloakArrays.load(model.bundle / "client" / "cloak.npz")
        filterbank = np.load(model.bundle / "client" / "mel_filterbank.npy", allow_pickle=False)
        arrays = {name: getattr(cloak, name).tolist() for name in
                  ("mu", "sigma", "offset_sigma", "mu_s", "mask", "feat_mean", "feat_std")}
        return {"bundle_id": model.bundle_id, "design": model.design, "browser": True,
                "features": model.features,
                "measured": model.manifest.get("measured", {}), "filterbank":
                filterbank.tolist(), "cloak": {**arrays, "suppressed": cloak.suppressed,
                                               "warp": cloak.warp, "config": cloak.config}}

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.post("/v1/emotion")
    async def emotion(request: Request) -> dict:
        given = request.headers.get("x-bundle-id")
        if given != model.bundle_id:
            raise HTTPException(409, f"X-Bundle-Id {given!r} does not match the bundle served "
                                     f"({model.bundle_id}): features protected for another "
                                     f"bundle cannot be read")
        feats = parse_features(await _body(request), request.headers.get("content-type", ""))
        try:
            return await run_in_threadpool(model.predict, feats)
        except BadFeatures as err:
            raise HTTPException(err.status, str(err)) from err

    return app


def app_from_environment() -> FastAPI:
    """`create_app` from what `sercloak serve` put in the environment: the app factory of
    each worker process."""
    keys = os.environ.get(ENV_KEYS)
    return create_app(os.environ[ENV_BUNDLE], ApiKeys(keys) if keys else None,
                      os.environ.get(ENV_LOG) or None)
