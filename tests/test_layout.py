"""The layout's promise: the pipeline's stages import downwards only, and no two modules
import each other, at the top of a file or inside a function (imports for type
annotations alone, under `if TYPE_CHECKING:`, run nothing and are left out)."""

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
    {"tasks"},
    {"decoding"},
    {"mining", "judge"},  # the judge reads mined files; neither imports the other
    {"evaluation"},
    {"costmodel", "demo", "serve"},
    {"cli"},
    {"__main__"},
]
LEVEL = {stage: level for level, stages in enumerate(STAGES) for stage in stages}


def module_imports() -> dict[str, set[str]]:
    """{module: the autojudge modules it imports}, function-level imports included."""
    imports = {}
    for path in PACKAGE.rglob("*.py"):
        module = ".".join(("autojudge", *path.relative_to(PACKAGE).with_suffix("").parts)).removesuffix(".__init__")
        if module == "autojudge":  # the package's __init__: its version, nothing of a stage
            continue
        tree = ast.parse(path.read_text())
        annotations_only = {id(n) for block in ast.walk(tree) if _is_type_checking(block) for n in ast.walk(block)}
        names = set()
        for node in ast.walk(tree):
            if id(node) in annotations_only:
                continue
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("autojudge"):
                names.add(node.module)
            elif isinstance(node, ast.Import):
                names.update(a.name for a in node.names if a.name.startswith("autojudge"))
        imports[module] = names - {"autojudge", module}
    return imports


def _is_type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"


def stage(module: str) -> str:
    return module.split(".")[1]


def test_every_module_belongs_to_a_stage():
    assert {stage(m) for m in module_imports()} <= set(LEVEL)


def test_no_stage_imports_one_above_or_beside_it():
    upwards = sorted(f"{m} imports {n}" for m, names in module_imports().items() for n in names
                     if stage(m) != stage(n) and LEVEL[stage(n)] >= LEVEL[stage(m)])
    assert upwards == []


def test_no_two_modules_import_each_other():
    imports = module_imports()
    mutual = sorted(f"{a} <-> {b}" for a, names in imports.items() for b in names
                    if a < b and a in imports.get(b, set()))
    assert mutual == []
