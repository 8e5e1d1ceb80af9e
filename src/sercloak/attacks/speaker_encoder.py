"""A pretrained GE2E speaker encoder, run in plain torch on our 128-mel dB features.

The weights ship in the `resemblyzer` wheel (``resemblyzer/pretrained.pt``, a
speaker encoder trained on thousands of speakers). We only read that file,
with ``torch.load(weights_only=True)``: importing the package would import
librosa and webrtcvad (which needs ``pkg_resources`` at import time).

The encoder: a 3-layer LSTM (40 inputs, 256 hidden), the last layer's final
hidden state -> Linear 256->256 -> ReLU -> L2 normalisation. Its input is a
*linear power* mel spectrogram of 40 Slaney bands (librosa's defaults: Hann
window of 400 samples, hop 160, 16 kHz), cut into partials of 160 frames
(1.6 s) every 77 frames; the utterance's d-vector is the L2-normalised mean of
its partials' embeddings. The package raises quiet audio to -30 dBFS and trims
long silences first.

`MelConverter` turns our features into that input without the waveform:

- dB -> power, then a fixed non-negative 40x128 matrix W (non-negative least
  squares: W times our filterbank approximates its 40 triangles on our
  401-bin grid, scaled by 0.5 for twice as many DFT bins per Hz and by the
  window-power ratio sum(hann400^2) / sum(hamming800^2));
- volume: the waveform's mean square estimated from the mel energies
  (Parseval), raised to -30 dBFS when quieter;
- silence: frames more than 40 dB below the 95th-percentile frame energy are
  dropped, after smoothing over 9 frames and dilating by 21.

`bench/dvector_fidelity.py` measures how close its d-vectors come to the
package's own waveform pipeline.
"""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from scipy.ndimage import binary_dilation, uniform_filter1d
from scipy.optimize import nnls
from scipy.signal import get_window
from torch import nn

from ..device import pick_device
from ..features import FeatureConfig, mel_filterbank
from ..normalise import as_db

ENCODER_MELS = 40
PARTIAL_FRAMES = 160  # 1.6 s
PARTIAL_STEP = 77  # frames between partials: 1.3 partials per second
MIN_COVERAGE = 0.75  # the last partial is dropped below this, unless it is the only one
TARGET_DBFS = -30.0
INSTALL_HINT = ("install the `resemblyzer` wheel, which carries its weights "
                "(`pip install -c constraints.txt resemblyzer`; sercloak's own install does this)")


class EncoderUnavailable(RuntimeError):
    """The speaker encoder's weights cannot be found."""


def find_weights() -> Path:
    """Where the wheel put ``pretrained.pt``, found without importing the package."""
    spec = importlib.util.find_spec("resemblyzer")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / "pretrained.pt"
        if path.is_file():
            return path
    raise EncoderUnavailable(f"the speaker encoder's weights were not found: {INSTALL_HINT}")


class SpeakerEncoder(nn.Module):
    """(batch, 160, 40) linear power mel partials -> (batch, 256) unit-norm embeddings."""

    def __init__(self, hidden: int = 256, layers: int = 3, embedding: int = 256):
        super().__init__()
        self.lstm = nn.LSTM(ENCODER_MELS, hidden, layers, batch_first=True)
        self.linear = nn.Linear(hidden, embedding)

    def forward(self, mels: torch.Tensor) -> torch.Tensor:
        _, (hidden, _) = self.lstm(mels)
        embedding = torch.relu(self.linear(hidden[-1]))
        return embedding / embedding.norm(dim=1, keepdim=True).clamp_min(1e-12)

    @classmethod
    def load(cls, path: Path | str | None = None) -> SpeakerEncoder:
        """The pretrained encoder (the wheel's weights by default) on the chosen device
        (`device.pick_device`); refuses any other file."""
        path = Path(path) if path is not None else find_weights()
        if not path.is_file():
            raise EncoderUnavailable(f"{path}: no such weights file; {INSTALL_HINT}")
        try:
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:
            raise ValueError(f"{path}: not a readable torch weights file ({err})") from err
        if not isinstance(checkpoint, dict) or "model_state" not in checkpoint:
            raise ValueError(f"{path}: not the GE2E speaker encoder (no 'model_state')")
        encoder = cls()
        wanted = encoder.state_dict()
        state = {k: v for k, v in checkpoint["model_state"].items() if k in wanted}
        missing = sorted(set(wanted) - set(state))
        wrong = sorted(k for k in state if state[k].shape != wanted[k].shape)
        if missing or wrong:
            raise ValueError(f"{path}: not the GE2E speaker encoder "
                             f"(missing {missing or 'nothing'}, wrong shapes {wrong or 'none'})")
        encoder.load_state_dict(state)
        return encoder.eval().to(pick_device())


# -- from our features to its input -------------------------------------------------------


