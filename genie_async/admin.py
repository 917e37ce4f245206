"""Workato Developer API helpers for provisioning a genie for the Headless API.

The Developer API (reference §10) is a different surface from the runtime: another host
(``www.workato.com`` in the US), another credential (a Developer API token, ``wrkaus-…`` in
the US), and ``{"data": …}`` bodies. :class:`AdminClient` covers what a Headless setup
needs: start and stop a genie, look up end users, and manage the genie's client (create,
attach, detach, regenerate its API key, delete). It shares the runtime client's HTTP core:
the same timeouts, retry policy, redaction, https rules and typed errors
(:mod:`genie_async.errors`), with hints written for the Developer API.

Example::

    from genie_async import GenieClient
    from genie_async.admin import AdminClient

    async with AdminClient(token=DEVELOPER_TOKEN, data_center="us") as admin:
        [user] = await admin.find_users("ana@example.com")   # user.status: active / invited
        created = await admin.create_genie_client("support-portal")
        store_secret(created.api_key.reveal())                # shown once: store it now
        await admin.attach_client(GENIE_ID, created.client_id)  # 409: detach the old one first
        await admin.start_genie(GENIE_ID)

    # ~30-60 s later (configuration reaches the gateway asynchronously):
    async with GenieClient(GENIE_ID, data_center="us", api_key=KEY, user_id=user.id) as client:
        ...

API keys returned by :meth:`AdminClient.create_genie_client` and
:meth:`AdminClient.regenerate_api_key` are :class:`Secret` values: their ``repr`` and ``str``
read ``<redacted>``; call ``.reveal()`` to read one. The client also redacts them, and the
Developer API token, from every error it raises.
"""

from __future__ import annotations

import collections
import hmac
import re
from collections.abc import Callable, Iterable
from typing import Any, Literal, TypeVar, final
from urllib.parse import urlsplit

import aiohttp
import msgspec

from ._auth import Credentials, _check_header_value, scrub
from ._config import RetryPolicy, Timeouts
from ._http import HTTPCore, OwnsCore, Response, resolve_base_url, segment
from .errors import (
    APIResponseError,
    APIStatusError,
    ConfigurationError,
    ConflictError,
    InvalidRequestError,
)

__all__ = [
    "AdminClient",
    "GenieClientCredentials",
    "GenieClientInfo",
    "GenieInfo",
    "IamUser",
    "Secret",
]

T = TypeVar("T")

# Developer API hosts per data center (reference §1.2); paths start with /api/.
_HOSTS: dict[str, str] = {
    "us": "https://www.workato.com",
    "eu": "https://app.eu.workato.com",
    "jp": "https://app.jp.workato.com",
    "sg": "https://app.sg.workato.com",
    "au": "https://app.au.workato.com",
    "il": "https://app.il.workato.com",
    "kr": "https://app.kr.workato.com",
    "cn": "https://app.workatoapp.cn",
    "trial": "https://app.trial.workato.com",
}
_GENIES = "/api/agentic/genies"
_API_KEY_SHAPE = re.compile(r"[0-9a-fA-F]{64}")
_MAX_LEARNED_SECRETS = 64


# --- Hints -----------------------------------------------------------------------------------

