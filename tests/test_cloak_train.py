"""Cloak training (both stages, adversarial variant), attacker protocols, the experiment."""

import copy
import json
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import comparison_of
from sercloak.anonymise import TRANSFORMS
from sercloak.attacks import cnn as cnn_module
from sercloak.attacks.suite import AttackConfig
from sercloak.baselines import clean_emotion
from sercloak.checkpoint import load_checkpoint
from sercloak.cli import main as cli_main
from sercloak.cloak import Cloak, CloakConfig, new_adversary
from sercloak.cloak.training import CloakTrainConfig, train_perturbation, train_suppression
from sercloak.corpora.synthetic import SyntheticSpec
from sercloak.data import Workdir, normalisation_stats
from sercloak.designs import spectrogram as spectrogram_module
from sercloak.evaluate import evaluate
from sercloak.experiment import (
    ExperimentConfig,
    plan_method,
    run_experiment,
    score_points,
)
from sercloak.experiment.executors import LocalExecutor
from sercloak.layout import setting_name
from sercloak.models import CnnRnn
from sercloak.prepare import prepare
from sercloak.privacy import attacker_runs, choose_attacker, chosen_uar
from sercloak.report.figures import pareto_figure
from sercloak.report.format import privacy
from sercloak.results import choose_per_fold
from sercloak.train import TrainConfig, train

FAST = dict(max_epochs=3, patience=10, batch_size=16, lr=1e-3)
QUICK = CloakTrainConfig(perturbation_epochs=2, suppression_epochs=1, batch_size=16)
BENCH = Path(__file__).resolve().parents[1] / "bench"


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
                        attacks=AttackConfig(informed_epochs=1, dvector_max_per_speaker=4,
                                             tuned_max_per_speaker=2, tuned_epochs=1))


def setting_files(workdir, results: dict, name: str, fold: int, seed: int = 0):
    return workdir.layout.setting(workdir.root / results["config"]["cloak_dir"], seed, fold,
                                  name)


