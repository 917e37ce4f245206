"""Fixtures for the Olbrain backend: a simulator on loopback and a client wired to it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from genie_async import RetryPolicy, Timeouts
from genie_async.olbrain import OlbrainClient
from genie_async.testing import OlbrainSimulator, VirtualClock

TEST_TIMEOUTS = Timeouts(connect=5, read=10, request=10)


@pytest.fixture
async def sim() -> AsyncIterator[OlbrainSimulator]:
    """A fresh Olbrain simulator for each test."""
    async with OlbrainSimulator() as s:
        yield s


@pytest.fixture
def clock() -> VirtualClock:
    """Retry and polling waits run on this clock: minutes pass in milliseconds."""
    return VirtualClock()


@pytest.fixture
def retry(clock: VirtualClock) -> RetryPolicy:
    """The default (seed) policy, on the virtual clock and without jitter."""
    return RetryPolicy(clock=clock.now, sleep=clock.sleep, wait_jitter=0.0)


def make_client(sim: OlbrainSimulator, retry: RetryPolicy, **kwargs: object) -> OlbrainClient:
    options: dict[str, object] = {"timeouts": TEST_TIMEOUTS}
    options.update(kwargs)
    return OlbrainClient(api_key=sim.api_key, base_url=sim.url, retry=retry, **options)  # type: ignore[arg-type]


def assert_pool_released(client: OlbrainClient) -> None:
    """Nothing left checked out of the connection pool."""
    session = client._core._session
    if session is not None and not session.closed and session.connector is not None:
        acquired = session.connector._acquired
        assert not acquired, f"{len(acquired)} connection(s) still checked out"


@pytest.fixture
async def client(sim: OlbrainSimulator, retry: RetryPolicy) -> AsyncIterator[OlbrainClient]:
    """A client for the simulator's default organization, checked for leaks after use."""
    async with make_client(sim, retry) as c:
        yield c
        assert_pool_released(c)
