import pytest

from vlmt.io import atomic_write


def test_atomic_write_leaves_old_file_on_failure(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_write(target) as f:
            f.write("half")
            raise RuntimeError("boom")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_atomic_write_replaces_on_success(tmp_path):
    target = tmp_path / "sub" / "out.txt"
    with atomic_write(target) as f:
        f.write("new")
    assert target.read_text() == "new"


def test_atomic_outputs_get_the_permissions_of_an_ordinary_file(tmp_path):
    import os

    from vlmt.io import atomic_path, atomic_write

    old = os.umask(0o022)
    try:
        with atomic_write(tmp_path / "a.txt") as f:
            f.write("x")
        with atomic_path(tmp_path / "b.bin") as p:
            p.write_bytes(b"y")
    finally:
        os.umask(old)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "b.bin").stat().st_mode & 0o777 == 0o644


def test_a_file_a_library_replaces_is_still_readable_by_others(tmp_path):
    """safetensors writes a new file of mode 0o600 over the temporary one; the renamed result gets the
    mode a plainly created file gets (a model folder people publish is readable by others)."""
    import os

    import numpy as np
    from safetensors.numpy import save_file

    from vlmt.io import atomic_path

    old = os.umask(0o022)
    try:
        with atomic_path(tmp_path / "w.safetensors") as tmp:
            save_file({"x": np.zeros(3, dtype=np.float32)}, str(tmp))
    finally:
        os.umask(old)
    assert (tmp_path / "w.safetensors").stat().st_mode & 0o777 == 0o644