def test_experiment_writes_results_report_and_resumes(workdir, monkeypatch):
    results = run_experiment(workdir, [0, 1], tiny_configs(), TINY, show_progress=False)
    layout, file = workdir.layout, comparison_of(workdir, results)
    saved = json.loads(file.read_text())
    assert saved["cloak"] == json.loads(json.dumps(results["cloak"]))
    assert {(e["points"][0]["suppression_ratio"], e["points"][0]["adversarial"])
            for e in saved["cloak"]} == {(0, False), (60, False), (0, True), (60, True)}
    for entry in saved["cloak"]:
        for attack in ("emotion", "gender_ignorant", "gender_informed"):
            for metric in ("acc", "uar", "uar_speaker"):
                stat = entry[attack][metric]
                assert len(stat["folds"]) == 2 and 0 <= stat["mean"] <= 100
            assert "synthetic" in entry[attack]["per_corpus"]
        for drop in ("emotion_drop", "emotion_drop_pooled"):
            lo, hi = entry[drop]["ci95"]
            assert lo <= entry[drop]["mean"] <= hi and len(entry[drop]["folds"]) == 2
        figure = entry["gender_privacy"]["uar_speaker"]
        lo, hi = figure["ci95"]
        assert lo <= figure["mean"] <= hi and 0 < figure["chance"]["p"] <= 1
    assert saved["baseline"]["emotion"]["uar"]["folds"]
    assert saved["wall_time_s"] > 0
    # every key results.json had before issue 17 is still there (readers rely on them)
    assert {"baseline", "clean_emotion", "cloak", "config", "wall_time_s"} <= set(saved)
    assert {"emotion", "gender", "attackers", "gender_privacy", "speaker_eer", "model",
            "recipe", "normalise", "folds", "train_config"} <= set(saved["baseline"])
    for entry in saved["cloak"]:
        assert {"method", "points", "emotion_model", "cloak_dir", "emotion", "gender_ignorant",
                "gender_informed", "attackers", "gender_privacy", "speaker_eer"} <= set(entry)
        assert {"uar_speaker", "uar", "attacker", "fold_attackers", "upper_bound",
                "user_level"} <= set(entry["gender_privacy"])
        assert {"mean", "std", "folds", "ci95", "chance"} <= set(
            entry["gender_privacy"]["uar_speaker"])
    assert {"model", "recipe", "emotion_model", "normalise", "folds", "cloak_dir", "cloak",
            "cloak_train", "attacks", "ratios", "variants"} <= set(saved["config"])
    check_attacker_results(workdir, saved)
    report = layout.report(file).read_text()
    assert "d-vector (ign. / inf.)" in report and "chosen on validation" in report
    assert "tradeoff.png" in report and "pareto.png" in report and "speaker-balanced" in report
    # one training row per fold and setting; ψ's cross-entropy and accuracy for adversarial ones
    rows = [line for line in report.splitlines() if line.startswith(("| 0 | ", "| 1 | "))]
    assert len(rows) == 4 and all(r.endswith("| – | – |") != ("adversarial" in r) for r in rows)
    assert all(re.search(r"cnn \d+% \|$", r) for r in rows if "adversarial" in r)
    for png in ("tradeoff", "noise_map", "pareto"):
        assert layout.figure(file, png).read_bytes()[:4] == b"\x89PNG"
    # a second panel around the target only when some design lies far from the rest
    assert _pareto_width(saved, 55.0, workdir.root) < _pareto_width(saved, 90.0, workdir.root)
    folder = setting_files(workdir, saved, "cloak_sr0", 1).folder
    cloak_files = sorted(folder.glob("*.npz"))
    assert [f.name for f in cloak_files] == ["adversarial_sr0.npz", "adversarial_sr60.npz",
                                             "cloak_sr0.npz", "cloak_sr60.npz"]
    assert Cloak.load(cloak_files[1], workdir.cfg).suppression_ratio == pytest.approx(60, abs=1)
    # the cloak trained on f_θ's own speakers (the primary pool's, under the paper's protocol)
    assert set(Cloak.load(cloak_files[0], workdir.cfg).meta["speakers"]) == set(
        workdir.folds[1]["primary_train"])

    # a second run finds everything done: no training of any kind
    def refuse(*args, **kwargs):
        raise AssertionError("trained again instead of reusing saved work")

    for module, name in ((spectrogram_module, "train_perturbation"),
                         (spectrogram_module, "train_suppression"), (cnn_module, "train")):
        monkeypatch.setattr(module, name, refuse)
    again = run_experiment(workdir, [0, 1], tiny_configs(), TINY, show_progress=False)
    assert again["cloak"] == results["cloak"]

    # the same cloaks and attackers scored on validation speakers, for choosing settings
    method = plan_method(workdir, tiny_configs(), TINY, show_progress=False)
    on_valid, valid_clean = score_points(method, LocalExecutor(),
                                         {0: TINY.points(), 1: TINY.points()}, "primary_valid")
    assert len(on_valid) == 4
    assert setting_files(workdir, saved, "cloak_sr60", 0).scores("primary_valid").is_file()
    assert [c["emotion"]["overall"] for c in valid_clean[0]] != [
        c["emotion"]["overall"] for c in []]  # scored on the validation speakers
    assert {u for c in valid_clean[0] for u in c["emotion"]["predictions"]["speaker"]} == {
        s for k in (0, 1) for s in workdir.folds[k]["primary_valid"]}

    # `sercloak report` rewrites the report from results.json alone
    before = layout.report(file).read_text()
    layout.report(file).unlink()
    cli_main(["report", "--workdir", str(workdir.root), "--results", str(file)])
    assert layout.report(file).read_text() == before


