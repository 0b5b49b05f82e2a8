"""Figures the report compares against: the exercise's targets and the March 2020 student report.

These are facts quoted from the exercise (see SPEC.md); nothing here is measured.
"""

from __future__ import annotations

#: the exercise's CIFAR-10 split: the first 49,000 training images train, the last 1,000 validate
#: (the test images are the official test set's)
EXERCISE_SPLIT = (49000, 1000)
#: the exercise's default two-layer run on CIFAR-10 ("very poor")
DEFAULT_RUN_VAL = 0.29
#: validation accuracy the tuned two-layer net must beat, and what the reference network gets
TUNED_TARGET_VAL = 0.48
TUNED_REFERENCE_VAL = 0.52
#: the 2020 report's tuning steps (validation accuracy) and its best two-layer network
REPORT_2020_TUNING = [0.48, 0.50, 0.522, 0.534]
REPORT_2020_TWO_LAYER_VAL = 0.534
#: the 2020 report's PyTorch depth table: layers -> (train, test) accuracy
REPORT_2020_DEPTHS = {2: (0.508, 0.495), 3: (0.521, 0.517), 4: (0.520, 0.518), 5: (0.527, 0.533)}
#: the exercise's toy SGD bound and what a correct implementation gets
TOY_FINAL_LOSS_BOUND = 0.02
TOY_FINAL_LOSS_TYPICAL = 0.0171
