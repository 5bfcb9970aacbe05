"""Run-folder housekeeping without training: log trimming, fresh starts, and the temporary
names of interrupted writes (only this package's own names are ever touched)."""

from __future__ import annotations

import json
from pathlib import Path

from ofa.train import run_folder


def _lines(*steps: int) -> str:
    return "".join(json.dumps({"step": s, "loss": s / 10}) + "\n" for s in steps)


def test_trim_keeps_whole_lines_up_to_the_checkpoint(tmp_path):
    log = tmp_path / "train_log.jsonl"
    log.write_text(_lines(1, 2, 3, 4) + "\n[1, 2]\n" + '{"loss": 1}\n' + '{"step": true}\n'
                   + _lines(5) + '{"step": 6, "lo')  # the kill tore the last line
    run_folder.trim_log(log, 4)
    assert log.read_text() == _lines(1, 2, 3, 4)
    run_folder.trim_log(log, 0)
    assert log.read_text() == ""
    run_folder.trim_log(tmp_path / "missing.jsonl", 3)  # nothing logged yet: nothing to do
    assert not (tmp_path / "missing.jsonl").exists()


def test_trim_survives_bytes_a_kill_cut_mid_character(tmp_path):
    log = tmp_path / "valid_log.jsonl"
    log.write_bytes(_lines(1).encode() + '{"step": 2, "caption": "é'.encode()[:-1])
    run_folder.trim_log(log, 5)
    assert log.read_text() == _lines(1)


def test_fresh_start_empties_the_logs_and_resume_trims_them(tmp_path):
    for name in run_folder.LOGS:
        (tmp_path / name).write_text(_lines(1, 2, 3))
    run_folder.prepare(tmp_path, 2)
    assert all((tmp_path / n).read_text() == _lines(1, 2) for n in run_folder.LOGS)
    run_folder.prepare(tmp_path, None)
    assert not any((tmp_path / n).exists() for n in run_folder.LOGS)
    run_folder.prepare(tmp_path / "not-yet-created", None)  # a first run: no folder yet


def test_only_our_temporary_names_are_removed(tmp_path):
    ours = [".checkpoint_last.pt.tmp-12", ".train_log.jsonl.tmp-3", ".valid_log.jsonl.tmp-3",
            ".best.new-77", ".final.new-77.ab_c9xyz", ".final.old-5"]
    theirs = ["notes.txt", ".checkpoint_last.pt.tmp-", ".checkpoint_last.pt.tmp-1x",
              ".best.new-x", "best.old-1", ".other.new-3", ".model.old-2", ".final.new-7.A"]
    for name in ours + theirs:
        if "new" in name or "old" in name:
            (tmp_path / name).mkdir()
            (tmp_path / name / "model.safetensors").write_bytes(b"half")
        else:
            (tmp_path / name).write_text("x")
    (tmp_path / "final").mkdir()  # present: its .old copy is a leftover
    assert sorted(run_folder.clean_interrupted_writes(tmp_path)) == sorted(ours)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*theirs, "final"])


def test_a_model_folder_killed_between_its_renames_is_put_back(tmp_path):
    (tmp_path / ".best.new-9").mkdir()  # written whole, not yet renamed into place
    (tmp_path / ".best.new-9" / "model.safetensors").write_bytes(b"newer")
    (tmp_path / ".best.old-9").mkdir()  # the previous best/, moved aside
    (tmp_path / ".best.old-9" / "model.safetensors").write_bytes(b"previous")
    run_folder.clean_interrupted_writes(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best"]
    assert (tmp_path / "best" / "model.safetensors").read_bytes() == b"previous"


def test_replace_folder_leaves_no_temporary_names(tmp_path: Path):
    dst = tmp_path / "final"
    for content in (b"one", b"two"):
        src = run_folder.new_folder(tmp_path, "final")
        src.mkdir()
        (src / "model.safetensors").write_bytes(content)
        run_folder.replace_folder(src, dst)
    assert [p.name for p in tmp_path.iterdir()] == ["final"]
    assert (dst / "model.safetensors").read_bytes() == b"two"
