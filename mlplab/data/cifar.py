"""CIFAR-10, "python version": ``cifar-10-batches-py/`` or the archive ``cifar-10-python.tar.gz``.

The batches are Python-2 pickles. ``pickle.load`` would run whatever a file names, so they are
read with :class:`RestrictedUnpickler`, which admits only what the official files contain: dicts,
lists, tuples, byte strings, numbers and the three NumPy names that rebuild an array (plus
NumPy's ``_frombuffer``, with which batches re-pickled at protocol 5 rebuild them). Anything
else (``os.system``, ``builtins.eval``, ...) is refused before it is imported.
"""

from __future__ import annotations

import gzip
import io
import math
import os
import pickle
import pickletools
import reprlib
import shutil
import stat
import tempfile
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from mlplab.data.base import Dataset, DatasetError, data_root, user_path

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
           "truck"]
BATCH_DIR = "cifar-10-batches-py"
ARCHIVE = "cifar-10-python.tar.gz"
TRAIN_BATCHES = [f"data_batch_{i}" for i in range(1, 6)]
TEST_BATCH = "test_batch"
META = "batches.meta"
#: bounds on what extraction accepts (the official batches are 31 MB each, 9 entries in all)
MAX_BATCH_BYTES = 64 << 20
MAX_ARCHIVE_ENTRIES = 100
MAX_ARCHIVE_BYTES = 400 << 20  # uncompressed (the official archive: about 180 MB)
MAX_ARCHIVE_FILE_BYTES = 256 << 20  # compressed, on disk (the official archive: 170 MB)

# ndarray.__reduce__ names its rebuild function; take it from NumPy itself rather than importing
# numpy.core (renamed numpy._core in NumPy 2, with a deprecation shim under the old name)
_RECONSTRUCT = np.ndarray.__reduce__(np.zeros(1))[0]
# at pickle protocol 5 a contiguous array reduces to _frombuffer(bytes, dtype, shape, order)
# instead (numpy.core.numeric in NumPy 1, numpy._core.numeric in NumPy 2)
_FROMBUFFER = np.zeros(1).__reduce_ex__(5)[0]


def _plain(dtype: object) -> bool:
    """A dtype of plain numbers (bool, integer, float, complex), as NumPy would make it from its
    type string: no Python objects, fields or sub-arrays, and no flags or item size rewritten."""
    if not isinstance(dtype, np.dtype) or dtype.kind not in "biufc" or dtype.names is not None \
            or dtype.subdtype is not None:
        return False
    honest = np.dtype(dtype.str)
    return dtype.flags == honest.flags and dtype.itemsize == honest.itemsize


def _dtype(spec: object, align: object = False, copy: object = False) -> np.dtype:
    """``numpy.dtype`` for plain numbers only: no object dtype is ever made."""
    if isinstance(spec, bytes):  # a Python 2 pickle read with encoding="bytes"
        spec = spec.decode("latin1")
    # 'u1', '<i8': a longer spec is a structure, which NumPy would build before _plain refused it
    dtype = np.dtype(spec, align=bool(align), copy=bool(copy)) \
        if isinstance(spec, str) and len(spec) <= 8 else None
    if dtype is None or not _plain(dtype):
        raise RefusedGlobal(f"refusing numpy dtype {_short(spec)}: a CIFAR-10 batch holds only "
                            "arrays of plain numbers")
    return dtype


def _frombuffer(buf: object, dtype: object, *shape_order: object) -> np.ndarray:
    """NumPy's protocol-5 array rebuild, admitted for in-band bytes and plain dtypes only (it
    views the bytes, ``np.frombuffer``, reshaped)."""
    if not isinstance(buf, bytes | bytearray) or not _plain(dtype) or \
            not (shape_order and _small_shape(shape_order[0])):
        raise RefusedGlobal(f"refusing numpy _frombuffer({type(buf).__name__}, {_short(dtype)}): "
                            "a CIFAR-10 batch holds only plain NumPy arrays")
    # bytes: no array shares memory with a bytearray that the pickle could still change
    return _FROMBUFFER(bytes(buf), dtype, *shape_order)


_BYTE_ORDERS = ("<", ">", "=", "|")


def _usual_state(dtype: np.dtype, state: object) -> bool:
    """Whether ``state`` is what NumPy pickles for ``dtype``: its own state, in any byte order
    (a Python 2 pickle's ``b'|'`` read as ``'|'``)."""
    usual = np.dtype(dtype.str).__reduce__()[2]
    if not isinstance(state, tuple) or len(state) != len(usual):
        return False
    order = state[1].decode("latin1") if isinstance(state[1], bytes) and len(state[1]) == 1 \
        else state[1]
    return order in _BYTE_ORDERS and state[:1] + state[2:] == usual[:1] + usual[2:]


class _NdarrayToken:
    """What ``numpy.ndarray`` resolves to: only :meth:`RestrictedUnpickler._reconstruct` takes
    it (as the class to rebuild). Not callable, so a pickle cannot call ``numpy.ndarray(shape,
    dtype, buffer, offset, strides)`` to view, or over-read, memory it does not own."""

    def __repr__(self) -> str:
        return "numpy.ndarray (admitted only as _reconstruct's class)"


