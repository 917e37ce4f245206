"""genie_async.admin against the simulator's Developer API: every method, its runtime effects,
the admin hints, retries, and the API key never leaking."""

from __future__ import annotations

import logging
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import msgspec
import pytest
from aiohttp import web
from pytest_aiohttp import AiohttpServer

import genie_async
from genie_async import (
    AuthenticationError,
    AuthFailedError,
    ClientClosedError,
    ConfigurationError,
    ConflictError,
    GenieError,
    InsecureURLError,
    InvalidIdError,
    InvalidRequestError,
    NotAcceptableError,
    NotFoundError,
    PermissionDeniedError,
    RetryPolicy,
    ServiceUnavailableError,
    StreamStalledError,
    Timeouts,
    UnprocessableEntityError,
)
from genie_async import admin as admin_module
from genie_async.admin import (
    AdminClient,
    GenieClientCredentials,
    GenieClientInfo,
    GenieInfo,
    IamUser,
    Secret,
)
from genie_async.testing import GenieSimulator

from .conftest import TEST_TIMEOUTS, make_client

_FORMATTER = logging.Formatter("%(name)s %(levelname)s %(message)s")


def make_admin(sim: GenieSimulator, retry: RetryPolicy, **kwargs: Any) -> AdminClient:
    options: dict[str, Any] = {"token": sim.developer_token, "base_url": sim.url}
    options.update(kwargs)
    return AdminClient(retry=retry, timeouts=TEST_TIMEOUTS, **options)


@pytest.fixture
async def admin(sim: GenieSimulator, retry: RetryPolicy) -> AsyncIterator[AdminClient]:
    async with make_admin(sim, retry) as client:
        yield client


async def runtime_ask(sim: GenieSimulator, retry: RetryPolicy, **kwargs: Any) -> str:
    """One runtime turn with the simulator's user (and its current key unless given)."""
    async with make_client(sim, retry, **kwargs) as client:
        conversation = await client.create_conversation()
        reply = await conversation.ask("hello")
        return reply.text


def texts_of(error: BaseException) -> list[str]:
    """Everything a developer could see of an error."""
    return [
        repr(error),
        str(error),
        repr(error.args),
        "".join(traceback.format_exception(error)),
        *(repr(getattr(error, name, None)) for name in ("message", "hint", "body", "headers")),
    ]


# --- construction and lifecycle --------------------------------------------------------------


@pytest.mark.parametrize(
    ("data_center", "host"),
    [
        ("us", "https://www.workato.com"),
        ("eu", "https://app.eu.workato.com"),
        ("jp", "https://app.jp.workato.com"),
        ("sg", "https://app.sg.workato.com"),
        ("au", "https://app.au.workato.com"),
        ("il", "https://app.il.workato.com"),
        ("kr", "https://app.kr.workato.com"),
        ("cn", "https://app.workatoapp.cn"),
        ("trial", "https://app.trial.workato.com"),
        ("EU", "https://app.eu.workato.com"),
    ],
)
def test_data_centers_map_to_developer_api_hosts(data_center: str, host: str) -> None:
    """Each data center resolves to its Developer API host (reference §1.2)."""
    assert AdminClient(token="wrkaus-x", data_center=data_center).base_url == host


def test_where_must_be_exactly_one_known_place() -> None:
    """Neither or both of data_center/base_url, or an unknown data center, is refused."""
    with pytest.raises(ConfigurationError, match="exactly one"):
        AdminClient(token="wrkaus-x")
    with pytest.raises(ConfigurationError, match="exactly one"):
        AdminClient(token="wrkaus-x", data_center="us", base_url="https://www.workato.com")
    with pytest.raises(ConfigurationError, match="Unknown data_center"):
        AdminClient(token="wrkaus-x", data_center="in")


