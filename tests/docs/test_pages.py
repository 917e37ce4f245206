"""Every code block of the Home page, the Quickstart and the Guides works as written.

- ```python blocks run as scripts, each in a fresh interpreter, against the simulator
  (warnings are errors, and nothing may be left unclosed);
- a block marked ``<!-- not-run: why -->`` (a real genie's configuration) is compiled, and
  every ``genie_async`` name it imports must exist;
- a block made only of ``--8<--`` lines is an excerpt of an example file: the file and the
  section must exist, and a test must run the file;
- every ``genie-async`` command in a shell block (on every page) parses with the real CLI
  parser, and every one named in inline code is a real subcommand.
"""

from __future__ import annotations

import ast
import importlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

from genie_async import _cli

from ._markdown import (
    PAGES,
    ROOT,
    SHELL_LANGS,
    Block,
    blocks,
    cli_invocations,
    code_spans,
    shell_lines,
    snippet_target,
    subcommands,
)

RUN_PAGES = sorted([PAGES / "index.md", PAGES / "quickstart.md", *(PAGES / "guides").glob("*.md")])
ALL_PAGES = sorted(PAGES.rglob("*.md"))
# Only the Quickstart may show code that needs a real genie.
NOT_RUN_ALLOWED = {"quickstart.md": 2}

PYTHON = [b for page in RUN_PAGES for b in blocks(page) if b.lang in {"python", "py"}]
RUNNABLE = [b for b in PYTHON if not b.snippets and b.not_run is None]
NOT_RUN = [b for b in PYTHON if not b.snippets and b.not_run is not None]
EXCERPTS = [b for b in PYTHON if b.snippets]
SHELL = [b for page in ALL_PAGES for b in blocks(page) if b.lang in SHELL_LANGS]


def _ids(items: list[Block]) -> list[str]:
    return [b.id for b in items]


def test_the_pages_have_code() -> None:
    """Each page the site promises runnable code on has some, and the filter found it."""
    for page in RUN_PAGES:
        name = page.relative_to(PAGES).as_posix()
        assert any(b.page == name for b in PYTHON), f"{name} has no ```python block"
    assert len(RUNNABLE) >= 10


def test_not_run_blocks_are_few_and_only_where_allowed() -> None:
    """Code that cannot run here is the exception, kept to the Quickstart's real-genie part."""
    for block in NOT_RUN:
        assert block.page in NOT_RUN_ALLOWED, f"{block.id} is marked not-run"
        assert block.not_run, f"{block.id}: say why it is not run"
    for page, limit in NOT_RUN_ALLOWED.items():
        assert sum(b.page == page for b in NOT_RUN) <= limit


def _imported_names(tree: ast.AST) -> list[tuple[str, str | None]]:
    """(module, name) for every ``genie_async`` import; name None for ``import module``."""
    found: list[tuple[str, str | None]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("genie_async"):
            found += [(node.module or "", alias.name) for alias in node.names]
        elif isinstance(node, ast.Import):
            found += [(a.name, None) for a in node.names if a.name.startswith("genie_async")]
    return found


def _check_imports(block: Block) -> None:
    tree = ast.parse(block.code, filename=block.id)
    for module_name, name in _imported_names(tree):
        module = importlib.import_module(module_name)
        if name is not None and name != "*":
            assert hasattr(module, name), f"{block.id}: {module_name} has no {name}"


@pytest.mark.parametrize("block", NOT_RUN, ids=_ids(NOT_RUN))
def test_not_run_blocks_compile_and_import_real_names(block: Block) -> None:
    """A real-genie block is valid Python whose genie_async imports all exist."""
    compile(block.code, block.id, "exec")
    _check_imports(block)


@pytest.mark.parametrize("block", RUNNABLE, ids=_ids(RUNNABLE))
def test_python_block_runs(block: Block, tmp_path: Path) -> None:
    """The block runs to completion against the simulator, warnings as errors."""
    _check_imports(block)
    script = tmp_path / "example.py"
    script.write_text(block.code, encoding="utf-8")
    completed = subprocess.run(
        [sys.executable, "-W", "error", str(script)],
        cwd=tmp_path,
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, f"{block.id} failed:\n{output}"
    for leak in ("Unclosed", "Exception ignored", "Task was destroyed"):
        assert leak not in completed.stderr, f"{block.id}:\n{completed.stderr}"


_SECTION_MARK = "--8<-- [{}:{}]"


@pytest.mark.parametrize("block", EXCERPTS, ids=_ids(EXCERPTS))
def test_excerpts_come_from_tested_examples(block: Block) -> None:
    """An excerpt names an existing file and section, and some test runs that file."""
    tests = "\n".join(
        p.read_text(encoding="utf-8")
        for p in (ROOT / "tests").rglob("*.py")
        if "docs" not in p.relative_to(ROOT / "tests").parts  # not these tests themselves
    )
    for target in block.snippets:
        path, section = snippet_target(target)
        assert path.is_file(), f"{block.id}: {path} does not exist"
        text = path.read_text(encoding="utf-8")
        if section is not None:
            assert _SECTION_MARK.format("start", section) in text, f"{block.id}: {target}"
            assert _SECTION_MARK.format("end", section) in text, f"{block.id}: {target}"
        # A test loads it by its path: "webapp/app.py", "bot.py", "docs/examples/bot.py", ...
        example = path.relative_to(ROOT / "docs" / "examples").as_posix()
        named = {example, f"examples/{example}", f"docs/examples/{example}"}
        quoted = {f"{q}{name}{q}" for name in named for q in "\"'"}
        assert any(q in tests for q in quoted), f"no test under tests/ runs {example}"


PARSER = _cli._parser()
COMMANDS = subcommands(PARSER)


def _shell_invocations() -> list[tuple[str, list[str]]]:
    found = []
    for block in SHELL:
        for line in shell_lines(block.code):
            found += [(block.id, args) for args in cli_invocations(line)]
    return found


INVOCATIONS = _shell_invocations()


def test_the_cli_has_the_documented_subcommands() -> None:
    assert set(COMMANDS) == {"demo", "chat", "doctor", "simulate"}
    assert INVOCATIONS, "no genie-async command in any shell block"


@pytest.mark.parametrize(
    ("where", "args"), INVOCATIONS, ids=[f"{w}:{' '.join(a)}" for w, a in INVOCATIONS]
)
def test_shell_commands_parse(where: str, args: list[str]) -> None:
    """``genie-async ...`` in a shell block is accepted by the real argument parser."""
    try:
        PARSER.parse_args(args)
    except SystemExit as exc:
        pytest.fail(f"{where}: genie-async {' '.join(args)} does not parse (exit {exc.code})")


def test_inline_commands_name_real_subcommands() -> None:
    """`genie-async <subcommand> ...` in inline code names a real subcommand and its flags."""
    checked = 0
    for page in ALL_PAGES:
        for span in code_spans(page):
            for args in cli_invocations(span):
                name = page.relative_to(PAGES).as_posix()
                if not args:
                    continue  # `genie-async`: the project's name
                assert args[0] in COMMANDS, f"{name}: `{span}`: no subcommand {args[0]!r}"
                known = {
                    option
                    for action in COMMANDS[args[0]]._actions
                    for option in action.option_strings
                }
                for flag in (a.split("=")[0] for a in args[1:] if re.match(r"^--?\w", a)):
                    assert flag in known, f"{name}: `{span}`: {args[0]} has no {flag}"
                checked += 1
    assert checked
