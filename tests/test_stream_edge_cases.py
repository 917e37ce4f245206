"""Edge cases of the stream found in review: cursors, closes, pauses, budgets and hooks."""

from __future__ import annotations

import asyncio
import time

import pytest

from genie_async import (
    AgentMessage,
    Approve,
    AuthRequest,
    GenieClient,
    HookError,
    ProcessingFinished,
    RecoveryError,
    RetryPolicy,
    SkillConfirmationRequired,
    StreamClosedError,
    StreamStalledError,
    Timeouts,
)
from genie_async.events import GenieEvent
from genie_async.testing import (
    Confirm,
    ConnectAuth,
    GenieSimulator,
    Say,
    StreamFault,
    Turn,
    VirtualClock,
)

from .conftest import assert_no_open_connections, make_client


def texts(events: list[GenieEvent]) -> list[str]:
    return [e.text for e in events if isinstance(e, AgentMessage)]


async def test_a_consumer_stopping_mid_chunk_resumes_exactly_there(
    sim: GenieSimulator, client: GenieClient
) -> None:
    """Events read in one chunk but not handed over are not covered by the cursor."""
    sim.default_turn = Turn(Say("one"), Say("two"), Say("three"), Say("four"))
    conversation = await client.create_conversation()
    first: list[GenieEvent] = []
    async with conversation.send("hi") as stream:
        async for event in stream:
            first.append(event)
            if len(first) == 1:
                await asyncio.sleep(0.3)  # the rest of the turn arrives in one buffered chunk
            if len(first) == 2:
                break
        cursor = stream.cursor
    assert cursor.last_seq_num == first[-1].seq_num
    async with conversation.resume(cursor) as resumed:
        rest = [event async for event in resumed]
    assert texts(first + rest) == ["one", "two", "three", "four"]
    assert isinstance(rest[-1], ProcessingFinished)


async def test_a_retry_after_a_5xx_never_attaches_to_an_earlier_identical_message(
    sim: GenieSimulator, client: GenieClient
) -> None:
    """A second "yes" failing with 502 (not accepted) is posted again, not glued to the first."""
    conversation = await client.create_conversation()
    first = await conversation.ask("yes")
    sim.clock.advance(30)  # the user says "yes" again half a minute later
    sim.fail("send", 502)
    second = await client.conversation(conversation.conversation_id).ask("yes")  # fresh handle
    assert second.genie_run_id != first.genie_run_id
    users = [
        m for m in sim.conversation(conversation.conversation_id).messages if m.source == "user"
    ]
    assert [m.content for m in users] == ["yes", "yes"]


async def test_resuming_during_a_confirmation_asks_again(
    sim: GenieSimulator, client: GenieClient, retry: RetryPolicy
) -> None:
    """A cursor taken while a confirmation waits carries it; the resumed stream asks the hook."""
    sim.default_turn = Turn(Confirm("Submit"), Say("Submitted"))
    conversation = await client.create_conversation()
    async with conversation.send("book") as stream:
        async for event in stream:
            if isinstance(event, SkillConfirmationRequired):
                break  # a worker checkpoints and hands the turn over
        cursor = stream.cursor
    assert cursor.pending_confirmation is not None
    asked: list[str] = []

    async def approve(event: SkillConfirmationRequired) -> Approve:
        asked.append(event.call_id)
        return Approve()

    async with make_client(sim, retry) as other:
        resumed = other.conversation(conversation.conversation_id).resume(
            cursor, on_skill_confirmation=approve
        )
        async with resumed:
            events = [event async for event in resumed]
        await assert_no_open_connections(other, sim)
    assert asked == [cursor.pending_confirmation.call_id]
    assert isinstance(events[0], SkillConfirmationRequired)
    assert texts(events) == ["Submitted"]
    assert [a.resolution for a in sim.approvals()] == ["approved"]


async def test_a_failing_link_endpoint_does_not_lose_the_turn(
    sim: GenieSimulator, client: GenieClient
) -> None:
    """A 500 from the link endpoint: the pause is still delivered and the turn completes."""
    sim.default_turn = Turn(
        Say("Let me check Salesforce."),
        ConnectAuth("Salesforce", fields="attempt_id", then=(Say("Synced"),)),
    )
    sim.fail("link", 500, times=2)
    requests: list[AuthRequest] = []

    async def on_auth(request: AuthRequest) -> None:
        requests.append(request)
        if request.link is not None:
            asyncio.get_running_loop().call_later(0.05, sim.authorize)

    conversation = await client.create_conversation()
    reply = await conversation.ask("sync", on_auth_required=on_auth)
    assert texts(reply.events) == ["Let me check Salesforce.", "Synced"]
    assert requests[-1].link is not None  # handed over once the polling got it


