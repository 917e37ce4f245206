"""Every REST call of the runtime API, against the simulator over loopback HTTP."""

from __future__ import annotations

import io
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Literal

import aiohttp
import pytest

from genie_async import (
    AuthFailedError,
    ClientClosedError,
    ConversationInfo,
    FileTooLargeError,
    GenieClient,
    InvalidIdError,
    Message,
    MessageTooLongError,
    NotFoundError,
    RetryPolicy,
    RunHandle,
    UploadedFile,
)
from genie_async.events import AgentMessage, ProcessingFinished, ProcessingStarted
from genie_async.testing import Confirm, ConnectAuth, GenieSimulator, Say, Turn

from .conftest import assert_no_open_connections, make_client


@pytest.fixture
async def enveloped(
    envelope: Literal["wrapped", "flat"], retry: RetryPolicy
) -> AsyncIterator[tuple[GenieSimulator, GenieClient]]:
    """The simulator in one envelope mode, and a client for it."""
    async with (
        GenieSimulator(envelope=envelope, ping_interval=0.02, topic_delay=0.3) as sim,
        make_client(sim, retry) as client,
    ):
        yield sim, client
        await assert_no_open_connections(client, sim)


async def test_create_conversation(enveloped: tuple[GenieSimulator, GenieClient]) -> None:
    """POST /conversations returns a conversation the server knows, in both envelopes."""
    sim, client = enveloped
    conversation = await client.create_conversation()
    assert sim.conversation(conversation.conversation_id).state == "idle"


async def test_conversation_info_backfills_id_and_state(
    enveloped: tuple[GenieSimulator, GenieClient],
) -> None:
    """GET /conversations/{id}: state and id (backfilled when the wrapped body omits it)."""
    _, client = enveloped
    conversation = await client.create_conversation()
    info = await conversation.info()
    assert isinstance(info, ConversationInfo)
    assert info.conversation_id == conversation.conversation_id
    assert info.is_idle
    assert info.request_id


async def test_numeric_topic_falls_back_to_first_user_message(
    enveloped: tuple[GenieSimulator, GenieClient],
) -> None:
    """While the topic is a numeric placeholder, display_topic is the first user message."""
    _, client = enveloped
    conversation = await client.create_conversation()
    await conversation.ask("What is our travel policy?")
    info = await conversation.info()
    assert info.topic_is_placeholder
    assert info.display_topic == "What is our travel policy?"


async def test_generated_topic_is_used_once_ready(sim: GenieSimulator, client: GenieClient) -> None:
    """After generation, the topic itself is the display title (and the list has it too)."""
    conversation = await client.create_conversation()
    await conversation.ask("Summarise the onboarding checklist")
    sim.clock.advance(5)
    info = await conversation.info()
    assert not info.topic_is_placeholder
    assert info.display_topic == info.topic
    listed = [c async for c in client.conversations()]
    assert listed[0].topic == info.topic


async def test_list_conversations_follows_cursors(
    enveloped: tuple[GenieSimulator, GenieClient],
) -> None:
    """conversations() pages with the cursor, most recent first, each exactly once."""
    sim, client = enveloped
    created = [(await client.create_conversation()).conversation_id for _ in range(7)]
    listed = [c.conversation_id async for c in client.conversations(page_size=3)]
    assert sorted(listed) == sorted(created)
    assert len(sim.requests("list_conversations")) == 3
    page = await client.list_conversations(limit=3)
    assert len(page.items) == 3
    assert page.cursor is not None
    assert page.request_id


async def test_message_history_is_oldest_first_for_the_caller(
    enveloped: tuple[GenieSimulator, GenieClient],
) -> None:
    """messages() reverses the API's newest-first pages; newest_first keeps its order."""
    sim, client = enveloped
    conversation = await client.create_conversation()
    for text in ("one", "two", "three"):
        await conversation.ask(text)
    oldest_first = [m async for m in conversation.messages(page_size=2)]
    assert [m.source for m in oldest_first] == ["user", "genie"] * 3
    assert [m.content for m in oldest_first if m.source == "user"] == ["one", "two", "three"]
    newest_first = [m async for m in conversation.messages(newest_first=True, page_size=4)]
    assert [m.message_id for m in newest_first] == [m.message_id for m in reversed(oldest_first)]
    assert all(isinstance(m, Message) and m.request_id for m in oldest_first)
    expected = [m.message_id for m in sim.conversation(conversation.conversation_id).messages]
    assert [m.message_id for m in oldest_first] == expected


