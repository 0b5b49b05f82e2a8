"""The documentation against the code: every command in README.md and docs/*.md parses with the
CLI (or the benchmark script) it names, every ``mlplab.x.y`` it names exists, every repository path
it names is there, every Python block compiles, every flag that ``--help`` shows is named in the
docs, and every relative link (and its ``#anchor``) leads somewhere. The Python blocks are run by
tests/test_docs_examples.py.

Commands are only parsed, not run: a wrong or renamed flag, a removed choice or a value its type
rejects fails here, which is how documentation drifts when options change. What the commands then
do is tested by the CLI tests.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import inspect
import re
import runpy
import shlex
from pathlib import Path

import pytest

import mlplab
import mlplab.data
from mlplab.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

# Placeholders the docs write in upper case, and a value of the right kind for each.
PLACEHOLDERS = {
    "PRESET": "twolayer-best", "DIR": "/tmp/mlplab-docs-out", "SEED": "0", "PATH": "/tmp/data",
    "RUN": "runs/x", "IMAGE": "cat.png", "FILE": "out.png", "NAME": "digits", "P": "0.2",
    "R": "0.1", "S": "0", "N": "2", "H": "100", "E": "10",
}
# `mlplab train ... DATA` in docs/results.md stands for the dataset options given in its comment.
DATA = ["--dataset", "folder:/tmp/mlplab-data/train", "--val-size", "5000", "--test-size", "5000"]


def _code_blocks(text: str) -> list[tuple[str, int, str]]:
    """(language, first line number, body) of each fenced block."""
    return [(m.group(1), text.count("\n", 0, m.start()) + 2, m.group(2))
            for m in re.finditer(r"^```(\w*)\n(.*?)^```", text, re.M | re.S)]


def _normalise(words: list[str]) -> list[str]:
    """Turn a synopsis into a command line: ``[--x V]`` -> ``--x V``, ``a|b`` -> ``a``,
    placeholders -> values, ``...`` dropped."""
    out: list[str] = []
    for word in words:
        word = word.strip("[]")
        if not word or word in ("...", "…") or word.endswith("..."):
            continue
        if word == "DATA":
            out += DATA
            continue
        if "|" in word:
            word = word.split("|")[0]
        prefix, _, value = word.rpartition(":")
        if prefix and value in PLACEHOLDERS:  # folder:PATH
            word = f"{prefix}:{PLACEHOLDERS[value]}"
        out.append(PLACEHOLDERS.get(word, word))
    return out


def _commands(program: str) -> list[tuple[str, list[str]]]:
    """Every ``<program> ...`` command of the docs' shell blocks, as (where, arguments)."""
    found = []
    for doc in DOCS:
        for lang, first, body in _code_blocks(doc.read_text()):
            if lang not in ("bash", "console", "sh", ""):
                continue
            lines = body.split("\n")
            i = 0
            while i < len(lines):
                number, line = first + i, lines[i]
                while line.endswith("\\") and i + 1 < len(lines):  # continuation lines
                    i += 1
                    line = line[:-1] + " " + lines[i]
                i += 1
                line = line.strip()
                if lang == "console":  # a prompt's command, not the output under it
                    if not line.startswith("$ "):
                        continue
                    line = line[2:]
                try:
                    words = shlex.split(line, comments=True)
                except ValueError:
                    continue
                # each simple command of `a && b | c`
                command: list[str] = []
                for word in [*words, "&&"]:
                    if word in ("&&", "|", "||", ";"):
                        if program in command:
                            at = command.index(program)
                            found.append((f"{doc.name}:{number}", command[at + 1:]))
                        command = []
                    else:
                        command.append(word)
    return found


MLPLAB_COMMANDS = [c for c in _commands("mlplab") if c[1] and not c[1][0].startswith("error")]
BENCH_COMMANDS = [(where, [script] + args) for program in ("python", "python3")
                  for where, (script, *args) in _commands(program)
                  if script.startswith("benchmarks/")]


def test_the_docs_have_commands() -> None:
    # the extraction itself: it must find the README's commands, or every test below is vacuous
    assert len(MLPLAB_COMMANDS) > 40
    assert any(args[:1] == ["reproduce"] for _, args in MLPLAB_COMMANDS)
    assert len(BENCH_COMMANDS) >= 4


