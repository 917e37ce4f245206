"""The simulator fault kinds and plumbing the chaos suite relies on, checked on raw HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import pytest

from genie_async.testing import GenieSimulator, HttpFault, Say, StreamFault, Turn

from ._plan import expected, make_plans
from ._runner import conversation_turns
from ._scoped import ScopedFaults

# 2-, 3- and 4-byte UTF-8 characters, so byte cuts land inside them.
TEXTS = ("héllo wörld", "日本語のテキスト", "🚀🙂👩‍💻 emoji")


@dataclass
class Raw:
    body: bytes
    chunks: int
    error: BaseException | None


@pytest.fixture
async def crlf_sim() -> AsyncIterator[GenieSimulator]:
    """A simulator framing SSE with CRLF, so a byte cut can fall between CR and LF."""
    async with GenieSimulator(ping_interval=0.02, line_ending="\r\n") as sim:
        yield sim


async def _send(sim: GenieSimulator, text: str = "x") -> tuple[str, Raw]:
    """Create a conversation, send ``text`` and read the SSE body raw until it ends."""
    base = f"{sim.url}/api/v1/genies/{sim.genie_id}/chat"
    headers = {"Authorization": f"Bearer {sim.api_key}", "X-IDP-User-Id": sim.user_id}
    async with aiohttp.ClientSession(headers=headers) as session:
        async with session.post(f"{base}/conversations", json={}) as response:
            cid: str = (await response.json())["result"]["conversation_id"]
        body, chunks, error = b"", 0, None
        url = f"{base}/conversations/{cid}/messages"
        async with session.post(url, json={"message": text}) as response:
            try:
                async for chunk in response.content.iter_any():
                    body += chunk
                    chunks += 1
            except aiohttp.ClientPayloadError as exc:
                error = exc
    await sim.wait_idle(cid)
    return cid, Raw(body, chunks, error)


def _frames(sim: GenieSimulator, cid: str) -> list[bytes]:
    return [event.frame for event in sim.conversation(cid).runs[0].events]


def _without_pings(body: bytes) -> bytes:
    frames = body.split(b"\r\n\r\n")
    return b"\r\n\r\n".join(f for f in frames if not f.startswith(b"event: system.ping"))


@pytest.mark.parametrize("at_byte", [0, 1, 9, 10, 11, 57, 150, 203])
async def test_abort_at_byte_cuts_exactly_there(crlf_sim: GenieSimulator, at_byte: int) -> None:
    """abort_at_byte: N whole events, then exactly at_byte bytes of what follows, then a drop."""
    crlf_sim.next_turn(
        Turn(
            *(Say(t) for t in TEXTS),
            faults=[StreamFault("abort_at_byte", after_events=1, at_byte=at_byte)],
        )
    )
    cid, raw = await _send(crlf_sim)
    frames = _frames(crlf_sim, cid)
    assert _without_pings(raw.body) == frames[0] + frames[1][:at_byte]
    assert isinstance(raw.error, aiohttp.ClientPayloadError)


async def test_abort_at_byte_lands_inside_characters_and_line_ends(
    crlf_sim: GenieSimulator,
) -> None:
    """Cuts at every byte of a frame: inside multi-byte characters and between CR and LF."""
    crlf_sim.next_turn(Turn(Say(TEXTS[2])))
    cid, _ = await _send(crlf_sim)
    frame = _frames(crlf_sim, cid)[1]
    inside_char = next(i for i, b in enumerate(frame) if b & 0xC0 == 0x80)
    between_cr_lf = frame.index(b"\r\n") + 1
    for at_byte in (inside_char, between_cr_lf):
        crlf_sim.next_turn(
            Turn(
                Say(TEXTS[2]),
                faults=[StreamFault("abort_at_byte", after_events=1, at_byte=at_byte)],
            )
        )
        cid, raw = await _send(crlf_sim)
        body = _without_pings(raw.body)
        assert body == _frames(crlf_sim, cid)[0] + _frames(crlf_sim, cid)[1][:at_byte]
        assert raw.error is not None


async def test_abort_at_byte_spans_frames_and_may_not_fire(crlf_sim: GenieSimulator) -> None:
    """The byte count runs across frames; past the last event the stream ends normally."""
    crlf_sim.next_turn(Turn(Say("a"), Say("b")))
    cid, _ = await _send(crlf_sim)
    sizes = [len(frame) for frame in _frames(crlf_sim, cid)]
    spanning = sizes[1] + 7
    crlf_sim.next_turn(
        Turn(
            Say("a"),
            Say("b"),
            faults=[StreamFault("abort_at_byte", after_events=1, at_byte=spanning)],
        )
    )
    cid, raw = await _send(crlf_sim)
    frames = _frames(crlf_sim, cid)
    assert _without_pings(raw.body) == frames[0] + frames[1] + frames[2][:7]
    crlf_sim.next_turn(
        Turn(Say("a"), faults=[StreamFault("abort_at_byte", at_byte=sum(sizes) * 10)])
    )
    cid, raw = await _send(crlf_sim)
    assert raw.error is None
    assert _without_pings(raw.body) == b"".join(_frames(crlf_sim, cid))


async def test_trickle_delivers_every_byte_in_small_pieces(crlf_sim: GenieSimulator) -> None:
    """trickle: the same bytes, written in pieces of at most piece_bytes, slowly."""
    fault = StreamFault("trickle", after_events=1, piece_bytes=8, piece_delay=0.001, seed=3)
    crlf_sim.next_turn(Turn(*(Say(t) for t in TEXTS), faults=[fault]))
    loop = asyncio.get_running_loop()
    started = loop.time()
    cid, raw = await _send(crlf_sim)
    frames = _frames(crlf_sim, cid)
    assert raw.error is None
    assert _without_pings(raw.body) == b"".join(frames)
    trickled = sum(len(frame) for frame in frames[1:])
    assert raw.chunks > trickled // 8 // 4  # most pieces arrive as their own read
    assert loop.time() - started >= trickled / 8 * 0.001 * 0.5


def test_new_fault_kinds_validate_their_parameters() -> None:
    """Negative byte counts, empty pieces and negative delays are refused."""
    with pytest.raises(ValueError, match="at_byte"):
        StreamFault("abort_at_byte", at_byte=-1)
    with pytest.raises(ValueError, match="piece_bytes"):
        StreamFault("trickle", piece_bytes=0)
    with pytest.raises(ValueError, match="piece_delay"):
        StreamFault("trickle", piece_delay=-0.1)


async def test_scoped_faults_hit_only_their_conversation() -> None:
    """A fault queued for one conversation is never served to another one."""
    sim = GenieSimulator(ping_interval=0.02)
    faults = ScopedFaults.install(sim)
    async with sim:
        base = f"{sim.url}/api/v1/genies/{sim.genie_id}/chat"
        headers = {"Authorization": f"Bearer {sim.api_key}", "X-IDP-User-Id": sim.user_id}
        async with aiohttp.ClientSession(headers=headers) as session:
            cids = []
            for _ in range(2):
                async with session.post(f"{base}/conversations", json={}) as response:
                    cids.append((await response.json())["result"]["conversation_id"])
            faults.push_for(cids[0], HttpFault("get_conversation", 503, times=2))
            statuses = []
            for cid in (cids[1], cids[0], cids[1], cids[0], cids[0]):
                async with session.get(f"{base}/conversations/{cid}") as response:
                    statuses.append(response.status)
    assert statuses == [200, 503, 200, 503, 200]
    assert faults.served[cids[0]] == 2
    assert faults.discard_for(cids[0]) == 0


def test_plans_are_a_pure_function_of_the_seed() -> None:
    """Same seed, same plans; a longer run starts with the turns of a shorter one."""
    first = [plan.describe() for plan in make_plans(7, 60)]
    assert first == [plan.describe() for plan in make_plans(7, 60)]
    assert first[:20] == [plan.describe() for plan in make_plans(7, 20)]
    assert first != [plan.describe() for plan in make_plans(8, 60)]
    for plan in make_plans(7, 60):
        assert expected(plan.steps, plan.decisions)[0] == list(plan.expected_types)


def test_a_turn_is_replayed_with_its_conversation() -> None:
    """--chaos-only=I replays the turns of I's conversation up to I, in order."""
    assert conversation_turns(5, 8) == [5]
    assert conversation_turns(1529, 8) == list(range(1441, 1530, 8))
    assert conversation_turns(160, 8) == [160]  # round 20 starts a fresh conversation
