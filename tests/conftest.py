"""Test-session setup: generated worlds and prepared datasets go to a fresh temporary cache, so
the suite never reads or writes the user's ~/.cache/vlmt (and always tests generation from
scratch). Set VLMT_TEST_CACHE to a folder to reuse one across sessions."""

from __future__ import annotations

import os
import shutil
import tempfile

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
