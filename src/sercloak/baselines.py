"""Clean-input baselines: train f_θ and f_g per protocol, seed and fold, evaluate,
aggregate (Table 2).

Which speakers train which model is the protocol's (`folds.training_parts`):
``paper`` trains f_θ on the primary pool and f_g on the adversary pool,
``shared`` both on every non-test speaker. Models live where `layout.Layout`
says (``<workdir>/<protocol>/models/<family>/seed<S>/fold<K>/``); a finished
checkpoint made with the same settings on the same speakers is reused, an
interrupted one resumes, so `sercloak baselines` can be stopped and started at
will.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import torch

from .checkpoint import load_checkpoint
from .cloak import Cloak
from .data import Workdir, build_segments
from .device import pick_device
from .evaluate import evaluate
from .files import write_json, write_text
from .folds import PARTS, POOLS, SELECTION_PART, training_parts
from .points import digest, unseeded
from .results import LEAD_METRIC, aggregate, spread, with_interval
from .train import TrainConfig, recipe_config, train

TASKS = ("emotion", "gender")


# settings that make a different model family when they differ from the recipe's own:
# a warping cloak's emotion model is trained with the cloak's warp range
# and a debiased emotion model is trained against a gender adversary on its outputs
TAGGED_SETTINGS = ("vtlp", "output_adversary")


def model_tag(cfg: TrainConfig) -> str:
    """The name of a model family's folder: network preset and training recipe, and any
    of `TAGGED_SETTINGS` that differs from the recipe's (e.g. light-strong-vtlp0.2)."""
    recipe = recipe_config(cfg.recipe, cfg.task)
    changed = "".join(f"-{name}{getattr(cfg, name):g}" for name in TAGGED_SETTINGS
                      if getattr(cfg, name) != getattr(recipe, name))
    return f"{cfg.model}-{cfg.recipe}{changed}"


def with_seed(configs: dict[str, TrainConfig], seed: int) -> dict[str, TrainConfig]:
    return {task: replace(cfg, seed=seed) for task, cfg in configs.items()}


def reference_configs(configs: dict[str, TrainConfig]) -> dict[str, TrainConfig]:
    """The clean service's models: `configs` with every tagged setting at its recipe's value
    (a warping cloak's VTLP-trained f_θ is measured against the plain one)."""
    def plain(cfg: TrainConfig) -> TrainConfig:
        recipe = recipe_config(cfg.recipe, cfg.task)
        return replace(cfg, **{name: getattr(recipe, name) for name in TAGGED_SETTINGS})

    return {task: plain(cfg) for task, cfg in configs.items()}


def attack_tag(gender_config: TrainConfig) -> str:
    """Names the clean attackers' scores: they depend on the gender model alone (and the
    attack settings, checked inside each file)."""
    return f"{model_tag(gender_config)}-{digest(unseeded(gender_config.to_dict()))}"


def model_file(wd: Workdir, cfg: TrainConfig, protocol: str, fold: int) -> Path:
    """Where the model of `cfg` (its task, family and seed) for `fold` lives."""
    return wd.layout.model(protocol, model_tag(cfg), cfg.seed, fold, cfg.task)


def train_fold(wd: Workdir, fold: int, cfg: TrainConfig, protocol: str,
               show_progress: bool = True, start_from: TrainConfig | None = None) -> Path:
    """Train (or reuse, or resume) the model of `cfg.task` of `fold` on the protocol's
    speakers: from scratch, or fine-tuning the (trained) model of `start_from`."""
    start = model_file(wd, start_from, protocol, fold) if start_from is not None else None
    return _train(wd, fold, cfg, model_file(wd, cfg, protocol, fold),
                  *training_parts(protocol, cfg.task), show_progress, start)


def is_trained(wd: Workdir, fold: int, cfg: TrainConfig, protocol: str) -> bool:
    """Whether the model of `cfg` for `fold` exists, made with `cfg` on the protocol's
    speakers (`train_fold` reuses it)."""
    return _made_with(wd, fold, cfg, model_file(wd, cfg, protocol, fold),
                      *training_parts(protocol, cfg.task))


def pool_model_file(wd: Workdir, cfg: TrainConfig, protocol: str, fold: int, pool: str) -> Path:
    return wd.layout.pool_model(protocol, model_tag(cfg), cfg.seed, fold, pool)


