"""load_dataset: the bundled digits and image folders (official formats: test_data_formats.py)."""

import os
import pickle
import re
import tracemalloc

import numpy as np
import pytest
from PIL import Image

from mlplab.data import Dataset, DatasetError, load_dataset
from mlplab.data.base import resolve_size, stratified_split


@pytest.fixture(autouse=True)
def _data_root(tmp_path, monkeypatch):
    monkeypatch.setenv("MLPLAB_DATA", str(tmp_path / "cache"))


def test_digits_matches_sklearn_and_is_stratified():
    from sklearn.datasets import load_digits

    ds = load_dataset("digits")
    ref = load_digits()
    assert ds.image_shape == (8, 8, 1) and ds.X_train.dtype == np.uint8
    assert (len(ds.y_train), len(ds.y_val), len(ds.y_test)) == (1437, 180, 180)
    assert ds.classes == [str(i) for i in range(10)]
    # every image is one of sklearn's, rescaled 0..16 -> 0..255, with its own label
    allX = np.concatenate([ds.X_train, ds.X_val, ds.X_test])[..., 0].astype(float)
    ally = np.concatenate([ds.y_train, ds.y_val, ds.y_test])
    key = {im.tobytes(): t for im, t in zip(np.rint(ref.images * 255 / 16), ref.target)}
    assert len(allX) == 1797
    assert all(key[x.tobytes()] == t for x, t in zip(allX, ally))
    # stratified: each class is about 10% of validation
    assert np.bincount(ds.y_val, minlength=10).min() >= 17
    again = load_dataset("digits")
    np.testing.assert_array_equal(ds.y_val, again.y_val)
    other = load_dataset("digits", seed=1)
    assert not np.array_equal(ds.y_val, other.y_val)


def test_an_unseeded_split_is_random_but_says_its_seed(tmp_path):
    """seed=None draws the split's seed and records it (load_options, notes), so the same split
    can be loaded again; before, the seed was unknown and a run could not rebuild its split."""
    first, second = load_dataset("digits", seed=None), load_dataset("digits", seed=None)
    assert not np.array_equal(first.X_val, second.X_val)  # random: 2**32 seeds
    seed = first.load_options["seed"]
    assert isinstance(seed, int) and f"seed {seed})" in first.notes[-1]
    again = load_dataset("digits", seed=seed)
    for split in ("train", "val", "test"):
        np.testing.assert_array_equal(again.split(split)[0], first.split(split)[0])
        np.testing.assert_array_equal(again.split(split)[1], first.split(split)[1])
    _write_images(tmp_path / "pics", ["cat", "dog", "emu"], 10)
    ds = load_dataset(f"folder:{tmp_path / 'pics'}", seed=None)
    again = load_dataset(f"folder:{tmp_path / 'pics'}", seed=ds.load_options["seed"])
    np.testing.assert_array_equal(again.y_val, ds.y_val)
    np.testing.assert_array_equal(again.X_test, ds.X_test)


def test_split_sizes_and_errors():
    ds = load_dataset("digits", val_size=100, test_size=0.5)
    assert len(ds.y_test) == 898 and len(ds.y_val) == 100 and len(ds.y_train) == 1797 - 998
    with pytest.raises(DatasetError, match="val_size must be between 0 and"):
        load_dataset("digits", val_size=5000)
    with pytest.raises(DatasetError, match="test_size 1797 leaves no training images") as exc:
        load_dataset("digits", test_size=1797)  # the option to blame is test_size
    # tuning's worker processes send errors back pickled
    assert str(pickle.loads(pickle.dumps(exc.value))) == str(exc.value)
    with pytest.raises(DatasetError, match="unknown dataset 'imagenet'"):
        load_dataset("imagenet")
    with pytest.raises(DatasetError, match="image size"):
        load_dataset("digits", image_size="big")
    assert resolve_size(None, 10, 3, "x") == 3 and resolve_size(0.25, 8, 0, "x") == 2
    with pytest.raises(DatasetError, match=r"fraction in \(0, 1\); got 1.5"):
        resolve_size(1.5, 8, 0, "x")  # not 12 of the 8 images
    with pytest.raises(DatasetError, match="val_size 1000 leaves no training images"):
        load_dataset("digits", test_size=797, val_size=1000)  # exactly the 1,000 left
    # the validation split is seeded with seed + 1, which NumPy takes up to 2**32 - 1
    assert len(load_dataset("digits", seed=2**32 - 2).y_val) == 180
    with pytest.raises(DatasetError, match=r"seed must be None or an integer between 0 and "
                                           r"2\*\*32 - 2; got 4294967295"):
        load_dataset("digits", seed=2**32 - 1)
    with pytest.raises(DatasetError, match=r"fraction in \(0, 1\); got 1.0"):
        load_dataset("digits", val_size=1.0)  # all of them, not one image
    assert len(load_dataset("digits", val_size=np.float32(0.1)).y_val) == 162  # not 0
    for bad in ("0.1", True):
        with pytest.raises(DatasetError, match="val_size must be a count"):
            load_dataset("digits", val_size=bad)


def test_digits_resized():
    ds = load_dataset("digits", image_size=16)
    assert ds.image_shape == (16, 16, 1) and ds.num_features == 256
    # height x width, every split, each image as Pillow resizes it (width first, bilinear)
    wide = load_dataset("digits", image_size="12x16")
    small = load_dataset("digits")
    for s in ("train", "val", "test"):
        X, _ = wide.split(s)
        assert X.shape[1:] == (12, 16, 1)
        ref = Image.fromarray(small.split(s)[0][0, :, :, 0]).resize((16, 12), Image.BILINEAR)
        np.testing.assert_array_equal(X[0, :, :, 0], np.asarray(ref))


