from __future__ import annotations

import pytest

from vlmt.data.synth.world import SIZES, build


@pytest.fixture(scope="session")
def tiny_world(tiny_world_folder):
    """The session's tiny world (the one `world:tiny` configs read): (folder, in-memory World)."""
    return tiny_world_folder, build(SIZES["tiny"], 0)
