"""``mlplab data info|show|download``, and the ``--dataset`` options every other command shares.

Other command modules call :func:`add_dataset_arguments` on their parser and
:func:`load_dataset_from_args` in their handler, so every command reads data the same way.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from mlplab._text import counted, display_width, padded, printable
from mlplab.cli import (
    UsageError,
    add_no_progress,
    check_figure_file,
    figure_not_written,
    split_seed_arg,
    usage_errors,
)
from mlplab.cli._console import as_written
from mlplab.cli._types import data_dir_arg, positive_int, user_path_arg
from mlplab.data.base import SPLITS, Dataset
from mlplab.data.datasets import DATASET_NAMES
from mlplab.data.preview import MAX_CLASSES

DATASET_HELP = (f"dataset: {', '.join(DATASET_NAMES)} or folder:PATH (one sub-folder of images "
                "per class, optionally inside train/, val/ and test/)")


def _base_url(text: str) -> str:
    """A ``--mirror``: an http(s) or file URL with a place in it. A folder path or "http://"
    failed only at the download ("unknown url type"), exit 1, where the command line itself
    cannot work."""
    from urllib.parse import urlparse

    expected = (f"expected a base URL such as https://host/path/ (a local folder: "
                f"file:///path/); got {text!r}")
    try:
        url = urlparse(text)
        url.port  # noqa: B018  (a port that is no number raises here, as at the download)
    except ValueError as exc:  # "Invalid IPv6 URL" (http://[::1): argparse named the function
        raise argparse.ArgumentTypeError(f"{expected} ({exc})") from None
    if url.scheme not in ("http", "https", "file") or not (url.netloc or url.path.strip("/")):
        raise argparse.ArgumentTypeError(expected)
    if url.scheme != "file" and any(c.isspace() or not c.isprintable() for c in text):
        # http.client refuses them at the download ("URL can't contain control characters")
        raise argparse.ArgumentTypeError(f"{expected}: a URL holds no spaces or control "
                                         "characters (write a space as %20)")
    return text


def _split_size(text: str) -> int | float:
    """``"1000"`` -> 1000 images, ``"0.1"`` -> a 10% fraction."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a count like 1000 or a fraction like 0.1; "
                                         f"got {text!r}") from None
    if not value >= 0 or (not value.is_integer() and value >= 1):  # NaN too
        raise argparse.ArgumentTypeError(f"expected a count >= 0 or a fraction in (0, 1); "
                                         f"got {text!r}")
    if value == 1 and "." in text:  # "1.0" as 100%, which would leave nothing: not one image
        raise argparse.ArgumentTypeError(f"expected a count >= 0 or a fraction in (0, 1); got "
                                         f"{text!r} (a fraction must be below 1; for one image "
                                         "give 1)")
    return int(value) if value.is_integer() and "." not in text else value


def _image_size(text: str) -> str:
    """``--image-size``: checked now, passed on as given (``32`` or ``32x24``)."""
    from mlplab.data import DatasetError, parse_image_size

    try:
        parse_image_size(text)
    except DatasetError as exc:
        raise argparse.ArgumentTypeError(str(exc).rstrip(".")) from None
    return text


def _dataset_name(text: str) -> str:
    """``--dataset`` (or ``NAME``): a name from the fixed list or ``folder:PATH``, checked now and
    passed on as given. An unknown name is a usage error (exit 2) listing the names, as argparse
    answers an unknown ``--preset`` or ``--optimizer``; a ``folder:PATH`` whose folder is missing
    is one of the world's, said when it is read (exit 1)."""
    from mlplab.data import DatasetError
    from mlplab.data.datasets import check_dataset_name

    try:
        check_dataset_name(text)
    except DatasetError as exc:
        raise argparse.ArgumentTypeError(str(exc).rstrip(".")) from None
    return text


