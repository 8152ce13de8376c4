"""The import arrows point one way (README, "Layout"): read from the source, so a new import that breaks
the rule fails here, with the file and line.

1. a room imports only rooms of its own layer or below (no stage imports a later stage);
2. no function-level import of another room (a dependency between rooms is stated at the top);
3. no import cycle between modules;
4. ``models/`` and ``sampling/`` import neither Lightning nor Hydra.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

# Layer of each room (a top-level module or package of lipsync); a room may import rooms of its layer
# or lower. The stages run prepare (3) -> train (4) -> infer (5) -> evaluate (6); the shared rooms sit
# under them and the tools that drive several stages over them.
LAYERS = {
    "media": 0, "assets": 0, "cli": 0, "terminal": 0, "benchresults": 0, "clock": 0, "stats": 0,
    "models": 1,
    "data": 2, "sampling": 2,
    "prepare": 3, "synth": 3,
    "training": 4, "train": 4,
    "infer": 5,
    "evaluate": 6,
    "app": 7, "summary": 7, "demo": 8, "finetune": 8,
}
PLAIN_PYTORCH = {"models", "sampling"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def imports(path: Path) -> list[tuple[int, str, bool]]:
    """(line, imported lipsync module, at module level) of every import in ``path``."""
    tree = ast.parse(path.read_text())
    top = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [f"{node.module}.{a.name}" for a in node.names]  # a submodule, or a name in the module
        else:
            continue
        found += [(node.lineno, n, id(node) in top) for n in names
                  if n.split(".")[0] in ("lipsync", "lightning", "hydra", "omegaconf")]
    return found


FILES = sorted(SRC.joinpath("lipsync").rglob("*.py"))


def test_every_room_has_a_layer() -> None:
    rooms = {room(module_name(f)) for f in FILES} - {""}
    assert rooms <= set(LAYERS), f"rooms without a layer: {sorted(rooms - set(LAYERS))}"


@pytest.mark.parametrize("path", FILES, ids=lambda p: module_name(p))
def test_imports_point_down_and_are_stated_at_the_top(path: Path) -> None:
    me = room(module_name(path))
    for line, target, at_top in imports(path):
        if not target.startswith("lipsync") or room(target) in ("", me):
            continue
        where = f"{path.relative_to(SRC)}:{line} imports {target}"
        assert LAYERS[room(target)] <= LAYERS[me], f"{where}: {room(target)} is a later stage than {me}"
        assert at_top, f"{where} inside a function: state the dependency at the top of the module"


@pytest.mark.parametrize("room_name", sorted(PLAIN_PYTORCH))
def test_models_and_sampling_are_plain_pytorch(room_name: str) -> None:
    for path in SRC.joinpath("lipsync", room_name).rglob("*.py"):
        for line, target, _ in imports(path):
            assert target.split(".")[0] not in ("lightning", "hydra", "omegaconf"), \
                f"{path.relative_to(SRC)}:{line} imports {target}"


def test_no_import_cycle() -> None:
    modules = {module_name(f): f for f in FILES}
    graph = {}
    for name, path in modules.items():
        targets = set()
        for _, target, _ in imports(path):  # function-level imports too: a deferred import is still an arrow
            if target.startswith("lipsync"):
                while target not in modules and "." in target:
                    target = target.rsplit(".", 1)[0]  # `from pkg.mod import name` -> pkg.mod
                if target in modules and target != name:
                    targets.add(target)
        graph[name] = targets
    done: set[str] = set()

    def visit(node: str, stack: list[str]) -> None:
        if node in stack:
            raise AssertionError(f"import cycle: {' -> '.join(stack[stack.index(node):] + [node])}")
        if node in done or node in stack:
            return
        for nxt in sorted(graph[node]):
            visit(nxt, stack + [node])
        done.add(node)

    for name in sorted(graph):
        visit(name, [])
