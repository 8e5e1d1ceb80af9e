"""`sercloak experiment`: the privacy–utility grid of one method, resumable, with a report.

A method is a cloak (its kind, warp, mask rule and game: `CloakConfig`,
`CloakTrainConfig`), in two variants, without (`plain`) and with
adversaries (`adversarial`), at suppression ratios `ratios`; or a waveform
anonymisation baseline (`transform`: `mcadams`, `pitch_shift`) applied to the
audio before features. Optionally the service adapts to it (`adapt_epochs`:
f_θ fine-tuned on protected features of the primary training speakers).

For every fold: the clean baselines (f_θ, f_g), then each setting scored by

- emotion: f_θ (or its adapted copy) on protected test utterances (utility);
- the attacker suite (`attacks/`): the `cnn`, `stats` and `dvector` gender
  attackers, each *ignorant* (fitted on clean features) and *informed*
  (fitted on protected features of its own pool, selected on protected
  validation speakers), on protected test utterances; the worst case over
  all of them (`gender_worst`, the privacy figure); and the speaker EER
  among protected test utterances (linkability). `gender_ignorant` and
  `gender_informed` are the `cnn` attacker: the paper's protocol.

With `select_folds`, every setting is first scored on the *validation*
speakers of the primary pool of those folds (seen by no cloak, attacker or
model fit), each variant's operating point is chosen there (`choose`), and
only that point is run on the test speakers.

Every cloak is saved as a cloak file and every scored setting as JSON under
``<workdir>/cloaks/<model>-<recipe>/<run tag>/fold<K>/``, the tag covering every
setting that shapes a cloak (cloak, its training, the baselines'), so an
interrupted run skips what is done and a run with other settings never
reuses it. Scores are reused only when made with the same attacker settings.
`results.json` keeps every method run on the workdir (`merge_results`).
"""

from __future__ import annotations

import copy
import hashlib
import json
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from .anonymise import TRANSFORMS
from .attacks.speaker_encoder import SpeakerEncoder
from .attacks.suite import (
    AttackConfig,
    FoldAttacks,
    aggregate_attackers,
    gender_worst,
    load_encoder,
    mean_eer,
)
from .baselines import aggregate, mean_std, model_path, model_tag, run_baselines
from .cloak import Cloak, CloakConfig, new_adversary
from .cloak.saliency import gender_over_emotion
from .cloak.training import CloakTrainConfig, train_perturbation, train_suppression
from .data import Workdir
from .evaluate import evaluate
from .models import CnnRnn
from .report import write_report
from .train import TrainConfig, load_checkpoint, pick_device, train

RATIOS = (0, 20, 40, 60)
CNN_KEYS = {"gender_ignorant": "ignorant", "gender_informed": "informed"}  # the paper's attacker


VARIANTS = ("plain", "adversarial")
MAX_EMOTION_DROP = 2.0  # points of emotion UAR an operating point may cost (`choose`)


@dataclass(frozen=True)
class ExperimentConfig:
    cloak: CloakConfig = CloakConfig()
    cloak_train: CloakTrainConfig = CloakTrainConfig()
    attacks: AttackConfig = AttackConfig()
    ratios: tuple[int, ...] = RATIOS
    variants: tuple[str, ...] = VARIANTS  # cloaks without and with adversaries
    transform: str | None = None  # a waveform baseline (anonymise.TRANSFORMS) instead of a cloak
    adapt_epochs: int = 0  # > 0: f_θ fine-tuned this many epochs on protected features
    select_folds: tuple[int, ...] | None = None  # choose operating points on their valid speakers

    def __post_init__(self):
        if set(self.variants) - set(VARIANTS) or not self.variants:
            raise ValueError(f"unknown variants {self.variants} (known: {', '.join(VARIANTS)})")
        if self.transform is not None and self.transform not in TRANSFORMS:
            raise ValueError(f"unknown transform {self.transform!r} "
                             f"(known: {', '.join(TRANSFORMS)})")

    def to_dict(self) -> dict:
        return {"cloak": self.cloak.to_dict(), "cloak_train": self.cloak_train.to_dict(),
                "attacks": self.attacks.to_dict(), "ratios": list(self.ratios),
                "variants": list(self.variants), "transform": self.transform,
                "adapt_epochs": self.adapt_epochs,
                "select_folds": None if self.select_folds is None else list(self.select_folds)}

    def settings(self) -> list[tuple[bool, int]]:
        """(adversarial, ratio) of every setting: one for a waveform baseline."""
        if self.transform is not None:
            return [(False, 0)]
        return [(variant == "adversarial", ratio) for variant in self.variants
                for ratio in self.ratios]


