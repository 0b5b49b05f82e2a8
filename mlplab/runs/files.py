"""The files of a run folder: their names (``CONFIG_FILE``, ``MODEL_FILE``, ...,
``RUN_FILES``), where a new run folder goes (:func:`default_run_dir`) and the check that it holds
no run yet, the clean-up of partial atomic writes a killed process left, and the writers and
readers of ``history.csv``, ``metrics.json`` and the plots. It is separate so that the folder's
layout is defined in one place, apart from how a run is trained (:mod:`mlplab.runs.training`) or
used afterwards (:mod:`mlplab.runs.finished`); model and checkpoint files have their own modules
(:mod:`mlplab.io`, :mod:`mlplab.runs.checkpoint`).
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
import time
import warnings
from collections.abc import Collection, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mlplab import io
from mlplab._text import no_such_folder, path_word, shell_command
from mlplab._validation import setting
from mlplab.io import RUNS_ROOT
from mlplab.runs.config import NO_PLOTS_KEY
from mlplab.runs.lock import LOCK_FILE, RunInUseError, refuse_if_training, training_process
from mlplab.trainer import History, train_acc_label

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from mlplab.data import Dataset
    from mlplab.runs.training import RunResult

CONFIG_FILE = "config.json"
MODEL_FILE = "model.npz"
CHECKPOINT_FILE = "checkpoint.npz"
HISTORY_FILE = "history.csv"
METRICS_FILE = "metrics.json"
#: a PyTorch run's checkpoint (``mlplab torch train``; its model file is ``model.pt``)
TORCH_CHECKPOINT_FILE = "checkpoint.pt"
#: a depth study's settings, written as it starts, and the checkpoint of its network in
#: training (``mlplab torch depth``; its finished networks are in ``networks/``): they mark a
#: study that is running or stopped, which ``depth.json`` does only once it has finished
DEPTH_CONFIG_FILE = "depth-config.json"
DEPTH_CHECKPOINT_FILE = "depth-checkpoint.pt"
#: a depth study's table, written last: its presence marks a finished study
DEPTH_FILE = "depth.json"


def diverged_study(folder: str | os.PathLike) -> bool:
    """Whether ``folder`` holds a depth study whose loss diverged (its ``depth-config.json`` says
    so): resuming would repeat it, so a new study may take the folder, as a new run takes a
    diverged run's, and a stop offers no ``--resume``."""
    try:
        config = io.read_json(Path(folder) / DEPTH_CONFIG_FILE)
    except (OSError, ValueError):
        return False  # unreadable: not ours to overwrite
    return isinstance(config, dict) and config.get("study") == "depth" and \
        isinstance(config.get("diverged"), dict)


#: the figures of a run folder (``plots=False``, ``--no-plots``: none)
FIGURES = ("loss.png", "accuracy.png", "confusion.png", "weights.png")


def not_a_folder(path: str | os.PathLike) -> str:
    """How an error names a path given as a folder that is none: a mistyped one is no such
    folder (``is not a folder`` sent users looking for a file of that name), a dangling link
    one whose target is gone, a link that cannot be followed (a loop, a name too long) as
    such, also where it is a folder above it (``runs/x`` under a ``runs`` link that loops was
    "no such folder")."""
    broken = io.path_trouble(path)  # as the commands that write say it
    if broken is not None:
        return broken
    try:
        os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return f"{path}: {no_such_folder(path)}"
    except OSError as exc:  # a folder above it that may not be searched, say: not "no such"
        return f"{path} cannot be looked at ({exc.strerror or exc})"
    return f"{path} is not a folder"


def remove_results(run_dir: str | os.PathLike, also: Sequence[str] = (),
                   keep_going: bool = False) -> list[tuple[Path, OSError]]:
    """Delete what an earlier save of the run in ``run_dir`` derived from its model (a resumed
    run's stop's): ``metrics.json`` first (its presence marks results written whole), then
    ``history.csv``, the figures and the files ``also`` names. Called before the new model is
    written, so that a second Ctrl-C among the writes (which stops at once, unsaved) leaves no
    file that describes another model than the one in ``model.npz``: the stop's history and
    figures had stayed beside a newer model until ``--resume``. ``keep_going``: a file that
    cannot be removed (``OSError``) is passed over and the others are still removed; the files
    passed over are returned with their errors (:func:`warn_stale_left` says those that the
    new results did not replace)."""
    failed = []
    for name in (METRICS_FILE, HISTORY_FILE, *FIGURES, *also):
        path = Path(run_dir) / name
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            if not keep_going:
                raise
            failed.append((path, exc))
    return failed