_NDARRAY = _NdarrayToken()


class _BoundedRepr(reprlib.Repr):
    """``reprlib.Repr`` that also cuts bytes before it reprs them (Python 3.11's reprs the
    whole object first, up to four times its size, and only then cuts)."""

    def repr_bytes(self, x: bytes, level: int) -> str:
        return repr(x[: self.maxstring]) + ("..." if len(x) > self.maxstring else "")

    repr_bytearray = repr_bytes

    def repr_dict(self, x: dict, level: int) -> str:
        # reprlib sorts every key first: a refused call on a dict of 500,000 keys took seconds
        return f"<dict of {len(x)} items>"

    def repr_instance(self, x: object, level: int) -> str:
        if callable(x):  # a function's repr ends in its address: never show it
            return f"<{type(x).__name__}>"
        return super().repr_instance(x, level)


_REPR = _BoundedRepr()  # (keyword arguments only from Python 3.12)
_REPR.maxlevel, _REPR.maxtuple, _REPR.maxlist, _REPR.maxdict = 2, 8, 8, 4
_REPR.maxstring = _REPR.maxother = 40


def _short(value: object) -> str:
    """A bounded ``repr`` for messages: a pickle's values can nest aliased lists whose full repr
    would take gigabytes."""
    text = _REPR.repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _latin1(text: object, encoding: str) -> bytes:
    if not isinstance(text, str) or not isinstance(encoding, str) or \
            encoding.lower().replace("-", "") != "latin1":
        raise RefusedGlobal(f"refusing _codecs.encode({type(text).__name__}, {_short(encoding)}): "
                            "a CIFAR-10 batch only encodes text as latin1")
    return text.encode("latin1")


_PUT_OPS = {"PUT", "BINPUT", "LONG_BINPUT"}
#: the opcodes that pickles of dicts, lists, tuples, strings, numbers and NumPy arrays use, at
#: protocols 0 to 5 (no sets, no object construction but REDUCE, no extension registry, no
#: persistent ids or out-of-band buffers)
_OPCODES = {
    "PROTO", "FRAME", "STOP", "MARK", "POP", "POP_MARK", "DUP",
    "PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE", "GET", "BINGET", "LONG_BINGET",
    "EMPTY_DICT", "DICT", "SETITEM", "SETITEMS", "EMPTY_LIST", "LIST", "APPEND", "APPENDS",
    "EMPTY_TUPLE", "TUPLE", "TUPLE1", "TUPLE2", "TUPLE3",
    "NONE", "NEWTRUE", "NEWFALSE", "INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1",
    "LONG4", "FLOAT", "BINFLOAT",
    "STRING", "BINSTRING", "SHORT_BINSTRING", "UNICODE", "BINUNICODE", "SHORT_BINUNICODE",
    "BINUNICODE8", "BINBYTES", "SHORT_BINBYTES", "BINBYTES8", "BYTEARRAY8",
    "GLOBAL", "STACK_GLOBAL", "REDUCE", "BUILD",
}
#: a batch of 10,000 images is about 50,000 opcodes; a flood of small ones (empty lists, say)
#: costs tens of bytes of memory per byte of file
MAX_OPCODES = 1_000_000


_LENGTH_BYTES = {-2: (1, False), -3: (4, True), -4: (4, False), -5: (8, False)}
_UNICODE_OPS = {"UNICODE", "SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8"}
_NUMBER_ARGS = {"decimalnl_short", "decimalnl_long", "floatnl"}  # protocol 0's numbers, as text
#: UTF-8 bytes of the characters U+0000-U+00FF (ASCII, and the lead bytes 0xC2/0xC3 with their
#: continuation bytes): text made only of these takes a byte per character once decoded
_LATIN1_UTF8 = bytes(range(0xC4))


