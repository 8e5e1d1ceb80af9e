"""The service as an operator runs it: API keys, HTTPS, metrics, the access log, workers."""

from __future__ import annotations

import http.client
import json
import shutil
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from urllib.parse import urlsplit

import pytest

from conftest import key_file, serving
from sercloak.serving.bundle import open_bundle
from sercloak.serving.operations import ApiKeys
from test_service import cloaked_features, npy

KEY = "k3y-" + "a1b2c3d4" * 4  # what the holder sends
OTHER_KEY = "k3y-" + "e5f6a7b8" * 4  # a valid key of someone else (second line of the file)


def call(url: str, path: str, key: str | None = None, body: bytes | None = None,
         bundle_id: str | None = None, context=None) -> tuple[int, bytes]:
    headers = {"Content-Type": "application/x-npy"}
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    if bundle_id is not None:
        headers["X-Bundle-Id"] = bundle_id
    request = urllib.request.Request(url + path, data=body, headers=headers,
                                     method="POST" if body is not None else "GET")
    try:
        with urllib.request.urlopen(request, timeout=30, context=context) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def metric(text: str, name: str, **labels) -> float:
    """The value of one sample in Prometheus' text format (0 when absent)."""
    wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
    for line in text.splitlines():
        head, _, value = line.rpartition(" ")
        if head == (f"{name}{{{wanted}}}" if wanted else name):
            return float(value)
    return 0.0


