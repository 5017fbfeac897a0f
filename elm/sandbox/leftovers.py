"""Folders a sandbox keeps on this machine, named after the process that owns them, so
that what a killed run left behind is found and removed by the next sandbox."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

OWNER_FILE = "owner"


def owned_folder(prefix: str, owner_in_name: bool = True) -> Path:
    """A new private folder (mode 0700) named `prefix`, this process's pid, a random part;
    or, with `owner_in_name` false, `prefix` and a random part only, the pid in a file
    inside (for a folder whose path is shown to others, as a mount's source is)."""
    if owner_in_name:
        return Path(tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-"))
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    (folder / OWNER_FILE).write_text(str(os.getpid()))
    return folder


def remove_abandoned_folders(prefix: str) -> None:
    """Remove the `owned_folder(prefix)` folders of processes that are gone."""
    for folder in Path(tempfile.gettempdir()).glob(f"{prefix}*"):
        pid = _owner(folder, prefix)
        if pid is not None and not process_exists(pid):
            remove_folder(folder)


def _owner(folder: Path, prefix: str) -> int | None:
    named, dash, _ = folder.name[len(prefix):].partition("-")
    if dash and named.isdigit():
        return int(named)
    try:
        return int((folder / OWNER_FILE).read_text())
    except (OSError, ValueError):
        return None


def remove_folder(path: Path) -> None:
    """Remove a folder, also one a candidate nested deeper than shutil can walk or locked
    (chmod 0): coreutils' chmod and rm walk any depth."""
    try:
        shutil.rmtree(path)
        return
    except FileNotFoundError:
        return
    except (OSError, RecursionError):
        pass
    for command in (["chmod", "-R", "u+rwx", "--", str(path)], ["rm", "-rf", "--", str(path)]):
        subprocess.run(command, capture_output=True, check=False)


def process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
