"""Event decoding: typed Structs, unknown types, malformed payloads, type resolution."""

from __future__ import annotations

import msgspec
import pytest

from genie_async import events as ev

ENVELOPE = (
    '"event_id":"e1","conversation_id":"c1","genie_run_id":"r1","seq_num":3,'
    '"created_at":"2026-06-08T12:00:00.000Z"'
)


def _data(type_: str, extra: str = "") -> str:
    return "{" + f'"type":"{type_}",{ENVELOPE}' + (f",{extra}" if extra else "") + "}"


@pytest.mark.parametrize(
    ("type_", "extra", "cls"),
    [
        ("processing.started", "", ev.ProcessingStarted),
        ("processing.finished", "", ev.ProcessingFinished),
        ("agent.message", '"message":"**hi**","message_id":"m1"', ev.AgentMessage),
        ("skill.running", '"skill_name":"Lookup","skill_id":"recipe:1"', ev.SkillRunning),
        ("skill.completed", '"skill_name":"Lookup","result":{"ok":true}', ev.SkillCompleted),
        ("skill.stopped", '"skill_name":"Lookup"', ev.SkillStopped),
        ("skill.failed", '"skill_name":"Lookup","error":"boom"', ev.SkillFailed),
        (
            "skill.confirmation_required",
            '"call_id":"call_x","skill_name":"Submit","skill_parameters":{"days":3},'
            '"skill_parameter_schema":[{"name":"days","label":"Days","type":"integer",'
            '"control_type":"number","optional":false,"hint":"1-30"}]',
            ev.SkillConfirmationRequired,
        ),
        (
            "runtime_connection.auth_required",
            '"runtime_connection_attempt_id":"rca_1","auth_link":{"url":"https://x",'
            '"connector_name":"Salesforce","expires_at":"2026-06-08T12:05:00Z"}',
            ev.RuntimeConnectionAuthRequired,
        ),
        (
            "system.stream_interrupted",
            '"last_seq_num":5,"reason":"timeout","retry_after_ms":1500',
            ev.StreamInterrupted,
        ),
    ],
)
@pytest.mark.parametrize("with_name", [True, False])
def test_every_documented_type_decodes_to_its_struct(
    type_: str, extra: str, cls: type[ev.Event], with_name: bool
) -> None:
    """Each documented event type decodes to its Struct, with or without the SSE name."""
    event = ev.decode_event(_data(type_, extra), type_ if with_name else None)
    assert type(event) is cls
    assert event.type == type_
    assert (event.event_id, event.conversation_id, event.genie_run_id, event.seq_num) == (
        "e1",
        "c1",
        "r1",
        3,
    )
    assert event.created_at == "2026-06-08T12:00:00.000Z"


def test_confirmation_fields_are_typed() -> None:
    """A confirmation exposes its call id, parameters and typed parameter schema."""
    event = ev.decode_event(
        _data(
            "skill.confirmation_required",
            '"call_id":"call_x","skill_parameters":{"days":3},'
            '"skill_parameter_schema":[{"name":"days","optional":false}]',
        )
    )
    assert isinstance(event, ev.SkillConfirmationRequired)
    assert event.call_id == "call_x"
    assert event.skill_parameters == {"days": 3}
    assert event.skill_parameter_schema == [ev.SkillParameter(name="days", optional=False)]


def test_ping_has_no_envelope() -> None:
    """The keep-alive decodes although it carries only type and timestamp."""
    event = ev.decode_event('{"type":"system.ping","timestamp":"t"}', "system.ping")
    assert isinstance(event, ev.Ping)
    assert event.timestamp == "t"
    assert event.event_id is None


def test_unknown_type_becomes_unknown_event_with_payload() -> None:
    """An unknown type is an UnknownEvent carrying type, envelope and the decoded payload."""
    event = ev.decode_event(_data("custom.progress", '"percent":40'), "custom.progress")
    assert isinstance(event, ev.UnknownEvent)
    assert event.type == "custom.progress"
    assert event.payload["percent"] == 40
    assert event.event_id == "e1"
    assert event.seq_num == 3


def test_unknown_fields_on_known_types_are_tolerated() -> None:
    """New server fields do not break decoding of a known type."""
    event = ev.decode_event(_data("agent.message", '"message":"x","brand_new":{"a":1}'))
    assert isinstance(event, ev.AgentMessage)
    assert event.text == "x"


def test_json_type_wins_over_sse_event_name() -> None:
    """When the SSE name and the JSON type disagree, the JSON type decides."""
    event = ev.decode_event(_data("processing.finished"), "agent.message")
    assert isinstance(event, ev.ProcessingFinished)


def test_sse_name_is_used_when_json_lacks_type() -> None:
    """Without a JSON type, the SSE event name selects the Struct."""
    event = ev.decode_event('{"message":"hello","event_id":"e9"}', "agent.message")
    assert isinstance(event, ev.AgentMessage)
    assert event.text == "hello"
    assert event.event_id == "e9"


