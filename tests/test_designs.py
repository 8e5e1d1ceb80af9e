"""Issue 18's designs through the experiment: posteriors (the floor), the split network,
voice normalisation, and the speaker encoder retrained on protected speech."""

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from conftest import comparison_of
from sercloak.attacks.base import View, fit_and_score
from sercloak.attacks.dvector_tuned import TunedEncoderAttacker, split_encoder
from sercloak.attacks.suite import AttackConfig
from sercloak.cloak import Cloak, CloakConfig
from sercloak.cloak.training import CloakTrainConfig
from sercloak.corpora.synthetic import SyntheticSpec
from sercloak.data import Workdir
from sercloak.designs.split.network import SplitNet
from sercloak.designs.split.training import SplitConfig, train_split
from sercloak.experiment import (
    ExperimentConfig,
    fold_runner,
    plan_method,
    run_experiment,
    score_points,
)
from sercloak.experiment.executors import LocalExecutor
from sercloak.experiment.plan import PoolModelUnit, method_units
from sercloak.models import PRESETS, CnnRnn
from sercloak.points import Point
from sercloak.prepare import prepare
from sercloak.runner import check_unseen_by
from sercloak.train import TrainConfig

STATS = AttackConfig(families=("stats",), informed_epochs=1)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    root = tmp_path_factory.mktemp("designs")
    spec = SyntheticSpec(n_speakers=10, utterances_per_emotion=3)
    prepare({"synthetic": root / "corpus"}, root, loader_options={"synthetic": {"spec": spec}},
            show_progress=False)
    return Workdir.open(root)


def configs() -> dict[str, TrainConfig]:
    return {t: TrainConfig(task=t, max_epochs=2, batch_size=16, lr=1e-3)
            for t in ("emotion", "gender")}


def test_posteriors_are_the_floor_and_their_attackers_never_see_test_speakers(workdir):
    cfg = ExperimentConfig(design="posteriors", attacks=STATS)
    results = run_experiment(workdir, [0, 1], configs(), cfg, show_progress=False)
    (entry,) = results["cloak"]
    assert entry["method"] == "posteriors"
    # the server's emotion is f_θ's own: nothing lost, on every resample too
    assert entry["emotion_drop"]["mean"] == 0 and entry["emotion_drop"]["ci95"] == [0.0, 0.0]
    assert set(entry["attackers"]) == {"lr", "gbt", "gru"}  # a GRU over the window sequence
    assert set(entry["attackers"]["lr"]) == {"informed"}
    assert entry["gender_privacy"]["attacker"] in ("lr.informed", "gbt.informed", "gru.informed")
    method = plan_method(workdir, configs(), cfg, show_progress=False)
    score_points(method, LocalExecutor(), {0: cfg.points()}, "test")
    runner = fold_runner(method, 0, 0)
    test = set(workdir.folds[0]["test"])
    assert all(not a.fitted_on & test for a in runner._attackers().values())
    sent = runner.sent("test")
    assert all(s.shape[1] == 4 and np.allclose(np.exp(s).sum(1), 1, atol=1e-4)
               for s in sent.observed())


def test_split_network_shapes_and_its_game(workdir):
    torch.manual_seed(0)
    data = workdir.segments(0, "primary_train", "emotion", train=True)
    f_theta = CnnRnn(4, PRESETS["light"]).eval()
    net = SplitNet(f_theta, 8, 4)
    z = net.front(data.x[:3])
    assert z.shape == (3, 6, 8) and z.abs().max() <= 1  # 6 steps of a 2 s window, tanh
    assert net(data.x[:3]).shape == (3, 4)
    before = {k: v.clone() for k, v in net.front.conv.state_dict().items()}
    trained, history = train_split(f_theta, data, 8, SplitConfig(epochs=2, adapt_epochs=1),
                                   "cpu")
    assert [h["stage"] for h in history] == ["game", "game", "adapt"]
    assert 0 <= history[0]["adversary_acc"] <= 100 and history[-1]["adversary_acc"] is None
    # f_θ's convolutions are frozen, BatchNorm statistics included
    for k, v in trained.front.conv.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert not torch.allclose(trained.sigma(), torch.full((8,), 0.1))  # the noise learned