class StaleFileWarning(UserWarning):
    """A run or study wrote its results, but a file of its own that no longer belongs there (a
    depth study's checkpoint, a resumed run's earlier stop's figure) could not be removed."""


def try_remove(path: Path) -> OSError | None:
    """Remove ``path`` (nothing if it is not there) and return None, or return the error that
    kept it (a permission, a file another program holds open): for a file whose removal is
    housekeeping, so that the caller decides whether it matters, where the bare error ended a
    run whose results were written or were still to be."""
    try:
        path.unlink(missing_ok=True)
    except OSError as exc:
        return exc
    return None


def warn_stale_file(path: Path, exc: OSError, what: str, stacklevel: int = 2,
                    done: str = "finished") -> None:
    """Say (a :class:`StaleFileWarning`, one line) that the ``what`` (run, depth study) in
    ``path``'s folder ``done`` (finished, stopped) with its results written there, but that
    ``path`` could not be removed (:func:`try_remove`'s ``exc``), and to remove it by hand."""
    warnings.warn(f"the {what} {done} and its results are in {path.parent}, but its stale "
                  f"{path.name} could not be removed ({exc.strerror or io.one_line(exc)}); "
                  f"remove {path} by hand.", StaleFileWarning, stacklevel=stacklevel + 1)


def file_state(path: Path) -> tuple[int, int] | None:
    """What tells ``path`` replaced (inode, modification time), None if it is not there."""
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns


def warn_stale_left(failed: Sequence[tuple[Path, OSError]],
                    before: Sequence[tuple[int, int] | None], what: str, done: str) -> None:
    """:func:`warn_stale_file` for each earlier result that :func:`remove_results` could not
    remove (``failed``, with each file's :func:`file_state` then, ``before``) and that the
    new results did not replace (written atomically, they replace a file of the same name):
    one that could not be removed ended a resumed run unsaved, 'Continue with: --resume', which
    failed on it again."""
    for (path, exc), was in zip(failed, before):
        if was is not None and file_state(path) == was:
            warn_stale_file(path, exc, what, stacklevel=3, done=done)


class StaleResultError(PermissionError):
    """A resumed run could not write one of its results: its earlier stop's file of that name
    could be neither removed (:func:`remove_results`) nor replaced, a permission refused (a file
    of another user's in a folder with the sticky bit; still a ``PermissionError``, as the
    system's was). Its message says which file and to
    remove it before the run is resumed: a plain "resume the run" failed on it again, each
    time. ``reason`` and ``todo`` are its two parts, for a caller that words the resume itself
    (the command line's ``Continue with: ...``)."""

    def __init__(self, path: Path, cause: OSError, resume: str) -> None:
        super().__init__(cause.errno, cause.strerror)
        self.filename = str(path)
        self.reason = (f"cannot write {path}: the earlier stop's {path.name} there could be "
                       f"neither replaced nor removed ({cause.strerror or io.one_line(cause)})")
        # its owner (or root) can remove it where this user cannot; Windows also refuses a file
        # that a program holds open
        held = " or close the program that holds it open" if os.name == "nt" else ""
        self.todo = f"remove {path} (or have its owner remove it{held})"
        self.message = (f"{self.reason}; the run was not saved, but its last checkpoint is "
                        f"kept: {self.todo}, then resume it with {resume}.")

    def __str__(self) -> str:  # the message alone (OSError would prefix "[Errno 13] ...")
        return self.message


@contextlib.contextmanager
def writing_over(stale: Sequence[tuple[Path, OSError]], torch: bool = False) -> Iterator[None]:
    """Around a resumed run's writes of its results: a write refused (a permission) of a file
    that :func:`remove_results` could not remove either (``stale``) is raised as
    :class:`StaleResultError`, which says to remove that file before resuming (the run's
    ``resume_setting``; ``torch``: a PyTorch run's); other errors as they are."""
    try:
        yield
    except OSError as exc:
        if exc.errno not in (errno.EACCES, errno.EPERM) or exc.filename is None:
            raise
        for path, _ in stale:
            if Path(os.fsdecode(exc.filename)) == path:
                raise StaleResultError(path, exc, resume_setting(path.parent, torch)) from exc
        raise


