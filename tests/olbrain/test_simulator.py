"""The Olbrain simulator over raw HTTP: auth, gating, E1/E2/E9-E12, errors, faults, replay.

Everything goes through `aiohttp.ClientSession` against the real loopback server, never through
the client library, so these tests pin the wire contract the client is written against.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import re
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from multidict import CIMultiDictProxy

from genie_async.testing import OlbrainSimulator

MiB = 1 << 20
_MISSING: Any = object()


class Api:
    """A thin raw-HTTP helper: every call returns (status, body, headers), body closed."""

    def __init__(self, sim: OlbrainSimulator, http: aiohttp.ClientSession) -> None:
        self.sim = sim
        self.http = http

    def auth(self, key: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {key or self.sim.api_key}"}

    async def call(
        self,
        method: str,
        path: str,
        *,
        json: Any = _MISSING,
        data: Any = None,
        headers: dict[str, str] | None = None,
        key: str | None = None,
        auth: bool = True,
    ) -> tuple[int, Any, CIMultiDictProxy[str]]:
        sent = dict(self.auth(key) if auth else {})
        sent.update(headers or {})
        kwargs: dict[str, Any] = {"headers": sent}
        if json is not _MISSING:
            kwargs["json"] = json
        if data is not None:
            kwargs["data"] = data
        url = path if path.startswith("http") else self.sim.url + path
        async with self.http.request(method, url, **kwargs) as response:
            if response.content_type == "application/json":
                body = await response.json()
            else:
                body = await response.text()
            return response.status, body, response.headers

    async def say(self, agent: str, message: str, **extra: Any) -> dict[str, Any]:
        status, body, _ = await self.call(
            "POST", f"/api/agents/webhook/{agent}", json={"message": message, **extra}
        )
        assert status == 200, body
        return dict(body)


@pytest.fixture
async def olb() -> AsyncIterator[OlbrainSimulator]:
    async with OlbrainSimulator() as sim:
        yield sim


@pytest.fixture
async def api(olb: OlbrainSimulator) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession() as http:
        yield Api(olb, http)


def assert_error(status: int, body: Any, headers: Any, want_status: int, code: str) -> None:
    """The §8.1 envelope with ``code``, and the same request id in body and header."""
    assert status == want_status, body
    assert set(body) == {"error"}, body
    assert body["error"]["code"] == code, body
    assert isinstance(body["error"]["message"], str)
    assert body["error"]["message"]
    assert re.fullmatch(r"req_[0-9a-f]{8}", body["error"]["request_id"])
    assert headers["x-request-id"] == body["error"]["request_id"]


# --------------------------------------------------------------------------- lifecycle


async def test_url_and_key_shapes(olb: OlbrainSimulator) -> None:
    """The simulator serves on loopback and hands out an ak_ key and agt_ ids."""
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", olb.url)
    assert re.fullmatch(r"ak_[0-9a-f]{40}", olb.api_key)
    assert re.fullmatch(r"agt_01[0-9A-Z]{24}", olb.add_workflow_agent())
    assert olb.add_conversational_agent("my-bot") == "my-bot"


async def test_constructor_api_key_and_repr_hides_it() -> None:
    """A given api_key is the valid one, and the repr never shows it."""
    async with OlbrainSimulator(api_key="ak_custom") as sim:
        assert sim.api_key == "ak_custom"
        assert "ak_custom" not in repr(sim)


async def test_not_started_url_and_double_start() -> None:
    """url before start and a second start are errors; close is idempotent."""
    sim = OlbrainSimulator()
    with pytest.raises(RuntimeError):
        _ = sim.url
    await sim.start()
    with pytest.raises(RuntimeError):
        await sim.start()
    await sim.close()
    await sim.close()


async def test_ids_are_deterministic_per_seed() -> None:
    """Two simulators with one seed agree on every id; another seed differs."""
    one, two, other = OlbrainSimulator(seed=3), OlbrainSimulator(seed=3), OlbrainSimulator(seed=4)
    assert one.api_key == two.api_key != other.api_key
    assert one.add_workflow_agent() == two.add_workflow_agent() != other.add_workflow_agent()


async def test_duplicate_agent_id_rejected(olb: OlbrainSimulator) -> None:
    """Adding an agent under a taken id raises."""
    olb.add_workflow_agent("a1")
    with pytest.raises(ValueError, match="already exists"):
        olb.add_conversational_agent("a1")


# -------------------------------------------------------------------------------- auth


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "Bearer",
        "Bearer ",
        "bearer {key}",
        "Token {key}",
        "Bearer  {key}",
        "Bearer sk_live_abc",
        "{key}",
        "Bearer {key} extra",
    ],
)
async def test_missing_or_malformed_authorization_is_401(
    olb: OlbrainSimulator, api: Api, header: str | None
) -> None:
    """Anything but exactly 'Bearer ak_...' is 401 unauthorized."""
    agent = olb.add_conversational_agent()
    headers = {} if header is None else {"Authorization": header.format(key=olb.api_key)}
    status, body, h = await api.call(
        "POST", f"/api/agents/webhook/{agent}", json={"message": "x"}, headers=headers, auth=False
    )
    assert_error(status, body, h, 401, "unauthorized")
    assert olb.sessions == {}


async def test_unknown_and_case_changed_keys_are_401(olb: OlbrainSimulator, api: Api) -> None:
    """An unknown key, or the valid key in another case (keys are case-sensitive), is 401."""
    agent = olb.add_workflow_agent()
    for key in ("ak_nope", olb.api_key.upper().replace("AK_", "ak_")):
        status, body, h = await api.call("GET", f"/api/agents/{agent}/runs", key=key)
        assert_error(status, body, h, 401, "unauthorized")


async def test_revoked_key_is_401_and_readding_restores(olb: OlbrainSimulator, api: Api) -> None:
    """revoke_key makes a working key 401; add_key of it makes it work again."""
    agent = olb.add_workflow_agent()
    extra = olb.add_key()
    assert (await api.call("GET", f"/api/agents/{agent}/runs", key=extra))[0] == 200
    olb.revoke_key(extra)
    status, body, h = await api.call("GET", f"/api/agents/{agent}/runs", key=extra)
    assert_error(status, body, h, 401, "unauthorized")
    assert (await api.call("GET", f"/api/agents/{agent}/runs"))[0] == 200  # others unaffected
    olb.add_key(extra)
    assert (await api.call("GET", f"/api/agents/{agent}/runs", key=extra))[0] == 200
    with pytest.raises(KeyError):
        olb.revoke_key("ak_never_added")


async def test_other_orgs_agent_is_uniform_404(olb: OlbrainSimulator, api: Api) -> None:
    """Another org's agent answers exactly like a missing one: 404 agent_not_found."""
    org = olb.add_organization()
    theirs = olb.add_workflow_agent(organization_id=org)
    their_key = olb.add_key(organization_id=org)
    foreign = await api.call("GET", f"/api/agents/{theirs}/runs")
    missing = await api.call("GET", "/api/agents/agt_missing/runs")
    assert_error(*foreign, 404, "agent_not_found")
    assert_error(*missing, 404, "agent_not_found")
    assert foreign[1]["error"]["message"] == missing[1]["error"]["message"]
    assert (await api.call("GET", f"/api/agents/{theirs}/runs", key=their_key))[0] == 200


