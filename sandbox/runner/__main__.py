"""Start the runner: `python3 -I path/to/runner [options]` (a folder run as a program).

The folder is imported as the package `_elm_runner`, not under a name a candidate's own
module could have (`runner`, `server`, `child`...): the runner's modules stay in
sys.modules of every forked candidate, where they would hide the candidate's. For the
same reason the folder itself leaves sys.path.
"""

import importlib
import importlib.util
import os
import sys

PACKAGE = "_elm_runner"


def load(folder: str) -> None:
    """Import the runner's folder as the package PACKAGE."""
    spec = importlib.util.spec_from_file_location(PACKAGE, os.path.join(folder, "__init__.py"),
                                                  submodule_search_locations=[folder])
    if spec is None or spec.loader is None:
        raise SystemExit(f"sandbox runner: cannot import {folder}")
    package = importlib.util.module_from_spec(spec)
    sys.modules[PACKAGE] = package
    spec.loader.exec_module(package)


if __name__ == "__main__":
    FOLDER = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [entry for entry in sys.path if os.path.abspath(entry or ".") != FOLDER]
    load(FOLDER)
    sys.exit(importlib.import_module(f"{PACKAGE}.startup").main())