def unrecorded_divergence(path: Path, exc: OSError, what: str = "run") -> str:
    """The sentence a divergence's message adds where its record (``path``, a run's
    ``metrics.json``, a PyTorch run's ``config.json``, a depth study's ``depth-config.json``)
    could not be written (``exc``, a full disk): which file, why, and what that leaves. The
    failure was passed over without a word, or replaced the divergence's message by its own,
    and the ``what`` read as unfinished, its --resume diverging again."""
    return (f"The divergence could not be recorded in {path} ({exc.strerror or io.one_line(exc)}"
            f"), so the {what} reads as unfinished, and resuming it would repeat the divergence.")


#: names of the files in a run folder; an atomic write leaves ``.<name>.<random>`` if killed
RUN_FILES = (CONFIG_FILE, MODEL_FILE, CHECKPOINT_FILE, HISTORY_FILE, METRICS_FILE, *FIGURES,
             "model.pt", TORCH_CHECKPOINT_FILE)


def has_checkpoint(ckpt: Path) -> bool:
    """Whether a resume finds the checkpoint ``ckpt`` (``io.is_file``: one that is a loop of
    links is refused, not trained over from the first epoch). The refusal also says what
    removing it costs: "fix or remove one of them" alone left the user to guess that a run
    with no checkpoint trains again from its start."""
    try:
        return io.is_file(ckpt)
    except OSError:
        trouble = io.path_trouble(ckpt)
        if trouble is None or not trouble.startswith(f"{ckpt} is a loop"):
            raise
        raise ValueError(f"{trouble}; if the checkpoint is removed, --resume trains the run "
                         "again from its first epoch.") from None


def remove_partial_writes(run_dir: str | os.PathLike, names: Collection[str] = RUN_FILES,
                          older_than: float | None = None) -> list[Path]:
    """Delete the temporary files of atomic writes that a killed process left in ``run_dir``
    (``.checkpoint.npz.x8k2.npz``, ...) for the files ``names`` (a run folder's by default):
    :func:`mlplab.io.remove_partial_writes`. Only the one process working on a run folder
    writes them; in a folder that several processes write (a tuning folder's workers),
    ``older_than`` seconds spares the files of writes that may still be going on."""
    return io.remove_partial_writes(run_dir, names, older_than)


def inner_run_folder(folder: Path, marker: str, what: str = "the run folder") -> str | None:
    """Where the run is, for a ``folder`` passed as one that is not (None: no sub-folder holds
    ``marker``, a run's file): the one sub-folder that does (a tuning's ``best-run/``), or, for
    a folder of many runs (``runs/`` itself, the usual mistake), a few of them and the command
    that lists them all, since naming the first alone sent a user to an arbitrary run."""
    if not io.is_folder(folder):
        return None
    inner = [d for d in sorted(folder.iterdir()) if io.found_file(d / marker)]
    if len(inner) == 1:
        return f"{what} inside it is {inner[0]}"
    if not inner:
        return None
    shown = ", ".join(str(d) for d in inner[:3]) + (", ..." if len(inner) > 3 else "")
    lister = setting(shell_command(["mlplab", "runs", path_word(folder)]),
                     f"mlplab.runs.list_runs([{str(folder)!r}])")
    return f"it holds {len(inner)} run folders ({shown}): pass one of them ({lister} lists them)"


def nothing_to_resume(folder: Path, what: str) -> ValueError:
    """The refusal to resume ``what`` (a run, a depth study) in ``folder``, which has already
    completed: one line, the same for ``mlplab train``, ``torch train`` and ``torch depth``
    (and their Python functions), which each worded it their own way."""
    return ValueError(f"the {what} in {folder} has already completed; nothing to resume: "
                      f"start a new {what} with another {setting('--out', 'out')}.")