async def test_auth_is_checked_before_agent_lookup(api: Api) -> None:
    """An unknown agent without credentials is 401, not 404 (check order §4.0)."""
    status, body, h = await api.call("GET", "/api/agents/agt_missing/runs", auth=False)
    assert_error(status, body, h, 401, "unauthorized")


# -------------------------------------------------------------------------- kind gating

RUN_ROUTES = [
    ("GET", "/runs"),
    ("GET", "/runs/run_x"),
    ("POST", "/runs/run_x/cancel"),
    ("POST", "/runs/run_x/pause"),
    ("POST", "/runs/run_x/retry"),
    ("POST", "/runs/run_x/resume"),
    ("GET", "/runs/run_x/approvals"),
    ("POST", "/runs/run_x/approvals/resolve"),
]
SESSION_ROUTES = [
    ("GET", "/sessions"),
    ("GET", "/sessions/sess_x"),
    ("GET", "/sessions/sess_x/messages"),
    ("GET", "/sessions/sess_x/messages/msg_x"),
]


@pytest.mark.parametrize(("method", "suffix"), RUN_ROUTES)
async def test_run_routes_on_conversational_agent_are_400(
    olb: OlbrainSimulator, api: Api, method: str, suffix: str
) -> None:
    """Run endpoints on a conversational agent: 400 runtime_not_applicable (before 404)."""
    agent = olb.add_conversational_agent()
    status, body, h = await api.call(method, f"/api/agents/{agent}{suffix}")
    assert_error(status, body, h, 400, "runtime_not_applicable")


@pytest.mark.parametrize(("method", "suffix"), SESSION_ROUTES)
async def test_session_routes_on_workflow_agent_are_400(
    olb: OlbrainSimulator, api: Api, method: str, suffix: str
) -> None:
    """Session endpoints on a workflow agent: 400 runtime_not_applicable (before 404)."""
    agent = olb.add_workflow_agent()
    status, body, h = await api.call(method, f"/api/agents/{agent}{suffix}")
    assert_error(status, body, h, 400, "runtime_not_applicable")


async def test_workflow_trigger_alias_on_conversational_is_400(
    olb: OlbrainSimulator, api: Api
) -> None:
    """E13 is workflow-only."""
    agent = olb.add_conversational_agent()
    status, body, h = await api.call("POST", f"/api/workflows/{agent}/trigger", json={})
    assert_error(status, body, h, 400, "runtime_not_applicable")


async def test_unknown_route_and_research_routes(olb: OlbrainSimulator, api: Api) -> None:
    """Unmatched paths are 404 not_found; research routes refuse ak_ keys with 404."""
    agent = olb.add_workflow_agent()
    status, body, h = await api.call("GET", "/api/nothing")
    assert_error(status, body, h, 404, "not_found")
    status, body, h = await api.call("DELETE", f"/api/agents/{agent}/runs")
    assert_error(status, body, h, 404, "not_found")
    status, body, h = await api.call("POST", f"/api/agents/{agent}/research/runs", json={})
    assert_error(status, body, h, 404, "agent_not_found")


# ---------------------------------------------------------------- E1 conversational


async def test_trigger_without_session_creates_one(olb: OlbrainSimulator, api: Api) -> None:
    """A first message makes a session and answers synchronously in the documented shape."""
    agent = olb.add_conversational_agent()
    reply = await api.say(agent, "Order #4421", metadata={"order_id": "4421"}, user_id="u-42")
    assert reply["success"] is True
    assert reply["response"] == "Echo: Order #4421"
    assert re.fullmatch(r"sess_01[0-9A-Z]{24}", reply["session_id"])
    assert re.fullmatch(r"msg_01[0-9A-Z]{24}", reply["message_id"])
    assert reply["agent_id"] == agent
    assert reply["organization_id"] == olb.organization_id
    assert reply["project_id"].startswith("proj_")
    assert reply["files"] == []
    usage = reply["token_usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"] > 0
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", reply["timestamp"])
    session = olb.sessions[reply["session_id"]]
    assert session.user_id == "u-42"
    assert [(m.role, m.content) for m in session.messages] == [
        ("user", "Order #4421"),
        ("assistant", "Echo: Order #4421"),
    ]
    assert session.messages[1].message_id == reply["message_id"]


