"""Every exception genie_async raises, in one tree.

::

    GenieError                              base of everything raised here; .hint, .request_id
    ├── APIError                            a call to the API did not succeed
    │   ├── APIStatusError                  the server answered with a non-2xx status
    │   │   ├── RedirectError               3xx: redirects are never followed (credentials stay put)
    │   │   ├── BadRequestError             400
    │   │   │   └── RuntimeNotApplicableError  400 runtime_not_applicable: wrong agent kind
    │   │   ├── AuthenticationError         401
    │   │   │   ├── AuthFailedError         401 auth_failed: the credential was rejected
    │   │   │   └── UserNotActiveError      401 user_nonactive_or_missing: end user not usable
    │   │   ├── PermissionDeniedError       403
    │   │   ├── NotFoundError               404
    │   │   │   ├── AgentNotFoundError      404 agent_not_found: no such agent for this key
    │   │   │   ├── SessionNotFoundError    404 session_not_found (Olbrain)
    │   │   │   ├── MessageNotFoundError    404 message_not_found (Olbrain)
    │   │   │   └── RunNotFoundError        404 run_not_found (Olbrain)
    │   │   ├── NotAcceptableError          406: the genie has no client attached
    │   │   ├── ConflictError               409: conversation busy / relation already exists
    │   │   │   └── InvalidStateTransitionError  409 invalid_state_transition, also refused locally
    │   │   ├── RequestTooLargeError        413, also refused locally (Olbrain's 1 MiB trigger)
    │   │   ├── UnsupportedMediaTypeError   415
    │   │   ├── UnprocessableEntityError    422
    │   │   ├── RateLimitError              429 (.retry_after)
    │   │   └── ServerError                 5xx
    │   │       ├── InternalServerError     500
    │   │       ├── BadGatewayError         502
    │   │       │   └── UpstreamTimeoutError  502 upstream_timeout: the agent runtime was too slow
    │   │       ├── ServiceUnavailableError 503
    │   │       └── GatewayTimeoutError     504
    │   ├── APIConnectionError              no response: refused, reset, DNS, TLS, dropped body
    │   │   └── APITimeoutError             connect or read idle timeout
    │   └── APIResponseError                a 2xx we cannot use (bad JSON, wrong content type)
    ├── StreamError                         a turn's event stream could not go on
    │   ├── EventTooLargeError              one SSE event exceeded max_event_bytes
    │   ├── StreamStalledError              no meaningful event within the stall deadline
    │   ├── HookError                       a pause hook raised or returned something invalid
    │   ├── AuthPauseTimeoutError           the end user did not authorize the connection in time
    │   └── RecoveryError                   reconnect and replay could not finish the turn
    │       ├── EventsExpiredError          the events needed are past the 24 h retention window
    │       └── MessageNotConfirmedError    dropped before any event; the message was not accepted
    ├── InvalidRequestError (ValueError)    refused before sending; nothing was sent
    │   ├── InvalidIdError                  an id that could alter the request path
    │   ├── MessageTooLongError             over 12,288 characters
    │   └── FileTooLargeError               over 20 MB
    ├── ConfigurationError (ValueError)     the client cannot be built as asked
    │   ├── DeveloperTokenError             a wrkaus- Developer API token used for runtime calls
    │   └── InsecureURLError                plain http:// to a non-loopback host
    └── UsageError (RuntimeError)           the library was used out of order
        ├── ClientClosedError               the client was closed
        └── StreamClosedError               the stream was closed, or consumed twice

Catch ``APIStatusError`` for anything the server refused, ``APIConnectionError`` for the
network, ``StreamError`` for a turn that could not finish, and ``GenieError`` for all of it.
Misuse is a ``RuntimeError`` so that no retry predicate can ever match it.

Every error carries ``request_id`` when a response produced it (the ``x-request-id`` header,
else the body's ``request_id``) and a ``hint`` saying how to fix it. Messages never contain
credentials: the HTTP core redacts the client's secrets from anything taken from a response.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from multidict import CIMultiDict, CIMultiDictProxy

__all__ = [
    "APIConnectionError",
    "APIError",
    "APIResponseError",
    "APIStatusError",
    "APITimeoutError",
    "AgentNotFoundError",
    "AuthFailedError",
    "AuthPauseTimeoutError",
    "AuthenticationError",
    "BadGatewayError",
    "BadRequestError",
    "ClientClosedError",
    "ConfigurationError",
    "ConflictError",
    "DeveloperTokenError",
    "EventTooLargeError",
    "EventsExpiredError",
    "FileTooLargeError",
    "GatewayTimeoutError",
    "GenieError",
    "HookError",
    "InsecureURLError",
    "InternalServerError",
    "InvalidIdError",
    "InvalidRequestError",
    "InvalidStateTransitionError",
    "MessageNotConfirmedError",
    "MessageNotFoundError",
    "MessageTooLongError",
    "NotAcceptableError",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimitError",
    "RecoveryError",
    "RedirectError",
    "RequestTooLargeError",
    "RunNotFoundError",
    "RuntimeNotApplicableError",
    "ServerError",
    "ServiceUnavailableError",
    "SessionNotFoundError",
    "StreamClosedError",
    "StreamError",
    "StreamStalledError",
    "UnprocessableEntityError",
    "UnsupportedMediaTypeError",
    "UpstreamTimeoutError",
    "UsageError",
    "UserNotActiveError",
]


class GenieError(Exception):
    """Base class of every exception raised by genie_async."""

    message: str
    hint: str | None
    request_id: str | None

    def __init__(
        self, message: str, *, hint: str | None = None, request_id: str | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.request_id = request_id

    def __str__(self) -> str:
        text = self.message
        if self.request_id:
            text += f" [request_id={self.request_id}]"
        if self.hint:
            text += f"\nHint: {self.hint}"
        return text


# --- API errors ------------------------------------------------------------------------------


class APIError(GenieError):
    """A call to the API did not succeed. ``method`` and ``path`` name the call."""

    method: str | None
    path: str | None

    def __init__(
        self,
        message: str,
        *,
        method: str | None = None,
        path: str | None = None,
        hint: str | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint, request_id=request_id)
        self.method = method
        self.path = path


class APIStatusError(APIError):
    """The server answered with a non-2xx status.

    ``status`` is the HTTP status, ``error_code`` the body's machine-readable code (``None``
    when the body had none), ``message`` the server's explanation (or a description of a
    non-JSON body), ``body`` the decoded JSON body or the text of a non-JSON one, ``headers``
    the response headers, and ``attempts`` how many times the call was made before giving up.
    """

    status: int
    error_code: str | None
    body: object
    headers: Mapping[str, str]
    retry_after: float | None
    attempts: int

    def __init__(
        self,
        message: str,
        *,
        status: int,
        error_code: str | None = None,
        body: object = None,
        headers: Mapping[str, str] | None = None,
        retry_after: float | None = None,
        method: str | None = None,
        path: str | None = None,
        hint: str | None = None,
        request_id: str | None = None,
        attempts: int = 1,
    ) -> None:
        super().__init__(message, method=method, path=path, hint=hint, request_id=request_id)
        self.status = status
        self.error_code = error_code
        self.body = body
        # Case-insensitive, like HTTP: error.headers.get("retry-after") works whatever the casing.
        self.headers = CIMultiDictProxy(CIMultiDict(headers or {}))
        self.retry_after = retry_after
        self.attempts = attempts

    def __str__(self) -> str:
        where = f"{self.method} {self.path} -> " if self.method and self.path else ""
        code = f" {self.error_code}" if self.error_code else ""
        text = f"{where}{self.status}{code}: {self.message}"
        if self.attempts > 1:
            text += f" (gave up after {self.attempts} attempts)"
        if self.request_id:
            text += f" [request_id={self.request_id}]"
        if self.hint:
            text += f"\nHint: {self.hint}"
        return text


class RedirectError(APIStatusError):
    """A 3xx response. Redirects are not followed, so credentials never leave the host."""


class BadRequestError(APIStatusError):
    """400: the request was malformed (for example a message over 12,288 characters)."""


class RuntimeNotApplicableError(BadRequestError):
    """400 ``runtime_not_applicable`` (Olbrain): a run endpoint on a conversational agent,
    or a session endpoint on a workflow agent."""


class AuthenticationError(APIStatusError):
    """401: the request was not authenticated."""


class AuthFailedError(AuthenticationError):
    """401 ``auth_failed``: the gateway rejected the credential before reaching the genie."""


class UserNotActiveError(AuthenticationError):
    """401 ``user_nonactive_or_missing``: ``X-IDP-User-Id`` is not an active, allow-listed user."""


class PermissionDeniedError(APIStatusError):
    """403: authenticated but not allowed (often the provisioning propagation window)."""


class NotFoundError(APIStatusError):
    """404: the genie, conversation, run, call or attempt does not exist for this user."""


class AgentNotFoundError(NotFoundError):
    """404 ``agent_not_found`` (Olbrain): no such agent, or it belongs to another organization
    than the key (the API answers both the same way on purpose)."""


class SessionNotFoundError(NotFoundError):
    """404 ``session_not_found`` (Olbrain): no such session for this agent and key."""


class MessageNotFoundError(NotFoundError):
    """404 ``message_not_found`` (Olbrain): no such message within the session."""


class RunNotFoundError(NotFoundError):
    """404 ``run_not_found`` (Olbrain): no such run, or it belongs to another agent."""


class NotAcceptableError(APIStatusError):
    """406: the genie has no genie client attached."""


class ConflictError(APIStatusError):
    """409: the conversation is busy (or, on the Developer API, the relation already exists)."""


class InvalidStateTransitionError(ConflictError):
    """409 ``invalid_state_transition`` (Olbrain): a run control action its state forbids.

    Raised by the server, or locally before sending when the run's last known status already
    forbids the action (then ``request_id`` is ``None`` and ``refused_locally`` is True).
    ``action`` is the control action and ``run_status`` the run's status as last read (after
    a server 409 the run is re-read first, so it is the current one).
    """

    action: str | None = None
    run_status: str | None = None
    refused_locally: bool = False


class RequestTooLargeError(APIStatusError):
    """413: the request body was too large.

    Also raised before sending, with ``request_id`` ``None``, for an Olbrain trigger body
    over 1 MiB: nothing was sent.
    """


class UnsupportedMediaTypeError(APIStatusError):
    """415: the request body had the wrong media type."""


class UnprocessableEntityError(APIStatusError):
    """422: the request was well-formed but its fields failed validation."""


class RateLimitError(APIStatusError):
    """429: rate limited. Not retried unless the retry policy opts in; see ``retry_after``."""


class ServerError(APIStatusError):
    """5xx: the server failed."""


class InternalServerError(ServerError):
    """500: unexpected server error (retried once)."""


class BadGatewayError(ServerError):
    """502: upstream failure (retried with backoff)."""


class UpstreamTimeoutError(BadGatewayError):
    """502 ``upstream_timeout`` (Olbrain): the agent runtime did not respond in time (retried
    with backoff like any 502)."""


class ServiceUnavailableError(ServerError):
    """503: service unavailable (retried with backoff)."""


class GatewayTimeoutError(ServerError):
    """504: upstream timeout (retried with backoff)."""


class APIConnectionError(APIError):
    """No usable response: connection refused or reset, DNS, TLS, or the body was cut off.

    ``request_sent`` is False when the failure happened while connecting, so the server
    cannot have seen the request; True when it may have.
    """

    request_sent: bool

    def __init__(
        self,
        message: str,
        *,
        request_sent: bool = True,
        method: str | None = None,
        path: str | None = None,
        hint: str | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message, method=method, path=path, hint=hint, request_id=request_id)
        self.request_sent = request_sent


class APITimeoutError(APIConnectionError):
    """Connecting, or waiting for the next bytes of a response, took too long."""


class APIResponseError(APIError):
    """A 2xx response we cannot use: undecodable JSON, wrong shape or wrong content type."""

    status: int | None
    body: object

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        body: object = None,
        method: str | None = None,
        path: str | None = None,
        hint: str | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message, method=method, path=path, hint=hint, request_id=request_id)
        self.status = status
        self.body = body


# --- Stream errors ---------------------------------------------------------------------------


class StreamError(GenieError):
    """A turn's event stream could not go on. ``cursor`` (when known) resumes the turn."""

    cursor: Any

    def __init__(
        self,
        message: str,
        *,
        cursor: Any = None,
        hint: str | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint, request_id=request_id)
        self.cursor = cursor