def train_pool_model(wd: Workdir, fold: int, cfg: TrainConfig, protocol: str, pool: str,
                     show_progress: bool = True, start_from: TrainConfig | None = None) -> Path:
    """f_θ of `cfg` trained on one pool's training speakers only (validated like the
    protocol's): the model whose outputs the attackers of a model-output design read for
    the other pool's speakers (`folds.crossfit_pools`); fine-tuning the same pool's model
    of `start_from` when given."""
    start = (pool_model_file(wd, start_from, protocol, fold, pool) if start_from is not None
             else None)
    return _train(wd, fold, cfg, pool_model_file(wd, cfg, protocol, fold, pool), POOLS[pool],
                  training_parts(protocol, cfg.task)[1], show_progress, start)


def is_pool_model_trained(wd: Workdir, fold: int, cfg: TrainConfig, protocol: str,
                          pool: str) -> bool:
    return _made_with(wd, fold, cfg, pool_model_file(wd, cfg, protocol, fold, pool),
                      POOLS[pool], training_parts(protocol, cfg.task)[1])


def _train(wd: Workdir, fold: int, cfg: TrainConfig, out: Path, train_parts: tuple[str, ...],
           valid_parts: tuple[str, ...], show_progress: bool, start: Path | None = None) -> Path:
    """Train (or reuse, or resume) the model of `cfg` on `train_parts` of `fold`, from the
    weights of the checkpoint `start` when given (fine-tuning)."""
    if _made_with(wd, fold, cfg, out, train_parts, valid_parts):
        return out
    if out.is_file():
        print(f"{out}: made with other settings or speakers, retraining")
    init = None
    if start is not None:
        if not start.is_file():
            raise FileNotFoundError(f"{out} fine-tunes {start}, which is not trained yet")
        init = load_checkpoint(start, wd.cfg)[1]["state_dict"]
    train_set = wd.segments(fold, train_parts, cfg.task, train=True)
    valid_set = wd.segments(fold, valid_parts, cfg.task, train=False)
    train(train_set, valid_set, cfg, wd.cfg, out, show_progress=show_progress, init_state=init)
    return out


def _made_with(wd: Workdir, fold: int, cfg: TrainConfig, out: Path,
               train_parts: tuple[str, ...], valid_parts: tuple[str, ...]) -> bool:
    """Whether `out` exists, made with `cfg` on these parts' speakers of `fold`."""
    if not out.is_file():
        return False
    speakers = {"train": wd.speakers(fold, train_parts), "valid": wd.speakers(fold, valid_parts)}
    _, ckpt = load_checkpoint(out, wd.cfg)
    return ckpt["train_config"] == cfg.to_dict() and ckpt["metrics"].get("speakers") == speakers


def _stamps(wd: Workdir, fold: int, configs: dict[str, TrainConfig], protocol: str) -> dict:
    """What identifies the checkpoints an evaluation scored (size and time of each)."""
    files = {task: model_file(wd, configs[task], protocol, fold) for task in TASKS}
    return {task: [f.stat().st_size, f.stat().st_mtime_ns] for task, f in files.items()}


def is_evaluated(wd: Workdir, fold: int, configs: dict[str, TrainConfig], protocol: str) -> bool:
    """Whether `evaluate_fold` has scored the fold's current checkpoints."""
    cfg = configs["emotion"]
    out = wd.layout.fold_eval(protocol, model_tag(cfg), cfg.seed, fold)
    return out.is_file() and json.loads(out.read_text()).get("checkpoints") == \
        _stamps(wd, fold, configs, protocol)


def evaluate_fold(wd: Workdir, fold: int, configs: dict[str, TrainConfig], protocol: str) -> dict:
    """Both models of `fold` on the fold's test speakers, and f_θ on the speakers where
    operating points are chosen (`valid_emotion`); kept in eval.json and reused while the
    checkpoints it scored are unchanged."""
    cfg = configs["emotion"]
    out = wd.layout.fold_eval(protocol, model_tag(cfg), cfg.seed, fold)
    if is_evaluated(wd, fold, configs, protocol):
        return json.loads(out.read_text())
    files = {task: model_file(wd, configs[task], protocol, fold) for task in TASKS}
    device = pick_device()
    result = {}
    for task in TASKS:
        model, ckpt = load_checkpoint(files[task], wd.cfg, device)
        result[task] = evaluate(model, wd.segments(fold, "test", task, train=False),
                                device=device)
        result[task]["train"] = {k: v for k, v in ckpt["metrics"].items() if k != "history"}
        if task == "emotion":
            result["valid_emotion"] = evaluate(
                model, wd.segments(fold, SELECTION_PART, task, train=False), device=device)
    result["checkpoints"] = _stamps(wd, fold, configs, protocol)
    write_json(out, result)
    return result


