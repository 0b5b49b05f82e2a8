"""Folders of images: one sub-folder per class, optionally inside ``train/`` and ``test/``.

Decoding 50,000 small JPEGs takes about 9 s on one core, so the decoded arrays are cached as an
uncompressed ``.npz`` under ``<data root>/folder-cache/``, keyed by the folder's path, every
image's name, size and modification time and the requested image size; a changed folder simply
misses the cache. Decoding uses a few threads, which pays off for large images (Pillow releases the
GIL while decoding).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from tqdm import tqdm

from mlplab.data.base import DatasetError, atomic_path, data_root

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm",
                    ".pgm")
#: bump when the cached layout or decoding changes, so old caches are ignored
CACHE_VERSION = 1


def open_image(path: str | os.PathLike):
    """``PIL.Image.open`` on the file's bytes in memory. Opened on the file itself, Pillow asks
    the file object for as many bytes as a chunk header declares, and Python's buffered reader
    allocates that much up front: a 70-byte PNG declaring a 2 GB chunk allocated 2 GB."""
    from PIL import Image, UnidentifiedImageError

    try:
        return Image.open(io.BytesIO(Path(path).read_bytes()))
    except UnidentifiedImageError:
        # Pillow's message names the in-memory buffer ("<_io.BytesIO object at 0x...>")
        raise UnidentifiedImageError("not an image format Pillow recognises") from None


def _class_dirs(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def _image_files(class_dir: Path) -> list[tuple[str, int, int]]:
    """``(name, size, mtime_ns)`` of the image files in ``class_dir``, sorted by name."""
    out = []
    with os.scandir(class_dir) as it:
        for e in it:
            if e.name.startswith(".") or not e.name.lower().endswith(IMAGE_EXTENSIONS):
                continue
            if e.is_file():
                st = e.stat()
                out.append((e.name, st.st_size, st.st_mtime_ns))
    out.sort()
    return out


def _scan(root: Path, classes: list[str] | None
          ) -> tuple[list[str], list[Path], np.ndarray, list[tuple[str, int, int]]]:
    """Class names, image paths, labels and stat records of one folder of class folders."""
    dirs = _class_dirs(root)
    for d in dirs:
        try:
            d.name.encode("utf-8")
        except UnicodeEncodeError:  # os.listdir gives undecodable bytes as lone surrogates
            raise DatasetError(
                f"{root}: class folder name {os.fsencode(d.name)!r} is not valid UTF-8; class "
                "names become labels in model files, plots and reports - rename the folder."
            ) from None
    if classes is None:
        classes = [d.name for d in dirs]
    else:
        unknown = [d.name for d in dirs if d.name not in classes]
        if unknown:
            raise DatasetError(f"{root}: class folder(s) {', '.join(unknown)} are not among the "
                               f"training classes ({', '.join(classes)}).")
    index = {c: i for i, c in enumerate(classes)}
    paths: list[Path] = []
    labels: list[int] = []
    stats: list[tuple[str, int, int]] = []
    for d in dirs:
        for name, size, mtime in _image_files(d):
            paths.append(d / name)
            labels.append(index[d.name])
            stats.append((f"{d.name}/{name}", size, mtime))
    return classes, paths, np.asarray(labels, dtype=np.int64), stats


def _unreadable(path: Path, exc: Exception) -> DatasetError:
    detail = " ".join(str(exc).split())  # Pillow's reason, on one line
    return DatasetError(f"{path}: cannot read image ({detail}); replace or remove the file.")


def _target_mode(path: Path) -> str:
    """Grayscale folders stay one channel; anything else becomes RGB (alpha dropped)."""
    try:
        with open_image(path) as im:
            return "L" if im.mode in ("1", "L", "I", "I;16", "F") else "RGB"
    except Exception as exc:
        raise _unreadable(path, exc) from None


def _decode(paths: list[Path], mode: str, size: tuple[int, int] | None) -> np.ndarray:
    from PIL import Image

    def read(path: Path) -> np.ndarray:
        try:
            with open_image(path) as im:
                if im.mode != mode:
                    im = im.convert(mode)
                if size is not None and im.size != (size[1], size[0]):
                    im = im.resize((size[1], size[0]), Image.Resampling.BILINEAR)
                arr = np.asarray(im, dtype=np.uint8)
        except Exception as exc:
            raise _unreadable(path, exc) from None
        return arr if arr.ndim == 3 else arr[:, :, None]

    first = read(paths[0])
    out = np.empty((len(paths), *first.shape), dtype=np.uint8)
    out[0] = first

    def work(chunk: range) -> None:
        for i in chunk:
            arr = read(paths[i])
            if arr.shape != first.shape:
                raise DatasetError(
                    f"{paths[i]}: image is {arr.shape[1]}x{arr.shape[0]} but {paths[0].name} is "
                    f"{first.shape[1]}x{first.shape[0]}; pass --image-size (image_size=) to "
                    "resize all images to one size.")
            out[i] = arr

    step = 512
    chunks = [range(s, min(s + step, len(paths))) for s in range(1, len(paths), step)]
    workers = min(4, os.cpu_count() or 1, max(len(chunks), 1))
    with tqdm(total=len(paths), desc=f"decoding {paths[0].parent.parent.name}", unit="img",
              disable=None, leave=False) as bar:
        bar.update(1)
        if workers <= 1:
            for c in chunks:
                work(c)
                bar.update(len(c))
        else:
            with ThreadPoolExecutor(workers) as ex:
                for c, _ in zip(chunks, ex.map(work, chunks)):  # re-raises the first error
                    bar.update(len(c))
    return out


def read_image_folder(root: str | os.PathLike, image_size: tuple[int, int] | None = None, *,
                      classes: list[str] | None = None, mode: str | None = None,
                      cache: bool = True) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Decode every image under ``root/<class>/`` into ``(X uint8 (N, H, W, C), y, classes)``."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DatasetError(f"{root}: no such folder.")
    training = classes is None  # the class list comes from these folders
    classes, paths, y, stats = _scan(root, classes)
    if not paths:
        raise DatasetError(
            f"{root}: no images found; expected one sub-folder per class holding image files "
            f"({', '.join(IMAGE_EXTENSIONS[:3])}, ...), e.g. {root}/cat/0001.png.")
    if training:
        # a class with no examples would still get an output unit and a column in every table
        counts = np.bincount(y, minlength=len(classes))
        empty = [c for c, n in zip(classes, counts, strict=True) if n == 0]
        if empty:
            raise DatasetError(f"{root}: class folder(s) {', '.join(empty)} hold no images; "
                               "add images to them or move them out of the dataset folder.")
    ident = [CACHE_VERSION, str(root.resolve()), image_size, mode, classes, stats]
    key = hashlib.sha256(json.dumps(ident).encode()).hexdigest()
    cache_file = data_root() / "folder-cache" / f"{root.name or 'root'}-{key[:20]}.npz"
    if cache and cache_file.is_file():
        try:
            with np.load(cache_file, allow_pickle=False) as z:
                return z["X"], z["y"], classes
        except Exception:  # a damaged cache is rebuilt, never trusted
            pass
    X = _decode(paths, mode or _target_mode(paths[0]), image_size)
    if cache:
        try:
            with atomic_path(cache_file) as tmp, open(tmp, "wb") as f:
                np.savez(f, X=X, y=y)
        except OSError as exc:
            warnings.warn(f"could not write the image cache {cache_file}: {exc}", stacklevel=2)
    return X, y, classes


def load_folder(path: str | os.PathLike, image_size: tuple[int, int] | None = None,
                cache: bool = True) -> tuple[tuple[np.ndarray, np.ndarray],
                                             tuple[np.ndarray, np.ndarray] | None, list[str]]:
    """``((X, y) train, (X, y) test or None, classes)`` of an image folder.

    With ``train/`` (and optionally ``test/``) sub-folders those are the splits; otherwise every
    class sub-folder is training data.
    """
    root = Path(path).expanduser()
    if not root.is_dir():
        raise DatasetError(f"{root}: no such folder (folder:PATH needs a folder with one "
                           "sub-folder per class).")
    train_dir = root / "train"
    if train_dir.is_dir():
        X, y, classes = read_image_folder(train_dir, image_size, cache=cache)
        test = None
        if (root / "test").is_dir():
            Xt, yt, _ = read_image_folder(root / "test", image_size, classes=classes,
                                          mode="L" if X.shape[3] == 1 else "RGB", cache=cache)
            if Xt.shape[1:] != X.shape[1:]:
                raise DatasetError(f"{root / 'test'}: images are {Xt.shape[1:]} but the training "
                                   f"images are {X.shape[1:]}; pass --image-size.")
            test = (Xt, yt)
        return (X, y), test, classes
    X, y, classes = read_image_folder(root, image_size, cache=cache)
    return (X, y), None, classes
