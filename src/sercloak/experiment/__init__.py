"""`sercloak experiment`: the privacy–utility grid of one method, resumable, with a report.

A method is one *design* of what the device sends (`DESIGNS`), with its
operating points (`Point`):

- ``spectrogram`` (`designs/spectrogram.py`): log-mel features protected by
  a cloak (its kind, warp, mask rule and game: `CloakConfig`,
  `CloakTrainConfig`) in two variants, without (`plain`) and with adversaries
  (`adversarial`), at suppression ratios `ratios`; or by a transform of the
  audio before features (`transform`: the anonymisation baselines `mcadams`,
  `pitch_shift`, or per-user voice normalisation `voicenorm`), alone or
  followed by a cloak trained on its features (`cloak_after`). Optionally the
  service adapts to it (`adapt_epochs`: f_θ fine-tuned on protected features
  of its own training speakers);
- ``posteriors`` (`designs/posteriors.py`): only f_θ's emotion probabilities
  of each window: the floor any design whose server outputs emotion leaks;
- ``embedding`` (`designs/split/`): a split network whose device part sends
  a noisy k-dimensional sequence, at k in `split.dims`.

For every seed and fold: the clean baselines (f_θ, f_g) of the protocol, then
each operating point scored by

- emotion: f_θ (or its adapted copy) on protected utterances (utility), and
  its paired drop from the clean f_θ on the same utterances;
- the gender attackers that can read what is sent (`attacks/`): on
  spectrograms the `cnn`, `stats` and `dvector` families, each *ignorant*
  (fitted on clean features) and *informed* (fitted on protected features of
  its own speakers, selected on protected validation speakers), the CNN+RNN
  and the speaker encoder retrained on protected speech, and the speaker EER
  among protected utterances; on sequences the `lr`, `gbt` and `gru`
  attackers, informed; per seed and fold the one that does best on its own
  validation speakers gives the privacy figure (`privacy.py`: with its
  interval, chance band, upper bound and user-level figure).

With `select`, every setting is first scored on the validation speakers of
the primary pool (`folds.SELECTION_PART`) of every fold, each fold's
operating point is chosen from that fold's own figures (`results.choose_per_fold`:
no speaker of a fold's test set, not even through another fold's models,
influences its choice), and only that point is scored on the fold's test
speakers by the attackers fitted for the choice (kept by the process, or
fitted again from the same seed and speakers by another worker).

The run is a plan of units of work (`plan.py`: clean models, training,
clean references, scoring) run by an executor (`executors.py`: this process,
or Ray tasks on a cluster); this module is the driver that plans them,
chooses operating points and merges what they wrote into results.json
(`results.merge_results`: one file per protocol, every method run on the
workdir). Everything made is saved where `layout.Layout` says: an
interrupted run skips what is done and a run with other settings never
reuses it (the run tag covers every setting that shapes a cloak).
"""


from __future__ import annotations

import time
from dataclasses import asdict, replace

from ..attacks.suite import load_encoder
from ..baselines import model_tag, reference_configs, run_baselines
from ..data import Workdir
from ..files import write_json
from ..folds import SELECTION_PART
from ..layout import Layout
from ..points import Point
from ..report import write_report
from ..results import (
    RESULTS_FORMAT,
    Runs,
    choose_per_fold,
    merge_results,
    read_results,
    summarise_clean,
    summarise_setting,
)
from ..train import TrainConfig
from .config import (
    DESIGNS,
    RATIOS,
    TRANSFORM_NAMES,
    VARIANTS,
    ExperimentConfig,
    method_of,
    protected_workdir,
    run_tag,
)
from .executors import Executor, LocalExecutor
from .plan import (
    CleanUnit,
    MethodRun,
    ScoreUnit,
    baseline_units,
    fold_runner,
    forget_runners,
    method_units,
)

__all__ = ["DESIGNS", "RATIOS", "TRANSFORM_NAMES", "VARIANTS", "ExperimentConfig",
           "fold_runner", "method_of", "plan_method", "protected_workdir", "run_experiment",
           "run_tag", "score_points"]