def test_embedding_design_chooses_k_on_validation_speakers(workdir):
    cfg = ExperimentConfig(design="embedding", attacks=STATS, select=True,
                           split=SplitConfig(dims=(4, 8), epochs=1, adapt_epochs=1))
    results = run_experiment(workdir, [0], configs(), cfg, show_progress=False)
    (entry,) = [e for e in results["cloak"] if e["method"] == "embedding_k4-8"]
    (chosen,) = entry["points"]
    assert chosen["dims"] in (4, 8) and entry["setting"] == f"embedding_k{chosen['dims']}"
    assert "emotion_drop" in entry["validation"]
    assert set(entry["attackers"]) == {"lr", "gbt", "gru"}
    files = workdir.layout.setting(workdir.root / entry["cloak_dir"], 0, 0, entry["setting"])
    saved = torch.load(files.network, weights_only=True)
    assert set(saved["speakers"]) == set(workdir.folds[0]["primary_train"])  # no test speaker
    method = plan_method(workdir, configs(), cfg, show_progress=False)
    point = Point(entry["setting"], dims=chosen["dims"])
    score_points(method, LocalExecutor(), {0: [point]}, "test")
    runner = fold_runner(method, 0, 0)
    test = set(workdir.folds[0]["test"])
    fitted, _ = runner._attackers(point)
    assert all(not a.fitted_on & test for a in fitted.values())


def test_model_output_attackers_read_outputs_of_speakers_the_model_never_trained_on(workdir):
    """Under `shared` f_θ and the split network train on the attackers' speakers: the
    attackers read cross-fitted outputs (a model trained on one pool, for the other's)."""
    shared = {"protocol": "shared", "attacks": STATS}
    cfg = ExperimentConfig(design="posteriors", **shared)
    run_experiment(workdir, [0], configs(), cfg, show_progress=False)
    runner = fold_runner(plan_method(workdir, configs(), cfg, False), 0, 0)
    views = runner.attacker_training_views()
    assert {tuple(sorted(v.speakers)) for _, v in views} == {
        tuple(sorted(workdir.folds[0][p])) for p in ("primary_train", "adversary_train")}
    for file, view in views:
        trained = torch.load(file, weights_only=True)["metrics"]["speakers"]["train"]
        assert trained and not set(trained) & view.speakers
    fitted_on = set().union(*(a.fitted_on for a in runner._attackers().values()))
    assert not fitted_on & set(workdir.folds[0]["test"])

    cfg = ExperimentConfig(design="embedding", **shared,
                           split=SplitConfig(dims=(4,), epochs=1, adapt_epochs=0))
    run_experiment(workdir, [0], configs(), cfg, show_progress=False)
    point = Point("embedding_k4", dims=4)
    runner = fold_runner(plan_method(workdir, configs(), cfg, False), 0, 0)
    files = runner.setting(point.name)
    twin = torch.load(files.twin_network, weights_only=True)
    deployed = torch.load(files.network, weights_only=True)
    assert set(twin["speakers"]) == set(workdir.folds[0]["primary_train"])
    assert set(deployed["speakers"]) == set(workdir.folds[0]["primary_train"]
                                            + workdir.folds[0]["adversary_train"])
    fitted, valid = runner._attackers(point)
    fitted_on = set().union(*(a.fitted_on for a in fitted.values()))
    # fitted on the adversary pool, which neither the twin nor its f_θ trained on
    parts = workdir.folds[0]
    assert fitted_on == set(parts["adversary_train"] + parts["adversary_valid"])
    with pytest.raises(ValueError, match="trained on"):  # and the guard refuses the deployed one
        check_unseen_by(files.network, runner.sent(runner.net(point), "adversary_train", 1, 0))


