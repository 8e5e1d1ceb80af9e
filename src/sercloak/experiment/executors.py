"""Running units of work (`plan.py`): in this process, or as Ray tasks on a cluster.

Every executor takes the same list of units and keeps the same promises: a
unit whose outputs exist is skipped; a unit starts only when the units it
needs have finished; one progress bar over units, with the time left
forecast from the logged costs of the same work (`Forecast`); a
unit that fails is retried (`retries` times, Ray's default 2) and, if it
still fails, the units that need it are left out, every other unit still
runs, and the run ends with `UnitsFailed` naming them. Finished units are
files, so nothing finished is ever lost and the next run resumes.

`RayExecutor` needs the optional extra (``pip install -e '.[ray]'``). Each
unit is one task with `cpus_per_unit` CPUs (torch's thread count set to
match) and one GPU when the cluster has them; the workdir must be on storage
every node sees, checked at start (`check_shared_storage`).
"""

from __future__ import annotations

import json
import os
import re
import time
import traceback
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

from tqdm import tqdm

from ..device import ENV as DEVICE_ENV
from ..files import write_text

EXECUTORS = ("local", "ray")


class Unit(Protocol):
    name: str
    needs: tuple[str, ...]

    def outputs(self) -> list[Path]: ...
    def done(self) -> bool: ...
    def run(self) -> None: ...


class UnitsFailed(RuntimeError):
    """Some units failed after their retries; every other unit finished."""


@dataclass
class Record:
    """What running one unit cost: seconds of its last attempt, attempts made."""

    name: str
    needs: tuple[str, ...]
    seconds: float = 0.0
    attempts: int = 0
    status: str = "pending"  # done, skipped (outputs existed), failed, blocked
    phase: str = ""  # the `run` call it belonged to (its `desc`): phases run one after another


# tqdm's bar without its own estimate (which takes every unit to cost the same): the
# postfix holds the forecast from logged costs instead
BAR_FORMAT = "{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} [{elapsed}{postfix}]"


def without_seed_and_fold(name: str) -> str:
    """The name a unit shares with the same work on other seeds and folds:
    `score/test/seed1/fold3/cloak_sr60` -> `score/test/cloak_sr60`."""
    return re.sub(r"/(seed|fold)\d+", "", name)


def read_log(log: Path | None) -> list[dict]:
    """The records of a unit log (`Executor.run`'s `log`), [] when there is none yet; a
    line cut short by a killed run is passed over."""
    if log is None or not log.is_file():
        return []
    records = []
    for line in log.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


class Forecast:
    """The time left of one `run` call's units, from what each would cost: the mean logged
    seconds of the same work (`without_seed_and_fold`) in the same phase (earlier runs,
    interrupted ones too, and this one as it goes), else the mean of this phase's units
    finished so far; unknown until one of them is."""

    def __init__(self, todo: list[str], phase: str, history: list[dict], workers: int = 1):
        self.left, self.workers = list(todo), max(workers, 1)
        self.seconds: dict[str, list[float]] = {}
        for r in history:
            if r.get("phase") == phase and r.get("status") == "done":
                self.seconds.setdefault(without_seed_and_fold(r["name"]), []).append(r["seconds"])
        self.phase_seconds: list[float] = []

    def finished(self, record: Record) -> None:
        if record.name in self.left:
            self.left.remove(record.name)
        if record.status == "done":
            self.seconds.setdefault(without_seed_and_fold(record.name), []).append(record.seconds)
            self.phase_seconds.append(record.seconds)

    def _cost(self, name: str) -> float | None:
        same = self.seconds.get(without_seed_and_fold(name)) or self.phase_seconds
        return sum(same) / len(same) if same else None

    def seconds_left(self) -> float | None:
        """Seconds until the units left finish, shared among the workers; None when some
        unit's cost is not known yet."""
        costs = [self._cost(n) for n in self.left]
        if any(c is None for c in costs):
            return None
        return sum(costs) / self.workers

    def words(self) -> str:
        """What the progress bar shows beside units done / total."""
        if not self.left:
            return "done"
        left = self.seconds_left()
        if left is None:
            return "time left: after the first unit"
        return f"≈ {_duration(left)} left (logged unit costs)"


def _duration(seconds: float) -> str:
    minutes = round(seconds / 60)
    if minutes < 1:
        return f"{seconds:.0f} s"
    return f"{minutes} min" if minutes < 90 else f"{minutes / 60:.1f} h"


