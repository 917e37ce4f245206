"""Workflow runs against the simulator: triggers, the state machine, watching, files, uploads."""

from __future__ import annotations

import asyncio
import itertools

import aiohttp
import pytest

from genie_async import (
    InvalidRequestError,
    InvalidStateTransitionError,
    RequestTooLargeError,
    RetryPolicy,
    StreamClosedError,
    UpstreamTimeoutError,
)
from genie_async.olbrain import TRANSITIONS, OlbrainClient, RunStatus
from genie_async.testing import OlbrainSimulator, VirtualClock

from .conftest import assert_pool_released, make_client

DOCUMENTED = ["queued", "running", "paused", "succeeded", "failed", "cancelled"]
LEGAL = [(action, src) for action, (sources, _) in TRANSITIONS.items() for src in sorted(sources)]
ILLEGAL = [
    (action, src)
    for action, src in itertools.product(TRANSITIONS, DOCUMENTED)
    if (action, src) not in LEGAL
]


def test_the_table_is_the_documented_machine() -> None:
    """§5.2: cancel from queued/running, pause from running, resume from paused, retry failed."""
    assert {a: (set(s), t) for a, (s, t) in TRANSITIONS.items()} == {
        "cancel": ({"queued", "running"}, "cancelled"),
        "pause": ({"running"}, "paused"),
        "resume": ({"paused"}, "running"),
        "retry": ({"failed"}, "queued"),
    }


# --- triggers ------------------------------------------------------------------------------


async def test_trigger_returns_a_queued_run(sim: OlbrainSimulator, client: OlbrainClient) -> None:
    """E1 on a workflow agent starts a run; the body is {"inputs": {…, "Idempotency-Key": …}},
    the key inside inputs, where the workflow sees it and the run record echoes it."""
    flow = sim.add_workflow_agent(auto_advance=False)
    run = await client.agent(flow).trigger({"operation": "import"})
    assert run.status == RunStatus.QUEUED
    assert run.run_id in sim.runs
    assert run.agent_id == flow
    body = sim.requests_to("trigger")[0].json
    assert set(body) == {"inputs"}
    key = body["inputs"]["Idempotency-Key"]
    assert body["inputs"] == {"operation": "import", "Idempotency-Key": key}
    assert key == sim.runs[run.run_id].idempotency_key is not None
    assert sim.runs[run.run_id].inputs == {"operation": "import", "Idempotency-Key": key}
    assert "Idempotency-Key" not in sim.requests_to("trigger")[0].headers


async def test_a_502_after_accept_creates_exactly_one_run(
    sim: OlbrainSimulator, client: OlbrainClient, clock: VirtualClock
) -> None:
    """The run is created, the answer is a 502; with no server dedupe (the default), the
    retry finds the run in E3 by its key and adopts it: one POST, one run."""
    flow = sim.add_workflow_agent(auto_advance=False)
    sim.fail_next("POST", f"/api/agents/webhook/{flow}", 502, after_accept=True)
    run = await client.agent(flow).trigger({"n": 1})
    triggers = sim.requests_to("trigger")
    assert [r.status for r in triggers] == [502]
    assert triggers[0].idempotency_key is not None
    assert len(sim.requests_to("list_runs")) == 1
    (created,) = sim.runs_for(flow)
    assert run.run_id == created.run_id
    assert created.idempotency_key == triggers[0].idempotency_key
    assert clock.sleeps == [1.0]


async def test_a_caller_supplied_key_is_used_and_reused(
    sim: OlbrainSimulator, client: OlbrainClient
) -> None:
    """idempotency_key= is the body's key; the 503's recovery finds the run by it; with the
    server's replay switch on, the same key later replays that run."""
    sim.idempotency = "replay"
    flow = sim.add_workflow_agent(auto_advance=False)
    # after_accept: the simulator parses (and logs) the body of a faulted request only then
    sim.fail_next("POST", f"/api/agents/webhook/{flow}", 503, after_accept=True)
    first = await client.agent(flow).trigger({"n": 1}, idempotency_key="order-4421")
    again = await client.agent(flow).trigger({"n": 1}, idempotency_key="order-4421")
    triggers = sim.requests_to("trigger")
    assert [r.idempotency_key for r in triggers] == ["order-4421"] * 2
    assert [r.status for r in triggers] == [503, 202]
    assert triggers[1].replayed
    assert first.run_id == again.run_id
    assert len(sim.runs_for(flow)) == 1
    assert sim.runs_for(flow)[0].inputs == {"n": 1, "Idempotency-Key": "order-4421"}