def refuse_if_nothing_saved(folder: Path, marker: str, what: str, start: str,
                            names: Collection[str] = RUN_FILES) -> None:
    """Refuse to resume ``folder`` (a ``FileNotFoundError``, one line saying what to do) when
    nothing of ``what`` (a run, a depth study) was saved there: no such folder, or one holding
    no more than a process killed before it wrote ``marker`` (its first file) leaves, its lock
    file and temporary files of atomic writes of ``names``. ``start``: the function a script
    starts it anew with.

    A SIGKILL as the command began leaves that, and ``--resume`` said "not a run folder (no
    config.json)" or "no such folder": true, but not that nothing was lost, nor that the run is
    simply started again."""
    if io.is_folder(folder):
        if any(p.name != LOCK_FILE and not (io.found_file(p) and any(
                p.name.startswith(f".{name}.") for name in names)) for p in folder.iterdir()):
            return  # something else: the caller says what the folder is
        holder = training_process(folder)
        if holder is not None:  # not stopped: a new one, still loading its data
            raise RunInUseError(f"{folder} holds a new {what} that another process is starting "
                                f"({holder}) and has not saved yet; wait for it to end (it "
                                "saves a checkpoint after each epoch, from which a stopped "
                                f"{what} resumes).")
        why = f"nothing was saved in it (stopped as it began, before it wrote {marker})"
    elif not io.nothing_at(folder):
        # a file, a link that leads nowhere (on the way too): the caller's own message
        return
    else:
        why = (f"{no_such_folder(folder)}, so nothing was saved (stopped as it began, before "
               "it made the folder; or another folder was meant)")
    again = setting(f"start it anew with the command that began it (--out {path_word(folder)}), "
                    "without --resume", f"start it anew with {start}(..., out={str(folder)!r})")
    raise FileNotFoundError(f"no {what} to resume in {folder}: {why}; {again}.")


def recorded_plots(run_dir: str | os.PathLike) -> bool:
    """Whether the run in ``run_dir`` was started with its figures, as its ``config.json``
    records (:data:`NO_PLOTS_KEY`); True where it does not say (a run written before it was
    recorded, on 4 Dec 2026, or a file that cannot be read: what reads the run says why)."""
    try:
        config = io.read_json(Path(run_dir) / CONFIG_FILE)
    except (OSError, ValueError):
        return True
    return not (isinstance(config, dict) and config.get(NO_PLOTS_KEY) is True)


def resume_command(run_dir: str | os.PathLike, plots: bool | None = None,
                   command: Sequence[str] = ("mlplab", "train"), threads: int | None = None,
                   device: str | None = None) -> str:
    """The command that continues the run (or depth study) in ``run_dir``, quoted for this
    platform's shell: ``command`` (its words, ``mlplab torch train``, ``mlplab --plugin P
    train``), then ``--device`` and ``--threads`` when given (the resume is bit-identical only
    with the same ones), and ``--no-plots`` for a run without figures (``plots`` None: as its
    ``config.json`` records, :func:`recorded_plots`)."""
    plots = recorded_plots(run_dir) if plots is None else plots
    return shell_command([*command, "--resume", path_word(run_dir),
                          *(["--device", device] if device else []),
                          *(["--threads", str(threads)] if threads else []),
                          *([] if plots else ["--no-plots"])])


def resume_setting(run_dir: str | os.PathLike, torch: bool, plots: bool | None = None) -> str:
    """How a user resumes the run in ``run_dir`` (a PyTorch run's with ``torch``): the command,
    or for a Python caller the call; ``plots`` as in :func:`resume_command`."""
    plots = recorded_plots(run_dir) if plots is None else plots
    keyword = "" if plots else ", plots=False"
    if torch:
        return setting(resume_command(run_dir, plots, ("mlplab", "torch", "train")),
                       f"mlplab.torch_mlp.resume_run({str(run_dir)!r}{keyword})")
    return setting(resume_command(run_dir, plots), f"resume_run({str(run_dir)!r}{keyword})")


def run_folder_advice(torch: bool = False, whole: bool = False) -> str:
    """What to pass instead of a folder that is not a run's: one written by ``mlplab train``
    (``mlplab torch train`` with ``torch``), or, for a Python caller, by its ``train_run``."""
    which = "the whole run folder" if whole else "a run folder"
    if torch:
        return setting(f"pass {which} written by mlplab torch train",
                       f"pass {which} written by mlplab.torch_mlp.train_run")
    return setting(f"pass {which} written by mlplab train",
                   f"pass {which} written by mlplab.runs.train_run")


def first_missing_folder(path: str | os.PathLike) -> Path | None:
    """The topmost folder that making ``path`` (with its parents) creates; None if it exists."""
    top = None
    for folder in (Path(path), *Path(path).parents):
        if folder.exists() or folder.is_symlink():
            break
        top = folder
    return top


