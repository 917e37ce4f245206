"""The web app's relay over plain HTTP: SSE ids, Last-Event-ID resumes, decisions, cleanup."""

from __future__ import annotations

import asyncio
import signal
import socket
import sys
from types import ModuleType

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from genie_async.testing import Confirm, ConnectAuth, GenieSimulator, Say, Turn, Wait

from .conftest import EXAMPLES, Browser, Frame

PTO = "How much PTO do I have?"
BOOK = "Book Dec 21-23 off, please."
DEALS = "Show my Salesforce deals."


def turn_frames(frames: list[Frame]) -> list[Frame]:
    """The frames that carry a genie event (they have SSE ids); not done/failed."""
    return [f for f in frames if f.name not in ("done", "failed")]


def run_event_types(sim: GenieSimulator, conversation_id: str) -> list[str]:
    """The event types the simulator persisted for the conversation's last run, in order."""
    run = sim.conversation(conversation_id).runs[-1]
    return [
        e.type for e in run.events if e.type not in ("system.ping", "system.stream_interrupted")
    ]


async def wait_until(condition: object, timeout: float = 10.0) -> None:
    """Poll a zero-argument callable until it returns true."""
    assert callable(condition)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, "timed out waiting for the condition"
        await asyncio.sleep(0.02)


async def test_turn_relayed_with_consecutive_ids(
    browser: Browser, webapp_sim: GenieSimulator
) -> None:
    """Every genie event of a turn arrives once, in order, with SSE ids 1, 2, 3, …; then done."""
    cid = await browser.new_conversation()
    turn = await browser.send(cid, PTO)
    async with browser.events(turn["events_url"]) as reader:
        frames = await reader.rest()
    assert frames[-1].name == "done"
    assert frames[-1].data == {"outcome": "completed"}
    events = turn_frames(frames)
    assert [f.id for f in events] == [str(n) for n in range(1, len(events) + 1)]
    assert [f.data["type"] for f in events] == run_event_types(webapp_sim, cid)
    replies = [f.data["text"] for f in events if f.name == "reply"]
    assert replies == ["Let me look that up…", "You have **12 days** of PTO left this year."]
    assert [f.data["state"] for f in events if f.name == "skill"] == ["running", "done"]


async def test_last_event_id_resumes_without_repeats(
    browser: Browser, webapp_sim: GenieSimulator, webapp_server: TestServer, webapp: ModuleType
) -> None:
    """A page whose last event was 2 reconnects with Last-Event-ID: 2 and gets 3.. exactly."""
    webapp_sim.next_turn(Turn(Say("one"), Say("two", delay=0.5), Say("three", delay=0.5)))
    cid = await browser.new_conversation()
    turn = await browser.send(cid, "count")
    async with browser.events(turn["events_url"]) as reader:
        sent = await reader.until("reply", text="two")
    assert [f.id for f in sent] == ["1", "2", "3"]
    # The page is gone: the relay's handler is cancelled and the genie stream closed.
    record = webapp_server.app[webapp.TURNS][turn["turn_id"]]
    await wait_until(lambda: record.live is None)
    await wait_until(lambda: webapp_sim.open_streams == 0)

    # Event 3 was written but never reached the page (lost in flight): it says it has 2.
    first = sent[:2]
    async with browser.events(turn["events_url"], last_event_id="2") as reader:
        rest = await reader.rest()
    assert rest[-1].name == "done"
    resumed = turn_frames(rest)
    assert [f.id for f in resumed] == [str(n) for n in range(3, 3 + len(resumed))]
    delivered = [f.data["type"] for f in first + resumed]
    assert delivered == run_event_types(webapp_sim, cid)
    texts = [f.data["text"] for f in first + resumed if f.name == "reply"]
    assert texts == ["one", "two", "three"]


async def test_reload_without_last_event_id_replays_the_turn(
    browser: Browser, webapp_sim: GenieSimulator
) -> None:
    """A new page (no Last-Event-ID) reading a turn already under way gets it from its start."""
    webapp_sim.next_turn(Turn(Say("one"), Say("two", delay=0.4)))
    cid = await browser.new_conversation()
    turn = await browser.send(cid, "count")
    async with browser.events(turn["events_url"]) as reader:
        await reader.until("reply", text="one")
    async with browser.events(turn["events_url"]) as reader:
        frames = await reader.rest()
    assert [f.data.get("text") for f in frames if f.name == "reply"] == ["one", "two"]
    assert [f.data["type"] for f in turn_frames(frames)] == run_event_types(webapp_sim, cid)
    assert len(webapp_sim.requests("send")) == 1  # the message was sent once


