"""The queue worker: a worker killed mid-turn is resumed by another with no event lost or
repeated; jobs are claimed once; a message is never sent twice."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from genie_async import GenieClient
from genie_async.testing import Confirm, GenieSimulator, Say, Skill, Turn

from .conftest import EXAMPLES

WORKER = EXAMPLES / "worker.py"
CONTROL = ("system.ping", "system.stream_interrupted")


def long_turn() -> Turn:
    """A turn of about three seconds: a confirmation early, then many progress messages."""
    parts = [Say(f"part {n}", delay=0.25) for n in range(8)]
    return Turn(
        Say("Reading the ticket…"),
        Confirm("Create Ticket Summary"),
        *parts,
        Skill("Save summary", duration=0.2),
        Say("All done."),
    )


def persisted_event_ids(sim: GenieSimulator) -> list[str]:
    """Every event of the simulator's only run, in order: the whole turn."""
    [conversation] = sim.conversations
    [run] = conversation.runs
    assert run.finished
    return [e.event_id for e in run.events if e.type not in CONTROL]


async def start_worker(sim: GenieSimulator, state_dir: Path) -> asyncio.subprocess.Process:
    env = {**os.environ, "GENIE_API_KEY": sim.api_key, "GENIE_USER_ID": sim.user_id}
    return await asyncio.create_subprocess_exec(
        sys.executable,
        str(WORKER),
        "--state-dir",
        str(state_dir),
        "--base-url",
        sim.url,
        "--genie",
        sim.genie_id,
        "--exit-when-idle",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )


async def test_killed_worker_is_resumed_without_loss_or_repeat(
    worker: ModuleType, tmp_path: Path
) -> None:
    """SIGKILL worker 1 mid-turn; worker 2 finishes it: every event once, in order."""
    async with GenieSimulator(ping_interval=0.2) as sim:
        sim.default_turn = long_turn()
        store = worker.JobStore(tmp_path)
        job = store.enqueue(sim.user_id, "Summarize ticket 4312")

        first = await start_worker(sim, tmp_path)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60
        while True:  # until the checkpoint shows the turn well under way
            checkpoint = store.checkpoint(job.job_id)
            if checkpoint is not None and len(checkpoint.events) >= 6:
                break
            assert first.returncode is None, "worker 1 ended before it could be killed"
            assert loop.time() < deadline, "worker 1 made no progress"
            await asyncio.sleep(0.02)
        first.send_signal(signal.SIGKILL)
        await first.wait()
        await first.communicate()
        killed_at = store.checkpoint(job.job_id)
        assert not killed_at.done
        assert len(killed_at.events) < len(long_turn().steps) + 4  # really mid-turn

        second = await start_worker(sim, tmp_path)
        output, _ = await asyncio.wait_for(second.communicate(), timeout=60)
        assert second.returncode == 0, output.decode()
        assert f"resuming after {len(killed_at.events)} events" in output.decode()

        final = store.checkpoint(job.job_id)
        assert final.done
        assert final.outcome == "completed"
        assert final.final_text == "All done."
        delivered = [event["event_id"] for event in final.events]
        assert delivered[: len(killed_at.events)] == [e["event_id"] for e in killed_at.events]
        assert delivered == persisted_event_ids(sim)  # none lost, none repeated, in order
        assert len(sim.requests("send")) == 1  # the message was sent once
        assert [a.status for a in sim.approvals()] == [200]  # and decided once


async def test_message_never_accepted_is_sent_by_the_successor(
    worker: ModuleType, tmp_path: Path
) -> None:
    """A worker that died after checkpointing but before its POST: the job is sent once."""
    async with GenieSimulator(ping_interval=0.2) as sim:
        sim.default_turn = Turn(Say("Summary ready."))
        store = worker.JobStore(tmp_path)
        job = store.enqueue(sim.user_id, "Summarize ticket 7")
        async with GenieClient(
            sim.genie_id, base_url=sim.url, api_key=sim.api_key, user_id=sim.user_id
        ) as dead:
            conversation = await dead.create_conversation()
            stream = conversation.send(job.text)  # never iterated: nothing is sent
            store.save(job.job_id, worker.Checkpoint(conversation.conversation_id, stream.cursor))
            await stream.aclose()
        assert sim.requests("send") == []

        async with GenieClient(
            sim.genie_id, base_url=sim.url, api_key=sim.api_key, user_id=sim.user_id
        ) as client:
            assert await worker.work(client, store, asyncio.Event(), exit_when_idle=True) == 0
        final = store.checkpoint(job.job_id)
        assert (final.done, final.final_text) == (True, "Summary ready.")
        assert len(sim.requests("send")) == 1