def remove_made_folders(path: str | os.PathLike, top: Path | None) -> None:
    """Remove ``path`` and the folders above it up to ``top`` (:func:`first_missing_folder`,
    before they were made), each only while empty: a run that failed before it saved anything
    leaves none of the folders made for it (``--out runs/x`` left an empty ``runs/``)."""
    if top is None:
        return
    for folder in (Path(path), *Path(path).parents):
        try:
            folder.rmdir()
        except OSError:  # not empty (another run's, a file put there), or gone
            return
        if folder == top:
            return


class RunFolderGoneError(FileNotFoundError):
    """The output folder of a command still writing there (a run in training, a report, a
    search) was removed or moved: the command stops rather than write on
    (:func:`refuse_if_folder_gone`)."""


def refuse_if_folder_gone(folder: Path, marker: str | None, running: str, outcome: str,
                          advice: str) -> None:
    """Raise :class:`RunFolderGoneError` once ``folder`` was removed or moved while a command
    wrote into it: its file ``marker`` (there since the command began) is gone, or with None
    the folder itself. Every atomic write makes its missing folders, so a command that wrote
    on made the folder again and filled it without its marker. One message for every command:
    "FOLDER was removed or moved while ``running`` (its MARKER is gone), so ``outcome``;
    ``advice``", e.g. ``running`` "the run trained", ``outcome`` "the run stopped without
    writing more there", ``advice`` what to do (with its full stop, if any). A marker that is
    there but cannot be looked at (a loop of links) is not gone: its error is raised, as
    :func:`mlplab.io.is_file` does, where pathlib's answer False said the folder was removed."""
    if io.is_file(folder / marker) if marker is not None else folder.is_dir():
        return
    gone = f" (its {marker} is gone)" if marker is not None else ""
    raise RunFolderGoneError(f"{folder} was removed or moved while {running}{gone}, so "
                             f"{outcome}; {advice}")


def check_run_folder(run_dir: Path, marker: str = CONFIG_FILE, noun: str = "run",
                     diverged: str | None = None) -> None:
    """Refuse to write more into ``run_dir`` once its ``marker`` (``config.json``, written as
    the run started) is gone: the folder was removed or moved while the run trained. The
    atomic writes make a missing folder, so the run made it again and filled it with a
    checkpoint, model and results but no ``config.json``, and ended with status 0 and "run
    folder: ..." for a folder that ``evaluate`` and ``--resume`` refuse as no run. ``noun``: what
    trains there, a run or a depth study. ``diverged``: what diverged as well (``"its loss"``,
    a depth study's network), for which putting the folder back and resuming, the usual
    advice, would only diverge again from the same checkpoint: a new one is advised instead."""
    advice = "start it anew, or put the folder back and resume it" if diverged is None \
        else (f"{diverged} diverged as well, which resuming would repeat: start a new "
              f"{noun} with other settings (a lower {setting('--lr', 'lr')}, say)")
    refuse_if_folder_gone(run_dir, marker, f"the {noun} trained",
                          f"the {noun} stopped without writing more there", advice)


def new_run_dir(out: str | os.PathLike) -> Path:
    """Make the folder of a new run (see :func:`check_new_run_dir`) and return it."""
    out_dir = check_new_run_dir(out)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # a file on the path, a read-only or virtual file system
        raise ValueError(f"cannot create the run folder {out_dir}: "
                         f"{io.why_no_folder(out_dir, exc)}; choose another "
                         f"{setting('--out', 'out')}.") from exc
    return out_dir


#: the kinds of output folder, by the marker files ``mlplab evaluate`` knows them by, and what
#: each is
OUTPUT_KINDS = {
    "run": ((CONFIG_FILE, MODEL_FILE, CHECKPOINT_FILE, METRICS_FILE, TORCH_CHECKPOINT_FILE),
            "a run folder (mlplab train or mlplab torch train)"),
    "report": (("report.json",), "a report folder written by mlplab reproduce"),
    "depth": ((DEPTH_FILE, DEPTH_CONFIG_FILE, DEPTH_CHECKPOINT_FILE),
              "a depth study written by mlplab torch depth"),
    "tuning": (("summary.json", "study.db"), "a tuning folder written by mlplab tune"),
}