def test_base_url_follows_the_runtime_rules() -> None:
    """Plain http is refused off loopback; a trailing /api (as the docs list hosts) is dropped."""
    with pytest.raises(InsecureURLError):
        AdminClient(token="wrkaus-x", base_url="http://workato.internal")
    assert (
        AdminClient(
            token="wrkaus-x", base_url="http://workato.internal", allow_insecure_http=True
        ).base_url
        == "http://workato.internal"
    )
    assert AdminClient(token="wrkaus-x", base_url="https://www.workato.com/api/").base_url == (
        "https://www.workato.com"
    )
    assert AdminClient(token="wrkaus-x", base_url="http://127.0.0.1:9/proxy").base_url == (
        "http://127.0.0.1:9/proxy"
    )


def test_a_genie_client_api_key_is_refused_as_the_token(sim: GenieSimulator) -> None:
    """A 64-hex runtime API key is named for what it is and pointed at GenieClient."""
    with pytest.raises(ConfigurationError) as info:
        AdminClient(token=sim.api_key, base_url=sim.url)
    text = str(info.value)
    assert "genie client API key" in text
    assert "GenieClient" in text
    assert "not a Developer API token" in text
    assert sim.api_key not in "".join(texts_of(info.value))


@pytest.mark.parametrize("token", ["wrkaus-abc", "wrkaeu-abc", "some-other-dc-token", "Z" * 64])
def test_other_token_shapes_are_accepted_as_is(token: str) -> None:
    """Only the 64-hex runtime key is refused: other data centers use other prefixes."""
    assert AdminClient(token=token, data_center="us").base_url == "https://www.workato.com"


@pytest.mark.parametrize("token", ["", "  wrkaus-x", "wrkaus-x\n", "wrkaus x\r\nX: y"])
def test_malformed_tokens_are_refused(token: str) -> None:
    """Empty, padded or header-splitting tokens never reach the network."""
    with pytest.raises(ConfigurationError):
        AdminClient(token=token, data_center="us")


def test_repr_hides_the_token(sim: GenieSimulator) -> None:
    """repr shows where, never the Developer API token."""
    client = AdminClient(token=sim.developer_token, base_url=sim.url)
    assert sim.developer_token not in repr(client)
    assert "token=<redacted>" in repr(client)


async def test_lifecycle_matches_genie_client(sim: GenieSimulator, retry: RetryPolicy) -> None:
    """The session is created lazily, closed once, and a closed client refuses calls."""
    client = make_admin(sim, retry)
    assert client._core._session is None
    async with client:
        await client.get_genie(sim.genie_id)
        session = client._core._session
        assert session is not None
        assert not session.closed
    assert client.closed
    assert session.closed
    await client.close()  # idempotent
    with pytest.raises(ClientClosedError):
        await client.get_genie(sim.genie_id)


async def test_a_borrowed_session_is_not_closed(sim: GenieSimulator, retry: RetryPolicy) -> None:
    """A session passed in is used and left open."""
    async with aiohttp.ClientSession() as session:
        async with make_admin(sim, retry, session=session) as client:
            await client.get_genie(sim.genie_id)
        assert not session.closed
        assert client.closed


def test_public_surface() -> None:
    """admin.__all__ is sorted, names the client and its models, and stays out of genie_async."""
    names = list(admin_module.__all__)
    assert names == sorted(names)
    assert set(names) == {
        "AdminClient",
        "GenieClientCredentials",
        "GenieClientInfo",
        "GenieInfo",
        "IamUser",
        "Secret",
    }
    for name in names:
        assert getattr(admin_module, name).__module__ == "genie_async.admin"
        assert not hasattr(genie_async, name) or name not in genie_async.__all__


# --- genies ----------------------------------------------------------------------------------


async def test_get_genie(admin: AdminClient, sim: GenieSimulator) -> None:
    """get_genie reports the id, name, state and the attached client's interface."""
    info = await admin.get_genie(sim.genie_id)
    assert isinstance(info, GenieInfo)
    assert info.id == sim.genie_id
    assert info.name
    assert info.state == "active"
    assert info.active
    assert isinstance(info.chat_interface, dict)
    assert info.client_attached is True
    assert info.request_id == sim.requests("admin_get_genie")[-1].request_id


