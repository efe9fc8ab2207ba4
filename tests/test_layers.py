"""Layers only look down: the store (storage, segmentation, TOC building) imports nothing above it.

``memsched.summarize`` sits above the store (summaries are made of the store's events and
bullets), and jobs/ops/facade/cli above both: building takes its segment summarizer as an
argument from the ingest or rollup that runs it rather than reaching up for one.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import memsched

PACKAGE = Path(memsched.__file__).parent
# what each package may import from memsched (module prefixes), besides itself
ALLOWED = {
    "store": ("memsched.errors", "memsched.paths", "memsched.text"),
    "summarize": ("memsched.errors", "memsched.text", "memsched.store", "memsched.config"),
}


def memsched_imports(path: Path) -> list[tuple[int, str]]:
    """Return (line, module) of every memsched import in ``path``, at any depth (lazy imports included)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names if alias.name.split(".")[0] == "memsched"]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and node.module.split(".")[0] == "memsched":
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.ImportFrom) and node.level:
            raise AssertionError(f"{path}:{node.lineno}: relative import; memsched uses absolute ones")
    return found


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_package_imports_only_what_is_below_it(package: str) -> None:
    own = f"memsched.{package}"
    allowed = (own, *ALLOWED[package])
    modules = sorted((PACKAGE / package).rglob("*.py"))
    assert modules, package
    upward = [
        f"{path.relative_to(PACKAGE.parent)}:{line}: imports {module}"
        for path in modules
        for line, module in memsched_imports(path)
        if not any(module == prefix or module.startswith(prefix + ".") for prefix in allowed)
    ]
    assert upward == []