def refuse_other_output(out_dir: Path, skip: Collection[str], purpose: str = "run") -> None:
    """Refuse ``out_dir`` for a new run, study or search (``purpose``) if it is the output folder
    of a kind (:data:`OUTPUT_KINDS`) other than those in ``skip`` (the caller's own, which it
    checks itself): the new files were mixed with its files, and evaluate then took the folder
    for what it was not."""
    for kind, (markers, what) in OUTPUT_KINDS.items():
        if kind in skip:
            continue
        # a marker that is a link leading nowhere is named (pathlib's is_file() answered False
        # for a loop of links, and a depth study was written beside a looping model.npz)
        refuse_broken_links(out_dir, markers)
        if any(io.found_file(out_dir / marker) for marker in markers):
            raise ValueError(f"{out_dir} is {what}; choose another {setting('--out', 'out')} "
                             f"for the {purpose}.")


def check_new_run_dir(out: str | os.PathLike) -> Path:
    """Refuse ``out`` for a new run if it is a file or holds a run already; changes nothing, so
    that a run can say so before it loads its data."""
    out_dir = io.out_folder(out)
    io.check_out_folder(out_dir)
    refuse_other_output(out_dir, skip=("run",))  # its own kind: checked below
    refuse_broken_links(out_dir, (CONFIG_FILE, CHECKPOINT_FILE, MODEL_FILE, METRICS_FILE))
    if any((out_dir / f).exists() for f in (CONFIG_FILE, CHECKPOINT_FILE, MODEL_FILE,
                                             METRICS_FILE)):
        status = read_metrics(out_dir / METRICS_FILE).get("status")
        if status in ("completed", "diverged"):
            # resuming it would be refused: there is nothing left to run
            raise ValueError(f"{out_dir} already holds a "
                             f"{'completed run' if status == 'completed' else 'run that diverged'}"
                             f"; choose another {setting('--out', 'out')}.")
        refuse_if_training(out_dir)  # resuming it would be refused too
        foreign = not_a_run_config(out_dir)
        if foreign is not None:  # (--resume was advised, and refused it as a damaged run's)
            raise ValueError(f"{out_dir / CONFIG_FILE} is not a valid run configuration "
                             f"({foreign}): another tool's, or damaged, and no run of mlplab's "
                             f"beside it; choose another {setting('--out', 'out')}.")
        # a PyTorch run's resume is mlplab torch train's, which mlplab train's refuses; with
        # --no-plots where config.json records it, as the other advice says it (the option
        # alone, "--resume RUN", drew the figures the user had turned off)
        resume = resume_setting(out_dir, torch=_torch_run(out_dir))
        raise ValueError(f"{out_dir} already holds a run; choose another "
                         f"{setting('--out', 'out')}, or continue it with {resume}.")
    return out_dir


def refuse_broken_links(out_dir: Path, names: Collection[str]) -> None:
    """Refuse ``out_dir`` for new results where one of the files ``names`` that they would write
    is a link that leads nowhere (a loop, a name too long, a target gone): a run took the folder
    for an empty one, trained, then stopped on the link, or wrote over it."""
    for name in names:
        broken = io.broken_link(out_dir / name)
        if broken is not None:
            raise ValueError(f"{broken}; choose another {setting('--out', 'out')}.")


#: why a config.json without a "dataset" key is no run's: every one mlplab writes has it
NO_DATASET = 'it has no "dataset" key, which every config.json that mlplab writes has'


def _torch_run(out_dir: Path) -> bool:
    """Whether the ``config.json`` in ``out_dir`` is a PyTorch run's (``mlplab torch train``)."""
    try:
        config = io.read_json(out_dir / CONFIG_FILE)
    except (OSError, ValueError):
        return False
    return isinstance(config, dict) and config.get("framework") == "pytorch"


def only_a_torch_config(path: Path) -> bool:
    """Whether run folder ``path`` holds a PyTorch run's config.json and nothing else (bar the
    hidden temporary files of interrupted writes): a run that stopped before it saved any
    result, e.g. on a diverged loss or a crash during training. Such a folder may be reused."""
    try:
        names = [p.name for p in path.iterdir() if not p.name.startswith(".")]
    except OSError:
        return False  # unreadable: not ours to overwrite
    return names == [CONFIG_FILE] and _torch_run(path)


def beside_config(path: Path) -> list[str]:
    """The files in run folder ``path`` besides config.json (bar hidden temporary ones)."""
    try:
        return sorted(p.name for p in path.iterdir()
                      if not p.name.startswith(".") and p.name != CONFIG_FILE)
    except OSError:
        return []