_HINT_UNAUTHORIZED = (
    "The token is not a valid Developer API token for this data center. Developer API tokens "
    "(wrkaus-… in the US) come from Workspace admin → API clients and are data-center-scoped: "
    "call the Developer API host of the data center your workspace runs in (this client called "
    "{host}). A genie client API key or an OAuth access token is not a Developer API token."
)
_HINT_CUSTOM_CHAT_INTERFACE = (
    "The Developer API client's role is missing the Custom chat interface privilege under "
    "Genie building, which governs creating, regenerating and attaching genie clients; it is "
    "the most commonly missed privilege for Headless setup. Grant the role Custom chat "
    "interface with at least Create (Workspace admin → API clients → Client roles). The token "
    "needn't be rotated: adding a privilege takes effect for the existing token."
)
_HINT_FORBIDDEN = (
    "The Developer API client's role lacks a privilege this call needs: Genies (read and "
    "write) for genies, Genie client (read and write) for genie clients and their "
    "assignments, Custom chat interface (under Genie building, at least Create) for creating, "
    "regenerating or attaching clients. The token needn't be rotated after adding one."
)
_HINT_ATTACH_CONFLICT = (
    "The genie already has a genie client attached, and the relationship is 1:1. Detach the "
    "existing client first (detach_client(genie_id, client_id); list_clients(genie_ids=[...]) "
    "shows which one is attached), then attach."
)
_HINT_NOT_FOUND = (
    "Not found. Check the genie id (gin-…) or genie client id (gincl-…), and that the token "
    "belongs to the workspace and data center that own them."
)
_HINT_INVALID = "The request's fields failed validation; see the message for the field."
_HINT_RATE_LIMITED = (
    "Developer API rate limit: 60 requests/min for start, stop, clients and IAM; 1,000/min "
    "for getting genies. Wait retry_after seconds before trying again."
)

_HINT_CONFLICT = (
    "The Developer API refused the change as conflicting with the current state (a genie has "
    "exactly one genie client: detach it before attaching or deleting another)."
)
_HINT_REFUSED = "The Developer API refused the request; see the message and the status."
_STATUS_HINTS = {
    400: _HINT_INVALID,
    404: _HINT_NOT_FOUND,
    409: _HINT_CONFLICT,
    422: _HINT_INVALID,
    429: _HINT_RATE_LIMITED,
}

_Operation = Literal["genie", "manage_client", "attach", "client", "iam"]


def _hint(status: int, operation: _Operation, *, host: str) -> str | None:
    """The Developer API hint for a failed call (None keeps the shared one: 3xx, 5xx)."""
    if status == 401:
        return _HINT_UNAUTHORIZED.format(host=host)
    if status == 403:
        if operation in ("manage_client", "attach"):
            return _HINT_CUSTOM_CHAT_INTERFACE
        return _HINT_FORBIDDEN
    if status == 409 and operation == "attach":
        return _HINT_ATTACH_CONFLICT
    if 400 <= status < 500:
        # Never the runtime's hints (a busy conversation, a missing client) for these calls.
        return _STATUS_HINTS.get(status, _HINT_REFUSED)
    return None


# --- Secrets and credentials -----------------------------------------------------------------


@final
class Secret:
    """A secret string, such as a genie client API key.

    ``repr()`` and ``str()`` read ``<redacted>``, so printing or logging a model holding one
    never shows it; :meth:`reveal` returns the value. Equality compares in constant time.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError("a Secret holds a string")
        self._value = value

    def reveal(self) -> str:
        """The secret value. Store it at once: an API key is shown only once."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('<redacted>')"

    def __str__(self) -> str:
        return "<redacted>"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash((Secret, self._value))


class _DeveloperToken(Credentials):
    """``Authorization: Bearer <Developer API token>``; also remembers the API keys seen in
    responses so that the HTTP core redacts them from any later error."""

    __slots__ = ("_headers", "_learned", "_token")

    def __init__(self, token: str) -> None:
        _check_header_value(token, "token")
        if _API_KEY_SHAPE.fullmatch(token):
            raise ConfigurationError(
                "The token looks like a genie client API key (64 hexadecimal characters), "
                "which is for the runtime API (GenieClient), not a Developer API token.",
                hint="AdminClient takes a Developer API token (wrkaus-… in the US) from "
                "Workspace admin → API clients. Use the genie client API key with "
                "GenieClient(genie_id, api_key=..., user_id=...).",
            )
        self._token = token
        self._headers = {"Authorization": f"Bearer {token}"}
        self._learned: collections.deque[str] = collections.deque(maxlen=_MAX_LEARNED_SECRETS)

    def learn(self, secret: str) -> None:
        if secret and secret not in self._learned:
            self._learned.append(secret)

    async def headers(self, *, refresh: bool = False) -> dict[str, str]:
        return self._headers

    def secrets(self) -> Iterable[str]:
        return (self._token, *self._learned)


