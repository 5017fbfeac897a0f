"""Packaging of the runtime files that live at the top of the repository.

A wheel carries them inside packages, so an installed elm needs no source checkout:
- `environments/` (the built-in environments) becomes the package `elm_environments`:
  an installed elm adds no generic top-level name. Their absolute `environments.` imports
  are rewritten to the installed name on the way.
- `sandbox/` (the runner's folder, the Dockerfile and its .dockerignore, build_base.sh) becomes
  `elm/sandbox/runtime/`, the build context of `elm sandbox build`.
An editable install keeps the source layout: elm finds both folders where they are
(see `elm.environment.builtin_package` and `elm.sandbox.image.sandbox_folder`).
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

BUILTINS_SOURCE = "environments"
BUILTINS_INSTALLED = "elm_environments"
RUNTIME_SOURCE = Path("sandbox")
RUNTIME_INSTALLED = Path("elm", "sandbox", "runtime")
RUNTIME_FILES = ("Dockerfile", ".dockerignore", "build_base.sh", "README.md")
RUNNER_FOLDER = "runner"  # its *.py files
_BUILTIN_IMPORT = re.compile(rf"^(\s*(?:from|import)\s+){BUILTINS_SOURCE}(?=[.\s])", re.MULTILINE)


class BuildWithRuntimeFiles(build_py):
    """build_py, then the built-ins renamed and the sandbox runtime copied into the build."""

    def run(self) -> None:
        super().run()
        if self.editable_mode:
            return
        build = Path(self.build_lib)
        _rename_builtins(build / BUILTINS_SOURCE, build / BUILTINS_INSTALLED)
        _copy_runtime(build / RUNTIME_INSTALLED)


def _rename_builtins(built: Path, installed: Path) -> None:
    if installed.exists():
        shutil.rmtree(installed)
    built.rename(installed)
    for module in installed.rglob("*.py"):
        text = module.read_text(encoding="utf-8")
        renamed = _BUILTIN_IMPORT.sub(rf"\g<1>{BUILTINS_INSTALLED}", text)
        if renamed != text:
            module.write_text(renamed, encoding="utf-8")


def _copy_runtime(target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for name in RUNTIME_FILES:
        shutil.copy2(RUNTIME_SOURCE / name, target / name)
    (target / RUNNER_FOLDER).mkdir(exist_ok=True)
    for module in (RUNTIME_SOURCE / RUNNER_FOLDER).glob("*.py"):
        shutil.copy2(module, target / RUNNER_FOLDER / module.name)


setup(cmdclass={"build_py": BuildWithRuntimeFiles})
