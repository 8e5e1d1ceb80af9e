"""The experiment commands: experiment, report, and the demo (the experiment on the
built-in synthetic corpus, with the demo's preset of smaller settings)."""

from __future__ import annotations

import argparse
import textwrap
from pathlib import Path

from ..attacks.suite import FAMILIES, AttackConfig
from ..cloak import ADVERSARIES, KINDS, MASKS, CloakConfig
from ..cloak.training import GAMES, CloakTrainConfig
from ..data import Workdir
from ..designs.split.training import GAMES as SPLIT_GAMES
from ..designs.split.training import SplitConfig
from ..experiment import DESIGNS, TRANSFORM_NAMES, VARIANTS, ExperimentConfig, run_experiment
from ..experiment.config import OUTPUTS
from ..experiment.executors import make_executor
from ..report import write_report
from ..report.screen import COLUMNS, summary
from ..results import comparison_file, read_results
from .data import cmd_prepare, corpus_options, train_configs, training_options
from .options import (
    compute_options,
    names,
    parse_folds,
    protocol_options,
    results_option,
    seed_option,
    workdir_options,
)

DEMO_WORKDIR = Path("runs/demo")
# the demo: the same experiment on less work (the real protocol's defaults stay the
# options' own); measured with these settings: docs/benchmarks.md
# (the paper's effect shows at SR 60, which grows from the SR 0 cloak it trains anyway; 8
# epochs of the clean models' 12 also bound the from-scratch attacker's)
DEMO = {"folds": "0-1", "ratios": "60", "epochs": 8, "perturbation_epochs": 2,
        "suppression_epochs": 1, "informed_epochs": 2, "draws": 1, "attacker_utterances": 8}
DEMO_SECONDS_PER_FOLD = 85  # the demo's wall time: median 172 s for 2 folds (docs/benchmarks.md)


def experiment_config(args: argparse.Namespace) -> ExperimentConfig:
    cloak = CloakConfig(kind=args.cloak_kind, shape=args.cloak_shape, sigma_max=args.sigma_max,
                        rho_init=args.rho_init, warp=args.warp, mask_by=args.mask_by)
    training = CloakTrainConfig(
        lam=args.lam, perturbation_epochs=args.perturbation_epochs,
        suppression_epochs=args.suppression_epochs, game=args.game,
        adversaries=names(args.adversaries, ADVERSARIES, "--adversaries"),
        adversary_steps=args.adversary_steps, adversary_lr=args.adversary_lr,
        adversary_weight=args.adversary_weight, weight_warmup=args.weight_warmup)
    per_speaker = ({} if args.attacker_utterances is None else
                   {"dvector_max_per_speaker": args.attacker_utterances,
                    "tuned_max_per_speaker": args.attacker_utterances})
    attacks = AttackConfig(families=names(args.attackers, FAMILIES, "--attackers"),
                           informed_epochs=args.informed_epochs, informed_draws=args.draws,
                           tuned_epochs=args.tuned_epochs, **per_speaker)
    return ExperimentConfig(
        design=args.design,
        split=SplitConfig.playing(args.split_game,
                                  dims=tuple(int(k) for k in args.dims.split(","))),
        cloak=cloak, cloak_train=training, attacks=attacks,
        ratios=tuple(int(r) for r in args.ratios.split(",")),
        variants=names(args.variants, VARIANTS, "--variants"), transform=args.transform,
        cloak_after=args.cloak_after, adapt_epochs=args.adapt_epochs,
        select=args.select_on_valid, output=args.output, debias=args.debias,
        protocol=args.protocol, seeds=tuple(parse_folds(args.seeds)))


def cmd_experiment(args: argparse.Namespace) -> None:
    wd = Workdir.open(args.workdir)
    executor = make_executor(args.executor, wd.root, args.ray_address, args.ray_cpus_per_unit)
    results = run_experiment(wd, parse_folds(args.folds), train_configs(args),
                             experiment_config(args), not args.quiet, executor)
    config = results["config"]
    file = wd.layout.results(args.protocol, config["folds"], config["seeds"])
    print()
    print(summary(results, wd.layout.report(file)))
    print(f"wall time {results['wall_time_s']} s; results: {file}")


def cmd_report(args: argparse.Namespace) -> None:
    """report.md and figures again from results.json and the cloak files, training nothing."""
    wd = Workdir.open(args.workdir)
    file = args.results or comparison_file(wd.layout, args.protocol)
    print(f"wrote {write_report(wd, read_results(file), file)}")


