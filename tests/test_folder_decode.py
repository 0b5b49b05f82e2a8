"""Decoding a folder of images (read_image_folder, through data.folder._decode): a folder large
enough for several decoding threads against Pillow's own decode, and the errors of the first
readable image, a wrong size found by a thread, every file unreadable and an array too large."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from mlplab.data import DatasetError
from mlplab.data.folder import read_image_folder

N = 1100  # three chunks of 512 images: decoded by several threads where there are cores


def _folder(root, n, size=(3, 2), mode="RGB"):
    rs = np.random.RandomState(n)
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        for i in range(n // 2):
            shape = (*size, 3) if mode == "RGB" else size
            Image.fromarray(rs.randint(0, 256, shape).astype(np.uint8), mode).save(
                root / c / f"{i:04d}.png")
    return [root / c / f"{i:04d}.png" for c in ("a", "b") for i in range(n // 2)]


def _pillow(path, mode):
    arr = np.asarray(Image.open(path).convert(mode))
    return arr if arr.ndim == 3 else arr[:, :, None]


@pytest.mark.parametrize("mode", ["RGB", "L"])
def test_a_large_folder_decodes_as_pillow_does_in_file_order(tmp_path, mode):
    paths = _folder(tmp_path / "f", N, mode=mode)
    X, y, classes = read_image_folder(tmp_path / "f", cache=False)
    assert classes == ["a", "b"] and y.tolist() == [0] * (N // 2) + [1] * (N // 2)
    np.testing.assert_array_equal(X, np.stack([_pillow(p, mode) for p in paths]))


def test_unreadable_leading_files_are_skipped_to_size_the_array_then_named(tmp_path):
    paths = _folder(tmp_path / "f", 8)
    for p in paths[:2]:
        p.write_bytes(b"")
    with pytest.raises(DatasetError, match=r"^2 of 8 image files cannot be read: \S*a/0000\.png "
                                           r"\(the file is empty, 0 bytes\); \S*a/0001\.png "):
        read_image_folder(tmp_path / "f", cache=False)


def test_every_file_unreadable_is_one_error(tmp_path):
    paths = _folder(tmp_path / "f", 4)
    for p in paths:
        p.write_text("not an image")
    with pytest.raises(DatasetError, match=r"^4 of 4 image files cannot be read: \S*a/0000\.png"):
        read_image_folder(tmp_path / "f", cache=False)


def test_a_wrong_size_found_while_decoding_beats_the_unreadable_files(tmp_path):
    # neither the middle nor the last image (whose headers are read before decoding): only the
    # decode finds the odd size, in another chunk than the unreadable file
    paths = _folder(tmp_path / "f", N)
    paths[3].write_bytes(b"")
    Image.new("RGB", (7, 4)).save(paths[900])
    with pytest.raises(DatasetError, match=r"^\S*b/0350\.png: image is 4x7 but a/0000\.png is "
                                           r"3x2 \(height x width\); pass image_size=N"):
        read_image_folder(tmp_path / "f", cache=False)
    # resized to one size, the same folder fails only for its unreadable file
    with pytest.raises(DatasetError, match=r"^\S*a/0003\.png: cannot read image"):
        read_image_folder(tmp_path / "f", (3, 2), cache=False)


def test_the_middle_and_last_headers_are_checked_before_the_array_is_allocated(tmp_path,
                                                                              monkeypatch):
    # an odd first image (a photo among thumbnails) must not size an array of them all
    paths = _folder(tmp_path / "f", 8)
    Image.new("RGB", (7, 4)).save(paths[0])
    _no_array_of(monkeypatch, (8, 4, 7, 3))
    with pytest.raises(DatasetError, match=r"^\S*b/0000\.png: image is 3x2 but a/0000\.png is "
                                           r"4x7 \(height x width\)"):
        read_image_folder(tmp_path / "f", mode="RGB", cache=False)


def _no_array_of(monkeypatch, shape):
    """np.empty raises MemoryError for an array of ``shape``, as for one too large."""
    real = np.empty

    def empty(size, *args, **kwargs):
        if tuple(np.atleast_1d(size)) == shape:
            raise MemoryError
        return real(size, *args, **kwargs)

    monkeypatch.setattr(np, "empty", empty)


def test_an_array_too_large_for_memory_says_how_to_shrink_it(tmp_path, monkeypatch):
    _folder(tmp_path / "f", 4)
    _no_array_of(monkeypatch, (4, 3, 2, 3))
    with pytest.raises(DatasetError, match=r"^4 images of 3x2 \(0000\.png\) need 0\.0 GiB; pass "
                                           r"image_size=N to shrink them\.$"):
        read_image_folder(tmp_path / "f", mode="RGB", cache=False)


def test_an_image_size_too_large_for_memory_is_not_an_unreadable_file(tmp_path, monkeypatch):
    """A resize whose result did not fit in memory made every image of the folder "cannot be
    read: 0000.png ()", an empty reason for sound files."""
    from PIL import Image as PILImage

    _folder(tmp_path / "f", 4)

    def resize(self, *args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(PILImage.Image, "resize", resize)
    with pytest.raises(DatasetError, match=r"0000\.png: not enough memory to decode it \(2x3, "
                                           r"resized to 11x9, width x height\); free some memory "
                                           r"or pass a smaller image_size=N\.$"):
        read_image_folder(tmp_path / "f", (9, 11), mode="RGB", cache=False)
    # one image of a trained model's fixed size (predict): no option to shrink it
    from mlplab.data.folder import read_image

    with pytest.raises(DatasetError, match=r"0000\.png: not enough memory to decode it \(2x3, "
                                           r"resized to 11x9, width x height\); free some "
                                           r"memory\.$"):
        read_image(tmp_path / "f" / "a" / "0000.png", (9, 11, 3))


def test_unreadable_files_of_every_chunk_are_named_in_file_order(tmp_path):
    paths = _folder(tmp_path / "f", N)
    for i in (1000, 5, 600):
        paths[i].write_bytes(b"")
    with pytest.raises(DatasetError, match=r"^3 of 1100 image files cannot be read: \S*a/0005\.png"
                                           r" .*; \S*b/0050\.png .*; \S*b/0450\.png .*; replace"):
        read_image_folder(tmp_path / "f", cache=False)
