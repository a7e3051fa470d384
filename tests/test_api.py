"""The public API: what README shows is exported with `__all__` and documented, README's Python
runs as written, and only commands speak the command line's language."""

import ast
import importlib
import inspect
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
PUBLIC = (
    "jaxart.style",
    "jaxart.gan",
    "jaxart.fast",
    "jaxart.vgg",
    "jaxart.weights",
    "jaxart.images",
    "jaxart.distributed",
    "jaxart.backend",
)
PYTHON_BLOCKS = re.findall(r"```python\n(.*?)```", README, re.S)


def exported(module: str) -> list[str]:
    return list(importlib.import_module(module).__all__)


@pytest.mark.parametrize("module", PUBLIC)
def test_every_exported_name_exists_and_has_its_own_docstring(module):
    mod = importlib.import_module(module)
    for name in exported(module):
        obj = getattr(mod, name)
        doc = inspect.getdoc(obj) or ""
        # dataclasses and NamedTuples make up a docstring from their fields when none is written
        assert doc and not doc.startswith(f"{name}("), f"{module}.{name} has no docstring"


def readme_references() -> set[tuple[str, str]]:
    """(module, name) for every `from jaxart.M import a, b` in README's Python and every
    `jaxart.M.name` README mentions."""
    found = set()
    for block in PYTHON_BLOCKS:
        for node in ast.walk(ast.parse(block)):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("jaxart"):
                found |= {(node.module, alias.name) for alias in node.names}
    for module, name in re.findall(r"`(jaxart(?:\.[a-z_]+)*)\.([A-Za-z_][A-Za-z0-9_]*)\b", README):
        if module in PUBLIC:
            found.add((module, name))
    return found


def test_readme_shows_only_exported_names():
    references = readme_references()
    assert references, "README shows no Python API"
    missing = []
    for module, name in sorted(references):
        if module == "jaxart":  # `from jaxart import images, weights`: modules
            assert f"jaxart.{name}" in PUBLIC, name
        elif name not in exported(module):
            missing.append(f"{module}.{name}")
    assert not missing, f"README shows names that are not exported: {missing}"


def test_readme_python_runs_as_written(tmp_path):
    """Each Python block of README, in a fresh process, in a folder holding the bundled pictures
    under the names README uses (content.png, style.png)."""
    assert PYTHON_BLOCKS
    for picture in ("content.png", "style.png"):
        shutil.copy(ROOT / "examples" / picture, tmp_path / picture)
    for i, block in enumerate(PYTHON_BLOCKS):
        script = tmp_path / f"readme_{i}.py"
        script.write_text(textwrap.dedent(block))
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        done = subprocess.run(
            [sys.executable, script.name], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900
        )
        assert done.returncode == 0, f"README's Python block {i} failed:\n{block}\n{done.stderr[-3000:]}"


def test_only_commands_import_the_command_line_module():
    """The library raises its own errors in its own terms; only a command's __main__ (or the
    driver it runs) maps them to flags and exit codes."""
    offenders = []
    for path in sorted((ROOT / "jaxart").rglob("*.py")):
        if path.name in ("__main__.py", "driver.py", "cli.py"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            if "jaxart.cli" in names:
                offenders.append(str(path.relative_to(ROOT)))
    assert not offenders, f"library modules import jaxart.cli: {sorted(set(offenders))}"