def test_voice_normalisation_alone_and_under_a_cloak(workdir):
    pytest.importorskip("pyworld", reason="voice normalisation needs pyworld")
    alone = ExperimentConfig(transform="voicenorm", attacks=STATS)
    run_experiment(workdir, [0], configs(), alone, show_progress=False)
    assert workdir.layout.voice_profiles().is_file()
    assert (workdir.layout.features("voicenorm") / "synthetic").is_dir()
    cloaked = ExperimentConfig(transform="voicenorm", cloak_after=True, attacks=STATS,
                               ratios=(0,), variants=("plain",),
                               cloak=CloakConfig(kind="temporal"),
                               cloak_train=CloakTrainConfig(perturbation_epochs=1))
    results = run_experiment(workdir, [0], configs(), cloaked, show_progress=False)
    methods = {e["method"] for e in results["cloak"]}
    assert {"voicenorm", "voicenorm_cloak_temporal"} <= methods  # merged with earlier runs
    entry = next(e for e in results["cloak"] if e["method"] == "voicenorm_cloak_temporal")
    files = workdir.layout.setting(workdir.root / entry["cloak_dir"], 0, 0, "cloak_sr0")
    cloak = Cloak.load(files.cloak, workdir.cfg)
    assert set(cloak.meta["speakers"]) == set(workdir.folds[0]["primary_train"])
    # its informed attacker read voice-normalised features, not the clean ones
    scores = json.loads(files.scores().read_text())
    assert "informed" in scores["attackers"]["stats"]
    report = workdir.layout.report(comparison_of(workdir, results)).read_text()
    assert "Voice normalisation + Cloak (temporal)" in report


def test_the_encoder_retrained_on_protected_speech(workdir, encoder):
    lower, top = split_encoder(encoder)
    x = torch.rand(2, 160, 40)
    with torch.no_grad():  # the two halves compute what the whole LSTM does
        whole = encoder.lstm(x)[1][0][-1]
        halves = top(lower(x)[0])[1][0][-1]
    assert torch.allclose(whole, halves, atol=1e-5)
    utts = workdir.part(0, "adversary_train")
    train = View(utts, workdir.features(utts), workdir.cfg)
    valid_utts, test_utts = workdir.part(0, "adversary_valid"), workdir.part(0, "test")
    valid = View(valid_utts, workdir.features(valid_utts), workdir.cfg)
    test = View(test_utts, workdir.features(test_utts), workdir.cfg)
    attacker = TunedEncoderAttacker(encoder, max_per_speaker=4, epochs=2)
    result = fit_and_score(attacker, train, valid, test)
    assert 0 <= result["overall"]["uar_speaker"] <= 100
    assert attacker.chosen["epoch"] in (1, 2) and attacker.fitted_on.isdisjoint(test.speakers)
    # the encoder itself is untouched: a copy of its top layer learned
    assert not any(p.requires_grad for p in attacker.lower.parameters())
    with pytest.raises(ValueError, match="test speakers"):
        fit_and_score(TunedEncoderAttacker(encoder), test, valid, test)