def run_tag(cfg: ExperimentConfig, baseline_configs: dict[str, TrainConfig]) -> str:
    """Folder name of one configuration's cloaks: other settings never reuse them."""
    baselines = {t: c.to_dict() for t, c in sorted(baseline_configs.items())}
    if cfg.transform is not None:
        everything = {"transform": TRANSFORMS[cfg.transform].describe(), "baselines": baselines}
        digest = hashlib.sha1(json.dumps(everything, sort_keys=True).encode()).hexdigest()[:8]
        return f"{cfg.transform}-{digest}"
    # fields added after the paper's cloak hash only when set, so older folders are reused
    everything = {"cloak": cfg.cloak.defaults_dropped(),
                  "cloak_train": cfg.cloak_train.defaults_dropped(), "baselines": baselines}
    # neither the ratios run nor the attackers change what a cloak is
    digest = hashlib.sha1(json.dumps(everything, sort_keys=True).encode()).hexdigest()[:8]
    return f"{cfg.cloak.shape}-{digest}"


def clean_dir(wd: Workdir, gender_config: TrainConfig) -> Path:
    """Where the clean attackers' scores are kept: shared by every method and emotion model
    (they depend on the attackers alone, whose cnn family is the gender baseline)."""
    digest = hashlib.sha1(json.dumps(gender_config.to_dict(), sort_keys=True).encode())
    return wd.root / "cloaks" / f"clean-{model_tag(gender_config)}-{digest.hexdigest()[:8]}"


def setting_name(ratio: int, adversarial: bool) -> str:
    return f"{'adversarial' if adversarial else 'cloak'}_sr{ratio}"


def method_name(cfg: ExperimentConfig, adversarial: bool) -> str:
    """results.json's `method`: cloak, cloak_adversarial, cloak_temporal_warp_minmax, mcadams,
    ..., with `_adapted` when the service adapts f_θ to it."""
    adapted = "_adapted" if cfg.adapt_epochs else ""
    if cfg.transform is not None:
        return cfg.transform + adapted
    c, t = cfg.cloak, cfg.cloak_train
    parts = ["cloak"] + ([c.kind] if c.kind != "noise" else []) + (["warp"] if c.warp else [])
    parts += ["saliency"] if c.mask_by == "saliency" else []
    if adversarial:
        parts.append("adversarial" if t.game == "grl" else t.game)
    return "_".join(parts) + adapted


def _psi_file(cloak_file: Path, family: str) -> Path:
    """Where an adversary ψ of a cloak is kept (the paper's cnn ψ keeps its old name)."""
    return cloak_file.with_suffix(".psi.pt" if family == "cnn" else f".psi-{family}.pt")


