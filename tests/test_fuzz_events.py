"""Hypothesis fuzzing of event decoding, the turn state, and whole turns over real HTTP.

The SSE decoder's own properties (chunking invariance, spec conformance, the size cap) live
in test_sse_properties.py; this file fuzzes what sits on top of it: ``decode_event`` and
``event_from_object`` on arbitrary text, bytes and JSON; ``TurnState`` on arbitrary decoded
events; the decoder and event decoding composed; and a real turn streaming a generated mix
of valid, unknown and malformed events, keep-alives and comments.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Any, get_args

import msgspec
from aiohttp import web
from aiohttp.test_utils import TestServer
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from genie_async import GenieClient, RetryPolicy
from genie_async._turn import Action, StreamCursor, TurnState
from genie_async.errors import EventTooLargeError
from genie_async.events import (
    AgentMessage,
    Event,
    GenieEvent,
    MalformedEvent,
    Ping,
    ProcessingFinished,
    RuntimeConnectionAuthRequired,
    SkillConfirmationRequired,
    SkillParameter,
    StreamInterrupted,
    UnknownEvent,
    decode_event,
    event_from_object,
)
from genie_async.sse import SSEDecoder
from genie_async.testing import VirtualClock

from .conftest import TEST_TIMEOUTS

EVENT_CLASSES: tuple[type, ...] = get_args(GenieEvent)
KNOWN: dict[str, type[Event]] = {cls.type: cls for cls in EVENT_CLASSES if issubclass(cls, Event)}
ENVELOPE = ("event_id", "conversation_id", "genie_run_id", "seq_num", "created_at")
# What the stream hands to the consumer (everything else is dropped or handled internally).
DELIVERING = frozenset({Action.DELIVER, Action.CONFIRMATION, Action.AUTH_PAUSE, Action.FINISHED})

# --- JSON and field strategies ----------------------------------------------------------------

floats = st.floats(allow_nan=False, allow_infinity=False)  # JSON has neither
json_scalars = st.one_of(st.none(), st.booleans(), st.integers(), floats, st.text(max_size=12))
json_values = st.recursive(
    json_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=10,
)
json_objects = st.dictionaries(st.text(max_size=8), json_values, max_size=5)

opt_str = st.one_of(st.none(), st.text(max_size=16))
opt_int = st.one_of(st.none(), st.integers())
# Values of the wrong JSON type for a field declared with the named type.
not_str_or_none: st.SearchStrategy[Any] = st.one_of(
    st.booleans(), st.integers(), floats, st.lists(json_scalars, max_size=2)
)
not_int_or_none: st.SearchStrategy[Any] = st.one_of(
    st.booleans(), floats, st.text(max_size=6), st.just([1]), st.just({})
)
not_str_or_dict: st.SearchStrategy[Any] = st.one_of(
    st.none(), st.booleans(), st.integers(), floats, st.just(["x"])
)
not_dict: st.SearchStrategy[Any] = st.one_of(
    st.none(), st.booleans(), st.integers(), st.text(max_size=6), st.just([])
)
not_str_dict_or_none: st.SearchStrategy[Any] = st.one_of(
    st.booleans(), st.integers(), floats, st.just(["x"])
)

parameter_schemas = st.lists(
    st.fixed_dictionaries(
        {},
        optional={
            "name": st.text(max_size=6),
            "label": st.text(max_size=6),
            "type": st.text(max_size=6),
            "control_type": st.text(max_size=6),
            "optional": st.booleans(),
            "hint": st.text(max_size=6),
        },
    ),
    max_size=3,
)
not_parameter_schema = st.one_of(
    st.none(),
    st.text(max_size=4),
    st.just({}),
    st.lists(st.integers(), min_size=1, max_size=2),
    st.just([{"optional": "yes"}]),
    st.just([{"name": 5}]),
)
auth_links = st.one_of(
    st.none(),
    st.fixed_dictionaries(
        {"url": st.text(max_size=12)},
        optional={"connector_name": st.text(max_size=6), "expires_at": st.text(max_size=6)},
    ),
)
not_auth_link = st.one_of(
    st.booleans(),
    st.integers(),
    st.text(max_size=4),
    st.just([]),
    st.just({}),  # no url
    st.just({"url": 5}),
    st.just({"url": "u", "expires_at": 1}),
)
SKILL_FIELDS = {
    "skill_name": (opt_str, not_str_or_none),
    "skill_id": (opt_str, not_str_or_none),
    "call_id": (opt_str, not_str_or_none),
}
# Per known type: field -> (valid values, wrongly typed values). Required fields are starred.
FIELDS: dict[str, dict[str, tuple[st.SearchStrategy[Any], st.SearchStrategy[Any]]]] = {
    "processing.started": {},
    "processing.finished": {},
    "agent.message": {
        "message": (st.one_of(st.text(max_size=16), json_objects), not_str_or_dict),
        "message_id": (opt_str, not_str_or_none),
    },
    "skill.running": SKILL_FIELDS,
    "skill.completed": {**SKILL_FIELDS, "result": (json_values, st.nothing())},
    "skill.stopped": {**SKILL_FIELDS, "result": (json_values, st.nothing())},
    "skill.failed": {
        **SKILL_FIELDS,
        "error": (st.one_of(st.none(), st.text(max_size=8), json_objects), not_str_dict_or_none),
    },
    "skill.confirmation_required": {
        "*call_id": (st.text(max_size=12), not_str_or_none | st.none()),
        "skill_name": (opt_str, not_str_or_none),
        "skill_id": (opt_str, not_str_or_none),
        "skill_parameters": (json_objects, not_dict),
        "skill_parameter_schema": (parameter_schemas, not_parameter_schema),
    },
    "runtime_connection.auth_required": {
        "runtime_connection_attempt_id": (opt_str, not_str_or_none),
        "auth_link": (auth_links, not_auth_link),
    },
    "system.stream_interrupted": {
        "last_seq_num": (opt_int, not_int_or_none),
        "reason": (opt_str, not_str_or_none),
        "retry_after_ms": (opt_int, not_int_or_none),
    },
    "system.ping": {"timestamp": (opt_str, not_str_or_none)},
}
assert set(FIELDS) == set(KNOWN), "a new event type needs its fields described here"
ENVELOPE_FIELDS = {
    "event_id": (opt_str, not_str_or_none),
    "conversation_id": (opt_str, not_str_or_none),
    "genie_run_id": (opt_str, not_str_or_none),
    "seq_num": (
        st.one_of(st.none(), st.integers(), st.sampled_from([0, -1, 2**63, 2**70])),
        not_int_or_none,
    ),
    "created_at": (opt_str, not_str_or_none),
}
unknown_types = st.text(min_size=1, max_size=20).filter(lambda t: t not in KNOWN)


def _field_name(key: str) -> str:
    return key.lstrip("*")


@st.composite
def valid_objects(draw: st.DrawFn, types: list[str] | None = None) -> dict[str, Any]:
    """A JSON object of a known type whose every field has a declared type."""
    kind = draw(st.sampled_from(types or sorted(KNOWN)))
    obj: dict[str, Any] = {"type": kind}
    for key, (valid, _) in {**ENVELOPE_FIELDS, **FIELDS[kind]}.items():
        if key.startswith("*") or draw(st.booleans()):
            obj[_field_name(key)] = draw(valid)
    obj.update(
        draw(st.dictionaries(st.text(max_size=6).map("x_".__add__), json_values, max_size=2))
    )
    return obj


@st.composite
def wrongly_typed_objects(draw: st.DrawFn, types: list[str] | None = None) -> dict[str, Any]:
    """A known type with a valid envelope and at least one field of the wrong type (or missing)."""
    candidates = [t for t in (types or sorted(KNOWN)) if FIELDS[t]]
    obj = draw(valid_objects(candidates))
    fields = {key: wrong for key, (_, wrong) in FIELDS[obj["type"]].items() if not wrong.is_empty}
    for key in draw(st.lists(st.sampled_from(sorted(fields)), min_size=1, max_size=3, unique=True)):
        name = _field_name(key)
        if key.startswith("*") and draw(st.booleans()):
            obj.pop(name, None)  # a required field that is missing altogether
        else:
            obj[name] = draw(fields[key])
    return obj


def expected_envelope(obj: dict[str, Any]) -> dict[str, Any]:
    """The envelope a lenient decode keeps: each field that has its declared type."""
    kept: dict[str, Any] = dict.fromkeys(ENVELOPE)
    for name in ENVELOPE:
        value = obj.get(name)
        if name == "seq_num":
            if isinstance(value, int) and not isinstance(value, bool):
                kept[name] = value
        elif isinstance(value, str):
            kept[name] = value
    return kept


def envelope_of(event: GenieEvent) -> dict[str, Any]:
    return {name: getattr(event, name) for name in ENVELOPE}


def encode(obj: Any) -> str:
    return msgspec.json.encode(obj).decode()


sse_names = st.one_of(
    st.none(),
    st.sampled_from([*sorted(KNOWN), "message", "", "custom.thing"]),
    st.text(max_size=12),
)


def check_contract(event: object, text: str) -> None:
    """What every decode promises: one of the event classes, and a malformed one keeps its data."""
    assert type(event) in EVENT_CLASSES
    if isinstance(event, MalformedEvent):
        assert event.raw == text
        assert event.error
    if isinstance(event, AgentMessage):
        assert isinstance(event.text, str)


# --- decode_event on arbitrary input ----------------------------------------------------------


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.text(), st.binary(), st.binary().map(lambda b: b'{"type":"' + b)), sse_names)
def test_decode_event_never_raises_on_arbitrary_text_or_bytes(
    data: str | bytes, name: str | None
) -> None:
    """Any text or bytes under any SSE name decode to an event class, never an exception."""
    text = data if isinstance(data, str) else data.decode("utf-8", "replace")
    check_contract(decode_event(data, name), text)


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        json_values,
        json_objects,
        valid_objects(),
        wrongly_typed_objects(),
        st.builds(lambda kind, obj: {**obj, "type": kind}, unknown_types, json_objects),
        st.builds(lambda kind, obj: {**obj, "type": kind}, json_values, json_objects),
    ),
    sse_names,
)
def test_decode_event_never_raises_on_arbitrary_json(obj: Any, name: str | None) -> None:
    """Arbitrary JSON is an event of the type its JSON (else its SSE name) says, never an error."""
    text = encode(obj)
    event = decode_event(text, name)
    check_contract(event, text)
    assert decode_event(text.encode(), name) == event  # bytes and str decode alike
    if not isinstance(obj, dict):
        assert isinstance(event, MalformedEvent)
        assert event.type == (name or "message")
        assert event.error == "data is not a JSON object"
        return
    json_type = obj.get("type")
    kind = json_type if isinstance(json_type, str) and json_type else (name or "message")
    assert event.type == kind
    if kind not in KNOWN:
        assert isinstance(event, UnknownEvent)
        assert event.payload == obj
        assert envelope_of(event) == expected_envelope(obj)
    else:
        assert isinstance(event, (KNOWN[kind], MalformedEvent))
        if isinstance(event, MalformedEvent):
            assert envelope_of(event) == expected_envelope(obj)


@settings(max_examples=200, deadline=None)
@given(
    st.one_of(json_values, json_objects, valid_objects(), wrongly_typed_objects()),
    st.sampled_from(["", "type"]),
)
def test_event_from_object_agrees_with_decode_event(obj: Any, drop: str) -> None:
    """event_from_object(obj) is decode_event of obj's JSON (a typeless one is type "")."""
    if drop and isinstance(obj, dict):
        obj = {k: v for k, v in obj.items() if k != drop}
    from_object = event_from_object(obj)
    decoded = decode_event(encode(obj))
    check_contract(from_object, encode(obj))
    typed = isinstance(obj, dict) and isinstance(obj.get("type"), str) and obj["type"] != ""
    if typed:
        assert from_object == decoded
    else:
        # Without a type the stream falls back to the SSE default name, "message".
        assert isinstance(decoded, (UnknownEvent, MalformedEvent))
        assert decoded.type == "message"
        assert from_object == msgspec.structs.replace(decoded, type="")