async def test_a_key_in_the_callers_body_wins(sim: OlbrainSimulator, client: OlbrainClient) -> None:
    """body= is sent as given; its own Idempotency-Key is kept; injection can be switched off."""
    flow = sim.add_workflow_agent(auto_advance=False)
    await client.agent(flow).trigger(body={"inputs": {}, "Idempotency-Key": "mine"})
    await client.agent(flow).trigger({"a": 1}, inject_idempotency_key=False)
    first, second = (r.json for r in sim.requests_to("trigger"))
    assert first["Idempotency-Key"] == "mine"
    assert second == {"inputs": {"a": 1}}
    with pytest.raises(InvalidRequestError):
        await client.agent(flow).trigger({}, idempotency_key="k", inject_idempotency_key=False)


async def test_a_body_over_1_mib_is_refused_before_sending(
    sim: OlbrainSimulator, client: OlbrainClient
) -> None:
    """Over 1,048,576 bytes: RequestTooLargeError with the upload hint; the server sees nothing."""
    flow = sim.add_workflow_agent()
    chat = sim.add_conversational_agent()
    with pytest.raises(RequestTooLargeError) as info:
        await client.agent(flow).trigger({"blob": "x" * (1024 * 1024)})
    error = info.value
    assert error.request_id is None
    assert error.status == 413
    assert "Refused before sending" in error.message
    assert "upload" in (error.hint or "")
    assert "fi_" in (error.hint or "")
    with pytest.raises(RequestTooLargeError):
        client.agent(chat).conversation().send("x" * (1024 * 1024))
    assert sim.requests == []


async def test_a_body_of_exactly_1_mib_is_sent(
    sim: OlbrainSimulator, client: OlbrainClient
) -> None:
    """The limit is inclusive: a 1,048,576-byte body is sent and accepted."""
    flow = sim.add_workflow_agent(auto_advance=False)
    overhead = len(b'{"inputs":{"blob":"","Idempotency-Key":"' + b"0" * 32 + b'"}}')
    await client.agent(flow).trigger({"blob": "x" * (1024 * 1024 - overhead)})
    assert len(sim.runs_for(flow)) == 1


async def test_upload_then_reference_the_file_id(
    sim: OlbrainSimulator, client: OlbrainClient, tmp_path: object
) -> None:
    """A multipart upload returns fi_…; a trigger referencing it starts a run."""
    flow = sim.add_workflow_agent(auto_advance=False)
    agent = client.agent(flow)
    uploaded = await agent.upload(b"id,name\n1,Acme\n", filename="customers.csv")
    assert uploaded.file_id.startswith("fi_")
    assert len(uploaded.file_id) == 35
    assert uploaded.size_bytes == 15
    assert uploaded.filename == "customers.csv"
    assert uploaded.content_type == "text/csv"
    stored = sim.uploads[uploaded.file_id]
    assert stored.content == b"id,name\n1,Acme\n"
    run = await agent.trigger({"csv_file": uploaded.file_id, "operation": "bulk-import"})
    assert sim.runs[run.run_id].inputs["csv_file"] == uploaded.file_id
    assert "multipart/form-data" in sim.requests_to("upload")[0].headers["Content-Type"]


async def test_upload_from_a_path_and_refusals(
    sim: OlbrainSimulator, client: OlbrainClient, tmp_path: pytest.TempPathFactory
) -> None:
    """A path is read off the loop; an empty file is refused before sending."""
    flow = sim.add_workflow_agent()
    path = tmp_path / "report.json"  # type: ignore[operator]
    path.write_bytes(b'{"a": 1}')
    uploaded = await client.agent(flow).upload(path)
    assert uploaded.filename == "report.json"
    with pytest.raises(InvalidRequestError):
        await client.agent(flow).upload(b"")
    assert len(sim.requests_to("upload")) == 1


