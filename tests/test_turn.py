"""The pure turn state: what each event means, deduplication and the resume cursor."""

from __future__ import annotations

import datetime as dt

import pytest

from genie_async import events as ev
from genie_async._turn import Action, StreamCursor, TurnState, parse_timestamp, sort_key


def _event(kind: type[ev.Event], seq: int, *, run: str = "r1", **fields: object) -> ev.GenieEvent:
    return kind(  # type: ignore[call-arg]
        event_id=f"{run}-e{seq}",
        conversation_id="c1",
        genie_run_id=run,
        seq_num=seq,
        created_at=f"2026-06-08T12:00:{seq:02d}.000Z",
        **fields,
    )


def _hand_over(state: TurnState, event: ev.GenieEvent) -> Action:
    """What the stream does: classify the event, and commit it when it reaches the consumer."""
    action = state.observe(event)
    if action not in (Action.KEEPALIVE, Action.INTERRUPTED, Action.DUPLICATE, Action.FOREIGN):
        state.commit(event)
    return action


def test_keepalive_and_interrupt_never_advance_the_cursor() -> None:
    """Pings and stream interruptions are control frames: not delivered, cursor unchanged."""
    state = TurnState("c1")
    _hand_over(state, _event(ev.ProcessingStarted, 1))
    before = state.cursor()
    assert state.observe(ev.Ping(timestamp="t")) is Action.KEEPALIVE
    interrupt = ev.StreamInterrupted(genie_run_id="r1", last_seq_num=1, retry_after_ms=10)
    assert state.observe(interrupt) is Action.INTERRUPTED
    assert state.cursor() == before


def test_cursor_advances_only_on_delivered_events() -> None:
    """Each delivered event moves last_event_id, last_created_at and last_seq_num."""
    state = TurnState("c1")
    assert _hand_over(state, _event(ev.ProcessingStarted, 1)) is Action.DELIVER
    assert _hand_over(state, _event(ev.AgentMessage, 2, message="hi")) is Action.DELIVER
    cursor = state.cursor()
    assert (cursor.genie_run_id, cursor.last_event_id, cursor.last_seq_num) == ("r1", "r1-e2", 2)
    assert cursor.last_created_at == "2026-06-08T12:00:02.000Z"
    assert state.final_text == "hi"


def test_an_event_read_but_not_handed_over_does_not_move_the_cursor() -> None:
    """Events read in the same chunk but never handed over stay after the cursor."""
    state = TurnState("c1")
    _hand_over(state, _event(ev.ProcessingStarted, 1))
    assert state.observe(_event(ev.AgentMessage, 2, message="read, not handed")) is Action.DELIVER
    cursor = state.cursor()
    assert (cursor.last_seq_num, cursor.last_event_id) == (1, "r1-e1")
    resumed = TurnState.from_cursor(cursor)
    assert resumed.observe(_event(ev.AgentMessage, 2, message="again")) is Action.DELIVER


def test_duplicates_by_seq_within_the_run_are_dropped() -> None:
    """A replayed event is a duplicate by its seq_num within the run, whatever its id."""
    state = TurnState("c1")
    first = _event(ev.AgentMessage, 1, message="a")
    assert state.observe(first) is Action.DELIVER
    assert state.observe(first) is Action.DUPLICATE
    same_seq_new_id = ev.AgentMessage(event_id="other", genie_run_id="r1", seq_num=1, message="a")
    assert state.observe(same_seq_new_id) is Action.DUPLICATE
    assert state.delivered == 1


def test_events_without_seq_are_deduplicated_by_event_id() -> None:
    """Without a seq_num, the event_id identifies an event."""
    state = TurnState("c1")
    no_seq = ev.UnknownEvent(type="x", event_id="u1", genie_run_id="r1")
    assert state.observe(no_seq) is Action.DELIVER
    assert state.observe(no_seq) is Action.DUPLICATE


