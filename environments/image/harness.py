"""Runs inside the sandbox, next to the candidate: calls `draw(size)` and returns the
image as 8-bit RGB bytes written in hexadecimal (compact, and simple to check).

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
    size = settings["size"]
    image = np.asarray(getattr(candidate, settings["entry"])(size), dtype=float)
    if image.shape != (size, size, 3):
        raise ValueError(f"image has shape {image.shape}, expected ({size}, {size}, 3)")
    if not np.isfinite(image).all():
        raise ValueError("image has NaN or infinite values")
    pixels = np.round(np.clip(image, 0.0, 1.0) * 255).astype(np.uint8)
    return {"size": size, "rgb": pixels.tobytes().hex()}
