"""docs/pages/troubleshooting.md cannot drift from the code.

Every table row names exceptions that exist in ``genie_async.errors``, quotes hint phrases the
library really produces, and names checks ``genie-async doctor`` really runs; and every case of
Workato's troubleshooting page has its section.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

import genie_async
from genie_async import _auth, _doctor, _hints, admin, errors

from ._markdown import PAGES

PAGE = PAGES / "troubleshooting.md"
PACKAGE = Path(genie_async.__file__).parent
COLUMNS = ["Symptom", "Raised", "Hint says", "Doctor"]

# The headings of Workato's Headless API troubleshooting page (the seed), in its order.
SEED_CASES = [
    "Confirm the Headless API is enabled",
    "401 auth_failed",
    "401 user_nonactive_or_missing",
    "Client creation or attachment fails",
    "Empty stream or repeated blank events",
    "Event recovery returns nothing",
    "File upload is rejected",
    "Conversation topic returns a number instead of text",
    "Rebuild a conversation timeline after a reload or dropped stream",
    "Get help",
]

_CODE = re.compile(r"`([^`]+)`")
_QUOTED = re.compile(r'"([^"]+)"')


@dataclass(frozen=True)
class Row:
    section: str
    line: int
    cells: dict[str, str]

    @property
    def id(self) -> str:
        return f"troubleshooting.md:{self.line}"


def _split(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def rows() -> list[Row]:
    """Every row of every table whose columns are COLUMNS, with the section it is under."""
    found: list[Row] = []
    section = ""
    header: list[str] | None = None
    for number, line in enumerate(PAGE.read_text(encoding="utf-8").splitlines(), start=1):
        if line.startswith("## "):
            section = line[3:].strip()
        if not line.startswith("|"):
            header = None
            continue
        cells = _split(line)
        if header is None:
            header = cells
        elif header == COLUMNS and not set(line) <= set("|-: "):
            assert len(cells) == len(COLUMNS), f"line {number}: {len(cells)} cells"
            found.append(Row(section, number, dict(zip(COLUMNS, cells, strict=True))))
    return found


ROWS = rows()


def _library_strings() -> list[str]:
    """Every string literal of the package that is not a docstring (f-strings by piece)."""
    strings: list[str] = []
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        docstrings = {
            id(node.body[0].value)
            for node in ast.walk(tree)
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
            and node.body
            and isinstance(node.body[0], ast.Expr)
        }
        strings += [
            node.value
            for node in ast.walk(tree)
            if isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and id(node) not in docstrings
        ]
    return strings


STRINGS = _library_strings()
CHECKS = {title for title, _ in _doctor._CHECKS}


def test_every_seed_case_has_a_section_with_a_table() -> None:
    sections = {row.section for row in ROWS}
    for case in SEED_CASES:
        assert case in sections, f"no table under '## {case}'"


def test_the_doctor_table_lists_every_check_in_order() -> None:
    """The table of checks at the top is the doctor's own list."""
    text = PAGE.read_text(encoding="utf-8")
    listed = re.findall(r"^\| (\d) \| `([^`]+)` \|", text, flags=re.MULTILINE)
    assert listed == [(str(n), title) for n, (title, _) in enumerate(_doctor._CHECKS, start=1)]


@pytest.mark.parametrize("row", ROWS, ids=[row.id for row in ROWS])
def test_row_names_real_exceptions(row: Row) -> None:
    raised = row.cells["Raised"]
    names = [name for name in _CODE.findall(raised) if re.fullmatch(r"[A-Z]\w+Error", name)]
    if raised.startswith("none"):
        assert not names, f"{row.id}: 'none' yet names {names}"
        return
    assert names, f"{row.id}: name the exception in backticks, or start with 'none'"
    for name in names:
        cls = getattr(errors, name, None)
        assert isinstance(cls, type), f"{row.id}: genie_async.errors has no {name}"
        assert issubclass(cls, errors.GenieError)
        assert getattr(genie_async, name) is cls  # re-exported at the top level


@pytest.mark.parametrize("row", ROWS, ids=[row.id for row in ROWS])
def test_row_quotes_real_hints(row: Row) -> None:
    hint = row.cells["Hint says"]
    quoted = _QUOTED.findall(hint)
    if hint in {"—", "-"}:
        return
    assert quoted, f"{row.id}: quote a phrase of the hint, or write —"
    for phrase in quoted:
        assert any(phrase in text for text in STRINGS), f"{row.id}: no hint says {phrase!r}"


@pytest.mark.parametrize("row", ROWS, ids=[row.id for row in ROWS])
def test_row_names_real_doctor_checks(row: Row) -> None:
    doctor = row.cells["Doctor"]
    if doctor in {"—", "-"}:
        return
    names = _CODE.findall(doctor)
    assert names, f"{row.id}: name the doctor check in backticks, or write —"
    for name in names:
        assert name in CHECKS, f"{row.id}: genie-async doctor has no check {name!r}"


def test_the_hint_phrases_are_the_exceptions_own() -> None:
    """Spot checks that a quoted phrase is in the hint the named exception really carries."""
    host = "genie-api.workato.com"
    expected = {
        "AuthFailedError": _hints.for_status(401, "auth_failed", host=host),
        "UserNotActiveError": _hints.for_status(401, "user_nonactive_or_missing", host=host),
        "NotAcceptableError": _hints.for_status(406, None, host=host),
        "UnsupportedMediaTypeError": _hints.for_status(415, None, host=host),
        "RequestTooLargeError": _hints.for_status(413, None, host=host),
        "RateLimitError": _hints.for_status(429, None, host=host),
        "EventsExpiredError": _hints.RETENTION,
        "MessageNotConfirmedError": _hints.NOT_CONFIRMED,
        "StreamStalledError": _hints.STALLED,
        "DeveloperTokenError": _auth._RUNTIME_CREDENTIAL_ADVICE,
    }
    admin_hints = " ".join(v for k, v in vars(admin).items() if k.startswith("_HINT_"))
    checked = 0
    for row in ROWS:
        names = _CODE.findall(row.cells["Raised"])
        for phrase in _QUOTED.findall(row.cells["Hint says"]):
            for name in names:
                if name in expected:
                    hint = expected[name]
                    assert hint is not None
                    assert phrase in hint or phrase in admin_hints, (row.id, name, phrase)
                    checked += 1
    assert checked >= 12
