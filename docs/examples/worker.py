"""A queue worker that survives being killed mid-turn: checkpoint ``stream.cursor``, resume.

Against the bundled simulator (enqueues a few jobs, processes them, exits 0)::

    python docs/examples/worker.py --simulator

Against your genie: enqueue jobs, then run any number of workers on the same state
directory (credentials from the environment, as for ``genie-async chat``)::

    export GENIE_API_KEY=… GENIE_USER_ID=…
    python docs/examples/worker.py --state-dir jobs --enqueue "Summarize ticket 4312"
    python docs/examples/worker.py --state-dir jobs --genie gin-… --data-center us

The queue is a directory (so that processes can share it): ``jobs/`` holds the jobs,
``checkpoints/`` what each job's turn has delivered, ``locks/`` one lock file per job, held
(``flock``) by the process working on it, ``failures/`` how often each job failed (after
``MAX_ATTEMPTS`` it is set aside). The operating system releases a dead process's
locks, so a job whose worker was killed is free again, with its checkpoint.

After every event the worker writes the checkpoint: the events delivered so far together with
``stream.cursor`` taken right after them, in one atomic file replace. A worker that finds an
unfinished job with a checkpoint continues it with ``conversation.resume(cursor)``, which
delivers exactly the events after the cursor: none lost, none twice. (A real deployment would
keep the same pair in one database transaction.) Each process works on one job at a time;
run more processes for more throughput. POSIX only: it uses ``fcntl.flock``.

Sections excerpted by the documentation (``--8<--`` markers): ``store``, ``claim``,
``process-job``, ``checkpoint``, ``worker-loop``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import logging
import os
import secrets
import signal
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec

from genie_async import (
    EventStream,
    GenieClient,
    GenieError,
    GenieEvent,
    MessageNotConfirmedError,
    RuntimeConnectionAuthRequired,
    SkillConfirmationRequired,
    StreamCursor,
)
from genie_async.testing import Confirm, GenieSimulator, Say, Skill, Turn

log = logging.getLogger("genie_worker")

# The worker runs unattended: it approves these skills and refuses every other one.
AUTO_APPROVED_SKILLS = frozenset({"Create Ticket Summary"})
# A job that failed this many times is set aside (a dead letter) instead of retried forever.
MAX_ATTEMPTS = 5


class Job(msgspec.Struct, frozen=True):
    """A turn to run: ``text`` sent as the end user ``user_id``, in a new conversation."""

    job_id: str
    user_id: str
    text: str


class Checkpoint(msgspec.Struct):
    """What a job's turn has delivered, and the cursor right after it: saved together."""

    conversation_id: str
    cursor: StreamCursor
    events: list[dict[str, Any]] = msgspec.field(default_factory=list)
    done: bool = False
    outcome: str | None = None
    final_text: str | None = None


