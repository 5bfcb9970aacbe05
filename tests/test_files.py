"""Atomic writes: the old content or the new, never half, and no temporary file left."""

import pytest

from ofa.files import replace_folder, replacing, write_atomic


def test_write_atomic_replaces_and_a_failed_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "metrics.json"
    write_atomic(path, "old\n")
    write_atomic(path, "new\n")
    assert path.read_text() == "new\n"
    with pytest.raises(RuntimeError), replacing(path) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed midway")
    assert path.read_text() == "new\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]


def test_replace_folder_swaps_whole_folders(tmp_path):
    old, new = tmp_path / "best", tmp_path / ".best.new"
    old.mkdir()
    (old / "a").write_text("1")
    new.mkdir()
    (new / "b").write_text("2")
    replace_folder(new, old)
    assert [p.name for p in old.iterdir()] == ["b"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best"]
