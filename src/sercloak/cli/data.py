"""The data and model commands: prepare, train, evaluate, baselines."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..baselines import TASKS, evaluate_fold, evaluate_on, run_baselines, train_fold
from ..corpora import canonical_name, loader_options
from ..data import Workdir
from ..features import DEFAULT_NORMALISATION, NORMALISATIONS, FeatureConfig
from ..files import write_json
from ..layout import Layout
from ..prepare import format_summary, prepare
from ..report import table2
from ..train import DEFAULT_RECIPE, RECIPES, TrainConfig, recipe_config
from .options import (
    compute_options,
    parse_folds,
    protocol_options,
    seed_option,
    workdir_options,
)


def _parse_corpus(spec: str, workdir: Path) -> tuple[str, Path]:
    """NAME=PATH; `synthetic` alone means the built-in demo corpus inside the workdir."""
    name, sep, path = spec.partition("=")
    if not sep:
        if canonical_name(name) == "synthetic":
            return "synthetic", Layout(workdir).synthetic_corpus()
        raise ValueError(f"--corpus expects NAME=PATH, got {spec!r}")
    return name.strip(), Path(path.strip()).expanduser()


def _flag(corpus: str, keyword: str) -> str:
    return f"{corpus}_{keyword}"  # the option's name in the parsed arguments


def cmd_prepare(args: argparse.Namespace) -> None:
    corpora = dict(_parse_corpus(s, args.workdir) for s in args.corpus)
    options: dict[str, dict] = {}
    for corpus, keyword, _, _ in loader_options():
        options.setdefault(corpus, {})[keyword] = getattr(args, _flag(corpus, keyword))
    result = prepare(corpora, args.workdir, seed=args.seed, loader_options=options,
                     cfg=FeatureConfig(normalise=args.normalise), show_progress=not args.quiet)
    print(format_summary(result.summary["corpus_summary"]))
    layout = Layout(args.workdir)
    written = [layout.manifest, layout.folds, layout.summary_md, layout.features()]
    print(f"prepared {len(result.utterances)} utterances in {result.summary['wall_time_s']} s\n"
          f"wrote in {args.workdir}: {', '.join(f.name for f in written)}")


def train_configs(args: argparse.Namespace, seed: int = 0) -> dict[str, TrainConfig]:
    """The recipe's settings for both tasks, with any option given on the command line."""
    return {task: recipe_config(
        args.recipe, task, model=args.model, lr=args.lr, batch_size=args.batch_size,
        max_epochs=args.epochs, patience=args.patience, spec_augment=args.spec_augment,
        speaker_weighting=args.speaker_weighting or None, seed=seed,
        # a warping cloak's emotion model learns with the same warp range (the attacker does not)
        vtlp=getattr(args, "warp", 0) or None if task == "emotion" else None,
    ) for task in TASKS}


def _print_eval(result: dict) -> None:
    for task in TASKS:
        r = result[task]
        cells = [f"{name} {s['uar_speaker']:.1f} / {s['uar']:.1f} / {s['acc']:.1f}" for name, s in
                 [("all", r["overall"]), *r["per_corpus"].items()]]
        print(f"{task:8s} UAR speaker-balanced / UAR / acc (%): " + ", ".join(cells))
        print(f"         confusion {r['labels']} (rows truth): {r['overall']['confusion']}")


def cmd_train(args: argparse.Namespace) -> None:
    wd = Workdir.open(args.workdir)
    out = train_fold(wd, args.fold, train_configs(args, args.seed)[args.task], args.protocol,
                     not args.quiet)
    print(f"{args.task} model of fold {args.fold}: {out}")


def cmd_evaluate(args: argparse.Namespace) -> None:
    wd, configs = Workdir.open(args.workdir), train_configs(args, args.seed)
    if args.on is None:
        if args.cloak is not None:
            raise ValueError("--cloak needs --on OTHER_WORKDIR (in-corpus cloaks: `experiment`)")
        result = evaluate_fold(wd, args.fold, configs, args.protocol)
    else:
        result = evaluate_on(wd, args.fold, configs["emotion"], args.protocol,
                             Workdir.open(args.on), args.cloak, args.noise_seed)
        print(f"fold {args.fold} of {wd.root} ({result['models']}, seed {args.seed}, protocol "
              f"{args.protocol}) on every utterance of {args.on}")
        if result["shared_speakers"]:
            print(f"warning: {len(result['shared_speakers'])} speakers of {args.on} were seen "
                  f"in training: {', '.join(result['shared_speakers'][:5])} ...")
    _print_eval(result)
    if "cloaked" in result:
        print(f"through the cloak {args.cloak}:")
        _print_eval(result["cloaked"])
    if args.out is not None:
        write_json(args.out, result)
        print(f"wrote {args.out}")


