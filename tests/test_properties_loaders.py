"""Property-based tests (hypothesis) of every dataset loader on hostile input.

Each loader is fed random bytes, truncated and bit-flipped real files, wrong magic numbers, absurd
sizes in headers, wrong dtypes and shapes, and non-UTF-8 names. It must either return data that
is what it claims to be, or raise ``DatasetError`` (a ``ValueError``) with a one-line message
naming the file - never another exception, a hang, or a large allocation (measured with
``tracemalloc``, which sees NumPy's buffers too).
"""

from __future__ import annotations

import gzip
import io
import os
import pickle
import struct
import tarfile
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from hostile import bounded as _bounded
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from mlplab.data import DatasetError, load_dataset
from mlplab.data.cifar import extract_archive, parse_batch
from mlplab.data.idx import read_idx
from mlplab.data.safe_pickle import load_pickle

#: most a loader may allocate on any of these inputs (all are under ~100 KB)
MAX_PEAK = 32 << 20
#: MLPLAB_HYPOTHESIS_SCALE=20 searches 20 times as many (fresh, random) inputs; CI uses 1 and a
#: fixed sequence of examples
SCALE = int(os.environ.get("MLPLAB_HYPOTHESIS_SCALE", "1"))
FAST = settings(max_examples=150 * SCALE, deadline=timedelta(seconds=10), derandomize=SCALE == 1,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def bounded(call, where: str):
    return _bounded(call, where, DatasetError, MAX_PEAK)


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("hostile")


@pytest.fixture(autouse=True)
def _data_root(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("MLPLAB_DATA", str(tmp_path_factory.mktemp("root")))


def _gzip(data: bytes) -> bytes:
    return gzip.compress(data, compresslevel=1, mtime=0)


def _damage(data: bytes, draw) -> bytes:
    """Truncate, flip bytes or append garbage, as a bad disk or download would."""
    how = draw(st.sampled_from(["truncate", "flip", "append", "none"]))
    if how == "truncate" and data:
        return data[:draw(st.integers(0, len(data) - 1))]
    if how == "flip" and data:
        out = bytearray(data)
        for _ in range(draw(st.integers(1, 4))):
            i = draw(st.integers(0, len(out) - 1))
            out[i] ^= draw(st.integers(1, 255))
        return bytes(out)
    if how == "append":
        return data + draw(st.binary(min_size=1, max_size=16))
    return data


# --------------------------------------------------------------------------- IDX
IDX_CODES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
#: dimensions a header may claim: ordinary, zero, and absurd (up to 2**32 - 1)
DIMS = st.one_of(st.integers(0, 6), st.integers(7, 40), st.integers(2**20, 2**32 - 1))


@st.composite
def idx_files(draw) -> bytes:
    kind = draw(st.sampled_from(["random", "header", "valid", "valid"]))
    if kind == "random":
        data = draw(st.binary(max_size=300))
    elif kind == "valid":  # a well-formed file, then perhaps damaged
        code = draw(st.sampled_from(sorted(IDX_CODES)))
        dims = draw(st.lists(st.integers(0, 5), min_size=1, max_size=4))
        size = int(np.prod(dims)) * np.dtype(IDX_CODES[code]).itemsize
        data = b"\x00\x00" + bytes([code, len(dims)]) + \
            b"".join(struct.pack(">I", d) for d in dims) + \
            draw(st.binary(min_size=size, max_size=size))
        if draw(st.booleans()):
            data = _damage(data, draw)
    else:  # odd magic numbers, type codes, dimension counts and absurd dimensions
        code = draw(st.sampled_from([*IDX_CODES, 0x00, 0x07, 0x0A, 0xFF]))
        magic = draw(st.sampled_from([b"\x00\x00", b"\x00\x00", b"\x00\x01", b"\xff\xff"]))
        ndim = draw(st.integers(0, 4) | st.integers(5, 255))
        dims = draw(st.lists(DIMS, min_size=min(ndim, 8), max_size=min(ndim, 8)))
        body = draw(st.binary(max_size=64))
        header = magic + bytes([code, ndim]) + b"".join(struct.pack(">I", d) for d in dims)
        data = _damage(header + body, draw)
    return _gzip(data) if draw(st.booleans()) else data


@FAST
@given(idx_files())
def test_read_idx_on_hostile_files(scratch, data):
    path = scratch / "t10k-images-idx3-ubyte"
    path.write_bytes(data)
    result = bounded(lambda: read_idx(path), str(path))
    if not isinstance(result, DatasetError):  # accepted: exactly what the header says
        raw = gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data
        dims = struct.unpack(f">{raw[3]}I", raw[4:4 + 4 * raw[3]])
        assert result.shape == dims and result.dtype == np.dtype(IDX_CODES[raw[2]])
        assert result.flags.writeable


def test_gzip_bomb_is_refused_before_inflating(scratch):
    # 1 MB of gzip that inflates to 1 GB, under a header that claims 2**40 bytes
    path = scratch / "bomb.gz"
    header = b"\x00\x00\x08\x03" + struct.pack(">III", 2**20, 2**10, 2**10)
    comp = gzip.compress(header + bytes(1 << 20), compresslevel=9)
    path.write_bytes(comp)
    error = bounded(lambda: read_idx(path), str(path))
    assert isinstance(error, DatasetError) and "more than this" in str(error)


def test_gzip_promising_more_than_deflate_packs_is_refused_before_allocating(scratch):
    # below the 1 GiB mlplab reads, but 256 MiB from 1 KB of gzip is beyond deflate's ~1032:1
    path = scratch / "ratio.gz"
    header = b"\x00\x00\x08\x03" + struct.pack(">III", 256, 1024, 1024)
    path.write_bytes(gzip.compress(header + bytes(1 << 20), compresslevel=9))
    error = bounded(lambda: read_idx(path), str(path))
    assert isinstance(error, DatasetError) and "more than this" in str(error)


def _idx(dtype_code: int, arr: np.ndarray) -> bytes:
    arr = np.asarray(arr)
    return (b"\x00\x00" + bytes([dtype_code, arr.ndim]) +
            b"".join(struct.pack(">I", d) for d in arr.shape) +
            arr.astype(IDX_CODES[dtype_code]).tobytes())


@settings(FAST, max_examples=60 * SCALE)
@given(st.data())
def test_mnist_folder_with_wrong_dtypes_shapes_and_labels(scratch, data):
    folder = scratch / "mnist"
    folder.mkdir(exist_ok=True)
    n = data.draw(st.integers(1, 6))
    images = np.zeros((n, 4, 4), np.uint8)
    labels = np.arange(n) % 10
    files = {"train-images-idx3-ubyte": _idx(0x08, images),
             "train-labels-idx1-ubyte": _idx(0x08, labels),
             "t10k-images-idx3-ubyte": _idx(0x08, images),
             "t10k-labels-idx1-ubyte": _idx(0x08, labels)}
    victim = data.draw(st.sampled_from(sorted(files)))
    is_images = "images" in victim
    change = data.draw(st.sampled_from(["dtype", "shape", "count", "range", "damage"]))
    if change == "dtype":
        files[victim] = _idx(data.draw(st.sampled_from([0x09, 0x0B, 0x0C, 0x0D, 0x0E])),
                             images if is_images else labels)
    elif change == "shape":
        files[victim] = _idx(0x08, labels if is_images else images)
    elif change == "count":
        files[victim] = _idx(0x08, images[:0] if is_images else labels[:-1])
    elif change == "range" and not is_images:
        files[victim] = _idx(0x08, labels + 10)
    else:
        files[victim] = _damage(files[victim], data.draw)
    for name, content in files.items():
        (folder / name).write_bytes(content)
    ds = bounded(lambda: load_dataset("mnist", data_dir=folder, val_size=0), str(folder))
    if not isinstance(ds, DatasetError):
        assert ds.X_train.dtype == np.uint8 and ds.X_train.ndim == 4
        assert len(ds.X_train) == len(ds.y_train) and ds.y_train.max() < 10


# --------------------------------------------------------------------------- CIFAR-10 pickles
def _batch(n: int = 3) -> dict:
    return {b"batch_label": b"training batch 1 of 5", b"labels": list(range(n)),
            b"data": np.arange(n * 3072, dtype=np.uint8).reshape(n, 3072),
            b"filenames": [b"f%d.png" % i for i in range(n)]}


ODD_VALUES = st.one_of(
    st.none(), st.integers(-2**70, 2**70), st.floats(allow_nan=True), st.text(max_size=5),
    st.binary(max_size=5), st.lists(st.integers(-3, 12), max_size=5),
    st.builds(lambda shape, dt: np.zeros(shape, dt),
              st.lists(st.integers(0, 4), max_size=3).map(tuple),
              st.sampled_from(["u1", "i8", "f4", "f8", "U3", "S2", "?", "c8"])),
    st.builds(lambda n: np.zeros((n, 3072), np.uint8), st.integers(0, 4)),
)


@st.composite
def cifar_pickles(draw) -> bytes:
    kind = draw(st.sampled_from(["random", "damaged", "fields", "opcodes"]))
    if kind == "random":
        return draw(st.binary(max_size=400))
    if kind == "fields":  # a real pickle of a dict with odd 'data'/'labels'
        d = _batch(draw(st.integers(0, 3)))
        for key in draw(st.lists(st.sampled_from([b"data", b"labels", b"x"]), max_size=2)):
            if draw(st.booleans()):
                d[key] = draw(ODD_VALUES)
            else:
                d.pop(key, None)
        obj = d if draw(st.integers(0, 5)) else draw(ODD_VALUES)
        return pickle.dumps(obj, protocol=draw(st.integers(0, 5)))
    if kind == "damaged":
        return _damage(pickle.dumps(_batch(), protocol=draw(st.integers(0, 5))), draw)
    # hand-made opcode streams: absurd lengths and memo indices, odd globals
    proto = b"\x80" + bytes([draw(st.integers(2, 5))])
    big = draw(st.sampled_from([2**31 - 1, 2**32 - 1, 2**40, 2**63 - 1, 2**26]))
    ops = draw(st.sampled_from([
        b"B" + struct.pack("<I", big & 0xFFFFFFFF) + b"abc.",            # BINBYTES
        b"\x8e" + struct.pack("<Q", big) + b"abc.",                        # BINBYTES8
        b"\x8d" + struct.pack("<Q", big) + b"abc.",                        # BINUNICODE8
        b"T" + struct.pack("<I", big & 0x7FFFFFFF) + b"abc.",             # BINSTRING
        b"\x96" + struct.pack("<Q", big) + b"abc.",                        # BYTEARRAY8
        b"N" + b"r" + struct.pack("<I", big & 0xFFFFFFFF) + b".",         # LONG_BINPUT
        b"N" + b"p" + str(big).encode() + b"\n.",                          # PUT
        b"\x95" + struct.pack("<Q", big) + b"N.",                          # FRAME
        b"(" * 2000 + b".",                                                # MARKs
        b"]" * 5000 + b".",                                                # nested lists
        b"cos\nsystem\n(S'true'\ntR.",                                     # a command
        b"cnumpy\ndtype\n(S'O8'\nI0\nI1\ntR.",                             # object dtype
    ]))
    return proto + ops


@FAST
@given(cifar_pickles())
def test_cifar_batch_parser_on_hostile_pickles(data):
    result = bounded(lambda: parse_batch(data, "data_batch_1"), "data_batch_1")
    if not isinstance(result, DatasetError):
        X, y = result
        assert X.dtype == np.uint8 and X.shape[1:] == (32, 32, 3) and X.shape[0] == len(y)
        assert y.dtype == np.int64 and (len(y) == 0 or (y.min() >= 0 and y.max() <= 9))


def test_a_long_dtype_spec_is_refused_before_numpy_parses_it():
    """np.dtype("u1,u1,...") builds a structure field by field (tens of MB and seconds for this
    600 KB string) before anything could refuse it: only short specs reach NumPy."""
    spec = b"u1," * 200_000
    blob = b"\x80\x02cnumpy\ndtype\nX" + struct.pack("<I", len(spec)) + spec + b"\x85R."
    error = bounded(lambda: parse_batch(blob, "data_batch_1"), "data_batch_1")
    assert isinstance(error, DatasetError) and "refusing numpy dtype" in str(error)


def test_memo_bomb_is_refused_without_allocating():
    # a 9-byte pickle that used to make the C unpickler allocate and zero 1 GiB (index 2**26)
    # to 32 GiB (index 2**31)
    for index in (2**26, 2**31 - 1):
        data = b"\x80\x02N" + b"r" + struct.pack("<I", index) + b"."
        error = bounded(lambda d=data: load_pickle(d, "data_batch_1"), "data_batch_1")
        assert isinstance(error, DatasetError) and "memo index" in str(error)


# --------------------------------------------------------------------------- CIFAR-10 archive
def _tar(members: list[tuple[str, bytes]], declared: dict[str, int] | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, content in members:
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    raw = buf.getvalue()
    if declared:  # rewrite a header's size field: octal, as tar stores it
        plain = bytearray(gzip.decompress(raw))
        for name, size in declared.items():
            at = plain.find(name.encode())
            field = (oct(size)[2:].zfill(11) + "\0").encode()
            if at >= 0 and len(field) == 12:
                plain[at + 124:at + 136] = field
                chk = sum(plain[at:at + 148]) + 8 * 32 + sum(plain[at + 156:at + 512])
                plain[at + 148:at + 156] = (oct(chk)[2:].zfill(6) + "\0 ").encode()
        raw = _gzip(bytes(plain))
    return raw


BATCH_NAMES = [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch", "batches.meta"]


@st.composite
def archives(draw) -> bytes:
    kind = draw(st.sampled_from(["random", "members", "damaged", "complete"]))
    if kind == "random":
        data = draw(st.binary(max_size=300))
        return _gzip(data) if draw(st.booleans()) else data
    names = [f"cifar-10-batches-py/{n}" for n in BATCH_NAMES] if kind == "complete" else []
    names += draw(st.lists(st.sampled_from(
        [f"cifar-10-batches-py/{n}" for n in BATCH_NAMES] +
        ["../../evil", "/etc/passwd-copy", "cifar-10-batches-py/../../data_batch_1",
         "x/cifar-10-batches-py/data_batch_1", "readme.html"]), max_size=9, unique=True))
    names = list(dict.fromkeys(names))
    members = [(n, draw(st.binary(max_size=20))) for n in names]
    declared = {n: draw(st.sampled_from([2**30, 8**11 - 1])) for n in names
                if kind != "complete" and draw(st.integers(0, 4)) == 0}
    raw = _tar(members, declared)
    return _damage(raw, draw) if kind == "damaged" else raw


@settings(FAST, max_examples=60 * SCALE)
@given(archives())
def test_cifar_archive_extraction_on_hostile_archives(scratch, data):
    archive = scratch / "cifar-10-python.tar.gz"
    archive.write_bytes(data)
    dest = scratch / "extract"
    if dest.exists():
        import shutil

        shutil.rmtree(dest)
    dest.mkdir()
    result = bounded(lambda: extract_archive(archive, dest), str(archive))
    # nothing is ever written outside dest/cifar-10-batches-py, whatever the member names
    for p in dest.rglob("*"):
        assert p == dest / "cifar-10-batches-py" or p.parent == dest / "cifar-10-batches-py", p
    assert not (scratch / "evil").exists()
    if not isinstance(result, DatasetError):
        assert {p.name for p in result.iterdir()} >= {*BATCH_NAMES[:6]}


# --------------------------------------------------------------------------- image folders
def _png(h: int, w: int, mode: str = "RGB") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, (w, h), 128).save(buf, format="PNG")
    return buf.getvalue()


NAMES = st.sampled_from([b"cat", b"dog", b"caf\xe9", b"\xff\xfe", b"ok \xc3\xa9", b"a\x01b"])


@st.composite
def folders(draw) -> list[tuple[bytes, bytes, bytes]]:
    """``(class folder name, file name, content)`` triples; names may be non-UTF-8."""
    files = []
    for cls in draw(st.lists(NAMES, min_size=1, max_size=3, unique=True)):
        for i in range(draw(st.integers(1, 3))):
            kind = draw(st.sampled_from(["png", "png", "other size", "gray", "random",
                                         "damaged"]))
            if kind == "png":
                content = _png(4, 4)
            elif kind == "other size":
                content = _png(draw(st.integers(1, 6)), draw(st.integers(1, 6)))
            elif kind == "gray":
                content = _png(4, 4, "L")
            elif kind == "random":
                content = draw(st.binary(max_size=200))
            else:
                content = _damage(_png(4, 4), draw)
            name = draw(st.sampled_from([b"%d.png", b"\xff%d.png", b"%d.jpg", b"\xe9t\xe9%d.png"]))
            files.append((cls, name % i, content))
    return files


@settings(FAST, max_examples=60 * SCALE)
@given(folders(), st.sampled_from([None, "4", "3x5"]))
def test_image_folder_on_hostile_files_and_names(scratch, files, size):
    root = scratch / "folder"
    if root.exists():
        import shutil

        shutil.rmtree(root)
    broot = os.fsencode(root)
    os.makedirs(broot)
    for cls, name, content in files:
        os.makedirs(os.path.join(broot, cls), exist_ok=True)
        with open(os.path.join(broot, cls, name), "wb") as f:
            f.write(content)
    ds = bounded(lambda: load_dataset(f"folder:{root}", image_size=size, val_size=0,
                                      test_size=0, cache=False), str(root))
    if not isinstance(ds, DatasetError):
        assert ds.X_train.dtype == np.uint8 and ds.X_train.ndim == 4
        assert len(ds.X_train) == len(files)
        assert ds.classes == sorted(os.fsdecode(c) for c in {c for c, _, _ in files})
        assert all(c.encode("utf-8") for c in ds.classes)  # class names are valid text


def test_found_by_the_deep_search():
    """A 20x search (MLPLAB_HYPOTHESIS_SCALE=20) found labels too large for int64 raising
    OverflowError instead of a DatasetError."""
    for labels in ([1e300], [2**70], 1e300):
        data = pickle.dumps({**_batch(1), b"labels": labels}, protocol=3)
        error = bounded(lambda d=data: parse_batch(d, "data_batch_1"), "data_batch_1")
        assert isinstance(error, DatasetError) and "'labels' must be a list of integers" in str(
            error)


def test_found_by_the_deep_search_too(scratch):
    """An empty IDX array whose other dimensions multiply beyond 2**63 (NumPy's reshape raised
    ValueError); complex or float labels (cast to integers with a warning)."""
    path = scratch / "huge-empty"
    path.write_bytes(b"\x00\x00\x08\x04" + struct.pack(">IIII", 0, 2**20, 2**22, 2**22))
    error = bounded(lambda: read_idx(path), str(path))
    assert isinstance(error, DatasetError) and "too large" in str(error)
    for labels in (np.array([1 + 2j]), [1.0], np.array([True]), [None]):
        data = pickle.dumps({**_batch(1), b"labels": labels}, protocol=2)
        error = bounded(lambda d=data: parse_batch(d, "data_batch_1"), "data_batch_1")
        assert isinstance(error, DatasetError) and "list of integers" in str(error)


def test_a_refused_global_with_a_newline_stays_on_one_line():
    """Found by a 20x search: a damaged STACK_GLOBAL name with a newline in it."""
    module, name = b"numpy._core.numeric", b"_frombuff\nr"
    data = (b"\x80\x04\x8c" + bytes([len(module)]) + module + b"\x94\x8c" + bytes([len(name)]) +
            name + b"\x94\x93\x94.")  # SHORT_BINUNICODE x2, STACK_GLOBAL
    error = bounded(lambda: parse_batch(data, "data_batch_1"), "data_batch_1")
    assert isinstance(error, DatasetError) and \
        "refusing to load 'numpy._core.numeric._frombuff\\nr'" in str(error)


def test_png_chunk_declaring_two_gigabytes(scratch):
    """Found by a 20x search: a 70-byte PNG whose IDAT chunk declares 2**31 - 16 bytes made
    Pillow, reading from the file, allocate that much; images are now decoded from memory."""
    png = _png(4, 4)
    at = png.find(b"IDAT") - 4
    bad = png[:at] + struct.pack(">I", 0x7FFFFFF0) + png[at + 4:]
    root = scratch / "bigchunk"
    (root / "a").mkdir(parents=True, exist_ok=True)
    (root / "a" / "0.png").write_bytes(bad)
    result = bounded(lambda: load_dataset(f"folder:{root}", val_size=0, test_size=0,
                                          cache=False), str(root))
    assert isinstance(result, DatasetError) or len(result.y_train) == 1
    pickle_with_newline = b"\x80\x02Q."  # BINPERSID: CPython's message spans two lines
    error = bounded(lambda: parse_batch(pickle_with_newline, "data_batch_1"), "data_batch_1")
    assert isinstance(error, DatasetError) and "PERSID" in str(error) and "\n" not in str(error)