def check_attacker_results(workdir, saved: dict) -> None:
    """results.json carries every attacker, the EER and the worst case, as issue 8 lists."""
    base = saved["baseline"]  # the retrained encoder joins the clean reference too
    assert set(base["attackers"]) == {"cnn", "stats", "dvector", "dvector_ft"}
    assert base["gender_privacy"]["upper_bound"]["uar_speaker"]["folds"] == [
        round(max(a["uar_speaker"]["folds"][k] for a in base["attackers"].values()), 2)
        for k in (0, 1)]
    for family in base["attackers"].values():
        assert len(family["uar"]["folds"]) == 2 and "acc" in family
    assert 0 <= base["speaker_eer"]["mean"] <= 100
    # the paper's clean attacker is the cnn family's clean score
    assert base["attackers"]["cnn"]["uar"] == base["gender"]["uar"]
    for entry in saved["cloak"]:
        point = entry["points"][0]
        assert entry["method"] == ("cloak_adversarial" if point["adversarial"] else "cloak")
        for family in ("cnn", "stats", "dvector"):
            for version in ("ignorant", "informed"):
                assert len(entry["attackers"][family][version]["uar"]["folds"]) == 2
        # the retrained encoder and the CNN+RNN from scratch: informed only
        assert set(entry["attackers"]["dvector_ft"]) == {"informed"}
        assert set(entry["attackers"]["cnn_scratch"]) == {"informed"}
        assert entry["gender_ignorant"] == entry["attackers"]["cnn"]["ignorant"]
        assert entry["gender_informed"] == entry["attackers"]["cnn"]["informed"]
        assert 0 <= entry["speaker_eer"]["mean"] <= 100
        # per fold the attacker chosen on its validation speakers; the upper bound is each
        # fold's maximum over all of them
        name = setting_name(point["suppression_ratio"], point["adversarial"])
        per_fold = [json.loads(setting_files(workdir, saved, name, k).scores().read_text())
                    for k in (0, 1)]
        privacy = entry["gender_privacy"]
        assert privacy["uar_speaker"]["folds"] == [round(chosen_uar(r), 2) for r in per_fold]
        assert privacy["upper_bound"]["uar_speaker"]["folds"] == [
            round(max(a["overall"]["uar_speaker"] for a in attacker_runs(r).values()), 2)
            for r in per_fold]
        for r in per_fold:
            chosen = choose_attacker(r)
            valid = {n: a["valid"]["uar_speaker"] for n, a in attacker_runs(r).items()}
            assert valid[chosen] == max(valid.values())


def _pareto_width(results: dict, clean_gender: float, folder: Path) -> int:
    """The width in pixels of the Pareto figure of `results` with every design at 55%
    gender UAR and the clean point at `clean_gender`."""
    results = copy.deepcopy(results)
    for entry, x in [(results["baseline"], clean_gender), *((e, 55.0) for e in results["cloak"])]:
        privacy(entry).update(mean=x, ci95=(x - 2, x + 2))
    png = folder / f"pareto-{clean_gender:g}.png"
    pareto_figure(results, png)
    return int.from_bytes(png.read_bytes()[16:20], "big")  # the PNG header's width


def test_experiment_resumes_a_half_done_fold_and_never_mixes_settings(workdir, monkeypatch):
    run_experiment(workdir, [0], tiny_configs(), TINY, show_progress=False)
    saved = json.loads(workdir.layout.results("paper", [0], [0]).read_text())
    files = setting_files(workdir, saved, "adversarial_sr60", 0)
    files.scores().unlink()  # as if interrupted before scoring it
    files.result().unlink()  # (the scoring unit's output)
    files.cloak.unlink()
    calls = []
    real = spectrogram_module.train_suppression
    monkeypatch.setattr(spectrogram_module, "train_suppression",
                        lambda *a, **k: calls.append(a[3]) or real(*a, **k))
    monkeypatch.setattr(spectrogram_module, "train_perturbation", lambda *a, **k: 1 / 0)
    run_experiment(workdir, [0], tiny_configs(), TINY, show_progress=False)
    assert calls == [60]  # only the missing cloak, from the saved stage-1 cloak and ψ
    assert files.scores().is_file()

    monkeypatch.undo()
    other = replace(TINY, cloak=CloakConfig(shape="cell"))
    results = run_experiment(workdir, [0], tiny_configs(), other, show_progress=False)
    assert results["config"]["cloak_dir"] != saved["config"]["cloak_dir"]
    assert results["config"]["cloak"]["shape"] == "cell"

    # another kind of cloak: its own folder, method name and report label
    temporal = replace(TINY, cloak=CloakConfig(kind="temporal"), ratios=(0,),
                       attacks=AttackConfig(families=("stats",)))
    results = run_experiment(workdir, [0], tiny_configs(), temporal, show_progress=False)
    # results.json keeps the methods run before (the cell cloak replaced the mel one's entries)
    assert {e["method"] for e in results["cloak"]} == {
        "cloak", "cloak_adversarial", "cloak_temporal", "cloak_temporal_adversarial"}
    assert json.loads(comparison_of(workdir, results).read_text())["cloak"] == results["cloak"]
    trained = Cloak.load(setting_files(workdir, results, "cloak_sr0", 0).cloak, workdir.cfg)
    assert trained.cfg.kind == "temporal"
    assert not torch.allclose(trained.rho_offset, torch.full_like(trained.rho_offset, -1.0))
    report = workdir.layout.report(comparison_of(workdir, results)).read_text()
    assert "| Cloak (temporal) + adversarial | SR 0 |" in report