async def test_approve_endpoint_resumes_the_turn(
    browser: Browser, webapp_sim: GenieSimulator
) -> None:
    """The confirmation card's Approve posts back; the same SSE response carries on."""
    cid = await browser.new_conversation()
    turn = await browser.send(cid, BOOK)
    async with browser.events(turn["events_url"]) as reader:
        frames = await reader.until("confirmation")
        card = frames[-1].data
        assert card["skill"] == "Submit Time Off Request"
        assert {"label": "First day", "value": "2026-12-21"} in card["parameters"]
        status, body = await browser.decide(turn["turn_id"], card["call_id"], "approve")
        assert (status, body) == (200, {"resolution": "approved", "source": "consumer"})
        rest = await reader.rest()
    texts = [f.data["text"] for f in rest if f.name == "reply"]
    assert texts == ["Done: **Dec 21-23** are booked off. Enjoy the break!"]
    assert rest[-1].name == "done"
    [approval] = webapp_sim.approvals()
    assert (approval.call_id, approval.resolution) == (card["call_id"], "approved")
    # The turn is over: nothing waits for a decision any more.
    assert (await browser.decide(turn["turn_id"], card["call_id"], "reject"))[0] == 409


async def test_reject_endpoint_passes_the_reason(
    browser: Browser, webapp_sim: GenieSimulator
) -> None:
    """Reject posts a rejection with the page's reason; the genie answers accordingly."""
    cid = await browser.new_conversation()
    turn = await browser.send(cid, BOOK)
    async with browser.events(turn["events_url"]) as reader:
        card = (await reader.until("confirmation"))[-1].data
        status, body = await browser.decide(turn["turn_id"], card["call_id"], "reject", "Not now")
        assert (status, body["resolution"]) == (200, "rejected")
        rest = await reader.rest()
    assert [f.data["text"] for f in rest if f.name == "reply"] == [
        "Okay, I did not submit anything."
    ]
    [approval] = webapp_sim.approvals()
    assert (approval.resolution, approval.reason) == ("rejected", "Not now")


async def test_decision_endpoint_refuses_what_is_not_waiting(
    browser: Browser, webapp_server: TestServer
) -> None:
    """Unknown calls, bad bodies and other sessions' turns are refused without a genie call."""
    cid = await browser.new_conversation()
    turn = await browser.send(cid, BOOK)
    async with browser.events(turn["events_url"]) as reader:
        card = (await reader.until("confirmation"))[-1].data
        assert (await browser.decide(turn["turn_id"], "call_nope", "approve"))[0] == 409
        assert (await browser.decide(turn["turn_id"], card["call_id"], "maybe"))[0] == 400
        assert (await browser.decide("no-such-turn", card["call_id"], "approve"))[0] == 404
        jar = aiohttp.CookieJar(unsafe=True)
        async with aiohttp.ClientSession(cookie_jar=jar) as other_session:
            other = Browser(other_session, browser.base)
            await other.open_page()
            assert (await other.decide(turn["turn_id"], card["call_id"], "approve"))[0] == 404
        # Still waiting: the page's own decision goes through.
        assert (await browser.decide(turn["turn_id"], card["call_id"], "approve"))[0] == 200
        assert (await reader.rest())[-1].name == "done"


async def test_reconnect_while_a_confirmation_waits_asks_again(
    browser: Browser, webapp_sim: GenieSimulator
) -> None:
    """Dropped before deciding: the reconnect shows the card again, and deciding then works."""
    cid = await browser.new_conversation()
    turn = await browser.send(cid, BOOK)
    async with browser.events(turn["events_url"]) as reader:
        frames = await reader.until("confirmation")
    card = frames[-1]
    async with browser.events(turn["events_url"], last_event_id=card.id) as reader:
        again = (await reader.until("confirmation"))[-1]
        assert again.data["call_id"] == card.data["call_id"]
        assert int(again.id or 0) == int(card.id or 0) + 1
        assert (await browser.decide(turn["turn_id"], card.data["call_id"], "approve"))[0] == 200
        rest = await reader.rest()
    assert rest[-1].name == "done"
    assert [a.status for a in webapp_sim.approvals()] == [200]