async def test_an_upload_500_is_retried_once_with_a_fresh_form(
    sim: OlbrainSimulator, client: OlbrainClient
) -> None:
    """Upload failed mid-stream (500): retried once, the whole part sent again."""
    flow = sim.add_workflow_agent()
    sim.fail_next("POST", "/api/agents/*/upload", 500)
    uploaded = await client.agent(flow).upload(b"abc", filename="a.txt")
    assert [r.status for r in sim.requests_to("upload")] == [500, 200]
    assert sim.uploads[uploaded.file_id].size_bytes == 3


# --- the state machine ---------------------------------------------------------------------


@pytest.mark.parametrize(("action", "source"), LEGAL)
async def test_every_legal_transition(
    sim: OlbrainSimulator, client: OlbrainClient, action: str, source: str
) -> None:
    """Each documented transition is sent and lands on its target status."""
    flow = sim.add_workflow_agent(auto_advance=False)
    run = await client.agent(flow).trigger({})
    sim.set_run_status(run.run_id, source)
    await run.refresh()
    record = await getattr(run, action)()
    target = TRANSITIONS[action][1]  # type: ignore[index]
    assert record.status == target
    assert run.status == target
    assert sim.runs[run.run_id].status == target
    assert len(sim.requests_to(f"{action}_run")) == 1


@pytest.mark.parametrize(("action", "source"), ILLEGAL)
async def test_every_illegal_transition_is_refused_locally(
    sim: OlbrainSimulator, client: OlbrainClient, action: str, source: str
) -> None:
    """With the run known to be in ``source``, the action is refused before sending."""
    flow = sim.add_workflow_agent(auto_advance=False)
    run = await client.agent(flow).trigger({})
    sim.set_run_status(run.run_id, source)
    await run.refresh()
    with pytest.raises(InvalidStateTransitionError) as info:
        await getattr(run, action)()
    error = info.value
    assert error.refused_locally
    assert error.request_id is None
    assert error.status == 409
    assert error.action == action
    assert error.run_status == source
    assert "Refused before sending" in error.message
    assert sim.requests_to(f"{action}_run") == []


@pytest.mark.parametrize(("action", "source"), ILLEGAL)
async def test_every_illegal_transition_is_refused_by_the_server_when_stale(
    sim: OlbrainSimulator, client: OlbrainClient, action: str, source: str
) -> None:
    """The handle thinks the action is legal but the server moved on: its 409 is raised with
    the run re-read, and the action is not repeated."""
    flow = sim.add_workflow_agent(auto_advance=False)
    run = await client.agent(flow).trigger({})
    legal_source = sorted(TRANSITIONS[action][0])[0]  # type: ignore[index]
    sim.set_run_status(run.run_id, legal_source)
    await run.refresh()
    sim.set_run_status(run.run_id, source)  # behind the handle's back
    with pytest.raises(InvalidStateTransitionError) as info:
        await getattr(run, action)()
    error = info.value
    assert not error.refused_locally
    assert error.request_id is not None
    assert error.run_status == source
    assert run.status == source
    assert len(sim.requests_to(f"{action}_run")) == 1


async def test_an_unknown_status_is_left_to_the_server(
    sim: OlbrainSimulator, client: OlbrainClient
) -> None:
    """A status outside the documented machine (needs_review) is not refused locally."""
    flow = sim.add_workflow_agent(auto_advance=False)
    run = await client.agent(flow).trigger({})
    sim.set_run_status(run.run_id, "needs_review")
    await run.refresh()
    assert run.record.run_status is RunStatus.NEEDS_REVIEW
    with pytest.raises(InvalidStateTransitionError) as info:
        await run.pause()
    assert not info.value.refused_locally
    assert len(sim.requests_to("pause_run")) == 1


