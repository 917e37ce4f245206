"""Example-based tests of the SSE decoder, named after the WHATWG rule each one proves."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import msgspec
import pytest

from genie_async.errors import ConfigurationError, EventTooLargeError
from genie_async.sse import DEFAULT_MAX_EVENT_BYTES, ServerSentEvent, SSEDecoder

FIXTURES = Path(__file__).parent / "fixtures"
KIB = 1024
MIB = 1024 * KIB


def make_decoder(
    fast_path: bool = True, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES
) -> SSEDecoder:
    decoder = SSEDecoder(max_event_bytes=max_event_bytes)
    decoder._fast_path = fast_path
    return decoder


def feed_all(
    chunks: Iterable[bytes], fast_path: bool = True, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES
) -> list[ServerSentEvent]:
    decoder = make_decoder(fast_path, max_event_bytes)
    events: list[ServerSentEvent] = []
    for chunk in chunks:
        events.extend(decoder.feed(chunk))
    return events


def ev(
    data: str, event: str = "message", id: str | None = None, retry: int | None = None
) -> ServerSentEvent:
    return ServerSentEvent(event, data, id, retry)


def split_every(stream: bytes, size: int) -> list[bytes]:
    return [stream[i : i + size] for i in range(0, len(stream), size)]


def feed_keeping_bound(decoder: SSEDecoder, chunks: Iterable[bytes], bound: int) -> None:
    """Feed every chunk, checking after each that no more than ``bound`` bytes are held."""
    for chunk in chunks:
        decoder.feed(chunk)
        assert decoder.pending_bytes <= bound


@pytest.fixture(params=[True, False], ids=["fast", "general"])
def fast_path(request: pytest.FixtureRequest) -> bool:
    """Run a test with the LF fast path enabled and with only the general path."""
    return bool(request.param)


# --- line endings and chunk boundaries --------------------------------------------------------

ENDINGS = {"LF": "\n", "CR": "\r", "CRLF": "\r\n"}


def _small_stream(eol: str) -> bytes:
    return (
        f"event: a{eol}id: 1{eol}data: x{eol}data: y{eol}{eol}"
        f": comment{eol}data: z{eol}{eol}"
        f"retry: 7{eol}event: b{eol}data:{eol}{eol}"
    ).encode()


SMALL_EXPECTED = [
    ev("x\ny", "a", "1"),
    ev("z", "message", "1"),
    ev("", "b", "1", 7),
]

BOUNDARY_CASES = [
    (name, index) for name, eol in ENDINGS.items() for index in range(len(_small_stream(eol)) + 1)
]


@pytest.mark.parametrize(("ending", "index"), BOUNDARY_CASES)
def test_line_endings_at_every_chunk_boundary(ending: str, index: int, fast_path: bool) -> None:
    """Each of LF, CR and CRLF ends a line wherever the stream is cut into two chunks."""
    stream = _small_stream(ENDINGS[ending])
    assert feed_all([stream[:index], stream[index:]], fast_path) == SMALL_EXPECTED


def test_cr_then_lf_across_chunks_is_one_line_end(fast_path: bool) -> None:
    """A CR at the end of one chunk and an LF starting the next are one line end."""
    # Were they two line ends, the empty line between them would dispatch "a" alone.
    events = feed_all([b"data: a\r", b"\ndata: b\r", b"\n\r", b"\n"], fast_path)
    assert events == [ev("a\nb")]


def test_cr_pairing_survives_empty_chunks_and_cr_cr_is_two_line_ends(fast_path: bool) -> None:
    """An empty chunk between CR and LF keeps them one line end; CR then CR is a blank line."""
    assert feed_all([b"data: a\r", b"", b"\n", b"\n"], fast_path) == [ev("a")]
    decoder = make_decoder(fast_path)
    assert decoder.feed(b"data: a\r") == []
    assert decoder.feed(b"\r") == [ev("a")]
    assert decoder.feed(b"\n") == []  # completes the second CR's CRLF, not another blank line
    assert decoder.feed(b"data: b\n\n") == [ev("b")]


def test_lone_cr_and_lone_lf_and_crlf_mixed_in_one_chunk(fast_path: bool) -> None:
    """CR, LF and CRLF may be mixed freely; CR CR is two line ends (so a blank line)."""
    events = feed_all([b"data: a\rdata: b\ndata: c\r\n\r\rdata: d\n\r\n"], fast_path)
    assert events == [ev("a\nb\nc"), ev("d")]


def test_one_byte_fragmentation_with_mixed_endings(fast_path: bool) -> None:
    """Feeding one byte at a time yields exactly what feeding the whole stream yields."""
    stream = (
        b"event: one\r\nid: 1\r\ndata: first\r\n\r\n"
        b": keep-alive\r"
        b"data: second\rdata: line\r\r"
        b'event: three\nid: 3\ndata: {"k": "v"}\n\n'
        b"retry: 250\r\ndata: \xc3\xa9t\xc3\xa9\n\r\n"
    )
    expected = [
        ev("first", "one", "1"),
        ev("second\nline", "message", "1"),
        ev('{"k": "v"}', "three", "3"),
        ev("\u00e9t\u00e9", "message", "3", 250),
    ]
    assert feed_all([stream], fast_path) == expected
    assert feed_all(split_every(stream, 1), fast_path) == expected


def test_only_cr_lf_crlf_end_lines_never_unicode_separators(fast_path: bool) -> None:
    """U+2028, U+2029, NEL, VT, FF and FS inside a value never end a line."""
    value = "a\u2028b\u2029c\u0085d\x0be\x0cf\x1cg"
    stream = f"data: {value}\n\n".encode()
    assert feed_all([stream], fast_path) == [ev(value)]
    assert feed_all(split_every(stream, 1), fast_path) == [ev(value)]


# --- UTF-8 and the BOM ------------------------------------------------------------------------


def test_utf8_character_split_across_chunks_is_decoded_whole(fast_path: bool) -> None:
    """A multi-byte UTF-8 character cut by a chunk boundary decodes as one character."""
    text = "h\u00e9llo \u20ac \U0001d11e \u65e5\u672c"
    stream = f"event: \u00fcber\ndata: {text}\n\n".encode()
    for index in range(len(stream) + 1):
        events = feed_all([stream[:index], stream[index:]], fast_path)
        assert events == [ev(text, "\u00fcber")], index


def test_invalid_utf8_is_replaced_with_u_fffd(fast_path: bool) -> None:
    """Invalid UTF-8 in a line decodes to U+FFFD instead of raising."""
    stream = b"data: a\xffb\xe2\x82\ndata: \xc3\n\n"
    assert feed_all([stream], fast_path) == [ev("a\ufffdb\ufffd\n\ufffd")]
    assert feed_all(split_every(stream, 1), fast_path) == [ev("a\ufffdb\ufffd\n\ufffd")]


def test_bom_stripped_at_stream_start(fast_path: bool) -> None:
    """A UTF-8 BOM opening the stream is removed, so the first field name is intact."""
    assert feed_all([b"\xef\xbb\xbfdata: x\n\n"], fast_path) == [ev("x")]


def test_bom_split_across_the_first_chunks_is_stripped(fast_path: bool) -> None:
    """A BOM arriving one byte per chunk is still recognised and removed."""
    chunks = [b"\xef", b"\xbb", b"\xbf", b"data: x\n\n"]
    assert feed_all(chunks, fast_path) == [ev("x")]
    assert feed_all([b"\xef\xbb", b"\xbfdata: x\n\n"], fast_path) == [ev("x")]


def test_bom_stripped_only_once(fast_path: bool) -> None:
    """Only the first BOM goes: a second one makes the first field name unknown."""
    assert feed_all([b"\xef\xbb\xbf\xef\xbb\xbfdata: x\n\ndata: y\n\n"], fast_path) == [ev("y")]


def test_bom_later_in_stream_is_kept(fast_path: bool) -> None:
    """A BOM anywhere but the stream start is ordinary text."""
    stream = "data: x\n\ndata: \ufeffy\n\n\ufeffdata: z\n\n".encode()
    assert feed_all([stream], fast_path) == [ev("x"), ev("\ufeffy")]
    assert feed_all(split_every(stream, 1), fast_path) == [ev("x"), ev("\ufeffy")]


def test_partial_bom_prefix_that_is_not_a_bom_is_kept(fast_path: bool) -> None:
    """First bytes that only look like the start of a BOM are data, not dropped."""
    assert feed_all([b"d", b"ata: x\n\n"], fast_path) == [ev("x")]
    # EF followed by "d" is invalid UTF-8, so the field name is U+FFFD "data": unknown.
    assert feed_all([b"\xef", b"data: x\n\ndata: y\n\n"], fast_path) == [ev("y")]


# --- dispatch ---------------------------------------------------------------------------------


def test_unterminated_event_at_eof_is_not_dispatched(fast_path: bool) -> None:
    """An event with no closing blank line is never dispatched; nothing is flushed."""
    decoder = make_decoder(fast_path)
    assert decoder.feed(b"data: complete\n\nid: 9\ndata: partial\n") == [ev("complete")]
    assert decoder.feed(b"data: more") == []
    assert decoder.last_event_id is None  # the unfinished event's id was never committed


def test_comment_then_blank_line_dispatches_nothing(fast_path: bool) -> None:
    """A keep-alive comment and a blank line after events with ids dispatch no empty event."""
    stream = b"id: 1\ndata: x\n\n: keep-alive\n\n:\n\n"
    assert feed_all([stream], fast_path) == [ev("x", id="1")]


def test_id_only_and_retry_only_frames_dispatch_nothing(fast_path: bool) -> None:
    """Frames without a data line only update state: no event is dispatched."""
    decoder = make_decoder(fast_path)
    assert decoder.feed(b"id: 5\n\nretry: 300\n\n") == []
    assert (decoder.last_event_id, decoder.retry) == ("5", 300)
    assert decoder.feed(b"data: x\n\n") == [ev("x", id="5", retry=300)]


def test_event_name_only_frame_dispatches_nothing_and_resets_type(fast_path: bool) -> None:
    """An event type without data is dropped at the blank line and does not leak forward."""
    assert feed_all([b"event: lonely\n\ndata: x\n\n"], fast_path) == [ev("x")]
    assert feed_all([b"event: a\n\n", b"data: x\n\n"], fast_path) == [ev("x")]


def test_event_type_defaults_to_message(fast_path: bool) -> None:
    """Without an event field, or with an empty one, the type is "message"."""
    stream = b"data: x\n\nevent:\ndata: y\n\nevent: \ndata: z\n\n"
    assert feed_all([stream], fast_path) == [ev("x"), ev("y"), ev("z")]


def test_event_type_reset_after_dispatch(fast_path: bool) -> None:
    """The event type applies to one event only."""
    assert feed_all([b"event: a\ndata: 1\n\ndata: 2\n\n"], fast_path) == [ev("1", "a"), ev("2")]


def test_multiline_data_joined_with_lf(fast_path: bool) -> None:
    """Several data lines are joined with a single LF and the trailing LF is dropped."""
    assert feed_all([b"data: a\ndata: b\ndata: c\n\n"], fast_path) == [ev("a\nb\nc")]


def test_empty_data_values_add_empty_lines(fast_path: bool) -> None:
    """data with an empty value still adds a line, and a lone one dispatches data ""."""
    assert feed_all([b"data\ndata\n\n"], fast_path) == [ev("\n")]
    assert feed_all([b"data:\n\n"], fast_path) == [ev("")]
    assert feed_all([b"data: a\ndata:\ndata: b\n\n"], fast_path) == [ev("a\n\nb")]


def test_field_order_within_an_event_does_not_matter(fast_path: bool) -> None:
    """Fields may come in any order; id and event still apply to the event they are in."""
    stream = b"data: x\nid: 2\nevent: e\n\nid: 3\ndata: y\n\n"
    assert feed_all([stream], fast_path) == [ev("x", "e", "2"), ev("y", "message", "3")]


# --- field parsing ----------------------------------------------------------------------------


def test_exactly_one_leading_space_removed(fast_path: bool) -> None:
    """Only the first space after the colon is removed from the value."""
    stream = b"data:  two\n\ndata:none\n\ndata:   \n\nevent:  t\ndata: x \n\n"
    assert feed_all([stream], fast_path) == [ev(" two"), ev("none"), ev("  "), ev("x ", " t")]


def test_line_without_colon_is_field_with_empty_value(fast_path: bool) -> None:
    """A line with no colon names a field whose value is empty."""
    assert feed_all([b"data\n\n"], fast_path) == [ev("")]
    assert feed_all([b"event: a\nevent\ndata: x\n\n"], fast_path) == [ev("x")]
    assert feed_all([b"id: 1\nid\ndata: x\n\n"], fast_path) == [ev("x", id="")]


def test_value_may_contain_colons(fast_path: bool) -> None:
    """Only the first colon separates name and value."""
    stream = b'data: {"a": "b:c"}\nid: x:y\n\n'
    assert feed_all([stream], fast_path) == [ev('{"a": "b:c"}', id="x:y")]


def test_unknown_field_is_ignored(fast_path: bool) -> None:
    """Fields other than event, data, id and retry are ignored, as are wrong-case names."""
    stream = b"foo: bar\nDATA: no\nData: no\ndata : no\ndata: yes\nextra\n\n"
    assert feed_all([stream], fast_path) == [ev("yes")]


def test_comment_lines_are_ignored_anywhere(fast_path: bool) -> None:
    """Lines starting with a colon are ignored, even in the middle of an event."""
    stream = b"data: a\n: hi\n:data: no\ndata: b\n\n"
    assert feed_all([stream], fast_path) == [ev("a\nb")]


def test_id_containing_nul_is_ignored(fast_path: bool) -> None:
    """An id value containing U+0000 is ignored and the previous id stays."""
    stream = b"id: 1\ndata: a\n\nid: 2\x003\ndata: b\n\n"
    assert feed_all([stream], fast_path) == [ev("a", id="1"), ev("b", id="1")]


def test_id_persists_across_events(fast_path: bool) -> None:
    """The last event id stays in effect for later events until the server changes it."""
    stream = b"id: 1\ndata: a\n\ndata: b\n\nid: 2\ndata: c\n\n"
    events = feed_all([stream], fast_path)
    assert [e.id for e in events] == ["1", "1", "2"]


def test_empty_id_resets_last_event_id_to_empty_string(fast_path: bool) -> None:
    """An empty id field sets the last event id to "" (WHATWG), not back to None."""
    decoder = make_decoder(fast_path)
    assert decoder.feed(b"id: 1\ndata: a\n\nid:\ndata: b\n\n") == [ev("a", id="1"), ev("b", id="")]
    assert decoder.last_event_id == ""


def test_last_event_id_committed_only_at_blank_line(fast_path: bool) -> None:
    """last_event_id changes when the event carrying the id ends, not when the id line arrives."""
    decoder = make_decoder(fast_path)
    assert decoder.feed(b"id: 1\ndata: a\n\nid: 2\n") == [ev("a", id="1")]
    assert decoder.last_event_id == "1"
    assert decoder.feed(b"\n") == []
    assert decoder.last_event_id == "2"


def test_retry_only_when_all_ascii_digits(fast_path: bool) -> None:
    """retry is set from an all-digit value; anything else leaves it unchanged."""
    decoder = make_decoder(fast_path)
    decoder.feed(b"retry: 1500\n\n")
    assert decoder.retry == 1500
    for bad in (b"10a", b"", b"-1", b"1.5", b" 12", b"\xd9\xa3", b"\xc2\xb2", b"1e3"):
        decoder.feed(b"retry: " + bad + b"\n\n")
        assert decoder.retry == 1500, bad
    decoder.feed(b"retry\n\nretry:0042\n\n")
    assert decoder.retry == 42
    assert decoder.feed(b"data: x\n\n") == [ev("x", retry=42)]


def test_retry_too_long_for_int_is_ignored(fast_path: bool) -> None:
    """A retry value beyond Python's int parsing limit is ignored instead of raising."""
    decoder = make_decoder(fast_path)
    decoder.feed(b"retry: 5\n\nretry: " + b"9" * 10_000 + b"\n\n")
    assert decoder.retry == 5


