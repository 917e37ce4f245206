"""An incremental Server-Sent Events decoder with no I/O.

:class:`SSEDecoder` implements the WHATWG "event stream interpretation" algorithm
(https://html.spec.whatwg.org/multipage/server-sent-events.html): lines end at CR, LF or
CRLF, found at the byte level (a CR ending one chunk and an LF starting the next are one line
end; U+2028, U+2029 and NEL never end a line); each complete line is decoded as UTF-8 with
invalid bytes replaced by U+FFFD; one BOM is stripped at the very start of the stream; a line
starting with ``:`` is a comment; ``field:value`` loses exactly one leading space from its
value and a line with no colon is a field with an empty value; ``data`` lines are joined with
``"\\n"``; ``id`` containing NUL is ignored; ``retry`` is used only when it is all ASCII
digits; a blank line dispatches the event unless no ``data`` line was seen. An unterminated
event at end of input is never dispatched: the caller simply stops feeding. Keep-alives that
carry no data (comments, ``id``-only or ``retry``-only frames) never produce events.

We parse ourselves because the aiohttp SSE clients split lines with aiohttp's ``readline``
(which caps lines at 128-512 KiB and costs most of the CPU), mishandle lone CRs, strip every
leading space and leak unterminated events into the next connection; framing bytes from
``iter_any()`` here is several times faster and lets us bound memory with an explicit,
typed ``max_event_bytes`` limit instead.
"""

from __future__ import annotations

import re
from typing import Final

import msgspec

from genie_async.errors import ConfigurationError, EventTooLargeError

__all__ = ["DEFAULT_MAX_EVENT_BYTES", "SSEDecoder", "ServerSentEvent"]

DEFAULT_MAX_EVENT_BYTES: Final = 16 * 1024 * 1024

_BOM: Final = b"\xef\xbb\xbf"
_LF: Final = 0x0A
_CR: Final = 0x0D
_COLON: Final = 0x3A
# A CR not followed by LF; searched in C, far cheaper than counting CRLF pairs.
_LONE_CR: Final = re.compile(rb"\r(?!\n)")


def _removeprefix_keeps_identity() -> bool:
    """Whether ``str.removeprefix`` returns the string itself when the prefix is absent.

    CPython does, and the fast path uses that to test and slice in one call; on a runtime
    that copies instead, the decoder uses its general path only.
    """
    probe = "".join(("id", ": x"))  # built at run time, so never a shared constant
    return probe.removeprefix("data: ") is probe


_FAST_PATH_AVAILABLE: Final = _removeprefix_keeps_identity()
# Distinct "event: <type>" lines remembered by one decoder; bounded against hostile servers.
_EVENT_TYPE_CACHE_SIZE: Final = 64


class ServerSentEvent(msgspec.Struct, frozen=True, gc=False):
    """One dispatched event.

    ``event`` is the event type (``"message"`` when the event had no ``event:`` field),
    ``data`` its ``data`` lines joined with ``"\\n"``, ``id`` the last event id in effect when
    it was dispatched (it persists across events until the server changes it; ``None`` if it
    was never set, ``""`` if the server reset it with an empty ``id:``), and ``retry`` the
    reconnection time in milliseconds from the most recent valid ``retry:`` field, if any.
    """

    event: str
    data: str
    id: str | None
    retry: int | None


