"""Authentication, gateway checks and the error body styles."""

from __future__ import annotations

import pytest

from genie_async.testing import GenieSimulator

AUTH_FAILED = "Authentication failed."
NONACTIVE = "The user was not found in this environment or has not accepted their invitation."


async def _create(api, headers):
    return await api.call("POST", "/conversations", json={}, headers=headers, auth=False)


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "bearer {key}",
        "Bearer  {key}",
        "Token {key}",
        "Bearer",
        "Bearer ",
        "Bearer wrkaus-0123456789",
        "Bearer {key}x",
    ],
)
async def test_malformed_or_unknown_credentials(api, authorization):
    """Anything but exactly 'Bearer <known token>' (and any wrkaus- token) is 401 auth_failed."""
    headers = {"X-IDP-User-Id": api.sim.user_id}
    if authorization is not None:
        headers["Authorization"] = authorization.format(key=api.sim.api_key)
    reply = await _create(api, headers)
    assert reply.status == 401
    assert reply.json == {
        "error_code": "auth_failed",
        "error_message": AUTH_FAILED,
        "request_id": reply.headers["x-request-id"],
    }


async def test_user_assertion_rules(sim, api):
    """API-key mode needs an active, allow-listed X-IDP-User-Id (never an email)."""
    invited = sim.add_user(status="invited")
    outsider = sim.add_user(allow_listed=False)
    emailish = sim.add_user(user_id="jane@example.com")
    for user in [None, "unknown-user", invited, outsider, emailish]:
        headers = {"Authorization": f"Bearer {sim.api_key}"}
        if user is not None:
            headers["X-IDP-User-Id"] = user
        reply = await _create(api, headers)
        assert reply.status == 401, user
        assert reply.json["error_code"] == "user_nonactive_or_missing"
        assert reply.json["error_message"] == NONACTIVE
    ok = await _create(
        api, {"Authorization": f"Bearer {sim.api_key}", "x-idp-user-id": sim.user_id}
    )
    assert ok.status == 200


async def test_oauth_token_mode(sim, api):
    """An access token authenticates as its user without X-IDP-User-Id; revoked tokens fail."""
    other = sim.add_user()
    token = sim.issue_access_token(other)
    assert not token.startswith("wrkaus-")
    assert len(token) != 64
    headers = {"Authorization": f"Bearer {token}", "X-IDP-User-Id": sim.user_id}
    cid = (await _create(api, headers)).result["conversation_id"]
    assert sim.conversation(cid).user_id == other
    assert sim.log[-1].user_id == other
    # Conversations are per user: the API-key user cannot see it.
    assert (await api.call("GET", f"/conversations/{cid}")).status == 404
    sim.revoke_access_token(token)
    assert (await _create(api, headers)).json["error_code"] == "auth_failed"


async def test_regenerated_key(sim, api):
    """After regenerate_api_key the old key gets auth_failed and the new one works."""
    old = sim.api_key
    new = sim.regenerate_api_key()
    assert new != old
    assert len(new) == 64
    reply = await _create(api, {"Authorization": f"Bearer {old}", "X-IDP-User-Id": sim.user_id})
    assert reply.json["error_code"] == "auth_failed"
    assert (await api.call("POST", "/conversations", json={})).status == 200


async def test_propagation_window(sim, api):
    """Every call is 403 access_denied during the propagation window (sim clock)."""
    sim.propagation_window = 60
    sim.mark_provisioned()
    reply = await api.call("GET", "/conversations")
    assert (reply.status, reply.json["error_code"]) == (403, "access_denied")
    sim.clock.advance(61)
    assert (await api.call("GET", "/conversations")).status == 200


async def test_headless_disabled_and_no_client(sim, api):
    """headless_enabled=False → 403 headless_not_enabled; client_attached=False → 406."""
    sim.headless_enabled = False
    reply = await api.call("GET", "/conversations")
    assert (reply.status, reply.json["error_code"]) == (403, "headless_not_enabled")
    sim.headless_enabled = True
    sim.client_attached = False
    reply = await api.call("POST", "/conversations", json={})
    assert (reply.status, reply.json["error_code"]) == (406, "no_client_attached")


async def test_other_genie_handle(api, session):
    """A runtime call for another genie handle is 404 not_found."""
    url = f"{api.sim.url}/api/v1/genies/gin-Other-000000-XX/chat/conversations"
    async with session.get(url, headers=api.auth()) as resp:
        assert resp.status == 404
        assert (await resp.json())["error_code"] == "not_found"


async def test_unknown_path(api, session):
    """Unknown paths get a JSON 404 with a request id."""
    async with session.get(f"{api.sim.url}/nope") as resp:
        assert resp.status == 404
        body = await resp.json()
        assert body["request_id"] == resp.headers["x-request-id"]


async def test_nested_error_style(make_api):
    """error_style='nested' wraps code/message/request_id in an 'error' object."""
    async with GenieSimulator(error_style="nested") as simulator:
        api = make_api(simulator)
        reply = await api.call("GET", "/conversations", auth=False)
        assert reply.json == {
            "error": {
                "code": "auth_failed",
                "message": AUTH_FAILED,
                "request_id": reply.headers["x-request-id"],
            }
        }


async def test_log_redacts_credentials(sim, api):
    """The log hides Authorization and X-IDP-User-Id values but keeps has_auth and user_id."""
    await api.call("POST", "/conversations", json={"a": 1}, headers={"Idempotency-Key": "k-1"})
    record = sim.log[-1]
    assert record.method == "POST"
    assert record.route == "create_conversation"
    assert record.path.endswith("/chat/conversations")
    assert record.headers["Authorization"] == "<redacted>"
    assert record.headers["X-IDP-User-Id"] == "<redacted>"
    assert record.has_auth
    assert record.user_id == sim.user_id
    assert record.json == {"a": 1}
    assert record.idempotency_key == "k-1"
    assert record.status == 200
    await api.call("GET", "/conversations?limit=5&junk=1", auth=False)
    record = sim.log[-1]
    assert record.query == {"limit": "5", "junk": "1"}
    assert not record.has_auth
    assert record.user_id is None
    assert record.status == 401
    assert sim.requests("list_conversations") == [record]
