"""The pytest plugin as a user's project loads it, and every Python example of the testing page.

Each example runs as its own small project: blocks that define tests go through ``pytester``
with the plugin loaded the way a user's run loads it; the other blocks run as scripts.
"""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

PLUGIN = "genie_async.testing.pytest_plugin"
DOCS = Path(__file__).resolve().parent.parent / "docs" / "pages" / "testing.md"

# A user's project as the docs tell them to configure it, as strict as ours.
AUTO_INI = """\
[pytest]
asyncio_mode = auto
asyncio_default_fixture_loop_scope = function
filterwarnings = error
addopts = --strict-markers
"""
# pytest-asyncio's default mode: async tests and fixtures must be marked.
STRICT_INI = """\
[pytest]
asyncio_default_fixture_loop_scope = function
filterwarnings = error
addopts = --strict-markers
"""
_FENCE = re.compile(r"^```python\n(.*?)^```$", re.MULTILINE | re.DOTALL)
_TEST_FUNCTION = re.compile(r"^(?:async )?def test_", re.MULTILINE)


@dataclass(frozen=True)
class Block:
    """One ```python block of the docs."""

    line: int
    code: str

    @property
    def tests(self) -> int:
        """How many test functions the block defines (0: a script)."""
        return len(_TEST_FUNCTION.findall(self.code))

    @property
    def strict(self) -> bool:
        """Whether the block is written for pytest-asyncio's strict mode."""
        return "pytest.mark.asyncio" in self.code


def python_blocks() -> list[Block]:
    text = DOCS.read_text(encoding="utf-8")
    return [
        Block(text.count("\n", 0, match.start()) + 2, match.group(1))
        for match in _FENCE.finditer(text)
    ]


BLOCKS = python_blocks()


def plugin_args() -> list[str]:
    """``-p`` the plugin unless its pytest11 entry point is installed (it would then load
    twice, under two names, which pluggy refuses)."""
    installed = any(ep.value == PLUGIN for ep in importlib.metadata.entry_points(group="pytest11"))
    return [] if installed else ["-p", PLUGIN]


def run_tests(
    pytester: pytest.Pytester, code: str, *, ini: str = AUTO_INI, args: tuple[str, ...] = ()
) -> pytest.RunResult:
    """Run ``code`` as the only test module of a fresh project configured by ``ini``."""
    pytester.makefile(".ini", pytest=ini)
    pytester.makepyfile(test_example=code)
    # Hypothesis is our dev dependency, not the user's; its plugin costs 0.6 s per run.
    quiet = ("-p", "no:cacheprovider", "-p", "no:hypothesispytest")
    return pytester.runpytest(*quiet, *plugin_args(), *args)


def with_asyncio_marks(code: str) -> str:
    """``code`` with ``@pytest.mark.asyncio`` on every async test, as strict mode wants."""
    marked = re.sub(r"^async def test_", "@pytest.mark.asyncio\nasync def test_", code, flags=re.M)
    return "import pytest\n" + marked


def assert_all_passed(result: pytest.RunResult, at_least: int) -> None:
    """Every test passed (parametrized ones may be more than the functions defined)."""
    outcomes = result.parseoutcomes()
    assert set(outcomes) == {"passed"}, outcomes
    assert outcomes["passed"] >= at_least, outcomes


def test_docs_have_a_first_complete_example() -> None:
    """The first Python block of docs/pages/testing.md is a complete test module."""
    assert BLOCKS, f"no ```python blocks in {DOCS}"
    assert BLOCKS[0].tests >= 1
    assert "pytest.mark.asyncio" not in BLOCKS[0].code


def test_first_example_passes_in_auto_mode(pytester: pytest.Pytester) -> None:
    """The docs' first example passes unchanged under asyncio_mode=auto."""
    result = run_tests(pytester, BLOCKS[0].code)
    result.assert_outcomes(passed=BLOCKS[0].tests)


def test_first_example_passes_in_strict_mode(pytester: pytest.Pytester) -> None:
    """The docs' first example passes in strict mode once its tests carry the asyncio mark."""
    result = run_tests(pytester, with_asyncio_marks(BLOCKS[0].code), ini=STRICT_INI)
    result.assert_outcomes(passed=BLOCKS[0].tests)


MARKER_TESTS = """
import aiohttp
import pytest

from genie_async.testing import GenieSimulator

pytestmark = pytest.mark.genie_simulator(envelope="flat", seed=7)


async def create(sim: GenieSimulator) -> dict[str, object]:
    headers = {"Authorization": f"Bearer {sim.api_key}", "X-IDP-User-Id": sim.user_id}
    url = f"{sim.url}/api/v1/genies/{sim.genie_id}/chat/conversations"
    async with aiohttp.ClientSession() as session, session.post(
        url, json={}, headers=headers
    ) as response:
        body: dict[str, object] = await response.json()
        return body


async def test_module_marker(genie_simulator: GenieSimulator) -> None:
    assert genie_simulator.genie_id == GenieSimulator(seed=7).genie_id
    assert "conversation_id" in await create(genie_simulator)  # flat: no {"result": ...}


class TestOverrides:
    pytestmark = pytest.mark.genie_simulator(seed=8)

    @pytest.mark.genie_simulator(envelope="wrapped")
    async def test_closest_marker_wins(self, genie_simulator: GenieSimulator) -> None:
        assert genie_simulator.genie_id == GenieSimulator(seed=8).genie_id
        assert "result" in await create(genie_simulator)


async def test_unmarked_defaults() -> None:
    assert GenieSimulator().genie_id != GenieSimulator(seed=7).genie_id
"""