async def test_trigger_with_session_continues_it(olb: OlbrainSimulator, api: Api) -> None:
    """Passing session_id appends to that session; ids stay stable, message ids differ."""
    agent = olb.add_conversational_agent()
    first = await api.say(agent, "one")
    second = await api.say(agent, "two", session_id=first["session_id"])
    assert second["session_id"] == first["session_id"]
    assert second["message_id"] != first["message_id"]
    assert len(olb.sessions) == 1
    assert len(olb.messages(first["session_id"])) == 4


async def test_trigger_unknown_or_foreign_session_is_404(olb: OlbrainSimulator, api: Api) -> None:
    """An unknown session id, or another agent's, is 404 session_not_found; nothing is stored."""
    agent, other = olb.add_conversational_agent(), olb.add_conversational_agent()
    theirs = (await api.say(other, "hi"))["session_id"]
    for session_id in ("sess_unknown", theirs):
        status, body, h = await api.call(
            "POST",
            f"/api/agents/webhook/{agent}",
            json={"message": "x", "session_id": session_id},
        )
        assert_error(status, body, h, 404, "session_not_found")
    assert len(olb.messages(theirs)) == 2


async def test_custom_sync_and_async_replies(olb: OlbrainSimulator, api: Api) -> None:
    """reply(text, metadata) decides the answer; an async reply is awaited."""

    async def shout(text: str, metadata: dict[str, Any]) -> str:
        await asyncio.sleep(0)
        return text.upper()

    sync = olb.add_conversational_agent(reply=lambda text, meta: f"{meta.get('k')}:{text}")
    a_sync = olb.add_conversational_agent(reply=shout)
    assert (await api.say(sync, "hi", metadata={"k": "v"}))["response"] == "v:hi"
    assert (await api.say(a_sync, "hi"))["response"] == "HI"


async def test_failing_reply_is_502_upstream_error(olb: OlbrainSimulator, api: Api) -> None:
    """A reply that raises surfaces as 502 upstream_error; the user message was stored."""

    def broken(text: str, metadata: dict[str, Any]) -> str:
        raise RuntimeError("boom")

    agent = olb.add_conversational_agent(reply=broken)
    status, body, h = await api.call("POST", f"/api/agents/webhook/{agent}", json={"message": "x"})
    assert_error(status, body, h, 502, "upstream_error")
    assert "boom" not in body["error"]["message"]
    (session,) = olb.sessions.values()
    assert [m.role for m in session.messages] == ["user"]


async def test_reply_delay_slows_the_turn(olb: OlbrainSimulator, api: Api) -> None:
    """reply_delay holds the synchronous reply back for that long."""
    agent = olb.add_conversational_agent()
    olb.reply_delay = 0.2
    started = time.monotonic()
    reply = await api.say(agent, "slow")
    assert time.monotonic() - started >= 0.2
    assert reply["processing_time"] == 0.2
    with pytest.raises(ValueError):
        olb.reply_delay = -1


async def test_client_timeout_still_persists_turn(olb: OlbrainSimulator, api: Api) -> None:
    """A client giving up mid-turn does not stop it: the reply shows up in the session."""
    agent = olb.add_conversational_agent()
    first = await api.say(agent, "start")
    olb.reply_delay = 0.3
    with pytest.raises(asyncio.TimeoutError):
        await api.http.post(
            f"{olb.url}/api/agents/webhook/{agent}",
            json={"message": "late", "session_id": first["session_id"]},
            headers=api.auth(),
            timeout=aiohttp.ClientTimeout(total=0.05),
        )
    await asyncio.sleep(0.5)
    contents = [m.content for m in olb.messages(first["session_id"])]
    assert contents[-2:] == ["late", "Echo: late"]


async def test_upstream_timeout_502_then_turn_completes(olb: OlbrainSimulator, api: Api) -> None:
    """With upstream_timeout below the turn time: 502 upstream_timeout, reply stored later."""
    olb.idempotency = "replay"
    agent = olb.add_conversational_agent()
    olb.reply_delay = 0.2
    olb.upstream_timeout = 0.05
    status, body, h = await api.call(
        "POST", f"/api/agents/webhook/{agent}", json={"message": "m", "Idempotency-Key": "k"}
    )
    assert_error(status, body, h, 502, "upstream_timeout")
    await asyncio.sleep(0.3)
    (session,) = olb.sessions.values()
    assert [m.content for m in session.messages] == ["m", "Echo: m"]
    olb.upstream_timeout = None
    replay = await api.say(agent, "m", **{"Idempotency-Key": "k"})
    assert replay["message_id"] == session.messages[1].message_id
    assert len(session.messages) == 2


# ------------------------------------------------------------------- body validation


async def test_invalid_json_is_400(olb: OlbrainSimulator, api: Api) -> None:
    """An unparseable body is 400 bad_request."""
    agent = olb.add_conversational_agent()
    status, body, h = await api.call(
        "POST",
        f"/api/agents/webhook/{agent}",
        data=b'{"message": ',
        headers={"Content-Type": "application/json"},
    )
    assert_error(status, body, h, 400, "bad_request")


async def test_empty_trigger_body_is_400(olb: OlbrainSimulator, api: Api) -> None:
    """A trigger with no body at all cannot be parsed: 400."""
    agent = olb.add_workflow_agent()
    status, body, h = await api.call("POST", f"/api/agents/webhook/{agent}")
    assert_error(status, body, h, 400, "bad_request")


