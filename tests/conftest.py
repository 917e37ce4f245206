"""Shared fixtures: a simulator on loopback, a client wired to it, and leak checks."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

import pytest
from hypothesis import settings

from genie_async import GenieClient, RetryPolicy, Timeouts
from genie_async.testing import GenieSimulator, VirtualClock

# CI explores the same examples on every run (a failure there is reproducible, never a fluke of
# the draw); local runs keep exploring new ones. No per-example deadline: machines are noisy.
settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
settings.register_profile("dev", deadline=None, print_blob=True)
settings.load_profile("ci" if os.environ.get("CI") else "dev")

# Fast but not hair-trigger: the machines running CI are shared and noisy.
TEST_TIMEOUTS = Timeouts(connect=5, read=10, request=10, stall=10, decision=5, auth=10)


@pytest.fixture(params=["wrapped", "flat"])
def envelope(request: pytest.FixtureRequest) -> str:
    """Both observed response shapes: production's {"result": ...} and the documented flat one."""
    return str(request.param)


@pytest.fixture
async def sim() -> AsyncIterator[GenieSimulator]:
    async with GenieSimulator(ping_interval=0.02, auth_interrupt_after=0.05, topic_delay=0.3) as s:
        yield s


@pytest.fixture
def clock() -> VirtualClock:
    """Retry waits run on this clock: the 10-minute budget passes in milliseconds."""
    return VirtualClock()


@pytest.fixture
def retry(clock: VirtualClock) -> RetryPolicy:
    return RetryPolicy(clock=clock.now, sleep=clock.sleep)


def make_client(
    sim: GenieSimulator,
    retry: RetryPolicy,
    *,
    timeouts: Timeouts = TEST_TIMEOUTS,
    **kwargs: object,
) -> GenieClient:
    options: dict[str, object] = {"api_key": sim.api_key, "user_id": sim.user_id}
    options.update(kwargs)
    return GenieClient(
        sim.genie_id,
        base_url=sim.url,
        retry=retry,
        timeouts=timeouts,
        **options,  # type: ignore[arg-type]
    )


async def assert_no_open_connections(client: GenieClient, sim: GenieSimulator) -> None:
    """Nothing left checked out of the pool, and no SSE response still open on the server."""
    session = client._core._session
    if session is not None and not session.closed and session.connector is not None:
        acquired = session.connector._acquired  # aiohttp's set of checked-out connections
        assert not acquired, f"{len(acquired)} connection(s) still checked out"
    for _ in range(100):  # the server notices a closed socket on its next loop iteration
        if sim.open_streams == 0:
            break
        await asyncio.sleep(0.01)
    assert sim.open_streams == 0, f"{sim.open_streams} SSE response(s) still open on the server"


@pytest.fixture
async def client(sim: GenieSimulator, retry: RetryPolicy) -> AsyncIterator[GenieClient]:
    """A client for the simulator's active, allow-listed user; checked for leaks after use."""
    async with make_client(sim, retry) as c:
        yield c
        await assert_no_open_connections(c, sim)
