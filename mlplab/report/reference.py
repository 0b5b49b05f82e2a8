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

#: what the figures above were measured on: CIFAR-10's 32x32 RGB images of these ten classes
CIFAR10_SHAPE = (32, 32, 3)
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                   "truck")


def is_cifar10(image_shape: object, classes: object) -> bool:
    """Whether a dataset (its image shape and class names) is CIFAR-10, whose figures the
    exercise's targets and the 2020 report are: the shape alone would also take any other ten
    classes of 32x32 colour images (a folder of SVHN digits, say) for CIFAR-10."""
    try:
        shape = tuple(int(s) for s in image_shape)  # type: ignore[attr-defined]
        names = sorted(str(c).strip().lower() for c in classes)  # type: ignore[attr-defined]
    except (TypeError, ValueError):
        return False
    return shape == CIFAR10_SHAPE and names == sorted(CIFAR10_CLASSES)