def test_marker_configures_the_simulator(pytester: pytest.Pytester) -> None:
    """Marker kwargs reach the constructor; the closest marker wins; --strict-markers accepts it."""
    result = run_tests(pytester, MARKER_TESTS)
    result.assert_outcomes(passed=3)


LIFECYCLE_TESTS = """
import time

import aiohttp
import pytest

from genie_async import GenieClient
from genie_async.testing import GenieSimulator, VirtualClock

seen: dict[str, object] = {}


async def test_first(
    genie_simulator: GenieSimulator, genie_client: GenieClient, genie_clock: VirtualClock
) -> None:
    seen.update(sim=genie_simulator, client=genie_client)
    genie_simulator.fail("create_conversation", 503, retry_after="30")
    started = time.monotonic()
    await genie_client.create_conversation()
    assert time.monotonic() - started < 5
    assert genie_clock.sleeps == [30.0]
    assert genie_simulator.log[-1].user_id == genie_simulator.user_id


async def test_second(genie_simulator: GenieSimulator, genie_client: GenieClient) -> None:
    old_sim, old_client = seen["sim"], seen["client"]
    assert isinstance(old_sim, GenieSimulator) and isinstance(old_client, GenieClient)
    assert old_client.closed and not genie_client.closed
    assert genie_simulator is not old_sim and genie_simulator.log == []
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientConnectionError):
            await session.get(old_sim.url)
"""


def test_fixtures_are_per_test_and_retry_without_sleeping(pytester: pytest.Pytester) -> None:
    """Each test gets a fresh simulator and client, closed after it; retries wait on the clock."""
    run_tests(pytester, LIFECYCLE_TESTS).assert_outcomes(passed=2)


BAD_MARKERS = """
import pytest


@pytest.mark.genie_simulator(envelope="flat", pings=1)
async def test_unknown_option(genie_simulator: object) -> None:
    pass


@pytest.mark.genie_simulator("flat")
async def test_positional(genie_simulator: object) -> None:
    pass


@pytest.mark.genie_simulator(ping_interval=0)
async def test_invalid_value(genie_simulator: object) -> None:
    pass
"""


def test_bad_marker_arguments_fail_the_setup_clearly(pytester: pytest.Pytester) -> None:
    """A wrong marker argument is a setup error naming the marker, without a traceback."""
    result = run_tests(pytester, BAD_MARKERS)
    result.assert_outcomes(errors=3)
    result.stdout.fnmatch_lines(
        [
            "*@pytest.mark.genie_simulator(envelope='flat', pings=1): *unexpected keyword*pings*",
            "*@pytest.mark.genie_simulator takes keyword arguments only, not ('flat',)",
            "*@pytest.mark.genie_simulator(ping_interval=0): ping_interval must be > 0",
        ]
    )
    assert "Traceback" not in result.stdout.str()
    assert "During handling" not in result.stdout.str()


def test_missing_pytest_asyncio_is_reported_with_the_install_line(
    pytester: pytest.Pytester,
) -> None:
    """Without pytest-asyncio the async fixtures fail at setup with the install line."""
    ini = "[pytest]\nfilterwarnings = error\n"
    no_asyncio = ("-p", "no:asyncio", "-p", "no:aiohttp")  # pytest-aiohttp needs pytest-asyncio
    result = run_tests(pytester, BLOCKS[0].code, ini=ini, args=no_asyncio)
    result.assert_outcomes(errors=BLOCKS[0].tests)
    result.stdout.re_match_lines([r".*need pytest-asyncio: pip install 'genie-async\[test\]'"])


def test_importing_the_simulator_does_not_import_pytest() -> None:
    """genie_async.testing stays usable without pytest: only the plugin module imports it."""
    code = "import sys, genie_async.testing; sys.exit('pytest' in sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


@pytest.mark.parametrize("block", BLOCKS, ids=[f"testing.md:{b.line}" for b in BLOCKS])
def test_docs_example(block: Block, pytester: pytest.Pytester) -> None:
    """Every ```python block of the testing page runs: its tests pass, or its script exits 0."""
    if block.tests:
        ini = STRICT_INI if block.strict else AUTO_INI
        assert_all_passed(run_tests(pytester, block.code, ini=ini), block.tests)
    else:
        script = pytester.makepyfile(example=block.code)
        completed = subprocess.run(
            [sys.executable, str(script)], check=False, capture_output=True, text=True, timeout=60
        )
        assert completed.returncode == 0, completed.stdout + completed.stderr
