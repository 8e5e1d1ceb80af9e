"""Clean-input baselines: train f_θ and f_g on every fold, evaluate, aggregate (Table 2).

Models live at ``<workdir>/models/<model>-<recipe>/fold<K>/{emotion,gender}.pt``
(e.g. ``models/light-strong/``); a
finished checkpoint made with the same settings is reused, an interrupted one
resumes, so `sercloak baselines` can be stopped and started at will.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from .cloak import Cloak
from .data import TASK_POOL, Workdir, build_segments
from .evaluate import evaluate
from .folds import PARTS
from .train import DEFAULT_RECIPE, TrainConfig, load_checkpoint, pick_device, recipe_config, train

TASKS = ("emotion", "gender")
DEFAULT_TAG = f"light-{DEFAULT_RECIPE}"


# settings that make a different model family when they differ from the recipe's own:
# a warping cloak's emotion model is trained with the cloak's warp range
TAGGED_SETTINGS = ("vtlp",)


def model_tag(cfg: TrainConfig) -> str:
    """The name of a model family's folder: network preset and training recipe, and any
    of `TAGGED_SETTINGS` that differs from the recipe's (e.g. light-strong-vtlp0.2)."""
    recipe = recipe_config(cfg.recipe, cfg.task)
    changed = "".join(f"-{name}{getattr(cfg, name):g}" for name in TAGGED_SETTINGS
                      if getattr(cfg, name) != getattr(recipe, name))
    return f"{cfg.model}-{cfg.recipe}{changed}"


def model_tags(configs: dict[str, TrainConfig]) -> dict[str, str]:
    return {task: model_tag(cfg) for task, cfg in configs.items()}


def model_path(wd: Workdir, tag: str, fold: int, task: str) -> Path:
    return wd.root / "models" / tag / f"fold{fold}" / f"{task}.pt"


def results_name(tag: str) -> str:
    """baselines.json for the default light model and recipe, baselines-<tag>.json otherwise."""
    return "baselines" if tag == DEFAULT_TAG else f"baselines-{tag}"


def train_fold(wd: Workdir, fold: int, cfg: TrainConfig, show_progress: bool = True) -> Path:
    """Train (or reuse, or resume) the model of `cfg.task` on its pool of `fold`."""
    out = model_path(wd, model_tag(cfg), fold, cfg.task)
    if out.is_file():
        _, ckpt = load_checkpoint(out, wd.cfg)
        if ckpt["train_config"] == cfg.to_dict():
            return out
        print(f"{out}: made with other settings, retraining")
    pool = TASK_POOL[cfg.task]
    train_set = wd.segments(fold, f"{pool}_train", cfg.task, train=True)
    valid_set = wd.segments(fold, f"{pool}_valid", cfg.task, train=False)
    train(train_set, valid_set, cfg, wd.cfg, out, show_progress=show_progress)
    return out


def evaluate_fold(wd: Workdir, fold: int, tags: dict[str, str] | None = None) -> dict:
    """Both models of `fold` (model families `tags` per task, default the default
    recipe's) on the fold's test speakers; also written to eval.json."""
    tags = tags or {task: DEFAULT_TAG for task in TASKS}
    device = pick_device()
    result = {}
    for task in TASKS:
        model, ckpt = load_checkpoint(model_path(wd, tags[task], fold, task), wd.cfg, device)
        test_set = wd.segments(fold, "test", task, train=False)
        result[task] = evaluate(model, test_set, device=device)
        result[task]["train"] = {k: v for k, v in ckpt["metrics"].items() if k != "history"}
    out = model_path(wd, tags["emotion"], fold, "eval").with_suffix(".json")
    out.write_text(json.dumps(result, indent=1))
    return result


def evaluate_on(wd: Workdir, fold: int, tag: str, other: Workdir,
                cloak_file: Path | None = None, seed: int = 0) -> dict:
    """The fold's models (and a cloak) on every utterance of another prepared workdir.

    All of `other`'s speakers count as test speakers: this is how a model
    trained on public corpora is checked against one's own recordings. Both
    workdirs must share feature settings (normalisation included), and the
    cloak must have been made for them. Speakers the fold trained on that
    also appear in `other` are listed under "shared_speakers".
    """
    device = pick_device()
    cloak = Cloak.load(cloak_file, other.cfg).to(device).eval() if cloak_file else None
    seen = {s for part in PARTS if part != "test" for s in wd.folds[fold][part]}
    result = {"source": str(wd.root), "fold": fold, "models": tag, "target": str(other.root),
              "shared_speakers": sorted(seen & {u.speaker for u in other.utterances})}
    emotion = build_segments(other.utterances, other.features(other.utterances), "emotion",
                             other.cfg.test_hop_frames, other.cfg)
    for task in TASKS:
        model, _ = load_checkpoint(model_path(wd, tag, fold, task), other.cfg, device)
        data = emotion if task == "emotion" else emotion.relabel(task)
        result[task] = evaluate(model, data, device=device)
        if cloak is not None:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)  # the cloak's noise draws
                cloaked = evaluate(model, data, cloak, device=device)
            result.setdefault("cloaked", {"cloak": str(cloak_file)})[task] = cloaked
    return result