@pytest.mark.parametrize(
    ("payload", "fields"),
    [
        ([1, 2], ["body"]),
        ("text", ["body"]),
        ({}, ["message"]),
        ({"message": ""}, ["message"]),
        ({"message": 5}, ["message"]),
        ({"message": "x", "metadata": []}, ["metadata"]),
        ({"message": "x", "session_id": 3, "user_id": 4}, ["session_id", "user_id"]),
        ({"message": "x", "Idempotency-Key": 7}, ["Idempotency-Key"]),
    ],
)
async def test_schema_mismatch_is_422_with_fields(
    olb: OlbrainSimulator, api: Api, payload: Any, fields: list[str]
) -> None:
    """Parseable JSON that breaks the conversational schema is 422 naming the fields."""
    agent = olb.add_conversational_agent()
    status, body, h = await api.call("POST", f"/api/agents/webhook/{agent}", json=payload)
    assert_error(status, body, h, 422, "validation_error")
    assert [f["field"] for f in body["error"]["fields"]] == fields
    assert olb.sessions == {}


async def test_body_over_1mib_is_413_before_parsing(olb: OlbrainSimulator, api: Api) -> None:
    """1 MiB + 1 bytes of invalid JSON is 413, not 400: size is checked before parsing."""
    agent = olb.add_conversational_agent()
    status, body, h = await api.call(
        "POST",
        f"/api/agents/webhook/{agent}",
        data=io.BytesIO(b"{" * (MiB + 1)),
        headers={"Content-Type": "application/json"},
    )
    assert_error(status, body, h, 413, "payload_too_large")
    assert olb.requests[-1].json is None


async def test_chunked_body_over_1mib_is_413(olb: OlbrainSimulator, api: Api) -> None:
    """A streamed body without Content-Length is cut off at 1 MiB and answered 413."""
    agent = olb.add_conversational_agent()

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(17):
            yield b" " * (64 * 1024)

    status, body, h = await api.call(
        "POST", f"/api/agents/webhook/{agent}", data=chunks(), headers={"Content-Type": "x"}
    )
    assert_error(status, body, h, 413, "payload_too_large")


async def test_body_of_exactly_1mib_is_accepted(olb: OlbrainSimulator, api: Api) -> None:
    """The limit is inclusive: a valid 1 MiB JSON body is processed."""
    agent = olb.add_conversational_agent()
    prefix, suffix = b'{"message": "', b'"}'
    payload = prefix + b"a" * (MiB - len(prefix) - len(suffix)) + suffix
    assert len(payload) == MiB
    status, body, _ = await api.call(
        "POST",
        f"/api/agents/webhook/{agent}",
        data=io.BytesIO(payload),
        headers={"Content-Type": "application/json"},
    )
    assert status == 200, body


async def test_413_still_needs_auth(olb: OlbrainSimulator, api: Api) -> None:
    """An oversized body without credentials is 401: auth comes first (§4.0)."""
    agent = olb.add_conversational_agent()
    status, body, h = await api.call(
        "POST", f"/api/agents/webhook/{agent}", data=io.BytesIO(b"x" * (MiB + 1)), auth=False
    )
    assert_error(status, body, h, 401, "unauthorized")


# ----------------------------------------------------------------------- idempotency


async def test_same_key_replays_without_a_second_turn(olb: OlbrainSimulator, api: Api) -> None:
    """A repeated body Idempotency-Key replays the first answer and stores nothing new."""
    olb.idempotency = "replay"
    agent = olb.add_conversational_agent()
    first = await api.say(agent, "hi", **{"Idempotency-Key": "k-1"})
    status, again, headers = await api.call(
        "POST", f"/api/agents/webhook/{agent}", json={"message": "hi", "Idempotency-Key": "k-1"}
    )
    assert status == 200
    assert again == first
    assert headers["Idempotent-Replayed"] == "true"
    assert len(olb.sessions) == 1
    assert len(olb.messages(first["session_id"])) == 2
    assert olb.requests[-1].replayed is True
    assert olb.requests[-1].idempotency_key == "k-1"


async def test_same_key_different_body_replays_first(olb: OlbrainSimulator, api: Api) -> None:
    """Replay is keyed on (agent, key) alone (§9.3): a changed body still gets the first reply."""
    olb.idempotency = "replay"
    agent = olb.add_conversational_agent()
    first = await api.say(agent, "hi", **{"Idempotency-Key": "k"})
    second = await api.say(agent, "something else", **{"Idempotency-Key": "k"})
    assert second == first
    assert [m.content for m in olb.messages(first["session_id"])] == ["hi", "Echo: hi"]


async def test_keys_are_scoped_per_agent(olb: OlbrainSimulator, api: Api) -> None:
    """The same key on two agents makes two turns."""
    olb.idempotency = "replay"
    one, two = olb.add_conversational_agent(), olb.add_conversational_agent()
    a = await api.say(one, "hi", **{"Idempotency-Key": "k"})
    b = await api.say(two, "hi", **{"Idempotency-Key": "k"})
    assert a["session_id"] != b["session_id"]


async def test_snake_case_key_spelling_is_honoured(olb: OlbrainSimulator, api: Api) -> None:
    """The alternative body spelling idempotency_key deduplicates too."""
    olb.idempotency = "replay"
    agent = olb.add_conversational_agent()
    first = await api.say(agent, "hi", idempotency_key="k")
    assert await api.say(agent, "hi", idempotency_key="k") == first


async def test_header_key_does_not_deduplicate(olb: OlbrainSimulator, api: Api) -> None:
    """Only the body field counts: an Idempotency-Key header alone makes two turns."""
    olb.idempotency = "replay"
    agent = olb.add_conversational_agent()
    for _ in range(2):
        status, _, _ = await api.call(
            "POST",
            f"/api/agents/webhook/{agent}",
            json={"message": "hi"},
            headers={"Idempotency-Key": "k"},
        )
        assert status == 200
    assert len(olb.sessions) == 2
    assert olb.requests[-1].headers["Idempotency-Key"] == "k"


async def test_replay_off_is_the_default(olb: OlbrainSimulator, api: Api) -> None:
    """By default nothing is deduplicated (§9.3): the same key twice makes two turns."""
    assert olb.idempotency == "off"
    agent = olb.add_conversational_agent()
    a = await api.say(agent, "hi", **{"Idempotency-Key": "k"})
    b = await api.say(agent, "hi", **{"Idempotency-Key": "k"})
    assert a["message_id"] != b["message_id"]
    assert not olb.requests[-1].replayed