@settings(max_examples=250, deadline=None)
@given(valid_objects(), st.data())
def test_a_known_type_with_valid_fields_decodes_to_its_class(
    obj: dict[str, Any], data: st.DataObject
) -> None:
    """A known type whose fields have their declared types is that class, with those values."""
    kind = obj["type"]
    cls = KNOWN[kind]
    name = data.draw(st.sampled_from([None, "message", kind, *sorted(KNOWN)]), label="name")
    if name == kind and data.draw(st.booleans(), label="type only in the SSE name"):
        obj = {k: v for k, v in obj.items() if k != "type"}
    for event in (decode_event(encode(obj), name), event_from_object({**obj, "type": kind})):
        assert type(event) is cls
        assert event.type == kind
        assert envelope_of(event) == expected_envelope(obj)
        for key in FIELDS[kind]:
            field = _field_name(key)
            if field in obj:
                value = getattr(event, field)
                if field == "skill_parameter_schema":
                    assert value == [SkillParameter(**p) for p in obj[field]]
                elif field == "auth_link" and value is not None:
                    assert msgspec.to_builtins(value) == obj[field]
                else:
                    assert value == obj[field]


@settings(max_examples=200, deadline=None)
@given(wrongly_typed_objects(), st.sampled_from([None, "message", "same"]))
def test_a_known_type_with_wrong_field_types_is_malformed_with_its_envelope(
    obj: dict[str, Any], name: str | None
) -> None:
    """Wrong field types give a MalformedEvent of that type that keeps the whole envelope."""
    text = encode(obj)
    event = decode_event(text, obj["type"] if name == "same" else name)
    assert isinstance(event, MalformedEvent)
    assert event.type == obj["type"]
    assert event.raw == text
    assert envelope_of(event) == expected_envelope(obj)
    assert {k: v for k, v in envelope_of(event).items() if v is not None} == {
        k: obj[k] for k in ENVELOPE if obj.get(k) is not None
    }


