"""What every Olbrain handle shares: the HTTP core, the credential and the agent's path."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

import aiohttp
import msgspec

from .._auth import Credentials
from .._config import RetryPolicy
from .._http import HTTPCore, Response, segment
from .._retry import call_with_retry
from ..errors import APIConnectionError, APIStatusError

T = TypeVar("T")

_ENCODER = msgspec.json.Encoder()


def encode(body: Any) -> bytes:
    """The exact JSON bytes sent (measured against the 1 MiB limit before sending)."""
    return _ENCODER.encode(body)


async def send_with_recovery(
    policy: RetryPolicy,
    send: Callable[[], Awaitable[T]],
    recover: Callable[[], Awaitable[T | None]],
    *,
    what: str,
) -> T:
    """``send()`` under the retry policy, never blindly repeating a request the server may
    have taken (reference §7.2, §9.2).

    Once an attempt failed in a way that leaves its outcome unknown (a 5xx answer, or a
    connection lost or timed out after the request left), every later attempt first calls
    ``recover()``: its result, when not None, is the call's result and nothing is re-sent.
    Only when it finds nothing is the same request sent again. The genie backend does the
    same for messages (``post_message``).
    """
    maybe_accepted = False

    async def attempt(number: int) -> T:
        nonlocal maybe_accepted
        if maybe_accepted:
            found = await recover()
            if found is not None:
                return found
        try:
            return await send()
        except APIStatusError as exc:
            maybe_accepted = maybe_accepted or exc.status >= 500
            raise
        except APIConnectionError as exc:
            maybe_accepted = maybe_accepted or exc.request_sent
            raise

    return await call_with_retry(policy, attempt, what=what, resend_safe=True)


class AgentAPI:
    """The calls on one agent's routes, through the shared core (retries included)."""

    __slots__ = ("agent_id", "core", "credentials", "known_runs", "prefix")

    def __init__(
        self,
        core: HTTPCore,
        credentials: Credentials,
        agent_id: str,
        known_runs: KnownRuns | None = None,
    ) -> None:
        self.core = core
        self.credentials = credentials
        self.agent_id = agent_id
        self.prefix = f"/api/agents/{segment(agent_id, 'agent_id')}"
        self.known_runs = known_runs if known_runs is not None else KnownRuns()

    @property
    def policy(self) -> RetryPolicy:
        return self.core.retry

    async def get(self, path: str, params: Mapping[str, str | int] | None = None) -> Response:
        return await self.core.request(
            "GET", self.prefix + path, credentials=self.credentials, params=params
        )

    async def post(
        self,
        path: str,
        *,
        content: bytes | None = None,
        form: Callable[[], aiohttp.FormData] | None = None,
        accept_status: Callable[[APIStatusError, int], bool] | None = None,
    ) -> Response:
        return await self.core.request(
            "POST",
            path if path.startswith("/api/") else self.prefix + path,
            credentials=self.credentials,
            content=content,
            form=form,
            accept_status=accept_status,
        )


class KnownRuns:
    """The ids of the runs this client's triggers returned, most recent last (bounded).

    A trigger's §7.2 recovery never adopts one of them by matching inputs: an identical,
    deliberate earlier trigger is not the one being recovered.
    """

    __slots__ = ("_ids", "_limit")

    def __init__(self, limit: int = 1024) -> None:
        self._ids: dict[str, None] = {}
        self._limit = limit

    def add(self, run_id: str) -> None:
        self._ids.pop(run_id, None)
        self._ids[run_id] = None
        while len(self._ids) > self._limit:
            del self._ids[next(iter(self._ids))]

    def __contains__(self, run_id: object) -> bool:
        return run_id in self._ids
