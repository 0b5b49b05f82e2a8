"""MNIST and Fashion-MNIST: IDX files (``*-idx3-ubyte`` images, ``*-idx1-ubyte`` labels).

IDX: two zero bytes, a type code (0x08 = unsigned byte), the number of dimensions, then each
dimension as a big-endian int32, then the data in C order. Files may be gzipped (detected by their
magic bytes, not their name).
"""

from __future__ import annotations

import gzip
import io
import math
import os
import zlib
from pathlib import Path

import numpy as np

from mlplab._validation import setting
from mlplab.data.base import (
    REFETCH,
    Dataset,
    DatasetError,
    DatasetNotFoundError,
    damaged_data_file,
    download_command,
    download_hint,
    unreadable_data_file,
    user_path,
)

CLASSES = {
    "mnist": [str(i) for i in range(10)],
    "fashion-mnist": ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                      "Sneaker", "Bag", "Ankle boot"],
}
#: where Debian's dataset-fashion-mnist package installs the files
DEBIAN_FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")

FILES = {  # role -> base name (the official releases add .gz)
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
#: the largest decompressed IDX file read (MNIST's largest is 47 MB)
MAX_IDX_BYTES = 1 << 30
_DTYPES = {0x08: "u1", 0x09: "i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_GZIP_MAGIC = b"\x1f\x8b"


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read one IDX file (gzipped or not) into an array, checking the header against the size."""
    path = Path(path)
    try:
        raw: bytes | bytearray = path.read_bytes()
        if not raw:  # (a download cut off before its first byte): no "bad magic number none"
            raise damaged_data_file(path, "the file is empty (0 bytes)")
        if raw[:2] == _GZIP_MAGIC:
            raw = _gunzip_idx(raw, path)
        elif path.suffix.lower() == ".gz" and not _idx_magic(raw):
            # an unpacked IDX file under its .gz name is read (a browser undoes a server's gzip
            # encoding); anything else is no gzip file, not a damaged IDX file
            raise _not_gzip(raw, path)
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:  # (BadGzipFile: a failed CRC)
        raise DatasetError(f"{path}: truncated or corrupt gzip data ({exc}); delete it and "
                           "download again.") from None
    except OSError as exc:
        raise unreadable_data_file(path, exc) from None
    dims, dtype, header = _header(raw, path)
    expected = header + math.prod(dims) * dtype.itemsize  # Python ints: no overflow
    if len(raw) != expected:
        what = "truncated" if len(raw) < expected else "has trailing bytes"
        raise DatasetError(f"{path}: {what}: the header promises {'x'.join(map(str, dims))} "
                           f"values ({expected} bytes) but the file holds {len(raw)} bytes; "
                           "delete it and download again.")
    try:
        arr = np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims)
    except ValueError:  # an empty array whose other dimensions multiply beyond 2**63
        raise DatasetError(f"{path}: the header's dimensions {'x'.join(map(str, dims))} are "
                           "too large.") from None
    # a view of bytes is read-only, which would surprise in-place users of the arrays; a view of
    # the decompressed bytearray is writable already (no second copy of a 47 MB file)
    return arr if isinstance(raw, bytearray) else arr.copy()


def _idx_magic(raw: bytes | bytearray) -> bool:
    """Whether ``raw`` begins as an IDX file does: two zero bytes and a known type code."""
    return len(raw) >= 4 and raw[:2] == b"\x00\x00" and raw[2] in _DTYPES


def _not_gzip(raw: bytes | bytearray, path: Path) -> DatasetError:
    """A ``.gz`` file that is neither gzip nor IDX: said so, and an HTML page (a mirror's error
    page saved under the file's name) said to be one."""
    from mlplab.data.download import html_page

    what = "an HTML page, not the gzipped IDX file" if html_page(raw) else \
        f"it begins with {raw[:4].hex()}, not gzip's {_GZIP_MAGIC.hex()}"
    return damaged_data_file(path, f"not a gzip file ({what})",
                             f"{REFETCH}, or put the gzipped IDX file there")


def _header(raw: bytes | bytearray, path: Path) -> tuple[tuple[int, ...], np.dtype, int]:
    """``(dims, dtype, header length)`` of the IDX bytes ``raw`` (which may be just a prefix)."""
    if not _idx_magic(raw):
        # a damaged or half-copied download, as the other refusals of its bytes say
        raise DatasetError(f"{path}: not an IDX file (bad magic number {raw[:4].hex() or 'none'};"
                           " expected 0000 08 0N); delete it and download again.")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(raw) < header:
        raise DatasetError(f"{path}: truncated IDX header; delete it and download again.")
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    return dims, np.dtype(_DTYPES[raw[2]]), header


def _gunzip_idx(compressed: bytes | bytearray, path: Path) -> bytearray:
    """Decompress a gzipped IDX file, never producing more than its header promises (plus one
    byte, to detect trailing data): a small crafted file could otherwise inflate to gigabytes.
    A header promising more than deflate could have packed into the file (about 1032:1) or more
    than ``MAX_IDX_BYTES`` is refused before anything is allocated."""
    with gzip.GzipFile(fileobj=io.BytesIO(compressed)) as gz:
        out = bytearray(gz.read(4))
        if not out:  # the gzip of nothing: its header alone is no IDX file's damage
            raise damaged_data_file(path, "the gzip file holds nothing (it decompresses to 0 "
                                          "bytes)")
        if len(out) == 4 and out[:2] == b"\x00\x00":
            out += gz.read(4 * out[3])
        dims, dtype, header = _header(bytes(out), path)
        expected = header + math.prod(dims) * dtype.itemsize
        if expected > min(MAX_IDX_BYTES, 1100 * len(compressed) + 4096):
            raise DatasetError(
                f"{path}: the header promises {'x'.join(map(str, dims))} values ({expected} "
                f"bytes), more than this {len(compressed)}-byte gzip file can hold (or than "
                f"the {MAX_IDX_BYTES >> 20} MiB mlplab reads); the file is corrupt.")
        buf = bytearray(expected + 1)  # one byte more than promised reveals trailing data
        pos = len(out)
        buf[:pos] = out
        with memoryview(buf) as view:
            while pos < len(buf):
                n = gz.readinto(view[pos:pos + (1 << 22)])
                if not n:
                    break
                pos += n
        del buf[pos:]
    return buf


def _names(base: str) -> tuple[str, ...]:
    """The names a file of ``base`` is looked for under, in order: the official names, gzipped
    or not, and MNIST's unpacked variant with a dot."""
    dotted = base.replace("-idx", ".idx")
    return f"{base}.gz", base, f"{dotted}.gz", dotted


def _find_file(folder: Path, base: str) -> Path | None:
    return next((folder / name for name in _names(base) if (folder / name).is_file()), None)


def candidate_dirs(name: str, data_dir: str | os.PathLike | None) -> list[Path]:
    from mlplab.data.download import download_folder

    roots: list[Path] = []
    if data_dir is not None:
        # where downloads go first (<data_dir>/<name>: MNIST's and Fashion-MNIST's files have
        # the same names), so that fresh files win over damaged copies in data_dir itself
        roots += [download_folder(name, data_dir), user_path(data_dir)]
    debian = name == "fashion-mnist"
    try:
        roots.append(download_folder(name))
    except DatasetError:
        # no home folder for the default data root: data_dir and Debian's copy alone; with
        # neither, the error that says so
        if data_dir is None and not (debian and DEBIAN_FASHION_DIR.is_dir()):
            raise
    if debian:
        roots.append(DEBIAN_FASHION_DIR)
    return roots


#: the published number of training images of each class, in class order: MNIST's digits are
#: unbalanced, Fashion-MNIST has 6,000 of each. Read from the decoded labels, they tell the two
#: apart whatever compression the files carry (Debian's recompressed copies have other MD5s).
TRAIN_LABEL_COUNTS = {
    "mnist": (5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949),
    "fashion-mnist": (6000,) * 10,
}


def identify_labels(path: str | os.PathLike) -> str | None:
    """``mnist`` or ``fashion-mnist`` where the training-label file ``path`` has exactly that
    dataset's class counts, else None (including a file that cannot be read: loading it reports
    that)."""
    try:
        y = read_idx(path)
    except DatasetError:
        return None
    if y.ndim != 1 or y.dtype.kind not in "iu" or len(y) != 60000 or y.min() < 0 or y.max() > 9:
        return None
    counts = tuple(int(c) for c in np.bincount(y, minlength=10))
    return next((name for name, known in TRAIN_LABEL_COUNTS.items() if counts == known), None)


def other_dataset_in(name: str, files: dict[str, Path]) -> str | None:
    """The dataset other than ``name`` whose ``files`` these are, by their published checksum
    or by the class counts of their training labels; None if they may be ``name``'s."""
    from mlplab.data.download import other_dataset

    other = other_dataset(name, files["train_labels"])
    if other is None:
        other = identify_labels(files["train_labels"])
    return other if other is not None and other != name else None


def find_idx_files(name: str, data_dir: str | os.PathLike | None,
                   passed_over: list[str] | None = None,
                   incomplete: list[str] | None = None) -> dict[str, Path] | None:
    """The four files of ``name`` from the first folder that has them all and whose files are
    not the other dataset's (MNIST and Fashion-MNIST name their files alike, so one data_dir may
    hold the other's). Each folder passed over for that is noted in ``passed_over``, and each
    one before it that holds some of the files but not all in ``incomplete``."""
    for root in candidate_dirs(name, data_dir):
        found = _files_in(root, incomplete)
        if found is None:
            continue
        other = other_dataset_in(name, found)
        if other is None:
            return found
        if passed_over is not None:
            passed_over.append(f"{root} holds {other}'s files")
    return None


def _files_in(root: Path, incomplete: list[str] | None = None) -> dict[str, Path] | None:
    """The four files in ``root``, or None; a folder with some of them, or with a folder under
    one's name, is noted in ``incomplete``, with the names of those it lacks."""
    found = {role: _find_file(root, base) for role, base in FILES.items()}
    if all(found.values()):
        return found  # type: ignore[return-value]
    missing = [FILES[role] for role, path in found.items() if path is None]
    # a folder under a file's name (an archive tool's unpacking) is no missing file: said so
    folders = [root / name for base in missing for name in _names(base)
               if (root / name).is_dir()]
    if incomplete is not None and (len(missing) < len(FILES) or folders):
        named = f" ({'; '.join(f'{p} is a folder, not a file' for p in folders)}: move " \
                f"{'it' if len(folders) == 1 else 'them'} away)" if folders else ""
        incomplete.append(f"{root} lacks {', '.join(b + '[.gz]' for b in missing)}{named}")
    return None


def _images(path: Path) -> np.ndarray:
    X = read_idx(path)
    if X.ndim != 3 or X.dtype != np.uint8:
        raise DatasetError(f"{path}: expected uint8 images (N, rows, cols); got {X.dtype} "
                           f"{X.shape}; delete it and download again.")
    return X[:, :, :, None]


def _labels(path: Path, images: Path, n: int, classes: int) -> np.ndarray:
    """The labels in ``path`` of the ``n`` images in ``images``, checked: like every refusal
    of the files, each message ends in what to do (the files are fetched again)."""
    y = read_idx(path)
    if y.ndim != 1:
        raise DatasetError(f"{path}: expected a 1-D label file; got shape {y.shape}; delete it "
                           "and download again.")
    if len(y) != n:
        raise DatasetError(f"{path}: {len(y)} labels for the {n} images of {images.name}; the "
                           "files are not one dataset - delete them and download again.")
    # a float label would be truncated to a class (3.7 -> 3) and a signed one may be negative,
    # which indexes classes from the end: neither is a class index
    if y.dtype.kind not in "iu":
        raise DatasetError(f"{path}: labels must be integers (IDX type 0x08, 0x09, 0x0B or "
                           f"0x0C); this file holds {y.dtype.name} values - delete it and "
                           "download again.")
    if y.size and (int(y.min()) < 0 or int(y.max()) >= classes):
        bad = int(y.min()) if int(y.min()) < 0 else int(y.max())
        raise DatasetError(f"{path}: labels must be 0..{classes - 1}; found {bad} - delete it "
                           "and download again.")
    return y.astype(np.int64)


def _needs_download(name: str, files: dict[str, Path] | None) -> bool:
    """With ``download=True``: are files missing, or does a gzipped one found fail its published
    checksum (an interrupted copy, a truncated file)? Uncompressed files have no published
    checksum and Debian's package recompressed its files (other MD5s, vouched for by the package
    manager); both are read as they are."""
    if files is None:
        return True
    from mlplab.data.download import checksum_problem

    return any(p.parent != DEBIAN_FASHION_DIR and checksum_problem(name, p) is not None
               for p in files.values())


def load_mnist(name: str = "mnist", data_dir: str | os.PathLike | None = None,
               download: bool = False, mirror: str | None = None,
               progress: bool = True) -> Dataset:
    """All training and test images of ``mnist`` or ``fashion-mnist`` (``X_val`` empty).
    ``progress``: the download's bars."""
    if name not in CLASSES:
        raise DatasetError(f"unknown IDX dataset {name!r}; expected mnist or fashion-mnist.")
    passed_over: list[str] = []
    incomplete: list[str] = []  # folders holding some of the files: not passed over silently
    files = find_idx_files(name, data_dir, passed_over, incomplete)
    if download and _needs_download(name, files):
        from mlplab.data.download import download_dataset

        # the fresh files are the ones read, even where damaged ones were found elsewhere
        try:
            paths = download_dataset(name, data_dir=data_dir, mirror=mirror,
                                     progress=progress)
        except DatasetError as exc:
            if files is None:
                raise
            # files were found but fail the published checksum (a copy of Debian's recompressed
            # package, files of one's own): the download's advice alone ("copy the file to ...")
            # did not say that the files there are read as they are without --download
            from mlplab.data.download import checksum_problem

            bad = next(p for p in files.values() if checksum_problem(name, p) is not None)
            drop = setting("drop --download", "pass download=False")
            raise DatasetError(f"{exc} ({bad} was found but is not the published file, "
                               f"{checksum_problem(name, bad)}: {drop} to read the files in "
                               f"{bad.parent} as they are, if they are meant to differ (a copy "
                               "of Debian's package, files of your own).)") from None
        files = _files_in(paths[0].parent)
    if files is not None:
        folder = files["train_images"].parent
        others = [note for note in incomplete if not note.startswith(f"{folder} lacks ")]
        if others:
            import warnings

            warnings.warn(f"{'; '.join(others)}: {name} is read from {folder} instead.",
                          stacklevel=3)
    else:
        passed_over += incomplete
        looked = ", ".join(str(r) for r in candidate_dirs(name, data_dir))
        hint = (" or install Debian's dataset-fashion-mnist package"
                if name == "fashion-mnist" else "")
        other = f" ({'; '.join(passed_over)})" if passed_over else ""
        raise DatasetNotFoundError(
            f"{name} not found: looked for {', '.join(b + '[.gz]' for b in FILES.values())} in "
            f"{looked}{other}. Fetch it with `{download_command(name, data_dir)}`"
            f"{download_hint()}{hint}.")
    k = len(CLASSES[name])
    X = _images(files["train_images"])
    y = _labels(files["train_labels"], files["train_images"], len(X), k)
    Xt = _images(files["test_images"])
    if Xt.shape[1:] != X.shape[1:]:  # else the model would fail on the test set, after training
        raise DatasetError(f"{files['test_images']}: test images are {Xt.shape[2]}x{Xt.shape[1]}"
                           f" but the training images ({files['train_images'].name}) are "
                           f"{X.shape[2]}x{X.shape[1]}; the files are not one dataset - delete "
                           "them and download again.")
    yt = _labels(files["test_labels"], files["test_images"], len(Xt), k)
    return Dataset(name, list(CLASSES[name]), X, y, X[:0], y[:0], Xt, yt,
                   source=str(files["train_images"].parent))