async def test_message_accepted_before_the_kill_is_not_sent_again(
    worker: ModuleType, tmp_path: Path
) -> None:
    """A worker that died right after its POST: the successor follows that run, no re-send."""
    async with GenieSimulator(ping_interval=0.2) as sim:
        sim.default_turn = Turn(Say("Working…"), Say("Summary ready.", delay=0.2))
        store = worker.JobStore(tmp_path)
        job = store.enqueue(sim.user_id, "Summarize ticket 8")
        async with GenieClient(
            sim.genie_id, base_url=sim.url, api_key=sim.api_key, user_id=sim.user_id
        ) as dead:
            conversation = await dead.create_conversation()
            stream = conversation.send(job.text)
            store.save(job.job_id, worker.Checkpoint(conversation.conversation_id, stream.cursor))
            await stream.aclose()
            await conversation.send(job.text, stream=False)  # the POST got through; then death

        async with GenieClient(
            sim.genie_id, base_url=sim.url, api_key=sim.api_key, user_id=sim.user_id
        ) as client:
            assert await worker.work(client, store, asyncio.Event(), exit_when_idle=True) == 0
        final = store.checkpoint(job.job_id)
        assert final.done
        assert [e.get("message") for e in final.events if e["type"] == "agent.message"] == [
            "Working…",
            "Summary ready.",
        ]
        assert len(sim.requests("send")) == 1


async def test_concurrent_workers_claim_each_job_once(worker: ModuleType, tmp_path: Path) -> None:
    """Two workers on one state directory: every job runs exactly once."""
    async with GenieSimulator(ping_interval=0.2) as sim:
        sim.default_turn = Turn(Say("On it…"), Say("Done: {message}", delay=0.1))
        store = worker.JobStore(tmp_path)
        jobs = [store.enqueue(sim.add_user(), f"job {n}") for n in range(6)]
        async with GenieClient(
            sim.genie_id, base_url=sim.url, api_key=sim.api_key, user_id=sim.user_id
        ) as client:
            stop = asyncio.Event()
            results = await asyncio.gather(
                worker.work(client, worker.JobStore(tmp_path), stop, exit_when_idle=True),
                worker.work(client, worker.JobStore(tmp_path), stop, exit_when_idle=True),
            )
        assert results == [0, 0]
        for job in jobs:
            assert store.checkpoint(job.job_id).final_text == f"Done: {job.text}"
        assert sorted(r.json["message"] for r in sim.requests("send")) == sorted(
            j.text for j in jobs
        )
        # Each job ran as its own end user.
        assert {r.user_id for r in sim.requests("send")} == {j.user_id for j in jobs}


async def test_unattended_policy_rejects_other_skills(worker: ModuleType, tmp_path: Path) -> None:
    """Skills outside the allow-list are rejected with a reason; the turn still completes."""
    async with GenieSimulator(ping_interval=0.2) as sim:
        sim.default_turn = Turn(Confirm("Delete Account", on_reject=[Say("Not deleted: {reason}")]))
        store = worker.JobStore(tmp_path)
        job = store.enqueue(sim.user_id, "Clean up")
        async with GenieClient(
            sim.genie_id, base_url=sim.url, api_key=sim.api_key, user_id=sim.user_id
        ) as client:
            assert await worker.work(client, store, asyncio.Event(), exit_when_idle=True) == 0
        final = store.checkpoint(job.job_id)
        assert final.final_text is not None
        assert final.final_text.startswith("Not deleted: Delete")
        [approval] = sim.approvals()
        assert approval.resolution == "rejected"


def test_simulator_demo_runs_with_one_command() -> None:
    """`python docs/examples/worker.py --simulator` processes its demo jobs and exits 0."""
    done = subprocess.run(
        [sys.executable, str(WORKER), "--simulator"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("done (completed)") == 3


def test_atomic_write_leaves_old_or_new(
    worker: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write that fails midway leaves the previous checkpoint intact and no temp file."""
    target = tmp_path / "checkpoint.json"
    worker.write_atomically(target, b"old")

    def failing_replace(src: str, dst: str) -> None:
        raise OSError("disk gone")

    monkeypatch.setattr(worker.os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk gone"):
        worker.write_atomically(target, b"new")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.json"]


async def test_a_failing_job_is_retried_with_pauses_then_set_aside(
    worker: ModuleType, tmp_path: Path
) -> None:
    """A job that keeps failing (its end user cannot use the genie) is retried a few times,
    pausing between attempts, then set aside; it neither loops hot nor blocks the queue."""
    async with GenieSimulator(ping_interval=0.2) as sim:
        sim.default_turn = Turn(Say("ok"))
        store = worker.JobStore(tmp_path)
        bad = store.enqueue(sim.add_user(status="invited"), "never runs")
        good = store.enqueue(sim.user_id, "runs")
        async with GenieClient(
            sim.genie_id, base_url=sim.url, api_key=sim.api_key, user_id=sim.user_id
        ) as client:
            loop = asyncio.get_running_loop()
            started = loop.time()
            failed = await asyncio.wait_for(
                worker.work(
                    client, store, asyncio.Event(), exit_when_idle=True, poll_interval=0.05
                ),
                timeout=60,
            )
            elapsed = loop.time() - started
        assert failed == worker.MAX_ATTEMPTS
        assert store.failed_attempts(bad.job_id) == worker.MAX_ATTEMPTS
        assert elapsed >= worker.MAX_ATTEMPTS * 0.05  # a pause after every failure
        mine = [r for r in sim.requests("create_conversation") if r.user_id == bad.user_id]
        assert len(mine) == worker.MAX_ATTEMPTS
        assert store.checkpoint(good.job_id).final_text == "ok"
        assert store.claim() is None  # the bad job stays aside
