"""A tiny CodeGen built at test time: the real loading and sampling path, in seconds.

The model comes from `elm.mutation.scratch_model.build_tiny_codegen`; test modules import
the session-scoped `tiny_codegen_dir` fixture from here.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from elm.mutation.scratch_model import END_OF_TEXT, PROMPT_TAGS, build_tiny_codegen

__all__ = ["END_OF_TEXT", "PROMPT_TAGS", "build_tiny_codegen", "tiny_codegen_dir"]


@pytest.fixture(scope="session")
def tiny_codegen_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_codegen(tmp_path_factory.mktemp("tiny-codegen"))
