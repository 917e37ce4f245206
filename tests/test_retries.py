"""The retry schedule of every REST call, against the simulator over loopback HTTP.

Waits run on a `VirtualClock` (the `retry` fixture): each requested wait is recorded in
``clock.sleeps`` and nothing really sleeps, so the 10-minute budget passes in milliseconds.
"""

from __future__ import annotations

import email.utils
import logging
import time

import pytest

from genie_async import (
    APIStatusError,
    AuthFailedError,
    BadRequestError,
    ConflictError,
    GenieClient,
    InternalServerError,
    NotAcceptableError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    RequestTooLargeError,
    RetryPolicy,
    ServiceUnavailableError,
    UnprocessableEntityError,
    UnsupportedMediaTypeError,
)
from genie_async.testing import Confirm, GenieSimulator, Turn, VirtualClock

from .conftest import assert_no_open_connections, make_client

# Subtractive jitter of 25 %: retry n waits in [0.75, 1] * min(60, 2 ** (n - 1)).
BACKOFF_WINDOWS = [(0.75, 1.0), (1.5, 2.0), (3.0, 4.0)]


def _assert_backoff(sleeps: list[float]) -> None:
    assert len(sleeps) == len(BACKOFF_WINDOWS), sleeps
    for wait, (low, high) in zip(sleeps, BACKOFF_WINDOWS, strict=True):
        assert low <= wait <= high, sleeps


# --- 502/503/504: backoff until success ------------------------------------------------------


async def test_get_retries_502_three_times_then_succeeds(
    sim: GenieSimulator, client: GenieClient, clock: VirtualClock
) -> None:
    """A GET answered 502 three times is retried with 1, 2, 4 s (jittered down) and succeeds."""
    conversation = await client.create_conversation()
    sim.fail("get_conversation", 502, times=3)
    info = await conversation.info()
    assert info.conversation_id == conversation.conversation_id
    assert [r.status for r in sim.requests("get_conversation")] == [502, 502, 502, 200]
    _assert_backoff(clock.sleeps)


async def test_post_retries_502_three_times_then_succeeds(
    sim: GenieSimulator, client: GenieClient, clock: VirtualClock
) -> None:
    """A POST answered 502 three times is retried on the same schedule and succeeds once."""
    sim.fail("create_conversation", 502, times=3)
    conversation = await client.create_conversation()
    assert [r.status for r in sim.requests("create_conversation")] == [502, 502, 502, 200]
    assert [c.conversation_id for c in sim.conversations] == [conversation.conversation_id]
    _assert_backoff(clock.sleeps)


@pytest.mark.parametrize("status", [502, 503, 504])
@pytest.mark.parametrize("body", ["html", "empty"])
async def test_gateway_statuses_with_non_json_bodies_are_retried(
    status: int, body: str, sim: GenieSimulator, client: GenieClient, clock: VirtualClock
) -> None:
    """A 502/503/504 whose body is an HTML page or empty is retried like a JSON one."""
    sim.fail("create_conversation", status, body=body)  # type: ignore[arg-type]
    await client.create_conversation()
    assert [r.status for r in sim.requests("create_conversation")] == [status, 200]
    assert len(clock.sleeps) == 1
    assert 0.75 <= clock.sleeps[0] <= 1.0


# --- Retry-After ------------------------------------------------------------------------------


async def test_retry_after_seconds_raises_the_wait(
    sim: GenieSimulator, client: GenieClient, clock: VirtualClock
) -> None:
    """A 503 with Retry-After: 7 waits at least 7 s (and never more than the 60 s cap)."""
    sim.fail("create_conversation", 503, retry_after="7")
    await client.create_conversation()
    [wait] = clock.sleeps
    assert 7 <= wait <= 60
    assert [r.status for r in sim.requests("create_conversation")] == [503, 200]