def test_stratified_split_proportions():
    y = np.repeat(np.arange(3), [50, 30, 20])
    keep, hold = stratified_split(y, 10, seed=0)
    assert sorted(np.bincount(y[hold]).tolist()) == [2, 3, 5]
    assert len(np.intersect1d(keep, hold)) == 0 and len(keep) + len(hold) == 100
    assert np.all(np.diff(hold) > 0)


def test_a_stratified_split_keeps_a_class_s_last_image_while_others_can_give():
    """Ten images of one class and one of another, six held out: the largest remainder (0.55
    against 0.45) took the lone image, and training never saw its class. The other class gives
    the sixth instead; with no other way (one image each), the lone image goes."""
    y = np.array([0] * 10 + [1])
    keep, hold = stratified_split(y, 6, seed=0)
    assert np.bincount(y[keep], minlength=2).tolist() == [4, 1] and len(hold) == 6
    # unchanged where no class is emptied: the largest remainders still decide
    y = np.repeat(np.arange(3), [50, 30, 20])
    assert np.bincount(y[stratified_split(y, 7, seed=0)[1]]).tolist() == [4, 2, 1]
    y = np.array([0, 1])
    keep, hold = stratified_split(y, 1, seed=0)
    assert y[hold].tolist() == [0] and y[keep].tolist() == [1]  # the tie to the lower class
    # more to give than classes that can spare one: those give again (a first version took
    # the lone images of classes 1 and 2 here)
    y = np.repeat([0, 1, 2], [5, 1, 1])
    keep, hold = stratified_split(y, 4, seed=0)
    assert np.bincount(y[keep], minlength=3).tolist() == [1, 1, 1] and len(hold) == 4
    # checked against every small case: no class emptied while another had one to spare
    rng = np.random.RandomState(0)
    for _ in range(300):
        counts = rng.randint(1, 6, size=rng.randint(2, 6))
        y = np.repeat(np.arange(len(counts)), counts)
        n_hold = rng.randint(1, len(y))
        keep, hold = stratified_split(y, n_hold, seed=0)
        kept = np.bincount(y[keep], minlength=len(counts))
        assert len(hold) == n_hold and len(keep) + n_hold == len(y)
        assert (kept >= 1).all() or n_hold > len(y) - len(counts), (counts, n_hold, kept)


def _write_images(root, classes, n, size=(6, 5), mode="RGB", ext="png", start=0):
    rs = np.random.RandomState(len(str(root)) + start)
    out = {}
    for c in classes:
        d = root / c
        d.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            shape = (size[0], size[1], 3) if mode == "RGB" else size
            arr = rs.randint(0, 256, size=shape).astype(np.uint8)
            Image.fromarray(arr, mode).save(d / f"{start + i:04d}.{ext}")
            out[(c, start + i)] = arr
    return out


def test_folder_of_class_folders(tmp_path):
    imgs = _write_images(tmp_path / "pics", ["cat", "dog", "emu"], 10)
    (tmp_path / "pics" / "dog" / "notes.txt").write_text("ignored: not an image")
    # hidden folders (Jupyter's checkpoints, a sync tool's) are no class
    _write_images(tmp_path / "pics", [".ipynb_checkpoints"], 1)
    ds = load_dataset(f"folder:{tmp_path / 'pics'}", val_size=3, test_size=6, seed=0)
    assert ds.classes == ["cat", "dog", "emu"] and ds.image_shape == (6, 5, 3)
    assert (len(ds.y_train), len(ds.y_val), len(ds.y_test)) == (21, 3, 6)
    assert np.bincount(ds.y_test).tolist() == [2, 2, 2]
    assert np.bincount(ds.y_val).tolist() == [1, 1, 1]
    assert ds.notes == ["test split: 6 images held out of the training images (stratified, "
                        "seed 0)", "validation split: 3 images (stratified, seed 0)"]
    one = load_dataset(f"folder:{tmp_path / 'pics'}", val_size=1, test_size=1, seed=0)
    assert one.notes == ["test split: 1 image held out of the training images (stratified, "
                         "seed 0)", "validation split: 1 image (stratified, seed 0)"]
    # pixels survive exactly (PNG is lossless) and each image keeps its class
    lookup = {a.tobytes(): c for (c, _), a in imgs.items()}
    for X, y in ((ds.X_train, ds.y_train), (ds.X_test, ds.y_test)):
        assert all(lookup[x.tobytes()] == ds.classes[t] for x, t in zip(X, y))


def test_folder_train_test_grayscale_and_resize(tmp_path):
    root = tmp_path / "set"
    _write_images(root / "train", ["a", "b"], 6, size=(7, 7), mode="L")
    _write_images(root / "test", ["a", "b"], 2, size=(7, 7), mode="L", ext="jpg")
    ds = load_dataset(f"folder:{root}", val_size=2)
    assert ds.image_shape == (7, 7, 1)
    assert (len(ds.y_train), len(ds.y_val), len(ds.y_test)) == (10, 2, 4)
    assert ds.y_test.tolist() == [0, 0, 1, 1]
    small = load_dataset(f"folder:{root}", image_size="4x3", test_size=2)
    assert small.image_shape == (4, 3, 1) and len(small.y_test) == 2
    assert sorted(small.y_test.tolist()) == [0, 1]  # a stratified subset, not the first two
    with pytest.raises(DatasetError, match="class folder zebra is not among the training classes"):
        _write_images(root / "test", ["zebra"], 1, size=(7, 7), mode="L")
        load_dataset(f"folder:{root}")


