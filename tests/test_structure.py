"""The house's rules, checked: one owner per path, no import circle, short functions."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "sercloak"
# the owners of file and folder names: a workdir's (layout.py), a bundle's (serving/bundle.py),
# the page's (serving/page.py), temporary files (files.py), and the corpora's own layouts and
# the speaker encoder's installed weights (what others wrote)
OWNERS = ("layout.py", "serving/bundle.py", "serving/page.py", "files.py", "corpora/",
          "attacks/speaker_encoder.py")
# a path joined with a literal name, or a name derived from another path
JOIN = re.compile(r"""[\w)\]] / f?["']|\.with_name\(|\.with_suffix\(""")
MAX_FUNCTION_LINES = 60


def modules():
    for file in sorted(PACKAGE.rglob("*.py")):
        yield file, file.relative_to(PACKAGE).as_posix()


def test_no_path_is_joined_outside_its_owner():
    joins = [f"{name}:{number}: {line.strip()}"
             for file, name in modules() if not name.startswith(OWNERS)
             for number, line in enumerate(file.read_text().splitlines(), 1)
             if JOIN.search(line.split("#")[0])]
    assert not joins, "ask layout.py or serving/bundle.py for these paths:\n" + "\n".join(joins)


def module_name(name: str) -> str:
    return "sercloak." + name.removesuffix(".py").removesuffix("/__init__").replace("/", ".")


def imports(file: Path, name: str) -> set[str]:
    """The package's modules `file` imports (type-only imports too)."""
    package = module_name(name).rsplit(".", 1)[0] if not name.endswith("__init__.py") \
        else module_name(name)
    found = set()
    for node in ast.walk(ast.parse(file.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package.split(".")
            base = base[: len(base) - node.level + 1] if node.level else []
            target = ".".join([*base, *(node.module.split(".") if node.module else [])])
            for alias in node.names:  # `from . import x` may name a module
                candidates = (f"{target}.{alias.name}", target)
                found.add(next((c for c in candidates if c in KNOWN), target))
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
    return {m for m in found if m in KNOWN}


KNOWN = {module_name(name) for _, name in modules()}


def test_the_import_graph_has_no_circle():
    graph = {module_name(name): imports(file, name) for file, name in modules()}
    for module in graph:  # a package is its __init__; a submodule does not import its parent
        graph[module] = {m for m in graph[module] if not module.startswith(m + ".")}
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(module: str) -> None:
        state[module] = 1
        path.append(module)
        for target in sorted(graph.get(module, ())):
            if state.get(target) == 1:
                cycle = path[path.index(target):] + [target]
                raise AssertionError("import circle: " + " -> ".join(cycle))
            if target not in state:
                visit(target)
        path.pop()
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module)


def test_no_function_needs_a_scroll_bar():
    long = [f"{name}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
            for file, name in modules()
            for node in ast.walk(ast.parse(file.read_text()))
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
            and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES]
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines:\n" + "\n".join(long)


def floors() -> dict[str, int]:
    """Each module's floor in the import graph: 0 imports nothing of the package, else one
    above the highest module it imports."""
    graph = {module_name(name): imports(file, name) for file, name in modules()}
    for module in graph:
        graph[module] = {m for m in graph[module] if not module.startswith(m + ".")}
    floor: dict[str, int] = {}

    def of(module: str) -> int:
        if module not in floor:
            floor[module] = 1 + max((of(m) for m in graph[module]), default=-1)
        return floor[module]

    return {module: of(module) for module in graph}


class Walk:
    """The calls that hand a workdir on, while `run` runs: each from the nearest function
    that held one to a function that receives one (as an argument, as `self`, or as the
    `wd` of an object it is given: a fold's runner, a unit of work; a unit opens the
    workdir again from its path). A call into a module on a higher floor than its caller's
    is a climb back up: a low module reaching into a higher one through the object it was
    given."""

    def __init__(self, workdir_type: type):
        self.workdir_type, self.edges, self.holding = workdir_type, set(), {}

    def is_workdir(self, value) -> bool:
        return isinstance(value, self.workdir_type) or isinstance(
            getattr(value, "wd", None), self.workdir_type)

    def holds(self, frame) -> bool:
        code = frame.f_code
        count = code.co_argcount + code.co_kwonlyargcount
        return frame.f_globals.get("__name__", "").startswith("sercloak") and any(
            self.is_workdir(frame.f_locals.get(name)) for name in code.co_varnames[:count])

    def profile(self, frame, event, arg) -> None:
        if event == "return":
            self.holding.pop(id(frame), None)
        if event != "call" or not self.holds(frame):
            return
        caller = frame.f_back
        while caller is not None and id(caller) not in self.holding:
            caller = caller.f_back
        if caller is not None:
            self.edges.add((self.name(caller), self.name(frame)))
        self.holding[id(frame)] = frame

    @staticmethod
    def name(frame) -> tuple[str, str]:
        return frame.f_globals["__name__"], frame.f_code.co_qualname

    def run(self, function, *args, **kwargs):
        sys.setprofile(self.profile)
        try:
            return function(*args, **kwargs)
        finally:
            sys.setprofile(None)

    def steps(self, root: str, floor: dict[str, int]) -> tuple[int, int]:
        """(stays in one module, climbs back up) of the calls below the function `root`."""
        below, reached = set(), {e for e in self.edges if e[0][1] == root}
        while reached - below:
            below |= reached
            reached = {e for e in self.edges for b in below if e[0] == b[1]}
        stays = sum(a[0] == b[0] for a, b in below)
        climbs = sum(floor[b[0]] > floor[a[0]] for a, b in below)
        return stays, climbs


def test_a_workdir_walks_down_the_pipeline(tmp_path):
    """run_experiment hands its workdir down the layers, climbing back up at most 3 times
    (baselines.train_fold at most 5): each climb is a low module reaching into a higher one."""
    from sercloak.attacks.suite import AttackConfig
    from sercloak.cloak.training import CloakTrainConfig
    from sercloak.corpora.synthetic import SyntheticSpec
    from sercloak.data import Workdir
    from sercloak.experiment import ExperimentConfig, run_experiment
    from sercloak.prepare import prepare
    from sercloak.train import TrainConfig

    prepare({"synthetic": tmp_path / "corpus"}, tmp_path,
            loader_options={"synthetic": {"spec": SyntheticSpec(n_speakers=10,
                                                                utterances_per_emotion=1)}},
            show_progress=False)
    wd = Workdir.open(tmp_path)
    configs = {t: TrainConfig(task=t, max_epochs=1, batch_size=16) for t in ("emotion", "gender")}
    cfg = ExperimentConfig(cloak_train=CloakTrainConfig(perturbation_epochs=1,
                                                        suppression_epochs=1, batch_size=16),
                           attacks=AttackConfig(families=("stats",)), ratios=(0,),
                           variants=("plain",))
    walk = Walk(Workdir)
    walk.run(run_experiment, wd, [0], configs, cfg, show_progress=False)
    floor = floors()
    for root, most in (("run_experiment", 3), ("train_fold", 5)):
        stays, climbs = walk.steps(root, floor)
        up = sorted(f"{a[0]}.{a[1]} -> {b[0]}.{b[1]}" for a, b in walk.edges
                    if floor[b[0]] > floor[a[0]])
        print(f"{root}: {stays} stays, {climbs} climbs")
        assert climbs <= most, f"{root}: {climbs} climbs back up:\n" + "\n".join(up)
