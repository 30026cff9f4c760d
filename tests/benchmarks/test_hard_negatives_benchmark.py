"""benchmarks/hard_negatives.py: companions are described more alike than uniform negatives, and
their false-negative rate is judged by the world's true scenes."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _benchmark():
    spec = importlib.util.spec_from_file_location("hard_negatives_bench", ROOT / "benchmarks" / "hard_negatives.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_companions_share_more_words_and_rates_are_shares(capsys):
    bench = _benchmark()
    result = bench.measure("tiny", 0, [3, 23])
    assert result["pictures"] == 24 and result["examples"] == 24 * 5
    rows = [result["uniform"], *result["pools"].values()]
    for row in rows:
        assert all(0.0 <= v <= 100.0 for v in row.values())
    # the nearest few pictures are described more alike than uniformly drawn others
    assert result["pools"]["3"]["words_shared"] > result["uniform"]["words_shared"]
    # a pool of every other picture is a uniform draw with the two checks
    assert abs(result["pools"]["23"]["words_shared"] - result["uniform"]["words_shared"]) < 5
    assert bench.main(["--size", "tiny", "--pools", "3"]) == 0
    assert "hard_pool 3" in capsys.readouterr().out
    assert bench.main(["--size", "huge"]) == 1
    assert "unknown world size" in capsys.readouterr().err
