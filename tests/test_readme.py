"""The README's commands and code, run as written, so that they cannot drift from the code.

Tag convention: an HTML comment on the line before a fenced block says how that block is tested.
Blocks without a tag are not run (text output, sections that say nothing runnable).

    <!-- readme-test: MODE [reason="..."] [set="k=v k=v"] [sub="old=>new;old2=>new2"] [only="1,3"] [needs="new.csv"] -->

(an attribute's value in double or single quotes, whichever it does not contain).

MODE:
- ``run``: every command of a ``bash`` block runs (``deepwell ...`` in this process, through the
  CLI's ``main``, from a scratch folder holding ``examples/``) and must exit 0; a ``python`` block
  is executed. Quick mode, declared in the tag: ``set`` adds ``--set k=v`` to each ``deepwell
  train`` / ``sweep`` command; ``sub`` replaces text first (``{run}`` is the newest run folder,
  ``{other}`` the one before it; ``runs/<run>`` and ``runs/<other run>`` are read as those);
  ``only`` runs those commands (1-based, after joining ``\\`` continuations); ``needs`` creates
  input files the block assumes (``new.csv``: numeric inputs shaped like the newest run's;
  ``reviews.csv``: a small text CSV).
- ``slow``: the same, marked ``slow`` (studies, several processes).
- ``signature``: a ``python`` block that needs a cluster: every call of a deepwell name binds to
  that name's signature (a renamed parameter fails).
- ``spec``: a ``yaml`` block of spec keys: each is a key of ``RunSpec`` with that default.
- ``skip``: not run (``reason`` says why).
"""

from __future__ import annotations

import ast
import inspect
import re
import shlex
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

README = Path(__file__).resolve().parent.parent / "README.md"
TAG = re.compile(r"<!--\s*readme-test:\s*(\w+)(.*?)-->\s*\n```(\w*)\n(.*?)\n```", re.DOTALL)
ATTRIBUTE = re.compile(r"""(\w+)=(?:"([^"]*)"|'([^']*)')""")
MODES = {"run", "slow", "signature", "spec", "skip"}


def _blocks() -> list[tuple[str, dict[str, str], str, str, int]]:
    """(mode, attributes, language, code, line number) of every tagged block."""
    text = README.read_text()
    return [(m.group(1), {key: double or single for key, double, single in ATTRIBUTE.findall(m.group(2))}, m.group(3),
             m.group(4), text[:m.start()].count("\n") + 1) for m in TAG.finditer(text)]


BLOCKS = _blocks()


def _param(mode: str):
    """The blocks a test takes (``run`` takes the ``slow`` ones too, marked slow)."""
    return [pytest.param(b, id=f"line{b[4]}", marks=[pytest.mark.slow] if b[0] == "slow" else [])
            for b in BLOCKS if b[0] == mode or (mode == "run" and b[0] == "slow")]


def test_every_tag_is_known_and_skips_say_why():
    assert len(BLOCKS) >= 10, "the README's tagged blocks were not found"
    for mode, attributes, language, _, line in BLOCKS:
        assert mode in MODES, f"README line {line}: unknown readme-test mode '{mode}'"
        assert mode not in ("skip", "signature", "spec", "slow") or attributes.get("reason") or mode == "slow" and "set" in attributes, \
            f"README line {line}: a {mode} tag says why (reason=...)"


def _commands(code: str) -> list[str]:
    joined = re.sub(r"\\\n\s*", " ", code)
    return [line for line in joined.splitlines() if shlex.split(line, comments=True)]


def _runs(folder: Path) -> list[Path]:
    runs = folder / "runs"
    found = [p for p in runs.iterdir() if (p / "config.yaml").is_file()] if runs.is_dir() else []
    return sorted(found, key=lambda p: (p / "config.yaml").stat().st_mtime)


def _expand(text: str, folder: Path) -> str:
    text = text.replace("runs/<run>", "{run}").replace("runs/<other run>", "{other}")
    runs = _runs(folder)
    if "{run}" in text:
        assert runs, "the block names runs/<run> before any run was trained"
        text = text.replace("{run}", str(runs[-1]))
    if "{other}" in text:
        text = text.replace("{other}", str(runs[-2]))
    return text


def _substituted(code: str, attributes: dict[str, str]) -> str:
    for pair in filter(None, attributes.get("sub", "").split(";")):
        old, new = pair.split("=>")
        assert old in code, f"sub '{old}' no longer matches the README block"
        code = code.replace(old, new)
    return code


def _needs(names: str, folder: Path) -> None:
    for name in filter(None, names.split(",")):
        if name == "new.csv":
            import json

            shape = json.loads((_runs(folder)[-1] / "meta.json").read_text())["raw_input_shape"]
            values = np.random.default_rng(0).normal(size=(3, int(np.prod(shape))))
            (folder / name).write_text("\n".join(",".join(f"{v:.4f}" for v in row) for row in values) + "\n")
        elif name == "reviews.csv":
            rows = ["review,sentiment"] + [f"{'a great lovely film' if i % 2 else 'a dull awful film'} number {i},"
                                           f"{'positive' if i % 2 else 'negative'}" for i in range(40)]
            (folder / name).write_text("\n".join(rows) + "\n")
        else:
            raise AssertionError(f"unknown needs='{name}'")