@dataclass
class Executor:
    retries: int = 0
    records: list[Record] = field(default_factory=list)  # every unit ever run, in order
    _phase: str = field(default="", repr=False)  # the `desc` of the `run` call under way
    _log: Path | None = field(default=None, repr=False)  # the `log` of that call
    _forecast: Forecast | None = field(default=None, repr=False)  # that call's time left

    def run(self, units: list[Unit], show_progress: bool = True, desc: str = "units",
            log: Path | None = None) -> None:
        """Run every unit not done, each after the units it needs (a needed unit that is
        not in `units` belongs to an earlier call and has finished). `log`, when given, is
        appended one JSON line per unit that ran (`Record`; `layout.Layout.unit_log`)."""
        self._phase, self._log = desc, log
        todo = [u for u in units if not u.done()]
        done = {u.name for u in units} - {u.name for u in todo}
        skipped = [self._record(u, status="skipped") for u in units if u.name in done]
        done |= {n for u in todo for n in u.needs} - {u.name for u in units}
        self._forecast = Forecast([u.name for u in todo], desc, read_log(log),
                                  self.workers() if todo else 1)
        with tqdm(total=len(units), initial=len(skipped), desc=desc, unit="unit",
                  disable=not show_progress, bar_format=BAR_FORMAT) as bar:
            bar.set_postfix_str(self._forecast.words(), refresh=False)
            failed = self._run(todo, done, bar)
        if failed:
            raise UnitsFailed("units failed (finished ones are kept; run again to resume): "
                              + "; ".join(f"{name}: {why}" for name, why in failed.items()))

    def _record(self, unit: Unit, **fields) -> Record:
        """A new record of `unit` in this `run` call's phase, kept in `records`."""
        record = Record(unit.name, unit.needs, phase=self._phase, **fields)
        self.records.append(record)
        return record

    def _ran(self, record: Record, bar) -> None:
        """A unit finished (done, or failed for good): its line goes to the log at once, so
        a run killed midway keeps the costs of what it finished. The driver alone writes
        the log, under any executor."""
        self._forecast.finished(record)
        bar.set_postfix_str(self._forecast.words(), refresh=False)
        bar.update(1)
        if self._log is None:
            return
        self._log.parent.mkdir(parents=True, exist_ok=True)
        with self._log.open("a", encoding="utf-8") as out:
            out.write(json.dumps({**asdict(record), "needs": list(record.needs),
                                  "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}) + "\n")

    def _run(self, todo: list[Unit], done: set[str], bar) -> dict[str, str]:
        raise NotImplementedError

    def workers(self) -> int:
        """How many units run at once (what divides the time left)."""
        return 1

    @staticmethod
    def _blocked(unit: Unit, failed: dict[str, str]) -> str | None:
        lost = [n for n in unit.needs if n in failed]
        return f"needs {', '.join(lost)}, which failed" if lost else None


def expected_wall(records: list[Record], workers: int) -> float:
    """Seconds the units that ran (`records`, with their measured costs) would take on
    `workers` workers: phase after phase; within one, the first free worker takes the
    unit that can start soonest (its needed units done). With a worker per unit this
    is the critical path."""
    phases = dict.fromkeys(r.phase for r in records)
    return sum(_phase_wall([r for r in records if r.phase == phase and r.status == "done"],
                           workers) for phase in phases)


def _phase_wall(ran: list[Record], workers: int) -> float:
    names, finish, free = {r.name for r in ran}, {}, [0.0] * workers
    waiting = list(ran)
    while waiting:  # the unit that can start soonest (plan order among equals)
        worker = min(range(workers), key=free.__getitem__)
        startable = [r for r in waiting if all(n in finish for n in r.needs if n in names)]
        starts = [max([free[worker]] + [finish[n] for n in r.needs if n in names])
                  for r in startable]
        i = starts.index(min(starts))
        unit = startable[i]
        finish[unit.name] = free[worker] = starts[i] + unit.seconds
        waiting.remove(unit)
    return max(finish.values(), default=0.0)


def _attempt(unit: Unit, threads: int | None = None) -> float:
    """Run `unit` once in this process; its wall seconds."""
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    started = time.perf_counter()
    unit.run()
    return time.perf_counter() - started


@dataclass
class LocalExecutor(Executor):
    """Every unit in this process, in plan order (today's single-machine run)."""

    def _run(self, todo, done, bar):
        failed: dict[str, str] = {}
        for unit in todo:
            record = self._record(unit)
            blocked = self._blocked(unit, failed)
            if blocked:
                record.status, failed[unit.name] = "blocked", blocked
                continue
            while record.status != "done":
                record.attempts += 1
                try:
                    record.seconds = _attempt(unit)
                    record.status = "done"
                except Exception as err:  # noqa: BLE001 - reported, the others go on
                    traceback.print_exc()  # where it failed, for the one who fixes it
                    if record.attempts > self.retries:
                        record.status, failed[unit.name] = "failed", f"{type(err).__name__}: {err}"
                        break
            self._ran(record, bar)
        return failed


@dataclass
class RayExecutor(Executor):
    """Every unit a Ray task; a unit starts when the units it needs have finished."""

    address: str | None = None  # a running cluster (`ray start --head`), or None: start one
    cpus_per_unit: int = 1
    gpus_per_unit: float | None = None  # None: 1 when the cluster has GPUs, else 0
    retries: int = 2
    init_options: dict = field(default_factory=dict)  # e.g. num_cpus for a local test cluster
    storage: Path | None = None  # checked to be shared by every node (the workdir)
    _checked: bool = field(default=False, repr=False)

    def _ray(self):
        try:
            import ray
        except ImportError as err:
            raise ImportError("--executor ray needs Ray: pip install -e '.[ray]' "
                              "(pinned in constraints.txt)") from err
        if not ray.is_initialized():
            env = {k: os.environ[k] for k in (DEVICE_ENV, "PYTHONPATH") if k in os.environ}
            ray.init(address=self.address, log_to_driver=False,
                     runtime_env={"env_vars": env} if env else None, **self.init_options)
        if self.storage is not None and not self._checked:
            check_shared_storage(self.storage)
            self._checked = True
        return ray

    def workers(self) -> int:
        """The units the cluster runs at once: its CPUs over each unit's."""
        cpus = self._ray().cluster_resources().get("CPU", self.cpus_per_unit)
        return max(1, int(cpus // self.cpus_per_unit))

    def _run(self, todo, done, bar):
        ray = self._ray()
        gpus = self.gpus_per_unit
        if gpus is None:
            gpus = 1 if ray.cluster_resources().get("GPU", 0) > 0 else 0
        task = ray.remote(_attempt).options(num_cpus=self.cpus_per_unit, num_gpus=gpus,
                                            max_retries=self.retries, retry_exceptions=True)
        waiting, running, failed = list(todo), {}, {}
        records = {u.name: self._record(u, attempts=1) for u in todo}
        while waiting or running:
            for unit in list(waiting):
                blocked = self._blocked(unit, failed)
                if blocked:
                    waiting.remove(unit)
                    records[unit.name].status, failed[unit.name] = "blocked", blocked
                elif all(n in done for n in unit.needs):
                    waiting.remove(unit)
                    running[task.remote(unit, self.cpus_per_unit)] = unit
            if not running:
                continue
            ready, _ = ray.wait(list(running), num_returns=1)
            unit = running.pop(ready[0])
            record = records[unit.name]
            try:
                record.seconds, record.status = ray.get(ready[0]), "done"
                done.add(unit.name)
            except Exception as err:  # noqa: BLE001 - after Ray's retries: report, go on
                record.status, failed[unit.name] = "failed", _reason(err)
                record.attempts = self.retries + 1
            self._ran(record, bar)
        return failed


def _reason(err: Exception) -> str:
    """The unit's own error out of Ray's wrapper."""
    cause = getattr(err, "cause", None) or err
    return f"{type(cause).__name__}: {str(cause).strip().splitlines()[-1][:300]}"


def check_shared_storage(root: Path) -> None:
    """Refuse a cluster whose nodes do not all see `root`: each node reads a marker the
    driver wrote and writes one of its own, which the driver then reads."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from ..layout import Layout

    layout = Layout(root)
    token = uuid.uuid4().hex
    write_text(layout.storage_marker(token, "driver"), token)

    def visit(node: str) -> bool:
        if not layout.storage_marker(token, "driver").is_file():
            return False
        write_text(layout.storage_marker(token, node), token)
        return True

    nodes = [n["NodeID"] for n in ray.nodes() if n.get("Alive")]
    remote = ray.remote(visit)
    seen = ray.get([remote.options(num_cpus=0, scheduling_strategy=NodeAffinitySchedulingStrategy(
        node, soft=False)).remote(node) for node in nodes])
    blind = [n for n, ok in zip(nodes, seen, strict=True)
             if not ok or not layout.storage_marker(token, n).is_file()]
    for node in ["driver", *nodes]:
        layout.storage_marker(token, node).unlink(missing_ok=True)
    if blind:
        raise RuntimeError(
            f"{root} is not on storage every Ray node sees ({len(blind)} of {len(nodes)} "
            f"nodes cannot read or write it, e.g. node {blind[0][:12]}): put the workdir on a "
            f"shared file system mounted at the same path on every node (docs/cluster.md)")


def make_executor(name: str, storage: Path | None = None, address: str | None = None,
                  cpus_per_unit: int = 1) -> Executor:
    """The executor the CLI's --executor names."""
    if name == "local":
        return LocalExecutor()
    if name == "ray":
        return RayExecutor(address=address, cpus_per_unit=cpus_per_unit, storage=storage)
    raise ValueError(f"unknown executor {name!r} (known: {', '.join(EXECUTORS)})")
