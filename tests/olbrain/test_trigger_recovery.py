"""§7.2: a workflow trigger whose outcome is unknown is looked up (E3) before it is re-sent.

The simulator runs with its default, no gateway de-duplication (§9.3), so "exactly one run"
rests on the client alone.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import aiohttp
import msgspec
import pytest

from genie_async import RetryPolicy, Timeouts
from genie_async.olbrain import OlbrainClient
from genie_async.testing import OlbrainSimulator, VirtualClock, _olbrain_sessions

from .conftest import make_client


class Wire:
    """The trigger bodies as the client put them on the wire (faulted requests included: the
    simulator logs a body only for requests it processed)."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.config = aiohttp.TraceConfig()
        self.config.on_request_chunk_sent.append(self._chunk)

    async def _chunk(
        self, session: object, ctx: SimpleNamespace, params: aiohttp.TraceRequestChunkSentParams
    ) -> None:
        if params.method == "POST" and "/webhook/" in str(params.url):
            self.bodies.append(msgspec.json.decode(params.chunk))

    def keys(self) -> list[str | None]:
        return [body.get("inputs", {}).get("Idempotency-Key") for body in self.bodies]


@pytest.fixture
def wire() -> Wire:
    return Wire()


@pytest.fixture
async def traced(
    sim: OlbrainSimulator, retry: RetryPolicy, wire: Wire
) -> AsyncIterator[OlbrainClient]:
    """A client whose trigger bodies are captured in ``wire``."""
    async with (
        aiohttp.ClientSession(trace_configs=[wire.config]) as session,
        make_client(sim, retry, session=session) as client,
    ):
        yield client


def webhook(flow: str) -> str:
    return f"/api/agents/webhook/{flow}"


@pytest.mark.parametrize("status", [500, 502, 503, 504])
async def test_an_ambiguous_5xx_after_accept_adopts_the_run(
    sim: OlbrainSimulator, client: OlbrainClient, status: int
) -> None:
    """Any retried 5xx after the run was created: E3 finds it by key; one POST, one run."""
    assert sim.idempotency == "off"
    flow = sim.add_workflow_agent(auto_advance=False)
    sim.fail_next("POST", webhook(flow), status, after_accept=True)
    run = await client.agent(flow).trigger({"n": 1})
    (created,) = sim.runs_for(flow)
    assert run.run_id == created.run_id
    assert run.status == "queued"
    assert [r.status for r in sim.requests_to("trigger")] == [status]
    assert len(sim.requests_to("list_runs")) == 1


async def test_a_502_before_accept_is_resent_with_the_same_key(
    sim: OlbrainSimulator, traced: OlbrainClient, wire: Wire
) -> None:
    """Nothing was created: E3 is checked, finds nothing, and the same body (same key) is sent
    again; exactly one run, the re-sent one."""
    flow = sim.add_workflow_agent(auto_advance=False)
    sim.fail_next("POST", webhook(flow), 502)
    run = await traced.agent(flow).trigger({"n": 1})
    assert [r.status for r in sim.requests_to("trigger")] == [502, 202]
    assert len(wire.bodies) == 2
    assert wire.bodies[0] == wire.bodies[1]
    assert wire.keys()[0] is not None
    (created,) = sim.runs_for(flow)
    assert run.run_id == created.run_id
    assert created.idempotency_key == wire.keys()[0]
    assert len(sim.requests_to("list_runs")) == 1
    # the look-up came between the two POSTs
    routes = [r.route for r in sim.requests]
    assert routes == ["trigger", "list_runs", "trigger"]


@pytest.mark.parametrize("after_accept", [True, False])
async def test_a_dropped_connection_makes_exactly_one_run(
    sim: OlbrainSimulator, client: OlbrainClient, after_accept: bool
) -> None:
    """The connection drops with no answer (before or after the run exists): E3 decides;
    one run either way, re-sent only when it was not created."""
    flow = sim.add_workflow_agent(auto_advance=False)
    sim.fail_next("POST", webhook(flow), 0, after_accept=after_accept)
    run = await client.agent(flow).trigger({"n": 1})
    (created,) = sim.runs_for(flow)
    assert run.run_id == created.run_id
    assert len(sim.requests_to("trigger")) == (1 if after_accept else 2)
    assert len(sim.requests_to("list_runs")) == 1