# Any Python str, lone surrogates included (what surrogateescape or the stdlib json module give).
any_str = st.text(
    st.one_of(st.sampled_from(["\ud800", "\udbff", "\udc80", "\udfff"]), st.characters()),
    max_size=12,
)
any_json = st.recursive(
    st.one_of(json_scalars, any_str),
    lambda children: st.one_of(
        st.lists(children, max_size=3), st.dictionaries(any_str, children, max_size=3)
    ),
    max_leaves=8,
)


@settings(max_examples=200, deadline=None)
@given(
    st.one_of(any_str, any_str.map(lambda t: '{"type":"agent.message","message":"' + t + '"}')),
    st.one_of(st.none(), st.sampled_from(sorted(KNOWN)), any_str),
    st.one_of(
        any_json,
        st.builds(
            lambda t, o: {**o, "type": t},
            st.sampled_from(sorted(KNOWN)),
            st.dictionaries(any_str, any_json, max_size=3),
        ),
    ),
)
def test_decode_event_and_event_from_object_never_raise_on_any_python_str(
    data: str, name: str | None, obj: Any
) -> None:
    """Strs that cannot be UTF-8 encoded (lone surrogates) give an event class, never an error."""
    check_contract(decode_event(data, name), data)
    assert type(event_from_object(obj)) in EVENT_CLASSES


