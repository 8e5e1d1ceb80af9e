"""Where everything in a workdir lives: the one place that builds its paths.

    <workdir>/
      manifest.csv folds.json summary.json summary.md     `sercloak prepare`
      features/<corpus>/shard_*.npy|json                   the log-mel cache
      features-<transform>/<corpus>/...                    the same of anonymised audio
      features-voicenorm/profiles.npz                      voice profiles (voicenorm.py)
      <protocol>/                                          paper or shared (folds.PROTOCOLS)
        baselines-<family>-folds<F>-seeds<S>.json|md       Table 2 over those seeds and folds
        models/<family>/seed<S>/fold<K>/emotion.pt|gender.pt|eval.json
                                       emotion.<pool>-pool.pt   f_θ of one pool (cross-fitting)
        cloaks/<family>/<run tag>/config.json              one method's configuration
        cloaks/<family>/<run tag>/seed<S>/fold<K>/<setting>.*   its cloaks, adversaries,
                                                           adapted models, informed
                                                           attackers, scores and the
                                                           scoring units' results (`Setting`)
        attacks/clean-<tag>/seed<S>/fold<K>/clean*.json    the attackers on clean speech
        folds<F>-seeds<S>/results.json|report.md|<figure>.png   one comparison: the runs
                                                           on those folds and seeds
        units.jsonl                                        what each unit of work cost

A model *family* is a network preset and recipe (`baselines.model_tag`, e.g.
``light-strong``); a *run tag* names one method's configuration
(`experiment.run_tag`). Everything else asks this module for a path: no other
module joins folder names, and `Layout.kind_of` tells every file a workdir may
hold from a stray one. A workdir written by an older version (models
directly under the workdir) is refused by `check_current` with a message
saying what to do.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path


def _span(what: str, numbers: list[int]) -> str:
    """folds0-4, seeds0,2: what a summary covers, in its name."""
    numbers = sorted(numbers)
    if numbers == list(range(numbers[0], numbers[-1] + 1)) and len(numbers) > 1:
        return f"{what}{numbers[0]}-{numbers[-1]}"
    return what + ",".join(map(str, numbers))


def setting_name(ratio: int, adversarial: bool) -> str:
    """The file stem of a cloak setting: cloak_sr60, adversarial_sr0, ..."""
    return f"{'adversarial' if adversarial else 'cloak'}_sr{ratio}"


def split_setting_name(dims: int) -> str:
    """The file stem of a split network's setting: embedding_k16, ..."""
    return f"embedding_k{dims}"


COMPARISON_FILES = ("results.json", "report.md", "pareto.png", "tradeoff.png",
                    "noise_map.png")

# every file a workdir may hold, as a pattern of its path relative to the workdir: what the
# builders below make (checked by walking a workdir a test grid wrote: tests/test_executors.py)
_NAME = r"[\w.+-]+"
_SETTING_FILE = (r"(\.npz|\.psi-\w+\.pt|(\.twin)?\.net\.pt|\.adapted\d+\.pt|\.informed-\w+\.pt"
                 r"|(\.[\w-]+)?(\.on-\w+)?\.json)")
_KNOWN = {
    "prepared": r"(manifest\.csv|folds\.json|summary\.json|summary\.md)",
    "features": rf"features(-\w+)?/{_NAME}/shard_\d+\.(npy|json)",
    "voice profiles": r"features-voicenorm/profiles\.npz",
    "demo corpus": r"synthetic_corpus/.+",
    "baselines": rf"\w+/baselines-{_NAME}-folds[\d,-]+-seeds[\d,-]+\.(json|md)",
    "model": rf"\w+/models/{_NAME}/seed\d+/fold\d+/"
             r"(emotion(\.\w+-pool)?\.pt|gender\.pt|eval\.json)",
    "method config": rf"\w+/cloaks/{_NAME}/{_NAME}/config\.json",
    "setting": rf"\w+/cloaks/{_NAME}/{_NAME}/seed\d+/fold\d+/\w+?{_SETTING_FILE}",
    "clean scores": rf"\w+/attacks/clean-{_NAME}/seed\d+/fold\d+/clean(\.on-\w+)?\.json",
    "comparison": rf"\w+/folds[\d,-]+-seeds[\d,-]+/"
                  rf"({'|'.join(map(re.escape, COMPARISON_FILES))})",
    "unit log": r"\w+/units\.jsonl",
    "training state": r".+\.pt\.state",  # beside a model while it trains (`train.train`)
    "logs": r"logs/[\w.-]+\.log",  # bench/privacy.sh's, one per method
}


def training_state(checkpoint: Path) -> Path:
    """Where a model's training keeps its state while it runs, beside its checkpoint."""
    return checkpoint.with_name(checkpoint.name + ".state")