async def test_reconnect_after_a_decision_does_not_ask_again(
    browser: Browser, webapp_sim: GenieSimulator
) -> None:
    """Dropped right after deciding: the reconnect continues the turn; no second card."""
    webapp_sim.next_turn(Turn(Confirm("Delete file", on_approve=[Say("Deleted.", delay=0.6)])))
    cid = await browser.new_conversation()
    turn = await browser.send(cid, "delete it")
    async with browser.events(turn["events_url"]) as reader:
        card = (await reader.until("confirmation"))[-1]
        assert (await browser.decide(turn["turn_id"], card.data["call_id"], "approve"))[0] == 200
    async with browser.events(turn["events_url"], last_event_id=card.id) as reader:
        rest = await reader.rest()
    assert [f.name for f in rest if f.name == "confirmation"] == []
    assert [f.data["text"] for f in rest if f.name == "reply"] == ["Deleted."]
    assert rest[-1].name == "done"
    assert [a.status for a in webapp_sim.approvals()] == [200]


async def test_auth_pause_shows_the_link_and_resumes(
    browser: Browser, webapp_sim: GenieSimulator
) -> None:
    """The auth card carries the connector and its link; once opened, the reply follows."""
    cid = await browser.new_conversation()
    turn = await browser.send(cid, DEALS)
    async with browser.events(turn["events_url"]) as reader:
        card = (await reader.until("auth"))[-1].data
        assert card["connector"] == "Salesforce"
        assert card["url"].startswith(webapp_sim.url)
        assert card["attempt_id"] == webapp_sim.pending_auth_attempts()[0]
        # The user opens the link (the simulator's link page authorizes the connection).
        async with aiohttp.ClientSession() as user, user.get(card["url"]) as response:
            assert response.status == 200
        rest = await reader.rest()
    texts = [f.data["text"] for f in rest if f.name == "reply"]
    assert texts == ["You have **3** open opportunities, worth $42,000 in total."]
    assert rest[-1].data == {"outcome": "completed"}


async def test_reconnect_after_the_resumed_reply_does_not_repeat_it(
    browser: Browser, webapp_sim: GenieSimulator
) -> None:
    """After an auth pause, a reconnect past the resumed reply does not deliver it again."""
    webapp_sim.next_turn(Turn(ConnectAuth("Salesforce", then=[Say("one"), Say("two")])))
    cid = await browser.new_conversation()
    turn = await browser.send(cid, "deals")
    async with browser.events(turn["events_url"]) as reader:
        card = (await reader.until("auth"))[-1].data
        webapp_sim.authorize(card["attempt_id"])
        frames = await reader.until("reply", text="two")
    async with browser.events(turn["events_url"], last_event_id=frames[-1].id) as reader:
        rest = await reader.rest()
    assert [f.name for f in rest] == ["done"]


