"""Option groups every command shares, and parsing of their values."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..device import DEVICES
from ..experiment.executors import EXECUTORS
from ..folds import DEFAULT_PROTOCOL, PROTOCOLS


def parse_folds(text: str) -> list[int]:
    """"0-4" -> [0, 1, 2, 3, 4]; "0,2" -> [0, 2]."""
    folds = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        folds += list(range(int(lo), int(hi or lo) + 1))
    return folds


def names(text: str, known: tuple[str, ...], option: str) -> tuple[str, ...]:
    """A comma-separated list of names, each one of `known`."""
    found = tuple(f.strip() for f in text.split(",") if f.strip())
    unknown = sorted(set(found) - set(known))
    if unknown or not found:
        raise ValueError(f"{option}: unknown names {unknown} (known: {','.join(known)})")
    return found


def workdir_options(p: argparse.ArgumentParser, default: Path | None = None) -> None:
    p.add_argument("--workdir", type=Path, default=default, required=default is None,
                   help="where features, models and results go"
                        + (f" (default {default})" if default else ""))
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def seed_option(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--seed", type=int, default=0, help=f"seed of {what} (default 0)")


def protocol_options(p: argparse.ArgumentParser, seeds: bool) -> None:
    p.add_argument("--protocol", choices=PROTOCOLS, default=DEFAULT_PROTOCOL,
                   help="which speakers train what: paper (default: the emotion model on the "
                        "primary pool, attackers on the adversary pool) or shared (both on "
                        "every non-test speaker)")
    if seeds:
        p.add_argument("--seeds", default="0", metavar="SEEDS",
                       help="seeds of every model, cloak and attacker, e.g. 0,1,2 or 0-2 "
                            "(default 0); figures are means over seeds and folds")


def results_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--results", type=Path, metavar="FILE",
                   help="a comparison's results.json (default: the protocol's only one, "
                        "WORKDIR/PROTOCOL/folds<F>-seeds<S>/results.json)")


def compute_options(p: argparse.ArgumentParser, executor: bool) -> None:
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
