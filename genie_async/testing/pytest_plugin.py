"""pytest fixtures for testing code that talks to Genie: a simulator and a client wired to it.

Fixtures: ``genie_simulator`` (a running `GenieSimulator`), ``genie_client`` (a `GenieClient`
for its active user, retrying on ``genie_clock``) and ``genie_clock`` (the `VirtualClock` the
client's retries wait on). ``@pytest.mark.genie_simulator(**kwargs)`` passes keyword arguments
to the simulator's constructor. The async fixtures run on pytest-asyncio, in its ``auto`` and
``strict`` modes alike. See ``docs/pages/testing.md``.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final

import pytest

from .. import GenieClient, RetryPolicy, Timeouts
from ._clock import VirtualClock
from ._simulator import GenieSimulator

if TYPE_CHECKING:
    from pytest_asyncio import fixture as async_fixture
else:
    try:
        from pytest_asyncio import fixture as async_fixture
    except ImportError:  # reported by `pytest_runtest_setup` when a test asks for a fixture
        async_fixture = pytest.fixture

__all__ = [
    "CLIENT_TIMEOUTS",
    "SIMULATOR_DEFAULTS",
    "genie_client",
    "genie_clock",
    "genie_simulator",
]

#: What the ``genie_simulator`` fixture passes to `GenieSimulator` unless the marker overrides it.
SIMULATOR_DEFAULTS: Final[Mapping[str, Any]] = MappingProxyType(
    {"ping_interval": 0.05, "auth_interrupt_after": 0.05, "topic_delay": 0.1}
)

#: The ``genie_client`` fixture's timeouts: a stuck turn fails the test in seconds, not minutes.
CLIENT_TIMEOUTS: Final = Timeouts(connect=5, read=10, request=10, stall=10, decision=5, auth=10)

_MARKER = "genie_simulator"
_ASYNC_FIXTURES = frozenset({"genie_simulator", "genie_client"})
_NEEDS_PYTEST_ASYNCIO = (
    "The genie_simulator and genie_client fixtures are async and need pytest-asyncio: "
    "pip install 'genie-async[test]' (or pytest-asyncio), and keep its plugin enabled."
)


def pytest_configure(config: pytest.Config) -> None:
    """Register the marker so ``--strict-markers`` accepts it."""
    config.addinivalue_line(
        "markers",
        f"{_MARKER}(**kwargs): keyword arguments for the genie_simulator fixture's "
        "GenieSimulator (e.g. envelope='flat', ping_interval=0.1)",
    )


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Fail with the install line, not a cryptic fixture error, when pytest-asyncio is missing."""
    uses = _ASYNC_FIXTURES.intersection(getattr(item, "fixturenames", ()))
    # Whatever name it was registered under: "asyncio" (entry point) or "-p pytest_asyncio.plugin".
    plugin = sys.modules.get("pytest_asyncio.plugin")
    if uses and (plugin is None or not item.config.pluginmanager.is_registered(plugin)):
        pytest.fail(_NEEDS_PYTEST_ASYNCIO, pytrace=False)


def _marker_options(node: pytest.Item | pytest.Collector) -> dict[str, Any]:
    """The kwargs of every ``genie_simulator`` marker on ``node`` (module, class, function),
    the closest winning."""
    options: dict[str, Any] = {}
    for marker in reversed(list(node.iter_markers(_MARKER))):
        if marker.args:
            pytest.fail(
                f"@pytest.mark.{_MARKER} takes keyword arguments only, not {marker.args!r}",
                pytrace=False,
            )
        options.update(marker.kwargs)
    return options


@pytest.fixture
def genie_clock() -> VirtualClock:
    """The `VirtualClock` `genie_client` retries on: waits go to ``.sleeps``, nothing sleeps."""
    return VirtualClock()


@async_fixture
async def genie_simulator(request: pytest.FixtureRequest) -> AsyncIterator[GenieSimulator]:
    """A running `GenieSimulator` on loopback (fast test defaults, marker kwargs), closed after."""
    options = _marker_options(request.node)
    try:
        simulator = GenieSimulator(**{**SIMULATOR_DEFAULTS, **options})
    except (TypeError, ValueError) as exc:
        message = f"@pytest.mark.{_MARKER}({_kwargs(options)}): {exc}"
        raise pytest.fail.Exception(message, pytrace=False) from None
    async with simulator:
        yield simulator


@async_fixture
async def genie_client(
    genie_simulator: GenieSimulator, genie_clock: VirtualClock
) -> AsyncIterator[GenieClient]:
    """A `GenieClient` for the simulator's active user, retrying on `genie_clock`, closed after."""
    async with GenieClient(
        genie_simulator.genie_id,
        base_url=genie_simulator.url,
        api_key=genie_simulator.api_key,
        user_id=genie_simulator.user_id,
        retry=RetryPolicy(clock=genie_clock.now, sleep=genie_clock.sleep),
        timeouts=CLIENT_TIMEOUTS,
    ) as client:
        yield client


def _kwargs(options: dict[str, Any]) -> str:
    return ", ".join(f"{name}={value!r}" for name, value in options.items())
