"""Runs inside the sandbox, next to the candidate `walker.py`: returns `make_walker()`.

The host treats whatever comes back as hostile data and checks all of it; this file
only makes the API modules beside it importable and calls the entry point.
"""

import importlib
import sys
from pathlib import Path

_HERE = Path(__file__).resolve().parent
_CANDIDATE = "walker"
_ENTRY = "make_walker"


def main():
    if str(_HERE) not in sys.path:
        sys.path.insert(0, str(_HERE))
    candidate = importlib.import_module(_CANDIDATE)
    make_walker = getattr(candidate, _ENTRY, None)
    if not callable(make_walker):
        raise AttributeError(f"{_CANDIDATE}.py defines no {_ENTRY}() function")
    return make_walker()