async def test_replay_off_never_deduplicates() -> None:
    """idempotency='off' models the documented 'no gateway dedupe': two turns."""
    async with OlbrainSimulator(idempotency="off") as sim, aiohttp.ClientSession() as http:
        api = Api(sim, http)
        agent = sim.add_conversational_agent()
        a = await api.say(agent, "hi", **{"Idempotency-Key": "k"})
        b = await api.say(agent, "hi", **{"Idempotency-Key": "k"})
        assert a["message_id"] != b["message_id"]
        assert sim.requests[-1].idempotency_key == "k"
        with pytest.raises(ValueError):
            sim.idempotency = "maybe"  # type: ignore[assignment]


async def test_concurrent_duplicates_make_one_turn(olb: OlbrainSimulator, api: Api) -> None:
    """Two in-flight requests with one key share a single turn."""
    olb.idempotency = "replay"
    agent = olb.add_conversational_agent()
    olb.reply_delay = 0.1
    a, b = await asyncio.gather(
        api.say(agent, "hi", **{"Idempotency-Key": "k"}),
        api.say(agent, "hi", **{"Idempotency-Key": "k"}),
    )
    assert a == b
    assert len(olb.sessions) == 1
    assert len(olb.messages(a["session_id"])) == 2


async def test_errors_are_not_remembered(olb: OlbrainSimulator, api: Api) -> None:
    """A 422 under a key is not replayed: the corrected retry with that key is processed."""
    olb.idempotency = "replay"
    agent = olb.add_conversational_agent()
    status, _, _ = await api.call(
        "POST", f"/api/agents/webhook/{agent}", json={"Idempotency-Key": "k"}
    )
    assert status == 422
    reply = await api.say(agent, "fixed", **{"Idempotency-Key": "k"})
    assert reply["response"] == "Echo: fixed"


async def test_after_accept_fault_then_retry_replays(olb: OlbrainSimulator, api: Api) -> None:
    """after_accept: the turn is stored, the 502 is sent, and the keyed retry replays it."""
    olb.idempotency = "replay"
    agent = olb.add_conversational_agent()
    olb.fail_next("POST", f"/api/agents/webhook/{agent}", 502, after_accept=True)
    status, body, h = await api.call(
        "POST", f"/api/agents/webhook/{agent}", json={"message": "hi", "Idempotency-Key": "k"}
    )
    assert_error(status, body, h, 502, "upstream_error")
    (session,) = olb.sessions.values()
    assert len(session.messages) == 2
    retry = await api.say(agent, "hi", **{"Idempotency-Key": "k"})
    assert retry["message_id"] == session.messages[1].message_id
    assert len(olb.sessions) == 1
    assert len(session.messages) == 2


# ------------------------------------------------------------------------ E9 - E12


async def test_sessions_list_most_recent_first(olb: OlbrainSimulator, api: Api) -> None:
    """E9 lists this agent's sessions by last activity, newest first, with the limit echoed."""
    agent, other = olb.add_conversational_agent(), olb.add_conversational_agent()
    a = await api.say(agent, "a", user_id="u1")
    olb.clock.advance(1)
    b = await api.say(agent, "b")
    olb.clock.advance(1)
    await api.say(agent, "again", session_id=a["session_id"])
    await api.say(other, "elsewhere")
    status, body, _ = await api.call("GET", f"/api/agents/{agent}/sessions")
    assert status == 200
    assert body["limit"] == 20
    assert [s["session_id"] for s in body["sessions"]] == [a["session_id"], b["session_id"]]
    entry = body["sessions"][0]
    assert entry["agent_id"] == agent
    assert entry["status"] == "active"
    assert entry["channel"] == "webhook"
    assert entry["user_id"] == "u1"
    assert entry["message_count"] == 4
    assert entry["total_tokens"] > 0
    assert entry["last_message_at"] > entry["created_at"]


async def test_sessions_limit_cap_and_validation(olb: OlbrainSimulator, api: Api) -> None:
    """limit is honoured, capped at 100, and a bad limit is 422."""
    agent = olb.add_conversational_agent()
    for index in range(3):
        await api.say(agent, str(index))
    status, body, _ = await api.call("GET", f"/api/agents/{agent}/sessions?limit=2")
    assert (status, len(body["sessions"]), body["limit"]) == (200, 2, 2)
    status, body, _ = await api.call("GET", f"/api/agents/{agent}/sessions?limit=500")
    assert (status, body["limit"]) == (200, 100)
    for bad in ("0", "-1", "ten"):
        status, body, h = await api.call("GET", f"/api/agents/{agent}/sessions?limit={bad}")
        assert_error(status, body, h, 422, "validation_error")


async def test_sessions_status_and_since_filters(olb: OlbrainSimulator, api: Api) -> None:
    """status filters exactly; since keeps sessions active after it; a bad since is 422."""
    agent = olb.add_conversational_agent()
    old = await api.say(agent, "old")
    olb.clock.advance(60)
    new = await api.say(agent, "new")
    olb.sessions[old["session_id"]].status = "closed"
    _, body, _ = await api.call("GET", f"/api/agents/{agent}/sessions?status=closed")
    assert [s["session_id"] for s in body["sessions"]] == [old["session_id"]]
    since = olb.sessions[new["session_id"]].created_at - 1
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(since))
    _, body, _ = await api.call("GET", f"/api/agents/{agent}/sessions?since={stamp}")
    assert [s["session_id"] for s in body["sessions"]] == [new["session_id"]]
    status, body, h = await api.call("GET", f"/api/agents/{agent}/sessions?since=yesterday")
    assert_error(status, body, h, 422, "validation_error")


