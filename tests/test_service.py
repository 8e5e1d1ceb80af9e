"""The emotion service on a real uvicorn process, and `sercloak predict` against it."""

import http.client
import io
import json
import subprocess
import sys
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from conftest import write_tone
from sercloak.serving.bundle import open_bundle
from sercloak.serving.client import Client


def npy(array: np.ndarray, allow_pickle: bool = False) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=allow_pickle)
    return buffer.getvalue()


def post(url: str, body: bytes, bundle_id: str | None, content_type="application/x-npy"):
    headers = {"Content-Type": content_type}
    if bundle_id is not None:
        headers["X-Bundle-Id"] = bundle_id
    request = urllib.request.Request(url + "/v1/emotion", data=body, method="POST",
                                     headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def headers_only(url: str, headers: dict) -> tuple:
    """POST /v1/emotion with `headers` and no body after them (status, headers, JSON): what
    the service answers before reading a body."""
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    connection.putrequest("POST", "/v1/emotion")
    for name, value in headers.items():
        connection.putheader(name, str(value))
    connection.endheaders()  # the body never follows
    response = connection.getresponse()
    answer = response.status, response.headers, json.loads(response.read())
    connection.close()
    return answer


def cloaked_features(bundle, seconds=3.0) -> np.ndarray:
    client = Client.from_bundle(bundle, seed=0)
    t = np.arange(int(16000 * seconds)) / 16000
    return client(0.3 * np.sin(2 * np.pi * 180 * t).astype(np.float32))


def test_valid_requests_get_probabilities_per_window_and_utterance(server, bundle):
    bundle_id = open_bundle(bundle).manifest["bundle_id"]
    feats = cloaked_features(bundle)
    status, answer = post(server, npy(feats), bundle_id)
    assert status == 200, answer
    assert answer["labels"] == ["neutral", "happy", "sad", "angry"]
    assert len(answer["windows"]) == 4  # 301 frames: windows at 0, 50, 100 and 101 (the end)
    for part in [answer["utterance"]] + answer["windows"]:
        assert sum(part["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
    status, by_json = post(server, json.dumps({"features": feats.tolist()}).encode(), bundle_id,
                           "application/json")
    assert status == 200 and by_json["utterance"]["label"] == answer["utterance"]["label"]
    assert by_json["utterance"]["probabilities"] == pytest.approx(
        answer["utterance"]["probabilities"], abs=1e-6)
    manifest = json.loads(urllib.request.urlopen(server + "/v1/bundle").read())
    assert manifest["bundle_id"] == bundle_id
    for path in ("/docs", "/openapi.json"):  # off unless --docs
        with pytest.raises(urllib.error.HTTPError, match="404"):
            urllib.request.urlopen(server + path)


@pytest.mark.parametrize("make, status, message", [
    (lambda f: npy(f[:, :64]), 422, "64 mel bins"),
    (lambda f: npy(f[0]), 422, "2 dimensions"),
    (lambda f: npy(f[:5]), 422, "too few frames"),
    (lambda f: npy(np.where(np.arange(f.shape[1]) == 3, np.nan, f).astype(np.float32)), 422,
     "NaN or infinite"),
    (lambda f: npy(f + 1e4), 422, "outside the range"),
    (lambda f: npy(f)[:-100], 400, "unreadable .npy"),
    (lambda f: npy(np.array([{"a": 1}], dtype=object), allow_pickle=True), 400,
     "needs pickle"),
    (lambda f: b"garbage, not an array", 400, "not a .npy array"),
    (lambda f: npy(f.astype(np.int8)), 415, "must be float32"),
    (lambda f: npy(f.astype(np.float16)), 415, "must be float32"),
    (lambda f: npy(np.zeros((6001, 128), np.float32)), 413, "too long: 6001 frames"),
    (lambda f: b"{not json", 400, "JSON body"),
    (lambda f: b'{"features": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", 400, "nested"),
    (lambda f: b'{"features": [[' + b"9" * 400 + b"]]}", 400, "a number of 400 characters"),
    (lambda f: b'{"features": [[1e999]]}', 400, "does not fit a float32"),
    (lambda f: b'{"features": [[NaN]]}', 400, "not a number JSON allows"),
    (lambda f: b'{"features": [[1, 2], [3]]}', 400, "not a regular array"),
])
def test_bad_input_gets_a_4xx_naming_the_problem(server, bundle, make, status, message):
    bundle_id = open_bundle(bundle).manifest["bundle_id"]
    body = make(cloaked_features(bundle))
    content_type = ("application/json" if body.startswith((b"{", b"[")) else
                    "application/x-npy")
    got, answer = post(server, body, bundle_id, content_type)
    assert got == status and message in answer["detail"], answer


def test_a_body_over_the_size_limit_is_refused_before_it_is_read(server, bundle):
    status, _, answer = headers_only(server, {
        "Content-Type": "application/x-npy", "Content-Length": 9 * 2**20,
        "X-Bundle-Id": open_bundle(bundle).manifest["bundle_id"]})  # the 9 MiB never follow
    assert status == 413 and "over the limit" in answer["detail"]


def test_a_body_that_is_not_features_is_refused_before_it_is_read(server, bundle):
    status, _, answer = headers_only(server, {
        "Content-Type": "audio/wav", "Content-Length": 2**20,
        "X-Bundle-Id": open_bundle(bundle).manifest["bundle_id"]})  # the audio never follows
    assert status == 415 and "never audio" in answer["detail"]


def test_a_slow_body_gets_408_and_a_longer_max_seconds_larger_bodies(bundle, tmp_path):
    """A body that takes longer than `--body-timeout` to arrive is refused (and counted);
    `--max-seconds` beyond what the default body limit holds raises it."""
    import time

    from conftest import UNLIMITED, serving

    bundle_id = open_bundle(bundle).manifest["bundle_id"]
    for url in serving(bundle, "--body-timeout", "0.5", "--max-seconds", "100", *UNLIMITED,
                       log=tmp_path / "service.log"):
        host, port = url.removeprefix("http://").split(":")
        connection = http.client.HTTPConnection(host, int(port), timeout=10)
        connection.putrequest("POST", "/v1/emotion")
        for name, value in (("Content-Type", "application/x-npy"), ("Content-Length", 1000),
                            ("X-Bundle-Id", bundle_id)):
            connection.putheader(name, str(value))
        connection.endheaders()
        for _ in range(3):  # a few bytes now and then
            connection.send(b"\x93NUMPY"[:2])
            time.sleep(0.4)
        response = connection.getresponse()
        assert response.status == 408 and "did not arrive" in json.loads(response.read())[
            "detail"]
        connection.close()
        assert metric(url, "sercloak_refused_total", reason="slow_body") == 1
        long = npy(cloaked_features(bundle, seconds=90))
        assert len(long) > 4 * 2**20  # over the default limit
        status, answer = post(url, long, bundle_id)
        assert status == 200, answer


def test_bodies_over_the_budget_are_refused_at_once(bundle, tmp_path):
    """What the service holds in bodies at once is bounded: one that does not fit the budget
    is refused before it is read (and counted), whatever it carries."""
    from conftest import UNLIMITED, serving

    for url in serving(bundle, "--body-budget", "1", *UNLIMITED, log=tmp_path / "service.log"):
        status, headers, answer = headers_only(url, {
            "Content-Type": "application/x-npy", "Content-Length": 2**21,
            "X-Bundle-Id": open_bundle(bundle).manifest["bundle_id"]})  # 2 MiB never follow
        assert status == 503 and headers["Retry-After"] == "1"
        assert "too many large bodies" in answer["detail"]
        assert metric(url, "sercloak_refused_total", reason="bodies_full") == 1
        status, _ = post(url, npy(cloaked_features(bundle)), open_bundle(bundle).manifest[
            "bundle_id"])
        assert status == 200  # a small body still fits


def test_wrong_bundle_and_audio_are_refused(server, bundle):
    feats = npy(cloaked_features(bundle))
    for bundle_id in (None, "0123456789abcdef"):
        status, answer = post(server, feats, bundle_id)
        assert status == 409 and "does not match the bundle served" in answer["detail"]
    status, answer = post(server, b"RIFF....WAVEfmt ", open_bundle(bundle).manifest["bundle_id"],
                          "audio/wav")
    assert status == 415 and "never audio" in answer["detail"]


def test_concurrent_requests_all_succeed(server, bundle):
    bundle_id = open_bundle(bundle).manifest["bundle_id"]
    body = npy(cloaked_features(bundle))
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: post(server, body, bundle_id), range(24)))
    assert all(status == 200 for status, _ in results)
    assert len({json.dumps(a["utterance"], sort_keys=True) for _, a in results}) == 1


def test_predict_against_the_live_server_equals_predicting_locally(server, bundle, tmp_path):
    files = [write_tone(tmp_path / f"u{i}.wav", seconds=1.5 + i, freq=150 + 60 * i,
                        sr=44100 if i else 16000) for i in range(2)]
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"not audio at all")
    command = [sys.executable, "-m", "sercloak", "predict", *map(str, files), str(broken),
               "--bundle", str(bundle), "--json", "--seed", "3"]
    remote = subprocess.run(command + ["--server", server], capture_output=True, text=True)
    local = subprocess.run(command, capture_output=True, text=True)
    assert remote.returncode == local.returncode == 1  # one file failed, the others did not
    for run in (remote, local):
        assert "broken.wav: skipped: unreadable audio" in run.stdout
    answers = [[json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
               for run in (remote, local)]
    assert [a["file"] for a in answers[0]] == [str(f) for f in files]
    for a, b in zip(*answers, strict=True):  # same seed: the same cloaked features
        assert a["probabilities"] == pytest.approx(b["probabilities"], abs=1e-5)


def metric(url: str, name: str, **labels) -> float:
    """One sample of the service's Prometheus metrics."""
    text = urllib.request.urlopen(url + "/metrics").read().decode()
    wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
    for line in text.splitlines():
        if line.startswith(f"{name}{{{wanted}}}" if wanted else f"{name} "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_every_answer_carries_security_headers(server):
    with urllib.request.urlopen(server + "/") as response:
        headers = response.headers
    assert "default-src 'none'" in headers["Content-Security-Policy"]
    assert "script-src 'self'" in headers["Content-Security-Policy"]
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "no-referrer" and headers["X-Frame-Options"] == "DENY"
    assert "Strict-Transport-Security" not in headers  # HSTS under HTTPS only


def test_a_key_that_sends_too_many_requests_gets_429_with_retry_after(bundle, tmp_path):
    from conftest import serving

    for url in serving(bundle, "--rate", "1", "--burst", "3", log=tmp_path / "service.log"):
        bundle_id = open_bundle(bundle).manifest["bundle_id"]
        body = npy(cloaked_features(bundle))
        statuses = []
        for _ in range(5):
            request = urllib.request.Request(url + "/v1/emotion", data=body, method="POST",
                                             headers={"Content-Type": "application/x-npy",
                                                      "X-Bundle-Id": bundle_id})
            try:
                statuses.append(urllib.request.urlopen(request).status)
            except urllib.error.HTTPError as err:
                statuses.append(err.code)
                assert int(err.headers["Retry-After"]) >= 1
                assert "too many requests" in json.loads(err.read())["detail"]
        assert statuses == [200, 200, 200, 429, 429]
        assert metric(url, "sercloak_refused_total", reason="rate_limited") == 2
        # liveness and metrics are never rate limited
        assert all(urllib.request.urlopen(url + "/healthz").status == 200 for _ in range(5))


def test_a_full_queue_and_a_slow_request_get_503_and_liveness_stays_quick(bundle, tmp_path):
    """One inference thread, no queue, and a time limit shorter than a long utterance: of
    concurrent requests only one is taken, the one that runs past the limit gets 503, and
    /healthz answers throughout."""
    import time

    from conftest import serving

    for url in serving(bundle, "--inference-threads", "1", "--queue", "0", "--timeout",
                       "0.001", *("--rate", "1000", "--burst", "1000"),
                       log=tmp_path / "service.log"):
        bundle_id = open_bundle(bundle).manifest["bundle_id"]
        body = npy(cloaked_features(bundle, seconds=50))
        with ThreadPoolExecutor(6) as pool:
            posted = [pool.submit(post, url, body, bundle_id) for _ in range(6)]
            started = time.perf_counter()
            health = urllib.request.urlopen(url + "/healthz", timeout=5).status
            health_s = time.perf_counter() - started
            results = [p.result() for p in posted]
        assert health == 200 and health_s < 1.0
        assert all(status == 503 for status, _ in results), results
        details = {answer["detail"].split(":")[0] for _, answer in results}
        assert details <= {"the service is busy", "the request took over 0.001 s"}
        assert metric(url, "sercloak_refused_total", reason="timeout") >= 1
        refused = (metric(url, "sercloak_refused_total", reason="queue_full")
                   + metric(url, "sercloak_refused_total", reason="timeout"))
        assert refused == 6


def test_any_body_is_parsed_or_refused_with_a_reason_never_an_error():
    """Hostile bodies of every shape: the parser answers an array or a `Refused` (a 4xx
    with its reason), never another exception (which would be a 500)."""
    hypothesis = pytest.importorskip("hypothesis")
    from hypothesis import strategies as st

    from sercloak.serving.limits import Refused, parse_body

    json_like = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
                             lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner),
                             max_leaves=40)

    @hypothesis.settings(max_examples=300, deadline=None)
    @hypothesis.given(st.one_of(st.binary(max_size=2000),
                                json_like.map(lambda v: json.dumps(v).encode()),
                                json_like.map(lambda v: json.dumps({"features": v}).encode())),
                      st.sampled_from(["application/json", "application/x-npy", "text/plain"]))
    def check(body, content_type):
        try:
            features = parse_body(body, content_type, json_depth=4)
        except Refused as refused:
            assert 400 <= refused.status < 500 and refused.reason
        else:
            assert features.dtype == np.float32

    check()


def children(pid: int) -> list[int]:
    """The processes whose parent is `pid` (from /proc)."""
    from pathlib import Path

    found = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":\t", 1) for line in status.read_text().splitlines()
                          if ":\t" in line)
        except OSError:
            continue
        if fields.get("PPid", "").strip() == str(pid):
            found.append(int(status.parent.name))
    return found