# --- size limit and bounded buffers -----------------------------------------------------------


def test_64_mib_event_in_64_kib_chunks_within_128_mib_cap(fast_path: bool) -> None:
    """A 64 MiB event fed in 64 KiB chunks is decoded whole, in linear time."""
    size = 64 * MIB
    stream = b"event: big\ndata: " + b"x" * size + b"\n\n"
    decoder = make_decoder(fast_path, max_event_bytes=128 * MIB)
    events: list[ServerSentEvent] = []
    for chunk in split_every(stream, 64 * KIB):
        events.extend(decoder.feed(chunk))
    assert len(events) == 1
    assert events[0].event == "big"
    assert len(events[0].data) == size
    assert decoder.pending_bytes == 0


def test_event_at_the_cap_is_accepted_and_one_byte_over_raises(fast_path: bool) -> None:
    """The cap counts pending data lines plus the current line; one byte over raises."""
    cap = 1000
    # Two data lines of 500 wire bytes each ("data: " + 494 bytes): exactly at the cap.
    at_cap = b"data: " + b"a" * 494 + b"\ndata: " + b"b" * 494 + b"\n\n"
    events = feed_all([at_cap], fast_path, max_event_bytes=cap)
    assert len(events) == 1
    over = b"data: " + b"a" * 494 + b"\ndata: " + b"b" * 495 + b"\n\n"
    with pytest.raises(EventTooLargeError) as info:
        feed_all([over], fast_path, max_event_bytes=cap)
    assert info.value.limit == cap
    with pytest.raises(EventTooLargeError):
        feed_all(split_every(over, 7), fast_path, max_event_bytes=cap)