def cmd_baselines(args: argparse.Namespace) -> None:
    wd, configs = Workdir.open(args.workdir), train_configs(args)
    results = run_baselines(wd, parse_folds(args.folds), configs, args.protocol,
                            parse_folds(args.seeds), not args.quiet)
    print(table2(results))
    file = wd.layout.baselines(args.protocol, results["family"], results["folds"],
                               results["seeds"])
    print(f"wall time {results['wall_time_s']} s; wrote {file} and .md")


def corpus_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--normalise", choices=NORMALISATIONS, default=DEFAULT_NORMALISATION,
                   help="user (default): each mel bin standardised with "
                        "the speaker's own speech statistics (leave-one-out), as a device would; "
                        "none: log-mel in dB")
    for corpus, keyword, default, text in loader_options():  # each corpus module's own
        flag = "--" + _flag(corpus, keyword).replace("_", "-")
        if isinstance(default, bool):
            p.add_argument(flag, action="store_true", help=f"{corpus}: {text}")
        else:
            p.add_argument(flag, default=default, help=f"{corpus}: {text}")


def training_options(p: argparse.ArgumentParser) -> None:
    d = recipe_config(DEFAULT_RECIPE, "emotion")
    p.add_argument("--recipe", choices=list(RECIPES), default=DEFAULT_RECIPE,
                   help=f"training recipe (default {DEFAULT_RECIPE}; paper: the paper's settings)")
    p.add_argument("--model", choices=["light", "reference"], default="light",
                   help="light (default, fast on CPU) or the published reference network")
    p.add_argument("--epochs", type=int, help=f"(maximum) epochs (recipe's: {d.max_epochs})")
    p.add_argument("--patience", type=int, help="early-stopping patience (recipes that stop early)")
    p.add_argument("--lr", type=float, help=f"peak learning rate (recipe's: {d.lr})")
    p.add_argument("--batch-size", type=int, help=f"recipe's: {d.batch_size}")
    p.add_argument("--spec-augment", type=int,
                   help=f"time and frequency masks per segment (recipe's: {d.spec_augment})")
    p.add_argument("--speaker-weighting", action="store_true",
                   help="give every training speaker the same total loss weight")


def add_commands(sub) -> None:
    p = sub.add_parser("prepare", help="list corpora, extract and cache features, make folds")
    p.add_argument("--corpus", action="append", required=True, metavar="NAME=PATH",
                   help="a corpus (ravdess, nemo, cremad, iemocap, msp_improv, emodb, "
                        "NAME=manifest.csv, or synthetic); repeat for several")
    workdir_options(p)
    seed_option(p, "the folds")
    corpus_options(p)
    p.set_defaults(func=cmd_prepare)

    p = sub.add_parser("train", help="train the emotion model or the gender attacker of a fold")
    p.add_argument("--task", choices=TASKS, required=True)
    p.add_argument("--fold", type=int, required=True)
    workdir_options(p)
    seed_option(p, "training")
    protocol_options(p, seeds=False)
    training_options(p)
    compute_options(p, executor=False)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="score a fold's two models on its test speakers, "
                                        "or on every utterance of another workdir")
    p.add_argument("--fold", type=int, required=True)
    p.add_argument("--on", type=Path, metavar="OTHER_WORKDIR",
                   help="score on every utterance of this prepared workdir instead")
    p.add_argument("--cloak", type=Path, metavar="FILE",
                   help="with --on: also score through this cloak file (.npz)")
    p.add_argument("--out", type=Path, metavar="FILE", help="write the result as JSON")
    p.add_argument("--noise-seed", type=int, default=0, help="with --cloak: seed of its noise")
    workdir_options(p)
    seed_option(p, "the models to score")
    protocol_options(p, seeds=False)
    training_options(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("baselines", help="train and evaluate both models on every fold (Table 2)")
    p.add_argument("--folds", default="0-4", help="e.g. 0-4 (default) or 0,2")
    workdir_options(p)
    protocol_options(p, seeds=True)
    training_options(p)
    compute_options(p, executor=False)
    p.set_defaults(func=cmd_baselines)
