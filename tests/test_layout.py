"""The layout: three packages that stack, warm_mini (the method) <- warm_pipeline (a run of it) <- warm_eval
(its measurements), and a README whose function names exist."""

import ast
import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ORDER = ("warm_mini", "warm_pipeline", "warm_eval")


def imported_packages(path: Path) -> set[str]:
    """The top-level names a module imports, at any depth of its code."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", ORDER)
def test_a_package_imports_only_the_ones_before_it(package):
    later = set(ORDER[ORDER.index(package) + 1 :])
    offenders = {p.name: sorted(imported_packages(p) & later) for p in (ROOT / package).glob("*.py")}
    assert not {k: v for k, v in offenders.items() if v}


def test_the_import_reader_sees_nested_imports(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("import os\n\ndef f():\n    from warm_eval.report import pyplot\n    import warm_pipeline.cli\n")
    assert imported_packages(module) == {"os", "warm_eval", "warm_pipeline"}


def test_every_function_the_readme_names_exists():
    """The README's `warm_mini.x.y` names (the idea -> function table, among others) resolve to real objects."""
    names = set(re.findall(r"`(warm_(?:mini|pipeline|eval)(?:\.\w+)+)`", (ROOT / "README.md").read_text()))
    assert len(names) >= 15
    missing = []
    for name in sorted(names):
        parts = name.split(".")
        module = importlib.import_module(".".join(parts[:2]))
        obj = module
        for attr in parts[2:]:
            obj = getattr(obj, attr, None)
        if obj is None:
            missing.append(name)
    assert not missing
