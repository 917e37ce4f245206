"""The genie-async command: the demo a newcomer runs first, and its failure modes."""

from __future__ import annotations

import sys

import pytest

from genie_async import _cli


def test_demo_runs_every_step_and_exits_zero(capsys: pytest.CaptureFixture[str]) -> None:
    """`genie-async demo` labels each step, checks it, and exits 0 when all behaved."""
    assert _cli.main(["demo"]) == 0
    out = capsys.readouterr().out
    for step in _cli.STEPS:
        assert step.title in out
    assert out.count("✓ behaved as expected") == len(_cli.STEPS)
    assert "each exactly once" in out
    assert "All 5 steps behaved as expected." in out


def test_demo_exits_non_zero_when_a_step_misbehaves(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A step whose check fails makes the demo exit 1 and say which step."""
    broken = _cli._Step("9. A step that cannot pass", "hi", _cli.STEPS[0].turn, lambda *_: "boom")
    monkeypatch.setattr(_cli, "STEPS", [*_cli.STEPS[:1], broken])
    assert _cli.main(["demo"]) == 1
    out = capsys.readouterr().out
    assert "✗ boom" in out
    assert "1 step(s) failed." in out


def test_without_rich_the_command_prints_the_install_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without the cli extra, the command explains how to install it instead of a traceback."""
    monkeypatch.setitem(sys.modules, "rich.console", None)
    assert _cli.main(["demo"]) == 2
    assert "pip install 'genie-async[cli]'" in capsys.readouterr().err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    """--version prints the package version."""
    with pytest.raises(SystemExit) as info:
        _cli.main(["--version"])
    assert info.value.code == 0
    assert "genie-async 0." in capsys.readouterr().out