def plan_method(wd: Workdir, baseline_configs: dict[str, TrainConfig], cfg: ExperimentConfig,
                show_progress: bool = True) -> MethodRun:
    """The method's folder and config.json, its attackers (without the speaker encoder's
    when its weights are missing, saying so) and the transformed features it reads (built
    here, once). `baseline_configs` are the plain clean models (a debiased f_θ fine-tunes
    them: `ExperimentConfig.emotion_models`); the baselines must be trained."""
    _, attacks = load_encoder(cfg.attacks)
    cfg = replace(cfg, attacks=attacks)
    configs = cfg.emotion_models(baseline_configs)
    run_dir = wd.layout.cloak_run(cfg.protocol, model_tag(configs["emotion"]),
                                  run_tag(cfg, configs))
    write_json(wd.layout.method_config(run_dir), cfg.to_dict())
    if cfg.transform:
        protected_workdir(wd, cfg.transform, show_progress)
    return MethodRun(wd.root, configs, reference_configs(baseline_configs), cfg, run_dir,
                     show_progress, cfg.fine_tunes(baseline_configs))


def score_points(method: MethodRun, executor: Executor, points: dict[int, list[Point]],
                 part: str) -> tuple[dict[str, Runs], Runs]:
    """Score every point of each fold (`points`: fold -> its points) on `part` for every
    seed: ({point name: runs[seed][fold], None where a fold did not score it}, the clean
    reference's runs)."""
    units = method_units(method, points, part)
    some = next(iter(points.values()))[0]
    executor.run(units, method.show_progress, desc=f"{method_of(method.cfg, some).name} on {part}",
                 log=Layout(method.root).unit_log(method.cfg.protocol))
    seeds, folds = method.cfg.seeds, list(points)
    clean = [[CleanUnit(method, s, f, part).read() for f in folds] for s in seeds]
    names = {p.name: p for ps in points.values() for p in ps}
    runs = {name: [[ScoreUnit(method, s, f, part, point).read() if point in points[f] else None
                    for f in folds] for s in seeds] for name, point in names.items()}
    return runs, clean


def entry(method: MethodRun, chosen: list[Point], runs: Runs, clean: Runs,
          validation: tuple[Runs, Runs] | None = None) -> dict:
    """One method's results.json entry: `chosen[k]` is the point fold k was scored at (on
    that fold's validation speakers, `validation`: its runs and the clean runs)."""
    record = method_of(method.cfg, chosen[0])
    names = [p.name for p in chosen]
    result = {"method": record.name, "spec": record.to_dict(),
              "setting": "/".join(dict.fromkeys(names)), "settings": names,
              "points": [asdict(p) for p in chosen],
              "emotion_model": model_tag(method.configs["emotion"]),
              "adapt_epochs": method.cfg.adapt_epochs,
              "cloak_dir": Layout(method.root).relative(method.run_dir)}
    result.update(summarise_setting(runs, clean))
    if validation is not None:
        result["validation"] = summarise_setting(*validation)
        result["validation_clean"] = summarise_clean(validation[1])
    return result


def _fold_runs(runs: dict[str, Runs], chosen: list[Point]) -> Runs:
    """runs[seed][fold] of each fold's chosen point."""
    return [[runs[p.name][s][k] for k, p in enumerate(chosen)]
            for s in range(len(next(iter(runs.values()))))]


def _choose(method: MethodRun, executor: Executor, folds: list[int],
            points: list[Point]) -> tuple[dict[str, list[Point]], dict]:
    """Each method's point per fold, chosen on that fold's validation speakers:
    ({method name: chosen point per fold}, {method name: (validation runs, clean runs)})."""
    runs, clean = score_points(method, executor, {f: points for f in folds}, SELECTION_PART)
    by_method: dict[str, list[Point]] = {}
    for p in points:
        by_method.setdefault(method_of(method.cfg, p).name, []).append(p)
    chosen, validation = {}, {}
    for name, candidates in by_method.items():
        picks = choose_per_fold({p.name: runs[p.name] for p in candidates}, clean)
        chosen[name] = [next(p for p in candidates if p.name == n) for n in picks]
        validation[name] = (_fold_runs(runs, chosen[name]), clean)
    return chosen, validation


