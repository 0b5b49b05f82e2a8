"""CIFAR-10, "python version": ``cifar-10-batches-py/`` or the archive ``cifar-10-python.tar.gz``.

The batches are Python-2 pickles. ``pickle.load`` would run whatever a file names, so they are
read with :func:`mlplab.data.safe_pickle.load_pickle`, whose restricted unpickler admits only what
the official files contain: dicts, lists, tuples, byte strings, numbers and the three NumPy names
that rebuild an array (plus NumPy's ``_frombuffer``, with which batches re-pickled at protocol 5
rebuild them). Anything else (``os.system``, ``builtins.eval``, ...) is refused before it is
imported. The archive is read by the bounded tar reader of :mod:`mlplab.data.tar`, within the
bounds below. This module holds what is CIFAR-10's own: the file names, the size bounds of the
official files, the layout of a batch, and where the files are looked for.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import shutil
import stat
import tempfile
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from mlplab import io
from mlplab._validation import setting
from mlplab.data.base import (
    Dataset,
    DatasetError,
    DatasetNotFoundError,
    data_root,
    download_command,
    download_hint,
    short_repr,
    unreadable_data_file,
    user_path,
)

# MAX_DIMS ... MAX_PAX_BYTES lived here before the readers moved out: still importable from here.
from mlplab.data.safe_pickle import (  # noqa: F401
    MAX_DIMS,
    MAX_OPCODES,
    RefusedGlobal,
    RestrictedUnpickler,
    load_pickle,
)
from mlplab.data.tar import MAX_PAX_BYTES, TarLimits, TarReader  # noqa: F401

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
           "truck"]
BATCH_DIR = "cifar-10-batches-py"
ARCHIVE = "cifar-10-python.tar.gz"
TRAIN_BATCHES = [f"data_batch_{i}" for i in range(1, 6)]
TEST_BATCH = "test_batch"
#: the batches an extracted folder must hold (``batches.meta`` is optional)
BATCHES = (*TRAIN_BATCHES, TEST_BATCH)
META = "batches.meta"
#: bounds on what extraction accepts (the official batches are 31 MB each, 9 entries in all)
MAX_BATCH_BYTES = 64 << 20
MAX_ARCHIVE_ENTRIES = 100
MAX_ARCHIVE_BYTES = 400 << 20  # uncompressed (the official archive: about 180 MB)
MAX_ARCHIVE_FILE_BYTES = 256 << 20  # compressed, on disk (the official archive: 170 MB)


#: how a refusal of a batch or the archive ends: what to do, as for the IDX files (a batch
#: deleted is extracted again from the archive beside it, or the archive fetched again)
_AGAIN = "; delete it and download again."


def parse_batch(data: bytes, source: str) -> tuple[np.ndarray, np.ndarray]:
    """``(X (N, 32, 32, 3) uint8, y (N,) int64)`` of one pickled batch, checked."""
    d = load_pickle(data, source)
    if "data" not in d or "labels" not in d:
        raise DatasetError(f"{source}: not a CIFAR-10 batch (keys {short_repr(sorted(d))}; "
                           f"expected 'data' and 'labels'){_AGAIN}")
    X, labels = d["data"], d["labels"]
    if not isinstance(X, np.ndarray) or X.dtype != np.uint8 or X.ndim != 2 or \
            X.shape[1] != 3072:
        desc = f"{X.dtype} array {X.shape}" if isinstance(X, np.ndarray) else type(X).__name__
        raise DatasetError(f"{source}: 'data' must be a uint8 array of shape (N, 3072); got "
                           f"{desc}{_AGAIN}")
    # the type and length first: memo references can nest one list in another a thousand times
    # over, which np.asarray would expand into billions of elements
    if isinstance(labels, list):
        if not all(type(v) is int for v in labels):  # not bools, floats or nested lists
            raise DatasetError(f"{source}: 'labels' must be a list of integers{_AGAIN}")
        n_labels = len(labels)
    elif isinstance(labels, np.ndarray) and labels.dtype.kind in "iu" and labels.ndim == 1:
        n_labels = labels.shape[0]
    else:
        raise DatasetError(f"{source}: 'labels' must be a list of integers{_AGAIN}")
    if n_labels != len(X):
        raise DatasetError(f"{source}: {len(X)} images but {n_labels} labels{_AGAIN}")
    try:
        y = np.array(labels, dtype=np.int64)
    except OverflowError:
        raise DatasetError(f"{source}: 'labels' must be a list of integers in 0..9; found one "
                           f"beyond 64 bits{_AGAIN}") from None
    if y.size and (y.min() < 0 or y.max() > 9):
        raise DatasetError(f"{source}: labels must be 0..9; found {y.min()}..{y.max()}{_AGAIN}")
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
        # O_BINARY: Windows opens a descriptor in text mode otherwise, and reading it ends at
        # the first 0x1A byte and turns every CR LF into LF, mangling the pickle
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0) | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                raise DatasetError(f"{path}: not a regular file; a CIFAR-10 batch is a file.")
            data = f.read(MAX_BATCH_BYTES + 1)
    except OSError as exc:
        raise unreadable_data_file(path, exc) from None
    if len(data) > MAX_BATCH_BYTES:
        raise DatasetError(f"{path}: more than {MAX_BATCH_BYTES >> 20} MiB; a CIFAR-10 batch has "
                           "about 31 MB.")
    return data


EXTRACT_PREFIX = ".cifar-extract."


def _remove_stale_extractions(dest: Path) -> None:
    """Remove what an extraction killed outright (SIGKILL, a closed terminal) left in ``dest``:
    a hidden folder of up to 180 MB that nothing else removes. One left alone this long is no
    live extraction's, which takes seconds."""
    import time

    from mlplab.data.download import STALE_SECONDS

    with contextlib.suppress(OSError):  # an unreadable folder: the extraction itself says so
        for p in dest.iterdir():
            if p.name.startswith(EXTRACT_PREFIX) and p.is_dir() and not p.is_symlink() \
                    and time.time() - p.stat().st_mtime > STALE_SECONDS:
                shutil.rmtree(p, ignore_errors=True)


