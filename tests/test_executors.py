"""Units of work and their executors: order, skipping, retries, resuming; the same results
under Ray as in one process; every file a grid writes is one the layout names."""

from __future__ import annotations

import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from sercloak.attacks.suite import AttackConfig
from sercloak.cloak import CloakConfig
from sercloak.cloak.training import CloakTrainConfig
from sercloak.corpora.synthetic import SyntheticSpec
from sercloak.data import Workdir
from sercloak.experiment import ExperimentConfig, run_experiment
from sercloak.experiment.executors import (
    Forecast,
    LocalExecutor,
    RayExecutor,
    Record,
    UnitsFailed,
    read_log,
)
from sercloak.prepare import prepare
from sercloak.train import TrainConfig


@dataclass(frozen=True)
class Step:
    """A toy unit: writes `<folder>/<name>.out` holding the outputs it read; fails while
    `<folder>/<name>.fail` holds a positive count (decremented at each failure)."""

    folder: Path
    name: str
    needs: tuple[str, ...] = ()

    def outputs(self) -> list[Path]:
        return [self.folder / f"{self.name}.out"]

    def done(self) -> bool:
        return self.outputs()[0].is_file()

    def run(self) -> None:
        fail = self.folder / f"{self.name}.fail"
        if fail.is_file() and int(fail.read_text()) > 0:
            fail.write_text(str(int(fail.read_text()) - 1))
            raise RuntimeError(f"{self.name} failed on purpose")
        read = [(self.folder / f"{n}.out").read_text() for n in self.needs]
        (self.folder / f"{self.name}.log").open("a").write("ran\n")
        self.outputs()[0].write_text(" ".join([self.name, *read]))


def steps(folder: Path) -> list[Step]:
    """a -> b -> d, c -> d: d reads b's and c's outputs."""
    return [Step(folder, "a"), Step(folder, "b", ("a",)), Step(folder, "c"),
            Step(folder, "d", ("b", "c"))]


def runs(folder: Path, name: str) -> int:
    log = folder / f"{name}.log"
    return len(log.read_text().splitlines()) if log.is_file() else 0


@pytest.fixture(scope="module")
def ray_cluster():
    """A local Ray of 2 CPUs for this module, or skip saying how to get Ray."""
    ray = pytest.importorskip("ray", reason="Ray is an optional extra: pip install -e '.[ray]'")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    # the toy units live in this test module, which Ray's workers cannot import
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield
    ray.shutdown()


@pytest.mark.parametrize("kind", ["local", "ray"])
def test_units_run_in_order_retry_and_resume(tmp_path, kind, request):
    if kind == "ray":
        request.getfixturevalue("ray_cluster")
    new = (lambda: LocalExecutor(retries=1)) if kind == "local" else \
        (lambda: RayExecutor(retries=1))
    (tmp_path / "c.fail").write_text("1")  # c fails once: retried, then done
    executor = new()
    executor.run(steps(tmp_path), show_progress=False)
    assert (tmp_path / "d.out").read_text() == "d b a c"
    assert {r.name: r.status for r in executor.records} == dict.fromkeys("abcd", "done")
    assert runs(tmp_path, "c") == 1 and (tmp_path / "c.fail").read_text() == "0"

    # an interrupted run: d's output lost, b fails for good this time
    (tmp_path / "d.out").unlink()
    (tmp_path / "b.out").unlink()
    (tmp_path / "b.fail").write_text("5")
    executor = new()
    with pytest.raises(UnitsFailed, match="b: RuntimeError: b failed on purpose"):
        executor.run(steps(tmp_path), show_progress=False)
    status = {r.name: r.status for r in executor.records}
    assert status == {"a": "skipped", "c": "skipped", "b": "failed", "d": "blocked"}
    assert not (tmp_path / "d.out").exists()  # never run on a missing input
    assert (tmp_path / "a.out").is_file() and runs(tmp_path, "a") == 1  # finished: kept

    # resumed: only what is missing runs
    (tmp_path / "b.fail").unlink()
    new().run(steps(tmp_path), show_progress=False)
    assert (tmp_path / "d.out").read_text() == "d b a c"
    assert [runs(tmp_path, n) for n in "abcd"] == [1, 2, 1, 2]


@dataclass(frozen=True)
class Killed(Step):
    """A unit during which the run is killed (Ctrl-C, the end of a session)."""

    def run(self) -> None:
        raise KeyboardInterrupt


