"""The `sercloak` command: one sub-command per stage of the pipeline, each group of
commands in a module of its own (data: prepare, train, evaluate, baselines; experiment:
experiment, report, demo; serving: keygen, export, serve, client, predict)."""

from __future__ import annotations

import argparse
import sys

from ..audio import AudioError
from ..checkpoint import CheckpointMismatch
from ..corpora import CorpusLayoutError
from ..device import use_device
from ..experiment.executors import UnitsFailed
from ..layout import OldWorkdir
from .data import add_commands as add_data
from .experiment import add_commands as add_experiment
from .experiment import experiment_config
from .options import parse_folds
from .serving import add_commands as add_serving

__all__ = ["build_parser", "experiment_config", "main", "parse_folds"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sercloak", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    add_data(sub)
    add_experiment(sub)
    add_serving(sub)
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
