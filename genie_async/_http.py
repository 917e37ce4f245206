"""The HTTP core: one aiohttp session, request building, retries and error translation.

This is the only module that talks to aiohttp. Every aiohttp and transport exception is
translated to :mod:`genie_async.errors` in :func:`translate_transport_errors`; every non-2xx
response becomes a typed :class:`~genie_async.errors.APIStatusError` in
:func:`make_status_error`. Redirects are not followed, so credentials never leave the host.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import platform
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, NamedTuple, TypeVar
from urllib.parse import quote, urlsplit

import aiohttp
import msgspec
from aiohttp.client_reqrep import RequestInfo
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from . import _constants as C
from . import _hints
from ._auth import Credentials, redact, scrub
from ._config import RetryPolicy, Timeouts
from ._retry import call_with_retry, parse_retry_after
from ._version import __version__
from .errors import (
    AgentNotFoundError,
    APIConnectionError,
    APIResponseError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    AuthFailedError,
    BadGatewayError,
    BadRequestError,
    ClientClosedError,
    ConfigurationError,
    ConflictError,
    GatewayTimeoutError,
    GenieError,
    InsecureURLError,
    InternalServerError,
    InvalidIdError,
    InvalidStateTransitionError,
    MessageNotFoundError,
    NotAcceptableError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    RedirectError,
    RequestTooLargeError,
    RunNotFoundError,
    RuntimeNotApplicableError,
    ServerError,
    ServiceUnavailableError,
    SessionNotFoundError,
    UnprocessableEntityError,
    UnsupportedMediaTypeError,
    UpstreamTimeoutError,
    UserNotActiveError,
)

logger = logging.getLogger("genie_async")

USER_AGENT = (
    f"genie-async/{__version__} aiohttp/{aiohttp.__version__} python/{platform.python_version()}"
)
_JSON_DECODER: msgspec.json.Decoder[Any] = msgspec.json.Decoder()
_LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain"})


# --- URLs and ids ----------------------------------------------------------------------------


def resolve_base_url(
    *, data_center: str | None, base_url: str | None, allow_insecure_http: bool
) -> str:
    """The API origin (plus any proxy path prefix), without a trailing slash."""
    if (data_center is None) == (base_url is None):
        raise ConfigurationError(
            "Give exactly one of data_center (one of "
            f"{', '.join(sorted(C.DATA_CENTER_HOSTS))}) and base_url."
        )
    if data_center is not None:
        host = C.DATA_CENTER_HOSTS.get(data_center.lower())
        if host is None:
            raise ConfigurationError(
                f"Unknown data_center {data_center!r}; use one of "
                f"{', '.join(sorted(C.DATA_CENTER_HOSTS))}, or base_url for other hosts."
            )
        return host
    assert base_url is not None
    parts = urlsplit(base_url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ConfigurationError(f"base_url must be an absolute http(s) URL, not {base_url!r}.")
    if parts.query or parts.fragment:
        raise ConfigurationError("base_url must not contain a query or fragment.")
    if parts.username or parts.password:
        raise ConfigurationError("base_url must not contain credentials; pass them separately.")
    if parts.scheme == "http" and not allow_insecure_http and not is_loopback(parts.hostname):
        raise InsecureURLError(
            f"Refusing plain http:// to {parts.hostname}: credentials would cross the network "
            "unencrypted.",
            hint="Use https://, or pass allow_insecure_http=True if this really is a trusted "
            "network (plain http:// to loopback is always allowed).",
        )
    return base_url.rstrip("/")


def is_loopback(host: str) -> bool:
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def segment(value: object, what: str) -> str:
    """One URL path segment built from an id: validated, then percent-encoded."""
    if not isinstance(value, str) or not value:
        raise InvalidIdError(f"{what} must be a non-empty string, not {value!r}.")
    if "/" in value or "\\" in value or value in (".", ".."):
        raise InvalidIdError(f"{what} {value!r} would change the request path.")
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value):
        raise InvalidIdError(f"{what} contains control characters.")
    return quote(value, safe="")


# --- Responses and errors --------------------------------------------------------------------


class Response(NamedTuple):
    """A finished JSON response, with the secrets to scrub from anything built from it."""

    status: int
    headers: Mapping[str, str]
    payload: Any
    request_id: str | None
    secrets: tuple[str, ...] = ()


_STATUS_CLASSES: dict[int, type[APIStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    406: NotAcceptableError,
    409: ConflictError,
    413: RequestTooLargeError,
    415: UnsupportedMediaTypeError,
    422: UnprocessableEntityError,
    429: RateLimitError,
    500: InternalServerError,
    502: BadGatewayError,
    503: ServiceUnavailableError,
    504: GatewayTimeoutError,
}


@dataclass(frozen=True)
class ErrorDialect:
    """How one backend's error responses map onto the shared exception tree.

    ``codes`` picks a subclass for a (status, error code) pair; the status alone picks the
    base class. ``hint`` says how to fix an error (status, code, host). ``idempotency_header``
    says whether the core sends the ``Idempotency-Key`` header on non-GET calls (the Olbrain
    API wants it inside the JSON body instead).
    """

    name: str
    hint: Callable[[int, str | None, str], str | None]
    codes: Mapping[tuple[int, str], type[APIStatusError]] = field(default_factory=dict)
    idempotency_header: bool = True


GENIE_DIALECT = ErrorDialect(
    "genie",
    hint=lambda status, code, host: _hints.for_status(status, code, host=host),
    codes={
        (401, "auth_failed"): AuthFailedError,
        (401, "user_nonactive_or_missing"): UserNotActiveError,
    },
)

OLBRAIN_DIALECT = ErrorDialect(
    "olbrain",
    hint=lambda status, code, host: _hints.olbrain_for_status(status, code, host=host),
    codes={
        (400, "runtime_not_applicable"): RuntimeNotApplicableError,
        (404, "agent_not_found"): AgentNotFoundError,
        (404, "session_not_found"): SessionNotFoundError,
        (404, "message_not_found"): MessageNotFoundError,
        (404, "run_not_found"): RunNotFoundError,
        (409, "invalid_state_transition"): InvalidStateTransitionError,
        (502, "upstream_timeout"): UpstreamTimeoutError,
    },
    idempotency_header=False,
)


def _detail_message(detail: Any) -> str | None:
    """The message of a FastAPI ``detail``: a string, or its list of validation errors."""
    if isinstance(detail, str):
        return detail
    if isinstance(detail, list):  # 422: [{"loc": ["body", "inputs", "x"], "msg": "..."}]
        parts = []
        for item in detail[:20]:
            if not isinstance(item, dict) or not isinstance(item.get("msg"), str):
                continue
            loc = item.get("loc")
            where = ".".join(str(p) for p in loc) if isinstance(loc, list) else ""
            parts.append(f"{where}: {item['msg']}" if where else item["msg"])
        return "; ".join(parts) or None
    return None


def _error_fields(body: Any) -> tuple[str | None, str | None, str | None]:
    """(code, message, request_id) from any error envelope we know.

    Genie's flat ``{error_code, error_message, request_id}``; Olbrain's nested
    ``{"error": {code, message, request_id}}``; and FastAPI's ``{"detail": ...}`` with a
    string, an object ``{code, message}`` or a list of validation errors.
    """
    if not isinstance(body, dict):
        return None, None, None
    nested = body.get("error")
    detail = body.get("detail")
    if isinstance(nested, dict):
        code, message, rid = nested.get("code"), nested.get("message"), nested.get("request_id")
        rid = rid or body.get("request_id")
    else:
        code = body.get("error_code") or body.get("code")
        message = body.get("error_message") or body.get("message") or _detail_message(detail)
        if isinstance(nested, str):  # {"error": "OAuth client is not attached to this genie"}
            message = message or nested
        rid = body.get("request_id")
        if isinstance(detail, dict):  # FastAPI's {"detail": {"code", "message"}}
            code = code or detail.get("code")
            message = message or detail.get("message")
            rid = rid or detail.get("request_id")
    return (
        code if isinstance(code, str) and code else None,
        message if isinstance(message, str) else None,
        rid if isinstance(rid, str) else None,
    )


_CREDENTIAL_HEADERS = frozenset({"authorization", "x-idp-user-id", "cookie"})


def redacted_headers(headers: Mapping[str, str], secrets: tuple[str, ...]) -> CIMultiDictProxy[str]:
    """A copy of response headers with every secret redacted (a server may echo one back)."""
    copy: CIMultiDict[str] = CIMultiDict()
    for name, value in headers.items():
        copy.add(name, redact(value, secrets) if secrets else value)
    return CIMultiDictProxy(copy)


def request_id_of(headers: Mapping[str, str], secrets: tuple[str, ...]) -> str | None:
    """The ``x-request-id`` of a response, with any secret a server echoed in it redacted."""
    value = headers.get(C.REQUEST_ID_HEADER)
    return redact(value, secrets) if value is not None and secrets else value


def _sanitize_cause(exc: BaseException, secrets: tuple[str, ...]) -> None:
    """Strip credentials from an aiohttp exception before it is chained as ``__cause__``.

    ``ClientResponseError`` keeps the request's headers (``Authorization`` among them) and a
    parser message that may quote the bytes a server sent.
    """
    info = getattr(exc, "request_info", None)
    safe_info = _safe_request_info(info, secrets) if isinstance(info, RequestInfo) else None
    if safe_info is not None:
        exc.request_info = safe_info  # type: ignore[attr-defined]  # ClientResponseError's
    if isinstance(exc, aiohttp.ClientResponseError) and exc.headers is not None:
        exc.headers = redacted_headers(exc.headers, secrets)
    # Parser errors render the raw line from string attributes (``message``, ``line``).
    if secrets:
        for name, value in list(vars(exc).items()):
            if isinstance(value, str) and any(secret in value for secret in secrets):
                setattr(exc, name, redact(value, secrets))
    # args hold the original RequestInfo too (and, for parser errors, quoted bytes).
    exc.args = tuple(
        _safe_request_info(arg, secrets)
        if isinstance(arg, RequestInfo)
        else redact(arg, secrets)
        if isinstance(arg, str)
        else arg
        for arg in exc.args
    )


def _safe_request_info(info: RequestInfo, secrets: tuple[str, ...]) -> RequestInfo:
    safe: CIMultiDict[str] = CIMultiDict()
    for name, value in info.headers.items():
        hidden = name.lower() in _CREDENTIAL_HEADERS
        safe.add(name, "<redacted>" if hidden else redact(value, secrets))
    return RequestInfo(info.url, info.method, CIMultiDictProxy(safe), info.real_url)


def make_status_error(
    status: int,
    raw: bytes,
    headers: Mapping[str, str],
    *,
    method: str,
    path: str,
    host: str,
    secrets: Iterable[str] = (),
    hint: str | None = None,
    dialect: ErrorDialect = GENIE_DIALECT,
) -> APIStatusError:
    """The typed error for a non-2xx response; tolerates HTML and empty bodies.

    The status picks the class and ``dialect`` (the backend) may refine it by error code.
    """
    secrets = tuple(secrets)
    headers = redacted_headers(headers, secrets)
    content_type = headers.get("content-type", "")
    body: Any = None
    is_json = False
    if raw:
        try:
            body = _JSON_DECODER.decode(raw)
            is_json = True
        except msgspec.DecodeError:
            body = raw.decode("utf-8", "replace")
    body = scrub(body, secrets)
    code, message, body_request_id = _error_fields(body)
    if message is None:
        message = _REASONS.get(status, "HTTP error")
        if raw and not is_json:
            kind = content_type.split(";")[0].strip() or "no content type"
            message += f" (non-JSON body: {kind}, {len(raw)} bytes)"
    request_id = headers.get(C.REQUEST_ID_HEADER) or body_request_id
    cls = _STATUS_CLASSES.get(status)
    if code is not None and (status, code) in dialect.codes:
        cls = dialect.codes[status, code]
    if cls is None:
        if 300 <= status < 400:
            cls = RedirectError
            hint = hint or _hints.REDIRECT.format(location=headers.get("location", "?"))
        elif status >= 500:
            cls = ServerError
        else:
            cls = APIStatusError
    return cls(
        redact(message, secrets),
        status=status,
        error_code=code,
        body=body,
        headers=headers,
        retry_after=parse_retry_after(headers),
        method=method,
        path=path,
        hint=hint or dialect.hint(status, code, host),
        request_id=request_id,
    )


_REASONS = {
    300: "Redirect",
    301: "Moved Permanently",
    302: "Found",
    307: "Temporary Redirect",
    308: "Permanent Redirect",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    406: "Not Acceptable",
    409: "Conflict",
    413: "Payload Too Large",
    415: "Unsupported Media Type",
    422: "Unprocessable Entity",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


TRANSPORT_ERRORS = (aiohttp.ClientError, asyncio.TimeoutError)
"""What aiohttp raises for transport failures (3.10's asyncio.TimeoutError is not TimeoutError)."""


def to_genie_error(
    exc: BaseException,
    *,
    method: str,
    path: str,
    host: str,
    request_id: str | None = None,
    secrets: Iterable[str] = (),
) -> GenieError:
    """The one mapping of aiohttp and timeout exceptions to ours, most specific first.

    ``request_sent`` says whether the server may have seen the request. The original
    exception is kept as ``__cause__``.
    """
    where: dict[str, Any] = {"method": method, "path": path, "request_id": request_id}
    error: GenieError
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        error = APITimeoutError(
            f"Timed out connecting to {host} (or waiting for a free pooled connection).",
            request_sent=False,
            hint=_hints.CONNECT.format(host=host),
            **where,
        )
    elif isinstance(exc, (aiohttp.ServerTimeoutError, asyncio.TimeoutError)):
        error = APITimeoutError(
            f"Timed out waiting for {host} to respond.", request_sent=True, **where
        )
    elif isinstance(exc, aiohttp.ClientConnectorCertificateError):
        error = APIConnectionError(
            f"TLS certificate verification failed for {host}.",
            request_sent=False,
            hint="Check the host name and the system's CA certificates; a TLS-intercepting "
            "proxy needs its CA installed.",
            **where,
        )
    elif isinstance(exc, aiohttp.ClientConnectorError):
        error = APIConnectionError(
            f"Could not connect to {host}: {exc.os_error.strerror or exc}.",
            request_sent=False,
            hint=_hints.CONNECT.format(host=host),
            **where,
        )
    elif isinstance(exc, aiohttp.ServerFingerprintMismatch):
        error = APIConnectionError(
            f"TLS fingerprint mismatch for {host}.", request_sent=False, **where
        )
    elif isinstance(exc, aiohttp.ClientPayloadError):
        error = APIConnectionError(
            f"The response from {host} was cut off before it was complete.",
            request_sent=True,
            **where,
        )
    elif isinstance(exc, aiohttp.ClientConnectionError):
        # ServerDisconnectedError, ClientOSError, connection resets, a closed response…
        error = APIConnectionError(
            f"The connection to {host} failed: {type(exc).__name__}: {exc}",
            request_sent=True,
            **where,
        )
    elif isinstance(exc, aiohttp.InvalidURL):
        error = ConfigurationError(f"Invalid request URL for {method} {path}: {exc}")
    elif isinstance(exc, aiohttp.ClientResponseError):
        error = APIResponseError(
            f"Could not read the response from {host}: {exc.message}", status=exc.status, **where
        )
    else:
        error = APIConnectionError(
            f"Request to {host} failed: {type(exc).__name__}: {exc}", request_sent=True, **where
        )
    hidden = tuple(secrets)
    if hidden:  # aiohttp's messages may quote what a server sent, echoed credentials included
        error.message = redact(error.message, hidden)
        error.args = (error.message,)
    # The whole chain: aiohttp wraps its own parser errors, which quote the raw bytes.
    seen: set[int] = set()
    link: BaseException | None = exc
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        _sanitize_cause(link, hidden)
        link = link.__cause__ or link.__context__
    error.__cause__ = exc
    return error


@asynccontextmanager
async def translate_transport_errors(
    *,
    method: str,
    path: str,
    host: str,
    request_id: str | None = None,
    secrets: tuple[str, ...] = (),
) -> AsyncIterator[None]:
    """Translate transport exceptions raised inside the block (see :func:`to_genie_error`)."""
    try:
        yield
    except TRANSPORT_ERRORS as exc:
        raise to_genie_error(
            exc, method=method, path=path, host=host, request_id=request_id, secrets=secrets
        ) from exc


# --- The core --------------------------------------------------------------------------------


class HTTPCore:
    """Owns (or borrows) one ``aiohttp.ClientSession`` and performs requests on it.

    The session is created lazily inside the running event loop. A session passed in by the
    caller is used as is and never closed here.
    """

    def __init__(
        self,
        *,
        base_url: str,
        timeouts: Timeouts,
        retry: RetryPolicy,
        session: aiohttp.ClientSession | None = None,
        connection_limit: int = 100,
        connection_limit_per_host: int = 0,
        dialect: ErrorDialect = GENIE_DIALECT,
    ) -> None:
        if connection_limit < 0 or connection_limit_per_host < 0:
            raise ConfigurationError("connection limits must be >= 0 (0 means unlimited)")
        self.base_url = base_url
        self.host = urlsplit(base_url).hostname or base_url
        self.timeouts = timeouts
        self.retry = retry
        self._session = session
        self._owns_session = session is None
        self._connection_limit = connection_limit
        self._connection_limit_per_host = connection_limit_per_host
        self.dialect = dialect
        self._closed = False
        self._lock: asyncio.Lock | None = None
        self._request_timeout = aiohttp.ClientTimeout(
            total=timeouts.request, connect=timeouts.connect, sock_read=timeouts.read
        )
        # No total timeout on streams: a turn can last many minutes. sock_read is the idle bound.
        self._stream_timeout = aiohttp.ClientTimeout(
            total=None, connect=timeouts.connect, sock_read=timeouts.read
        )

    @property
    def closed(self) -> bool:
        return self._closed

    def url(self, path: str) -> URL:
        """The absolute URL of ``path`` (whose id segments are already encoded)."""
        return URL(self.base_url + path, encoded=True)

    async def session(self) -> aiohttp.ClientSession:
        if self._closed:
            raise ClientClosedError("The client is closed; create a new one.")
        if self._session is None:
            # Created here, inside the running loop, never at construction time.
            connector = aiohttp.TCPConnector(
                limit=self._connection_limit,
                limit_per_host=self._connection_limit_per_host,
                ttl_dns_cache=300,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                headers={"User-Agent": USER_AGENT},
                raise_for_status=False,
            )
        elif self._session.closed:
            raise ClientClosedError("The aiohttp session given to the client was closed.")
        return self._session

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._owns_session and self._session is not None:
            await self._session.close()

    async def _headers(
        self,
        credentials: Credentials,
        *,
        refresh: bool,
        accept: str,
        idempotency_key: str | None,
        extra: Mapping[str, str] | None,
    ) -> dict[str, str]:
        headers = {"Accept": accept, **(await credentials.headers(refresh=refresh))}
        if idempotency_key is not None and self.dialect.idempotency_header:
            headers["Idempotency-Key"] = idempotency_key
        if extra:
            headers.update(extra)
        return headers

    async def send(
        self,
        method: str,
        path: str,
        *,
        credentials: Credentials,
        params: Mapping[str, str | int] | None = None,
        json: Any = None,
        form: Callable[[], aiohttp.FormData] | None = None,
        content: bytes | None = None,
        accept: str = "application/json",
        headers: Mapping[str, str] | None = None,
        idempotency_key: str | None = None,
        stream: bool = False,
    ) -> aiohttp.ClientResponse:
        """One attempt: the response if its status is 2xx, else a typed status error.

        A 401 with a refreshable credential (an OAuth token provider) is retried once with
        a fresh token. ``content`` is a JSON body already encoded (sent byte for byte, so a
        size checked before sending is the size sent). The caller owns the returned response
        and must release it.
        """
        if content is not None:
            headers = {"Content-Type": "application/json", **(headers or {})}
        session = await self.session()
        url = self.url(path)
        timeout = self._stream_timeout if stream else self._request_timeout
        refresh = False
        while True:
            request_headers = await self._headers(
                credentials,
                refresh=refresh,
                accept=accept,
                idempotency_key=idempotency_key,
                extra=headers,
            )
            secrets = tuple(credentials.secrets())
            async with translate_transport_errors(
                method=method, path=path, host=self.host, secrets=secrets
            ):
                response = await session.request(
                    method,
                    url,
                    params=params,
                    json=json,
                    data=form() if form is not None else content,
                    headers=request_headers,
                    timeout=timeout,
                    allow_redirects=False,
                )
            if 200 <= response.status < 300:
                return response
            request_id = request_id_of(response.headers, secrets)
            try:
                async with translate_transport_errors(
                    method=method,
                    path=path,
                    host=self.host,
                    request_id=request_id,
                    secrets=secrets,
                ):
                    raw = await read_bounded(
                        response, C.MAX_ERROR_BODY_BYTES, truncate=True, request_id=request_id
                    )
            finally:
                response.release()
            error = make_status_error(
                response.status,
                raw,
                response.headers,
                method=method,
                path=path,
                host=self.host,
                secrets=secrets,
                dialect=self.dialect,
            )
            logger.debug(
                "%s %s -> %d %s [request_id=%s]",
                method,
                path,
                error.status,
                error.error_code or "",
                error.request_id,
            )
            if error.status == 401 and credentials.refreshable and not refresh:
                logger.debug("%s %s: 401 with a token provider; refreshing once", method, path)
                refresh = True
                continue
            raise error

    async def request(
        self,
        method: str,
        path: str,
        *,
        credentials: Credentials,
        params: Mapping[str, str | int] | None = None,
        json: Any = None,
        form: Callable[[], aiohttp.FormData] | None = None,
        content: bytes | None = None,
        resend_safe: bool = True,
        idempotency_key: str | None = None,
        accept_status: Callable[[APIStatusError, int], bool] | None = None,
    ) -> Response:
        """A JSON request with the retry policy applied; the body is read and decoded.

        Non-GET calls carry one ``Idempotency-Key`` for the logical call, reused on every
        retry. ``accept_status(error, attempt)`` may declare an error response a success
        (e.g. a 409 "already resolved" after a retried approval whose answer was lost).
        """
        if method != "GET" and idempotency_key is None:
            idempotency_key = uuid.uuid4().hex

        async def attempt(number: int) -> Response:
            try:
                return await self.request_once(
                    method,
                    path,
                    credentials=credentials,
                    params=params,
                    json=json,
                    form=form,
                    content=content,
                    idempotency_key=idempotency_key,
                )
            except APIStatusError as exc:
                if accept_status is not None and accept_status(exc, number):
                    secrets = tuple(credentials.secrets())
                    return Response(exc.status, exc.headers, None, exc.request_id, secrets)
                raise

        return await call_with_retry(
            self.retry, attempt, what=f"{method} {path}", resend_safe=resend_safe
        )

    async def request_once(
        self,
        method: str,
        path: str,
        *,
        credentials: Credentials,
        params: Mapping[str, str | int] | None = None,
        json: Any = None,
        form: Callable[[], aiohttp.FormData] | None = None,
        content: bytes | None = None,
        idempotency_key: str | None = None,
    ) -> Response:
        """One JSON request attempt, no retries: the decoded body or a typed error."""
        response = await self.send(
            method,
            path,
            credentials=credentials,
            params=params,
            json=json,
            form=form,
            content=content,
            idempotency_key=idempotency_key,
        )
        secrets = tuple(credentials.secrets())
        request_id = request_id_of(response.headers, secrets)
        try:
            async with translate_transport_errors(
                method=method, path=path, host=self.host, request_id=request_id, secrets=secrets
            ):
                raw = await read_bounded(response, C.MAX_RESPONSE_BYTES, request_id=request_id)
        finally:
            response.release()
        headers = redacted_headers(response.headers, secrets)
        payload = self._decode(
            raw, response.status, headers, method=method, path=path, secrets=secrets
        )
        logger.debug("%s %s -> %d [request_id=%s]", method, path, response.status, request_id)
        return Response(response.status, headers, payload, request_id, secrets)

    async def open_event_stream(
        self,
        method: str,
        path: str,
        *,
        credentials: Credentials,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        idempotency_key: str | None = None,
    ) -> aiohttp.ClientResponse:
        """One attempt to open an SSE response; the status and the content type are checked.

        Errors on a streaming request come back as JSON, so the status is checked first.
        """
        response = await self.send(
            method,
            path,
            credentials=credentials,
            json=json,
            accept="text/event-stream",
            headers={"Cache-Control": "no-store", **(headers or {})},
            idempotency_key=idempotency_key,
            stream=True,
        )
        content_type = response.headers.get("content-type", "")
        if content_type.split(";")[0].strip().lower() == "text/event-stream":
            return response
        secrets = tuple(credentials.secrets())
        request_id = request_id_of(response.headers, secrets)
        try:
            async with translate_transport_errors(
                method=method, path=path, host=self.host, request_id=request_id, secrets=secrets
            ):
                raw = await read_bounded(
                    response, C.MAX_ERROR_BODY_BYTES, truncate=True, request_id=request_id
                )
        finally:
            response.release()
        raise APIResponseError(
            f"Expected an event stream from {method} {path}, got "
            f"{redact(content_type, secrets) or 'no content type'} ({len(raw)} bytes).",
            status=response.status,
            body=scrub(raw.decode("utf-8", "replace"), secrets),
            method=method,
            path=path,
            request_id=request_id,
            hint="A proxy may be buffering or rewriting the response; streaming calls need "
            "text/event-stream passed through unchanged.",
        )

    def _decode(
        self,
        raw: bytes,
        status: int,
        headers: Mapping[str, str],
        *,
        method: str,
        path: str,
        secrets: tuple[str, ...],
    ) -> Any:
        if not raw.strip():
            return None  # action endpoints answer 200/204 with an empty body
        try:
            return _JSON_DECODER.decode(raw)
        except msgspec.DecodeError as exc:
            content_type = headers.get("content-type", "?")
            raise APIResponseError(
                f"Expected JSON from {method} {path}, got {len(raw)} bytes of {content_type}.",
                status=status,
                body=scrub(raw[:2048].decode("utf-8", "replace"), secrets),
                method=method,
                path=path,
                request_id=headers.get(C.REQUEST_ID_HEADER),
                hint="A proxy or gateway may have answered instead of the API; check base_url.",
            ) from exc


async def read_bounded(
    response: aiohttp.ClientResponse,
    limit: int,
    *,
    truncate: bool = False,
    request_id: str | None = None,
) -> bytes:
    """Read a whole body, refusing (or, for error bodies, truncating) past ``limit`` bytes."""
    if response.content_length is not None and response.content_length > limit and not truncate:
        raise APIResponseError(
            f"The response body ({response.content_length:,} bytes) exceeds the "
            f"{limit:,}-byte limit.",
            status=response.status,
            request_id=request_id,
        )
    buffer = bytearray()
    while True:
        chunk = await response.content.readany()
        if not chunk:
            return bytes(buffer)
        buffer += chunk
        if len(buffer) > limit:
            if truncate:
                return bytes(buffer[:limit])
            raise APIResponseError(
                f"The response body exceeds the {limit:,}-byte limit.",
                status=response.status,
                request_id=request_id,
            )


def release_response(response: aiohttp.ClientResponse | None) -> None:
    """Give a streaming response's connection back: closed unless already at EOF."""
    if response is None:
        return
    if response.content.is_eof():
        response.release()
    else:
        # Not draining: a bounded drain would need its own timeout (openai-python#3440).
        response.close()


_Owner = TypeVar("_Owner", bound="OwnsCore")


class OwnsCore:
    """The lifecycle shared by clients that own one :class:`HTTPCore`: ``async with``,
    ``close()`` (idempotent; a session passed in is left open), ``closed`` and ``base_url``."""

    _core: HTTPCore

    @property
    def base_url(self) -> str:
        """The origin this client calls."""
        return self._core.base_url

    @property
    def closed(self) -> bool:
        return self._core.closed

    async def __aenter__(self: _Owner) -> _Owner:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the session (unless it was passed in). Idempotent."""
        await self._core.close()
