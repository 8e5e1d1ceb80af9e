"""Bundles of issue 18's and 30's designs: the split network's, voice normalisation's and
the label-only emotion model's, exported, run by the client, and served by a real uvicorn
process that refuses what it cannot read."""

import json

import numpy as np
import pytest
import torch

from conftest import serving, tiny_train_configs
from sercloak.attacks.suite import AttackConfig
from sercloak.checkpoint import load_checkpoint
from sercloak.cli import main as cli_main
from sercloak.cloak import CloakConfig
from sercloak.cloak.training import CloakTrainConfig
from sercloak.designs.posteriors import labels_only
from sercloak.designs.split.network import load_split
from sercloak.designs.split.training import SplitConfig
from sercloak.experiment import ExperimentConfig, run_experiment
from sercloak.segments import windows
from sercloak.serving.bundle import open_bundle
from sercloak.serving.client import Client, EmbeddingClient, LabelClient
from sercloak.serving.export import export_bundle
from sercloak.serving.inference import EmotionModel
from test_service import npy, post

STATS = AttackConfig(families=("stats",))


@pytest.fixture(scope="module")
def embedding_bundle(tiny_experiment, tmp_path_factory):
    """The tiny experiment's workdir with the embedding design (k = 4), fold 1 exported."""
    cfg = ExperimentConfig(design="embedding", attacks=STATS,
                           split=SplitConfig(dims=(4,), epochs=1, adapt_epochs=1))
    run_experiment(tiny_experiment, [0, 1], tiny_train_configs(), cfg, show_progress=False)
    out = tmp_path_factory.mktemp("embedding") / "bundle"
    cli_main(["export", "--workdir", str(tiny_experiment.root), "--fold", "1", "--setting",
              "embedding_k4:4", "--out", str(out), "--quiet"])
    return out


@pytest.fixture(scope="module")
def embedding_server(embedding_bundle):
    yield from serving(embedding_bundle)


def speech(seconds: float = 3.0) -> np.ndarray:
    t = np.arange(int(16000 * seconds)) / 16000
    return (0.3 * np.sin(2 * np.pi * 180 * t)).astype(np.float32)


def test_the_split_networks_onnx_parts_equal_torch(embedding_bundle, tiny_experiment):
    import onnxruntime

    manifest = open_bundle(embedding_bundle).manifest
    assert manifest["design"] == "embedding" and manifest["embedding"]["dims"] == 4
    assert set(manifest["files"]) == {"client/mel_filterbank.npy", "client/front.onnx",
                                      "client/embedding.npz", "server/back.onnx"}
    assert manifest["onnx_check"]["max_abs_embedding_difference"] < 1e-4
    # the device part, run here by onnxruntime, against the saved torch network
    wd = tiny_experiment
    entry = next(e for e in json.loads(wd.layout.results("paper", [0, 1], [0]).read_text())["cloak"]
                 if e["method"] == "embedding_k4")  # a grid of its own: k = 4 only
    files = wd.layout.setting(wd.root / entry["cloak_dir"], 0, 1, entry["setting"])
    f_theta, _ = load_checkpoint(wd.layout.model("paper", entry["emotion_model"], 0, 1,
                                                 "emotion"), wd.cfg)
    net = load_split(files.network, f_theta)
    segments = wd.segments(1, "test", "emotion", train=False).x[:16]
    session = onnxruntime.InferenceSession(str(embedding_bundle / "client" / "front.onnx"))
    ours = session.run(None, {"features": segments.numpy()})[0]
    with torch.no_grad():
        theirs = net.front(segments).numpy()
    assert ours.shape == (16, 6, 4) and np.abs(ours - theirs).max() < 1e-4