async def test_retry_after_http_date_is_honoured(
    sim: GenieSimulator, client: GenieClient, clock: VirtualClock
) -> None:
    """A Retry-After HTTP-date about 20 s ahead makes the wait about 20 s."""
    sim.fail(
        "create_conversation",
        503,
        retry_after=email.utils.formatdate(time.time() + 20, usegmt=True),
    )
    await client.create_conversation()
    [wait] = clock.sleeps
    assert wait == pytest.approx(20, abs=1.5)


async def test_retry_after_above_the_cap_falls_back_to_backoff(
    sim: GenieSimulator, client: GenieClient, clock: VirtualClock
) -> None:
    """A Retry-After of 3600 s (over the 60 s cap) is ignored: the ordinary ~1 s backoff applies."""
    sim.fail("create_conversation", 503, retry_after="3600")
    await client.create_conversation()
    [wait] = clock.sleeps
    assert 0.75 <= wait <= 1.0


# --- 500: once ------------------------------------------------------------------------------


async def test_500_is_retried_exactly_once(
    sim: GenieSimulator, client: GenieClient, clock: VirtualClock
) -> None:
    """Two 500s in a row: one retry, then InternalServerError with attempts == 2."""
    sim.fail("create_conversation", 500, times=2)
    with pytest.raises(InternalServerError) as caught:
        await client.create_conversation()
    assert caught.value.status == 500
    assert caught.value.attempts == 2
    assert [r.status for r in sim.requests("create_conversation")] == [500, 500]
    assert len(clock.sleeps) == 1
    assert sim.conversations == []


async def test_one_500_then_success(
    sim: GenieSimulator, client: GenieClient, clock: VirtualClock
) -> None:
    """A single 500 is retried and the call succeeds."""
    conversation = await client.create_conversation()
    sim.fail("get_conversation", 500)
    info = await conversation.info()
    assert info.conversation_id == conversation.conversation_id
    assert [r.status for r in sim.requests("get_conversation")] == [500, 200]
    assert len(clock.sleeps) == 1


# --- 4xx: never -----------------------------------------------------------------------------

CLIENT_ERRORS: list[tuple[int, type[APIStatusError]]] = [
    (400, BadRequestError),
    (401, AuthFailedError),
    (403, PermissionDeniedError),
    (404, NotFoundError),
    (406, NotAcceptableError),
    (409, ConflictError),
    (413, RequestTooLargeError),
    (415, UnsupportedMediaTypeError),
    (422, UnprocessableEntityError),
    (429, RateLimitError),
]


@pytest.mark.parametrize(("status", "cls"), CLIENT_ERRORS, ids=[str(s) for s, _ in CLIENT_ERRORS])
@pytest.mark.parametrize("route", ["create_conversation", "get_conversation"])
async def test_4xx_is_never_retried(
    status: int,
    cls: type[APIStatusError],
    route: str,
    sim: GenieSimulator,
    client: GenieClient,
    clock: VirtualClock,
) -> None:
    """Every 4xx, on a POST or a GET, is raised after one request as its typed error."""
    conversation = client.conversation("00000000-0000-4000-8000-000000000000")
    if route == "get_conversation":
        conversation = await client.create_conversation()
    sim.fail(route, status, retry_after="1" if status == 429 else None)
    call = client.create_conversation() if route == "create_conversation" else conversation.info()
    with pytest.raises(cls) as caught:
        await call
    assert type(caught.value) is cls
    assert caught.value.status == status
    assert caught.value.attempts == 1
    assert [r.status for r in sim.requests(route)] == [status]
    assert clock.sleeps == []


async def test_429_is_retried_when_the_policy_opts_in(
    sim: GenieSimulator, clock: VirtualClock
) -> None:
    """retry_rate_limited=True retries a 429, honouring its Retry-After."""
    policy = RetryPolicy(retry_rate_limited=True, clock=clock.now, sleep=clock.sleep)
    sim.fail("create_conversation", 429, times=2, retry_after="3")
    async with make_client(sim, policy) as client:
        await client.create_conversation()
        await assert_no_open_connections(client, sim)
    assert [r.status for r in sim.requests("create_conversation")] == [429, 429, 200]
    assert len(clock.sleeps) == 2
    assert all(3 <= wait <= 60 for wait in clock.sleeps)


