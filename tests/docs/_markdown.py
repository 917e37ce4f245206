"""Reading the documentation pages: fenced blocks, their markers, and shell commands."""

from __future__ import annotations

import argparse
import re
import shlex
import textwrap
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
PAGES = DOCS / "pages"

# A fence at any indentation (inside a tab or an admonition too), closed at the same one.
_FENCE = re.compile(
    r"^(?P<indent>[ \t]*)```(?P<lang>[\w+-]*)[^\n]*\n(?P<body>.*?)^(?P=indent)```[ \t]*$",
    re.MULTILINE | re.DOTALL,
)
# `<!-- not-run: why -->` on the line(s) right before a fence: shown, compiled, not run.
_NOT_RUN = re.compile(r"<!--\s*not-run:\s*(?P<why>.*?)\s*-->\s*$", re.DOTALL)
# A snippet line: --8<-- "examples/bot.py:section"
SNIPPET = re.compile(r'^\s*-{1,}8<-{1,}\s+"(?P<path>[^"]+)"\s*$')
# An inline code span.
_CODE_SPAN = re.compile(r"(?<!`)`([^`\n]+)`(?!`)")
SHELL_LANGS = frozenset({"bash", "sh", "shell", "console", "zsh"})


@dataclass(frozen=True)
class Block:
    """One fenced code block of a page."""

    page: str  # relative to docs/pages
    line: int  # 1-based line of the first line of code
    lang: str
    code: str
    not_run: str | None  # why, when marked <!-- not-run: ... -->

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}"

    @property
    def snippets(self) -> list[str]:
        """The ``--8<--`` targets when the block is only excerpts of example files."""
        lines = [line for line in self.code.splitlines() if line.strip()]
        found = [SNIPPET.match(line) for line in lines]
        if lines and all(found):
            return [match.group("path") for match in found if match]
        return []


def blocks(page: Path) -> list[Block]:
    """Every fenced block of ``page``, dedented, with its not-run marker."""
    text = page.read_text(encoding="utf-8")
    found = []
    for match in _FENCE.finditer(text):
        before = text[: match.start()].rstrip()
        marker = _NOT_RUN.search(before.splitlines()[-1]) if before else None
        found.append(
            Block(
                page=page.relative_to(PAGES).as_posix(),
                line=text.count("\n", 0, match.start("body")) + 1,
                lang=match.group("lang").lower(),
                code=textwrap.dedent(match.group("body")),
                not_run=marker.group("why") if marker else None,
            )
        )
    return found


def code_spans(page: Path) -> list[str]:
    """Inline code spans outside fenced blocks."""
    text = _FENCE.sub("", page.read_text(encoding="utf-8"))
    return _CODE_SPAN.findall(text)


def snippet_target(target: str) -> tuple[Path, str | None]:
    """``examples/bot.py:section`` -> (docs/examples/bot.py, "section")."""
    path, _, section = target.partition(":")
    return DOCS / path, section or None


_OPERATORS = frozenset({"&&", "||", "|", ";", "&", "(", ")", ";;", "|&"})
_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


def cli_invocations(command_line: str) -> list[list[str]]:
    """The argument lists of every ``genie-async`` command in a shell command line."""
    lexer = shlex.shlex(command_line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = "#"
    try:
        tokens = list(lexer)
    except ValueError:  # an unbalanced quote: not a command line
        return []
    found: list[list[str]] = []
    at_command = True
    current: list[str] | None = None
    for token in tokens:
        if token in _OPERATORS or set(token) <= set("&|;()"):
            at_command, current = True, None
            continue
        if current is not None:
            current.append(token)
            continue
        if at_command and _ASSIGNMENT.match(token):
            continue  # VAR=value before the command
        if at_command and token in {"$", "sudo", "exec", "time"}:
            continue
        if at_command and token.rsplit("/", 1)[-1] == "genie-async":
            current = []
            found.append(current)
        at_command = False
    return found


def shell_lines(code: str) -> list[str]:
    """Logical lines of a shell block (continuations joined, prompts dropped)."""
    joined = code.replace("\\\n", " ")
    return [line.removeprefix("$ ") for line in joined.splitlines() if line.strip()]


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """The sub-parsers of the ``genie-async`` parser, by name."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}
