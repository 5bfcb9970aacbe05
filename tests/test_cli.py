"""The ``ofa`` command: task commands, JSON lines, per-input errors, exit codes."""

import io
import json
import os
import shutil
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from ofa.checkpoints import save_native
from ofa.cli import main
from ofa.model import OFAModel
from ofa.tokenizer import OFATokenizer

from bomb_images import png_1bit
from conftest import tiny_config


@pytest.fixture(scope="module")
def models(tmp_path_factory, bpe_dir):
    torch.manual_seed(0)
    model = OFAModel(tiny_config()).eval()
    root = tmp_path_factory.mktemp("cli")
    tok = OFATokenizer.from_dir(bpe_dir)
    save_native(model, root / "vqa", tok, source={"task": "vqa"})
    save_native(model, root / "giga", tok, source={"task": "gigaword"})
    return root


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli_imgs")
    rng = np.random.default_rng(1)
    paths = []
    for i in range(2):
        p = folder / f"i{i}.jpg"
        Image.fromarray(rng.integers(0, 255, (40, 56, 3), dtype=np.uint8)).save(p)
        paths.append(str(p))
    (folder / "corrupt.jpg").write_bytes(b"\xff\xd8 truncated")
    return paths, str(folder / "missing.png"), str(folder / "corrupt.jpg")


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_caption_json_and_bad_inputs(models, images, capsys):
    good, missing, corrupt = images
    code, out, err = run(capsys, "caption", good[0], missing, good[1], corrupt, "--model",
                         models / "vqa", "--device", "cpu", "--json", "--max-len", "4")
    assert code == 1  # some inputs failed
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["input"] for r in rows] == good
    for r in rows:
        assert {"input", "caption", "tokens", "score"} <= set(r)
        assert r["tokens"][-1] == 2 and len(r["tokens"]) <= 5 and r["tokens"][0] != 0
    errors = [line for line in err.splitlines() if line.startswith("ofa: error:")]
    assert len(errors) == 2
    assert missing in errors[0] and "not found" in errors[0] and corrupt in errors[1]
    assert "4/4" in err  # progress bar on stderr for many inputs
    assert "Traceback" not in err


def test_vqa_all_mode_scores_every_answer(models, images, tmp_path, capsys):
    answers = tmp_path / "answers.txt"
    answers.write_text("yes\nno\n\nred\ntwo dogs\n")
    code, out, err = run(capsys, "vqa", images[0][0], "--question", "What is it",
                         "--answers", answers, "--mode", "all", "--model", models / "vqa",
                         "--device", "cpu", "--json")
    assert code == 0, err
    r = json.loads(out)
    assert set(r["scores"]) == {"yes", "no", "red", "two dogs"}
    assert r["answer"] == max(r["scores"], key=r["scores"].get)
    assert r["score"] == pytest.approx(r["scores"][r["answer"]])


def test_text_output_and_decoding_flags(models, images, capsys):
    code, out, _ = run(capsys, "vqa", images[0][0], "-q", "is it red", "--model",
                       models / "vqa", "--device", "cpu", "--mode", "open", "--beam", "2",
                       "--max-len", "8", "--unnormalized")
    assert code == 0
    path, answer = out.rstrip("\n").split("\t")
    assert path == images[0][0]


def test_empty_question_each_input_one_error(models, images, capsys):
    code, out, err = run(capsys, "vqa", *images[0], "-q", " ", "--model", models / "vqa",
                         "--device", "cpu")
    assert code == 1 and out == ""
    lines = err.strip().splitlines()
    assert sum("question is empty" in line for line in lines) == 2


def test_unknown_model_is_one_line(capsys):
    code, out, err = run(capsys, "caption", "x.png", "--model", "ofa-gigantic", "--device",
                         "cpu")
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and err.startswith("ofa: error:") and "ofa-" in err


def test_box_task_on_text_only_model(models, images, capsys):
    code, _, err = run(capsys, "ground", images[0][0], "--text", "the dog", "--model",
                       models / "giga", "--device", "cpu")
    assert code == 1 and "text-only" in err and err.count("\n") == 1


def test_ground_entail_classify_summarize_generate(models, images, tmp_path, capsys,
                                                   monkeypatch):
    m = ["--model", models / "vqa", "--device", "cpu"]
    code, out, _ = run(capsys, "ground", images[0][0], "--text", "the dog", "--bins-only",
                       "--json", *m)
    r = json.loads(out)
    assert code == 0 and len(r["box"]) == 4
    code, out, _ = run(capsys, "entail", images[0][0], "--hypothesis", "a dog", "--premise",
                       "an animal", "--json", *m)
    assert code == 0 and json.loads(out)["answer"] in ("yes", "no", "maybe")
    classes = tmp_path / "classes.txt"
    classes.write_text("cat\ndog\ngoldfish\n")
    code, out, _ = run(capsys, "classify", images[0][0], "--classes", classes, "--topk", "2",
                       *m)
    assert code == 0 and out.count("(") == 2
    monkeypatch.setattr("sys.stdin", io.StringIO("first article text\nsecond one\n"))
    code, out, _ = run(capsys, "summarize", "-", "--max-len", "3", "--json", *m)
    assert code == 0 and [json.loads(x)["input"] for x in out.splitlines()] == [
        "first article text", "second one"]
    code, out, _ = run(capsys, "generate", "--prompt", "what is the answer?", "--max-len",
                       "3", "--json", *m)
    assert code == 0 and json.loads(out)["prompt"] == " what is the answer?"


