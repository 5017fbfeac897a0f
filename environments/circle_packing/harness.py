"""Runs inside the sandbox, next to the candidate: calls `pack(n)` and returns plain lists.

Only the standard library and numpy are available here. The host re-checks everything
this returns: the candidate runs in this same process and could replace any of it.
"""

import importlib
import json
import sys
from pathlib import Path

import numpy as np

_HERE = Path(__file__).resolve().parent


def main():
    settings = json.loads((_HERE / "environment.json").read_text())
    if str(_HERE) not in sys.path:
        sys.path.insert(0, str(_HERE))
    candidate = importlib.import_module(settings["module"])
    n = settings["n"]
    answer = getattr(candidate, settings["entry"])(n)
    if not isinstance(answer, (tuple, list)) or len(answer) != 2:
        raise ValueError("pack(n) must return two things: centres and radii")
    centers = np.asarray(answer[0], dtype=float)
    radii = np.asarray(answer[1], dtype=float)
    if centers.shape != (n, 2):
        raise ValueError(f"centres have shape {centers.shape}, expected ({n}, 2)")
    if radii.shape != (n,):
        raise ValueError(f"radii have shape {radii.shape}, expected ({n},)")
    return {"centers": centers.tolist(), "radii": radii.tolist()}