def _opcodes(data: bytes) -> Iterator[tuple[str, int | None, int]]:
    """``(opcode name, memo index or None, position)`` of each opcode up to STOP, read without
    decoding or repr-ing any argument (``pickletools.genops`` decodes them, and its messages
    repr whole arguments: gigabytes of text for a 64 MiB file). Length fields that promise more
    bytes than the file holds are refused here, before anything is allocated."""
    pos, end, wide = 0, len(data), 0  # wide: bytes of text beyond latin1 so far
    while pos < end:
        op = pickletools.code2op.get(chr(data[pos]))
        if op is None:
            raise pickle.UnpicklingError(f"byte {pos}: not a pickle opcode")
        start, pos = pos, pos + 1
        n = op.arg.n if op.arg is not None else 0
        index = None
        if n >= 0:
            arg = data[pos:pos + n]
            if len(arg) != n:
                raise pickle.UnpicklingError(f"opcode {op.name} at byte {start}: the file ends")
            if op.name in ("BINPUT", "LONG_BINPUT"):
                index = int.from_bytes(arg, "little")
            pos += n
        elif n == -1:  # up to a newline (two lines for GLOBAL and INST)
            for _ in range(2 if op.arg.name == "stringnl_noescape_pair" else 1):
                newline = data.find(b"\n", pos)
                if newline < 0:
                    raise pickle.UnpicklingError(f"opcode {op.name} at byte {start}: no newline")
                if op.arg.name in _NUMBER_ARGS and newline - pos > 64:
                    # (float()'s error message would repr the whole line)
                    raise pickle.UnpicklingError(f"opcode {op.name} at byte {start}: a number "
                                                 f"of {newline - pos} characters")
                if op.name == "PUT":
                    digits = data[pos:newline]
                    index = int(digits) if digits.isdigit() and len(digits) < 20 else -1
                elif op.name == "UNICODE" and (data.find(b"\\u", pos, newline) >= 0
                                               or data.find(b"\\U", pos, newline) >= 0):
                    wide += newline - pos  # raw-unicode-escape: other bytes decode as latin1
                pos = newline + 1
        else:  # a length, then that many bytes
            width, signed = _LENGTH_BYTES[n]
            size = int.from_bytes(data[pos:pos + width], "little", signed=signed)
            if pos + width > end or size < 0 or pos + width + size > end:
                raise pickle.UnpicklingError(f"opcode {op.name} at byte {start} promises more "
                                             "bytes than the file holds")
            if op.name in _UNICODE_OPS and \
                    data[pos + width:pos + width + size].translate(None, _LATIN1_UTF8):
                wide += size
            pos += width + size
        if wide > 1 << 20:
            # text beyond U+00FF takes 2-4 bytes a character in memory; the only long text of a
            # batch is an array's bytes encoded as latin1
            raise pickle.UnpicklingError(f"opcode {op.name} at byte {start}: more than 1 MiB "
                                         "of text beyond latin1")
        yield op.name, index, start
        if op.name == "STOP":
            return
    raise pickle.UnpicklingError("the pickle has no STOP opcode; the file may be truncated")


def _prescan(data: bytes) -> None:
    """Walk the pickle's opcodes without running them (:func:`_opcodes`): refuse opcodes a
    CIFAR batch never uses, more than ``MAX_OPCODES`` of them, and memo indices beyond the number
    of objects stored so far (a real pickler numbers them 0, 1, 2, ...; the C unpickler once
    sized its memo table from the index given, so a 9-byte pickle could make it allocate 32 GB).
    """
    puts = 0
    for count, (name, index, pos) in enumerate(_opcodes(data)):
        if name not in _OPCODES:
            raise pickle.UnpicklingError(f"opcode {name} at byte {pos}: a CIFAR-10 batch "
                                         "holds only dicts, lists, strings, numbers and arrays")
        if count >= MAX_OPCODES:
            raise pickle.UnpicklingError(f"more than {MAX_OPCODES:,} opcodes; a CIFAR-10 batch "
                                         "has about 50,000")
        if name in _PUT_OPS:
            if index is None or not 0 <= index <= puts:
                raise pickle.UnpicklingError(f"memo index {index} at byte {pos} is out of "
                                             f"sequence (expected at most {puts})")
            puts += 1
        elif name == "MEMOIZE":
            puts += 1


class RefusedGlobal(pickle.UnpicklingError):
    """A pickle names something outside the CIFAR-10 allow-list."""