def test_models_listing(capsys):
    code, out, _ = run(capsys, "models", "--task", "vqa")
    assert code == 0 and "ofa-base-vqa" in out and "ofa-base-caption " not in out


def test_help_texts_document_flags(capsys):
    with pytest.raises(SystemExit):
        main(["vqa", "--help"])
    out = capsys.readouterr().out
    for flag in ("--answers", "--mode", "--beam", "--max-len", "--no-repeat-ngram", "--lenpen",
                 "--unnormalized", "--batch-size", "--json", "--device", "--dtype"):
        assert flag in out


def _one_error_line(err: str) -> str:
    assert "Traceback" not in err and err.count("\n") == 1 and err.startswith("ofa: error: ")
    return err[len("ofa: error: "):].rstrip("\n")


@pytest.mark.parametrize(("command", "option"), [("vqa", "--question"), ("ground", "--text"),
                                                 ("entail", "--hypothesis"),
                                                 ("generate", "--prompt")])
def test_text_option_that_is_not_utf8_is_one_line(models, images, capsys, command, option):
    # what `ofa vqa -q $'what \xff'` puts in sys.argv
    code, out, err = run(capsys, command, images[0][0], option, "what \udcff",
                         "--model", models / "vqa", "--device", "cpu")
    assert code == 1 and out == ""
    assert _one_error_line(err) == (f"{option} is not valid UTF-8 text (byte 0xff at "
                                    "character 6 of 'what \\xff')")


def test_non_utf8_bytes_in_a_real_command_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "ofa.cli", "vqa", "x.png", "-q",
                           b"what \xff"], capture_output=True, cwd=tmp_path, timeout=300)
    assert proc.returncode == 1 and proc.stdout == b""
    assert proc.stderr == (b"ofa: error: --question is not valid UTF-8 text (byte 0xff at "
                           b"character 6 of 'what \\xff')\n")


def test_summarize_texts_not_utf8_fail_alone(models, capsys, monkeypatch):
    m = ["--model", models / "giga", "--device", "cpu", "--max-len", "3", "--json"]
    code, out, err = run(capsys, "summarize", "first text", "bad \udcff text", *m)
    assert code == 1 and [json.loads(x)["input"] for x in out.splitlines()] == ["first text"]
    lines = [x for x in err.splitlines() if x.startswith("ofa: error:")]
    assert lines == ["ofa: error: bad \\xff text: text is not valid UTF-8 text (byte 0xff at "
                     "character 5 of 'bad \\xff text')"]
    assert "Traceback" not in err
    # standard input: the bad line fails, the others are summarised (no UnicodeDecodeError)
    raw = io.TextIOWrapper(io.BytesIO(b"good one\nbad \xff line\nlast one\n"), encoding="utf-8")
    monkeypatch.setattr("sys.stdin", raw)
    code, out, err = run(capsys, "summarize", "-", *m)
    assert code == 1
    assert [json.loads(x)["input"] for x in out.splitlines()] == ["good one", "last one"]
    assert [x for x in err.splitlines() if x.startswith("ofa: error:")] == [
        "ofa: error: bad \\xff line: text is not valid UTF-8 text (byte 0xff at character 5 "
        "of 'bad \\xff line')"]
    assert "Traceback" not in err


def test_image_file_name_that_is_not_utf8_is_printed_safely(models, images, tmp_path, capsys):
    odd = tmp_path / os.fsdecode(b"caf\xe9.jpg")  # Latin-1 file name on a UTF-8 system
    shutil.copy(images[0][0], odd)
    code, out, err = run(capsys, "caption", odd, tmp_path / os.fsdecode(b"gone\xff.png"),
                         "--model", models / "vqa", "--device", "cpu", "--max-len", "2")
    assert code == 1 and out.startswith(f"{tmp_path}/caf\\xe9.jpg\t")
    assert f"ofa: error: {tmp_path}/gone\\xff.png: image file not found" in err
    assert "Traceback" not in err


def test_huge_image_is_refused_in_one_line_without_decoding(models, images, tmp_path, capsys,
                                                            monkeypatch):
    huge = tmp_path / "huge.png"
    huge.write_bytes(png_1bit(12000, 12000))  # ~20 KB claiming 144 M pixels
    m = ["--model", models / "vqa", "--device", "cpu", "--max-len", "2"]
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        code, out, err = run(capsys, "caption", huge, *m)
    assert code == 1 and out == ""
    assert _one_error_line(err).startswith(
        f"{huge}: image file {huge} is 12000 x 12000 = 144,000,000 pixels, above the limit "
        "of 40,000,000 (decompression bomb guard")
    assert "DecompressionBomb" not in err
    # the limit is a flag, or an environment variable
    small = images[0][0]  # 56 x 40 = 2,240 pixels
    code, _, err = run(capsys, "caption", small, "--max-pixels", "2000", *m)
    assert code == 1 and "above the limit of 2,000" in _one_error_line(err)
    monkeypatch.setenv("OFA_MAX_PIXELS", "2000")
    code, _, err = run(capsys, "caption", small, *m)
    assert code == 1 and "above the limit of 2,000" in _one_error_line(err)
    code, _, err = run(capsys, "caption", small, "--max-pixels", "3000", *m)
    assert code == 0, err  # the flag wins over the variable
    code, _, err = run(capsys, "caption", small, "--max-pixels", "0", *m)
    assert _one_error_line(err) == "--max-pixels must be a positive integer (pixels), got 0"