def access_lines(log, endpoint: str, count: int) -> list[dict]:
    """The access log's records once `count` of them name `endpoint`: a background thread
    writes them, so wait for it (at most 10 s)."""
    deadline = time.monotonic() + 10
    while True:
        records = [json.loads(line) for line in log.read_text().splitlines()]
        if sum(r["endpoint"] == endpoint for r in records) >= count or \
                time.monotonic() > deadline:
            return records
        time.sleep(0.05)


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    """A self-signed certificate for 127.0.0.1, made with openssl."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed: cannot make a test certificate")
    folder = tmp_path_factory.mktemp("tls")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-keyout", str(folder / "key.pem"), "-out", str(folder / "cert.pem"),
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    return folder / "key.pem", folder / "cert.pem"


@pytest.fixture(scope="module")
def secured(bundle, certificate, tmp_path_factory):
    """The service over HTTPS with an API key file and an access log file."""
    folder = tmp_path_factory.mktemp("secured")
    keys = key_file(folder / "keys.txt", f"# holders of the service\n{KEY}\n\n{OTHER_KEY}\n")
    access_log = folder / "access.log"
    context = ssl.create_default_context(cafile=str(certificate[1]))
    for url in serving(bundle, "--api-key-file", str(keys), "--access-log", str(access_log),
                       "--ssl-keyfile", str(certificate[0]), "--ssl-certfile",
                       str(certificate[1]), scheme="https", ssl_context=context,
                       log=folder / "service.log"):
        yield url, context, access_log, folder / "service.log"


def test_keys_https_metrics_and_a_log_without_secrets(secured, bundle):
    url, context, access_log, service_log = secured
    bundle_id = open_bundle(bundle).manifest["bundle_id"]
    feats = cloaked_features(bundle)
    body = npy(feats)

    status, answer = call(url, "/healthz", context=context)  # open, and says a key is needed
    assert status == 200 and json.loads(answer)["api_key_required"] is True
    status, answer = call(url, "/v1/emotion", None, body, bundle_id, context)
    assert status == 401 and "Authorization: Bearer" in json.loads(answer)["detail"]
    wrong = "k3y-" + "0" * 32
    status, answer = call(url, "/v1/emotion", wrong, body, bundle_id, context)
    assert status == 401 and json.loads(answer)["detail"] == \
        "the API key is not valid for this service"
    assert call(url, "/v1/bundle", None, context=context)[0] == 401
    for key in (KEY, OTHER_KEY):
        status, answer = call(url, "/v1/emotion", key, body, bundle_id, context)
        assert status == 200 and json.loads(answer)["utterance"]["label"]
    assert call(url, "/v1/emotion", KEY, b"garbage", bundle_id, context)[0] == 400
    status, page = call(url, "/", context=context)  # the page stays open and asks for a key
    assert status == 200 and b"api-key" in page
    with pytest.raises(urllib.error.URLError):  # HTTPS only, with this certificate
        urllib.request.urlopen(url + "/healthz", timeout=5)  # untrusted: refused
    with urllib.request.urlopen(url + "/healthz", context=context) as response:
        assert response.headers["Strict-Transport-Security"].startswith("max-age=")

    assert call(url, "/metrics", context=context)[0] == 401
    status, text = call(url, "/metrics", KEY, context=context)
    text = text.decode()
    assert metric(text, "sercloak_requests_total", endpoint="/v1/emotion", status="401") == 2
    assert metric(text, "sercloak_requests_total", endpoint="/v1/emotion", status="200") == 2
    assert metric(text, "sercloak_requests_total", endpoint="/v1/emotion", status="400") == 1
    assert metric(text, "sercloak_refused_total", reason="unauthorized") == 4
    assert metric(text, "sercloak_refused_total", reason="unreadable_body") == 1
    assert metric(text, "sercloak_request_seconds_count", endpoint="/v1/emotion") == 5
    assert metric(text, "sercloak_request_bytes_sum", endpoint="/v1/emotion") >= 4 * len(body)

    lines = access_lines(access_log, "/v1/emotion", 5)
    emotion = [r for r in lines if r["endpoint"] == "/v1/emotion"]
    assert [r["status"] for r in emotion] == [401, 401, 200, 200, 400]
    assert {r["refused"] for r in emotion if r["status"] == 401} == {"unauthorized"}
    assert all(r["bundle_id"] == bundle_id and r["latency_ms"] >= 0 for r in lines)
    everything = access_log.read_text() + service_log.read_text()
    assert KEY not in everything and OTHER_KEY not in everything and wrong not in everything
    for value in feats.ravel()[:: max(1, feats.size // 50)]:  # no feature value, any notation
        assert f"{value:.4f}" not in everything and repr(float(value)) not in everything


def test_workers_share_their_metrics(bundle, tmp_path):
    """Two worker processes: every request is counted once, whichever worker answered."""
    keys = key_file(tmp_path / "keys.txt", KEY + "\n")
    bundle_id = open_bundle(bundle).manifest["bundle_id"]
    body = npy(cloaked_features(bundle, seconds=1.0))
    for url in serving(bundle, "--workers", "2", "--api-key-file", str(keys),
                       "--access-log", str(tmp_path / "access.log"),
                       log=tmp_path / "service.log"):
        for _ in range(6):
            assert call(url, "/v1/emotion", KEY, body, bundle_id)[0] == 200
        text = call(url, "/metrics", KEY)[1].decode()
    assert metric(text, "sercloak_requests_total", endpoint="/v1/emotion", status="200") == 6
    lines = access_lines(tmp_path / "access.log", "/v1/emotion", 6)
    assert sum(r["endpoint"] == "/v1/emotion" for r in lines) == 6


@pytest.mark.parametrize("text, problem", [
    ("", "no API key in it"),
    ("# only a comment\n\n", "no API key in it"),
    ("short\n", "shorter than 16 characters"),
])
def test_a_bad_key_file_is_refused_saying_why(tmp_path, text, problem):
    file = key_file(tmp_path / "keys.txt", text)
    with pytest.raises(ValueError, match=problem):
        ApiKeys(file)
    with pytest.raises(ValueError, match="cannot read"):
        ApiKeys(tmp_path / "missing.txt")


def test_a_key_file_others_can_read_is_refused(tmp_path):
    file = tmp_path / "keys.txt"
    file.write_text(KEY + "\n")
    file.chmod(0o644)
    with pytest.raises(ValueError, match="can be read by others.*chmod 600"):
        ApiKeys(file)


def test_keys_are_checked_whole_and_never_echoed(tmp_path):
    file = key_file(tmp_path / "keys.txt", KEY + "\n")
    keys = ApiKeys(file)
    assert keys.check(f"Bearer {KEY}") is None and keys.check(f"bearer  {KEY} ") is None
    for header in (None, "", KEY, f"Basic {KEY}", f"Bearer {KEY[:-1]}", f"Bearer {KEY}x",
                   "Bearer "):
        why = keys.check(header)
        assert why is not None and KEY[4:] not in why
    assert len(keys) == 1


def test_a_refusal_before_the_body_reaches_a_client_still_sending_it(secured):
    """Refused before its body is read (no key), a request's body is still read and dropped
    before the answer (lingering). Without it, uvicorn closes a `Connection: close` request
    (what urllib, and so `sercloak predict`, sends) as soon as the answer is written, under
    a client still sending its body, which then gets a reset instead of its 401."""
    url, context = secured[:2]
    for _ in range(3):
        connection = http.client.HTTPSConnection("127.0.0.1", urlsplit(url).port, timeout=30,
                                                 context=context)
        connection.request("POST", "/v1/emotion", body=b"\0" * 2**21,
                           headers={"Content-Type": "application/x-npy",
                                    "Connection": "close"})
        answer = connection.getresponse()
        assert answer.status == 401 and b"Authorization: Bearer" in answer.read()
        connection.close()


def test_predict_sends_its_key_over_https(secured, bundle, certificate, tmp_path):
    import os
    import sys

    from conftest import write_tone

    url = secured[0]
    wav = write_tone(tmp_path / "a.wav", seconds=2.5)
    keys = key_file(tmp_path / "keys.txt", f"{OTHER_KEY}\n")
    env = {**os.environ, "SSL_CERT_FILE": str(certificate[1])}  # trust the test certificate
    command = [sys.executable, "-m", "sercloak", "predict", str(wav), "--bundle", str(bundle),
               "--server", url, "--json"]
    done = subprocess.run(command + ["--api-key-file", str(keys)], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(done.stdout.splitlines()[-1])["label"]
    refused = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert refused.returncode == 1 and "(401)" in refused.stdout
    assert OTHER_KEY not in done.stdout + done.stderr + refused.stdout + refused.stderr
    # a key never travels over plain http to another machine, unless the user says so
    plain = subprocess.run([*command[:-3], "--server", "http://emotion.example.org",
                            "--api-key-file", str(keys)], capture_output=True, text=True,
                           timeout=120)
    assert plain.returncode == 2 and "use https, or --insecure" in plain.stderr


def test_predict_follows_no_redirect_with_its_key(bundle, tmp_path):
    """A server that redirects elsewhere gets neither the key nor the features again."""
    import http.server
    import sys
    import threading

    from conftest import write_tone

    seen = []

    class Redirect(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - the handler's name
            seen.append((self.path, self.headers.get("Authorization")))
            self.send_response(307)
            self.send_header("Location", f"http://127.0.0.1:{self.server.server_port}/x")
            self.end_headers()

        def log_message(self, *args):
            pass

    redirecting = http.server.HTTPServer(("127.0.0.1", 0), Redirect)
    threading.Thread(target=redirecting.serve_forever, daemon=True).start()
    try:
        wav = write_tone(tmp_path / "a.wav", seconds=2.5)
        keys = key_file(tmp_path / "keys.txt", f"{OTHER_KEY}\n")
        done = subprocess.run([sys.executable, "-m", "sercloak", "predict", str(wav),
                               "--bundle", str(bundle), "--api-key-file", str(keys),
                               "--server", f"http://127.0.0.1:{redirecting.server_port}"],
                              capture_output=True, text=True, timeout=120)
    finally:
        redirecting.shutdown()
    assert done.returncode == 1 and "not followed" in done.stdout
    assert [path for path, _ in seen] == ["/v1/emotion"]  # the one request, never /x


def test_the_api_description_only_with_docs_and_behind_the_key(bundle, tmp_path):
    keys = key_file(tmp_path / "keys.txt", KEY + "\n")
    for url in serving(bundle, "--docs", "--api-key-file", str(keys),
                       log=tmp_path / "service.log"):
        assert call(url, "/openapi.json")[0] == 401
        status, text = call(url, "/openapi.json", KEY)
        schemas = json.loads(text)["components"]["schemas"]
        assert {"Emotion", "Health", "Manifest", "Problem"} <= set(schemas)
        assert call(url, "/docs", KEY)[0] == 404  # no page that loads scripts from a CDN


def test_a_key_spelled_another_way_is_the_same_keys_rate_limit(bundle, tmp_path):
    """The rate limit counts the key the service checked, not the header's bytes: "bearer",
    "BEARER" or extra spaces do not open a new bucket."""
    keys = key_file(tmp_path / "keys.txt", KEY + "\n")
    for url in serving(bundle, "--api-key-file", str(keys), "--rate", "1", "--burst", "2",
                       log=tmp_path / "service.log"):
        statuses = []
        for header in (f"Bearer {KEY}", f"bearer {KEY}", f"BEARER  {KEY} "):
            request = urllib.request.Request(url + "/v1/bundle",
                                             headers={"Authorization": header})
            try:
                statuses.append(urllib.request.urlopen(request, timeout=10).status)
            except urllib.error.HTTPError as err:
                statuses.append(err.code)
        assert statuses == [200, 200, 429]


def test_a_page_elsewhere_gets_its_preflight_answered_by_a_keyed_service(bundle, tmp_path):
    """A browser asks before it posts with a key, and that question carries no key: the
    service with `--allow-origin` answers it (and lets the page read its refusals)."""
    keys = key_file(tmp_path / "keys.txt", KEY + "\n")
    origin = "http://127.0.0.1:8765"
    for url in serving(bundle, "--api-key-file", str(keys), "--allow-origin", origin,
                       log=tmp_path / "service.log"):
        preflight = urllib.request.Request(
            url + "/v1/emotion", method="OPTIONS",
            headers={"Origin": origin, "Access-Control-Request-Method": "POST",
                     "Access-Control-Request-Headers": "authorization,content-type,x-bundle-id"})
        with urllib.request.urlopen(preflight, timeout=10) as response:
            assert response.status == 200
            assert response.headers["Access-Control-Allow-Origin"] == origin
        no_key = urllib.request.Request(url + "/v1/bundle", headers={"Origin": origin})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(no_key, timeout=10)
        assert refused.value.code == 401
        assert refused.value.headers["Access-Control-Allow-Origin"] == origin


def test_an_answer_the_service_did_not_mean_still_carries_its_headers_and_is_counted(
        tmp_path):
    import asyncio

    from sercloak.serving.operations import Metrics, Operations, access_logger

    async def failing_app(scope, receive, send):
        raise RuntimeError("a bug")

    metrics = Metrics()
    middleware = Operations(failing_app, api_keys=None, metrics=metrics,
                            log=access_logger(tmp_path / "access.log"), bundle_id="b")
    sent = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "path": "/v1/bundle", "method": "GET", "headers": [],
             "scheme": "http", "query_string": b""}
    with pytest.raises(RuntimeError, match="a bug"):  # the server still hears of it
        asyncio.run(middleware(scope, receive, send))
    start = sent[0]
    assert start["status"] == 500
    assert (b"x-content-type-options", b"nosniff") in start["headers"]
    assert metrics.refused.labels("error")._value.get() == 1