@pytest.mark.parametrize("envelope", ["data", "flat"])
async def test_data_envelope_and_flat_bodies_both_parse(
    admin: AdminClient, sim: GenieSimulator, envelope: str
) -> None:
    """{"data": …} is unwrapped and a flat body is read as it is, for objects and lists."""
    sim.admin_envelope = envelope  # type: ignore[assignment]
    info = await admin.get_genie(sim.genie_id)
    assert (info.id, info.state) == (sim.genie_id, "active")
    [user] = await admin.find_users(sim.user_email)
    assert user.id == sim.user_id
    clients = await admin.list_clients()
    assert [c.client_id for c in clients] == [sim.client_id]
    created = await admin.create_genie_client("envelope")
    assert created.api_key is not None
    assert len(created.api_key.reveal()) == 64


async def test_start_and_stop_return_the_state(admin: AdminClient, sim: GenieSimulator) -> None:
    """stop_genie/start_genie flip the simulator's genie and return the new state."""
    stopped = await admin.stop_genie(sim.genie_id)
    assert (stopped.id, stopped.state, stopped.active) == (sim.genie_id, "stopped", False)
    assert stopped.client_attached is None  # the answer does not say
    assert not sim.genie_started
    assert (await admin.get_genie(sim.genie_id)).state == "stopped"
    started = await admin.start_genie(sim.genie_id)
    assert started.active
    assert sim.genie_started


async def test_a_stopped_genie_stalls_the_runtime_until_started(
    admin: AdminClient, sim: GenieSimulator, retry: RetryPolicy
) -> None:
    """After stop_genie a runtime turn gets pings only (StreamStalledError); start fixes it."""
    await admin.stop_genie(sim.genie_id)
    with pytest.raises(StreamStalledError):
        await runtime_ask(sim, retry, timeouts=Timeouts(stall=0.3, read=10))
    await admin.start_genie(sim.genie_id)
    assert await runtime_ask(sim, retry) == "You said: hello"


async def test_an_unknown_genie_is_not_found(admin: AdminClient) -> None:
    """A 404 carries the Developer API hint (check the gin-… id and workspace)."""
    with pytest.raises(NotFoundError) as info:
        await admin.start_genie("gin-unknown")
    assert "gin-" in (info.value.hint or "")
    assert info.value.request_id


async def test_ids_that_would_change_the_path_are_refused(admin: AdminClient) -> None:
    """Path-altering ids are refused before anything is sent."""
    with pytest.raises(InvalidIdError):
        await admin.get_genie("../clients")
    with pytest.raises(InvalidIdError):
        await admin.detach_client("gin-x", "a/b")
    with pytest.raises(InvalidIdError):
        await admin.attach_client("gin-x", "")
    with pytest.raises(InvalidIdError):
        await admin.list_clients(["gin-a", "x/y"])


# --- IAM -------------------------------------------------------------------------------------


async def test_find_users_active_invited_and_unknown(
    admin: AdminClient, sim: GenieSimulator
) -> None:
    """find_users returns id/email/name/status; an unknown email gives an empty list."""
    invited = sim.add_user(status="invited", email="ivy@example.com", name="Ivy")
    [me] = await admin.find_users(sim.user_email)
    assert isinstance(me, IamUser)
    assert (me.id, me.email, me.status, me.active) == (sim.user_id, sim.user_email, "active", True)
    assert me.name
    [ivy] = await admin.find_users("IVY@example.com")
    assert (ivy.id, ivy.name, ivy.status, ivy.active) == (invited, "Ivy", "invited", False)
    assert await admin.find_users("nobody@example.com") == []
    assert sim.requests("admin_find_users")[-1].query == {"query": "nobody@example.com"}