def test_the_embedding_client_sends_noisy_windows_only(embedding_bundle):
    client = Client.from_bundle(embedding_bundle, seed=0)
    assert isinstance(client, EmbeddingClient)
    sent = client(speech(), remember=False)
    assert sent.shape == (4, 6, 4) and sent.dtype == np.float32  # 301 frames: 4 windows
    again = Client.from_bundle(embedding_bundle, seed=1)(speech(), remember=False)
    assert not np.allclose(sent, again)  # fresh noise
    assert np.abs(sent - again).max() < 1 + 20 * open_bundle(embedding_bundle).manifest[
        "embedding"]["sigma_max"]
    with pytest.raises(ValueError, match="streaming is for cloak bundles"):
        client.stream()
    local = EmotionModel(embedding_bundle).predict(sent)
    assert len(local["windows"]) == 4 and sum(local["utterance"]["probabilities"].values()) \
        == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("change, status, message", [
    (lambda x: x[:, :5], 422, "steps"),
    (lambda x: x[..., :3], 422, "dimensions"),
    (lambda x: x[0], 422, "3 dimensions"),
    (lambda x: np.where(np.arange(x.size).reshape(x.shape) == 7, np.nan, x), 422, "NaN"),
    (lambda x: x * 1e4, 422, "outside the range"),
    (lambda x: np.zeros((0, 6, 4), np.float32), 422, "no windows"),
])
def test_the_service_refuses_what_an_embedding_bundle_cannot_read(
        embedding_server, embedding_bundle, change, status, message):
    bundle_id = open_bundle(embedding_bundle).manifest["bundle_id"]
    sent = Client.from_bundle(embedding_bundle, seed=0)(speech(), remember=False)
    code, answer = post(embedding_server, npy(sent), bundle_id)
    assert code == 200 and answer["utterance"]["label"] in answer["labels"]
    code, answer = post(embedding_server, npy(np.asarray(change(sent), np.float32)), bundle_id)
    assert code == status and message in answer["detail"], answer


def test_an_embedding_server_refuses_other_bundles_and_tells_the_page(embedding_server,
                                                                       embedding_bundle,
                                                                       bundle):
    sent = Client.from_bundle(embedding_bundle, seed=0)(speech(), remember=False)
    code, answer = post(embedding_server, npy(sent), open_bundle(bundle).manifest["bundle_id"])
    assert code == 409
    import urllib.request

    # what the page reads: the manifest's exact bytes, whose protection it cannot run
    files = embedding_server + "/v1/bundle/files/"
    manifest = json.loads(urllib.request.urlopen(files + "manifest.json").read())
    assert manifest["protection"] == {"kind": "split"}
    assert urllib.request.urlopen(files + "client/front.onnx").read() == (
        embedding_bundle / "client" / "front.onnx").read_bytes()


def test_a_voice_normalisation_bundle_runs_end_to_end(tiny_experiment, tmp_path):
    pytest.importorskip("pyworld", reason="voice normalisation needs pyworld")
    cfg = ExperimentConfig(transform="voicenorm", cloak_after=True, attacks=STATS, ratios=(0,),
                           variants=("plain",), cloak=CloakConfig(kind="temporal"),
                           cloak_train=CloakTrainConfig(perturbation_epochs=1))
    run_experiment(tiny_experiment, [0, 1], tiny_train_configs(), cfg, show_progress=False)
    out = tmp_path / "bundle"
    cli_main(["export", "--workdir", str(tiny_experiment.root), "--fold", "0", "--setting",
              "voicenorm_cloak_temporal", "--out", str(out), "--quiet"])
    manifest = open_bundle(out).manifest
    assert manifest["transform"] == "voicenorm" and "client/voicenorm.json" in manifest["files"]
    client = Client.from_bundle(out, seed=0)
    first = client(speech(2.0))  # remembered: the next utterance is normalised by it
    assert len(client.voice.profiles) == 1 and first.shape[1] == 128
    answer = EmotionModel(out).predict(client(speech(2.5), remember=False))
    assert answer["utterance"]["label"] in answer["labels"]


