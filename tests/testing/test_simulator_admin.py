"""The simulator's Developer API stubs, checked with raw aiohttp (reference §10, §12 rows 37-38):
token and privileges, genies, IAM lookup, genie clients and how they drive the runtime."""

from __future__ import annotations

import re
from typing import Any

import aiohttp
import pytest

from genie_async.testing import ADMIN_ROUTES, ROUTES, GenieSimulator, HttpFault

from .conftest import Api, Reply

HEX64 = re.compile(r"[0-9a-f]{64}")


class Admin:
    """Raw Developer API calls against one simulator."""

    def __init__(self, sim: GenieSimulator, session: aiohttp.ClientSession) -> None:
        self.sim = sim
        self.session = session

    async def call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        token: str | None = None,
        params: dict[str, str] | None = None,
    ) -> Reply:
        headers = {"Authorization": f"Bearer {token or self.sim.developer_token}"}
        async with self.session.request(
            method, self.sim.url + path, json=json, headers=headers, params=params
        ) as resp:
            return Reply(resp.status, resp.headers, await resp.read())

    @property
    def genie(self) -> str:
        return f"/api/agentic/genies/{self.sim.genie_id}"

    async def create(self, name: str = "client") -> dict[str, Any]:
        body = {"client_name": name, "auth": {"type": "api_key"}}
        reply = await self.call("POST", "/api/agentic/genies/clients", json=body)
        assert reply.status == 200, reply.raw
        data: dict[str, Any] = reply.json["data"]
        return data


@pytest.fixture
def admin(sim: GenieSimulator, session: aiohttp.ClientSession) -> Admin:
    return Admin(sim, session)


async def runtime_status(api: Api, key: str | None = None) -> int:
    """The status of a runtime create-conversation call with ``key`` (default: sim.api_key)."""
    headers = {
        "Authorization": f"Bearer {key or api.sim.api_key}",
        "X-IDP-User-Id": api.sim.user_id,
    }
    reply = await api.call("POST", "/conversations", json={}, headers=headers, auth=False)
    return reply.status


# --- authentication and privileges -----------------------------------------------------------


async def test_the_developer_token_is_a_wrkaus_token(sim: GenieSimulator) -> None:
    """sim.developer_token is a wrkaus- token, distinct from the runtime key."""
    assert sim.developer_token.startswith("wrkaus-")
    assert sim.developer_token != sim.api_key


@pytest.mark.parametrize("kind", ["missing", "wrong", "runtime_key", "lowercase_bearer"])
async def test_anything_but_the_developer_token_is_401(
    admin: Admin, session: aiohttp.ClientSession, kind: str
) -> None:
    """No, a wrong, or a runtime credential → 401 with a {"message": …} body and a request id."""
    headers = {
        "missing": {},
        "wrong": {"Authorization": "Bearer wrkaus-wrong"},
        "runtime_key": {"Authorization": f"Bearer {admin.sim.api_key}"},
        "lowercase_bearer": {"Authorization": f"bearer {admin.sim.developer_token}"},
    }[kind]
    async with session.get(admin.sim.url + admin.genie, headers=headers) as resp:
        assert resp.status == 401
        body = await resp.json()
        assert resp.headers["x-request-id"]
    assert set(body) == {"message"}
    assert admin.sim.requests("admin_get_genie")[-1].status == 401


async def test_the_developer_token_is_refused_by_the_runtime(api: Api) -> None:
    """The runtime still answers 401 auth_failed to the Developer API token."""
    assert await runtime_status(api, api.sim.developer_token) == 401


async def test_without_custom_chat_interface_client_management_is_403(
    admin: Admin, sim: GenieSimulator
) -> None:
    """Create, regenerate and attach need custom_chat_interface; reads and genies do not."""
    created = await admin.create()
    sim.developer_privileges.discard("custom_chat_interface")
    regenerate = f"/api/agentic/genies/clients/{created['client_id']}/regenerate"
    attach = {"genie_client_id": created["client_id"]}
    for reply in [
        await admin.call(
            "POST",
            "/api/agentic/genies/clients",
            json={"client_name": "x", "auth": {"type": "api_key"}},
        ),
        await admin.call("POST", regenerate),
        await admin.call("POST", admin.genie + "/clients", json=attach),
    ]:
        assert reply.status == 403
        assert set(reply.json) == {"message"}
        assert "permission" in reply.json["message"]
    assert (await admin.call("GET", admin.genie)).status == 200
    assert (await admin.call("GET", "/api/agentic/genies/clients")).status == 200
    assert (await admin.call("POST", admin.genie + "/stop")).status == 200


