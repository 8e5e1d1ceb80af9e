"""The torch-free client: features, per-user normalisation, cloak and stream against torch."""

import subprocess
import sys

import numpy as np
import pytest
import torch

from sercloak.cloak import Cloak, CloakConfig
from sercloak.features import FeatureConfig, LogMel, mel_filterbank
from sercloak.normalise import SpeechStats, standardise
from sercloak.serving.client import (
    Client,
    CloakArrays,
    FeatureSettings,
    UserHistory,
    log_mel,
)

CFG = FeatureConfig()


def speechlike(seconds: float = 3.0, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(16000 * seconds)) / 16000
    f0 = 120 + 30 * np.sin(2 * np.pi * 0.5 * t)
    voiced = np.sin(2 * np.pi * np.cumsum(f0) / 16000) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t))
    return (0.2 * voiced + 0.01 * rng.standard_normal(len(t))).astype(np.float32)


def settings(cfg: FeatureConfig = CFG) -> FeatureSettings:
    return FeatureSettings.from_dict(cfg.to_dict())


def test_the_client_imports_no_torch():
    code = ("import sys, sercloak.serving.client; "
            "assert 'torch' not in sys.modules, 'torch was imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("seconds", [0.05, 1.0, 3.37])
def test_log_mel_equals_the_torch_pipeline(seconds):
    wave = speechlike(seconds)
    ours = log_mel(wave, settings(), mel_filterbank(CFG))
    theirs = LogMel(CFG)(wave)
    assert ours.shape == theirs.shape
    assert np.abs(ours - theirs).max() <= 0.01


def saved_cloak(tmp_path, **config) -> Cloak:
    torch.manual_seed(0)
    cloak = Cloak(CloakConfig(**config), torch.randn(128) * 5 - 40, torch.rand(128) * 5 + 8)
    with torch.no_grad():
        cloak.mu.normal_()
        cloak.rho.normal_()
        if cloak.rho_offset is not None:
            cloak.rho_offset.normal_()
    cloak.suppress(40)
    with torch.no_grad():
        cloak.mu_s.normal_()
    cloak.save(tmp_path / "c.npz", CFG)
    return cloak


@pytest.mark.parametrize("config", [dict(), dict(kind="temporal", warp=0.15),
                                    dict(shape="cell")])
def test_cloak_equals_the_torch_cloak_given_the_same_draws(tmp_path, monkeypatch, config):
    cloak = saved_cloak(tmp_path, **config).eval()
    arrays = CloakArrays.load(tmp_path / "c.npz")
    feats = LogMel(CFG)(speechlike(4.5))  # 451 frames: three 200-frame windows
    draws = arrays.draw(len(feats), np.random.default_rng(1))
    ours = arrays.apply(feats, **draws)
    # the torch cloak draws ε, η and the warp's uniform number: hand it ours
    u = (draws["factor"] - 1) / (2 * config.get("warp", 1.0)) + 0.5
    monkeypatch.setattr(torch, "randn_like", lambda z: torch.tensor(draws["eps"][None]).to(z))
    monkeypatch.setattr(torch, "randn", lambda *shape, **kw: torch.tensor(draws["eta"][None]).to(
        kw.get("dtype", torch.float32)))
    monkeypatch.setattr(torch, "rand", lambda n, **kw: torch.full((n,), u))
    if config.get("shape") == "cell":  # a cell cloak runs window by window, as attackers do
        from sercloak.attacks.base import cloak_utterance
        monkeypatch.setattr(torch, "randn_like", lambda z: torch.tensor(
            np.concatenate([draws["eps"], np.zeros((149, 128))]).reshape(3, 200, 128)).to(z))
        theirs = cloak_utterance(cloak, feats, CFG.pad_value)
    else:
        with torch.no_grad():
            theirs = cloak(torch.from_numpy(feats)[None])[0].numpy()
    assert np.abs(ours - theirs).max() < 1e-3


def test_stream_gives_the_whole_utterance_frames_in_pieces(tmp_path):
    # no noise (so not a protection the client would send, hence `unprotected`): the two
    # paths must agree exactly
    saved_cloak(tmp_path, sigma_max=1e-9)
    wave = speechlike(2.7)
    whole = Client(settings(), mel_filterbank(CFG), CloakArrays.load(tmp_path / "c.npz"),
                   unprotected=True)(wave)
    client = Client(settings(), mel_filterbank(CFG), CloakArrays.load(tmp_path / "c.npz"),
                    unprotected=True)
    stream = client.stream()
    pieces, sizes = [], [1, 37, 160, 799, 1600, 5]
    position = 0
    for size in sizes * 20:
        if position >= len(wave):
            break
        pieces.append(stream.push(wave[position : position + size]))
        position += size
    pieces.append(stream.finish())
    assert sum(len(p) for p in pieces[:-1]) > 0  # frames came out before the end
    streamed = np.concatenate(pieces)
    assert streamed.shape == whole.shape
    assert np.abs(streamed - whole).max() < 1e-4


def test_per_user_normalisation_uses_the_history_and_never_the_utterance_itself(tmp_path):
    saved_cloak(tmp_path, sigma_max=1e-9)
    user = FeatureSettings.from_dict(FeatureConfig(normalise="user").to_dict())
    client = Client(user, mel_filterbank(CFG), CloakArrays.load(tmp_path / "c.npz"),
                    unprotected=True)
    with pytest.raises(ValueError, match="needs the user's history"):
        client.stream()
    first, second = speechlike(2.0, seed=1), speechlike(2.0, seed=2)
    client.history = UserHistory()
    client.history.add(LogMel(CFG)(first))
    expected = standardise(LogMel(CFG)(second), SpeechStats.of(LogMel(CFG)(first)))
    assert np.abs(client.features(second) - expected).max() < 1e-3
    client(second)  # joins the history afterwards
    assert client.history.stats.frames == (SpeechStats.of(LogMel(CFG)(first)).frames
                                           + SpeechStats.of(LogMel(CFG)(second)).frames)
    assert len(client.stream().finish()) == 200  # an empty stream: padded to one window


def test_short_utterances_are_padded_the_same_whole_and_streamed(tmp_path):
    saved_cloak(tmp_path, sigma_max=1e-9)
    wave = speechlike(0.6)
    client = Client(settings(), mel_filterbank(CFG), CloakArrays.load(tmp_path / "c.npz"),
                    unprotected=True)
    whole = client(wave)
    stream = client.stream()
    streamed = np.concatenate([stream.push(wave[:4000]), stream.push(wave[4000:]),
                               stream.finish()])
    assert whole.shape == streamed.shape == (200, 128)
    assert np.abs(whole - streamed).max() < 1e-4


def test_a_file_that_is_not_a_cloak_is_refused(tmp_path):
    np.savez(tmp_path / "x.npz", a=np.zeros(3))
    with pytest.raises(ValueError, match=r"x\.npz: not a readable cloak file"):
        CloakArrays.load(tmp_path / "x.npz")