async def test_the_found_id_is_the_runtime_user_id(
    admin: AdminClient, sim: GenieSimulator, retry: RetryPolicy
) -> None:
    """IamUser.id works as GenieClient's user_id (X-IDP-User-Id)."""
    sim.add_user(email="ana@example.com")
    [ana] = await admin.find_users("ana@example.com")
    assert await runtime_ask(sim, retry, user_id=ana.id) == "You said: hello"


async def test_find_users_needs_an_email(admin: AdminClient, sim: GenieSimulator) -> None:
    """An empty email is refused locally."""
    with pytest.raises(InvalidRequestError):
        await admin.find_users(" ")
    assert sim.requests("admin_find_users") == []


# --- genie clients ---------------------------------------------------------------------------


async def test_create_an_api_key_client(admin: AdminClient, sim: GenieSimulator) -> None:
    """create_genie_client sends the documented body and returns a one-time 64-hex key."""
    created = await admin.create_genie_client("Support portal")
    assert isinstance(created, GenieClientCredentials)
    assert created.client_id.startswith("gincl-")
    assert created.api_key is not None
    key = created.api_key.reveal()
    assert len(key) == 64
    assert int(key, 16) >= 0
    assert created.oauth_client_id is None
    assert sim.requests("admin_create_client")[-1].json == {
        "client_name": "Support portal",
        "auth": {"type": "api_key"},
    }


async def test_create_an_oauth_client(admin: AdminClient, sim: GenieSimulator) -> None:
    """An OAuth client has an oauth_client_id and no API key."""
    created = await admin.create_genie_client(
        "Portal SSO", auth="oauth", oauth_redirect_url="https://portal.example.com/callback"
    )
    assert created.api_key is None
    assert created.oauth_client_id
    assert sim.requests("admin_create_client")[-1].json == {
        "client_name": "Portal SSO",
        "auth": {"type": "oauth", "oauth_redirect_url": "https://portal.example.com/callback"},
    }


async def test_create_arguments_are_checked_locally(
    admin: AdminClient, sim: GenieSimulator
) -> None:
    """A blank name, OAuth without a redirect URL, or an unknown auth is refused unsent."""
    with pytest.raises(InvalidRequestError):
        await admin.create_genie_client("")
    with pytest.raises(InvalidRequestError):
        await admin.create_genie_client("x", auth="oauth")
    with pytest.raises(InvalidRequestError):
        await admin.create_genie_client("x", oauth_redirect_url="https://x.example.com")
    with pytest.raises(InvalidRequestError):
        await admin.create_genie_client("x", auth="basic")  # type: ignore[arg-type]
    assert sim.requests("admin_create_client") == []


async def test_a_validation_error_is_unprocessable(admin: AdminClient) -> None:
    """The server's 422 message is kept, with the validation hint."""
    with pytest.raises(UnprocessableEntityError) as info:
        await admin.create_genie_client("x" * 101)
    assert "too long" in info.value.message
    assert "validation" in (info.value.hint or "")


async def test_list_clients_all_and_by_genie(admin: AdminClient, sim: GenieSimulator) -> None:
    """list_clients shows every client, or only those attached to the given genies."""
    created = await admin.create_genie_client("spare")
    everything = await admin.list_clients()
    assert all(isinstance(c, GenieClientInfo) for c in everything)
    by_id = {c.client_id: c for c in everything}
    attached = sim.client_id
    assert attached is not None
    assert set(by_id) == {attached, created.client_id}
    assert by_id[attached].genie_ids == [sim.genie_id]
    assert by_id[attached].auth_type == "api_key"
    assert by_id[created.client_id].genie_ids == []
    assert by_id[created.client_id].name == "spare"
    mine = await admin.list_clients([sim.genie_id])
    assert [c.client_id for c in mine] == [sim.client_id]
    assert sim.requests("admin_list_clients")[-1].query == {"genie_ids": sim.genie_id}
    assert await admin.list_clients(["gin-other"]) == []


