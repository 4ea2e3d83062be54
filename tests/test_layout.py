"""The structure the code promises: no import cycles, and ``compression`` a leaf library."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MODULES = sorted(
    ".".join(p.relative_to(ROOT).with_suffix("").parts)
    for package in ("chatbot", "compression") for p in (ROOT / package).glob("*.py") if p.name != "__init__.py")


@pytest.mark.parametrize("module", MODULES)
def test_every_module_imports_on_its_own(module):
    """A fresh interpreter imports the module first: a cycle between modules fails here."""
    result = subprocess.run([sys.executable, "-c", f"import {module}"], cwd=ROOT, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]


def imported_modules(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def test_compression_imports_nothing_of_the_chatbot():
    offenders = {p.name: sorted(m for m in imported_modules(p) if m.split(".")[0] == "chatbot")
                 for p in (ROOT / "compression").glob("*.py")}
    assert not any(offenders.values()), offenders


@pytest.mark.parametrize("entry", ["app", "chatbot.serving"])
def test_serving_code_loads_without_pytorch(entry):
    """The app and a Ray Serve replica import neither PyTorch nor transformers (about 250 MB): the served
    model is the exported one; PyTorch is loaded only to export or build a model, or for ``torch``."""
    script = f"import sys, {entry}; print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "[]", result.stdout + result.stderr[-2000:]
