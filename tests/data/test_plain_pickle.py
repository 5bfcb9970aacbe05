"""The plain-data unpickler: containers and scalars load, every global is refused."""

from __future__ import annotations

import io
import os
import pickle
import pickletools
import struct

import pytest

from ofa.data.plain_pickle import load_plain_pickle, loads_plain_pickle
from ofa.errors import InputError


class _RunsCommand:
    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


class Point:  # a harmless class is refused too: only plain data passes
    def __init__(self) -> None:
        self.x = 1


PLAIN = [{"ref_id": 1, "split": "val", "sentences": [{"sent": "left man", "sent_id": 7}],
          "box": (1.5, 2, None, True), "big": 2 ** 70, "neg": -3}]


@pytest.mark.parametrize("protocol", [0, 2, pickle.HIGHEST_PROTOCOL])
def test_plain_data_round_trips(protocol):
    assert loads_plain_pickle(pickle.dumps(PLAIN, protocol=protocol)) == PLAIN


def py2_pickle(obj) -> bytes:
    """Protocol 2 as Python 2 wrote it: its byte strings are SHORT_BINSTRING opcodes."""
    def enc(o) -> bytes:
        if isinstance(o, dict):
            return b"}(" + b"".join(enc(k) + enc(v) for k, v in o.items()) + b"u"
        if isinstance(o, list):
            return b"](" + b"".join(enc(v) for v in o) + b"e"
        if isinstance(o, bytes):
            return b"U" + bytes([len(o)]) + o
        if isinstance(o, str):
            data = o.encode()
            return b"X" + struct.pack("<I", len(data)) + data
        return b"K" + bytes([o])
    return b"\x80\x02" + enc(obj) + b"."


def test_python2_byte_strings_become_text():
    # Python 2 pickles str as bytes; keys and values are decoded (UTF-8, else Latin-1).
    data = py2_pickle({b"sent": b"caf\xc3\xa9", b"raw": b"\xe9t\xe9", "n": [b"x", 5]})
    assert loads_plain_pickle(data) == {"sent": "café", "raw": "été", "n": ["x", 5]}


