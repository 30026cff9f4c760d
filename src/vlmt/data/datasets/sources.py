"""Where a data section's datasets are: a config says `root: world:tiny` instead of a folder path.

A source resolves to a folder laid out in the official formats (VQA, Karpathy captions,
Flickr30k Entities, Visual Genome, a region feature store under `features/`), preparing it on
first use:

    world:<size>[:<seed>][:<proposals>]
                            the synthetic world (generated into the cache when missing); <size> is
                            tiny, default, train2240 (4x default's training pictures), captions20
                            (default with 20 captions per training picture), detector1200
                            (default with its detector trained 3x longer), sharp
                            (its detector trained 6x longer, square region crops), or e.g.
                            default-test1000 (1,000 test images);
                            <proposals> is detector or oracle (how its regions are found; default:
                            vlmt.data.synth.world.DEFAULT_PROPOSALS), e.g. world:tiny:0:detector
    easy_vqa                easy-VQA from the `easy-vqa` package, converted to VQA v2 files with
                            region features extracted from its pixels (optional extra;
                            `vlmt.data.datasets.easy_vqa`)
    <anything else>         a folder path, used as it is (it must exist)

`resolve_source` prepares a source (training, evaluation); `source_folder` only finds one already
on this machine (the gallery of a served model: nothing is generated or downloaded there). Both
read the same table, so a model's pictures come from the folder its training read.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from vlmt.errors import ConfigError


@dataclass(frozen=True)
class PreparedSource:
    """A named source prepared on first use: `prepare` ("module:function", taking `progress`,
    returning the folder; imported only then, as it may need an optional extra) and `find`
    (the folder when it is already prepared on this machine, else None)."""

    prepare: str
    find: Callable[[], Path | None]


PREPARED: dict[str, PreparedSource] = {}


def register_source(name: str, source: PreparedSource) -> None:
    """Make `root: <name>` a data source (its dataset module calls this once)."""
    PREPARED[name] = source


def parse_world_source(spec: str) -> tuple[str, int, str | None]:
    """(size, seed, proposal method or None for the default) of `world:<size>[:<seed>][:<proposals>]`;
    a ConfigError naming the source otherwise."""
    from vlmt.data.synth.world import PROPOSAL_METHODS, world_size

    parts = spec.split(":")
    usage = "expected world:<size>, world:<size>:<seed> or world:<size>:<seed>:<proposals>"
    if parts[0] != "world" or len(parts) not in (2, 3, 4) or not parts[1]:
        raise ConfigError(f"data source {spec!r}: {usage}")
    try:
        world_size(parts[1])
    except ConfigError as e:
        raise ConfigError(f"data source {spec!r}: {e}") from None
    seed, method = 0, None
    rest = parts[2:]
    if rest and rest[-1] in PROPOSAL_METHODS:
        method = rest.pop()
    if len(rest) > 1:
        raise ConfigError(f"data source {spec!r}: {usage} ({' or '.join(PROPOSAL_METHODS)})")
    if rest:
        try:
            seed = int(rest[0])
        except ValueError:
            raise ConfigError(f"data source {spec!r}: the seed must be an integer, and the proposals "
                              f"{' or '.join(PROPOSAL_METHODS)}; got {rest[0]!r}") from None
    return parts[1], seed, method


def resolve_source(spec: str, *, progress: Callable[[str], None] | None = None) -> Path:
    """Folder of the dataset source `spec` (see the module docstring), prepared if needed."""
    if spec.startswith("world:"):
        size, seed, method = parse_world_source(spec)
        from vlmt.data.synth.cache import ensure_world

        return ensure_world(size, seed, proposals=method, progress=progress)
    if spec in PREPARED:
        module_name, _, function = PREPARED[spec].prepare.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as e:
            raise ConfigError(f"data source {spec!r} needs an optional dependency: {e}") from None
        return Path(getattr(module, function)(progress=progress))
    path = Path(spec).expanduser()
    if not path.is_dir():
        raise ConfigError(f"data source {spec!r}: no such folder")
    return path


def source_folder(spec: str) -> Path | None:
    """The folder of source `spec` when it is already on this machine (a generated world, a
    prepared source, an existing folder), else None; nothing is prepared."""
    folder: Path | None
    if spec.startswith("world:"):
        from vlmt.data.synth.cache import world_dir

        try:
            folder = world_dir(*parse_world_source(spec))
        except ConfigError:
            return None
    elif spec in PREPARED:
        folder = PREPARED[spec].find()
    elif spec:
        folder = Path(spec).expanduser()
    else:
        return None
    return folder if folder is not None and folder.is_dir() else None


def source_name(spec: str) -> str:
    """A source as a client may see it: `world:tiny:0`, `easy_vqa`, or a folder's last name (never a
    path of this machine)."""
    if spec.startswith("world:") or spec in PREPARED or not spec:
        return spec or "(no root)"
    return Path(spec).name or spec
