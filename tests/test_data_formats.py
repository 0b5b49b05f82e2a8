"""Official file formats (CIFAR-10 python pickles, IDX), downloads from a loopback HTTP server,
image folders' colour modes and bit depths, and the errors bad files give."""

import dataclasses
import errno
import gzip
import hashlib
import io
import os
import pickle
import pickletools
import re
import struct
import tarfile
import threading
import time
import types
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mlplab.data import DatasetError, load_dataset
from mlplab.data import cifar as cifar_module
from mlplab.data import download as dl
from mlplab.data import idx as idx_module
from mlplab.data.cifar import parse_batch
from mlplab.data.folder import read_image_folder
from mlplab.data.idx import DEBIAN_FASHION_DIR, read_idx
from mlplab.data.safe_pickle import RestrictedUnpickler

CIFAR_NAMES = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse",
               b"ship", b"truck"]


@pytest.fixture(autouse=True)
def _data_root(tmp_path, monkeypatch):
    monkeypatch.setenv("MLPLAB_DATA", str(tmp_path / "root"))


# --- CIFAR-10 batches written as Python 2's cPickle.dump(d, f, 2) writes them ----------------

_RECONSTRUCT = np.ndarray.__reduce__(np.zeros(1))[0]


class Py2Pickler(pickle._Pickler):
    """Protocol 2 with Python 2 semantics: every byte string (Python 2 ``str``) is a BINSTRING,
    NumPy is named ``numpy.core.multiarray`` and dtypes/arrays reduce as NumPy 1.x did under
    Python 2. Python 3's own pickler would instead write bytes via ``_codecs.encode``."""

    dispatch = pickle._Pickler.dispatch.copy()

    def __init__(self, f):
        super().__init__(f, protocol=2)

    def save_py2_str(self, obj):
        data = obj.encode("latin1") if isinstance(obj, str) else obj
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(obj)

    dispatch[bytes] = save_py2_str
    dispatch[str] = save_py2_str

    def save_global(self, obj, name=None):
        names = {id(_RECONSTRUCT): b"numpy.core.multiarray\n_reconstruct\n",
                 id(np.ndarray): b"numpy\nndarray\n", id(np.dtype): b"numpy\ndtype\n"}
        self.write(pickle.GLOBAL + names[id(obj)])
        self.memoize(obj)

    def reducer_override(self, obj):
        if isinstance(obj, np.dtype):
            assert obj == np.uint8
            return np.dtype, ("u1", 0, 1), (3, "|", None, None, None, -1, -1, 0)
        if isinstance(obj, np.ndarray):
            return _RECONSTRUCT, (np.ndarray, (0,), "b"), (1, obj.shape, obj.dtype, False,
                                                           obj.tobytes())
        return NotImplemented


def py2_pickle(obj) -> bytes:
    buf = io.BytesIO()
    Py2Pickler(buf).dump(obj)
    return buf.getvalue()


def make_batch(n, seed, label="training batch"):
    rs = np.random.RandomState(seed)
    data = rs.randint(0, 256, size=(n, 3072)).astype(np.uint8)
    labels = [int(v) for v in rs.randint(0, 10, size=n)]
    return {b"batch_label": label.encode(), b"labels": labels, b"data": data,
            b"filenames": [f"img_{seed}_{i}.png".encode() for i in range(n)]}


def write_cifar(folder: Path, n=4, n_test=5) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    batches = {}
    for i in range(1, 6):
        batches[f"data_batch_{i}"] = make_batch(n, i)
    batches["test_batch"] = make_batch(n_test, 99, "testing batch 1 of 1")
    for name, b in batches.items():
        (folder / name).write_bytes(py2_pickle(b))
    (folder / "batches.meta").write_bytes(py2_pickle(
        {b"num_cases_per_batch": n, b"label_names": CIFAR_NAMES, b"num_vis": 3072}))
    return batches


def test_py2_pickle_matches_the_release_format():
    blob = py2_pickle(make_batch(2, 0))
    ops = {op.name for op, _, _ in pickletools.genops(blob)}
    assert blob[:2] == b"\x80\x02" and "SHORT_BINSTRING" in ops and "BINSTRING" in ops
    assert b"numpy.core.multiarray\n_reconstruct" in blob and b"_codecs" not in blob
    assert not ops & {"BINUNICODE", "SHORT_BINBYTES", "BINBYTES"}
    # the independent reference: how everyone reads these files with the stock unpickler
    ref = pickle.loads(blob, encoding="bytes")
    mine = RestrictedUnpickler(io.BytesIO(blob), encoding="bytes").load()
    np.testing.assert_array_equal(ref[b"data"], mine[b"data"])
    assert ref[b"labels"] == mine[b"labels"]


def test_cifar10_batches_load_in_order(tmp_path):
    batches = write_cifar(tmp_path / "cifar-10-batches-py")
    ds = load_dataset("cifar10", data_dir=tmp_path, val_size=3)
    data = np.concatenate([batches[f"data_batch_{i}"][b"data"] for i in range(1, 6)])
    labels = sum((batches[f"data_batch_{i}"][b"labels"] for i in range(1, 6)), [])
    assert ds.X_train.shape == (17, 32, 32, 3) and ds.X_train.dtype == np.uint8
    assert ds.classes[0] == "airplane" and ds.classes[9] == "truck"
    # pixel (r, c) of channel ch is data[ch * 1024 + r * 32 + c]: check the layout exactly
    allX = np.concatenate([ds.X_train, ds.X_val])
    i, r, c, ch = 13, 5, 30, 2
    assert allX[i, r, c, ch] == data[i, ch * 1024 + r * 32 + c]
    np.testing.assert_array_equal(allX.transpose(0, 3, 1, 2).reshape(20, 3072), data)
    # exercise split: validation is the *last* images, in order
    assert ds.y_val.tolist() == labels[-3:] and ds.y_train.tolist() == labels[:-3]
    assert len(ds.y_test) == 5
    # (and under the dataset's own spelling)
    first2 = load_dataset("CIFAR-10", data_dir=tmp_path / "cifar-10-batches-py", val_size=1,
                          test_size=2)
    assert first2.name == "cifar10"
    np.testing.assert_array_equal(first2.X_test, ds.X_test[:2])
    with pytest.raises(DatasetError, match="val_size 20 leaves no training images"):
        load_dataset("cifar10", data_dir=tmp_path, val_size=20)
    # the default of 1,000 is more than the 20 images: named as the default, not as "val_size 20"
    with pytest.raises(DatasetError, match=r"^val_size is not given, and its default, the last "
                                           r"1000 training images, leaves none of the 20 for "
                                           r"training; pass a smaller one.$"):
        load_dataset("cifar10", data_dir=tmp_path)


def test_cifar10_validation_is_the_last_1000_training_images_by_default(tmp_path):
    """The exercise's split (SPEC: train = the first 49,000, validation = the last 1,000)."""
    batches = write_cifar(tmp_path / "cifar-10-batches-py", n=201, n_test=2)
    ds = load_dataset("cifar10", data_dir=tmp_path)
    labels = sum((batches[f"data_batch_{i}"][b"labels"] for i in range(1, 6)), [])
    assert (len(ds.y_train), len(ds.y_val), len(ds.y_test)) == (5, 1000, 2)
    assert ds.y_train.tolist() == labels[:5] and ds.y_val.tolist() == labels[5:]