def test_global_that_would_run_a_command_is_refused(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "refs(unc).p"
    path.write_bytes(pickle.dumps([{"ok": 1}, _RunsCommand(f"touch {marker}")], protocol=2))
    with pytest.raises(InputError, match=r"refusing to unpickle (posix|os|nt)\.system") as e:
        load_plain_pickle(path)
    assert str(path) in str(e.value)
    assert not marker.exists()


@pytest.mark.parametrize("obj", [Point(), {1, 2}, frozenset({3}), bytearray(b"ab"),
                                 {"a": [complex(1, 2)]}])
def test_non_plain_objects_are_refused(obj):
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    with pytest.raises(InputError, match="refusing to unpickle|only plain data"):
        loads_plain_pickle(data, "x.p")


def test_globals_are_refused_even_when_never_called():
    # A bare GLOBAL opcode (no REDUCE) must fail at lookup, before anything else happens.
    data = b"cbuiltins\nlen\n."
    pickletools.dis(data, out=io.StringIO())  # a well-formed pickle
    with pytest.raises(InputError, match=r"refusing to unpickle builtins\.len"):
        loads_plain_pickle(data)


def test_persistent_ids_are_refused():
    data = b"\x80\x02X\x01\x00\x00\x00aQ."  # BINPERSID with the id "a"
    with pytest.raises(InputError, match="persistent ids"):
        loads_plain_pickle(data)


def test_damaged_and_missing_files(tmp_path):
    with pytest.raises(InputError, match="not a readable pickle"):
        loads_plain_pickle(pickle.dumps(PLAIN)[:-5], "cut.p")
    with pytest.raises(InputError, match="not a readable pickle"):
        loads_plain_pickle(b"this is not a pickle", "text.p")
    with pytest.raises(InputError, match="pickle file not found"):
        load_plain_pickle(tmp_path / "missing.p")


# ---------------------------------------------------------------- bounded work and memory
def nested_shared_lists(depth: int) -> list:
    """a = [a, a], ``depth`` times: a few hundred bytes pickled, 2**depth lists walked naively."""
    a: list = []
    for _ in range(depth):
        a = [a, a]
    return a


def test_shared_references_are_converted_once(monkeypatch):
    from ofa.data.plain_pickle import _PlainData

    data = pickle.dumps(nested_shared_lists(45), protocol=2)
    assert len(data) < 2048
    # 45 lists of 2 references: 91 values; walking every path would visit 2**46
    monkeypatch.setattr(_PlainData, "max_values", 100)
    out = loads_plain_pickle(data, "laughs.p")
    for _ in range(45):  # the result shares its lists just as the pickle did
        assert out[0] is out[1]
        out = out[0]
    assert out == []


def test_cycles_depth_and_size_are_refused(monkeypatch):
    from ofa.data.plain_pickle import _PlainData

    loop: list = []
    loop.append(loop)
    with pytest.raises(InputError, match=r"^loop\.p: pickle holds a reference cycle$"):
        loads_plain_pickle(pickle.dumps(loop), "loop.p")
    tuple_loop: list = []
    tuple_loop.append((tuple_loop,))  # a tuple reached again through the list inside it
    with pytest.raises(InputError, match="reference cycle"):
        loads_plain_pickle(pickle.dumps(tuple_loop))
    deep: list = []
    for _ in range(150):
        deep = [deep]
    with pytest.raises(InputError, match="nests deeper than 100 levels"):
        loads_plain_pickle(pickle.dumps(deep), "deep.p")
    monkeypatch.setattr(_PlainData, "max_values", 10)
    with pytest.raises(InputError, match="more than 10 values"):
        loads_plain_pickle(pickle.dumps(list(range(11))))


def test_python2_pickles_decode_each_shared_byte_string_once():
    # one byte string referenced 1000 times (BINGET): decoded once, shared
    body = b"U\x03abcq\x00" + b"h\x00" * 999
    data = b"\x80\x02(" + body + b"l."
    out = loads_plain_pickle(data)
    assert out == ["abc"] * 1000 and all(s is out[0] for s in out)


def test_hash_bombs_and_huge_lengths_fail_fast():
    # {t: 1} with t = (t', t'), 40 levels deep: hashing the key would take 2**40 steps
    bomb = b"\x80\x02)q\x00" + b"h\x00h\x00\x86q\x00" * 40 + b"}q\x01h\x00K\x01s."
    with pytest.raises(InputError, match="dictionary key or set item of more than"):
        loads_plain_pickle(bomb)
    # protocol 5's BYTEARRAY8 would allocate its declared 10 GB before reading
    with pytest.raises(InputError, match="bytearray"):
        loads_plain_pickle(b"\x80\x05\x96" + struct.pack("<Q", 10**10) + b"abc.")
    for declared in (b"\x8e" + struct.pack("<Q", 10**10),  # BINBYTES8
                     b"\x8b" + struct.pack("<i", 2**31 - 1)):  # LONG4
        with pytest.raises(InputError, match="not a readable pickle"):
            loads_plain_pickle(b"\x80\x04" + declared + b"abc.")


def test_a_huge_memo_index_costs_one_entry():
    import tracemalloc

    # LONG_BINPUT 2**26: the C unpickler would zero-fill a 1 GB memo table for it
    data = b"\x80\x02N" + b"r" + struct.pack("<I", 2**26) + b"."
    tracemalloc.start()
    try:
        assert loads_plain_pickle(data) is None
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 10 << 20


def test_ofa_eval_vqa_answers_pickle_bombs_are_one_line(tmp_path, capsys):
    from ofa.cli import main
    from ofa.data.answer_lists import read_answer_list

    laughs = tmp_path / "laughs.pkl"  # converted in its size: a valid ans2label after all
    laughs.write_bytes(pickle.dumps({"yes": nested_shared_lists(45)}, protocol=2))
    assert read_answer_list(laughs) == ["yes"]
    (tmp_path / "img.png").write_bytes(b"")  # only its existence is checked before answers
    records = tmp_path / "vqa.jsonl"
    records.write_text('{"task": "vqa", "image": "img.png", "question": "what?", '
                       '"answer": "yes"}\n')
    bombs = {"hash.pkl": b"\x80\x02)q\x00" + b"h\x00h\x00\x86q\x00" * 40 + b"}q\x01h\x00K\x01s.",
             "loop.pkl": (lambda a: (a.append(a), pickle.dumps({"yes": a}))[1])([])}
    for name, data in bombs.items():
        (tmp_path / name).write_bytes(data)
        code = main(["eval", "--model", "shapes-demo", "--data", str(records), "--device",
                     "cpu", "--out", str(tmp_path / "eval"), "--vqa-answers",
                     str(tmp_path / name)])
        err = capsys.readouterr().err
        assert code == 1 and err.startswith(f"ofa: error: {tmp_path / name}: ")
        assert err.count("\n") == 1
    assert not (tmp_path / "eval").exists()  # refused before any model was loaded