# --- TurnState on arbitrary decoded events ----------------------------------------------------

odd_envelopes = st.fixed_dictionaries(
    {},
    optional={
        "event_id": st.one_of(st.just(""), st.text(max_size=4)),
        "conversation_id": st.one_of(st.just(""), st.text(max_size=4)),
        "genie_run_id": st.sampled_from(["run-1", "run-1", "run-2", ""]),
        "seq_num": st.one_of(
            st.integers(-3, 5), st.integers(), st.sampled_from([-(2**63), 2**63, 10**30])
        ),
        "created_at": st.one_of(
            st.text(max_size=8), st.just("2026-06-08T12:00:00Z"), st.just("9999-99-99T99:99:99Z")
        ),
    },
)
odd_events = st.one_of(
    st.builds(lambda obj, env: event_from_object({**obj, **env}), valid_objects(), odd_envelopes),
    st.builds(
        lambda kind, payload, env: UnknownEvent(type=kind, payload=payload, **env),
        st.one_of(unknown_types, st.sampled_from(sorted(KNOWN))),
        json_values,
        odd_envelopes,
    ),
    st.builds(
        lambda kind, raw, env: MalformedEvent(type=kind, raw=raw, error="bad", **env),
        st.one_of(st.sampled_from(sorted(KNOWN)), st.text(max_size=8)),
        st.text(max_size=8),
        odd_envelopes,
    ),
    st.builds(event_from_object, wrongly_typed_objects()),
)
start_states = st.builds(
    lambda run, seq, event_id: TurnState.from_cursor(
        StreamCursor(
            conversation_id="c1", genie_run_id=run, last_seq_num=seq, last_event_id=event_id
        )
    ),
    st.sampled_from([None, "run-1"]),
    st.one_of(st.none(), st.integers()),
    st.one_of(st.none(), st.text(max_size=3)),
)


