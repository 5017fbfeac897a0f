"""The environment plug-in contract and its loader.

An environment says what programs look like (seeds, commit messages), what runs inside
the sandbox with a candidate (files and an entry point), and how a sandbox result is
scored on the host (fitness and a descriptor, or an explicit invalid reason).
"""

from __future__ import annotations

import importlib
import json
import math
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, ClassVar

from elm.errors import UserError

ENTRY_POINT_GROUP = "elm.environments"
# The built-in environments: the repository's top-level `environments/` folder in a source
# checkout (editable install, PYTHONPATH), shipped as `elm_environments` in a wheel (setup.py).
_BUILTIN_LAYOUTS = ("elm_environments", "environments")


class EnvironmentLoadError(UserError):
    """An environment could not be found or loaded."""




@dataclass(frozen=True)
class Program:
    """A candidate program: the file name it is known by and its source."""

    file_name: str
    source: str
    name: str = ""


@dataclass(frozen=True)
class CommitMessage:
    text: str
    weight: float = 1.0


@dataclass(frozen=True)
class Dimension:
    name: str
    low: float
    high: float
    bins: int


@dataclass(frozen=True)
class DescriptorSpace:
    dimensions: tuple[Dimension, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(d.name for d in self.dimensions)

    @property
    def ranges(self) -> tuple[tuple[float, float], ...]:
        return tuple((d.low, d.high) for d in self.dimensions)

    @property
    def bins(self) -> tuple[int, ...]:
        return tuple(d.bins for d in self.dimensions)

    def __len__(self) -> int:
        return len(self.dimensions)


@dataclass(frozen=True)
class Score:
    """Host-side verdict on one sandbox result."""

    fitness: float | None = None
    descriptor: tuple[float, ...] | None = None
    invalid_reason: str | None = None
    extras: Mapping[str, Any] = field(default_factory=dict)

    @property
    def valid(self) -> bool:
        return self.invalid_reason is None

    @classmethod
    def of(cls, fitness: float, descriptor: Sequence[float], **extras: Any) -> Score:
        values = [float(fitness), *map(float, descriptor)]
        if not all(math.isfinite(v) for v in values):
            return cls.invalid("fitness or descriptor is not finite")
        return cls(fitness=values[0], descriptor=tuple(values[1:]), extras=extras)

    @classmethod
    def invalid(cls, reason: str) -> Score:
        return cls(invalid_reason=reason)


_DEFAULT_HARNESS = '''\
import importlib


def main():
    candidate = importlib.import_module({module!r})
    return candidate.{entry}()
'''


class Environment:
    """Base class of every environment. Subclasses set the class attributes and `score`.

    The sandbox side: `sandbox_files()` are written next to the candidate file
    (`file_name`) in a scratch folder, and the runner calls `main()` of the file named by
    `harness`; whatever `main()` returns, as JSON, is the result handed to `score`.
    The default harness imports the candidate and returns `entry_point()`.
    """

    name: ClassVar[str] = ""
    file_name: ClassVar[str] = "program.py"
    entry_point: ClassVar[str] = "main"
    harness: ClassVar[str] = "elm_harness.py"
    descriptor_space: ClassVar[DescriptorSpace]
    commit_messages: ClassVar[tuple[CommitMessage, ...]] = (
        CommitMessage("Changed the program.", 1.0),
    )
    # The fitness floor for the QD score (sum over elites of fitness - qd_offset); an
    # environment whose floor depends on its options sets it per instance.
    qd_offset: float = 0.0
    # `elm verify`: how far a re-run's fitness and descriptor values may be from the stored
    # ones and still count as reproduced (absolute; 0.0: exactly).
    reproduce_tolerance: ClassVar[float] = 0.0
    # The seeds the config names (`environment.seeds`), None for the environment's default.
    seed_names: list[str] | None = None

    def __init__(self, seeds: Sequence[str] | None = None, **options: Any) -> None:
        if options:
            unknown = ", ".join(sorted(options))
            raise EnvironmentLoadError(f"environment {self.name!r} takes no option(s): {unknown}")
        self.seed_names = list(seeds) if seeds is not None else None

    def select_seeds(self, programs: Sequence[Program]) -> list[Program]:
        """Keep the seeds named in the config (all when none were named): what `seeds()`
        returns, so that the environment alone decides which seeds a run starts from."""
        if self.seed_names is None:
            return list(programs)
        by_name = {program.name: program for program in programs}
        unknown = [name for name in self.seed_names if name not in by_name]
        if unknown:
            known = ", ".join(sorted(by_name))
            raise EnvironmentLoadError(f"unknown seed(s) {', '.join(unknown)} (known: {known})")
        return [by_name[name] for name in self.seed_names]

    def seeds(self) -> list[Program]:
        raise NotImplementedError

    def sandbox_files(self) -> dict[str, str]:
        module = self.file_name.removesuffix(".py")
        return {self.harness: _DEFAULT_HARNESS.format(module=module, entry=self.entry_point)}

    def packaged_harness(self, package: str, **settings: Any) -> dict[str, str]:
        """The package's `harness.py` plus `environment.json`: the candidate's module and
        entry point and any `settings` the harness reads."""
        from importlib import resources

        settings = {"module": self.file_name.removesuffix(".py"), "entry": self.entry_point, **settings}
        return {
            self.harness: (resources.files(package) / "harness.py").read_text(),
            "environment.json": json.dumps(settings),
        }

    def score(self, result: Any) -> Score:
        raise NotImplementedError

    def verify(self, result: Any) -> str | None:
        """`elm verify`'s stricter, independent check of a result `score` accepted: why it
        fails, or None. The default checks nothing more."""
        return None

    def render(self, result: Any, path: str) -> str | None:
        """Draw a picture of a result into `path` (without suffix); return the file written."""
        return None


def seed_programs(environment: Environment) -> list[Program]:
    """The programs a run starts from: `environment.seeds()`, which keeps the ones the config
    names (`select_seeds`). An environment whose seeds() returns others than the named ones
    is refused with one line rather than followed."""
    programs = environment.seeds()
    named = environment.seed_names
    returned = [program.name for program in programs]
    if named is not None and returned != list(named):
        raise EnvironmentLoadError(
            f"environment {environment.name!r} was asked for the seeds {', '.join(named)} but its seeds() "
            f"returned {', '.join(str(name) for name in returned) or 'none'}: seeds() must return "
            "self.select_seeds(programs)")
    return programs


def seed_folder_programs(package: str, file_name: str) -> list[Program]:
    """Every `seeds/*.py` of an environment package, by file name, named by its stem."""
    from importlib import resources

    folder = resources.files(package) / "seeds"
    return [
        Program(file_name, path.read_text(), path.name.removesuffix(".py"))
        for path in sorted(folder.iterdir(), key=lambda path: path.name)
        if path.name.endswith(".py") and path.name != "__init__.py"
    ]


def load_environment(spec: str, options: Mapping[str, Any] | None = None) -> Environment:
    """Load by built-in name (`sodarace`), `module:Class` (the current folder is searched
    too, as `python -m` would), an entry point's name, or the `name` its class declares."""
    cls = _find_class(spec)
    if not (isinstance(cls, type) and issubclass(cls, Environment)):
        raise EnvironmentLoadError(f"{spec!r} is not an elm Environment subclass")
    try:
        return cls(**dict(options or {}))
    except TypeError as error:
        raise EnvironmentLoadError(f"environment {spec!r}: {error}") from None


def available_environments() -> dict[str, str]:
    """Name -> where it comes from, for built-ins and installed entry points."""
    package = builtin_package()
    found = {name: f"{package}.{name}" for name in _builtin_names()}
    for point in entry_points(group=ENTRY_POINT_GROUP):
        found.setdefault(point.name, point.value)
    return found


def _find_class(spec: str) -> Any:
    if ":" in spec:
        module_name, _, attribute = spec.partition(":")
        module = _import(module_name, spec)
        if not hasattr(module, attribute):
            raise EnvironmentLoadError(f"module {module_name!r} has no {attribute!r}")
        return getattr(module, attribute)
    for point in entry_points(group=ENTRY_POINT_GROUP):
        if point.name == spec:
            try:
                return point.load()
            except Exception as error:  # a broken plug-in must not crash the CLI
                raise EnvironmentLoadError(f"entry point {spec!r} failed to load: {error}") from None
    if spec in _builtin_names():
        module = _import(f"{builtin_package()}.{spec}", spec)
        return getattr(module, "ENVIRONMENT", None)
    declared = _class_declaring_name(spec)
    if declared is not None:
        return declared
    known = ", ".join(sorted(available_environments())) or "none"
    raise EnvironmentLoadError(f"unknown environment {spec!r} (known: {known}; or use module:Class)")


def _class_declaring_name(name: str) -> Any:
    """The installed entry point whose class declares `name` (its key may differ), or None."""
    for point in entry_points(group=ENTRY_POINT_GROUP):
        try:
            cls = point.load()
        except Exception:  # a broken plug-in is reported under its own key, not here
            continue
        if isinstance(cls, type) and getattr(cls, "name", None) == name:
            return cls
    return None


def _import(module_name: str, spec: str) -> Any:
    if ":" in spec:
        _search_current_folder()
    try:
        return importlib.import_module(module_name)
    except ImportError as error:
        raise EnvironmentLoadError(
            f"cannot import environment {spec!r}: {error} (searched the current folder and "
            "PYTHONPATH)") from None
    except Exception as error:  # a plug-in that fails while importing must not crash the CLI
        raise EnvironmentLoadError(
            f"environment {spec!r} failed while importing: {type(error).__name__}: {error}"
        ) from None


def _search_current_folder() -> None:
    """`module:Class` finds a module in the current folder, as users expect from Python
    (the `elm` script, unlike `python -m`, does not put it on the import path). It goes
    last, so it never shadows an installed module."""
    here = os.getcwd()
    if not any(os.path.abspath(entry or os.curdir) == here for entry in sys.path):
        sys.path.append(here)
        importlib.invalidate_caches()


def builtin_package() -> str | None:
    """The import name of the built-in environments next to this elm (None: none shipped)."""
    root = Path(__file__).resolve().parents[1]
    return next((name for name in _BUILTIN_LAYOUTS if (root / name / "__init__.py").is_file()), None)


def import_builtin(module: str) -> Any:
    """A module of the built-in environments by its name inside them, e.g. `sodarace.physics`."""
    package = builtin_package()
    if package is None:
        raise EnvironmentLoadError("this elm ships no built-in environments")
    return importlib.import_module(f"{package}.{module}")


def _builtin_names() -> list[str]:
    package = builtin_package()
    if package is None:
        return []
    root = Path(__file__).resolve().parents[1] / package
    return sorted(p.name for p in root.iterdir() if (p / "__init__.py").is_file())