def run_experiment(wd: Workdir, folds: list[int], baseline_configs: dict[str, TrainConfig],
                   cfg: ExperimentConfig = ExperimentConfig(), show_progress: bool = True,
                   executor: Executor | None = None) -> dict:
    """Baselines, then the grid (or the operating points chosen on validation speakers);
    merges into the results.json of the comparison on these folds and seeds, writes its
    report.md and figures. Every unit
    `executor` (default local) runs is logged to the protocol's unit log."""
    started, executor, folds = time.perf_counter(), executor or LocalExecutor(), sorted(folds)
    baselines = train_baselines(wd, folds, baseline_configs, cfg, executor, show_progress)
    method = plan_method(wd, baseline_configs, cfg, show_progress)
    if method.cfg.select:  # each fold's point, chosen on its validation speakers
        chosen, validation = _choose(method, executor, folds, method.cfg.points())
    else:  # every point on every fold
        chosen, validation = {p.name: [p] * len(folds) for p in method.cfg.points()}, {}
    runs, clean = score_points(method, executor,
                               {f: list(dict.fromkeys(ps[k] for ps in chosen.values()))
                                for k, f in enumerate(folds)}, "test")
    entries = [entry(method, picks, _fold_runs(runs, picks), clean, validation.get(name))
               for name, picks in chosen.items()]
    results = assemble(wd, method, folds, baselines, entries, summarise_clean(clean), started)
    file = wd.layout.results(method.cfg.protocol, folds, list(method.cfg.seeds))
    results = merge_results(read_results(file) if file.is_file() else None, results, file)
    write_json(file, results)
    write_report(wd, results, file)
    forget_runners()
    return results


def train_baselines(wd: Workdir, folds: list[int], configs: dict[str, TrainConfig],
                    cfg: ExperimentConfig, executor: Executor,
                    show_progress: bool) -> tuple[dict, dict]:
    """The clean models of every seed and fold (the clean service's, the method's plain
    ones `configs` and, when debiased, the method's, fine-tuned from them): (the clean
    service's Table 2, the method's)."""
    reference, own_configs = reference_configs(configs), cfg.emotion_models(configs)
    executor.run(baseline_units(wd.root, [(reference, None), (configs, None),
                                          (own_configs, cfg.fine_tunes(configs))],
                                cfg.protocol, cfg.seeds,
                                folds, show_progress),
                 show_progress, desc="clean models", log=wd.layout.unit_log(cfg.protocol))
    baseline = run_baselines(wd, folds, reference, cfg.protocol, cfg.seeds, show_progress)
    own = (baseline if reference == own_configs else
           run_baselines(wd, folds, own_configs, cfg.protocol, cfg.seeds, show_progress))
    return baseline, own


def assemble(wd: Workdir, method: MethodRun, folds: list[int], baselines: tuple[dict, dict],
             entries: list[dict], clean: dict, started: float) -> dict:
    """This run's results.json (before it is merged with the file's other methods)."""
    baseline, own = baselines
    tag = model_tag(method.configs["emotion"])
    return {
        "format": RESULTS_FORMAT,
        "baseline": {**baseline, **clean},
        "clean_emotion": {tag: own["emotion"]},
        "cloak": entries,
        "config": {**method.cfg.to_dict(), "model": baseline["model"],
                   "recipe": baseline["recipe"], "emotion_model": tag,
                   "normalise": wd.cfg.normalise, "folds": list(folds),
                   "cloak_dir": wd.layout.relative(method.run_dir)},
        "wall_time_s": round(time.perf_counter() - started, 1),
    }
