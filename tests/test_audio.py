import numpy as np
import pytest
import soundfile as sf

from conftest import tone, write_tone
from sercloak.audio import AudioError, load_audio, resample


def test_downmix_and_resample_44k_stereo(tmp_path):
    path = write_tone(tmp_path / "a.wav", seconds=1.0, sr=44100, channels=2)
    wave = load_audio(path)
    assert wave.ndim == 1 and wave.dtype == np.float32
    assert abs(wave.size - 16000) <= 1
    # the 220 Hz tone keeps its amplitude through the polyphase filter
    assert np.abs(wave[1000:-1000]).max() == pytest.approx(0.3, rel=0.02)


def test_resampler_is_band_limited():
    """A 10 kHz tone at 48 kHz lies above the new Nyquist (8 kHz) and must vanish, not alias."""
    high = tone(1.0, sr=48000, freq=10000.0, amp=0.5)
    out = resample(high, 48000, 16000)
    assert np.sqrt(np.mean(out[200:-200] ** 2)) < 0.005  # naive decimation would alias to 6 kHz


@pytest.mark.parametrize("make, reason", [
    (lambda p: p.write_bytes(b"RIFF\x00\x00junk" * 10), "unreadable"),
    (lambda p: sf.write(p, np.zeros((0,), np.float32), 16000), "empty"),
    (lambda p: sf.write(p, np.zeros(8000, np.float32), 16000), "silent"),
    (lambda p: sf.write(p, np.full(8000, np.nan, np.float32), 16000, subtype="FLOAT"), "NaN"),
])
def test_bad_audio_names_file_and_reason(tmp_path, make, reason):
    path = tmp_path / "bad.wav"
    make(path)
    with pytest.raises(AudioError) as err:
        load_audio(path)
    assert reason in err.value.reason
    assert str(path) in str(err.value)


def test_missing_file_is_reported(tmp_path):
    with pytest.raises(AudioError, match="unreadable"):
        load_audio(tmp_path / "nope.flac")
