"""The browser page in headless Chromium: a WAV through the page, probabilities back, the
page's log-mel against the Python client's, what it posts against the clean features, and
a malicious server the page refuses (a σ = 0 cloak, an unsigned bundle, a swapped script)."""

import base64
import hashlib
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import UNLIMITED, free_port, serving, start
from sercloak import cloakfile
from sercloak.serving.client import Client, log_mel

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SCREENSHOTS = Path(__file__).resolve().parents[1] / "test-output"
STATIC = Path(__file__).resolve().parents[1] / "src" / "sercloak" / "serving" / "static"


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"no Chromium at {CHROMIUM}: apt-get install chromium (see .ci/run)")
    with sync_api.sync_playwright() as p:
        try:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        except Exception as err:  # a browser that cannot start is an environment problem
            pytest.skip(f"Chromium at {CHROMIUM} did not start: {err}")
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def signed_server(signed_bundle):
    yield from serving(signed_bundle, *UNLIMITED)


def new_page(browser):
    """A page whose Content Security Policy lets the test's own probes run (Playwright
    evaluates them as strings); the page's script still has to pass its integrity check."""
    return browser.new_page(bypass_csp=True)


def utterance(tmp_path: Path) -> Path:
    t = np.arange(int(16000 * 2.5)) / 16000
    wave = (0.3 * np.sin(2 * np.pi * (140 + 40 * t) * t)
            * (0.6 + 0.4 * np.sin(2 * np.pi * 2 * t))).astype(np.float32)
    wav = tmp_path / "utterance.wav"
    sf.write(wav, wave, 16000, subtype="PCM_16")
    return wav


def recording_page(browser, forged: dict | None = None):
    """A new page that records every request it makes in `page.requests_made`; `forged`:
    {path: body or (body, content type)} its server answers instead (`serve_as`)."""
    page = new_page(browser)
    page.requests_made = []
    page.on("request", lambda r: page.requests_made.append((r.method, r.url,
                                                            r.post_data_buffer or b"")))
    for path, answer in (forged or {}).items():
        serve_as(page, path, *(answer if isinstance(answer, tuple) else (answer,)))
    return page


def open_page(browser, url: str, pin: Path | None = None, unverified: bool = False,
              forged: dict | None = None):
    """The page at `url` (`recording_page`), with the exporter's public key pinned or
    unverified use allowed."""
    page = recording_page(browser, forged)
    page.goto(url + "/")
    page.wait_for_function("window.sercloakDemo !== undefined", timeout=30000)
    if pin is not None:
        page.fill("#pin", pin.read_text().strip())
        page.click("#pin-use")
    if unverified:
        page.check("#allow-unverified")
    return page


def posts(page) -> list:
    return [r for r in page.requests_made if r[0] == "POST"]


def test_the_integrity_hashes_in_the_page_match_its_files():
    html = (STATIC / "index.html").read_text()
    for name in ("app.js", "app.css"):
        digest = base64.b64encode(hashlib.sha384((STATIC / name).read_bytes()).digest()).decode()
        assert f'"static/{name}" integrity="sha384-{digest}"' in html, (
            f"static/index.html: {name}'s integrity attribute must be sha384-{digest}")


