"""`sercloak export`: a bundle from a tiny fixture experiment, read back by the client."""

import json

import numpy as np
import pytest

from sercloak.cli import main as cli_main
from sercloak.features import LogMel
from sercloak.serving.bundle import read_manifest
from sercloak.serving.client import CloakArrays


def test_export_writes_a_checked_bundle_the_client_can_read(tiny_experiment, tmp_path):
    out = tmp_path / "bundle"
    cli_main(["export", "--workdir", str(tiny_experiment.root), "--fold", "1",
              "--setting", "cloak_adversarial:40", "--out", str(out)])
    manifest = read_manifest(out)
    assert set(manifest["files"]) == {"client/cloak.npz", "client/mel_filterbank.npy",
                                      "server/emotion.onnx"}
    assert manifest["setting"]["method"] == "cloak_adversarial"
    assert manifest["setting"]["fold"] == 1
    assert manifest["labels"] == ["neutral", "happy", "sad", "angry"]
    assert manifest["onnx_check"]["max_abs_logit_difference"] < 1e-3
    assert manifest["setting"]["protocol"] == "paper" and manifest["setting"]["seed"] == 0
    results = json.loads(tiny_experiment.layout.results("paper").read_text())
    entry = next(e for e in results["cloak"] if e["method"] == "cloak_adversarial"
                 and round(e["points"][1]["suppression_ratio"]) == 40)
    assert manifest["measured"]["emotion_uar"]["mean"] == entry["emotion"]["uar"]["mean"]
    assert manifest["measured"]["emotion_uar"]["this_fold"] == entry["emotion"]["uar"]["folds"][1]
    figure = entry["gender_privacy"]["uar_speaker"]
    assert manifest["measured"]["gender_uar_speaker"]["mean"] == figure["mean"]
    assert manifest["measured"]["gender_uar_speaker"]["chance"] == figure["chance"]
    assert manifest["measured"]["emotion_drop"]["ci95"] == entry["emotion_drop"]["ci95"]
    # the client part is plain NumPy: the same cloak as the experiment's
    cloak = CloakArrays.load(out / "client" / "cloak.npz")
    assert cloak.suppressed and 0.35 < (cloak.mask == 0).mean() < 0.45
    assert np.allclose(np.load(out / "client" / "mel_filterbank.npy", allow_pickle=False),
                       LogMel(tiny_experiment.cfg).fb_t.numpy().T)
    # the ONNX model runs without torch's help
    import onnxruntime
    session = onnxruntime.InferenceSession(str(out / "server" / "emotion.onnx"))
    logits = session.run(None, {"features": np.zeros((3, 200, 128), np.float32)})[0]
    assert logits.shape == (3, 4)


def test_a_tampered_or_incomplete_bundle_is_refused(tiny_experiment, tmp_path):
    out = tmp_path / "bundle"
    cli_main(["export", "--workdir", str(tiny_experiment.root), "--fold", "0",
              "--setting", "cloak_adversarial:0", "--out", str(out), "--quiet"])
    read_manifest(out)
    cloak = out / "client" / "cloak.npz"
    original = cloak.read_bytes()
    data = bytearray(original)
    data[-10] ^= 0xFF
    cloak.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="client/cloak.npz does not match its hash"):
        read_manifest(out)
    cloak.write_bytes(original)
    (out / "server" / "emotion.onnx").unlink()
    with pytest.raises(ValueError, match="server/emotion.onnx is missing"):
        read_manifest(out)


def test_export_refuses_unknown_settings_and_existing_folders(tiny_experiment, tmp_path, capsys):
    for setting, message in (("cloak_temporal", "names 0 entries"),
                             ("cloak_adversarial", "names 2 entries")):
        with pytest.raises(SystemExit):
            cli_main(["export", "--workdir", str(tiny_experiment.root), "--fold", "0",
                      "--setting", setting, "--out", str(tmp_path / "b")])
        assert message in capsys.readouterr().err
    (tmp_path / "taken").mkdir()
    with pytest.raises(SystemExit):
        cli_main(["export", "--workdir", str(tiny_experiment.root), "--fold", "0",
                  "--setting", "cloak_adversarial:0", "--out", str(tmp_path / "taken")])
    assert "exists" in capsys.readouterr().err
