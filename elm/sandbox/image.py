"""The sandbox image: where its recipe lives, whether an image is current, how to build it.

The recipe is the `sandbox/` folder of a source checkout, shipped in a wheel as
`elm/sandbox/runtime/` (Dockerfile + the runner/ folder, see setup.py). Its base is either a Python
image from a registry (`--base`) or, by default, a Debian bookworm root built offline by
`sandbox/build_base.sh` (debootstrap + `docker import`) and cached as a local image: it
is rebuilt only when asked. The built image carries labels with the digest of the recipe
and of the runner, so a build can say "up to date" and a sandbox can refuse an image
whose runner is older than the host's.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from elm.sandbox import SandboxUnavailable

DEFAULT_IMAGE = "elm-sandbox:latest"


def default_image() -> str:
    """The image name used when none is given: `ELM_SANDBOX_IMAGE`, else elm-sandbox:latest
    (lets two checkouts with different runners keep images side by side)."""
    return os.environ.get("ELM_SANDBOX_IMAGE") or DEFAULT_IMAGE
DEFAULT_BASE_IMAGE = "elm-sandbox-base:bookworm"
RECIPE_LABEL = "org.elm.sandbox.recipe"
RUNNER_LABEL = "org.elm.sandbox.runner"
BASE_LABEL = "org.elm.sandbox.base"
RECIPE_FILES = ("Dockerfile", ".dockerignore")  # and the runner's files


def sandbox_folder() -> Path:
    """The image recipe and runner next to this elm: `elm/sandbox/runtime/` when installed
    from a wheel, the repository's `sandbox/` folder in a source checkout."""
    here = Path(__file__).resolve().parent
    layouts = (here / "runtime", here.parents[1] / "sandbox")
    for folder in layouts:
        if (folder / "runner" / "__main__.py").is_file():
            return folder
    raise SandboxUnavailable(
        f"the sandbox runner is missing (looked in {layouts[0]} and {layouts[1]}): reinstall elm"
    )


def runner_path() -> Path:
    """The runner's folder, run as a program (`python3 -I FOLDER`)."""
    return sandbox_folder() / "runner"


def runner_files() -> list[Path]:
    return sorted(runner_path().glob("*.py"))


def runner_digest() -> str:
    return _digest([part for path in runner_files() for part in (path.name.encode(), path.read_bytes())])


def recipe_digest(base_image_id: str) -> str:
    folder = sandbox_folder()
    parts = [(folder / name).read_bytes() for name in RECIPE_FILES if (folder / name).exists()]
    return _digest([*parts, runner_digest().encode(), base_image_id.encode()])


def check_image(client: Any, image: str) -> None:
    """SandboxUnavailable unless `image` exists and runs the host's runner."""
    import docker

    try:
        found = client.images.get(image)
    except docker.errors.ImageNotFound:
        raise SandboxUnavailable(f"sandbox image {image} not found: build it with `elm sandbox build`") from None
    built_from = (found.labels or {}).get(RUNNER_LABEL)
    if built_from is None:
        raise SandboxUnavailable(
            f"image {image} was not built by `elm sandbox build` (no runner label): build it with that command"
        )
    try:
        host_runner = runner_digest()
    except SandboxUnavailable:
        return  # elm installed without its sandbox/ folder: nothing to compare the image with
    if built_from != host_runner:
        raise SandboxUnavailable(
            f"sandbox image {image} holds an older sandbox/runner: refresh it with `elm sandbox build`"
        )


