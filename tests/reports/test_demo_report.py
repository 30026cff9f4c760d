"""The demo report's note under the retrieval ceiling: on the default world it names the shipped
config that narrows the gap, and that config exists."""

from __future__ import annotations

import re

from vlmt.config import configs_dir
from vlmt.reports.demo_report import _ceiling_note

CEILING = {"images": 120, "images_per_caption": 3.4}


def test_the_default_world_note_points_at_a_shipped_config():
    (note,) = _ceiling_note(CEILING, "default")
    assert "3.4 of the 120 test pictures" in note.text
    named = re.findall(r"configs/([a-z0-9_]+\.yaml)", note.text)
    assert named == ["hierarchical_world_train2240.yaml"]
    assert (configs_dir() / named[0]).is_file()


def test_other_worlds_get_the_ceiling_note_alone():
    (note,) = _ceiling_note(CEILING, "tiny")
    assert "configs/" not in note.text and "memorise" not in note.text
    assert _ceiling_note(None, "default") == []


def test_the_default_world_note_points_at_the_sharp_demo_and_it_exists():
    from vlmt.data.synth.world import world_size
    from vlmt.experiments.demo import PARTS, SIZES

    (note,) = _ceiling_note(CEILING, "default")
    assert "`vlmt demo --size sharp`" in note.text
    assert "sharp" in SIZES and world_size("sharp").main == world_size("default").main
    # the sharp demo trains exactly the default demo's runs, only on its own world
    assert all(p.configs["sharp"] == p.configs["default"] and p.overrides["sharp"] == p.overrides["default"]
               for p in PARTS)
