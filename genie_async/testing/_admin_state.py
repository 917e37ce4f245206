"""The Developer API side of the simulated workspace: the Developer API token and its role's
privileges, and the genie clients with the one attached to the genie (reference §10.3).

The runtime checks two things the Developer API changes: ``world.flags.client_attached``
(406 when False) and ``world.api_key`` (the key it accepts). Both are derived from the
registry here and only ever changed through these operations, so the Developer API and the
runtime always agree. ``world.api_key`` is the key of the *runtime client*: the attached
client, or, while none is attached, the one attached last (its key then gets 406, not 401).
"""

from __future__ import annotations

import random
import string
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from ._state import World

__all__ = [
    "ADMIN_PRIVILEGES",
    "AdminState",
    "SimGenieClient",
    "attach_client",
    "create_client",
    "delete_client",
    "detach_client",
    "regenerate_key",
    "set_client_attached",
]

_ALNUM = string.ascii_letters + string.digits

#: Privileges the simulated Developer API client's role can hold. ``genies`` and
#: ``genie_clients`` are "Genies" and "Genie client" read/write; ``custom_chat_interface`` is
#: "Custom chat interface" under Genie building, needed to create, regenerate or attach a
#: genie client (the seed's most commonly missed privilege).
ADMIN_PRIVILEGES = frozenset({"genies", "genie_clients", "custom_chat_interface"})

AuthType = Literal["api_key", "oauth"]


@dataclass(eq=False)
class SimGenieClient:
    """A genie client of the workspace. ``api_key`` is None for an OAuth client."""

    client_id: str
    name: str
    auth_type: AuthType
    api_key: str | None = field(default=None, repr=False)
    oauth_client_id: str | None = None
    oauth_redirect_url: str | None = None
    genie_id: str | None = None  # the genie it is attached to

    def to_json(self) -> dict[str, object]:
        """The list form (``GET /api/agentic/genies/clients``): never the API key."""
        return {
            "id": self.client_id,
            "name": self.name,
            "auth_type": self.auth_type,
            "oauth_client_id": self.oauth_client_id,
            "genie_ids": [self.genie_id] if self.genie_id else [],
        }


class AdminState:
    """Developer API state: token, privileges, envelope switch and genie clients.

    Ids and keys come from their own seeded RNG stream, so using the Developer API never
    changes the runtime's ids.
    """

    def __init__(self, seed: int, genie_id: str, api_key: str) -> None:
        self._rng = random.Random(f"genie-sim:{seed}:admin")
        self.developer_token = "wrkaus-" + self._alnum(40)
        self.privileges: set[str] = set(ADMIN_PRIVILEGES)
        self.envelope: Literal["data", "flat"] = "data"
        self.genie_name = "Simulated genie"
        initial = SimGenieClient(
            self.client_id(), "Headless client", "api_key", api_key=api_key, genie_id=genie_id
        )
        self.clients: dict[str, SimGenieClient] = {initial.client_id: initial}
        self.attached: str | None = initial.client_id
        self.runtime_client: str | None = initial.client_id

    def _alnum(self, length: int) -> str:
        return "".join(self._rng.choice(_ALNUM) for _ in range(length))

    def client_id(self) -> str:
        """A genie client id shaped like production's ``gincl-AaCx4NAC-zmzXRb-B6``."""
        return f"gincl-{self._alnum(8)}-{self._alnum(6)}-{self._alnum(2)}"

    def api_key(self) -> str:
        """A fresh genie client API key: 64 lowercase hex characters."""
        return f"{self._rng.getrandbits(256):064x}"

    def oauth_client_id(self) -> str:
        """The public OAuth client id of an OAuth genie client."""
        return self._alnum(32)


def _sync_runtime(world: World) -> None:
    """Make the runtime's flag and accepted key follow the registry."""
    admin = world.admin
    world.flags.client_attached = admin.attached is not None
    client = admin.clients.get(admin.runtime_client or "")
    if client is not None:
        # An OAuth client has no key: then no API key is accepted ("" never matches).
        world.api_key = client.api_key or ""


def create_client(
    world: World, name: str, auth_type: AuthType, redirect_url: str | None = None
) -> SimGenieClient:
    """A new, unattached genie client (with a fresh key when ``auth_type`` is api_key)."""
    admin = world.admin
    client = SimGenieClient(admin.client_id(), name, auth_type)
    if auth_type == "api_key":
        client.api_key = admin.api_key()
    else:
        client.oauth_client_id = admin.oauth_client_id()
        client.oauth_redirect_url = redirect_url
    admin.clients[client.client_id] = client
    return client


def attach_client(world: World, client: SimGenieClient) -> None:
    """Attach ``client`` to the genie; the runtime now accepts its key (caller checks 1:1)."""
    admin = world.admin
    client.genie_id = world.genie_id
    admin.attached = admin.runtime_client = client.client_id
    _sync_runtime(world)


def detach_client(world: World) -> None:
    """Detach the genie's client: the runtime answers 406 until one is attached again."""
    admin = world.admin
    client = admin.clients.get(admin.attached or "")
    if client is not None:
        client.genie_id = None
    admin.attached = None
    _sync_runtime(world)


def delete_client(world: World, client: SimGenieClient) -> None:
    """Delete ``client`` (detaching it first if it is attached)."""
    admin = world.admin
    if admin.attached == client.client_id:
        detach_client(world)
    del admin.clients[client.client_id]


def regenerate_key(world: World, client: SimGenieClient, key: str | None = None) -> str:
    """Give ``client`` a new API key; its previous key stops working at once."""
    client.api_key = key if key is not None else world.admin.api_key()
    _sync_runtime(world)
    return client.api_key


def set_client_attached(world: World, value: bool) -> None:
    """The ``sim.client_attached`` switch: detach, or re-attach the runtime client."""
    admin = world.admin
    if not value:
        detach_client(world)
        return
    if admin.attached is None:
        client = admin.clients.get(admin.runtime_client or "")
        if client is None:
            raise LookupError("no genie client to re-attach; create and attach one instead")
        attach_client(world, client)