def extract_archive(archive: Path, dest: Path) -> Path:
    """Extract ``cifar-10-batches-py/`` from the official archive into ``dest``, atomically."""
    target = dest / BATCH_DIR
    _remove_stale_extractions(dest)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=EXTRACT_PREFIX, dir=dest))
    except OSError as exc:
        data_dir = setting("--data-dir", "data_dir")
        raise DatasetError(f"{dest}: cannot extract {ARCHIVE} into this folder "
                           f"({exc.strerror or exc}); make it writable, or extract the archive "
                           f"elsewhere and point {data_dir} there.") from None
    try:
        (tmp / BATCH_DIR).mkdir()
        found = set()
        if archive.stat().st_size > MAX_ARCHIVE_FILE_BYTES:
            # Python's gzip reads padding and header names a byte at a time: a sparse file of
            # gigabytes of zeros (a few KB on disk) would take minutes
            raise DatasetError(f"{archive}: {archive.stat().st_size:,} bytes; the official "
                               f"archive has 170,498,071 - delete it and download again.")
        with gzip.open(archive, "rb") as gz:  # gzip only: the official archive's format
            tar = TarReader(gz, archive, TarLimits(
                "the CIFAR-10 python archive",
                MAX_ARCHIVE_ENTRIES, f"the official archive has {len(TRAIN_BATCHES) + 4}",
                MAX_BATCH_BYTES, "the official batches have 31 MB",
                MAX_ARCHIVE_BYTES, "the official archive has about 180 MB"))
            for name, size in tar.entries():
                # .../cifar-10-batches-py/<batch> (a repacked archive may nest the folder)
                parts = [part for part in name.split("/") if part not in ("", ".")]
                batch = parts[-1] if len(parts) >= 2 and parts[-2] == BATCH_DIR and \
                    parts[-1] in (*TRAIN_BATCHES, TEST_BATCH, META) else None
                if batch is not None and (size is None or batch in found):
                    # the official archive has each batch once, as a file: a link or a second
                    # copy would make what is loaded depend on the tool that extracts it
                    what = "not a file" if size is None else "there twice"
                    raise DatasetError(f"{archive}: not the CIFAR-10 python archive ({batch} is "
                                       f"{what}){_AGAIN}")
                if batch is not None and size is not None:  # (a None size was refused above)
                    # written under our own name: no path from the archive reaches the disk
                    with open(tmp / BATCH_DIR / batch, "wb") as f:
                        f.writelines(tar.chunks(size))
                    found.add(batch)
                elif size is not None:
                    tar.skip(size)
            missing = set(BATCHES) - found
            if missing:
                raise DatasetError(f"{archive}: not the CIFAR-10 python archive (missing "
                                   f"{', '.join(sorted(missing))}){_AGAIN}")
            # to the end of the gzip stream, whose CRC is checked only there: the tar end marker
            # comes first, so a flipped bit in the data would otherwise go unnoticed
            end = gz.tell()
            while gz.read(1 << 20):
                if gz.tell() > end + (1 << 20):  # tar pads its end to a record of 10 KiB
                    raise DatasetError(f"{archive}: not the CIFAR-10 python archive (more than "
                                       f"1 MiB after the end of the tar archive){_AGAIN}")
        try:
            os.replace(tmp / BATCH_DIR, target)
        except OSError:
            # a folder is there (renaming onto a folder that is not empty fails): another
            # process's complete extraction is kept; an incomplete one (an interrupted copy, a
            # damaged batch deleted as a message advised) gets the archive's batches, file by
            # file, so that nothing else in it is lost
            if _missing(target):
                try:
                    for batch in sorted(found):
                        os.replace(tmp / BATCH_DIR / batch, target / batch)
                except OSError as exc:
                    raise DatasetError(f"{target}: cannot put the batches of {ARCHIVE} there "
                                       f"({exc.strerror or exc}); remove the folder (the archive "
                                       "is fine) and run again.") from None
        return target
    except DatasetError:
        raise
    except (EOFError, OSError, ValueError, zlib.error, MemoryError) as exc:
        from mlplab.io import DiskFullError, is_disk_full

        if isinstance(exc, OSError) and is_disk_full(exc):
            # the archive is fine: deleting and downloading it again, as below, would not help
            raise DiskFullError(target, exc) from None
        if isinstance(exc, PermissionError) and exc.filename is not None and \
                os.fspath(exc.filename) == os.fspath(archive):
            # the archive is fine, only closed to this user: downloading it again (below) is
            # no fix where the file cannot be replaced either
            raise unreadable_data_file(archive, exc) from None
        detail = " ".join(str(exc).split())
        raise DatasetError(f"{archive}: cannot extract the archive ({type(exc).__name__}: "
                           f"{detail}); it may be truncated - delete it and download again."
                           ) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _is_file(path: Path) -> bool:
    """:func:`mlplab.io.is_file`, with an error that is not "no such file" (a name too long, a
    folder that cannot be entered, a loop of links) as a one-line ``DatasetError``. (Not
    ``path.is_file()``: it answers False for a loop of links, and for every error from Python
    3.14 on, so that the archive went "not found".)"""
    try:
        return io.is_file(path)
    except OSError as exc:
        raise DatasetError(f"{short_repr(str(path))}: cannot look there ({exc.strerror or exc}); "
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


def _has(path: Path) -> bool:
    """Whether there is something named ``path`` (a FIFO or a dangling link too: the reader
    then says what is wrong with it, rather than the folder being taken for incomplete)."""
    return _is_file(path) or os.path.lexists(path)


def _missing(folder: Path) -> list[str]:
    """The batches that ``folder`` lacks (none: it holds them all)."""
    return [b for b in BATCHES if not _has(folder / b)]


def _batch_folders(roots: list[Path]) -> Iterator[Path]:
    """Where the batches may lie, in the order searched: each root, then its
    ``cifar-10-batches-py/``."""
    for root in roots:
        yield root
        yield root / BATCH_DIR


def _extracted(roots: list[Path]) -> Path | None:
    """The first folder of ``roots`` holding all the batches (or their ``cifar-10-batches-py/``).
    A folder with only some of them (an interrupted copy, a damaged batch deleted) is not one:
    the archive beside it is extracted again, or fetched with ``download``."""
    return next((folder for folder in _batch_folders(roots) if not _missing(folder)), None)


def _incomplete(roots: list[Path]) -> tuple[Path, list[str]] | None:
    """The first folder of ``roots`` holding some batches but not all, with the missing ones."""
    for folder in _batch_folders(roots):
        missing = _missing(folder)
        if 0 < len(missing) < len(BATCHES):
            return folder, missing
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
                 mirror: str | None = None, progress: bool = True) -> Dataset:
    """All 50,000 training and 10,000 test images in file order (``X_val`` empty; the caller
    splits). ``progress``: the download's bar."""
    if download and _needs_download(data_dir):
        from mlplab.data.download import download_dataset

        # into data_dir (or <data root>/cifar10): searched first, so the fresh archive is the one
        # extracted even where a damaged one lies in another folder
        download_dataset("cifar10", data_dir=data_dir, mirror=mirror, progress=progress)
    folder = find_cifar10(data_dir)
    if folder is None and (partial := _incomplete(candidate_dirs(data_dir))) is not None:
        where, missing = partial
        # the folder searched for the archive: the one holding cifar-10-batches-py/, or the
        # batch folder itself when the batches lie directly in the data folder
        searched = where.parent if where.name == BATCH_DIR else where
        raise DatasetNotFoundError(
            f"{where}: CIFAR-10 is incomplete there (no {', '.join(missing)}: an interrupted "
            f"copy, or a damaged batch deleted); put {ARCHIVE} in {searched}, from which the "
            f"batches are extracted again, or fetch it with "
            f"`{download_command('cifar10', data_dir)}`{download_hint()}.")
    if folder is None:
        looked = ", ".join(str(r) for r in candidate_dirs(data_dir))
        raise DatasetNotFoundError(
            f"CIFAR-10 not found: looked for {BATCH_DIR}/ or {ARCHIVE} in {looked}. Fetch it with "
            f"`{download_command('cifar10', data_dir)}`{download_hint()}.")
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
