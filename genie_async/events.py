"""Typed events of a genie turn, decoded from SSE ``data`` with msgspec.

Every event a turn can emit is a frozen msgspec ``Struct`` sharing the common envelope
(``event_id``, ``conversation_id``, ``genie_run_id``, ``seq_num``, ``created_at``) and a
``type`` string. Match on the classes::

    async with conversation.send("How much PTO do I have?") as stream:
        async for event in stream:
            match event:
                case AgentMessage():
                    print(event.text)
                case SkillConfirmationRequired(skill_name=name):
                    print("needs confirmation:", name)
                case UnknownEvent(type=kind):
                    pass  # a type this version does not know: ignore it

Decoding never raises. A type this library does not know becomes :class:`UnknownEvent`
(type + decoded payload); a payload that is not JSON, or a known type whose fields have the
wrong types, becomes :class:`MalformedEvent` (type + raw text + the validation error) so
nothing is silently lost. Unknown *fields* on known types are ignored, so the server can add
fields without breaking clients.

Decoding is two-step and fast: the SSE ``event:`` name (or, without one, the JSON ``type``
tag inside one msgspec pass) selects the concrete Struct; only when that fails does a
lenient envelope pass run to tell an unknown type from a malformed known one.
"""

from __future__ import annotations

from typing import Any, ClassVar, Union, cast

import msgspec

__all__ = [
    "KEEPALIVE_TYPE",
    "AgentMessage",
    "AuthLink",
    "Event",
    "GenieEvent",
    "MalformedEvent",
    "Ping",
    "ProcessingFinished",
    "ProcessingStarted",
    "RuntimeConnectionAuthRequired",
    "SkillCompleted",
    "SkillConfirmationRequired",
    "SkillFailed",
    "SkillParameter",
    "SkillRunning",
    "SkillStopped",
    "StreamInterrupted",
    "UnknownEvent",
    "decode_event",
    "event_from_object",
]

KEEPALIVE_TYPE = "system.ping"


class _Envelope(msgspec.Struct, kw_only=True, frozen=True, gc=False, omit_defaults=True):
    """Fields every persisted event carries (all optional: tolerate what the server omits)."""

    event_id: str | None = None
    conversation_id: str | None = None
    genie_run_id: str | None = None
    seq_num: int | None = None
    created_at: str | None = None


class Event(_Envelope, tag_field="type", frozen=True):
    """Base class of the event types this library knows. ``type`` is the wire type."""

    type: ClassVar[str]


class ProcessingStarted(Event, tag="processing.started", frozen=True):
    """First event of a run (a turn)."""

    type: ClassVar[str] = "processing.started"


class ProcessingFinished(Event, tag="processing.finished", frozen=True):
    """Normal end of the turn; the conversation becomes idle."""

    type: ClassVar[str] = "processing.finished"


class AgentMessage(Event, tag="agent.message", frozen=True):
    """A whole markdown message from the genie. A turn may send several; the last is final."""

    type: ClassVar[str] = "agent.message"
    message: str | dict[str, Any] = ""
    message_id: str | None = None

    @property
    def text(self) -> str:
        """The message text (also when a server sends ``{"content": ...}`` objects)."""
        if isinstance(self.message, str):
            return self.message
        for key in ("content", "text"):
            value = self.message.get(key)
            if isinstance(value, str):
                return value
        return ""


class SkillRunning(Event, tag="skill.running", frozen=True):
    """A skill (a recipe) started. With parallel calls only one of these may arrive."""

    type: ClassVar[str] = "skill.running"
    skill_name: str | None = None
    skill_id: str | None = None
    call_id: str | None = None


class SkillCompleted(Event, tag="skill.completed", frozen=True):
    """A skill finished; its result goes to the model, rarely to the client."""

    type: ClassVar[str] = "skill.completed"
    skill_name: str | None = None
    skill_id: str | None = None
    call_id: str | None = None
    result: Any = None


class SkillStopped(Event, tag="skill.stopped", frozen=True):
    """A skill stopped; terminal for that skill, treated as success."""

    type: ClassVar[str] = "skill.stopped"
    skill_name: str | None = None
    skill_id: str | None = None
    call_id: str | None = None
    result: Any = None


