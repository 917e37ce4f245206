"""Options of the chaos suite, and the skip of its long profile.

    pytest tests/chaos                                   # CI profile: 300 turns, fixed seed
    pytest tests/chaos --chaos-seed=7 --chaos-turns=1000 # another seed, more turns
    pytest tests/chaos --chaos-long                      # also the 5,000-turn profile
    pytest tests/chaos -k test_chaos_ci --chaos-seed=N --chaos-turns=T --chaos-only=I
                                          # turn I's conversation only (a failure names I)

The options are registered when pytest starts from this directory (``pytest tests/chaos``);
from elsewhere they are unknown and the defaults apply.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

DEFAULT_SEED = 20261122
DEFAULT_TURNS = 300
LONG_TURNS = 5000
DEFAULT_CONCURRENCY = 8
_SUMMARIES = pytest.StashKey[list[str]]()
_HERE = Path(__file__).parent


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("chaos", "genie_async chaos suite")
    group.addoption("--chaos-seed", type=int, default=DEFAULT_SEED, help="seed of the chaos plans")
    group.addoption(
        "--chaos-turns", type=int, default=DEFAULT_TURNS, help="turns in the CI chaos profile"
    )
    group.addoption(
        "--chaos-long",
        action="store_true",
        default=False,
        help=f"also run the long chaos profile ({LONG_TURNS:,} turns)",
    )
    group.addoption(
        "--chaos-concurrency",
        type=int,
        default=DEFAULT_CONCURRENCY,
        help="conversations played concurrently",
    )
    group.addoption(
        "--chaos-only",
        default="",
        help="comma-separated turn indices to replay, each after the earlier turns of its "
        "conversation (from a failure message)",
    )


@dataclass(frozen=True)
class ChaosOptions:
    seed: int
    turns: int
    long: bool
    concurrency: int
    only: tuple[int, ...]


def _option(config: pytest.Config, name: str, default: object) -> object:
    return config.getoption(name, default)


def chaos_options(config: pytest.Config) -> ChaosOptions:
    only = str(_option(config, "chaos_only", "") or "")
    return ChaosOptions(
        seed=int(_option(config, "chaos_seed", DEFAULT_SEED)),  # type: ignore[call-overload]
        turns=int(_option(config, "chaos_turns", DEFAULT_TURNS)),  # type: ignore[call-overload]
        long=bool(_option(config, "chaos_long", False)),
        concurrency=int(
            _option(config, "chaos_concurrency", DEFAULT_CONCURRENCY)  # type: ignore[call-overload]
        ),
        only=tuple(int(part) for part in only.split(",") if part.strip()),
    )


@pytest.fixture
def chaos(request: pytest.FixtureRequest) -> ChaosOptions:
    """The chaos options given on the command line (or their defaults)."""
    return chaos_options(request.config)


@pytest.fixture
def chaos_summary(request: pytest.FixtureRequest) -> list[str]:
    """Lines to print in the terminal summary, whatever the capture mode."""
    return request.config.stash.setdefault(_SUMMARIES, [])


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if chaos_options(config).long:
        return
    skip = pytest.mark.skip(reason="the long chaos profile runs with --chaos-long")
    for item in items:
        if "slow" in item.keywords and _HERE in item.path.parents:
            item.add_marker(skip)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    lines = terminalreporter.config.stash.get(_SUMMARIES, [])
    if lines:
        terminalreporter.section("chaos")
        for line in lines:
            terminalreporter.write_line(line)
