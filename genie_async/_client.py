"""``GenieClient``: the session manager every conversation hangs off."""

from __future__ import annotations

import collections
import weakref
from collections.abc import AsyncIterator
from types import TracebackType
from typing import TYPE_CHECKING

import aiohttp

from . import _constants as C
from ._auth import AccessTokenCredentials, ApiKeyCredentials, Credentials, TokenProvider
from ._config import RetryPolicy, Timeouts
from ._conversation import Conversation
from ._http import HTTPCore, resolve_base_url, segment
from ._models import ConversationInfo, Page, RuntimeConnectionLink, parse_model, parse_page
from .errors import ConfigurationError
from .sse import DEFAULT_MAX_EVENT_BYTES

if TYPE_CHECKING:
    from ._stream import EventStream

__all__ = ["GenieClient"]


class ConversationMemory:
    """What this process knows of one conversation's turns, shared by all its handles.

    ``runs`` are runs already streamed here (never taken for a new send's run);
    ``unresolved`` are texts of messages the server accepted whose run stayed unknown (the
    stream ended before its first event), resolved before the next send.
    """

    __slots__ = ("runs", "unresolved")

    def __init__(self) -> None:
        self.runs: set[str] = set()
        self.unresolved: list[str] = []


class _Shared:
    """What every view of one client shares: the HTTP core, the open streams, and what is
    known of each conversation's turns (bounded: the least recently used are forgotten)."""

    __slots__ = ("conversations", "core", "streams")

    def __init__(self, core: HTTPCore) -> None:
        self.core = core
        self.streams: weakref.WeakSet[EventStream] = weakref.WeakSet()
        self.conversations: collections.OrderedDict[str, ConversationMemory] = (
            collections.OrderedDict()
        )

    def memory(self, conversation_id: str) -> ConversationMemory:
        memory = self.conversations.pop(conversation_id, None) or ConversationMemory()
        self.conversations[conversation_id] = memory  # most recently used last
        while len(self.conversations) > _REMEMBERED_CONVERSATIONS:
            self.conversations.popitem(last=False)
        return memory


_REMEMBERED_CONVERSATIONS = 10_000


