"""``mlplab --plugin MODULE`` and ``MLPLAB_PLUGINS``: the command line imports the user's modules
before it builds its parser, so that the activations and optimisers they register are choices
of its commands, load from run folders and model files, and reach ``tune --workers``' spawned
processes. Without them, a run or model file that names one says how to load it."""

import json
import sys
import warnings

import optuna
import pytest
from optuna.trial import TrialState

from mlplab import models, optim
from mlplab.cli import main, plugins
from mlplab.layers import Tanh

TINY = ["--dataset", "digits", "--hidden", "16", "--epochs", "2", "--quiet", "--no-plots"]

PLUGIN = '''
import numpy as np

from mlplab.layers import Layer
from mlplab.models import register_activation
from mlplab.optim import Optimizer, register_optimizer


class ELU(Layer):
    def forward(self, x, train=True):
        self._out = np.where(x > 0, x, np.expm1(np.minimum(x, 0)))
        return self._out

    def backward(self, dout):
        return dout * np.where(self._out > 0, 1.0, self._out + 1.0)


class SignSGD(Optimizer):
    name = "signsgd"

    def _update(self, name, p, g):
        p -= self.lr * np.sign(g)


register_activation("elu", ELU)
register_optimizer(SignSGD)
'''

#: the module names the tests' plugin files import as
MODULES = ("my_layers", "broken_layers", "needs_torch_xyz", "relu_swap")


@pytest.fixture
def plugin(tmp_path, monkeypatch, registries):
    """A plugin file registering the activation 'elu' and the optimiser 'signsgd'. The
    registries (``registries``), sys.path (the loader adds the plugins' folders) and the
    imported plugin modules are as before afterwards."""
    path = tmp_path / "my_layers.py"
    path.write_text(PLUGIN)
    monkeypatch.setattr(sys, "path", [*sys.path])
    monkeypatch.delenv("MLPLAB_PLUGINS", raising=False)
    monkeypatch.setattr(plugins, "REPLACED_ACTIVATIONS", {})
    yield path
    for name in MODULES:
        sys.modules.pop(name, None)


