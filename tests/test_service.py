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
from sercloak.serving.bundle import read_manifest
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


def cloaked_features(bundle, seconds=3.0) -> np.ndarray:
    client = Client.from_bundle(bundle, seed=0)
    t = np.arange(int(16000 * seconds)) / 16000
    return client(0.3 * np.sin(2 * np.pi * 180 * t).astype(np.float32))


def test_valid_requests_get_probabilities_per_window_and_utterance(server, bundle):
    bundle_id = read_manifest(bundle)["bundle_id"]
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
    assert urllib.request.urlopen(server + "/docs").status == 200


@pytest.mark.parametrize("make, status, message", [
    (lambda f: npy(f[:, :64]), 422, "64 mel bins"),
    (lambda f: npy(f[0]), 422, "2 dimensions"),
    (lambda f: npy(f[:5]), 422, "too few frames"),
    (lambda f: npy(np.where(np.arange(f.shape[1]) == 3, np.nan, f).astype(np.float32)), 422,
     "NaN or infinite"),
    (lambda f: npy(f + 1e4), 422, "outside the range"),
    (lambda f: npy(f)[:-100], 400, "unreadable .npy"),
    (lambda f: npy(np.array([{"a": 1}], dtype=object), allow_pickle=True), 400,
     "pickled (object) array"),
    (lambda f: b"{not json", 400, "JSON body"),
])
def test_bad_input_gets_a_4xx_naming_the_problem(server, bundle, make, status, message):
    bundle_id = read_manifest(bundle)["bundle_id"]
    body = make(cloaked_features(bundle))
    content_type = "application/json" if message == "JSON body" else "application/x-npy"
    got, answer = post(server, body, bundle_id, content_type)
    assert got == status and message in answer["detail"], answer


def test_a_body_over_the_size_limit_is_refused_before_it_is_read(server, bundle):
    host, port = server.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    connection.putrequest("POST", "/v1/emotion")
    for name, value in (("Content-Type", "application/x-npy"), ("Content-Length", 9 * 2**20),
                        ("X-Bundle-Id", read_manifest(bundle)["bundle_id"])):
        connection.putheader(name, str(value))
    connection.endheaders()  # the 9 MiB never follow
    response = connection.getresponse()
    assert response.status == 413 and "over the limit" in json.loads(response.read())["detail"]
    connection.close()


def test_wrong_bundle_and_audio_are_refused(server, bundle):
    feats = npy(cloaked_features(bundle))
    for bundle_id in (None, "0123456789abcdef"):
        status, answer = post(server, feats, bundle_id)
        assert status == 409 and "does not match the bundle served" in answer["detail"]
    status, answer = post(server, b"RIFF....WAVEfmt ", read_manifest(bundle)["bundle_id"],
                          "audio/wav")
    assert status == 415 and "never audio" in answer["detail"]


def test_concurrent_requests_all_succeed(server, bundle):
    bundle_id = read_manifest(bundle)["bundle_id"]
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