async def test_a_control_action_answered_502_after_accept_is_applied_once(
    sim: OlbrainSimulator, client: OlbrainClient
) -> None:
    """Pause applied, then a 502: the retry carries the same body key and succeeds once."""
    sim.idempotency = "replay"
    flow = sim.add_workflow_agent(auto_advance=False)
    run = await client.agent(flow).trigger({})
    sim.set_run_status(run.run_id, "running")
    await run.refresh()
    sim.fail_next("POST", "/api/agents/*/runs/*/pause", 502, after_accept=True)
    await run.pause()
    pauses = sim.requests_to("pause_run")
    assert [r.status for r in pauses] == [502, 200]
    assert pauses[0].idempotency_key == pauses[1].idempotency_key is not None
    assert sim.runs[run.run_id].history.count("paused") == 1
    assert run.status == "paused"


async def test_a_409_on_a_retried_action_that_did_apply_is_success(
    sim: OlbrainSimulator, client: OlbrainClient
) -> None:
    """Without server replay, the retry's 409 is checked by re-reading: the run moved, so the
    first attempt applied and no error is raised."""
    sim.idempotency = "off"
    flow = sim.add_workflow_agent(auto_advance=False)
    run = await client.agent(flow).trigger({})
    sim.set_run_status(run.run_id, "running")
    await run.refresh()
    sim.fail_next("POST", "/api/agents/*/runs/*/pause", 502, after_accept=True)
    record = await run.pause()
    assert record.status == "paused"
    assert [r.status for r in sim.requests_to("pause_run")] == [502, 409]


async def test_a_409_on_a_retried_pause_of_a_run_that_finished_is_an_error(
    sim: OlbrainSimulator,
) -> None:
    """The pause never applied (502 before accept) and the run finished meanwhile: the
    retry's 409 is the server's refusal, not an earlier success; the run has moved, but not
    to paused."""
    sim.idempotency = "off"
    flow = sim.add_workflow_agent(auto_advance=False)
    clock = VirtualClock()
    run_ids: list[str] = []

    async def sleep(seconds: float) -> None:
        sim.set_run_status(run_ids[0], "succeeded")  # while the client backs off
        await clock.sleep(seconds)

    policy = RetryPolicy(clock=clock.now, sleep=sleep, wait_jitter=0.0)
    async with make_client(sim, policy) as client:
        run = await client.agent(flow).trigger({})
        run_ids.append(run.run_id)
        sim.set_run_status(run.run_id, "running")
        await run.refresh()
        sim.fail_next("POST", "/api/agents/*/runs/*/pause", 502)
        with pytest.raises(InvalidStateTransitionError) as info:
            await run.pause()
    assert [r.status for r in sim.requests_to("pause_run")] == [502, 409]
    assert info.value.run_status == run.status == "succeeded"
    assert info.value.action == "pause"
    assert info.value.request_id == sim.requests_to("pause_run")[1].request_id
    assert "Re-fetch the run" in (info.value.hint or "")
    assert sim.runs[run.run_id].history.count("paused") == 0


async def test_a_failed_run_is_retried(sim: OlbrainSimulator, client: OlbrainClient) -> None:
    """A run whose first execution fails can be retried and then succeeds."""
    flow = sim.add_workflow_agent(fail=1)
    run = await client.agent(flow).trigger({})
    assert (await run.wait(interval=1)).status == "failed"
    await run.retry()
    assert (await run.wait(interval=1)).status == "succeeded"


# --- watching ------------------------------------------------------------------------------


async def test_watch_yields_each_change_until_terminal(
    sim: OlbrainSimulator, client: OlbrainClient, clock: VirtualClock
) -> None:
    """Queued → running → succeeded, each yielded once; the watch ends at the terminal one."""
    flow = sim.add_workflow_agent(auto_advance=False)
    run = await client.agent(flow).trigger({})
    seen = []
    async with run.watch(interval=2, max_interval=10, backoff=2) as changes:
        async for record in changes:
            seen.append(record.status)
            sim.advance(run.run_id)  # one lifecycle step per change seen
    assert seen == ["queued", "running", "succeeded"]
    assert run.terminal
    assert clock.sleeps == [2, 2]  # every poll saw a change, so no backoff


