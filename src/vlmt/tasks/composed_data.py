"""Files of the former `type: composed_datasets` section (both papers' datasets on one root, for a
model that learns both papers' tasks on one encoder) read as a `datasets` section
(`vlmt.data.section`) with the `vl` and `svlr` families: one root, the five datasets, each family's
options under its name.

    data:                                   data:
      type: composed_datasets                 type: datasets
      root: world:tiny              ->        root: world:tiny
      vl: {answer_more_than: 8}               datasets: {vqa: {}, captions: {}, entities: {}, vqa_mc: {}, genome: {}}
      svlr: {word_dim: 64}                    missing: skip     # the vl part named no datasets
                                              families: {vl: {answer_more_than: 8}, svlr: {word_dim: 64}}

There is no composed section class any more: this module only registers the alias.
"""

from __future__ import annotations

from typing import Any

from vlmt.config import DATA
from vlmt.tasks.svlr_data import SVLRDataConfig, upgrade_svlr_section
from vlmt.tasks.vl_data import VLDatasetsConfig, upgrade_vl_section

VL_ROOT, SVLR_ROOT = VLDatasetsConfig.root, SVLRDataConfig.root  # the parts' own defaults, replaced by root
SHARED = ("features", "images")  # section-wide in a `datasets` section, per part in a composed one


def upgrade_composed_section(raw: dict[str, Any]) -> dict[str, Any]:
    """A former `composed_datasets` section as a `datasets` section. Both parts read its root (a
    part naming another root is refused, as it was); where the parts' stores or picture patterns
    differ, the vl datasets keep the vl part's as their own; files are checked when either part
    asked for it."""
    raw = dict(raw)
    root = raw.pop("root", "world:tiny")
    parts = {}
    for key, upgrade, default in (("vl", upgrade_vl_section, VL_ROOT), ("svlr", upgrade_svlr_section, SVLR_ROOT)):
        part = dict(raw.pop(key, None) or {})
        if part.pop("type", f"{key}_datasets") != f"{key}_datasets":  # a saved config names each part's type
            raise ValueError(f"{key}.type: must be '{key}_datasets' here")
        if part.get("root") not in (None, root, default):  # a saved config holds each part's default root
            raise ValueError(f"{key}.root: both parts read data.root ({root!r}); set that instead of {part['root']!r}")
        parts[key] = upgrade({**part, "root": root})
    vl, svlr = parts["vl"], parts["svlr"]
    out: dict[str, Any] = {"root": root, **raw}  # keys of neither part are reported by the loader
    for key in SHARED:
        if key in svlr:
            out[key] = svlr[key]
    vl_files = vl["datasets"] if isinstance(vl["datasets"], dict) else {}
    for key in SHARED:
        if key in vl and vl[key] != out.get(key, "features" if key == "features" else "images/{image_id}.png"):
            vl_files = {name: {**(files or {}), key: (files or {}).get(key) or vl[key]}
                        for name, files in vl_files.items()}
    out["datasets"] = {**vl_files, **svlr["datasets"]}
    if "missing" in vl:
        out["missing"] = vl["missing"]
    if "check_files" in vl or "check_files" in svlr:
        out["check_files"] = bool(vl.get("check_files", True) or svlr.get("check_files", True))
    out["families"] = {**vl["families"], **svlr["families"]}
    return out


DATA.alias("composed_datasets", "datasets", upgrade_composed_section)
