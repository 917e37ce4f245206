"""Serving a simulator's aiohttp app on loopback: the lifecycle both simulators share."""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import Any, Generic, Protocol, TypeVar

from aiohttp import web

__all__ = ["LoopbackServer"]

_SHUTDOWN_TIMEOUT = 2.0


class _ServedWorld(Protocol):
    base_url: str
    tasks: set[asyncio.Task[Any]]


_World = TypeVar("_World", bound=_ServedWorld)
_Server = TypeVar("_Server", bound="LoopbackServer[Any]")


class LoopbackServer(Generic[_World]):
    """``async with`` / :meth:`start` / :meth:`close` and :attr:`url` for a simulator.

    Subclasses set ``app``, ``_world``, ``_host``, ``_port`` and ``_runner = None``, and may
    extend :meth:`_on_start` and :meth:`_on_close`.
    """

    app: web.Application
    _world: _World
    _host: str
    _port: int
    _runner: web.AppRunner | None

    async def __aenter__(self: _Server) -> _Server:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def start(self) -> None:
        """Start serving on ``host:port``."""
        if self._runner is not None:
            raise RuntimeError("the simulator is already started")
        self._on_start()
        runner = web.AppRunner(
            self.app,
            # A dropped client ends its handler at once; work that must outlive it is shielded.
            handler_cancellation=True,
            access_log=None,
            shutdown_timeout=_SHUTDOWN_TIMEOUT,
        )
        await runner.setup()
        site = web.TCPSite(runner, self._host, self._port)
        await site.start()
        self._runner = runner
        host, port = runner.addresses[0][:2]
        self._world.base_url = f"http://{host}:{port}"
        self._on_serving()

    async def close(self) -> None:
        """Stop serving; cancel the work still running in the background. Idempotent."""
        self._on_close()
        tasks = list(self._world.tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    @property
    def url(self) -> str:
        """Base URL of the server, e.g. ``http://127.0.0.1:54321`` (no trailing slash)."""
        if not self._world.base_url:
            raise RuntimeError("the simulator is not started")
        return self._world.base_url

    def _on_start(self) -> None:
        """Called before the server starts."""

    def _on_serving(self) -> None:
        """Called once the server listens (``url`` is known)."""

    def _on_close(self) -> None:
        """Called first when closing, before background work is cancelled."""