@dataclass(frozen=True)
class FeatureShards:
    """The feature cache's files of one corpus: numbered shards, each an array (.npy) and
    its index (.json)."""

    folder: Path

    SHARD_GLOB = "shard_*"

    def shard(self, k: int) -> tuple[Path, Path]:
        """(array, index) of shard `k`."""
        stem = self.folder / f"shard_{k:05d}"
        return stem.with_suffix(".npy"), stem.with_suffix(".json")

    def indexes(self) -> list[Path]:
        return sorted(self.folder.glob(self.SHARD_GLOB + ".json"))

    def files(self) -> list[Path]:
        return list(self.folder.glob(self.SHARD_GLOB))

    @staticmethod
    def array_of(index: Path) -> Path:
        return index.with_suffix(".npy")


class OldWorkdir(ValueError):
    """A workdir laid out by an earlier version of sercloak."""


@dataclass(frozen=True)
class Setting:
    """The files of one setting (a cloak at one ratio, or a waveform baseline) in one fold."""

    folder: Path
    name: str  # "cloak_sr60", "adversarial_sr0", "mcadams", ...

    @property
    def cloak(self) -> Path:
        return self.folder / f"{self.name}.npz"

    def psi(self, family: str) -> Path:
        """An adversary ψ the cloak was trained against."""
        return self.folder / f"{self.name}.psi-{family}.pt"

    @property
    def network(self) -> Path:
        """A design's own trained network (the split network of an `embedding` point)."""
        return self.folder / f"{self.name}.net.pt"

    @property
    def twin_network(self) -> Path:
        """The same network trained on the primary pool only: what its attackers read
        (cross-fitting, `folds.crossfit_pools`)."""
        return self.folder / f"{self.name}.twin.net.pt"

    def adapted(self, epochs: int) -> Path:
        """The service's emotion model fine-tuned on this setting's protected features."""
        return self.folder / f"{self.name}.adapted{epochs}.pt"

    def informed(self, family: str) -> Path:
        """A network attacker retrained on this setting's protected features."""
        return self.folder / f"{self.name}.informed-{family}.pt"

    def result(self, part: str = "test", adapt_epochs: int = 0) -> Path:
        """A scoring unit's output (`experiment.plan.ScoreUnit`): the point's figures on
        `part` as results.json reads them (with the adapted f_θ's emotion, if any)."""
        return self.scores(part, "result" + (f"-adapted{adapt_epochs}" if adapt_epochs else ""))

    def scores(self, part: str = "test", variant: str = "") -> Path:
        """Scores on the speakers of `part`; `variant` tells other scorings apart
        (e.g. "adapted3")."""
        suffix = (f".{variant}" if variant else "") + ("" if part == "test" else f".on-{part}")
        return self.folder / f"{self.name}{suffix}.json"