def add_dataset_arguments(parser: argparse.ArgumentParser, positional: bool = False,
                          default: str | None = "digits", val_size_note: str = "",
                          dataset_default_note: str = "digits") -> None:
    """Add ``--dataset`` (or a positional ``NAME``), ``--data-dir``, ``--download``,
    ``--mirror``, ``--val-size``, ``--test-size``, ``--image-size`` and ``--no-cache`` to
    ``parser`` (``--seed`` is left to the caller); read them back with
    :func:`load_dataset_from_args`. ``val_size_note`` ends ``--val-size``'s list of defaults (for
    a command whose presets set the split). ``default=None`` leaves ``--dataset`` None unless it
    is given (the caller fills in digits), so that the caller can tell whether it was;
    ``dataset_default_note`` then says what the default is.
    """
    g = parser.add_argument_group("data")
    if positional:
        g.add_argument("dataset", metavar="NAME", type=_dataset_name, help=DATASET_HELP)
    else:
        g.add_argument("--dataset", metavar="NAME", default=default, type=_dataset_name,
                       help=f"{DATASET_HELP} (default: {default or dataset_default_note})")
    g.add_argument("--data-dir", metavar="DIR", default=None, type=data_dir_arg,
                   help="where the dataset files are (and --download puts them); default "
                        "$MLPLAB_DATA or ~/.cache/mlplab")
    g.add_argument("--download", action="store_true",
                   help="download missing files from the official URL (or --mirror), "
                        "checksum-verified")
    g.add_argument("--mirror", metavar="BASE_URL", default=None, type=_base_url,
                   help="with --download: download from BASE_URL/<file name> instead of the "
                        "official site")
    g.add_argument("--val-size", metavar="N", type=_split_size, default=None,
                   help="validation images: a count, or a fraction of the training images "
                        "(of those left after the test split, for digits and folders; of a "
                        "folder's val/ where it has one) (default: cifar10 the last 1000 "
                        "training images, (fashion-)mnist the last 5000, digits and folders a "
                        "stratified 10%% of all images, a folder with val/ all of it"
                        f"{val_size_note})")
    g.add_argument("--test-size", metavar="N", type=_split_size, default=None,
                   help="test images (default: the whole official test set; 1000 gives the "
                        "exercise's first 1000 CIFAR-10 test images; digits and folders without "
                        "test/ hold out a stratified 10%%)")
    g.add_argument("--image-size", metavar="N|HxW", default=None, type=_image_size,
                   help="resize every image (default: keep the files' size)")
    g.add_argument("--no-cache", dest="data_cache", action="store_false",
                   help="do not read or write the decoded-image cache of folder datasets")


#: the options add_augment_arguments adds (dest == RunConfig field name)
AUGMENT_FIELDS = ("preprocessing", "augment", "crop_padding", "elastic_pixels", "crop_fill")