def cmd_demo(args: argparse.Namespace) -> None:
    """The built-in demo: the synthetic corpus, prepared, then the whole experiment on less
    work than the real protocol (`DEMO`: fewer folds, ratios, epochs, attacker utterances and
    noise draws)."""
    folds = parse_folds(args.folds)
    intro = (f"sercloak demo: the whole pipeline on a SYNTHETIC corpus (generated here, not "
             f"real speech), on folds {args.folds} of 5: prepare features; train the emotion "
             f"model and the gender attacker; train the paper's cloak (suppression ratios "
             f"{args.ratios}), without and with adversarial training; attack it with every "
             f"attacker family ({args.attackers}), ignorant and informed; write the report and "
             f"its figures. About {DEMO_SECONDS_PER_FOLD * len(folds)} s on 2 CPU cores.")
    print(textwrap.fill(intro, COLUMNS) + "\n", flush=True)
    args.corpus = ["synthetic"]
    cmd_prepare(args)
    cmd_experiment(args)
    ratio = args.ratios.split(",")[-1]
    print(f"\nnext: export the adversarial cloak at SR {ratio} and serve it (then open "
          f"http://127.0.0.1:8000):\n"
          f"  sercloak export --workdir {args.workdir} --fold {folds[0]} \\\n"
          f"      --setting cloak_adversarial:{ratio} --out {args.workdir}/bundle\n"
          f"  sercloak serve --bundle {args.workdir}/bundle")


# the method's options, declared: (flag, argparse settings); defaults come from the configs
def _design_options() -> list[tuple[str, dict]]:
    c, t, e = CloakConfig(), CloakTrainConfig(), ExperimentConfig()
    return [
        ("--design", dict(choices=DESIGNS, default=e.design, help="what the device sends: "
                          "spectrogram (log-mel behind a cloak or a transform), posteriors "
                          "(f_θ's window probabilities: the floor) or embedding (a split "
                          "network's noisy k-dimensional sequence)")),
        ("--output", dict(choices=OUTPUTS, default=e.output, help="posteriors: what the "
                          "service answers: its window probabilities, those calibrated per "
                          "user (each user's running mean removed), or the label alone")),
        ("--split-game", dict(choices=list(SPLIT_GAMES), default=e.split.game,
                              help="embedding: the adversaries of the split network's game: "
                                   "window (an MLP per step and window statistics), utterance "
                                   "(+ whole-utterance statistics), gru (+ a GRU over each "
                                   "window), refresh (fresh adversaries every 2 epochs), "
                                   "attackers (all of these)")),
        ("--debias", dict(type=float, default=e.debias, help="train the method's emotion "
                          "model against a gender adversary on its outputs, with this weight "
                          "(0: off); drops are measured from the plain one")),
        ("--dims", dict(default=",".join(map(str, e.split.dims)),
                        help="embedding: the values of k to choose from")),
        ("--cloak-kind", dict(choices=KINDS, default=c.kind, help="noise (the paper's) or "
                              "temporal (plus a learned spectral offset per 2 s window, which "
                              "does not average out over an utterance)")),
        ("--warp", dict(type=float, default=c.warp, help="random mel-axis warp per utterance "
                        "in [1-W, 1+W] as part of the cloak; the emotion model is trained "
                        "with the same range (0: none)")),
        ("--mask-by", dict(choices=MASKS, default=c.mask_by, help="suppress the features with "
                           "the largest noise (sigma, the paper's) or those that reveal gender "
                           "more than emotion (saliency)")),
        ("--game", dict(choices=GAMES, default=t.game, help="adversarial training: grl (the "
                        "paper's gradient reversal) or minmax (adversaries take several steps "
                        "per cloak step)")),
        ("--adversaries", dict(default=",".join(t.adversaries), help="gender adversaries of "
                               f"the adversarial variant, from {','.join(ADVERSARIES)}")),
        ("--adversary-steps", dict(type=int, default=t.adversary_steps,
                                   help="minmax: adversary updates per cloak update")),
        ("--adversary-lr", dict(type=float, default=t.adversary_lr)),
        ("--adversary-weight", dict(type=float, default=t.adversary_weight,
                                    help="minmax: weight of the privacy loss")),
        ("--weight-warmup", dict(type=float, default=t.weight_warmup, help="fraction of the "
                                 "perturbation stage over which the adversaries' weight (or "
                                 "α) ramps up from 0 (0: no ramp)")),
        ("--variants", dict(default=",".join(e.variants),
                            help="cloaks to train: plain, adversarial or both")),
        ("--transform", dict(choices=TRANSFORM_NAMES, help="transform the audio before "
                             "features: an anonymisation baseline (mcadams, pitch_shift) or "
                             "per-user voice normalisation (voicenorm); alone, or followed by "
                             "a cloak with --cloak-after")),
        ("--cloak-after", dict(action="store_true", help="with --transform: train the cloak "
                               "(its options as usual) on the transformed features")),
        ("--adapt-epochs", dict(type=int, default=e.adapt_epochs, help="server-side "
                                "adaptation: fine-tune the emotion model this many epochs on "
                                "protected features of its training speakers (0: off)")),
        ("--select-on-valid", dict(action="store_true", help="score every setting on each "
                                   "fold's validation speakers, choose the fold's operating "
                                   "point there (per variant) and run only it on the fold's "
                                   "test speakers")),
    ]