def clean_emotion(wd: Workdir, fold: int, cfg: TrainConfig, protocol: str, part: str) -> dict:
    """The clean emotion model's scores on the test speakers or on the validation speakers
    where operating points are chosen (from its eval.json)."""
    if part not in ("test", SELECTION_PART):
        raise ValueError(f"clean emotion scores exist for test and {SELECTION_PART}, not {part}")
    result = json.loads(wd.layout.fold_eval(protocol, model_tag(cfg), cfg.seed, fold).read_text())
    return result["emotion" if part == "test" else "valid_emotion"]


def evaluate_on(wd: Workdir, fold: int, cfg: TrainConfig, protocol: str, other: Workdir,
                cloak_file: Path | None = None, seed: int = 0) -> dict:
    """The fold's models (and a cloak) on every utterance of another prepared workdir.

    All of `other`'s speakers count as test speakers: this is how a model
    trained on public corpora is checked against one's own recordings. Both
    workdirs must share feature settings (normalisation included), and the
    cloak must have been made for them. Speakers the fold trained on that
    also appear in `other` are listed under "shared_speakers". `cfg` names the
    model family and seed (its task is ignored).
    """
    device = pick_device()
    cloak = Cloak.load(cloak_file, other.cfg).to(device).eval() if cloak_file else None
    seen = {s for part in PARTS if part != "test" for s in wd.folds[fold][part]}
    result = {"source": str(wd.root), "fold": fold, "models": model_tag(cfg),
              "protocol": protocol, "seed": cfg.seed, "target": str(other.root),
              "shared_speakers": sorted(seen & {u.speaker for u in other.utterances})}
    emotion = build_segments(other.utterances, other.features(other.utterances), "emotion",
                             other.cfg.test_hop_frames, other.cfg)
    for task in TASKS:
        path = model_file(wd, replace(cfg, task=task), protocol, fold)
        model, _ = load_checkpoint(path, other.cfg, device)
        data = emotion if task == "emotion" else emotion.relabel(task)
        result[task] = evaluate(model, data, device=device)
        if cloak is not None:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)  # the cloak's noise draws
                cloaked = evaluate(model, data, cloak, device=device)
            result.setdefault("cloaked", {"cloak": str(cloak_file)})[task] = cloaked
    return result


def baseline_fold(wd: Workdir, fold: int, configs: dict[str, TrainConfig], protocol: str,
                  show_progress: bool = True,
                  start_from: dict[str, TrainConfig] | None = None) -> dict:
    """Both models of one seed (`configs`) and fold, trained (or reused) and evaluated: one
    unit of work of an experiment (`experiment.plan.BaselineUnit`). A model whose settings
    differ from `start_from`'s fine-tunes that family's model (e.g. a debiased f_θ)."""
    for task in TASKS:
        start = (start_from[task] if start_from is not None and start_from[task] != configs[task]
                 else None)
        train_fold(wd, fold, configs[task], protocol, show_progress, start)
    return evaluate_fold(wd, fold, configs, protocol)


def run_baselines(wd: Workdir, folds: list[int], configs: dict[str, TrainConfig],
                  protocol: str, seeds: list[int] = (0,), show_progress: bool = True) -> dict:
    """Train and evaluate both models on `folds` for every seed; writes the protocol's
    baselines-<family>-folds<F>-seeds<S>.json and .md."""
    from .report import baselines_md  # the report draws figures: import it only here

    started = time.perf_counter()
    runs = []  # runs[seed][fold]
    for seed in seeds:
        seeded = with_seed(configs, seed)
        runs.append([baseline_fold(wd, fold, seeded, protocol, show_progress)
                     for fold in folds])
    tag = model_tag(configs["emotion"])
    results = {
        "model": configs["emotion"].model, "recipe": configs["emotion"].recipe,
        "family": tag, "normalise": wd.cfg.normalise, "protocol": protocol,
        "folds": list(folds), "seeds": list(seeds),
        "train_config": {t: configs[t].to_dict() for t in TASKS},
        **{t: {**aggregate(runs, t), LEAD_METRIC: with_interval([[r[t] for r in s]
                                                                  for s in runs])}
           for t in TASKS},
        "valid_emotion": aggregate(runs, "valid_emotion"),
        "train_wall_time_s": {t: spread([[r[t]["train"]["wall_time_s"] for r in s]
                                         for s in runs]) for t in TASKS},
        "wall_time_s": round(time.perf_counter() - started, 1),
    }
    file = wd.layout.baselines(protocol, tag, folds, seeds)
    write_json(file, results)
    write_text(wd.layout.markdown(file), baselines_md(results))
    return results
