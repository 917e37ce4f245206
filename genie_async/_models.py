"""Typed models of the runtime API's JSON responses, and the envelope rules that read them.

Production wraps every payload in ``{"result": ...}``; the documented form is flat. Both are
accepted (reference §3.2), and so are both names of the conversation list (``list`` flat,
``conversations`` wrapped). Every model carries the ``request_id`` of the response it came
from (the ``x-request-id`` header).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Generic, Literal, Protocol, TypeVar

import msgspec

from ._auth import scrub
from .errors import APIResponseError
from .events import AuthLink

__all__ = [
    "ConversationInfo",
    "EventPage",
    "Message",
    "Page",
    "RunHandle",
    "RuntimeConnectionLink",
    "UploadedFile",
]

T = TypeVar("T")


class ResponseLike(Protocol):
    """What the parsers need of a response (``_http.Response``)."""

    @property
    def payload(self) -> Any: ...

    @property
    def request_id(self) -> str | None: ...

    @property
    def secrets(self) -> tuple[str, ...]: ...


class _Model(msgspec.Struct, kw_only=True, frozen=True, omit_defaults=True):
    request_id: str | None = None


class ConversationInfo(_Model, frozen=True):
    """A conversation's state as ``GET /conversations[/{id}]`` reports it.

    ``state`` is ``idle`` when a message can be sent; anything else means busy (unknown
    values included). While a turn is parked on a runtime connection the API may still say
    ``idle``: don't rely on it alone after such a pause.
    """

    conversation_id: str
    topic: str | int | None = None
    state: str | None = None
    last_event: dict[str, Any] | None = None
    created_at: str | None = None
    updated_at: str | None = None
    last_updated_at: str | None = None
    display_topic: str | None = None
    """A readable title: ``topic``, or the first user message while ``topic`` is still the
    numeric placeholder (filled by :meth:`Conversation.info`)."""

    @property
    def topic_is_placeholder(self) -> bool:
        """Whether ``topic`` is the numeric placeholder shown until the topic is generated."""
        topic = self.topic
        if isinstance(topic, bool):
            return False
        return isinstance(topic, int) or (isinstance(topic, str) and topic.isdigit())

    @property
    def is_idle(self) -> bool:
        """Whether the conversation reports ``idle`` (ready for the next message)."""
        return self.state == "idle"

    @property
    def last_event_run(self) -> str | None:
        """``last_event.genie_run_id``: the run the conversation is busy with, if any."""
        if self.last_event is None:
            return None
        value = self.last_event.get("genie_run_id")
        return value if isinstance(value, str) else None

    @property
    def last_event_type(self) -> str | None:
        """``last_event.type``: tells the busy sub-states apart (skill, confirmation, auth)."""
        if self.last_event is None:
            return None
        value = self.last_event.get("type")
        return value if isinstance(value, str) else None


class Message(_Model, frozen=True):
    """One entry of a conversation's message history (``source`` is ``user`` or ``genie``)."""

    message_id: str
    source: str
    content: str = ""
    genie_run_id: str | None = None
    created_at: str | None = None
    file_id: str | None = None


class RuntimeConnectionLink(_Model, frozen=True):
    """The state of a runtime-connection attempt: ``auth_required`` (with a link) or
    ``authorized``; other values are terminal (e.g. ``rejected``)."""

    status: str
    auth_link: AuthLink | None = None

    @property
    def authorized(self) -> bool:
        return self.status == "authorized"


class UploadedFile(_Model, frozen=True):
    """A file uploaded to a conversation; pass it (or its ``file_id``) to ``send(file=...)``."""

    file_id: str
    filename: str | None = None
    size: int | None = None


class RunHandle(_Model, frozen=True):
    """What ``send(..., stream=False)`` returns: the run to follow with ``attach()``.

    ``genie_run_id`` is ``None`` when the server answered with an empty body.
    """

    conversation_id: str
    genie_run_id: str | None = None


class Page(_Model, Generic[T], frozen=True):
    """One page of a cursor-paged list; ``cursor`` is present only when more pages exist."""

    items: list[T]
    cursor: str | None = None
    total_count: int | None = None


class EventPage(_Model, frozen=True):
    """One page of persisted events (raw JSON objects; decoded by the caller).

    ``next_since_created_at`` is present only when more pages exist.
    """

    events: list[dict[str, Any]]
    next_since_created_at: str | None = None


def unwrap(payload: Any, expected: Iterable[str]) -> Any:
    """Strip a ``{"result": ...}`` envelope when the payload has one (reference §3.2)."""
    wrapped = isinstance(payload, dict) and isinstance(payload.get("result"), dict)
    if wrapped and (len(payload) == 1 or not any(key in payload for key in expected)):
        return payload["result"]
    return payload


ListKind = Literal["conversations", "messages"]
_LIST_KEYS: dict[ListKind, tuple[str, ...]] = {
    "conversations": ("list", "conversations"),
    "messages": ("messages", "list"),
}


def _unusable(
    message: str, response: ResponseLike, body: Any, *, hint: str | None = None
) -> APIResponseError:
    secrets = response.secrets
    return APIResponseError(
        scrub(message, secrets),
        body=scrub(body, secrets),
        request_id=response.request_id,
        hint=hint,
    )


def _convert(obj: Any, model: type[T], response: ResponseLike, *, what: str) -> T:
    try:
        return msgspec.convert(obj, model)
    except msgspec.ValidationError as exc:
        raise _unusable(
            f"Unexpected {what} in the response: {exc}",
            response,
            obj,
            hint="The API's response shape changed or a proxy altered it; "
            "report this with the request id.",
        ) from exc


def _object(body: Any, response: ResponseLike, *, what: str) -> dict[str, Any]:
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise _unusable(
            f"Expected a JSON object for the {what}, got {type(body).__name__}.",
            response,
            response.payload,
        )
    return body


def parse_model(
    response: ResponseLike,
    model: type[T],
    *,
    expected: Iterable[str],
    defaults: dict[str, Any] | None = None,
    what: str,
) -> T:
    """Unwrap and convert one object, backfilling ``defaults`` for absent keys."""
    body = _object(unwrap(response.payload, expected), response, what=what)
    merged = {**(defaults or {}), **{k: v for k, v in body.items() if v is not None}}
    merged["request_id"] = response.request_id
    return _convert(merged, model, response, what=what)


def parse_page(response: ResponseLike, item: type[T], kind: ListKind, *, what: str) -> Page[T]:
    """Unwrap a list page, accepting every observed name of its list key."""
    keys = _LIST_KEYS[kind]
    body = _object(unwrap(response.payload, keys), response, what=what)
    raw_items: list[Any] = next((body[k] for k in keys if isinstance(body.get(k), list)), [])
    items = [
        {**entry, "request_id": response.request_id} if isinstance(entry, dict) else entry
        for entry in raw_items
    ]
    cursor = body.get("cursor") or body.get("next_cursor")
    page = {
        "items": items,
        "cursor": cursor if isinstance(cursor, str) and cursor else None,
        "total_count": body.get("total_count"),
        "request_id": response.request_id,
    }
    return _convert(page, Page[item], response, what=what)  # type: ignore[valid-type]


def parse_event_page(response: ResponseLike) -> EventPage:
    """Unwrap a ``/conversations/events`` page."""
    body = _object(unwrap(response.payload, ("events",)), response, what="event page")
    events = [e for e in body.get("events") or [] if isinstance(e, dict)]
    nxt = body.get("next_since_created_at")
    return EventPage(
        events=events,
        next_since_created_at=nxt if isinstance(nxt, str) and nxt else None,
        request_id=response.request_id,
    )