def hand_over(state: TurnState, event: GenieEvent) -> Action:
    """What the stream does with an event: classify it, then commit what is delivered."""
    action = state.observe(event)
    if action in DELIVERING:
        state.commit(event)
    return action


@settings(max_examples=150, deadline=None)
@given(start_states, st.lists(odd_events, max_size=12))
def test_turn_state_never_raises_on_arbitrary_events(
    state: TurnState, events: list[GenieEvent]
) -> None:
    """observe and commit accept any decoded event; the cursor always round-trips through JSON."""
    for event in events:
        action = hand_over(state, event)
        if isinstance(event, Ping):
            assert action is Action.KEEPALIVE
        elif isinstance(event, StreamInterrupted):
            assert action is Action.INTERRUPTED
    cursor = state.cursor()
    assert StreamCursor.from_json(cursor.to_json()) == cursor
    assert state.final_text is None or isinstance(state.final_text, str)


# Cheap events (no nested JSON), so that a failure shrinks fast.
plain_events = st.builds(
    lambda make, env: make(env),
    st.sampled_from(
        [
            lambda env: AgentMessage(message="m", **env),
            lambda env: ProcessingFinished(**env),
            lambda env: SkillConfirmationRequired(call_id="call-1", **env),
            lambda env: RuntimeConnectionAuthRequired(**env),
            lambda env: UnknownEvent(type="custom.x", **env),
            lambda env: MalformedEvent(type="agent.message", raw="{", error="bad", **env),
            lambda env: Ping(**env),
            lambda env: StreamInterrupted(**env),
        ]
    ),
    odd_envelopes,
)


@settings(max_examples=300, deadline=None)
@given(st.lists(plain_events, max_size=12), st.sampled_from([None, "run-1"]))
@example([AgentMessage(message="m", seq_num=-1)], None)  # the -1 a hostile server sends
def test_an_event_with_an_identity_is_never_delivered_twice(
    events: list[GenieEvent], run: str | None
) -> None:
    """Replaying everything (as recovery does) redelivers no event with a seq_num or event_id."""
    state = TurnState("c1", genie_run_id=run)
    for event in events:
        hand_over(state, event)
    delivered = state.delivered
    for event in events:
        if event.seq_num is not None or event.event_id is not None:
            assert state.observe(event) not in DELIVERING, event
    assert state.delivered == delivered


@settings(max_examples=200, deadline=None)
@given(st.integers(-(2**64), 2**64) | st.integers(-3, 3), st.integers(1, 6), st.integers(0, 6))
@example(0, 2, 1)  # a server counting from 0; the consumer received the first event
def test_resuming_from_any_cursor_delivers_exactly_the_rest(
    start: int, count: int, taken: int
) -> None:
    """A state rebuilt from the cursor after k of n in-order events delivers exactly the n - k."""
    events = [
        AgentMessage(message=str(seq), event_id=f"e{seq}", genie_run_id="run-1", seq_num=seq)
        for seq in range(start, start + count)
    ]
    taken = min(taken, count)
    first = TurnState("c1")
    for event in events[:taken]:
        hand_over(first, event)
    resumed = TurnState.from_cursor(StreamCursor.from_json(first.cursor().to_json()))
    assert [e for e in events if hand_over(resumed, e) in DELIVERING] == events[taken:]


