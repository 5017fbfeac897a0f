"""The online bin packing environment (host side), after FunSearch.

Items arrive one at a time and must be placed at once; the candidate is the priority
function `priority(item, bins) -> scores` that chooses the bin. The harness calls it once
per item over instances generated here, on the host, with a fixed seed (shipped into the
sandbox as data). The sandbox returns only where each item went; the host recounts the
bins and checks every capacity, so a candidate cannot claim a packing it did not make.

Fitness: minus the excess bins over the L1 lower bound ceil(sum / capacity), in percent,
averaged over the instances (0 would be optimal; FunSearch reports this excess).
Descriptors, replayed on the host from the placements:
- `off_tightest`: how often the heuristic passes over the tightest opened bin the item
  fits in (for a roomier one or a new bin), as the square root of that share: 0 is best
  fit, 1 worst fit, first fit about 0.43. The square root spreads the many heuristics
  close to best fit over several niches.
- `exact_fit`: the share of items that fill their bin exactly, which heuristics that aim
  to close bins raise well above best fit's (about 0.11 on the default instances).
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
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


def _weibull_item(rng: random.Random, capacity: int) -> int:
    return min(capacity, max(1, round(rng.weibullvariate(45.0, 3.0))))


def _uniform_item(rng: random.Random, capacity: int) -> int:
    return rng.randint(20, 100)


# name: (bin capacity, item size generator), as FunSearch's Weibull and OR-Library's uniform sets.
# The standard library's generator is used because its streams are stable across versions.
DISTRIBUTIONS = {"weibull": (100, _weibull_item), "uniform": (150, _uniform_item)}
EXACT_FIT_CAP = 0.4
MAX_ITEMS = 5000
MAX_INSTANCES = 20


class _Invalid(Exception):
    """A result that is not a feasible packing of the instances; the message is the reason."""


class OnlineBinPacking(Environment):
    name = "bin_packing"
    file_name = "priority.py"
    entry_point = "priority"
    descriptor_space = DescriptorSpace(
        (
            Dimension("off_tightest", 0.0, 1.0, 10),
            Dimension("exact_fit", 0.0, EXACT_FIT_CAP, 10),
        )
    )
    commit_messages = (
        CommitMessage("Use fewer bins.", 3.0),
        CommitMessage("Improve the priority function.", 2.0),
        CommitMessage("Prefer bins that the item fills exactly.", 1.0),
        CommitMessage("Avoid opening new bins.", 1.0),
        CommitMessage("Leave room for large items.", 1.0),
    )
    # Replaced per instance set in __init__ by the fitness of one bin per item, the worst packing.
    qd_offset = -100.0

    def __init__(
        self,
        distribution: str = "weibull",
        items: int = 500,
        instances: int = 5,
        instance_seed: int = 0,
        seeds: Sequence[str] | None = None,
    ) -> None:
        super().__init__(seeds=seeds)
        if distribution not in DISTRIBUTIONS:
            raise EnvironmentLoadError(
                f"bin_packing option distribution must be one of {', '.join(DISTRIBUTIONS)}; got {distribution!r}"
            )
        _check_count("items", items, MAX_ITEMS)
        _check_count("instances", instances, MAX_INSTANCES)
        if type(instance_seed) is not int:
            raise EnvironmentLoadError(f"bin_packing option instance_seed must be an integer; got {instance_seed!r}")
        self.capacity, draw = DISTRIBUTIONS[distribution]
        rng = random.Random(instance_seed)
        self.instances = [[draw(rng, self.capacity) for _ in range(items)] for _ in range(instances)]
        self.qd_offset = _one_bin_per_item_fitness(self.instances, self.capacity)

    def seeds(self) -> list[Program]:
        return self.select_seeds(seed_folder_programs(__package__, self.file_name))

    def sandbox_files(self) -> dict[str, str]:
        return self.packaged_harness(__package__, capacity=self.capacity, instances=self.instances)

    def score(self, result: Any) -> Score:
        try:
            assignments = _read_assignments(result, self.instances)
            packings = [
                _replay(items, chosen, self.capacity, number)
                for number, (items, chosen) in enumerate(zip(self.instances, assignments))
            ]
        except _Invalid as error:
            return Score.invalid(str(error))
        used = sum(p["bins"] for p in packings)
        bound = sum(p["lower_bound"] for p in packings)
        excess = float(np.mean([(p["bins"] - p["lower_bound"]) / p["lower_bound"] for p in packings]))
        choices = sum(p["choices"] for p in packings)
        off_tightest = sum(p["off_tightest"] for p in packings) / choices if choices else 0.0
        exact_fit = sum(p["exact_fits"] for p in packings) / sum(len(items) for items in self.instances)
        return Score.of(
            -100.0 * excess,
            (math.sqrt(off_tightest), min(exact_fit, EXACT_FIT_CAP)),
            bins=used,
            lower_bound=bound,
        )


def _check_count(option: str, value: Any, most: int) -> None:
    if type(value) is not int or not 1 <= value <= most:
        raise EnvironmentLoadError(f"bin_packing option {option} must be an integer from 1 to {most}; got {value!r}")


def _read_assignments(result: Any, instances: list[list[int]]) -> list[list[int]]:
    if not isinstance(result, dict):
        raise _Invalid(f"result must be an object with assignments, not {type(result).__name__}")
    assignments = result.get("assignments")
    if not isinstance(assignments, list) or len(assignments) != len(instances):
        raise _Invalid(f"assignments must be a list of {len(instances)} lists of bin numbers")
    for number, (items, chosen) in enumerate(zip(instances, assignments)):
        if not isinstance(chosen, list) or len(chosen) != len(items):
            raise _Invalid(f"instance {number}: expected {len(items)} bin numbers")
        if not all(type(b) is int and 0 <= b < len(items) for b in chosen):
            raise _Invalid(f"instance {number}: bin numbers must be integers from 0 to {len(items) - 1}")
    return assignments


def _one_bin_per_item_fitness(instances: list[list[int]], capacity: int) -> float:
    return -100.0 * float(np.mean([len(items) / _lower_bound(items, capacity) - 1 for items in instances]))


def _lower_bound(items: list[int], capacity: int) -> int:
    return math.ceil(sum(items) / capacity)


def _replay(items: list[int], chosen: list[int], capacity: int, number: int) -> dict[str, int]:
    """Place the items in order as the sandbox reported, checking every capacity, and count
    the kinds of choices made."""
    loads = np.zeros(len(items), dtype=np.int64)
    choices = off_tightest = exact_fits = 0
    for item, bin_number in zip(items, chosen):
        room = capacity - loads[bin_number]
        if room < item:
            raise _Invalid(f"instance {number}: bin {bin_number} has room for {room}, not for an item of {item}")
        open_rooms = capacity - loads[(loads > 0) & (loads + item <= capacity)]
        if open_rooms.size:  # a real choice: some opened bin could take the item
            choices += 1
            off_tightest += int(room > open_rooms.min())
        exact_fits += int(room == item)
        loads[bin_number] += item
    return {
        "bins": int(np.count_nonzero(loads)),
        "lower_bound": _lower_bound(items, capacity),
        "choices": choices,
        "off_tightest": off_tightest,
        "exact_fits": exact_fits,
    }
