"""The `sercloak` command: one sub-command per stage of the pipeline."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .attacks.suite import FAMILIES, AttackConfig
from .audio import AudioError
from .baselines import TASKS, evaluate_fold, evaluate_on, run_baselines, train_fold
from .checkpoint import CheckpointMismatch
from .cloak import ADVERSARIES, KINDS, MASKS, CloakConfig
from .cloak.training import GAMES, CloakTrainConfig
from .corpora import CorpusLayoutError, canonical_name
from .data import Workdir
from .designs.split import SplitConfig
from .device import DEVICES, use_device
from .experiment import DESIGNS, TRANSFORM_NAMES, VARIANTS, ExperimentConfig, run_experiment
from .experiment.executors import EXECUTORS, UnitsFailed, make_executor
from .features import DEFAULT_NORMALISATION, NORMALISATIONS, FeatureConfig
from .folds import DEFAULT_PROTOCOL, PROTOCOLS
from .layout import Layout, OldWorkdir
from .prepare import format_summary, prepare
from .report import privacy_table, selection_table, table2, write_report
from .serving.commands import add_commands
from .train import DEFAULT_RECIPE, RECIPES, TrainConfig, recipe_config

DEMO_WORKDIR = Path("runs/demo")
DEMO_FOLDS, DEMO_RATIOS, DEMO_ATTACKER_UTTERANCES, DEMO_DRAWS = "0-1", "0,60", 8, 1
DEMO_SECONDS_PER_FOLD = 70  # measured with these settings: docs/benchmarks.md


def _parse_corpus(spec: str, workdir: Path) -> tuple[str, Path]:
    """NAME=PATH; `synthetic` alone means the built-in demo corpus inside the workdir."""
    name, sep, path = spec.partition("=")
    if not sep:
        if canonical_name(name) == "synthetic":
            return "synthetic", Layout(workdir).synthetic_corpus()
        raise ValueError(f"--corpus expects NAME=PATH, got {spec!r}")
    return name.strip(), Path(path.strip()).expanduser()


def _loader_options(args: argparse.Namespace) -> dict:
    return {
        "ravdess": {"calm_as_neutral": args.ravdess_calm_as_neutral},
        "iemocap": {"scripted": args.iemocap_scripted},
        "msp_improv": {"types": args.msp_types},
    }


def cmd_prepare(args: argparse.Namespace) -> None:
    corpora = dict(_parse_corpus(s, args.workdir) for s in args.corpus)
    result = prepare(corpora, args.workdir, seed=args.seed, loader_options=_loader_options(args),
                     cfg=FeatureConfig(normalise=args.normalise), show_progress=not args.quiet)
    print(format_summary(result.summary["corpus_summary"]))
    print(f"prepared {len(result.utterances)} utterances in {result.summary['wall_time_s']} s; "
          f"wrote manifest.csv, folds.json, summary.md and features/ to {args.workdir}")


def parse_folds(text: str) -> list[int]:
    """"0-4" -> [0, 1, 2, 3, 4]; "0,2" -> [0, 2]."""
    folds = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        folds += list(range(int(lo), int(hi or lo) + 1))
    return folds


def _train_configs(args: argparse.Namespace, seed: int = 0) -> dict[str, TrainConfig]:
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
    out = train_fold(wd, args.fold, _train_configs(args, args.seed)[args.task], args.protocol,
                     not args.quiet)
    print(f"{args.task} model of fold {args.fold}: {out}")


def cmd_evaluate(args: argparse.Namespace) -> None:
    wd, configs = Workdir.open(args.workdir), _train_configs(args, args.seed)
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
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1))
        print(f"wrote {args.out}")


def cmd_baselines(args: argparse.Namespace) -> None:
    wd, configs = Workdir.open(args.workdir), _train_configs(args)
    results = run_baselines(wd, parse_folds(args.folds), configs, args.protocol,
                            parse_folds(args.seeds), not args.quiet)
    print(table2(results))
    file = wd.layout.baselines(args.protocol, results["family"])
    print(f"wall time {results['wall_time_s']} s; wrote {file} and .md")


def _experiment_config(args: argparse.Namespace) -> ExperimentConfig:
    cloak = CloakConfig(kind=args.cloak_kind, shape=args.cloak_shape, sigma_max=args.sigma_max,
                        rho_init=args.rho_init, warp=args.warp, mask_by=args.mask_by)
    training = CloakTrainConfig(
        lam=args.lam, perturbation_epochs=args.perturbation_epochs,
        suppression_epochs=args.suppression_epochs, game=args.game,
        adversaries=_names(args.adversaries, ADVERSARIES, "--adversaries"),
        adversary_steps=args.adversary_steps, adversary_lr=args.adversary_lr,
        adversary_weight=args.adversary_weight, weight_warmup=args.weight_warmup)
    per_speaker = ({} if args.attacker_utterances is None else
                   {"dvector_max_per_speaker": args.attacker_utterances,
                    "tuned_max_per_speaker": args.attacker_utterances})
    attacks = AttackConfig(families=_names(args.attackers, FAMILIES, "--attackers"),
                           informed_epochs=args.informed_epochs, informed_draws=args.draws,
                           tuned_epochs=args.tuned_epochs, **per_speaker)
    return ExperimentConfig(
        design=args.design, split=SplitConfig(dims=tuple(int(k) for k in args.dims.split(","))),
        cloak=cloak, cloak_train=training, attacks=attacks,
        ratios=tuple(int(r) for r in args.ratios.split(",")),
        variants=_names(args.variants, VARIANTS, "--variants"), transform=args.transform,
        cloak_after=args.cloak_after, adapt_epochs=args.adapt_epochs,
        select=args.select_on_valid,
        protocol=args.protocol, seeds=tuple(parse_folds(args.seeds)))


def _names(text: str, known: tuple[str, ...], option: str) -> tuple[str, ...]:
    """A comma-separated list of names, each one of `known`."""
    names = tuple(f.strip() for f in text.split(",") if f.strip())
    unknown = sorted(set(names) - set(known))
    if unknown or not names:
        raise ValueError(f"{option}: unknown names {unknown} (known: {','.join(known)})")
    return names


def cmd_experiment(args: argparse.Namespace) -> None:
    wd = Workdir.open(args.workdir)
    executor = make_executor(args.executor, wd.root, args.ray_address, args.ray_cpus_per_unit)
    results = run_experiment(wd, parse_folds(args.folds), _train_configs(args),
                             _experiment_config(args), not args.quiet, executor)
    print(table2(results["baseline"]))
    print(selection_table(results) or privacy_table(results))
    print(f"wall time {results['wall_time_s']} s; wrote {wd.layout.results(args.protocol)}, "
          f"{wd.layout.report(args.protocol)} and its figures")


def cmd_report(args: argparse.Namespace) -> None:
    """report.md and figures again from results.json and the cloak files, training nothing."""
    wd = Workdir.open(args.workdir)
    file = wd.layout.results(args.protocol)
    if not file.is_file():
        raise FileNotFoundError(f"{file} not found: run `sercloak experiment --protocol "
                                f"{args.protocol}` first")
    print(f"wrote {write_report(wd, json.loads(file.read_text()))}")


def cmd_demo(args: argparse.Namespace) -> None:
    """The built-in demo: the synthetic corpus, prepared, then the whole experiment on less
    work than the real protocol (fewer folds, ratios, attacker utterances and noise draws)."""
    folds = parse_folds(args.folds)
    print(f"sercloak demo: the whole pipeline on a SYNTHETIC corpus (generated here, not real "
          f"speech), on folds {args.folds} of 5: prepare features; train the emotion model and "
          f"the gender attacker; train the paper's cloak at suppression ratios {args.ratios}, "
          f"without and with adversarial training; attack it with every attacker family "
          f"({args.attackers}), ignorant and informed; write the report and its figures. "
          f"About {DEMO_SECONDS_PER_FOLD * len(folds)} s on 2 CPU cores.\n",
          flush=True)
    args.corpus = ["synthetic"]
    cmd_prepare(args)
    cmd_experiment(args)
    print(f"\nnext: export the adversarial cloak at SR {args.ratios.split(',')[-1]} and serve "
          f"it (then open http://127.0.0.1:8000):\n"
          f"  sercloak export --workdir {args.workdir} --fold {folds[0]} --setting "
          f"cloak_adversarial:{args.ratios.split(',')[-1]} --out {args.workdir}/bundle\n"
          f"  sercloak serve --bundle {args.workdir}/bundle")


def _workdir_options(p: argparse.ArgumentParser, default: Path | None = None) -> None:
    p.add_argument("--workdir", type=Path, default=default, required=default is None,
                   help="where features, models and results go"
                        + (f" (default {default})" if default else ""))
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _seed_option(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--seed", type=int, default=0, help=f"seed of {what} (default 0)")


def _protocol_options(p: argparse.ArgumentParser, seeds: bool) -> None:
    p.add_argument("--protocol", choices=PROTOCOLS, default=DEFAULT_PROTOCOL,
                   help="which speakers train what: paper (default: the emotion model on the "
                        "primary pool, attackers on the adversary pool) or shared (both on "
                        "every non-test speaker)")
    if seeds:
        p.add_argument("--seeds", default="0", metavar="SEEDS",
                       help="seeds of every model, cloak and attacker, e.g. 0,1,2 or 0-2 "
                            "(default 0); figures are means over seeds and folds")


def _compute_options(p: argparse.ArgumentParser, executor: bool) -> None:
    p.add_argument("--device", choices=DEVICES, default="auto",
                   help="where torch runs: auto (default: CUDA when present), cpu or cuda")
    if executor:
        p.add_argument("--executor", choices=EXECUTORS, default="local",
                       help="local (default: every unit of work in this process) or ray "
                            "(each unit a Ray task; needs the [ray] extra, docs/cluster.md)")
        p.add_argument("--ray-address", metavar="ADDR",
                       help="a running Ray cluster, e.g. auto or HEAD:6379 (default: start "
                            "one on this machine)")
        p.add_argument("--ray-cpus-per-unit", type=int, default=1, metavar="N",
                       help="CPUs (and torch threads) per unit under Ray (default 1)")


def _corpus_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--normalise", choices=NORMALISATIONS, default=DEFAULT_NORMALISATION,
                   help="user (default): each mel bin standardised with "
                        "the speaker's own speech statistics (leave-one-out), as a device would; "
                        "none: log-mel in dB")
    p.add_argument("--ravdess-calm-as-neutral", action="store_true",
                   help="RAVDESS: count calm (02) as neutral instead of leaving it out")
    p.add_argument("--iemocap-scripted", action="store_true",
                   help="IEMOCAP: also use the scripted dialogs (default: improvised only)")
    p.add_argument("--msp-types", default="TS",
                   help="MSP-Improv recording types to keep (default TS: improvised)")


def _training_options(p: argparse.ArgumentParser) -> None:
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


def _cloak_options(p: argparse.ArgumentParser, small: bool = False) -> None:
    c, t, e = CloakConfig(), CloakTrainConfig(), ExperimentConfig()
    g = p.add_argument_group("method (docs/method.md, docs/privacy.md)")
    g.add_argument("--design", choices=DESIGNS, default=e.design,
                   help="what the device sends: spectrogram (default: log-mel behind a cloak "
                        "or a transform), posteriors (f_θ's window probabilities: the floor) or "
                        "embedding (a split network's noisy k-dimensional sequence)")
    g.add_argument("--dims", default=",".join(map(str, e.split.dims)),
                   help="embedding: the values of k to choose from (default "
                        f"{','.join(map(str, e.split.dims))})")
    g.add_argument("--cloak-kind", choices=KINDS, default=c.kind,
                   help="noise (default, the paper's) or temporal (plus a learned spectral "
                        "offset per 2 s window, which does not average out over an utterance)")
    g.add_argument("--warp", type=float, default=c.warp,
                   help="random mel-axis warp per utterance in [1-W, 1+W] as part of the cloak; "
                        "the emotion model is trained with the same range (default 0: none)")
    g.add_argument("--mask-by", choices=MASKS, default=c.mask_by,
                   help="suppress the features with the largest noise (sigma, the paper's) or "
                        "those that reveal gender more than emotion (saliency)")
    g.add_argument("--game", choices=GAMES, default=t.game,
                   help="adversarial training: grl (the paper's gradient reversal) or minmax "
                        "(adversaries take several steps per cloak step)")
    g.add_argument("--adversaries", default=",".join(t.adversaries),
                   help=f"gender adversaries of the adversarial variant, from "
                        f"{','.join(ADVERSARIES)} (default {','.join(t.adversaries)})")
    g.add_argument("--adversary-steps", type=int, default=t.adversary_steps,
                   help="minmax: adversary updates per cloak update")
    g.add_argument("--adversary-lr", type=float, default=t.adversary_lr)
    g.add_argument("--adversary-weight", type=float, default=t.adversary_weight,
                   help="minmax: weight of the privacy loss")
    g.add_argument("--weight-warmup", type=float, default=t.weight_warmup,
                   help="fraction of the perturbation stage over which the adversaries' weight "
                        "(or α) ramps up from 0 (default 0: no ramp)")
    g.add_argument("--variants", default=",".join(e.variants),
                   help="cloaks to train: plain, adversarial or both (default)")
    g.add_argument("--transform", choices=TRANSFORM_NAMES,
                   help="transform the audio before features: an anonymisation baseline "
                        "(mcadams, pitch_shift) or per-user voice normalisation (voicenorm); "
                        "alone, or followed by a cloak with --cloak-after")
    g.add_argument("--cloak-after", action="store_true",
                   help="with --transform: train the cloak (its options as usual) on the "
                        "transformed features")
    g.add_argument("--adapt-epochs", type=int, default=e.adapt_epochs,
                   help="server-side adaptation: fine-tune the emotion model this many epochs "
                        "on protected features of its training speakers (default 0: off)")
    g.add_argument("--select-on-valid", action="store_true",
                   help="score every setting on each fold's validation speakers, choose the "
                        "fold's operating point there (per variant) and run only it on the "
                        "fold's test speakers")
    p.add_argument("--cloak-shape", choices=["mel", "cell"], default=c.shape,
                   help="one noise value per mel bin (default) or per cell of the 2 s window")
    p.add_argument("--sigma-max", type=float, default=c.sigma_max,
                   help=f"largest noise std, in std of a mel bin (default {c.sigma_max})")
    p.add_argument("--rho-init", type=float, default=c.rho_init,
                   help=f"initial ρ (default {c.rho_init}; the paper's -10 cannot learn)")
    p.add_argument("--lam", type=float, default=t.lam, help=f"weight of L_c (default {t.lam})")
    ratios = DEMO_RATIOS if small else ",".join(map(str, e.ratios))
    p.add_argument("--ratios", default=ratios,
                   help=f"suppression ratios in percent (default {ratios})")
    p.add_argument("--perturbation-epochs", type=int, default=2 if small else t.perturbation_epochs)
    p.add_argument("--suppression-epochs", type=int, default=1 if small else t.suppression_epochs)
    p.add_argument("--informed-epochs", type=int,
                   default=2 if small else e.attacks.informed_epochs,
                   help="fine-tuning epochs of the informed cnn attacker")
    p.add_argument("--attackers", default=",".join(FAMILIES),
                   help=f"attacker families, comma-separated (default {','.join(FAMILIES)})")
    draws = DEMO_DRAWS if small else e.attacks.informed_draws
    p.add_argument("--draws", type=int, default=draws,
                   help="noise draws per training utterance of the informed stats and d-vector "
                        f"attackers (default {draws})")
    p.add_argument("--tuned-epochs", type=int, default=e.attacks.tuned_epochs,
                   help="fine-tuning epochs of the dvector_ft attacker's speaker encoder "
                        f"(default {e.attacks.tuned_epochs})")
    p.add_argument("--attacker-utterances", type=int,
                   default=DEMO_ATTACKER_UTTERANCES if small else None, metavar="N",
                   help="utterances per speaker the speaker-encoder attackers fit on (default: "
                        + (f"{DEMO_ATTACKER_UTTERANCES})" if small else
                           f"{e.attacks.dvector_max_per_speaker} for dvector, "
                           f"{e.attacks.tuned_max_per_speaker} for dvector_ft)"))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sercloak", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("prepare", help="list corpora, extract and cache features, make folds")
    p.add_argument("--corpus", action="append", required=True, metavar="NAME=PATH",
                   help="a corpus (ravdess, nemo, cremad, iemocap, msp_improv, emodb, "
                        "NAME=manifest.csv, or synthetic); repeat for several")
    _workdir_options(p)
    _seed_option(p, "the folds")
    _corpus_options(p)
    p.set_defaults(func=cmd_prepare)

    p = sub.add_parser("train", help="train the emotion model or the gender attacker of a fold")
    p.add_argument("--task", choices=TASKS, required=True)
    p.add_argument("--fold", type=int, required=True)
    _workdir_options(p)
    _seed_option(p, "training")
    _protocol_options(p, seeds=False)
    _training_options(p)
    _compute_options(p, executor=False)
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
    _workdir_options(p)
    _seed_option(p, "the models to score")
    _protocol_options(p, seeds=False)
    _training_options(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("baselines", help="train and evaluate both models on every fold (Table 2)")
    p.add_argument("--folds", default="0-4", help="e.g. 0-4 (default) or 0,2")
    _workdir_options(p)
    _protocol_options(p, seeds=True)
    _training_options(p)
    _compute_options(p, executor=False)
    p.set_defaults(func=cmd_baselines)

    p = sub.add_parser("experiment", help="baselines, cloaks and attackers on every fold")
    p.add_argument("--folds", default="0-4", help="e.g. 0-4 (default) or 0,2")
    _workdir_options(p)
    _protocol_options(p, seeds=True)
    _training_options(p)
    _cloak_options(p)
    _compute_options(p, executor=True)
    p.set_defaults(func=cmd_experiment)

    p = sub.add_parser("report", help="rewrite report.md and its figures from results.json")
    _workdir_options(p)
    _protocol_options(p, seeds=False)
    p.set_defaults(func=cmd_report)

    add_commands(sub, _workdir_options, _protocol_options)

    p = sub.add_parser("demo", help="the whole experiment on the built-in synthetic corpus, "
                                    "with small settings")
    p.add_argument("--folds", default=DEMO_FOLDS, help=f"e.g. 0-4 (default {DEMO_FOLDS})")
    _workdir_options(p, DEMO_WORKDIR)
    _seed_option(p, "the folds")
    _protocol_options(p, seeds=True)
    _corpus_options(p)
    _training_options(p)
    _cloak_options(p, small=True)
    _compute_options(p, executor=True)
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        if getattr(args, "device", None):
            use_device(args.device)
        args.func(args)
    except (CorpusLayoutError, AudioError, CheckpointMismatch, OldWorkdir, FileNotFoundError,
            FileExistsError, ValueError, UnitsFailed, ImportError) as err:
        print(f"sercloak {args.command}: error: {err}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print(f"\nsercloak {args.command}: interrupted; run it again to resume", file=sys.stderr)
        sys.exit(130)