async def test_watch_backs_off_while_nothing_changes(sim: OlbrainSimulator) -> None:
    """Polls wait 2, 4, 8, 10, 10 s while the status holds, and reset to 2 s after a change."""
    flow = sim.add_workflow_agent(auto_advance=False)
    clock = VirtualClock()
    run_ids: list[str] = []

    async def sleep(seconds: float) -> None:
        await clock.sleep(seconds)
        if len(clock.sleeps) == 5:
            sim.advance(run_ids[0])  # running, seen by the 6th poll
        if len(clock.sleeps) == 6:
            sim.set_run_status(run_ids[0], "succeeded")

    policy = RetryPolicy(clock=clock.now, sleep=sleep, wait_jitter=0.0)
    async with make_client(sim, policy) as client:
        run = await client.agent(flow).trigger({})
        run_ids.append(run.run_id)
        watch = run.watch(interval=2, max_interval=10, backoff=2)
        seen = [record.status async for record in watch]
    assert seen == ["queued", "running", "succeeded"]
    assert clock.sleeps == [2, 4, 8, 10, 10, 2]
    assert watch.polls == len(sim.requests_to("get_run")) == 7


async def test_watch_can_be_cancelled_without_leaks(
    sim: OlbrainSimulator, client: OlbrainClient
) -> None:
    """A watch task cancelled mid-sleep ends cleanly; the pool has nothing checked out."""
    flow = sim.add_workflow_agent(auto_advance=False)
    async with make_client(sim, RetryPolicy()) as real_client:
        run = await real_client.agent(flow).trigger({})
        started = asyncio.Event()

        async def follow() -> None:
            async with run.watch(interval=30) as changes:
                async for _ in changes:
                    started.set()

        task = asyncio.create_task(follow())
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        session = real_client._core._session
        assert session is not None
        assert session.connector is not None
        assert not session.connector._acquired


async def test_a_close_from_another_task_stops_the_watch(sim: OlbrainSimulator) -> None:
    """aclose() from another task ends a watch that is waiting to poll again: the reader gets
    StreamClosedError at once and no further poll is made."""
    flow = sim.add_workflow_agent(auto_advance=False)
    async with make_client(sim, RetryPolicy()) as real_client:  # real sleeps: a 30 s wait
        run = await real_client.agent(flow).trigger({})
        watch = run.watch(interval=30)
        first = asyncio.Event()

        async def follow() -> None:
            async with watch:
                async for _ in watch:
                    first.set()

        follower = asyncio.create_task(follow())
        await first.wait()
        await watch.aclose()
        with pytest.raises(StreamClosedError):
            await asyncio.wait_for(follower, timeout=10)  # far below the 30 s wait
        assert watch._agen.ag_frame is None
        assert watch.polls == len(sim.requests_to("get_run")) == 1
        assert_pool_released(real_client)


async def test_breaking_out_inside_async_with_releases_everything(
    sim: OlbrainSimulator, client: OlbrainClient
) -> None:
    """A break out of ``async for`` inside ``async with run.watch()`` closes the watch."""
    flow = sim.add_workflow_agent(auto_advance=False)
    run = await client.agent(flow).trigger({})
    async with run.watch() as watch:
        async for record in watch:
            assert record.status == "queued"
            break
    assert watch._agen.ag_frame is None
    assert watch.polls == len(sim.requests_to("get_run")) == 1
    with pytest.raises(StreamClosedError):
        watch.__aiter__()


async def test_a_closed_watch_cannot_be_iterated(
    sim: OlbrainSimulator, client: OlbrainClient
) -> None:
    """Breaking out and closing ends the watch for good; a new watch() starts over."""
    flow = sim.add_workflow_agent(auto_advance=False)
    run = await client.agent(flow).trigger({})
    watch = run.watch()
    async for _ in watch:
        break
    await watch.aclose()
    with pytest.raises(StreamClosedError):
        watch.__aiter__()
    sim.set_run_status(run.run_id, "cancelled")
    assert [r.status async for r in run.watch()] == ["cancelled"]