async def test_privileges_default_and_replace(sim: GenieSimulator, admin: Admin) -> None:
    """The role has all three privileges by default; assigning a set replaces them."""
    assert sim.developer_privileges == {"genies", "genie_clients", "custom_chat_interface"}
    sim.developer_privileges = {"genie_clients"}
    assert (await admin.call("GET", admin.genie)).status == 403
    assert (await admin.call("GET", "/api/agentic/genies/clients")).status == 200


# --- genies ----------------------------------------------------------------------------------


async def test_get_genie_is_data_wrapped(admin: Admin, sim: GenieSimulator) -> None:
    """GET genie → {"data": {id, name, state, chat_interface}} naming the attached client."""
    reply = await admin.call("GET", admin.genie)
    assert reply.status == 200
    assert reply.headers["x-request-id"]
    data = reply.json["data"]
    assert (data["id"], data["state"]) == (sim.genie_id, "active")
    assert data["name"]
    assert data["chat_interface"]["genie_client_id"] == sim.client_id


async def test_the_flat_switch(admin: Admin, sim: GenieSimulator) -> None:
    """admin_envelope='flat' drops the data wrapper; unknown values are refused."""
    sim.admin_envelope = "flat"
    reply = await admin.call("GET", admin.genie)
    assert reply.json["id"] == sim.genie_id
    with pytest.raises(ValueError):
        sim.admin_envelope = "result"  # type: ignore[assignment]


async def test_start_and_stop_flip_genie_started(admin: Admin, sim: GenieSimulator) -> None:
    """POST stop/start answer the new state and flip sim.genie_started."""
    reply = await admin.call("POST", admin.genie + "/stop")
    assert reply.json == {"data": {"id": sim.genie_id, "state": "stopped"}}
    assert not sim.genie_started
    assert (await admin.call("GET", admin.genie)).json["data"]["state"] == "stopped"
    reply = await admin.call("POST", admin.genie + "/start")
    assert reply.json == {"data": {"id": sim.genie_id, "state": "active"}}
    assert sim.genie_started


async def test_a_stopped_genie_streams_pings_only(admin: Admin, api: Api) -> None:
    """After the stop route, a runtime send gets an open stream with pings and no reply."""
    await admin.call("POST", admin.genie + "/stop")
    cid = await api.conversation()
    result = await api.send(cid, "hello", timeout=0.2)
    assert result.status == 200
    assert result.types
    assert set(result.types) == {"system.ping"}


async def test_an_unknown_genie_is_404(admin: Admin) -> None:
    """Any genie id but the simulated one is a 404 with a message body."""
    for method, suffix in [("GET", ""), ("POST", "/start"), ("POST", "/stop")]:
        reply = await admin.call(method, "/api/agentic/genies/gin-nope" + suffix)
        assert reply.status == 404
        assert set(reply.json) == {"message"}


# --- IAM -------------------------------------------------------------------------------------


async def test_every_user_has_an_email(admin: Admin, sim: GenieSimulator) -> None:
    """The default user and added users have emails (generated unless given) and names."""
    assert sim.user_email.endswith("@example.com")
    other = sim.add_user()
    zoe = sim.add_user(email="zoe@example.com", name="Zoe")
    users = {u["id"]: u for u in (await admin.call("GET", "/api/iam/users")).json["data"]}
    assert set(users) == {sim.user_id, other, zoe}
    assert users[sim.user_id]["email"] == sim.user_email
    assert users[zoe]["email"] == "zoe@example.com"
    assert users[zoe]["name"] == "Zoe"
    emails = [u["email"] for u in users.values()]
    assert len(set(emails)) == 3
    assert all(u["name"] for u in users.values())