def _register_the_documented_plugin(tmp_path: Path) -> None:
    """What the documented plugin (``my_layers.py``: docs/architecture.md's ELU and RMSProp)
    registers, by running that example (its model file in ``tmp_path``)."""
    section = (ROOT / "docs" / "architecture.md").read_text().split("## Writing your own layer")[1]
    source = re.search(r"^```python\n(.*?)^```", section, re.M | re.S).group(1)
    source = source.replace('"/tmp/elu-net.npz"', repr(str(tmp_path / "elu-net.npz")))
    exec(compile(source, "architecture.md", "exec"), {"__name__": "my_layers"})


@pytest.mark.parametrize("where,args", MLPLAB_COMMANDS, ids=[w for w, _ in MLPLAB_COMMANDS])
def test_documented_mlplab_command_parses(where: str, args: list[str],
                                          capsys: pytest.CaptureFixture[str],
                                          request: pytest.FixtureRequest,
                                          tmp_path: Path) -> None:
    argv = _normalise(args)
    if "--plugin" in argv:  # the parser is built after mlplab.cli.main imported the plugin
        request.getfixturevalue("registries")  # restored afterwards
        _register_the_documented_plugin(tmp_path)
    parser = build_parser()
    try:
        parsed, unknown = parser.parse_known_args(argv)
    except SystemExit:
        pytest.fail(f"{where}: `mlplab {' '.join(args)}` does not parse: "
                    f"{capsys.readouterr().err.strip()}")
    assert not unknown, f"{where}: `mlplab {' '.join(args)}`: unknown arguments {unknown}"
    assert getattr(parsed, "func", None), f"{where}: `mlplab {' '.join(args)}` names no command"


class _Parsed(Exception):
    """Raised once a benchmark script's arguments parsed, so that it does not run."""


@pytest.mark.parametrize("where,argv", BENCH_COMMANDS, ids=[w for w, _ in BENCH_COMMANDS])
def test_documented_benchmark_command_parses(where: str, argv: list[str],
                                             monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    script, *args = argv
    parse = argparse.ArgumentParser.parse_args

    def parse_then_stop(self: argparse.ArgumentParser, *a: object, **k: object) -> None:
        parse(self, *a, **k)
        raise _Parsed

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", parse_then_stop)
    main = runpy.run_path(str(ROOT / script))["main"]
    with pytest.raises(_Parsed):
        try:
            main(_normalise(args))
        except SystemExit as exc:
            if exc.code == 0 and "--help" in args:
                raise _Parsed from None
            pytest.fail(f"{where}: `{' '.join(argv)}` does not parse: "
                        f"{capsys.readouterr().err.strip()}")


def _inline(pattern: str) -> list[tuple[str, str]]:
    """(where, match) of a pattern inside the docs' `code` spans and code blocks."""
    found = []
    for doc in DOCS:
        for number, line in enumerate(doc.read_text().splitlines(), 1):
            found += [(f"{doc.name}:{number}", m) for m in re.findall(pattern, line)]
    return found


DOTTED = sorted({(w, m) for w, m in _inline(r"`(mlplab(?:\.[A-Za-z_]\w*)+)") if m[-2:] != ".X"})


@pytest.mark.parametrize("where,name", DOTTED, ids=[f"{w}:{n}" for w, n in DOTTED])
def test_documented_name_exists(where: str, name: str) -> None:
    if name.startswith("mlplab.torch_mlp") and importlib.util.find_spec("torch") is None:
        pytest.skip("PyTorch is not installed: mlplab.torch_mlp does not import")
    parts = name.split(".")
    for split in range(len(parts), 0, -1):  # the longest importable module, then attributes
        try:
            obj = importlib.import_module(".".join(parts[:split]))
        except ModuleNotFoundError:
            continue
        for attribute in parts[split:]:
            assert hasattr(obj, attribute), f"{where}: `{name}`: no {attribute!r} in {obj!r}"
            obj = getattr(obj, attribute)
        return
    pytest.fail(f"{where}: `{name}` does not import")


PATHS = sorted({(w, m) for w, m in _inline(
    r"`((?:mlplab|tests|benchmarks|docs|\.ci)/[\w./*-]*)`")})


@pytest.mark.parametrize("where,path", PATHS, ids=[f"{w}:{p}" for w, p in PATHS])
def test_documented_path_exists(where: str, path: str) -> None:
    assert list(ROOT.glob(path.rstrip("/"))), f"{where}: `{path}` is not in the repository"


PYTHON_BLOCKS = [(f"{doc.name}:{first}", body) for doc in DOCS
                 for lang, first, body in _code_blocks(doc.read_text()) if lang == "python"]


@pytest.mark.parametrize("where,source", PYTHON_BLOCKS, ids=[w for w, _ in PYTHON_BLOCKS])
def test_documented_python_compiles(where: str, source: str) -> None:
    signature = re.fullmatch(r"(\w+)(\(.*\))( -> .+)?\s*", source, re.S)
    if signature is None:
        compile(source, where, "exec")
        return
    # a function's synopsis: it must be the function's real signature
    name, parameters, _ = signature.groups()
    documented = {}
    exec(f"def {name}{parameters}: pass", documented)
    function = next(getattr(m, name) for m in (mlplab, mlplab.data) if hasattr(m, name))

    def names_and_defaults(f: object) -> list[tuple[str, object]]:
        return [(p.name, p.default) for p in inspect.signature(f).parameters.values()]

    assert names_and_defaults(documented[name]) == names_and_defaults(function), where


def _subparser(words: list[str]) -> argparse.ArgumentParser:
    """The parser of the innermost (sub)command that the leading words name."""
    parser = build_parser()
    for word in words:
        sub = next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)),
                   None)
        if sub is None or word not in sub.choices:
            break
        parser = sub.choices[word]
    return parser