def _cloak_options() -> list[tuple[str, dict]]:
    c, t, e = CloakConfig(), CloakTrainConfig(), ExperimentConfig()
    return [
        ("--cloak-shape", dict(choices=["mel", "cell"], default=c.shape, help="one noise "
                               "value per mel bin or per cell of the 2 s window")),
        ("--sigma-max", dict(type=float, default=c.sigma_max,
                             help="largest noise std, in std of a mel bin")),
        ("--rho-init", dict(type=float, default=c.rho_init,
                            help="initial ρ (the paper's -10 cannot learn)")),
        ("--lam", dict(type=float, default=t.lam, help="weight of L_c")),
        ("--ratios", dict(default=",".join(map(str, e.ratios)),
                          help="suppression ratios in percent")),
        ("--perturbation-epochs", dict(type=int, default=t.perturbation_epochs)),
        ("--suppression-epochs", dict(type=int, default=t.suppression_epochs)),
    ]


def _attacker_options() -> list[tuple[str, dict]]:
    a = AttackConfig()
    return [
        ("--informed-epochs", dict(type=int, default=a.informed_epochs,
                                   help="fine-tuning epochs of the informed cnn attacker")),
        ("--attackers", dict(default=",".join(FAMILIES), help="attacker families")),
        ("--draws", dict(type=int, default=a.informed_draws, help="noise draws per training "
                         "utterance of the informed stats and d-vector attackers")),
        ("--tuned-epochs", dict(type=int, default=a.tuned_epochs, help="most epochs of the "
                                "dvector_ft attacker's speaker encoder (it stops early)")),
        ("--attacker-utterances", dict(type=int, metavar="N", help="utterances per speaker "
                                       "the speaker-encoder attackers fit on (default: "
                                       f"{a.dvector_max_per_speaker} for dvector, "
                                       f"{a.tuned_max_per_speaker} for dvector_ft)")),
    ]


def method_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("method (docs/method.md, docs/privacy.md)")
    for flag, settings in _design_options() + _cloak_options() + _attacker_options():
        if "default" in settings and settings["default"] is not None \
                and settings.get("action") != "store_true":
            settings = {**settings, "help": settings.get("help", "") + " (default %(default)s)"}
        g.add_argument(flag, **settings)


def add_commands(sub) -> None:
    p = sub.add_parser("experiment", help="baselines, cloaks and attackers on every fold")
    p.add_argument("--folds", default="0-4", help="e.g. 0-4 (default) or 0,2")
    workdir_options(p)
    protocol_options(p, seeds=True)
    training_options(p)
    method_options(p)
    compute_options(p, executor=True)
    p.set_defaults(func=cmd_experiment)

    p = sub.add_parser("report", help="rewrite report.md and its figures from results.json")
    workdir_options(p)
    protocol_options(p, seeds=False)
    results_option(p)
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("demo", help="the whole experiment on the built-in synthetic corpus, "
                                    "with small settings")
    p.add_argument("--folds", help="e.g. 0-4")
    workdir_options(p, DEMO_WORKDIR)
    seed_option(p, "the folds")
    protocol_options(p, seeds=True)
    corpus_options(p)
    training_options(p)
    method_options(p)
    compute_options(p, executor=True)
    p.set_defaults(func=cmd_demo, **{k.replace("-", "_"): v for k, v in DEMO.items()})