# --- the decoder and event decoding composed --------------------------------------------------

frame_payloads = st.one_of(
    st.builds(encode, st.one_of(valid_objects(), wrongly_typed_objects(), json_values)),
    st.text(max_size=20),
)


@st.composite
def event_streams(draw: st.DrawFn) -> bytes:
    """SSE bytes carrying JSON-ish payloads, with noise: comments, junk, bad UTF-8, long lines."""
    parts: list[bytes] = []
    for _ in range(draw(st.integers(0, 8))):
        kind = draw(st.one_of(st.none(), st.sampled_from(sorted(KNOWN)), st.text(max_size=6)))
        if kind is not None:
            parts.append(b"event: " + kind.replace("\r", "").replace("\n", "").encode() + b"\n")
        for line in draw(frame_payloads).replace("\r", "\n").split("\n"):
            parts.append(b"data: " + line.encode() + b"\n")
        parts.append(
            draw(st.sampled_from([b"\n", b": comment\n\n", b"id: 7\n\n", b"\xff\xfe\n\n", b""]))
        )
        if draw(st.integers(0, 5)) == 0:
            parts.append(draw(st.binary(max_size=300)))
    return b"".join(parts)


@settings(max_examples=150, deadline=None)
@given(event_streams(), st.data())
def test_any_byte_stream_decodes_to_events_or_the_size_error(
    stream: bytes, data: st.DataObject
) -> None:
    """Bytes -> SSE -> events -> turn state raise only EventTooLargeError, in any chunking."""
    cap = data.draw(st.sampled_from([64, 256, 1 << 20]), label="cap")
    points = data.draw(st.lists(st.integers(0, len(stream)), max_size=8), label="cuts")
    edges = [0, *sorted(points), len(stream)]
    decoder = SSEDecoder(max_event_bytes=cap)
    state = TurnState("c1")
    for a, b in itertools.pairwise(edges):
        too_large: EventTooLargeError | None = None
        try:
            received = decoder.feed(stream[a:b])
            # At most a held-back partial BOM may sit over the cap.
            assert decoder.pending_bytes <= cap + 2
        except EventTooLargeError as exc:
            received, too_large = exc.completed, exc
        for sse in received:
            event = decode_event(sse.data, sse.event)
            check_contract(event, sse.data)
            hand_over(state, event)
        if too_large is not None:
            assert too_large.limit == cap
            break
    StreamCursor.from_json(state.cursor().to_json())


# --- whole turns over HTTP --------------------------------------------------------------------

RUN = "run-fuzz"
SAFE_NAMES = ["agent.message", "skill.running", "skill.failed", "custom.thing", "message"]
# Types delivered without a pause, an interruption or the end of the turn.
DELIVERABLE = [
    "processing.started",
    "agent.message",
    "skill.running",
    "skill.completed",
    "skill.stopped",
    "skill.failed",
]
KEEPALIVES = [
    b": ping\n",
    b":\n",
    b'event: system.ping\ndata: {"type":"system.ping","timestamp":"t"}\n\n',
    b'data: {"type":"system.ping"}\n\n',
    b"retry: 250\n\n",
    b"data:\n\n",  # an empty data field is never decoded
    b"\n",
]


def not_a_json_object(text: str) -> bool:
    try:
        return not isinstance(msgspec.json.decode(text), dict)
    except msgspec.DecodeError:
        return True