class EventTooLargeError(StreamError):
    """One SSE event (or one line of one) exceeded ``max_event_bytes``.

    ``completed`` holds the events the same chunk completed before the oversized one (as
    :class:`~genie_async.sse.ServerSentEvent`), so a caller can still deliver them.
    """

    limit: int
    completed: list[Any]

    def __init__(self, limit: int, *, request_id: str | None = None) -> None:
        super().__init__(
            f"An event on the stream exceeded the {limit:,}-byte limit; the stream was closed.",
            hint="Raise max_event_bytes on the client if the genie legitimately sends "
            "events this large; otherwise the server is misbehaving.",
            request_id=request_id,
        )
        self.limit = limit
        self.completed = []


class StreamStalledError(StreamError):
    """No meaningful event arrived within the stall deadline (keep-alives do not count)."""


class HookError(StreamError):
    """A pause hook raised, or returned something other than a decision.

    The pause was resolved fail-closed (a confirmation was rejected) before this was raised;
    the hook's own exception is ``__cause__``.
    """


class AuthPauseTimeoutError(StreamError):
    """The end user did not authorize the runtime connection before the auth timeout."""


class RecoveryError(StreamError):
    """Reconnecting and replaying persisted events could not finish the turn."""


class EventsExpiredError(RecoveryError):
    """The events needed to recover are older than the 24 h retention window."""