async def test_closing_during_the_send_backoff_stops_the_send(
    sim: GenieSimulator, retry: RetryPolicy
) -> None:
    """aclose() while the send waits to retry: no second POST, the reader is told it closed."""
    sim.fail("send", 503, retry_after="1")
    policy = RetryPolicy()  # real sleeps: the close must interrupt the 1 s wait
    async with make_client(sim, policy) as client:
        conversation = await client.create_conversation()
        stream = conversation.send("please delete everything")
        reader = asyncio.ensure_future(stream.until_done())
        await asyncio.sleep(0.3)
        started = time.monotonic()
        await stream.aclose()
        with pytest.raises(StreamClosedError):
            await asyncio.wait_for(reader, 5)
        assert time.monotonic() - started < 0.5
        assert [r.status for r in sim.requests("send")] == [503]
        await assert_no_open_connections(client, sim)


async def test_holding_an_event_longer_than_the_stall_timeout_is_not_a_stall(
    sim: GenieSimulator, retry: RetryPolicy
) -> None:
    """A consumer deliberating over a confirmation (no hook) longer than stall is fine."""
    sim.default_turn = Turn(Confirm("Submit"), Say("Done"))
    async with make_client(sim, retry, timeouts=Timeouts(stall=0.3, decision=5)) as client:
        conversation = await client.create_conversation()
        async with conversation.send("book") as stream:
            events: list[GenieEvent] = []
            async for event in stream:
                events.append(event)
                if isinstance(event, SkillConfirmationRequired):
                    await asyncio.sleep(0.8)  # a person reading the card
                    record = await stream.approve()
                    assert record.resolution == "approved"
        assert texts(events) == ["Done"]


async def test_a_parked_turn_is_not_a_stall_while_keep_alives_trickle(
    retry: RetryPolicy,
) -> None:
    """Only keep-alives follow an auth pause: the stall deadline must not end the turn."""
    async with GenieSimulator(ping_interval=0.05, auth_interrupt_after=1.0) as sim:
        sim.default_turn = Turn(ConnectAuth("Salesforce", then=(Say("Leads synced"),)))

        async def on_auth(request: AuthRequest) -> None:
            asyncio.get_running_loop().call_later(0.6, sim.authorize)

        timeouts = Timeouts(stall=0.3, decision=5, auth=10)
        async with make_client(sim, retry, timeouts=timeouts) as client:
            conversation = await client.create_conversation()
            reply = await conversation.ask("sync my leads", on_auth_required=on_auth)
            assert reply.text == "Leads synced"


async def test_replayed_progress_resets_the_recovery_budget(sim: GenieSimulator) -> None:
    """A turn that keeps progressing through /events replay is never cut off by the budget."""
    sim.default_turn = Turn(
        Say("start"),
        *(Say(f"progress {i}", delay=0.4) for i in range(5)),
        faults=[StreamFault("abort", after_events=2, connection=None)],
    )
    sim.fail("reconnect", 404, times=1000)
    policy = RetryPolicy(wait_initial=0.2, wait_max=0.4, wait_budget=1.0)
    async with make_client(sim, policy) as client:
        conversation = await client.create_conversation()
        reply = await conversation.ask("long job")
        assert texts(reply.events) == ["start", *(f"progress {i}" for i in range(5))]
        await assert_no_open_connections(client, sim)


async def test_a_spent_budget_says_what_failed_last(sim: GenieSimulator) -> None:
    """RecoveryError carries the last failure as its cause, with its request id."""
    sim.default_turn = Turn(Say("a"), Say("b"), faults=[StreamFault("abort", after_events=1)])
    sim.fail("reconnect", 503, times=1000)
    sim.fail("events", 503, times=1000)
    policy = RetryPolicy(wait_initial=0.05, wait_max=0.1, wait_budget=0.3)
    async with make_client(sim, policy) as client:
        conversation = await client.create_conversation()
        with pytest.raises(RecoveryError) as info:
            await conversation.ask("x")
        assert info.value.__cause__ is not None
        assert info.value.request_id is not None
        await assert_no_open_connections(client, sim)


async def test_cancelling_the_reader_cancels_the_hook(
    sim: GenieSimulator, client: GenieClient
) -> None:
    """The hook task does not outlive a cancelled reader; nothing is posted."""
    sim.default_turn = Turn(Confirm("Submit"), Say("done"))
    hook_state: list[str] = []

    async def hook(event: SkillConfirmationRequired) -> Approve:
        hook_state.append("started")
        try:
            await asyncio.sleep(1.0)
        except asyncio.CancelledError:
            hook_state.append("cancelled")
            raise
        hook_state.append("finished")
        return Approve()

    conversation = await client.create_conversation()
    task = asyncio.ensure_future(conversation.ask("submit", on_skill_confirmation=hook))
    await asyncio.sleep(0.3)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert hook_state == ["started", "cancelled"]
    await asyncio.sleep(0.1)
    assert sim.approvals() == []


