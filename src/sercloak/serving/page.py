"""`sercloak client`: the browser page and the bundle's client part served from the user's
own machine, so that the page that sees the audio is not the emotion service's.

    GET /                       the page (the package's static/index.html)
    GET /static/...             its script and style (under Subresource Integrity)
    GET /config.json            where the emotion service is, and that the bundle was
                                checked here
    GET /v1/bundle/files/NAME   the local bundle's manifest, signature and client files

The bundle is checked before anything is served (`bundle.open_bundle`, with
the trusted key when given, and `client.check_protection`): a bundle that is
tampered, unsigned under a trusted key, or unprotected is refused at start.
The page computes features and the cloak and posts only protected features
to `--server`, which must allow this page's origin (`sercloak serve
--allow-origin http://127.0.0.1:PORT`). The page's Content Security Policy
lets it connect to that server and nowhere else.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from fastapi import FastAPI
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from .bundle import CLIENT_FILES, MANIFEST, SIGNATURE, open_bundle
from .client import check_protection

STATIC = Path(__file__).parent / "static"  # the page's files, in the package
PAGE = STATIC / "index.html"


def origin(url: str) -> str:
    """scheme://host[:port] of a URL, or ValueError."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"--server must be an http(s) URL, not {url!r}")
    return f"{parts.scheme}://{parts.netloc}"


def page_app(bundle: Path | str, server: str, trust_key: bytes | None = None,
             allow_unprotected: bool = False, require: str | None = None) -> FastAPI:
    """The page's own server for `bundle`, posting to `server`."""
    checked = open_bundle(bundle, trust_key)
    protection = check_protection(checked, allow_unprotected, require)
    remote = origin(server)
    app = FastAPI(title="sercloak client page", docs_url=None, redoc_url=None,
                  openapi_url=None)
    policy = (f"default-src 'none'; script-src 'self'; style-src 'self'; "
              f"img-src 'self' data: blob:; connect-src 'self' {remote}; media-src 'self' blob:; "
              f"base-uri 'none'; form-action 'none'; frame-ancestors 'none'")

    @app.middleware("http")
    async def headers(request, call_next):
        response = await call_next(request)
        response.headers.update({"Content-Security-Policy": policy,
                                 "X-Content-Type-Options": "nosniff",
                                 "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY"})
        return response

    @app.get("/")
    async def page() -> FileResponse:
        return FileResponse(PAGE)

    @app.get("/config.json")
    async def config() -> dict:
        return {"server": remote, "bundle_id": checked.bundle_id, "checked_here": True,
                "signed": checked.signed, "trusted_key": trust_key is not None,
                "protection": protection}

    @app.get("/v1/bundle/files/{name:path}")
    async def bundle_file(name: str):
        file = checked.folder / name
        if name not in (MANIFEST, SIGNATURE, *CLIENT_FILES) or not file.is_file():
            return JSONResponse({"detail": f"the bundle has no client file {name!r}"}, 404)
        return FileResponse(file, media_type="application/octet-stream")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


def serve_page(bundle: Path | str, server: str, host: str, port: int,
               trust_key: bytes | None = None, allow_unprotected: bool = False,
               require: str | None = None) -> None:
    """`page_app` on uvicorn at host:port until stopped (`sercloak client`)."""
    import uvicorn

    app = page_app(bundle, server, trust_key, allow_unprotected, require)
    print(f"the page for {bundle} at http://{host}:{port}/ posts protected features to "
          f"{server} (start it with `--allow-origin http://{host}:{port}`)", flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning")