class _OneSpelling(argparse.Action):
    """Stores an option that has two spellings, refusing both given at once: ``--data-seed 4
    --seed 3`` split with the last, 3, without a word."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        given = getattr(namespace, "_spelled", {})
        other = given.get(self.dest)
        if other is not None and other != option_string:
            raise argparse.ArgumentError(self, f"{other} and {option_string} are the same "
                                               "setting; give one of them")
        namespace._spelled = {**given, self.dest: option_string}
        setattr(namespace, self.dest, values)


def _augment(text: str) -> list[str]:
    from mlplab.runs import AUGMENTATIONS

    items = [a.strip() for a in text.split(",")]
    # an empty text (an unset shell variable) turned a preset's augmentation off unasked, and
    # "none,flip" trained with flips
    if not any(items):
        raise argparse.ArgumentTypeError("empty; give flip, crop, elastic, comma-separated, or "
                                         "none for no augmentation")
    if not all(items):
        raise argparse.ArgumentTypeError(f"{text!r} has an empty item; give flip, crop, elastic, "
                                         "comma-separated, or none")
    bad = [a for a in items if a not in AUGMENTATIONS and a != "none"]
    if bad:
        raise argparse.ArgumentTypeError(f"unknown augmentation {bad[0]!r}; use any of "
                                         "flip, crop, elastic, comma-separated (or none)")
    if "none" in items and len(set(items)) > 1:
        raise argparse.ArgumentTypeError(f"{text!r}: none means no augmentation; give it alone, "
                                         "or the augmentations without it")
    return list(dict.fromkeys(a for a in items if a != "none"))  # in order, once each


def add_augment_arguments(group: argparse._ArgumentGroup, presets: bool = True) -> None:
    """``--preprocessing``, ``--augment`` and their options (``mlplab train``, ``data show``,
    which has no presets: ``presets`` False); dests are :class:`mlplab.runs.RunConfig` field
    names, defaults None (= not given)."""
    from mlplab.data import PREPROCESSING
    from mlplab.runs import CROP_FILLS

    # --preprocess: tune's other spelling, an alias wherever either is a flag (as --quiet)
    group.add_argument("--preprocessing", "--preprocess", choices=list(PREPROCESSING),
                       default=None,
                       help="input preprocessing (default: standardize; the exercise presets: "
                            "exercise = subtract the mean image; the Fashion-MNIST presets: "
                            "sqrt-standardize = square root of the intensities, then "
                            "standardize)" if presets else
                            "input preprocessing (default with any option of this group: "
                            "standardize; sqrt-standardize = square root of the intensities, "
                            "then standardize, as the Fashion-MNIST presets train)")
    group.add_argument("--augment", type=_augment, default=None, metavar="flip,crop,elastic",
                       help="minibatch augmentation: random horizontal flips, padded crops "
                            "and/or elastic distortions (smooth random warps); none: no "
                            + ("augmentation, e.g. to turn off a preset's (default: none)"
                               if presets else "augmentation (default: none)"))
    group.add_argument("--crop-padding", type=positive_int, default=None, metavar="PIXELS",
                       help="how far a crop may shift the image, less than its side "
                            "(default: an eighth of its shorter side: 4 pixels on CIFAR-10 and "
                            "Fashion-MNIST; 1-2 suit small centred images)")
    group.add_argument("--elastic-pixels", type=float, default=None, metavar="PIXELS",
                       help="the largest displacement of an elastic distortion along each "
                            "axis, at most 8 (default: 2)")
    group.add_argument("--crop-fill", choices=list(CROP_FILLS), default=None,
                       help="what a crop or distortion uncovers at the border: zero = 0 after "
                            "preprocessing: the mean image under exercise, the mean colour of "
                            "each channel under standardize (default); black = a black border, "
                            "the background Fashion-MNIST's garments lie on")


def load_dataset_from_args(args: argparse.Namespace, progress: bool = True) -> Dataset:
    """``load_dataset`` with the options added by :func:`add_dataset_arguments`.

    The split seed is ``args.data_seed`` if present, else ``args.seed``, else 0. ``progress``:
    the bars of a download and of a folder's decoding (a command's --quiet turns them off).
    """
    from mlplab.data import load_dataset

    seed = getattr(args, "data_seed", None)
    if seed is None:
        seed = getattr(args, "seed", None)
    return load_dataset(args.dataset, data_dir=args.data_dir, download=args.download,
                        val_size=args.val_size, test_size=args.test_size,
                        image_size=args.image_size, seed=0 if seed is None else seed,
                        mirror=args.mirror, cache=getattr(args, "data_cache", True),
                        progress=progress)


#: what data info's and data show's --no-progress turns off
_LOADING_BARS = "progress bars while files download (--download) or a folder's images are decoded"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="inspect, preview and download datasets",
                       description="Inspect, preview and download the datasets mlplab reads: "
                                   f"{', '.join(DATASET_NAMES)} and folder:PATH.")
    dsub = p.add_subparsers(dest="data_command", metavar="ACTION")
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])

    info = dsub.add_parser("info", help="split sizes, image shape, class names and counts",
                           description="Load a dataset and print its split sizes, image shape, "
                                       "class names and the class counts of every split.")
    add_dataset_arguments(info, positional=True)
    info.add_argument("--data-seed", type=split_seed_arg, default=0, action=_OneSpelling,
                      help="seed of the stratified splits, as mlplab train's --data-seed "
                           "(default: %(default)s)")
    # (its own action, so that each spelling shows the value name it has in other commands)
    info.add_argument("--seed", dest="data_seed", metavar="SEED", type=split_seed_arg,
                      default=argparse.SUPPRESS, action=_OneSpelling,
                      help="the same as --data-seed")
    info.add_argument("--json", action="store_true", help="print the summary as JSON")
    add_no_progress(info, _LOADING_BARS)
    info.set_defaults(func=run_info, unknown_hint=_dataset_is_named)

    show = dsub.add_parser("show", help="write a grid of sample images with class names",
                           description="Write the exercise's 'sample images' figure: a few "
                                       "random images of every class (training images unless "
                                       "--split says otherwise), one column per class titled "
                                       f"with its name; of more than {MAX_CLASSES} classes, the "
                                       f"first {MAX_CLASSES} (the first with images in the "
                                       "split).")
    add_dataset_arguments(show, positional=True)
    show.add_argument("--out", required=True, metavar="FILE", type=user_path_arg,
                      help="image file to write (.png, .pdf or .svg)")
    show.add_argument("--per-class", type=int, default=7,
                      help="images per class, at most 30 (default: %(default)s)")
    show.add_argument("--split", choices=list(SPLITS), default="train",
                      help="split to sample from (default: %(default)s)")
    show.add_argument("--seed", type=split_seed_arg, default=0,
                      help="seed of the sampled images and the augmentation, and of the splits "
                           "unless --data-seed is given (default: %(default)s)")
    show.add_argument("--data-seed", type=split_seed_arg, default=None,
                      help="seed of the stratified splits, as mlplab train's --data-seed "
                           "(default: --seed)")
    seen = show.add_argument_group(
        "as the network sees them", "with any of these, draw the images preprocessed (each "
        "scaled to its own range) and augmented as mlplab train would, to check an "
        "augmentation before training with it")
    add_augment_arguments(seen, presets=False)
    add_no_progress(show, _LOADING_BARS)
    show.set_defaults(func=run_show, unknown_hint=_dataset_is_named)

    dl = dsub.add_parser("download", help="download and verify a dataset's files",
                         description="Download a dataset's files (official URLs or --mirror), "
                                     "verify their checksums and store them in --data-dir "
                                     "(default $MLPLAB_DATA or ~/.cache/mlplab).")
    dl.add_argument("dataset", metavar="NAME", choices=["cifar10", "fashion-mnist", "mnist"],
                    help="cifar10, fashion-mnist or mnist")
    dl.add_argument("--data-dir", metavar="DIR", default=None, type=data_dir_arg,
                    help="where to store the files (default: $MLPLAB_DATA or ~/.cache/mlplab)")
    dl.add_argument("--mirror", metavar="BASE_URL", default=None, type=_base_url,
                    help="download from BASE_URL/<file name> instead of the official site")
    add_no_progress(dl, "progress bars while the files download")
    dl.set_defaults(func=run_download, unknown_hint=_dataset_is_named)


def _dataset_is_named(unknown: list[str]) -> tuple[str | None, set[str]]:
    """``mlplab data info --dataset cifar10``, as mlplab train takes it, was answered "did you
    mean --data-dir?": here the dataset is the action's first argument."""
    if any(u.split("=")[0] == "--dataset" for u in unknown):
        return ("the dataset is this command's NAME argument, without --dataset: "
                "mlplab data ACTION NAME, e.g. mlplab data info cifar10"), {"--dataset"}
    return None, set()


