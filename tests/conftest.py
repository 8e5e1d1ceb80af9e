"""Shared fixtures: where the real corpora live, and small generated audio."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
CORPORA = REPO.parent / "shared" / "corpora"


def real_corpus(name: str) -> Path:
    """Path of a real corpus in ../shared/corpora, or skip the test saying why."""
    path = CORPORA / name
    if not path.is_dir():
        pytest.skip(f"real corpus {name!r} not found at {path} (integration test needs ../shared)")
    return path


def tone(seconds: float = 0.5, sr: int = 16000, freq: float = 220.0, amp: float = 0.3,
         channels: int = 1) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    wave = (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    return np.stack([wave] * channels, axis=1) if channels > 1 else wave


def write_tone(path: Path, seconds: float = 0.5, sr: int = 16000, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, tone(seconds, sr, **kw), sr)
    return path


@pytest.fixture(scope="session")
def encoder():
    """The pretrained speaker encoder, or skip saying what to install."""
    from sercloak.attacks.speaker_encoder import EncoderUnavailable, SpeakerEncoder

    try:
        return SpeakerEncoder.load()
    except EncoderUnavailable as err:
        pytest.skip(f"speaker encoder weights not installed: {err}")