@pytest.mark.parametrize("val_name", ["val", "valid", "validation"])
def test_a_validation_folder_beside_train_is_the_validation_split(tmp_path, val_name):
    """train/, val/ and test/ (ImageNet's, Kaggle's and Keras's names for val/): val/ is the
    validation split, image for image, and nothing is carved out of train/ for it; before, val/
    was dropped without a word and validation taken from train/."""
    root = tmp_path / "set"
    train = _write_images(root / "train", ["a", "b"], 5, size=(7, 7), mode="L")
    val = _write_images(root / val_name, ["a", "b"], 3, size=(7, 7), mode="L", start=50)
    _write_images(root / "test", ["a", "b"], 2, size=(7, 7), mode="L")
    ds = load_dataset(f"folder:{root}")
    assert (len(ds.y_train), len(ds.y_val), len(ds.y_test)) == (10, 6, 4)
    as_read = {x[..., 0].tobytes(): ds.classes[t] for x, t in zip(ds.X_val, ds.y_val)}
    assert as_read == {a.tobytes(): c for (c, _), a in val.items()}
    assert {x[..., 0].tobytes() for x in ds.X_train} == {a.tobytes() for a in train.values()}
    assert "the 6 images of the validation folder" in ds.notes[-1]
    # a size picks a stratified subset of val/, as test_size does of test/
    some = load_dataset(f"folder:{root}", val_size=2)
    assert sorted(some.y_val.tolist()) == [0, 1] and len(some.y_train) == 10
    assert {x.tobytes() for x in some.X_val} <= {x.tobytes() for x in ds.X_val}
    assert "validation split: 2 of the 6 images of the validation folder" in some.notes[-1]
    # a size of the whole folder takes it whole: not "6 of the 6 images"
    assert load_dataset(f"folder:{root}", val_size=6).notes[-1] == (
        "validation split: the 6 images of the validation folder")
    # and a size of 0 none of it: not "0 of the 6 images"
    assert load_dataset(f"folder:{root}", val_size=0).notes[-1] == "validation split: none"
    # without test/, the test split is still held out of train/, and val/ stays whole
    (root / "test").rename(tmp_path / "moved")
    held = load_dataset(f"folder:{root}", test_size=2)
    assert (len(held.y_train), len(held.y_val), len(held.y_test)) == (8, 6, 2)


def test_two_validation_folders_are_refused_and_other_folders_beside_train_named(tmp_path):
    root = tmp_path / "set"
    _write_images(root / "train", ["a", "b"], 3, size=(7, 7), mode="L")
    _write_images(root / "dev", ["a", "b"], 1, size=(7, 7), mode="L")
    with pytest.warns(UserWarning, match=r"sub-folder dev/ beside train/ is not read; .* "
                                         r"val/, valid/, validation/"):
        ds = load_dataset(f"folder:{root}", val_size=2)
    assert len(ds.y_train) + len(ds.y_val) + len(ds.y_test) == 6  # dev/ left out
    # a val/ linked to a disk that is not mounted: named, not silently replaced by a carved split
    (root / "val").symlink_to(tmp_path / "unmounted" / "val")
    with pytest.warns(UserWarning, match=r"1 link in the dataset folder points to nothing "
                                         r"and is left out \(val -> "):
        load_dataset(f"folder:{root}", val_size=2)
    (root / "val").unlink()
    _write_images(root / "val", ["a", "b"], 1, size=(7, 7), mode="L")
    _write_images(root / "validation", ["a", "b"], 1, size=(7, 7), mode="L")
    with pytest.raises(DatasetError, match="val/ and validation/ both look like the validation "
                                           "split; keep one"):
        load_dataset(f"folder:{root}")


def test_a_default_split_size_that_leaves_no_training_images_is_named_as_the_default():
    """A user who gave only test_size was told "val_size 2 leaves no training images", a size
    they never gave; the message says it is the default and what to change."""
    with pytest.raises(DatasetError, match=r"val_size is not given, and its default, 10% of all "
                                           r"1797 images \(180\), leaves none of the 2 images "
                                           r"after the test split for training; pass a smaller "
                                           r"test_size \(or a val_size below 2\)"):
        load_dataset("digits", test_size=0.999)


def test_a_test_folder_without_some_classes_keeps_the_training_class_numbers(tmp_path):
    """test/ holding only some of train/'s classes: each test image is labelled with its class's
    index among the training classes, not its position among the test folder's."""
    root = tmp_path / "set"
    _write_images(root / "train", ["ant", "bee", "cat"], 2, mode="L")
    test = _write_images(root / "test", ["ant", "cat"], 2, mode="L")
    ds = load_dataset(f"folder:{root}", val_size=0)
    assert ds.classes == ["ant", "bee", "cat"]
    lookup = {a.tobytes(): c for (c, _), a in test.items()}
    assert [lookup[x[..., 0].tobytes()] for x in ds.X_test] == [ds.classes[t] for t in ds.y_test]
    assert sorted(ds.y_test.tolist()) == [0, 0, 2, 2]


def test_a_test_folder_is_decoded_as_the_training_images_are(tmp_path):
    """test/ takes train/'s colour mode (a colour image among them is made grey, as the model's
    input is) and must have train/'s image size."""
    root = tmp_path / "set"
    _write_images(root / "train", ["a", "b"], 2, size=(7, 7), mode="L")
    test = _write_images(root / "test", ["a", "b"], 1, size=(7, 7), mode="RGB")
    ds = load_dataset(f"folder:{root}", val_size=0)
    assert ds.X_test.shape == (2, 7, 7, 1)
    grey = Image.fromarray(test[("a", 0)]).convert("L")
    np.testing.assert_array_equal(ds.X_test[0, :, :, 0], np.asarray(grey))
    other = tmp_path / "other"
    _write_images(other / "train", ["a", "b"], 2, size=(7, 7), mode="L")
    _write_images(other / "test", ["a", "b"], 1, size=(5, 5), mode="L")
    with pytest.raises(DatasetError, match=r"test: images are \(5, 5, 1\) but the training "
                                           r"images are \(7, 7, 1\); pass image_size=N"):
        load_dataset(f"folder:{other}", val_size=0)


