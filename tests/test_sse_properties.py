"""Hypothesis properties of the SSE decoder: chunking invariance, spec conformance, bounds."""

from __future__ import annotations

import itertools
import re
from typing import NamedTuple

from hypothesis import given, settings
from hypothesis import strategies as st

from genie_async.errors import EventTooLargeError
from genie_async.sse import ServerSentEvent, SSEDecoder

BOM = b"\xef\xbb\xbf"
LINE_END = re.compile(rb"\r\n|\r|\n")

# --- a direct transcription of the WHATWG algorithm, for whole streams only --------------------


class Reference(NamedTuple):
    events: list[ServerSentEvent]
    last_event_id: str | None
    retry: int | None
    too_large: bool


def reference_decode(stream: bytes, cap: int | None = None) -> Reference:
    """Interpret a complete stream exactly as the spec words it: no chunks, no shortcuts.

    ``too_large`` says whether a line plus the open event's data lines (wire bytes, without
    line ends) ever exceeds ``cap``; the events are those dispatched before that point.
    """
    if stream.startswith(BOM):
        stream = stream[len(BOM) :]
    *lines, unterminated = LINE_END.split(stream)  # an unterminated line is never processed
    events: list[ServerSentEvent] = []
    data = event_type = ""
    data_bytes = 0
    id_buffer: str | None = None
    last_id: str | None = None
    retry: int | None = None
    for raw in lines:
        if cap is not None and data_bytes + len(raw) > cap:
            return Reference(events, last_id, retry, too_large=True)
        line = raw.decode("utf-8", "replace")
        if line == "":
            last_id = id_buffer
            if data == "":
                event_type = ""
                continue
            events.append(ServerSentEvent(event_type or "message", data[:-1], last_id, retry))
            data = event_type = ""
            data_bytes = 0
            continue
        if line.startswith(":"):
            continue
        if ":" in line:
            name, value = line.split(":", 1)
            if value.startswith(" "):
                value = value[1:]
        else:
            name, value = line, ""
        if name == "event":
            event_type = value
        elif name == "data":
            data += value + "\n"
            data_bytes += len(raw)
        elif name == "id":
            if "\0" not in value:
                id_buffer = value
        elif name == "retry" and value and all(c in "0123456789" for c in value):
            retry = int(value)
    too_large = cap is not None and data_bytes + len(unterminated) > cap
    return Reference(events, last_id, retry, too_large)


# --- strategies -------------------------------------------------------------------------------

VALUE_CHARS = st.characters(codec="utf-8", exclude_characters="\r\n")
values = st.one_of(
    st.text(VALUE_CHARS, max_size=12),
    st.sampled_from(["", " ", "  x", "1", "0042", "12a", "a\0b", "\u2028", "\ufeff", "\u00e9"]),
)
names = st.sampled_from(["data", "data", "data", "event", "id", "retry", "Data", "foo", ""])
separators = st.sampled_from([": ", ":", ":  ", ""])
text_lines = st.one_of(
    st.builds(lambda n, s, v: (n + s + v).encode(), names, separators, values),
    st.builds(lambda v: (":" + v).encode(), values),  # comment
    st.just(b""),  # blank line: dispatch
    # Raw bytes, possibly invalid UTF-8, but never a line end.
    st.binary(max_size=8).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b"")),
)
line_ends = st.sampled_from([b"\n", b"\r", b"\r\n"])


@st.composite
def streams(draw: st.DrawFn, line_end: st.SearchStrategy[bytes] = line_ends) -> bytes:
    """A stream of field, comment, blank and junk lines with mixed line ends and extras."""
    parts = [draw(st.sampled_from([b"", b"", BOM, BOM + BOM]))]
    for text in draw(st.lists(text_lines, max_size=30)):
        parts.append(text + draw(line_end))
    parts.append(draw(st.sampled_from([b"", b"data: unterminated", b"\r"])))
    return b"".join(parts)


@st.composite
def genie_like_streams(draw: st.DrawFn) -> bytes:
    """Streams shaped like the API's (LF, sometimes CRLF), with occasional unusual lines."""
    blocks = []
    for _ in range(draw(st.integers(0, 12))):
        lines = [b"event: " + draw(st.sampled_from([b"agent.message", b"system.ping", b""]))]
        if draw(st.booleans()):
            lines.append(b"id: " + draw(values).encode())
        lines.append(b"data: " + draw(values).encode())
        if draw(st.integers(0, 4)) == 0:
            lines.insert(draw(st.integers(0, len(lines))), draw(text_lines))
        draw(st.randoms()).shuffle(lines)
        blocks.append(b"\n".join(lines) + draw(st.sampled_from([b"\n\n", b"\n\n", b"\n\n\n"])))
    stream = b"".join(blocks) + draw(st.sampled_from([b"", b"event: x\nda", b"\n"]))
    return stream.replace(b"\n", b"\r\n") if draw(st.booleans()) else stream


def cut(stream: bytes, points: list[int]) -> list[bytes]:
    """Split ``stream`` at the given offsets (in any order, repeats allowed)."""
    edges = [0, *sorted(points), len(stream)]
    return [stream[a:b] for a, b in itertools.pairwise(edges)]