def test_voice_normalisation_then_the_split_network_is_deployable(tiny_experiment, tmp_path):
    """Issue 30's combination: the device normalises the voice, then runs the split
    network's front; exported, it states both protections and the client applies both."""
    pytest.importorskip("pyworld", reason="voice normalisation needs pyworld")
    cfg = ExperimentConfig(design="embedding", transform="voicenorm", attacks=STATS,
                           split=SplitConfig(dims=(4,), epochs=1, adapt_epochs=1))
    results = run_experiment(tiny_experiment, [0, 1], tiny_train_configs(), cfg,
                             show_progress=False)
    assert "voicenorm_embedding_k4" in {e["method"] for e in results["cloak"]}
    out = tmp_path / "bundle"
    cli_main(["export", "--workdir", str(tiny_experiment.root), "--fold", "0", "--setting",
              "voicenorm_embedding_k4", "--out", str(out), "--quiet"])
    manifest = open_bundle(out).manifest
    assert manifest["protection"] == {"kind": "voicenorm+split"}
    assert {"client/voicenorm.json", "client/front.onnx"} <= set(manifest["files"])
    client = Client.from_bundle(out, seed=0)
    assert isinstance(client, EmbeddingClient) and client.voice is not None
    sent = client(speech(2.5), remember=False)
    assert sent.ndim == 3 and sent.shape[2] == 4
    answer = EmotionModel(out).predict(sent)
    assert answer["utterance"]["label"] in answer["labels"]


@pytest.mark.parametrize("output, method", [("probabilities", "posteriors"),
                                            ("calibrated", "posteriors_calibrated")])
def test_the_floor_and_the_services_calibration_are_not_exported(tiny_experiment, tmp_path,
                                                                  output, method):
    cfg = ExperimentConfig(design="posteriors", output=output, attacks=STATS)
    run_experiment(tiny_experiment, [0, 1], tiny_train_configs(), cfg, show_progress=False)
    with pytest.raises(ValueError, match="a bundle carries"):
        export_bundle(tiny_experiment, 0, method, tmp_path / "b")
    assert not (tmp_path / "b").exists()


# -- the label-only design (issue 30): the emotion model on the device, its label sent --


def test_a_label_bundle_holds_the_emotion_model_for_the_device_and_nothing_for_the_server(
        label_bundle):
    manifest = open_bundle(label_bundle).manifest
    assert manifest["design"] == "label" and manifest["protection"] == {"kind": "label"}
    assert set(manifest["files"]) == {"client/mel_filterbank.npy", "client/emotion.onnx"}
    assert manifest["setting"]["method"] == "posteriors_label"
    assert manifest["measured"]["emotion_drop"]["mean"] == 0.0  # f_θ's own decision
    assert manifest["onnx_check"]["max_abs_logit_difference"] < 1e-4


def test_the_label_client_sends_the_label_the_measurement_scored(label_bundle,
                                                                  tiny_experiment):
    """What the device sends is one one-hot row, and it is the label the experiment's
    label-only answer (`designs.posteriors.labels_only`) gives the torch f_θ on the same
    windows: the deployed design is the measured one."""
    client = Client.from_bundle(label_bundle, seed=0)
    assert isinstance(client, LabelClient)
    wave = speech(3.5)
    sent = client(wave, remember=False)
    assert sent.shape == (1, len(client.labels)) and sent.dtype == np.float32
    assert sorted(sent.ravel().tolist()) == [0.0] * (len(client.labels) - 1) + [1.0]
    wd = tiny_experiment
    manifest = open_bundle(label_bundle).manifest
    entry = next(e for e in json.loads(wd.layout.results("paper", [0, 1], [0]).read_text())["cloak"]
                 if e["method"] == "posteriors_label")
    f_theta, _ = load_checkpoint(wd.layout.model("paper", entry["emotion_model"], 0, 1,
                                                 "emotion"), wd.cfg)
    s = client.settings
    cut = windows(client.features(wave), s.test_hop_frames, s.segment_frames, s.pad_value)
    with torch.no_grad():
        log_probs = torch.log_softmax(f_theta(torch.from_numpy(cut)), dim=-1).numpy()

    class Answer:  # the view labels_only reads: each utterance's window log-probabilities
        clean = [log_probs]

    np.testing.assert_array_equal(sent, labels_only(Answer)[0])
    assert manifest["labels"] == list(client.labels)
    with pytest.raises(ValueError, match="streaming is for cloak bundles"):
        client.stream()


