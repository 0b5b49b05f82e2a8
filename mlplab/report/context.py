"""What the stages share: output folder, budget, seed, the loaded data and earlier sections."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlplab._validation import setting
from mlplab.report.budgets import Budget
from mlplab.report.document import Section, StageSkipped


def check_report_folder(folder: Path, marker: str | None) -> None:
    """Stop the report once ``folder`` (the report's, or a folder in it) was removed or moved
    while the report was being made (its file ``marker`` gone, or with None the folder itself):
    the message of :func:`mlplab.runs.files.refuse_if_folder_gone` for ``mlplab reproduce``."""
    from mlplab.runs.files import refuse_if_folder_gone

    refuse_if_folder_gone(
        folder, marker, "the report was being made",
        f"{setting('mlplab reproduce', 'reproduce')} stopped without writing more there",
        f"{setting('run the same command again', 'call it again')}, or reproduce into "
        f"another {setting('--out', 'out')}.")


@dataclass
class Context:
    out: Path
    dataset: str
    budget: Budget
    seed: int
    progress: bool = False
    #: loads the dataset (the CLI's data options); None: ``load_dataset(dataset, seed=seed)``
    loader: Callable[[], Any] | None = None
    #: BLAS and PyTorch threads
    threads: int = 1
    #: where Q4's PyTorch networks train: cpu, cuda, cuda:N or auto (spelling checked)
    device: str = "cpu"
    sections: dict[str, Section] = field(default_factory=dict)
    #: the stages asked for (None: all) and whether an earlier report's sections are kept
    only: list[str] | None = None
    reuse: bool = False
    #: the report.json of the report this run replaces whole (without ``reuse``), if any
    replaced: dict[str, Any] | None = None
    #: keys of sections kept from an earlier report (``reuse``)
    reused: set[str] = field(default_factory=set)
    #: objects stages hand to later stages (the loaded dataset, the tuning result, ...)
    shared: dict[str, Any] = field(default_factory=dict)
    #: the lock file the run holds in ``out`` (None: unlocked, where flock is missing)
    lock: Path | None = None

    FIGURES = "figures"
    #: where a run writes its figures and files until the report is written: a run stopped
    #: before then (Ctrl-C) leaves the earlier report in ``out`` as it was
    STAGING = ".report-new"

    @property
    def staging(self) -> Path:
        return self.out / self.STAGING

    def check_folder(self) -> None:
        """Refuse to go on once ``out`` was removed or moved (its lock file, there since the run
        began, is gone; unlocked, the folder itself): every write makes its missing folders, so
        the later stages filled a folder made again, and the run ended with "No such file or
        directory" for a figure beside a partial report."""
        check_report_folder(self.out, None if self.lock is None else self.lock.name)

    def figure(self, name: str) -> tuple[Path, str]:
        """(absolute path to write, path relative to the report) of a figure file; the file
        moves to that relative path when the report is written. Refused once the report folder
        is gone (:meth:`check_folder`), which making the figure's folder would make again."""
        self.check_folder()
        rel = f"{self.FIGURES}/{name}"
        path = self.staging / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        return path, rel

    #: the stage that makes each shared object a later stage may need
    PRODUCERS = {"dataset": "data"}

    def need(self, key: str, what: str) -> Any:
        """A shared object from an earlier stage, or skip this stage saying which one failed,
        or, where --only left that stage out, to add it."""
        if key not in self.shared:
            stage = self.PRODUCERS.get(key)
            if stage is not None and self.only is not None and stage not in self.only:
                # "see above" would point at a line saying only that it was not selected
                add = setting(f"add {stage} to --only", f"add {stage!r} to only=[...]")
                raise StageSkipped(f"needs {what}, which the {stage} stage makes: {add}.")
            raise StageSkipped(f"needs {what}, which was not produced (see above).")
        return self.shared[key]

    def data(self, key: str) -> dict[str, Any]:
        section = self.sections.get(key)
        return section.data if section is not None and section.status == "ok" else {}