def run(
    chunks: list[bytes], fast_path: bool = True
) -> tuple[list[ServerSentEvent], str | None, int | None, int]:
    """Feed ``chunks`` to a fresh decoder; return its events and final state."""
    decoder = SSEDecoder()
    decoder._fast_path = fast_path
    events: list[ServerSentEvent] = []
    for chunk in chunks:
        events.extend(decoder.feed(chunk))
    return events, decoder.last_event_id, decoder.retry, decoder.pending_bytes


def chunkings(stream: bytes) -> st.SearchStrategy[list[bytes]]:
    """Ways to cut ``stream`` into up to 13 chunks, empty ones included."""
    return st.lists(st.integers(0, len(stream)), max_size=12).map(lambda p: cut(stream, p))


# --- properties -------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.data(), streams(), st.booleans())
def test_any_chunking_yields_the_events_of_the_whole_stream(
    data: st.DataObject, stream: bytes, fast_path: bool
) -> None:
    """However a stream is cut into chunks, the events and final state are the same."""
    chunks = data.draw(chunkings(stream))
    assert run(chunks, fast_path) == run([stream], fast_path)


@settings(max_examples=300, deadline=None)
@given(st.data(), streams())
def test_decoder_matches_the_spec_transcription(data: st.DataObject, stream: bytes) -> None:
    """The decoder agrees with a line-by-line transcription of the WHATWG algorithm."""
    events, last_id, retry, _ = reference_decode(stream)
    for one_byte in (False, True):
        chunks = cut(stream, list(range(len(stream)))) if one_byte else data.draw(chunkings(stream))
        got_events, got_id, got_retry, _ = run(chunks)
        assert (got_events, got_id, got_retry) == (events, last_id, retry)


@settings(max_examples=300, deadline=None)
@given(
    st.data(),
    st.one_of(
        genie_like_streams(),
        streams(line_end=st.just(b"\n")),
        streams(line_end=st.sampled_from([b"\n", b"\r\n"])),
        streams(),
    ),
)
def test_fast_path_equals_general_path(data: st.DataObject, stream: bytes) -> None:
    """The LF fast path produces exactly the events and state of the general path."""
    chunks = data.draw(chunkings(stream))
    assert run(chunks, fast_path=True) == run(chunks, fast_path=False)
    # Cutting right after every line end hands the fast path every possible carried state.
    at_lines = cut(stream, [i + 1 for i, byte in enumerate(stream) if byte in b"\r\n"])
    assert run(at_lines, fast_path=True) == run(at_lines, fast_path=False)
    assert run(chunks)[0] == reference_decode(stream).events


protocol_tokens = st.sampled_from(
    [b"\n", b"\r", b"\r\n", b"\n\n", b"data: ", b"data:", b":", b"id: ", b"event: ", b"retry: 7"]
)
# Random bytes with line ends removed, so that long lines (the thing a cap is for) happen.
line_free = (
    st.integers(0, 200)
    .flatmap(lambda n: st.binary(min_size=n, max_size=n))
    .map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))
)
noisy_bytes = st.lists(
    st.one_of(st.binary(max_size=64), line_free, protocol_tokens, st.just(BOM)), max_size=40
).map(b"".join)


@settings(max_examples=400, deadline=None)
@given(st.data(), noisy_bytes, st.booleans())
def test_size_cap_raises_exactly_when_an_event_exceeds_it(
    data: st.DataObject, stream: bytes, fast_path: bool
) -> None:
    """Any bytes decode as the spec says, or raise EventTooLargeError iff the cap is passed."""
    cap = 64
    expected = reference_decode(stream, cap)
    decoder = SSEDecoder(max_event_bytes=cap)
    decoder._fast_path = fast_path
    events: list[ServerSentEvent] = []
    error: EventTooLargeError | None = None
    for chunk in data.draw(chunkings(stream)):
        try:
            events.extend(decoder.feed(chunk))
        except EventTooLargeError as exc:
            error = exc
            break
        # A held-back partial BOM (at most two bytes) is the only thing allowed past the cap.
        assert decoder.pending_bytes <= cap + 2
    assert (error is not None) == expected.too_large
    if error is None:
        assert events == expected.events
    else:
        assert error.limit == cap


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=2048), max_size=20), st.booleans())
def test_arbitrary_bytes_under_the_cap_never_raise(pieces: list[bytes], fast_path: bool) -> None:
    """Random bytes well under the default cap are always decoded without any exception."""
    run(pieces, fast_path)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.one_of(line_free, st.binary(max_size=200)), max_size=40), st.booleans())
def test_one_kib_cap_bounds_pending_bytes(pieces: list[bytes], fast_path: bool) -> None:
    """With a 1 KiB cap, pending_bytes never exceeds the cap after a successful feed."""
    cap = 1024
    decoder = SSEDecoder(max_event_bytes=cap)
    decoder._fast_path = fast_path
    for piece in pieces:
        try:
            decoder.feed(piece)
        except EventTooLargeError:
            return
        assert decoder.pending_bytes <= cap + 2
