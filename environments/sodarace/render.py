"""Pictures of a walker's run: an animated GIF and a still strip of a few moments.

The camera follows the walker's centre of mass; ground ticks (labelled in decimetres)
and a red start line show how far it has gone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from environments.sodarace.physics import Motion, PhysicsSettings, simulate
from environments.sodarace.walker import Walker

FRAME_SIZE = (360, 240)
GIF_FPS = 10
STRIP_PANELS = 6
_GROUND_SHARE = 0.2  # of the frame height, below the ground line
# Frames are palette images (fast to draw, no quantising for the GIF): colours are indices.
_PALETTE = ((250, 250, 247), (222, 214, 196), (40, 40, 40), (120, 120, 120), (217, 72, 15), (200, 30, 30))
_SKY, _GROUND, _INK, _PASSIVE, _ACTIVE, _START = range(len(_PALETTE))
_Font = ImageFont.FreeTypeFont | ImageFont.ImageFont  # what ImageFont.load_default gives


@dataclass(frozen=True)
class _Camera:
    scale: float  # pixels per decimetre
    tick: float  # decimetres between ground ticks

    def to_pixels(self, x: float, y: float, centre_x: float) -> tuple[float, float]:
        width, height = FRAME_SIZE
        ground = height * (1.0 - _GROUND_SHARE)
        return (width / 2 + (x - centre_x) * self.scale, ground - y * self.scale)


def render_motion(walker: Walker, settings: PhysicsSettings, path: str) -> str | None:
    """Simulate, then write `path`.gif and `path`.png; returns the GIF's path.

    A walker whose simulation blew up has no fitness and gets no picture (None).
    """
    frame_every = max(1, round(settings.control_hz / GIF_FPS))
    motion = simulate(walker, settings, frame_every=frame_every)
    if motion.unstable:
        return None
    masses = walker.joint_masses()
    camera = _camera(motion)
    font = ImageFont.load_default(size=11)
    frames = [
        _draw(walker, motion, index, masses, camera, font, settings.joint_radius)
        for index in range(len(motion.frames))
    ]
    gif, strip = Path(f"{path}.gif"), Path(f"{path}.png")
    gif.parent.mkdir(parents=True, exist_ok=True)
    frames[0].save(
        gif,
        save_all=True,
        append_images=frames[1:],
        duration=round(1000 * frame_every / settings.control_hz),
        loop=0,
    )
    _strip(frames).save(strip)
    return str(gif)


def _camera(motion: Motion) -> _Camera:
    """One zoom for the whole run, large enough for the walker's widest and tallest pose."""
    width = max(max(x for x, _ in frame) - min(x for x, _ in frame) for frame in motion.frames)
    height = max(max(y for _, y in frame) for frame in motion.frames)
    view_width, view_height = 1.6 * width + 6.0, (height + 3.0) / (1.0 - _GROUND_SHARE - 0.12)
    scale = min(FRAME_SIZE[0] / view_width, FRAME_SIZE[1] / view_height)
    visible = FRAME_SIZE[0] / scale
    tick = next(step for step in (1, 2, 5, 10, 20, 50, 100, 200) if visible / step <= 8)
    return _Camera(scale=scale, tick=float(tick))


def _draw(
    walker: Walker,
    motion: Motion,
    index: int,
    masses: list[float],
    camera: _Camera,
    font: _Font,
    joint_radius: float,
) -> Image.Image:
    positions = motion.frames[index]
    centre = sum(m * x for m, (x, _) in zip(masses, positions)) / sum(masses)
    image = Image.new("P", FRAME_SIZE, _SKY)
    image.putpalette([channel for colour in _PALETTE for channel in colour])
    draw = ImageDraw.Draw(image)
    _draw_ground(draw, font, camera, centre, motion.start_x)
    for muscle in walker.muscles:
        a = camera.to_pixels(*positions[muscle.first], centre)
        b = camera.to_pixels(*positions[muscle.second], centre)
        draw.line([a, b], fill=_ACTIVE if muscle.active else _PASSIVE, width=3 if muscle.active else 2)
    radius = max(2.0, joint_radius * camera.scale)
    for x, y in positions:
        px, py = camera.to_pixels(x, y, centre)
        draw.ellipse([px - radius, py - radius, px + radius, py + radius], fill=_INK)
    label = f"t = {motion.times[index]:4.1f} s   distance = {centre - motion.start_x:+.1f} dm"
    draw.text((6, 5), label, fill=_INK, font=font)
    return image


def _draw_ground(
    draw: ImageDraw.ImageDraw, font: _Font, camera: _Camera, centre: float, start: float
) -> None:
    width, height = FRAME_SIZE
    ground = height * (1.0 - _GROUND_SHARE)
    draw.rectangle([0, ground, width, height], fill=_GROUND)
    draw.line([(0, ground), (width, ground)], fill=_INK, width=1)
    half_view = width / 2 / camera.scale
    first = math.floor((centre - start - half_view) / camera.tick)
    last = math.ceil((centre - start + half_view) / camera.tick)
    for k in range(first, last + 1):  # ticks counted from the start line
        x, _ = camera.to_pixels(start + k * camera.tick, 0.0, centre)
        draw.line([(x, ground), (x, ground + 5)], fill=_INK, width=1)
        draw.text((x + 2, ground + 6), f"{k * camera.tick:g}", fill=_INK, font=font)
    start_x, _ = camera.to_pixels(start, 0.0, centre)
    draw.line([(start_x, 18), (start_x, ground)], fill=_START, width=1)


def _strip(frames: list[Image.Image]) -> Image.Image:
    """STRIP_PANELS moments, evenly spread from the first frame to the last, side by side."""
    picks = [round(k * (len(frames) - 1) / (STRIP_PANELS - 1)) for k in range(STRIP_PANELS)]
    gap = 4
    width, height = FRAME_SIZE
    strip = Image.new("RGB", (STRIP_PANELS * width + (STRIP_PANELS - 1) * gap, height), (255, 255, 255))
    for slot, index in enumerate(picks):
        strip.paste(frames[index].convert("RGB"), (slot * (width + gap), 0))
    return strip