SPANS = sorted({(w, m) for w, m in _inline(r"`mlplab ([a-z][^`]*)`")
                if "--" in m and ": error:" not in m})  # not a quoted error message


@pytest.mark.parametrize("where,span", SPANS, ids=[f"{w}:{s}" for w, s in SPANS])
def test_flags_named_in_the_text_exist(where: str, span: str) -> None:
    # prose names commands in part (`mlplab train --crop-fill black`): each flag must exist
    words = span.split()
    parser = _subparser(words)
    flags = {o for a in parser._actions for o in a.option_strings}
    named = {w.strip("[]").split("=")[0] for w in words if w.strip("[").startswith("--")}
    assert named <= flags, f"{where}: `mlplab {span}`: {sorted(named - flags)} not in " \
                           f"`{parser.prog}`"


# Where each command's flags are documented: the README, data.md (the dataset options every
# command shares) and the command's own pages.
COMMAND_DOCS = {
    "": [], "check": [], "gradcheck": [], "data": [], "evaluate": ["training.md"],
    "predict": ["training.md"], "runs": ["training.md"], "train": ["training.md", "accuracy.md"],
    "tune": ["tuning.md"],
    "torch": ["pytorch.md"], "reproduce": ["report.md"],
}


def _options(parser: argparse.ArgumentParser, words: tuple[str, ...] = ()
             ) -> list[tuple[tuple[str, ...], str]]:
    """(command words, option) of every option of the parser and its sub-commands."""
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found += _options(sub, (*words, name))
        else:
            found += [(words, o) for o in action.option_strings if o not in ("-h", "--help")]
    return found


OPTIONS = _options(build_parser())


@pytest.mark.parametrize("words,option", OPTIONS,
                         ids=[" ".join(["mlplab", *w, o]) for w, o in OPTIONS])
def test_every_flag_is_documented(words: tuple[str, ...], option: str) -> None:
    # a flag that `--help` shows but no page names is one a reader of the docs never learns of
    pages = [ROOT / "README.md", ROOT / "docs" / "data.md"]
    pages += [ROOT / "docs" / name for name in COMMAND_DOCS[words[0] if words else ""]]
    text = "\n".join(page.read_text() for page in pages)
    assert re.search(re.escape(option) + r"(?![\w-])", text), \
        f"`mlplab {' '.join(words)} {option}` is in --help but in none of " \
        f"{[p.name for p in pages]}"


def _anchor(heading: str) -> str:
    """GitHub's anchor of a Markdown heading: lower case, punctuation dropped, spaces to dashes."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


LINKS = [(f"{doc.relative_to(ROOT)}:{number}", doc, target)
         for doc in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
         for number, line in enumerate(doc.read_text().splitlines(), 1)
         for target in re.findall(r"\]\(([^)\s]+)\)", line)
         if not re.match(r"[a-z]+:", target)]  # not https:, mailto: or data:


@pytest.mark.parametrize("where,doc,target", LINKS, ids=[f"{w}:{t}" for w, _, t in LINKS])
def test_documented_link_resolves(where: str, doc: Path, target: str) -> None:
    path, _, anchor = target.partition("#")
    linked = (doc.parent / path) if path else doc
    assert linked.exists(), f"{where}: ({target}): no {linked.relative_to(ROOT)}"
    if anchor and linked.suffix == ".md":
        headings = re.findall(r"^#+ (.*)$", linked.read_text(), re.M)
        assert anchor in {_anchor(h) for h in headings}, \
            f"{where}: ({target}): no heading '#{anchor}' in {linked.relative_to(ROOT)}"