async def test_detach_gives_runtime_406_and_attach_restores(
    admin: AdminClient, sim: GenieSimulator, retry: RetryPolicy
) -> None:
    """Detached: chat_interface is None and the runtime says NotAcceptable; re-attached: works."""
    client_id = sim.client_id
    assert client_id is not None
    await admin.detach_client(sim.genie_id, client_id)
    info = await admin.get_genie(sim.genie_id)
    assert info.chat_interface is None
    assert info.client_attached is False
    with pytest.raises(NotAcceptableError):
        await runtime_ask(sim, retry)
    await admin.attach_client(sim.genie_id, client_id)
    assert (await admin.get_genie(sim.genie_id)).client_attached is True
    assert await runtime_ask(sim, retry) == "You said: hello"
    assert sim.requests("admin_attach_client")[-1].json == {"genie_client_id": client_id}


async def test_attaching_a_second_client_conflicts_with_a_hint(
    admin: AdminClient, sim: GenieSimulator
) -> None:
    """A genie has one client: the 409's hint says 1:1 and to detach_client first."""
    created = await admin.create_genie_client("second")
    with pytest.raises(ConflictError) as info:
        await admin.attach_client(sim.genie_id, created.client_id)
    hint = info.value.hint or ""
    assert "1:1" in hint
    assert "detach_client" in hint
    assert "Detach the existing client first" in hint
    assert info.value.attempts == 1
    assert len(sim.requests("admin_attach_client")) == 1  # a 4xx is never retried


async def test_swapping_clients_moves_the_runtime_key(
    admin: AdminClient, sim: GenieSimulator, retry: RetryPolicy
) -> None:
    """Detach the old client and attach a new one: the new key works, the old one fails."""
    old_key = sim.api_key
    assert sim.client_id is not None
    created = await admin.create_genie_client("replacement")
    assert created.api_key is not None
    await admin.detach_client(sim.genie_id, sim.client_id)
    await admin.attach_client(sim.genie_id, created.client_id)
    new_key = created.api_key.reveal()
    assert await runtime_ask(sim, retry, api_key=new_key) == "You said: hello"
    with pytest.raises(AuthFailedError):
        await runtime_ask(sim, retry, api_key=old_key)


async def test_regenerate_kills_the_old_key(
    admin: AdminClient, sim: GenieSimulator, retry: RetryPolicy
) -> None:
    """After regenerate_api_key the old key gets AuthFailedError and the new one works."""
    old_key = sim.api_key
    assert sim.client_id is not None
    regenerated = await admin.regenerate_api_key(sim.client_id)
    assert regenerated.client_id == sim.client_id
    assert regenerated.api_key is not None
    new_key = regenerated.api_key.reveal()
    assert new_key != old_key
    with pytest.raises(AuthFailedError):
        await runtime_ask(sim, retry, api_key=old_key)
    assert await runtime_ask(sim, retry, api_key=new_key) == "You said: hello"


async def test_delete_client(admin: AdminClient, sim: GenieSimulator) -> None:
    """delete_client removes it from the listing; deleting it again is a 404."""
    created = await admin.create_genie_client("temporary")
    await admin.delete_client(created.client_id)
    assert created.client_id not in {c.client_id for c in await admin.list_clients()}
    with pytest.raises(NotFoundError):
        await admin.delete_client(created.client_id)


@pytest.mark.parametrize("operation", ["create", "regenerate", "attach"])
async def test_missing_custom_chat_interface_privilege(
    admin: AdminClient, sim: GenieSimulator, operation: str
) -> None:
    """Without Custom chat interface, client create/regenerate/attach is a 403 whose hint
    names the privilege, calls it the most commonly missed one, and says no rotation."""
    spare = await admin.create_genie_client("spare")
    assert sim.client_id is not None
    await admin.detach_client(sim.genie_id, sim.client_id)
    sim.developer_privileges.discard("custom_chat_interface")
    calls: dict[str, Callable[[], Awaitable[object]]] = {
        "create": lambda: admin.create_genie_client("x"),
        "regenerate": lambda: admin.regenerate_api_key(spare.client_id),
        "attach": lambda: admin.attach_client(sim.genie_id, spare.client_id),
    }
    with pytest.raises(PermissionDeniedError) as info:
        await calls[operation]()
    hint = info.value.hint or ""
    assert "Custom chat interface" in hint
    assert "Genie building" in hint
    assert "Create" in hint
    assert "most commonly missed privilege" in hint
    assert "needn't be rotated" in hint
    assert info.value.request_id
    # Other calls still work, and granting the privilege fixes it with the same token.
    await admin.get_genie(sim.genie_id)
    sim.developer_privileges.add("custom_chat_interface")
    await calls[operation]()