async def test_get_session_full_record(olb: OlbrainSimulator, api: Api) -> None:
    """E10 returns the union of the documented session fields with token totals."""
    agent = olb.add_conversational_agent()
    first = await api.say(agent, "Title here", metadata={"m": 1})
    status, body, _ = await api.call("GET", f"/api/agents/{agent}/sessions/{first['session_id']}")
    assert status == 200
    assert body["session_id"] == first["session_id"]
    assert body["organization_id"] == olb.organization_id
    assert body["title"] == "Title here"
    assert body["metadata"] == {"m": 1}
    assert body["message_count"] == 2
    assert body["token_usage"] == first["token_usage"]
    assert body["total_tokens"] == first["token_usage"]["total_tokens"]
    for name in ("created_at", "updated_at", "last_message_at", "cost", "status", "channel"):
        assert name in body


async def test_session_endpoints_unknown_session_404(olb: OlbrainSimulator, api: Api) -> None:
    """E10/E11/E12 on an unknown or another agent's session: 404 session_not_found."""
    agent, other = olb.add_conversational_agent(), olb.add_conversational_agent()
    theirs = (await api.say(other, "x"))["session_id"]
    for session_id in ("sess_nope", theirs):
        for suffix in ("", "/messages", "/messages/msg_x"):
            path = f"/api/agents/{agent}/sessions/{session_id}{suffix}"
            assert_error(*(await api.call("GET", path)), 404, "session_not_found")


async def test_messages_oldest_first_with_paging(olb: OlbrainSimulator, api: Api) -> None:
    """E11 lists user and assistant messages oldest first, paged by limit/offset."""
    agent = olb.add_conversational_agent()
    sid = (await api.say(agent, "one"))["session_id"]
    await api.say(agent, "two", session_id=sid)
    base = f"/api/agents/{agent}/sessions/{sid}/messages"
    status, body, _ = await api.call("GET", base)
    assert status == 200
    assert (body["limit"], body["offset"]) == (20, 0)
    assert [(m["role"], m["content"]) for m in body["messages"]] == [
        ("user", "one"),
        ("assistant", "Echo: one"),
        ("user", "two"),
        ("assistant", "Echo: two"),
    ]
    first = body["messages"][1]
    assert first["status"] == "completed"
    assert first["token_usage"]["total_tokens"] > 0
    assert first["session_id"] == sid
    _, page, _ = await api.call("GET", base + "?limit=2&offset=1")
    assert [m["content"] for m in page["messages"]] == ["Echo: one", "two"]
    _, capped, _ = await api.call("GET", base + "?limit=1000")
    assert capped["limit"] == 200
    _, past, _ = await api.call("GET", base + "?offset=10")
    assert past["messages"] == []
    assert_error(*(await api.call("GET", base + "?offset=-1")), 422, "validation_error")


async def test_get_one_message_and_not_found(olb: OlbrainSimulator, api: Api) -> None:
    """E12 returns one message; an id outside the session is 404 message_not_found."""
    agent = olb.add_conversational_agent()
    a = await api.say(agent, "a")
    b = await api.say(agent, "b")
    path = f"/api/agents/{agent}/sessions/{a['session_id']}/messages"
    status, body, _ = await api.call("GET", f"{path}/{a['message_id']}")
    assert (status, body["content"], body["role"]) == (200, "Echo: a", "assistant")
    for wrong in ("msg_nope", b["message_id"]):
        assert_error(*(await api.call("GET", f"{path}/{wrong}")), 404, "message_not_found")


# -------------------------------------------------------------------------------- E2


def form(*parts: tuple[str, bytes, str | None]) -> aiohttp.FormData:
    data = aiohttp.FormData()
    for name, content, filename in parts:
        data.add_field(name, io.BytesIO(content), filename=filename, content_type="text/csv")
    return data


async def test_upload_returns_fi_id(olb: OlbrainSimulator, api: Api) -> None:
    """A multipart 'file' part is stored; the answer carries fi_ + 32 hex and its metadata."""
    agent = olb.add_workflow_agent()
    status, body, _ = await api.call(
        "POST",
        f"/api/agents/{agent}/upload",
        data=form(("note", b"ignored", None), ("file", b"id\n1\n", "customers.csv")),
    )
    assert status == 200, body
    assert re.fullmatch(r"fi_[0-9a-f]{32}", body["file_id"])
    assert body == {
        "file_id": body["file_id"],
        "size_bytes": 5,
        "content_type": "text/csv",
        "filename": "customers.csv",
    }
    record = olb.uploads[body["file_id"]]
    assert (record.agent_id, record.content) == (agent, b"id\n1\n")


async def test_upload_allowed_for_conversational_agents(olb: OlbrainSimulator, api: Api) -> None:
    """E2 is not kind-gated (§12 row 14)."""
    agent = olb.add_conversational_agent()
    status, _, _ = await api.call(
        "POST", f"/api/agents/{agent}/upload", data=form(("file", b"x", "a.txt"))
    )
    assert status == 200


async def test_upload_non_multipart_is_415(olb: OlbrainSimulator, api: Api) -> None:
    """JSON or raw bytes to the upload endpoint: 415."""
    agent = olb.add_workflow_agent()
    assert_error(
        *(await api.call("POST", f"/api/agents/{agent}/upload", json={"file": "x"})),
        415,
        "unsupported_media_type",
    )
    assert_error(
        *(await api.call("POST", f"/api/agents/{agent}/upload", data=b"raw")),
        415,
        "unsupported_media_type",
    )


