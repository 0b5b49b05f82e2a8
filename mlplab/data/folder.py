"""Folders of images: one sub-folder per class, optionally inside ``train/``, ``val/`` and
``test/``.

Decoding 50,000 small JPEGs takes about 9 s on one core, so the decoded arrays are cached as an
uncompressed ``.npz`` under ``<data root>/folder-cache/``, keyed by the folder's path, every
image's name, size and modification time and the requested image size; a changed folder simply
misses the cache. Decoding uses a few threads, which pays off for large images (Pillow releases the
GIL while decoding).

Colour: a folder whose images are all greyscale gives one channel, any colour image makes every
image RGB. Wider greyscale images are scaled to 0..255, not clipped: 16-bit (Pillow's ``I;16*``
modes) and 32-bit integer (``I``, which older Pillows give for 16-bit PNGs) as 0..65535, floating
point (``F``) as 0..1; values outside those ranges are refused rather than guessed at.

Orientation: a photo whose EXIF says how to turn it (phones, cameras) is turned upright, as every
image viewer shows it.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import io
import json
import os
import re
import threading
import unicodedata
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from mlplab._machine import available_cpus
from mlplab._progress import progress_bar
from mlplab._text import agree, counted, no_such_folder
from mlplab.data.base import (
    DatasetError,
    DatasetNotFoundError,
    data_root,
    pil_bilinear,
    user_path,
)
from mlplab.io import atomic_path, link_chain, link_trouble, special_file

if TYPE_CHECKING:
    from PIL import Image, ImageFile
    from tqdm import tqdm

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm",
                    ".pgm")
#: extensions of images mlplab does not read (phone, camera raw, web and editor formats Pillow
#: cannot open, or not under these names): left out of a class folder with a warning, not silently
OTHER_IMAGE_EXTENSIONS = (".heic", ".heif", ".avif", ".jxl", ".jfif", ".jpe", ".jp2", ".dng",
                          ".cr2", ".cr3", ".nef", ".arw", ".orf", ".rw2", ".raf", ".svg", ".psd",
                          ".ico", ".tga", ".pbm", ".pnm")
#: names of a validation folder beside ``train/``: ImageNet's ``val``, Kaggle's ``valid``,
#: Keras's ``validation``
VAL_FOLDER_NAMES = ("val", "valid", "validation")
#: bump when the cached layout or decoding changes, so old caches are ignored (2: the colour
#: mode depends on every image, not the first; 16-bit images are scaled, not clipped; 4: the
#: EXIF orientation is applied; 5: a TIFF that Pillow turns itself is not turned again)
CACHE_VERSION = 5
#: mlplab's way of decoding folder images, as a number a run records (``image_decoding`` in its
#: metrics.json and checkpoint), so that a run made before a change is not evaluated or resumed
#: on pixels its model never saw: 1, the first; 2 (29 Nov 2026, e39bd28), 16-bit, 32-bit and
#: floating-point greyscale scaled to 0..255 (they were clipped); 3 (30 Nov 2026, b57131d), photos
#: turned upright as their EXIF orientation says (they were read as stored); 4 (2 Dec 2026), a
#: TIFF with an orientation is not turned a second time, Pillow (9 and 13 at least) turning it
#: as it loads it. Bump it, and teach :func:`decoded_otherwise_before` the change, when decoding
#: changes the pixels of a file.
DECODING = 4
#: Pillow modes of the greyscale images that decoding 1 clipped to 0..255 and later ones scale
_WIDE_GREY_MODES = ("I", "F", "I;16", "I;16L", "I;16B", "I;16N")
#: Pillow modes of one-channel images; any other mode is colour (or colour with alpha)
GREY_MODES = ("1", "L", "LA", "La", "I", "F", "I;16", "I;16L", "I;16B", "I;16N")


#: the image file each thread is decoding (:func:`image_being_decoded`)
_decoding = threading.local()


@contextlib.contextmanager
def _decoding_file(path: Path) -> Iterator[None]:
    previous = getattr(_decoding, "path", None)
    _decoding.path = path
    try:
        yield
    finally:
        _decoding.path = previous


def image_being_decoded() -> Path | None:
    """The image file this thread is decoding, if any. Pillow's own warnings (an image above
    ``Image.MAX_IMAGE_PIXELS``, damaged EXIF) name no file, and the images are decoded on
    threads, where ``warnings.catch_warnings`` is not safe before Python 3.14; the command line
    names the file from this (its warning format, set once per command, runs in the warning's
    thread)."""
    return getattr(_decoding, "path", None)


def open_image(path: str | os.PathLike) -> ImageFile.ImageFile:
    """``PIL.Image.open`` on the file's bytes in memory. Opened on the file itself, Pillow asks
    the file object for as many bytes as a chunk header declares, and Python's buffered reader
    allocates that much up front: a 70-byte PNG declaring a 2 GB chunk allocated 2 GB."""
    from PIL import Image, UnidentifiedImageError

    data = Path(path).read_bytes()
    if not data:  # Pillow would say only that it does not recognise the format
        raise UnidentifiedImageError("the file is empty, 0 bytes")
    try:
        return Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        # Pillow's message names the in-memory buffer ("<_io.BytesIO object at 0x...>")
        raise UnidentifiedImageError("not an image format Pillow recognises") from None


def _class_dirs(root: Path) -> list[Path]:
    # by name, as text: Windows paths compare ignoring case, which would number the classes
    # (Cat, ant, Bee) in another order there than on Linux and macOS
    try:
        return sorted((p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")),
                      key=lambda p: p.name)
    except OSError as exc:  # said as a class folder's is, not "/data/pics: Permission denied"
        raise _unlistable(root, exc, "make it readable") from None


def _unlistable(folder: Path, exc: OSError, advice: str) -> DatasetError:
    return DatasetError(f"{folder}: cannot list the folder ({exc.strerror or exc}); {advice}.")


def _listing(class_dir: Path
             ) -> tuple[list[tuple[str, int, int, int, int]], list[str], list[str], list[str]]:
    """One pass over ``class_dir``: ``(name, size, mtime_ns, ctime_ns, inode)`` of its image
    files, sorted by name (the decode cache's key: files swapped by ``mv`` keep their sizes and
    mtimes, but not their inodes and ctimes), the names of its visible sub-folders, sorted
    (their images are not read: :func:`_warn_unread`), of its files with one of
    ``OTHER_IMAGE_EXTENSIONS``, sorted (not read either), and of its links named like images
    whose target does not exist or that go round in a loop, sorted (nothing to read)."""
    files, subdirs, others, broken = [], [], [], []
    try:
        with os.scandir(class_dir) as it:
            for e in it:
                if e.name.startswith("."):
                    continue
                image = e.name.lower().endswith(IMAGE_EXTENSIONS)
                try:
                    if image and e.is_file():
                        st = e.stat()
                        files.append((e.name, st.st_size, st.st_mtime_ns, st.st_ctime_ns,
                                      st.st_ino))
                    elif e.name.lower().endswith(OTHER_IMAGE_EXTENSIONS):
                        others.append(e.name)
                    elif image and e.is_symlink() and not os.path.exists(e.path):
                        broken.append(e.name)
                    elif e.is_dir():
                        subdirs.append(e.name)
                except OSError as exc:
                    # a loop of links: is_file and is_dir raise ELOOP where a dangling link
                    # answers False; it leads to no file either, and stopped the whole folder
                    if exc.errno != errno.ELOOP or not e.is_symlink():
                        raise
                    if image:
                        broken.append(e.name)
    except OSError as exc:
        raise _unlistable(class_dir, exc,
                          "make it readable or move it out of the dataset folder") from None
    return sorted(files), sorted(subdirs), sorted(others), sorted(broken)


def _image_files(class_dir: Path) -> list[tuple[str, int, int, int, int]]:
    """The image files of :func:`_listing`."""
    return _listing(class_dir)[0]


def _count_images_below(folder: Path, limit: int = 100_000) -> int:
    """Image files in ``folder`` and its sub-folders (hidden ones skipped), counted up to
    ``limit``."""
    n = 0
    for _top, subdirs, files in os.walk(folder):
        subdirs[:] = [d for d in subdirs if not d.startswith(".")]
        n += sum(1 for f in files if not f.startswith(".") and f.lower().endswith(IMAGE_EXTENSIONS))
        if n >= limit:
            break
    return n


def _first_few(items: Sequence[str], shown: int = 3) -> str:
    """``items`` for a warning: the first ``shown``, comma-separated, and how many more."""
    more = f" and {len(items) - shown} more" if len(items) > shown else ""
    return ", ".join(items[:shown]) + more


def _warn_dangling(root: Path) -> None:
    """Name the links in ``root`` whose target is gone: a class folder linked to a disk that is
    not mounted was left out without a word, and the model trained without that class."""
    gone = sorted(p for p in root.iterdir() if not p.name.startswith(".") and p.is_symlink()
                  and not p.exists())
    if gone:
        shown = _first_few([f"{p.name} -> {os.readlink(p)}" for p in gone])
        n = len(gone)
        warnings.warn(f"{root}: {counted(n, 'link')} in the dataset folder "
                      f"{agree(n, 'points', 'point')} to nothing and {agree(n, 'is', 'are')} "
                      f"left out ({shown}); a class folder on a disk that is not "
                      f"mounted? Fix or remove {agree(n, 'it', 'them')}.", stacklevel=4)


def _warn_unread(root: Path, subdirs: dict[Path, list[str]], others: dict[Path, list[str]],
                 broken: dict[Path, list[str]]) -> None:
    """Warn about images the folder layout leaves out: in sub-folders of class folders (a user's
    ``cat/2019/``; ``subdirs``: each class folder's, from its listing), loose in ``root`` (they
    belong to no class), or in a format mlplab does not read (``others``: each class folder's
    files with one of ``OTHER_IMAGE_EXTENSIONS``, say an iPhone's ``.HEIC`` photos), or links
    whose target is gone (``broken``: a dataset of links into a folder that moved). Left out
    silently, a class would simply be smaller than the user thinks."""
    nested = [(d / s, n) for d, subs in subdirs.items() for s in subs
              if (n := _count_images_below(d / s))]
    if nested:
        total = sum(n for _, n in nested)
        move = agree(total, "it up into its class folder to train on it",
                     "them up into it to train on them")
        shown = _first_few([f"{p.relative_to(root)}/ ({n})" for p, n in nested])
        where = agree(total, "a sub-folder of a class folder", "sub-folders of class folders")
        warnings.warn(f"{root}: {counted(total, 'image')} in {where} "
                      f"{agree(total, 'is', 'are')} not read: "
                      f"{shown}; mlplab reads the images directly inside each class folder "
                      f"- move {move}.", stacklevel=4)
    skipped = [(d, name) for d, names in others.items() for name in names]
    if skipped:
        exts: dict[str, int] = {}
        for _, name in skipped:
            ext = os.path.splitext(name)[1].lower()
            exts[ext] = exts.get(ext, 0) + 1
        kinds = ", ".join(f"{n} {ext}" for ext, n in sorted(exts.items()))
        d, name = skipped[0]
        jpeg = " (.jfif and .jpe files are JPEGs: rename them .jpg)" if (
            ".jfif" in exts or ".jpe" in exts) else ""
        n, be, them = len(skipped), agree(len(skipped), "is", "are"), agree(len(skipped), "it",
                                                                               "them")
        warnings.warn(f"{root}: {counted(n, 'file')} in class folders {be} in "
                      f"{agree(n, 'an image format', 'image formats')} mlplab does not read and "
                      f"{be} left out ({kinds}; e.g. {d.relative_to(root)}/{name}); convert "
                      f"{them} to PNG or JPEG{jpeg} to train on {them}.", stacklevel=4)
    gone = [d / name for d, names in broken.items() for name in names]
    if gone:
        warnings.warn(f"{root}: {counted(len(gone), 'link')} in class folders "
                      f"{dead_links_left_out(gone, root)}; fix or remove "
                      f"{agree(len(gone), 'it', 'them')}.", stacklevel=4)
    try:
        loose = _image_files(root)
    except DatasetError:
        loose = []
    if loose:
        n = len(loose)
        warnings.warn(f"{root}: {counted(n, 'image')} directly in the dataset folder (e.g. "
                      f"{loose[0][0]}) {agree(n, 'belongs', 'belong')} to no class and "
                      f"{agree(n, 'is', 'are')} not read; put {agree(n, 'it', 'them')} in a "
                      "class sub-folder.", stacklevel=4)


def dead_links_left_out(links: Sequence[Path], root: Path) -> str:
    """What a warning says of ``links``, links named like images that lead to no file
    (:func:`broken_image_links`), each named relative to ``root``: "point to files that do not
    exist and are left out (e.g. NAME -> TARGET)", or where one goes round in a loop of links
    "... or go round in a loop ..." and that one as the example."""
    loops = [p for p in links if link_chain(p)[1]]
    first = loops[0] if loops else links[0]
    chain = [str(first.relative_to(root)), *link_chain(first)[0][1:]]
    n = len(links)
    either = f" or {agree(n, 'goes', 'go')} round in a loop" if loops else ""
    return (f"{agree(n, 'points to a file that does', 'point to files that do')} not "
            f"exist{either} and {agree(n, 'is', 'are')} left out (e.g. {' -> '.join(chain)})")


def _class_name(root: Path, folder: Path) -> str:
    """The class name of class folder ``folder``: its name read as UTF-8, whatever the locale.
    Under an ASCII locale (``LC_ALL=C`` without Python's UTF-8 mode) Python gives the bytes of
    ``café`` as lone surrogates, and the folder was refused as "not valid UTF-8"; it is the
    same class, with the same label, as under a UTF-8 locale. A name that is not UTF-8 is
    refused: class names become labels in model files, plots and reports."""
    try:
        name = os.fsencode(folder.name).decode("utf-8")
    except UnicodeDecodeError:  # os.listdir gives undecodable bytes as lone surrogates
        raise DatasetError(
            f"{root}: class folder name {os.fsencode(folder.name)!r} is not valid UTF-8; class "
            "names become labels in model files, plots and reports - rename the folder."
        ) from None
    if any(unicodedata.category(c) in ("Cc", "Zl", "Zp") for c in name):
        # a newline or a tab split data info's table and every label drawn with the name
        raise DatasetError(f"{root}: class folder name {name!r} holds a line break or another "
                           "control character; class names become labels in model files, "
                           "plots and reports - rename the folder.")
    return name


def _scan(root: Path, classes: list[str] | None
          ) -> tuple[list[str], list[tuple[Path, str]], np.ndarray, list[tuple]]:
    """Class names, image files (class folder, file name), labels and stat records of one folder
    of class folders. The files are not made ``Path`` objects here: a folder read from the decode
    cache never opens them, and 50,000 ``Path`` objects take 0.2-0.3 s."""
    dirs = _class_dirs(root)
    _warn_dangling(root)
    names = [_class_name(root, d) for d in dirs]
    if classes is None:
        classes = names
    else:
        unknown = [n for n in names if n not in classes]
        if unknown:
            raise DatasetError(f"{root}: {agree(len(unknown), 'class folder', 'class folders')} "
                               f"{', '.join(unknown)} {agree(len(unknown), 'is', 'are')} not "
                               f"among the training classes ({', '.join(classes)}).")
    index = {c: i for i, c in enumerate(classes)}
    files: list[tuple[Path, str]] = []
    labels: list[int] = []
    stats: list[tuple] = []
    subdirs: dict[Path, list[str]] = {}
    others: dict[Path, list[str]] = {}
    broken: dict[Path, list[str]] = {}
    for d, class_name in zip(dirs, names, strict=True):
        # one pass: the files, and the sub-folders, other formats and broken links left out
        images, subdirs[d], others[d], broken[d] = _listing(d)
        for name, *stat in images:
            files.append((d, name))
            labels.append(index[class_name])
            stats.append((f"{class_name}/{name}", *stat))
    _warn_unread(root, subdirs, others, broken)
    return classes, files, np.asarray(labels, dtype=np.int64), stats


class UnreadableImageError(DatasetError):
    """An image file Pillow cannot decode (``path``; ``detail``: why, on one line; ``denied``:
    this user may not read it, so the file itself may be sound)."""

    def __init__(self, path: Path, detail: str, advice: str, denied: bool = False) -> None:
        super().__init__(f"{path}: cannot read image ({detail}); {advice}.")
        self.path, self.detail, self.denied = path, detail, denied


def _unreadable(path: Path, exc: Exception,
                advice: str = "replace or remove the file") -> UnreadableImageError:
    detail = " ".join(str(exc).split())  # Pillow's reason, on one line
    if isinstance(exc, OSError) and exc.strerror:  # not the "[Errno 21] ..." repr
        detail = exc.strerror
    elif "truncated" in detail.lower():
        # Pillow's "Truncated File Read", "image file is truncated (3 bytes not processed)":
        # a copy or download cut short, said so
        detail = "truncated: the file ends before its image does"
    denied = isinstance(exc, PermissionError)
    if denied:  # the file may be sound: replacing it is no fix
        advice = "make it readable (check its permissions and owner) or remove it"
    return UnreadableImageError(path, detail, advice, denied)


def all_unreadable(bad: list[UnreadableImageError], total: int) -> DatasetError:
    """One error for every unreadable file of a folder, so that a user with several (stray
    downloads cut short, empty files) fixes them in one go rather than one per run."""
    if len(bad) == 1:
        return bad[0]
    return DatasetError(f"{unreadable_list(bad, total)}; {_advice_for_all(bad)}.")


def _advice_for_all(bad: list[UnreadableImageError]) -> str:
    """What to do about several unreadable files, as their causes call for: files this user
    may not read are made readable (replacing them is no fix), damaged ones replaced."""
    denied = sum(e.denied for e in bad)
    if not denied:
        return "replace or remove them"
    if denied == len(bad):
        return "make them readable (check their permissions and owner) or remove them"
    return ("make those denied permission readable (check their permissions and owner), "
            "replace the others, or remove them")


def unreadable_list(bad: list[UnreadableImageError], total: int) -> str:
    """"N of TOTAL image files cannot be read: " and the first five, each with why."""
    shown = "; ".join(f"{e.path} ({e.detail})" for e in bad[:5])
    more = f"; and {len(bad) - 5} more" if len(bad) > 5 else ""
    return (f"{len(bad)} of {total} image file{'s' if total != 1 else ''} cannot be read: "
            f"{shown}{more}")


class _ColourImage(Exception):
    """A colour image turned up while decoding a folder as greyscale (see ``_decode_any``)."""


def _to_8bit(im: Image.Image, path: Path) -> Image.Image:
    """``im`` with values in 0..255: 16- and 32-bit integer images are read as 0..65535 and
    float images as 0..1, each scaled to 0..255. ``convert("L")`` would clip them instead: a
    16-bit image would come out almost all white."""
    from PIL import Image

    if im.mode not in ("I", "F") and not im.mode.startswith("I;16"):
        return im
    arr = np.asarray(im)
    if im.mode == "F":
        if arr.size and not (np.isfinite(arr).all() and arr.min() >= 0.0 and arr.max() <= 1.0):
            raise DatasetError(
                f"{path}: floating-point image with values outside 0..1 (found {arr.min():g}.."
                f"{arr.max():g}); mlplab reads float images as intensities in 0..1 - rescale "
                "it or save it as an 8- or 16-bit image.")
        return Image.fromarray(np.rint(arr * 255.0).astype(np.uint8))
    if im.mode == "I" and arr.size and (arr.min() < 0 or arr.max() > 65535):
        raise DatasetError(
            f"{path}: 32-bit image with values {arr.min()}..{arr.max()}; mlplab reads integer "
            "images as 16-bit (0..65535) - save it as an 8- or 16-bit image.")
    # 0..65535 onto 0..255 rounding to nearest: 257 * v (an 8-bit value widened) gives v back
    return Image.fromarray(((arr.astype(np.uint32) + 128) // 257).astype(np.uint8))


def _grey_palette(im: Image.Image) -> bool:
    """A palette image (every GIF, some PNGs) whose used colours are all grey."""
    if im.mode not in ("P", "PA") or im.getpalette() is None:
        return False
    palette = np.asarray(im.getpalette(), dtype=np.uint8).reshape(-1, 3)  # RGB, as the default
    index = np.asarray(im)
    used = np.unique(index if index.ndim == 2 else index[..., 0])  # PA: (index, alpha)
    rows = palette[used[used < len(palette)]]
    return bool((rows == rows[:, :1]).all())


#: EXIF orientation (tag 0x0112) -> Pillow's transpose that shows the image upright: 2 mirrored,
#: 3 upside down, 4 upside down and mirrored, 5-8 turned a quarter (6 and 8: phones held upright)
_ORIENTATION = {2: "FLIP_LEFT_RIGHT", 3: "ROTATE_180", 4: "FLIP_TOP_BOTTOM", 5: "TRANSPOSE",
                6: "ROTATE_270", 7: "TRANSVERSE", 8: "ROTATE_90"}


def _orientation(im: Image.Image) -> int:
    """The EXIF orientation still to apply to ``im`` once loaded (1, upright as stored, when it
    has none). Cameras and phones store a photo as the sensor read it and record here how to
    turn it; every viewer shows it turned, so the network must see it turned too. Damaged EXIF
    counts as none: the pixels are still fine. A TIFF that Pillow itself turns as it loads it
    (Pillow 9 does, and 13) has none left to apply."""
    if im.format == "TIFF" and _pillow_turns_tiffs()[0]:
        return 1
    return _stored_orientation(im)


def _upright_size(im: Image.Image) -> tuple[int, int]:
    """``(width, height)`` of ``im`` once turned upright, from its header alone: a quarter turn
    swaps them, unless Pillow already gives a TIFF's turned size as it opens it (Pillow 13)."""
    turned_already = im.format == "TIFF" and _pillow_turns_tiffs()[1]
    quarter = _stored_orientation(im) in (5, 6, 7, 8)
    return im.size[::-1] if quarter and not turned_already else im.size


def _stored_orientation(im: Image.Image) -> int:
    """The EXIF orientation that ``im``'s file records (1 when none, or damaged)."""
    try:
        value = im.getexif().get(0x0112, 1)
    except Exception:
        return 1
    return value if value in _ORIENTATION else 1


@functools.cache
def _pillow_turns_tiffs() -> tuple[bool, bool]:
    """Whether this Pillow turns a TIFF as its EXIF orientation says as it loads it (Pillow 9
    and 13 do), and whether it gives the turned size as it opens it (13 does): asked of a 2 x 1
    TIFF turned a quarter. mlplab turned such a TIFF a second time."""
    from PIL import Image

    try:
        exif = Image.Exif()
        exif[0x0112] = 6
        buffer = io.BytesIO()
        Image.new("L", (2, 1)).save(buffer, "TIFF", exif=exif)
        buffer.seek(0)
        with Image.open(buffer) as im:
            sized = im.size == (1, 2)
            im.load()
            return im.size == (1, 2), sized
    except Exception:  # a Pillow that cannot write the probe: one that reads TIFFs as stored
        return False, False


def _upright(im: Image.Image, orientation: int) -> Image.Image:
    """``im`` turned as its EXIF ``orientation`` says (Pillow's ``ImageOps.exif_transpose``,
    without its copy of every image that has no orientation to apply)."""
    if orientation == 1:
        return im
    from PIL import Image

    return im.transpose(getattr(getattr(Image, "Transpose", Image), _ORIENTATION[orientation]))


def _read_image(path: Path, mode: str, size: tuple[int, int] | None,
                grey_only: bool = False, advice: str | None = "replace or remove the file"
                ) -> np.ndarray:
    """One image as ``uint8 (H, W, C)`` in ``mode`` (``"L"`` or ``"RGB"``), turned upright as its
    EXIF orientation says and resized to ``size``. With ``grey_only`` a colour image raises
    ``_ColourImage`` instead of being made grey. ``advice``: what an unreadable file's error tells
    the user to do (None: a fixed ``size``, a trained model's, which no option changes)."""
    stored = None  # the file's own size, once open: for a message
    try:
        with _decoding_file(path), open_image(path) as opened:
            im: Image.Image = opened  # a plain Image once converted below
            stored = im.size
            if grey_only and im.mode not in GREY_MODES and not _grey_palette(im):
                raise _ColourImage(path)
            orientation = _orientation(im)
            # the pixels now: Pillow turns a TIFF as it loads it, and its size changes then
            # (Pillow 9 gives the stored size until the load, which sized a resize wrongly)
            im.load()
            if im.mode == "P" and isinstance(im.info.get("transparency"), bytes):
                # a PNG palette with an alpha per colour: made L or RGB directly, Pillow warns
                # (naming no file) that it "should be converted to RGBA images"; through RGBA
                # it gives the same pixels, alpha dropped, without the warning
                im = im.convert("RGBA")
            im = _to_8bit(im, path)
            if im.mode != mode:
                im = im.convert(mode)
            im = _upright(im, orientation)
            if size is not None and im.size != (size[1], size[0]):
                im = im.resize((size[1], size[0]), pil_bilinear())
            arr = np.asarray(im, dtype=np.uint8)
    except (DatasetError, _ColourImage):
        raise
    except MemoryError:
        # a sound file, not an unreadable one: every image of a folder was "unreadable ()"
        # when the size asked for did not fit in memory
        sizes = [f"{stored[0]}x{stored[1]}"] if stored is not None else []
        if size is not None:
            sizes.append(f"resized to {size[1]}x{size[0]}")
        what = f" ({', '.join(sizes)}, width x height)" if sizes else ""
        shrink = ("" if advice is None else f" or pass a smaller {_image_size_setting()}"
                  if size is not None else f" or pass {_image_size_setting()} to shrink it")
        raise DatasetError(f"{path}: not enough memory to decode it{what}; free some memory"
                           f"{shrink}.") from None
    except Exception as exc:
        from PIL import Image

        if isinstance(exc, Image.DecompressionBombError):  # a sound image, only too large
            raise _unreadable(path, exc, "downscale it (Pillow refuses an image this large as "
                                         "a possible decompression bomb)") from None
        raise _unreadable(path, exc, advice or "check the file") from None
    return arr if arr.ndim == 3 else arr[:, :, None]


def read_image(path: str | os.PathLike, image_shape: Sequence[int]) -> np.ndarray:
    """One image file decoded exactly as a folder dataset's images are (wide greyscale scaled to
    0..255, alpha dropped, turned upright as its EXIF orientation says, bilinear resize), as
    ``uint8`` of ``image_shape`` ``(H, W, C)`` with C 1 (grey) or 3 (RGB): a trained model's
    input, e.g. ``load_model(...).extra["image_shape"]``.
    A file that cannot be read is a :class:`DatasetError` naming it."""
    shape = tuple(int(n) for n in image_shape)
    # an (H, W) shape failed to unpack, a zero side was blamed on the file
    if len(shape) != 3 or min(shape[:2]) < 1 or shape[2] not in (1, 3):
        raise ValueError(f"image_shape must be (H, W, C) with positive H and W and C 1 (grey) "
                         f"or 3 (RGB) channels; got {shape}.")
    H, W, C = shape
    path = Path(path)
    if not path.exists():  # (a link that leads nowhere, or round a loop, says which)
        raise DatasetError(f"{path}: {link_trouble(path) or 'no such image file'}.")
    kind = special_file(path)
    # a pipe is read as a file is (a shell's <(cat a.png), /dev/stdin); a device may never end
    if kind is not None and not kind.startswith("a named pipe"):
        what = "give the image files in it" if kind == "a folder" else \
            "save the image to a file and give that"
        raise DatasetError(f"{path}: {kind}, not an image file; {what}.")
    return _read_image(path, "L" if C == 1 else "RGB", (H, W), advice=None)


def image_files(folder: str | os.PathLike) -> list[Path]:
    """The image files directly inside ``folder`` (by extension, hidden files skipped), sorted
    by name: what a class folder contributes to a dataset."""
    folder = Path(folder)
    return [folder / entry[0] for entry in _image_files(folder)]


def unread_image_files(folder: str | os.PathLike) -> list[Path]:
    """The files directly inside ``folder`` named as images in a format mlplab does not read
    (``OTHER_IMAGE_EXTENSIONS``: a phone's ``.heic`` photos, ...), sorted by name: what
    :func:`image_files` leaves out, for a caller to say so."""
    folder = Path(folder)
    return [folder / name for name in _listing(folder)[2]]


def broken_image_links(folder: str | os.PathLike) -> list[Path]:
    """The links directly inside ``folder`` named as images whose target does not exist (or
    that go round in a loop of links), sorted by name: what :func:`image_files` leaves out
    with nothing to read, for a caller to say so."""
    folder = Path(folder)
    return [folder / name for name in _listing(folder)[3]]


def decoded_otherwise_before(root: str | os.PathLike, decoding: int
                             ) -> tuple[Path, str] | None:
    """The first image of the folder dataset ``root`` (its class folders, or those of its
    ``train/``, ``val/`` and ``test/``) that :data:`DECODING` ``decoding``, an older mlplab's,
    made into other pixels than this mlplab does, with what it is; None when there is none. For
    a run that recorded an older decoding (or none): its model was trained on the older
    pixels."""
    root = user_path(root)
    tops = list(split_folders(root).values()) or [root]
    for top in tops:
        if not top.is_dir():
            continue
        for class_dir in _class_dirs(top):
            for path in image_files(class_dir):
                try:
                    with open_image(path) as im:
                        if decoding < 2 and im.mode in _WIDE_GREY_MODES:
                            return path, ("a 16-bit, 32-bit or floating-point greyscale image, "
                                          "which mlplab clipped to 0..255 before 29 November "
                                          "2026 and scales since")
                        if decoding < 3 and _orientation(im) != 1:
                            return path, ("a photo with an EXIF orientation, which mlplab read "
                                          "as stored before 30 November 2026 and turns upright "
                                          "since")
                        # (decoding 2 did not turn photos at all: a TIFF was Pillow's alone)
                        if decoding == 3 and im.format == "TIFF" and _pillow_turns_tiffs()[0] \
                                and _stored_orientation(im) != 1:
                            return path, ("a TIFF with an EXIF orientation, which Pillow turns "
                                          "as it loads it and mlplab turned a second time "
                                          "before 2 December 2026")
                except Exception:  # unreadable: loading the data reports it
                    continue
    return None


def _decode(paths: list[Path], mode: str, size: tuple[int, int] | None,
            grey_only: bool = False, progress: bool = True) -> np.ndarray:
    """Every image of ``paths`` as ``uint8 (N, H, W, C)`` in ``mode``, decoded by a few threads.
    ``grey_only``: stop at the first colour image (``_ColourImage``). ``progress``: a bar."""
    bad: list[tuple[int, UnreadableImageError]] = []  # every unreadable file, reported at the end
    start, first = _first_readable(paths, mode, size, grey_only, bad)
    if size is None:  # an odd first image must not size the whole array (101 GiB for a photo)
        _check_sampled_sizes(paths, start, first.shape)
    out = _images_array(paths, start, first)
    out[start] = first
    _decode_rest(paths, start, out, mode, size, grey_only, bad, progress)
    if bad:
        raise all_unreadable([e for _, e in sorted(bad, key=lambda b: b[0])], len(paths))
    return out


def _first_readable(paths: list[Path], mode: str, size: tuple[int, int] | None,
                    grey_only: bool, bad: list[tuple[int, UnreadableImageError]]
                    ) -> tuple[int, np.ndarray]:
    """The index and image of the first readable file (the one that sizes the array), the
    unreadable ones before it added to ``bad``; every file unreadable is one error."""
    start = 0
    while True:
        try:
            return start, _read_image(paths[start], mode, size, grey_only)
        except UnreadableImageError as exc:
            bad.append((start, exc))
            start += 1
            if start == len(paths):
                raise all_unreadable([e for _, e in bad], len(paths)) from None


def _check_sampled_sizes(paths: list[Path], start: int, first_shape: tuple[int, ...]) -> None:
    """Refuse a folder whose middle or last image (by its header alone) has another size than
    the first readable one, before an array of that size is allocated for them all."""
    for other in sorted({paths[len(paths) // 2], paths[-1]} - {paths[start]}):
        try:
            with _decoding_file(other), open_image(other) as im:  # the header (and EXIF)
                wh = _upright_size(im)
        except Exception:  # unreadable: the decode reports it, in order
            continue
        if wh != (first_shape[1], first_shape[0]):
            raise _size_mismatch(other, wh, paths[start], first_shape)


def _images_array(paths: list[Path], start: int, first: np.ndarray) -> np.ndarray:
    """An empty array for every image of ``paths``, each shaped as ``first``; one too large for
    memory is an error that says how to shrink the images."""
    try:
        return np.empty((len(paths), *first.shape), dtype=np.uint8)
    except MemoryError:
        raise DatasetError(
            f"{len(paths)} images of {first.shape[0]}x{first.shape[1]} ({paths[start].name}) "
            f"need {len(paths) * first.size / 2**30:.1f} GiB; pass {_image_size_setting()} "
            "to shrink them.") from None


def _decode_rest(paths: list[Path], start: int, out: np.ndarray, mode: str,
                 size: tuple[int, int] | None, grey_only: bool,
                 bad: list[tuple[int, UnreadableImageError]], progress: bool = True) -> None:
    """Decode the images after ``start`` into ``out`` in chunks, on a few threads: unreadable
    files into ``bad``; an image sized unlike ``out[start]`` stops them all with an error."""
    first_shape = out.shape[1:]
    failed = threading.Event()  # one thread's error stops the others: the result is discarded

    def work(chunk: range) -> None:
        try:
            for i in chunk:
                if failed.is_set():
                    return
                try:
                    arr = _read_image(paths[i], mode, size, grey_only)
                except UnreadableImageError as exc:
                    bad.append((i, exc))  # list.append is atomic: no lock needed
                    continue
                if arr.shape != first_shape:
                    raise _size_mismatch(paths[i], (arr.shape[1], arr.shape[0]), paths[start],
                                         first_shape)
                out[i] = arr
        except BaseException:
            failed.set()
            raise

    step = 512
    chunks = [range(s, min(s + step, len(paths))) for s in range(start + 1, len(paths), step)]
    with progress_bar(progress, total=len(paths),
                      desc=f"decoding {paths[0].parent.parent.name}",
                      unit="img", leave=False) as bar:
        bar.update(start + 1)
        _run_chunks(work, chunks, bar)


def _run_chunks(work: Callable[[range], None], chunks: list[range], bar: tqdm) -> None:
    """``work`` on every chunk, on up to 4 threads (none for a single chunk or core), the bar
    moved on as each chunk is done; the first error is raised."""
    workers = min(4, available_cpus(), max(len(chunks), 1))
    if workers <= 1:
        for c in chunks:
            work(c)
            bar.update(len(c))
    else:
        with ThreadPoolExecutor(workers) as ex:
            for c, _ in zip(chunks, ex.map(work, chunks)):  # re-raises the first error
                bar.update(len(c))


def _image_size_setting() -> str:
    # the caller's words: the flag on the command line, the argument in Python (not both)
    from mlplab._validation import setting

    return setting("--image-size N", "image_size=N")


def _size_mismatch(path: Path, wh: tuple[int, int], first: Path,
                   first_shape: tuple[int, ...]) -> DatasetError:
    # the first image by its class folder too: every class may have a 0001.jpg. Sizes are
    # height x width, as --image-size reads them (Pillow's wh is width first)
    return DatasetError(f"{path}: image is {wh[1]}x{wh[0]} but {first.parent.name}/{first.name} is "
                        f"{first_shape[0]}x{first_shape[1]} (height x width); pass "
                        f"{_image_size_setting()} to resize all images to one size.")


def _decode_any(paths: list[Path], size: tuple[int, int] | None,
                progress: bool = True) -> np.ndarray:
    """Greyscale (one channel) if every image is greyscale, else RGB, whatever the files' order.

    Decoding as greyscale stops at the first colour image and starts again as RGB, so a colour
    folder costs one extra file opened, an all-grey folder nothing; only a folder that mixes
    them decodes its leading grey images twice. Reading every header first instead would cost
    about half a decode of small images for every grey folder."""
    try:
        return _decode(paths, "L", size, grey_only=True, progress=progress)
    except _ColourImage:
        return _decode(paths, "RGB", size, progress=progress)


def _layout_hint(root: Path) -> str:
    """What the folder of a dataset with no images in class folders seems to be instead: a class
    folder itself (images directly inside), or one of split folders whose names mlplab does not
    take (``Train/``, ``training/``: they were read as classes holding only folders)."""
    try:
        entries = list(root.iterdir())
        if any(p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file() for p in entries):
            # (resolved: the parent of "." or ".." as typed is no folder above it)
            return (f"; its images lie directly inside it, as in one class's folder: give the "
                    f"folder above it ({root.resolve().parent}) if that holds one folder per "
                    "class")
        nested = sorted(p.name for p in entries
                        if p.is_dir() and any(q.is_dir() for q in p.iterdir()))
    except OSError:
        return ""
    if not nested:
        return ""
    return (f"; {', '.join(nested[:3])}{', ...' if len(nested) > 3 else ''} hold folders, not "
            "images: split folders must be named train/, val/ (or valid/, validation/) and "
            "test/, in lower case")


def read_image_folder(root: str | os.PathLike, image_size: tuple[int, int] | None = None, *,
                      classes: list[str] | None = None, mode: str | None = None,
                      cache: bool = True, progress: bool = True
                      ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Decode every image under ``root/<class>/`` into ``(X uint8 (N, H, W, C), y, classes)``,
    with a progress bar (``progress``; shown only in a terminal or a notebook)."""
    root = user_path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: {no_such_folder(root)}.")
    training = classes is None  # the class list comes from these folders
    classes, files, y, stats = _scan(root, classes)
    if not files:
        raise DatasetError(
            f"{root}: no images found; expected one sub-folder per class holding image files "
            f"({', '.join(IMAGE_EXTENSIONS[:3])}, ...), e.g. {root}/cat/0001.png"
            f"{_layout_hint(root)}.")
    if training:
        # a class with no examples would still get an output unit and a column in every table
        counts = np.bincount(y, minlength=len(classes))
        empty = [c for c, n in zip(classes, counts, strict=True) if n == 0]
        if empty:
            n, them = len(empty), agree(len(empty), "it", "them")
            raise DatasetError(f"{root}: {agree(n, 'class folder', 'class folders')} "
                               f"{', '.join(empty)} {agree(n, 'holds', 'hold')} no images; add "
                               f"images to {them} or move {them} out of the dataset folder.")
    def cache_of(decoded_as: str | None) -> Path | None:
        return _cache_file(root, [CACHE_VERSION, str(root.resolve()), image_size, decoded_as,
                                  classes], stats) if cache else None

    cache_file = cache_of(mode)
    # a mode asked for (evaluate and --resume ask for the run's channels) is also found in the
    # cache of the same folder decoded with the mode chosen from its images (as train decodes
    # it), when that chose the same channels: the same pixels. The first evaluate after
    # training decoded all of CIFAR-10's 50,000 JPEGs again, into a second, identical cache.
    for candidate in (cache_file, cache_of(None) if mode else None):
        cached = _read_cache(candidate, y, image_size, mode) if candidate is not None else None
        if cached is not None:
            return cached, y, classes
    paths = [d / name for d, name in files]
    X = _decode(paths, mode, image_size, progress=progress) if mode else \
        _decode_any(paths, image_size, progress)
    if cache_file is not None:
        from mlplab.io import savez

        try:
            with atomic_path(cache_file, suffix=".part") as tmp, open(tmp, "wb") as f:
                savez(f, {"X": X, "y": y})
            _remove_stale_caches(cache_file)
        except OSError as exc:
            from mlplab._validation import setting

            why = exc.strerror or (os.strerror(exc.errno) if exc.errno else exc)
            warnings.warn(f"could not write the image cache {cache_file} ({why}); the images "
                          "are decoded again next time: set MLPLAB_DATA to a folder you can "
                          f"write to, or pass {setting('--no-cache', 'cache=False')}.",
                          stacklevel=2)
    return X, y, classes


def _cache_file(root: Path, slot: list, contents: list) -> Path | None:
    """Where the decode cache of ``root`` lives, or None where it cannot (no home folder for the
    data root, a name the file system refuses): the cache only saves time. ``slot`` (the folder,
    the decoding asked for) and ``contents`` (its files' names, sizes and times) each key a part
    of the name: a new cache of the same slot replaces the older ones
    (:func:`_remove_stale_caches`)."""
    key = _key(slot)[:_SLOT_KEY] + "-" + _key(contents)[:_CONTENTS_KEY]
    try:
        # at most 80 bytes of the folder's name: the file system's limit is 255
        cut = os.fsencode(root.name or "root")[:80]
        try:
            name = os.fsdecode(cut)
        except UnicodeDecodeError:  # cut inside a character, where names must be text (Windows)
            name = cut.decode("utf-8", "ignore")
        path = data_root(cache=True) / "folder-cache" / f"{name}-{key}.npz"
        path.is_file()  # a name too long, a folder that cannot be entered: OSError here
    except (DatasetError, OSError):
        return None
    return path


#: hex digits of the two keys in a cache file's name, ``<folder>-<slot>-<contents>.npz``
_SLOT_KEY, _CONTENTS_KEY = 10, 16


def _key(ident: list) -> str:
    return hashlib.sha256(json.dumps(ident).encode()).hexdigest()


def _remove_stale_caches(cache_file: Path) -> None:
    """Remove the caches of ``cache_file``'s slot made of the folder's earlier contents: every
    change of an image (or one added) left another full copy of the folder behind (154 MB for
    CIFAR-10's training images). Another image size or channel count is another slot, kept."""
    slot = cache_file.name[:-len(f"-{'0' * _CONTENTS_KEY}.npz")]  # the folder's name and slot
    folder_name = slot[:-(_SLOT_KEY + 1)]
    # the one name of mlplab before 2 Dec 2026 (folder name, 20 hex digits), which no mlplab
    # reads now, whichever folder of that name it was made of
    old_layout = re.compile(re.escape(folder_name) + r"-[0-9a-f]{20}\.npz")
    try:
        others = list(cache_file.parent.iterdir())
    except OSError:
        return
    for other in others:
        # exact name shape: a temporary file (".name....") or another folder's cache whose
        # name merely starts the same never matches
        if other != cache_file and (
                (other.name.startswith(slot + "-") and len(other.name) == len(cache_file.name))
                or old_layout.fullmatch(other.name)):
            with contextlib.suppress(OSError):  # gone already, or open elsewhere (Windows)
                other.unlink()


def _read_cache(path: Path, y: np.ndarray, image_size: tuple[int, int] | None,
                mode: str | None) -> np.ndarray | None:
    """The cached images, if the file holds what this folder's decode would give in shape and
    labels; a damaged or foreign file is rebuilt, never trusted."""
    try:
        if not path.is_file():
            return None
        with np.load(path, allow_pickle=False) as z:
            X, cached_y = z["X"], z["y"]
    except Exception:
        return None
    channels = {"L": (1,), "RGB": (3,)}.get(mode or "", (1, 3))
    ok = (X.dtype == np.uint8 and X.ndim == 4 and len(X) == len(y) and X.shape[3] in channels
          and (image_size is None or tuple(X.shape[1:3]) == tuple(image_size))
          and np.array_equal(cached_y, y))
    return X if ok else None


class FolderSplits(NamedTuple):
    """The splits an image folder gives (each ``(X uint8 (N, H, W, C), y)``) and its classes."""

    train: tuple[np.ndarray, np.ndarray]
    val: tuple[np.ndarray, np.ndarray] | None
    test: tuple[np.ndarray, np.ndarray] | None
    classes: list[str]


def split_folders(root: Path) -> dict[str, Path]:
    """``{"train": ..., "val": ..., "test": ...}``: the split folders of the dataset folder
    ``root`` that exist (``val`` under any of :data:`VAL_FOLDER_NAMES`); empty when ``root`` has
    no ``train/`` and so is itself a folder of class folders. Two validation folders are refused:
    which one holds the validation images is the user's to say."""
    if not (root / "train").is_dir():
        return {}
    vals = [root / n for n in VAL_FOLDER_NAMES if (root / n).is_dir()]
    if len(vals) > 1:
        raise DatasetError(f"{root}: {' and '.join(f'{v.name}/' for v in vals)} both look like "
                           "the validation split; keep one of them (or rename the other).")
    found = {"train": root / "train", **({"val": vals[0]} if vals else {})}
    if (root / "test").is_dir():
        found["test"] = root / "test"
    return found


def _warn_beside(root: Path, folders: dict[str, Path]) -> None:
    """Name the sub-folders beside ``train/`` that are not splits: a class folder left there, or
    a ``dev/`` split, would otherwise be dropped without a word."""
    # by identity, not name: on a case-insensitive disk (Windows, macOS) root / "train" finds
    # Train/, which its listing names Train
    other = [d.name for d in _class_dirs(root)
             if not any(os.path.samefile(d, p) for p in folders.values())]
    if other:
        shown = _first_few([f"{n}/" for n in other])
        warnings.warn(f"{root}: {agree(len(other), 'sub-folder', 'sub-folders')} {shown} "
                      f"beside train/ {agree(len(other), 'is', 'are')} not read; a dataset "
                      "folder with train/ reads only train/, test/ and one of "
                      f"{', '.join(f'{n}/' for n in VAL_FOLDER_NAMES)} (the validation split).",
                      stacklevel=4)


def load_folder(path: str | os.PathLike, image_size: tuple[int, int] | None = None,
                cache: bool = True, channels: int | None = None,
                progress: bool = True) -> FolderSplits:
    """The splits of an image folder.

    With ``train/`` (and optionally ``val/`` and ``test/``) sub-folders those are the splits;
    otherwise every class sub-folder is training data. ``channels`` 1 or 3 decodes every image as
    grey or RGB (a run's own layout); None decides from the training images (grey only if every
    image is), and the other splits are decoded to the same layout. ``progress``: a bar while
    images are decoded.
    """
    if channels not in (None, 1, 3):
        raise DatasetError(f"channels must be None, 1 or 3; got {channels!r}.")
    mode = {None: None, 1: "L", 3: "RGB"}[channels]
    root = user_path(path)
    if not root.is_dir():
        # a file there is not "no such folder" (e.g. folder:data.zip, not yet extracted)
        what = "a file, not a folder" if root.exists() else no_such_folder(root)
        raise DatasetNotFoundError(f"{root}: {what}; folder:PATH needs a folder with "
                                   "one sub-folder per class.")
    folders = split_folders(root)
    if not folders:
        X, y, classes = read_image_folder(root, image_size, mode=mode, cache=cache,
                                          progress=progress)
        return FolderSplits((X, y), None, None, classes)
    _warn_beside(root, folders)
    _warn_dangling(root)  # a val/ or test/ linked to a disk not mounted: that split taken else
    X, y, classes = read_image_folder(folders["train"], image_size, mode=mode, cache=cache,
                                      progress=progress)
    others: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for split in ("val", "test"):
        if split not in folders:
            continue
        Xs, ys, _ = read_image_folder(folders[split], image_size, classes=classes,
                                      mode="L" if X.shape[3] == 1 else "RGB", cache=cache,
                                      progress=progress)
        if Xs.shape[1:] != X.shape[1:]:
            raise DatasetError(f"{folders[split]}: images are {Xs.shape[1:]} but the training "
                               f"images are {X.shape[1:]}; pass {_image_size_setting()}.")
        others[split] = (Xs, ys)
    return FolderSplits((X, y), others.get("val"), others.get("test"), classes)
