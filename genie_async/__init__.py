"""Asyncio-native client for Workato's Genie Headless API.

::

    async with GenieClient(genie_id, data_center="us", api_key=KEY, user_id=USER) as client:
        conversation = await client.create_conversation()
        async with conversation.send("How much PTO do I have?") as stream:
            async for event in stream:
                ...

Public namespaces: this package (the client and its types, plus every event and error
re-exported), :mod:`genie_async.events`, :mod:`genie_async.errors`, :mod:`genie_async.sse`
and :mod:`genie_async.testing` (the simulator).
"""

import msgspec as _msgspec

from ._auth import RefreshingTokenProvider, TokenProvider
from ._client import GenieClient
from ._config import RetryPolicy, Timeouts
from ._conversation import Conversation, FileInput, Reply
from ._hooks import (
    Approve,
    AuthHook,
    AuthRequest,
    ConfirmationHook,
    Decision,
    DecisionRecord,
    Decline,
    Reject,
)
from ._models import (
    ConversationInfo,
    EventPage,
    Message,
    Page,
    RunHandle,
    RuntimeConnectionLink,
    UploadedFile,
)
from ._stream import EventStream, Outcome
from ._turn import StreamCursor
from ._version import __version__
from .errors import (
    AgentNotFoundError,
    APIConnectionError,
    APIError,
    APIResponseError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    AuthFailedError,
    AuthPauseTimeoutError,
    BadGatewayError,
    BadRequestError,
    ClientClosedError,
    ConfigurationError,
    ConflictError,
    DeveloperTokenError,
    EventsExpiredError,
    EventTooLargeError,
    FileTooLargeError,
    GatewayTimeoutError,
    GenieError,
    HookError,
    InsecureURLError,
    InternalServerError,
    InvalidIdError,
    InvalidRequestError,
    InvalidStateTransitionError,
    MessageNotConfirmedError,
    MessageNotFoundError,
    MessageTooLongError,
    NotAcceptableError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    RecoveryError,
    RedirectError,
    RequestTooLargeError,
    RunNotFoundError,
    RuntimeNotApplicableError,
    ServerError,
    ServiceUnavailableError,
    SessionNotFoundError,
    StreamClosedError,
    StreamError,
    StreamStalledError,
    UnprocessableEntityError,
    UnsupportedMediaTypeError,
    UpstreamTimeoutError,
    UsageError,
    UserNotActiveError,
)
from .events import (
    AgentMessage,
    AuthLink,
    Event,
    GenieEvent,
    MalformedEvent,
    ProcessingFinished,
    ProcessingStarted,
    RuntimeConnectionAuthRequired,
    SkillCompleted,
    SkillConfirmationRequired,
    SkillFailed,
    SkillParameter,
    SkillRunning,
    SkillStopped,
    UnknownEvent,
)

__all__ = [
    "APIConnectionError",
    "APIError",
    "APIResponseError",
    "APIStatusError",
    "APITimeoutError",
    "AgentMessage",
    "AgentNotFoundError",
    "Approve",
    "AuthFailedError",
    "AuthHook",
    "AuthLink",
    "AuthPauseTimeoutError",
    "AuthRequest",
    "AuthenticationError",
    "BadGatewayError",
    "BadRequestError",
    "ClientClosedError",
    "ConfigurationError",
    "ConfirmationHook",
    "ConflictError",
    "Conversation",
    "ConversationInfo",
    "Decision",
    "DecisionRecord",
    "Decline",
    "DeveloperTokenError",
    "Event",
    "EventPage",
    "EventStream",
    "EventTooLargeError",
    "EventsExpiredError",
    "FileInput",
    "FileTooLargeError",
    "GatewayTimeoutError",
    "GenieClient",
    "GenieError",
    "GenieEvent",
    "HookError",
    "InsecureURLError",
    "InternalServerError",
    "InvalidIdError",
    "InvalidRequestError",
    "InvalidStateTransitionError",
    "MalformedEvent",
    "Message",
    "MessageNotConfirmedError",
    "MessageNotFoundError",
    "MessageTooLongError",
    "NotAcceptableError",
    "NotFoundError",
    "Outcome",
    "Page",
    "PermissionDeniedError",
    "ProcessingFinished",
    "ProcessingStarted",
    "RateLimitError",
    "RecoveryError",
    "RedirectError",
    "RefreshingTokenProvider",
    "Reject",
    "Reply",
    "RequestTooLargeError",
    "RetryPolicy",
    "RunHandle",
    "RunNotFoundError",
    "RuntimeConnectionAuthRequired",
    "RuntimeConnectionLink",
    "RuntimeNotApplicableError",
    "ServerError",
    "ServiceUnavailableError",
    "SessionNotFoundError",
    "SkillCompleted",
    "SkillConfirmationRequired",
    "SkillFailed",
    "SkillParameter",
    "SkillRunning",
    "SkillStopped",
    "StreamClosedError",
    "StreamCursor",
    "StreamError",
    "StreamStalledError",
    "Timeouts",
    "TokenProvider",
    "UnknownEvent",
    "UnprocessableEntityError",
    "UnsupportedMediaTypeError",
    "UploadedFile",
    "UpstreamTimeoutError",
    "UsageError",
    "UserNotActiveError",
    "__version__",
]

# Show the public path in reprs, tracebacks and generated docs (as httpx does). Not for
# msgspec Structs: msgspec resolves their annotations through __module__.
for _name in __all__:
    _obj = globals()[_name]
    if (
        isinstance(_obj, type)
        and _obj.__module__.startswith("genie_async._")
        and not issubclass(_obj, _msgspec.Struct)
    ):
        _obj.__module__ = "genie_async"
del _name, _obj
