"""Shared fixtures: where the real corpora live, and small generated audio."""

from __future__ import annotations

import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
CORPORA = REPO.parent / "shared" / "corpora"


def real_corpus(name: str) -> Path:
    """Path of a real corpus in ../shared/corpora, or skip the test saying why."""
    path = CORPORA / name
    if not path.is_dir():
        pytest.skip(f"real corpus {name!r} not found at {path} (integration test needs ../shared)")
    return path


def tone(seconds: float = 0.5, sr: int = 16000, freq: float = 220.0, amp: float = 0.3,
         channels: int = 1) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    wave = (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    return np.stack([wave] * channels, axis=1) if channels > 1 else wave


def write_tone(path: Path, seconds: float = 0.5, sr: int = 16000, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, tone(seconds, sr, **kw), sr)
    return path


@pytest.fixture(scope="session")
def encoder():
    """The pretrained speaker encoder, or skip saying what to install."""
    from sercloak.attacks.speaker_encoder import EncoderUnavailable, SpeakerEncoder

    try:
        return SpeakerEncoder.load()
    except EncoderUnavailable as err:
        pytest.skip(f"speaker encoder weights not installed: {err}")


def tiny_train_configs() -> dict:
    """The tiny experiment's training settings: a run with them reuses its models."""
    from sercloak.train import TrainConfig

    return {t: TrainConfig(task=t, max_epochs=1, batch_size=16, lr=1e-3)
            for t in ("emotion", "gender")}


@pytest.fixture(scope="session")
def tiny_experiment(tmp_path_factory):
    """A prepared synthetic workdir with a tiny adversarial-cloak experiment on folds 0-1
    (SR 0 and 40, the stats attacker only): what `export` needs."""
    from sercloak.attacks.suite import AttackConfig
    from sercloak.cloak.training import CloakTrainConfig
    from sercloak.corpora.synthetic import SyntheticSpec
    from sercloak.data import Workdir
    from sercloak.experiment import ExperimentConfig, run_experiment
    from sercloak.prepare import prepare

    root = tmp_path_factory.mktemp("tiny-experiment")
    spec = SyntheticSpec(n_speakers=10, utterances_per_emotion=2)
    prepare({"synthetic": root / "corpus"}, root, loader_options={"synthetic": {"spec": spec}},
            show_progress=False)
    wd = Workdir.open(root)
    configs = tiny_train_configs()
    cfg = ExperimentConfig(cloak_train=CloakTrainConfig(perturbation_epochs=1,
                                                        suppression_epochs=1, batch_size=16),
                           attacks=AttackConfig(families=("stats",)), ratios=(0, 40),
                           variants=("adversarial",))
    run_experiment(wd, [0, 1], configs, cfg, show_progress=False)
    return wd


@pytest.fixture(scope="session")
def bundle(tiny_experiment, tmp_path_factory) -> Path:
    """The tiny experiment's adversarial SR 40 cloak of fold 1, exported."""
    from sercloak.cli import main as cli_main

    out = tmp_path_factory.mktemp("bundles") / "bundle"
    cli_main(["export", "--workdir", str(tiny_experiment.root), "--fold", "1",
              "--setting", "cloak_adversarial:40", "--out", str(out), "--quiet"])
    return out


@pytest.fixture(scope="session")
def label_bundle(tiny_experiment, tmp_path_factory) -> Path:
    """The tiny experiment's label-only design (`posteriors_label`: the emotion model on the
    device, which sends the label alone) of fold 1, exported."""
    from sercloak.attacks.suite import AttackConfig
    from sercloak.cli import main as cli_main
    from sercloak.experiment import ExperimentConfig, run_experiment

    run_experiment(tiny_experiment, [0, 1], tiny_train_configs(),
                   ExperimentConfig(design="posteriors", output="label",
                                    attacks=AttackConfig(families=("stats",))),
                   show_progress=False)
    out = tmp_path_factory.mktemp("bundles") / "label"
    cli_main(["export", "--workdir", str(tiny_experiment.root), "--fold", "1",
              "--setting", "posteriors_label", "--out", str(out), "--quiet"])
    return out


def comparison_of(wd, results: dict) -> Path:
    """The results.json a run's `results` went to (its comparison's)."""
    config = results["config"]
    return wd.layout.results(config["protocol"], config["folds"], config["seeds"])


def key_file(path: Path, text: str) -> Path:
    """An API key file as `sercloak serve` wants it: readable by its owner only."""
    path.touch(mode=0o600)
    path.write_text(text)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def signing_key(tmp_path_factory) -> tuple[Path, Path]:
    """(private, public) key files of a bundle exporter (`sercloak keygen`)."""
    from sercloak.cli import main as cli_main

    private = tmp_path_factory.mktemp("keys") / "exporter"
    cli_main(["keygen", "--out", str(private)])
    return private, private.with_name("exporter.pub")


@pytest.fixture(scope="session")
def signed_bundle(tiny_experiment, signing_key, tmp_path_factory) -> Path:
    """The same setting as `bundle`, signed by `signing_key`."""
    from sercloak.cli import main as cli_main

    out = tmp_path_factory.mktemp("bundles") / "signed"
    cli_main(["export", "--workdir", str(tiny_experiment.root), "--fold", "1",
              "--setting", "cloak_adversarial:40", "--out", str(out), "--quiet",
              "--sign-key", str(signing_key[0])])
    return out


# the shared test service takes many requests from one address: its rate limit is lifted
# (tests of the limit start services of their own)
UNLIMITED = ("--rate", "10000", "--burst", "10000")


@pytest.fixture(scope="session")
def server(bundle):
    """`sercloak serve` in its own process on a free port; stopped at the end."""
    yield from serving(bundle, *UNLIMITED)


def start(args: list[str], ready_url: str, log: Path, ssl_context=None) -> subprocess.Popen:
    """`sercloak ARGS` in a process of its own, its output appended to `log` (a file: a
    pipe nobody reads would fill up and stall it), returned once `ready_url` answers;
    RuntimeError with its log when it exits first or takes over 30 s."""
    with open(log, "ab") as output:  # the process keeps its own copy of the descriptor
        process = subprocess.Popen([sys.executable, "-m", "sercloak", *args], stdout=output,
                                   stderr=subprocess.STDOUT)
    for _ in range(300):
        try:
            urllib.request.urlopen(ready_url, timeout=1, context=ssl_context)
            return process
        except OSError:
            if process.poll() is not None:
                raise RuntimeError(log.read_text()) from None
            time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"`sercloak {args[0]}` did not start in 30 s: {log.read_text()}")


def serving(bundle: Path, *options: str, scheme: str = "http", ssl_context=None,
            log: Path | None = None):
    """Start `sercloak serve BUNDLE [options]` on a free port, yield its URL, stop it
    afterwards. Its output goes to `log` (one made here is removed at the end)."""
    port = free_port()
    own_log = log is None
    log = log or Path(tempfile.mkstemp(prefix="sercloak-serve-", suffix=".log")[1])
    url = f"{scheme}://127.0.0.1:{port}"
    process = start(["serve", "--bundle", str(bundle), "--port", str(port), *options],
                    url + "/healthz", log, ssl_context)
    yield url
    process.terminate()
    process.wait(timeout=10)
    if own_log:
        log.unlink(missing_ok=True)