def test_shared_protocol_with_seeds_never_trains_or_selects_on_test_speakers(workdir):
    cfg = replace(TINY, protocol="shared", seeds=(0, 1), ratios=(0, 60), variants=("plain",),
                  attacks=AttackConfig(families=("cnn", "stats"), informed_epochs=1),
                  adapt_epochs=1, select=True)
    paper = workdir.layout.comparisons("paper")
    paper_before = [f.read_bytes() for f in paper]
    results = run_experiment(workdir, [0, 1], tiny_configs(), cfg, show_progress=False)
    shared = comparison_of(workdir, results)
    assert shared.parent.name == "folds0-1-seeds0-1" and workdir.layout.report(shared).is_file()
    assert results["config"]["protocol"] == "shared" and results["config"]["seeds"] == [0, 1]
    (entry,) = results["cloak"]  # one operating point per fold, chosen on validation
    for key in ("emotion", "emotion_drop"):
        stat = entry[key]["uar_speaker"] if key == "emotion" else entry[key]
        assert len(stat["seeds"]) == 2 and len(stat["folds"]) == 2
    assert len(entry["gender_privacy"]["uar_speaker"]["seeds"]) == 2
    assert "speaker_eer" not in results["baseline"]
    # bench/privacy.sh's lines read it: the clean model, each chosen method, a summary
    lines = subprocess.run([sys.executable, str(BENCH / "privacy_lines.py"), str(shared)],
                           capture_output=True, text=True, check=True).stdout.splitlines()
    assert lines[0].startswith("method=clean ") and lines[-1].startswith("methods=1 ")
    assert lines[1].startswith(f"method={entry['method']} setting={entry['setting']} ")
    assert "below_upper_bound=" in lines[1] and "chosen_best_share=" in lines[1]
    # each fold's point was chosen from that fold's own validation scores, on speakers that
    # are not its test speakers
    for fold, name in enumerate(entry["settings"]):
        valid = {p.name: [[json.loads(setting_files(workdir, results, p.name, fold, s)
                                      .result("primary_valid", 1).read_text())]
                          for s in (0, 1)] for p in cfg.points()}
        clean = [[{"emotion": clean_emotion(workdir, fold, replace(tiny_configs()["emotion"],
                                                                    seed=s), "shared",
                                            "primary_valid")}] for s in (0, 1)]
        assert choose_per_fold(valid, clean) == [name]
        scored = {u for runs in valid.values() for s in runs for r in s
                  for u in r["emotion"]["predictions"]["speaker"]}
        assert scored == set(workdir.folds[fold]["primary_valid"])
        assert not scored & set(workdir.folds[fold]["test"])
    for fold, name in enumerate(entry["settings"]):
        parts = workdir.folds[fold]
        non_test = set().union(*(parts[p] for p in parts if p not in ("test", "fold", "seed")))
        cloaks = []
        for seed in (0, 1):
            files = setting_files(workdir, results, name, fold, seed)
            cloak = Cloak.load(files.cloak, workdir.cfg)
            cloaks.append(cloak.mu.detach())
            # the cloak, the adapted service and the informed attacker: no test speaker
            assert set(cloak.meta["speakers"]) == set(parts["primary_train"]) | set(
                parts["adversary_train"])
            for model in (files.adapted(1), files.informed("cnn")):
                speakers = load_checkpoint(model)[1]["metrics"]["speakers"]
                assert set(speakers["train"]) | set(speakers["valid"]) <= non_test
            informed = load_checkpoint(files.informed("cnn"))[1]["metrics"]["speakers"]
            assert set(informed["valid"]) == set(parts["adversary_valid"])
            for scored in (files.scores(), files.scores("primary_valid")):
                fitted = json.loads(scored.read_text())["attackers"]["stats"]["informed"]
                assert 0 <= fitted["overall"]["uar"] <= 100
        assert not torch.equal(*cloaks)  # every seed trains its own cloak
    # the paper's results file (if an earlier test wrote one) is untouched by a shared run
    assert [f.read_bytes() for f in paper] == paper_before


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
    assert entry["points"] == [{"name": "mcadams", "suppression_ratio": 0, "adversarial": False,
                                "dims": None}]
    assert set(entry["attackers"]["stats"]) == {"ignorant", "informed"}
    assert (workdir.layout.features("mcadams") / "synthetic").is_dir()
    # its features differ from the clean ones for every utterance
    anonymised = workdir.transformed(TRANSFORMS["mcadams"], False)
    utt = workdir.utterances[0]
    clean, moved = workdir.raw_features([utt])[0], anonymised.raw_features([utt])[0]
    assert clean.shape == moved.shape and not np.allclose(clean, moved)
    assert "McAdams (VPC B2)" in workdir.layout.report(comparison_of(workdir, results)).read_text()