async def test_persisted_events_page_without_duplicates(retry: RetryPolicy) -> None:
    """events() follows next_since_created_at; the inclusive boundary never duplicates."""
    async with GenieSimulator(events_page_size=3, ping_interval=0.02) as sim:
        sim.default_turn = Turn(*(Say(f"part {i}") for i in range(5)))
        async with make_client(sim, retry) as client:
            conversation = await client.create_conversation()
            await conversation.ask("go")
            await conversation.ask("again")
            events = [e async for e in conversation.events(page_size=3)]
            expected = [e.event_id for e in sim.conversation(conversation.conversation_id).events]
            assert [e.event_id for e in events] == expected
            assert len(expected) == 14
            assert len(sim.requests("events")) > 4


async def test_events_request_uses_since_created_at(
    sim: GenieSimulator, client: GenieClient
) -> None:
    """The recovery query sends conversation_id and an RFC 3339 since_created_at."""
    conversation = await client.create_conversation()
    await conversation.ask("hi")
    [_ async for _ in conversation.events()]
    query = sim.requests("events")[0].query
    assert query["conversation_id"] == conversation.conversation_id
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", query["since_created_at"])


async def test_send_without_stream_returns_a_run_handle(
    enveloped: tuple[GenieSimulator, GenieClient],
) -> None:
    """send(stream=False) returns the run, which attach() then streams from its start."""
    sim, client = enveloped
    conversation = await client.create_conversation()
    handle = await conversation.send("hello", stream=False)
    assert isinstance(handle, RunHandle)
    assert handle.genie_run_id is not None
    assert handle.conversation_id == conversation.conversation_id
    async with conversation.attach(handle.genie_run_id) as stream:
        kinds = [type(e) async for e in stream]
    assert kinds == [ProcessingStarted, AgentMessage, ProcessingFinished]
    assert sim.requests("send")[0].json == {"message": "hello", "stream": False}


@pytest.mark.parametrize("kind", ["path", "bytes", "fileobj"])
async def test_upload_accepts_path_bytes_and_file_objects(
    kind: str, tmp_path: Path, sim: GenieSimulator, client: GenieClient
) -> None:
    """upload() sends one multipart part named 'file' and returns the file_id."""
    content = b"%PDF-1.7 fake"
    conversation = await client.create_conversation()
    if kind == "path":
        path = tmp_path / "policy.pdf"
        path.write_bytes(content)
        uploaded = await conversation.upload(path)
    elif kind == "bytes":
        uploaded = await conversation.upload(content, filename="policy.pdf")
    else:
        uploaded = await conversation.upload(io.BytesIO(content), filename="policy.pdf")
    assert isinstance(uploaded, UploadedFile)
    assert uploaded.file_id
    record = sim.uploads[-1]
    assert (record.filename, record.size) == ("policy.pdf", len(content))
    assert record.content_type == "application/pdf"


async def test_send_with_an_uploaded_file_passes_its_id(
    sim: GenieSimulator, client: GenieClient
) -> None:
    """The file_id is passed in the message's file_id parameter; bytes are uploaded first."""
    conversation = await client.create_conversation()
    uploaded = await conversation.upload(b"data", filename="a.txt")
    await conversation.ask("read this", file=uploaded)
    await conversation.ask("and this", file=b"more")
    bodies = [r.json for r in sim.requests("send")]
    assert bodies[0]["file_id"] == uploaded.file_id
    assert bodies[1]["file_id"] == sim.uploads[-1].file_id


