"""The chaos profiles: seeded random turns under random faults, each checked exactly."""

from __future__ import annotations

import pytest

from ._runner import ChaosConfig, ChaosReport, run_chaos
from .conftest import LONG_TURNS, ChaosOptions

CI_BUDGET_SECONDS = 120.0


async def _run(chaos: ChaosOptions, turns: int, name: str, summary: list[str]) -> ChaosReport:
    config = ChaosConfig(
        seed=chaos.seed,
        turns=turns,
        concurrency=chaos.concurrency,
        only=chaos.only,
        test_name=name,
    )
    report = await run_chaos(config)
    summary += [report.summary(), report.details()]  # printed in the terminal summary
    if not report.ok:
        pytest.fail(report.failure_text(), pytrace=False)
    return report


async def test_chaos_ci(chaos: ChaosOptions, chaos_summary: list[str]) -> None:
    """CI profile: 300 seeded turns under faults; nothing lost, repeated or leaked."""
    report = await _run(chaos, chaos.turns, "test_chaos_ci", chaos_summary)
    if not chaos.only and chaos.turns <= 300:
        assert report.elapsed < CI_BUDGET_SECONDS, report.summary()


@pytest.mark.slow
async def test_chaos_long(chaos: ChaosOptions, chaos_summary: list[str]) -> None:
    """Long profile (--chaos-long): 5,000 seeded turns under faults, checked the same way."""
    await _run(chaos, LONG_TURNS, "test_chaos_long", chaos_summary)