def is_parser(pid: int) -> bool:
    """Whether `pid` is (still) a multiprocessing worker such as the JSON parser."""
    from pathlib import Path

    try:
        return b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:  # gone
        return False


@pytest.mark.parametrize("how", ["terminate", "kill"])
def test_the_json_parsers_process_ends_with_the_service(bundle, tmp_path, how):
    """Stopped or killed, the service leaves no parser process behind."""
    import os
    import signal
    import time

    from conftest import free_port, start

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    service = start(["serve", "--bundle", str(bundle), "--port", str(port)], url + "/healthz",
                    tmp_path / "service.log")
    try:
        feats = cloaked_features(bundle)
        status, _ = post(url, json.dumps({"features": feats.tolist()}).encode(),
                         open_bundle(bundle).manifest["bundle_id"], "application/json")
        assert status == 200
        spawned = [p for p in children(service.pid) if is_parser(p)]
        assert spawned, "the JSON parser runs in a process of its own"
        service.send_signal(signal.SIGTERM if how == "terminate" else signal.SIGKILL)
        service.wait(timeout=30)
        for _ in range(50):
            alive = [p for p in spawned if is_parser(p)]
            if not alive:
                break
            time.sleep(0.1)
        assert not alive, f"parser processes left behind: {alive}"
    finally:
        if service.poll() is None:
            os.kill(service.pid, signal.SIGKILL)