async def test_files_over_20_mb_are_refused_before_sending(
    tmp_path: Path, sim: GenieSimulator, client: GenieClient
) -> None:
    """More than 20 MB raises FileTooLargeError and nothing reaches the server."""
    conversation = await client.create_conversation()
    big = tmp_path / "big.bin"
    with big.open("wb") as handle:
        handle.truncate(20 * 1024 * 1024 + 1)
    for file in (big, b"x" * (20 * 1024 * 1024 + 1), io.BytesIO(b"y" * (20 * 1024 * 1024 + 1))):
        with pytest.raises(FileTooLargeError, match="20 MB"):
            await conversation.upload(file)  # type: ignore[arg-type]
    assert sim.requests("upload") == []


async def test_exactly_20_mb_is_accepted(sim: GenieSimulator, client: GenieClient) -> None:
    """The limit is inclusive: exactly 20 MiB (20 * 1024 * 1024 bytes) uploads fine."""
    conversation = await client.create_conversation()
    uploaded = await conversation.upload(b"z" * (20 * 1024 * 1024), filename="max.bin")
    assert sim.uploads[-1].size == 20 * 1024 * 1024
    assert uploaded.file_id


async def test_message_over_the_limit_is_refused_locally(
    sim: GenieSimulator, client: GenieClient
) -> None:
    """12,289 characters raise MessageTooLongError before any request; 12,288 are sent."""
    conversation = await client.create_conversation()
    with pytest.raises(MessageTooLongError):
        conversation.send("x" * 12_289)
    assert sim.requests("send") == []
    await conversation.ask("x" * 12_288)
    assert len(sim.requests("send")) == 1


async def test_skill_approval_outside_a_stream(sim: GenieSimulator, client: GenieClient) -> None:
    """approve_skill/reject_skill post the documented resolution bodies."""
    sim.default_turn = Turn(Confirm("Submit Time Off Request", parameters={"days": 2}))
    conversation = await client.create_conversation()
    await conversation.send("submit", stream=False)
    await sim.wait_for_event(conversation.conversation_id, "skill.confirmation_required")
    [call_id] = sim.pending_approvals()
    await conversation.reject_skill(call_id, "Wrong dates")
    assert [(a.resolution, a.reason) for a in sim.approvals(call_id)] == [
        ("rejected", "Wrong dates")
    ]
    assert sim.requests("skill_approval")[0].json == {
        "resolution": "rejected",
        "rejection_reason": "Wrong dates",
    }


async def test_runtime_connection_link_and_reject(sim: GenieSimulator, client: GenieClient) -> None:
    """The link endpoint reports auth_required with a link, then authorized; reject ends it."""
    sim.default_turn = Turn(ConnectAuth("Salesforce"))
    conversation = await client.create_conversation()
    await conversation.send("sf", stream=False)
    await sim.wait_for_event(conversation.conversation_id, "runtime_connection.auth_required")
    [attempt] = sim.pending_auth_attempts()
    link = await client.runtime_connection_link(attempt)
    assert link.status == "auth_required"
    assert link.auth_link is not None
    assert link.auth_link.connector_name == "Salesforce"
    assert link.auth_link.url.startswith("http")
    sim.authorize(attempt)
    assert (await client.runtime_connection_link(attempt)).authorized
    await sim.wait_idle(conversation.conversation_id)

    second = await client.create_conversation()
    await second.send("sf again", stream=False)
    await sim.wait_for_event(second.conversation_id, "runtime_connection.auth_required")
    [pending] = sim.pending_auth_attempts()
    await client.reject_runtime_connection(pending, "changed my mind")
    assert sim.requests("reject")[0].json == {"reason": "changed my mind"}
    assert (await client.runtime_connection_link(pending)).status == "rejected"
    assert sim.pending_auth_attempts() == []


async def test_unknown_conversation_is_not_found(client: GenieClient) -> None:
    """A conversation id the user does not own is a NotFoundError with a request id."""
    with pytest.raises(NotFoundError) as info:
        await client.conversation("no-such-conversation").info()
    assert info.value.request_id
    assert info.value.status == 404


@pytest.mark.parametrize("odd_id", ["a?b", "a#b", "a b", "%2e%2e", "..x"])
async def test_odd_ids_stay_inside_their_path_segment(
    odd_id: str, sim: GenieSimulator, client: GenieClient
) -> None:
    """Query and fragment characters in ids are encoded: the request path is unchanged."""
    with pytest.raises(NotFoundError):
        await client.conversation(odd_id).info()
    record = sim.requests("get_conversation")[-1]
    assert record.path.endswith("/conversations/" + odd_id)
    assert record.query == {}


