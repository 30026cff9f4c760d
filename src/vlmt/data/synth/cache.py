"""A shared cache of generated synthetic worlds, so configs can name a world instead of a folder.

`ensure_world("tiny")` returns the folder of the tiny world with seed 0, generating it on first
use (a fresh checkout needs nothing else). Worlds live under `$VLMT_CACHE/worlds/<size>-seed<N>`
(default cache: `~/.cache/vlmt`); a world whose regions come from the detector rather than the
oracle boxes lives beside it, in `<size>-seed<N>-detector`. Several processes asking for the same world at once are
serialised by a lock file, so one generates and the others reuse its result.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import Callable


def cache_root() -> Path:
    """Folder of vlmt's caches: $VLMT_CACHE, else ~/.cache/vlmt."""
    env = os.environ.get("VLMT_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "vlmt"


def world_dir(size: str, seed: int = 0, proposals: str | None = None) -> Path:
    """Where the cached world of this size, seed and proposal method lives (whether or not it
    exists yet); `proposals` None is the default method (`vlmt.data.synth.world.DEFAULT_PROPOSALS`)."""
    from vlmt.data.synth.world import check_proposals

    method = check_proposals(proposals)
    suffix = "" if method == "oracle" else f"-{method}"
    return cache_root() / "worlds" / f"{size}-seed{seed}{suffix}"


def ensure_world(size: str, seed: int = 0, *, proposals: str | None = None, out: str | os.PathLike | None = None,
                 progress: Callable[[str], None] | None = None) -> Path:
    """Folder of a complete synthetic world of `size`, `seed` and proposal method, generated when
    missing.

    `out` places the world in a chosen folder instead of the cache.
    """
    from vlmt.data.synth.world import generate

    folder = Path(out) if out is not None else world_dir(size, seed, proposals)
    folder.parent.mkdir(parents=True, exist_ok=True)
    lock_path = folder.parent / f".{folder.name}.lock"
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            generate(size, folder, seed=seed, proposals=proposals, progress=progress)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return folder