class FoldRunner:
    """Cloaks and attacks of one fold; everything it makes is saved and reused."""

    def __init__(self, wd: Workdir, fold: int, baseline_configs: dict[str, TrainConfig],
                 cfg: ExperimentConfig, run_dir: Path, encoder: SpeakerEncoder | None,
                 show_progress: bool, part: str = "test", protected_wd: Workdir | None = None):
        self.wd, self.fold, self.cfg, self.part = wd, fold, cfg, part
        self.emotion_config = baseline_configs["emotion"]
        self.show_progress = show_progress
        self.dir = run_dir / f"fold{fold}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.clean_dir = clean_dir(wd, baseline_configs["gender"]) / f"fold{fold}"
        self.clean_dir.mkdir(parents=True, exist_ok=True)
        self.device = pick_device()
        self.f_theta, _ = load_checkpoint(
            model_path(wd, model_tag(self.emotion_config), fold, "emotion"), wd.cfg, self.device)
        self.attacks = FoldAttacks(wd, fold, cfg.attacks, baseline_configs["gender"], self.dir,
                                   encoder, show_progress, test_part=part)
        self.protected_wd = protected_wd  # a waveform baseline's anonymised features
        self._sets: dict[tuple, object] = {}

    def segments(self, part: str, task: str, train_hop: bool, wd: Workdir | None = None):
        wd = wd or self.wd
        key = (id(wd), part, task, train_hop)
        if key not in self._sets:
            self._sets[key] = wd.segments(self.fold, part, task, train=train_hop)
        return self._sets[key]

    # -- cloaks ----------------------------------------------------------------------------

    def _adversaries(self, adversarial: bool) -> dict[str, torch.nn.Module]:
        if not adversarial:
            return {}
        return {family: new_adversary(self.f_theta, family, self.emotion_config.model,
                                      self.cfg.cloak_train.seed)
                for family in self.cfg.cloak_train.adversaries}

    def perturbed(self, adversarial: bool) -> tuple[Cloak, dict[str, torch.nn.Module]]:
        """The stage-1 cloak (and its adversaries ψ), trained once and saved."""
        file = self.dir / f"{setting_name(0, adversarial)}.npz"
        adversaries = self._adversaries(adversarial)
        if file.is_file() and all(_psi_file(file, f).is_file() for f in adversaries):
            cloak = Cloak.load(file, self.wd.cfg).to(self.device)
            for family, psi in adversaries.items():
                psi.load_state_dict(torch.load(_psi_file(file, family), weights_only=True))
            return cloak, adversaries
        cloak = Cloak(self.cfg.cloak, self.f_theta.feat_mean, self.f_theta.feat_std,
                      self.wd.cfg.segment_frames).to(self.device)
        tcfg = replace(self.cfg.cloak_train, adversarial=adversarial)
        history = train_perturbation(cloak, self.f_theta, self.segments(
            "primary_train", "emotion", True), tcfg, adversaries, self.show_progress)
        for family, psi in adversaries.items():
            torch.save(psi.state_dict(), _psi_file(file, family))
        cloak.meta = {"history": history, "train": tcfg.to_dict()}
        cloak.save(file, self.wd.cfg, extra=cloak.meta)
        return cloak, adversaries

    def cloak(self, ratio: int, adversarial: bool) -> Cloak:
        file = self.dir / f"{setting_name(ratio, adversarial)}.npz"
        if file.is_file():
            return Cloak.load(file, self.wd.cfg).to(self.device)
        cloak, adversaries = self.perturbed(adversarial)
        if ratio == 0:
            return cloak
        cloak, adversaries = copy.deepcopy(cloak), copy.deepcopy(adversaries)
        data = self.segments("primary_train", "emotion", True)
        scores = (gender_over_emotion(cloak, self.f_theta, data, self.cfg.cloak_train.seed)
                  if self.cfg.cloak.mask_by == "saliency" else None)
        tcfg = replace(self.cfg.cloak_train, adversarial=adversarial)
        history = train_suppression(cloak, self.f_theta, data, ratio, tcfg, adversaries,
                                    self.show_progress, scores)
        cloak.meta = {"history": history, "train": tcfg.to_dict()}
        if scores is not None:
            cloak.meta["mask_scores"] = scores.flatten().tolist()
        cloak.save(file, self.wd.cfg, extra=cloak.meta)
        return cloak

    # -- the service's emotion model ---------------------------------------------------------

    def emotion_model(self, name: str, cloak: Cloak | None) -> CnnRnn:
        """f_θ, or with `adapt_epochs` its copy fine-tuned on protected features of the
        primary training speakers (through `cloak`, or of the anonymised audio)."""
        if not self.cfg.adapt_epochs:
            return self.f_theta
        out = self.dir / f"{name}.adapted{self.cfg.adapt_epochs}.pt"
        config = replace(self.emotion_config, max_epochs=self.cfg.adapt_epochs)
        done = out.is_file() and load_checkpoint(out)[1]["train_config"] == config.to_dict()
        if not done:
            wd = self.protected_wd or self.wd
            train(self.segments("primary_train", "emotion", True, wd),
                  self.segments("primary_valid", "emotion", False, wd), config, self.wd.cfg,
                  out, self.show_progress, transform=cloak,
                  init_state=copy.deepcopy(self.f_theta.state_dict()))
        return load_checkpoint(out, self.wd.cfg, self.device)[0]

    # -- scoring -----------------------------------------------------------------------------

    def _cached(self, name: str, compute, folder: Path | None = None) -> dict:
        """A JSON result in the fold's folder, reused only if made by the same attackers."""
        suffix = self.cfg.attacks.suffix + ("" if self.part == "test" else f".on-{self.part}")
        out = (folder or self.dir) / f"{name}{suffix}.json"
        attack_config = self.cfg.attacks.to_dict()
        if out.is_file():
            result = json.loads(out.read_text())
            if result.get("attack_config") == attack_config:
                return result
        result = {**compute(), "attack_config": attack_config}
        out.write_text(json.dumps(result, indent=1))
        return result

    def clean(self) -> dict:
        """Every attacker on clean utterances of the scored part."""
        return self._cached("clean", self.attacks.clean, self.clean_dir)

    def _emotion(self, model: CnnRnn, cloak: Cloak | None) -> dict:
        wd = self.protected_wd or self.wd
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            torch.manual_seed(1000 + self.fold)  # the evaluation's noise draws
            return evaluate(model, self.segments(self.part, "emotion", False, wd), cloak,
                            self.device)

    def score(self, ratio: int, adversarial: bool) -> dict:
        """f_θ and every attacker on protected utterances of the scored part (test by
        default).

        Any other part is for choosing settings without touching test
        speakers: "primary_valid" speakers were seen by no cloak and no
        attacker of the paper's pool.
        """
        if self.cfg.transform is not None:
            name, cloak = self.cfg.transform, None
        else:
            name, cloak = setting_name(ratio, adversarial), self.cloak(ratio, adversarial).eval()

        def compute() -> dict:
            attacks = (self.attacks.cloaked(cloak, name) if cloak is not None
                       else self.attacks.transformed(self.protected_wd, name))
            return {"suppression_ratio": 0.0 if cloak is None else cloak.suppression_ratio,
                    "emotion": self._emotion(self.f_theta, cloak), **attacks,
                    **({} if cloak is None else {"training": _last_epoch(cloak)})}

        result = {**self._cached(name, compute), "method": method_name(self.cfg, adversarial)}
        if self.cfg.adapt_epochs:  # the adapted f_θ's emotion figure, cached on its own
            adapted = self._cached(f"{name}.adapted{self.cfg.adapt_epochs}", lambda: {
                "emotion": self._emotion(self.emotion_model(name, cloak), cloak)})
            result = {**result, "emotion": adapted["emotion"], "emotion_unadapted":
                      result["emotion"]}
        if "cnn" in result["attackers"]:
            result.update({k: result["attackers"]["cnn"][v] for k, v in CNN_KEYS.items()})
        return result

    def clean_valid_emotion(self) -> float:
        """f_θ's UAR on clean validation speakers of the primary pool (its checkpoint's)."""
        path = model_path(self.wd, model_tag(self.emotion_config), self.fold, "emotion")
        return load_checkpoint(path)[1]["metrics"]["valid_uar"]


