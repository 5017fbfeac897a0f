"""The image matching environment (host side): seeds, the target and the scoring.

A candidate defines `draw(size)` returning a (size, size, 3) array of RGB values in
[0, 1] (values outside are clipped). The fitness is the similarity to the target image,
1 - mean absolute difference over all pixels and channels (1.0 is a perfect copy).
The target stays on the host: candidates cannot read it.

Descriptors: `warmth` (mean red minus mean blue) separates warm from cool pictures;
`edge_density` (share of neighbouring pixel pairs that differ by more than
`EDGE_STEP` in some channel) separates smooth gradients from busy, detailed drawings.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from elm.environment import (
    CommitMessage,
    DescriptorSpace,
    Dimension,
    Environment,
    EnvironmentLoadError,
    Program,
    Score,
    seed_folder_programs,
)

EDGE_STEP = 0.1
WARMTH_RANGE = (-0.5, 0.5)
EDGE_RANGE = (0.0, 0.5)
SIZES = range(4, 65)


class _Invalid(Exception):
    """A result that is not an image of the expected size; the message is the reason."""


class ImageMatching(Environment):
    name = "image"
    file_name = "draw.py"
    entry_point = "draw"
    descriptor_space = DescriptorSpace(
        (
            Dimension("warmth", *WARMTH_RANGE, 10),
            Dimension("edge_density", *EDGE_RANGE, 10),
        )
    )
    commit_messages = (
        CommitMessage("Make the image look more like a sunset.", 3.0),
        CommitMessage("Change the colours.", 2.0),
        CommitMessage("Move the sun.", 1.0),
        CommitMessage("Make the sky gradient smoother.", 1.0),
        CommitMessage("Add more detail to the picture.", 1.0),
        CommitMessage("Make the sun bigger.", 1.0),
    )
    qd_offset = 0.0

    def __init__(self, size: int = 32, target: str = "sunset", seeds: Sequence[str] | None = None) -> None:
        super().__init__(seeds=seeds)
        if type(size) is not int or size not in SIZES:
            raise EnvironmentLoadError(
                f"image option size must be an integer from {SIZES.start} to {SIZES.stop - 1}; got {size!r}"
            )
        self.size = size
        self.target = _load_target(target, size)

    def seeds(self) -> list[Program]:
        return self.select_seeds(seed_folder_programs(__package__, self.file_name))

    def sandbox_files(self) -> dict[str, str]:
        return self.packaged_harness(__package__, size=self.size)

    def score(self, result: Any) -> Score:
        try:
            image = _read_image(result, self.size)
        except _Invalid as error:
            return Score.invalid(str(error))
        similarity = 1.0 - float(np.abs(image - self.target).mean())
        return Score.of(similarity, (_warmth(image), _edge_density(image)))

    def render(self, result: Any, path: str) -> str | None:
        try:
            image = _read_image(result, self.size)
        except _Invalid:
            return None
        from PIL import Image

        pixels = np.round(image * 255).astype(np.uint8)
        scale = max(1, 256 // self.size)
        picture = Image.fromarray(pixels, "RGB").resize(
            (self.size * scale, self.size * scale), Image.Resampling.NEAREST
        )
        written = f"{path}.png"
        picture.save(written)
        return written


def sunset(size: int) -> np.ndarray:
    """The built-in target: a dusk sky over dark water, a sun sitting on the horizon."""
    y, x = np.mgrid[0:size, 0:size] / (size - 1.0)
    horizon = 0.62
    sky_top, sky_low = np.array([0.10, 0.12, 0.35]), np.array([0.98, 0.55, 0.25])
    water_top, water_low = np.array([0.30, 0.15, 0.30]), np.array([0.05, 0.05, 0.15])
    t_sky = np.clip(y / horizon, 0.0, 1.0)[..., None]
    t_water = np.clip((y - horizon) / (1.0 - horizon), 0.0, 1.0)[..., None]
    image = np.where(
        (y < horizon)[..., None],
        sky_top + (sky_low - sky_top) * t_sky,
        water_top + (water_low - water_top) * t_water,
    )
    sun = ((x - 0.5) ** 2 + (y - horizon) ** 2 < 0.16**2) & (y < horizon)
    image[sun] = [1.0, 0.85, 0.35]
    return image


def _load_target(target: Any, size: int) -> np.ndarray:
    if target == "sunset":
        return sunset(size)
    if not isinstance(target, str) or not Path(target).is_file():
        raise EnvironmentLoadError(
            f"image option target must be 'sunset' or the path of an image file; got {target!r}"
        )
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(target) as picture:
            resized = picture.convert("RGB").resize((size, size), Image.Resampling.LANCZOS)
    except (UnidentifiedImageError, OSError) as error:
        raise EnvironmentLoadError(f"image target {target!r} cannot be read: {error}") from None
    return np.asarray(resized, dtype=float) / 255.0


def _read_image(result: Any, size: int) -> np.ndarray:
    if not isinstance(result, dict):
        raise _Invalid(f"result must be an object with size and rgb, not {type(result).__name__}")
    if type(result.get("size")) is not int or result["size"] != size:
        raise _Invalid(f"size must be {size}")
    text = result.get("rgb")
    expected = size * size * 3
    if not isinstance(text, str) or len(text) != 2 * expected:
        raise _Invalid(f"rgb must be a string of {2 * expected} hexadecimal digits")
    try:
        data = bytes.fromhex(text)
    except ValueError:
        raise _Invalid("rgb is not hexadecimal") from None
    if len(data) != expected:
        raise _Invalid("rgb is not hexadecimal")
    return np.frombuffer(data, dtype=np.uint8).reshape(size, size, 3) / 255.0


def _warmth(image: np.ndarray) -> float:
    value = float(image[..., 0].mean() - image[..., 2].mean())
    return float(np.clip(value, *WARMTH_RANGE))


def _edge_density(image: np.ndarray) -> float:
    across = np.abs(np.diff(image, axis=1)).max(axis=2) > EDGE_STEP
    down = np.abs(np.diff(image, axis=0)).max(axis=2) > EDGE_STEP
    value = (across.sum() + down.sum()) / (across.size + down.size)
    return float(np.clip(value, *EDGE_RANGE))