# --- the budget -----------------------------------------------------------------------------


async def test_503_forever_gives_up_when_the_budget_is_spent(
    sim: GenieSimulator, client: GenieClient, clock: VirtualClock
) -> None:
    """503 forever: waits double up to 60 s and stop before 10 minutes of waiting are spent."""
    sim.fail("create_conversation", 503, times=1000)
    with pytest.raises(ServiceUnavailableError) as caught:
        await client.create_conversation()
    error = caught.value
    requests = sim.requests("create_conversation")
    assert error.status == 503
    assert error.attempts > 5
    assert error.attempts == len(requests) == len(clock.sleeps) + 1
    assert error.request_id == requests[-1].request_id
    assert 400 < sum(clock.sleeps) <= 600
    assert max(clock.sleeps) <= 60
    assert clock.sleeps[-1] >= 45  # the cap was reached (60 s jittered down at most 25 %)
    assert "gave up after" in str(error)


async def test_a_tiny_budget_stops_after_the_waits_that_fit(
    sim: GenieSimulator, clock: VirtualClock
) -> None:
    """wait_budget=5: waits of ~1 and ~2 s fit, the ~4 s one would not, so 3 attempts."""
    policy = RetryPolicy(wait_budget=5, clock=clock.now, sleep=clock.sleep)
    sim.fail("create_conversation", 503, times=1000)
    async with make_client(sim, policy) as client:
        with pytest.raises(ServiceUnavailableError) as caught:
            await client.create_conversation()
        await assert_no_open_connections(client, sim)
    assert caught.value.attempts == 3
    assert len(sim.requests("create_conversation")) == 3
    _assert_backoff([*clock.sleeps, 3.0])  # the two waits taken, plus a placeholder third
    assert sum(clock.sleeps) <= 5


# --- connection resets ----------------------------------------------------------------------


async def test_reset_on_a_get_is_retried(
    sim: GenieSimulator, client: GenieClient, clock: VirtualClock
) -> None:
    """Resets before any response to a GET are retried (with a wait), and the GET succeeds."""
    conversation = await client.create_conversation()
    # aiohttp itself silently repeats an idempotent request once when a reused pooled
    # connection turns out dead; the second reset lands on a fresh connection and so reaches
    # the client's own retry loop.
    sim.fail("get_conversation", kind="reset", times=2)
    info = await conversation.info()
    assert info.conversation_id == conversation.conversation_id
    assert len(sim.requests("get_conversation")) == 3
    assert sim.requests("get_conversation")[-1].status == 200
    assert len(clock.sleeps) == 1
    assert 0.75 <= clock.sleeps[0] <= 1.0


async def test_reset_on_a_post_is_retried(
    sim: GenieSimulator, client: GenieClient, clock: VirtualClock
) -> None:
    """A reset before any response to POST /conversations is retried and succeeds."""
    sim.fail("create_conversation", kind="reset")
    conversation = await client.create_conversation()
    records = sim.requests("create_conversation")
    assert len(records) == 2
    assert records[-1].status == 200
    assert sim.conversation(conversation.conversation_id).state == "idle"
    assert len(clock.sleeps) == 1


async def test_reset_on_send_checks_history_then_sends_once(
    sim: GenieSimulator, client: GenieClient
) -> None:
    """A reset on send(stream=False) is retried after the history shows it was not accepted."""
    conversation = await client.create_conversation()
    sim.fail("send", kind="reset")
    handle = await conversation.send("only once", stream=False)
    assert len(sim.requests("send")) == 2
    assert len(sim.requests("messages")) >= 1  # the history was checked before re-sending
    await sim.wait_idle(conversation.conversation_id)
    users = [
        m for m in sim.conversation(conversation.conversation_id).messages if m.source == "user"
    ]
    assert [m.content for m in users] == ["only once"]
    assert users[0].genie_run_id == handle.genie_run_id


# --- idempotency keys -----------------------------------------------------------------------


