"""The single boundary that maps aiohttp exceptions to ours."""

from __future__ import annotations

import asyncio
import inspect

import aiohttp
import pytest
from aiohttp.client_reqrep import ConnectionKey

import genie_async
from genie_async import APIConnectionError, APIResponseError, APITimeoutError, GenieError
from genie_async._http import TRANSPORT_ERRORS, to_genie_error, translate_transport_errors


def _all_subclasses(cls: type) -> set[type]:
    found: set[type] = set()
    stack = [cls]
    while stack:
        for sub in stack.pop().__subclasses__():
            if sub.__module__.startswith("aiohttp") and sub not in found:
                found.add(sub)
                stack.append(sub)
    return found


def _instance(cls: type[BaseException]) -> BaseException:
    """Build an instance of any aiohttp exception, whatever its constructor wants."""
    key = ConnectionKey("h", 443, True, None, None, None, None)
    os_error = OSError(111, "Connection refused")
    attempts: list[tuple[tuple[object, ...], dict[str, object]]] = [
        ((), {}),
        (("message",), {}),
        ((key, os_error), {}),
        ((None, ()), {"status": 500, "message": "m"}),
        (("https://x.example",), {}),
        ((None, None), {}),
        ((b"fp", b"fp", "h", 443), {}),
        ((key, os_error, os_error), {}),
    ]
    for args, kwargs in attempts:
        try:
            return cls(*args, **kwargs)
        except Exception:
            continue
    raise AssertionError(f"cannot build {cls}")


AIOHTTP_ERRORS = sorted(
    (c for c in _all_subclasses(aiohttp.ClientError) if not inspect.isabstract(c)),
    key=lambda c: c.__name__,
)


def test_the_walk_finds_the_usual_suspects() -> None:
    """The subclass walk covers the exceptions users have seen escape other SDKs."""
    names = {c.__name__ for c in AIOHTTP_ERRORS}
    assert {
        "ClientPayloadError",
        "ServerDisconnectedError",
        "ClientConnectorError",
        "ConnectionTimeoutError",
        "SocketTimeoutError",
        "ClientOSError",
        "TooManyRedirects",
    } <= names


@pytest.mark.parametrize("cls", AIOHTTP_ERRORS, ids=lambda c: c.__name__)
def test_every_aiohttp_error_maps_to_a_genie_error(cls: type[BaseException]) -> None:
    """No aiohttp ClientError subclass escapes unmapped; __cause__ is kept."""
    exc = _instance(cls)
    mapped = to_genie_error(exc, method="GET", path="/p", host="h")
    assert isinstance(mapped, GenieError)
    assert mapped.__cause__ is exc
    assert type(mapped).__module__ == "genie_async.errors"


def test_timeouts_distinguish_connect_from_read() -> None:
    """A connect timeout is request_sent=False; a read timeout True."""
    connect = to_genie_error(aiohttp.ConnectionTimeoutError(), method="GET", path="/", host="h")
    read = to_genie_error(aiohttp.SocketTimeoutError(), method="GET", path="/", host="h")
    bare = to_genie_error(asyncio.TimeoutError(), method="GET", path="/", host="h")
    assert isinstance(connect, APITimeoutError)
    assert not connect.request_sent
    assert isinstance(read, APITimeoutError)
    assert read.request_sent
    assert isinstance(bare, APITimeoutError)


def test_payload_errors_are_connection_errors_after_sending() -> None:
    """A body cut off mid-way is an APIConnectionError with request_sent=True."""
    mapped = to_genie_error(aiohttp.ClientPayloadError("cut"), method="GET", path="/", host="h")
    assert type(mapped) is APIConnectionError
    assert mapped.request_sent


def test_response_errors_map_to_api_response_error() -> None:
    """aiohttp ClientResponseError (e.g. too many redirects) is an APIResponseError."""
    exc = aiohttp.ClientResponseError(None, (), status=502, message="bad")  # type: ignore[arg-type]
    assert isinstance(to_genie_error(exc, method="GET", path="/", host="h"), APIResponseError)


async def test_the_context_manager_raises_from_the_original() -> None:
    """translate_transport_errors raises ours from the aiohttp exception."""
    original = aiohttp.ServerDisconnectedError()
    with pytest.raises(APIConnectionError) as info:
        async with translate_transport_errors(method="GET", path="/p", host="h", request_id="r"):
            raise original
    assert info.value.__cause__ is original
    assert info.value.request_id == "r"
    assert info.value.path == "/p"


def test_transport_errors_cover_the_timeout_class_of_every_python() -> None:
    """asyncio.TimeoutError is caught on 3.10, where it is not the builtin TimeoutError."""
    assert asyncio.TimeoutError in TRANSPORT_ERRORS


def test_public_errors_reexported() -> None:
    """The mapped classes are the public ones."""
    assert genie_async.APIConnectionError is APIConnectionError