def test_a_label_bundle_whose_model_answers_other_classes_is_refused(label_bundle,
                                                                     tmp_path):
    import shutil

    from sercloak.serving.bundle import BundleError, bundle_id, sha256

    forged = tmp_path / "forged"
    shutil.copytree(label_bundle, forged)
    manifest = json.loads((forged / "manifest.json").read_text())
    manifest["labels"] = manifest["labels"][:-1]  # one label fewer than the model answers
    manifest["bundle_id"] = bundle_id(manifest["files"])
    (forged / "manifest.json").write_text(json.dumps(manifest))
    assert sha256(forged / "client" / "emotion.onnx") == manifest["files"]["client/emotion.onnx"]
    with pytest.raises(BundleError, match="answers .* classes"):
        Client.from_bundle(forged)


@pytest.fixture(scope="module")
def label_server(label_bundle):
    yield from serving(label_bundle)


@pytest.mark.parametrize("change, message", [
    (lambda x: x * 2, "not one-hot"),
    (lambda x: np.full_like(x, 1.0 / x.shape[1]), "not one-hot"),  # probabilities: refused
    (lambda x: np.where(x == 1, np.nan, x), "not one-hot"),
    (lambda x: np.concatenate([x, x]), "1 × 4 one-hot row"),
    (lambda x: x[:, :3], "1 × 4 one-hot row"),
    (lambda x: x[0], "2 dimensions"),
])
def test_the_label_service_answers_one_label_and_refuses_anything_else(
        label_server, label_bundle, change, message):
    bundle_id = open_bundle(label_bundle).manifest["bundle_id"]
    sent = Client.from_bundle(label_bundle, seed=0)(speech(), remember=False)
    code, answer = post(label_server, npy(sent), bundle_id)
    assert code == 200 and answer["windows"] == []
    assert answer["utterance"]["label"] == answer["labels"][int(sent.argmax())]
    assert answer["utterance"]["probabilities"][answer["utterance"]["label"]] == 1.0
    code, answer = post(label_server, npy(np.asarray(change(sent), np.float32)), bundle_id)
    assert code == 422 and message in answer["detail"], answer


def test_predict_through_a_label_bundle_prints_the_devices_label(label_bundle, tmp_path,
                                                                  capsys):
    import soundfile as sf

    wav = tmp_path / "a.wav"
    sf.write(wav, speech(2.5), 16000)
    cli_main(["predict", str(wav), "--bundle", str(label_bundle), "--json"])
    answer = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert answer["label"] in open_bundle(label_bundle).manifest["labels"]
    assert answer["windows"] == [] and max(answer["probabilities"].values()) == 1.0
    cli_main(["predict", str(wav), "--bundle", str(label_bundle)])
    assert f"{answer['label']} (recognised on this device; the label is all it sends)" in \
        capsys.readouterr().out


def test_what_a_bundle_ships_is_what_counts_as_deployable():
    from sercloak.methods import Method
    from sercloak.serving.export import exportable

    ships = [Method(cloak=()), Method(transform="voicenorm", cloak=("temporal",)),
             Method(design="embedding", game="attackers"), Method("posteriors", output="label")]
    measured_only = [Method("posteriors"), Method("posteriors", output="calibrated"),
                     Method(transform="mcadams")]
    assert all(exportable(m.to_dict()) for m in ships)
    assert not any(exportable(m.to_dict()) for m in measured_only)
