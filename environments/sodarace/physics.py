"""Simulate a walker with pymunk: point-mass joints, spring muscles, flat ground.

Deterministic by construction: a fixed time step, fixed solver iterations, bodies and
springs added in the walker's order, no randomness. Muscles are damped springs; an
active muscle's rest length oscillates around its initial length, a passive one keeps
it. Springs longer than a reference length are proportionally softer (the same material
at every length), so a long muscle pulls with a bounded force even fully contracted.
A run in which any joint goes faster than `max_speed` is void: the walker blew up.

Cost: one pymunk step per substep, plus one rest-length update per active muscle per
control step, which dominates for walkers with many active muscles.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pymunk

from environments.sodarace.walker import Walker
from environments.sodarace.walker_creator import MUSCLE_PERIOD_S


@dataclass(frozen=True)
class PhysicsSettings:
    duration_s: float = 10.0
    control_hz: int = 30  # muscle rest lengths are updated this often
    substeps: int = 4  # pymunk steps per control step: 120 Hz physics
    solver_iterations: int = 6
    gravity: float = 98.1  # decimetres per second squared
    air_damping: float = 0.9  # fraction of velocity kept after one second
    friction: float = 1.0
    joint_radius: float = 0.5  # for ground contact only; joints never collide with each other
    stiffness: float = 2000.0  # force per decimetre of stretch, for a spring of reference length
    damping: float = 20.0
    reference_length: float = 10.0  # springs longer than this are proportionally softer
    max_speed: float = 500.0  # decimetres per second; faster means the simulation blew up
    stability_checks_per_s: int = 2

    @property
    def control_steps(self) -> int:
        return int(round(self.duration_s * self.control_hz))


@dataclass
class Motion:
    """What a simulation measured. `unstable` says why the run is void, if it is."""

    distance: float
    start_x: float
    end_x: float
    unstable: str | None = None
    times: list[float] = field(default_factory=list)
    frames: list[list[tuple[float, float]]] = field(default_factory=list)


class _World:
    """One pymunk space holding one walker on flat ground."""

    def __init__(self, walker: Walker, settings: PhysicsSettings) -> None:
        self.settings = settings
        self.space = pymunk.Space()
        self.space.gravity = (0.0, -settings.gravity)
        self.space.iterations = settings.solver_iterations
        self.space.damping = settings.air_damping
        self._add_ground()
        self.bodies = self._add_joints(walker)
        self.active_muscles = self._add_muscles(walker)
        self.total_mass = sum(body.mass for body in self.bodies)

    def _add_ground(self) -> None:
        half = 2.0 * self.settings.max_speed * self.settings.duration_s + 1000.0
        ground = pymunk.Segment(self.space.static_body, (-half, 0.0), (half, 0.0), 0.0)
        ground.friction = self.settings.friction
        self.space.add(ground)

    def _add_joints(self, walker: Walker) -> list[pymunk.Body]:
        radius = self.settings.joint_radius
        left = min(x for x, _ in walker.joints)
        bottom = min(y for _, y in walker.joints)
        own_walker = pymunk.ShapeFilter(group=1)
        bodies = []
        for (x, y), mass in zip(walker.joints, walker.joint_masses()):
            body = pymunk.Body(mass, math.inf)  # a point mass: it never rotates
            body.position = (x - left, y - bottom + radius)
            shape = pymunk.Circle(body, radius)
            shape.friction = self.settings.friction
            shape.filter = own_walker
            self.space.add(body, shape)
            bodies.append(body)
        return bodies

    def _add_muscles(self, walker: Walker) -> list[tuple[pymunk.DampedSpring, float, float, float]]:
        """Adds the springs; returns the active ones as (spring, length, sine part, cosine part).

        length * (1 + amplitude * sin(angle + phase)) is length + s * sin(angle) + c * cos(angle)
        with s = length * amplitude * cos(phase) and c = length * amplitude * sin(phase), so
        each step needs one sine and one cosine for all muscles.
        """
        settings = self.settings
        active = []
        for muscle in walker.muscles:
            length = walker.muscle_length(muscle)
            softness = settings.reference_length / max(length, settings.reference_length)
            spring = pymunk.DampedSpring(
                self.bodies[muscle.first],
                self.bodies[muscle.second],
                (0.0, 0.0),
                (0.0, 0.0),
                length,
                settings.stiffness * softness,
                settings.damping * softness,
            )
            self.space.add(spring)
            if muscle.active:
                swing = length * muscle.amplitude
                active.append((spring, length, swing * math.cos(muscle.phase), swing * math.sin(muscle.phase)))
        return active

    def centre_x(self) -> float:
        return sum(body.mass * body.position.x for body in self.bodies) / self.total_mass

    def positions(self) -> list[tuple[float, float]]:
        return [(body.position.x, body.position.y) for body in self.bodies]

    def instability(self) -> str | None:
        limit = self.settings.max_speed
        for index, body in enumerate(self.bodies):
            x, y = body.position
            speed = abs(body.velocity)
            if not (math.isfinite(x) and math.isfinite(y) and math.isfinite(speed)):
                return f"simulation blew up: joint {index} left the finite world"
            if speed > limit:
                return f"simulation blew up: joint {index} moved at {speed:.0f} dm/s (limit {limit:g})"
        return None


def simulate(walker: Walker, settings: PhysicsSettings = PhysicsSettings(), frame_every: int = 0) -> Motion:
    """Run the walker for `settings.duration_s`; record a frame every `frame_every` control steps."""
    world = _World(walker, settings)
    # The property's setter itself skips per-call attribute plumbing; pymunk's stubs type the
    # property as overloaded functions, which have no fset.
    set_rest_length = pymunk.DampedSpring.rest_length.fset  # type: ignore[attr-defined]
    dt = 1.0 / settings.control_hz
    substep = dt / settings.substeps
    omega = 2.0 * math.pi / MUSCLE_PERIOD_S
    check_every = max(1, settings.control_hz // settings.stability_checks_per_s)
    start_x = world.centre_x()
    motion = Motion(distance=0.0, start_x=start_x, end_x=start_x)
    for step in range(settings.control_steps):
        if frame_every and step % frame_every == 0:
            _record(motion, world, step * dt)
        sine, cosine = math.sin(omega * step * dt), math.cos(omega * step * dt)
        for spring, length, sine_part, cosine_part in world.active_muscles:
            set_rest_length(spring, length + sine_part * sine + cosine_part * cosine)
        for _ in range(settings.substeps):
            world.space.step(substep)
        if step % check_every == 0 and (reason := world.instability()):
            motion.unstable = reason
            return motion
    motion.unstable = world.instability()
    if frame_every:
        _record(motion, world, settings.control_steps * dt)
    motion.end_x = world.centre_x()
    motion.distance = motion.end_x - start_x
    return motion


def _record(motion: Motion, world: _World, time_s: float) -> None:
    motion.times.append(time_s)
    motion.frames.append(world.positions())
