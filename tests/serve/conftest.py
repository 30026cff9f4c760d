"""Models to serve: short runs of the shipped tiny configs, exported (their gallery is the tiny
world's test pictures, in the test session's cache)."""

from __future__ import annotations

from pathlib import Path

import pytest

from vlmt.cli import main


@pytest.fixture(scope="session")
def model_dirs(tmp_path_factory) -> dict[str, Path]:
    pytest.importorskip("fastapi", reason="the serving extra (pip install 'vlmt[serve]') is not installed")
    import torch

    torch.set_num_threads(1)
    tmp = tmp_path_factory.mktemp("served")
    out = {}
    for name, config, iters in (("tiny", "tiny", 90), ("svlr", "svlr_tiny", 60)):
        run = tmp / "runs" / name
        assert main(["train", config, "--out", str(run), "--set", f"train.max_iters={iters}",
                     "--set", "train.progress=false"]) == 0
        assert main(["export", str(run), "--out", str(tmp / name), "--metrics", "none"]) == 0
        out[name] = tmp / name
    return out


@pytest.fixture(scope="session")
def picture(model_dirs) -> bytes:
    """A test picture of the tiny world, as uploaded bytes."""
    import json

    from vlmt.serve.gallery import find_gallery

    data = json.loads((model_dirs["tiny"] / "config.json").read_text())["experiment"]["data"]
    return find_gallery(data).images[0].path.read_bytes()
