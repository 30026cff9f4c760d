"""Named dataset sources: a bad `world:` name is a one-line ConfigError naming the source,
before anything is generated."""

from __future__ import annotations

import pytest

from vlmt.data.datasets.sources import resolve_source
from vlmt.errors import ConfigError


@pytest.mark.parametrize("spec, says", [
    ("world:huge", "unknown world size 'huge'"),
    ("world:default-test0", "number of test images must be between 1 and"),
    ("world:default-test1000:x", "the seed must be an integer"),
    ("world:", "expected world:<size>"),
])
def test_bad_world_sources_are_refused_before_generating(spec, says, tmp_path, monkeypatch):
    monkeypatch.setenv("VLMT_CACHE", str(tmp_path))
    with pytest.raises(ConfigError, match=f"data source {spec!r}") as caught:
        resolve_source(spec)
    assert says in str(caught.value) and "\n" not in str(caught.value)
    assert not any(tmp_path.iterdir())  # nothing generated, no lock file left
