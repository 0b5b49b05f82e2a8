"""What an installed mlplab says of itself: its version is written in one place, and its
licence travels with it (the wheel carried no licence text and no classifiers)."""

import importlib.metadata
import re
from pathlib import Path

import pytest

import mlplab

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def meta():
    try:
        return importlib.metadata.metadata("mlplab")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree on PYTHONPATH
        pytest.skip("mlplab is not installed here (imported from its source tree)")


def test_the_installed_version_is_the_package_s_own(meta):
    # pyproject.toml reads it from mlplab.__version__ (it was written in both, unchecked)
    assert meta["Version"] == mlplab.__version__
    assert 'dynamic = ["version"]' in (ROOT / "pyproject.toml").read_text()


def test_the_licence_and_what_the_package_is_for_are_in_its_metadata(meta):
    assert meta["License-Expression"] == "MIT"
    assert meta.get_all("License-File") == ["LICENSE"]
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
    versions = {c.rsplit(" :: ", 1)[1] for c in meta.get_all("Classifier")
                if c.startswith("Programming Language :: Python :: 3.")}
    low = re.fullmatch(r">=3\.(\d+)", meta["Requires-Python"]).group(1)
    assert min(int(v.split(".")[1]) for v in versions) == int(low)


def test_the_source_distribution_carries_what_its_tests_need():
    # setuptools put tests/test_*.py in the sdist but not conftest.py, the helpers beside them
    # or docs/, which tests/test_docs.py reads: the suite failed to collect there
    manifest = (ROOT / "MANIFEST.in").read_text().split("\n")
    assert {"graft tests", "graft docs", "include LICENSE"} <= set(manifest)