class MessageNotConfirmedError(RecoveryError):
    """The stream dropped before any event and the message is not in the history.

    It was not re-sent automatically: sending again is the application's decision.
    """


# --- Local refusals and misuse ---------------------------------------------------------------


class InvalidRequestError(GenieError, ValueError):
    """Refused before sending: nothing was sent and nothing was lost."""


class InvalidIdError(InvalidRequestError):
    """An id that is empty or could change the request path (``/``, ``..``, control chars)."""


class MessageTooLongError(InvalidRequestError):
    """A message longer than the API's 12,288-character limit."""


class FileTooLargeError(InvalidRequestError):
    """A file larger than the API's 20 MB upload limit."""


class ConfigurationError(GenieError, ValueError):
    """The client cannot be built with these settings."""


class DeveloperTokenError(ConfigurationError):
    """A ``wrkaus-`` Developer API token was given where a runtime credential belongs."""


class InsecureURLError(ConfigurationError):
    """Plain ``http://`` to a host that is not loopback, without ``allow_insecure_http``."""


class UsageError(GenieError, RuntimeError):
    """The library was used out of order. Never retried."""


class ClientClosedError(UsageError):
    """The client (or the client a view shares) was closed."""


class StreamClosedError(UsageError):
    """The stream was closed, or iterated a second time after it ended."""