def _last_epoch(cloak: Cloak) -> dict:
    """The last training epoch's figures in a cloak file (σ, losses, adversary accuracy)."""
    history = getattr(cloak, "meta", {}).get("history") or [{}]
    return history[-1]


def summarise_setting(runs: list[dict]) -> dict:
    """One setting's fold results -> mean ± std of every model and attacker."""
    entry = {"emotion": aggregate(runs, "emotion"),
             **{k: aggregate(runs, k) for k in CNN_KEYS if k in runs[0]},
             **summarise_attacks(runs, versions=True)}
    if "emotion_unadapted" in runs[0]:
        entry["emotion_unadapted"] = aggregate(runs, "emotion_unadapted")
    accuracy = {k.removeprefix("adversary_acc_"): mean_std([r["training"][k] for r in runs])
                for k in runs[0].get("training", {}) if k.startswith("adversary_acc_")}
    if accuracy:  # the adversaries' accuracy in their last training epoch: did ψ win?
        entry["adversary_accuracy"] = accuracy
    return entry


def summarise_clean(runs: list[dict]) -> dict:
    """The clean attackers' fold results -> `baseline.attackers`, `speaker_eer`, worst case."""
    return summarise_attacks(runs, versions=False)


def summarise_attacks(runs: list[dict], versions: bool) -> dict:
    entry = {"attackers": aggregate_attackers(runs, versions), "gender_worst": gender_worst(runs)}
    eer = mean_eer(runs)
    return entry if eer is None else {**entry, "speaker_eer": eer}


