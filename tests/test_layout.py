"""The layout's promise: the pipeline's stages import downwards only, and no chain of
modules leads back to where it started, however long, at the top of a file or inside a
function (imports for type annotations alone, under `if TYPE_CHECKING:`, run nothing
and are left out)."""

from __future__ import annotations

import ast
from pathlib import Path

import autojudge

PACKAGE = Path(autojudge.__file__).parent

# Lowest first. A stage may import any stage below it, never one above or beside it.
STAGES = [
    {"errors"},
    {"artifacts", "prompting", "runfiles"},
    {"models"},
    {"workers"},  # threads and Ray workers over a pair, for mining and evaluation alike
    {"decoding"},
    {"tasks"},
    {"mining", "judge"},  # the judge reads mined files; neither imports the other
    {"evaluation"},
    {"demo", "serve", "vllm_plugin"},  # vllm_plugin: the judge inside vLLM (the only importer of vllm)
    {"cli"},
    {"__main__"},
]
LEVEL = {stage: level for level, stages in enumerate(STAGES) for stage in stages}


def module_imports(package: Path = PACKAGE, name: str = "autojudge") -> dict[str, set[str]]:
    """{module: the modules of the package it imports}, function-level imports included."""
    imports = {}
    for path in package.rglob("*.py"):
        module = ".".join((name, *path.relative_to(package).with_suffix("").parts)).removesuffix(".__init__")
        if module == name:  # the package's __init__: its version, nothing of a stage
            continue
        tree = ast.parse(path.read_text())
        annotations_only = {id(n) for block in ast.walk(tree) if _is_type_checking(block) for n in ast.walk(block)}
        names = set()
        for node in ast.walk(tree):
            if id(node) in annotations_only:
                continue
            if isinstance(node, ast.ImportFrom) and node.module and _within(node.module, name):
                names.add(node.module)
            elif isinstance(node, ast.Import):
                names.update(a.name for a in node.names if _within(a.name, name))
        imports[module] = names - {name, module}
    return imports


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def _is_type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"


def import_cycles(imports: dict[str, set[str]]) -> list[list[str]]:
    """Every group of modules that import each other through some chain, of any length,
    each sorted (Tarjan's strongly connected components of more than one module)."""
    order: dict[str, int] = {}
    lowest: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles = []

    def visit(module: str) -> None:
        order[module] = lowest[module] = len(order)
        stack.append(module)
        on_stack.add(module)
        for imported in imports.get(module, ()):
            if imported not in order:
                visit(imported)
                lowest[module] = min(lowest[module], lowest[imported])
            elif imported in on_stack:
                lowest[module] = min(lowest[module], order[imported])
        if lowest[module] == order[module]:
            group = []
            while not group or group[-1] != module:
                group.append(stack.pop())
                on_stack.discard(group[-1])
            if len(group) > 1:
                cycles.append(sorted(group))

    for module in sorted(imports):
        if module not in order:
            visit(module)
    return sorted(cycles)


def stage(module: str) -> str:
    return module.split(".")[1]


def test_every_module_belongs_to_a_stage():
    assert {stage(m) for m in module_imports()} <= set(LEVEL)


def test_no_stage_imports_one_above_or_beside_it():
    upwards = sorted(f"{m} imports {n}" for m, names in module_imports().items() for n in names
                     if stage(m) != stage(n) and LEVEL[stage(n)] >= LEVEL[stage(m)])
    assert upwards == []


def test_no_modules_import_each_other_through_any_chain():
    assert import_cycles(module_imports()) == []


def test_a_cycle_of_three_files_is_found(tmp_path):
    package = tmp_path / "loop"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from loop.b import B\n")
    (package / "b.py").write_text("def f():\n    import loop.c\n")  # inside a function counts too
    (package / "c.py").write_text("from loop import a\nfrom loop.a import A\n")
    (package / "d.py").write_text("from loop.a import A\n")  # imports the cycle, is not in it
    (package / "e.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from loop.d import D\n")
    (package / "f.py").write_text("import loop.e\n")
    imports = module_imports(package, "loop")
    assert import_cycles(imports) == [["loop.a", "loop.b", "loop.c"]]
    (package / "c.py").write_text("X = 1\n")  # the chain broken: no cycle left
    assert import_cycles(module_imports(package, "loop")) == []
