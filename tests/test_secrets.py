"""Credentials never leak: not into logs, reprs, exception text, error bodies or refusals.

A whole session with every kind of outcome runs against the simulator while everything a
developer could print or log is collected; the API key, the end-user ids and the OAuth
tokens must appear in none of it.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Awaitable, Callable
from typing import Literal

import pytest
from aiohttp import web
from pytest_aiohttp import AiohttpServer

from genie_async import (
    APIResponseError,
    AuthFailedError,
    DeveloperTokenError,
    GenieClient,
    GenieError,
    NotFoundError,
    RetryPolicy,
    ServiceUnavailableError,
)
from genie_async.testing import GenieSimulator

from .conftest import assert_no_open_connections, make_client

CredentialKind = Literal["api_key", "access_token", "token_provider"]
_FORMATTER = logging.Formatter("%(name)s %(levelname)s %(message)s")


class Exposure:
    """Every text a developer could see, each with a label saying where it came from."""

    def __init__(self) -> None:
        self.texts: list[tuple[str, str]] = []

    def see(self, label: str, *objects: object) -> None:
        for index, obj in enumerate(objects):
            self.texts.append((f"{label}[{index}] repr", repr(obj)))
            self.texts.append((f"{label}[{index}] str", str(obj)))

    def see_error(self, label: str, error: BaseException) -> None:
        self.see(label, error)
        self.texts.append((f"{label} args", repr(error.args)))
        self.texts.append((f"{label} traceback", "".join(traceback.format_exception(error))))
        for attribute in ("message", "hint", "body", "headers"):
            self.texts.append((f"{label}.{attribute}", repr(getattr(error, attribute, None))))

    def see_logs(self, records: list[logging.LogRecord]) -> None:
        for record in records:
            self.texts.append((f"log {record.name}", _FORMATTER.format(record)))

    async def expect_error(
        self, label: str, cls: type[BaseException], call: Awaitable[object]
    ) -> BaseException:
        with pytest.raises(cls) as caught:
            await call
        self.see_error(label, caught.value)
        return caught.value

    def leaks(self, secrets: dict[str, str]) -> list[tuple[str, str]]:
        """(where, which secret) for every text containing a secret; never the texts."""
        return [
            (where, name)
            for where, text in self.texts
            for name, secret in secrets.items()
            if secret in text
        ]


async def _exercise(
    exposure: Exposure, sim: GenieSimulator, client: GenieClient, label: str
) -> None:
    """Success, a retried 503, a 404, an injected 401 and a streamed turn, all observed."""
    exposure.see(f"{label} client", client)
    sim.fail("create_conversation", 503)
    conversation = await client.create_conversation()
    assert [r.status for r in sim.requests("create_conversation")[-2:]] == [503, 200]
    exposure.see(f"{label} conversation", conversation)
    exposure.see(f"{label} info", await conversation.info())
    async with conversation.send("hi") as stream:
        events = [e async for e in stream]
    assert events
    exposure.see(f"{label} stream", stream, *events)
    reply = await conversation.ask("again")
    exposure.see(f"{label} reply", reply, *reply.events)
    exposure.see(f"{label} messages", *[m async for m in conversation.messages()])
    exposure.see(f"{label} page", await client.list_conversations())
    exposure.see(f"{label} handle", await conversation.send("quiet", stream=False))
    await sim.wait_idle(conversation.conversation_id)
    await exposure.expect_error(
        f"{label} 404", NotFoundError, client.conversation("no-such-conversation").info()
    )
    sim.fail("get_conversation", 401, times=2)  # twice: a token provider is asked again once
    await exposure.expect_error(f"{label} 401", AuthFailedError, conversation.info())
    sim.fail("create_conversation", 503, times=1000)
    await exposure.expect_error(
        f"{label} budget", ServiceUnavailableError, client.create_conversation()
    )
    sim.clear_faults()


async def test_a_whole_session_never_shows_a_credential(
    sim: GenieSimulator, retry: RetryPolicy, caplog: pytest.LogCaptureFixture
) -> None:
    """Logs, reprs, strs and errors of every outcome never contain a key, user id or token."""
    caplog.set_level(logging.DEBUG)
    other_user = sim.add_user()
    access_token = sim.issue_access_token(sim.user_id)
    provided_token = sim.issue_access_token(other_user)

    async def provider() -> str:
        return provided_token

    secrets = {
        "api_key": sim.api_key,
        "user_id": sim.user_id,
        "other_user_id": other_user,
        "access_token": access_token,
        "provided_token": provided_token,
    }
    exposure = Exposure()
    async with make_client(sim, retry) as client:
        views = {
            "api_key": client,
            "as_user": client.as_user(other_user),
            "access_token": client.with_access_token(access_token),
            "token_provider": client.with_access_token(token_provider=provider),
        }
        for label, view in views.items():
            await _exercise(exposure, sim, view, label)
        # Real 401s from the gateway: a revoked token, a provider whose token was revoked
        # (refreshed once, then raised) and a key that was rotated.
        sim.revoke_access_token(access_token)
        sim.revoke_access_token(provided_token)
        for label in ("access_token", "token_provider"):
            await exposure.expect_error(
                f"revoked {label}", AuthFailedError, views[label].create_conversation()
            )
        sim.regenerate_api_key()
        await exposure.expect_error(
            "rotated key", AuthFailedError, views["as_user"].create_conversation()
        )
        await assert_no_open_connections(client, sim)
    exposure.see_logs(caplog.records)
    assert any("retrying" in text for _, text in exposure.texts)  # the logs were captured
    assert exposure.leaks(secrets) == []


def _echo_app(status: int, content_type: str) -> web.Application:
    """A server that answers every request by echoing the bearer token in its body."""

    async def handler(request: web.Request) -> web.Response:
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        user = request.headers.get("X-IDP-User-Id", "")
        if content_type == "application/json":
            text = (
                f'{{"error_code":"auth_failed","error_message":"bad key {token}",'
                f'"detail":{{"user":"{user}","token":"{token}"}}}}'
            )
        else:
            text = f"<html><body>Hello {user}, your key is {token}</body></html>"
        return web.Response(status=status, text=text, content_type=content_type)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    return app


def _echo_client(base_url: str, kind: CredentialKind, retry: RetryPolicy) -> GenieClient:
    if kind == "api_key":
        credentials: dict[str, object] = {"api_key": "f" * 64, "user_id": "EchoedUser0000000000000"}
    elif kind == "access_token":
        credentials = {"access_token": "eyJ.echoed-access-token.sig"}
    else:

        async def provider() -> str:
            return "eyJ.echoed-provided-token.sig"

        credentials = {"token_provider": provider}
    return GenieClient("gin-echo", base_url=base_url, retry=retry, **credentials)  # type: ignore[arg-type]


ECHOED = {
    "api_key": "f" * 64,
    "user_id": "EchoedUser0000000000000",
    "access_token": "eyJ.echoed-access-token.sig",
    "provided_token": "eyJ.echoed-provided-token.sig",
}


@pytest.mark.parametrize("kind", ["api_key", "access_token", "token_provider"])
async def test_an_error_body_echoing_the_credential_is_redacted(
    kind: CredentialKind, aiohttp_server: AiohttpServer, retry: RetryPolicy
) -> None:
    """A 401 whose body repeats the key back: str, message and body never contain it."""
    server = await aiohttp_server(_echo_app(401, "application/json"))
    exposure = Exposure()
    async with _echo_client(str(server.make_url("")), kind, retry) as client:
        error = await exposure.expect_error("echo", AuthFailedError, client.create_conversation())
    assert isinstance(error, AuthFailedError)
    assert "bad key <redacted>" in error.message
    assert exposure.leaks(ECHOED) == []


@pytest.mark.parametrize("content_type", ["text/html", "application/json"])
@pytest.mark.parametrize("kind", ["api_key", "access_token"])
async def test_an_unusable_success_body_echoing_the_credential_is_redacted(
    kind: CredentialKind, content_type: str, aiohttp_server: AiohttpServer, retry: RetryPolicy
) -> None:
    """A 200 (a proxy's page, or JSON of the wrong shape) repeating the key: hidden too."""
    server = await aiohttp_server(_echo_app(200, content_type))
    exposure = Exposure()
    async with _echo_client(str(server.make_url("")), kind, retry) as client:
        await exposure.expect_error("echo", APIResponseError, client.create_conversation())
    assert exposure.leaks(ECHOED) == []


DEVELOPER_TOKEN = "wrkaus-0123456789abcdef0123456789abcdef"


async def _developer_token_provider() -> str:
    return DEVELOPER_TOKEN


async def _refuse_api_key(sim: GenieSimulator, retry: RetryPolicy) -> object:
    return make_client(sim, retry, api_key=DEVELOPER_TOKEN)


async def _refuse_access_token(sim: GenieSimulator, retry: RetryPolicy) -> object:
    return make_client(sim, retry, api_key=None, user_id=None, access_token=DEVELOPER_TOKEN)


async def _refuse_view(sim: GenieSimulator, retry: RetryPolicy) -> object:
    async with make_client(sim, retry) as client:
        return client.with_access_token(DEVELOPER_TOKEN)


async def _refuse_provided(sim: GenieSimulator, retry: RetryPolicy) -> object:
    async with make_client(
        sim, retry, api_key=None, user_id=None, token_provider=_developer_token_provider
    ) as client:
        return await client.create_conversation()


REFUSALS: dict[str, Callable[[GenieSimulator, RetryPolicy], Awaitable[object]]] = {
    "api_key": _refuse_api_key,
    "access_token": _refuse_access_token,
    "with_access_token": _refuse_view,
    "token_provider": _refuse_provided,
}


@pytest.mark.parametrize("where", sorted(REFUSALS))
async def test_developer_token_refusal_never_repeats_the_token(
    where: str, sim: GenieSimulator, retry: RetryPolicy
) -> None:
    """A wrkaus- token is refused with DeveloperTokenError whose text never contains it."""
    exposure = Exposure()
    error = await exposure.expect_error(where, DeveloperTokenError, REFUSALS[where](sim, retry))
    assert "wrkaus-" in str(error)
    assert exposure.leaks({"developer_token": DEVELOPER_TOKEN}) == []
    assert sim.log == []  # refused before anything was sent


def test_exposure_finds_a_planted_secret() -> None:
    """The leak detector itself works: a secret in a repr, a log or an error is reported."""
    exposure = Exposure()
    exposure.see("planted", {"k": "s3cr3t-value"})
    exposure.see_error("error", GenieError("nothing here", hint="see s3cr3t-value"))
    leaks = exposure.leaks({"key": "s3cr3t-value"})
    assert ("planted[0] repr", "key") in leaks
    assert ("error.hint", "key") in leaks
