"""SSE wire framing (pure functions, no I/O).

One frame is ``event: <type>``, an optional ``id: <event_id>``, one ``data:`` line per line of
the payload, then a blank line, all joined with the simulator's configured line ending.
"""

from __future__ import annotations

import re

import msgspec

__all__ = ["encode_frame", "interrupt_frame", "ping_frame"]

_LINE_BREAK = re.compile(rb"\r\n|\r|\n")
_encode = msgspec.json.Encoder().encode


def encode_frame(event_type: str, data: bytes, *, event_id: str | None, line_ending: str) -> bytes:
    """Frame one event. ``data`` is the payload text; line breaks in it become extra
    ``data:`` lines, which an SSE parser joins back with ``\\n``."""
    eol = line_ending.encode()
    lines = [b"event: " + event_type.encode()]
    if event_id is not None:
        lines.append(b"id: " + event_id.encode())
    lines.extend(b"data: " + part for part in _LINE_BREAK.split(data))
    return eol.join(lines) + eol + eol


def ping_frame(timestamp: str, line_ending: str) -> bytes:
    """A ``system.ping`` keep-alive (no ``id:`` line; never persisted)."""
    data = _encode({"type": "system.ping", "timestamp": timestamp})
    return encode_frame("system.ping", data, event_id=None, line_ending=line_ending)


def interrupt_frame(
    run_id: str, last_seq_num: int, reason: str, retry_after_ms: int | None, line_ending: str
) -> bytes:
    """A ``system.stream_interrupted`` control frame (no ``id:``, no ``event_id``)."""
    body: dict[str, object] = {
        "type": "system.stream_interrupted",
        "genie_run_id": run_id,
        "last_seq_num": last_seq_num,
        "reason": reason,
    }
    if retry_after_ms is not None:
        body["retry_after_ms"] = retry_after_ms
    return encode_frame(
        "system.stream_interrupted", _encode(body), event_id=None, line_ending=line_ending
    )