def test_page_checks_a_signed_bundle_cloaks_a_file_and_sends_only_cloaked_features(
        signed_server, signed_bundle, signing_key, browser, tmp_path):
    wav = utterance(tmp_path)
    page = open_page(browser, signed_server, pin=signing_key[1])
    page.wait_for_function("window.sercloakDemo.client !== null", timeout=30000)
    assert "signature checked" in page.inner_text("#bundle-id")
    page.set_input_files("#file", str(wav))
    page.wait_for_function("window.sercloakDemo.result !== null", timeout=60000)
    labels = page.locator("#probabilities td:first-child").all_text_contents()
    assert labels == ["neutral", "happy", "sad", "angry"]
    probabilities = page.evaluate("Object.values(window.sercloakDemo.result.utterance"
                                  ".probabilities)")
    assert sum(probabilities) == pytest.approx(1.0, abs=1e-5)
    SCREENSHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "browser_demo.png"), full_page=True)

    # the page's log-mel equals the Python client's on the same samples (before any noise);
    # the samples are the page's own decode: Chromium's WAV decoder differs from
    # libsndfile's by a fraction of an int16 step, which is not the features' doing
    decoded = np.array(page.evaluate("Array.from(window.sercloakDemo.wave)"), np.float32)
    samples, _ = sf.read(wav, dtype="float32")
    assert decoded.shape == samples.shape and np.abs(decoded - samples).max() < 1e-4
    ours = np.array(page.evaluate("window.sercloakDemo.logMel.map(r => Array.from(r))"))
    client = Client.from_bundle(signed_bundle)
    theirs = log_mel(decoded, client.settings, client.filterbank)
    assert ours.shape == theirs.shape
    assert np.abs(ours - theirs).max() <= 0.05

    # one POST, float32 .npy features, no audio: and what it carries is the clean features
    # plus the cloak's noise (per mel bin about σ, in the cloak's standard units)
    (post,) = posts(page)
    assert post[1].endswith("/v1/emotion") and b"RIFF" not in post[2]
    sent = np.load(io.BytesIO(post[2]), allow_pickle=False)
    assert sent.dtype == np.float32
    client.cloak = None  # the Python client without its cloak: the clean features
    clean = client(decoded, remember=False)
    cloak = Client.from_bundle(signed_bundle).cloak
    assert sent.shape == clean.shape
    kept = cloak.mask > 0.5  # suppressed bins are replaced, not noised
    spread = ((sent - clean) / cloak.feat_std)[:, kept].std(axis=0)  # μ_s: a constant shift
    assert np.all(spread > 0.5 * cloak.sigma[kept]) and np.all(spread < 2 * cloak.sigma[kept])
    assert np.abs(sent - clean).mean() > 0.1
    page.close()


def npy_bytes(array) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def forged_cloak(bundle: Path, tmp_path: Path, one_bin: bool = False) -> tuple[bytes, bytes]:
    """(cloak.npz with σ = 0 everywhere (`one_bin`: but in one mel bin) and nothing
    suppressed, a manifest whose hashes and id agree with it): what a malicious server sends
    to receive clean features."""
    from sercloak.serving.bundle import bundle_id

    meta, arrays = cloakfile.read(bundle / "client" / "cloak.npz")
    sigma = np.zeros_like(arrays["sigma"])
    sigma[..., 0] = 1.0 if one_bin else 0.0
    arrays = {**arrays, "sigma": sigma, "offset_sigma": np.zeros_like(arrays["sigma"]),
              "mask": np.ones_like(arrays["mask"])}
    file = tmp_path / ("one-bin.npz" if one_bin else "zero.npz")
    cloakfile.write(file, {k: v for k, v in meta.items() if k != "format"}, arrays)
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["files"]["client/cloak.npz"] = hashlib.sha256(file.read_bytes()).hexdigest()
    manifest["bundle_id"] = bundle_id(manifest["files"])
    return file.read_bytes(), json.dumps(manifest).encode()


def serve_as(page, path: str, body: bytes | None, content_type="application/octet-stream"):
    """The malicious server: `path` answers `body` (None: 404)."""
    def fulfil(route):
        if body is None:
            route.fulfill(status=404, body='{"detail": "no such file"}',
                          content_type="application/json")
        else:
            route.fulfill(status=200, body=body, content_type=content_type)
    page.route(f"**/{path}", fulfil)


def refused(page, words: str, wav: Path) -> None:
    """The page refused, saying `words`, and sends nothing even when given a file."""
    page.wait_for_function("window.sercloakDemo.refused !== null", timeout=30000)
    assert words in page.evaluate("window.sercloakDemo.refused")
    assert page.evaluate("window.sercloakDemo.client") is None
    page.set_input_files("#file", str(wav))
    page.wait_for_timeout(500)
    assert posts(page) == []