async def test_iam_lookup_by_email(admin: Admin, sim: GenieSimulator) -> None:
    """query=<email> finds active and invited users (case-insensitively); unknown → []."""
    invited = sim.add_user(status="invited", email="ivy@example.com", name="Ivy Green")
    reply = await admin.call("GET", "/api/iam/users", params={"query": sim.user_email})
    [me] = reply.json["data"]
    assert me["id"] == sim.user_id
    assert me["email"] == sim.user_email
    assert me["status"] == "active"
    assert me["name"]
    reply = await admin.call("GET", "/api/iam/users", params={"query": "IVY@example.com"})
    assert reply.json == {
        "data": [
            {"id": invited, "email": "ivy@example.com", "name": "Ivy Green", "status": "invited"}
        ]
    }
    reply = await admin.call("GET", "/api/iam/users", params={"query": "nobody@example.com"})
    assert (reply.status, reply.json) == (200, {"data": []})
    assert sim.requests("admin_find_users")[-1].query == {"query": "nobody@example.com"}


# --- genie clients ---------------------------------------------------------------------------


async def test_initial_state_is_one_client_attached_with_the_runtime_key(
    admin: Admin, sim: GenieSimulator
) -> None:
    """One client, attached to the genie; the runtime accepts its key (sim.api_key)."""
    reply = await admin.call("GET", "/api/agentic/genies/clients")
    [client] = reply.json["data"]
    assert client["id"] == sim.client_id
    assert client["id"].startswith("gincl-")
    assert client["genie_ids"] == [sim.genie_id]
    assert "api_key" not in client
    assert sim.client_attached


async def test_create_returns_a_fresh_key_once(admin: Admin, sim: GenieSimulator) -> None:
    """Create → client_id, a new 64-hex api_key, oauth_client_id null; unattached."""
    created = await admin.create("Portal")
    assert created["client_id"].startswith("gincl-")
    assert HEX64.fullmatch(created["api_key"])
    assert created["api_key"] != sim.api_key
    assert created["oauth_client_id"] is None
    listed = (await admin.call("GET", "/api/agentic/genies/clients")).json["data"]
    [entry] = [c for c in listed if c["id"] == created["client_id"]]
    assert entry == {
        "id": created["client_id"],
        "name": "Portal",
        "auth_type": "api_key",
        "oauth_client_id": None,
        "genie_ids": [],
    }


async def test_create_an_oauth_client(admin: Admin) -> None:
    """An OAuth client gets an oauth_client_id and no api_key."""
    body = {
        "client_name": "SSO",
        "auth": {"type": "oauth", "oauth_redirect_url": "https://x.test/cb"},
    }
    reply = await admin.call("POST", "/api/agentic/genies/clients", json=body)
    data = reply.json["data"]
    assert data["api_key"] is None
    assert data["oauth_client_id"]


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"client_name": " ", "auth": {"type": "api_key"}},
        {"client_name": "x" * 101, "auth": {"type": "api_key"}},
        {"client_name": "x", "auth": {"type": "basic"}},
        {"client_name": "x", "auth": {"type": "oauth"}},
    ],
)
async def test_create_validation_is_422(admin: Admin, body: dict[str, Any]) -> None:
    """A blank or over-long name, an unknown auth type or OAuth without a redirect → 422."""
    reply = await admin.call("POST", "/api/agentic/genies/clients", json=body)
    assert reply.status == 422
    assert set(reply.json) == {"message"}


async def test_attach_is_one_to_one(admin: Admin, sim: GenieSimulator) -> None:
    """Attaching while the genie has a client → 409; an unknown client → 404."""
    created = await admin.create()
    reply = await admin.call(
        "POST", admin.genie + "/clients", json={"genie_client_id": created["client_id"]}
    )
    assert reply.status == 409
    assert set(reply.json) == {"message"}
    reply = await admin.call("POST", admin.genie + "/clients", json={"genie_client_id": "gincl-x"})
    assert reply.status == 404
    reply = await admin.call("POST", admin.genie + "/clients", json={})
    assert reply.status == 422


async def test_detach_makes_the_runtime_406_until_attached_again(
    admin: Admin, api: Api, sim: GenieSimulator
) -> None:
    """Detach → chat_interface null, client_attached False, runtime 406; attach → 200."""
    client_id = sim.client_id
    reply = await admin.call("DELETE", f"{admin.genie}/clients/{client_id}")
    assert reply.status == 200
    assert not sim.client_attached
    assert sim.client_id is None
    assert (await admin.call("GET", admin.genie)).json["data"]["chat_interface"] is None
    assert await runtime_status(api) == 406
    again = await admin.call("DELETE", f"{admin.genie}/clients/{client_id}")
    assert again.status == 404
    reply = await admin.call("POST", admin.genie + "/clients", json={"genie_client_id": client_id})
    assert reply.status == 200
    assert sim.client_attached
    assert await runtime_status(api) == 200


