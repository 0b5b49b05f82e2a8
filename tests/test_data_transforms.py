"""Preprocessing transforms and minibatch augmentation, checked against direct NumPy formulas."""

import numpy as np
import pytest

from mlplab.data import Augmenter, DatasetError, Pipeline, make_preprocessing
from mlplab.data.augment import warp_bilinear
from mlplab.data.transforms import Flatten, Normalize, Power, Scale, Standardize, SubtractMean


@pytest.fixture
def images():
    rs = np.random.RandomState(0)
    return rs.randint(0, 256, size=(40, 6, 5, 3)).astype(np.uint8)


def test_subtract_mean_is_fitted_on_train_only(images):
    train, val = images[:30], images[30:]
    pre = make_preprocessing("exercise")
    Xtr = pre.fit_transform(train)
    Xva = pre.transform(val)
    mean = train.reshape(30, -1).astype(np.float64).mean(axis=0)
    assert Xtr.shape == (30, 90) and Xtr.dtype == np.float32
    np.testing.assert_allclose(Xtr, train.reshape(30, -1) - mean, atol=1e-4)
    # validation is shifted by the *training* mean, so its own mean is not zero
    np.testing.assert_allclose(Xva, val.reshape(10, -1) - mean, atol=1e-4)
    assert np.abs(Xtr.mean(axis=0)).max() < 1e-3
    assert np.abs(Xva.mean(axis=0)).max() > 1.0


def test_an_empty_training_set_cannot_be_fitted():
    """Its mean would be NaN (with a RuntimeWarning), and so every feature after it."""
    for step in (SubtractMean(), Standardize()):
        with pytest.raises(DatasetError, match=f"cannot fit {type(step).__name__} on an empty"):
            step.fit(np.zeros((0, 4), np.uint8))