@pytest.mark.parametrize(
    "parts",
    [
        [("other", b"x", "a.txt")],
        [("file", b"", "empty.txt")],
        [("file", b"a", "a.txt"), ("file", b"b", "b.txt")],
    ],
    ids=["no-file-part", "empty-file", "two-file-parts"],
)
async def test_upload_bad_parts_are_400(
    olb: OlbrainSimulator, api: Api, parts: list[tuple[str, bytes, str | None]]
) -> None:
    """No 'file' part, an empty one, or two of them: 400, nothing stored."""
    agent = olb.add_workflow_agent()
    status, body, h = await api.call("POST", f"/api/agents/{agent}/upload", data=form(*parts))
    assert_error(status, body, h, 400, "bad_request")
    assert olb.uploads == {}


async def test_upload_malformed_multipart_is_400(olb: OlbrainSimulator, api: Api) -> None:
    """A multipart Content-Type with a broken body is 400, not a server error."""
    agent = olb.add_workflow_agent()
    status, body, h = await api.call(
        "POST",
        f"/api/agents/{agent}/upload",
        data=b"garbage without boundaries",
        headers={"Content-Type": "multipart/form-data; boundary=zzz"},
    )
    assert_error(status, body, h, 400, "bad_request")


async def test_upload_cap_when_configured() -> None:
    """max_upload_bytes (off by default) answers 413 for a bigger file."""
    async with OlbrainSimulator(max_upload_bytes=10) as sim, aiohttp.ClientSession() as http:
        api = Api(sim, http)
        agent = sim.add_workflow_agent()
        status, body, h = await api.call(
            "POST", f"/api/agents/{agent}/upload", data=form(("file", b"x" * 11, "big.bin"))
        )
        assert_error(status, body, h, 413, "payload_too_large")


async def test_big_upload_without_cap_is_streamed(olb: OlbrainSimulator, api: Api) -> None:
    """Files beyond the 1 MiB JSON limit upload fine (no fixed cap); content is hashed."""
    agent = olb.add_workflow_agent()
    blob = bytes(range(256)) * (3 * MiB // 256)
    status, body, _ = await api.call(
        "POST", f"/api/agents/{agent}/upload", data=form(("file", blob, "big.bin"))
    )
    assert (status, body["size_bytes"]) == (200, len(blob))
    assert olb.uploads[body["file_id"]].sha256 == hashlib.sha256(blob).hexdigest()


# ------------------------------------------------------------------------------ faults


async def test_500_once_then_success(olb: OlbrainSimulator, api: Api) -> None:
    """fail_next(..., 500) replaces exactly one response; nothing was performed."""
    agent = olb.add_conversational_agent()
    olb.fail_next("POST", "/api/agents/webhook/*", 500)
    assert olb.pending_faults() == 1
    assert_error(
        *(await api.call("POST", f"/api/agents/webhook/{agent}", json={"message": "x"})),
        500,
        "internal_error",
    )
    assert olb.sessions == {}
    assert olb.pending_faults() == 0
    await api.say(agent, "x")


@pytest.mark.parametrize("code", ["upstream_timeout", "upstream_error"])
async def test_502_codes(olb: OlbrainSimulator, api: Api, code: str) -> None:
    """502 faults carry the documented upstream codes."""
    agent = olb.add_conversational_agent()
    olb.fail_next("POST", "*", 502, code=code)
    assert_error(
        *(await api.call("POST", f"/api/agents/webhook/{agent}", json={"message": "x"})),
        502,
        code,
    )


async def test_503_504_sequence_with_and_without_retry_after(
    olb: OlbrainSimulator, api: Api
) -> None:
    """Queued faults fire in order, with Retry-After only where asked, then traffic flows."""
    agent = olb.add_workflow_agent()
    path = f"/api/agents/{agent}/runs"
    olb.fail_next("GET", path, 503, count=2, retry_after=2)
    olb.fail_next("GET", path, 504)
    seen = []
    for _ in range(4):
        status, _body, headers = await api.call("GET", path)
        seen.append((status, headers.get("Retry-After")))
    assert seen == [(503, "2"), (503, "2"), (504, None), (200, None)]


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (402, "insufficient_funds"),
        (402, "credit_limit_exceeded"),
        (402, "subscription_suspended"),
        (402, "subscription_inactive"),
        (503, "billing_unavailable"),
    ],
)
async def test_billing_faults(olb: OlbrainSimulator, api: Api, status: int, code: str) -> None:
    """Billing codes come in the envelope with their status."""
    agent = olb.add_workflow_agent()
    olb.fail_next("*", re.compile(r"/webhook/"), status, code=code)
    assert_error(*(await api.call("POST", f"/api/agents/webhook/{agent}", json={})), status, code)
    assert olb.runs == {}


async def test_fastapi_detail_bodies(olb: OlbrainSimulator, api: Api) -> None:
    """detail_body gives {"detail": str} or {"detail": {code, message}}; text gives HTML."""
    agent = olb.add_workflow_agent()
    path = f"/api/agents/{agent}/runs"
    olb.fail_next("GET", path, 500, detail_body=True, message="Internal Server Error")
    olb.fail_next("GET", path, 422, detail_body="object", code="validation_error")
    olb.fail_next("GET", path, 502, text="<html>Bad Gateway</html>")
    status, body, headers = await api.call("GET", path)
    assert (status, body) == (500, {"detail": "Internal Server Error"})
    assert headers["x-request-id"].startswith("req_")
    status, body, _ = await api.call("GET", path)
    assert status == 422
    assert body["detail"]["code"] == "validation_error"
    status, body, headers = await api.call("GET", path)
    assert (status, body, headers["Content-Type"]) == (
        502,
        "<html>Bad Gateway</html>",
        "text/html; charset=utf-8",
    )


async def test_faults_match_method_and_fire_before_auth(olb: OlbrainSimulator, api: Api) -> None:
    """A GET fault ignores POSTs; a matching fault answers even without credentials."""
    agent = olb.add_workflow_agent()
    olb.fail_next("GET", "/api/agents/*", 503)
    assert (await api.call("POST", f"/api/agents/webhook/{agent}", json={}))[0] == 202
    status, _, _ = await api.call("GET", f"/api/agents/{agent}/runs", auth=False)
    assert status == 503
    olb.fail_next("GET", "/x", 500)
    olb.clear_faults()
    assert olb.pending_faults() == 0