def test_a_killed_run_keeps_the_costs_of_what_it_finished(tmp_path):
    """Each unit's cost is logged when it finishes, not when its phase does: the unit log
    adds up over runs that were killed and resumed."""
    log = tmp_path / "units.jsonl"
    with pytest.raises(KeyboardInterrupt):
        LocalExecutor().run([Step(tmp_path, "a"), Killed(tmp_path, "b", ("a",))],
                            show_progress=False, desc="phase one", log=log)
    (line,) = [json.loads(line) for line in log.read_text().splitlines()]
    assert line["name"] == "a" and line["status"] == "done" and line["phase"] == "phase one"
    LocalExecutor().run([Step(tmp_path, "a"), Step(tmp_path, "b", ("a",))],
                        show_progress=False, desc="phase one", log=log)
    assert [json.loads(line)["name"] for line in log.read_text().splitlines()] == ["a", "b"]


# -- a tiny synthetic grid under both executors --------------------------------------------

CONFIGS = {t: TrainConfig(task=t, max_epochs=1, batch_size=16, lr=1e-3)
           for t in ("emotion", "gender")}
GRID = ExperimentConfig(cloak=CloakConfig(kind="temporal"),
                        cloak_train=CloakTrainConfig(perturbation_epochs=1, suppression_epochs=1,
                                                     batch_size=16),
                        attacks=AttackConfig(families=("cnn", "stats"), informed_epochs=1),
                        ratios=(0, 40), variants=("plain",), adapt_epochs=1, select=True)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("grid")
    spec = SyntheticSpec(n_speakers=10, utterances_per_emotion=2)
    prepare({"synthetic": root.parent / "grid-corpus"}, root,
            loader_options={"synthetic": {"spec": spec}}, show_progress=False)
    return root


def run_grid(prepared: Path, copy: Path, executor) -> dict:
    shutil.copytree(prepared, copy)
    return run_experiment(Workdir.open(copy), [0, 1], CONFIGS, GRID, show_progress=False,
                          executor=executor)


def figures(results: dict) -> dict:
    """The figures of every entry and of the clean reference that a run must reproduce."""
    out = {"clean": results["baseline"]["emotion"]["uar"]["folds"]}
    for e in results["cloak"]:
        out[e["setting"]] = [e["emotion"]["uar"]["folds"], e["emotion_drop"]["folds"],
                             e["gender_privacy"]["uar_speaker"]["folds"],
                             e["validation"]["emotion"]["uar"]["folds"]]
    return out


def test_ray_gives_the_local_results_and_every_file_is_the_layouts(prepared, tmp_path,
                                                                   ray_cluster):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the Ray tasks' thread count: the same arithmetic
    try:
        local = run_grid(prepared, tmp_path / "local", LocalExecutor())
    finally:
        torch.set_num_threads(threads)
    executor = RayExecutor(cpus_per_unit=1, storage=tmp_path / "ray")
    shutil.copytree(prepared, tmp_path / "ray")
    distributed = run_experiment(Workdir.open(tmp_path / "ray"), [0, 1], CONFIGS, GRID,
                                 show_progress=False, executor=executor)
    # the same units, each seeded by the seed and fold, on one thread each: the same
    # arithmetic, so the same figures up to float summation noise (1e-6 points)
    a, b = figures(local), figures(distributed)
    assert a.keys() == b.keys() and len(a) == 2  # the clean reference and the chosen point
    for key in a:
        assert torch.allclose(torch.tensor(a[key], dtype=torch.float64),
                              torch.tensor(b[key], dtype=torch.float64), atol=1e-6), key
    ran = {r.name.split("/")[0] for r in executor.records if r.status == "done"}
    assert ran == {"baseline", "train", "clean", "score"}
    costs = [json.loads(line) for line in Workdir.open(tmp_path / "ray").layout.unit_log(
        "paper").read_text().splitlines()]
    # one line per unit that ran, written as it finished (Ray: in the order they finished)
    assert sorted(c["name"] for c in costs) == sorted(
        r.name for r in executor.records if r.status == "done")
    assert all(c["seconds"] > 0 and c["status"] == "done" for c in costs)

    # every file the grid wrote is one the layout names
    wd = Workdir.open(tmp_path / "ray")
    strays = [p for p in wd.root.rglob("*") if p.is_file() and wd.layout.kind_of(p) is None]
    assert strays == []
    kinds = {wd.layout.kind_of(p) for p in wd.root.rglob("*") if p.is_file()}
    assert {"model", "setting", "clean scores", "comparison", "unit log"} <= kinds
    assert not wd.layout.storage_check().exists() or not any(wd.layout.storage_check().iterdir())

    # resumed under the other executor: nothing to do, the same results
    again = LocalExecutor()
    rerun = run_experiment(wd, [0, 1], CONFIGS, GRID, show_progress=False, executor=again)
    assert {r.status for r in again.records} == {"skipped"}
    assert len(wd.layout.unit_log("paper").read_text().splitlines()) == len(costs)  # none ran
    assert figures(rerun) == figures(distributed)
    assert json.loads(wd.layout.results("paper", [0, 1], [0]).read_text())["cloak"] == rerun[
        "cloak"]