def score_grid(wd: Workdir, folds: list[int], baseline_configs: dict[str, TrainConfig],
               cfg: ExperimentConfig, part: str = "test", show_progress: bool = True,
               encoder: SpeakerEncoder | None = None,
               settings: list[tuple[bool, int]] | None = None) -> tuple[list[dict], dict, Path]:
    """Every setting (default `cfg.settings()`) on `folds`, aggregated; the clean attackers;
    the cloak folder.

    Needs the baselines of `folds` trained (`run_baselines`). `encoder`: the
    speaker encoder, loaded here when the `dvector` family is asked for.
    """
    run_dir = wd.root / "cloaks" / model_tag(baseline_configs["emotion"]) / run_tag(
        cfg, baseline_configs)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.json").write_text(json.dumps(cfg.to_dict(), indent=1))
    if encoder is None:
        encoder, attacks = load_encoder(cfg.attacks)
        cfg = replace(cfg, attacks=attacks)
    # a waveform baseline's features: the same utterances, anonymised before features
    protected_wd = (wd.transformed(TRANSFORMS[cfg.transform], show_progress)
                    if cfg.transform else None)
    clean_runs, per_setting, valid_emotion = [], {}, []
    for fold in folds:
        runner = FoldRunner(wd, fold, baseline_configs, cfg, run_dir, encoder, show_progress,
                            part, protected_wd)
        clean_runs.append(runner.clean())
        valid_emotion.append(runner.clean_valid_emotion())
        for adversarial, ratio in settings or cfg.settings():
            per_setting.setdefault((adversarial, ratio), []).append(
                runner.score(ratio, adversarial))
    grid = [{"method": method_name(cfg, adversarial), "suppression_ratio": ratio,
             "adversarial": adversarial, "emotion_model": model_tag(baseline_configs["emotion"]),
             "cloak_dir": str(run_dir.relative_to(wd.root)), **summarise_setting(runs)}
            for (adversarial, ratio), runs in per_setting.items()]
    clean = {**summarise_clean(clean_runs), "valid_emotion": mean_std(valid_emotion)}
    return grid, clean, run_dir