def _forget(plugin_module: str = "my_layers") -> None:
    """This process as one that never imported the plugin."""
    models.ACTIVATIONS.pop("elu", None)
    optim.OPTIMIZERS.pop("signsgd", None)
    sys.modules.pop(plugin_module, None)


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_a_plugin_file_adds_its_activation_and_optimizer_to_train_evaluate_and_resume(
        plugin, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["--plugin", str(plugin), "train", *TINY, "--activation", "elu",
                 "--optimizer", "signsgd", "--out", str(run)]) == 0
    config = json.loads((run / "config.json").read_text())
    assert config["activation"] == "elu" and config["optimizer"] == "signsgd"
    capsys.readouterr()
    assert main(["--plugin", str(plugin), "evaluate", str(run), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["accuracy"] > 0
    # a command without the plugin: argparse refuses the name; a run that names it says how
    # to load it, for evaluate (its model file) and resume (its config)
    _forget()
    with pytest.raises(SystemExit) as exit_:
        main(["train", *TINY, "--activation", "elu"])
    assert exit_.value.code == 2 and "invalid choice: 'elu'" in capsys.readouterr().err
    assert main(["evaluate", str(run)]) == 1
    err = _error_line(capsys)
    # the model file records the module that registered 'elu', so the message can name it
    assert err.startswith("mlplab evaluate: error: ") and "model.npz: activation 'elu' is not " \
        "registered in this process" in err and "the file was written where module " \
        "'my_layers' registered it: mlplab --plugin my_layers COMMAND" in err and \
        "MLPLAB_PLUGINS=my_layers" in err, err
    assert main(["train", "--resume", str(run)]) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    # config.json does not record the module; the run's checkpoint and model file do (an
    # interrupted run has only the checkpoint)
    assert "config.json: activation 'elu' is not registered" in err and "the file was written " \
        "where module 'my_layers' registered it: mlplab --plugin my_layers COMMAND" in err, err
    for written in ("model.npz", "checkpoint.npz"):
        (run / written).unlink()
        assert main(["train", "--resume", str(run)]) == 1
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert "activation 'elu' is not registered" in err, err
        # with neither file, the general hint
        assert ("--plugin my_layers" in err) == (written == "model.npz"), err
    models.register_activation("elu", Tanh)  # (a stand-in) the optimiser is checked too
    assert main(["train", "--resume", str(run)]) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "config.json: optimizer 'signsgd' is not registered in this process (known: sgd, " \
        "momentum, nesterov, adam); if it is your own, import the module" in err, err


def test_a_run_of_a_plugins_optimizer_names_the_module_to_load_without_it(plugin, tmp_path,
                                                                         capsys):
    """The activation's module was recorded and named; the optimiser's was not ("if it is your
    own, import the module that registers it"): the checkpoint now records it too."""
    from mlplab.runs.checkpoint import recorded_optimizer_module

    run = tmp_path / "run"
    assert main(["--plugin", str(plugin), "train", *TINY, "--optimizer", "signsgd",
                 "--out", str(run)]) == 0
    assert recorded_optimizer_module(run / "checkpoint.npz") == "my_layers"
    _forget()
    assert main(["train", "--resume", str(run)]) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "config.json: optimizer 'signsgd' is not registered in this process (known: sgd, " \
        "momentum, nesterov, adam); the file was written where module 'my_layers' registered " \
        "it: mlplab --plugin my_layers COMMAND" in err, err
    # a built-in optimiser records nothing
    assert main(["train", *TINY, "--out", str(tmp_path / "plain")]) == 0
    assert recorded_optimizer_module(tmp_path / "plain" / "checkpoint.npz") is None


def test_the_message_for_python_callers_names_the_register_function(plugin, tmp_path):
    from mlplab.io import load_model

    assert main(["--plugin", str(plugin), "train", *TINY, "--activation", "elu",
                 "--out", str(tmp_path / "run")]) == 0
    _forget()
    with pytest.raises(ValueError, match=r"activation 'elu' is not registered in this process "
                                         r".*module 'my_layers' registered it: import my_layers "
                                         r"first \(or register it with mlplab.models."
                                         r"register_activation\)") as refused:
        load_model(tmp_path / "run" / "model.npz")
    assert "--plugin" not in str(refused.value)
    # the recorded module comes from a file, which may be hostile: only a plain dotted name is
    # repeated; anything else leaves the message without it
    from mlplab.io import META_KEY, json_array, parse_json_array, read_npz, write_npz

    arrays = dict(read_npz(tmp_path / "run" / "model.npz"))
    meta = parse_json_array(arrays[META_KEY], "meta")
    for module in ("os; rm -rf ~", "x" * 101, 3):
        arrays[META_KEY] = json_array({**meta, "activation_module": module})
        write_npz(tmp_path / "odd.npz", arrays)
        with pytest.raises(ValueError, match=r"if it is your own, register it first "
                                             r"\(mlplab.models.register_activation\)\.$"):
            load_model(tmp_path / "odd.npz")


def test_the_module_recorded_is_the_one_that_registered(plugin, tmp_path, capsys):
    """A partial of a built-in class (docs/architecture.md's way to register a variant) is
    defined in mlplab.layers: the model file named that module, whose import registers nothing.
    It now names the module that called register_activation; a script run as __main__, which
    cannot be imported by name, is not named."""
    from mlplab import io, models
    from mlplab.layers import LeakyReLU

    (tmp_path / "my_variants.py").write_text(
        "import functools\nfrom mlplab.layers import LeakyReLU\n"
        "from mlplab.models import register_activation\n"
        "register_activation('leaky02', functools.partial(LeakyReLU, 0.2))\n")
    run = tmp_path / "run"
    assert main(["--plugin", str(tmp_path / "my_variants.py"), "train", *TINY, "--activation",
                 "leaky02", "--out", str(run)]) == 0
    meta = io.parse_json_array(io.read_npz(run / "model.npz")[io.META_KEY], "meta")
    assert meta["activation_module"] == "my_variants"
    models.ACTIVATIONS.pop("leaky02")
    sys.modules.pop("my_variants", None)
    capsys.readouterr()
    assert main(["evaluate", str(run)]) == 1
    assert "module 'my_variants' registered it: mlplab --plugin my_variants" in \
        _error_line(capsys)
    exec("register_activation('leaky03', functools.partial(LeakyReLU, 0.3))",
         {"__name__": "__main__", "register_activation": models.register_activation,
          "functools": __import__("functools"), "LeakyReLU": LeakyReLU})
    model = models.MLP(4, [3], 2, activation="leaky03", seed=0)
    assert "activation_module" not in io.parse_json_array(
        io.model_arrays(model)[io.META_KEY], "meta")


def test_mlplab_plugins_names_modules_in_the_current_directory(plugin, tmp_path, monkeypatch,
                                                               capsys):
    """The console script's sys.path lacks the current directory (python -m has it): a module
    name is looked for there too. The variable holds a comma-separated list."""
    monkeypatch.chdir(tmp_path)
    sys.path[:] = [p for p in sys.path if p not in ("", str(tmp_path))]
    monkeypatch.setenv("MLPLAB_PLUGINS", " my_layers ,")
    assert main(["train", *TINY, "--activation", "elu", "--out", "run"]) == 0
    assert main(["evaluate", "run"]) == 0
    capsys.readouterr()
    monkeypatch.delenv("MLPLAB_PLUGINS")
    _forget()
    assert main(["evaluate", "run"]) == 1
    assert "activation 'elu' is not registered" in _error_line(capsys)


def test_help_lists_what_the_plugin_registers(plugin, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--plugin", str(plugin), "train", "--help"])
    out = capsys.readouterr().out
    assert exit_.value.code == 0
    assert "{relu,leaky_relu,prelu,tanh,sigmoid,elu}" in out and ",signsgd}" in out, out
    with pytest.raises(SystemExit):
        main(["--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "--plugin MODULE" in out and "MLPLAB_PLUGINS" in out


def test_a_plugins_preset_is_a_choice_of_train(tmp_path, monkeypatch, capsys):
    """--plugin's help promises that the presets a plugin registers become --preset choices."""
    from mlplab import presets

    monkeypatch.setattr(presets, "PRESETS", dict(presets.PRESETS))
    monkeypatch.setattr(sys, "path", [*sys.path])
    monkeypatch.delenv("MLPLAB_PLUGINS", raising=False)
    path = tmp_path / "my_presets.py"
    path.write_text("from mlplab.presets import register_preset\n"
                    "register_preset('tiny-plugin', {'hidden': [12], 'epochs': 1, "
                    "'description': 'a preset from a plugin'})\n")
    monkeypatch.setattr(sys, "modules", {**sys.modules})  # the plugin module is forgotten after
    with pytest.raises(SystemExit):
        main(["--plugin", str(path), "train", "--help"])
    out = capsys.readouterr().out
    assert "tiny-plugin: a preset from a plugin" in out, out
    run = tmp_path / "run"
    assert main(["--plugin", str(path), "train", "--preset", "tiny-plugin", "--quiet",
                 "--no-plots", "--out", str(run)]) == 0
    config = json.loads((run / "config.json").read_text())
    assert config["preset"] == "tiny-plugin" and config["hidden"] == [12], config
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "its presets choices of --preset" in " ".join(capsys.readouterr().out.split())


def test_gradcheck_checks_a_plugins_activation(plugin, capsys):
    assert main(["--plugin", str(plugin), "gradcheck", "--activation", "elu", "--hidden", "6",
                 "--json"]) == 0
    assert "elu" in capsys.readouterr().out


@pytest.mark.parametrize("name,expected", [
    ("no_such_plugin_xyz", "plugin 'no_such_plugin_xyz': no module named 'no_such_plugin_xyz' "
                           "on Python's import path or in the current directory"),
    ("./no/such/plugin.py", "plugin './no/such/plugin.py': no such file"),
    ("my-layers.py", "a plugin file is a .py file named as a Python module"),
    ("json.py", "the module name 'json' is already taken"),
])
def test_a_plugin_that_cannot_be_found_is_one_line_saying_what_to_give(
        plugin, tmp_path, monkeypatch, capsys, name, expected):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "my-layers.py").write_text(PLUGIN)
    (tmp_path / "json.py").write_text("")  # named as a module of the standard library
    assert main(["--plugin", name, "train", *TINY]) == 1
    err = _error_line(capsys)
    assert err.startswith("mlplab: error: ") and expected in err, err
    assert "give an importable module name" in err or "rename" in err, err
    assert str(tmp_path) not in sys.path  # a refused file leaves no folder on the path


def test_a_folder_named_as_a_plugin_is_refused_saying_what_a_plugin_is(
        plugin, tmp_path, monkeypatch, capsys):
    """A folder of .py files given as a plugin: by its name it was imported as an empty
    namespace package (exit 0, nothing imported from it), by its path it was "no such file"."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "layer_files").mkdir()
    (tmp_path / "layer_files" / "my_layers.py").write_text(PLUGIN)
    what = ("a plugin is a .py file (./my_layers.py) or an importable module or package (a "
            "folder with an __init__.py, named by its module name: my_pkg).")
    assert main(["--plugin", "layer_files", "check"]) == 1
    assert _error_line(capsys) == (
        f"mlplab: error: plugin 'layer_files': {tmp_path / 'layer_files'} is a folder without an "
        f"__init__.py, which Python imports as an empty namespace package; {what}")
    sys.modules.pop("layer_files", None)
    assert main(["--plugin", "./layer_files", "check"]) == 1
    assert _error_line(capsys) == \
        f"mlplab: error: plugin './layer_files': {tmp_path / 'layer_files'} is a folder; {what}"
    assert "elu" not in models.ACTIVATIONS


def test_a_plugin_that_registers_nothing_is_warned_about(plugin, tmp_path, monkeypatch, capsys):
    """A plugin whose register_* calls were left out (or the wrong module named) did nothing,
    without a word; one that registers is imported in silence, and so is one imported before."""
    from mlplab.cli.plugins import load_plugin

    monkeypatch.chdir(tmp_path)
    (tmp_path / "broken_layers.py").write_text(PLUGIN.split("register_activation(")[0])
    with pytest.raises(SystemExit):
        main(["--plugin", "broken_layers", "check", "--help"])
    err = capsys.readouterr().err
    assert err.splitlines()[0] == (
        "mlplab: warning: plugin 'broken_layers' registered nothing: no register_activation, "
        "register_optimizer or register_preset call ran when it was imported; check that it "
        "makes them (and is the module you meant)."), err
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_plugin("broken_layers")  # imported already: it registered then, if it ever did
        load_plugin(str(plugin))
    sys.modules.pop("broken_layers")
    with pytest.warns(UserWarning, match="plugin 'broken_layers' registered nothing"):
        load_plugin("broken_layers")


@pytest.mark.parametrize("source,error,message", [
    ("raise RuntimeError('alpha must be\\npositive')", RuntimeError, "alpha must be positive"),
    # a module the plugin imports is missing: its own error, not "no module named the plugin"
    ("import needs_torch_xyz", ModuleNotFoundError, "No module named 'needs_torch_xyz'"),
    # a registration that mlplab refuses
    ("from mlplab.layers import Tanh\nfrom mlplab.models import register_activation\n"
     "register_activation('relu', Tanh)", ValueError, "activation 'relu' already exists"),
    # exit() in a plugin ended the command with its text alone, naming no plugin
    ("import sys\nsys.exit('bye')", SystemExit, "bye"),
])
def test_a_plugin_that_raises_is_one_line_naming_it_and_the_exception(
        plugin, tmp_path, monkeypatch, capsys, source, error, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "broken_layers.py").write_text(source)
    assert main(["--plugin", "broken_layers", "evaluate", "run"]) == 1
    err = _error_line(capsys)
    assert err.startswith(f"mlplab: error: plugin 'broken_layers' raised {error.__name__} on "
                          f"import: {message}") and err.endswith(
        "(rerun as mlplab --debug ... for the traceback: --debug goes before the command)."), err
    sys.modules.pop("broken_layers", None)
    # --debug: the plugin's own exception, with its traceback
    with pytest.raises(error) as raised:
        main(["--debug", "--plugin", "broken_layers", "evaluate", "run"])
    assert type(raised.value) is error
    assert any(str(entry.path).endswith("broken_layers.py") for entry in raised.traceback)


def test_version_is_answered_whatever_the_plugins_and_an_empty_plugin_name_is_named(
        monkeypatch, capsys):
    """A broken MLPLAB_PLUGINS made --version fail, where it is what one reports when asking
    for help; an empty --plugin (an unset shell variable) said "raised ValueError on import:
    Empty module name"."""
    from mlplab import __version__

    monkeypatch.setenv("MLPLAB_PLUGINS", "no_such_plugin_xyz")
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"mlplab {__version__}"
    monkeypatch.delenv("MLPLAB_PLUGINS")
    assert main(["--plugin", "", "check"]) == 2  # a usage error: no file makes it work
    assert _error_line(capsys) == "mlplab: error: --plugin needs a module name or the path of " \
                                  "a .py file; got an empty text (an unset shell variable?)"


def test_the_options_before_the_command_are_read_as_argparse_reads_them(monkeypatch):
    from mlplab.cli.plugins import from_environment, global_options

    # no prefixes (--plug, --deb): the parser takes no abbreviations, and refuses them
    assert global_options(["--plugin", "a", "--plugin=b.py", "--plug", "c", "--deb", "train",
                           "--plugin", "d"]) == (["a", "b.py"], False)
    assert global_options(["--debug", "train"]) == ([], True)
    assert global_options(["evaluate", "run", "--debug"]) == ([], False)
    assert global_options(["--plugin"]) == ([], False)  # the parser reports the missing value
    monkeypatch.setenv("MLPLAB_PLUGINS", "x, y.z ,,./w.py")
    assert from_environment() == ["x", "y.z", "./w.py"]


@pytest.mark.parametrize("given, prefix, flag",
                         [(["--plug", "PLUGIN"], "--plug", "--plugin"),
                          (["--plugin=PLUGIN", "--deb"], "--deb", "--debug")])
def test_a_prefix_of_an_option_before_the_command_is_refused_before_anything_runs(
        plugin, capsys, given, prefix, flag):
    """The parser takes no abbreviations, but the plugins were read with them: ``mlplab --plug
    my_layers.py gradcheck`` imported the plugin, then said "argument COMMAND: invalid choice:
    'my_layers.py'", and ``mlplab --plug gradcheck`` that no plugin 'gradcheck' exists (exit 1).
    The prefix is refused with the flag it abbreviates, as after the command."""
    _forget()
    words = [w.replace("PLUGIN", str(plugin)) for w in given]
    with pytest.raises(SystemExit) as exit_:
        main([*words, "gradcheck", "--activation", "tanh"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.splitlines()[-1]
    assert err == f"mlplab: error: unrecognized arguments: {prefix} (did you mean {flag}?)"
    assert ("my_layers" in sys.modules) == (flag != "--plugin")  # a prefix imports nothing
    with pytest.raises(SystemExit) as exit_:
        main(["--plug", "gradcheck"])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == \
        "mlplab: error: unrecognized arguments: --plug (did you mean --plugin?)"


def test_a_plugin_option_after_the_command_says_where_it_goes(plugin, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["gradcheck", "--plugin", str(plugin)])
    assert exit_.value.code == 2
    assert "--plugin goes before the command: mlplab --plugin MODULE gradcheck" in \
        capsys.readouterr().err


@pytest.mark.parametrize("equals", [False, True])
def test_a_plugin_option_after_the_command_is_reported_before_the_choice_it_would_add(
        plugin, capsys, equals):
    """``mlplab train --plugin my_layers --activation elu`` said only "invalid choice: 'elu'"
    (argparse refuses choices before it reports unknown arguments), never where --plugin goes;
    so does ``--plugin=my_layers``."""
    given = [f"--plugin={plugin}"] if equals else ["--plugin", str(plugin)]
    with pytest.raises(SystemExit) as exit_:
        main(["train", *given, "--dataset", "digits", "--activation", "elu"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert f"mlplab train: error: unrecognized arguments: {' '.join(given)} (--plugin goes " \
        "before the command: mlplab --plugin MODULE train ...)" in err
    assert "invalid choice" not in err


def test_tune_with_two_workers_trains_a_plugins_activation_in_each(plugin, tmp_path, capsys):
    """The workers are fresh interpreters (spawn), which import the registered classes by
    module name: a plugin file is imported by name, its folder on the sys.path they get."""
    space = tmp_path / "space.yaml"
    space.write_text("hidden_size: 16\nactivation: elu\noptimizer: signsgd\n"
                     "lr: {type: float, low: 1e-3, high: 1e-2}\nepochs: 3\nbatch_size: 64\n")
    out = tmp_path / "tune"
    args = ["tune", "--dataset", "digits", "--trials", "3", "--workers", "2", "--search-space",
            str(space), "--search-only", "--no-progress", "--sampler", "random"]
    assert main(["--plugin", str(plugin), *args, "--out", str(out)]) == 0, \
        capsys.readouterr().err
    study = optuna.load_study(study_name="tune-digits", storage=f"sqlite:///{out / 'study.db'}")
    trials = study.get_trials(deepcopy=False)
    # (a trial a worker began once the others had met the target is given up as surplus)
    kept = [t for t in trials if not t.user_attrs.get("mlplab:surplus")]
    assert len(kept) == 3 and {t.state for t in kept} == {TrialState.COMPLETE}, \
        [(t.state, t.user_attrs) for t in trials]
    assert all(t.value > 0.15 for t in kept)  # trained: above chance on ten classes
    # without the plugin the space is refused before any worker starts, saying how to load it
    _forget()
    capsys.readouterr()
    assert main([*args, "--out", str(tmp_path / "no-plugin")]) != 0
    err = capsys.readouterr().err
    assert "got 'elu'" in err and "--plugin MODULE" in err and "MLPLAB_PLUGINS" in err, err
    assert not (tmp_path / "no-plugin").exists()


def test_a_plugin_files_folder_shadows_no_installed_module(plugin, capsys):
    """The folder of a plugin file goes last on sys.path: a file beside the plugin named as a
    module of Python's (here tabnanny.py) must not replace that module for mlplab and its
    libraries."""
    (plugin.parent / "tabnanny.py").write_text("SHADOWED = True\n")
    saved = sys.modules.pop("tabnanny", None)
    try:
        assert main(["--plugin", str(plugin), "gradcheck", "--activation", "elu"]) == 0
        import tabnanny

        assert not hasattr(tabnanny, "SHADOWED"), tabnanny.__file__
    finally:
        sys.modules.pop("tabnanny", None)
        if saved is not None:
            sys.modules["tabnanny"] = saved


def test_an_estimators_registered_names_reach_joblibs_worker_processes(plugin, tmp_path):
    """``cross_val_score(MLPClassifier(activation="elu"), ..., n_jobs=2)``: the workers
    unpickled the name of nothing registered there ("unknown activation 'elu'"), wherever the
    script registered it; the estimator's pickle now carries the classes of the registered
    names it uses. The script registers them in its __main__ guard, which workers never run."""
    import subprocess

    script = tmp_path / "script.py"
    script.write_text(PLUGIN.replace("register_activation(\"elu\", ELU)\n"
                                     "register_optimizer(SignSGD)\n", "") + '''
if __name__ == "__main__":
    from sklearn.datasets import load_digits
    from sklearn.model_selection import cross_val_score

    from mlplab.estimator import MLPClassifier

    register_activation("elu", ELU)
    register_optimizer(SignSGD)
    X, y = load_digits(return_X_y=True)
    m = MLPClassifier(hidden_sizes=(8,), max_epochs=3, tol=None, random_state=0,
                      activation="elu", optimizer="signsgd", lr=1e-3)
    print(cross_val_score(m, X / 16, y, cv=2, n_jobs=2, error_score="raise").tolist())
''')
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    scores = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(scores) == 2 and all(0 <= s <= 1 for s in scores)


def test_an_unpickled_estimator_registers_what_this_process_lacks(plugin):
    import pickle

    from mlplab.estimator import MLPClassifier

    sys.path.insert(0, str(plugin.parent))
    import my_layers

    clf = MLPClassifier(hidden_sizes=(4,), activation="elu", optimizer="signsgd")
    data = pickle.dumps(clf)
    models.ACTIVATIONS.pop("elu")  # this process as one that has not registered them
    optim.OPTIMIZERS.pop("signsgd")
    again = pickle.loads(data)
    assert models.ACTIVATIONS["elu"] is my_layers.ELU
    assert optim.OPTIMIZERS["signsgd"] is my_layers.SignSGD
    assert again.get_params() == clf.get_params()
    # a process that has its own class under the name keeps it
    models.ACTIVATIONS["elu"] = Tanh
    pickle.loads(data)
    assert models.ACTIVATIONS["elu"] is Tanh
    # built-in names carry nothing extra
    assert "_registered" not in MLPClassifier().__getstate__()
    # a built-in name the sender replaced is its class, not the built-in, in a process that
    # has only mlplab's own (a worker trained another network)
    models.register_activation("relu", Tanh, replace=True)
    replaced = pickle.dumps(MLPClassifier(activation="relu"))
    models.ACTIVATIONS["relu"] = models.BUILT_IN_ACTIVATIONS["relu"]
    pickle.loads(replaced)
    assert models.ACTIVATIONS["relu"] is Tanh


def test_an_estimator_naming_an_unpicklable_registration_still_pickles(registries):
    """A registration plain pickle cannot carry (a lambda) is left out of the estimator's
    pickle: carrying it broke pickle.dumps and joblib.dump of the estimator itself."""
    import pickle

    from mlplab.estimator import MLPClassifier

    models.register_activation("mytanh", lambda: Tanh())
    clf = MLPClassifier(hidden_sizes=(4,), activation="mytanh")
    assert pickle.loads(pickle.dumps(clf)).get_params() == clf.get_params()


def test_a_plugin_of_mlplab_plugins_that_fails_names_the_variable_and_leaves_help(
        plugin, monkeypatch, capsys, tmp_path):
    """A name set in a shell profile: the error named no MLPLAB_PLUGINS (the command had no
    --plugin), and it ended --help too."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLPLAB_PLUGINS", "no_such_plugin_xyz")
    assert main(["data", "info", "digits"]) == 1
    err = _error_line(capsys)
    assert err.startswith("mlplab: error: plugin 'no_such_plugin_xyz': no module named")
    assert err.endswith("; MLPLAB_PLUGINS='no_such_plugin_xyz' names it: mend or unset it.")
    # the help leaves out only the plugin that fails, not the ones named after it
    monkeypatch.setenv("MLPLAB_PLUGINS", f"no_such_plugin_xyz,{plugin}")
    with pytest.raises(SystemExit) as done:
        main(["train", "--help"])
    assert done.value.code == 0
    captured = capsys.readouterr()
    assert "usage: mlplab train" in captured.out and "elu" in captured.out
    assert captured.err.startswith("mlplab: warning: plugin 'no_such_plugin_xyz'")
    # a --plugin of its own still loads, and its failure names no variable
    monkeypatch.delenv("MLPLAB_PLUGINS")
    assert main(["--plugin", "no_such_plugin_xyz", "data", "info", "digits"]) == 1
    assert "MLPLAB_PLUGINS=" not in _error_line(capsys)


def test_the_commands_a_plugin_run_advises_load_the_plugin(plugin, tmp_path, capsys):
    # the run's "next:" and "Continue with:" commands, pasted as they stand, would be refused
    # without the plugin (activation 'elu' is not registered): they carry its --plugin
    import argparse
    import shlex

    from mlplab.cli.train import _resume_command

    run = tmp_path / "run"
    assert main(["--plugin", str(plugin), "train", *TINY, "--activation", "elu",
                 "--out", str(run)]) == 0
    line = next(w for w in capsys.readouterr().out.splitlines() if w.startswith("next: "))
    evaluate = shlex.split(line.removeprefix("next: ").split(" (")[0])
    assert evaluate == ["mlplab", "--plugin", str(plugin), "evaluate", str(run)], line
    _forget()
    assert main(evaluate[1:]) == 0, capsys.readouterr().err
    resume = _resume_command(run, argparse.Namespace(plugin=[str(plugin)], threads=None,
                                                     plots=True))
    assert resume == f"Continue with: mlplab --plugin {plugin} train --resume {run}"
    # without --plugin (MLPLAB_PLUGINS, which the next command shares, or none) as before
    assert _resume_command(run, argparse.Namespace(plugin=[], threads=None, plots=True)) == \
        f"Continue with: mlplab train --resume {run}"


RELU_SWAP = ("from mlplab.layers import ReLU\nfrom mlplab.models import register_activation\n\n\n"
             "class MyReLU(ReLU):\n    pass\n\n\n"
             "register_activation('relu', MyReLU, replace=True)\n")


@pytest.mark.parametrize("from_env", [False, True])
def test_torch_train_refuses_a_plugin_that_replaces_relu_before_training(
        plugin, from_env, tmp_path, capsys, monkeypatch):
    # the run's model.npz (the network as an mlplab.MLP) cannot be written with another 'relu':
    # refused before the folder is made and any epoch trains, naming what to drop, where the
    # whole run trained before failing
    pytest.importorskip("torch")
    from mlplab.torch_mlp import runs as torch_runs

    killed = tmp_path / "killed"  # made before any plugin replaces 'relu'
    assert main(["torch", "train", *TINY, "--epochs", "1", "--out", str(killed)]) == 0
    for name in ("model.npz", "model.pt", "metrics.json"):  # killed, as it were
        (killed / name).unlink(missing_ok=True)
    capsys.readouterr()
    fit = []
    monkeypatch.setattr(torch_runs, "fit", lambda *a, **k: fit.append(1))
    swap = tmp_path / "relu_swap.py"
    swap.write_text(RELU_SWAP)
    run = tmp_path / "run"
    cannot = ("plugin {!r} replaces the activation 'relu', so mlplab torch train could not write "
              "the run's model.npz (its network as an mlplab.MLP)")
    if from_env:
        monkeypatch.setenv("MLPLAB_PLUGINS", f"{plugin},{swap}")
        argv = []
        said = (cannot.format(str(swap)) + f"; MLPLAB_PLUGINS='{plugin},{swap}' names it: mend "
                "or unset it.")
    else:
        argv = ["--plugin", str(plugin), "--plugin", str(swap)]
        said = (cannot.format(str(swap)) + f"; drop --plugin {swap} (the PyTorch network is "
                "ReLU whatever a plugin registers).")
    assert main([*argv, "torch", "train", *TINY, "--out", str(run)]) == 1
    assert _error_line(capsys) == f"mlplab torch train: error: {said}"
    assert not run.exists() and not fit
    # --resume checks the folder first: a missing RUN is said as such, not blamed on the plugin
    assert main([*argv, "torch", "train", "--resume", str(run)]) == 1
    line = _error_line(capsys)
    assert line.startswith(f"mlplab torch train: error: no run to resume in {run}: no such "
                           "folder"), line
    assert "relu" not in line, line
    # and a run that resumes (stopped before it saved its results) is refused for the plugin
    assert main([*argv, "torch", "train", "--resume", str(killed)]) == 1
    assert _error_line(capsys).startswith(f"mlplab torch train: error: {cannot.format(str(swap))}")
    assert not fit


def test_the_commands_a_torch_run_advises_leave_out_the_plugins(plugin, tmp_path, capsys):
    # mlplab torch trains a fixed ReLU/Adam network: a plugin adds no choice of its commands,
    # and its run files name no plugin module (one that replaces 'relu' is refused: above)
    pytest.importorskip("torch")
    import shlex

    # a plugin that only adds an activation: the "next:" commands are the plain ones too
    other = tmp_path / "other"
    assert main(["--plugin", str(plugin), "torch", "train", *TINY, "--out", str(other)]) == 0
    line = next(w for w in capsys.readouterr().out.splitlines() if w.startswith("next: "))
    assert shlex.split(line.removeprefix("next: ").split(" (")[0]) == \
        ["mlplab", "evaluate", str(other)], line
