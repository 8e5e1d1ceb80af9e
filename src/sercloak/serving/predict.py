"""`sercloak predict`: audio files -> protected features here -> emotion from the service.

The files are taken as one user's utterances: with per-user normalisation
each is normalised with the statistics of the *other* files given (as the
evaluation does), or of itself when it is alone; with voice normalisation
each is mapped onto the reference voice with factors from the other files
(likewise). Only protected features leave this side: sent to `--server` as
application/x-npy with the bundle id, or handed to the server part run
locally. A file that cannot be read or is refused is reported and skipped;
the others are still predicted.

The bundle is checked before any audio is read (`bundle.open_bundle`, with
`--trust-key` its signature; `client.check_protection`): nothing is sent
through a tampered, unsigned-under-a-trusted-key or unprotected bundle. An
API key is never sent over plain http to another machine (unless
`--insecure`), and no redirect is followed: the key and the features go to
the URL given, or nowhere.
"""

from __future__ import annotations

import io
import ipaddress
import json
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np

from ..audio import AudioError, load_audio
from ..normalise import SpeechStats
from ..voicenorm import VoiceProfile
from .client import Client, UserHistory, VoiceHistory, log_mel


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        raise ValueError(f"the service answered {code} and redirects to {newurl}: not "
                         f"followed (the key and the features go to the URL given); pass "
                         f"that URL as --server if you trust it")


_OPENER = urllib.request.build_opener(_NoRedirects)


def check_key_transport(server: str, insecure: bool) -> None:
    """Refuse to send a key over plain http to a host other than this machine."""
    parts = urlsplit(server)
    if parts.scheme == "https" or insecure:
        return
    host = parts.hostname or ""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ValueError(f"{server}: an API key over plain http to another machine can be "
                         f"read on the way: use https, or --insecure if you accept that")


def post_features(server: str, bundle_id: str, feats: np.ndarray, timeout: float = 30,
                  api_key: str | None = None) -> dict:
    """POST protected features to a running service (with `api_key` when it wants one;
    redirects are not followed); its JSON answer, or ValueError with the service's
    reason."""
    body = io.BytesIO()
    np.save(body, feats.astype(np.float32), allow_pickle=False)
    request = urllib.request.Request(
        server.rstrip("/") + "/v1/emotion", data=body.getvalue(), method="POST",
        headers={"Content-Type": "application/x-npy", "X-Bundle-Id": bundle_id,
                 **({"Authorization": f"Bearer {api_key}"} if api_key else {})})
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as err:
        detail = err.read().decode(errors="replace")
        raise ValueError(f"the service refused the features ({err.code}): {detail}") from err
    except urllib.error.URLError as err:
        raise ValueError(f"cannot reach the service at {server} ({err.reason})") from err


def predict_files(files: list[Path], bundle: Path, server: str | None = None,
                  as_json: bool = False, seed: int | None = None, api_key: str | None = None,
                  trust_key: bytes | None = None, allow_unprotected: bool = False,
                  require: str | None = None, insecure: bool = False) -> list[Path]:
    """Print each file's emotion; returns the files that failed."""
    if server is not None and api_key is not None:
        check_key_transport(server, insecure)
    client = Client.from_bundle(bundle, seed, trust_key, allow_unprotected, require)
    s = client.settings
    waves, failed = {}, []
    for file in files:
        try:
            waves[file] = load_audio(file, s.sample_rate)
        except AudioError as err:
            print(f"{file}: skipped: {err.reason}")
            failed.append(file)
    profiles = ({f: VoiceProfile.of(w, s.sample_rate) for f, w in waves.items()}
                if client.voice is not None else {})

    def voice_of_others(file: Path) -> VoiceHistory | None:
        if client.voice is None:
            return None
        return VoiceHistory([p for f, p in profiles.items() if f != file])

    normalised = {}
    for file, wave in waves.items():  # each file as the device would hear it
        client.voice = voice_of_others(file)
        normalised[file] = client.voice_normalised(wave)
    stats = {f: SpeechStats.of(log_mel(w, s, client.filterbank)) for f, w in normalised.items()}
    total = sum(stats.values(), start=SpeechStats(0, 0.0, 0.0))
    local = None
    if server is None:
        from .inference import EmotionModel  # the server part, here

        local = EmotionModel(bundle, trust_key=trust_key)
    for file, wave in waves.items():
        others = total - stats[file]
        client.history = UserHistory(others if others.frames > 1 else None)
        client.voice = voice_of_others(file)
        cloaked = client(wave, remember=False)
        try:
            result = (post_features(server, client.bundle_id, cloaked, api_key=api_key)
                      if server else local.predict(cloaked))
        except ValueError as err:
            print(f"{file}: skipped: {err}")
            failed.append(file)
            continue
        _print(file, result, as_json)
    return failed


def _print(file: Path, result: dict, as_json: bool) -> None:
    utterance = result["utterance"]
    if as_json:
        print(json.dumps({"file": str(file), **utterance, "windows": result["windows"],
                          "bundle_id": result["bundle_id"]}))
        return
    if not result["windows"]:  # a label bundle: the device decided, and sent only this
        print(f"{file}: {utterance['label']} (recognised on this device; the label is all it "
              f"sends)")
        return
    probabilities = ", ".join(f"{k} {v:.2f}" for k, v in utterance["probabilities"].items())
    print(f"{file}: {utterance['label']} ({probabilities})")