async def test_connection_drop_fault(olb: OlbrainSimulator, api: Api) -> None:
    """status=0 drops the connection with no response; after_accept drops after the run exists."""
    agent = olb.add_workflow_agent()
    path = f"/api/agents/webhook/{agent}"
    # POST, because aiohttp itself re-sends an idempotent GET once after a disconnect.
    olb.fail_next("POST", path, 0)
    with pytest.raises(aiohttp.ClientError):
        await api.call("POST", path, json={})
    assert (olb.requests[-1].status, olb.runs) == (0, {})
    olb.fail_next("POST", path, 0, after_accept=True)
    with pytest.raises(aiohttp.ClientError):
        await api.call("POST", path, json={})
    assert len(olb.runs_for(agent)) == 1
    assert (await api.call("POST", path, json={}))[0] == 202


async def test_after_accept_fault_only_fires_on_success(olb: OlbrainSimulator, api: Api) -> None:
    """An after_accept fault waits for a request that succeeds; errors pass through."""
    agent = olb.add_conversational_agent()
    olb.fail_next("POST", "*", 503, after_accept=True)
    assert (await api.call("POST", f"/api/agents/webhook/{agent}", json={}))[0] == 422
    assert olb.pending_faults() == 1
    assert (await api.call("POST", f"/api/agents/webhook/{agent}", json={"message": "m"}))[0] == 503
    assert len(olb.sessions) == 1


async def test_fail_next_validates_arguments(olb: OlbrainSimulator) -> None:
    """Nonsense statuses, counts and body styles are refused at once."""
    with pytest.raises(ValueError):
        olb.fail_next("GET", "*", 99)
    with pytest.raises(ValueError):
        olb.fail_next("GET", "*", 500, count=0)
    with pytest.raises(ValueError):
        olb.fail_next("GET", "*", 500, detail_body="xml")  # type: ignore[arg-type]


# ------------------------------------------------------------------------- request log


async def test_request_log_redacts_and_records(olb: OlbrainSimulator, api: Api) -> None:
    """sim.requests keeps method, path, route, body, key and status; the key is redacted."""
    agent = olb.add_conversational_agent()
    await api.say(agent, "hi", **{"Idempotency-Key": "k"})
    (record,) = olb.requests_to("trigger", agent)
    assert (record.method, record.path, record.status) == (
        "POST",
        f"/api/agents/webhook/{agent}",
        200,
    )
    assert record.json == {"message": "hi", "Idempotency-Key": "k"}
    assert record.idempotency_key == "k"
    assert record.headers["Authorization"] == "<redacted>"
    assert olb.api_key not in repr(olb.requests)
    assert record.route in OlbrainSimulator.ROUTE_NAMES


async def test_non_string_reply_is_502(olb: OlbrainSimulator, api: Api) -> None:
    """A reply function returning a non-string is an upstream failure, not a 500."""
    agent = olb.add_conversational_agent(reply=lambda text, meta: 42)  # type: ignore[arg-type,return-value]
    assert_error(
        *(await api.call("POST", f"/api/agents/webhook/{agent}", json={"message": "x"})),
        502,
        "upstream_error",
    )


@pytest.mark.parametrize(
    ("status", "code", "retry_after"),
    [
        (403, "agent_locked", None),
        (403, "version_pin_refused", None),
        (429, "rate_limited", "Wed, 21 Oct 2026 07:28:00 GMT"),
    ],
)
async def test_other_documented_fault_codes(
    olb: OlbrainSimulator, api: Api, status: int, code: str, retry_after: str | None
) -> None:
    """403 lock/pin codes and 429 with an HTTP-date Retry-After come out as queued."""
    agent = olb.add_workflow_agent()
    olb.fail_next("POST", "/api/agents/webhook/*", status, code=code, retry_after=retry_after)
    result = await api.call("POST", f"/api/agents/webhook/{agent}", json={})
    assert_error(*result, status, code)
    assert result[2].get("Retry-After") == retry_after


async def test_concurrent_duplicate_after_failed_first_reruns(
    olb: OlbrainSimulator, api: Api
) -> None:
    """If the in-flight first attempt fails, a concurrent duplicate performs the turn itself."""
    olb.idempotency = "replay"
    calls: list[str] = []

    async def flaky(text: str, metadata: dict[str, Any]) -> str:
        calls.append(text)
        await asyncio.sleep(0.05)
        if len(calls) == 1:
            raise RuntimeError("first attempt fails")
        return "ok"

    agent = olb.add_conversational_agent(reply=flaky)
    body = {"message": "hi", "Idempotency-Key": "k"}
    path = f"/api/agents/webhook/{agent}"
    first, second = await asyncio.gather(
        api.call("POST", path, json=body), api.call("POST", path, json=body)
    )
    # Whichever arrived first failed; the other performed the turn itself.
    assert sorted([first[0], second[0]]) == [200, 502]
    assert max(first, second, key=lambda r: r[0] == 200)[1]["response"] == "ok"
    assert len(calls) == 2


async def test_switch_setters_validate(olb: OlbrainSimulator) -> None:
    """The settable switches refuse unknown values and keep valid ones."""
    with pytest.raises(ValueError):
        olb.runs_list_shape = "xml"  # type: ignore[assignment]
    olb.runs_list_shape = "array"
    olb.retry_new_run_id = True
    olb.upstream_timeout = 3.0
    assert (olb.runs_list_shape, olb.retry_new_run_id, olb.upstream_timeout) == ("array", True, 3.0)
    with pytest.raises(ValueError):
        OlbrainSimulator(idempotency="always")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        OlbrainSimulator(runs_list_shape="xml")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        olb.add_workflow_agent(fail=-1)