# One item of a generated turn: ("event", SSE name or None, data) or ("keepalive", bytes).
turn_items = st.one_of(
    st.tuples(st.just("valid"), valid_objects(DELIVERABLE)),
    st.tuples(
        st.just("unknown"),
        st.builds(
            lambda kind, obj: {**obj, "type": kind},
            st.from_regex(r"[a-z]{1,6}(\.[a-z_]{1,8}){0,2}", fullmatch=True).filter(
                lambda t: t not in KNOWN
            ),
            json_objects,
        ),
    ),
    st.tuples(st.just("wrong"), wrongly_typed_objects(DELIVERABLE)),
    st.tuples(
        st.just("garbage"),
        st.tuples(
            st.one_of(st.none(), st.sampled_from(SAFE_NAMES)),
            # Garbage goes on the wire as UTF-8, which cannot carry a lone surrogate (Cs).
            st.text(
                st.characters(exclude_characters="\r", exclude_categories=("Cs",)),
                min_size=1,
                max_size=30,
            ).filter(not_a_json_object),
        ),
    ),
    st.tuples(st.just("keepalive"), st.sampled_from(KEEPALIVES)),
)


def build_turn(
    items: list[tuple[str, Any]], line_end: bytes
) -> tuple[bytes, list[tuple[str | None, str, type]]]:
    """The SSE body of a turn, and the (name, data, class) of each event the consumer must get."""
    body: list[bytes] = []
    expected: list[tuple[str | None, str, type]] = []
    seq = itertools.count(1)

    def add(name: str | None, data: str, cls: type) -> None:
        lines = [f"event: {name}"] if name is not None else []
        lines += [f"data: {part}" for part in data.split("\n")]
        body.append("".join(line + "\n" for line in lines).encode() + b"\n")
        expected.append((name, data, cls))

    for kind, item in [*items, ("valid", {"type": "processing.finished"})]:
        if kind == "keepalive":
            body.append(item)
            continue
        if kind == "garbage":
            name, data = item
            add(name, data, MalformedEvent)
            continue
        n = next(seq)
        obj = {
            **item,
            "event_id": f"ev-{n}",
            "conversation_id": "c1",
            "genie_run_id": RUN,
            "seq_num": n,
            "created_at": "2026-06-08T12:00:00Z",
        }
        cls = {"valid": KNOWN.get(obj["type"]), "unknown": UnknownEvent}.get(kind, MalformedEvent)
        assert cls is not None
        add(obj["type"], encode(obj), cls)
    raw = b"".join(body)
    return raw.replace(b"\n", line_end), expected


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    st.lists(turn_items, max_size=10),
    st.sampled_from([b"\n", b"\r\n", b"\r"]),
    st.data(),
)
async def test_a_turn_of_fuzzed_events_delivers_each_once_in_order(
    items: list[tuple[str, Any]], line_end: bytes, data: st.DataObject
) -> None:
    """Every event of a fuzzed turn reaches the consumer once, in order, as the right class."""
    body, expected = build_turn(items, line_end)
    points = data.draw(st.lists(st.integers(0, len(body)), max_size=6), label="write splits")
    chunks = [body[a:b] for a, b in itertools.pairwise([0, *sorted(points), len(body)])]

    async def send(request: web.Request) -> web.StreamResponse:
        await request.read()
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "x-request-id": "req-fuzz"}
        )
        await response.prepare(request)
        for chunk in chunks:
            if chunk:
                await response.write(chunk)
                await asyncio.sleep(0.001)  # give the client a chance to read each piece
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_post("/api/v1/genies/gin-x/chat/conversations/c1/messages", send)
    clock = VirtualClock()
    async with TestServer(app) as server:
        client = GenieClient(
            "gin-x",
            base_url=str(server.make_url("")).rstrip("/"),
            api_key="f" * 64,
            user_id="u",
            retry=RetryPolicy(clock=clock.now, sleep=clock.sleep),
            timeouts=TEST_TIMEOUTS,
        )
        async with client:
            async with client.conversation("c1").send("fuzz") as stream:
                got = [event async for event in stream]
            session = client._core._session
            assert session is not None
            assert session.connector is not None
            assert not session.connector._acquired
    assert got == [decode_event(data_, name) for name, data_, _ in expected]
    assert [type(e) for e in got] == [cls for _, _, cls in expected]
    assert isinstance(got[-1], ProcessingFinished)
    assert stream.outcome == "completed"
    assert stream.request_id == "req-fuzz"
    assert clock.sleeps == []  # no recovery was needed
