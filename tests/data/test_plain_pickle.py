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