async def test_other_403s_get_the_general_privilege_hint(
    admin: AdminClient, sim: GenieSimulator
) -> None:
    """A 403 on a genie call names the Genies privilege rather than Custom chat interface."""
    sim.developer_privileges = {"genie_clients", "custom_chat_interface"}
    with pytest.raises(PermissionDeniedError) as info:
        await admin.start_genie(sim.genie_id)
    assert "Genies (read and write)" in (info.value.hint or "")


async def test_a_wrong_token_is_401_with_the_developer_token_hint(
    sim: GenieSimulator, retry: RetryPolicy
) -> None:
    """401: not a valid Developer API token for this data center (and the host called)."""
    async with make_admin(sim, retry, token="wrkaus-not-the-right-one") as client:
        with pytest.raises(AuthenticationError) as info:
            await client.get_genie(sim.genie_id)
    hint = info.value.hint or ""
    assert "not a valid Developer API token for this data center" in hint
    assert "127.0.0.1" in hint
    assert "wrkaus-not-the-right-one" not in "".join(texts_of(info.value))


@pytest.mark.parametrize(
    ("route", "status", "expected"),
    [
        ("admin_get_genie", 406, "refused the request"),
        ("admin_get_genie", 400, "failed validation"),
        ("admin_delete_client", 409, "detach it"),
        ("admin_find_users", 429, "60 requests/min"),
    ],
)
async def test_admin_4xx_never_carry_runtime_hints(
    admin: AdminClient, sim: GenieSimulator, route: str, status: int, expected: str
) -> None:
    """Other 4xx get Developer API hints, never the runtime's (busy conversation, 406...)."""
    created = await admin.create_genie_client("spare")
    sim.fail(route, status)
    calls: dict[str, Callable[[], Awaitable[object]]] = {
        "admin_get_genie": lambda: admin.get_genie(sim.genie_id),
        "admin_delete_client": lambda: admin.delete_client(created.client_id),
        "admin_find_users": lambda: admin.find_users(sim.user_email),
    }
    with pytest.raises(GenieError) as info:
        await calls[route]()
    hint = info.value.hint or ""
    assert expected in hint
    assert "conversation" not in hint
    assert "chat_interface is null" not in hint


# --- retries ---------------------------------------------------------------------------------


async def test_a_503_then_200_on_start_is_retried(admin: AdminClient, sim: GenieSimulator) -> None:
    """start_genie retries a 503 with the same Idempotency-Key and then succeeds."""
    sim.genie_started = False
    sim.fail("admin_start_genie", 503, retry_after="1")
    info = await admin.start_genie(sim.genie_id)
    assert info.active
    records = sim.requests("admin_start_genie")
    assert [r.status for r in records] == [503, 200]
    assert records[0].idempotency_key
    assert records[0].idempotency_key == records[1].idempotency_key


async def test_a_500_is_retried_once(admin: AdminClient, sim: GenieSimulator) -> None:
    """Two 500s on find_users: one retry, then the error with its attempt count."""
    sim.fail("admin_find_users", 500, times=2)
    with pytest.raises(GenieError) as info:
        await admin.find_users(sim.user_email)
    assert getattr(info.value, "attempts", None) == 2
    assert len(sim.requests("admin_find_users")) == 2