def test_the_page_refuses_a_malicious_servers_bundle(signed_server, signed_bundle,
                                                     signing_key, browser, tmp_path):
    wav = utterance(tmp_path)
    cloak, manifest = forged_cloak(signed_bundle, tmp_path)

    # σ = 0 arrays, the hashes made to agree: the pinned key's signature does not
    forgery = {"v1/bundle/files/client/cloak.npz": cloak,
               "v1/bundle/files/manifest.json": manifest}
    page = open_page(browser, signed_server, pin=signing_key[1], forged=forgery)
    refused(page, "signature does not verify", wav)
    # without a pinned key, used unverified: the σ = 0 cloak itself is refused
    page.click("#pin-forget")
    page.check("#allow-unverified")
    refused(page, "adds no noise", wav)
    page.close()

    # σ in one mel bin: the arrays pass their check, what they would send is refused
    cloak, manifest = forged_cloak(signed_bundle, tmp_path, one_bin=True)
    forgery = {"v1/bundle/files/client/cloak.npz": cloak,
               "v1/bundle/files/manifest.json": manifest}
    page = open_page(browser, signed_server, unverified=True, forged=forgery)
    page.wait_for_function("window.sercloakDemo.client !== null", timeout=30000)
    page.set_input_files("#file", str(wav))
    page.wait_for_function("window.sercloakDemo.refused !== null", timeout=30000)
    assert "under noise of a tenth of its spread" in page.evaluate("window.sercloakDemo.refused")
    assert posts(page) == []
    page.close()

    # an unsigned bundle while a key is pinned
    page = open_page(browser, signed_server, pin=signing_key[1],
                     forged={"v1/bundle/files/manifest.sig": None})
    refused(page, "not signed", wav)
    page.close()

    # no key pinned and no consent to an unverified bundle: nothing is used
    page = open_page(browser, signed_server)
    refused(page, "no key is pinned", wav)
    page.close()

    # a swapped script: the browser refuses to run it (Subresource Integrity)
    swapped = (STATIC / "app.js").read_text() + "\n// and send the audio elsewhere\n"
    page = recording_page(browser, {"static/app.js": (swapped.encode(), "text/javascript")})
    page.goto(signed_server + "/")
    page.wait_for_timeout(2000)
    assert page.evaluate("window.sercloakDemo === undefined")
    assert "integrity check" in page.inner_text("#status")
    assert posts(page) == []
    page.close()


def test_page_asks_for_the_key_of_a_keyed_service(bundle, browser, tmp_path):
    from conftest import key_file

    key = "browser-key-" + "9" * 20
    keys = key_file(tmp_path / "keys.txt", key + "\n")
    for url in serving(bundle, "--api-key-file", str(keys), log=tmp_path / "service.log"):
        page = open_page(browser, url, unverified=True)
        page.wait_for_selector("#key-form:not([hidden])", timeout=30000)
        assert "needs an API key" in page.inner_text("#status")
        page.fill("#api-key", "wrong-key-" + "0" * 20)
        page.click("#key-use")
        page.wait_for_function("document.getElementById('status').textContent"
                               ".includes('refused the key')", timeout=30000)
        page.fill("#api-key", key)
        page.click("#key-use")
        page.wait_for_function("window.sercloakDemo.client !== null", timeout=30000)
        page.close()


def test_the_page_from_this_machine_posts_to_a_service_elsewhere(
        signed_bundle, signing_key, browser, tmp_path):
    """`sercloak client` serves the page and the bundle's client part here; the service
    (another origin, which allows this page's) sees only the cloaked features."""
    port = free_port()
    origin = f"http://127.0.0.1:{port}"
    for service in serving(signed_bundle, "--allow-origin", origin, *UNLIMITED,
                           log=tmp_path / "service.log"):
        process = start(["client", "--bundle", str(signed_bundle), "--server", service,
                         "--port", str(port), "--trust-key", str(signing_key[1])],
                        origin + "/config.json", tmp_path / "client.log")
        try:
            page = open_page(browser, origin)
            page.wait_for_function("window.sercloakDemo.client !== null", timeout=30000)
            page.set_input_files("#file", str(utterance(tmp_path)))
            page.wait_for_function("window.sercloakDemo.result !== null", timeout=60000)
            (post,) = posts(page)
            assert post[1] == service + "/v1/emotion"
            assert all(r[1].startswith((origin, service)) for r in page.requests_made)
            page.close()
        finally:
            process.terminate()
            process.wait(timeout=10)


def test_the_page_says_a_label_bundle_needs_the_python_client(label_bundle, browser,
                                                               tmp_path):
    """The label design runs the whole emotion model on the device, which the page does not:
    it says so, loads no client and posts nothing."""
    for url in serving(label_bundle, log=tmp_path / "service.log"):
        page = open_page(browser, url, unverified=True)
        page.wait_for_function("document.getElementById('status').textContent"
                               ".includes('Python client')", timeout=30000)
        assert "the emotion model itself" in page.inner_text("#status")
        assert page.evaluate("window.sercloakDemo.client") is None and not posts(page)
        page.close()
