"""The house's rules, checked: one owner per path, no import circle, short functions."""

from __future__ import annotations

import ast
import re
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