async def test_attaching_another_client_switches_the_runtime_key(
    admin: Admin, api: Api, sim: GenieSimulator
) -> None:
    """Swap clients: the runtime accepts the new client's key; the old key gets 401."""
    old_key = sim.api_key
    created = await admin.create()
    await admin.call("DELETE", f"{admin.genie}/clients/{sim.client_id}")
    await admin.call(
        "POST", admin.genie + "/clients", json={"genie_client_id": created["client_id"]}
    )
    assert sim.client_id == created["client_id"]
    assert sim.api_key == created["api_key"]
    assert await runtime_status(api, created["api_key"]) == 200
    assert await runtime_status(api, old_key) == 401


async def test_regenerate_invalidates_the_old_key(
    admin: Admin, api: Api, sim: GenieSimulator
) -> None:
    """Regenerate the attached client: new key works, old key 401 auth_failed."""
    old_key = sim.api_key
    reply = await admin.call("POST", f"/api/agentic/genies/clients/{sim.client_id}/regenerate")
    data = reply.json["data"]
    assert data["client_id"] == sim.client_id
    assert HEX64.fullmatch(data["api_key"])
    assert data["api_key"] != old_key
    assert sim.api_key == data["api_key"]
    assert await runtime_status(api, data["api_key"]) == 200
    headers = {"Authorization": f"Bearer {old_key}", "X-IDP-User-Id": sim.user_id}
    old = await api.call("POST", "/conversations", json={}, headers=headers, auth=False)
    assert (old.status, old.json["error_code"]) == (401, "auth_failed")


async def test_regenerating_an_unattached_client_leaves_the_runtime_alone(
    admin: Admin, api: Api, sim: GenieSimulator
) -> None:
    """Only the attached client's key is the runtime's; others regenerate independently."""
    created = await admin.create()
    key = sim.api_key
    reply = await admin.call(
        "POST", f"/api/agentic/genies/clients/{created['client_id']}/regenerate"
    )
    assert reply.status == 200
    assert sim.api_key == key
    assert await runtime_status(api) == 200


async def test_regenerate_an_oauth_or_unknown_client(admin: Admin) -> None:
    """An OAuth client has no key to regenerate (422); an unknown client is 404."""
    body = {
        "client_name": "SSO",
        "auth": {"type": "oauth", "oauth_redirect_url": "https://x.test/cb"},
    }
    oauth = (await admin.call("POST", "/api/agentic/genies/clients", json=body)).json["data"]
    reply = await admin.call("POST", f"/api/agentic/genies/clients/{oauth['client_id']}/regenerate")
    assert reply.status == 422
    reply = await admin.call("POST", "/api/agentic/genies/clients/gincl-nope/regenerate")
    assert reply.status == 404


async def test_list_filters_by_genie_ids(admin: Admin, sim: GenieSimulator) -> None:
    """genie_ids (comma-separated or repeated genie_ids[]) keeps the clients of those genies."""
    await admin.create()
    for params in [{"genie_ids": sim.genie_id}, {"genie_ids[]": sim.genie_id}]:
        reply = await admin.call("GET", "/api/agentic/genies/clients", params=params)
        assert [c["id"] for c in reply.json["data"]] == [sim.client_id]
    reply = await admin.call(
        "GET", "/api/agentic/genies/clients", params={"genie_ids": "gin-x,gin-y"}
    )
    assert reply.json == {"data": []}
    reply = await admin.call("GET", "/api/agentic/genies/clients")
    assert len(reply.json["data"]) == 2


async def test_deleting_the_attached_client_detaches_it(
    admin: Admin, api: Api, sim: GenieSimulator
) -> None:
    """DELETE client removes it (detaching first: the runtime then answers 406)."""
    client_id = sim.client_id
    reply = await admin.call("DELETE", f"/api/agentic/genies/clients/{client_id}")
    assert reply.status == 200
    assert sim.client_id is None
    assert await runtime_status(api) == 406
    assert (await admin.call("DELETE", f"/api/agentic/genies/clients/{client_id}")).status == 404
    with pytest.raises(LookupError):
        sim.client_attached = True  # nothing left to re-attach


