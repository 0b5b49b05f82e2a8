"""Using a finished (or interrupted) run folder: :func:`load_run` (its model file, config and
metrics), :func:`evaluate_run` (accuracy, per-class accuracy and confusion matrix on one split of
its data, refused if that split has changed since) and :func:`predict_images` (its model on image
files). Also how a run folder's ``config.json`` is read back, including a ``mlplab torch train``
folder's, whose data options are all that evaluating it needs. It is apart from
:mod:`mlplab.runs.training` because using a run never trains: ``mlplab evaluate`` and ``mlplab
predict`` need only these functions and what they build on.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mlplab import io
from mlplab._text import agree, counted, path_word, shell_command
from mlplab._validation import check_int, is_int, path_list, setting
from mlplab.runs.building import load_run_dataset, moved_config, moved_data_hint
from mlplab.runs.config import RunConfig
from mlplab.runs.files import (
    CHECKPOINT_FILE,
    CONFIG_FILE,
    DEPTH_CONFIG_FILE,
    DEPTH_FILE,
    METRICS_FILE,
    MODEL_FILE,
    NO_DATASET,
    TORCH_CHECKPOINT_FILE,
    diverged_study,
    inner_run_folder,
    not_a_folder,
    not_a_run_config,
    read_metrics,
    recorded_plots,
    resume_setting,
    run_folder_advice,
    where_next_run,
)
from mlplab.runs.lock import training_process
from mlplab.runs.splits import check_same_decoding, check_same_split, split_fingerprint

if TYPE_CHECKING:
    from mlplab.data import Dataset


def _no_model_hint(run_dir: Path) -> str:
    """What to do with a folder that has no model file."""
    holder = training_process(run_dir)
    if holder is not None:  # resuming it would be refused: wait
        if not io.found_file(run_dir / CONFIG_FILE):  # (mlplab runs does not list it yet)
            return (f"another process is starting a run in it ({holder}), still loading its "
                    "data; it has one once training ends")
        return (f"it is still being trained ({holder}); it has one once training ends "
                "(mlplab runs shows how far it has got)")
    if read_metrics(run_dir / METRICS_FILE).get("status") == "diverged":
        # (a run resumed from no checkpoint, killed in its first epoch, that diverged has none)
        kept = " (its checkpoint keeps the last good epoch, which a resume would train into " \
            "the same divergence)" if io.found_file(run_dir / CHECKPOINT_FILE) else ""
        return (f"its loss diverged, so it saved no model{kept}; start a new run with other "
                f"settings (a lower {setting('--lr', 'lr')}, say) and another "
                f"{setting('--out', 'out')}")
    for checkpoint, torch in ((CHECKPOINT_FILE, False), (TORCH_CHECKPOINT_FILE, True)):
        if io.found_file(run_dir / checkpoint):
            elsewhere = _resume_elsewhere(run_dir, torch)
            if elsewhere is not None:
                return f"it has a checkpoint, but {elsewhere}"
            return f"it has a checkpoint: continue it with {resume_setting(run_dir, torch)}"
    known = other_output_hint(run_dir)
    if known is not None:
        return known
    started = _started_run_hint(run_dir)
    if started is not None:
        return started
    return (inner_run_folder(run_dir, MODEL_FILE, "the run folder with a model")
            or run_folder_advice())


def _started_run_hint(run_dir: Path) -> str | None:
    """What to do with a run folder that holds only its ``config.json`` (None if it does not):
    a run killed before its first epoch ended, which ``--resume`` trains from the start, or a
    PyTorch run whose loss diverged (its ``config.json`` says so), which it refuses."""
    try:
        config = io.read_json(run_dir / CONFIG_FILE) if io.found_file(run_dir / CONFIG_FILE) \
            else None
    except (OSError, ValueError):
        return None  # evaluate's own reading of it says what is wrong
    if not isinstance(config, dict):
        return None
    if config.get("framework") == "pytorch":
        if isinstance(config.get("diverged"), dict):
            return ("its loss diverged, so it saved no model; start a new run with other "
                    f"settings (a lower {setting('--lr', 'lr')}, say), "
                    f"{where_next_run(run_dir, named=True)}")
        command = resume_setting(run_dir, torch=True)
    else:
        # ({} or another tool's: resuming it would be refused as no run's configuration)
        foreign = not_a_run_config(run_dir)
        if foreign is not None:
            return (f"its {CONFIG_FILE} is not a valid run configuration ({foreign}): another "
                    f"tool's, or damaged; {run_folder_advice()}")
        command = resume_setting(run_dir, torch=False)
    return (f"it stopped before its first epoch ended, so it saved no model; train it with "
            f"{command}")


def _resume_elsewhere(run_dir: Path, torch: bool) -> str | None:
    """How to finish a stopped run whose folder this user may not write (a read-only mount, a
    colleague's results), where ``--resume`` is refused: in a copy. None if it may be written."""
    if os.access(run_dir, os.W_OK | os.X_OK):
        return None
    base = run_dir if run_dir.name not in ("", "..") else run_dir.resolve()  # (".": no name)
    copy = base.with_name(f"{base.name}-resumed")
    return (f"{run_dir} cannot be written here ({io.why_not_writable(run_dir)}), so it cannot "
            "be resumed in place: copy the folder to where you may write (say "
            f"{shell_command(['cp', '-r', path_word(run_dir), path_word(copy)])}, with another "
            f"place than {copy.parent} if that is read-only too) and resume the copy with "
            f"{resume_setting(copy, torch, plots=recorded_plots(run_dir))}")


def other_output_hint(folder: Path) -> str | None:
    """What another command's output folder is, by its marker files, and where its evaluable
    run is, if it has one (None: not one mlplab recognises). The folders people pass by mistake:
    a tuning folder, a report folder (whose tuning/ is one) and a depth study's. A marker that
    cannot be looked at counts as none: the hint is left out, not the error it follows."""
    def best_run(tuning: Path) -> Path | None:
        best = tuning / "best-run"
        return best if io.found_file(best / MODEL_FILE) else None

    if io.found_file(folder / "report.json"):
        what = "it is a report folder written by mlplab reproduce"
        best = best_run(folder / "tuning")
        if best is not None:
            return f"{what}; the run folder of its tuning's best trial is {best}"
        return f"{what}, which keeps no run folder; its results are in report.md and report.html"
    if io.found_file(folder / DEPTH_FILE):
        train = setting("mlplab torch train --hidden H[,H...]",
                        "mlplab.torch_mlp.train_run(..., hidden=[H, ...], out=RUN)")
        what = ("it is a depth study written by mlplab torch depth, which keeps no run folder: "
                "its numbers are in depth.md and depth.json")
        evaluate = f"to evaluate one depth here, train it with {train} and evaluate that run folder"
        if any((folder / "networks").glob("*.pt")):
            return (f"{what}, its networks in networks/ as PyTorch model files "
                    f"(mlplab.torch_mlp.load_torch_model; {evaluate})")
        # (a study of an mlplab before 1 Dec 2026 saved no networks: none to point to)
        return f"{what}, and it holds no network files ({evaluate})"
    if io.found_file(folder / DEPTH_CONFIG_FILE):  # a study that has not written depth.json
        what = "it is a depth study written by mlplab torch depth"
        holder = training_process(folder)
        if holder is not None:
            return (f"{what}, still training ({holder}); its numbers will be in depth.md and "
                    "depth.json")
        if diverged_study(folder):  # (a damaged config is not: --resume says what it is)
            return (f"{what} whose loss diverged; start a new one with other settings (a lower "
                    f"{setting('--lr', 'lr')}, say)")
        resume = setting(f"mlplab torch depth --resume {shell_command([path_word(folder)])}",
                         f"mlplab.torch_mlp.resume_depth_run({str(folder)!r})")
        return f"{what} that stopped before its end: continue it with {resume}"
    if any(io.found_file(folder / marker) for marker in ("summary.json", "study.db")):
        what = "it is a tuning folder written by mlplab tune"
        best = best_run(folder)
        if best is not None:
            return f"{what}; the run folder of its best trial is {best}"
        try:
            summary = io.read_json(folder / "summary.json")
        except (OSError, ValueError):
            summary = None
        if isinstance(summary, dict) and summary.get("best_trial", 0) is None:
            # (no trial completed, or every complete one diverged: rerunning retrains nothing)
            return (f"{what} whose search has no best trial yet (none completed without "
                    "diverging), so no run folder to evaluate; search again with more trials "
                    "or other settings")
        again = setting("run the same mlplab tune again without --search-only",
                        "call mlplab.tuning.tune again with the same arguments and "
                        "search_only=False")
        return (f"{what} without a retrained best trial ({folder / 'best-run'}): {again} to "
                "retrain it")
    study = folder.parent
    if folder.name == "networks" and io.found_file(study / DEPTH_FILE):
        # (its model files are a depth study's networks, which no run folder holds)
        what = (other_output_hint(study) or "").removeprefix("it is ")  # "a depth study ..."
        return f"it holds the networks of {study}, {what}"
    return None


def load_run(run: str | os.PathLike) -> tuple[io.LoadedModel, RunConfig, dict[str, Any]]:
    """``(model file, config, metrics)`` of a finished (or interrupted) run folder."""
    run_dir = Path(run)
    loaded = _load_run_model(run_dir)
    config_path = run_dir / CONFIG_FILE
    if not io.is_file(config_path):  # e.g. a model.npz copied alone into a folder
        raise FileNotFoundError(f"{run_dir} has no {CONFIG_FILE}, which says which data the run "
                                f"used; {run_folder_advice(whole=True)}.")
    cfg = finished_run_config(io.read_json(config_path), config_path)
    return loaded, cfg, read_metrics(run_dir / METRICS_FILE)


def _load_run_model(run_dir: Path) -> io.LoadedModel:
    """The model file of a run folder (which is all ``predict`` needs)."""
    if not io.is_folder(run_dir):
        raise FileNotFoundError(f"{not_a_folder(run_dir)}; {run_folder_advice()}.")
    model_path = run_dir / MODEL_FILE
    if not io.is_file(model_path):  # (a loop of links is no missing file)
        raise FileNotFoundError(f"{run_dir} has no {MODEL_FILE}; {_no_model_hint(run_dir)}.")
    return io.load_model(model_path)


#: the options that say which data a run saw: all that evaluating its model needs
_DATA_OPTIONS = ("dataset", "data_dir", "val_size", "test_size", "image_size", "data_seed",
                 "preprocessing")


def finished_run_config(values: Any, path: Path | str = CONFIG_FILE) -> RunConfig:
    """The config of a run folder. A ``mlplab torch train`` folder holds the same ``model.npz``
    (its weights as an MLP) but a PyTorch config; its data options are all that evaluating
    with it needs, so the rest is left at the defaults."""
    if not isinstance(values, dict):
        raise ValueError(f"{path} is not a run configuration (a JSON object of options); it "
                         f"holds a {type(values).__name__}.")
    if values.get("framework") == "pytorch":
        values = {k: values[k] for k in _DATA_OPTIONS if k in values}
    if "dataset" not in values:  # `{}` would otherwise stand for the defaults: the digits
        raise ValueError(f"{path} is not a valid run configuration: {NO_DATASET}.")
    try:
        return RunConfig.from_dict(values)
    except (TypeError, ValueError) as exc:  # a hand-edited or damaged file
        raise ValueError(f"{path} is not a valid run configuration: {exc}") from None


def evaluate_run(run: str | os.PathLike, split: str = "val", data: Dataset | None = None,
                 data_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """Accuracy, per-class accuracy (the share of each class's images predicted right; None for a
    class with no images in the split) and confusion matrix of a run's model on one split of its
    dataset (loaded as the run was configured). ``data``: the run's dataset, already loaded;
    ``data_dir``: where the run's data is now, if it was moved (for a ``folder:PATH`` dataset the
    folder itself), as in :func:`mlplab.runs.resume_run`; its splits must be the run's."""
    from mlplab.data.base import SPLITS
    from mlplab.metrics import confusion_matrix

    loaded, cfg, metrics = load_run(run)
    _warn_if_not_the_final_model(Path(run), metrics, loaded.extra.get("metrics"))
    cfg = moved_config(cfg, data, data_dir)
    # moved="": the place given is the new one; only the download advice is dropped
    other = split != "val"  # the advised command evaluates the split asked for, not the default
    moved = "" if data_dir is not None else moved_data_hint(
        shell_command(["mlplab", "evaluate", path_word(run),
                       *(["--split", split] if other else [])]),
        f"evaluate_run({str(run)!r}" + (f", {split!r}" if other else "") + ", data_dir=DIR)")
    ds = data if data is not None else load_run_dataset(
        cfg, loaded.extra.get("image_shape"), moved=moved)
    X, y = ds.split(split)
    recorded = metrics.get("split_sha1")
    if not (isinstance(recorded, dict) and recorded.get(split) == split_fingerprint(X, y)):
        # the same images as the run's are the same pixels, whichever mlplab decoded them
        check_same_decoding(metrics, cfg.dataset, run, "evaluating")
    check_same_split(metrics, split, X, y, ds.name)
    if not len(y):
        others = [s for s in SPLITS if s != split and len(ds.split(s)[1])]
        # the run's own setting, not always val_size's ("the test split ... (e.g. a run trained
        # with val_size 0)" sent a user to the wrong option); a preset may have set it
        why = f" (its {CONFIG_FILE} has {split}_size 0)" \
            if getattr(cfg, f"{split}_size", None) == 0 else ""
        raise ValueError(f"the {split} split of {ds.name} is empty for this run{why}; evaluate "
                         f"another: "
                         f"{', '.join(setting(f'--split {s}', f'split={s!r}') for s in others)}.")
    pred = _in_chunks(loaded, X, "predict")
    cm = confusion_matrix(y, pred, loaded.model.num_classes)
    # a class with no images in the split has no accuracy (None, JSON's null), not 0: a 0.000
    # row read as "every image of it wrong"
    per_class = [float(hit / n) if n else None for hit, n in zip(np.diag(cm), cm.sum(axis=1))]
    return {"split": split, "dataset": ds.name, "size": int(len(y)),
            "accuracy": float(np.mean(pred == y)), "classes": list(ds.classes),
            "per_class_accuracy": per_class, "confusion_matrix": cm.tolist()}


def _in_chunks(loaded: io.LoadedModel, X: np.ndarray, method: str) -> np.ndarray:
    """``loaded.model.<method>`` of the preprocessed ``X``, preprocessed a chunk at a time: the
    whole split at once held a float32 copy of it (600 MB for CIFAR-10's training split, beside
    the images themselves) where the network only ever needs a chunk."""
    from mlplab.models import EVAL_CHUNK

    predict = getattr(loaded.model, method)
    parts = [predict(loaded.preprocessing.transform(X[start:start + EVAL_CHUNK]))
             for start in range(0, len(X), EVAL_CHUNK)]
    return np.concatenate(parts) if parts else predict(loaded.preprocessing.transform(X))


def _warn_if_not_the_final_model(run_dir: Path, metrics: dict[str, Any],
                                 saved: Any = None) -> None:
    """Say so when the model evaluated is not the run's last word: a run stopped with Ctrl-C
    (its model is the one saved then), and one resumed after that and killed, whose checkpoint
    has gone further than its model file (it was evaluated without a hint). A run stopped while
    it wrote its results (a second Ctrl-C, which stops at once) has no ``metrics.json``, which
    goes before the new model is written; ``saved``, the metrics its model file was saved with,
    then says which model that is."""
    import warnings

    from mlplab.runs.listing import checkpoint_of, newer

    unwritten = not (run_dir / METRICS_FILE).exists() and isinstance(saved, dict) \
        and saved.get("status") in ("interrupted", "completed")
    if unwritten:
        metrics = saved
    elif metrics.get("status") != "interrupted":
        return
    stopped = metrics.get("status") == "interrupted"
    epochs = metrics.get("epochs")
    at = f" after {counted(int(epochs), 'epoch')}" if is_int(epochs) else ""
    which = f"the one saved when it stopped{at}" if stopped else f"the finished one{at}"
    holder = training_process(run_dir)
    if holder is not None:  # resumed now: "--resume finishes it" would be refused
        warnings.warn(f"{run_dir} is being trained again by another process ({holder}): its "
                      f"model is {which}; evaluate it again once "
                      "training ends (mlplab runs shows how far it has got).", stacklevel=3)
        return
    checkpoint = checkpoint_of(run_dir)
    # (a PyTorch run stopped before its first epoch ended has no checkpoint.pt: its metrics say)
    torch = checkpoint.name == TORCH_CHECKPOINT_FILE or metrics.get("framework") == "pytorch"
    elsewhere = _resume_elsewhere(run_dir, torch)
    cut = f"it was stopped while it wrote its results, so it has no {METRICS_FILE} yet"
    if not stopped:  # (unwritten: the model is the run's last, its other files are not all)
        finish = f"{resume_setting(run_dir, torch)} writes them" if elsewhere is None else \
            f"to write them: {elsewhere}"
        warnings.warn(f"{run_dir} has completed training, but {cut}: its model is {which}; "
                      f"{finish}.", stacklevel=3)
        return
    # (as mlplab runs tells such a run: its checkpoint newer than what it saved on stopping)
    further = ("; the run was resumed since and stopped again before it saved, so its "
               "checkpoint has gone further than this model"
               if newer(checkpoint, run_dir / MODEL_FILE) else "")
    if unwritten:
        further += f"; {cut}"
    if torch and checkpoint.name != TORCH_CHECKPOINT_FILE and is_int(epochs) and epochs > 0:
        # stopped after its first epoch by an mlplab before 1 Dec 2026, which kept no
        # checkpoint.pt: --resume cannot go on from this model, only train the run anew
        restart = (f"it has no {TORCH_CHECKPOINT_FILE} (an mlplab before 1 Dec 2026 kept none), "
                   "so resuming trains it again from the start and replaces this model")
        finish = f"{restart}: {resume_setting(run_dir, torch)}" if elsewhere is None else \
            f"{restart}; to do so: {elsewhere}"
    else:
        finish = f"{resume_setting(run_dir, torch)} finishes it" if elsewhere is None else \
            f"to finish it: {elsewhere}"
    warnings.warn(f"{run_dir} was interrupted: its model is {which}{further}; {finish}.",
                  stacklevel=3)


def _sub_folders_hint(folder: Path, limit: int = 100) -> str:
    """For a folder without images whose sub-folders hold some (a folder dataset, one
    sub-folder per class, given as trained on): how to name them."""
    from mlplab.data.folder import image_files

    def is_dir(entry: os.DirEntry) -> bool:
        try:
            return entry.is_dir()
        except OSError:  # (a loop of links)
            return False

    def has_images(sub: Path) -> bool:
        try:
            return bool(image_files(sub))
        except (OSError, ValueError):  # (one that cannot be listed: not to name)
            return False

    try:
        subs = sorted(e.name for e in os.scandir(folder) if is_dir(e))[:limit]
    except OSError:
        return ""
    with_images = [s for s in subs if has_images(folder / s)]
    if not with_images:
        return ""
    # in the caller's words: words to paste into a shell, or a list of paths for Python
    named = setting(shell_command([path_word(folder / name) for name in with_images[:2]]),
                    repr([str(folder / name) for name in with_images[:2]]))
    more = "" if len(with_images) <= 2 else \
        setting(f" ... ({shell_command([path_word(folder)])}/*/ names them all)",
                # (not Path.glob('*/'), which lists the files too before Python 3.11)
                f" ... ([p for p in sorted(Path({str(folder)!r}).iterdir()) if p.is_dir()] "
                "names them all)")
    some = "one of its sub-folders holds" if len(with_images) == 1 else \
        f"{len(with_images)} of its sub-folders hold"
    return f"; {some} images (a folder dataset's classes?): give them, as {named}{more}"


def _expand_image_paths(paths: str | os.PathLike | Sequence[str | os.PathLike]) -> list[Path]:
    """``paths`` (or one path) with each folder replaced by the image files directly inside it
    (sorted)."""
    import warnings

    from mlplab.data.folder import (
        IMAGE_EXTENSIONS,
        broken_image_links,
        dead_links_left_out,
        image_files,
        unread_image_files,
    )

    out: list[Path] = []
    for p in path_list(paths):
        if not os.fspath(p):  # Path("") is ".": every image of the current folder was classified
            raise ValueError("an image path is an empty text (an unset shell variable?); give "
                             "image files or folders of them.")
        p = Path(p)
        if not p.is_dir():
            out.append(p)
            continue
        found = image_files(p)
        unread = unread_image_files(p)
        if unread:  # a phone's .heic photos beside its .jpg ones: said, not silently skipped
            exts: dict[str, int] = {}
            for f in unread:
                exts[f.suffix.lower()] = exts.get(f.suffix.lower(), 0) + 1
            kinds = ", ".join(f"{n} {ext}" for ext, n in sorted(exts.items()))
            n = len(unread)
            warnings.warn(f"{p}: {counted(n, 'file')} in "
                          f"{agree(n, 'an image format', 'image formats')} mlplab does not read "
                          f"{agree(n, 'is', 'are')} left out ({kinds}; e.g. {unread[0].name}); "
                          f"convert {agree(n, 'it', 'them')} to PNG or JPEG to classify "
                          f"{agree(n, 'it', 'them')}.", stacklevel=3)
        gone = broken_image_links(p)
        if gone:  # as a dataset's class folder says it: fewer answers than files, unexplained
            warnings.warn(f"{p}: {counted(len(gone), 'link')} named like images "
                          f"{dead_links_left_out(gone, p)}; fix or remove "
                          f"{agree(len(gone), 'it', 'them')}.",
                          stacklevel=3)
        if not found:
            raise ValueError(f"{p}: no image files in this folder ({', '.join(IMAGE_EXTENSIONS)}; "
                             f"sub-folders are not searched){_sub_folders_hint(p)}.")
        out.extend(found)
    if not out:
        raise ValueError("no images given to predict.")
    return out


def predict_images(run: str | os.PathLike,
                   paths: str | os.PathLike | Sequence[str | os.PathLike], top: int = 3,
                   progress: bool = True, skip_unreadable: bool = False) -> list[dict[str, Any]]:
    """Top-``top`` classes with probabilities for each image file, with a run's model: one
    ``{"image": path, "top": [{"class": name, "probability": p}, ...]}`` per image (the path as
    a string, most probable class first), in the order of ``paths`` (or for one path). A folder
    in ``paths`` stands for the image files directly inside it (sorted by name). Each image is
    decoded and resized as the folder datasets' images are (:func:`mlplab.data.folder.read_image`)
    and preprocessed as in training. ``progress``: a bar while the images are read (in a
    terminal or a notebook, as the folder datasets' decoding shows one). Files that cannot be
    used are named in one error, and nothing is classified; with ``skip_unreadable`` they are
    named in a warning instead and the others classified (an error still if none can be)."""
    from mlplab._progress import progress_bar
    from mlplab.data.base import DatasetError
    from mlplab.data.folder import (
        UnreadableImageError,
        all_unreadable,
        read_image,
        unreadable_list,
    )

    check_int(top, "top")  # (0 gave the best class all the same; 2.5 a slicing TypeError)
    loaded = _load_run_model(Path(run))  # the model file holds all predict needs
    # (a stopped run's model, as evaluate says; a damaged metrics.json is not predict's concern)
    with contextlib.suppress(OSError, ValueError):
        _warn_if_not_the_final_model(Path(run), read_metrics(Path(run) / METRICS_FILE),
                                     loaded.extra.get("metrics"))
    model, where = loaded.model, Path(run) / MODEL_FILE
    shape = loaded.extra.get("image_shape")
    classes = loaded.extra.get("classes") or [str(i) for i in range(model.num_classes)]
    if not shape:
        raise ValueError("this model was not trained on images; predict needs an image model.")
    if not (isinstance(shape, list) and len(shape) == 3 and all(is_int(n) and n > 0 for n in shape)
            and int(np.prod(shape)) == model.input_size and shape[2] in (1, 3)):
        raise ValueError(f"{where}: its image_shape {shape!r} does not fit its model of "
                         f"{model.input_size} inputs; the file was edited or damaged - train the "
                         "run again.")
    if not (isinstance(classes, list) and len(classes) == model.num_classes
            and all(isinstance(c, str) for c in classes)):
        raise ValueError(f"{where}: its class names {classes!r:.80} are not {model.num_classes} "
                         "names; the file was edited or damaged - train the run again.")
    # decoded as the training folder's images were (16-bit greyscale scaled, not clipped; alpha
    # dropped; the same bilinear resize), so a file predicts as it would have trained
    files = _expand_image_paths(paths)
    images, bad = [], []
    with progress_bar(progress, total=len(files), desc="reading images", unit="img",
                      leave=False) as bar:
        for p in files:  # every unreadable file in one error, as the folder loader reports them
            try:
                images.append(read_image(p, shape))
            except UnreadableImageError as exc:
                bad.append(exc)
            except DatasetError as exc:
                # decoded, but not as predict reads an image (values out of range, too large for
                # memory): with the others (it stopped the report of those found before it)
                if len(files) == 1:
                    raise
                text = " ".join(str(exc).split())
                bad.append(UnreadableImageError(p, text.removeprefix(f"{p}: ").rstrip("."),
                                                "replace or remove the file"))
            bar.update()
    if bad and (not skip_unreadable or not images):  # (one: its own message, what to do)
        error = all_unreadable(bad, len(files))
        if images:  # some could be classified: say how to have those
            error.args = (f"{error} (Or classify the others: "
                          f"{setting('--skip-unreadable', 'skip_unreadable=True')}.)",)
        raise error
    if bad:
        import warnings

        warnings.warn(f"{unreadable_list(bad, len(files))}; skipped "
                      f"{'it' if len(bad) == 1 else 'them'}, classified the other "
                      f"{len(images)}.", stacklevel=2)
    skipped = {e.path for e in bad}
    probs = _in_chunks(loaded, np.stack(images), "predict_proba")
    out = []
    for p, row in zip([f for f in files if f not in skipped], probs):
        order = np.argsort(-row, kind="stable")[:max(1, min(top, len(row)))]
        out.append({"image": str(p), "top": [{"class": classes[k], "probability": float(row[k])}
                                             for k in order]})
    return out