# --8<-- [start:store]
def write_atomically(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` so that a crash leaves the old or the new file, whole."""
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())  # the bytes are on disk before the name points at them
        os.replace(temp, path)  # atomic on POSIX
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)  # and the rename itself survives a power cut
    finally:
        os.close(directory)


class JobStore:
    """Jobs, checkpoints and locks in one directory shared by every worker."""

    def __init__(self, root: Path) -> None:
        self.jobs, self.checkpoints, self.locks, self.failures = (
            root / "jobs",
            root / "checkpoints",
            root / "locks",
            root / "failures",
        )
        for directory in (self.jobs, self.checkpoints, self.locks, self.failures):
            directory.mkdir(parents=True, exist_ok=True)

    def enqueue(self, user_id: str, text: str) -> Job:
        # Names sort in enqueue order: time first.
        job = Job(f"{time.time_ns():020d}-{secrets.token_hex(4)}", user_id, text)
        write_atomically(self.jobs / f"{job.job_id}.json", msgspec.json.encode(job))
        return job

    def checkpoint(self, job_id: str) -> Checkpoint | None:
        try:
            data = (self.checkpoints / f"{job_id}.json").read_bytes()
        except FileNotFoundError:
            return None
        return msgspec.json.decode(data, type=Checkpoint)

    def save(self, job_id: str, checkpoint: Checkpoint) -> None:
        write_atomically(self.checkpoints / f"{job_id}.json", msgspec.json.encode(checkpoint))

    def failed_attempts(self, job_id: str) -> int:
        try:
            return int((self.failures / job_id).read_text())
        except FileNotFoundError:
            return 0

    def record_failure(self, job_id: str) -> int:
        """Count a failed attempt (call it holding the job's lock); returns the count."""
        count = self.failed_attempts(job_id) + 1
        write_atomically(self.failures / job_id, str(count).encode())
        return count

    # --8<-- [end:store]

    # --8<-- [start:claim]
    def claim(self) -> tuple[Job, int] | None:
        """An unfinished job nobody holds, and the descriptor of its lock (close it to
        release). Jobs with a checkpoint (their worker died) come first, then the oldest."""
        candidates = []
        for path in sorted(self.jobs.glob("*.json")):
            if self.failed_attempts(path.stem) >= MAX_ATTEMPTS:
                continue  # set aside: a person looks at it
            checkpoint = self.checkpoint(path.stem)
            if checkpoint is None or not checkpoint.done:
                candidates.append((checkpoint is None, path))
        for _, path in sorted(candidates):
            fd = os.open(self.locks / f"{path.stem}.lock", os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)  # another live worker has it
                continue
            checkpoint = self.checkpoint(path.stem)  # re-read under the lock
            if checkpoint is not None and checkpoint.done:
                os.close(fd)
                continue
            return msgspec.json.decode(path.read_bytes(), type=Job), fd
        return None

    # --8<-- [end:claim]


# --8<-- [start:process-job]
async def process(client: GenieClient, store: JobStore, job: Job) -> Checkpoint:
    """Run (or continue) the job's turn to its end, checkpointing after every event."""
    end_user = client.as_user(job.user_id)  # a view on the shared client: same pool
    checkpoint = await asyncio.to_thread(store.checkpoint, job.job_id)
    if checkpoint is None:
        conversation = await end_user.create_conversation()
        stream = conversation.send(job.text)
        # Saved before anything is sent: if we die after the POST, the successor's resume()
        # finds the message in the conversation's history instead of sending it twice.
        checkpoint = Checkpoint(conversation.conversation_id, stream.cursor)
        await asyncio.to_thread(store.save, job.job_id, checkpoint)
        log.info("job %s: sending %r", job.job_id, job.text)
    else:
        conversation = end_user.conversation(checkpoint.conversation_id)
        # Events up to the cursor are in the checkpoint already; resume delivers the rest.
        stream = conversation.resume(checkpoint.cursor)
        log.info("job %s: resuming after %d events", job.job_id, len(checkpoint.events))
    try:
        await run_turn(store, job, stream, checkpoint)
    except MessageNotConfirmedError:
        # The predecessor died before its message reached the genie: send it now.
        log.info("job %s: the message was never accepted; sending it", job.job_id)
        await run_turn(store, job, conversation.send(job.text), checkpoint)
    return checkpoint


# --8<-- [end:process-job]


# --8<-- [start:checkpoint]
async def run_turn(store: JobStore, job: Job, stream: EventStream, checkpoint: Checkpoint) -> None:
    seen = {event.get("event_id") for event in checkpoint.events}
    async with stream:
        async for event in stream:
            if not (isinstance(event, SkillConfirmationRequired) and event.event_id in seen):
                # (A turn resumed while a confirmation waited asks for it again: logged once.)
                checkpoint.events.append(msgspec.to_builtins(event))
            checkpoint.cursor = stream.cursor
            # Durable before we go on: a kill from here on loses nothing and repeats nothing.
            await asyncio.to_thread(store.save, job.job_id, checkpoint)
            await act_on(stream, event)
            if stream.cursor != checkpoint.cursor:
                checkpoint.cursor = stream.cursor  # now with the decision: never asked again
                await asyncio.to_thread(store.save, job.job_id, checkpoint)
    checkpoint.done, checkpoint.outcome = True, stream.outcome
    checkpoint.final_text = stream.final_text
    await asyncio.to_thread(store.save, job.job_id, checkpoint)
    log.info("job %s: done (%s): %r", job.job_id, stream.outcome, stream.final_text)


async def act_on(stream: EventStream, event: GenieEvent) -> None:
    """The two pauses, decided without a person: a policy, and no sign-in."""
    if isinstance(event, SkillConfirmationRequired):
        if event.skill_name in AUTO_APPROVED_SKILLS:
            await stream.approve(event.call_id)
        else:
            reason = f"{event.skill_name} needs a person's confirmation; this job is unattended."
            await stream.reject(reason, call_id=event.call_id)
    elif isinstance(event, RuntimeConnectionAuthRequired):
        await stream.decline_connection("This job runs unattended; nobody can sign in.")


# --8<-- [end:checkpoint]


# --8<-- [start:worker-loop]
async def work(
    client: GenieClient,
    store: JobStore,
    stop: asyncio.Event,
    *,
    exit_when_idle: bool = False,
    poll_interval: float = 2.0,
) -> int:
    """Process jobs until ``stop`` is set (or, with ``exit_when_idle``, none is left).
    Returns how many jobs failed."""
    failed = 0
    while not stop.is_set():
        claimed = await asyncio.to_thread(store.claim)
        if claimed is None:
            if exit_when_idle:
                break
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), poll_interval)
            continue
        job, lock = claimed
        try:
            await process(client, store, job)
        except GenieError as exc:
            # Left unfinished with its checkpoint: the next claim (here or elsewhere) retries,
            # up to MAX_ATTEMPTS; after a pause, so that a failing job is not a busy loop.
            attempts = await asyncio.to_thread(store.record_failure, job.job_id)
            log.warning("job %s failed (attempt %d): %s", job.job_id, attempts, exc)
            if attempts >= MAX_ATTEMPTS:
                log.warning("job %s set aside after %d failed attempts", job.job_id, attempts)
            failed += 1
        else:
            continue
        finally:
            os.close(lock)  # releases the flock
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), poll_interval)
    return failed


# --8<-- [end:worker-loop]


def script_demo_genie(sim: GenieSimulator) -> None:
    """The simulated genie: a long turn with progress messages and a confirmation."""
    sim.default_turn = Turn(
        Say("Reading the ticket…"),
        Skill("Fetch ticket", duration=0.2),
        Confirm("Create Ticket Summary", parameters={"format": "short"}),
        Say("Summary: the customer cannot log in since the update.", delay=0.2),
        Say("Suggested reply drafted.", delay=0.2),
    )


@contextlib.asynccontextmanager
async def genie_client(args: argparse.Namespace) -> AsyncIterator[GenieClient]:
    genie_id = args.genie or os.environ.get("GENIE_ID")
    api_key, user_id = os.environ.get("GENIE_API_KEY"), os.environ.get("GENIE_USER_ID")
    data_center = args.data_center or os.environ.get("GENIE_DATA_CENTER")
    base_url = args.base_url or os.environ.get("GENIE_BASE_URL")
    if not (genie_id and api_key and user_id and (data_center or base_url)):
        raise SystemExit(
            "Pass --simulator, or --genie (or GENIE_ID) with --data-center (or "
            "GENIE_DATA_CENTER), and GENIE_API_KEY + GENIE_USER_ID in the environment."
        )
    async with GenieClient(
        genie_id,
        api_key=api_key,
        user_id=user_id,
        data_center=data_center,
        base_url=None if data_center else base_url,
    ) as client:
        yield client


async def main_async(args: argparse.Namespace) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)  # finish nothing new; the checkpoint holds
    async with contextlib.AsyncExitStack() as stack:
        if args.simulator:
            sim = await stack.enter_async_context(GenieSimulator(ping_interval=5.0))
            script_demo_genie(sim)
            state_dir = args.state_dir or Path(stack.enter_context(tempfile.TemporaryDirectory()))
            store = JobStore(state_dir)
            for ticket in ("4312", "4313", "4314"):
                store.enqueue(sim.add_user(), f"Summarize ticket {ticket}")
            client = await stack.enter_async_context(
                GenieClient(
                    sim.genie_id, base_url=sim.url, api_key=sim.api_key, user_id=sim.user_id
                )
            )
            exit_when_idle = True
        else:
            store = JobStore(args.state_dir or Path("worker-state"))
            if args.enqueue:
                user = args.user or os.environ.get("GENIE_USER_ID")
                if not user:
                    raise SystemExit("--enqueue needs --user or GENIE_USER_ID: who asks.")
                for text in args.enqueue:
                    log.info("enqueued job %s", store.enqueue(user, text).job_id)
                return 0
            client = await stack.enter_async_context(genie_client(args))
            exit_when_idle = args.exit_when_idle
        failed = await work(client, store, stop, exit_when_idle=exit_when_idle)
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="A queue worker that resumes killed turns.")
    parser.add_argument("--simulator", action="store_true", help="demo jobs, then exit")
    parser.add_argument("--state-dir", type=Path, help="the shared queue (default worker-state)")
    parser.add_argument("--enqueue", action="append", metavar="TEXT", help="add a job and exit")
    parser.add_argument("--user", help="the end user of --enqueue jobs; default $GENIE_USER_ID")
    parser.add_argument("--exit-when-idle", action="store_true", help="stop when no job is left")
    parser.add_argument("--genie", help="the genie id (gin-…); default $GENIE_ID")
    parser.add_argument("--data-center", help="us, eu, jp, sg, au, il or in")
    parser.add_argument("--base-url", help="an explicit API origin instead of a data center")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    return asyncio.run(main_async(parser.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