async def test_cancelling_during_a_slow_hook_cleanup_is_not_swallowed(
    sim: GenieSimulator, retry: RetryPolicy
) -> None:
    """A cancellation arriving while a timed-out hook tidies up still cancels the reader."""
    sim.default_turn = Turn(Confirm("Submit"), Say("done"))

    async def hook(event: SkillConfirmationRequired) -> Approve:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            await asyncio.sleep(0.5)  # dismissing a dialog, say
            raise
        return Approve()

    timeouts = Timeouts(decision=0.3, stall=10)
    async with make_client(sim, retry, timeouts=timeouts) as client:
        conversation = await client.create_conversation()
        task = asyncio.ensure_future(conversation.ask("submit", on_skill_confirmation=hook))
        await asyncio.sleep(0.5)  # the decision timed out; the hook is tidying up
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert task.cancelled()


async def test_a_hook_raising_its_own_timeout_error_is_a_hook_error(
    sim: GenieSimulator, client: GenieClient
) -> None:
    """A TimeoutError from inside the hook is the hook failing, not the decision timing out."""
    sim.default_turn = Turn(Confirm("Submit"))

    async def hook(event: SkillConfirmationRequired) -> Approve:
        raise TimeoutError("the approvals service timed out")

    conversation = await client.create_conversation()
    with pytest.raises(HookError) as info:
        await conversation.ask("submit", on_skill_confirmation=hook)
    assert isinstance(info.value.__cause__, TimeoutError)


async def test_approve_reports_a_decision_made_first_by_the_timeout(
    sim: GenieSimulator, retry: RetryPolicy
) -> None:
    """approve() after the fail-closed timeout rejected returns that rejection."""
    sim.default_turn = Turn(Confirm("Submit"))
    async with make_client(sim, retry, timeouts=Timeouts(decision=0.2, stall=10)) as client:
        conversation = await client.create_conversation()
        async with conversation.send("book") as stream:
            async for event in stream:
                if isinstance(event, SkillConfirmationRequired):
                    await asyncio.sleep(0.1)
                    break
            # Let the no-hook decision clock run out while we keep reading.
            rest = [event async for event in stream]
            record = await stream.approve(event.call_id)
        assert record.resolution == "rejected"
        assert record.source == "timeout"
        assert isinstance(rest[-1], ProcessingFinished)


async def test_an_accepted_send_whose_run_cannot_be_attached_is_recovered(
    sim: GenieSimulator, client: GenieClient
) -> None:
    """502 after accept, then genie-runs refuses the run: the turn comes from /events instead."""
    sim.default_turn = Turn(Say("a"), Say("b"))
    sim.fail("send", 502, after_accept=True)
    sim.fail("reconnect", 410, times=10)
    conversation = await client.create_conversation()
    reply = await conversation.ask("x")
    assert texts(reply.events) == ["a", "b"]
    assert len(sim.requests("send")) == 1


async def test_the_accept_check_finds_the_message_below_a_chatty_reply(
    sim: GenieSimulator, client: GenieClient
) -> None:
    """More genie replies than one history page above our message: still no duplicate."""
    sim.default_turn = Turn(*(Say(f"note {i}") for i in range(45)))
    sim.fail("send", 502, after_accept=True)
    conversation = await client.create_conversation()
    reply = await conversation.ask("summarise everything")
    users = [
        m for m in sim.conversation(conversation.conversation_id).messages if m.source == "user"
    ]
    assert [m.content for m in users] == ["summarise everything"]
    assert len(texts(reply.events)) == 45


async def test_every_reply_of_a_resumed_run_is_delivered(
    sim: GenieSimulator, client: GenieClient
) -> None:
    """A resumed run writing several messages over time: all of them arrive, in order."""
    sim.default_turn = Turn(
        ConnectAuth(
            "Salesforce",
            then=(Say("one"), Say("two", delay=0.3), Say("three", delay=0.3)),
        )
    )

    async def on_auth(request: AuthRequest) -> None:
        asyncio.get_running_loop().call_later(0.05, sim.authorize)

    conversation = await client.create_conversation()
    reply = await conversation.ask("sync", on_auth_required=on_auth)
    assert texts(reply.events) == ["one", "two", "three"]


async def test_a_resend_is_never_taken_for_an_earlier_message_whose_stream_died_early(
    sim: GenieSimulator, retry: RetryPolicy
) -> None:
    """ "yes" stalls before its first event; a second "yes" failing with 503 is posted again."""
    sim.next_turn(Turn(Say("first answer"), faults=[StreamFault("stall", after_events=0)]))
    async with make_client(sim, retry, timeouts=Timeouts(stall=0.3, decision=5)) as client:
        conversation = await client.create_conversation()
        with pytest.raises(StreamStalledError):
            await conversation.ask("yes")
        sim.fail("send", 503)
        second = await client.conversation(conversation.conversation_id).ask("yes")  # new handle
        assert second.text == "You said: yes"
        users = [
            m for m in sim.conversation(conversation.conversation_id).messages if m.source == "user"
        ]
        assert [m.content for m in users] == ["yes", "yes"]
        assert second.genie_run_id == users[1].genie_run_id