def test_server_adaptation_and_selection_on_validation_speakers(workdir):
    cfg = replace(TINY, attacks=STATS_ONLY, adapt_epochs=1, variants=("plain",),
                  select=True, cloak=CloakConfig(kind="temporal"))
    results = run_experiment(workdir, [0], tiny_configs(), cfg, show_progress=False)
    chosen = [e for e in results["cloak"] if e["method"] == "cloak_temporal_adapted"]
    assert len(chosen) == 1  # one operating point of the two ratios went to test
    entry = chosen[0]
    (point,) = entry["points"]
    assert point["suppression_ratio"] in (0, 60)
    assert entry["emotion"] != entry["emotion_unadapted"]
    name = setting_name(round(point["suppression_ratio"]), False)
    assert setting_files(workdir, results, name, 0).adapted(1).is_file()
    assert entry["validation"]["emotion_drop"]["mean"] is not None
    report = workdir.layout.report(comparison_of(workdir, results)).read_text()
    assert "Operating points chosen on validation speakers" in report
    assert "| Cloak (temporal), adapted |" in report


def test_warping_and_saliency_cloaks_run_and_the_warp_has_its_own_emotion_model(workdir):
    configs = {t: replace(c, vtlp=0.2 if t == "emotion" else 0.0)
               for t, c in tiny_configs().items()}
    cfg = replace(TINY, attacks=STATS_ONLY, variants=("plain",), ratios=(40,),
                  cloak=CloakConfig(warp=0.2, mask_by="saliency"))
    results = run_experiment(workdir, [0], configs, cfg, show_progress=False)
    entry = next(e for e in results["cloak"] if e["method"] == "cloak_warp_saliency")
    assert entry["emotion_model"] == "light-paper-vtlp0.2"
    assert workdir.layout.model("paper", "light-paper-vtlp0.2", 0, 0, "emotion").is_file()
    cloak = Cloak.load(setting_files(workdir, results, "cloak_sr40", 0).cloak, workdir.cfg)
    scores = torch.tensor(cloak.meta["mask_scores"])
    masked = cloak.mask.flatten() == 0
    assert scores[masked].min() >= scores[~masked].max()  # the mask follows the saliency