@dataclass(frozen=True)
class Layout:
    root: Path

    def __post_init__(self):
        object.__setattr__(self, "root", Path(self.root))

    # -- what `prepare` writes ----------------------------------------------------------

    @property
    def manifest(self) -> Path:
        return self.root / "manifest.csv"

    @property
    def folds(self) -> Path:
        return self.root / "folds.json"

    @property
    def summary(self) -> Path:
        return self.root / "summary.json"

    @property
    def summary_md(self) -> Path:
        return self.root / "summary.md"

    def features(self, transform: str | None = None) -> Path:
        return self.root / ("features" if transform is None else f"features-{transform}")

    @staticmethod
    def shards(features: Path, corpus: str) -> FeatureShards:
        """The cache files of `corpus` in a features folder (`features`)."""
        return FeatureShards(features / corpus)

    def voice_profiles(self) -> Path:
        """Every utterance's voice profile (F0, formants): what voice normalisation's
        per-user factors are computed from."""
        return self.features("voicenorm") / "profiles.npz"

    def synthetic_corpus(self) -> Path:
        """Where the built-in demo corpus is generated."""
        return self.root / "synthetic_corpus"

    # -- per protocol ----------------------------------------------------------------

    def protocol(self, protocol: str) -> Path:
        return self.root / protocol

    def model_dir(self, protocol: str, family: str, seed: int, fold: int) -> Path:
        return self.protocol(protocol) / "models" / family / f"seed{seed}" / f"fold{fold}"

    def model(self, protocol: str, family: str, seed: int, fold: int, task: str) -> Path:
        return self.model_dir(protocol, family, seed, fold) / f"{task}.pt"

    def pool_model(self, protocol: str, family: str, seed: int, fold: int, pool: str) -> Path:
        """f_θ trained on one pool's training speakers only (cross-fitting:
        `folds.crossfit_pools`)."""
        return self.model_dir(protocol, family, seed, fold) / f"emotion.{pool}-pool.pt"

    def fold_eval(self, protocol: str, family: str, seed: int, fold: int) -> Path:
        return self.model_dir(protocol, family, seed, fold) / "eval.json"

    def baselines(self, protocol: str, family: str, folds: list[int],
                  seeds: list[int]) -> Path:
        """Table 2 of a model family on these folds and seeds (a run on others never
        replaces it)."""
        return self.protocol(protocol) / f"baselines-{family}-{_span('folds', folds)}-" \
                                          f"{_span('seeds', seeds)}.json"

    @staticmethod
    def markdown(table: Path) -> Path:
        """The Markdown beside a JSON table."""
        return table.with_suffix(".md")

    def cloak_run(self, protocol: str, family: str, run_tag: str) -> Path:
        """One method's folder: its config.json and a folder per seed and fold."""
        return self.protocol(protocol) / "cloaks" / family / run_tag

    @staticmethod
    def method_config(run_dir: Path) -> Path:
        """The configuration of the method whose runs are in `run_dir`."""
        return run_dir / "config.json"

    def setting(self, run_dir: Path, seed: int, fold: int, name: str) -> Setting:
        return Setting(run_dir / f"seed{seed}" / f"fold{fold}", name)

    def entry_setting(self, cloak_dir: str, seed: int, fold: int, name: str) -> Setting:
        """A setting of a results.json entry, whose `cloak_dir` is relative to the
        workdir (`relative`)."""
        return self.setting(self.root / cloak_dir, seed, fold, name)

    def clean_scores(self, protocol: str, attack_tag: str, seed: int, fold: int,
                     part: str = "test") -> Path:
        """The attackers' scores on clean speech (they depend on the attackers alone)."""
        folder = self.protocol(protocol) / "attacks" / f"clean-{attack_tag}" / f"seed{seed}"
        name = "clean.json" if part == "test" else f"clean.on-{part}.json"
        return folder / f"fold{fold}" / name

    def comparison(self, protocol: str, folds: list[int], seeds: list[int]) -> Path:
        """The folder of the comparison on these folds and seeds (its results.json,
        report.md and figures): a run on other folds or seeds has a folder of its own and
        never replaces this one's."""
        return self.protocol(protocol) / f"{_span('folds', folds)}-{_span('seeds', seeds)}"

    def results(self, protocol: str, folds: list[int], seeds: list[int]) -> Path:
        return self.comparison(protocol, folds, seeds) / "results.json"

    def comparisons(self, protocol: str) -> list[Path]:
        """Every comparison's results.json under the protocol."""
        return sorted(self.protocol(protocol).glob("folds*-seeds*/results.json"))

    def unfoldered_results(self, protocol: str) -> Path:
        """Where results.json lay before comparisons had folders (refused, saying where it
        goes: `results.read_results`)."""
        return self.protocol(protocol) / "results.json"

    def unit_log(self, protocol: str) -> Path:
        """One JSON line per unit of work run under the protocol (what it cost), appended by
        every run: unit-hours add up over interrupted and resumed runs."""
        return self.protocol(protocol) / "units.jsonl"

    @staticmethod
    def report(results_file: Path) -> Path:
        """The report of a comparison (beside its results.json)."""
        return results_file.with_name("report.md")

    @staticmethod
    def figure(results_file: Path, name: str) -> Path:
        """A figure of a comparison's report: pareto, tradeoff or noise_map."""
        return results_file.with_name(f"{name}.png")

    def storage_check(self) -> Path:
        """Where a distributed run's nodes leave marker files to show they all see the
        workdir (`experiment.executors.check_shared_storage`; removed after the check)."""
        return self.root / ".storage-check"

    def storage_marker(self, token: str, node: str) -> Path:
        """The marker `node` (or "driver") leaves for one check (`token`)."""
        return self.storage_check() / f"{token}.{node}"

    def kind_of(self, path: Path) -> str | None:
        """Which of this module's files `path` (inside the workdir) is, or None."""
        relative = Path(path).relative_to(self.root).as_posix()
        return next((kind for kind, pattern in _KNOWN.items()
                     if re.fullmatch(pattern, relative)), None)

    def relative(self, path: Path) -> str:
        return str(Path(path).relative_to(self.root))

    def check_current(self) -> None:
        """Refuse a workdir whose models or results were written by an older version."""
        old = [p.name for p in (self.root / "models", self.root / "cloaks",
                                self.root / "results.json") if p.exists()]
        if old:
            raise OldWorkdir(
                f"{self.root} was written by an older sercloak ({', '.join(old)} at its top "
                f"level); this version keeps models, cloaks and results per protocol under "
                f"{self.root}/<protocol>/. Move or delete {', '.join(old)} and run "
                f"`sercloak experiment` again: the prepared features are reused.")