# --- Models ----------------------------------------------------------------------------------


class _AdminModel(msgspec.Struct, kw_only=True, frozen=True):
    request_id: str | None = None
    """The ``x-request-id`` of the response this came from (quote it to Workato support)."""


class GenieInfo(_AdminModel, frozen=True):
    """A genie as the Developer API reports it.

    ``state`` is ``active`` when started (the runtime replies) and ``stopped`` otherwise.
    ``chat_interface`` is ``None`` when no genie client is attached, so runtime calls get
    406; it is ``msgspec.UNSET`` when the response did not say (start and stop answers).
    """

    id: str
    name: str | None = None
    state: str | None = None
    chat_interface: dict[str, Any] | msgspec.UnsetType | None = msgspec.UNSET

    @property
    def active(self) -> bool:
        """Whether the genie is started (``state == "active"``)."""
        return self.state == "active"

    @property
    def client_attached(self) -> bool | None:
        """Whether a genie client is attached (None when the response did not say)."""
        if self.chat_interface is msgspec.UNSET:
            return None
        return self.chat_interface is not None


class IamUser(_AdminModel, frozen=True):
    """A Workato Identity user. ``id`` is the ``X-IDP-User-Id`` value (``user_id`` of
    :class:`~genie_async.GenieClient`); ``status`` is ``active``, or ``invited`` until the user
    accepts the email invitation and finishes setting up their Workato Identity."""

    id: str
    email: str | None = None
    name: str | None = None
    status: str | None = None

    @property
    def active(self) -> bool:
        """Whether runtime calls may assert this user (if allow-listed on the genie)."""
        return self.status == "active"


class GenieClientCredentials(_AdminModel, frozen=True):
    """A genie client just created, or its key just regenerated.

    ``api_key`` (API-key clients) is shown only this once: store ``api_key.reveal()`` at once.
    ``oauth_client_id`` (OAuth clients) is the public id for the end users' PKCE flow.
    """

    client_id: str
    api_key: Secret | None = None
    oauth_client_id: str | None = None


class GenieClientInfo(_AdminModel, frozen=True):
    """A genie client of the workspace (never with its key). ``genie_ids`` lists the genie it
    is attached to (at most one: the relationship is 1:1), empty when unattached."""

    client_id: str
    name: str | None = None
    auth_type: str | None = None
    genie_ids: list[str] = msgspec.field(default_factory=list)
    oauth_client_id: str | None = None


# --- Response parsing ------------------------------------------------------------------------


def _unwrap(payload: Any) -> Any:
    """The payload inside ``{"data": …}`` (reference §10.1), or the flat body as it is."""
    if isinstance(payload, dict) and "data" in payload:
        inner = payload["data"]
        if inner is None or isinstance(inner, (dict, list)):
            return inner
    return payload


def _secret_hook(kind: type, value: Any) -> Any:
    if kind is Secret and isinstance(value, str):
        return Secret(value)
    raise TypeError("expected a string")


def _unusable(message: str, response: Response, body: Any, hint: str | None) -> APIResponseError:
    return APIResponseError(
        scrub(message, response.secrets),
        status=response.status,
        body=scrub(body, response.secrets),
        request_id=response.request_id,
        hint=hint,
    )


def _convert(obj: Any, model: type[T], response: Response, *, what: str) -> T:
    if isinstance(obj, dict):
        obj = {**obj, "request_id": response.request_id}
    try:
        return msgspec.convert(obj, model, dec_hook=_secret_hook)
    except msgspec.ValidationError as exc:
        raise _unusable(
            f"Unexpected {what} in the Developer API response: {exc}",
            response,
            obj,
            "The response shape changed or a proxy altered it; report this with the request id.",
        ) from exc


def _object(response: Response, *, what: str, defaults: dict[str, Any]) -> dict[str, Any]:
    """The unwrapped object (``defaults`` filling absent keys; an empty body is all defaults)."""
    body = _unwrap(response.payload)
    if body is None:
        return dict(defaults)
    if not isinstance(body, dict):
        raise _unusable(
            f"Expected a JSON object for the {what}, got {type(body).__name__}.",
            response,
            response.payload,
            None,
        )
    # A null never replaces a default (the id the call was made with, the state it set).
    kept = {key: value for key, value in body.items() if value is not None or key not in defaults}
    return {**defaults, **kept}