async def test_watch_rides_out_transient_errors(
    sim: OlbrainSimulator, client: OlbrainClient, clock: VirtualClock
) -> None:
    """A 502 upstream_timeout while polling is retried by the policy; the watch goes on."""
    flow = sim.add_workflow_agent()
    run = await client.agent(flow).trigger({})
    sim.fail_next("GET", "/api/agents/*/runs/*", 502, code="upstream_timeout", count=2)
    assert [r.status async for r in run.watch(interval=3)][-1] == "succeeded"
    assert clock.sleeps[:2] == [1.0, 2.0]


async def test_watch_gives_up_with_the_typed_error(
    sim: OlbrainSimulator, client: OlbrainClient
) -> None:
    """A run read that keeps failing past the budget raises UpstreamTimeoutError from watch."""
    flow = sim.add_workflow_agent()
    run = await client.agent(flow).trigger({})
    sim.fail_next("GET", "/api/agents/*/runs/*", 502, code="upstream_timeout", count=1000)
    with pytest.raises(UpstreamTimeoutError):
        async for _ in run.watch():
            pass


# --- lists, files, approvals ---------------------------------------------------------------


@pytest.mark.parametrize("shape", ["envelope", "array"])
async def test_runs_list_with_a_status_filter(
    sim: OlbrainSimulator, client: OlbrainClient, shape: str
) -> None:
    """E3 in both shapes; status= filters on the server."""
    sim.runs_list_shape = shape  # type: ignore[assignment]
    flow = sim.add_workflow_agent(auto_advance=False)
    agent = client.agent(flow)
    first = await agent.trigger({"n": 1})
    second = await agent.trigger({"n": 2})
    sim.set_run_status(first.run_id, "running")
    assert {r.run_id for r in await agent.runs()} == {first.run_id, second.run_id}
    running = await agent.runs(status="running", limit=5)
    assert [r.run_id for r in running] == [first.run_id]
    assert sim.requests_to("list_runs")[-1].query == {"status": "running", "limit": "5"}
    fetched = await agent.get_run(second.run_id)
    assert fetched.status == "queued"


async def test_output_file_urls_are_refetched_before_they_expire(
    sim: OlbrainSimulator, client: OlbrainClient, clock: VirtualClock
) -> None:
    """Within 15 min the cached URLs are returned; after, the run is re-read for fresh ones."""
    flow = sim.add_workflow_agent(output_files={"report.csv": b"id\n1\n"})
    run = await client.agent(flow).trigger({})
    await run.wait(interval=1)
    reads = len(sim.requests_to("get_run"))
    files = await run.output_files()
    assert [f.name for f in files] == ["report.csv"]
    assert len(sim.requests_to("get_run")) == reads  # still fresh: no request
    old_url = files[0].url
    assert old_url is not None
    async with aiohttp.ClientSession() as browser, browser.get(old_url) as response:
        assert response.status == 200
        assert await response.read() == b"id\n1\n"
    await clock.sleep(15 * 60)  # the client's clock …
    sim.clock.advance(15 * 60)  # … and the server's move on together
    fresh = await run.output_files()
    assert len(sim.requests_to("get_run")) == reads + 1
    assert fresh[0].url != old_url
    async with aiohttp.ClientSession() as browser:
        async with browser.get(old_url) as response:
            assert response.status == 403
        async with browser.get(fresh[0].url or "") as response:
            assert response.status == 200


async def test_approvals_list_and_resolve(sim: OlbrainSimulator, client: OlbrainClient) -> None:
    """A run in needs_review lists its gate; approving it resumes the run."""
    flow = sim.add_workflow_agent(needs_review=True, auto_advance=False)
    run = await client.agent(flow).trigger({})
    sim.advance(run.run_id)
    sim.advance(run.run_id)
    assert (await run.refresh()).status == "needs_review"
    approvals = await run.approvals()
    assert len(approvals) == 1
    assert approvals[0].blocking
    result = await run.resolve_approval(approvals[0].exception_id, "approved")
    assert result.all_resolved
    assert result.resumed
    assert (await run.refresh()).status == "running"
    with pytest.raises(InvalidRequestError):
        await run.resolve_approval("x", "modified")