def where_next_run(path: Path, named: bool = False) -> str:
    """Where the new run that a diverged PyTorch run's messages offer may go (the diverging
    command's, ``--resume``'s refusal, evaluate's): its folder, where ``mlplab torch train``
    takes it (it holds config.json alone), else another one, or this one once the files left
    (one that could not be removed, one of the user's) are gone. ``named``: the caller's line
    names ``path`` already (``the run in runs/x ...``), so the files are said to be removed
    "from it" (the line named the folder twice). Here, not beside the PyTorch code, so that
    evaluate says the same without importing PyTorch."""
    out = setting("--out", "out")
    if only_a_torch_config(path):
        return f"with the same {out} if you like"
    left = beside_config(path)
    if not left:  # (a config.json that cannot be read back)
        return f"with another {out}"
    return f"with another {out}, or with this one once you remove {', '.join(left)} from " \
        f"{'it' if named else path}"


def where_next_study(path: Path, named: bool = False) -> str:
    """Where the new study that a diverged depth study's messages offer may go (the diverging
    command's, ``--resume``'s refusal): its folder, which ``mlplab torch depth`` takes, unless
    the checkpoint its divergence could not remove is still there, which a new study there
    would have to remove first (and says so, refusing the folder, where it cannot).
    ``named`` as in :func:`where_next_run`."""
    out = setting("--out", "out")
    if io.nothing_at(path / DEPTH_CHECKPOINT_FILE):
        return f"with the same {out} if you like"
    return f"with another {out}, or with this one once you remove {DEPTH_CHECKPOINT_FILE} " \
        f"from {'it' if named else path}"


def not_a_run_config(out_dir: Path) -> str | None:
    """Why the folder's lone ``config.json`` is not one ``mlplab train`` wrote (another tool's,
    beside no other run file), or None: a run's, or one beside its checkpoint or results,
    which ``--resume`` judges with what to do."""
    if any((out_dir / f).exists() for f in (CHECKPOINT_FILE, MODEL_FILE, METRICS_FILE)):
        return None
    from mlplab.runs.config import RunConfig

    try:
        config = io.read_json(out_dir / CONFIG_FILE)
        if not isinstance(config, dict):
            return "not a JSON object"
        if config.get("framework") == "pytorch":
            return None  # a PyTorch run's (mlplab torch train), which says what it is itself
        RunConfig.from_dict(config)
        if "dataset" not in config:
            return NO_DATASET
    except (OSError, ValueError, TypeError) as exc:
        return " ".join(str(exc).split()).split(" (known:")[0].rstrip(".")
    return None


def default_run_dir(root: str | os.PathLike = RUNS_ROOT, claim: bool = False,
                    prefix: str = "") -> Path:
    """``runs/<YYYYmmdd-HHMMSS>`` (``runs/<prefix>-<YYYYmmdd-HHMMSS>`` with a ``prefix``), with a
    suffix if that exists already. With ``claim`` the folder is made here, atomically, so that
    runs started in the same second by other processes get folders of their own (they would
    otherwise pick the same name)."""
    stamp = f"{prefix}-" * bool(prefix) + time.strftime("%Y%m%d-%H%M%S")
    n = 1
    while True:
        path = Path(root) / (stamp if n == 1 else f"{stamp}-{n}")
        if not claim and not path.exists():
            return path
        if claim:
            try:
                path.mkdir(parents=True)
                return path
            except OSError as exc:
                if not (isinstance(exc, FileExistsError) and os.path.lexists(path)):
                    # not a name another run took: trying the next would fail alike, forever
                    # (a `runs` link whose target is gone made mkdir say "File exists")
                    raise ValueError(f"cannot create the run folder {path}: "
                                     f"{io.why_no_folder(path, exc)}; give "
                                     f"{setting('--out', 'out')} a folder you can write to."
                                     ) from exc
        n += 1


def write_history(path: Path, history: History, per_epoch: int) -> None:
    """``history.csv``: iteration, epoch and loss on every row; lr (the epoch's last
    iteration's) and train/val accuracy on epoch-ending rows only, empty elsewhere."""
    rows = []
    for i, loss in enumerate(history.loss, start=1):
        epoch = (i - 1) // per_epoch + 1
        row: list[Any] = [i, epoch, repr(float(loss))]
        if i % per_epoch == 0 and i // per_epoch <= len(history.train_acc):
            e = i // per_epoch - 1
            # no validation split (val_size 0): an empty cell, as on the other rows, not "nan"
            row += [history.lr[e], *("" if math.isnan(a) else a
                                     for a in (history.train_acc[e], history.val_acc[e]))]
        else:
            row += ["", "", ""]
        rows.append(row)
    io.write_csv(path, ["iteration", "epoch", "loss", "lr", "train_acc", "val_acc"], rows)


