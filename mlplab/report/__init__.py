"""``mlplab reproduce``: the whole study (Questions 1-4) into one Markdown and one HTML report.

>>> from mlplab.report import reproduce
>>> result = reproduce("digits", "quick", out="runs/report")   # doctest: +SKIP
>>> result.html                                                  # doctest: +SKIP

See docs/report.md for the stages, budgets and the files written.
"""

from mlplab.report.budgets import BUDGETS, Budget, get_budget
from mlplab.report.runner import STAGES, ReportResult, default_out, render, reproduce

__all__ = ["BUDGETS", "Budget", "ReportResult", "STAGES", "default_out", "get_budget", "render",
           "reproduce"]