async def test_every_handle_of_a_conversation_shares_what_the_client_knows(
    client: GenieClient,
) -> None:
    """Runs streamed through one handle are known to a fresh handle of the same conversation."""
    conversation = await client.create_conversation()
    reply = await conversation.ask("hi")
    fresh = client.conversation(conversation.conversation_id)
    assert reply.genie_run_id in fresh.known_runs
    assert (
        reply.genie_run_id
        in client.as_user("someone").conversation(conversation.conversation_id).known_runs
    )


# --- found by the examples (docs/examples): resuming across processes --------------------------


async def test_replies_after_an_auth_pause_are_covered_by_the_cursor(
    sim: GenieSimulator, client: GenieClient
) -> None:
    """A cursor taken after a reply read from history resumes past it; the end is marked."""
    sim.default_turn = Turn(ConnectAuth("Salesforce", then=(Say("one"), Say("two"))))

    async def authorize_soon(request: AuthRequest) -> None:
        asyncio.get_running_loop().call_later(0.05, sim.authorize)

    conversation = await client.create_conversation()
    cursors = []
    async with conversation.send("deals", on_auth_required=authorize_soon) as stream:
        async for event in stream:
            if isinstance(event, AgentMessage):
                cursors.append((event.text, stream.cursor))
        final = stream.cursor
    assert [text for text, _ in cursors] == ["one", "two"]
    after_one = cursors[0][1]
    assert len(after_one.history_message_ids) == 1
    async with conversation.resume(after_one) as resumed:
        rest = [event async for event in resumed]
    assert texts(rest) == ["two"]
    assert final.finished
    async with conversation.resume(final) as ended:
        assert [event async for event in ended] == []


async def test_resuming_a_confirmation_decided_before_the_crash_goes_on(
    sim: GenieSimulator, client: GenieClient
) -> None:
    """The decision was posted but the cursor still shows the pause: a 409 does not end the turn."""
    sim.default_turn = Turn(Confirm("Submit", on_approve=(Say("submitted"),)))
    conversation = await client.create_conversation()
    async with conversation.send("book it") as stream:
        async for event in stream:
            if isinstance(event, SkillConfirmationRequired):
                before_decision = stream.cursor  # saved, then the process "dies" after deciding
                await stream.approve()
                break
    assert before_decision.pending_confirmation is not None
    asked: list[str] = []

    async def approve(event: SkillConfirmationRequired) -> Approve:
        asked.append(event.call_id)
        return Approve()

    async with conversation.resume(before_decision, on_skill_confirmation=approve) as resumed:
        rest = [event async for event in resumed]
        record = resumed.decisions[asked[0]]
    assert record.resolution == "already_decided"
    assert texts(rest) == ["submitted"]
    assert isinstance(rest[-1], ProcessingFinished)
    assert len(sim.approvals()) == 2  # ours was refused with 409; the turn went on regardless


async def test_attach_connects_at_once(
    sim: GenieSimulator, client: GenieClient, clock: VirtualClock
) -> None:
    """attach() and resume() open the run without a backoff wait: nothing has failed yet."""
    sim.default_turn = Turn(Say("hello"))
    conversation = await client.create_conversation()
    handle = await conversation.send("hi", stream=False)
    started = clock.now()
    async with conversation.attach(handle.genie_run_id) as stream:
        events = [event async for event in stream]
    assert texts(events) == ["hello"]
    assert clock.now() == started


async def test_approving_a_call_decided_elsewhere_reports_it_as_such(
    sim: GenieSimulator, client: GenieClient
) -> None:
    """approve() on a call the cursor records as already_decided says so, not "rejected"."""
    sim.default_turn = Turn(Confirm("Submit", on_approve=(Say("submitted"),)))
    conversation = await client.create_conversation()
    async with conversation.send("book it") as stream:
        async for event in stream:
            if isinstance(event, SkillConfirmationRequired):
                call_id = event.call_id
                before_decision = stream.cursor
                await stream.approve()
                break

    async def approve(event: SkillConfirmationRequired) -> Approve:
        return Approve()

    async with conversation.resume(before_decision, on_skill_confirmation=approve) as resumed:
        await resumed.until_done()
        cursor = resumed.cursor
    assert cursor.decided[call_id] == "already_decided"
    async with conversation.resume(cursor) as again:
        record = await again.approve(call_id)
    assert record.resolution == "already_decided"