def _run_bash(code: str, attributes: dict[str, str], folder: Path, cli) -> None:
    commands = _commands(_substituted(code, attributes))
    only = [int(i) for i in attributes.get("only", "").split(",") if i]
    chosen = [commands[i - 1] for i in only] if only else commands
    extra = [part for item in attributes.get("set", "").split() for part in ("--set", item)]
    for command in chosen:
        argv = shlex.split(_expand(command, folder), comments=True)
        assert argv[0] == "deepwell", f"the README runner runs deepwell commands only; got '{command}' (use only=...)"
        for name in filter(None, attributes.get("needs", "").split(",")):
            if name in command and not (folder / name).exists():  # made when first used: new.csv needs a run first
                _needs(name, folder)
        if argv[1] in ("train", "sweep"):
            argv += extra
        code_, out, err = cli(*argv[1:])
        assert code_ == 0, f"`{command}` exited {code_}:\n{out[-1500:]}\n{err[-1500:]}"


@pytest.mark.parametrize("block", _param("run"))
def test_readme_block_runs(block, tmp_path, monkeypatch, cli):
    mode, attributes, language, code, line = block
    (tmp_path / "examples").symlink_to(README.parent / "examples")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DEEPWELL_THREADS", "1")
    if language == "python":
        namespace = {"__name__": "readme"}
        exec(compile(_substituted(code, attributes), f"README.md:{line}", "exec"), namespace)  # noqa: S102
        return
    assert language == "bash", f"README line {line}: cannot run a '{language}' block"
    _run_bash(code, attributes, tmp_path, cli)


@pytest.mark.parametrize("block", _param("signature"))
def test_readme_calls_bind_to_the_signatures(block):
    _, _, language, code, line = block
    tree = ast.parse(code)
    names = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("deepwell"):
            module = __import__(node.module, fromlist=[a.name for a in node.names])
            names |= {a.asname or a.name: getattr(module, a.name) for a in node.names}
    calls = [node for node in ast.walk(tree) if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
             and node.func.id in names]
    assert calls, f"README line {line}: no deepwell call to check"
    for call in calls:
        signature = inspect.signature(names[call.func.id])
        try:
            signature.bind(*[None] * len(call.args), **{k.arg: None for k in call.keywords})
        except TypeError as error:
            raise AssertionError(f"README line {line}: {ast.unparse(call)}: {error}") from None


@pytest.mark.parametrize("block", _param("spec"))
def test_readme_spec_keys_are_spec_keys_with_these_defaults(block):
    from deepwell.config import RunSpec

    _, _, language, code, line = block
    shown, defaults = yaml.safe_load(code), RunSpec().to_dict()
    sections = [key for key, value in shown.items() if isinstance(value, dict)]
    assert set(sections) == {key for key, value in defaults.items() if isinstance(value, dict)}, "every section is shown"
    for key, value in shown.items():
        items = value.items() if isinstance(value, dict) else [(None, value)]
        for inner, item in items:
            default = defaults[key] if inner is None else defaults[key][inner]
            assert item == default or str(item) == str(default), f"README line {line}: {key}.{inner} is {default!r}, not {item!r}"


def test_help_names_only_files_that_exist():
    import deepwell

    for text in (deepwell.__doc__, README.read_text()):
        for name in re.findall(r"examples/[\w.-]+\.yaml", text):
            assert (README.parent / name).is_file(), f"{name} is named but does not exist"


def test_no_user_facing_text_cites_design_md():
    """A package user has no DESIGN.md: string literals (legends, captions, messages) must not send them there."""
    import tokenize

    package = README.parent / "deepwell"
    for path in package.rglob("*.py"):
        with path.open("rb") as handle:
            for token in tokenize.tokenize(handle.readline):
                if token.type == tokenize.STRING and "DESIGN.md" in token.string and not token.string.startswith(('"""', "'''")):
                    raise AssertionError(f"{path.relative_to(package)}:{token.start[0]} cites DESIGN.md")


def test_every_public_name_has_a_docstring_with_an_example():
    import deepwell

    for name in deepwell.__all__:
        if name == "__version__":
            continue
        doc = inspect.getdoc(getattr(deepwell, name)) or ""
        assert "Example" in doc, f"deepwell.{name} has no example in its docstring"
    for name, value in vars(deepwell.Run).items():
        if not name.startswith("_"):
            doc = value.__doc__ if isinstance(value, property) else inspect.getdoc(getattr(deepwell.Run, name))
            assert doc, f"Run.{name} has no docstring"
    assert "Example" in (inspect.getdoc(deepwell.Run.load) or "")


if __name__ == "__main__":  # list the tagged blocks
    for block in BLOCKS:
        print(block[4], block[0], block[1], file=sys.stdout)