def _items(response: Response, *, what: str) -> list[dict[str, Any]]:
    """The unwrapped list of objects (also inside ``items`` / ``records``)."""
    body = _unwrap(response.payload)
    if isinstance(body, dict):
        body = next((body[k] for k in ("items", "records") if isinstance(body.get(k), list)), body)
    if body is None:
        return []
    if not isinstance(body, list):
        raise _unusable(
            f"Expected a JSON list of {what}, got {type(body).__name__}.",
            response,
            response.payload,
            None,
        )
    return [item for item in body if isinstance(item, dict)]


def _client_info(raw: dict[str, Any]) -> dict[str, Any]:
    """Normalise the names a client listing may use (``id``, ``client_name``, ``auth.type``,
    ``genie_id``) to the model's; an ``api_key`` is dropped, never kept."""
    item = {key: value for key, value in raw.items() if key != "api_key"}
    item.setdefault("client_id", item.get("id"))
    item.setdefault("name", item.get("client_name"))
    auth = item.get("auth")
    if "auth_type" not in item and isinstance(auth, dict):
        item["auth_type"] = auth.get("type")
    if "genie_ids" not in item:
        genie_id = item.get("genie_id")
        item["genie_ids"] = [genie_id] if isinstance(genie_id, str) and genie_id else []
    return {key: value for key, value in item.items() if value is not None or key == "client_id"}


# --- The client ------------------------------------------------------------------------------


def _require_text(value: object, message: str) -> None:
    if not isinstance(value, str) or not value.strip():
        raise InvalidRequestError(message)


def _admin_base_url(
    data_center: str | None, base_url: str | None, *, allow_insecure_http: bool
) -> str:
    if (data_center is None) == (base_url is None):
        raise ConfigurationError(
            f"Give exactly one of data_center (one of {', '.join(_HOSTS)}) and base_url."
        )
    if data_center is not None:
        host = _HOSTS.get(data_center.lower())
        if host is None:
            raise ConfigurationError(
                f"Unknown data_center {data_center!r}; use one of {', '.join(_HOSTS)}, or "
                "base_url for other hosts (Virtual Private Workato, a proxy, the simulator)."
            )
        return host
    assert base_url is not None
    resolved = resolve_base_url(
        data_center=None, base_url=base_url, allow_insecure_http=allow_insecure_http
    )
    # The docs list the hosts as ".../api/"; the paths here already start with /api.
    if urlsplit(resolved).path.endswith("/api"):
        resolved = resolved[: -len("/api")]
    return resolved


