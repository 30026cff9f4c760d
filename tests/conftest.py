"""Test-session setup: generated worlds and prepared datasets go to a fresh temporary cache, so
the suite never reads or writes the user's ~/.cache/vlmt (and always tests generation from
scratch). Set VLMT_TEST_CACHE to a folder to reuse one across sessions."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

_made: list[str] = []


def pytest_configure(config):  # noqa: ARG001
    chosen = os.environ.get("VLMT_TEST_CACHE")
    if chosen:
        os.environ["VLMT_CACHE"] = chosen
    else:
        folder = tempfile.mkdtemp(prefix="vlmt-test-cache-")
        _made.append(folder)
        os.environ["VLMT_CACHE"] = folder


def pytest_unconfigure(config):  # noqa: ARG001
    for folder in _made:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def tiny_world_folder() -> Path:
    """`world:tiny` (seed 0, detector regions) in the session's cache, generated on first use: the
    world the shipped tiny configs read. Tests that need a generated world share this one (a world
    takes most of a minute to generate); only tests of generation itself generate their own."""
    from vlmt.data.synth.cache import ensure_world

    return ensure_world("tiny", 0)