def test_many_events_each_under_the_cap_are_fine(fast_path: bool) -> None:
    """The cap is per event: a long stream of small events never trips it."""
    stream = b"data: " + b"x" * 90 + b"\n\n"
    events = feed_all([stream * 100], fast_path, max_event_bytes=100)
    assert len(events) == 100


def test_single_huge_line_without_newline_raises(fast_path: bool) -> None:
    """A line that never ends is caught once it passes the cap, not buffered forever."""
    cap = 64 * KIB
    decoder = make_decoder(fast_path, max_event_bytes=cap)
    chunks = split_every(b"data: " + b"x" * (2 * cap), 4 * KIB)
    with pytest.raises(EventTooLargeError):
        feed_keeping_bound(decoder, chunks, cap)
    with pytest.raises(EventTooLargeError):
        make_decoder(fast_path, max_event_bytes=cap).feed(b"x" * (cap + 1))


def test_huge_comment_line_raises(fast_path: bool) -> None:
    """A single comment line over the cap raises too, complete or not."""
    cap = 4 * KIB
    huge_comment = b":" + b"p" * cap + b"\n\n"
    with pytest.raises(EventTooLargeError):
        feed_all([huge_comment], fast_path, max_event_bytes=cap)
    with pytest.raises(EventTooLargeError):
        feed_all(split_every(huge_comment, 100), fast_path, max_event_bytes=cap)