class AdminClient(OwnsCore):
    """An asyncio client for the Workato Developer API calls a Headless setup needs.

    Use it as an async context manager (or call :meth:`close`)::

        async with AdminClient(token=DEVELOPER_TOKEN, data_center="eu") as admin:
            genie = await admin.get_genie("gin-AaNpL4XP-baNnFY-CD")

    ``token``: a Developer API token (``wrkaus-…`` in the US; other data centers use other
    prefixes). A genie client API key is refused: it belongs to :class:`~genie_async.GenieClient`.

    Where: ``data_center`` (``us``, ``eu``, ``jp``, ``sg``, ``au``, ``il``, ``kr``, ``cn``,
    ``trial``) or an explicit ``base_url`` (a private host, a proxy, the simulator). Plain
    ``http://`` is refused except to loopback unless ``allow_insecure_http=True``.

    ``timeouts``, ``retry`` and ``session`` work as on :class:`~genie_async.GenieClient`:
    502/503/504 are retried with backoff, a 500 once, a 4xx never; a session passed in is
    never closed here.
    """

    def __init__(
        self,
        *,
        token: str,
        data_center: str | None = None,
        base_url: str | None = None,
        allow_insecure_http: bool = False,
        timeouts: Timeouts | None = None,
        retry: RetryPolicy | None = None,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self._credentials = _DeveloperToken(token)
        self._core = HTTPCore(
            base_url=_admin_base_url(
                data_center, base_url, allow_insecure_http=allow_insecure_http
            ),
            timeouts=timeouts or Timeouts(),
            retry=retry or RetryPolicy(),
            session=session,
        )

    def __repr__(self) -> str:
        return f"<AdminClient base_url={self.base_url!r} token=<redacted>>"

    async def _call(
        self,
        method: str,
        path: str,
        operation: _Operation,
        *,
        params: dict[str, str | int] | None = None,
        json: Any = None,
        resend_safe: bool = True,
        accept_status: Callable[[APIStatusError, int], bool] | None = None,
    ) -> Response:
        """One logical call through the shared core, with the Developer API's hints."""
        try:
            return await self._core.request(
                method,
                path,
                credentials=self._credentials,
                params=params,
                json=json,
                resend_safe=resend_safe,
                accept_status=accept_status,
            )
        except APIStatusError as exc:
            hint = _hint(exc.status, operation, host=self._core.host)
            if hint is not None:
                exc.hint = hint
            raise

    def _learn_api_key(self, response: Response) -> Response:
        """``response`` with the API key in it learned as a secret (and scrubbed from any
        error built from it)."""
        body = _unwrap(response.payload)
        key = body.get("api_key") if isinstance(body, dict) else None
        if isinstance(key, str) and key:
            self._credentials.learn(key)
            return response._replace(secrets=(*response.secrets, key))
        return response

    # --- genies ------------------------------------------------------------------------

    async def get_genie(self, genie_id: str) -> GenieInfo:
        """The genie: its ``state`` and whether a client is attached (``chat_interface``)."""
        response = await self._call("GET", f"{_GENIES}/{segment(genie_id, 'genie_id')}", "genie")
        body = _object(response, what="genie", defaults={"id": genie_id})
        return _convert(body, GenieInfo, response, what="genie")

    async def start_genie(self, genie_id: str) -> GenieInfo:
        """Start (activate) the genie; a stopped genie never replies at runtime."""
        return await self._set_state(genie_id, "start", "active")

    async def stop_genie(self, genie_id: str) -> GenieInfo:
        """Stop the genie: runtime streams stay open with keep-alives only."""
        return await self._set_state(genie_id, "stop", "stopped")

    async def _set_state(self, genie_id: str, action: str, state: str) -> GenieInfo:
        path = f"{_GENIES}/{segment(genie_id, 'genie_id')}/{action}"
        response = await self._call("POST", path, "genie")
        # Any 2xx means it took effect; an empty or partial body is backfilled.
        body = _object(response, what="genie", defaults={"id": genie_id, "state": state})
        return _convert(body, GenieInfo, response, what="genie")

    # --- IAM -----------------------------------------------------------------------------

    async def find_users(self, email: str) -> list[IamUser]:
        """Workato Identity users matching ``email`` (``GET /api/iam/users?query=<email>``).

        Empty: the user does not exist (create them first). ``status == "invited"``: they must
        accept the invitation. ``active`` but the runtime still answers 401
        ``user_nonactive_or_missing``: add them to a user group allow-listed on the genie.
        The lookup may match loosely; compare ``email`` to pick the exact user.
        """
        _require_text(email, "find_users needs a non-empty email.")
        response = await self._call("GET", "/api/iam/users", "iam", params={"query": email})
        items = _items(response, what="users")
        return [_convert(item, IamUser, response, what="user") for item in items]

    # --- genie clients -------------------------------------------------------------------

    async def list_clients(self, genie_ids: Iterable[str] | None = None) -> list[GenieClientInfo]:
        """The workspace's genie clients, optionally only those of ``genie_ids``."""
        params: dict[str, str | int] = {}
        if genie_ids is not None:
            ids = [genie_ids] if isinstance(genie_ids, str) else list(genie_ids)
            for genie_id in ids:
                segment(genie_id, "genie_id")  # validated; the query string is encoded later
            params["genie_ids"] = ",".join(ids)
        response = await self._call("GET", f"{_GENIES}/clients", "client", params=params)
        items = _items(response, what="genie clients")
        return [
            _convert(_client_info(item), GenieClientInfo, response, what="genie client")
            for item in items
        ]

    async def create_genie_client(
        self,
        name: str,
        *,
        auth: Literal["api_key", "oauth"] = "api_key",
        oauth_redirect_url: str | None = None,
    ) -> GenieClientCredentials:
        """Create a genie client (not yet attached to any genie).

        ``auth="api_key"``: the result's ``api_key`` is shown only this once. ``auth="oauth"``
        needs ``oauth_redirect_url`` (the exact URL end users return to); the result carries
        ``oauth_client_id``. A 403 means the role lacks the Custom chat interface privilege.
        """
        _require_text(name, "A genie client needs a non-empty name.")
        auth_body: dict[str, str] = {"type": auth}
        if auth == "oauth":
            if not oauth_redirect_url:
                raise InvalidRequestError("auth='oauth' needs oauth_redirect_url.")
            auth_body["oauth_redirect_url"] = oauth_redirect_url
        elif auth != "api_key":
            raise InvalidRequestError(f"auth must be 'api_key' or 'oauth', not {auth!r}.")
        elif oauth_redirect_url is not None:
            raise InvalidRequestError("oauth_redirect_url is only for auth='oauth'.")
        response = await self._call(
            "POST",
            f"{_GENIES}/clients",
            "manage_client",
            json={"client_name": name, "auth": auth_body},
            # A dropped connection may have created the client: don't create a second one.
            resend_safe=False,
        )
        response = self._learn_api_key(response)
        body = _object(response, what="genie client", defaults={})
        return _convert(body, GenieClientCredentials, response, what="genie client")

    async def regenerate_api_key(self, client_id: str) -> GenieClientCredentials:
        """Issue a new API key for the client; the previous key stops working at once.

        Store ``api_key.reveal()`` and update every backend using the old key. A 403 means the
        role lacks the Custom chat interface privilege.
        """
        path = f"{_GENIES}/clients/{segment(client_id, 'client_id')}/regenerate"
        response = await self._call("POST", path, "manage_client")
        response = self._learn_api_key(response)
        body = _object(response, what="genie client", defaults={"client_id": client_id})
        return _convert(body, GenieClientCredentials, response, what="genie client")

    async def attach_client(self, genie_id: str, client_id: str) -> None:
        """Attach the client to the genie (1:1: a 409 means detach the existing one first).

        If a retried attach gets 409 because the first attempt got through, this checks the
        genie's client and succeeds when it is ``client_id``.
        """
        path = f"{_GENIES}/{segment(genie_id, 'genie_id')}/clients"
        segment(client_id, "client_id")  # validated like every id, though it goes in the body
        try:
            await self._call("POST", path, "attach", json={"genie_client_id": client_id})
        except ConflictError as exc:
            if exc.attempts > 1 and await self._is_attached(genie_id, client_id):
                return
            raise

    async def _is_attached(self, genie_id: str, client_id: str) -> bool:
        clients = await self.list_clients([genie_id])
        return any(c.client_id == client_id and genie_id in c.genie_ids for c in clients)

    async def detach_client(self, genie_id: str, client_id: str) -> None:
        """Detach the client from the genie; runtime calls get 406 until one is attached."""
        path = (
            f"{_GENIES}/{segment(genie_id, 'genie_id')}/clients/{segment(client_id, 'client_id')}"
        )
        # A 404 on a retry: the earlier attempt got through but its answer was lost.
        await self._call(
            "DELETE", path, "client", accept_status=lambda e, n: e.status == 404 and n > 1
        )

    async def delete_client(self, client_id: str) -> None:
        """Delete the genie client (its API key stops working)."""
        path = f"{_GENIES}/clients/{segment(client_id, 'client_id')}"
        await self._call(
            "DELETE", path, "client", accept_status=lambda e, n: e.status == 404 and n > 1
        )