class RestrictedUnpickler(pickle._Unpickler):
    """An unpickler that admits only what a CIFAR batch holds: dicts, lists, strings, numbers,
    and arrays of plain numbers whose bytes are in the file.

    The globals it resolves are :meth:`_allowed`'s. It is the pure-Python unpickler, because the C
    one applies a BUILD (an object's ``__setstate__``) without a hook, and BUILD is how a pickle
    could rewrite a dtype after it was made (say, clear an object dtype's flags) or free an
    array's memory under a view of it. Here a BUILD may give a plain dtype only its usual state,
    and fill only an array that :meth:`_reconstruct` just made, once, with exactly as many bytes
    as its shape and dtype need. A batch is a few large byte strings, so this is hardly slower.
    """

    dispatch = dict(pickle._Unpickler.dispatch)

    def __init__(self, *args, budget: int = 2 * MAX_BATCH_BYTES, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # bytes the allowed calls may make (copies, decoded text, arrays): a payload memoised
        # once can be fed to them again and again for a few bytes of pickle each
        self._budget = budget
        # arrays made by _reconstruct and not yet filled, held (not only their ids: a freed
        # array's id can be reused by the next object made)
        self._empty: dict[int, np.ndarray] = {}

    def _spend(self, nbytes: int) -> None:
        self._budget -= nbytes
        if self._budget < 0:
            raise RefusedGlobal("refusing to build more: the pickle's arrays and strings "
                                "would take far more memory than the file's size")

    def _charge(self, made: object) -> object:
        """Count what an allowed call made (an array's header too) against the budget."""
        self._spend(made.nbytes + 256 if isinstance(made, np.ndarray) else len(made))
        return made

    def _allowed(self) -> dict[tuple[str, str], object]:
        return {
            ("numpy.core.multiarray", "_reconstruct"): self._reconstruct,
            ("numpy._core.multiarray", "_reconstruct"): self._reconstruct,
            ("numpy.core.numeric", "_frombuffer"): lambda *a: self._charge(_frombuffer(*a)),
            ("numpy._core.numeric", "_frombuffer"): lambda *a: self._charge(_frombuffer(*a)),
            ("numpy", "ndarray"): _NDARRAY,
            ("numpy", "dtype"): _dtype,
            # Python 3 writes bytes as _codecs.encode(text, "latin1") at protocols < 3, so a
            # batch re-pickled by Python 3 needs it; only that use is admitted (no other codec)
            ("_codecs", "encode"):
                lambda text, encoding="latin1": self._charge(_latin1(text, encoding)),
        }

    def _reconstruct(self, cls: object, shape: object, typecode: object) -> np.ndarray:
        """NumPy's ``_reconstruct(ndarray, (0,), b'b')``: the empty array that BUILD fills."""
        if cls is not _NDARRAY or shape != (0,) or typecode not in (b"b", "b"):
            raise RefusedGlobal(f"refusing numpy _reconstruct({_short(cls)}, {_short(shape)}, "
                                f"{_short(typecode)}): a CIFAR-10 batch holds only plain arrays")
        array = self._charge(_RECONSTRUCT(np.ndarray, (0,), b"b"))
        self._empty[id(array)] = array
        return array

    def load_build(self) -> None:
        target, state = self.stack[-2], self.stack[-1]
        if isinstance(target, np.dtype) and _plain(target) and _usual_state(target, state):
            pass
        elif isinstance(target, np.ndarray) and self._empty.get(id(target)) is target and \
                _array_state_fits(state):
            del self._empty[id(target)]  # filled once: its memory is never swapped later
            self._spend(len(state[4]))  # a byte-swapped copy, or a view: counted either way
        else:
            raise RefusedGlobal(f"refusing to set the state of a {type(target).__name__} to "
                                f"{_short(state)}: a CIFAR-10 batch holds only plain NumPy "
                                "arrays")
        super().load_build()

    def load_persistent_id(self) -> None:
        raise pickle.UnpicklingError("the pickle refers to a persistent id (an object kept "
                                     "outside the file); a CIFAR-10 batch has none")

    def load_out_of_band(self) -> None:
        # READONLY_BUFFER would make a memoryview that outlives the memory under it (NumPy's
        # __setstate__ does not check for views); in-band batches never use either opcode
        raise pickle.UnpicklingError("the pickle uses protocol 5's out-of-band buffer opcodes; "
                                     "a CIFAR-10 batch has none")

    # Containers: items go only into dicts (keys bytes or str, checked before they are hashed:
    # hashing a deeply nested tuple recurses in C, and an aliased one takes exponential time) and
    # lists (not into arrays, whose item assignment would run NumPy conversions on pickle data).
    # The marked forms take their items from the stack above the last MARK; their target is
    # the top of the stack below it.
    def _marked_target(self) -> object:
        return self.metastack[-1][-1] if self.metastack and self.metastack[-1] else None

    def load_setitem(self) -> None:
        _check_items(self.stack[-3] if len(self.stack) >= 3 else None, self.stack[-2:-1])
        super().load_setitem()

    def load_setitems(self) -> None:
        _check_items(self._marked_target(), self.stack[::2])
        super().load_setitems()

    def load_dict(self) -> None:
        _check_items({}, self.stack[::2])
        super().load_dict()

    def load_append(self) -> None:
        _check_list(self.stack[-2] if len(self.stack) >= 2 else None)
        super().load_append()

    def load_appends(self) -> None:
        _check_list(self._marked_target())
        super().load_appends()

    def load_reduce(self) -> None:
        # Python unpacks any iterable into the call's arguments before the callable (or its
        # checks) runs: a 122-byte array of 2**24 empty rows became a 2 GB tuple
        args = self.stack[-1] if self.stack else None
        if type(args) is not tuple or len(args) > 4:  # _frombuffer takes 4, the others fewer
            raise RefusedGlobal(f"refusing a call with {type(args).__name__} arguments: a "
                                "CIFAR-10 batch calls NumPy only with a short tuple")
        super().load_reduce()

    dispatch[pickle.REDUCE[0]] = load_reduce
    dispatch[pickle.SETITEM[0]] = load_setitem
    dispatch[pickle.SETITEMS[0]] = load_setitems
    dispatch[pickle.DICT[0]] = load_dict
    dispatch[pickle.APPEND[0]] = load_append
    dispatch[pickle.APPENDS[0]] = load_appends
    dispatch[pickle.BUILD[0]] = load_build
    dispatch[pickle.PERSID[0]] = dispatch[pickle.BINPERSID[0]] = load_persistent_id
    dispatch[pickle.READONLY_BUFFER[0]] = dispatch[pickle.NEXT_BUFFER[0]] = load_out_of_band

    def find_class(self, module: str, name: str):
        try:
            return self._allowed()[(module, name)]
        except KeyError:
            what = f"{module}.{name}"
            if not what.isprintable() or len(what) > 80:  # one short line: a damaged name can
                what = _short(what)                         # hold newlines, or megabytes
            raise RefusedGlobal(
                f"refusing to load {what}: a CIFAR-10 batch holds only dicts, lists, "
                "strings, numbers and NumPy arrays") from None


def _check_items(target: object, keys: list) -> None:
    if type(target) is not dict or not all(type(k) in (bytes, str) for k in keys):
        raise RefusedGlobal(f"refusing to set items of a {type(target).__name__} with keys of "
                            f"type {sorted({type(k).__name__ for k in keys})}: a CIFAR-10 batch "
                            "is a dict with string keys")


def _check_list(target: object) -> None:
    if type(target) is not list:
        raise RefusedGlobal(f"refusing to append to a {type(target).__name__}: a CIFAR-10 "
                            "batch appends only to lists")


#: a batch's arrays have one or two dimensions; a 64-dimension empty array costs a kilobyte of
#: memory for five bytes of pickle
MAX_DIMS = 4


def _small_shape(shape: object) -> bool:
    """A tuple of at most ``MAX_DIMS`` sizes in 0..2**31, checked before anything multiplies
    them (the product of a file's huge or many integers could take minutes)."""
    return isinstance(shape, tuple) and len(shape) <= MAX_DIMS and all(
        type(n) is int and 0 <= n <= 2**31 for n in shape)


def _array_state_fits(state: object) -> bool:
    """An ndarray state ``(version, shape, dtype, fortran, data)`` of a plain dtype whose data
    holds exactly the bytes its shape needs."""
    if not (isinstance(state, tuple) and len(state) == 5 and _small_shape(state[1])
            and _plain(state[2]) and isinstance(state[4], bytes | bytearray)):
        return False
    return len(state[4]) == math.prod(state[1]) * state[2].itemsize


def load_pickle(data: bytes, source: str) -> dict:
    """Unpickle one batch (bytes) safely; keys come back as ``str``."""
    try:
        _prescan(data)
        obj = RestrictedUnpickler(io.BytesIO(data), encoding="bytes",
                                  budget=2 * len(data) + (1 << 20)).load()
    except RefusedGlobal as exc:
        raise DatasetError(f"{source}: {exc}.") from None
    except Exception as exc:  # truncated or garbage: EOFError, ValueError, struct errors, ...
        detail = " ".join(str(exc)[:300].split())  # one short line: messages may echo the data
        raise DatasetError(f"{source}: not a readable CIFAR-10 pickle ({type(exc).__name__}: "
                           f"{detail}); the file may be truncated or corrupt - delete it and "
                           "download again.") from None
    if not isinstance(obj, dict):
        raise DatasetError(f"{source}: expected a pickled dict, got {type(obj).__name__}.")
    return {(k.decode("latin1") if isinstance(k, bytes) else str(k)): v for k, v in obj.items()}


def parse_batch(data: bytes, source: str) -> tuple[np.ndarray, np.ndarray]:
    """``(X (N, 32, 32, 3) uint8, y (N,) int64)`` of one pickled batch, checked."""
    d = load_pickle(data, source)
    if "data" not in d or "labels" not in d:
        raise DatasetError(f"{source}: not a CIFAR-10 batch (keys {_short(sorted(d))}; expected "
                           "'data' and 'labels').")
    X, labels = d["data"], d["labels"]
    if not isinstance(X, np.ndarray) or X.dtype != np.uint8 or X.ndim != 2 or \
            X.shape[1] != 3072:
        desc = f"{X.dtype} array {X.shape}" if isinstance(X, np.ndarray) else type(X).__name__
        raise DatasetError(f"{source}: 'data' must be a uint8 array of shape (N, 3072); got "
                           f"{desc}.")
    # the type and length first: memo references can nest one list in another a thousand times
    # over, which np.asarray would expand into billions of elements
    if isinstance(labels, list):
        if not all(type(v) is int for v in labels):  # not bools, floats or nested lists
            raise DatasetError(f"{source}: 'labels' must be a list of integers.")
        n_labels = len(labels)
    elif isinstance(labels, np.ndarray) and labels.dtype.kind in "iu" and labels.ndim == 1:
        n_labels = labels.shape[0]
    else:
        raise DatasetError(f"{source}: 'labels' must be a list of integers.")
    if n_labels != len(X):
        raise DatasetError(f"{source}: {len(X)} images but {n_labels} labels.")
    try:
        y = np.array(labels, dtype=np.int64)
    except OverflowError:
        raise DatasetError(f"{source}: 'labels' must be a list of integers in 0..9; found one "
                           "beyond 64 bits.") from None
    if y.size and (y.min() < 0 or y.max() > 9):
        raise DatasetError(f"{source}: labels must be 0..9; found {y.min()}..{y.max()}.")
    # rows are 1024 red, 1024 green, 1024 blue values, each row-major 32x32
    return np.ascontiguousarray(X.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)), y


