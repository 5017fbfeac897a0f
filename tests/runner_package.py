"""The runner's modules (sandbox/runner/) in a test, imported as the runner imports them."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from types import ModuleType

from tests.conftest import REPO

FOLDER = REPO / "sandbox" / "runner"


def runner_module(name: str) -> ModuleType:
    """`_elm_runner.<name>`, the package loaded the way sandbox/runner/__main__.py loads it."""
    spec = importlib.util.spec_from_file_location("_elm_runner_start", FOLDER / "__main__.py")
    start = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(start)
    if start.PACKAGE not in sys.modules:
        start.load(str(FOLDER))
    return importlib.import_module(f"{start.PACKAGE}.{name}")