async def test_a_persistent_503_keeps_the_shared_retry_hint(
    admin: AdminClient, sim: GenieSimulator
) -> None:
    """5xx hints stay the shared ones (they explain the retrying)."""
    sim.fail("admin_get_genie", 503, times=1000)
    with pytest.raises(ServiceUnavailableError) as info:
        await admin.get_genie(sim.genie_id)
    assert info.value.attempts > 1
    assert "retry policy" in (info.value.hint or "")


async def test_a_reset_on_create_is_not_resent(admin: AdminClient, sim: GenieSimulator) -> None:
    """A connection reset on create may have created the client: it is not sent again."""
    sim.fail("admin_create_client", kind="reset")
    with pytest.raises(GenieError):
        await admin.create_genie_client("once")
    assert len(sim.requests("admin_create_client")) == 1


def _lost_answer_app(genie_id: str, client_id: str) -> tuple[web.Application, dict[str, int]]:
    """Attach and detach that take effect but answer 503 the first time (and their counts)."""
    state = {"attached": 0, "posts": 0, "deletes": 0}

    async def attach(request: web.Request) -> web.Response:
        state["posts"] += 1
        if state["attached"]:
            return web.json_response({"message": "Already attached"}, status=409)
        state["attached"] = 1
        return web.json_response({"message": "upstream timeout"}, status=503)

    async def detach(request: web.Request) -> web.Response:
        state["deletes"] += 1
        if not state["attached"]:
            return web.json_response({"message": "Not attached"}, status=404)
        state["attached"] = 0
        return web.json_response({"message": "upstream timeout"}, status=503)

    async def clients(request: web.Request) -> web.Response:
        genie_ids = [genie_id] if state["attached"] else []
        return web.json_response({"data": [{"id": client_id, "genie_ids": genie_ids}]})

    app = web.Application()
    app.router.add_get("/api/agentic/genies/clients", clients)
    app.router.add_post(f"/api/agentic/genies/{genie_id}/clients", attach)
    app.router.add_delete(f"/api/agentic/genies/{genie_id}/clients/{client_id}", detach)
    return app, state


async def test_a_retried_attach_or_detach_whose_first_answer_was_lost_succeeds(
    aiohttp_server: AiohttpServer, retry: RetryPolicy
) -> None:
    """A 409 (attach) or 404 (detach) on the retry of a call that took effect is success."""
    app, state = _lost_answer_app("gin-a", "gincl-b")
    server = await aiohttp_server(app)
    async with AdminClient(token="wrkaus-x", base_url=str(server.make_url("")), retry=retry) as a:
        await a.attach_client("gin-a", "gincl-b")
        assert state["attached"] == 1
        await a.detach_client("gin-a", "gincl-b")
    assert (state["attached"], state["posts"], state["deletes"]) == (0, 2, 2)


async def test_a_retried_attach_conflicting_with_another_client_still_fails(
    aiohttp_server: AiohttpServer, retry: RetryPolicy
) -> None:
    """The 409 on a retry is only success when the genie's client is the one attached."""
    app, _ = _lost_answer_app("gin-a", "gincl-b")
    server = await aiohttp_server(app)
    async with AdminClient(token="wrkaus-x", base_url=str(server.make_url("")), retry=retry) as a:
        with pytest.raises(ConflictError) as info:
            await a.attach_client("gin-a", "gincl-other")
    assert "1:1" in (info.value.hint or "")


# --- secrets ---------------------------------------------------------------------------------


def test_secret_hides_its_value() -> None:
    """Secret: repr/str redacted, reveal() returns it, equality by value."""
    secret = Secret("f" * 64)
    assert repr(secret) == "Secret('<redacted>')"
    assert str(secret) == f"{secret}" == "<redacted>"
    assert secret.reveal() == "f" * 64
    assert secret == Secret("f" * 64)
    assert secret != Secret("e" * 64)
    assert len({secret, Secret("f" * 64)}) == 1
    with pytest.raises(TypeError):
        msgspec.json.encode(GenieClientCredentials(client_id="x", api_key=secret))