def build_image(
    client: Any,
    image: str | None = None,
    base: str | None = None,
    rebuild_base: bool = False,
    force: bool = False,
    say: Callable[[str], None] = print,
) -> list[str]:
    """Build or refresh the sandbox image (building the offline base first when needed);
    returns, and tells `say`, one line per thing it did."""
    lines: list[str] = []
    image = image or default_image()

    def tell(line: str) -> None:
        lines.append(line)
        say(line)

    base_name = base or DEFAULT_BASE_IMAGE
    if base is None:
        _ensure_offline_base(client, base_name, rebuild_base, tell)
    else:
        _ensure_registry_base(client, base_name, tell)
    recipe = recipe_digest(client.images.get(base_name).id)
    current = _existing_image(client, image)
    if current is not None and not force and (current.labels or {}).get(RECIPE_LABEL) == recipe:
        tell(f"image {image}: up to date (recipe {recipe[:12]}), nothing to do")
        return lines
    reason = "built" if current is None else "rebuilt (forced)" if force else "rebuilt (recipe changed)"
    started = time.monotonic()
    built = _docker_build(client, image, base_name, recipe, fresh=force)
    size_mb = (built.attrs.get("Size") or 0) / 1e6
    tell(f"image {image}: {reason} from {base_name} in {time.monotonic() - started:.1f} s "
         f"({size_mb:.0f} MB, recipe {recipe[:12]})")
    _remove_superseded(client, tell)
    return lines


def _ensure_offline_base(client: Any, base: str, rebuild: bool, tell: Callable[[str], None]) -> None:
    existing = _existing_image(client, base)
    if existing is not None and not rebuild:
        tell(f"base image {base}: present, reused (rebuild it with --rebuild-base)")
        return
    _check_can_debootstrap()
    tell(f"base image {base}: building offline from Debian packages (debootstrap; a few minutes)")
    started = time.monotonic()
    script = sandbox_folder() / "build_base.sh"
    completed = subprocess.run(["sh", str(script), base], check=False)
    if completed.returncode != 0:
        raise SandboxUnavailable(f"building the base image failed ({script} exited {completed.returncode})")
    tell(f"base image {base}: built in {time.monotonic() - started:.0f} s")


def _ensure_registry_base(client: Any, base: str, tell: Callable[[str], None]) -> None:
    import docker

    if _existing_image(client, base) is not None:
        tell(f"base image {base}: present locally, used as is")
        return
    tell(f"base image {base}: pulling from its registry")
    try:
        client.images.pull(base)
    except docker.errors.APIError as problem:
        raise SandboxUnavailable(
            f"cannot pull {base} ({problem.explanation or problem}); without a registry, "
            "leave out --base to build the base offline"
        ) from None


def _check_can_debootstrap() -> None:
    if shutil.which("debootstrap") is None:
        raise SandboxUnavailable(
            "building the offline base image needs debootstrap: `apt-get install debootstrap` "
            "(or pass --base IMAGE with a Python image from a reachable registry)"
        )
    if os.geteuid() != 0:
        raise SandboxUnavailable("building the offline base image needs root (debootstrap): run it with sudo")


def _docker_build(client: Any, image: str, base: str, recipe: str, fresh: bool) -> Any:
    import docker

    try:
        built, _ = client.images.build(
            path=str(sandbox_folder()),
            tag=image,
            buildargs={"BASE_IMAGE": base},
            labels={RECIPE_LABEL: recipe, RUNNER_LABEL: runner_digest(), BASE_LABEL: base},
            rm=True,
            forcerm=True,
            pull=False,
            nocache=fresh,
        )
    except docker.errors.BuildError as problem:
        tail = " | ".join(str(entry.get("stream", entry.get("error", ""))).strip()
                          for entry in list(problem.build_log)[-5:])
        raise SandboxUnavailable(f"building {image} failed: {problem.msg} ({tail})") from None
    return built


def _existing_image(client: Any, name: str) -> Any:
    import docker

    try:
        return client.images.get(name)
    except docker.errors.ImageNotFound:
        return None


def _remove_superseded(client: Any, tell: Callable[[str], None]) -> None:
    """Earlier builds of the sandbox image that lost their tag (unless a container still uses them)."""
    import docker

    removed = 0
    for old in client.images.list(filters={"dangling": True, "label": RECIPE_LABEL}):
        try:
            client.images.remove(old.id)
            removed += 1
        except docker.errors.APIError:
            pass  # still used by a container: a later build removes it
    if removed:
        tell(f"removed {removed} superseded build(s) of the sandbox image")


def _digest(parts: list[bytes]) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(hashlib.sha256(part).digest())
    return digest.hexdigest()
