"""Plugins: modules of the user's that ``mlplab`` imports before it builds its command line, so
that the activations and optimisers they register (``mlplab.models.register_activation``,
``mlplab.optim.register_optimizer``) are choices of ``--activation`` and ``--optimizer``, and
run folders and model files that name them load.

A plugin is named with ``--plugin MODULE`` before the command (repeatable) or in the
environment variable ``MLPLAB_PLUGINS`` (comma-separated; imported first), as an importable
module name (``my_pkg.layers``) or the path of a ``.py`` file (``./my_layers.py``).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import warnings
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from mlplab.cli import CLIError

ENV_VAR = "MLPLAB_PLUGINS"
_HOW = "give an importable module name (my_pkg.layers) or the path of a .py file (./my_layers.py)"
#: what to say of a folder named as a plugin
_FOLDER = ("a plugin is a .py file (./my_layers.py) or an importable module or package (a "
           "folder with an __init__.py, named by its module name: my_pkg)")


#: the activations the plugins imported replaced (``register_activation(NAME, ...,
#: replace=True)``), each with the plugin that did it, as named: what a command that cannot take
#: the replacement names to drop
REPLACED_ACTIVATIONS: dict[str, str] = {}


class PluginError(CLIError):
    """A plugin that cannot be found or that raised on import (its exception is the cause)."""


class EmptyPluginName(PluginError):
    """``--plugin ""`` (an unset shell variable): a command line that cannot work, exit 2."""


def _is(option: str, name: str) -> bool:
    """Whether ``option`` names the long option ``name``: spelt out, as the parser takes no
    abbreviations (``--plug`` is refused there, so it must import nothing here)."""
    return option == name


def _split_at_command(argv: Sequence[str]) -> tuple[list[tuple[str, str | None]], list[str]]:
    """The options before the command, as (option, value) pairs, and the words from the command
    on (from a ``--`` if that comes first)."""
    words, options, i = list(argv), [], 0
    while i < len(words) and words[i].startswith("-") and words[i] != "--":
        option, eq, text = words[i].partition("=")
        value: str | None = text
        if not eq:
            takes_value = _is(option, "--plugin")
            value = words[i + 1] if takes_value and i + 1 < len(words) else None
            i += takes_value
        options.append((option, value))
        i += 1
    return options, words[i:]


def global_options(argv: Sequence[str]) -> tuple[list[str], bool]:
    """The ``--plugin`` values and whether ``--debug`` is given among the options before the
    command. Read before the parser exists, because the sub-commands' choices are fixed when it
    is built; the parser reads them again (and reports a ``--plugin`` without a value)."""
    options, _ = _split_at_command(argv)
    plugins = [value for option, value in options if _is(option, "--plugin") and value is not None]
    return plugins, any(_is(option, "--debug") for option, _ in options)


def version_asked(argv: Sequence[str]) -> bool:
    """Whether ``--version`` is among the options before the command: answered before the
    plugins load, so that a broken ``MLPLAB_PLUGINS`` cannot hide the version it would help to
    report."""
    options, _ = _split_at_command(argv)
    return any(option == "--version" for option, _ in options)


def unknown_options(argv: Sequence[str], known: Collection[str]) -> list[str]:
    """The options before the command that are none of ``known`` (the top parser's flags): a
    prefix such as ``--plug`` is not ``--plugin``, and the word after it would be taken as the
    command."""
    options, _ = _split_at_command(argv)
    return [option for option, _ in options if option not in known]


def misplaced(argv: Sequence[str]) -> tuple[str | None, list[str]]:
    """The command and the ``--plugin MODULE`` words given after it, where they are not read."""
    _, words = _split_at_command(argv)
    if not words or words[0] == "--":
        return None, []
    found = []
    rest = iter(words[1:])
    for word in rest:
        if word == "--":
            break
        if word == "--plugin":
            value = next(rest, None)
            found += [word] if value is None else [word, value]
        elif word.startswith("--plugin="):
            found.append(word)
    return words[0], found


def from_environment(environ: Mapping[str, str] = os.environ) -> list[str]:
    """The plugins ``MLPLAB_PLUGINS`` names (imported before those given with ``--plugin``)."""
    named = [n.strip() for n in environ.get(ENV_VAR, "").split(",")]
    return [n for n in named if n]


def load_plugins(names: Iterable[str], warn: Callable[[str], None] | None = None
                 ) -> list[ModuleType]:
    """Import each plugin in turn (one already imported is not imported again); ``warn``: what
    is done with a warning (:func:`load_plugin`)."""
    importlib.invalidate_caches()  # a module written since the interpreter started
    return [load_plugin(name, warn) for name in names]


def _is_path(name: str) -> bool:
    return name.endswith(".py") or any(sep and sep in name for sep in (os.sep, os.altsep, "/"))


def load_plugin(name: str, warn: Callable[[str], None] | None = None) -> ModuleType:
    """Import the plugin ``name``: a module name or the path of a ``.py`` file. A module
    imported now that registers no activation, optimiser or preset is warned about, with
    ``warn`` (by default ``warnings.warn``): a plugin whose ``register_*`` call was left out,
    or the wrong module named, did nothing without a word."""
    if not name.strip():  # an unset shell variable: "raised ValueError: Empty module name"
        raise EmptyPluginName("--plugin needs a module name or the path of a .py file; got an "
                              "empty text (an unset shell variable?)")
    module = _module_of_file(name) if _is_path(name) else name
    fresh, before = module not in sys.modules, _registrations()
    try:
        imported = _import(module, name)
    except PluginError:
        raise
    except (Exception, SystemExit) as exc:  # the plugin's own code failed, or called exit()
        # (a sys.exit("bye") in a plugin ended the command with "bye", naming no plugin)
        detail = ": " + " ".join(str(exc).split()) if str(exc).strip() else ""
        raise PluginError(f"plugin {name!r} raised {type(exc).__name__} on import{detail} "
                          "(rerun as mlplab --debug ... for the traceback: --debug goes "
                          "before the command).") from exc
    _refuse_namespace_package(imported, name)
    after = _registrations()
    REPLACED_ACTIVATIONS.update({k: name for k, v in before[0].items()
                                 if after[0].get(k, v) is not v})
    if fresh and not _changed(before, after):
        text = (f"plugin {name!r} registered nothing: no register_activation, "
                "register_optimizer or register_preset call ran when it was imported; check "
                "that it makes them (and is the module you meant).")
        if warn is None:
            warnings.warn(text, stacklevel=3)
        else:
            warn(text)
    return imported


def _registrations() -> list[dict[str, Any]]:
    """Copies of the registries a plugin adds to (the entries themselves, compared by
    identity: a plugin may replace one)."""
    from mlplab import models, optim, presets

    return [dict(models.ACTIVATIONS), dict(optim.OPTIMIZERS), dict(presets.PRESETS)]


def _changed(before: list[dict[str, Any]], after: list[dict[str, Any]]) -> bool:
    return any(a.keys() != b.keys() or any(a[k] is not b[k] for k in a)
               for a, b in zip(before, after, strict=True))


def _refuse_namespace_package(module: ModuleType, name: str) -> None:
    """Refuse a folder without ``__init__.py`` named as a module: Python imports it as an
    empty namespace package, and its ``.py`` files were never imported."""
    spec = module.__spec__
    if spec is None or spec.origin is not None or spec.submodule_search_locations is None:
        return
    folder = Path(next(iter(spec.submodule_search_locations), name))
    raise PluginError(f"plugin {name!r}: {folder} is a folder without an __init__.py, which "
                      f"Python imports as an empty namespace package; {_FOLDER}.")


def _import(module: str, name: str) -> ModuleType:
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if not _missing(exc, module):
            raise  # a module the plugin imports is missing: the plugin's own error
    # the console script's sys.path lacks the current directory (python -m puts it first), where
    # a user's module usually is: try it, last, so that it shadows no installed module
    cwd = os.getcwd()
    if _is_path(name) or cwd in sys.path:
        raise PluginError(f"plugin {name!r}: no module named {module!r} on Python's import path "
                          f"or in the current directory; {_HOW}.")
    sys.path.append(cwd)
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        sys.path.remove(cwd)
        if not _missing(exc, module):
            raise
        raise PluginError(f"plugin {name!r}: no module named {module!r} on Python's import path "
                          f"or in the current directory ({cwd}); {_HOW}.") from None


def _missing(exc: ModuleNotFoundError, module: str) -> bool:
    """Whether ``exc`` says that ``module`` itself (or a package holding it) is not there."""
    return exc.name is not None and (module == exc.name or module.startswith(exc.name + "."))


def _module_of_file(name: str) -> str:
    """The module name under which the plugin file ``name`` imports, its folder added to
    ``sys.path``. A file is imported by name, not executed from its path: the worker processes
    of ``tune --workers`` (fresh interpreters given this sys.path) then import the classes it
    registers by that same name."""
    path = Path(name).expanduser()
    if path.is_dir():  # "no such file" was false, and sent the user looking for a typo
        raise PluginError(f"plugin {name!r}: {path.absolute()} is a folder; {_FOLDER}.")
    if not path.is_file():
        raise PluginError(f"plugin {name!r}: no such file ({path.absolute()}); {_HOW}.")
    path = path.resolve()
    if path.suffix != ".py" or not path.stem.isidentifier():
        raise PluginError(f"plugin {name!r}: a plugin file is a .py file named as a Python "
                          "module (letters, digits and underscores, as my_layers.py); rename it.")
    folder = str(path.parent)
    added = folder not in sys.path
    if added:
        sys.path.append(folder)  # last: it must not shadow installed modules
    try:
        spec = importlib.util.find_spec(path.stem)
    except (ImportError, ValueError):  # a module of that name imported without a spec
        spec = None
    origin = getattr(spec, "origin", None)
    if origin is None or Path(origin).resolve() != path:
        if added:
            sys.path.remove(folder)
        raise PluginError(f"plugin {name!r}: the module name {path.stem!r} is already taken"
                          f"{f' by {origin}' if origin else ''}; rename the file.")
    return path.stem
