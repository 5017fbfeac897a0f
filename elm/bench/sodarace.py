"""Sodarace scoring cost: validation plus simulation of one walker on the host.

`ms_per_walker` is the mean over the four seed walkers of the least CPU time of
`--repeat` runs of `Sodarace.score` (the simulation is single-threaded, so CPU time is
its cost even on a busy machine). The scaling table simulates lattice walkers (joints 2 dm
apart, muscles between the closest pairs): joints swept with 64 passive muscles, then
64 to 256 muscles on 64 joints, all passive or all active; a least-squares fit gives
ms = base + per_joint * joints + per_muscle * muscles + per_active * active.
The seeds are built by running the sandbox harness in a child Python process.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from elm.environment import import_builtin

if TYPE_CHECKING:  # the built-ins' import name depends on the install: see import_builtin
    from environments.sodarace import Sodarace
    from environments.sodarace.walker import Walker

_JOINT_SWEEP = (16, 32, 48, 64)
_MUSCLE_SWEEP = (64, 128, 192, 256)
_SPACING = 2.0
_AMPLITUDE = 0.2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--repeat", type=int, default=3, help="runs per walker; the fastest counts")
    parser.add_argument("--duration", type=float, default=10.0, help="simulated seconds per walker")
    parser.add_argument("--no-scaling", action="store_true", help="time the seeds only")


def run(args: argparse.Namespace) -> dict:
    environment = import_builtin("sodarace").Sodarace(duration=args.duration)
    repeat = max(1, args.repeat)
    seeds = {}
    for name, result in _seed_results(environment).items():
        score = environment.score(result)
        seconds = _fastest(partial(environment.score, result), repeat)
        seeds[name] = {
            "ms": round(1000 * seconds, 2),
            "fitness": round(score.fitness, 3) if score.valid else None,
            "descriptor": [round(v, 3) for v in score.descriptor] if score.valid else None,
            **dict(score.extras),
        }
    figures: dict[str, Any] = {
        "ms_per_walker": round(sum(s["ms"] for s in seeds.values()) / len(seeds), 2),
        "duration_s": environment.physics.duration_s,
        "seeds": seeds,
    }
    if not args.no_scaling:
        rows = _scaling(environment, repeat)
        figures["scaling"] = rows
        figures["cost_model_ms"] = _fit(rows)
    return figures


def describe(result: dict) -> str:
    lines = [
        f"sodarace: {result['ms_per_walker']} ms per walker "
        f"(mean over the seeds, {result['duration_s']:g} s simulated; goal <= 20 ms)"
    ]
    for name, seed in result["seeds"].items():
        lines.append(
            f"  {name:<13} {seed['ms']:7.2f} ms  fitness {seed['fitness']}  descriptor {seed['descriptor']}"
            f"  ({seed.get('joints')} joints, {seed.get('muscles')} muscles, {seed.get('active_muscles')} active)"
        )
    if "scaling" in result:
        lines.append("  lattice walkers: joints muscles active      ms")
        for row in result["scaling"]:
            flag = "" if row["completed"] else "  (stopped early: unstable)"
            lines.append(f"  {row['joints']:>22} {row['muscles']:>7} {row['active']:>6} {row['ms']:>7.1f}{flag}")
        model = result["cost_model_ms"]
        lines.append(
            f"  cost ~ {model['base']:.2f} + {model['per_joint']:.3f}/joint + {model['per_muscle']:.3f}/muscle"
            f" + {model['per_active_muscle']:.3f}/active muscle (ms)"
        )
    return "\n".join(lines)


def _seed_results(environment: Sodarace) -> dict[str, Any]:
    """Each seed's walker data, built by the sandbox harness in a child Python process."""
    results = {}
    for program in environment.seeds():
        with tempfile.TemporaryDirectory(prefix="elm-bench-sodarace-") as folder:
            files = {**environment.sandbox_files(), environment.file_name: program.source}
            for name, text in files.items():
                Path(folder, name).write_text(text)
            module = Path(environment.harness).stem
            code = f"import json, {module}; print(json.dumps({module}.main()))"
            done = subprocess.run(
                [sys.executable, "-E", "-s", "-c", code], cwd=folder, capture_output=True, text=True, timeout=60
            )
            if done.returncode != 0:
                raise RuntimeError(f"seed {program.name} failed to build: {done.stderr.strip()[-300:]}")
            results[program.name] = json.loads(done.stdout)
    return results


def _scaling(environment: Sodarace, repeat: int) -> list[dict]:
    """Joints swept at a fixed muscle count, then muscles (passive, then active) at 64 joints."""
    shapes = [(joints, 64, False) for joints in _JOINT_SWEEP]
    shapes += [(64, muscles, active) for muscles in _MUSCLE_SWEEP for active in (False, True)]
    simulate = import_builtin("sodarace.physics").simulate
    rows = []
    for joints, muscles, active in shapes:
        walker = _lattice(joints, muscles, active)
        motion = simulate(walker, environment.physics)
        seconds = _fastest(partial(simulate, walker, environment.physics), repeat)
        rows.append({
            "joints": joints,
            "muscles": muscles,
            "active": muscles if active else 0,
            "ms": round(1000 * seconds, 2),
            "completed": motion.unstable is None,
        })
    return rows


def _lattice(joint_count: int, muscle_count: int, active: bool) -> Walker:
    """Joints on an 8-wide lattice; muscles join the closest pairs first."""
    joints = tuple((_SPACING * (k % 8), _SPACING * (k // 8)) for k in range(joint_count))
    pairs = sorted(
        ((a, b) for a in range(joint_count) for b in range(a + 1, joint_count)),
        key=lambda pair: (math.dist(joints[pair[0]], joints[pair[1]]), pair),
    )
    amplitude = _AMPLITUDE if active else 0.0
    walkers = import_builtin("sodarace.walker")
    muscles = tuple(walkers.Muscle(a, b, amplitude, 0.7 * k) for k, (a, b) in enumerate(pairs[:muscle_count]))
    return walkers.Walker(joints, muscles)


def _fit(rows: list[dict]) -> dict[str, float]:
    """Least squares: ms = base + per_joint * joints + per_muscle * muscles + per_active * active."""
    design = np.array([[1.0, r["joints"], r["muscles"], r["active"]] for r in rows])
    cost = np.array([r["ms"] for r in rows])
    base, per_joint, per_muscle, per_active = np.linalg.lstsq(design, cost, rcond=None)[0]
    return {
        "base": round(float(base), 3),
        "per_joint": round(float(per_joint), 4),
        "per_muscle": round(float(per_muscle), 4),
        "per_active_muscle": round(float(per_active), 4),
    }


def _fastest(action, repeat: int) -> float:
    """The least CPU time of `repeat` runs: other load on the machine does not inflate it."""
    best = math.inf
    for _ in range(repeat):
        started = time.process_time()
        action()
        best = min(best, time.process_time() - started)
    return best