class SkillFailed(Event, tag="skill.failed", frozen=True):
    """A skill failed; the turn usually continues with an agent message."""

    type: ClassVar[str] = "skill.failed"
    skill_name: str | None = None
    skill_id: str | None = None
    call_id: str | None = None
    error: str | dict[str, Any] | None = None


class SkillParameter(msgspec.Struct, frozen=True, gc=False, omit_defaults=True):
    """One entry of a confirmation's ``skill_parameter_schema``."""

    name: str | None = None
    label: str | None = None
    type: str | None = None
    control_type: str | None = None
    optional: bool | None = None
    hint: str | None = None


class SkillConfirmationRequired(Event, tag="skill.confirmation_required", frozen=True):
    """The turn is paused until a decision is posted for ``call_id`` (same stream resumes)."""

    type: ClassVar[str] = "skill.confirmation_required"
    call_id: str
    skill_name: str | None = None
    skill_id: str | None = None
    skill_parameters: dict[str, Any] = msgspec.field(default_factory=dict)
    skill_parameter_schema: list[SkillParameter] = msgspec.field(default_factory=list)


class AuthLink(msgspec.Struct, frozen=True, gc=False, omit_defaults=True):
    """Where the end user authorizes a runtime connection; expires about 5 minutes after issue."""

    url: str
    connector_name: str | None = None
    expires_at: str | None = None


class RuntimeConnectionAuthRequired(Event, tag="runtime_connection.auth_required", frozen=True):
    """The turn is parked while the end user authorizes an upstream connection out of band.

    The original stream does not resume: the reply arrives later as a new run, read from
    the message history. ``auth_link`` is filled in from the link endpoint when the event
    itself carried only ``runtime_connection_attempt_id``.
    """

    type: ClassVar[str] = "runtime_connection.auth_required"
    runtime_connection_attempt_id: str | None = None
    auth_link: AuthLink | None = None


class StreamInterrupted(Event, tag="system.stream_interrupted", frozen=True):
    """Control frame: the server ended the stream early. Handled by the library, never yielded."""

    type: ClassVar[str] = "system.stream_interrupted"
    last_seq_num: int | None = None
    reason: str | None = None
    retry_after_ms: int | None = None


class Ping(Event, tag="system.ping", frozen=True):
    """Keep-alive. Filtered out by the library, never yielded."""

    type: ClassVar[str] = "system.ping"
    timestamp: str | None = None


class UnknownEvent(_Envelope, frozen=True):
    """An event type this version does not know, with its decoded JSON ``payload``."""

    type: str
    payload: Any = None


class MalformedEvent(_Envelope, frozen=True):
    """An event whose ``data`` is not JSON, or a known type whose fields failed validation.

    ``raw`` is the SSE data as received and ``error`` says what was wrong; envelope fields
    are filled in when they could be read.
    """

    type: str
    raw: str = ""
    error: str = ""


GenieEvent = Union[  # noqa: UP007  # a runtime alias; X | Y of classes needs 3.10 and reads worse here
    ProcessingStarted,
    ProcessingFinished,
    AgentMessage,
    SkillRunning,
    SkillCompleted,
    SkillStopped,
    SkillFailed,
    SkillConfirmationRequired,
    RuntimeConnectionAuthRequired,
    StreamInterrupted,
    Ping,
    UnknownEvent,
    MalformedEvent,
]
"""Any item decoded from a turn's stream."""