@lru_cache(maxsize=4)
def mel_map(cfg: FeatureConfig) -> np.ndarray:
    """The fixed non-negative (40, n_mels) matrix from our mel energies to the encoder's."""
    ours = mel_filterbank(cfg)  # (n_mels, n_fft // 2 + 1) on our DFT grid
    target_cfg = FeatureConfig(n_mels=ENCODER_MELS, n_fft=cfg.n_fft, sample_rate=cfg.sample_rate,
                               f_min=0.0, f_max=cfg.sample_rate / 2)
    theirs = mel_filterbank(target_cfg)  # its 40 triangles evaluated on our grid
    their_window = get_window("hann", 400, fftbins=True)
    our_window = get_window(cfg.window, cfg.win_length, fftbins=True)
    bins_per_hz = 400 / cfg.n_fft  # 0.5: our grid has twice its DFT bins per Hz
    scale = bins_per_hz * np.sum(their_window**2) / np.sum(our_window**2)
    return np.stack([nnls(ours.T, scale * row)[0] for row in theirs])


@lru_cache(maxsize=4)
def _power_weights(cfg: FeatureConfig) -> np.ndarray:
    """c with c @ mel ≈ sum over DFT bins of |X_k|²: the frame's power from its mel energies."""
    fb = mel_filterbank(cfg)
    return np.linalg.lstsq(fb.T, np.ones(fb.shape[1]), rcond=None)[0]


def mean_square(power_mel: np.ndarray, cfg: FeatureConfig) -> float:
    """The waveform's mean square, estimated from (frames, n_mels) power mel energies (Parseval)."""
    window = get_window(cfg.window, cfg.win_length, fftbins=True)
    frame_power = power_mel @ _power_weights(cfg)  # one-sided: sum_k |X_k|^2
    return float(np.mean(2.0 * frame_power / (cfg.n_fft * np.sum(window**2))))


def speech_frames(power40: np.ndarray, floor_db: float = 40.0) -> np.ndarray:
    """Boolean mask of frames to keep: within `floor_db` of the loud frames, smoothed, dilated."""
    energy = 10 * np.log10(power40.sum(axis=1) + 1e-20)
    loud = energy > np.percentile(energy, 95) - floor_db
    loud = uniform_filter1d(loud.astype(float), 9, mode="constant") > 0.5
    keep = binary_dilation(loud, np.ones(21, dtype=bool))
    return keep if keep.any() else np.ones_like(keep)


class MelConverter:
    """Our (frames, n_mels) dB features -> the encoder's (frames', 40) power mel input."""

    def __init__(self, cfg: FeatureConfig = FeatureConfig()):
        self.cfg = cfg
        self.matrix = mel_map(cfg).astype(np.float64)

    def __call__(self, feats: np.ndarray) -> np.ndarray:
        db = as_db(np.asarray(feats, dtype=np.float64), self.cfg.normalise)
        power = 10.0 ** (db / 10.0)
        dbfs = 10 * np.log10(max(mean_square(power, self.cfg), 1e-20))
        if dbfs < TARGET_DBFS:  # like the package: raise quiet audio, never lower loud audio
            power = power * 10.0 ** ((TARGET_DBFS - dbfs) / 10.0)
        power40 = power @ self.matrix.T
        return power40[speech_frames(power40)].astype(np.float32)


def partial_starts(n_frames: int) -> list[int]:
    """Start frames of the 160-frame partials covering `n_frames` (at least one)."""
    steps = max(1, n_frames - PARTIAL_FRAMES + PARTIAL_STEP + 1)
    starts = list(range(0, steps, PARTIAL_STEP))
    if len(starts) > 1 and (n_frames - starts[-1]) / PARTIAL_FRAMES < MIN_COVERAGE:
        starts.pop()
    return starts


def cut_partials(mel40: np.ndarray) -> np.ndarray:
    """(frames, 40) -> (n_partials, 160, 40), zero-padded past the end."""
    starts = partial_starts(len(mel40))
    padded = np.zeros((max(len(mel40), starts[-1] + PARTIAL_FRAMES), ENCODER_MELS), np.float32)
    padded[: len(mel40)] = mel40
    return np.stack([padded[s : s + PARTIAL_FRAMES] for s in starts])


@torch.no_grad()
def embed_utterances(encoder: SpeakerEncoder, converter: MelConverter, feats: list[np.ndarray],
                     batch_size: int = 128) -> np.ndarray:
    """d-vectors (n, 256), unit norm, of utterances given as our dB features.

    The LSTM is the cost (about 2 ms per partial on 2 CPU cores, measured with
    nothing else running): batches of 128 partials ran 20% faster than 32,
    and onnxruntime was no faster than torch.
    """
    partials = [cut_partials(converter(f)) for f in feats]
    owner = np.repeat(np.arange(len(feats)), [len(p) for p in partials])
    stacked = torch.from_numpy(np.concatenate(partials))
    device = next(encoder.parameters()).device
    out = torch.cat([encoder(stacked[i : i + batch_size].to(device)).cpu()
                     for i in range(0, len(stacked), batch_size)]).double().numpy()
    total = np.zeros((len(feats), out.shape[1]))
    np.add.at(total, owner, out)
    return total / np.linalg.norm(total, axis=1, keepdims=True).clip(1e-12)