def test_standardize_per_channel(images):
    X = make_preprocessing("standardize").fit_transform(images).reshape(images.shape)
    flat = X.reshape(-1, 3)
    np.testing.assert_allclose(flat.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(flat.std(axis=0), 1, atol=1e-5)
    ref = (images - images.reshape(-1, 3).mean(0)) / images.reshape(-1, 3).std(0)
    np.testing.assert_allclose(X, ref, atol=1e-5)


def test_standardize_refuses_images_of_other_channels_than_it_was_fitted_on(images):
    """Statistics of one grey channel would broadcast over RGB images without a word."""
    pre = Standardize().fit(images[..., :1])
    with pytest.raises(DatasetError, match="Standardize was fitted on 1 channels; got 3"):
        pre.transform(images)


def test_standardize_maps_a_constant_channel_to_zero():
    """A channel without spread (a flat feature that is always 0, as the digits' corner
    pixels are) has std 0: the eps guard keeps it finite (0) instead of 0 / 0 = NaN."""
    rs = np.random.RandomState(1)
    X = rs.randn(50, 4) * [1.0, 2.0, 0.0, 5.0] + 7.0
    out = Standardize().fit(X).transform(X)
    assert np.isfinite(out).all()
    np.testing.assert_array_equal(out[:, 2], 0)
    live = [0, 1, 3]
    np.testing.assert_allclose(out[:, live], (X[:, live] - X[:, live].mean(0)) / X[:, live].std(0),
                               atol=1e-5)


def test_standardize_centres_only_a_channel_constant_in_training():
    """A channel that never varies in training (a digit pixel never inked there) is centred but
    not scaled when new data vary in it, as scikit-learn's StandardScaler does: the eps guard
    scaled a difference of 1 to 1e8. A float channel whose mean rounds (0.1 repeated) counts as
    constant too."""
    from sklearn.preprocessing import StandardScaler

    rs = np.random.RandomState(4)
    X = np.c_[rs.randn(30, 2), np.zeros(30), np.full(30, 0.1)]
    new = np.c_[rs.randn(5, 2), np.arange(5.0), np.full(5, 1.1)]
    std = Standardize().fit(X)
    np.testing.assert_array_equal(std.std_[2:], 0)
    out = std.transform(new)
    np.testing.assert_allclose(out[:, 2:], new[:, 2:] - [0.0, 0.1], atol=1e-6)
    np.testing.assert_allclose(out, StandardScaler().fit(X).transform(new), atol=1e-5)


def test_fitted_statistics_cover_every_row_of_a_large_training_set():
    """Standardize sums its squares in blocks of rows: on 2,500 rows (three blocks, the last
    one short) with a different spread in each part its mean and std are NumPy's over all the
    rows; SubtractMean accumulates in float64, so float32 input near 100 gets the float64 mean
    (a float32 running sum is off by about 1e-4 here)."""
    rs = np.random.RandomState(2)
    X = (rs.randn(2500, 3) * np.repeat([1.0, 3.0, 0.5], [1000, 1000, 500])[:, None]
         + [1.0, -2.0, 4.0])
    std = Standardize().fit(X)
    np.testing.assert_allclose(std.mean_, X.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(std.std_, X.std(axis=0), rtol=1e-12)
    X32 = (100 + rs.rand(20000, 3)).astype(np.float32)
    np.testing.assert_allclose(SubtractMean().fit(X32).mean_,
                               X32.astype(np.float64).mean(axis=0), rtol=1e-12)


def test_standardize_of_uint8_images_is_numpys_arithmetic_bit_for_bit():
    """The uint8 fast path (integer sums per pixel, then per channel; per-channel operands
    repeated over a whole image) gives exactly the numbers of the plain NumPy formulas."""
    rs = np.random.RandomState(3)
    X = rs.randint(0, 256, size=(2100, 5, 4, 3)).astype(np.uint8)
    std = Standardize().fit(X)
    mean = X.mean(axis=(0, 1, 2), dtype=np.float64)
    np.testing.assert_array_equal(std.mean_, mean)
    squares = np.zeros(3)
    for i in range(0, len(X), 1024):
        squares += np.square(np.subtract(X[i:i + 1024], mean, dtype=np.float64)).sum(axis=(0, 1, 2))
    np.testing.assert_array_equal(std.std_, np.sqrt(squares / (X.size // 3)))
    out = np.subtract(X, mean.astype(np.float32), dtype=np.float32)
    out *= (1.0 / np.maximum(std.std_, std.eps)).astype(np.float32)
    np.testing.assert_array_equal(std.transform(X), out)


def test_scale_and_torch_normalisation(images):
    X = make_preprocessing("scale").fit_transform(images)
    np.testing.assert_allclose(X, images.reshape(40, -1) / 255.0, atol=1e-7)
    assert X.min() >= 0 and X.max() <= 1
    T = make_preprocessing("torch").fit_transform(images)
    np.testing.assert_allclose(T, (images.reshape(40, -1) / 255.0 - 0.5) / 0.5, atol=1e-6)


def test_sqrt_standardize_is_standardisation_of_square_roots(images):
    X = make_preprocessing("sqrt-standardize").fit_transform(images)
    roots = np.sqrt(images / 255.0)
    ref = (roots - roots.reshape(-1, 3).mean(0)) / roots.reshape(-1, 3).std(0)
    np.testing.assert_allclose(X, ref.reshape(40, -1), atol=1e-5)


def test_power_table_and_float_paths_agree(images):
    # uint8 images go through a lookup table; other dtypes through np.power
    for exponent in (0.5, 0.3, 2.0):
        table = Power(exponent).transform(images)
        direct = Power(exponent).transform(images.astype(np.float64))
        assert table.dtype == direct.dtype == np.float32
        np.testing.assert_allclose(table, (images / 255.0) ** exponent, rtol=1e-6)
        np.testing.assert_allclose(direct, table, rtol=1e-6)
    assert Power(0.5, max_value=4.0).transform(np.array([[1.0, 4.0]]))[0].tolist() == [0.5, 1.0]
    # the default is the square root of [0, 1] intensities, as the docstring says
    np.testing.assert_allclose(Power().transform(images), np.sqrt(images / 255.0), rtol=1e-6)


def test_power_of_uint8_images_divides_by_its_max_value(images):
    """The uint8 lookup table is built with max_value, as the float path divides by it."""
    table = Power(0.5, max_value=300.0).transform(images)
    np.testing.assert_allclose(table, np.sqrt(images / 300.0), rtol=1e-6)


def test_normalize_refuses_a_std_of_zero():
    with pytest.raises(DatasetError, match=r"Normalize std must be finite and > 0; got "
                                           r"\[0.5, 0.0\]"):
        Normalize([0.5, 0.5], [0.5, 0.0])


@pytest.mark.parametrize("make,message", [
    (lambda: Normalize(0.5, float("nan")), r"Normalize std must be finite and > 0; got \[nan\]"),
    (lambda: Normalize(0.5, float("inf")), r"Normalize std must be finite and > 0; got \[inf\]"),
    (lambda: Normalize(float("nan"), 1.0), r"Normalize mean must be finite; got \[nan\]"),
    (lambda: Scale(0), r"Scale max_value must be a finite number > 0; got 0\."),
    (lambda: Scale(-255.0), r"Scale max_value must be a finite number > 0; got -255\.0\."),
    (lambda: Scale(float("nan")), r"Scale max_value must be a finite number > 0; got nan\."),
])
def test_fixed_transforms_refuse_values_that_make_no_features(make, message, images):
    """Scale(0) accepted, then divided by zero when the data came; Normalize(std=NaN) made every
    feature NaN. Refused when made, and so when a saved pipeline holding them is loaded."""
    with pytest.raises(DatasetError, match=message):
        make()
    state = Pipeline([Scale(), Flatten()]).fit(images).state_dict()
    state["0.params"] = np.asarray('{"max_value": 0.0, "dtype": "float32"}')
    with pytest.raises(DatasetError, match="not a saved preprocessing pipeline.*Scale max_value"):
        Pipeline.from_state_dict(state)


def test_normalize_refuses_per_channel_values_for_another_number_of_channels():
    """Three means on grey images broadcast the images to three channels: 16 features became 48
    (input_pipeline((0.5,) * 3, (0.5,) * 3) on grey images, say) instead of an error."""
    grey = np.zeros((2, 4, 4, 1), np.float32)
    with pytest.raises(DatasetError, match=r"Normalize has 3 mean values \(one per channel\); "
                                           r"the images have 1 channel\."):
        Normalize([0.4, 0.5, 0.6], 0.5).transform(grey)
    with pytest.raises(DatasetError, match="Normalize has 2 std values"):
        Normalize(0.5, [0.2, 0.3]).transform(grey)
    out = Normalize([0.4, 0.5, 0.6], 0.5).transform(np.ones((2, 4, 4, 3), np.float32))
    np.testing.assert_allclose(out[1, 3, 2], (1 - np.array([0.4, 0.5, 0.6])) / 0.5, rtol=1e-6)
    np.testing.assert_array_equal(Normalize(0.5, 0.25).transform(grey), np.full(grey.shape, -2.0))


def test_power_refuses_negative_intensities_and_bad_exponents():
    with pytest.raises(DatasetError, match="intensities >= 0.*standardize"):
        Power().transform(np.array([[0.5, -0.1]], dtype=np.float32))
    for bad in (0, -1, float("nan")):
        with pytest.raises(DatasetError, match="exponent"):
            Power(bad)


def test_float64_and_flatten_order(images):
    X = make_preprocessing("none", dtype=np.float64).fit_transform(images)
    assert X.dtype == np.float64
    # C order: channel fastest, then width, then height (what reshape(N, -1) gives)
    assert X[3, 2 * 5 * 3 + 4 * 3 + 1] == images[3, 2, 4, 1]


def test_unfitted_and_unknown_raise(images):
    with pytest.raises(DatasetError, match="not fitted"):
        SubtractMean().transform(images)
    with pytest.raises(DatasetError, match="unknown preprocessing"):
        make_preprocessing("whiten")
    pre = make_preprocessing("exercise").fit(images)
    with pytest.raises(DatasetError, match="fitted on samples of shape"):
        pre.transform(images[:, :4])


@pytest.mark.parametrize("name", [
    "exercise", "standardize", "sqrt-standardize", "scale", "torch", "none"])
def test_a_single_image_is_refused_not_taken_for_a_batch_of_rows(name, images, tmp_path):
    """One (H, W, C) image went through the per-channel recipes as H samples of (W, C) and came
    out (H, W*C) without a word; it is refused with the batch shape to pass, before and after the
    pipeline is saved and loaded."""
    pre = make_preprocessing(name).fit(images[:30])
    np.savez(tmp_path / "pre.npz", **pre.state_dict())
    with np.load(tmp_path / "pre.npz", allow_pickle=False) as z:
        loaded = Pipeline.from_state_dict(dict(z))
    for p in (pre, loaded):
        with pytest.raises(DatasetError, match=r"transforms a batch of shape \(N, 6, 5, 3\); "
                                               r"got one sample of shape \(6, 5, 3\)"):
            p.transform(images[31])
        # the batch of one the message asks for: the image's own row of the whole batch
        np.testing.assert_array_equal(p.transform(images[31][np.newaxis]),
                                      pre.transform(images)[31:32])


def test_a_pipeline_saved_without_its_sample_shape_still_loads(images):
    """Pipelines saved before the sample shape was recorded load, and check no shape."""
    pre = make_preprocessing("scale").fit(images)
    state = {k: v for k, v in pre.state_dict().items() if k != "sample_shape"}
    old = Pipeline.from_state_dict(state)
    np.testing.assert_allclose(old.transform(images), images.reshape(40, -1) / 255, rtol=1e-6)
    assert old.transform(images[0]).shape == (6, 5 * 3)  # unchecked, as it was
    bad = {**state, "sample_shape": np.array([[6, 5, 3]])}
    with pytest.raises(DatasetError, match="invalid sample_shape"):
        Pipeline.from_state_dict(bad)


@pytest.mark.parametrize("name", [
    "exercise", "standardize", "sqrt-standardize", "scale", "torch", "none"])
def test_an_empty_split_transforms_to_no_rows(name, images):
    # --test-size 0 / --val-size 0 give empty splits, which every recipe must pass through
    pre = make_preprocessing(name).fit(images)
    out = pre.transform(images[:0])
    assert out.shape == (0, 6 * 5 * 3) and out.dtype == np.float32


@pytest.mark.parametrize("name", [
    "exercise", "standardize", "sqrt-standardize", "scale", "torch", "none"])
def test_pipeline_round_trips_through_npz(name, images, tmp_path):
    pre = make_preprocessing(name)
    ref = pre.fit_transform(images[:30])
    np.savez(tmp_path / "pre.npz", **pre.state_dict())
    with np.load(tmp_path / "pre.npz", allow_pickle=False) as z:
        again = Pipeline.from_state_dict(dict(z))
    np.testing.assert_array_equal(again.transform(images[:30]), ref)
    np.testing.assert_array_equal(again.transform(images[30:]), pre.transform(images[30:]))


def test_custom_pipeline_state():
    pipe = Pipeline([Scale(max_value=16.0), Normalize([0.1, 0.2, 0.3], [1, 2, 4]), Flatten()])
    X = np.full((2, 2, 2, 3), 8, dtype=np.uint8)
    out = Pipeline.from_state_dict(pipe.state_dict()).transform(X)
    np.testing.assert_allclose(out.reshape(2, 2, 2, 3)[0, 0, 0], [(0.5 - 0.1), 0.15, 0.05])
    with pytest.raises(DatasetError, match="steps"):
        Pipeline([Standardize(), Flatten()]).load_state_dict(pipe.state_dict())
    with pytest.raises(DatasetError, match="not a saved preprocessing"):
        Pipeline.from_state_dict({"steps": np.array(["bogus"])})
    # a statistic missing from the saved state was a bare KeyError('mean')
    fitted = Pipeline([Standardize(), Flatten()])
    fitted.fit(X.astype(np.float32))
    state = {k: v for k, v in fitted.state_dict().items() if k != "0.mean"}
    with pytest.raises(DatasetError, match=r"saved preprocessing lacks 0\.mean, a statistic of "
                                           r"step 0 \(standardize\)"):
        Pipeline.from_state_dict(state)


def _flat(images):
    return images.reshape(len(images), -1).astype(np.float32)


def test_flip_twice_is_identity_and_flips_half(images):
    aug = Augmenter(images.shape[1:], flip=True, crop=0)
    X = _flat(images)
    once = aug(X, np.random.RandomState(3))
    twice = aug(once, np.random.RandomState(3))
    np.testing.assert_array_equal(twice, X)
    mask = np.random.RandomState(3).rand(len(X)) < 0.5
    imgs = once.reshape(images.shape)
    np.testing.assert_array_equal(imgs[mask], images[mask][:, :, ::-1])
    np.testing.assert_array_equal(imgs[~mask], images[~mask])
    assert 0 < mask.sum() < len(X)


def test_a_numpy_generator_draws_the_augmentation_too(images):
    """np.random.default_rng(), NumPy's recommended generator, has no rand/randint: augment(X,
    rng) raised AttributeError with one. It draws the same kinds of flips and crops."""
    X = _flat(images)
    flips = Augmenter(images.shape[1:], flip=True, crop=0)
    once = flips(X, np.random.default_rng(3))
    mask = np.random.default_rng(3).random(len(X)) < 0.5
    imgs = once.reshape(images.shape)
    np.testing.assert_array_equal(imgs[mask], images[mask][:, :, ::-1])
    np.testing.assert_array_equal(imgs[~mask], images[~mask])
    assert 0 < mask.sum() < len(X)
    np.testing.assert_array_equal(flips(once, np.random.default_rng(3)), X)
    # crops and elastic distortions: the same output as a RandomState's kinds, seeded alike
    every = Augmenter(images.shape[1:], flip=True, crop=2, elastic=1.0)
    a, b = (every(X, np.random.default_rng(5)) for _ in range(2))
    np.testing.assert_array_equal(a, b)
    assert a.shape == X.shape and a.dtype == X.dtype and not np.array_equal(a, X)


def test_a_seed_draws_the_augmentation_as_its_random_state(images):
    """Called by hand with a seed (an integer, or None), as the rest of the API takes one: it
    was "'int' object has no attribute 'rand'". An integer draws what RandomState(seed) draws;
    anything else is one TypeError naming rng."""
    X = _flat(images)
    aug = Augmenter(images.shape[1:], flip=True, crop=2, elastic=1.0)
    np.testing.assert_array_equal(aug(X, 7), aug(X, np.random.RandomState(7)))
    np.testing.assert_array_equal(aug(X, np.int64(7)), aug(X, np.random.RandomState(7)))
    np.testing.assert_array_equal(aug.elastic_field(3, 7),
                                  aug.elastic_field(3, np.random.RandomState(7)))
    out = aug(X, None)  # fresh entropy
    assert out.shape == X.shape and out.dtype == X.dtype
    for bad in (-1, 2**32, 1.5, "0", True):
        with pytest.raises(TypeError, match="^rng must be a np.random.RandomState or"):
            aug(X, bad)


def test_crop_keeps_shape_and_shifts_content(images):
    aug = Augmenter(images.shape[1:], flip=False, crop=2)
    X = _flat(images) + 1  # +1 so that zero padding is distinguishable from image content
    out = aug(X, np.random.RandomState(0))
    assert out.shape == X.shape and out.dtype == X.dtype
    src = X.reshape(images.shape)
    rs = np.random.RandomState(0)
    dy, dx = rs.randint(0, 5, size=len(X)), rs.randint(0, 5, size=len(X))
    for i in range(len(X)):
        padded = np.pad(src[i], ((2, 2), (2, 2), (0, 0)))
        np.testing.assert_array_equal(out[i].reshape(images.shape[1:]),
                                      padded[dy[i]:dy[i] + 6, dx[i]:dx[i] + 5])
    assert (out == 0).any()  # some padding came in


@pytest.mark.parametrize("fill", [-1.5, "per-channel"])
def test_crop_pads_with_the_fill(images, fill):
    """A crop's uncovered border holds ``fill`` (a number or one value per channel); the rest is
    the shifted image, as with zero padding."""
    H, W, C = images.shape[1:]
    if fill == "per-channel":
        fill = np.array([-1.0, 2.0, 0.5][:C])
    X = _flat(images)
    out = Augmenter((H, W, C), flip=False, crop=2, fill=fill)(X, np.random.RandomState(0))
    rs = np.random.RandomState(0)
    dy, dx = rs.randint(0, 5, size=len(X)) - 2, rs.randint(0, 5, size=len(X)) - 2
    expected_fill = np.broadcast_to(np.asarray(fill, np.float32), (H, W, C))
    for i in range(len(X)):
        expected = _shifted(X[i].reshape(H, W, C), expected_fill, dy[i], dx[i])
        np.testing.assert_array_equal(out[i].reshape(H, W, C), expected)
    assert (dy != 0).any() or (dx != 0).any()


def _shifted(src, fill, dy, dx):
    """The crop by hand, pixel by pixel: ``src`` moved by (-dy, -dx), ``fill`` where it left."""
    H, W = src.shape[:2]
    expected = np.array(fill, dtype=np.float32, copy=True)
    for y in range(H):
        for x in range(W):
            if 0 <= y + dy < H and 0 <= x + dx < W:
                expected[y, x] = src[y + dy, x + dx]
    return expected


def test_with_an_image_fill_flips_and_crops_act_relative_to_it(images):
    """With a whole image as the fill, each image is flipped (the first draws, probability 1/2)
    and shifted within its zero padding (the next draws, rows then columns) relative to the
    fill, ``x - fill``, and the fill is added back: as the elastic distortion treats it."""
    H, W, C = images.shape[1:]
    fill = np.random.RandomState(5).randn(H, W, C).astype(np.float32)
    X = _flat(images)
    out = Augmenter((H, W, C), flip=True, crop=2, fill=fill)(X, np.random.RandomState(0))
    rs = np.random.RandomState(0)
    flip = rs.rand(len(X)) < 0.5
    dy, dx = rs.randint(0, 5, size=len(X)) - 2, rs.randint(0, 5, size=len(X)) - 2
    zeros = np.zeros((H, W, C), np.float32)
    for i in range(len(X)):
        src = X[i].reshape(H, W, C) - fill
        if flip[i]:
            src = src[:, ::-1]
        np.testing.assert_array_equal(out[i].reshape(H, W, C),
                                      _shifted(src, zeros, dy[i], dx[i]) + fill)
    assert (flip & (dx != 0)).any()


@pytest.mark.parametrize("preprocessing", ["exercise", "standardize", "sqrt-standardize"])
@pytest.mark.parametrize("augment", [["crop"], ["flip", "crop"]])
def test_black_padded_crops_are_the_preprocessed_crops_of_the_black_padded_raw_images(
        images, preprocessing, augment):
    """``crop_fill="black"`` promises the preprocessing of the raw image shifted over a black
    background. Under ``exercise`` (a mean image subtracted) the crop moved the mean-subtracted
    image over the fill, so a black image became the difference of the mean image and its shift
    (raw values from -185 to 168 on the digits, where black is 0)."""
    from mlplab.runs import RunConfig, make_augmenter

    H, W, C = images.shape[1:]
    pre = make_preprocessing(preprocessing, np.float32).fit(images)
    cfg = RunConfig(preprocessing=preprocessing, augment=augment, crop_padding=2,
                    crop_fill="black")
    aug = make_augmenter(cfg, (H, W, C), pre)
    out = aug(pre.transform(images), np.random.RandomState(7))
    rs = np.random.RandomState(7)
    flip = rs.rand(len(images)) < 0.5 if "flip" in augment else np.zeros(len(images), bool)
    dy, dx = rs.randint(0, 5, size=len(images)), rs.randint(0, 5, size=len(images))
    raw = np.stack([np.pad(im[:, ::-1] if f else im, ((2, 2), (2, 2), (0, 0)))[y:y + H, x:x + W]
                    for im, f, y, x in zip(images, flip, dy, dx, strict=True)])
    np.testing.assert_allclose(out, pre.transform(raw), rtol=0, atol=1e-4)
    assert ((dy != 2) | (dx != 2)).any()


def test_the_defaults_are_a_flip_and_a_4_pixel_crop_padded_with_zeros(images):
    """``Augmenter(image_shape)`` flips and crops after padding by 4 pixels (the usual CIFAR-10
    augmentation, and what runs pad its 32-pixel images by) with a fill of 0 and no elastic
    distortion: the same batch as those settings given explicitly."""
    shape, X = images.shape[1:], _flat(images)
    explicit = Augmenter(shape, flip=True, crop=4, fill=0.0, elastic=0.0)
    np.testing.assert_array_equal(Augmenter(shape)(X, np.random.RandomState(4)),
                                  explicit(X, np.random.RandomState(4)))


def test_zero_fill_is_the_mean_image_under_exercise_and_a_mean_colour_under_standardize(images):
    """``--crop-fill zero`` pads with 0 after preprocessing: in raw pixels the mean training image
    under ``exercise`` but, standardisation being per channel, one mean colour under
    ``standardize`` (the help once said "the mean image" for both)."""
    mean_image = images.mean(axis=0, keepdims=True)
    mean_colour = np.broadcast_to(images.reshape(-1, 3).mean(axis=0), mean_image.shape)
    exercise = make_preprocessing("exercise", np.float64).fit(images)
    standardize = make_preprocessing("standardize", np.float64).fit(images)
    np.testing.assert_allclose(exercise.transform(mean_image), 0, atol=1e-9)
    np.testing.assert_allclose(standardize.transform(mean_colour), 0, atol=1e-9)
    assert np.abs(standardize.transform(mean_image)).max() > 0.1


def test_augmenter_rejects_bad_fill(images):
    with pytest.raises(ValueError, match="fill must be a number, one value per channel"):
        Augmenter((6, 5, 3), fill=np.zeros(2))
    with pytest.raises(ValueError, match="finite"):
        Augmenter((6, 5, 3), fill=np.nan)
    for crop in (2.5, True, -1):
        with pytest.raises(ValueError, match="crop padding must be an integer >= 0"):
            Augmenter((6, 5, 3), crop=crop)


def test_augmenter_refuses_what_it_would_silently_misread(images):
    """``flip="False"`` flipped (``bool`` of a non-empty string), an image side of 6.9 was cut to
    6, and an integer batch truncated the elastic interpolation's weights and cast a negative
    fill into 255: each refused, naming it."""
    with pytest.raises(ValueError, match="flip must be True or False; got 'False'"):
        Augmenter((6, 5, 3), flip="False")
    with pytest.raises(ValueError, match=r"image_shape must be \(H, W, C\)"):
        Augmenter((6.9, 5, 3))
    assert Augmenter((np.int64(6), 5, 3), flip=np.bool_(False)).image_shape == (6, 5, 3)
    aug = Augmenter((6, 5, 3), crop=1, fill=-1.5, elastic=2.0)
    for dtype in (np.uint8, np.int64):
        with pytest.raises(ValueError, match=f"a preprocessed float batch; got {dtype.__name__}"):
            aug(images.reshape(len(images), -1).astype(dtype), np.random.RandomState(0))


@pytest.mark.parametrize("kw", [{"crop": 2}, {"crop": 0}, {"crop": 0, "elastic": 1.0},
                                {"crop": 2, "elastic": 1.0, "fill": "image"}])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_an_empty_batch_augments_to_an_empty_batch(kw, dtype):
    """NumPy cannot infer ``reshape(0, -1)``: an empty batch was a raw ValueError."""
    if kw.get("fill") == "image":
        kw = {**kw, "fill": np.ones((5, 4, 3))}
    out = Augmenter((5, 4, 3), **kw)(np.zeros((0, 60), dtype), np.random.RandomState(0))
    assert out.shape == (0, 60) and out.dtype == dtype


def test_the_default_crop_padding_is_an_eighth_of_the_shorter_side():
    """The default came from the height alone: images 32x3 were padded by 4 and refused, the
    message naming a --crop-padding the user never gave; a side too short for any crop says so."""
    from mlplab.runs import RunConfig
    from mlplab.runs.building import crop_padding

    crop = RunConfig(augment=["crop"])
    assert crop_padding(crop, (32, 32, 3)) == 4 and crop_padding(crop, (8, 8, 1)) == 1
    assert crop_padding(crop, (32, 3, 1)) == 1 == crop_padding(crop, (3, 32, 1))
    assert crop_padding(crop, (28, 40, 1)) == 4 and crop_padding(crop, (40, 16, 1)) == 2
    with pytest.raises(ValueError, match=r"^crops cannot shift images 1 pixel on a side; "
                                         r"drop crop from augment\.$"):
        crop_padding(crop, (32, 1, 1))


def test_crop_larger_than_image_matches_padded_reference():
    X = np.arange(1, 2 * 2 * 2 * 1 + 1, dtype=np.float32).reshape(2, 4)
    out = Augmenter((2, 2, 1), flip=False, crop=5)(X, np.random.RandomState(1))
    rs = np.random.RandomState(1)
    dy, dx = rs.randint(0, 11, size=2), rs.randint(0, 11, size=2)
    for i in range(2):
        padded = np.pad(X[i].reshape(2, 2), 5)
        np.testing.assert_array_equal(out[i].reshape(2, 2), padded[dy[i]:dy[i] + 2,
                                                                   dx[i]:dx[i] + 2])


@pytest.mark.parametrize("fill", [0.0, -1.5, "per-channel", "image"])
def test_warp_bilinear_matches_scipy_map_coordinates(fill):
    """The vectorised bilinear resampling against SciPy's, image by image and channel by channel:
    interpolation inside, ``fill`` seen from outside (SciPy's ``grid-constant`` mode)."""
    ndimage = pytest.importorskip("scipy.ndimage")
    rs = np.random.RandomState(0)
    B, H, W, C = 3, 7, 6, 3
    imgs = rs.randn(B, H, W, C).astype(np.float32)
    field = rs.uniform(-2.6, 2.6, size=(2, B, H, W)).astype(np.float32)
    if fill == "per-channel":
        fill = np.array([-1.0, 2.0, 0.5])
    elif fill == "image":
        fill = rs.randn(H, W, C)
    out = warp_bilinear(imgs, field, fill)
    assert out.shape == imgs.shape and out.dtype == np.float32
    fill_img = np.broadcast_to(np.asarray(fill, np.float64), (H, W, C))
    yy, xx = np.mgrid[0:H, 0:W]
    for b in range(B):
        for c in range(C):
            # relative to the fill, the outside is 0: SciPy's cval applies to that difference
            rel = imgs[b, :, :, c].astype(np.float64) - fill_img[:, :, c]
            ref = ndimage.map_coordinates(rel, [yy + field[0, b], xx + field[1, b]], order=1,
                                          mode="grid-constant", cval=0.0)
            np.testing.assert_allclose(out[b, :, :, c], ref + fill_img[:, :, c], atol=1e-5)


def test_warp_by_whole_pixels_is_a_shift_with_the_fill():
    """Every pixel displaced by exactly one row and one column samples the image one pixel down
    and to the right: a shift, with the fill where the image ends (the last image's last row
    included, whose bilinear neighbours lie past the edge)."""
    imgs = np.random.RandomState(3).randn(2, 5, 4, 2).astype(np.float32)
    out = warp_bilinear(imgs, np.ones((2, 2, 5, 4), np.float32), fill=-3.0)
    ref = np.full_like(imgs, -3.0)
    ref[:, :-1, :-1] = imgs[:, 1:, 1:]
    np.testing.assert_allclose(out, ref, atol=1e-6)


def test_elastic_field_is_smooth_bounded_and_seeded():
    aug = Augmenter((28, 28, 1), flip=False, crop=0, elastic=2.0, elastic_grid=4)
    field = aug.elastic_field(16, np.random.RandomState(0))
    assert field.shape == (2, 16, 28, 28) and field.dtype == np.float32
    assert np.abs(field).max() <= 2.0 + 1e-6 and np.abs(field).max() > 1.0
    # smooth: neighbouring pixels move alike (at most 2 * 2 px over a 9-pixel lattice spacing)
    assert np.abs(np.diff(field, axis=2)).max() <= 4.0 / 9 + 1e-5
    assert np.abs(np.diff(field, axis=3)).max() <= 4.0 / 9 + 1e-5
    np.testing.assert_array_equal(field, aug.elastic_field(16, np.random.RandomState(0)))


def test_elastic_field_of_one_pixel_high_images_keeps_its_bound():
    """A one-pixel side: its lattice points all sit on the one pixel, averaged, so no
    displacement exceeds ``elastic`` there either."""
    aug = Augmenter((1, 12, 1), flip=False, crop=0, elastic=2.0, elastic_grid=4)
    field = aug.elastic_field(64, np.random.RandomState(0))
    assert field.shape == (2, 64, 1, 12) and np.abs(field).max() <= 2.0 + 1e-6


def test_elastic_displacements_are_centred_on_zero():
    """Offsets are uniform in [-elastic, elastic] along each axis: over 64 images pixels move
    both ways about equally (mean near 0; 2,048 lattice offsets give it an sd of about 0.03
    px), and in each direction by more than half the bound somewhere."""
    aug = Augmenter((16, 16, 1), flip=False, crop=0, elastic=2.0, elastic_grid=4)
    field = aug.elastic_field(64, np.random.RandomState(4)).astype(np.float64)
    for axis in field:  # rows, then columns
        assert abs(axis.mean()) < 0.15
        assert axis.min() < -1.0 and axis.max() > 1.0


def test_elastic_distortion_moves_content_within_its_bound(images):
    """The centre of a bright pixel moves by at most ``elastic`` pixels along each axis, an image
    of the fill stays the fill, and an almost-zero field leaves images alone."""
    H, W = 12, 12
    X = np.zeros((64, H, W, 1), np.float32)
    X[:, 6, 5] = 1.0
    aug = Augmenter((H, W, 1), flip=False, crop=0, elastic=1.5, elastic_grid=3)
    out = aug(X.reshape(64, -1), np.random.RandomState(1)).reshape(64, H, W)
    yy, xx = np.mgrid[0:H, 0:W]
    mass = out.sum(axis=(1, 2))
    cy = (out * yy).sum(axis=(1, 2)) / mass
    cx = (out * xx).sum(axis=(1, 2)) / mass
    assert np.hypot(cy - 6, cx - 5).max() <= 1.5 * np.sqrt(2) + 1e-4
    assert np.hypot(cy - 6, cx - 5).mean() > 0.3  # it does move
    same = Augmenter((H, W, 1), flip=False, crop=0, elastic=3.0, fill=-0.7)
    np.testing.assert_allclose(same(np.full((4, H * W), -0.7, np.float32),
                                    np.random.RandomState(2)), -0.7, atol=1e-6)
    tiny = Augmenter(images.shape[1:], flip=False, crop=0, elastic=1e-9)
    np.testing.assert_allclose(tiny(_flat(images), np.random.RandomState(3)), _flat(images),
                               atol=1e-6)
    assert "elastic=1.5, elastic_grid=3" in repr(aug)


def test_augmenter_rejects_bad_elastic():
    with pytest.raises(ValueError, match="elastic .* must be a number >= 0"):
        Augmenter((6, 5, 3), elastic=-1)
    with pytest.raises(ValueError, match="elastic_grid must be an integer >= 2"):
        Augmenter((6, 5, 3), elastic=1, elastic_grid=1)
    # True was taken as a 1-pixel distortion and a grid of 2.5 points as 2, as crop no longer is
    with pytest.raises(ValueError, match="must be a number >= 0; got True"):
        Augmenter((6, 5, 3), elastic=True)
    with pytest.raises(ValueError, match=r"elastic_grid must be an integer >= 2 .*; got 2\.5"):
        Augmenter((6, 5, 3), elastic=1, elastic_grid=2.5)
    assert Augmenter((6, 5, 3), elastic=np.float32(0.5), elastic_grid=np.int64(3)).elastic_grid == 3


def test_augmentation_is_deterministic_and_leaves_input_alone(images):
    aug = Augmenter(images.shape[1:])
    X = _flat(images)
    before = X.copy()
    a = aug(X, np.random.RandomState(7))
    b = aug(X, np.random.RandomState(7))
    c = aug(X, np.random.RandomState(8))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    np.testing.assert_array_equal(X, before)


def test_augmenter_rejects_wrong_batch(images):
    with pytest.raises(ValueError, match="flattened 6x5x3"):
        Augmenter((6, 5, 3))(np.zeros((4, 10), np.float32), np.random.RandomState(0))
    with pytest.raises(ValueError, match="image_shape"):
        Augmenter((6, 5))


def test_elastic_field_interpolates_linearly_between_lattice_points_on_the_pixels():
    """The ``elastic_grid`` lattice spans the image from its first pixel to its last: with 10
    rows and a 4-point lattice its points lie on rows 0, 3, 6 and 9 (7 columns, 3 points: on
    columns 0, 3 and 6), and between them the field is linear in each axis, so its second
    difference vanishes on every pixel that is not a lattice point."""
    aug = Augmenter((10, 7, 1), flip=False, crop=0, elastic=2.0, elastic_grid=4)
    aug_cols = Augmenter((10, 7, 1), flip=False, crop=0, elastic=2.0, elastic_grid=3)
    for field, axis, knots in ((aug.elastic_field(8, np.random.RandomState(0)), 2, {3, 6}),
                               (aug_cols.elastic_field(8, np.random.RandomState(1)), 3, {3})):
        field = field.astype(np.float64)
        size = field.shape[axis]
        second = np.diff(field, n=2, axis=axis)  # index i: at pixel i + 1
        for pixel in range(1, size - 1):
            at = np.abs(np.take(second, pixel - 1, axis=axis)).max()
            if pixel in knots:
                assert at > 1e-3, (axis, pixel)  # a kink: the lattice offsets differ
            else:
                assert at < 1e-5, (axis, pixel)