@pytest.mark.parametrize("bad_id", ["a/b", "..", "a\nb"])
def test_ids_that_would_change_the_path_are_refused(bad_id: str, client: GenieClient) -> None:
    """Slashes, dot segments and control characters never reach the network."""
    with pytest.raises(InvalidIdError):
        client.conversation(bad_id)


async def test_as_user_acts_as_another_user_on_the_same_pool(
    sim: GenieSimulator, client: GenieClient
) -> None:
    """A view for another end user sends its X-IDP-User-Id over the same session."""
    other = sim.add_user()
    alice = await client.create_conversation()
    bob_client = client.as_user(other)
    bob = await bob_client.create_conversation()
    assert bob_client._core is client._core
    assert {c.conversation_id async for c in bob_client.conversations()} == {bob.conversation_id}
    with pytest.raises(NotFoundError):
        await bob_client.conversation(alice.conversation_id).info()
    await bob_client.close()  # a view's close leaves the shared session open
    await alice.info()


async def test_access_token_and_refreshing_provider(
    sim: GenieSimulator, retry: RetryPolicy
) -> None:
    """An OAuth token works; a provider is asked again and the call retried once after a 401."""
    good = sim.issue_access_token(sim.user_id)
    stale = sim.issue_access_token(sim.user_id)
    sim.revoke_access_token(stale)
    tokens = iter([stale, good, good])
    calls = 0

    async def provider() -> str:
        nonlocal calls
        calls += 1
        return next(tokens)

    async with make_client(sim, retry, api_key=None, user_id=None, token_provider=provider) as c:
        await c.create_conversation()
        assert calls == 2
    assert [r.status for r in sim.requests("create_conversation")] == [401, 200]


async def test_provider_with_force_refresh_is_told_which_call_follows_a_401(
    sim: GenieSimulator, retry: RetryPolicy
) -> None:
    """A caching provider taking force_refresh drops a revoked token after the 401 and recovers."""
    revoked = sim.issue_access_token(sim.user_id)
    sim.revoke_access_token(revoked)
    fresh = sim.issue_access_token(sim.user_id)
    cached: str | None = revoked
    flags: list[bool] = []

    async def provider(*, force_refresh: bool = False) -> str:
        nonlocal cached
        flags.append(force_refresh)
        if force_refresh or cached is None:
            cached = fresh
        return cached

    async with make_client(sim, retry, api_key=None, user_id=None, token_provider=provider) as c:
        await c.create_conversation()
        await c.create_conversation()
    assert flags == [False, True, False]
    assert [r.status for r in sim.requests("create_conversation")] == [401, 200, 200]


async def test_plain_cache_provider_keeps_returning_a_revoked_token(
    sim: GenieSimulator, retry: RetryPolicy
) -> None:
    """A provider without force_refresh is called bare; a cache of a revoked token still fails."""
    revoked = sim.issue_access_token(sim.user_id)
    sim.revoke_access_token(revoked)
    calls = 0

    async def provider() -> str:
        nonlocal calls
        calls += 1
        return revoked

    async with make_client(sim, retry, api_key=None, user_id=None, token_provider=provider) as c:
        with pytest.raises(AuthFailedError):
            await c.create_conversation()
    assert calls == 2


async def test_a_callers_session_is_used_and_left_open(
    sim: GenieSimulator, retry: RetryPolicy
) -> None:
    """A session passed in is used for requests and never closed by the client."""
    async with aiohttp.ClientSession() as session:
        async with make_client(sim, retry, session=session) as c:
            await c.create_conversation()
            assert c._core._session is session
        assert not session.closed


async def test_closed_client_refuses_requests(sim: GenieSimulator, retry: RetryPolicy) -> None:
    """After close(), calls raise ClientClosedError instead of touching a dead session."""
    c = make_client(sim, retry)
    await c.create_conversation()
    await c.close()
    await c.close()  # idempotent
    with pytest.raises(ClientClosedError):
        await c.create_conversation()
