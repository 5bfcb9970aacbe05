"""The restricted unpicklers against hostile bytes: nothing runs, nothing blows up.

Checkpoint pickles (``ofa.safe_unpickle``) and data pickles (``ofa.data.plain_pickle``) must
answer any bytes with a result or the project's one-line error (CheckpointError, InputError),
never another exception, never by running code, and in time and memory proportional to the
bytes: a few hundred bytes must not hash for hours or allocate gigabytes.
"""

from __future__ import annotations

import argparse
import os
import pickle
import struct
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ofa.data.plain_pickle import loads_plain_pickle
from ofa.errors import CheckpointError, InputError
from ofa.safe_unpickle import ConfigRecord, load_pickled_checkpoint, to_plain

FUZZ = settings(max_examples=300, deadline=2000,
                suppress_health_check=[HealthCheck.too_slow,
                                       HealthCheck.function_scoped_fixture])
# {t: 1} with t = (t', t'), 40 levels deep: hashing the key would take 2**40 steps
HASH_BOMB = b"\x80\x02)q\x00" + b"h\x00h\x00\x86q\x00" * 40 + b"}q\x01h\x00K\x01s."


def zip_checkpoint(path: Path, data_pkl: bytes, records: dict[str, bytes] | None = None) -> Path:
    """A torch zip archive whose data.pkl is ``data_pkl`` (plus tensor ``records``)."""
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", data_pkl)
        z.writestr("archive/byteorder", "little")
        z.writestr("archive/version", "3\n")
        for name, data in (records or {}).items():
            z.writestr(f"archive/data/{name}", data)
    return path


def nested_shared_lists(depth: int) -> list:
    a: list = []
    for _ in range(depth):
        a = [a, a]
    return a


