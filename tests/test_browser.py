"""The browser demo in headless Chromium: a WAV through the page, probabilities back, and
the page's log-mel against the Python client's."""

import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from sercloak.serving.client import Client, log_mel

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SCREENSHOTS = Path(__file__).resolve().parents[1] / "test-output"


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


def test_page_cloaks_a_file_sends_only_features_and_shows_probabilities(
        server, bundle, browser, tmp_path):
    t = np.arange(int(16000 * 2.5)) / 16000
    wave = (0.3 * np.sin(2 * np.pi * (140 + 40 * t) * t)
            * (0.6 + 0.4 * np.sin(2 * np.pi * 2 * t))).astype(np.float32)
    wav = tmp_path / "utterance.wav"
    sf.write(wav, wave, 16000, subtype="PCM_16")
    page = browser.new_page()
    requests = []
    page.on("request", lambda r: requests.append((r.method, r.url, r.post_data or "")))
    page.goto(server + "/")
    page.wait_for_function("window.sercloakDemo && window.sercloakDemo.client !== null",
                           timeout=30000)
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
    client = Client.from_bundle(bundle)
    theirs = log_mel(decoded, client.settings, client.filterbank)
    assert ours.shape == theirs.shape
    assert np.abs(ours - theirs).max() <= 0.05

    # only cloaked features left the page: one POST, JSON features, no audio bytes
    posts = [r for r in requests if r[0] == "POST"]
    assert len(posts) == 1 and posts[0][1].endswith("/v1/emotion")
    assert posts[0][2].startswith('{"features":') and "RIFF" not in posts[0][2]
    page.close()


def test_page_asks_for_the_key_of_a_keyed_service(bundle, browser, tmp_path):
    from conftest import serving

    key = "browser-key-" + "9" * 20
    keys = tmp_path / "keys.txt"
    keys.write_text(key + "\n")
    for url in serving(bundle, "--api-key-file", str(keys), log=tmp_path / "service.log"):
        page = browser.new_page()
        page.goto(url + "/")
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