async def test_keepalive_comments_while_the_genie_is_quiet(
    browser: Browser,
    webapp_sim: GenieSimulator,
    webapp: ModuleType,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A quiet turn gets SSE comments, which EventSource ignores but proxies see as traffic."""
    monkeypatch.setattr(webapp, "KEEPALIVE_SECONDS", 0.05)
    webapp_sim.next_turn(Turn(Say("hm"), Wait(0.5), Say("there")))
    cid = await browser.new_conversation()
    turn = await browser.send(cid, "slow")
    async with browser.events(turn["events_url"]) as reader:
        frames = await reader.rest()
    assert b"\n: keep-alive\n\n" in reader.raw
    assert [f.data.get("text") for f in frames if f.name == "reply"] == ["hm", "there"]


async def test_failed_turn_is_reported(browser: Browser, webapp_sim: GenieSimulator) -> None:
    """A turn the library gives up on ends with a `failed` event carrying the request id."""
    cid = await browser.new_conversation()
    webapp_sim.fail("send", 400)  # a request the API refuses outright
    turn = await browser.send(cid, PTO)
    async with browser.events(turn["events_url"]) as reader:
        frames = await reader.rest()
    assert [f.name for f in frames] == ["failed"]
    assert frames[0].data["request_id"]


async def test_requests_are_checked(browser: Browser, webapp_server: TestServer) -> None:
    """Bad input gets 4xx JSON errors: no session, wrong type, empty or unknown conversation."""
    cid = await browser.new_conversation()
    assert (await browser.post(f"/api/conversations/{cid}/messages", {"text": " "}))[0] == 400
    long_text = "x" * 20_000
    assert (await browser.post(f"/api/conversations/{cid}/messages", {"text": long_text}))[0] == 400
    assert (await browser.post("/api/conversations/nope/messages", {"text": "hi"}))[0] == 404
    async with browser.session.post(
        browser.base + "/api/conversations", data="{}", headers={"Content-Type": "text/plain"}
    ) as response:
        assert response.status == 415
    async with (
        aiohttp.ClientSession() as stranger,
        stranger.post(browser.base + "/api/conversations", json={}) as response,
    ):
        assert response.status == 401


async def test_shutdown_ends_live_relays(
    browser: Browser, webapp_sim: GenieSimulator, webapp_server: TestServer
) -> None:
    """Stopping the app ends an open turn's SSE response at once and closes its stream."""
    cid = await browser.new_conversation()
    turn = await browser.send(cid, BOOK)
    async with browser.events(turn["events_url"]) as reader:
        await reader.until("confirmation")
        await asyncio.wait_for(webapp_server.close(), timeout=10)
        assert await asyncio.wait_for(reader.rest(), timeout=10) == []
    await wait_until(lambda: webapp_sim.open_streams == 0)


async def test_page_sets_a_session_cookie_and_csp(webapp_server: TestServer) -> None:
    """The page sets an HttpOnly SameSite session cookie and a same-origin-only CSP."""
    async with (
        aiohttp.ClientSession() as session,
        session.get(webapp_server.make_url("/")) as response,
    ):
        assert response.status == 200
        cookie = response.headers["Set-Cookie"]
        assert "HttpOnly" in cookie
        assert "SameSite=Strict" in cookie
        assert "script-src 'self'" in response.headers["Content-Security-Policy"]
        assert '<script src="/static/app.js"' in await response.text()


async def test_only_the_page_mints_a_session(webapp_server: TestServer, webapp: ModuleType) -> None:
    """Static files set no session cookie: stray requests cannot crowd out real sessions."""
    async with (
        aiohttp.ClientSession() as session,
        session.get(webapp_server.make_url("/static/app.js")) as response,
    ):
        assert response.status == 200
        assert "Set-Cookie" not in response.headers
    assert len(webapp_server.app[webapp.SESSIONS]) == 0


async def test_runs_with_one_command_and_stops_on_sigterm() -> None:
    """`app.py --simulator --port N` serves the page and the API; SIGTERM stops it cleanly."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(EXAMPLES / "webapp" / "app.py"),
        "--simulator",
        "--port",
        str(port),
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stderr is not None
    try:
        line = await asyncio.wait_for(process.stderr.readline(), timeout=60)
        assert f"http://127.0.0.1:{port}/" in line.decode()
        jar = aiohttp.CookieJar(unsafe=True)
        async with aiohttp.ClientSession(cookie_jar=jar) as session:
            page = Browser(session, f"http://127.0.0.1:{port}")
            assert "Genie" in await page.open_page()
            cid = await page.new_conversation()
            turn = await page.send(cid, PTO)
            async with page.events(turn["events_url"]) as reader:
                frames = await reader.rest()
            assert frames[-1].data == {"outcome": "completed"}
    finally:
        process.send_signal(signal.SIGTERM)
        _, rest = await asyncio.wait_for(process.communicate(), timeout=30)
    assert process.returncode == 0, rest.decode()


async def test_cross_origin_posts_are_refused(browser: Browser, webapp_sim: GenieSimulator) -> None:
    """CSRF: a POST another origin's page makes (even a sibling subdomain, which SameSite lets
    through) is refused before it reaches the genie; the app's own page is accepted."""
    cid = await browser.new_conversation()
    turn = await browser.send(cid, BOOK)
    async with browser.events(turn["events_url"]) as reader:
        card = (await reader.until("confirmation"))[-1].data
        url = f"{browser.base}/api/turns/{turn['turn_id']}/confirmations/{card['call_id']}"
        host = browser.base.split("://", 1)[1]
        refused = [
            {"Sec-Fetch-Site": "cross-site"},
            {"Sec-Fetch-Site": "same-site", "Origin": "http://evil.localhost"},
            {"Origin": "http://evil.example"},
            {"Origin": "null"},
        ]
        for headers in refused:
            post = browser.session.post(url, json={"decision": "approve"}, headers=headers)
            async with post as r:
                assert r.status == 403, headers
        assert webapp_sim.approvals() == []  # nothing reached the genie
        same = {"Sec-Fetch-Site": "same-origin", "Origin": f"http://{host}"}
        async with browser.session.post(url, json={"decision": "approve"}, headers=same) as r:
            assert r.status == 200
        assert (await reader.rest())[-1].name == "done"
    [approval] = webapp_sim.approvals()
    assert approval.resolution == "approved"


