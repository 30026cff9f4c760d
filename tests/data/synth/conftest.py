from __future__ import annotations

import pytest
import torch

from vlmt.data.synth.world import SIZES, build, generate


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory):
    """The tiny world generated once for the whole session: (folder, in-memory World)."""
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("world") / "tiny"
    generate("tiny", out, seed=0)
    return out, build(SIZES["tiny"], 0)
