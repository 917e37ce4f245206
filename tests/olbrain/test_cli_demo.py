"""`genie-async demo --backend olbrain`: a conversational turn and a watched, controlled run."""

from __future__ import annotations

import pytest

from genie_async import _cli


def test_olbrain_demo_runs_every_step_and_exits_zero(capsys: pytest.CaptureFixture[str]) -> None:
    """Each labelled step is checked; the run is watched, paused, resumed and completed."""
    assert _cli.main(["demo", "--backend", "olbrain"]) == 0
    out = capsys.readouterr().out
    for title in _cli.OLBRAIN_STEPS:
        assert title in out
    assert out.count("✓ behaved as expected") == len(_cli.OLBRAIN_STEPS)
    assert "same session: the id was carried forward" in out
    assert "tokens " in out
    statuses = [line.split("→ ")[1] for line in out.splitlines() if "status → " in line]
    assert statuses == ["queued", "running", "paused", "running", "succeeded"]
    assert out.index("pause()") < out.index("resume()")
    assert "All 3 steps behaved as expected." in out


def test_the_default_backend_is_still_genie() -> None:
    """--backend defaults to genie, so `genie-async demo` is unchanged."""
    args = _cli._parser().parse_args(["demo"])
    assert args.backend == "genie"
    with pytest.raises(SystemExit):
        _cli._parser().parse_args(["demo", "--backend", "other"])
