"""Runtime credentials: a genie-client API key plus end-user id, or an OAuth access token.

Secrets live only inside these objects. Their ``repr`` never shows them, and
:meth:`Credentials.secrets` lets the HTTP core scrub them from anything it turns into text.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Protocol

from . import _constants as C
from .errors import ConfigurationError, DeveloperTokenError


class RefreshingTokenProvider(Protocol):
    """A token provider told when a token was just refused (``force_refresh=True``).

    After a 401 the client calls it with ``force_refresh=True`` so a cache can drop the
    refused token and fetch a new one; every other call passes ``force_refresh=False``.
    """

    def __call__(self, *, force_refresh: bool) -> Awaitable[str]: ...


TokenProvider = Callable[[], Awaitable[str]] | RefreshingTokenProvider


def _takes_force_refresh(provider: Callable[..., Any]) -> bool:
    """Whether ``provider`` accepts a ``force_refresh`` keyword (decided once, up front)."""
    try:
        parameters = inspect.signature(provider).parameters
    except (TypeError, ValueError):  # some builtins and C callables have no signature
        return False
    parameter = parameters.get("force_refresh")
    return parameter is not None and parameter.kind in (
        inspect.Parameter.KEYWORD_ONLY,
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
    )


_RUNTIME_CREDENTIAL_ADVICE = (
    "Runtime calls take a genie client API key (with user_id) or an end user's OAuth access "
    "token. wrkaus-… tokens are Developer API tokens, valid only for provisioning "
    "(genie_async.admin)."
)


def _check_not_developer_token(value: str, what: str) -> None:
    if value.startswith(C.DEVELOPER_TOKEN_PREFIX):
        raise DeveloperTokenError(
            f"The {what} is a Workato Developer API token (wrkaus-…), which the runtime API "
            "rejects with 401 auth_failed.",
            hint=_RUNTIME_CREDENTIAL_ADVICE,
        )


def _check_header_value(value: object, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigurationError(f"The {what} must be a non-empty string.")
    if value != value.strip() or any(ch in value for ch in "\r\n\x00"):
        # A stray newline would split the header; surrounding spaces make "Bearer <token>"
        # malformed, one of the seed's causes of auth_failed.
        raise ConfigurationError(
            f"The {what} contains whitespace or control characters; pass the bare value."
        )
    return value


class Credentials:
    """Base class: produces the authentication headers for one request."""

    @property
    def refreshable(self) -> bool:
        """Whether a 401 is worth one retry with freshly fetched headers."""
        return False

    async def headers(self, *, refresh: bool = False) -> dict[str, str]:
        raise NotImplementedError

    def secrets(self) -> Iterable[str]:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(<redacted>)"


class ApiKeyCredentials(Credentials):
    """``Authorization: Bearer <api_key>`` plus ``X-IDP-User-Id: <user_id>``."""

    __slots__ = ("_api_key", "_headers", "_user_id")

    def __init__(self, api_key: str, user_id: str) -> None:
        _check_header_value(api_key, "api_key")
        _check_not_developer_token(api_key, "api_key")
        _check_header_value(user_id, "user_id")
        self._api_key = api_key
        self._user_id = user_id
        self._headers = {"Authorization": f"Bearer {api_key}", "X-IDP-User-Id": user_id}

    def as_user(self, user_id: str) -> ApiKeyCredentials:
        return ApiKeyCredentials(self._api_key, user_id)

    async def headers(self, *, refresh: bool = False) -> dict[str, str]:
        return self._headers

    def secrets(self) -> Iterable[str]:
        return (self._api_key, self._user_id)


class AccessTokenCredentials(Credentials):
    """``Authorization: Bearer <access token>``; the token identifies the end user.

    With a provider, it is awaited before every request (it should cache the token itself)
    and again after a 401, when the request is retried once. A provider that accepts a
    ``force_refresh`` keyword is told which call follows a 401 (``force_refresh=True``), so
    it can drop the refused token instead of returning it again.
    """

    __slots__ = ("_provider", "_provider_refreshes", "_seen", "_token")

    def __init__(self, token: str | None = None, provider: TokenProvider | None = None) -> None:
        if (token is None) == (provider is None):
            raise ConfigurationError("Give exactly one of access_token and token_provider.")
        if token is not None:
            _check_header_value(token, "access_token")
            _check_not_developer_token(token, "access_token")
        self._token = token
        self._provider = provider
        self._provider_refreshes = provider is not None and _takes_force_refresh(provider)
        # Every token the provider has returned, so all of them can be redacted.
        self._seen: list[str] = [token] if token is not None else []

    @property
    def refreshable(self) -> bool:
        return self._provider is not None

    async def headers(self, *, refresh: bool = False) -> dict[str, str]:
        token = self._token
        if self._provider is not None:
            if self._provider_refreshes:
                token = await self._provider(force_refresh=refresh)  # type: ignore[call-arg]
            else:
                token = await self._provider()  # type: ignore[call-arg]
            _check_header_value(token, "token returned by token_provider")
            _check_not_developer_token(token, "token returned by token_provider")
            if token not in self._seen:
                self._seen.append(token)
                del self._seen[:-8]  # bounded: old tokens are expired anyway
        assert token is not None
        return {"Authorization": f"Bearer {token}"}

    def secrets(self) -> Iterable[str]:
        return tuple(self._seen)


def redact(text: str, secrets: Iterable[str]) -> str:
    """Replace every occurrence of a secret in ``text`` with ``<redacted>``."""
    for secret in secrets:
        if secret and len(secret) >= 4 and secret in text:
            text = text.replace(secret, "<redacted>")
    return text


def scrub(value: Any, secrets: tuple[str, ...]) -> Any:
    """``value`` (a decoded JSON body, or text) with every secret redacted, recursively."""
    if not secrets:
        return value
    if isinstance(value, str):
        return redact(value, secrets)
    if isinstance(value, dict):
        return {k: scrub(v, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub(v, secrets) for v in value]
    return value