def test_cifar10_archive_is_extracted_on_first_use(tmp_path):
    src = tmp_path / "src"
    write_cifar(src / "cifar-10-batches-py")
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    with tarfile.open(data_dir / "cifar-10-python.tar.gz", "w:gz") as tar:
        tar.add(src / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    ds = load_dataset("cifar10", data_dir=data_dir, val_size=2)
    assert (data_dir / "cifar-10-batches-py" / "data_batch_3").is_file()
    assert len(ds.y_train) == 18
    assert not [p for p in data_dir.iterdir() if p.name.startswith(".")]  # no temp left
    # a truncated archive is a clear error, and leaves no half-extracted folder
    bad = tmp_path / "bad"
    bad.mkdir()
    blob = (data_dir / "cifar-10-python.tar.gz").read_bytes()
    (bad / "cifar-10-python.tar.gz").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(DatasetError, match=r"cifar-10-python\.tar\.gz: cannot extract"):
        load_dataset("cifar10", data_dir=bad)
    assert sorted(p.name for p in bad.iterdir()) == ["cifar-10-python.tar.gz"]


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_malicious_pickle_is_refused(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar(folder)
    marker = tmp_path / "pwned"
    (folder / "data_batch_2").write_bytes(pickle.dumps({"data": _Evil(marker)}, protocol=2))
    with pytest.raises(DatasetError, match=r"data_batch_2: refusing to load posix\.system"):
        load_dataset("cifar10", data_dir=tmp_path, val_size=1)
    assert not marker.exists()
    (folder / "data_batch_2").write_bytes(b"\x80\x02cbuiltins\neval\nq\x00.")
    with pytest.raises(DatasetError, match=r"refusing to load builtins\.eval"):
        load_dataset("cifar10", data_dir=tmp_path, val_size=1)


_FROMBUFFER = np.zeros(1).__reduce_ex__(5)[0]  # what NumPy names at protocol 5


class Protocol5Pickler(pickle._Pickler):
    """Python 3's protocol 5, naming NumPy's ``_frombuffer`` after ``module`` (NumPy 1 wrote
    ``numpy.core.numeric``, NumPy 2 writes ``numpy._core.numeric``)."""

    dispatch = pickle._Pickler.dispatch.copy()

    def __init__(self, f, module):
        super().__init__(f, protocol=5)
        self.module = module

    def save_function(self, obj):
        if obj is not _FROMBUFFER:
            return self.save_global(obj)
        self.save(self.module)
        self.save("_frombuffer")
        self.write(pickle.STACK_GLOBAL)
        self.memoize(obj)

    dispatch[types.FunctionType] = save_function


@pytest.mark.parametrize("module", ["numpy._core.numeric", "numpy.core.numeric"])
def test_cifar_batches_repickled_at_protocol_5_load(tmp_path, module):
    folder = tmp_path / "cifar-10-batches-py"
    batches = write_cifar(folder)
    reference = load_dataset("cifar10", data_dir=tmp_path, val_size=1)
    for name, batch in batches.items():
        buf = io.BytesIO()
        Protocol5Pickler(buf, module).dump(batch)
        blob = buf.getvalue()
        assert blob[:2] == b"\x80\x05" and f"{module}".encode() in blob
        (folder / name).write_bytes(blob)
    ds = load_dataset("cifar10", data_dir=tmp_path, val_size=1)
    np.testing.assert_array_equal(ds.X_train, reference.X_train)
    np.testing.assert_array_equal(ds.X_test, reference.X_test)
    np.testing.assert_array_equal(ds.y_train, reference.y_train)
    # and what a plain pickle.dump(..., protocol=5) writes (a Fortran-ordered array, str keys)
    d = {"data": np.asfortranarray(batches["test_batch"][b"data"]),
         "labels": np.array(batches["test_batch"][b"labels"])}
    with open(folder / "test_batch", "wb") as f:
        pickle.dump(d, f, protocol=5)
    X, y = parse_batch((folder / "test_batch").read_bytes(), "test_batch")
    np.testing.assert_array_equal(X, reference.X_test)
    np.testing.assert_array_equal(y, reference.y_test)


class _Rebuild:
    """Unpickles as ``_frombuffer(*args)``."""

    def __init__(self, *args):
        self.args = args

    def __reduce__(self):
        return _FROMBUFFER, self.args


@pytest.mark.parametrize("args", [(b"\0" * 8, np.dtype(object), (1,), "C"),
                                  ([1, 2], np.dtype(np.uint8), (2,), "C"),
                                  (b"\0" * 8, "u1", (8,), "C")])
def test_protocol_5_rebuild_admits_only_bytes_and_plain_dtypes(args):
    blob = pickle.dumps({b"data": _Rebuild(*args), b"labels": []}, protocol=5)
    with pytest.raises(DatasetError, match=r"data_batch_1: refusing numpy (_frombuffer|dtype)"):
        parse_batch(blob, "data_batch_1")


class _Reduce:
    """Unpickles as ``func(*args)``, then ``BUILD`` with ``state`` when given."""

    def __init__(self, func, args, state=None):
        self.func, self.args, self.state = func, args, state

    def __reduce__(self):
        return (self.func, self.args) if self.state is None else \
            (self.func, self.args, self.state)


@pytest.mark.parametrize("dtype", [
    # an object dtype whose flags are rewritten by BUILD to pass for plain numbers: it would
    # make an array of forged pointers (a crash, or worse, when NumPy touches them)
    _Reduce(np.dtype, ("O8", False, True), (3, "|", None, None, None, -1, -1, 0)),
    # a plain dtype whose size is rewritten after it was made
    _Reduce(np.dtype, ("u1", False, True), (3, "|", None, None, None, 8, 1, 0)),
])
def test_a_dtype_cannot_be_forged_by_its_pickled_state(dtype):
    forged = _Reduce(_FROMBUFFER, (b"\x41" * 8, dtype, (1,), "C"))
    blob = pickle.dumps({b"data": forged, b"labels": [0]}, protocol=2)
    with pytest.raises(DatasetError, match="data_batch_1: refusing"):
        parse_batch(blob, "data_batch_1")


@pytest.mark.parametrize("data, message", [
    # numpy.ndarray(shape, dtype, buffer, offset, strides) could view memory the file does not
    # hold (a one-byte buffer with zero strides as a huge array): not callable at all
    (_Reduce(np.ndarray, ((300_000, 3072), "u1", b"\0", 0, (0, 0))),
     "not callable|refusing a call with"),
    (_Reduce(np.ndarray, ((300_000, 3072), "u1")), "not callable"),
    # an array rebuilt other than as NumPy pickles it: a huge or object one
    (_Reduce(_RECONSTRUCT, (np.ndarray, (2**45,), b"b")), "refusing numpy _reconstruct"),
    # a second BUILD would free an array's memory under a view of it; only _reconstruct's empty
    # array is filled, once, and with exactly the bytes its shape needs
    (_Reduce(_FROMBUFFER, (b"\0" * 4, np.dtype("u1"), (4,), "C"),
             (1, (1,), np.dtype("u1"), False, b"\0")), "refusing to set the state"),
    (_Reduce(_RECONSTRUCT, (np.ndarray, (0,), b"b"),
             (1, (4, 3072), np.dtype("u1"), False, b"\0")), "refusing to set the state"),
    # at most four dimensions
    (_Reduce(_RECONSTRUCT, (np.ndarray, (0,), b"b"),
             (1, (1,) * 5, np.dtype("u1"), False, b"\0")), "refusing to set the state"),
])
def test_arrays_hold_only_the_bytes_in_the_file(data, message):
    blob = pickle.dumps({b"data": data, b"labels": [0]}, protocol=2)
    with pytest.raises(DatasetError, match=message):
        parse_batch(blob, "data_batch_1")


def test_an_array_is_filled_once():
    """NumPy's own pickle of an array, with its BUILD repeated: a second fill would free the
    memory under the first (and any view of it)."""
    blob = pickle.dumps(np.zeros(4, np.uint8), protocol=2)
    *_, (put, index, _), (build, _, _), (stop, _, _) = pickletools.genops(blob)
    assert (put.name, build.name, stop.name) == ("BINPUT", "BUILD", "STOP")  # the state's memo
    np.testing.assert_array_equal(RestrictedUnpickler(io.BytesIO(blob)).load(), np.zeros(4))
    with pytest.raises(DatasetError, match="refusing to set the state of a ndarray"):
        parse_batch(blob[:-1] + b"h" + bytes([index]) + b"b.", "data_batch_1")


def test_out_of_band_buffer_opcodes_are_refused():
    # READONLY_BUFFER makes a memoryview that NumPy's __setstate__ would leave pointing at freed
    # memory; in-band batches never use it (nor NEXT_BUFFER)
    blob = b"\x80\x05\x96\x04\x00\x00\x00\x00\x00\x00\x00abcd\x98."  # BYTEARRAY8, READONLY_BUFFER
    with pytest.raises(DatasetError, match="READONLY_BUFFER"):
        parse_batch(blob, "data_batch_1")


def _aliased(depth: int, open_op: bytes, close_op: bytes) -> bytes:
    """Opcodes of ``t[i+1] = (t[i], t[i])`` (or lists) built with memo GETs: a few bytes per
    level for 2**depth leaves once expanded, hashed or printed."""
    ops = b"N"  # None
    for i in range(depth):  # memoise the level, drop it from the stack, pair two references
        ops += b"q" + bytes([i]) + b"0" + open_op + b"h" + bytes([i]) + b"h" + bytes([i]) + \
            close_op
    return ops


@pytest.mark.parametrize("blob, message", [
    # a dict key hashed before its type is checked: a deep tuple crashed CPython (its hash
    # recurses in C), an aliased one took exponential time
    (b"\x80\x02}" + b"N" + b"\x85" * 500 + b"K\x01s.", "keys of type \\['tuple'\\]"),
    (b"\x80\x02}" + _aliased(60, b"", b"\x86") + b"K\x01s.", "keys of type \\['tuple'\\]"),
    # sets are never in a batch (and hash their members)
    (b"\x80\x04\x8f.", "opcode EMPTY_SET"),
    # items go only into dicts and lists: an array's item assignment would run NumPy on pickle
    # data (an aliased list index or value of 2**28 elements)
    (b"\x80\x02cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85C\x01b\x87R"
     + _aliased(28, b"(", b"l") + b"K\x00s.", "set items of a ndarray"),
    # a flood of cheap opcodes costs tens of bytes of memory per byte of file
    (b"\x80\x02" + b"]" * 1_000_001 + b".", "more than 1,000,000 opcodes"),
    # messages show bounded excerpts of what they refuse
    (b"\x80\x02cnumpy.core.multiarray\n_reconstruct\n" + _aliased(40, b"(", b"l")
     + b"K\x00\x85C\x01b\x87R.", "refusing numpy _reconstruct"),
    # ... and no addresses: a function's repr ends in one
    (b"\x80\x02cnumpy.core.multiarray\n_reconstruct\ncnumpy\ndtype\nK\x00\x85C\x01b\x87R.",
     r"_reconstruct\(<function>, \(0,\), b'b'\)"),
    # a call's arguments must be a short tuple: Python would expand any iterable first (here a
    # string of 3 million characters, one str object each)
    (b"\x80\x02cnumpy\ndtype\nX" + struct.pack("<I", 3_000_000) + b"a" * 3_000_000
     + b"R.", "refusing a call with str arguments"),
    # a call with five arguments (NumPy's rebuilds take at most four)
    (b"\x80\x02cnumpy\ndtype\n(NNNNNtR.", "refusing a call with tuple arguments"),
    # memo indices in sequence: 0 comes first
    (b"\x80\x02Nq\x01.", r"memo index 1 at byte 3 is out of sequence \(expected at most 0\)"),
    # _codecs.encode only as Python 3 writes a byte string: latin1
    (b"\x80\x02c_codecs\nencode\nX\x03\x00\x00\x00abcX\x05\x00\x00\x00utf-8\x86R.",
     "only encodes text as latin1"),
    # long text beyond latin1 (4 bytes a character in memory) is refused before it is decoded
    (b"\x80\x02cnumpy\ndtype\nX" + struct.pack("<I", 6_000_000) + "\u0100".encode() * 3_000_000
     + b"R.", "text beyond latin1"),
])
def test_pickle_containers_cannot_crash_hang_or_balloon(blob, message):
    # the bounds on time in this file are on this process's CPU time: the work a refusal takes,
    # which other processes on a loaded machine do not stretch (its wall-clock time was 2.5 s
    # of the 5 here for the flood of opcodes on a 2-core machine under load, 0.4 s of CPU)
    start = time.process_time()
    with pytest.raises(DatasetError, match=message) as error:
        parse_batch(blob, "data_batch_1")
    assert time.process_time() - start < 5 and len(str(error.value)) < 400


def test_odd_class_names_in_the_meta_file_fall_back_to_cifar10s(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar(folder)
    for names in ([b"\xff\xfe"] * 10, [b"a\nb"] * 10, [10**50] * 10, [b"x" * 1000] * 10,
                  CIFAR_NAMES[:9], [b""] * 10):
        (folder / "batches.meta").write_bytes(py2_pickle({b"label_names": names}))
        ds = load_dataset("cifar10", data_dir=folder, val_size=1)
        assert ds.classes == [n.decode() for n in CIFAR_NAMES]


def test_class_names_come_from_the_meta_file(tmp_path):
    """``batches.meta``'s ten names, not CIFAR-10's built-in ones, label a batch folder."""
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar(folder)
    names = ["plane", "car", "bird", "cat", "deer", "dog", "frog", "horse", "boat", "lorry"]
    (folder / "batches.meta").write_bytes(py2_pickle({b"label_names": [n.encode() for n in names]}))
    assert load_dataset("cifar10", data_dir=folder, val_size=1).classes == names


def test_archive_guards(tmp_path):
    src = tmp_path / "src"
    write_cifar(src / "cifar-10-batches-py")
    good = io.BytesIO()
    with tarfile.open(fileobj=good, mode="w") as tar:
        tar.add(src / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    # damaged data that still decompresses: tarfile never reads the gzip trailer, whose CRC
    # (here zeroed) is the only thing that catches it
    compressed = gzip.compress(good.getvalue())
    bad_crc = compressed[:-8] + bytes(4) + compressed[-4:]
    # a pax header of 100 MB of zeros compresses to a small file; tarfile would read it whole
    pax = io.BytesIO()
    with tarfile.open(fileobj=pax, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("x")
        info.pax_headers = {"comment": "0" * (100 << 20)}
        tar.addfile(info, io.BytesIO(b""))
    for name, archive, message in (("crc", bad_crc, "cannot extract.*CRC"),
                                    ("pax", gzip.compress(pax.getvalue()), "declares a size")):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "cifar-10-python.tar.gz").write_bytes(archive)
        with pytest.raises(DatasetError, match=message):
            load_dataset("cifar10", data_dir=folder, val_size=1)


def test_a_batch_that_is_not_a_regular_file_is_refused(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar(folder)
    (folder / "data_batch_3").unlink()
    os.mkfifo(folder / "data_batch_3")  # reading it would block for ever
    with pytest.raises(DatasetError, match="data_batch_3: not a regular file"):
        load_dataset("cifar10", data_dir=folder, val_size=1)


def test_a_batch_file_beyond_64_mib_is_refused(tmp_path):
    """A batch is read up to 64 MiB and refused beyond, not parsed from what was read."""
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar(folder)
    with open(folder / "data_batch_2", "r+b") as f:
        f.truncate((64 << 20) + 1)  # sparse: the official pickle, then zeros
    with pytest.raises(DatasetError, match=r"data_batch_2: more than 64 MiB; a CIFAR-10 batch "
                                           r"has about 31 MB"):
        load_dataset("cifar10", data_dir=folder, val_size=1)


def test_a_payload_fed_to_many_calls_spends_the_memory_budget():
    # one 1 MB string memoised once, then encoded 100 times for a few bytes each: 100 MB
    text = b"X" + struct.pack("<I", 1 << 20) + b"a" * (1 << 20) + b"q\x00"
    call = b"c_codecs\nencode\nh\x00X\x06\x00\x00\x00latin1\x86R0"
    blob = b"\x80\x02" + text + call * 100 + b"}."
    with pytest.raises(DatasetError, match="far more memory than the file"):
        parse_batch(blob, "data_batch_1")


def test_aliased_nested_labels_are_refused_before_they_are_expanded():
    inner = list(range(100))
    middle = [inner] * 100  # pickled once, referenced 100 times (the memo): a tiny file
    blob = pickle.dumps({b"data": np.zeros((1, 3072), np.uint8), b"labels": [middle] * 100},
                        protocol=2)
    assert len(blob) < 10_000
    with pytest.raises(DatasetError, match="'labels' must be a list of integers"):
        parse_batch(blob, "data_batch_1")


@pytest.mark.parametrize("protocol", [2, 5])
def test_arrays_in_either_byte_order_load(protocol):
    data = np.arange(2 * 3072, dtype=np.uint8).reshape(2, 3072)
    labels = np.array([3, 7], dtype=">i8")  # big-endian, as a batch written elsewhere may be
    blob = pickle.dumps({b"data": data, b"labels": labels}, protocol=protocol)
    X, y = parse_batch(blob, "data_batch_1")
    np.testing.assert_array_equal(X, data.reshape(2, 3, 32, 32).transpose(0, 2, 3, 1))
    assert y.tolist() == [3, 7]


@pytest.mark.parametrize("content, message", [
    (lambda good: good[: len(good) // 2], "not a readable CIFAR-10 pickle"),
    (lambda good: b"GIF89a not a pickle at all", "not a readable CIFAR-10 pickle"),
    (lambda good: py2_pickle([1, 2, 3]), "expected a pickled dict, got list"),
    (lambda good: py2_pickle({b"data": np.zeros((2, 10), np.uint8), b"labels": [0, 1]}),
     r"'data' must be a uint8 array of shape \(N, 3072\); got uint8 array \(2, 10\)"),
    (lambda good: py2_pickle({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}),
     "2 images but 1 labels"),
    # a label 10 would index past the ten classes; True would pass for class 1
    (lambda good: py2_pickle({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]}),
     r"labels must be 0\.\.9; found 0\.\.10"),
    (lambda good: py2_pickle({b"data": np.zeros((2, 3072), np.uint8), b"labels": [True, 0]}),
     "'labels' must be a list of integers"),
    (lambda good: py2_pickle({b"batch_label": b"x"}), "not a CIFAR-10 batch"),
])
def test_bad_cifar_batches(tmp_path, content, message):
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar(folder)
    good = (folder / "data_batch_4").read_bytes()
    (folder / "data_batch_4").write_bytes(content(good))
    with pytest.raises(DatasetError, match=message) as err:
        load_dataset("cifar10", data_dir=tmp_path, val_size=1)
    assert "data_batch_4" in str(err.value) and "\n" not in str(err.value)
    # what to do: a batch deleted is extracted again from the archive (or the archive fetched)
    assert str(err.value).endswith(" delete it and download again."), err.value


@pytest.mark.parametrize("name", ["cifar10", "mnist"])
def test_the_download_command_of_a_missing_dataset_can_be_pasted(tmp_path, monkeypatch, name):
    """The "not found" message's command names --data-dir as a word of a command: a folder with
    a space (``my data``) said ``--data-dir my data``, which the shell splits ("unrecognized
    arguments: data"), and one named with a dash (``-d``) ``--data-dir -d`` ("expected one
    argument")."""
    import shlex

    monkeypatch.chdir(tmp_path)
    for folder, word in (("my data", "'my data'"), ("-d", "./-d")):
        with pytest.raises(DatasetError) as err:
            load_dataset(name, data_dir=folder)
        command = str(err.value).split("`")[1]
        assert command == f"mlplab data download {name} --data-dir {word}", command
        assert shlex.split(command)[-2:] == ["--data-dir", word.strip("'")]


def test_missing_dataset_says_where_and_how(tmp_path):
    with pytest.raises(DatasetError) as err:
        load_dataset("cifar10", data_dir=tmp_path / "nowhere")
    msg = str(err.value)
    assert "CIFAR-10 not found" in msg and str(tmp_path / "nowhere") in msg
    assert f"mlplab data download cifar10 --data-dir {tmp_path / 'nowhere'}" in msg
    with pytest.raises(DatasetError, match="mlplab data download mnist"):
        load_dataset("mnist", data_dir=tmp_path)
    # a file given as the folder: the path is the mistake, not a missing download into it
    (tmp_path / "cifar.tar.gz").write_bytes(b"")
    for name in ("cifar10", "fashion-mnist"):
        with pytest.raises(DatasetError) as err:
            load_dataset(name, data_dir=tmp_path / "cifar.tar.gz")
        assert str(err.value) == (f"{tmp_path / 'cifar.tar.gz'} is a file; data_dir must be the "
                                  "folder that holds (or will hold) the dataset's files.")
    write_cifar(tmp_path / "c" / "cifar-10-batches-py")
    (tmp_path / "c" / "cifar-10-batches-py" / "data_batch_2").unlink()
    with pytest.raises(DatasetError, match=r"cifar-10-batches-py: CIFAR-10 is incomplete there "
                                           r"\(no data_batch_2: "):
        load_dataset("cifar10", data_dir=tmp_path / "c")


# --- IDX ---------------------------------------------------------------------------------------

def idx_bytes(arr: np.ndarray) -> bytes:
    head = bytes([0, 0, 0x08, arr.ndim]) + b"".join(struct.pack(">I", d) for d in arr.shape)
    return head + arr.astype(np.uint8).tobytes()


def write_idx_set(folder: Path, n=12, n_test=4, gz=True, seed=0):
    rs = np.random.RandomState(seed)
    arrays = {"train-images-idx3-ubyte": rs.randint(0, 256, (n, 28, 28)),
              "train-labels-idx1-ubyte": rs.randint(0, 10, n),
              "t10k-images-idx3-ubyte": rs.randint(0, 256, (n_test, 28, 28)),
              "t10k-labels-idx1-ubyte": rs.randint(0, 10, n_test)}
    folder.mkdir(parents=True, exist_ok=True)
    for name, arr in arrays.items():
        blob = idx_bytes(arr)
        if gz:
            (folder / f"{name}.gz").write_bytes(gzip.compress(blob))
        else:
            (folder / name).write_bytes(blob)
    return arrays


@pytest.mark.parametrize("gz", [True, False])
def test_mnist_idx(tmp_path, gz):
    arrays = write_idx_set(tmp_path / "mnist", gz=gz)
    ds = load_dataset("mnist", data_dir=tmp_path, val_size=5)
    assert ds.image_shape == (28, 28, 1) and ds.classes[3] == "3"
    X = arrays["train-images-idx3-ubyte"]
    np.testing.assert_array_equal(ds.X_train[..., 0], X[:7])
    np.testing.assert_array_equal(ds.X_val[..., 0], X[7:])
    np.testing.assert_array_equal(ds.y_val, arrays["train-labels-idx1-ubyte"][7:])
    np.testing.assert_array_equal(ds.X_test[..., 0], arrays["t10k-images-idx3-ubyte"])
    ds.X_train[0, 0, 0, 0] = 1  # arrays are ordinary writable arrays


def test_an_empty_split_is_noted_as_none(tmp_path):
    """A split of no image was noted as drawn ('validation split: the last 0 training images',
    '0 images (stratified, seed 0)'), as mlplab data info printed it for --val-size 0, the
    Fashion-MNIST presets' split."""
    write_idx_set(tmp_path / "mnist")
    ds = load_dataset("mnist", data_dir=tmp_path, val_size=0, test_size=0)
    assert (len(ds.y_val), len(ds.y_test)) == (0, 0)
    assert ds.notes == ["validation split: none", "test split: none"]
    one = load_dataset("mnist", data_dir=tmp_path, val_size=1, test_size=1)
    assert one.notes == ["validation split: the last 1 training image",
                         "test split: the first 1 test image"]
    digits = load_dataset("digits", val_size=0, test_size=0)
    assert (len(digits.y_val), len(digits.y_test)) == (0, 0)
    assert digits.notes == ["test split: none", "validation split: none"]
    # a fraction that rounds to no image is none too
    assert load_dataset("digits", val_size=1e-4).notes[-1] == "validation split: none"


def test_a_data_dir_lacking_some_idx_files_is_named(tmp_path, monkeypatch):
    """A data_dir with three of MNIST's four files was passed over without a word, and the
    copy in the default data root read instead; and a "not found" did not say which file a
    folder lacked."""
    monkeypatch.setenv("MLPLAB_DATA", str(tmp_path / "root"))
    write_idx_set(tmp_path / "root" / "mnist")
    write_idx_set(tmp_path / "given", seed=1)
    (tmp_path / "given" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.warns(UserWarning, match=r"given lacks t10k-labels-idx1-ubyte\[\.gz\]: mnist "
                                         r"is read from \S*root.mnist instead\.$"):
        ds = load_dataset("mnist", data_dir=tmp_path / "given", val_size=1)
    assert len(ds.X_test) == 4
    (tmp_path / "root" / "mnist" / "train-images-idx3-ubyte.gz").unlink()
    with pytest.raises(DatasetError, match=r"mnist not found: .*\(\S*given lacks "
                                           r"t10k-labels-idx1-ubyte\[\.gz\]; \S*mnist lacks "
                                           r"train-images-idx3-ubyte\[\.gz\]\)"):
        load_dataset("mnist", data_dir=tmp_path / "given", val_size=1)
    # with download=True the warning names the folder read: the fresh files' (it named the
    # default root's damaged copy, which was not read)
    def download_dataset(name, data_dir=None, mirror=None, progress=True):
        arrays = write_idx_set(tmp_path / "given" / "mnist", seed=2)
        return sorted((tmp_path / "given" / "mnist").glob(f"*{next(iter(arrays))[:5]}*"))

    monkeypatch.setattr(dl, "download_dataset", download_dataset)
    with pytest.warns(UserWarning, match=r"given lacks t10k-labels-idx1-ubyte\[\.gz\]; \S*root"
                                         r".mnist lacks train-images-idx3-ubyte\[\.gz\]: mnist "
                                         r"is read from \S*given.mnist instead\.$"):
        ds = load_dataset("mnist", data_dir=tmp_path / "given", val_size=1, download=True)
    assert ds.source == str(tmp_path / "given" / "mnist")


def test_a_relative_data_dir_is_recorded_as_an_absolute_path(tmp_path, monkeypatch):
    """A run records its dataset's load options for evaluate and resume, which may run from
    another folder: a relative data_dir must not be recorded as it was typed."""
    write_idx_set(tmp_path / "mnist")
    monkeypatch.chdir(tmp_path)
    ds = load_dataset("mnist", data_dir=".", val_size=1)
    assert ds.load_options["data_dir"] == str(tmp_path.resolve())


def test_fashion_mnist_from_data_dir(tmp_path):
    write_idx_set(tmp_path, gz=True, seed=3)
    ds = load_dataset("fashion-mnist", data_dir=tmp_path, val_size=2, test_size=3)
    assert ds.classes[0] == "T-shirt/top" and ds.classes[9] == "Ankle boot"
    assert (len(ds.y_train), len(ds.y_val), len(ds.y_test)) == (10, 2, 3)


@pytest.mark.parametrize("mutate, message", [
    (lambda b: b[:-10], r"truncated: the header promises 12x28x28 values"),
    (lambda b: b + b"xx", "has trailing bytes"),
    (lambda b: gzip.compress(b + b"xx"), "has trailing bytes"),  # inside the gzip stream too
    (lambda b: b"\x00\x00\x07\x03" + b[4:], "not an IDX file"),
    (lambda b: b"\x89PNG\r\n\x1a\n" + b, "not an IDX file"),
    (lambda b: gzip.compress(b)[:200], "truncated or corrupt gzip"),
    # a flipped bit in the stored CRC: "cannot read (CRC check failed ...)" said nothing to do
    (lambda b: (lambda z: z[:-8] + bytes([z[-8] ^ 1]) + z[-7:])(gzip.compress(b)),
     r"truncated or corrupt gzip data \(CRC check failed"),
    (lambda b: b[:6], "truncated IDX header"),
])
def test_bad_idx_files(tmp_path, mutate, message):
    write_idx_set(tmp_path, gz=False)
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(mutate(path.read_bytes()))
    with pytest.raises(DatasetError, match=message) as err:
        load_dataset("mnist", data_dir=tmp_path, val_size=1)
    assert str(path) in str(err.value)
    # each says what to do, as data.md promises: a damaged download is fetched again
    assert str(err.value).endswith("; delete it and download again."), err.value


@pytest.mark.parametrize("content, problem", [
    (b"<!DOCTYPE html><html><body>404</body></html>",
     "not a gzip file (an HTML page, not the gzipped IDX file)"),
    (b"PK\x03\x04 a zip archive", "not a gzip file (it begins with 504b0304, not gzip's 1f8b)"),
])
def test_a_gz_file_that_is_not_gzip_is_said_to_be_so(tmp_path, content, problem):
    """A .gz file that is not gzip (a mirror's error page saved under the file's name, another
    archive) was "not an IDX file (bad magic number 3c21444f; expected 0000 08 0N)", which sent
    the user looking inside an IDX file that was never there."""
    write_idx_set(tmp_path)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(content)
    with pytest.raises(DatasetError) as err:
        load_dataset("mnist", data_dir=tmp_path, val_size=1)
    assert str(err.value) == (f"{path}: {problem}; delete it and download again, or put the "
                              "gzipped IDX file there.")


def test_an_uncompressed_idx_file_named_gz_is_still_read(tmp_path):
    """A browser that undoes a server's gzip encoding saves the IDX file unpacked under its .gz
    name: read by its bytes, as before, not refused as "not a gzip file"."""
    arrays = write_idx_set(tmp_path)
    name = "t10k-labels-idx1-ubyte"
    (tmp_path / f"{name}.gz").write_bytes(idx_bytes(arrays[name]))
    ds = load_dataset("mnist", data_dir=tmp_path, val_size=1)
    np.testing.assert_array_equal(ds.y_test, arrays[name])


@pytest.mark.parametrize("name, content, problem", [
    ("train-images-idx3-ubyte.gz", b"", "the file is empty (0 bytes)"),
    ("train-images-idx3-ubyte", b"", "the file is empty (0 bytes)"),
    ("train-images-idx3-ubyte.gz", gzip.compress(b"", mtime=0),
     "the gzip file holds nothing (it decompresses to 0 bytes)"),
])
def test_an_empty_idx_file_is_said_to_be_empty(tmp_path, name, content, problem):
    """An empty file, or the gzip of nothing (a download cut off before its first byte, a
    `touch`), was "not an IDX file (bad magic number none; ...)"."""
    write_idx_set(tmp_path, gz=name.endswith(".gz"))
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(DatasetError) as err:
        load_dataset("mnist", data_dir=tmp_path, val_size=1)
    assert str(err.value) == f"{path}: {problem}; delete it and download again."


def test_a_folder_named_as_an_idx_file_is_said_to_be_a_folder(tmp_path, monkeypatch):
    """A folder named train-images-idx3-ubyte.gz (an archive tool that unpacked it into a
    folder of its name) was reported as the file missing, "lacks train-images-idx3-ubyte[.gz]";
    and where all four were folders, not at all."""
    monkeypatch.setenv("MLPLAB_DATA", str(tmp_path / "root"))
    write_idx_set(tmp_path / "given")
    gz = tmp_path / "given" / "train-images-idx3-ubyte.gz"
    gz.unlink()
    gz.mkdir()
    with pytest.raises(DatasetError, match=re.escape(
            f"({tmp_path / 'given'} lacks train-images-idx3-ubyte[.gz] ({gz} is a folder, not "
            "a file: move it away)). Fetch it with ")):
        load_dataset("mnist", data_dir=tmp_path / "given", val_size=1)
    for name in list(idx_module.FILES.values())[1:]:
        (tmp_path / "given" / f"{name}.gz").unlink()
        (tmp_path / "given" / f"{name}.gz").mkdir()
    with pytest.raises(DatasetError) as err:
        load_dataset("mnist", data_dir=tmp_path / "given", val_size=1)
    # all four folders: named too (no file at all had left the folder unmentioned)
    assert f"{gz} is a folder, not a file; " in str(err.value), err.value
    assert "t10k-labels-idx1-ubyte.gz is a folder, not a file: move them away)" in \
        str(err.value), err.value


def test_idx_files_without_training_images_are_named_as_such(tmp_path):
    """A training file of 0 images was refused as "--val-size must be between 0 and -1"."""
    write_idx_set(tmp_path, n=0, gz=False)
    with pytest.raises(DatasetError, match=r"the training files of mnist hold no images; they "
                                           r"are damaged or not the dataset's - delete them and "
                                           r"download again.$"):
        load_dataset("mnist", data_dir=tmp_path, val_size=5)


def test_idx_label_count_and_range(tmp_path):
    """Each says what to do, as the refusals of a file's bytes do ("3 labels for 4 images."
    said nothing of it, nor which images)."""
    write_idx_set(tmp_path, gz=False)
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(np.arange(3)))
    with pytest.raises(DatasetError, match=r"t10k-labels-idx1-ubyte: 3 labels for the 4 images "
                                           r"of t10k-images-idx3-ubyte; the files are not one "
                                           r"dataset - delete them and download again\.$"):
        load_dataset("mnist", data_dir=tmp_path, val_size=1)
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(np.array([0, 1, 2, 12])))
    with pytest.raises(DatasetError, match=r"labels must be 0..9; found 12 - delete it and "
                                           r"download again\.$"):
        load_dataset("mnist", data_dir=tmp_path, val_size=1)
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros((2, 2))))
    with pytest.raises(DatasetError, match=r"expected a 1-D label file; got shape \(2, 2\); "
                                           r"delete it and download again\.$"):
        load_dataset("mnist", data_dir=tmp_path, val_size=1)
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(idx_bytes(np.zeros((4, 28))))
    with pytest.raises(DatasetError, match=r"expected uint8 images .*; delete it and download "
                                           r"again\.$"):
        load_dataset("mnist", data_dir=tmp_path, val_size=1)


def typed_idx_bytes(arr: np.ndarray, code: int) -> bytes:
    """An IDX file of type ``code`` (0x09 int8, 0x0B int16, 0x0D float32, ...)."""
    dtype = {0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}[code]
    head = bytes([0, 0, code, arr.ndim]) + b"".join(struct.pack(">I", d) for d in arr.shape)
    return head + arr.astype(dtype).tobytes()


@pytest.mark.parametrize("labels, code, message", [
    ([0, 1, -1, 2], 0x09, r"labels must be 0\.\.9; found -1"),
    ([0, -300, 1, 2], 0x0B, r"labels must be 0\.\.9; found -300"),
    ([0, 1, 3.7, 2], 0x0D, r"labels must be integers .*this file holds float32 values"),
    ([0, 1, 3.0, 2], 0x0E, r"labels must be integers .*this file holds float64 values"),
])
def test_idx_labels_must_be_class_indices(tmp_path, labels, code, message):
    write_idx_set(tmp_path, gz=False)
    path = tmp_path / "t10k-labels-idx1-ubyte"
    path.write_bytes(typed_idx_bytes(np.array(labels), code))
    with pytest.raises(DatasetError, match=message) as err:
        load_dataset("mnist", data_dir=tmp_path, val_size=1)
    assert str(path) in str(err.value)
    assert str(err.value).endswith(" delete it and download again."), err.value


def test_idx_labels_of_any_integer_type_load(tmp_path):
    write_idx_set(tmp_path, gz=False)
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(typed_idx_bytes(np.array([9, 0, 3, 2]),
                                                                      0x0C))
    ds = load_dataset("mnist", data_dir=tmp_path, val_size=1)
    assert ds.y_test.tolist() == [9, 0, 3, 2] and ds.y_test.dtype == np.int64


def test_idx_files_under_mnists_dotted_names_load(tmp_path):
    """Some tools unpack MNIST's files as train-images.idx3-ubyte (a dot, not a dash)."""
    arrays = write_idx_set(tmp_path, gz=False)
    for name in arrays:
        (tmp_path / name).rename(tmp_path / name.replace("-idx", ".idx"))
    ds = load_dataset("mnist", data_dir=tmp_path, val_size=1)
    np.testing.assert_array_equal(ds.X_test[..., 0], arrays["t10k-images-idx3-ubyte"])
    np.testing.assert_array_equal(ds.y_val, arrays["train-labels-idx1-ubyte"][-1:])


def test_the_gzipped_files_win_over_unpacked_ones_beside_them(tmp_path):
    """The .gz files are what a download writes and what the published checksums vouch for
    (``download=True`` replaces a damaged one): unpacked files of the same names beside them
    are not read."""
    official = write_idx_set(tmp_path, gz=True, seed=0)
    write_idx_set(tmp_path, gz=False, seed=1)
    ds = load_dataset("mnist", data_dir=tmp_path, val_size=1)
    np.testing.assert_array_equal(ds.X_test[..., 0], official["t10k-images-idx3-ubyte"])
    np.testing.assert_array_equal(ds.y_test, official["t10k-labels-idx1-ubyte"])


@pytest.mark.skipif(not (DEBIAN_FASHION_DIR / "train-images-idx3-ubyte.gz").is_file(),
                    reason="Debian's dataset-fashion-mnist is not installed "
                           "(/usr/share/datasets/fashion-mnist missing)")
def test_fashion_mnist_from_debian_package():
    ds = load_dataset("fashion-mnist")
    assert ds.source == str(DEBIAN_FASHION_DIR)
    assert (len(ds.y_train), len(ds.y_val), len(ds.y_test)) == (55000, 5000, 10000)
    assert ds.image_shape == (28, 28, 1) and ds.X_train.dtype == np.uint8
    # Fashion-MNIST is balanced: 6,000 training and 1,000 test images per class
    assert np.bincount(np.concatenate([ds.y_train, ds.y_val])).tolist() == [6000] * 10
    assert np.bincount(ds.y_test).tolist() == [1000] * 10
    # independent reader of the same file
    with gzip.open(DEBIAN_FASHION_DIR / "t10k-images-idx3-ubyte.gz") as f:
        ref = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)
    np.testing.assert_array_equal(ds.X_test[..., 0], ref)
    assert read_idx(DEBIAN_FASHION_DIR / "t10k-labels-idx1-ubyte.gz").shape == (10000,)


# --- downloads from a loopback HTTP server ------------------------------------------------------

class _Handler(BaseHTTPRequestHandler):
    files: dict = {}

    def do_GET(self):  # noqa: N802 - http.server's name
        if self.path.startswith("/to/"):  # /to/PORT/PATH redirects to 127.0.0.1:PORT/PATH
            _, _, port, rest = self.path.split("/", 3)
            self.send_response(302)
            self.send_header("Location", f"http://127.0.0.1:{port}/{rest}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if self.path.startswith("/page/"):  # an HTML error or login page, served with 200
            page = b"<html><body>Please sign in</body></html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)
            return
        cut = self.path.startswith("/cut/")
        name = self.path.rsplit("/", 1)[-1]
        data = self.files.get(name)
        if data is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        # /cut/ promises the whole file but the connection drops half-way
        self.wfile.write(data[: len(data) // 2] if cut else data)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", _Handler.files
    httpd.shutdown()
    httpd.server_close()
    _Handler.files.clear()


def test_download_verifies_and_renames(server, tmp_path):
    url, files = server
    payload = os.urandom(300_000)
    files["blob.bin"] = payload
    md5, sha = hashlib.md5(payload).hexdigest(), hashlib.sha256(payload).hexdigest()
    dest = dl.download_file(f"{url}/blob.bin", tmp_path / "d" / "blob.bin", md5=md5, sha256=sha,
                            progress=False)
    assert dest.read_bytes() == payload
    assert os.listdir(tmp_path / "d") == ["blob.bin"]
    # readable as any file the user makes (umask), not mkstemp's 0600: data folders are shared
    umask = os.umask(0)
    os.umask(umask)
    assert dest.stat().st_mode & 0o777 == 0o666 & ~umask



def test_a_download_removes_what_a_killed_one_left_and_spares_a_live_one(server, tmp_path):
    """A download killed outright (SIGKILL, a closed terminal's SIGHUP) left its hidden
    temporary file, up to 170 MB for CIFAR-10, which no later run removed; one idle for longer
    than a live download can be (STALE_SECONDS) now goes, one written just now stays."""
    url, files = server
    payload = os.urandom(1000)
    files["blob.bin"] = payload
    folder = tmp_path / "d"
    folder.mkdir()
    killed, live = folder / ".blob.bin.k1ll3d00.part", folder / ".blob.bin.l1ve0000.part"
    other = folder / ".other.bin.k1ll3d00.part"  # another file's: not this download's to judge
    for p in (killed, live, other):
        p.write_bytes(b"partial")
    old = time.time() - dl.STALE_SECONDS - 60
    for p in (killed, other):
        os.utime(p, (old, old))
    dl.download_file(f"{url}/blob.bin", folder / "blob.bin", progress=False)
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        ["blob.bin", live.name, other.name])


def test_an_extraction_removes_what_a_killed_one_left(tmp_path):
    """The same for the hidden folder of an extraction of the CIFAR-10 archive killed outright:
    an old one goes, one made just now (another process extracting) stays."""
    from mlplab.data import cifar

    src = tmp_path / "src"
    write_cifar(src / "cifar-10-batches-py")
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    with tarfile.open(data_dir / "cifar-10-python.tar.gz", "w:gz") as tar:
        tar.add(src / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    killed, live = data_dir / ".cifar-extract.k1ll3d", data_dir / ".cifar-extract.l1ve00"
    for p in (killed, live):
        (p / "cifar-10-batches-py").mkdir(parents=True)
        (p / "cifar-10-batches-py" / "data_batch_1").write_bytes(b"half")
    old = time.time() - dl.STALE_SECONDS - 60
    os.utime(killed, (old, old))
    cifar.extract_archive(data_dir / "cifar-10-python.tar.gz", data_dir)
    assert sorted(p.name for p in data_dir.iterdir()) == sorted(
        ["cifar-10-python.tar.gz", "cifar-10-batches-py", live.name])

def test_checksum_mismatch_leaves_nothing(server, tmp_path):
    url, files = server
    files["blob.bin"] = b"tampered" * 1000
    with pytest.raises(DatasetError, match=r"checksum mismatch for .*blob\.bin: MD5 is [0-9a-f]{32}"
                                           r", expected 0{32}; the download was discarded"):
        dl.download_file(f"{url}/blob.bin", tmp_path / "blob.bin", md5="0" * 32, progress=False)
    assert os.listdir(tmp_path) == []
    good_md5 = hashlib.md5(files["blob.bin"]).hexdigest()
    with pytest.raises(DatasetError, match="SHA-256 is"):
        dl.download_file(f"{url}/blob.bin", tmp_path / "blob.bin", md5=good_md5,
                         sha256="f" * 64, progress=False)
    assert os.listdir(tmp_path) == []


def test_an_html_page_served_instead_of_the_file_is_said_to_be_one(server, tmp_path):
    """An error or login page served with 200 failed as a bare checksum mismatch put down to "a
    corrupt transfer or a wrong mirror", even with no mirror given, and with nothing to do: it
    says an HTML page came, and what to do (check the mirror given, or retry or pass one)."""
    url, _ = server
    with pytest.raises(DatasetError) as err:
        dl.download_file(f"{url}/page/blob.bin", tmp_path / "blob.bin", md5="0" * 32,
                         progress=False, mirrored=True)
    said = str(err.value)
    assert said.startswith(f"checksum mismatch for {url}/page/blob.bin: MD5 is "), said
    assert said.endswith(", expected " + "0" * 32 + " (the server sent an HTML page of 40 bytes, "
                         "not the file); the download was discarded - check the mirror "
                         "(mirror=BASE_URL fetches BASE_URL/<file name>)."), said
    with pytest.raises(DatasetError, match=r"; the download was discarded - run the command "
                                           r"again, or pass mirror=BASE_URL\.$"):
        dl.download_file(f"{url}/page/blob.bin", tmp_path / "blob.bin", md5="0" * 32,
                         progress=False)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("page", [b"\n  <!DOCTYPE html>\n<html><body>Sign in</body></html>\n",
                                  b"\xef\xbb\xbf<HTML lang=en><body>Not found</body></HTML>"])
def test_an_html_page_served_under_the_file_s_type_is_said_to_be_one(server, tmp_path, page):
    """A mirror that types its files by their name (no text/html for a login or error page
    served under the .gz asked for) gave a bare checksum mismatch: the page is told by its
    start too. A file that only mentions HTML further on is no page."""
    url, files = server
    files["blob.gz"] = page  # served without a Content-Type
    with pytest.raises(DatasetError) as err:
        dl.download_file(f"{url}/blob.gz", tmp_path / "blob.gz", md5="0" * 32, progress=False,
                         mirrored=True)
    assert str(err.value).endswith(
        f", expected {'0' * 32} (the server sent an HTML page of {len(page)} bytes, not the "
        "file); the download was discarded - check the mirror (mirror=BASE_URL fetches "
        "BASE_URL/<file name>)."), str(err.value)
    files["blob.gz"] = b"\x1f\x8b not a page: <html> " * 10
    with pytest.raises(DatasetError) as err:
        dl.download_file(f"{url}/blob.gz", tmp_path / "blob.gz", md5="0" * 32, progress=False)
    assert "HTML page" not in str(err.value) and "checksum mismatch" in str(err.value)
    assert os.listdir(tmp_path) == []


def test_a_failed_download_leaves_the_data_folder_as_it_was(server, tmp_path, monkeypatch):
    """A mirror serving corrupt files left an empty <data-dir>/fashion-mnist/ behind (and the
    whole --data-dir when it was new); a failed download removes the folders it made while they
    are empty, and never a folder or file that was there before."""
    url, files = server
    for remote in dl.SOURCES["fashion-mnist"].files:  # the published checksums: none matches
        files[remote.name] = b"not the file" * 100
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "notes.txt").write_text("mine")
    with pytest.raises(DatasetError, match="checksum mismatch"):
        dl.download_dataset("fashion-mnist", data_dir=data_dir, mirror=url, progress=False)
    assert os.listdir(data_dir) == ["notes.txt"]
    new = tmp_path / "new" / "deeper"
    with pytest.raises(DatasetError, match="checksum mismatch"):
        dl.download_dataset("fashion-mnist", data_dir=new, mirror=url, progress=False)
    assert sorted(os.listdir(tmp_path)) == ["data"]
    (data_dir / "fashion-mnist").mkdir()  # the user's own, empty: kept
    with pytest.raises(DatasetError, match="checksum mismatch"):
        dl.download_dataset("fashion-mnist", data_dir=data_dir, mirror=url, progress=False)
    assert sorted(os.listdir(data_dir)) == ["fashion-mnist", "notes.txt"]
    assert os.listdir(data_dir / "fashion-mnist") == []
    # a later file failing keeps the folder with the earlier, verified ones
    good = b"a verified file"
    files.update({"a.gz": good, "b.gz": b"corrupt"})
    monkeypatch.setitem(dl.SOURCES, "fashion-mnist", dataclasses.replace(
        dl.SOURCES["fashion-mnist"], files=(
            dl.RemoteFile("a.gz", md5=hashlib.md5(good).hexdigest()),
            dl.RemoteFile("b.gz", md5=hashlib.md5(b"the real one").hexdigest()))))
    with pytest.raises(DatasetError, match=r"checksum mismatch for .*b\.gz"):
        dl.download_dataset("fashion-mnist", data_dir=new, mirror=url, progress=False)
    assert os.listdir(new / "fashion-mnist") == ["a.gz"]
    assert (new / "fashion-mnist" / "a.gz").read_bytes() == good


def test_interrupted_and_failed_downloads_leave_nothing(server, tmp_path):
    url, files = server
    files["blob.bin"] = os.urandom(200_000)
    # every byte that arrived is counted, not only whole chunks of 64 KiB
    with pytest.raises(DatasetError, match=r"interrupted after 100000 of 200000 bytes"):
        dl.download_file(f"{url}/cut/blob.bin", tmp_path / "blob.bin", progress=False)
    assert os.listdir(tmp_path) == []
    with pytest.raises(DatasetError, match="HTTP 404"):
        dl.download_file(f"{url}/missing.bin", tmp_path / "missing.bin", progress=False)
    with pytest.raises(DatasetError, match="cannot download"):
        dl.download_file("http://127.0.0.1:1/x.bin", tmp_path / "x.bin", progress=False)
    # http.client's InvalidURL, neither an OSError nor a ValueError: an "internal error"
    for bad in ("http://127.0.0.1:9/my dir/x.bin", "http://127.0.0.1:abc/x.bin"):
        with pytest.raises(DatasetError, match="cannot download"):
            dl.download_file(bad, tmp_path / "x.bin", progress=False)
    assert os.listdir(tmp_path) == []


def test_a_failed_download_from_a_mirror_names_the_mirror(server, tmp_path):
    """A download from the --mirror the user gave was told to "pass --mirror BASE_URL"."""
    url, _ = server
    with pytest.raises(DatasetError) as caught:
        dl.download_dataset("mnist", data_dir=tmp_path / "d", mirror=f"{url}/nothere",
                            progress=False)
    assert str(caught.value).endswith("failed: HTTP 404 Not Found; check the mirror "
                                      "(mirror=BASE_URL fetches BASE_URL/<file name>).")
    with pytest.raises(DatasetError) as caught:
        dl.download_dataset("mnist", data_dir=tmp_path / "d", mirror="http://127.0.0.1:1/",
                            progress=False)
    said = str(caught.value)
    assert "; check the network and the mirror (mirror=BASE_URL fetches" in said, said
    assert "pass mirror=" not in said
    # without a mirror, one is suggested as before
    with pytest.raises(DatasetError, match=r"; check the network, pass mirror=BASE_URL, or copy"):
        dl.download_file("http://127.0.0.1:1/x.bin", tmp_path / "x.bin", progress=False)
    assert not (tmp_path / "d").exists()


def test_a_failed_download_names_where_it_was_redirected(server, tmp_path):
    """A redirect to a dead host, a missing file or a cut transfer was reported of the URL asked
    for alone, which answers with nothing but the redirect: the message names where it led."""
    url, files = server
    files["blob.bin"] = os.urandom(200_000)
    port = url.rsplit(":", 1)[1]
    with pytest.raises(DatasetError) as err:
        dl.download_file(f"{url}/to/1/blob.bin", tmp_path / "blob.bin", progress=False)
    assert str(err.value).startswith(f"cannot download {url}/to/1/blob.bin (redirected to "
                                     "http://127.0.0.1:1/blob.bin) ("), err.value
    with pytest.raises(DatasetError, match=rf"^download of {url}/to/{port}/none\.bin \(redirected "
                                           rf"to {url}/none\.bin\) failed: HTTP 404"):
        dl.download_file(f"{url}/to/{port}/none.bin", tmp_path / "none.bin", progress=False)
    with pytest.raises(DatasetError, match=rf"^download of {url}/to/{port}/cut/blob\.bin "
                                           rf"\(redirected to {url}/cut/blob\.bin\) was "
                                           "interrupted after 100000 of 200000 bytes"):
        dl.download_file(f"{url}/to/{port}/cut/blob.bin", tmp_path / "blob.bin", progress=False)
    assert os.listdir(tmp_path) == []
    # followed to the file, across ports: saved as from the URL itself
    assert dl.download_file(f"{url}/to/{port}/blob.bin", tmp_path / "blob.bin",
                            md5=hashlib.md5(files["blob.bin"]).hexdigest(),
                            progress=False).read_bytes() == files["blob.bin"]


def test_a_failed_download_names_the_proxy_it_went_through(server, tmp_path, monkeypatch):
    """With HTTP_PROXY set to a dead port, a mirror that was up failed with "Connection refused;
    check the network and the mirror": the proxy, the one thing at fault, went unnamed. It is
    named (without its credentials), with the variable that sets it."""
    url, files = server
    files["blob.bin"] = b"data"
    for var in ("http_proxy", "HTTP_PROXY", "no_proxy", "NO_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HTTP_PROXY", "http://user:secret@127.0.0.1:1")
    with pytest.raises(DatasetError) as err:
        dl.download_file(f"{url}/blob.bin", tmp_path / "blob.bin", progress=False, mirrored=True)
    said = str(err.value)
    assert said.startswith(f"cannot download {url}/blob.bin through the proxy "
                           "http://127.0.0.1:1 (from $HTTP_PROXY) ("), said
    assert "; check the proxy (or unset HTTP_PROXY), the network and the mirror (" in said, said
    assert "secret" not in said and os.listdir(tmp_path) == []
    # a proxy that answers: an HTTP error through it names it too
    monkeypatch.setenv("HTTP_PROXY", url)  # the loopback server serves proxied requests too
    with pytest.raises(DatasetError, match=rf"^download of {url}/none\.bin through the proxy "
                                           rf"{url} \(from \$HTTP_PROXY\) failed: HTTP 404"):
        dl.download_file(f"{url}/none.bin", tmp_path / "none.bin", progress=False)
    # one that no_proxy bypasses is not named
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:1")
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    with pytest.raises(DatasetError) as err:
        dl.download_file(f"{url}/none.bin", tmp_path / "none.bin", progress=False)
    assert "proxy" not in str(err.value)
    assert dl.download_file(f"{url}/blob.bin", tmp_path / "blob.bin",
                            progress=False).read_bytes() == b"data"


def _cifar_archive(tmp_path) -> bytes:
    src = tmp_path / "archive-src"
    write_cifar(src / "cifar-10-batches-py")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(src / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    return buf.getvalue()


def test_load_dataset_downloads_from_mirror(server, tmp_path, monkeypatch):
    url, files = server
    archive = _cifar_archive(tmp_path)
    files["cifar-10-python.tar.gz"] = archive
    monkeypatch.setitem(dl.SOURCES, "cifar10", dl.Source(
        "http://invalid.example/", (dl.RemoteFile("cifar-10-python.tar.gz",
                                                  md5=hashlib.md5(archive).hexdigest()),),
        "cifar10"))
    ds = load_dataset("cifar10", download=True, mirror=url + "/", val_size=4)
    root = tmp_path / "root" / "cifar10"
    assert (root / "cifar-10-python.tar.gz").read_bytes() == archive
    assert (root / "cifar-10-batches-py" / "test_batch").is_file()
    assert len(ds.y_train) == 16 and ds.source == str(root / "cifar-10-batches-py")
    # a second download keeps the verified file instead of fetching it again
    files.clear()
    assert dl.download_dataset("cifar10", mirror=url, progress=False) == \
        [root / "cifar-10-python.tar.gz"]


def _serve_cifar(files, monkeypatch, archive: bytes) -> None:
    files["cifar-10-python.tar.gz"] = archive
    monkeypatch.setitem(dl.SOURCES, "cifar10", dl.Source(
        "http://invalid.example/", (dl.RemoteFile("cifar-10-python.tar.gz",
                                                  md5=hashlib.md5(archive).hexdigest()),),
        "cifar10"))


def _flip_middle_byte(blob: bytes) -> bytes:
    mid = len(blob) // 2
    return blob[:mid] + bytes([blob[mid] ^ 0xFF]) + blob[mid + 1:]


def test_download_fetches_a_truncated_cifar_archive_again(server, tmp_path, monkeypatch):
    url, files = server
    archive = _cifar_archive(tmp_path)
    _serve_cifar(files, monkeypatch, archive)
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "cifar-10-python.tar.gz").write_bytes(archive[: len(archive) // 2])
    # without download=True the damage is reported, with what to do about it
    with pytest.raises(DatasetError, match=r"cifar-10-python\.tar\.gz: cannot extract"):
        load_dataset("cifar10", data_dir=data_dir, val_size=4)
    ds = load_dataset("cifar10", data_dir=data_dir, download=True, mirror=url, val_size=4)
    assert (data_dir / "cifar-10-python.tar.gz").read_bytes() == archive
    assert len(ds.y_train) == 16 and ds.source == str(data_dir / "cifar-10-batches-py")


def test_an_incomplete_batch_folder_is_extracted_or_fetched_again(server, tmp_path, monkeypatch):
    """A damaged batch said "delete it and download again", after which the folder, trusted
    for its data_batch_1, failed on the missing batch with or without download=True, the archive
    beside it never extracted again. A folder without every batch is incomplete: the archive
    fills it in (keeping anything else there), or the download fetches one, or the message says
    which batches are missing and how to get them."""
    url, files = server
    archive = _cifar_archive(tmp_path)
    _serve_cifar(files, monkeypatch, archive)
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "cifar-10-python.tar.gz").write_bytes(archive)
    ref = load_dataset("cifar10", data_dir=data_dir, val_size=4)
    batches = data_dir / "cifar-10-batches-py"
    (batches / "data_batch_3").unlink()
    (batches / "notes.txt").write_text("mine")
    again = load_dataset("cifar10", data_dir=data_dir, val_size=4)
    np.testing.assert_array_equal(again.X_train, ref.X_train)
    assert (batches / "data_batch_3").is_file() and (batches / "notes.txt").read_text() == "mine"
    # no archive: the message names the missing batches and the way to fetch them
    (data_dir / "cifar-10-python.tar.gz").unlink()
    (batches / "test_batch").unlink()
    with pytest.raises(DatasetError, match=rf"^{re.escape(str(batches))}: CIFAR-10 is "
                                           r"incomplete there \(no test_batch: an interrupted "
                                           r"copy, or a damaged batch deleted\); put "
                                           rf"cifar-10-python.tar.gz in {re.escape(str(data_dir))}"
                                           r", .* or fetch it "
                                           r"with `mlplab data download cifar10 --data-dir "):
        load_dataset("cifar10", data_dir=data_dir, val_size=4)
    fetched = load_dataset("cifar10", data_dir=data_dir, download=True, mirror=url, val_size=4)
    np.testing.assert_array_equal(fetched.X_test, ref.X_test)


def test_download_fetches_a_corrupt_cifar_archive_again(server, tmp_path, monkeypatch):
    """A flipped byte in the pixels' stored (incompressible) deflate blocks extracts without
    error: only the checksum tells."""
    url, files = server
    archive = _cifar_archive(tmp_path)
    _serve_cifar(files, monkeypatch, archive)
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "cifar-10-python.tar.gz").write_bytes(_flip_middle_byte(archive))
    ds = load_dataset("cifar10", data_dir=data_dir, download=True, mirror=url, val_size=4)
    assert (data_dir / "cifar-10-python.tar.gz").read_bytes() == archive
    ref = load_dataset("cifar10", data_dir=tmp_path / "archive-src", val_size=4)
    np.testing.assert_array_equal(ds.X_train, ref.X_train)
    np.testing.assert_array_equal(ds.X_test, ref.X_test)


def test_download_fetches_again_a_damaged_archive_found_outside_the_download_folder(
        server, tmp_path, monkeypatch):
    url, files = server
    archive = _cifar_archive(tmp_path)
    _serve_cifar(files, monkeypatch, archive)
    root = tmp_path / "root"  # <data root>: searched after <data root>/cifar10
    root.mkdir()
    (root / "cifar-10-python.tar.gz").write_bytes(archive[:5000])
    ds = load_dataset("cifar10", download=True, mirror=url, val_size=4)
    assert (root / "cifar10" / "cifar-10-python.tar.gz").read_bytes() == archive
    assert ds.source == str(root / "cifar10" / "cifar-10-batches-py")


def test_download_keeps_a_verified_archive_and_extracted_batches(server, tmp_path, monkeypatch):
    url, files = server
    archive = _cifar_archive(tmp_path)
    _serve_cifar(files, monkeypatch, archive)
    files.clear()  # nothing to fetch: any request fails with HTTP 404
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "cifar-10-python.tar.gz").write_bytes(archive)
    assert len(load_dataset("cifar10", data_dir=data_dir, download=True, mirror=url,
                            val_size=4).y_train) == 16
    # extracted batches have no published checksum: read as they are, the archive not needed
    (data_dir / "cifar-10-python.tar.gz").unlink()
    assert len(load_dataset("cifar10", data_dir=data_dir, download=True, mirror=url,
                            val_size=4).y_train) == 16


def _serve_mnist(files, monkeypatch, folder: Path) -> dict[str, bytes]:
    """Serve (and publish the MD5s of) the gzipped IDX files written into ``folder``."""
    blobs = {p.name: p.read_bytes() for p in sorted(folder.glob("*.gz"))}
    files.update(blobs)
    monkeypatch.setitem(dl.SOURCES, "mnist", dataclasses.replace(
        dl.SOURCES["mnist"], base_url="http://invalid.example/",
        files=tuple(dl.RemoteFile(n, md5=hashlib.md5(b).hexdigest()) for n, b in blobs.items())))
    return blobs


def test_download_fetches_a_damaged_idx_file_again(server, tmp_path, monkeypatch):
    url, files = server
    arrays = write_idx_set(tmp_path / "served", gz=True)
    blobs = _serve_mnist(files, monkeypatch, tmp_path / "served")
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    for name, blob in blobs.items():
        (data_dir / name).write_bytes(blob)
    bad = data_dir / "train-labels-idx1-ubyte.gz"
    bad.write_bytes(blobs[bad.name][:-12])  # cut off: the gzip trailer and some labels
    with pytest.raises(DatasetError, match=r"train-labels-idx1-ubyte\.gz: truncated"):
        load_dataset("mnist", data_dir=data_dir, val_size=2)
    ds = load_dataset("mnist", data_dir=data_dir, download=True, mirror=url, val_size=2)
    # fetched into data_dir/mnist, which is searched first from now on
    assert (data_dir / "mnist" / bad.name).read_bytes() == blobs[bad.name]
    np.testing.assert_array_equal(np.concatenate([ds.y_train, ds.y_val]),
                                  arrays["train-labels-idx1-ubyte"])
    assert load_dataset("mnist", data_dir=data_dir, val_size=2).source == \
        str(data_dir / "mnist")


def test_a_failed_download_says_the_files_found_are_read_without_it(tmp_path, monkeypatch):
    """Gzipped IDX files that are not the published ones (a copy of Debian's recompressed
    Fashion-MNIST, files of one's own) are fetched again with download=True; where that failed
    (offline), the message said only to copy the file to data_dir/<name>/ yourself, where it
    would fail the checksum again, not that the files found are read without download=True."""
    monkeypatch.setattr(idx_module, "DEBIAN_FASHION_DIR", tmp_path / "no-debian")
    data_dir = tmp_path / "own"
    write_idx_set(data_dir, gz=True)
    assert len(load_dataset("mnist", data_dir=data_dir, val_size=2).y_train) == 10
    with pytest.raises(DatasetError) as err:
        load_dataset("mnist", data_dir=data_dir, download=True, mirror="http://127.0.0.1:1/",
                     val_size=2)
    said = str(err.value)
    assert said.startswith("cannot download http://127.0.0.1:1/"), said
    assert f"({data_dir / 'train-images-idx3-ubyte.gz'} was found but is not the published " \
        "file, MD5 is " in said, said
    assert f"pass download=False to read the files in {data_dir} as they are" in said, said
    assert "\n" not in said


def test_mnist_and_fashion_mnist_share_a_data_dir(server, tmp_path, monkeypatch):
    """Their files have the same names: each download goes to its own sub-folder, and files of
    the one found where the other is looked for are passed over (by their published checksum)."""
    url, files = server
    served = {}
    for name, seed in (("mnist", 0), ("fashion-mnist", 1)):
        arrays = write_idx_set(tmp_path / "served" / name, gz=True, seed=seed)
        blobs = {p.name: p.read_bytes() for p in (tmp_path / "served" / name).glob("*.gz")}
        served[name] = (arrays, blobs)
        monkeypatch.setitem(dl.SOURCES, name, dataclasses.replace(
            dl.SOURCES[name], files=tuple(dl.RemoteFile(n, md5=hashlib.md5(b).hexdigest())
                                          for n, b in blobs.items())))
    shared = tmp_path / "data"
    for name in ("mnist", "fashion-mnist"):
        files.clear()
        files.update(served[name][1])
        dl.download_dataset(name, data_dir=shared, mirror=url, progress=False)
    for name in ("mnist", "fashion-mnist"):
        ds = load_dataset(name, data_dir=shared, val_size=2)
        assert ds.source == str(shared / name)
        np.testing.assert_array_equal(ds.y_test, served[name][0]["t10k-labels-idx1-ubyte"])
    # MNIST's files put straight into the shared folder are not read as Fashion-MNIST
    for n, b in served["mnist"][1].items():
        (shared / n).write_bytes(b)
    (shared / "fashion-mnist" / "train-labels-idx1-ubyte.gz").unlink()
    monkeypatch.setattr(idx_module, "DEBIAN_FASHION_DIR", tmp_path / "no-debian")
    monkeypatch.setenv("MLPLAB_DATA", str(tmp_path / "no-home-data"))
    with pytest.raises(DatasetError, match="fashion-mnist not found"):
        load_dataset("fashion-mnist", data_dir=shared, val_size=2)
    assert load_dataset("mnist", data_dir=shared, val_size=2).source == str(shared / "mnist")


def _labels_with_counts(counts, seed=0):
    """60,000 shuffled training labels with these class counts."""
    y = np.repeat(np.arange(10), counts)
    return np.random.RandomState(seed).permutation(y)


def test_mnist_and_fashion_mnist_told_apart_by_their_label_counts(tmp_path, monkeypatch):
    """Files with no published checksum to go by (Debian's recompressed Fashion-MNIST, files
    gzipped again or not at all) are told apart by their training labels' class counts."""
    mnist = (5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949)  # MNIST's, published
    monkeypatch.setattr(idx_module, "DEBIAN_FASHION_DIR", tmp_path / "no-debian")
    monkeypatch.setenv("MLPLAB_DATA", str(tmp_path / "no-home-data"))
    for folder, counts, gz in (("fashion", (6000,) * 10, True), ("digits", mnist, False)):
        write_idx_set(tmp_path / folder, gz=gz)  # small images: only the labels are read here
        blob = idx_bytes(_labels_with_counts(counts))
        (tmp_path / folder / "train-labels-idx1-ubyte.gz").unlink(missing_ok=True)
        (tmp_path / folder / "train-labels-idx1-ubyte").unlink(missing_ok=True)
        name = "train-labels-idx1-ubyte" + (".gz" if gz else "")
        (tmp_path / folder / name).write_bytes(gzip.compress(blob) if gz else blob)
    assert idx_module.identify_labels(tmp_path / "fashion" / "train-labels-idx1-ubyte.gz") == \
        "fashion-mnist"
    assert idx_module.identify_labels(tmp_path / "digits" / "train-labels-idx1-ubyte") == "mnist"
    # each folder is taken for its own dataset and passed over for the other, which says why
    assert idx_module.find_idx_files("fashion-mnist", tmp_path / "fashion") is not None
    assert idx_module.find_idx_files("mnist", tmp_path / "digits") is not None
    with pytest.raises(DatasetError, match=f"{tmp_path / 'fashion'} holds fashion-mnist's"):
        load_dataset("mnist", data_dir=tmp_path / "fashion")
    with pytest.raises(DatasetError, match=f"{tmp_path / 'digits'} holds mnist's files"):
        load_dataset("fashion-mnist", data_dir=tmp_path / "digits")
    # other counts (a class one image short, another dataset of 60,000) say nothing
    near = (6001,) + (6000,) * 8 + (5999,)
    path = tmp_path / "near-labels"
    path.write_bytes(idx_bytes(_labels_with_counts(near)))
    assert idx_module.identify_labels(path) is None


def test_download_reads_files_without_a_published_checksum_as_they_are(
        server, tmp_path, monkeypatch):
    url, files = server
    write_idx_set(tmp_path / "served", gz=True)
    _serve_mnist(files, monkeypatch, tmp_path / "served")
    files.clear()  # nothing to fetch: any request fails with HTTP 404
    # uncompressed files: the published MD5s are of the .gz files
    raw = write_idx_set(tmp_path / "raw", gz=False, seed=1)
    ds = load_dataset("mnist", data_dir=tmp_path / "raw", download=True, mirror=url, val_size=2)
    np.testing.assert_array_equal(ds.y_test, raw["t10k-labels-idx1-ubyte"])
    # Debian's package recompressed Fashion-MNIST: other MD5s than Zalando's, still read as is
    debian = tmp_path / "debian"
    deb = write_idx_set(debian, gz=True, seed=2)
    monkeypatch.setattr(idx_module, "DEBIAN_FASHION_DIR", debian)
    monkeypatch.setitem(dl.SOURCES, "fashion-mnist", dl.Source(
        "http://invalid.example/", tuple(dl.RemoteFile(p.name, md5="0" * 32)
                                         for p in debian.glob("*.gz")), "fashion-mnist"))
    ds = load_dataset("fashion-mnist", download=True, mirror=url, val_size=2)
    assert ds.source == str(debian)
    np.testing.assert_array_equal(ds.y_test, deb["t10k-labels-idx1-ubyte"])


def test_download_destinations_that_cannot_take_the_file(server, tmp_path):
    url, files = server
    files["blob.bin"] = b"x" * 100
    (tmp_path / "taken" / "blob.bin").mkdir(parents=True)
    with pytest.raises(DatasetError, match=r"blob\.bin is a folder, where the download's file "
                                           "should go"):
        dl.download_file(f"{url}/blob.bin", tmp_path / "taken" / "blob.bin", progress=False)
    assert "blob.bin" in files  # (served: the folder, not the server, refused it)
    (tmp_path / "a-file").write_text("not a folder")
    with pytest.raises(DatasetError, match="cannot save the download to .*choose another "
                                           "data_dir"):  # a Python call: the argument's name
        dl.download_file(f"{url}/blob.bin", tmp_path / "a-file" / "blob.bin", progress=False)


def test_a_folder_where_a_download_goes_is_said_without_the_network(tmp_path, capsys):
    """With no network, a folder where a file of `mlplab data download` goes (e.g.
    DIR/mnist/train-images-idx3-ubyte.gz) was advised as "copy the file to
    DIR/mnist/train-images-idx3-ubyte.gz yourself": the folder was noticed only once a server
    answered. It is said first, as a folder to move away, with no attempt to download."""
    from mlplab.cli import main

    taken = tmp_path / "mnist" / "train-images-idx3-ubyte.gz"
    taken.mkdir(parents=True)
    # a refused connection: no network, and nothing listens on port 1
    assert main(["data", "download", "mnist", "--data-dir", str(tmp_path),
                 "--mirror", "http://127.0.0.1:1/"]) == 1
    err = capsys.readouterr().err
    assert f"{taken} is a folder, where the download's file should go; move it away or " \
        "choose another --data-dir." in err, err
    assert "cannot download" not in err and "yourself" not in err, err
    with pytest.raises(DatasetError, match=r"idx3-ubyte\.gz is a folder, where the download's "
                                           "file should go; move it away or choose another "
                                           "data_dir"):
        dl.download_file("http://127.0.0.1:1/train-images-idx3-ubyte.gz", taken,
                         progress=False)
    # a later file's folder too, before the first file's download fails for want of a network
    taken.rmdir()
    later = tmp_path / "mnist" / "t10k-labels-idx1-ubyte.gz"
    later.mkdir()
    with pytest.raises(DatasetError, match=r"t10k-labels-idx1-ubyte\.gz is a folder"):
        dl.download_dataset("mnist", data_dir=tmp_path, mirror="http://127.0.0.1:1/",
                            progress=False)


class _DiskWithRoom:
    """A file opened for writing on a disk with ``free`` bytes left: a write past them fails
    with ENOSPC, as on a full disk."""

    def __init__(self, f, free: int) -> None:
        self._f, self.free = f, free

    def write(self, data) -> int:
        if len(data) > self.free:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.free -= len(data)
        return self._f.write(data)

    def writelines(self, lines) -> None:
        for line in lines:
            self.write(line)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self._f.close()

    def __getattr__(self, name):
        return getattr(self._f, name)


def _fill_disk(monkeypatch, module, free: int) -> None:
    """Files that ``module`` opens for writing get only ``free`` bytes."""
    def full_open(file, mode="r", *args, **kwargs):
        f = open(file, mode, *args, **kwargs)
        return _DiskWithRoom(f, free) if "w" in mode else f

    monkeypatch.setattr(module, "open", full_open, raising=False)


def test_a_disk_that_fills_during_a_download_is_said_to_be_full(server, tmp_path, monkeypatch):
    """A full disk was reported as an interrupted transfer ("nothing was saved - run the command
    again"), which only fills the disk again: it is the full disk's one line, naming the file and
    saying to free space, and nothing is left behind."""
    from mlplab.io import DiskFullError

    url, files = server
    files["blob.bin"] = os.urandom(300_000)
    _fill_disk(monkeypatch, dl, 100_000)
    dest = tmp_path / "new" / "blob.bin"
    with pytest.raises(DiskFullError) as err:
        dl.download_file(f"{url}/blob.bin", dest, progress=False)
    assert str(err.value).startswith(f"no space left on device while writing {dest} "), err.value
    assert "free some disk space" in str(err.value) and "interrupted" not in str(err.value)
    assert os.listdir(tmp_path) == []


def test_a_disk_that_fills_while_the_archive_is_extracted_is_said_to_be_full(tmp_path):
    """A full disk while the batches were extracted said "it may be truncated - delete it and
    download again" of the archive, which was fine: it is the full disk's one line, and the
    archive, kept, is extracted once there is room."""
    from mlplab.io import DiskFullError

    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "cifar-10-python.tar.gz").write_bytes(_cifar_archive(tmp_path))
    with pytest.MonkeyPatch.context() as mp:
        _fill_disk(mp, cifar_module, 1000)
        with pytest.raises(DiskFullError) as err:
            load_dataset("cifar10", data_dir=data_dir, val_size=4)
    said = str(err.value)
    assert said.startswith(f"no space left on device while writing "
                           f"{data_dir / 'cifar-10-batches-py'} "), said
    assert "free some disk space" in said and "download again" not in said, said
    assert os.listdir(data_dir) == ["cifar-10-python.tar.gz"]  # no half-extracted folder
    assert len(load_dataset("cifar10", data_dir=data_dir, val_size=4).y_train) == 16


def test_idx_test_images_of_another_size_are_refused_up_front(tmp_path):
    write_idx_set(tmp_path / "m", gz=False)
    rs = np.random.RandomState(0)
    (tmp_path / "m" / "t10k-images-idx3-ubyte").write_bytes(
        idx_bytes(rs.randint(0, 256, (4, 32, 32))))
    with pytest.raises(DatasetError, match=r"t10k-images-idx3-ubyte: test images are 32x32 but "
                                           r"the training images .* are 28x28; the files are not "
                                           r"one dataset - delete them and download again\.$"):
        load_dataset("mnist", data_dir=tmp_path / "m", val_size=2)


def test_official_checksums_are_published_md5s():
    for src in dl.SOURCES.values():
        assert all(len(f.md5) == 32 for f in src.files)
    assert dl.SOURCES["cifar10"].files[0].md5 == "c58f30108f718f92721af3b95e74349a"


# --- image folders: colour and bit depth --------------------------------------------------------

def _save(path: Path, arr: np.ndarray) -> np.ndarray:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)
    return arr


@pytest.mark.parametrize("grey_name", ["0000.png", "9999.png"])
def test_folder_colour_does_not_depend_on_which_image_comes_first(tmp_path, grey_name):
    rs = np.random.RandomState(0)
    root = tmp_path / "pics"
    grey = _save(root / "a" / grey_name, rs.randint(0, 256, (4, 5)).astype(np.uint8))
    colour = {f"{c}/{i:04d}.png": _save(root / c / f"{i:04d}.png",
                                        rs.randint(0, 256, (4, 5, 3)).astype(np.uint8))
              for c in "ab" for i in range(1, 4)}
    for cache in (False, True, True):  # decoded, then decoded and cached, then from the cache
        X, y, _ = read_image_folder(root, cache=cache)
        assert X.shape == (7, 4, 5, 3)
        by_name = dict(zip(sorted([*colour, f"a/{grey_name}"]), X))  # files in name order
        np.testing.assert_array_equal(by_name[f"a/{grey_name}"], np.repeat(grey[:, :, None], 3, 2))
        for name, arr in colour.items():
            np.testing.assert_array_equal(by_name[name], arr)


def test_folder_colour_image_after_many_grey_ones(tmp_path):
    """More images than one decoding thread's share: the grey decode stops and starts over."""
    rs = np.random.RandomState(1)
    root = tmp_path / "pics"
    greys = [_save(root / "a" / f"{i:04d}.png", rs.randint(0, 256, (2, 2)).astype(np.uint8))
             for i in range(1100)]
    last = _save(root / "b" / "0000.png", rs.randint(0, 256, (2, 2, 3)).astype(np.uint8))
    X, y, classes = read_image_folder(root, cache=False)
    assert X.shape == (1101, 2, 2, 3) and classes == ["a", "b"]
    np.testing.assert_array_equal(X[:1100], np.repeat(np.stack(greys)[..., None], 3, 3))
    np.testing.assert_array_equal(X[1100], last)
    (root / "b" / "0000.png").unlink()
    _save(root / "b" / "0000.png", last[:, :, 0])
    X, _, _ = read_image_folder(root, cache=False)
    assert X.shape == (1101, 2, 2, 1)


def test_folder_wide_greyscale_images_are_scaled_not_clipped(tmp_path):
    wide = np.array([[0, 257, 1000, 32896, 65535]], np.uint16)
    expected = np.array([[0, 1, 4, 128, 255]], np.uint8)  # v / 257, rounded
    root = tmp_path / "pics"
    _save(root / "a" / "png16.png", wide)                           # Pillow mode I;16
    _save(root / "a" / "tiff16b.tif", wide.astype(">u2"))          # I;16B
    _save(root / "b" / "int32.tif", wide.astype(np.int32))         # I
    _save(root / "b" / "float.tif", (wide / 65535.0).astype(np.float32))  # F, 0..1
    with Image.open(root / "a" / "tiff16b.tif") as im:
        assert im.mode == "I;16B"
    X, _, _ = read_image_folder(root, cache=False)
    assert X.shape == (4, 1, 5, 1)
    for x in X:
        np.testing.assert_array_equal(x[:, :, 0], expected)
    # alongside colour images they are scaled, then repeated over the three channels
    _save(root / "b" / "rgb.png", np.zeros((1, 5, 3), np.uint8))
    X, _, _ = read_image_folder(root, cache=False)
    assert X.shape == (5, 1, 5, 3)
    np.testing.assert_array_equal(X[0], np.repeat(expected[:, :, None], 3, 2))


@pytest.mark.parametrize("arr, message", [
    (np.array([[0, 70000]], np.int32), r"int32\.tif: 32-bit image with values 0\.\.70000"),
    (np.array([[0, 65536]], np.int32), r"int32\.tif: 32-bit image with values 0\.\.65536"),
    (np.array([[0, -1]], np.int32), r"int32\.tif: 32-bit image with values -1\.\.0"),
    (np.array([[0.0, 2.0]], np.float32), r"float32\.tif: floating-point image with values "
                                         r"outside 0\.\.1 \(found 0\.\.2\)"),
    (np.array([[0.0, np.nan]], np.float32), r"float32\.tif: floating-point image"),
])
def test_folder_wide_images_out_of_range_are_refused(tmp_path, arr, message):
    root = tmp_path / "pics"
    _save(root / "a" / f"{arr.dtype.name}.tif", arr)
    _save(root / "b" / "ok.png", np.zeros((1, 2), np.uint8))
    with pytest.raises(DatasetError, match=message) as err:
        read_image_folder(root, cache=False)
    assert "\n" not in str(err.value) and "save it as an 8- or 16-bit image" in str(err.value)


def test_palette_pngs_with_an_alpha_per_colour_decode_without_pillows_warning(tmp_path):
    """A palette PNG whose tRNS chunk gives each colour an alpha (what pngquant and many image
    optimisers write) made every data info, train and predict print Pillow's "Palette images
    with Transparency expressed in bytes should be converted to RGBA images", naming no file and
    asking for a conversion mlplab does itself. The pixels are the palette's colours, alpha
    dropped, as for every other image with transparency."""
    import warnings

    from mlplab.data.folder import read_image

    rs = np.random.RandomState(0)
    palette = rs.randint(0, 256, (256, 3)).astype(np.uint8)
    index = rs.randint(0, 256, (4, 5)).astype(np.uint8)
    root = tmp_path / "pics"
    for c in "ab":
        (root / c).mkdir(parents=True)
        im = Image.fromarray(index, "P")
        im.putpalette(palette.tobytes())
        im.save(root / c / "pal.png", transparency=bytes(range(256)))
    with Image.open(root / "a" / "pal.png") as im:
        assert im.mode == "P" and isinstance(im.info["transparency"], bytes)
    rgb = palette[index]
    grey = np.asarray(Image.fromarray(rgb).convert("L"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        X, _, _ = read_image_folder(root, cache=False)
        np.testing.assert_array_equal(X, np.stack([rgb, rgb]))
        np.testing.assert_array_equal(read_image(root / "a" / "pal.png", (4, 5, 3)), rgb)
        np.testing.assert_array_equal(read_image(root / "a" / "pal.png", (4, 5, 1))[:, :, 0], grey)


#: EXIF orientation -> what undoes it: a file stored with this transpose of the upright image
#: and tagged with the orientation shows upright in a viewer (EXIF 2.3, tag 0x0112)
_STORED_AS = {2: "FLIP_LEFT_RIGHT", 3: "ROTATE_180", 4: "FLIP_TOP_BOTTOM", 5: "TRANSPOSE",
              6: "ROTATE_90", 7: "TRANSVERSE", 8: "ROTATE_270"}


def _save_oriented(path: Path, upright: np.ndarray, orientation: int, **kw) -> None:
    im = Image.fromarray(upright)
    if orientation != 1:
        im = im.transpose(getattr(getattr(Image, "Transpose", Image), _STORED_AS[orientation]))
    exif = Image.Exif()
    exif[0x0112] = orientation
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path, exif=exif.tobytes(), **kw)


def test_folder_images_are_turned_upright_as_their_exif_orientation_says(tmp_path):
    """A phone photo taken upright is stored sideways with an EXIF tag saying to turn it; every
    viewer shows it turned, and so must the network's input be (training, predict and data
    show alike). Before, mlplab decoded the stored pixels: such photos trained sideways, and a
    folder of portrait photos and portrait screenshots was refused as of mixed sizes."""
    from mlplab.data.folder import read_image

    upright = np.random.RandomState(0).randint(0, 256, (4, 6, 3)).astype(np.uint8)
    root = tmp_path / "pics"
    for o in range(1, 9):  # lossless PNGs with an eXIf chunk: every orientation
        _save_oriented(root / "a" / f"{o}.png", upright, o)
    with Image.open(root / "a" / "6.png") as im:
        assert im.size == (4, 6)  # stored 6 rows x 4 columns: sideways
    X, _, _ = read_image_folder(root, cache=False)
    assert X.shape == (8, 4, 6, 3)
    for o, x in zip(range(1, 9), X):
        np.testing.assert_array_equal(x, upright, err_msg=f"orientation {o}")
        np.testing.assert_array_equal(read_image(root / "a" / f"{o}.png", (4, 6, 3)), upright)

    # a JPEG turned by the tag (6: the top-left stored pixel shows at the top right) is the size
    # of an upright image, including for the header-only size check of a folder's last file
    half = np.zeros((40, 60, 3), np.uint8)
    half[:, 30:] = 255  # upright: black on the left, white on the right
    _save_oriented(root / "b" / "photo.jpg", half, 6, quality=95)
    X, _, _ = read_image_folder(root, (40, 60), cache=False)
    got = read_image(root / "b" / "photo.jpg", (40, 60, 3))
    for x in (X[-1], got):
        assert x[:, :25].max() < 30 and x[:, 35:].min() > 225
    (root / "a").rename(tmp_path / "other")
    _save(root / "a" / "upright.png", np.full((40, 60), 9, np.uint8))
    X, _, _ = read_image_folder(root, cache=False)  # no image_size: both are 40x60
    assert X.shape == (2, 40, 60, 3)


def test_a_tiff_is_turned_once_whether_or_not_pillow_turns_it(tmp_path):
    """Pillow turns a TIFF as its EXIF orientation says as it loads it (Pillow 9 and 13 do;
    13 also gives the turned size as it opens it); mlplab turned it again, so a TIFF came out
    unlike the same photo as a PNG (turned twice, or refused as of another size). Whichever
    Pillow is here, a TIFF reads as the PNG does."""
    from mlplab.data.folder import read_image

    upright = np.random.RandomState(2).randint(0, 256, (4, 6, 3)).astype(np.uint8)
    root = tmp_path / "pics"
    for o in range(1, 9):
        _save_oriented(root / "a" / f"{o}.tif", upright, o)
        np.testing.assert_array_equal(read_image(root / "a" / f"{o}.tif", (4, 6, 3)), upright,
                                      err_msg=f"orientation {o}")
    _save_oriented(root / "a" / "9.png", upright, 6)
    X, _, _ = read_image_folder(root, cache=False)  # no image_size: all are 4 x 6 upright
    assert X.shape == (9, 4, 6, 3)
    for x in X:
        np.testing.assert_array_equal(x, upright)


def test_a_run_on_tiffs_that_mlplab_turned_twice_is_told_so(tmp_path):
    """Decoding 3 turned such TIFFs a second time, Pillow having turned them as it loaded them:
    a run made then saw other pixels than a run now, which evaluate and resume refuse, naming
    the file."""
    from mlplab.data.folder import _pillow_turns_tiffs, decoded_otherwise_before

    upright = np.zeros((4, 6, 3), np.uint8)
    _save_oriented(tmp_path / "pics" / "a" / "1.tif", upright, 6)
    found = decoded_otherwise_before(tmp_path / "pics", 3)
    if not _pillow_turns_tiffs()[0]:  # a Pillow that reads TIFFs as stored: turned once
        assert found is None
        return
    assert found is not None and found[0] == tmp_path / "pics" / "a" / "1.tif"
    assert "a TIFF with an EXIF orientation, which Pillow turns as it loads it" in found[1]
    assert decoded_otherwise_before(tmp_path / "pics", 4) is None
    assert decoded_otherwise_before(tmp_path / "pics", 2) is None  # turned by Pillow alone


def test_an_exif_orientation_beyond_the_eight_is_read_as_upright(tmp_path):
    """A damaged orientation tag (0 or 9) says nothing: the image is read as stored, not refused
    as unreadable."""
    from mlplab.data.folder import read_image

    stored = np.random.RandomState(1).randint(0, 256, (4, 6, 3)).astype(np.uint8)
    for o in (0, 9):
        exif = Image.Exif()
        exif[0x0112] = o
        path = tmp_path / "pics" / "a" / f"{o}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(stored).save(path, exif=exif.tobytes())
        np.testing.assert_array_equal(read_image(path, (4, 6, 3)), stored)
    X, _, _ = read_image_folder(tmp_path / "pics", cache=False)
    np.testing.assert_array_equal(X, np.stack([stored, stored]))


def _tar_header(name: bytes, size: int | bytes, kind: bytes = b"0") -> bytes:
    """One ustar header block, with a valid checksum (``size`` may be a raw 12-byte field)."""
    field = size if isinstance(size, bytes) else b"%011o\0" % size
    header = bytearray(512)
    header[:len(name)] = name[:100]
    header[100:108], header[108:116], header[116:124] = b"0000644\0", b"0000000\0", b"0000000\0"
    header[124:136], header[136:148] = field, b"00000000000\0"
    header[156:157], header[257:263] = kind, b"ustar\0"
    header[148:156] = b" " * 8
    header[148:156] = b"%06o\0 " % sum(header)
    return bytes(header)


@pytest.mark.parametrize("tar, message", [
    # GNU long names and sparse files: Python's tarfile recursed over 400 chained long names
    # (RecursionError), held 15 x 60 MB of them (a 918 KB file took 944 MB), or looped over
    # 100,000 sparse blocks before anything could check them
    (_tar_header(b"././@LongLink", 60 << 20, b"L") + bytes(60 << 20), "long-name header of"),
    (_tar_header(b"cifar-10-batches-py/data_batch_1", 0, b"S"), "of tar type b'S'"),
    # a pax header beyond 64 KiB (tarfile's pax regex took 10 s over 100,000 digits)
    (_tar_header(b"././@PaxHeader", 100_000, b"x") + b"9" * 100_352, "header of 100000"),
    (_tar_header(b"././@PaxHeader", 10, b"x") + b"99 path=x\n".ljust(512, b"\0"), "malformed pax"),
    (_tar_header(b"././@PaxHeader", 11, b"x") + b"11 size=99\n".ljust(512, b"\0"),
     "changes how an entry is read"),
    # a size in base-256 form, here negative: tarfile stepped back and re-read the archive
    (_tar_header(b"cifar-10-batches-py/data_batch_1", b"\xff" * 10 + b"|\0"),
     "declares a size of"),
    (b"not a tar header".ljust(512, b"!"), "bad checksum"),
    # long names must be unambiguous: tarfile and GNU tar disagree on chains of them
    (_tar_header(b"././@LongLink", 4, b"L") + b"abc\0".ljust(512, b"\0")
     + _tar_header(b"././@LongLink", 4, b"L") + b"abc\0".ljust(512, b"\0"), "in a row"),
    (_tar_header(b"././@LongLink", 3, b"L") + b"abc".ljust(512, b"0"), "without its end"),
    (_tar_header(b"././@PaxHeader", 7, b"x") + b"7 path\n".ljust(512, b"\0"), "malformed pax"),
    (_tar_header(b"././@PaxHeader", 25, b"x") + b"25 GNU.sparse.name=abcde\n".ljust(512, b"\0"),
     "changes how an entry is read"),
    (_tar_header(b"././@GlobalHead", 11, b"g") + b"11 path=ab\n".ljust(512, b"\0"),
     "global pax header with a path"),
    (_tar_header(b"cifar-10-batches-py/data_batch_1/", 0, b"\0"), "file named as a folder"),
    # a name of 8 MB in a message (the tar name field holds 100 bytes; a long name is refused)
    (_tar_header(b"n" * 100, 1 << 40), "declares a size"),
])
def test_crafted_archives_are_refused_quickly_and_briefly(tmp_path, tar, message):
    (tmp_path / "cifar-10-python.tar.gz").write_bytes(gzip.compress(tar + bytes(1024)))
    start = time.process_time()
    with pytest.raises(DatasetError, match=message) as error:
        load_dataset("cifar10", data_dir=tmp_path, val_size=1)
    assert time.process_time() - start < 5 and len(str(error.value)) < 400
    assert str(error.value).endswith("; delete it and download again."), error.value


def _tar_entries(blob: bytes, entries: int, entry_bytes: int, total_bytes: int) -> list:
    """``(name, data)`` of each file a :class:`TarReader` reads from ``blob`` within the
    bounds given."""
    from mlplab.data.tar import TarLimits, TarReader

    reader = TarReader(io.BytesIO(blob), Path("a.tar"), TarLimits(
        "the test archive", entries, "N-note", entry_bytes, "S-note", total_bytes, "T-note"))
    return [(name, b"".join(reader.chunks(size))) for name, size in reader.entries()]


def test_tar_reader_bounds_admit_an_archive_at_them_and_refuse_one_beyond():
    """Three files of 1,000 bytes: 3 x (512 + 1,024) = 4,608 bytes of headers and padded data
    (the end marker not counted)."""
    blob = b"".join(_tar_header(b"f%d" % i, 1000) + bytes([i]) * 1000 + bytes(24)
                    for i in range(3)) + bytes(1024)
    expected = [(f"f{i}", bytes([i]) * 1000) for i in range(3)]
    assert _tar_entries(blob, entries=3, entry_bytes=1000, total_bytes=4608) == expected
    for bounds, message in [((2, 1000, 4608), "more than 2 entries; N-note"),
                            ((3, 999, 4608), r"entry 1 declares a size of .*; S-note"),
                            ((3, 1000, 4607), "more than 0 MiB uncompressed; T-note")]:
        with pytest.raises(DatasetError, match=r"a\.tar: not the test archive \(" + message):
            _tar_entries(blob, *bounds)


@pytest.mark.parametrize("field", [b"00000001750\0", b"        1750", b"00000001790\0",
                                   b"0000000175a\0", b"\0" * 12])
def test_tar_sizes_are_octal_digits_only(field):
    """1750 octal is 1,000; 9 is no octal digit (int(..., 8) would raise a bare ValueError) and
    an empty field is no size."""
    blob = _tar_header(b"f", field) + bytes(1024) + bytes(1024)
    if field.strip(b"\0 ").lstrip(b"0") == b"1750":
        assert _tar_entries(blob, 3, 1000, 4608) == [("f", bytes(1000))]
    else:
        with pytest.raises(DatasetError, match="entry 1 declares a size of"):
            _tar_entries(blob, 3, 1000, 4608)


def test_a_ustar_prefix_is_part_of_the_entry_name():
    """ustar keeps a long path's folders in a prefix field: GNU tar may put the whole
    x/cifar-10-batches-py there and only data_batch_1 in the name."""
    header = bytearray(_tar_header(b"data_batch_1", 3))
    header[345:366] = b"x/cifar-10-batches-py"
    header[148:156] = b" " * 8
    header[148:156] = b"%06o\0 " % sum(header)
    blob = bytes(header) + b"abc".ljust(512, b"\0") + bytes(1024)
    assert _tar_entries(blob, 3, 1000, 4608) == [("x/cifar-10-batches-py/data_batch_1", b"abc")]


def test_only_the_batch_folder_of_an_archive_is_read(tmp_path):
    """Files named like batches elsewhere in the archive (a copy in notes/, one at the top) are
    skipped: only cifar-10-batches-py/<batch> is a CIFAR-10 batch."""
    src = tmp_path / "src" / "cifar-10-batches-py"
    write_cifar(src)
    write_cifar(tmp_path / "other", n=2)
    tar_bytes = io.BytesIO()
    with tarfile.open(fileobj=tar_bytes, mode="w") as tar:
        tar.add(src, arcname="cifar-10-batches-py")
        tar.add(tmp_path / "other" / "data_batch_1", arcname="notes/data_batch_1")
        tar.add(tmp_path / "other" / "test_batch", arcname="test_batch")
    data, direct = _from_archive_and_folder(tmp_path, tar_bytes.getvalue(), src)
    np.testing.assert_array_equal(data.X_train, direct.X_train)
    np.testing.assert_array_equal(data.X_test, direct.X_test)


def _from_archive_and_folder(tmp_path, tar: bytes, src):
    """CIFAR-10 loaded from ``tar`` as the official .tar.gz in a folder of its own, and
    straight from the batch folder ``src``: what extraction gives, and what it should give."""
    folder = tmp_path / "archive"
    folder.mkdir()
    (folder / "cifar-10-python.tar.gz").write_bytes(gzip.compress(tar))
    return (load_dataset("cifar10", data_dir=folder, val_size=1),
            load_dataset("cifar10", data_dir=src, val_size=1))


def test_archives_with_pax_headers_and_folders_still_extract(tmp_path):
    """Python's tarfile writes a pax header for a fractional mtime: those are skipped, and so
    are folders and links; the batches are extracted under their own names."""
    src = tmp_path / "src"
    write_cifar(src / "cifar-10-batches-py")
    tar_bytes = io.BytesIO()
    with tarfile.open(fileobj=tar_bytes, mode="w", format=tarfile.PAX_FORMAT) as tar:
        tar.add(src / "cifar-10-batches-py", arcname="cifar-10-batches-py")
        link = tarfile.TarInfo("cifar-10-batches-py/readme")
        link.type, link.linkname = tarfile.SYMTYPE, "../../etc/passwd"
        tar.addfile(link)
    assert b"PaxHeader" in tar_bytes.getvalue()  # the format this test is about
    data, direct = _from_archive_and_folder(tmp_path, tar_bytes.getvalue(), src)
    np.testing.assert_array_equal(data.X_train, direct.X_train)
    np.testing.assert_array_equal(data.y_test, direct.y_test)
    assert not (tmp_path / "archive" / "cifar-10-batches-py" / "readme").exists()


def test_pickle_text_numbers_and_python2_strings(tmp_path):
    # protocol 0's numbers are text: float()'s error would repr the whole 64 MiB line
    with pytest.raises(DatasetError, match="a number of 10000000 characters"):
        parse_batch(b"F" + b"\xff" * 10_000_000 + b"\n.", "data_batch_1")
    # a Python 2 protocol-0 batch (cPickle) whose str holds non-ASCII bytes still loads
    X = np.arange(2 * 3072, dtype=np.uint8).reshape(2, 3072)
    blob = (b"(dp0\nS'data'\np1\ncnumpy.core.multiarray\n_reconstruct\np2\n(cnumpy\nndarray\n"
            b"p3\n(I0\ntp4\nS'b'\np5\ntp6\nRp7\n(I1\n(I2\nI3072\ntp8\ncnumpy\ndtype\np9\n"
            b"(S'u1'\np10\nI0\nI1\ntp11\nRp12\n(I3\nS'|'\np13\nNNNI-1\nI-1\nI0\ntp14\nbI00\nS"
            + repr(X.tobytes()).lstrip("b").encode() + b"\np15\ntp16\nbsS'labels'\np17\n"
            b"(lp18\nI3\naI9\nas.")
    images, labels = parse_batch(blob, "data_batch_1")
    np.testing.assert_array_equal(images.transpose(0, 3, 1, 2).reshape(2, 3072), X)
    assert labels.tolist() == [3, 9]


def test_refusal_messages_do_not_sort_big_dicts():
    """A refused call on a dict of many keys: its message says how many, without reprlib's
    sort of every key (seconds for 500,000 keys, 24 times over)."""
    keys = b"".join(b"C\x04" + struct.pack("<I", i) + b"N" for i in range(200_000))
    blob = (b"\x80\x02cnumpy.core.multiarray\n_reconstruct\n}(" + keys + b"u\x940"
            + b"h\x00" * 3 + b"\x87R.")
    start = time.process_time()
    with pytest.raises(DatasetError, match="dict of 200000 items"):
        parse_batch(blob, "data_batch_1")
    assert time.process_time() - start < 5


def test_folder_problems_are_clear_errors(tmp_path, monkeypatch):
    import tempfile

    write_cifar(tmp_path / "src" / "cifar-10-batches-py")
    tar_bytes = io.BytesIO()
    with tarfile.open(fileobj=tar_bytes, mode="w") as tar:
        tar.add(tmp_path / "src" / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    (tmp_path / "cifar-10-python.tar.gz").write_bytes(gzip.compress(tar_bytes.getvalue()))

    def unwritable(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "mkdtemp", unwritable)
    with pytest.raises(DatasetError, match="cannot extract .* into this folder"):
        load_dataset("cifar10", data_dir=tmp_path, val_size=1)
    with pytest.raises(DatasetError, match="the home folder '~' stands for is unknown"):
        load_dataset("cifar10", data_dir="~no-such-user-mlplab/cifar", val_size=1)


@pytest.mark.parametrize("fmt", [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT, tarfile.USTAR_FORMAT])
def test_archives_with_long_paths_extract(tmp_path, fmt):
    """A path beyond the 100 bytes of a tar header: a pax ``path`` record or a GNU long name
    (ustar puts it in the prefix field)."""
    src = tmp_path / "src"
    write_cifar(src / "cifar-10-batches-py")
    tar_bytes = io.BytesIO()
    with tarfile.open(fileobj=tar_bytes, mode="w", format=fmt) as tar:
        tar.add(src / "cifar-10-batches-py", arcname="x" * 90 + "/cifar-10-batches-py")
    folder = tmp_path / "archive"
    folder.mkdir()
    (folder / "cifar-10-python.tar.gz").write_bytes(gzip.compress(tar_bytes.getvalue()))
    data = load_dataset("cifar10", data_dir=folder, val_size=1)
    np.testing.assert_array_equal(data.X_train,
                                  load_dataset("cifar10", data_dir=src, val_size=1).X_train)


def test_many_small_texts_beyond_latin1_add_up():
    """The 1 MiB allowance for text beyond latin1 is for the whole pickle, not each string."""
    text = ("a" * 1000 + "\U0001F600").encode()
    blob = b"\x80\x02]" + (b"X" + struct.pack("<I", len(text)) + text + b"a") * 2000 + b"."
    with pytest.raises(DatasetError, match="more than 1 MiB of text beyond latin1"):
        parse_batch(blob, "data_batch_1")
    line = b"V" + b"a" * (2 << 20) + b"\\U0001f600\n."
    with pytest.raises(DatasetError, match="more than 1 MiB of text beyond latin1"):
        parse_batch(line, "data_batch_1")


def test_archive_size_and_folders_in_the_way(tmp_path):
    write_cifar(tmp_path / "src" / "cifar-10-batches-py")
    tar_bytes = io.BytesIO()
    with tarfile.open(fileobj=tar_bytes, mode="w") as tar:
        tar.add(tmp_path / "src" / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    good = gzip.compress(tar_bytes.getvalue())
    # gzip reads zero padding a byte at a time: a sparse tail of 300 MB is refused by its size
    big = tmp_path / "big"
    big.mkdir()
    with open(big / "cifar-10-python.tar.gz", "wb") as f:
        f.write(good)
        f.truncate(300 << 20)
    start = time.process_time()
    with pytest.raises(DatasetError, match="the official archive has 170,498,071"):
        load_dataset("cifar10", data_dir=big, val_size=1)
    assert time.process_time() - start < 5
    # a half-made batch folder in the way: the archive's batches fill it in (its damaged
    # test_batch replaced); before, it was refused, to be removed by hand
    partial = tmp_path / "partial"
    (partial / "cifar-10-batches-py").mkdir(parents=True)
    (partial / "cifar-10-batches-py" / "test_batch").write_bytes(b"x")
    (partial / "cifar-10-python.tar.gz").write_bytes(good)
    ds = load_dataset("cifar10", data_dir=partial, val_size=1)
    ref = load_dataset("cifar10", data_dir=tmp_path / "src", val_size=1)
    np.testing.assert_array_equal(ds.X_test, ref.X_test)
    # a file where the folder would be is still in the way, and named
    blocked = tmp_path / "blocked"
    blocked.mkdir()
    (blocked / "cifar-10-batches-py").write_bytes(b"not a folder")
    (blocked / "cifar-10-python.tar.gz").write_bytes(good)
    with pytest.raises(DatasetError, match="cifar-10-batches-py: cannot put the batches of "
                                           "cifar-10-python.tar.gz there .*the archive is fine"):
        load_dataset("cifar10", data_dir=blocked, val_size=1)
    with pytest.raises(DatasetError, match="cannot look there"):
        load_dataset("cifar10", data_dir=tmp_path / ("a" * 300), val_size=1)
    # an archive that is a loop of links is said as such, where it went "not found"
    looped = tmp_path / "looped"
    looped.mkdir()
    os.symlink("cifar-10-python.tar.gz", looped / "cifar-10-python.tar.gz")
    # (the path is shortened in the middle: its end names the archive)
    with pytest.raises(DatasetError, match=r"python.tar.gz': cannot look there \("
                                           + re.escape(os.strerror(errno.ELOOP))):
        load_dataset("cifar10", data_dir=looped, val_size=1)


@pytest.mark.parametrize("spec", ["folder:~no-such-user-mlplab/images", "mnist"])
def test_a_home_folder_of_an_unknown_user_is_a_clear_error(spec):
    with pytest.raises(DatasetError, match="the home folder '~' stands for is unknown here; give"):
        load_dataset(spec, data_dir="~no-such-user-mlplab/data")


def test_batches_must_be_files_each_once_and_nothing_may_follow_the_archive(tmp_path):
    """What a batch is must not depend on the tool that extracts the archive: a second copy of a
    batch, or a link named as one, is refused; so is more than 1 MiB after the tar's end."""
    write_cifar(tmp_path / "src" / "cifar-10-batches-py")

    def archive(extra=None, tail=b""):
        tar_bytes = io.BytesIO()
        with tarfile.open(fileobj=tar_bytes, mode="w") as tar:
            tar.add(tmp_path / "src" / "cifar-10-batches-py", arcname="cifar-10-batches-py")
            if extra is not None:
                extra(tar)
        return gzip.compress(tar_bytes.getvalue() + tail)

    def decoy(tar):
        tar.add(tmp_path / "src" / "cifar-10-batches-py" / "data_batch_1",
                arcname="decoy/cifar-10-batches-py/data_batch_1")

    def link(tar):
        info = tarfile.TarInfo("cifar-10-batches-py/test_batch")
        info.type, info.linkname = tarfile.SYMTYPE, "data_batch_1"
        tar.addfile(info)

    write_cifar(tmp_path / "src5" / "cifar-10-batches-py")
    (tmp_path / "src5" / "cifar-10-batches-py" / "data_batch_5").unlink()
    short = io.BytesIO()
    with tarfile.open(fileobj=short, mode="w") as tar:
        tar.add(tmp_path / "src5" / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    for name, blob, message in [("decoy", archive(decoy), "data_batch_1 is there twice"),
                                ("link", archive(link), "test_batch is not a file"),
                                ("tail", archive(tail=bytes(2 << 20)), "more than 1 MiB after"),
                                ("short", gzip.compress(short.getvalue()),
                                 r"missing data_batch_5")]:
        folder = tmp_path / name
        folder.mkdir()
        (folder / "cifar-10-python.tar.gz").write_bytes(blob)
        # each says what to do (an archive missing a batch said only that)
        with pytest.raises(DatasetError, match=message + r".*; delete it and download again\.$"):
            load_dataset("cifar10", data_dir=folder, val_size=1)


def test_without_a_home_folder_data_dir_still_works(tmp_path, monkeypatch):
    """No $HOME and no password entry (a bare container): the default data root cannot be
    found, which matters only when no data_dir is given; the error says so, and what to give
    (it was "'~/.cache/mlplab': ... give the folder's full path", of a path never given)."""
    import pwd

    def unknown(uid):
        raise KeyError(uid)

    NO_HOME = (r"^no home folder here for the default data folder ~/\.cache/mlplab \(HOME is "
               r"unset and this user has none\); give data_dir or set MLPLAB_DATA")
    monkeypatch.delenv("HOME", raising=False)
    monkeypatch.delenv("MLPLAB_DATA", raising=False)
    monkeypatch.setattr(pwd, "getpwuid", unknown)
    write_cifar(tmp_path / "cifar-10-batches-py")
    assert len(load_dataset("cifar10", data_dir=tmp_path, val_size=1).X_test)
    with pytest.raises(DatasetError, match=NO_HOME):
        load_dataset("cifar10", val_size=1)
    # MNIST and Fashion-MNIST too (their loader asked for the default root first, and failed);
    # without a data_dir, Fashion-MNIST is still found in Debian's folder
    write_idx_set(tmp_path / "idx")
    assert len(load_dataset("mnist", data_dir=tmp_path / "idx", val_size=1).X_test)
    with pytest.raises(DatasetError, match=NO_HOME):
        load_dataset("mnist", val_size=1)
    monkeypatch.setattr(idx_module, "DEBIAN_FASHION_DIR", tmp_path / "debian")
    with pytest.raises(DatasetError, match=NO_HOME):
        load_dataset("fashion-mnist", val_size=1)
    write_idx_set(tmp_path / "debian", seed=3)
    assert len(load_dataset("fashion-mnist", val_size=1).X_test)
    # a ~ in MLPLAB_DATA is named as the variable's, which no command line shows
    monkeypatch.setenv("MLPLAB_DATA", "~nouser/data")
    with pytest.raises(DatasetError, match=r"^MLPLAB_DATA='~nouser/data': the home folder '~' "
                       "stands for is unknown here; set MLPLAB_DATA to the folder's full path"):
        load_dataset("mnist", val_size=1)



def test_an_mlplab_data_that_names_a_file_is_said_to_be_one(tmp_path, monkeypatch):
    """MLPLAB_DATA naming a file (a typo, a path pasted from another variable) gave "mnist not
    found ... in FILE/mnist" and advice to download into it, as --data-dir did before it was
    checked; a folder dataset, whose decode cache lives there, still loads, with the cache's
    warning (test_an_image_cache_that_cannot_be_written_says_what_to_do)."""
    (tmp_path / "a-file").write_text("")
    monkeypatch.setenv("MLPLAB_DATA", str(tmp_path / "a-file"))
    with pytest.raises(DatasetError, match=r"^MLPLAB_DATA='[^']*a-file' is a file; set it to the "
                                           r"folder that holds \(or will hold\) the downloads"):
        load_dataset("mnist", val_size=1)
    for i in range(4):
        (tmp_path / "pics" / "ab"[i % 2]).mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((4, 4), 60 * i, np.uint8)).save(
            tmp_path / "pics" / "ab"[i % 2] / f"{i}.png")
    with pytest.warns(UserWarning, match="could not write the image cache"):
        ds = load_dataset(f"folder:{tmp_path / 'pics'}", val_size=0, progress=False)
    assert len(ds.y_train) == 4

# --- progress bars in a notebook ------------------------------------------------------------------

@pytest.mark.parametrize("kernel", [False, True])
def test_download_and_decoding_bars_show_in_a_notebook(server, tmp_path, capsys, request,
                                                        kernel):
    """A download and a folder's decoding made plain ``tqdm`` bars disabled where stderr is not
    a terminal, and a notebook's is not: downloading CIFAR-10 from a notebook showed nothing for
    minutes. In a Jupyter kernel they show (tqdm.auto's); into a file, still not."""
    if kernel:
        request.getfixturevalue("jupyter_kernel")
    url, files = server
    files["blob.bin"] = os.urandom(100_000)
    dl.download_file(f"{url}/blob.bin", tmp_path / "blob.bin")
    rs = np.random.RandomState(0)
    for c in "ab":
        for i in range(3):
            _save(tmp_path / "pics" / c / f"{i}.png", rs.randint(0, 256, (2, 2)).astype(np.uint8))
    read_image_folder(tmp_path / "pics", cache=False)
    err = capsys.readouterr().err
    if kernel:
        assert "blob.bin:" in err and "decoding pics:" in err
    else:
        assert err == ""
    dl.download_file(f"{url}/blob.bin", tmp_path / "again.bin", progress=False)
    assert capsys.readouterr().err == ""  # progress=False: never