def test_folder_cache_is_used_and_invalidated(tmp_path):
    root = tmp_path / "pics"
    imgs = _write_images(root, ["x", "y"], 3)
    first = load_dataset(f"folder:{root}", val_size=0, test_size=0)
    cached = list((tmp_path / "cache" / "folder-cache").glob("*.npz"))
    assert len(cached) == 1
    # a cache of the name mlplab gave them before 2 Dec 2026, and another folder's of today's
    older = cached[0].parent / "pics-0123456789abcdef0123.npz"
    older.write_bytes(b"an old cache")
    other = cached[0].parent / "pictures-0123456789-0123456789abcdef.npz"
    other.write_bytes(b"another folder's cache")
    again = load_dataset(f"folder:{root}", val_size=0, test_size=0)
    np.testing.assert_array_equal(first.X_train, again.X_train)
    # a changed image (new mtime and content) must not be served from the old cache
    new = np.zeros((6, 5, 3), np.uint8)
    Image.fromarray(new).save(root / "x" / "0000.png")
    st = os.stat(root / "x" / "0000.png")
    os.utime(root / "x" / "0000.png", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    changed = load_dataset(f"folder:{root}", val_size=0, test_size=0)
    np.testing.assert_array_equal(changed.X_train[0], new)
    assert not np.array_equal(first.X_train[0], new) and imgs
    # ... and the old contents' cache is replaced, not left beside the new one (a full copy
    # of the folder at every change); another image size is another cache, kept
    (replaced,) = set((tmp_path / "cache" / "folder-cache").glob("*.npz")) - {other}
    assert replaced != cached[0] and not cached[0].exists() and not older.exists()
    assert other.read_bytes() == b"another folder's cache"
    other.unlink()
    small = load_dataset(f"folder:{root}", image_size=3, val_size=0, test_size=0)
    assert small.X_train.shape[1:3] == (3, 3)
    assert replaced.exists() and len(list(replaced.parent.glob("*.npz"))) == 2
    nocache = load_dataset(f"folder:{root}", val_size=0, test_size=0, cache=False)
    np.testing.assert_array_equal(nocache.X_train, changed.X_train)
    # a damaged cache file is rebuilt rather than trusted
    for f in (tmp_path / "cache" / "folder-cache").glob("*.npz"):
        f.write_bytes(b"garbage")
    np.testing.assert_array_equal(
        load_dataset(f"folder:{root}", val_size=0, test_size=0).X_train, changed.X_train)


def test_a_runs_channels_find_the_cache_that_training_made(tmp_path, monkeypatch):
    """Training decodes a folder with the channels its images call for; evaluate and --resume
    ask for the run's channels, which keyed another cache: the first evaluate after training
    decoded every image again (50,000 JPEGs for CIFAR-10) into a second, identical file."""
    import mlplab.data.folder as folder

    root = tmp_path / "pics"
    _write_images(root, ["x", "y"], 3)  # colour: decoded as RGB
    trained = load_dataset(f"folder:{root}", val_size=0, test_size=0)
    cache = tmp_path / "cache" / "folder-cache"
    assert len(list(cache.glob("*.npz"))) == 1

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again")

    with monkeypatch.context() as m:
        m.setattr(folder, "_decode", no_decoding)
        again = load_dataset(f"folder:{root}", val_size=0, test_size=0, channels=3)
    np.testing.assert_array_equal(again.X_train, trained.X_train)
    assert len(list(cache.glob("*.npz"))) == 1
    # other channels are other pixels: decoded, and cached apart
    grey = load_dataset(f"folder:{root}", val_size=0, test_size=0, channels=1)
    assert grey.X_train.shape[-1] == 1 and len(list(cache.glob("*.npz"))) == 2


def test_folder_cache_sees_swapped_files_and_refuses_foreign_contents(tmp_path, monkeypatch):
    root = tmp_path / "pics"
    _write_images(root, ["x", "y"], 3)
    first = load_dataset(f"folder:{root}", val_size=0, test_size=0)
    # a mislabelled pair fixed by swapping the files with mv: same sizes and mtimes
    a, b = root / "x" / "0000.png", root / "y" / "0000.png"
    a.rename(tmp_path / "tmp.png")
    b.rename(a)
    (tmp_path / "tmp.png").rename(b)
    swapped = load_dataset(f"folder:{root}", val_size=0, test_size=0)
    np.testing.assert_array_equal(swapped.X_train[0], first.X_train[3])
    np.testing.assert_array_equal(
        swapped.X_train, load_dataset(f"folder:{root}", val_size=0, test_size=0,
                                      cache=False).X_train)
    # a cache file that is a valid .npz of something else is rebuilt, not served
    for f in (tmp_path / "cache" / "folder-cache").glob("*.npz"):
        np.savez(f, X=np.zeros((2, 6, 5, 3), np.uint8), y=np.array([0, 1]))
    assert len(load_dataset(f"folder:{root}", val_size=0, test_size=0).y_train) == 6
    # ... and so is one of the right length with other labels, channels (for a folder decoded
    # as RGB) or image size (for a resized folder)
    full = load_dataset(f"folder:{root}", val_size=0, test_size=0, channels=3)
    small = load_dataset(f"folder:{root}", image_size=4, val_size=0, test_size=0, channels=3)
    for foreign, options, want in (
            (dict(X=full.X_train[::-1], y=full.y_train[::-1]), {}, full),
            (dict(X=small.X_train[::-1], y=small.y_train[::-1]), {"image_size": 4}, small),
            (dict(X=full.X_train[..., :1], y=full.y_train), {}, full),
            (dict(X=full.X_train[:, :3, :3], y=full.y_train), {"image_size": 4}, small)):
        for f in (tmp_path / "cache" / "folder-cache").glob("*.npz"):
            np.savez(f, **foreign)
        again = load_dataset(f"folder:{root}", val_size=0, test_size=0, channels=3, **options)
        np.testing.assert_array_equal(again.X_train, want.X_train)
        np.testing.assert_array_equal(again.y_train, want.y_train)
    # no home folder for the cache, or a folder name too long for a cache file's name: the
    # cache is skipped (it only saves time), the folder loads
    long_root = tmp_path / ("L" * 240)
    _write_images(long_root, ["x", "y"], 2)
    assert len(load_dataset(f"folder:{long_root}", val_size=0, test_size=0).y_train) == 4
    monkeypatch.delenv("MLPLAB_DATA")
    monkeypatch.delenv("HOME", raising=False)
    import pwd

    monkeypatch.setattr(pwd, "getpwuid", lambda uid: (_ for _ in ()).throw(KeyError(uid)))
    assert len(load_dataset(f"folder:{root}", val_size=0, test_size=0).y_train) == 6


def test_folder_greyscale_kinds_and_sizes(tmp_path):
    root = tmp_path / "grey"
    for c, v in (("a", 40), ("b", 200)):
        (root / c).mkdir(parents=True)
        Image.fromarray(np.full((5, 6), v, np.uint8), "L").convert("LA").save(root / c / "1.png")
        Image.fromarray(np.full((5, 6), v, np.uint8), "L").save(root / c / "2.gif")  # mode P
    ds = load_dataset(f"folder:{root}", val_size=0, test_size=0)
    assert ds.image_shape == (5, 6, 1)  # grey with alpha, grey palettes: one channel
    assert sorted(set(ds.X_train.ravel().tolist())) == [40, 200]
    # a colour palette still makes the folder RGB
    Image.fromarray(np.dstack([np.full((5, 6), 9, np.uint8)] * 2 + [np.zeros((5, 6), np.uint8)])
                    ).convert("P").save(root / "a" / "3.gif")
    assert load_dataset(f"folder:{root}", val_size=0, test_size=0).image_shape == (5, 6, 3)
    # one large image sorted first: the size message, not an allocation of gigabytes
    big = tmp_path / "big"
    _write_images(big, ["a", "b"], 30, size=(8, 8))
    Image.fromarray(np.zeros((3000, 4000, 3), np.uint8)).save(big / "a" / "000-photo.png")
    tracemalloc.start()  # sees NumPy's buffers: the photo's 36 MB, not 61 photos' 2.2 GB
    try:
        with pytest.raises(DatasetError, match=r"is 8x8 but a/000-photo.png is 3000x4000 "
                                               r"\(height x width\); pass image_size=N"):
            load_dataset(f"folder:{big}", cache=False)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 200 << 20


def test_a_palette_image_of_grey_pixels_is_grey_whatever_its_unused_colours(tmp_path):
    """Only the colours an image uses decide: a palette with a colour entry that no pixel uses
    (encoders keep or pad them) still makes a grey image of grey pixels."""
    root = tmp_path / "pal"
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        im = Image.fromarray(np.array([[0, 1], [1, 0]], np.uint8), "P")
        im.putpalette([10, 10, 10, 200, 200, 200, 255, 0, 0])
        im.save(root / c / "1.png")
    ds = load_dataset(f"folder:{root}", val_size=0, test_size=0)
    assert ds.image_shape == (2, 2, 1)
    assert ds.X_train[0, :, :, 0].tolist() == [[10, 200], [200, 10]]


def test_unreadable_class_folder_is_a_dataset_error(tmp_path, monkeypatch):
    root = tmp_path / "pics"
    _write_images(root, ["x", "y"], 2)
    real = os.scandir

    def scandir(path):  # as for a folder of mode 000 (which root could read anyway)
        if os.fspath(path) == os.fspath(root / "y"):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)
    with pytest.raises(DatasetError, match="y: cannot list the folder .Permission denied."):
        load_dataset(f"folder:{root}", cache=False)