def read_history(path: str | os.PathLike) -> dict[str, list[float]]:
    """``history.csv`` back as ``{"loss": [...], "train_acc": [...], "val_acc": [...],
    "lr": [...]}``: ``loss`` per iteration, the accuracies and ``lr`` per epoch (read from the
    epoch-ending rows; NaN for an empty cell, the ``val_acc`` of a run without a validation
    split)."""
    import csv

    out: dict[str, list[float]] = {"loss": [], "train_acc": [], "val_acc": [], "lr": []}
    with open(path, newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            out["loss"].append(float(row["loss"]))
            if row["lr"] != "":  # an epoch-ending row (a file before 3 December 2026 wrote "nan")
                for k in ("train_acc", "val_acc", "lr"):
                    out[k].append(float(row[k]) if row[k] != "" else math.nan)
    return out


def save_into_run(fig: Figure, path: Path, marker: str | None = CONFIG_FILE,
                  noun: str = "run") -> Path:
    """:func:`mlplab.plots.save` of a figure into a run folder, refused (the figure closed) if
    the folder went while the figure was drawn (:func:`check_run_folder` of ``marker``; None:
    no check): the results of a finished run take seconds to draw, and each save made a removed
    folder again, status 0, with figures and no ``config.json``."""
    from mlplab import plots

    if marker is not None:
        try:
            check_run_folder(path.parent, marker, noun)
        except RunFolderGoneError:
            plots.plt.close(fig)
            raise
    return plots.save(fig, path)


def write_plots(out_dir: Path, result: RunResult, ds: Dataset, X_val: np.ndarray | None,
                per_epoch: int | None = None, marker: str | None = None) -> list[Path]:
    """The run's figures: loss (with an epoch axis given ``per_epoch``, the iterations of an
    epoch), accuracy, confusion matrix (validation) and first-layer weights (image data).
    ``marker``: each written only while ``out_dir`` still holds that file (see
    :func:`save_into_run`)."""
    from mlplab import plots

    h = result.history
    written = [save_into_run(plots.plot_loss(h.loss, iterations_per_epoch=per_epoch),
                             out_dir / "loss.png", marker)]
    if h.train_acc:
        label = train_acc_label(result.config.train_acc)
        written.append(save_into_run(plots.plot_accuracy(h.train_acc, h.val_acc,
                                                         train_label=label),
                                     out_dir / "accuracy.png", marker))
    if X_val is not None:
        cm = plots.confusion_matrix(ds.y_val, result.model.predict(X_val), len(result.classes))
        written.append(save_into_run(plots.plot_confusion(cm, result.classes,
                                                          title="Confusion matrix (validation)"),
                                     out_dir / "confusion.png", marker))
    W1 = result.model.params["W1"]
    # a Dataset of feature vectors (N, D) of one's own has no images to draw the weights as
    if len(ds.image_shape) == 3 and W1.shape[0] == int(np.prod(ds.image_shape)):
        written.append(save_into_run(plots.plot_first_layer_weights(W1, ds.image_shape),
                                     out_dir / "weights.png", marker))
    return written


def read_metrics(path: Path) -> dict[str, Any]:
    """A run's ``metrics.json`` (``{}`` if there is none yet), refused with the file's name if
    it is not what mlplab writes there."""
    # (io.is_file: a loop of links is said, not read as a run without results)
    metrics = io.read_json(path) if io.is_file(path) else {}
    if not isinstance(metrics, dict) or not isinstance(metrics.get("split_sha1", {}), dict) \
            or not isinstance(metrics.get("status", ""), str):
        # (the command of the run's kind, with --no-plots where config.json records it)
        resume = resume_setting(path.parent, torch=_torch_run(path.parent))
        raise ValueError(f"{path} is not a run's metrics (a JSON object as mlplab train writes "
                         "it); it was edited or damaged: delete it, then resume the run with "
                         f"{resume}, which writes it again.")
    return metrics