def test_the_posteriors_service_can_answer_less_and_its_attackers_read_that(workdir):
    """Issue 30's output-side defences: calibrated per user (a user's constant offset is
    gone once the service has seen the user) and the label alone (one label per utterance)."""
    from sercloak.designs.posteriors import calibrated, labels_only
    from sercloak.features import FeatureConfig

    utterances = workdir.part(0, "test")[:6]
    rng = np.random.default_rng(0)
    offset = {u.speaker: rng.normal(0, 2, 4) for u in utterances}  # each user's own bias
    windows = [np.log(np.full((3, 4), 0.25)) + offset[u.speaker] + rng.normal(0, 0.1, (3, 4))
               for u in utterances]
    view = View(utterances, windows, FeatureConfig())
    answered = calibrated(view)
    seen = set()
    assert len({u.speaker for u in utterances}) < len(utterances)  # some users come back
    for u, w, a in zip(utterances, windows, answered, strict=True):
        assert np.allclose(np.exp(a).sum(axis=1), 1, atol=1e-5)
        if u.speaker in seen:  # the user's offset, learnt so far, is removed: near uniform
            assert np.abs(np.exp(a) - 0.25).max() < 0.1
        else:  # a user's first request: answered as it is
            assert np.allclose(np.exp(a), np.exp(w) / np.exp(w).sum(axis=1, keepdims=True),
                               atol=1e-5)
        seen.add(u.speaker)
    labels = labels_only(view)
    assert all(x.shape == (1, 4) and x.sum() == 1 and set(np.unique(x)) <= {0.0, 1.0}
               for x in labels)
    for output in ("calibrated", "label"):
        cfg = ExperimentConfig(design="posteriors", attacks=STATS, output=output)
        results = run_experiment(workdir, [0], configs(), cfg, show_progress=False)
        entry = next(e for e in results["cloak"] if e["method"] == f"posteriors_{output}")
        assert set(entry["attackers"]) == {"lr", "gbt", "gru"}
        method = plan_method(workdir, configs(), cfg, show_progress=False)
        sent = fold_runner(method, 0, 0).sent("test")
        if output == "label":
            assert all(x.shape == (1, 4) and x.sum() == 1 for x in sent.observed())
            assert entry["emotion_drop"]["mean"] == 0  # the label is f_θ's own decision


def test_the_split_networks_new_adversaries_read_what_attackers_read_and_move_the_front(
        workdir):
    """Issue 30's adversaries: a GRU over each window's steps, statistics over a whole
    utterance's windows, fresh adversaries every few epochs; each game moves the device
    part's projection away from where the plain game leaves it."""
    from sercloak.designs.split.network import GruAdversary, UtteranceAdversary
    from sercloak.designs.split.training import GAMES

    z = torch.randn(5, 6, 8)
    assert GruAdversary(8)(z).shape == (5, 2)
    assert UtteranceAdversary(8)([torch.randn(12, 8), torch.randn(30, 8)]).shape == (2, 2)
    data = workdir.segments(0, "primary_train", "emotion", train=True)
    torch.manual_seed(0)
    f_theta = CnnRnn(4, PRESETS["light"]).eval()
    trained = {}
    for game in ("window", "gru", "utterance", "refresh"):
        cfg = SplitConfig.playing(game, epochs=3, adapt_epochs=0)
        assert cfg.game == game and (cfg.adversaries, cfg.refresh_every) == GAMES[game]
        net, history = train_split(f_theta, data, 8, cfg, "cpu")
        assert all(0 <= h["adversary_acc"] <= 100 for h in history)
        trained[game] = net.front.project.weight.detach().clone()
    for game in ("gru", "utterance", "refresh"):
        assert not torch.allclose(trained[game], trained["window"]), game
    with pytest.raises(ValueError, match="unknown split-network game"):
        SplitConfig.playing("chess")


