"""The `sercloak` command: one sub-command per stage of the pipeline."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .audio import AudioError
from .corpora import CorpusLayoutError, canonical_name
from .prepare import format_summary, prepare

DEMO_WORKDIR = Path("runs/demo")


def _parse_corpus(spec: str, workdir: Path) -> tuple[str, Path]:
    """NAME=PATH; `synthetic` alone means the built-in demo corpus inside the workdir."""
    name, sep, path = spec.partition("=")
    if not sep:
        if canonical_name(name) == "synthetic":
            return "synthetic", workdir / "synthetic_corpus"
        raise argparse.ArgumentTypeError(f"--corpus expects NAME=PATH, got {spec!r}")
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
                     show_progress=not args.quiet)
    print(format_summary(result.summary["corpus_summary"]))
    print(f"prepared {len(result.utterances)} utterances in {result.summary['wall_time_s']} s; "
          f"wrote manifest.csv, folds.json, summary.md and features/ to {args.workdir}")


def cmd_demo(args: argparse.Namespace) -> None:
    """The built-in demo: the synthetic corpus, end to end."""
    print("sercloak demo on the SYNTHETIC corpus (generated, not real speech)")
    args.corpus = ["synthetic"]
    cmd_prepare(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sercloak", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser, workdir_default: Path | None) -> None:
        p.add_argument("--workdir", type=Path, default=workdir_default,
                       required=workdir_default is None, help="where results and caches go")
        p.add_argument("--seed", type=int, default=0, help="seed for folds (default 0)")
        p.add_argument("--quiet", action="store_true", help="no progress bars")
        p.add_argument("--ravdess-calm-as-neutral", action="store_true",
                       help="RAVDESS: count calm (02) as neutral instead of leaving it out")
        p.add_argument("--iemocap-scripted", action="store_true",
                       help="IEMOCAP: also use the scripted dialogs (default: improvised only)")
        p.add_argument("--msp-types", default="TS",
                       help="MSP-Improv recording types to keep (default TS: improvised)")

    p = sub.add_parser("prepare", help="list corpora, extract and cache features, make folds")
    p.add_argument("--corpus", action="append", required=True, metavar="NAME=PATH",
                   help="a corpus (ravdess, nemo, cremad, iemocap, msp_improv, emodb, "
                        "NAME=manifest.csv, or synthetic); repeat for several")
    common(p, None)
    p.set_defaults(func=cmd_prepare)

    p = sub.add_parser("demo", help="run the pipeline on the built-in synthetic corpus")
    common(p, DEMO_WORKDIR)
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (CorpusLayoutError, AudioError, FileNotFoundError, FileExistsError, ValueError) as err:
        print(f"sercloak {args.command}: error: {err}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print(f"\nsercloak {args.command}: interrupted; run it again to resume", file=sys.stderr)
        sys.exit(130)