def choose(grid: list[dict], clean_emotion: float,
           max_drop: float = MAX_EMOTION_DROP) -> dict[str, dict]:
    """Each method's operating point among its settings scored on validation speakers.

    The setting with the lowest worst-case gender UAR among those that cost at
    most `max_drop` points of emotion UAR; when none does, the one that costs
    least. Returns {method: that setting's entry}.
    """
    chosen = {}
    for method in dict.fromkeys(e["method"] for e in grid):
        entries = [e for e in grid if e["method"] == method]
        within = [e for e in entries if clean_emotion - e["emotion"]["uar"]["mean"] <= max_drop]
        chosen[method] = (min(within, key=lambda e: e["gender_worst"]["uar"]["mean"]) if within
                          else max(entries, key=lambda e: e["emotion"]["uar"]["mean"]))
    return chosen


def results_file(wd: Workdir, attacks: AttackConfig) -> Path:
    return wd.root / f"results{attacks.suffix}.json"


def merge_results(old: dict | None, new: dict) -> dict:
    """results.json after a run: its entries replace those of the same method and ratio;
    every other method's stay. The clean baseline is the default model's when known."""
    def family(results: dict) -> tuple:  # what must match for entries to share a table
        c = results.get("config", {})
        return c.get("folds"), c.get("model"), c.get("recipe"), c.get("normalise")

    if old is None or family(old) != family(new):
        return new  # other folds, model or recipe: the old entries are not comparable
    keys = {(e["method"], e["suppression_ratio"]) for e in new["cloak"]}
    kept = [e for e in old.get("cloak", []) if (e.get("method"), e["suppression_ratio"])
            not in keys]
    merged = {**new, "cloak": kept + new["cloak"],
              "clean_emotion": {**old.get("clean_emotion", {}), **new["clean_emotion"]}}
    plain_tag = f"{new['config']['model']}-{new['config']['recipe']}"
    if new["config"]["emotion_model"] != plain_tag and "baseline" in old:
        merged["baseline"] = old["baseline"]  # e.g. a warp run's f_θ is not the clean service
    return merged


def run_experiment(wd: Workdir, folds: list[int], baseline_configs: dict[str, TrainConfig],
                   cfg: ExperimentConfig = ExperimentConfig(),
                   show_progress: bool = True) -> dict:
    """Baselines, then the grid (or the operating points chosen on validation speakers);
    merges into results.json, writes report.md and figures."""
    started = time.perf_counter()
    baseline = run_baselines(wd, folds, baseline_configs, show_progress)
    encoder, attacks = load_encoder(cfg.attacks)
    cfg = replace(cfg, attacks=attacks)
    settings, selection = None, None
    if cfg.select_folds is not None:
        valid_grid, valid_clean, _ = score_grid(wd, list(cfg.select_folds), baseline_configs,
                                                cfg, "primary_valid", show_progress, encoder)
        chosen = choose(valid_grid, valid_clean["valid_emotion"]["mean"])
        settings = [(e["adversarial"], e["suppression_ratio"]) for e in chosen.values()]
        selection = {"folds": list(cfg.select_folds), "clean": valid_clean, "grid": valid_grid}
    grid, clean, run_dir = score_grid(wd, folds, baseline_configs, cfg, "test", show_progress,
                                      encoder, settings)
    if selection is not None:
        for entry in grid:
            entry["validation"] = next(e for e in selection["grid"]
                                       if e["method"] == entry["method"]
                                       and e["suppression_ratio"] == entry["suppression_ratio"])
            entry["validation_clean"] = selection["clean"]
    tag = model_tag(baseline_configs["emotion"])
    results = {
        "baseline": {**baseline, **clean},
        "clean_emotion": {tag: baseline["emotion"]},
        "cloak": grid,
        "config": {**cfg.to_dict(), "model": baseline["model"], "recipe": baseline["recipe"],
                   "emotion_model": tag, "normalise": wd.cfg.normalise, "folds": folds,
                   "cloak_dir": str(run_dir.relative_to(wd.root))},
        "wall_time_s": round(time.perf_counter() - started, 1),
    }
    file = results_file(wd, cfg.attacks)
    results = merge_results(json.loads(file.read_text()) if file.is_file() else None, results)
    file.write_text(json.dumps(results, indent=1))
    write_report(wd, results)
    return results
