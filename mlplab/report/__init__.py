"""``mlplab reproduce``: the whole study (Questions 1-4) into one Markdown and one HTML report.

>>> from mlplab.report import reproduce
>>> result = reproduce("digits", "quick", out="runs/report")   # doctest: +SKIP
>>> print(result.html)                                           # doctest: +SKIP
runs/report/report.html

See docs/report.md for the stages, budgets and the files written.
"""

from typing import TYPE_CHECKING, Any

from mlplab.report.budgets import BUDGETS, Budget, get_budget

if TYPE_CHECKING:  # what a type checker sees of the names __getattr__ imports at first access
    from mlplab.report.runner import STAGES as STAGES
    from mlplab.report.runner import ReportResult as ReportResult
    from mlplab.report.runner import default_out as default_out
    from mlplab.report.runner import render as render
    from mlplab.report.runner import reproduce as reproduce

_RUNNER_NAMES = ("STAGES", "ReportResult", "default_out", "render", "reproduce")


def __getattr__(name: str) -> Any:
    # the runner imports Matplotlib and every stage: load it on first use, so that the CLI
    # (which reads BUDGETS to build its --help) starts fast and small
    if name in _RUNNER_NAMES:
        from mlplab.report import runner

        globals().update({n: getattr(runner, n) for n in _RUNNER_NAMES})
        return globals()[name]
    raise AttributeError(f"module 'mlplab.report' has no attribute {name!r}")


__all__ = ["BUDGETS", "Budget", "ReportResult", "STAGES", "default_out", "get_budget", "render",
           "reproduce"]