def _class_names(names: object) -> list[str] | None:
    """``batches.meta``'s ``label_names`` if they are 10 short printable UTF-8 names (they become
    labels in files and reports), else None: CIFAR-10's own names are used."""
    if not (isinstance(names, list) and len(names) == 10
            and all(type(n) in (bytes, str) and 0 < len(n) <= 100 for n in names)):
        return None
    try:
        text = [n.decode("utf-8") if isinstance(n, bytes) else n for n in names]
    except UnicodeDecodeError:
        return None
    return text if all(t.isprintable() for t in text) else None


def _read(path: Path) -> bytes:
    """A batch file's bytes: a regular file (not a FIFO that blocks or a device that never
    ends, opened without blocking to find out) of at most ``MAX_BATCH_BYTES``."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                raise DatasetError(f"{path}: not a regular file; a CIFAR-10 batch is a file.")
            data = f.read(MAX_BATCH_BYTES + 1)
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read ({exc.strerror or exc}).") from None
    if len(data) > MAX_BATCH_BYTES:
        raise DatasetError(f"{path}: more than {MAX_BATCH_BYTES >> 20} MiB; a CIFAR-10 batch has "
                           "about 31 MB.")
    return data


_BLOCK = 512
#: entry types of a plain tar archive: files; hard and symbolic links and folders (named to the
#: caller, never followed or created); pax headers and GNU long names of at most MAX_PAX_BYTES
#: (read only for a long path; Python's tarfile writes a pax header for a fractional mtime);
#: sparse files and the rest are refused
_FILE_TYPES, _SKIPPED_TYPES = (b"0", b"\0", b"7"), (b"1", b"2", b"5")
MAX_PAX_BYTES = 8 << 10


def _octal(field: bytes) -> int | None:
    """A tar header's octal number (NUL- or space-terminated), or None for anything else (the
    base-256 form, which can be negative, included)."""
    digits = field.split(b"\0", 1)[0].strip(b" ")
    return int(digits, 8) if digits and all(48 <= c <= 55 for c in digits) else None


class _TarReader:
    """The entries of an uncompressed tar stream, read block by block with every size checked
    before anything is read: a strict subset of the format, which is all the official archive
    uses. (Python's :mod:`tarfile` parses pax, GNU long-name and sparse headers whole and
    recursively before a caller can check them: crafted archives of a few kilobytes hung it,
    overflowed its recursion or made it hold a gigabyte.)"""

    def __init__(self, stream, archive: Path) -> None:
        self._stream, self._archive, self._pos = stream, archive, 0

    def _refuse(self, why: str) -> DatasetError:
        return DatasetError(f"{self._archive}: not the CIFAR-10 python archive ({why}).")

    def read(self, n: int) -> bytes:
        data = self._stream.read(n)
        if len(data) != n:
            raise DatasetError(f"{self._archive}: the archive ends early; it may be truncated - "
                               "delete it and download again.")
        self._pos += n
        return data

    def chunks(self, n: int) -> Iterator[bytes]:
        """The next ``n`` bytes, a megabyte at a time."""
        while n:
            chunk = self.read(min(n, 1 << 20))
            n -= len(chunk)
            yield chunk

    def skip(self, n: int) -> None:
        for _ in self.chunks(n):
            pass

    def _pax_path(self, body: bytes, count: int) -> bytes | None:
        """The ``path`` record of a pax header (records are ``"<length> <key>=<value>\\n"``),
        parsed by hand in one pass. Records that would change how the entry is read (``size``,
        written for entries beyond 8 GiB; GNU sparse maps) and malformed ones are refused."""
        path, pos = None, 0
        while pos < len(body):
            space = body.find(b" ", pos, pos + 20)
            length = body[pos:space]
            if space < 0 or not length.isdigit() or int(length) <= space - pos or \
                    pos + int(length) > len(body) or body[pos + int(length) - 1] != 10:
                raise self._refuse(f"entry {count} is a malformed pax header")
            key, equals, value = body[space + 1:pos + int(length) - 1].partition(b"=")
            if not key or not equals:
                raise self._refuse(f"entry {count} is a malformed pax header")
            if key == b"path":
                path = value
            elif key == b"size" or key.startswith(b"GNU.sparse."):
                raise self._refuse(f"entry {count} is a pax header that changes how an entry is "
                                   f"read ({_short(key.decode('latin1'))})")
            pos += int(length)
        return path

    def entries(self) -> Iterator[tuple[str, int | None]]:
        """``(name, size)`` of each file entry, and ``(name, None)`` of each folder or link; the
        caller reads or skips a file's ``size`` bytes (:meth:`chunks`, :meth:`skip`) before
        asking for the next, which skips the padding."""
        long_name = None
        for count in range(1, MAX_ARCHIVE_ENTRIES + 2):
            header = self.read(_BLOCK)
            if header == bytes(_BLOCK):
                return  # the end-of-archive marker
            if count > MAX_ARCHIVE_ENTRIES:
                raise self._refuse(f"more than {MAX_ARCHIVE_ENTRIES} entries; the official "
                                   f"archive has {len(TRAIN_BATCHES) + 4}")
            stored = _octal(header[148:156])
            if stored is None or stored != sum(header[:148]) + 8 * 32 + sum(header[156:]):
                raise self._refuse(f"entry {count} is not a tar header (bad checksum)")
            size, kind = _octal(header[124:136]), header[156:157]
            if size is None or size > MAX_BATCH_BYTES:
                raise self._refuse(f"entry {count} declares a size of "
                                   f"{_short(header[124:136])}; the official batches have 31 MB")
            padded = -(-size // _BLOCK) * _BLOCK
            if self._pos + padded > MAX_ARCHIVE_BYTES:
                raise self._refuse(f"more than {MAX_ARCHIVE_BYTES >> 20} MiB uncompressed; the "
                                   "official archive has about 180 MB")
            name = header[:100].split(b"\0", 1)[0]
            if header[257:263] == b"ustar\0" and header[345:500].strip(b"\0"):  # POSIX prefix
                name = header[345:500].split(b"\0", 1)[0] + b"/" + name
            if kind in (b"x", b"L", b"g") and size > MAX_PAX_BYTES:
                raise self._refuse(f"entry {count} is a pax or long-name header of {size} bytes; "
                                   f"at most {MAX_PAX_BYTES >> 10} KiB are read")
            if kind in (*_FILE_TYPES, *_SKIPPED_TYPES) and long_name is not None:
                name, long_name = long_name, None  # the long path a header before gave it
            if kind in _FILE_TYPES:
                if name.endswith(b"/"):  # an old-style folder
                    raise self._refuse(f"entry {count} {_short(name)} is a file named as a folder")
                yield name.decode("utf-8", "replace"), size
                self.skip(padded - size)
            elif kind in _SKIPPED_TYPES:
                yield name.decode("utf-8", "replace"), None
                self.skip(padded)
            elif kind == b"g":  # a global pax header: nothing of it may name an entry
                if self._pax_path(self.read(padded)[:size], count) is not None:
                    raise self._refuse(f"entry {count} is a global pax header with a path")
            elif kind in (b"x", b"L"):
                # the next entry's long path: a pax header's "path" record, or a GNU long name
                if long_name is not None:
                    raise self._refuse(f"entry {count} is a second long-name header in a row")
                body = self.read(padded)[:size]
                if kind == b"L" and b"\0" not in body:
                    raise self._refuse(f"entry {count} is a GNU long name without its end")
                long_name = (body.split(b"\0", 1)[0] if kind == b"L"
                             else self._pax_path(body, count))
            else:
                raise self._refuse(f"entry {count} {_short(name)} is of tar type {_short(kind)}")
        raise AssertionError("unreachable: the loop returns or raises")  # pragma: no cover


def extract_archive(archive: Path, dest: Path) -> Path:
    """Extract ``cifar-10-batches-py/`` from the official archive into ``dest``, atomically."""
    target = dest / BATCH_DIR
    try:
        tmp = Path(tempfile.mkdtemp(prefix=".cifar-extract.", dir=dest))
    except OSError as exc:
        raise DatasetError(f"{dest}: cannot extract {ARCHIVE} into this folder "
                           f"({exc.strerror or exc}); make it writable, or extract the archive "
                           "elsewhere and point --data-dir there.") from None
    try:
        (tmp / BATCH_DIR).mkdir()
        found = set()
        if archive.stat().st_size > MAX_ARCHIVE_FILE_BYTES:
            # Python's gzip reads padding and header names a byte at a time: a sparse file of
            # gigabytes of zeros (a few KB on disk) would take minutes
            raise DatasetError(f"{archive}: {archive.stat().st_size:,} bytes; the official "
                               f"archive has 170,498,071 - delete it and download again.")
        with gzip.open(archive, "rb") as gz:  # gzip only: the official archive's format
            tar = _TarReader(gz, archive)
            for name, size in tar.entries():
                # .../cifar-10-batches-py/<batch> (a repacked archive may nest the folder)
                parts = [part for part in name.split("/") if part not in ("", ".")]
                batch = parts[-1] if len(parts) >= 2 and parts[-2] == BATCH_DIR and \
                    parts[-1] in (*TRAIN_BATCHES, TEST_BATCH, META) else None
                if batch is not None and (size is None or batch in found):
                    # the official archive has each batch once, as a file: a link or a second
                    # copy would make what is loaded depend on the tool that extracts it
                    raise DatasetError(f"{archive}: not the CIFAR-10 python archive ({batch} is "
                                       f"{'not a file' if size is None else 'there twice'}).")
                if batch is not None:
                    # written under our own name: no path from the archive reaches the disk
                    with open(tmp / BATCH_DIR / batch, "wb") as f:
                        f.writelines(tar.chunks(size))
                    found.add(batch)
                elif size is not None:
                    tar.skip(size)
            missing = {*TRAIN_BATCHES, TEST_BATCH} - found
            if missing:
                raise DatasetError(f"{archive}: not the CIFAR-10 python archive (missing "
                                   f"{', '.join(sorted(missing))}).")
            # to the end of the gzip stream, whose CRC is checked only there: the tar end marker
            # comes first, so a flipped bit in the data would otherwise go unnoticed
            end = gz.tell()
            while gz.read(1 << 20):
                if gz.tell() > end + (1 << 20):  # tar pads its end to a record of 10 KiB
                    raise DatasetError(f"{archive}: not the CIFAR-10 python archive (more than "
                                       "1 MiB after the end of the tar archive).")
        try:
            os.replace(tmp / BATCH_DIR, target)
        except OSError:
            # another process extracted it first (renaming onto a full folder fails)
            if not _is_file(target / TRAIN_BATCHES[0]):
                raise DatasetError(f"{target}: a folder that does not hold the batches is in the "
                                   f"way of extracting {ARCHIVE}; remove it (the archive is "
                                   "fine) and run again.") from None
        return target
    except DatasetError:
        raise
    except (EOFError, OSError, ValueError, zlib.error, MemoryError) as exc:
        detail = " ".join(str(exc).split())
        raise DatasetError(f"{archive}: cannot extract the archive ({type(exc).__name__}: "
                           f"{detail}); it may be truncated - delete it and download again."
                           ) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _is_file(path: Path) -> bool:
    """``path.is_file()``, with an error that is not "no such file" (a name too long, a folder
    that cannot be entered) as a one-line ``DatasetError``."""
    try:
        return path.is_file()
    except OSError as exc:
        raise DatasetError(f"{_short(str(path))}: cannot look there ({exc.strerror or exc}); "
                           "check the path and its permissions.") from None


def candidate_dirs(data_dir: str | os.PathLike | None) -> list[Path]:
    """Folders that may hold ``cifar-10-batches-py/``, the archive, or the batches themselves."""
    if data_dir is not None:
        roots = [user_path(data_dir)]
        try:
            roots.append(data_root() / "cifar10")
        except DatasetError:  # no home folder for the default data root: data_dir alone
            pass
        return roots
    return [data_root() / "cifar10", data_root()]


def _extracted(roots: list[Path]) -> Path | None:
    """The first folder of ``roots`` holding the batches (or their ``cifar-10-batches-py/``)."""
    for root in roots:
        if _is_file(root / TRAIN_BATCHES[0]):
            return root
        if _is_file(root / BATCH_DIR / TRAIN_BATCHES[0]):
            return root / BATCH_DIR
    return None


def _archive(roots: list[Path]) -> Path | None:
    return next((root / ARCHIVE for root in roots if _is_file(root / ARCHIVE)), None)


def find_cifar10(data_dir: str | os.PathLike | None) -> Path | None:
    """The batch folder, extracting the archive on first use; ``None`` if nowhere to be found."""
    roots = candidate_dirs(data_dir)
    folder = _extracted(roots)
    if folder is None and (archive := _archive(roots)) is not None:
        folder = extract_archive(archive, archive.parent)
    return folder


def _needs_download(data_dir: str | os.PathLike | None) -> bool:
    """With ``download=True``: is there neither an extracted batch folder nor an archive with
    the published checksum? A truncated or corrupt archive is fetched again rather than failing
    to extract. Extracted batches have no published checksums and are read as they are."""
    from mlplab.data.download import checksum_problem

    roots = candidate_dirs(data_dir)
    if _extracted(roots) is not None:
        return False
    archive = _archive(roots)
    return archive is None or checksum_problem("cifar10", archive) is not None


def load_cifar10(data_dir: str | os.PathLike | None = None, download: bool = False,
                 mirror: str | None = None) -> Dataset:
    """All 50,000 training and 10,000 test images in file order (``X_val`` empty; the caller
    splits)."""
    if download and _needs_download(data_dir):
        from mlplab.data.download import download_dataset

        # into data_dir (or <data root>/cifar10): searched first, so the fresh archive is the one
        # extracted even where a damaged one lies in another folder
        download_dataset("cifar10", data_dir=data_dir, mirror=mirror)
    folder = find_cifar10(data_dir)
    if folder is None:
        looked = ", ".join(str(r) for r in candidate_dirs(data_dir))
        where = f" --data-dir {data_dir}" if data_dir is not None else ""
        raise DatasetError(
            f"CIFAR-10 not found: looked for {BATCH_DIR}/ or {ARCHIVE} in {looked}. Fetch it with "
            f"`mlplab data download cifar10{where}` (or add --download to this command).")
    parts = [parse_batch(_read(folder / b), str(folder / b)) for b in TRAIN_BATCHES]
    X = np.concatenate([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    Xt, yt = parse_batch(_read(folder / TEST_BATCH), str(folder / TEST_BATCH))
    classes = list(CLASSES)
    if _is_file(folder / META):
        meta = load_pickle(_read(folder / META), str(folder / META))
        classes = _class_names(meta.get("label_names")) or classes
    empty = X[:0]
    return Dataset("cifar10", classes, X, y, empty, y[:0], Xt, yt, source=str(folder))
