"""Each kind of code in its own room: the engine parses no arguments and prints nothing, the
engine never imports gradio, and the page never imports torch or diffusers."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ENGINE = [path for path in sorted((ROOT / "pipeline").rglob("*.py")) if "commands" not in path.parts]
PAGE = sorted((ROOT / "ui").rglob("*.py"))


def imported_modules(path: Path) -> set[str]:
    """Top-level names of every module `path` imports, at any depth of the file."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def calls_print(path: Path) -> bool:
    return any(isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print"
               for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))))


@pytest.mark.parametrize("forbidden", ["argparse", "gradio"])
def test_the_engine_outside_its_commands_imports_no(forbidden):
    assert ENGINE, "no engine modules found"
    offenders = [str(path.relative_to(ROOT)) for path in ENGINE if forbidden in imported_modules(path)]
    assert offenders == []


def test_the_engine_outside_its_commands_prints_nothing():
    assert [str(path.relative_to(ROOT)) for path in ENGINE if calls_print(path)] == []


def test_the_page_imports_no_torch_or_diffusers():
    offenders = {str(path.relative_to(ROOT)): sorted(imported_modules(path) & {"torch", "diffusers", "transformers"})
                 for path in PAGE}
    assert {path: names for path, names in offenders.items() if names} == {}
