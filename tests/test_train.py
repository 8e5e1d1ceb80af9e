"""Emotion model / gender attacker: model, training, checkpoints, resume, evaluation."""

import json

import numpy as np
import pytest
import torch

from sercloak import train as train_module
from sercloak.augment import spec_augment
from sercloak.checkpoint import CheckpointMismatch, load_checkpoint
from sercloak.cli import main
from sercloak.cloak import Cloak, CloakConfig
from sercloak.corpora.synthetic import SyntheticSpec
from sercloak.data import Workdir, balanced_index
from sercloak.evaluate import predict, scores
from sercloak.features import FeatureConfig
from sercloak.folds import training_parts
from sercloak.models import PRESETS, CnnRnn
from sercloak.prepare import prepare
from sercloak.train import TrainConfig, recipe_config, train

FAST = dict(max_epochs=3, patience=10, batch_size=16, lr=1e-3)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A small prepared synthetic workdir: 10 speakers x 4 emotions x 3 utterances."""
    root = tmp_path_factory.mktemp("work")
    spec = SyntheticSpec(n_speakers=10, utterances_per_emotion=3)
    prepare({"synthetic": root / "corpus"}, root, loader_options={"synthetic": {"spec": spec}},
            show_progress=False)
    return Workdir.open(root)


def sets(wd, task, fold=0):
    train_parts, valid_parts = training_parts("paper", task)
    return (wd.segments(fold, train_parts, task, train=True),
            wd.segments(fold, valid_parts, task, train=False))


@pytest.mark.parametrize("preset", ["light", "reference"])
def test_model_shapes(preset):
    model = CnnRnn(4, PRESETS[preset]).eval()
    assert model(torch.randn(3, 200, 128)).shape == (3, 4)
    convs = [m for m in model.conv.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs[-1].out_channels == 128  # the paper's 128-channel map
    bns = [m for m in model.conv.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(bns) == len(convs)  # BatchNorm after each conv


def test_uar_against_hand_computed_example():
    truth = np.array([0, 0, 0, 1, 1, 2])
    pred = np.array([0, 0, 1, 1, 0, 2])
    s = scores(truth, pred, 4)  # class 3 absent: left out of the mean
    assert s["acc"] == pytest.approx(100 * 4 / 6)
    assert s["uar"] == pytest.approx(100 * (2 / 3 + 1 / 2 + 1) / 3)
    assert s["confusion"][0] == [2, 1, 0, 0] and s["confusion"][1] == [1, 1, 0, 0]


def test_predict_averages_segment_probabilities(workdir):
    class Fixed(torch.nn.Module):  # logits from the first feature: segment-specific output
        def forward(self, x):
            return torch.stack([x[:, 0, 0], -x[:, 0, 0]], dim=1)

    data = workdir.segments(0, "test", "gender", train=False)
    probs = predict(Fixed(), data)
    first = data.utt == 0
    seg = torch.softmax(Fixed()(data.x[first]), dim=1).double().mean(0).numpy()
    np.testing.assert_allclose(probs[0], seg, rtol=1e-6)
    assert probs.shape == (len(data.utterances), 2)


def test_balancing_equalises_emotions_within_each_speaker(workdir):
    train_set, _ = sets(workdir, "emotion")
    keep = torch.ones(len(train_set), dtype=torch.bool)
    keep[train_set.y == 0] = torch.arange(int((train_set.y == 0).sum())) % 2 == 0  # thin neutral
    train_set.x, train_set.y = train_set.x[keep], train_set.y[keep]
    train_set.utt, train_set.speaker = train_set.utt[keep], train_set.speaker[keep]
    index, is_copy = balanced_index(train_set, "emotion", torch.Generator().manual_seed(0))
    for spk in train_set.speaker.unique():
        labels = train_set.y[index][train_set.speaker[index] == spk]
        counts = torch.bincount(labels, minlength=4)
        assert (counts == counts.max()).all()
    assert is_copy.sum() == len(index) - len(train_set)


def test_spec_augment_masks_bands():
    x = torch.zeros(4, 200, 128)
    out = spec_augment(x, torch.ones(128), 2, torch.Generator().manual_seed(1))
    masked = out == 1
    assert masked.any() and not masked.all()
    assert masked.float().mean() < 0.4


def test_training_lowers_loss_and_checkpoint_round_trips(workdir, tmp_path):
    train_set, valid_set = sets(workdir, "emotion")
    cfg = TrainConfig(task="emotion", **FAST)
    metrics = train(train_set, valid_set, cfg, workdir.cfg, tmp_path / "m.pt", show_progress=False)
    losses = [h["loss"] for h in metrics["history"]]
    assert losses[-1] < losses[0]
    # weights_only: nothing but tensors and plain values in the file
    raw = torch.load(tmp_path / "m.pt", weights_only=True)
    assert raw["labels"] == ["neutral", "happy", "sad", "angry"]
    assert raw["feature_config"] == FeatureConfig().to_dict()
    assert raw["train_config"]["lr"] == 1e-3 and raw["model_config"]["channels"] == [16, 32, 128]
    model, _ = load_checkpoint(tmp_path / "m.pt", workdir.cfg)
    x = valid_set.x[:8]
    twin = CnnRnn(4, PRESETS["light"])
    twin.load_state_dict(raw["state_dict"])
    assert torch.equal(model(x), twin.eval()(x))
    assert not (tmp_path / "m.pt.state").exists()


def test_mismatched_checkpoint_is_refused(workdir, tmp_path):
    train_set, valid_set = sets(workdir, "gender")
    train(train_set, valid_set, TrainConfig(task="gender", **{**FAST, "max_epochs": 1}),
          workdir.cfg, tmp_path / "g.pt", show_progress=False)
    with pytest.raises(CheckpointMismatch, match="n_mels: 64 != 128"):
        load_checkpoint(tmp_path / "g.pt", FeatureConfig(n_mels=64))
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointMismatch, match="junk.pt"):
        load_checkpoint(tmp_path / "junk.pt")


RESUMABLE = {
    "paper": TrainConfig(task="emotion", **FAST),
    # weight average, schedule, mixup and every augmentation: all their state must resume
    "strong": recipe_config("strong", "emotion", max_epochs=3, batch_size=16, tempo=0.1,
                            vtlp=0.1, mixup=0.4, ema=0.9),
}


@pytest.mark.parametrize("recipe", sorted(RESUMABLE))
def test_interrupted_training_resumes_to_the_same_weights(workdir, tmp_path, monkeypatch, recipe):
    train_set, valid_set = sets(workdir, "emotion")
    cfg = RESUMABLE[recipe]
    train(train_set, valid_set, cfg, workdir.cfg, tmp_path / "straight.pt", show_progress=False)

    calls = {"n": 0}
    real_evaluate = train_module.evaluate

    def interrupt_in_epoch_2(*args, **kw):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real_evaluate(*args, **kw)

    monkeypatch.setattr(train_module, "evaluate", interrupt_in_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        train(train_set, valid_set, cfg, workdir.cfg, tmp_path / "resumed.pt", show_progress=False)
    assert (tmp_path / "resumed.pt.state").exists() and not (tmp_path / "resumed.pt").exists()
    monkeypatch.setattr(train_module, "evaluate", real_evaluate)
    metrics = train(train_set, valid_set, cfg, workdir.cfg, tmp_path / "resumed.pt",
                    show_progress=False)
    assert metrics["epochs"] == 3
    a = torch.load(tmp_path / "straight.pt", weights_only=True)
    b = torch.load(tmp_path / "resumed.pt", weights_only=True)
    assert a["metrics"]["history"] == b["metrics"]["history"]
    for k in a["state_dict"]:
        assert torch.equal(a["state_dict"][k], b["state_dict"][k]), k
    with pytest.raises(CheckpointMismatch, match="other settings"):  # a stale state is refused
        (tmp_path / "other.pt.state").write_bytes((tmp_path / "straight.pt").read_bytes())
        torch.save({"train_config": {}, "feature_config": {}}, tmp_path / "other.pt.state")
        train(train_set, valid_set, cfg, workdir.cfg, tmp_path / "other.pt", show_progress=False)


def test_baselines_cli_writes_table2_json_over_seeds(workdir, capsys):
    main(["baselines", "--workdir", str(workdir.root), "--folds", "0-1", "--seeds", "0,1",
          "--epochs", "1", "--quiet"])
    out = capsys.readouterr().out
    assert "| all |" in out and "| synthetic |" in out
    layout = workdir.layout
    file = layout.baselines("paper", "light-strong", [0, 1], [0, 1])
    results = json.loads(file.read_text())
    assert results["seeds"] == [0, 1] and results["protocol"] == "paper"
    for task in ("emotion", "gender"):
        for metric in ("acc", "uar", "uar_speaker"):
            stat = results[task][metric]
            assert {"mean", "std", "folds", "seeds", "seed_std"} <= set(stat)
            assert len(stat["folds"]) == 2 and len(stat["seeds"]) == 2
            assert 0 <= stat["mean"] <= 100
            assert stat["mean"] == pytest.approx(np.mean(stat["seeds"]), abs=0.02)
            assert results[task]["per_corpus"]["synthetic"][metric]["folds"] == stat["folds"]
        lo, hi = results[task]["uar_speaker"]["ci95"]
        assert 0 <= lo <= results[task]["uar_speaker"]["mean"] <= hi <= 100
    assert results["wall_time_s"] > 0
    md = layout.markdown(file).read_text()
    assert md.startswith("# Clean-input baselines") and "per seed" in md
    # every seed's models are their own, and the aggregate is their mean over folds and seeds
    per_seed = []
    for seed in (0, 1):
        evaluated = [json.loads(layout.fold_eval("paper", "light-strong", seed, f).read_text())
                     for f in (0, 1)]
        per_seed.append(np.mean([e["emotion"]["overall"]["uar"] for e in evaluated]))
        ckpt = load_checkpoint(layout.model("paper", "light-strong", seed, 0, "emotion"))[1]
        assert ckpt["train_config"]["seed"] == seed
    assert results["emotion"]["uar"]["seeds"] == pytest.approx(per_seed, abs=0.01)
    # a second run reuses the finished checkpoints
    emotion = layout.model("paper", "light-strong", 0, 0, "emotion")
    mtime = emotion.stat().st_mtime
    main(["baselines", "--workdir", str(workdir.root), "--folds", "0", "--epochs", "1", "--quiet"])
    assert emotion.stat().st_mtime == mtime
    # a run on fewer folds writes its own summary: the one over folds 0-1 stays whole
    assert json.loads(file.read_text())["folds"] == [0, 1]
    assert json.loads(layout.baselines("paper", "light-strong", [0], [0]).read_text())[
        "folds"] == [0]
    # the paper's recipe lives beside it, in its own folder and results file
    main(["baselines", "--workdir", str(workdir.root), "--folds", "0", "--epochs", "1", "--quiet",
          "--recipe", "paper"])
    paper = json.loads(layout.baselines("paper", "light-paper", [0], [0]).read_text())
    assert paper["recipe"] == "paper" and paper["train_config"]["emotion"]["lr"] == 1e-4
    assert layout.model("paper", "light-paper", 0, 0, "gender").is_file()


def test_shared_protocol_trains_on_every_non_test_speaker_and_never_on_test(workdir):
    main(["baselines", "--workdir", str(workdir.root), "--folds", "0-1", "--epochs", "1",
          "--quiet", "--protocol", "shared"])
    for fold in (0, 1):
        parts = workdir.folds[fold]
        for task in ("emotion", "gender"):
            ckpt = load_checkpoint(workdir.layout.model("shared", "light-strong", 0, fold,
                                                        task))[1]
            trained, valid = (set(ckpt["metrics"]["speakers"][k]) for k in ("train", "valid"))
            assert trained == set(parts["primary_train"]) | set(parts["adversary_train"])
            expected = {"emotion": parts["primary_valid"] + parts["adversary_valid"],
                        "gender": parts["adversary_valid"]}[task]  # primary_valid: operating points
            assert valid == set(expected)
            assert not (trained | valid) & set(parts["test"])
    results = json.loads(workdir.layout.baselines("shared", "light-strong", [0, 1], [0])
                         .read_text())
    assert results["protocol"] == "shared"
    paper = load_checkpoint(workdir.layout.model("paper", "light-strong", 0, 0, "emotion"))[1]
    assert set(paper["metrics"]["speakers"]["train"]) == set(workdir.folds[0]["primary_train"])


def test_evaluate_on_another_workdir(workdir, tmp_path, capsys):
    """Fold 0's models (trained above) and a cloak on every utterance of another corpus."""
    other = tmp_path / "other"
    prepare({"synthetic": other / "corpus"}, other, show_progress=False,
            loader_options={"synthetic": {"spec": SyntheticSpec(n_speakers=6,
                                                                utterances_per_emotion=2,
                                                                seed=7)}})
    main(["baselines", "--workdir", str(workdir.root), "--folds", "0", "--epochs", "1", "--quiet"])
    model, _ = load_checkpoint(workdir.layout.model("paper", "light-strong", 0, 0, "emotion"))
    cloak = Cloak(CloakConfig(sigma_max=3.0, rho_init=0.0), model.feat_mean, model.feat_std)
    cloak.save(tmp_path / "cloak.npz", workdir.cfg)
    out = tmp_path / "cross.json"
    main(["evaluate", "--workdir", str(workdir.root), "--fold", "0", "--on", str(other),
          "--cloak", str(tmp_path / "cloak.npz"), "--out", str(out)])
    printed = capsys.readouterr().out
    assert "emotion  UAR speaker-balanced / UAR / acc (%): all" in printed
    assert "through the cloak" in printed
    result = json.loads(out.read_text())
    target = Workdir.open(other)
    for task in ("emotion", "gender"):
        assert result[task]["overall"]["n"] == len(target.utterances)  # every utterance scored
        assert 0 <= result[task]["overall"]["uar"] <= 100
        assert set(result[task]["per_corpus"]) == {"synthetic"}
        assert result["cloaked"][task]["overall"]["n"] == len(target.utterances)
    # the cloak adds noise as large as 1.5 std of every bin: predictions change
    assert result["cloaked"]["emotion"]["overall"]["confusion"] != \
        result["emotion"]["overall"]["confusion"]
    # both synthetic corpora name their speakers spk00, spk01, ...: flagged as seen in training
    assert result["shared_speakers"] and "warning: " in printed
    Cloak(CloakConfig(), torch.zeros(64), torch.ones(64)).save(
        tmp_path / "bad.npz", FeatureConfig(n_mels=64))
    with pytest.raises(SystemExit):  # a cloak made for other features is refused, clearly
        main(["evaluate", "--workdir", str(workdir.root), "--fold", "0", "--on", str(other),
              "--cloak", str(tmp_path / "bad.npz")])
    assert "made for other features" in capsys.readouterr().err