def mean_std(values: list[float]) -> dict:
    """{"mean", "std", "folds"}; std is the sample standard deviation over folds."""
    arr = np.asarray(values, dtype=float)
    std = float(arr.std(ddof=1)) if arr.size > 1 else 0.0
    return {"mean": round(float(arr.mean()), 2), "std": round(std, 2),
            "folds": [round(float(v), 2) for v in arr]}


def aggregate(per_fold: list[dict], key: str | None = None) -> dict:
    """Fold results of one model -> acc/uar as mean ± std, overall and per corpus.

    `per_fold` holds `evaluate()` outputs; `key` selects a sub-dict first.
    """
    runs = [r[key] if key else r for r in per_fold]
    corpora = sorted({c for r in runs for c in r["per_corpus"]})
    return {
        "acc": mean_std([r["overall"]["acc"] for r in runs]),
        "uar": mean_std([r["overall"]["uar"] for r in runs]),
        "per_corpus": {
            c: {m: mean_std([r["per_corpus"][c][m] for r in runs if c in r["per_corpus"]])
                for m in ("acc", "uar")}
            for c in corpora
        },
        "confusion": np.sum([r["overall"]["confusion"] for r in runs], axis=0).tolist(),
        "labels": runs[0]["labels"],
    }


def fmt(stat: dict) -> str:
    return f"{stat['mean']:.1f} ± {stat['std']:.1f}"


def table2(results: dict) -> str:
    """Markdown shaped like the paper's Table 2."""
    emo, gen = results["emotion"], results["gender"]
    lines = ["| test set | emotion acc | emotion UAR | gender acc | gender UAR |",
             "|---|---|---|---|---|",
             f"| all | {fmt(emo['acc'])} | {fmt(emo['uar'])} | {fmt(gen['acc'])} | "
             f"{fmt(gen['uar'])} |"]
    for c in emo["per_corpus"]:
        e, g = emo["per_corpus"][c], gen["per_corpus"][c]
        lines.append(f"| {c} | {fmt(e['acc'])} | {fmt(e['uar'])} | {fmt(g['acc'])} | "
                     f"{fmt(g['uar'])} |")
    return "\n".join(lines) + "\n"


def confusion_md(agg: dict, title: str) -> str:
    labels = agg["labels"]
    lines = [f"{title} (rows: truth, columns: prediction; summed over folds)", "",
             "| | " + " | ".join(labels) + " |", "|---" * (len(labels) + 1) + "|"]
    lines += [f"| {lab} | " + " | ".join(map(str, row)) + " |"
              for lab, row in zip(labels, agg["confusion"], strict=True)]
    return "\n".join(lines) + "\n"


def run_baselines(wd: Workdir, folds: list[int], configs: dict[str, TrainConfig],
                  show_progress: bool = True) -> dict:
    """Train and evaluate both models on `folds`; writes <name>.json and <name>.md."""
    started = time.perf_counter()
    tag = model_tag(configs["emotion"])
    per_fold = []
    for fold in folds:
        for task in TASKS:
            train_fold(wd, fold, configs[task], show_progress)
        per_fold.append(evaluate_fold(wd, fold, model_tags(configs)))
    results = {
        "model": configs["emotion"].model,
        "recipe": configs["emotion"].recipe,
        "normalise": wd.cfg.normalise,
        "folds": folds,
        "train_config": {t: configs[t].to_dict() for t in TASKS},
        **{t: aggregate(per_fold, t) for t in TASKS},
        "train_wall_time_s": {t: [r[t]["train"]["wall_time_s"] for r in per_fold] for t in TASKS},
        "wall_time_s": round(time.perf_counter() - started, 1),
    }
    name = results_name(tag)
    (wd.root / f"{name}.json").write_text(json.dumps(results, indent=1))
    md = (f"# Clean-input baselines ({tag} model, {wd.cfg.normalise} normalisation, "
          f"folds {folds})\n\n"
          f"Utterance-level accuracy and UAR (%) on the test speakers, mean ± std over folds.\n\n"
          + table2(results) + "\n" + confusion_md(results["emotion"], "Emotion confusion")
          + "\n" + confusion_md(results["gender"], "Gender confusion")
          + f"\nWall time: {results['wall_time_s']} s\n")
    (wd.root / f"{name}.md").write_text(md)
    return results