def test_an_event_arriving_after_a_gap_is_still_delivered() -> None:
    """Seqs 1, 2, 4, then 3 late: 3 is delivered, and every later duplicate is dropped."""
    state = TurnState("c1")
    for seq in (1, 2, 4, 3, 5):
        assert _hand_over(state, _event(ev.AgentMessage, seq, message=str(seq))) is Action.DELIVER
    for seq in (1, 2, 3, 4, 5):
        assert state.observe(_event(ev.AgentMessage, seq, message="again")) is Action.DUPLICATE
    assert state.last_seq_num == 5
    assert state._seqs.beyond == set()  # the gap closed: back to O(1) space


def test_in_order_events_use_constant_space() -> None:
    """100,000 in-order events keep no per-event set."""
    state = TurnState("c1")
    for seq in range(1, 100_001):
        state.observe(ev.ProcessingStarted(genie_run_id="r1", seq_num=seq, event_id=f"e{seq}"))
    assert state._seqs.beyond == set()
    assert state.seen_ids == set()
    assert state._seqs.next == 100_001


def test_seq_num_alone_never_dedupes_across_runs() -> None:
    """seq_num restarts per run: another run's seq 1 is not a duplicate but foreign."""
    state = TurnState("c1")
    state.observe(_event(ev.ProcessingStarted, 1, run="r1"))
    assert state.observe(_event(ev.ProcessingStarted, 1, run="r2")) is Action.FOREIGN


def test_first_event_adopts_the_run() -> None:
    """The turn learns its run id from the first event that carries one."""
    state = TurnState("c1")
    assert state.genie_run_id is None
    state.observe(_event(ev.ProcessingStarted, 1, run="r7"))
    assert state.genie_run_id == "r7"


def test_observing_alone_reports_nothing_to_the_cursor() -> None:
    """A finished or pause event read but not handed over leaves the cursor's state alone."""
    state = TurnState("c1")
    assert state.observe(_event(ev.ProcessingFinished, 1)) is Action.FINISHED
    pause = _event(ev.SkillConfirmationRequired, 2, call_id="call_1")
    assert state.observe(pause) is Action.CONFIRMATION
    cursor = state.cursor()
    assert not cursor.finished
    assert cursor.pending_confirmation is None


def test_finished_ends_the_turn() -> None:
    """processing.finished is delivered and marks the turn finished."""
    state = TurnState("c1")
    assert _hand_over(state, _event(ev.ProcessingFinished, 3)) is Action.FINISHED
    assert state.finished
    assert state.is_finished()


def test_confirmation_pauses_until_decided_and_never_twice() -> None:
    """A confirmation asks for a decision once; replayed after a decision it is just data."""
    state = TurnState("c1")
    confirm = _event(ev.SkillConfirmationRequired, 2, call_id="call_1")
    assert _hand_over(state, confirm) is Action.CONFIRMATION
    assert state.pending_confirmation == confirm
    state.record_decision("call_1", "approved")
    assert state.pending_confirmation is None
    replay = ev.SkillConfirmationRequired(
        event_id="other-id", genie_run_id="r1", seq_num=9, call_id="call_1"
    )
    assert state.observe(replay) is Action.DELIVER


def test_a_later_event_ends_a_pending_confirmation() -> None:
    """Any later event of the run means the confirmation was resolved elsewhere."""
    state = TurnState("c1")
    _hand_over(state, _event(ev.SkillConfirmationRequired, 2, call_id="call_1"))
    _hand_over(state, _event(ev.SkillRunning, 3, skill_name="x"))
    assert state.pending_confirmation is None


def test_auth_required_parks_the_turn() -> None:
    """runtime_connection.auth_required records the pause and its time."""
    state = TurnState("c1")
    pause = _event(ev.RuntimeConnectionAuthRequired, 2, runtime_connection_attempt_id="rca")
    assert _hand_over(state, pause) is Action.AUTH_PAUSE
    assert state.is_parked()
    assert state.auth_paused_at == "2026-06-08T12:00:02.000Z"
    assert state.cursor().auth_attempt_id == "rca"


def test_unknown_and_malformed_events_are_delivered_and_advance_the_cursor() -> None:
    """Persisted events of unknown type, or malformed ones, are delivered, not lost."""
    state = TurnState("c1")
    unknown = ev.UnknownEvent(type="x.y", event_id="u1", genie_run_id="r1", seq_num=1)
    malformed = ev.MalformedEvent(type="agent.message", event_id="m1", genie_run_id="r1", seq_num=2)
    assert _hand_over(state, unknown) is Action.DELIVER
    assert _hand_over(state, malformed) is Action.DELIVER
    assert state.last_event_id == "m1"