def test_decoder_unusable_after_too_large_until_reset(fast_path: bool) -> None:
    """After EventTooLargeError every feed raises again; reset() starts a fresh stream."""
    decoder = make_decoder(fast_path, max_event_bytes=10)
    with pytest.raises(EventTooLargeError):
        decoder.feed(b"data: 0123456789\n\n")
    with pytest.raises(EventTooLargeError):
        decoder.feed(b"data: x\n\n")
    decoder.reset()
    assert decoder.feed(b"data: x\n\n") == [ev("x")]


@pytest.mark.parametrize("comment", [b": ping\n", b":\r\n", b":ping\r", b":\n"])
def test_ten_thousand_comment_lines_keep_buffers_empty(comment: bytes, fast_path: bool) -> None:
    """Endless complete comment lines are dropped as they arrive: nothing accumulates."""
    decoder = make_decoder(fast_path)
    for _ in range(10_000):
        assert decoder.feed(comment) == []
        assert decoder.pending_bytes == 0
    stream = comment * 10_000
    decoder = make_decoder(fast_path)
    for chunk in split_every(stream, 4093):  # cuts lines (and CRLF pairs) at odd places
        assert decoder.feed(chunk) == []
        assert decoder.pending_bytes < len(comment)


def test_ten_thousand_ping_events_dispatch_with_bounded_buffers(fast_path: bool) -> None:
    """10,000 keep-alive events all dispatch and never leave more than one event buffered."""
    ping = (
        b'event: system.ping\ndata: {"type":"system.ping","timestamp":"2026-06-08T12:00:32Z"}\n\n'
    )
    decoder = make_decoder(fast_path)
    count = 0
    for chunk in split_every(ping * 10_000, 1000):
        events = decoder.feed(chunk)
        count += len(events)
        assert all(e.event == "system.ping" for e in events)
        assert decoder.pending_bytes < len(ping)
    assert count == 10_000
    assert decoder.pending_bytes == 0