def test_a_debiased_emotion_model_learns_against_a_gender_adversary_on_its_outputs(
        workdir, monkeypatch):
    """Issue 30's debiased f_θ: its own model family, the plain f_θ fine-tuned for a third
    of its epochs with a gender adversary on its window outputs (which learns, and whose
    push reaches the model), measured against the plain f_θ."""
    from sercloak import baselines
    from sercloak.train import OutputAdversary, train

    data = workdir.segments(0, "primary_train", "emotion", train=True)
    genders = data.relabel("gender").y
    adversary = OutputAdversary(4, genders)
    logits = torch.randn(16, 4, requires_grad=True)
    before = [p.detach().clone() for p in adversary.parameters()]
    privacy = adversary.play(logits, genders[:16])
    assert any(not torch.equal(a, b) for a, b in zip(before, adversary.parameters(),
                                                     strict=True))
    privacy.backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0
    valid = workdir.segments(0, "primary_valid", "emotion", train=False)
    cfg = TrainConfig(task="emotion", max_epochs=1, batch_size=16, lr=1e-3, output_adversary=1.0)
    metrics = train(data, valid, cfg, workdir.cfg, workdir.root / "debiased.pt",
                    show_progress=False)
    assert metrics["epochs"] == 1
    trained = []  # every model the experiment trains: (file, settings, starting weights)

    def recording(*args, init_state=None, **kwargs):
        trained.append((args[4], args[2], init_state))
        return train(*args, init_state=init_state, **kwargs)

    monkeypatch.setattr(baselines, "train", recording)
    run = ExperimentConfig(design="posteriors", attacks=STATS, debias=1.0, seeds=(0,))
    results = run_experiment(workdir, [0], configs(), run, show_progress=False)
    [(_, cfg, init)] = [t for t in trained if t[1].output_adversary]
    plain = baselines.model_file(workdir, configs()["emotion"], run.protocol, 0)
    start = torch.load(plain, weights_only=True)["state_dict"]
    assert cfg.max_epochs == 1 and all(torch.equal(init[k], start[k]) for k in start)
    # cross-fitted (shared): its one-pool twins fine-tune the plain one-pool models, after them
    shared = plan_method(workdir, configs(), replace(run, protocol="shared"), False)
    pools = [u for u in method_units(shared, {0: shared.cfg.points()}, "test")
             if isinstance(u, PoolModelUnit)]
    names = [u.name for u in pools]
    fine_tuned = [u for u in pools if u.config.output_adversary]
    assert len(fine_tuned) == 2 and all(u.start_from == shared.start(0) for u in fine_tuned)
    assert all(names.index(*u.needs) < names.index(u.name) for u in fine_tuned)
    entry = next(e for e in results["cloak"] if e["method"] == "posteriors_debiased")
    assert entry["emotion_model"].endswith("-output_adversary1")
    assert "emotion_drop" in entry  # against the plain f_θ on the same utterances


def test_a_debiased_split_networks_server_part_plays_against_its_output_adversary(
        workdir, monkeypatch):
    """Issue 30 item 2 for the split network: with a debiased f_θ, the server part also
    trains against a gender adversary on its own output, in the game and the adaptation."""
    from sercloak.designs.split import runner as split_runner
    from sercloak.train import OutputAdversary

    data = workdir.segments(0, "primary_train", "emotion", train=True)
    f_theta = CnnRnn(4, PRESETS["light"]).eval()
    played = []
    play = OutputAdversary.play

    def counting(self, logits, genders):
        played.append(logits.requires_grad)
        return play(self, logits, genders)

    monkeypatch.setattr(OutputAdversary, "play", counting)
    cfg = SplitConfig(epochs=1, adapt_epochs=1)
    train_split(f_theta, data, 8, cfg, "cpu")
    assert not played  # the plain split network has no such adversary
    train_split(f_theta, data, 8, cfg, "cpu", output_adversary=1.0)
    batches = len(played) // 2
    assert batches > 0 and len(played) == 2 * batches and all(played)  # both stages, every batch
    weights = []

    def recording(*args, output_adversary=0.0, **kwargs):
        weights.append(output_adversary)
        return train_split(*args, output_adversary=output_adversary, **kwargs)

    monkeypatch.setattr(split_runner, "train_split", recording)
    run = ExperimentConfig(design="embedding", attacks=STATS, debias=1.0, seeds=(0,),
                           split=SplitConfig(dims=(4,), epochs=1, adapt_epochs=0))
    results = run_experiment(workdir, [0], configs(), run, show_progress=False)
    assert weights and set(weights) == {1.0}  # the debiased f_θ's weight reached the game
    assert any(e["method"] == "embedding_k4_debiased" for e in results["cloak"])