def test_folder_errors_name_the_file(tmp_path, monkeypatch):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DatasetError, match=r"empty: no images found; [^;]*\.png\.$"):
        load_dataset(f"folder:{empty}")
    # split folders named otherwise than train/ val/ test/ were read as classes holding folders
    _write_images(tmp_path / "kaggle" / "Train", ["cat", "dog"], 2)
    _write_images(tmp_path / "kaggle" / "Test", ["cat", "dog"], 2)
    with pytest.warns(UserWarning, match="8 images in sub-folders of class folders are not "
                                         "read"), \
            pytest.raises(DatasetError, match=r"kaggle: no images found.*; Test, Train hold "
                                           r"folders, not images: split folders must be named "
                                           r"train/, val/ \(or valid/, validation/\) and test/, "
                                           r"in lower case\.$"):
        load_dataset(f"folder:{tmp_path / 'kaggle'}")
    # a class's own folder given: its images lie directly inside it
    with pytest.warns(UserWarning, match="directly in the dataset folder"), \
            pytest.raises(DatasetError, match=r"Train.cat: no images found.*; its images lie "
                                           r"directly inside it.*give the folder above it "
                                           r"\(\S*Train\) if that holds one folder per class"):
        load_dataset(f"folder:{tmp_path / 'kaggle' / 'Train' / 'cat'}")
    monkeypatch.chdir(tmp_path / "kaggle" / "Train" / "cat")  # named ".": its parent is "."
    with pytest.warns(UserWarning, match="directly in the dataset folder"), \
            pytest.raises(DatasetError, match=re.escape(f"give the folder above it "
                                                        f"({(tmp_path / 'kaggle' / 'Train')})")):
        load_dataset("folder:.")
    with pytest.raises(DatasetError, match="no such folder"):
        load_dataset(f"folder:{tmp_path / 'nope'}")
    (tmp_path / "pets.zip").write_bytes(b"PK")
    with pytest.raises(DatasetError, match="pets.zip: a file, not a folder"):
        load_dataset(f"folder:{tmp_path / 'pets.zip'}")
    bad = tmp_path / "bad"
    _write_images(bad, ["a"], 2)
    (bad / "a" / "0005.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(DatasetError, match=r"0005\.png: cannot read image") as exc:
        load_dataset(f"folder:{bad}", cache=False)
    # the reason is Pillow's, without its name for the in-memory copy of the file
    assert "not an image format Pillow recognises" in str(exc.value)
    assert "BytesIO" not in str(exc.value)
    assert "replace or remove the file" in str(exc.value)
    # a class folder without images would be a class with no examples: refused, named
    holey = tmp_path / "holey"
    _write_images(holey, ["cat", "ship"], 2)
    (holey / "zebra").mkdir()
    with pytest.raises(DatasetError, match=r"class folder zebra holds no images; add images to "
                                           "it or move it out"):
        load_dataset(f"folder:{holey}", cache=False)
    with pytest.raises(DatasetError, match="folder: needs a path"):
        load_dataset("folder:")
    mixed = tmp_path / "mixed"
    _write_images(mixed, ["a"], 2)
    _write_images(mixed, ["b"], 1, size=(9, 7), start=7)
    # the first image is named with its class folder: every class may have a 0000.png; sizes
    # are height x width, the order --image-size takes
    with pytest.raises(DatasetError, match=r"0007\.png: image is 9x7 but a/0000\.png is 6x5 "
                                           r"\(height x width\); pass image_size=N"):
        load_dataset(f"folder:{mixed}", cache=False)
    ds = load_dataset(f"folder:{mixed}", image_size=4, val_size=0, test_size=0, cache=False)
    assert ds.X_train.shape == (3, 4, 4, 3)


def test_a_size_mismatch_names_the_flag_on_the_command_line(tmp_path, capsys):
    """It said "pass --image-size (image_size=)", both at once: the command line's words there,
    the argument's from Python (above)."""
    from mlplab.cli import main

    _write_images(tmp_path / "mixed", ["a"], 2)
    _write_images(tmp_path / "mixed", ["b"], 1, size=(9, 7), start=7)
    assert main(["data", "info", f"folder:{tmp_path / 'mixed'}", "--no-cache"]) == 1
    assert capsys.readouterr().err.strip().endswith(
        "(height x width); pass --image-size N to resize all images to one size.")


def test_folder_images_the_layout_leaves_out_are_named_in_a_warning(tmp_path):
    """Images in sub-folders of a class folder (cat/2019/) or loose in the dataset folder were
    left out silently: the class was smaller than its user thought."""
    import subprocess
    import sys
    import warnings

    root = tmp_path / "photos"
    _write_images(root, ["cat", "dog"], 3)
    _write_images(root / "cat", ["2019"], 4)
    _write_images(root / "cat" / ".hidden", ["x"], 1)  # hidden: not counted
    Image.new("RGB", (6, 5)).save(root / "loose.jpg")
    (root / "README.txt").write_text("my photos")  # not an image: no warning
    with pytest.warns(UserWarning) as record:
        ds = load_dataset(f"folder:{root}", val_size=0, test_size=0, cache=False)
    assert len(ds.y_train) == 6  # the layout is unchanged: only the direct images are read
    messages = [str(w.message) for w in record]
    assert any("4 images in sub-folders of class folders are not read: cat/2019/ (4)" in m
               for m in messages), messages
    assert any("1 image directly in the dataset folder (e.g. loose.jpg) belongs to no class "
               "and is not read; put it in a class sub-folder."
               in m for m in messages), messages
    # the command line prints each as one line, not Python's file:line plus a source line (in
    # a process of its own: pytest records the warnings of its own)
    run = subprocess.run([sys.executable, "-m", "mlplab", "data", "info", f"folder:{root}",
                          "--val-size", "0", "--test-size", "0", "--no-cache"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    err = run.stderr.splitlines()
    assert [line for line in err if "warning" in line] == [
        line for line in err if line.startswith("mlplab data info: warning: ")]
    assert len([line for line in err if "warning" in line]) == 2
    assert not any("UserWarning" in line or "read_image_folder(" in line for line in err)
    # a tidy folder warns about nothing
    tidy = tmp_path / "tidy"
    _write_images(tidy, ["a", "b"], 2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_dataset(f"folder:{tidy}", val_size=0, test_size=0, cache=False)


def test_pillows_warning_about_a_huge_image_names_the_file_on_the_command_line(tmp_path):
    """Pillow's DecompressionBombWarning says only "Image size (N pixels) exceeds limit", and
    its warning about damaged EXIF names no file either: the command line now names the file
    being decoded, also on the decoding threads (the images are in the first and second chunks
    of 512, which threads of their own decode)."""
    import struct
    import subprocess
    import sys

    root = tmp_path / "photos"
    _write_images(root, ["a", "b"], 300, size=(4, 4))
    big = root / "b" / "zz-big.png"
    Image.new("RGB", (7, 9)).save(big)  # 63 pixels, above the limit of 40 set below
    # EXIF whose one tag claims 1,000 bytes past the end of the block: Pillow warns, unnamed
    ifd = (struct.pack("<2sHI", b"II", 42, 8) + struct.pack("<H", 1)
           + struct.pack("<HHII", 0x010E, 2, 1000, 26) + struct.pack("<I", 0))
    damaged = root / "a" / "zz-exif.jpg"
    Image.new("RGB", (4, 4)).save(damaged, exif=b"Exif\0\0" + ifd)
    script = ("import sys, PIL.Image; PIL.Image.MAX_IMAGE_PIXELS = 40; "
              "from mlplab.cli import main; sys.exit(main(sys.argv[1:]))")
    run = subprocess.run([sys.executable, "-c", script, "data", "info", f"folder:{root}",
                          "--image-size", "4", "--no-cache"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    # in the order the threads come to them
    warned = sorted(line for line in run.stderr.splitlines() if "warning" in line)
    assert len(warned) == 2, run.stderr
    assert warned[0].startswith(f"mlplab data info: warning: {damaged}: "), run.stderr
    assert warned[1] == (f"mlplab data info: warning: {big}: Image size (63 pixels) exceeds "
                         "limit of 40 pixels, could be decompression bomb DOS attack."), run.stderr


def test_every_unreadable_image_of_a_folder_is_named_in_one_error(tmp_path):
    """A folder with several bad files (a download cut short, an empty file, text saved as
    .png) was refused one file per run; the first one sorted used to be the only one named."""
    root = tmp_path / "photos"
    _write_images(root, ["cat", "dog"], 3, mode="L")
    (root / "cat" / "0000-cut.jpg").write_bytes(b"\xff\xd8\xff\xe0 cut short")  # sorted first
    (root / "dog" / "empty.png").write_bytes(b"")
    (root / "dog" / "notes.png").write_text("not an image")
    Image.new("RGB", (5, 6), (200, 10, 10)).save(root / "dog" / "red.png")  # grey, then RGB
    with pytest.raises(DatasetError) as exc:
        load_dataset(f"folder:{root}", cache=False)
    message = str(exc.value)
    assert message.startswith("3 of 10 image files cannot be read: "), message
    assert message.index("cat/0000-cut.jpg") < message.index("dog/empty.png (the file is empty, "
                                                             "0 bytes)") < message.index(
        "dog/notes.png (not an image format Pillow recognises)")
    assert message.endswith("; replace or remove them.")
    # one bad file: the message names it alone, as before
    for name in ("0000-cut.jpg",):
        (root / "cat" / name).unlink()
    for name in ("empty.png",):
        (root / "dog" / name).unlink()
    with pytest.raises(DatasetError, match=r"^\S*dog/notes\.png: cannot read image \(not an "
                                           r"image format Pillow recognises\); replace or remove"):
        load_dataset(f"folder:{root}", cache=False)


def test_folder_images_in_formats_mlplab_does_not_read_are_named_in_a_warning(tmp_path):
    """iPhone photos (.HEIC), camera raw files and JPEGs saved by a browser as .jfif were left
    out of their class silently: a class of half HEIC photos trained on the other half."""
    root = tmp_path / "photos"
    _write_images(root, ["cat", "dog"], 2)
    (root / "cat" / "IMG_0001.HEIC").write_bytes(b"\0\0\0\x18ftypheic")
    (root / "cat" / "IMG_0002.heic").write_bytes(b"\0\0\0\x18ftypheic")
    Image.new("RGB", (6, 5)).save(root / "dog" / "download.jfif", format="JPEG")
    (root / "dog" / "notes.txt").write_text("not an image: no warning")
    with pytest.warns(UserWarning) as record:
        ds = load_dataset(f"folder:{root}", val_size=0, test_size=0, cache=False)
    assert len(ds.y_train) == 4  # what is read is unchanged
    [message] = [str(w.message) for w in record if "formats" in str(w.message)]
    assert ("3 files in class folders are in image formats mlplab does not read and are left "
            "out (2 .heic, 1 .jfif; e.g. cat/IMG_0001.HEIC); convert them to PNG or JPEG (.jfif "
            "and .jpe files are JPEGs: rename them .jpg) to train on them.") in message, message
    assert "notes.txt" not in message


def test_folder_links_whose_target_is_gone_are_named_in_a_warning(tmp_path):
    """A dataset of links into a folder that moved, or a few dangling ones: links named like
    images whose target does not exist were left out of their class silently."""
    root = tmp_path / "photos"
    _write_images(root, ["cat", "dog"], 2)
    (root / "cat" / "moved.png").symlink_to(tmp_path / "old" / "moved.png")
    (root / "dog" / "fine.png").symlink_to(next((root / "dog").glob("*.png")))  # a good link
    with pytest.warns(UserWarning) as record:
        ds = load_dataset(f"folder:{root}", val_size=0, test_size=0, cache=False)
    assert len(ds.y_train) == 5  # the good link is read, the broken one is not
    [message] = [str(w.message) for w in record if "link" in str(w.message)]
    assert message.endswith(f"1 link in class folders points to a file that does not exist and "
                            f"is left out (e.g. cat/moved.png -> {tmp_path / 'old' / 'moved.png'})"
                            "; fix or remove it."), message
    # a class folder that is a dangling link (a disk not mounted) was dropped without a word
    (root / "emu").symlink_to(tmp_path / "unmounted" / "emu")
    with pytest.warns(UserWarning) as record:
        ds = load_dataset(f"folder:{root}", val_size=0, test_size=0, cache=False)
    assert ds.classes == ["cat", "dog"]
    assert f"{root}: 1 link in the dataset folder points to nothing and is left out (emu -> " \
           f"{tmp_path / 'unmounted' / 'emu'}); a class folder on a disk that is not mounted? " \
           "Fix or remove it." in [str(w.message) for w in record]


def test_folder_links_in_a_loop_are_left_out_with_a_warning(tmp_path):
    """A class folder holding a loop of links named like images (l1.png -> l2.png -> l1.png)
    failed the whole dataset ("cannot list the folder (Too many levels of symbolic links)"):
    following the link raised ELOOP where a dangling one answers False. It leads to no file
    either, and is left out and named as a dangling link is."""
    root = tmp_path / "photos"
    _write_images(root, ["cat", "dog"], 2)
    (root / "cat" / "l1.png").symlink_to("l2.png")
    (root / "cat" / "l2.png").symlink_to("l1.png")
    (root / "dog" / "spin").symlink_to("spin")  # not named like an image: nothing to say
    with pytest.warns(UserWarning) as record:
        ds = load_dataset(f"folder:{root}", val_size=0, test_size=0, cache=False)
    assert len(ds.y_train) == 4
    [message] = [str(w.message) for w in record if "link" in str(w.message)]
    assert message == (f"{root}: 2 links in class folders point to files that do not exist or "
                       "go round in a loop and are left out (e.g. cat/l1.png -> l2.png -> "
                       "l1.png); fix or remove them."), message


def test_summary_counts():
    s = load_dataset("digits").summary()
    assert s["splits"]["val"]["size"] == 180 and sum(s["splits"]["val"]["class_counts"]) == 180
    assert s["image_shape"] == [8, 8, 1] and len(s["classes"]) == 10
    # one count per class, 0 for a class a split lacks (the last one included)
    X = np.zeros((3, 2, 2, 1), np.uint8)
    ds = Dataset("t", ["a", "b", "c"], X, np.array([0, 0, 1]), X[:0], np.zeros(0, np.int64),
                 X[:1], np.array([1]))
    assert [ds.summary()["splits"][k]["class_counts"] for k in ("train", "val", "test")] == \
        [[2, 1, 0], [0, 0, 0], [0, 1, 0]]
    with pytest.raises(ValueError, match="split must be 'train', 'val' or 'test'; got 'valid'"):
        ds.split("valid")


def test_short_repr_keeps_messages_short():
    """A pickle's values in a refusal message: at most 80 characters, cut with '...'."""
    from mlplab.data.base import short_repr

    for value in ([b"x" * 40] * 8, {"k" * 50: 1}, "y" * 1000, list(range(10**5))):
        text = short_repr(value)
        assert len(text) <= 80 and "\n" not in text
    assert short_repr([b"x" * 40] * 8).endswith("...") and short_repr((1, 2)) == "(1, 2)"


def test_the_sub_folder_warning_counts_and_lists_like_the_files(tmp_path):
    """Four nested folders: three named and 'and 1 more'; the count is the images in them,
    hidden folders deeper down skipped as at the top (they are not the user's images)."""
    root = tmp_path / "photos"
    _write_images(root, ["cat"], 2)
    for i, name in enumerate(["a", "b", "c", "d"]):
        _write_images(root / "cat", [name], i + 1)
    _write_images(root / "cat" / "d", [".thumbs"], 5)  # hidden: not counted
    with pytest.warns(UserWarning) as record:
        load_dataset(f"folder:{root}", val_size=0, test_size=0, cache=False)
    [message] = [str(w.message) for w in record if "sub-folders" in str(w.message)]
    assert ("10 images in sub-folders of class folders are not read: cat/a/ (1), cat/b/ (2), "
            "cat/c/ (3) and 1 more;") in message, message


def test_read_image_resizes_to_height_by_width_as_pillow_does(tmp_path):
    """read_image's image_shape is (H, W, C): a wide image for a wide model comes back as
    Pillow's bilinear resize to W x H, not transposed into H x W by W x H."""
    from mlplab.data.folder import read_image

    rs = np.random.RandomState(5)
    path = tmp_path / "wide.png"
    Image.fromarray(rs.randint(0, 256, (8, 12, 3)).astype(np.uint8)).save(path)
    expected = np.asarray(Image.open(path).convert("RGB").resize((6, 4), Image.BILINEAR))
    got = read_image(path, (4, 6, 3))
    assert got.shape == (4, 6, 3) and got.dtype == np.uint8
    np.testing.assert_array_equal(got, expected)
    grey = np.asarray(Image.open(path).convert("L").resize((3, 5), Image.BILINEAR))
    np.testing.assert_array_equal(read_image(path, (5, 3, 1)), grey[:, :, None])
    for bad in [(4, 6), (0, 6, 3), (4, 6, 4)]:
        with pytest.raises(ValueError, match=r"image_shape must be \(H, W, C\)"):
            read_image(path, bad)


def test_a_class_folder_named_with_a_line_break_is_refused(tmp_path):
    """A newline in a class folder's name split data info's table (the counts under the wrong
    names) and every label drawn with it."""
    root = tmp_path / "pics"
    _write_images(root, ["a\nb", "c"], 2)
    with pytest.raises(DatasetError, match=r"class folder name 'a\\nb' holds a line break"):
        load_dataset(f"folder:{root}", val_size=0, test_size=0)
    (root / "a\nb").rename(root / "a b")  # a space is a name like any other
    assert load_dataset(f"folder:{root}", val_size=0, test_size=0).classes == ["a b", "c"]


def test_one_image_left_out_by_the_layout_or_its_format_is_it_not_them(tmp_path):
    """One image in a sub-folder of a class folder, or one file in a format mlplab does not
    read, was told "move them up into it to train on them" and "is in image formats ...;
    convert them to PNG or JPEG to train on them"."""
    root = tmp_path / "photos"
    _write_images(root, ["cat", "dog"], 2)
    _write_images(root / "cat", ["2019"], 1)
    (root / "dog" / "IMG_0001.HEIC").write_bytes(b"\0\0\0\x18ftypheic")
    with pytest.warns(UserWarning) as record:
        load_dataset(f"folder:{root}", val_size=0, test_size=0, cache=False)
    messages = [str(w.message) for w in record]
    assert any("1 image in a sub-folder of a class folder is not read: cat/2019/ (1); mlplab "
               "reads the images directly inside each class folder - move it up into its class "
               "folder to train on it." in m for m in messages), messages
    assert any("1 file in class folders is in an image format mlplab does not read and is left "
               "out (1 .heic; e.g. dog/IMG_0001.HEIC); convert it to PNG or JPEG to train on it."
               in m for m in messages), messages
