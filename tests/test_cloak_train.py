"""Cloak training (both stages, adversarial variant), attacker protocols, the experiment."""

import json
import re
from dataclasses import replace

import numpy as np
import pytest
import torch

from sercloak import experiment as experiment_module
from sercloak.attacks import cnn as cnn_module
from sercloak.attacks.suite import AttackConfig, fold_uars
from sercloak.cli import main as cli_main
from sercloak.cloak import Cloak, CloakConfig, new_adversary
from sercloak.cloak.training import CloakTrainConfig, train_perturbation, train_suppression
from sercloak.corpora.synthetic import SyntheticSpec
from sercloak.data import Workdir, normalisation_stats
from sercloak.evaluate import evaluate
from sercloak.experiment import ExperimentConfig, run_experiment, score_grid
from sercloak.models import CnnRnn
from sercloak.prepare import prepare
from sercloak.train import TrainConfig, load_checkpoint, train

FAST = dict(max_epochs=3, patience=10, batch_size=16, lr=1e-3)
QUICK = CloakTrainConfig(perturbation_epochs=2, suppression_epochs=1, batch_size=16)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A small prepared synthetic workdir: 10 speakers x 4 emotions x 3 utterances."""
    root = tmp_path_factory.mktemp("work")
    spec = SyntheticSpec(n_speakers=10, utterances_per_emotion=3)
    prepare({"synthetic": root / "corpus"}, root, loader_options={"synthetic": {"spec": spec}},
            show_progress=False)
    return Workdir.open(root)


@pytest.fixture(scope="module")
def primary(workdir):
    return workdir.segments(0, "primary_train", "emotion", train=True)


def frozen_emotion_model(data) -> CnnRnn:
    torch.manual_seed(0)
    model = CnnRnn(4)
    model.set_normalisation(*normalisation_stats(data))
    return model.eval()


def new_cloak(model: CnnRnn, **kw) -> Cloak:
    return Cloak(CloakConfig(**kw), model.feat_mean, model.feat_std)


def test_gender_targets_follow_each_segments_speaker(primary):
    gender = primary.relabel("gender")  # what the adversary ψ learns from
    assert gender.x is primary.x and gender.labels == ("female", "male")
    for i in range(0, len(primary), 7):
        assert gender.labels[gender.y[i]] == primary.utterances[primary.utt[i]].gender


def test_perturbation_moves_sigma_and_leaves_f_theta_untouched(primary):
    f_theta = frozen_emotion_model(primary)
    before = {k: v.clone() for k, v in f_theta.state_dict().items()}
    sigma_means = {}
    for lam in (0.0, 10.0):
        cloak = new_cloak(f_theta)
        start = cloak.sigma().detach().clone()
        history = train_perturbation(cloak, f_theta, primary, replace(QUICK, lam=lam),
                                     show_progress=False)
        assert len(history) == QUICK.perturbation_epochs
        assert not torch.allclose(cloak.sigma().detach(), start)  # σ learns from ρ = −1
        assert cloak.mu.detach().abs().sum() > 0
        sigma_means[lam] = history[-1]["sigma_mean"]
    # L_c rewards noise: a large λ ends with more of it than λ = 0
    assert sigma_means[10.0] > sigma_means[0.0]
    for k, v in f_theta.state_dict().items():  # frozen weights and BatchNorm statistics
        assert torch.equal(v, before[k]), k
    assert not any(p.requires_grad for p in f_theta.parameters())


@pytest.mark.parametrize("shape", ["mel", "cell"])
def test_suppression_masks_sr_percent_and_trains_only_mu_s(primary, shape):
    f_theta = frozen_emotion_model(primary)
    cloak = new_cloak(f_theta, shape=shape)
    train_perturbation(cloak, f_theta, primary, QUICK, show_progress=False)
    mu, rho = cloak.mu.detach().clone(), cloak.rho.detach().clone()
    train_suppression(cloak, f_theta, primary, 40, QUICK, show_progress=False)
    one_feature = 100 / cloak.mask.numel()  # 40% of 128 bins is 51.2: rounded to 51
    assert cloak.suppression_ratio == pytest.approx(40, abs=one_feature)
    assert torch.equal(cloak.mu.detach(), mu) and torch.equal(cloak.rho.detach(), rho)
    assert not torch.equal(cloak.mu_s.detach(), mu)  # μ_s started at μ and learned
    sigma = cloak.sigma().detach()
    assert sigma[cloak.mask == 0].min() >= sigma[cloak.mask == 1].max()


def test_adversarial_training_updates_psi_and_changes_the_cloak(primary):
    f_theta = frozen_emotion_model(primary)
    cloaks = {}
    for adversarial in (False, True):
        cloak = new_cloak(f_theta)
        psi = new_adversary(f_theta) if adversarial else None
        start = [p.detach().clone() for p in psi.parameters()] if psi else []
        cfg = replace(QUICK, adversarial=adversarial)
        history = train_perturbation(cloak, f_theta, primary, cfg, {"cnn": psi} if psi else None,
                                     show_progress=False)
        if psi is not None:
            assert history[-1]["gender_ce"] > 0
            assert 0 <= history[-1]["adversary_acc_cnn"] <= 100
            assert any(not torch.equal(a, p) for a, p in zip(start, psi.parameters(), strict=True))
        cloaks[adversarial] = cloak
    # same seed and data: only the reversed gender gradient can make them differ
    assert not torch.allclose(cloaks[False].mu.detach(), cloaks[True].mu.detach())


def test_adversary_initialisation_depends_on_its_seed_only(primary):
    f_theta = frozen_emotion_model(primary)
    first = new_adversary(f_theta, seed=3)
    torch.rand(100)  # other work in between draws from the global stream
    again, other = new_adversary(f_theta, seed=3), new_adversary(f_theta, seed=4)
    for a, b in zip(first.parameters(), again.parameters(), strict=True):
        assert torch.equal(a, b)
    assert any(not torch.equal(a, c) for a, c in zip(first.parameters(), other.parameters(),
                                                        strict=True))


def test_informed_attacker_learns_what_the_ignorant_one_cannot_see(workdir):
    """The protocol itself: train and select on transformed data, starting from f_g.

    A mirrored mel axis stands in for a cloak: deterministic, and it moves
    every cue to where the clean attacker does not look.
    """
    def mirror(x):
        return x.flip(-1)

    train_set = workdir.segments(0, "adversary_train", "gender", train=True)
    valid_set = workdir.segments(0, "adversary_valid", "gender", train=False)
    test_set = workdir.segments(0, "test", "gender", train=False)
    tmp = workdir.root / "protocol"
    cfg = TrainConfig(task="gender", seed=0, **FAST)
    train(train_set, valid_set, cfg, workdir.cfg, tmp / "clean.pt", show_progress=False)
    f_g, ckpt = load_checkpoint(tmp / "clean.pt", workdir.cfg)
    train(train_set, valid_set, replace(cfg, max_epochs=4), workdir.cfg, tmp / "informed.pt",
          show_progress=False, transform=mirror, init_state=ckpt["state_dict"])
    informed, informed_ckpt = load_checkpoint(tmp / "informed.pt", workdir.cfg)
    ignorant_uar = evaluate(f_g, test_set, mirror)["overall"]["uar"]
    informed_uar = evaluate(informed, test_set, mirror)["overall"]["uar"]
    assert informed_uar >= 80 and informed_uar > ignorant_uar + 10
    # model selection happened on transformed validation speakers
    best = max(h["valid_uar"] for h in informed_ckpt["metrics"]["history"])
    assert best == pytest.approx(evaluate(informed, valid_set, mirror)["overall"]["uar"])


def tiny_configs() -> dict[str, TrainConfig]:
    return {t: TrainConfig(task=t, seed=0, **FAST) for t in ("emotion", "gender")}


TINY = ExperimentConfig(cloak_train=QUICK, ratios=(0, 60),
                        attacks=AttackConfig(informed_epochs=1, dvector_max_per_speaker=4))


def test_experiment_writes_results_report_and_resumes(workdir, monkeypatch):
    results = run_experiment(workdir, [0, 1], tiny_configs(), TINY, show_progress=False)
    saved = json.loads((workdir.root / "results.json").read_text())
    assert saved["cloak"] == json.loads(json.dumps(results["cloak"]))
    assert {(e["suppression_ratio"], e["adversarial"]) for e in saved["cloak"]} == {
        (0, False), (60, False), (0, True), (60, True)}
    for entry in saved["cloak"]:
        for attack in ("emotion", "gender_ignorant", "gender_informed"):
            for metric in ("acc", "uar"):
                stat = entry[attack][metric]
                assert len(stat["folds"]) == 2 and 0 <= stat["mean"] <= 100
            assert "synthetic" in entry[attack]["per_corpus"]
    assert saved["baseline"]["emotion"]["uar"]["folds"]
    assert saved["wall_time_s"] > 0
    check_attacker_results(saved, workdir.root / saved["config"]["cloak_dir"])
    report = (workdir.root / "report.md").read_text()
    assert "d-vector (ign. / inf.)" in report and "worst case" in report
    assert "tradeoff.png" in report and "pareto.png" in report
    # one training row per fold and setting; ψ's cross-entropy and accuracy for adversarial ones
    rows = [line for line in report.splitlines() if line.startswith(("| 0 | ", "| 1 | "))]
    assert len(rows) == 4 and all(r.endswith("| – | – |") != ("adversarial" in r) for r in rows)
    assert all(re.search(r"cnn \d+% \|$", r) for r in rows if "adversarial" in r)
    for png in ("tradeoff.png", "noise_map.png", "pareto.png"):
        assert (workdir.root / png).read_bytes()[:4] == b"\x89PNG"
    cloak_files = sorted((workdir.root / saved["config"]["cloak_dir"] / "fold1").glob("*.npz"))
    assert [f.name for f in cloak_files] == ["adversarial_sr0.npz", "adversarial_sr60.npz",
                                             "cloak_sr0.npz", "cloak_sr60.npz"]
    assert Cloak.load(cloak_files[1], workdir.cfg).suppression_ratio == pytest.approx(60, abs=1)

    # a second run finds everything done: no training of any kind
    def refuse(*args, **kwargs):
        raise AssertionError("trained again instead of reusing saved work")

    for module, name in ((experiment_module, "train_perturbation"),
                         (experiment_module, "train_suppression"), (cnn_module, "train")):
        monkeypatch.setattr(module, name, refuse)
    again = run_experiment(workdir, [0, 1], tiny_configs(), TINY, show_progress=False)
    assert again["cloak"] == results["cloak"]

    # the same cloaks and attackers scored on validation speakers, for choosing settings
    on_valid, _, _ = score_grid(workdir, [0, 1], tiny_configs(), TINY, "primary_valid",
                                show_progress=False)
    assert len(on_valid) == 4 and on_valid != results["cloak"]
    assert (workdir.root / saved["config"]["cloak_dir"] / "fold0" /
            "cloak_sr60.on-primary_valid.json").is_file()

    # `sercloak report` rewrites the report from results.json alone
    before = (workdir.root / "report.md").read_text()
    (workdir.root / "report.md").unlink()
    cli_main(["report", "--workdir", str(workdir.root)])
    assert (workdir.root / "report.md").read_text() == before


def check_attacker_results(saved: dict, cloak_dir) -> None:
    """results.json carries every attacker, the EER and the worst case, as issue 8 lists."""
    base = saved["baseline"]
    assert set(base["attackers"]) == {"cnn", "stats", "dvector"}
    for family in base["attackers"].values():
        assert len(family["uar"]["folds"]) == 2 and "acc" in family
    assert 0 <= base["speaker_eer"]["mean"] <= 100
    # the paper's clean attacker is the cnn family's clean score
    assert base["attackers"]["cnn"]["uar"] == base["gender"]["uar"]
    for entry in saved["cloak"]:
        assert entry["method"] == ("cloak_adversarial" if entry["adversarial"] else "cloak")
        for family in ("cnn", "stats", "dvector"):
            for version in ("ignorant", "informed"):
                assert len(entry["attackers"][family][version]["uar"]["folds"]) == 2
        assert entry["gender_ignorant"] == entry["attackers"]["cnn"]["ignorant"]
        assert entry["gender_informed"] == entry["attackers"]["cnn"]["informed"]
        assert 0 <= entry["speaker_eer"]["mean"] <= 100
        # the worst case is each fold's maximum over all six attackers
        name = experiment_module.setting_name(entry["suppression_ratio"], entry["adversarial"])
        per_fold = [json.loads((cloak_dir / f"fold{k}" / f"{name}.json").read_text())
                    for k in (0, 1)]
        maxima = [round(max(fold_uars(r).values()), 2) for r in per_fold]
        assert entry["gender_worst"]["uar"]["folds"] == maxima
        assert entry["gender_worst"]["attacker"] in fold_uars(per_fold[0])


def test_experiment_resumes_a_half_done_fold_and_never_mixes_settings(workdir, monkeypatch):
    run_experiment(workdir, [0], tiny_configs(), TINY, show_progress=False)
    run_dir = workdir.root / json.loads((workdir.root / "results.json").read_text())[
        "config"]["cloak_dir"] / "fold0"
    (run_dir / "adversarial_sr60.json").unlink()  # as if interrupted before scoring it
    (run_dir / "adversarial_sr60.npz").unlink()
    calls = []
    real = experiment_module.train_suppression
    monkeypatch.setattr(experiment_module, "train_suppression",
                        lambda *a, **k: calls.append(a[3]) or real(*a, **k))
    monkeypatch.setattr(experiment_module, "train_perturbation", lambda *a, **k: 1 / 0)
    run_experiment(workdir, [0], tiny_configs(), TINY, show_progress=False)
    assert calls == [60]  # only the missing cloak, from the saved stage-1 cloak and ψ
    assert (run_dir / "adversarial_sr60.json").is_file()

    monkeypatch.undo()
    other = replace(TINY, cloak=CloakConfig(shape="cell"))
    results = run_experiment(workdir, [0], tiny_configs(), other, show_progress=False)
    assert results["config"]["cloak_dir"] != str(run_dir.parent.relative_to(workdir.root))
    assert results["config"]["cloak"]["shape"] == "cell"

    # another kind of cloak: its own folder, method name and report label
    temporal = replace(TINY, cloak=CloakConfig(kind="temporal"), ratios=(0,),
                       attacks=AttackConfig(families=("stats",)))
    results = run_experiment(workdir, [0], tiny_configs(), temporal, show_progress=False)
    # results.json keeps the methods run before (the cell cloak replaced the mel one's entries)
    assert {e["method"] for e in results["cloak"]} == {
        "cloak", "cloak_adversarial", "cloak_temporal", "cloak_temporal_adversarial"}
    assert json.loads((workdir.root / "results.json").read_text())["cloak"] == results["cloak"]
    trained = Cloak.load(workdir.root / results["config"]["cloak_dir"] / "fold0" /
                         "cloak_sr0.npz", workdir.cfg)
    assert trained.cfg.kind == "temporal"
    assert not torch.allclose(trained.rho_offset, torch.full_like(trained.rho_offset, -1.0))
    assert "| Cloak (temporal) + adversarial | 0 |" in (workdir.root / "report.md").read_text()


def test_experiment_with_the_all_speakers_attacker_pool(workdir):
    """`--attacker-pool all`: attackers train on both pools; results and report apart."""
    cfg = replace(TINY, attacks=AttackConfig(pool="all", families=("cnn", "stats"),
                                             informed_epochs=1))
    results = run_experiment(workdir, [0], tiny_configs(), cfg, show_progress=False)
    assert (workdir.root / "results-pool-all.json").is_file()
    assert (workdir.root / "report-pool-all.md").is_file()
    assert set(results["baseline"]["attackers"]) == {"cnn", "stats"}
    assert "speaker_eer" not in results["baseline"]
    run_dir = workdir.root / results["config"]["cloak_dir"] / "fold0"
    assert (run_dir / "cloak_sr60.informed-pool-all.pt").is_file()
    assert (workdir.root / "models" / "light-paper" / "fold0" / "gender-pool-all.pt").is_file()
    # primary validation speakers now belong to the attacker's pool: scoring on them is refused
    with pytest.raises(ValueError, match="test speakers"):
        score_grid(workdir, [0], tiny_configs(), cfg, "primary_valid", show_progress=False)


# -- issue 10's methods, each through the whole experiment on the fixture -----------------

STATS_ONLY = AttackConfig(families=("stats",), informed_epochs=1)


def test_minmax_game_trains_both_adversary_families_and_reports_their_accuracy(primary):
    f_theta = frozen_emotion_model(primary)
    adversaries = {f: new_adversary(f_theta, f) for f in ("cnn", "stats")}
    start = {f: [p.detach().clone() for p in a.parameters()] for f, a in adversaries.items()}
    cfg = replace(QUICK, adversarial=True, game="minmax", adversaries=("cnn", "stats"),
                  adversary_steps=2, adversary_lr=1e-3, weight_warmup=0.5)
    cloak = new_cloak(f_theta)
    history = train_perturbation(cloak, f_theta, primary, cfg, adversaries, show_progress=False)
    for family, adversary in adversaries.items():
        assert any(not torch.equal(a, p) for a, p in zip(start[family], adversary.parameters(),
                                                          strict=True))
        assert 0 <= history[-1][f"adversary_acc_{family}"] <= 100
    assert history[-1]["privacy_loss"] > 0
    plain = new_cloak(f_theta)
    train_perturbation(plain, f_theta, primary, replace(QUICK, adversarial=False),
                       show_progress=False)
    assert not torch.allclose(plain.mu.detach(), cloak.mu.detach())  # the game moved it


def test_weight_ramps_up_over_the_warmup_then_stays():
    from sercloak.cloak.training import _Stage

    class Stub:
        cfg = CloakTrainConfig(weight_warmup=0.5)
        ramp = True
    assert [_Stage.weight(Stub, p) for p in (0.0, 0.25, 0.5, 0.9)] == [0.0, 0.5, 1.0, 1.0]
    Stub.ramp = False  # the suppression stage plays at full weight
    assert _Stage.weight(Stub, 0.0) == 1.0


def test_unknown_game_or_adversary_is_refused():
    with pytest.raises(ValueError, match="unknown game"):
        CloakTrainConfig(game="chess")
    with pytest.raises(ValueError, match="adversaries"):
        CloakTrainConfig(adversaries=("oracle",))


def test_waveform_baseline_runs_through_the_same_harness(workdir):
    cfg = replace(TINY, transform="mcadams", attacks=STATS_ONLY)
    results = run_experiment(workdir, [0], tiny_configs(), cfg, show_progress=False)
    entry = next(e for e in results["cloak"] if e["method"] == "mcadams")
    assert entry["suppression_ratio"] == 0 and not entry["adversarial"]
    assert set(entry["attackers"]["stats"]) == {"ignorant", "informed"}
    assert (workdir.root / "features-mcadams" / "synthetic").is_dir()
    # its features differ from the clean ones for every utterance
    anonymised = workdir.transformed(experiment_module.TRANSFORMS["mcadams"], False)
    utt = workdir.utterances[0]
    clean, moved = workdir.raw_features([utt])[0], anonymised.raw_features([utt])[0]
    assert clean.shape == moved.shape and not np.allclose(clean, moved)
    assert "McAdams (VPC B2)" in (workdir.root / "report.md").read_text()


def test_server_adaptation_and_selection_on_validation_speakers(workdir):
    cfg = replace(TINY, attacks=STATS_ONLY, adapt_epochs=1, variants=("plain",),
                  select_folds=(0,), cloak=CloakConfig(kind="temporal"))
    results = run_experiment(workdir, [0], tiny_configs(), cfg, show_progress=False)
    chosen = [e for e in results["cloak"] if e["method"] == "cloak_temporal_adapted"]
    assert len(chosen) == 1  # one operating point of the two ratios went to test
    entry = chosen[0]
    assert entry["suppression_ratio"] in (0, 60)
    assert entry["validation"]["method"] == entry["method"]
    assert entry["emotion"] != entry["emotion_unadapted"]
    run_dir = workdir.root / entry["cloak_dir"] / "fold0"
    name = experiment_module.setting_name(round(entry["suppression_ratio"]), False)
    assert (run_dir / f"{name}.adapted1.pt").is_file()
    report = (workdir.root / "report.md").read_text()
    assert "Operating points chosen on validation speakers" in report
    assert "| Cloak (temporal), adapted |" in report


def test_choose_takes_the_most_private_setting_within_the_emotion_budget():
    def entry(method, ratio, emotion, gender):
        return {"method": method, "suppression_ratio": ratio,
                "emotion": {"uar": {"mean": emotion}}, "gender_worst": {"uar": {"mean": gender}}}
    grid = [entry("a", 0, 50.0, 80.0), entry("a", 60, 48.5, 70.0), entry("a", 80, 40.0, 55.0),
            entry("b", 0, 45.0, 60.0), entry("b", 60, 46.0, 65.0)]
    chosen = experiment_module.choose(grid, clean_emotion=50.0)
    assert chosen["a"]["suppression_ratio"] == 60  # 80 costs 10 points
    assert chosen["b"]["suppression_ratio"] == 60  # none within 2 points: the cheapest


def test_warping_and_saliency_cloaks_run_and_the_warp_has_its_own_emotion_model(workdir):
    configs = {t: replace(c, vtlp=0.2 if t == "emotion" else 0.0)
               for t, c in tiny_configs().items()}
    cfg = replace(TINY, attacks=STATS_ONLY, variants=("plain",), ratios=(40,),
                  cloak=CloakConfig(warp=0.2, mask_by="saliency"))
    results = run_experiment(workdir, [0], configs, cfg, show_progress=False)
    entry = next(e for e in results["cloak"] if e["method"] == "cloak_warp_saliency")
    assert entry["emotion_model"] == "light-paper-vtlp0.2"
    assert (workdir.root / "models" / "light-paper-vtlp0.2" / "fold0" / "emotion.pt").is_file()
    cloak = Cloak.load(workdir.root / entry["cloak_dir"] / "fold0" / "cloak_sr40.npz",
                       workdir.cfg)
    scores = torch.tensor(cloak.meta["mask_scores"])
    masked = cloak.mask.flatten() == 0
    assert scores[masked].min() >= scores[~masked].max()  # the mask follows the saliency