async def test_a_timeout_after_sending_adopts_the_run(
    sim: OlbrainSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server creates the run but answers too late: the client times out after sending,
    finds the run, and does not send again; one run."""
    flow = sim.add_workflow_agent(auto_advance=False)
    original = _olbrain_sessions.trigger_workflow
    release = asyncio.Event()

    async def slow(*args: Any, **kwargs: Any) -> Any:
        reply = await original(*args, **kwargs)  # the run exists from here on
        if len(sim.requests_to("trigger")) == 1:
            await release.wait()  # answers only after the client gave up on it
        return reply

    monkeypatch.setattr(_olbrain_sessions, "trigger_workflow", slow)
    clock = VirtualClock()
    policy = RetryPolicy(clock=clock.now, sleep=clock.sleep, wait_jitter=0.0)
    # Long enough that the E3 look-up never times out on a busy machine.
    timeouts = Timeouts(connect=5, read=1.0, request=30)
    try:
        async with make_client(sim, policy, timeouts=timeouts) as client:
            run = await client.agent(flow).trigger({"n": 1})
    finally:
        release.set()
    (created,) = sim.runs_for(flow)
    assert run.run_id == created.run_id
    assert len(sim.requests_to("trigger")) == 1
    assert len(sim.requests_to("list_runs")) == 1


@pytest.mark.parametrize("status", ["running", "paused", "needs_review", "succeeded", "failed"])
async def test_a_fast_run_is_found_in_any_status(
    sim: OlbrainSimulator, status: str, wire: Wire
) -> None:
    """By the time of the look-up the run may have moved on: it is found all the same."""
    flow = sim.add_workflow_agent(auto_advance=False)
    clock = VirtualClock()

    async def sleep(seconds: float) -> None:
        for created in sim.runs_for(flow):
            sim.set_run_status(created.run_id, status)
        await clock.sleep(seconds)

    policy = RetryPolicy(clock=clock.now, sleep=sleep, wait_jitter=0.0)
    sim.fail_next("POST", webhook(flow), 502, after_accept=True)
    async with make_client(sim, policy) as client:
        run = await client.agent(flow).trigger({"n": 1})
    (created,) = sim.runs_for(flow)
    assert (run.run_id, run.status) == (created.run_id, status)
    assert len(sim.requests_to("trigger")) == 1


async def test_a_run_beyond_a_full_page_is_found_by_status(sim: OlbrainSimulator) -> None:
    """If other runs fill the unfiltered page, each status is listed on its own."""
    flow = sim.add_workflow_agent(auto_advance=False)
    clock = VirtualClock()

    async def sleep(seconds: float) -> None:
        # 100 newer runs of someone else push ours off the first page; they are running.
        async with aiohttp.ClientSession() as http:
            for n in range(100):
                async with http.post(
                    sim.url + webhook(flow),
                    json={"inputs": {"other": n}},
                    headers={"Authorization": f"Bearer {sim.api_key}"},
                ) as response:
                    assert response.status == 202
        for other in sim.runs_for(flow)[1:]:
            sim.set_run_status(other.run_id, "running")
        await clock.sleep(seconds)

    policy = RetryPolicy(clock=clock.now, sleep=sleep, wait_jitter=0.0)
    sim.fail_next("POST", webhook(flow), 502, after_accept=True)
    async with make_client(sim, policy) as client:
        run = await client.agent(flow).trigger({"n": 1})
    assert run.run_id == sim.runs_for(flow)[0].run_id
    assert len(sim.runs_for(flow)) == 101
    lists = [r.query for r in sim.requests_to("list_runs")]
    assert lists == [{"limit": "100"}, {"status": "queued", "limit": "100"}]


async def test_two_deliberate_identical_triggers_make_two_runs(
    sim: OlbrainSimulator, client: OlbrainClient
) -> None:
    """Two logical calls (two keys), the earlier run still queued: the second call's recovery
    adopts its own run, never the first one."""
    flow = sim.add_workflow_agent(auto_advance=False)
    agent = client.agent(flow)
    first = await agent.trigger({"n": 1})
    sim.fail_next("POST", webhook(flow), 502, after_accept=True)
    second = await agent.trigger({"n": 1})
    runs = sim.runs_for(flow)
    assert [r.status for r in runs] == ["queued", "queued"]
    assert (first.run_id, second.run_id) == (runs[0].run_id, runs[1].run_id)
    assert runs[0].idempotency_key != runs[1].idempotency_key
    assert len(sim.requests_to("trigger")) == 2


async def test_an_identical_queued_run_is_not_taken_for_a_lost_trigger(
    sim: OlbrainSimulator, client: OlbrainClient
) -> None:
    """The second identical call is refused before the server took it: the earlier queued run
    (another key) is not adopted; the call is re-sent and makes its own run."""
    flow = sim.add_workflow_agent(auto_advance=False)
    other = make_client(sim, client._core.retry)  # another process made the earlier run
    async with other:
        first = await other.agent(flow).trigger({"n": 1})
    sim.fail_next("POST", webhook(flow), 502)
    second = await client.agent(flow).trigger({"n": 1})
    assert second.run_id != first.run_id
    assert len(sim.runs_for(flow)) == 2
    assert [r.status for r in sim.requests_to("trigger")] == [202, 502, 202]
    assert len(sim.requests_to("list_runs")) == 1  # looked, and rejected the earlier run


async def test_without_a_key_the_run_is_matched_on_inputs_and_time(
    sim: OlbrainSimulator, traced: OlbrainClient, wire: Wire
) -> None:
    """inject_idempotency_key=False: the body has no key; the lost trigger's run is found by
    its inputs, created since the send; one POST, one run."""
    flow = sim.add_workflow_agent(auto_advance=False)
    sim.fail_next("POST", webhook(flow), 502, after_accept=True)
    run = await traced.agent(flow).trigger({"n": 1}, inject_idempotency_key=False)
    assert wire.bodies == [{"inputs": {"n": 1}}]
    (created,) = sim.runs_for(flow)
    assert run.run_id == created.run_id
    assert created.idempotency_key is None
    assert len(sim.requests_to("trigger")) == 1


async def test_without_a_key_older_or_known_identical_runs_are_not_adopted(
    sim: OlbrainSimulator, client: OlbrainClient
) -> None:
    """Key-less matching skips an identical run from before the send and one this client's
    own earlier trigger returned; a run carrying a key is never a key-less trigger's."""
    flow = sim.add_workflow_agent(auto_advance=False)
    agent = client.agent(flow)
    sim.clock.advance(-600)  # an identical run from ten minutes ago, by someone else
    async with make_client(sim, client._core.retry) as other:
        old = await other.agent(flow).trigger({"n": 1}, inject_idempotency_key=False)
        keyed = await other.agent(flow).trigger({"n": 1})  # identical but for its key
    sim.clock.advance(600)
    mine = await agent.trigger({"n": 1}, inject_idempotency_key=False)
    sim.fail_next("POST", webhook(flow), 502)  # not taken: nothing of ours to find
    again = await agent.trigger({"n": 1}, inject_idempotency_key=False)
    assert again.run_id not in (old.run_id, keyed.run_id, mine.run_id)
    assert len(sim.runs_for(flow)) == 4
    sim.fail_next("POST", webhook(flow), 502, after_accept=True)
    third = await agent.trigger({"n": 1}, inject_idempotency_key=False)
    assert third.run_id == sim.runs_for(flow)[-1].run_id
    assert len(sim.runs_for(flow)) == 5


async def test_a_key_in_the_callers_body_is_matched(
    sim: OlbrainSimulator, client: OlbrainClient
) -> None:
    """body= with its own key inside inputs and injection off: the run is found by that key."""
    flow = sim.add_workflow_agent(auto_advance=False)
    sim.fail_next("POST", webhook(flow), 502, after_accept=True)
    body = {"inputs": {"n": 1, "Idempotency-Key": "mine"}}
    run = await client.agent(flow).trigger(body=body, inject_idempotency_key=False)
    (created,) = sim.runs_for(flow)
    assert (run.run_id, created.idempotency_key) == (created.run_id, "mine")
    assert len(sim.requests_to("trigger")) == 1


async def test_with_server_replay_on_there_is_still_one_run(
    sim: OlbrainSimulator, client: OlbrainClient
) -> None:
    """With the simulator's replay switch (a workflow that dedupes on the key) the outcome is
    the same: one run, found before any re-send."""
    sim.idempotency = "replay"
    flow = sim.add_workflow_agent(auto_advance=False)
    sim.fail_next("POST", webhook(flow), 502, after_accept=True)
    run = await client.agent(flow).trigger({"n": 1})
    (created,) = sim.runs_for(flow)
    assert run.run_id == created.run_id
    assert len(sim.requests_to("trigger")) == 1