async def test_session_cookie_is_secure_unless_told_otherwise(
    webapp: ModuleType, webapp_sim: GenieSimulator
) -> None:
    """create_app() marks the session cookie Secure by default (serve() turns it off only for
    plain HTTP on loopback)."""
    sim = webapp_sim
    settings = webapp.GenieSettings(sim.genie_id, sim.api_key, sim.user_id, base_url=sim.url)
    server = TestServer(webapp.create_app(settings, webapp.simulator_end_users(sim)))
    await server.start_server()
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.get(server.make_url("/")) as response,
        ):
            assert response.status == 200
            assert "Secure" in response.headers["Set-Cookie"]
    finally:
        await server.close()


async def test_reconnect_after_a_decision_raced_by_a_later_event(
    browser: Browser,
    webapp_sim: GenieSimulator,
    webapp_server: TestServer,
    webapp: ModuleType,
) -> None:
    """The turn's next event is relayed before the decision endpoint finishes; the page never
    got it and reconnects with the card's id: it must not be asked again."""
    webapp_sim.next_turn(
        Turn(Confirm("Delete file", on_approve=[Say("Deleting…"), Say("Deleted.", delay=0.3)]))
    )
    cid = await browser.new_conversation()
    turn = await browser.send(cid, "delete it")
    record = webapp_server.app[webapp.TURNS][turn["turn_id"]]
    async with browser.events(turn["events_url"]) as reader:
        card = (await reader.until("confirmation"))[-1]
        stream = record.live
        approve = stream.approve
        relayed = len(record.cursors)

        async def slow_approve(call_id: str | None = None) -> object:
            decided = await approve(call_id)
            await wait_until(lambda: len(record.cursors) > relayed)  # "Deleting…" went out
            return decided

        stream.approve = slow_approve
        assert (await browser.decide(turn["turn_id"], card.data["call_id"], "approve"))[0] == 200
    async with browser.events(turn["events_url"], last_event_id=card.id) as reader:
        rest = await reader.rest()
    assert [f.name for f in rest if f.name == "confirmation"] == []
    assert [f.data["text"] for f in rest if f.name == "reply"] == ["Deleting…", "Deleted."]
    assert rest[-1].name == "done"
    assert [a.status for a in webapp_sim.approvals()] == [200]


async def test_sse_sink_exit_does_not_swallow_a_cancellation(webapp: ModuleType) -> None:
    """A handler cancelled while the sink stops its keep-alive task stays cancelled."""
    sink = webapp.SSESink.__new__(webapp.SSESink)
    finishing = asyncio.Event()

    async def keep_alive() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            await finishing.wait()  # e.g. a write in progress under the lock
            raise

    sink._keepalive = asyncio.create_task(keep_alive())
    await asyncio.sleep(0)

    async def handler() -> None:
        await sink.__aexit__(None, None, None)

    task = asyncio.create_task(handler())
    await asyncio.sleep(0.01)  # the handler waits for the keep-alive task to end
    task.cancel()  # aiohttp cancels the handler: the page went away
    await asyncio.sleep(0.01)
    finishing.set()
    await asyncio.wait({task, sink._keepalive}, timeout=5)
    assert task.cancelled()