class GenieClient:
    """An asyncio client for one genie's Headless API, holding one ``aiohttp`` session.

    Use it as an async context manager (or call :meth:`close`)::

        async with GenieClient(
            "gin-AaNpL4XP-baNnFY-CD", data_center="us", api_key=KEY, user_id=USER
        ) as client:
            conversation = await client.create_conversation()
            reply = await conversation.ask("How much PTO do I have?")

    Credentials: a genie client ``api_key`` plus the end user's Workato Identity ``user_id``
    (``X-IDP-User-Id``), or an end user's OAuth ``access_token`` / async ``token_provider``.
    A backend serving many end users makes one client and derives a cheap per-user view with
    :meth:`as_user` (same connection pool).

    Where: ``data_center`` (``us``, ``eu``, ``jp``, ``sg``, ``au``, ``il``, ``in``) or an
    explicit ``base_url`` (the simulator, a proxy, a private host). Plain ``http://`` is
    refused except to loopback unless ``allow_insecure_http=True``.

    ``session``: an ``aiohttp.ClientSession`` of yours to use; it is never closed here.
    ``connection_limit`` / ``connection_limit_per_host``: the pool of the session created
    here (0 = unlimited). Each open stream holds one connection for the whole turn, and REST
    calls (decisions, recovery) need a free one too: size it above the streams you keep open
    (docs/pages/deployment.md).
    """

    def __init__(
        self,
        genie_id: str,
        *,
        api_key: str | None = None,
        user_id: str | None = None,
        access_token: str | None = None,
        token_provider: TokenProvider | None = None,
        data_center: str | None = None,
        base_url: str | None = None,
        allow_insecure_http: bool = False,
        timeouts: Timeouts | None = None,
        retry: RetryPolicy | None = None,
        session: aiohttp.ClientSession | None = None,
        connection_limit: int = 100,
        connection_limit_per_host: int = 0,
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
    ) -> None:
        self._genie_id = genie_id
        self._prefix = f"/api/v1/genies/{segment(genie_id, 'genie_id')}/chat"
        self._credentials = _credentials(api_key, user_id, access_token, token_provider)
        if max_event_bytes <= 0:
            raise ConfigurationError("max_event_bytes must be positive.")
        self._max_event_bytes = max_event_bytes
        core = HTTPCore(
            base_url=resolve_base_url(
                data_center=data_center,
                base_url=base_url,
                allow_insecure_http=allow_insecure_http,
            ),
            timeouts=timeouts or Timeouts(),
            retry=retry or RetryPolicy(),
            session=session,
            connection_limit=connection_limit,
            connection_limit_per_host=connection_limit_per_host,
        )
        self._shared = _Shared(core)
        self._is_view = False

    @property
    def _core(self) -> HTTPCore:
        return self._shared.core

    @property
    def genie_id(self) -> str:
        return self._genie_id

    @property
    def base_url(self) -> str:
        return self._core.base_url

    @property
    def closed(self) -> bool:
        return self._core.closed

    def __repr__(self) -> str:
        kind = "api_key" if isinstance(self._credentials, ApiKeyCredentials) else "access_token"
        view = " view" if self._is_view else ""
        return (
            f"<GenieClient{view} genie_id={self._genie_id!r} base_url={self.base_url!r} "
            f"credentials={kind}(<redacted>)>"
        )

    # --- views -------------------------------------------------------------------------

    def as_user(self, user_id: str) -> GenieClient:
        """This client acting as another end user (``X-IDP-User-Id``), sharing its session.

        Cheap: no new session or pool. Closing a view does nothing; close the original.
        """
        if not isinstance(self._credentials, ApiKeyCredentials):
            raise ConfigurationError(
                "as_user() needs API-key credentials; with OAuth the token names the user: "
                "use with_access_token()."
            )
        return self._view(self._credentials.as_user(user_id))

    def with_access_token(
        self, access_token: str | None = None, *, token_provider: TokenProvider | None = None
    ) -> GenieClient:
        """This client acting with another end user's OAuth token, sharing its session."""
        return self._view(AccessTokenCredentials(access_token, token_provider))

    def _view(self, credentials: Credentials) -> GenieClient:
        view = object.__new__(GenieClient)
        view._genie_id = self._genie_id
        view._prefix = self._prefix
        view._credentials = credentials
        view._max_event_bytes = self._max_event_bytes
        view._shared = self._shared
        view._is_view = True
        return view

    # --- lifecycle -----------------------------------------------------------------------

    async def __aenter__(self) -> GenieClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close every open stream, then the session (unless it was passed in). Idempotent."""
        if self._is_view or self._core.closed:
            return
        for stream in list(self._shared.streams):
            await stream.aclose()
        await self._core.close()

    # --- conversations -------------------------------------------------------------------

    def conversation(self, conversation_id: str) -> Conversation:
        """A handle on an existing conversation (no request is made)."""
        return Conversation(self, conversation_id)

    async def create_conversation(self) -> Conversation:
        """Create a new conversation for this end user."""
        response = await self._core.request(
            "POST", f"{self._prefix}/conversations", credentials=self._credentials, json={}
        )
        info = parse_model(
            response,
            ConversationInfo,
            expected=("conversation_id",),
            what="new conversation",
        )
        return Conversation(self, info.conversation_id)

    async def list_conversations(
        self, *, limit: int = C.DEFAULT_PAGE_LIMIT, cursor: str | None = None
    ) -> Page[ConversationInfo]:
        """One page of the end user's conversations (the generated topics, ready to show)."""
        params: dict[str, str | int] = {"limit": limit}
        if cursor is not None:
            params["cursor"] = cursor
        response = await self._core.request(
            "GET", f"{self._prefix}/conversations", credentials=self._credentials, params=params
        )
        return parse_page(
            response,
            ConversationInfo,
            "conversations",
            what="conversations",
        )

    async def conversations(
        self, *, page_size: int = C.DEFAULT_PAGE_LIMIT
    ) -> AsyncIterator[ConversationInfo]:
        """Every conversation of the end user, following the cursor across pages."""
        seen: set[str] = set()
        cursors: set[str] = set()
        cursor: str | None = None
        for _ in range(C.MAX_PAGES):
            page = await self.list_conversations(limit=page_size, cursor=cursor)
            added = 0
            for info in page.items:
                if info.conversation_id not in seen:
                    seen.add(info.conversation_id)
                    added += 1
                    yield info
            # A repeated cursor (a cycle) or a page with nothing new means the server loops.
            if page.cursor is None or page.cursor in cursors or not added:
                return
            cursors.add(page.cursor)
            cursor = page.cursor

    # --- runtime connections -------------------------------------------------------------

    async def runtime_connection_link(self, attempt_id: str) -> RuntimeConnectionLink:
        """The status of a runtime-connection attempt and, while it waits, the auth link."""
        response = await self._core.request(
            "POST",
            f"{self._prefix}/runtime_connection/{segment(attempt_id, 'attempt_id')}/link",
            credentials=self._credentials,
        )
        return parse_model(
            response,
            RuntimeConnectionLink,
            expected=("status", "auth_link"),
            what="runtime connection link",
        )

    async def reject_runtime_connection(self, attempt_id: str, reason: str | None = None) -> None:
        """Decline a runtime connection; the parked turn ends. (Experimental endpoint.)"""
        await self._core.request(
            "POST",
            f"{self._prefix}/runtime_connection/{segment(attempt_id, 'attempt_id')}/reject",
            credentials=self._credentials,
            json={"reason": reason} if reason else None,
            # A 409 on a retry means the earlier attempt got through but its answer was lost.
            accept_status=lambda error, attempt: error.status == 409 and attempt > 1,
        )


def _credentials(
    api_key: str | None,
    user_id: str | None,
    access_token: str | None,
    token_provider: TokenProvider | None,
) -> Credentials:
    oauth = access_token is not None or token_provider is not None
    if api_key is not None:
        if oauth:
            raise ConfigurationError("Give either api_key + user_id or an OAuth token, not both.")
        if user_id is None:
            raise ConfigurationError(
                "api_key needs user_id: the end user's Workato Identity id (X-IDP-User-Id)."
            )
        return ApiKeyCredentials(api_key, user_id)
    if oauth:
        if user_id is not None:
            raise ConfigurationError(
                "user_id is only for api_key credentials; an OAuth token names its user."
            )
        return AccessTokenCredentials(access_token, token_provider)
    raise ConfigurationError(
        "No credentials: pass api_key and user_id, or access_token / token_provider."
    )