def test_sse_name_is_injected_on_the_lenient_path() -> None:
    """A typeless object whose SSE name is known still decodes leniently (via the name)."""
    event = ev.decode_event('{"message":"hello"}', "agent.message")
    assert isinstance(event, ev.AgentMessage)


def test_invalid_json_is_a_malformed_event() -> None:
    """Data that is not JSON is kept, raw, in a MalformedEvent."""
    event = ev.decode_event("{not json", "agent.message")
    assert isinstance(event, ev.MalformedEvent)
    assert event.type == "agent.message"
    assert event.raw == "{not json"
    assert "invalid JSON" in event.error


def test_known_type_with_wrong_field_types_is_malformed_with_envelope() -> None:
    """Wrong field types on a known type give a MalformedEvent that keeps the envelope."""
    data = '{"type":"agent.message","event_id":"e5","seq_num":5,"message":42}'
    event = ev.decode_event(data, "agent.message")
    assert isinstance(event, ev.MalformedEvent)
    assert event.type == "agent.message"
    assert event.event_id == "e5"
    assert event.seq_num == 5
    assert "message" in event.error
    assert event.raw == data


def test_malformed_envelope_fields_are_left_out() -> None:
    """A non-integer seq_num is not copied into the malformed event's envelope."""
    event = ev.decode_event('{"type":"skill.running","seq_num":"3","event_id":"e"}')
    assert isinstance(event, ev.MalformedEvent)
    assert event.seq_num is None
    assert event.event_id == "e"


def test_non_object_json_is_malformed() -> None:
    """A JSON array or number is not an event."""
    assert isinstance(ev.decode_event("[1,2]", "agent.message"), ev.MalformedEvent)
    assert isinstance(ev.decode_event("7", None), ev.MalformedEvent)


def test_confirmation_without_call_id_is_malformed() -> None:
    """A confirmation cannot be resolved without call_id, so it is malformed, not dropped."""
    event = ev.decode_event(_data("skill.confirmation_required"))
    assert isinstance(event, ev.MalformedEvent)
    assert event.type == "skill.confirmation_required"


def test_data_only_event_without_type_is_unknown_message() -> None:
    """An object with neither a JSON type nor an SSE name is an UnknownEvent of type message."""
    event = ev.decode_event('{"hello":1}', None)
    assert isinstance(event, ev.UnknownEvent)
    assert event.type == "message"


@pytest.mark.parametrize(
    ("message", "text"),
    [("plain", "plain"), ({"content": "c"}, "c"), ({"text": "t"}, "t"), ({"other": 1}, "")],
)
def test_agent_message_text_reads_object_forms(message: object, text: str) -> None:
    """AgentMessage.text reads a string or a {content|text} object."""
    assert ev.AgentMessage(message=message).text == text  # type: ignore[arg-type]


def test_event_from_object_matches_decode_event() -> None:
    """A persisted event object decodes exactly like the same JSON on the stream."""
    data = _data("skill.failed", '"skill_name":"x","error":{"code":"E"}')
    assert ev.event_from_object(msgspec.json.decode(data)) == ev.decode_event(data)
    assert isinstance(ev.event_from_object({"type": "nope", "x": 1}), ev.UnknownEvent)
    assert isinstance(
        ev.event_from_object({"type": "agent.message", "message": 1}), ev.MalformedEvent
    )


def test_bytes_and_str_data_decode_alike() -> None:
    """decode_event accepts bytes as well as str."""
    data = _data("agent.message", '"message":"é"')
    assert ev.decode_event(data.encode()) == ev.decode_event(data)


def test_invalid_utf8_bytes_are_malformed_not_raised() -> None:
    """Invalid UTF-8 inside the data never raises."""
    event = ev.decode_event(b'{"type":"agent.message","message":"\xff"}', "agent.message")
    assert isinstance(event, ev.MalformedEvent)


def test_events_are_immutable() -> None:
    """Events are frozen: a consumer cannot alter what the stream delivered."""
    event = ev.AgentMessage(message="x")
    with pytest.raises(AttributeError):
        event.message = "y"  # type: ignore[misc]


def test_text_with_a_lone_surrogate_is_malformed_not_raised() -> None:
    """A str that cannot be UTF-8 encoded (a lone surrogate) never raises either."""
    assert isinstance(ev.decode_event("\ud800", "agent.message"), ev.MalformedEvent)
    assert isinstance(
        ev.decode_event('{"type":"agent.message","message":"\ud800"}'), ev.MalformedEvent
    )
    wrong = ev.event_from_object({"type": "agent.message", "message": 1, "note": "\ud800"})
    assert isinstance(wrong, ev.MalformedEvent)


def test_a_key_with_a_lone_surrogate_is_malformed_not_raised() -> None:
    """A decoded object whose key cannot be UTF-8 encoded never raises (hypothesis found it)."""
    assert isinstance(
        ev.event_from_object({"type": "agent.message", "\ud800": None}), ev.MalformedEvent
    )