def test_pending_bytes_counts_partial_line_and_pending_data(fast_path: bool) -> None:
    """pending_bytes is the partial line plus the data lines of the open event."""
    decoder = make_decoder(fast_path)
    decoder.feed(b"data: abc\nda")
    assert decoder.pending_bytes == len(b"data: abc") + len(b"da")
    decoder.feed(b"ta: d\n\n")
    assert decoder.pending_bytes == 0


# --- lifecycle --------------------------------------------------------------------------------


def test_reset_drops_partial_input_and_state(fast_path: bool) -> None:
    """reset() forgets the partial line, pending fields, ids and retry of the old stream."""
    decoder = make_decoder(fast_path)
    decoder.feed(b"retry: 10\nid: 1\ndata: x\n\nevent: e\ndata: old\ndata: part")
    assert decoder.pending_bytes > 0
    decoder.reset()
    assert decoder.pending_bytes == 0
    assert (decoder.last_event_id, decoder.retry) == (None, None)
    assert decoder.feed(b"ial\n\ndata: new\n\n") == [ev("new")]


def test_reset_drops_pending_cr_and_rearms_bom(fast_path: bool) -> None:
    """After reset() a leading LF is a blank line again and a new stream's BOM is stripped."""
    decoder = make_decoder(fast_path)
    decoder.feed(b"data: a\r")
    decoder.reset()
    assert decoder.feed(b"\xef\xbb\xbfdata: b\n\n") == [ev("b")]


