"""A restricted, bounded unpickler for untrusted pickles of plain data.

``pickle.load`` would run whatever a file names, so :func:`load_pickle` reads with
:class:`RestrictedUnpickler`, which admits only dicts, lists, tuples, byte strings, numbers and
arrays of plain numbers: the three NumPy names that rebuild an array (plus NumPy's
``_frombuffer``, with which pickles at protocol 5 rebuild them), and nothing else (``os.system``,
``builtins.eval``, ... are refused before they are imported). The opcodes are walked first
(:func:`_prescan`), so that no file can make it allocate, loop or recurse beyond its bounds. It
is a module of its own because it is mlplab's one way of reading a pickle (a test checks that no
other code unpickles) and knows no file format: :mod:`mlplab.data.cifar`, its user, checks what
the dict it returns holds. What it admits is what the official CIFAR-10 batches contain, and its
refusal messages say so ("a CIFAR-10 batch holds only ...").
"""

from __future__ import annotations

import io
import math
import pickle
import pickletools
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar, cast

import numpy as np

from mlplab.data.base import DatasetError, short_repr

#: what an unpickler may build when its caller names no budget (128 MiB; :func:`load_pickle`
#: gives each file its own, from the file's size)
DEFAULT_BUDGET = 128 << 20

# ndarray.__reduce__ names its rebuild function; take it from NumPy itself rather than importing
# numpy.core (renamed numpy._core in NumPy 2, with a deprecation shim under the old name)
# (typeshed types a reduce value as str | tuple: cast to the callable it is here)
_RECONSTRUCT = cast("Callable[..., np.ndarray]", np.ndarray.__reduce__(np.zeros(1))[0])
# at pickle protocol 5 a contiguous array reduces to _frombuffer(bytes, dtype, shape, order)
# instead (numpy.core.numeric in NumPy 1, numpy._core.numeric in NumPy 2)
_FROMBUFFER = cast("Callable[..., np.ndarray]", np.zeros(1).__reduce_ex__(5)[0])


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
        raise RefusedGlobal(f"refusing numpy dtype {short_repr(spec)}: a CIFAR-10 batch holds only "
                            "arrays of plain numbers")
    return dtype


def _frombuffer(buf: object, dtype: object, *shape_order: object) -> np.ndarray:
    """NumPy's protocol-5 array rebuild, admitted for in-band bytes and plain dtypes only (it
    views the bytes, ``np.frombuffer``, reshaped)."""
    if not isinstance(buf, bytes | bytearray) or not _plain(dtype) or \
            not (shape_order and _small_shape(shape_order[0])):
        raise RefusedGlobal(f"refusing numpy _frombuffer({type(buf).__name__}, "
                            f"{short_repr(dtype)}): a CIFAR-10 batch holds only plain NumPy "
                            "arrays")
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


def _latin1(text: object, encoding: str) -> bytes:
    if not isinstance(text, str) or not isinstance(encoding, str) or \
            encoding.lower().replace("-", "") != "latin1":
        raise RefusedGlobal(f"refusing _codecs.encode({type(text).__name__}, "
                            f"{short_repr(encoding)}): a CIFAR-10 batch only encodes text as "
                            "latin1")
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
#: opcode by its byte, as pickletools' own (undocumented) code2op
_CODE2OP = {op.code: op for op in pickletools.opcodes}


def _opcodes(data: bytes) -> Iterator[tuple[str, int | None, int]]:
    """``(opcode name, memo index or None, position)`` of each opcode up to STOP, read without
    decoding or repr-ing any argument (``pickletools.genops`` decodes them, and its messages
    repr whole arguments: gigabytes of text for a 64 MiB file). Length fields that promise more
    bytes than the file holds are refused here, before anything is allocated."""
    pos, end, wide = 0, len(data), 0  # wide: bytes of text beyond latin1 so far
    while pos < end:
        op = _CODE2OP.get(chr(data[pos]))
        if op is None:
            raise pickle.UnpicklingError(f"byte {pos}: not a pickle opcode")
        start, pos = pos, pos + 1
        n, arg_name = (op.arg.n, op.arg.name) if op.arg is not None else (0, "")
        index = None
        if n >= 0:
            arg = data[pos:pos + n]
            if len(arg) != n:
                raise pickle.UnpicklingError(f"opcode {op.name} at byte {start}: the file ends")
            if op.name in ("BINPUT", "LONG_BINPUT"):
                index = int.from_bytes(arg, "little")
            pos += n
        elif n == -1:  # up to a newline (two lines for GLOBAL and INST)
            for _ in range(2 if arg_name == "stringnl_noescape_pair" else 1):
                newline = data.find(b"\n", pos)
                if newline < 0:
                    raise pickle.UnpicklingError(f"opcode {op.name} at byte {start}: no newline")
                if arg_name in _NUMBER_ARGS and newline - pos > 64:
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
    raise pickle.UnpicklingError("the pickle ends before its STOP opcode")  # (the caller says why)


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


if TYPE_CHECKING:
    class _PyUnpickler(pickle._Unpickler):
        """The pure-Python unpickler's internals that RestrictedUnpickler uses and overrides,
        which typeshed leaves out."""

        dispatch: ClassVar[dict[int, Callable[[Any], None]]]
        stack: list[Any]
        metastack: list[list[Any]]

        def load_build(self) -> None: ...
        def load_setitem(self) -> None: ...
        def load_setitems(self) -> None: ...
        def load_dict(self) -> None: ...
        def load_append(self) -> None: ...
        def load_appends(self) -> None: ...
        def load_reduce(self) -> None: ...
else:
    _PyUnpickler = pickle._Unpickler

_Made = TypeVar("_Made", np.ndarray, bytes)


class RestrictedUnpickler(_PyUnpickler):
    """An unpickler that admits only what a CIFAR batch holds: dicts, lists, strings, numbers,
    and arrays of plain numbers whose bytes are in the file.

    The globals it resolves are :meth:`_allowed`'s. It is the pure-Python unpickler, because the C
    one applies a BUILD (an object's ``__setstate__``) without a hook, and BUILD is how a pickle
    could rewrite a dtype after it was made (say, clear an object dtype's flags) or free an
    array's memory under a view of it. Here a BUILD may give a plain dtype only its usual state,
    and fill only an array that :meth:`_reconstruct` just made, once, with exactly as many bytes
    as its shape and dtype need. A batch is a few large byte strings, so this is hardly slower.
    """

    dispatch = dict(_PyUnpickler.dispatch)

    def __init__(self, *args: Any, budget: int = DEFAULT_BUDGET, **kwargs: Any) -> None:
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

    def _charge(self, made: _Made) -> _Made:
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
            raise RefusedGlobal(f"refusing numpy _reconstruct({short_repr(cls)}, "
                                f"{short_repr(shape)}, {short_repr(typecode)}): a CIFAR-10 batch "
                                "holds only plain arrays")
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
                                f"{short_repr(state)}: a CIFAR-10 batch holds only plain NumPy "
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

    def find_class(self, module: str, name: str) -> object:
        try:
            return self._allowed()[(module, name)]
        except KeyError:
            what = f"{module}.{name}"
            if not what.isprintable() or len(what) > 80:  # one short line: a damaged name can
                what = short_repr(what)                         # hold newlines, or megabytes
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
        raise DatasetError(f"{source}: expected a pickled dict, got {type(obj).__name__}; delete "
                           "it and download again.")
    return {(k.decode("latin1") if isinstance(k, bytes) else str(k)): v for k, v in obj.items()}