class _Payload:
    """Unpickling it would create ``marker``: the proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


# ---------------------------------------------------------------- calls that would allocate
@pytest.mark.parametrize("call, message", [
    (b"c__builtin__\nbytearray\nJ\x00\x00\x00\x40\x85R", "would allocate"),  # bytearray(2**30)
    (b"c__builtin__\nbytes\nJ\x00\x00\x00\x40\x85R", "would allocate"),
    # str() of a list is its repr: exponential for nested shared lists
    (b"c__builtin__\nstr\n]\x85R", "only converts plain values"),
    (b"c__builtin__\nset\n]h\x00a\x85R", "dictionary key or set item"),  # set([t]): hashes t
    (b"cbuiltins\nlist\ncbuiltins\nobject\n)R\x85R", "only copies a plain container"),
    (b"cnumpy\nndarray\nJ\x00\x00\x00\x40\x85R", "refusing to call ndarray"),
    (b"ccollections\ndefaultdict\ncbuiltins\nbytearray\n\x85R", "default must be"),
    (b"]K\x01a", None),  # not a call: a plain list still loads
])
def test_costly_calls_are_refused(tmp_path, call, message):
    nested = b"\x80\x02)q\x00" + b"h\x00h\x00\x86q\x00" * 40  # t, as in HASH_BOMB, as memo 0
    path = zip_checkpoint(tmp_path / "c.pt", nested + b"0" + call + b".")
    if message is None:
        assert load_pickled_checkpoint(path) == [1]
        return
    start = time.perf_counter()
    with pytest.raises(CheckpointError, match=message) as e:
        load_pickled_checkpoint(path)
    assert str(path) in str(e.value) and "\n" not in str(e.value)
    assert time.perf_counter() - start < 2


def test_hash_bombs_and_memo_indices_cost_their_bytes(tmp_path):
    with pytest.raises(CheckpointError, match="dictionary key or set item of more than"):
        load_pickled_checkpoint(zip_checkpoint(tmp_path / "bomb.pt", HASH_BOMB))
    # LONG_BINPUT 2**28: the C unpickler (and so torch.load's first try) zero-fills 4 GB
    huge_memo = b"\x80\x02N" + b"r" + struct.pack("<I", 2**28) + b"."
    assert load_pickled_checkpoint(zip_checkpoint(tmp_path / "memo.pt", huge_memo)) is None
    with pytest.raises(CheckpointError, match="bytearray"):  # protocol 5's BYTEARRAY8
        load_pickled_checkpoint(zip_checkpoint(
            tmp_path / "ba8.pt", b"\x80\x05\x96" + struct.pack("<Q", 10**10) + b"abc."))


def test_items_only_go_into_plain_containers(tmp_path):
    # SETITEM on a set, APPEND to a tuple: containers pickle never fills that way
    for name, data in (("setitem", b"\x80\x02c__builtin__\nset\n)RK\x01K\x02s."),
                       ("append", b"\x80\x02)K\x01a.")):
        with pytest.raises(CheckpointError, match="refusing to (set items of|append to)"):
            load_pickled_checkpoint(zip_checkpoint(tmp_path / f"{name}.pt", data))


def test_compressed_archives_are_refused_unread(tmp_path):
    good = tmp_path / "good.pt"
    torch.save({"w": torch.zeros(3)}, good)
    packed = tmp_path / "packed.pt"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(packed, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info.filename))
    with pytest.raises(CheckpointError, match="compressed entries"):
        load_pickled_checkpoint(packed)


def test_torchscript_archives_are_refused_before_torch_compiles_them(tmp_path, monkeypatch):
    # torch.load sends an archive with constants.pkl to torch.jit.load, which runs its code:
    # an archive stored uncompressed (as torch.jit.save's code/ entries are not) must still
    # never get there
    scripted = tmp_path / "scripted.pt"
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), scripted)
    stored = tmp_path / "stored.pt"
    with zipfile.ZipFile(scripted) as src, zipfile.ZipFile(stored, "w") as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info.filename))

    def never(*_, **__):
        raise AssertionError("torch.jit.load was called")

    monkeypatch.setattr(torch.jit, "load", never)
    for path in (scripted, stored):
        with pytest.raises(CheckpointError, match="TorchScript archive"):
            load_pickled_checkpoint(path)


def test_numpy_values_load_and_forged_arrays_are_refused(tmp_path):
    path = tmp_path / "np.pt"
    torch.save({"best": np.float64(1.5), "hist": np.arange(3, dtype=np.int32)}, path)
    obj = load_pickled_checkpoint(path)
    assert obj["best"] == 1.5 and obj["hist"].tolist() == [0, 1, 2]

    from numpy._core.multiarray import _reconstruct

    class Forged:  # pickles like an ndarray, but declares more elements than it holds
        def __init__(self, dtype: str, data) -> None:
            self.dtype, self.data = dtype, data

        def __reduce__(self):
            return (_reconstruct, (np.ndarray, (0,), b"b"),
                    (1, (10**9,), np.dtype(self.dtype), False, self.data))

    for dtype, data, message in (("f8", b"", "file holds 0 bytes"),
                                 ("O", [1], "not numbers of its declared shape")):
        forged = tmp_path / f"forged-{dtype}.pt"
        torch.save({"x": Forged(dtype, data)}, forged)
        with pytest.raises(CheckpointError, match=message):
            load_pickled_checkpoint(forged)


def test_config_records_append_in_linear_time(tmp_path):
    n = 50_000  # a tuple grown one item at a time would copy 1.25e9 items
    data = (b"\x80\x02cfairseq.x\nListy\n)\x81(" + b"K\x01" * n + b"e.")
    start = time.perf_counter()
    record = load_pickled_checkpoint(zip_checkpoint(tmp_path / "long.pt", data))
    assert isinstance(record, ConfigRecord) and len(record.args) == n
    assert time.perf_counter() - start < 2


# ---------------------------------------------------------------- to_plain
def test_to_plain_converts_shared_references_once(monkeypatch):
    from ofa.safe_unpickle import _ConfigConverter

    monkeypatch.setattr(_ConfigConverter, "max_values", 200)  # 2**46 if walked naively
    ns = type("Namespace", (ConfigRecord,), {})(laughs=nested_shared_lists(45), n=3)
    out = to_plain(ns)
    assert out["n"] == 3 and out["laughs"][0] is out["laughs"][1]


def test_to_plain_refuses_cycles_and_depth():
    loop: list = []
    loop.append(loop)
    with pytest.raises(CheckpointError, match="checkpoint configuration: holds a reference cycle"):
        to_plain({"a": loop})
    deep: list = []
    for _ in range(150):
        deep = [deep]
    with pytest.raises(CheckpointError, match="nests deeper than 100 levels"):
        to_plain(deep, "ckpt.pt")


# ---------------------------------------------------------------- fuzzing
def _mutated(seed: bytes, edits: list[tuple[int, int, int]], cut: int | None) -> bytes:
    """``seed`` with bytes overwritten (kind 0), inserted (1) or deleted (2), maybe cut."""
    data = bytearray(seed)
    for kind, pos, value in edits:
        pos %= len(data) + 1
        if kind == 0 and pos < len(data):
            data[pos] = value
        elif kind == 1:
            data.insert(pos, value)
        elif pos < len(data):
            del data[pos]
    return bytes(data[:cut])


EDITS = st.lists(st.tuples(st.integers(0, 2), st.integers(0, 1 << 16), st.integers(0, 255)),
                 max_size=8)
CUT = st.none() | st.integers(0, 4096)


def _result_or(error: type[Exception], load, data) -> None:
    start = time.perf_counter()
    try:
        load(data)
    except error as e:
        assert str(e) and "\n" not in str(e)  # one line for the user
    assert time.perf_counter() - start < 2.0


@pytest.fixture(scope="module")
def marker(tmp_path_factory) -> Path:
    """A file that exists only if some pickle managed to run a command."""
    path = tmp_path_factory.mktemp("fuzz") / "ran"
    yield path
    assert not path.exists()


@pytest.fixture(scope="module")
def plain_seeds(marker) -> list[bytes]:
    data = [{"ref_id": 1, "sentences": [{"sent": "left man", "raw": b"caf\xc3\xa9"}],
             "box": (1.5, 2, None, True), "big": 2**70}, "x" * 40]
    seeds = [pickle.dumps(data, protocol=p) for p in range(pickle.HIGHEST_PROTOCOL + 1)]
    return [*seeds, pickle.dumps(nested_shared_lists(20), 2), HASH_BOMB,
            pickle.dumps([1, _Payload(marker)], 2)]


@FUZZ
@given(data=st.binary(max_size=2048))
def test_random_bytes_give_plain_data_or_an_input_error(data: bytes) -> None:
    _result_or(InputError, loads_plain_pickle, data)


@FUZZ
@given(index=st.integers(0, 9), edits=EDITS, cut=CUT)
def test_mutated_data_pickles_give_plain_data_or_an_input_error(plain_seeds, marker, index,
                                                                edits, cut) -> None:
    _result_or(InputError, loads_plain_pickle,
               _mutated(plain_seeds[index % len(plain_seeds)], edits, cut))
    assert not marker.exists()


@pytest.fixture(scope="module")
def checkpoint_seeds(tmp_path_factory, marker) -> dict[str, object]:
    """A small fake official checkpoint: its data.pkl and tensor records, a legacy-format
    copy, and a data.pkl that would run a command."""
    folder = tmp_path_factory.mktemp("fuzz_ckpt")
    ckpt = {"model": {"encoder.w": torch.arange(6.0).view(2, 3), "decoder.b": torch.ones(2)},
            "args": argparse.Namespace(arch="ofa_tiny", code_image_size=128, lr=[1e-4]),
            "extra_state": {"best": np.float64(0.5), "epoch": 3}}
    torch.save(ckpt, folder / "zip.pt")
    with zipfile.ZipFile(folder / "zip.pt") as z:
        names = z.namelist()
        pkl = next(n for n in names if n.endswith("/data.pkl"))
        records = {n.split("/data/", 1)[1]: z.read(n) for n in names if "/data/" in n}
        data_pkl = z.read(pkl)
    torch.save(ckpt, folder / "legacy.pt", _use_new_zipfile_serialization=False)
    return {"data.pkl": data_pkl, "records": records, "dir": folder,
            "legacy": (folder / "legacy.pt").read_bytes(), "hostile": pickle.dumps(
                {"model": {}, "args": _Payload(marker)}, 2)}


@FUZZ
@given(which=st.sampled_from(["data.pkl", "hostile"]), edits=EDITS, cut=CUT)
def test_mutated_checkpoint_pickles_give_a_result_or_a_checkpoint_error(
        checkpoint_seeds, marker, which, edits, cut) -> None:
    path = zip_checkpoint(checkpoint_seeds["dir"] / "mutated.pt",
                          _mutated(checkpoint_seeds[which], edits, cut),
                          checkpoint_seeds["records"])
    _result_or(CheckpointError, load_pickled_checkpoint, path)
    assert not marker.exists()


@FUZZ
@given(edits=EDITS, cut=st.none() | st.integers(0, 1 << 12))
def test_mutated_legacy_checkpoints_give_a_result_or_a_checkpoint_error(
        checkpoint_seeds, edits, cut) -> None:
    path = checkpoint_seeds["dir"] / "mutated-legacy.pt"
    path.write_bytes(_mutated(checkpoint_seeds["legacy"], edits, cut))
    _result_or(CheckpointError, load_pickled_checkpoint, path)


@FUZZ
@given(data=st.binary(max_size=2048))
def test_random_bytes_give_a_result_or_a_checkpoint_error(checkpoint_seeds, data: bytes) -> None:
    path = checkpoint_seeds["dir"] / "random.pt"
    path.write_bytes(data)  # as a whole file (the legacy format), then as a zip's data.pkl
    _result_or(CheckpointError, load_pickled_checkpoint, path)
    _result_or(CheckpointError, load_pickled_checkpoint, zip_checkpoint(path, data))
