"""`sercloak predict`: audio files -> protected features here -> emotion from the service.

The files are taken as one user's utterances: with per-user normalisation
each is normalised with the statistics of the *other* files given (as the
evaluation does), or of itself when it is alone; with voice normalisation
each is mapped onto the reference voice with factors from the other files
(likewise). Only protected features leave this side: sent to `--server` as
application/x-npy with the bundle id, or handed to the server part run
locally. A file that cannot be read or is refused is reported and skipped;
the others are still predicted.
"""

from __future__ import annotations

import io
import json
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np

from ..audio import AudioError, load_audio
from ..normalise import SpeechStats
from ..voicenorm import VoiceProfile
from .client import Client, UserHistory, VoiceHistory, log_mel


def post_features(server: str, bundle_id: str, feats: np.ndarray, timeout: float = 30,
                  api_key: str | None = None) -> dict:
    """POST cloaked features to a running service (with `api_key` when it wants one); its
    JSON answer, or ValueError with the service's reason."""
    body = io.BytesIO()
    np.save(body, feats.astype(np.float32), allow_pickle=False)
    request = urllib.request.Request(
        server.rstrip("/") + "/v1/emotion", data=body.getvalue(), method="POST",
        headers={"Content-Type": "application/x-npy", "X-Bundle-Id": bundle_id,
                 **({"Authorization": f"Bearer {api_key}"} if api_key else {})})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as err:
        detail = err.read().decode(errors="replace")
        raise ValueError(f"the service refused the features ({err.code}): {detail}") from err
    except urllib.error.URLError as err:
        raise ValueError(f"cannot reach the service at {server} ({err.reason})") from err


def predict_files(files: list[Path], bundle: Path, server: str | None = None,
                  as_json: bool = False, seed: int | None = None,
                  api_key: str | None = None) -> list[Path]:
    """Print each file's emotion; returns the files that failed."""
    client = Client.from_bundle(bundle, seed)
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

        local = EmotionModel(bundle)
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
    probabilities = ", ".join(f"{k} {v:.2f}" for k, v in utterance["probabilities"].items())
    print(f"{file}: {utterance['label']} ({probabilities})")