#: the most class names data info's "classes" line lists (the first ones, ..., the last), as
#: many as the built-in datasets have: the table below names every class
LISTED_CLASSES = 10


def run_info(args: argparse.Namespace) -> int:
    ds = load_dataset_from_args(args, args.progress)
    s = ds.summary()
    if args.json:
        print(json.dumps({**s, "notes": ds.notes}, indent=2))
        return 0
    h, w, c = ds.image_shape
    # names from files and folders with their control characters written out, as mlplab runs
    # writes them (a newline broke the table's row; an ESC or a bidirectional override reached
    # the terminal, which recoloured, cleared or reordered the screen)
    print(printable(f"dataset   {ds.name}", one_line=True))
    print(printable(f"source    {ds.source}", one_line=True))
    resized = f"; resized to {h}x{w} by --image-size" if args.image_size else ""
    print(f"images    {h}x{w}x{c} {s['dtype']} ({ds.num_features} features flattened{resized})")
    names = [printable(c, one_line=True) for c in ds.classes]
    if len(names) > LISTED_CLASSES:
        # 1,000 classes made this one line of 11,000 characters, each name again in the table
        names = [*names[:LISTED_CLASSES - 1], "...", names[-1]]
    print(f"classes   {ds.num_classes}: {', '.join(names)}")
    for note in ds.notes:
        print(printable(f"note      {note}", one_line=True))
    # in terminal columns (CJK names), as written (a name the output's encoding lacks: \u732b)
    written = [as_written(printable(c, one_line=True)) for c in ds.classes]
    width = max(6, *(display_width(c) for c in written))
    print()
    print(f"{'class':<{width}}  {'train':>7}  {'val':>7}  {'test':>7}")
    counts = {k: v["class_counts"] for k, v in s["splits"].items()}
    for i, name in enumerate(written):
        print(f"{padded(name, width)}  {counts['train'][i]:>7}  {counts['val'][i]:>7}  "
              f"{counts['test'][i]:>7}")
    sizes = {k: v["size"] for k, v in s["splits"].items()}
    print(f"{'total':<{width}}  {sizes['train']:>7}  {sizes['val']:>7}  {sizes['test']:>7}")
    return 0


