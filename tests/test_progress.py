"""``mlplab._progress``: which bar shows where."""

import os
import sys
import warnings

import pytest

from mlplab._progress import progress_bar

_TQDM_FRONTS = ("tqdm.auto", "tqdm.autonotebook", "tqdm.notebook")


@pytest.fixture
def kernel_without_ipywidgets(monkeypatch, jupyter_kernel):
    """A Jupyter kernel as both mlplab and tqdm tell one (tqdm looks for ipykernel's shell
    module), where ``import ipywidgets`` fails, and ``tqdm.auto`` not imported yet: its first
    import in such a kernel is what warns."""
    import tqdm

    monkeypatch.setitem(sys.modules, "ipykernel.zmqshell", type(sys)("ipykernel.zmqshell"))
    monkeypatch.setitem(sys.modules, "ipywidgets", None)  # None: `import ipywidgets` fails
    for name in _TQDM_FRONTS:
        monkeypatch.delitem(sys.modules, name, raising=False)
        monkeypatch.delattr(tqdm, name.split(".")[1], raising=False)
    for name in ("QT_API", *(n for n in os.environ if n.startswith("SPYDER"))):
        monkeypatch.delenv(name, raising=False)


def test_a_kernel_without_ipywidgets_gets_the_text_bar_without_a_warning(
        kernel_without_ipywidgets, capsys):
    """In a notebook without ipywidgets, tqdm.auto warned "IProgress not found. Please update
    jupyter and ipywidgets." before falling back to its text bar: a warning a user cannot act on
    but by installing a package. The text bar is drawn directly, in the notebook's stderr."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with progress_bar(total=3, desc="work") as bar:
            bar.update(3)
    assert [str(w.message) for w in caught] == []
    from tqdm.std import tqdm as text_bar

    assert type(bar) is text_bar
    assert "work: 100%" in capsys.readouterr().err and "3/3" in bar.__str__()


def test_a_kernel_without_ipywidgets_shows_no_bar_when_disabled(kernel_without_ipywidgets,
                                                                capsys):
    with progress_bar(False, total=3, desc="work") as bar:
        bar.update(3)
    assert capsys.readouterr().err == ""


def test_a_kernel_with_ipywidgets_keeps_tqdm_auto(monkeypatch, jupyter_kernel):
    """With ipywidgets the bar is tqdm.auto's (its widget in a real notebook); only its
    absence makes mlplab choose the text bar."""
    import tqdm.auto

    monkeypatch.setitem(sys.modules, "ipywidgets", type(sys)("ipywidgets"))
    bar = progress_bar(False, total=1)
    assert isinstance(bar, tqdm.auto.tqdm)
    bar.close()