def test_cursor_round_trips_through_json() -> None:
    """A cursor serialises to JSON and back unchanged."""
    state = TurnState("c1", message="hello", sent_at="2026-06-08T12:00:00Z")
    _hand_over(state, _event(ev.SkillConfirmationRequired, 1, call_id="call_1"))
    state.record_decision("call_1", "rejected")
    cursor = state.cursor()
    assert StreamCursor.from_json(cursor.to_json()) == cursor
    assert cursor.decided == {"call_1": "rejected"}


def test_state_from_cursor_drops_what_the_cursor_covers() -> None:
    """A turn resumed from a cursor treats events at or before it as already delivered."""
    first = TurnState("c1")
    for seq in (1, 2, 3):
        _hand_over(first, _event(ev.AgentMessage, seq, message=str(seq)))
    resumed = TurnState.from_cursor(first.cursor())
    assert resumed.observe(_event(ev.AgentMessage, 2, message="2")) is Action.DUPLICATE
    assert resumed.observe(_event(ev.AgentMessage, 3, message="3")) is Action.DUPLICATE
    assert resumed.observe(_event(ev.AgentMessage, 4, message="4")) is Action.DELIVER


def test_a_pending_confirmation_survives_a_cursor() -> None:
    """A confirmation still waiting when the cursor was taken is carried to the resumed turn."""
    state = TurnState("c1")
    confirm = _event(ev.SkillConfirmationRequired, 2, call_id="call_1")
    _hand_over(state, confirm)
    resumed = TurnState.from_cursor(StreamCursor.from_json(state.cursor().to_json()))
    assert resumed.pending_confirmation == confirm
    state.record_decision("call_1", "approved")
    assert TurnState.from_cursor(state.cursor()).pending_confirmation is None


def test_decisions_survive_a_cursor() -> None:
    """A decision recorded in a cursor is not asked for again after resuming."""
    state = TurnState("c1")
    state.record_decision("call_1", "approved")
    resumed = TurnState.from_cursor(state.cursor())
    confirm = _event(ev.SkillConfirmationRequired, 5, call_id="call_1")
    assert resumed.observe(confirm) is Action.DELIVER


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-06-08T12:34:56Z", dt.datetime(2026, 6, 8, 12, 34, 56, tzinfo=dt.timezone.utc)),
        (
            "2026-06-08T12:34:56.1Z",
            dt.datetime(2026, 6, 8, 12, 34, 56, 100000, tzinfo=dt.timezone.utc),
        ),
        (
            "2026-06-08T12:34:56.123456789+00:00",
            dt.datetime(2026, 6, 8, 12, 34, 56, 123456, tzinfo=dt.timezone.utc),
        ),
        (
            "2026-06-08T14:34:56+02:00",
            dt.datetime(2026, 6, 8, 12, 34, 56, tzinfo=dt.timezone.utc),
        ),
        ("2026-06-08T12:34:56", dt.datetime(2026, 6, 8, 12, 34, 56, tzinfo=dt.timezone.utc)),
        ("not a date", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_timestamp_is_tolerant(text: str | None, expected: dt.datetime | None) -> None:
    """RFC 3339 with any fraction length, Z or offset; garbage gives None."""
    assert parse_timestamp(text) == expected


def test_sort_key_orders_by_time_then_seq_then_id() -> None:
    """Persisted events order by (created_at, seq_num, event_id), across formats."""
    events = [
        {"created_at": "2026-06-08T12:00:01Z", "seq_num": 2, "event_id": "b"},
        {"created_at": "2026-06-08T12:00:00.500+00:00", "seq_num": 9, "event_id": "z"},
        {"created_at": "2026-06-08T12:00:01Z", "seq_num": 1, "event_id": "c"},
        {"created_at": "2026-06-08T12:00:01Z", "seq_num": 1, "event_id": "a"},
    ]
    assert [e["event_id"] for e in sorted(events, key=sort_key)] == ["z", "a", "c", "b"]