def test_empty_chunks_are_harmless(fast_path: bool) -> None:
    """Feeding b"" changes nothing and returns no events."""
    decoder = make_decoder(fast_path)
    assert decoder.feed(b"") == []
    assert feed_all([b"", b"data: x", b"", b"\n", b"", b"\n", b""], fast_path) == [ev("x")]


def test_invalid_max_event_bytes_is_a_configuration_error() -> None:
    """A cap of zero or less cannot work and is refused at construction."""
    with pytest.raises(ConfigurationError):
        SSEDecoder(max_event_bytes=0)


def test_server_sent_event_is_immutable() -> None:
    """Events are frozen values that compare by content."""
    event = ev("x", "e", "1", 5)
    assert event == ServerSentEvent(event="e", data="x", id="1", retry=5)
    with pytest.raises(AttributeError):
        event.data = "y"  # type: ignore[misc]  # proving the frozen struct refuses writes
    assert msgspec.structs.asdict(event) == {"event": "e", "data": "x", "id": "1", "retry": 5}


# --- the documented Genie stream --------------------------------------------------------------

GENIE_EXPECTED = [
    ("processing.started", "evt_01", '{"type":"processing.started","event_id":"evt_01"'),
    ("skill.confirmation_required", "evt_02", '{"type":"skill.confirmation_required",'),
    # The ping has no id line, so the previous id stays in effect (WHATWG).
    ("system.ping", "evt_02", '{"type":"system.ping","timestamp":"2026-06-08T12:00:32Z"}'),
    ("skill.running", "evt_03", '{"type":"skill.running","event_id":"evt_03"'),
    ("skill.completed", "evt_04", '{"type":"skill.completed","event_id":"evt_04"'),
    ("agent.message", "evt_05", '{"type":"agent.message","event_id":"evt_05"'),
    ("processing.finished", "evt_06", '{"type":"processing.finished","event_id":"evt_06"'),
]


@pytest.mark.parametrize("chunk_size", [1, 7, 64, 100_000])
def test_genie_example_stream(chunk_size: int, fast_path: bool) -> None:
    """The API reference's example stream (section 5.5) decodes to the documented events."""
    stream = (FIXTURES / "genie_example_stream.txt").read_bytes()
    decoder = make_decoder(fast_path)
    events: list[ServerSentEvent] = []
    for chunk in split_every(stream, chunk_size):
        events.extend(decoder.feed(chunk))
    assert len(events) == len(GENIE_EXPECTED)
    got = [
        (e.event, e.id, e.data[: len(prefix)])
        for e, (_, _, prefix) in zip(events, GENIE_EXPECTED, strict=True)
    ]
    assert got == GENIE_EXPECTED
    assert all(msgspec.json.decode(e.data)["type"] == e.event for e in events)
    assert "Nov 1\u20133" in events[5].data
    assert decoder.last_event_id == "evt_06"
    assert decoder.pending_bytes == 0
