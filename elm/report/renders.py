"""Pictures of elites drawn by the run's environment (`Environment.render`), as data URIs.

Rendering runs environment code on the host over stored results, so each picture is drawn
on its own: a failure costs that picture only, and every failure is described in `notes`.
"""

from __future__ import annotations

import base64
import mimetypes
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from elm.environment import Environment, load_environment
from elm.records import CandidateRecord

_IMAGE_TYPES = {".png": "image/png", ".svg": "image/svg+xml", ".jpg": "image/jpeg",
                ".jpeg": "image/jpeg", ".gif": "image/gif", ".webp": "image/webp"}
_MAX_BYTES = 2 * 1024 * 1024


@dataclass
class Renders:
    images: dict[int, str] = field(default_factory=dict)  # candidate id -> data URI
    notes: list[str] = field(default_factory=list)


def render_candidates(spec: str | None, options: dict[str, Any],
                      records: Sequence[CandidateRecord]) -> Renders:
    """Draw each record's stored result with the environment named `spec`."""
    renders = Renders()
    if not records:
        return renders
    environment = _environment(spec, options, renders)
    if environment is None:
        return renders
    failures: list[str] = []
    with tempfile.TemporaryDirectory(prefix="elm-render-") as scratch:
        for record in records:
            try:
                renders.images[record.id] = _draw(environment, record, Path(scratch))
            except Exception as error:  # plug-in code on stored data: note it, keep going
                failures.append(f"candidate {record.id}: {type(error).__name__}: {error}")
    if failures:
        renders.notes.append(f"{len(failures)} of {len(records)} pictures could not be drawn "
                             f"(first: {failures[0]})")
    return renders


def _environment(spec: str | None, options: dict[str, Any], renders: Renders) -> Environment | None:
    if not spec:
        renders.notes.append("no pictures: the run does not name its environment")
        return None
    try:
        environment = load_environment(spec, options)
    except Exception as error:  # a missing or broken plug-in must not stop the report
        renders.notes.append(f"no pictures: environment {spec!r} cannot be loaded: {error}")
        return None
    if type(environment).render is Environment.render:
        renders.notes.append(f"no pictures: environment {spec!r} draws none")
        return None
    return environment


def _draw(environment: Environment, record: CandidateRecord, scratch: Path) -> str:
    written = environment.render(record.result, str(scratch / f"candidate-{record.id}"))
    if written is None:
        raise ValueError("render() drew nothing for this result")
    path = Path(written)
    kind = _IMAGE_TYPES.get(path.suffix.lower()) or mimetypes.guess_type(path.name)[0]
    if kind is None or not kind.startswith("image/"):
        raise ValueError(f"render() wrote {path.name}, which is not a picture")
    data = path.read_bytes()
    if len(data) > _MAX_BYTES:
        raise ValueError(f"render() wrote {len(data)} bytes, more than {_MAX_BYTES}")
    return f"data:{kind};base64,{base64.b64encode(data).decode('ascii')}"