# --- the simulator's own switches stay in step -----------------------------------------------


async def test_the_client_attached_switch_detaches_and_reattaches(
    admin: Admin, sim: GenieSimulator
) -> None:
    """sim.client_attached = False shows as chat_interface null; True re-attaches it."""
    client_id = sim.client_id
    sim.client_attached = False
    assert (await admin.call("GET", admin.genie)).json["data"]["chat_interface"] is None
    sim.client_attached = True
    data = (await admin.call("GET", admin.genie)).json["data"]
    assert data["chat_interface"]["genie_client_id"] == client_id


async def test_sim_regenerate_api_key_is_the_attached_clients_key(
    admin: Admin, api: Api, sim: GenieSimulator
) -> None:
    """sim.regenerate_api_key() regenerates the attached client, as the route would."""
    new = sim.regenerate_api_key()
    assert sim.api_key == new
    assert await runtime_status(api, new) == 200
    await admin.call("DELETE", f"{admin.genie}/clients/{sim.client_id}")
    sim.client_attached = True
    assert sim.api_key == new


# --- log and faults --------------------------------------------------------------------------


async def test_calls_are_logged_with_route_names(admin: Admin, sim: GenieSimulator) -> None:
    """Every Developer API call is in sim.log under its admin_* name, token redacted."""
    created = await admin.create()
    genie = admin.genie
    clients = "/api/agentic/genies/clients"
    calls = [
        ("GET", genie),
        ("POST", genie + "/start"),
        ("POST", genie + "/stop"),
        ("GET", "/api/iam/users"),
        ("GET", clients),
        ("POST", f"{clients}/{created['client_id']}/regenerate"),
        ("DELETE", f"{genie}/clients/{sim.client_id}"),
        ("POST", genie + "/clients"),
        ("DELETE", f"{clients}/{created['client_id']}"),
    ]
    for method, path in calls:
        json = {"genie_client_id": sim.client_id} if path.endswith("/clients") else None
        await admin.call(method, path, json=json)
    routes = [record.route for record in sim.log]
    assert set(routes) == set(ADMIN_ROUTES)
    assert all(record.headers.get("Authorization") == "<redacted>" for record in sim.log)
    assert all(record.has_auth for record in sim.log)


def test_admin_routes_are_named_and_distinct() -> None:
    """ADMIN_ROUTES are admin_-prefixed and never clash with the runtime's ROUTES."""
    assert all(name.startswith("admin_") for name in ADMIN_ROUTES)
    assert not ADMIN_ROUTES & ROUTES
    assert len(ADMIN_ROUTES) == 10


async def test_faults_on_admin_routes(admin: Admin, sim: GenieSimulator) -> None:
    """sim.fail works on admin routes: a 503 with Retry-After, then the normal answer."""
    fault = sim.fail("admin_start_genie", 503, retry_after="1")
    assert isinstance(fault, HttpFault)
    first = await admin.call("POST", admin.genie + "/start")
    assert (first.status, first.headers["Retry-After"]) == (503, "1")
    second = await admin.call("POST", admin.genie + "/start")
    assert second.status == 200
    assert [r.status for r in sim.requests("admin_start_genie")] == [503, 200]


def test_admin_fault_rules_are_the_runtimes(sim: GenieSimulator) -> None:
    """Unknown routes and runtime-only options are refused for admin routes too."""
    with pytest.raises(ValueError, match="unknown route"):
        sim.fail("admin_nope", 503)
    with pytest.raises(ValueError, match="after_accept"):
        sim.fail("admin_create_client", 503, after_accept=True)
    with pytest.raises(ValueError, match="after_pages"):
        sim.fail("admin_find_users", 503, after_pages=1)
    with pytest.raises(ValueError, match="times"):
        sim.fail("admin_get_genie", 503, times=0)


async def test_a_reset_fault_on_an_admin_route(admin: Admin, sim: GenieSimulator) -> None:
    """kind='reset' drops the connection of the admin call without an answer."""
    sim.fail("admin_create_client", kind="reset")
    with pytest.raises(aiohttp.ClientError):
        await admin.create()
    assert len((await admin.call("GET", "/api/agentic/genies/clients")).json["data"]) == 1