def test_the_cli_refuses_ray_without_the_extra_or_a_cuda_it_lacks(tmp_path, monkeypatch,
                                                                  capsys):
    from sercloak.cli import main

    if not torch.cuda.is_available():
        with pytest.raises(SystemExit):
            main(["baselines", "--workdir", str(tmp_path), "--device", "cuda"])
        assert "no CUDA device" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "ray", None)  # as if the extra were not installed
    with pytest.raises(ImportError, match=r"pip install -e '\.\[ray\]'"):
        RayExecutor().run([Step(tmp_path, "a")], show_progress=False)


def test_expected_wall_time_from_unit_costs():
    from sercloak.experiment.executors import Record, expected_wall

    def rec(name, seconds, needs=(), phase="p"):
        return Record(name, needs, seconds, 1, "done", phase)

    plan = [rec("a", 4), rec("b", 1, ("a",)), rec("c", 2), rec("d", 3, ("b", "c")),
            rec("e", 5, phase="q"), Record("f", (), 0, 0, "skipped", "q")]
    assert expected_wall(plan, 1) == 4 + 1 + 2 + 3 + 5  # one worker: the sum
    assert expected_wall(plan, 100) == (4 + 1 + 3) + 5  # the critical path, phase by phase
    assert expected_wall(plan, 2) == 8 + 5  # a, c side by side; b after a; d after b and c


def test_time_left_comes_from_the_logged_costs_of_units_of_the_same_kind(tmp_path):
    log = tmp_path / "units.jsonl"
    history = [{"name": f"score/test/seed0/fold{f}/cloak_sr60", "phase": "cloak on test",
                "status": "done", "seconds": 100.0} for f in (0, 1)]
    history += [{"name": "score/test/seed0/fold0/cloak_sr60", "phase": "other on test",
                 "status": "done", "seconds": 9000.0},  # another method's: not this one's
                {"name": "score/test/seed0/fold0/cloak_sr0", "phase": "cloak on test",
                 "status": "failed", "seconds": 9000.0}]  # failed: its cost says nothing
    log.write_text("\n".join(json.dumps(r) for r in history) + "\n{cut short")
    todo = [f"score/test/seed1/fold{f}/cloak_sr60" for f in (0, 1, 2)]
    forecast = Forecast(todo, "cloak on test", read_log(log), workers=2)
    assert forecast.seconds_left() == pytest.approx(150.0)  # 3 units of 100 s on 2 workers
    assert forecast.words() == "≈ 2 min left (logged unit costs)"
    # a kind never logged: unknown until a unit of the phase finishes, then the phase's mean
    fresh = Forecast(["train/seed0/fold0/a", "train/seed0/fold1/a", "clean/test/seed0/fold0"],
                     "cloak on test", [], workers=1)
    assert fresh.seconds_left() is None and "after the first unit" in fresh.words()
    fresh.finished(Record("train/seed0/fold0/a", (), seconds=40.0, status="done"))
    assert fresh.seconds_left() == pytest.approx(80.0)
    fresh.finished(Record("clean/test/seed0/fold0", (), seconds=10.0, status="done"))
    assert fresh.seconds_left() == pytest.approx(40.0)  # train/a's own cost, not the mean
    fresh.finished(Record("train/seed0/fold1/a", (), status="failed"))
    assert fresh.words() == "done"


def test_a_run_logs_what_its_forecast_reads(tmp_path):
    """The executor's log feeds the next run's forecast (resumed runs estimate at once)."""
    log = tmp_path / "units.jsonl"
    LocalExecutor().run(steps(tmp_path), show_progress=False, desc="toy", log=log)
    names = [r["name"] for r in read_log(log)]
    assert names == ["a", "b", "c", "d"]
    again = Forecast(names, "toy", read_log(log))
    assert again.seconds_left() is not None