class SSEDecoder:
    """Turn chunks of an ``text/event-stream`` body into :class:`ServerSentEvent` objects.

    Feed it every chunk as it arrives; :meth:`feed` returns the events that chunk completed.
    Nothing is ever flushed: an event still open when the input ends is discarded, as the
    specification requires (treat that as a dropped stream).

    ``max_event_bytes`` bounds memory: when the wire bytes of the pending ``data`` lines plus
    the line being received (terminators excluded) exceed it, :meth:`feed` raises
    :class:`~genie_async.errors.EventTooLargeError`. That applies to any line, so a huge
    comment or a line that never ends is caught too, while any number of complete comment
    lines costs nothing. After that error the decoder is unusable: every further
    :meth:`feed` raises it again until :meth:`reset` (the caller should close the stream).

    An empty ``id:`` sets the last event id to ``""``, as the specification says (a client
    then sends no ``Last-Event-ID``); ``None`` means the server never sent an id.
    """

    __slots__ = (
        "_at_start",
        "_buf",
        "_data",
        "_data_bytes",
        "_event_types",
        "_failed",
        "_fast_path",
        "_id_buffer",
        "_last_id",
        "_max",
        "_pending_cr",
        "_retry",
        "_type",
    )

    def __init__(self, *, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> None:
        if max_event_bytes <= 0:
            raise ConfigurationError(f"max_event_bytes must be positive, not {max_event_bytes}")
        self._max = max_event_bytes
        # Tests switch this off to check the LF fast path against the general parser.
        self._fast_path = _FAST_PATH_AVAILABLE
        # Maps a whole "event: x" line to its type string, so the fast path neither re-slices
        # nor re-allocates the handful of type names a stream repeats.
        self._event_types: dict[str, str] = {}
        self._buf = bytearray()
        self._data: list[str] = []
        self._data_bytes = 0
        self._type = ""
        self._id_buffer: str | None = None
        self._last_id: str | None = None
        self._retry: int | None = None
        self._pending_cr = False
        self._at_start = True
        self._failed = False

    @property
    def last_event_id(self) -> str | None:
        """The last event id committed by a blank line (what ``Last-Event-ID`` should carry).

        An ``id:`` inside an event that never completed does not count.
        """
        return self._last_id

    @property
    def retry(self) -> int | None:
        """The reconnection time (ms) from the most recent valid ``retry:`` field, if any."""
        return self._retry

    @property
    def pending_bytes(self) -> int:
        """Bytes held for the event in progress: the partial line plus pending ``data`` lines."""
        return len(self._buf) + self._data_bytes

    def reset(self) -> None:
        """Forget everything, as for a brand-new stream: partial input, pending fields, the
        last event id, the retry value, BOM handling and a previous size failure."""
        self._buf = bytearray()
        self._data = []
        self._data_bytes = 0
        self._type = ""
        self._id_buffer = None
        self._last_id = None
        self._retry = None
        self._pending_cr = False
        self._at_start = True
        self._failed = False
        self._event_types = {}

    def feed(self, chunk: bytes) -> list[ServerSentEvent]:
        """Consume ``chunk`` and return the events it completed, in order.

        Raises :class:`~genie_async.errors.EventTooLargeError` when the event being
        received exceeds ``max_event_bytes``; the events this chunk completed before it ride
        on the exception as ``completed``, so nothing already received is lost.
        """
        if self._failed:
            raise EventTooLargeError(self._max)
        if not chunk:
            return []
        if self._at_start:
            # The BOM may arrive split over several tiny chunks: hold a prefix of it back.
            if self._buf:
                chunk = bytes(self._buf) + chunk
                self._buf.clear()
            if len(chunk) < len(_BOM) and _BOM.startswith(chunk):
                self._buf += chunk
                return []
            self._at_start = False
            if chunk.startswith(_BOM):
                chunk = chunk[len(_BOM) :]
        if self._pending_cr:
            # The previous chunk ended with CR: an LF here completes that CRLF, not a new line.
            self._pending_cr = False
            if chunk[:1] == b"\n":
                chunk = chunk[1:]
        if not chunk:
            return []
        out: list[ServerSentEvent] = []
        try:
            if not self._fast_path:
                self._feed_general(chunk, out)
            elif b"\r" not in chunk:
                self._feed_lf(chunk, out)
            elif _LONE_CR.search(chunk) is None:
                # Many servers end lines with CRLF. When every CR here is half of a CRLF,
                # dropping the CRs changes no line (line sizes exclude the line end). A CR
                # ending the chunk counts as lone: its LF may start the next chunk.
                self._feed_lf(chunk.replace(b"\r", b""), out)
            else:
                self._feed_general(chunk, out)
        except EventTooLargeError as exc:
            self._failed = True
            exc.completed = out
            raise
        return out

    # --- general path: any line endings, any fields ------------------------------------------

    def _feed_general(self, chunk: bytes, out: list[ServerSentEvent]) -> None:
        """Frame ``chunk`` into lines on CR, LF and CRLF; correct for every input.

        Only the new chunk is ever searched, so a long line arriving in small pieces costs
        O(total bytes), not O(n^2).
        """
        buf = self._buf
        pos = 0
        if buf:
            # Finish the carried partial line first.
            lf = chunk.find(b"\n")
            cr = chunk.find(b"\r", 0, lf if lf >= 0 else len(chunk))
            end = cr if cr >= 0 else lf
            if end < 0:
                buf += chunk
                if self._data_bytes + len(buf) > self._max:
                    raise EventTooLargeError(self._max)
                return
            buf += chunk[:end]
            self._line(buf, out)
            buf.clear()
            pos = end + 1
            if chunk[end] == _CR:
                if pos == len(chunk):
                    self._pending_cr = True
                    return
                if chunk[pos] == _LF:
                    pos += 1
        rest = chunk[pos:] if pos else chunk
        if not rest:
            return
        lines = rest.splitlines()
        last = rest[-1]
        partial = b""
        if last == _CR:
            self._pending_cr = True
        elif last != _LF:
            partial = lines.pop()
        for line in lines:
            self._line(line, out)
        if partial:
            if self._data_bytes + len(partial) > self._max:
                raise EventTooLargeError(self._max)
            buf += partial

    def _line(self, raw: bytes | bytearray, out: list[ServerSentEvent]) -> None:
        """Process one complete line given as bytes (terminator removed)."""
        if self._data_bytes + len(raw) > self._max:
            raise EventTooLargeError(self._max)
        if not raw:
            self._dispatch(out)
        elif raw[0] != _COLON:  # comments are dropped before paying for a decode
            self._field(raw.decode("utf-8", "replace"), len(raw), out)

    def _field(self, line: str, nbytes: int, out: list[ServerSentEvent]) -> None:
        """Process one complete decoded line; ``nbytes`` is its wire size for the size cap."""
        if not line:
            self._dispatch(out)
            return
        if line[0] == ":":
            return
        name, _, value = line.partition(":")
        if value[:1] == " ":
            value = value[1:]
        if name == "data":
            self._data.append(value)
            self._data_bytes += nbytes
        elif name == "event":
            self._type = value
        elif name == "id" and "\0" not in value:
            self._id_buffer = value
        elif name == "retry" and value.isascii() and value.isdigit():
            try:
                self._retry = int(value)
            except ValueError:
                # Longer than Python's int-from-str digit limit: not a usable delay.
                pass
        # Any other field is ignored, as the specification requires.

    def _dispatch(self, out: list[ServerSentEvent]) -> None:
        """Handle a blank line: commit the id and emit the event if it has any data."""
        self._last_id = self._id_buffer
        if self._data:
            out.append(
                ServerSentEvent(
                    self._type or "message", "\n".join(self._data), self._last_id, self._retry
                )
            )
            self._data = []
            self._data_bytes = 0
        self._type = ""

    # --- fast path: LF-only chunks made of whole events --------------------------------------

    def _feed_lf(self, chunk: bytes, out: list[ServerSentEvent]) -> None:
        """Handle a chunk containing no CR, taking whole events in bulk where possible.

        Once the event carried over from the previous chunk (if any) is finished, everything
        up to the chunk's last ``\\n\\n`` is a run of complete lines ending in a blank line, so
        it can be decoded and split in one go; the rest is left to the general path.
        """
        start = 0
        if self._buf or self._data or self._type or self._id_buffer != self._last_id:
            # Finish the carried event on the general path, up to its blank line.
            if not self._buf and chunk[0] == _LF:
                start = 1
            else:
                blank = chunk.find(b"\n\n")
                if blank < 0:
                    self._feed_general(chunk, out)
                    return
                start = blank + 2
            self._feed_general(chunk[:start], out)
        end = chunk.rfind(b"\n\n", start)
        if end < 0:
            if start < len(chunk):
                self._feed_general(chunk[start:], out)
            return
        if end - start > self._max:
            # A line here might be over the limit: let the general path measure it.
            self._feed_general(chunk[start:], out)
            return
        # Decoding the whole run at once equals decoding line by line: an LF is ASCII, so it
        # can never be swallowed by, or extend, an invalid UTF-8 sequence.
        lines = chunk[start:end].decode("utf-8", "replace").split("\n")
        lines.append("")  # the blank line of the final "\n\n"
        self._lines_fast(lines, out)
        if end + 2 < len(chunk):
            self._feed_general(chunk[end + 2 :], out)

    def _lines_fast(self, lines: list[str], out: list[ServerSentEvent]) -> None:
        """Interpret complete decoded lines that start at an event boundary and end blank.

        ``removeprefix`` returns the very same object when the prefix is absent, so one C
        call both recognises a field and extracts its value (exactly one space removed, as
        the spec says). Anything else (comments, a second ``data`` line, ``retry``, a field
        without ``": "``) hands the event in progress over to :meth:`_field`.
        """
        append = out.append
        event_types = self._event_types
        last_id = self._id_buffer
        retry = self._retry
        data: str | None = None
        etype = "message"
        it = iter(lines)
        for line in it:
            if not line:
                if data is not None:
                    append(ServerSentEvent(etype, data, last_id, retry))
                    data = None
                etype = "message"
                continue
            value = line.removeprefix("data: ")
            if value is not line:
                if data is None:
                    data = value
                    continue
            else:
                value = line.removeprefix("id: ")
                if value is not line:
                    if "\0" not in value:
                        last_id = value
                        continue
                else:
                    cached = event_types.get(line)
                    if cached is not None:
                        etype = cached
                        continue
                    value = line.removeprefix("event: ")
                    if value is not line:
                        etype = value or "message"
                        if len(event_types) < _EVENT_TYPE_CACHE_SIZE:
                            event_types[line] = etype
                        continue
            # Unusual line: finish this event with the general field parser.
            self._id_buffer = last_id
            self._type = etype
            if data is not None:
                self._data = [data]
                # Only approximate (characters, not bytes), but the size cap cannot trip in
                # a run this short, and the blank line ending the run resets it.
                self._data_bytes = len(data)
            self._field(line, len(line), out)
            for rest in it:
                self._field(rest, len(rest), out)
                if not rest:
                    break
            last_id = self._id_buffer
            retry = self._retry
            data = None
            etype = "message"
        self._id_buffer = self._last_id = last_id