def run_show(args: argparse.Namespace) -> int:
    from mlplab.data.preview import MAX_PER_CLASS, grid_classes, sample_grid, shown_classes
    from mlplab.runs.config import check_augment_given

    if args.per_class < 1:
        raise UsageError(f"--per-class must be at least 1; got {args.per_class}.")
    given = {k: getattr(args, k) for k in AUGMENT_FIELDS if getattr(args, k) is not None}
    with usage_errors():
        check_augment_given(given, given.get("augment", []))
    if given.get("augment") and args.split != "train":
        raise UsageError(f"training augments only training images; drop --augment to see the "
                         f"{args.split} images preprocessed, or use --split train.")
    out = Path(args.out)
    check_figure_file(out, "--out", "samples.png")
    ds = load_dataset_from_args(args, args.progress)
    # no more rows than the largest class of the split has images
    labels = ds.split(args.split)[1]
    shown = grid_classes(labels, ds.num_classes)  # (the columns: at most 30 classes)
    counts = np.bincount(labels, minlength=max(ds.num_classes, 1))[shown]
    per_class = int(min(args.per_class, counts.max(initial=0)))
    if per_class > MAX_PER_CLASS:  # (more rows than the split's classes hold are not drawn)
        raise UsageError(f"--per-class must be at most {MAX_PER_CLASS} (the figure is at most 9 "
                         f"inches tall); got {args.per_class}.")
    # a column of a smaller class is short
    up_to = "up to " if counts.min(initial=per_class) < per_class else ""
    view, title, what = None, None, ""
    if given:
        from mlplab.runs import RunConfig, make_network_view

        cfg = RunConfig(**given)
        with usage_errors(given):  # a bad option value, e.g. --elastic-pixels 0
            view = make_network_view(cfg, ds, seed=args.seed)
        steps = [cfg.preprocessing, *cfg.augment]
        what = f", as the network sees them: {' + '.join(steps)}"
        title = f"{ds.name}: {args.split} images, {' + '.join(steps)}"
    try:
        path = sample_grid(ds, out, per_class=per_class, split=args.split, seed=args.seed,
                           transform=view, title=title)
    except OSError as exc:
        figure_not_written(out, "--out", exc)
    print(f"wrote {path} ({up_to}{counted(per_class, args.split + ' image')} per class, "
          f"{shown_classes(shown, ds.num_classes, args.split)}{what})")
    return 0


def run_download(args: argparse.Namespace) -> int:
    from mlplab.data.download import download_dataset

    paths = download_dataset(args.dataset, data_dir=args.data_dir, mirror=args.mirror,
                             progress=args.progress)
    for p in paths:
        print(f"ok  {p}")
    return 0