async def test_one_idempotency_key_per_logical_call(
    sim: GenieSimulator, client: GenieClient
) -> None:
    """Retries of one POST reuse its Idempotency-Key; another call gets a new one; GETs none."""
    sim.fail("create_conversation", 503, times=2)
    first = await client.create_conversation()
    await client.create_conversation()
    keys = [r.idempotency_key for r in sim.requests("create_conversation")]
    assert len(keys) == 4
    assert keys[0] is not None
    assert keys[0] == keys[1] == keys[2]
    assert keys[3] is not None
    assert keys[3] != keys[0]
    await first.info()
    assert [r.idempotency_key for r in sim.requests("get_conversation")] == [None]


async def test_a_streamed_send_reuses_its_key_through_a_503(
    sim: GenieSimulator, client: GenieClient, clock: VirtualClock
) -> None:
    """A streamed send answered 503 is re-posted with the same key; the turn arrives once."""
    conversation = await client.create_conversation()
    sim.fail("send", 503)
    async with conversation.send("hello") as stream:
        [_ async for _ in stream]
    records = sim.requests("send")
    assert [r.status for r in records] == [503, 200]
    assert records[0].idempotency_key is not None
    assert records[0].idempotency_key == records[1].idempotency_key
    assert len(clock.sleeps) == 1
    users = [
        m for m in sim.conversation(conversation.conversation_id).messages if m.source == "user"
    ]
    assert [m.content for m in users] == ["hello"]


async def test_a_503_after_the_message_was_accepted_is_not_resent(
    sim: GenieSimulator, client: GenieClient
) -> None:
    """A send accepted but answered 503 is found in the history and attached, not re-posted."""
    conversation = await client.create_conversation()
    sim.fail("send", 503, after_accept=True)
    handle = await conversation.send("just once", stream=False)
    assert [r.status for r in sim.requests("send")] == [503]
    users = [
        m for m in sim.conversation(conversation.conversation_id).messages if m.source == "user"
    ]
    assert [(m.content, m.genie_run_id) for m in users] == [("just once", handle.genie_run_id)]
    await sim.wait_idle(conversation.conversation_id)


# --- skill approval -------------------------------------------------------------------------


async def test_skill_approval_after_a_503_is_accepted_once(
    sim: GenieSimulator, client: GenieClient, clock: VirtualClock
) -> None:
    """A 503 on skill_approval is retried; the server records exactly one accepted approval."""
    sim.default_turn = Turn(Confirm("Submit"))
    conversation = await client.create_conversation()
    await conversation.send("x", stream=False)
    await sim.wait_for_event(conversation.conversation_id, "skill.confirmation_required")
    [call_id] = sim.pending_approvals()
    sim.fail("skill_approval", 503)
    await conversation.approve_skill(call_id)
    assert [r.status for r in sim.requests("skill_approval")] == [503, 200]
    assert [(a.resolution, a.status) for a in sim.approvals(call_id)] == [("approved", 200)]
    assert sim.pending_approvals() == []
    assert len(clock.sleeps) == 1
    await sim.wait_idle(conversation.conversation_id)


# --- logging --------------------------------------------------------------------------------


async def test_each_retry_is_logged_at_debug(
    sim: GenieSimulator,
    client: GenieClient,
    clock: VirtualClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A 503 then 200 logs the attempt, the delay, the status and the failed request's id."""
    caplog.set_level(logging.DEBUG, logger="genie_async")
    sim.fail("create_conversation", 503)
    await client.create_conversation()
    failed = sim.requests("create_conversation")[0]
    assert failed.status == 503
    [wait] = clock.sleeps
    retry_logs = [
        r.getMessage()
        for r in caplog.records
        if r.name.startswith("genie_async") and "retrying" in r.getMessage()
    ]
    assert len(retry_logs) == 1, retry_logs
    [line] = retry_logs
    assert "503" in line
    assert failed.request_id in line
    assert f"{wait:.2f}" in line
    assert "attempt 1" in line
    assert all(r.levelno == logging.DEBUG for r in caplog.records if r.name == "genie_async")
