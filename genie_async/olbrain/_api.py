"""What every Olbrain handle shares: the HTTP core, the credential and the agent's path."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import aiohttp
import msgspec

from .._auth import Credentials
from .._config import RetryPolicy
from .._http import HTTPCore, Response, segment
from ..errors import APIStatusError

_ENCODER = msgspec.json.Encoder()


def encode(body: Any) -> bytes:
    """The exact JSON bytes sent (measured against the 1 MiB limit before sending)."""
    return _ENCODER.encode(body)


class AgentAPI:
    """The calls on one agent's routes, through the shared core (retries included)."""

    __slots__ = ("agent_id", "core", "credentials", "prefix")

    def __init__(self, core: HTTPCore, credentials: Credentials, agent_id: str) -> None:
        self.core = core
        self.credentials = credentials
        self.agent_id = agent_id
        self.prefix = f"/api/agents/{segment(agent_id, 'agent_id')}"

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
