"""The package's boundaries: SQL only in the store, nothing imports the tests, the run's
vocabulary and the store import nothing above them."""

from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "elm"
# SQL keywords, SQLite's own module and the header of its files: the store's business alone.
_STORE_WORDS = re.compile(r"\b(SELECT|INSERT|UPDATE|DELETE|PRAGMA|WHERE|sqlite3)\b|SQLite format")


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _imported(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
        elif (isinstance(node, ast.Call) and isinstance(node.func, (ast.Attribute, ast.Name))
              and getattr(node.func, "attr", getattr(node.func, "id", None)) in ("import_module", "__import__")
              and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            names.add(node.args[0].value)
    return names


def test_only_the_store_speaks_sql() -> None:
    speaking = {
        f"{path.relative_to(PACKAGE.parent)}:{number}: {line.strip()}"
        for path in _modules() if path != PACKAGE / "store.py"
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if _STORE_WORDS.search(line)
    }
    assert not speaking, "SQL outside elm/store.py:\n" + "\n".join(sorted(speaking))
    assert _STORE_WORDS.search((PACKAGE / "store.py").read_text())  # the pattern finds SQL where it is


def test_nothing_in_the_package_imports_the_tests() -> None:
    importing = [str(path.relative_to(PACKAGE.parent)) for path in _modules()
                 if any(name == "tests" or name.startswith("tests.") for name in _imported(path))]
    assert not importing
    assert "tests.test_report_support" in _imported(Path(__file__).parent / "test_run_api.py")  # it finds them


def test_the_run_vocabulary_and_the_store_import_nothing_above_them() -> None:
    def from_elm(module: str) -> set[str]:
        return {name for name in _imported(PACKAGE / module) if name == "elm" or name.startswith("elm.")}

    assert from_elm("records.py") == set()
    assert from_elm("store.py") == {"elm.errors", "elm.records"}
