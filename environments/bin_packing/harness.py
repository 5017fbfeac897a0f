"""Runs inside the sandbox, next to the candidate: packs every instance online, calling
the candidate's `priority(item, bins)` once per item, and returns which bin each item
went to (the host recounts the bins and checks the capacities from that).

As items arrive one by one, `bins` holds the remaining capacity of every bin the item
fits in (unused bins included, in a fixed order); the item goes to the bin with the
highest priority. Only the standard library and numpy are available here.
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
    priority = getattr(candidate, settings["entry"])
    capacity = settings["capacity"]
    return {"assignments": [pack(items, capacity, priority) for items in settings["instances"]]}


def pack(items, capacity, priority):
    remaining = np.full(len(items), float(capacity))
    chosen = []
    for item in items:
        fits = np.flatnonzero(remaining >= item)
        scores = np.asarray(priority(float(item), remaining[fits]), dtype=float)
        if scores.shape != fits.shape:
            raise ValueError(f"priority returned shape {scores.shape} for {fits.size} bins")
        if not np.isfinite(scores).all():
            raise ValueError("priority returned NaN or infinite scores")
        best = int(fits[int(np.argmax(scores))])
        remaining[best] -= item
        chosen.append(best)
    return chosen