async def test_the_api_key_never_leaks(
    admin: AdminClient, sim: GenieSimulator, caplog: pytest.LogCaptureFixture
) -> None:
    """Created and regenerated keys appear in no repr/str of the models, no log line at DEBUG
    and no exception text (the Developer API token neither)."""
    caplog.set_level(logging.DEBUG)
    sim.fail("admin_create_client", 503)
    created = await admin.create_genie_client("secretive")
    assert sim.client_id is not None
    regenerated = await admin.regenerate_api_key(sim.client_id)
    assert created.api_key is not None
    assert regenerated.api_key is not None
    secrets = {
        "created": created.api_key.reveal(),
        "regenerated": regenerated.api_key.reveal(),
        "token": sim.developer_token,
    }
    seen = [repr(created), str(created), repr(regenerated), str(regenerated), repr(admin)]
    sim.developer_privileges.clear()
    with pytest.raises(PermissionDeniedError) as info:
        await admin.regenerate_api_key(sim.client_id)
    seen += texts_of(info.value)
    log_lines = [_FORMATTER.format(record) for record in caplog.records]
    assert any("retrying" in line for line in log_lines)  # the DEBUG logs were captured
    seen += log_lines
    leaks = [(name, i) for i, text in enumerate(seen) for name, s in secrets.items() if s in text]
    assert leaks == []


def _echo_key_app(key: str) -> web.Application:
    """Create answers a key; later calls answer errors that repeat that key back."""

    async def create(request: web.Request) -> web.Response:
        return web.json_response({"data": {"client_id": "gincl-echo", "api_key": key}})

    async def regenerate(request: web.Request) -> web.Response:
        return web.json_response({"message": f"key {key} may not be regenerated"}, status=422)

    async def get_genie(request: web.Request) -> web.Response:
        return web.json_response({"data": {"id": ["not", "a", "string"], "secret": key}})

    app = web.Application()
    app.router.add_post("/api/agentic/genies/clients", create)
    app.router.add_post("/api/agentic/genies/clients/gincl-echo/regenerate", regenerate)
    app.router.add_get("/api/agentic/genies/gin-echo", get_genie)
    return app


async def test_errors_echoing_a_received_key_are_redacted(
    aiohttp_server: AiohttpServer, retry: RetryPolicy
) -> None:
    """Once a key was received, any later error or unusable body repeating it is scrubbed."""
    key = "c0ffee" * 10 + "c0de"
    server = await aiohttp_server(_echo_key_app(key))
    async with AdminClient(token="wrkaus-x", base_url=str(server.make_url("")), retry=retry) as a:
        created = await a.create_genie_client("echo")
        assert created.api_key == Secret(key)
        with pytest.raises(UnprocessableEntityError) as unprocessable:
            await a.regenerate_api_key("gincl-echo")
        with pytest.raises(genie_async.APIResponseError) as unusable:
            await a.get_genie("gin-echo")
    assert "key <redacted> may not" in unprocessable.value.message
    for error in (unprocessable.value, unusable.value):
        assert not [text for text in texts_of(error) if key in text]


async def test_a_malformed_create_answer_does_not_leak_the_key(
    aiohttp_server: AiohttpServer, retry: RetryPolicy
) -> None:
    """A create answer of the wrong shape raises APIResponseError without the key in it."""
    key = "ab" * 32

    async def create(request: web.Request) -> web.Response:
        return web.json_response({"data": {"client_id": 42, "api_key": key}})

    app = web.Application()
    app.router.add_post("/api/agentic/genies/clients", create)
    server = await aiohttp_server(app)
    async with AdminClient(token="wrkaus-x", base_url=str(server.make_url("")), retry=retry) as a:
        with pytest.raises(genie_async.APIResponseError) as info:
            await a.create_genie_client("x")
    assert not [text for text in texts_of(info.value) if key in text]