_KNOWN: dict[str, type[Event]] = {
    cls.type: cls
    for cls in (
        ProcessingStarted,
        ProcessingFinished,
        AgentMessage,
        SkillRunning,
        SkillCompleted,
        SkillStopped,
        SkillFailed,
        SkillConfirmationRequired,
        RuntimeConnectionAuthRequired,
        StreamInterrupted,
        Ping,
    )
}
# Built once: a decoder per known type (step two when the SSE name is known), and one
# tagged-union decoder for data-only events whose JSON carries the type.
_BY_NAME: dict[str, msgspec.json.Decoder[Any]] = {
    name: msgspec.json.Decoder(cls) for name, cls in _KNOWN.items()
}
_BY_TAG: msgspec.json.Decoder[Any] = msgspec.json.Decoder(Union[tuple(_KNOWN.values())])  # noqa: UP007
_ANY: msgspec.json.Decoder[Any] = msgspec.json.Decoder()
_ENVELOPE_FIELDS = ("event_id", "conversation_id", "genie_run_id", "seq_num", "created_at")
_SSE_DEFAULT_EVENT = "message"
# msgspec reports invalid UTF-8 in bytes input as UnicodeDecodeError, and a str holding a lone
# surrogate as UnicodeEncodeError; neither is a MsgspecError.
_DECODE_ERRORS = (msgspec.MsgspecError, UnicodeError)


def decode_event(data: str | bytes, event: str | None = None) -> GenieEvent:
    """Decode one SSE event's ``data`` (and its ``event:`` name) into a typed event.

    Never raises: unknown types give :class:`UnknownEvent`, bad payloads
    :class:`MalformedEvent`.
    """
    if event is not None and event != _SSE_DEFAULT_EVENT:
        decoder = _BY_NAME.get(event)
        if decoder is not None:
            try:
                return decoder.decode(data)  # type: ignore[no-any-return]
            except _DECODE_ERRORS:
                pass  # a different JSON type, or bad fields: the lenient pass decides
    else:
        try:
            return _BY_TAG.decode(data)  # type: ignore[no-any-return]
        except _DECODE_ERRORS:
            pass
    return _decode_leniently(data, event)


def _decode_leniently(data: str | bytes, event: str | None) -> GenieEvent:
    raw = data if isinstance(data, str) else data.decode("utf-8", "replace")
    fallback_type = event or _SSE_DEFAULT_EVENT
    try:
        obj = _ANY.decode(data)
    except _DECODE_ERRORS as exc:
        return MalformedEvent(type=fallback_type, raw=raw, error=f"invalid JSON: {exc}")
    return _from_object(obj, fallback_type, raw)


def event_from_object(obj: Any) -> GenieEvent:
    """Decode an already-parsed JSON event (as the persisted-events endpoint returns them)."""
    return _from_object(obj, "", None)


def _raw_text(obj: Any) -> str:
    """The JSON text of an object already decoded, for a MalformedEvent's ``raw``."""
    try:
        return msgspec.json.encode(obj).decode()
    except (TypeError, UnicodeError):  # not JSON-encodable (a lone surrogate, say)
        return repr(obj)


def _from_object(obj: Any, fallback_type: str, raw: str | None) -> GenieEvent:
    if not isinstance(obj, dict):
        text = raw if raw is not None else _raw_text(obj)
        return MalformedEvent(type=fallback_type, raw=text, error="data is not a JSON object")
    json_type = obj.get("type")
    kind = json_type if isinstance(json_type, str) and json_type else fallback_type
    envelope = _lenient_envelope(obj)
    cls = _KNOWN.get(kind)
    if cls is None:
        return UnknownEvent(type=kind, payload=obj, **envelope)
    if json_type != kind:
        # The JSON lacked the type: inject the SSE name so the tagged Struct validates.
        obj = {**obj, "type": kind}
    try:
        return cast(GenieEvent, msgspec.convert(obj, cls))
    except (msgspec.ValidationError, UnicodeError) as exc:  # a lone surrogate in a key, say
        text = raw if raw is not None else _raw_text(obj)
        return MalformedEvent(type=kind, raw=text, error=str(exc), **envelope)


def _lenient_envelope(obj: dict[str, Any]) -> dict[str, Any]:
    """The envelope fields that have the right types; the rest are left out."""
    envelope: dict[str, Any] = {}
    for name in _ENVELOPE_FIELDS:
        value = obj.get(name)
        if name == "seq_num":
            if isinstance(value, int) and not isinstance(value, bool):
                envelope[name] = value
        elif isinstance(value, str):
            envelope[name] = value
    return envelope
