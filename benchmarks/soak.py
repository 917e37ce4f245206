"""Soak: 10,000 turns through one ``GenieClient``; memory and file descriptors must stay flat.

The simulator (:class:`genie_async.testing.GenieSimulator`) runs in a child process (this
script with ``--serve``), so only the client lives in the measured process. At start-up the
child scripts a mixed workload, picked by the first word of each message:

* ``plain``   one short reply;
* ``multi``   four messages;
* ``skill``   a message, a skill (``skill.running`` / ``skill.completed``), the answer;
* ``slow``    a message, 60 ms of keep-alive pings, the answer;
* ``confirm`` a skill confirmation, approved by the client's hook, then the answer;
* ``drop``    the stream is cut after two events and the turn recovered by a reconnect
  with ``Last-Event-ID``.

The parent runs ``--turns`` turns (in the order plain, multi, plain, skill, plain, confirm,
multi, slow, skill, drop, repeated) through ``--concurrency`` workers sharing one client;
each worker starts a new conversation every 50 turns. Every turn is checked (completed,
the expected final text). Every ``--sample-every`` turns (500 by default) the process's RSS
(``VmRSS`` in ``/proc/self/status``), its open file descriptors (``/proc/self/fd``), its
asyncio tasks and the client's pooled connections are sampled, after a ``gc.collect()``,
and printed as a table. The verdict compares the sample at 1,000 turns (the warm-up is
over by then) with the last one: ``flat`` when RSS grew by less than ``--max-rss-growth``
MiB (10) and the descriptors by fewer than ``--max-fd-growth`` (5), else ``GROWING``.

Usage::

    python benchmarks/soak.py                   # 10,000 turns, 8 concurrent conversations
    python benchmarks/soak.py --quick           # 1,000 turns (sampled every 100, from 200)
    python benchmarks/soak.py --turns 50000 --concurrency 16

Exits 1 when a turn failed or the verdict is ``GROWING``, else 0. Linux only (``/proc``).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import json
import os
import platform
import re
import sys
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import aiohttp

import genie_async
from genie_async import Approve, GenieClient, RetryPolicy, SkillConfirmationRequired
from genie_async.testing import Confirm, GenieSimulator, Say, Skill, StreamFault, Turn, Wait

DEFAULT_TURNS = 10_000
QUICK_TURNS = 1_000
DEFAULT_CONCURRENCY = 8
TURNS_PER_CONVERSATION = 50
SERVER_START_TIMEOUT = 60.0
SCRIPT = Path(__file__).resolve()

#: The workload, one entry per turn, repeated: mostly plain traffic, some of everything.
MIX = ("plain", "multi", "plain", "skill", "plain", "confirm", "multi", "slow", "skill", "drop")
#: The final text each kind of turn must end with.
FINAL_TEXT = {
    "plain": "Hello!",
    "multi": "Part 4 of 4.",
    "skill": "You have 12 days of PTO.",
    "slow": "Thanks for waiting.",
    "confirm": "Submitted.",
    "drop": "Recovered: three.",
}


# --- the child process: a simulator with a fixed scenario ----------------------------------


def _script(sim: GenieSimulator) -> None:
    """The turns the child serves, chosen by the message's first word."""

    def rule(kind: str, turn: Turn) -> None:
        sim.on_message(re.compile(rf"^{kind}\b"), turn)

    rule("plain", Turn(Say(FINAL_TEXT["plain"])))
    rule("multi", Turn(*(Say(f"Part {n} of 4.") for n in range(1, 5))))
    rule("skill", Turn(Say("Checking…"), Skill("Get PTO balance"), Say(FINAL_TEXT["skill"])))
    rule("slow", Turn(Say("Thinking…"), Wait(0.06), Say(FINAL_TEXT["slow"])))
    rule(
        "confirm",
        Turn(
            Say("I can file that."),
            Confirm("Submit time off", on_approve=(Say(FINAL_TEXT["confirm"]),)),
        ),
    )
    rule(
        "drop",
        Turn(
            Say("one"),
            Say("two"),
            Say(FINAL_TEXT["drop"]),
            faults=[StreamFault("abort", after_events=2)],  # cut after started + "one"
        ),
    )


async def serve() -> None:
    """Serve until stdin closes (the parent exits or says so); print how to connect first."""
    async with GenieSimulator(ping_interval=0.02, topic_delay=0.0) as sim:
        _script(sim)
        print(
            json.dumps(
                {
                    "url": sim.url,
                    "genie_id": sim.genie_id,
                    "api_key": sim.api_key,
                    "user_id": sim.user_id,
                }
            ),
            flush=True,
        )
        await asyncio.to_thread(sys.stdin.read)  # returns at EOF


@dataclass(frozen=True)
class Server:
    url: str
    genie_id: str
    api_key: str
    user_id: str


class Child:
    """The simulator process: started with this script's ``--serve``, stopped by closing
    its stdin (or, failing that, by terminating this one process)."""

    def __init__(self) -> None:
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> Server:
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            str(SCRIPT),
            "--serve",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        assert self.process.stdout is not None
        line = await asyncio.wait_for(self.process.stdout.readline(), SERVER_START_TIMEOUT)
        if not line:
            raise RuntimeError("the simulator process exited before it was ready")
        return Server(**json.loads(line))

    async def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.returncode is not None:
            return
        assert process.stdin is not None
        process.stdin.close()
        try:
            await asyncio.wait_for(process.wait(), 10)
        except asyncio.TimeoutError:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 10)
            except asyncio.TimeoutError:
                process.kill()
                await process.wait()


# --- measuring ------------------------------------------------------------------------------


def rss_mib() -> float:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024  # the value is in kB
    raise RuntimeError("no VmRSS in /proc/self/status")


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def pooled_connections(client: GenieClient) -> int:
    """Connections the client's pool holds (checked out plus idle)."""
    session = client._core._session
    if session is None or session.closed or session.connector is None:
        return 0
    connector = session.connector
    idle = sum(len(conns) for conns in connector._conns.values())
    return len(connector._acquired) + idle


HEADER = f"{'turns':>8}  {'elapsed s':>9}  {'RSS MiB':>8}  {'fds':>5}  {'tasks':>5}  {'pool':>5}"


@dataclass(frozen=True)
class Sample:
    turns: int
    elapsed: float
    rss: float
    fds: int
    tasks: int
    pool: int


@dataclass
class Soak:
    turns: int
    concurrency: int
    sample_every: int
    client: GenieClient
    started: float = field(default_factory=time.perf_counter)
    completed: int = 0
    failures: list[str] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    _numbers: itertools.count[int] = field(default_factory=itertools.count)

    def sample(self) -> None:
        gc.collect()
        row = Sample(
            turns=self.completed,
            elapsed=time.perf_counter() - self.started,
            rss=rss_mib(),
            fds=open_fds(),
            tasks=len(asyncio.all_tasks()),
            pool=pooled_connections(self.client),
        )
        self.samples.append(row)
        print(
            f"{row.turns:>8,}  {row.elapsed:>9.1f}  {row.rss:>8.1f}  {row.fds:>5}  "
            f"{row.tasks:>5}  {row.pool:>5}",
            flush=True,
        )

    async def worker(self) -> None:
        conversation = await self.client.create_conversation()
        done_here = 0
        while (number := next(self._numbers)) < self.turns:
            if done_here and done_here % TURNS_PER_CONVERSATION == 0:
                conversation = await self.client.create_conversation()
            kind = MIX[number % len(MIX)]
            try:
                reply = await conversation.ask(f"{kind} {number}", on_skill_confirmation=approve)
                if reply.outcome != "completed" or reply.text != FINAL_TEXT[kind]:
                    self.failures.append(f"turn {number} ({kind}): {reply.outcome} {reply.text!r}")
            except genie_async.GenieError as exc:
                self.failures.append(f"turn {number} ({kind}): {type(exc).__name__}: {exc}")
                conversation = await self.client.create_conversation()  # it may be busy
            done_here += 1
            self.completed += 1
            if self.completed % self.sample_every == 0:
                self.sample()


async def approve(event: SkillConfirmationRequired) -> Approve:
    return Approve()


# --- running ------------------------------------------------------------------------------


def _machine() -> None:
    print("machine:")
    print(f"  python        {platform.python_implementation()} {platform.python_version()}")
    print(f"  platform      {platform.platform()}")
    print(f"  cpus          {os.cpu_count()}")
    print(f"  event loop    {type(asyncio.get_running_loop()).__module__}")
    print(f"  aiohttp       {aiohttp.__version__}")
    print(f"  msgspec       {metadata.version('msgspec')}")
    print(f"  genie_async   {genie_async.__version__}")


def verdict(
    samples: list[Sample], warm_turns: int, max_rss: float, max_fds: int
) -> tuple[bool, str]:
    """(flat, explanation): growth from the sample at ``warm_turns`` to the last one."""
    warm = next((s for s in samples if s.turns >= warm_turns), None)
    last = samples[-1] if samples else None
    if warm is None or last is None or last is warm:
        return False, "not enough samples after the warm-up to judge"
    rss_growth = last.rss - warm.rss
    fd_growth = last.fds - warm.fds
    flat = rss_growth < max_rss and fd_growth < max_fds
    return flat, (
        f"from {warm.turns:,} to {last.turns:,} turns: RSS {rss_growth:+.1f} MiB "
        f"(bound < {max_rss:g}), fds {fd_growth:+d} (bound < {max_fds}), "
        f"tasks {last.tasks - warm.tasks:+d}, pooled connections {last.pool - warm.pool:+d}"
    )


async def run(args: argparse.Namespace) -> int:
    turns: int = args.turns
    sample_every: int = args.sample_every or min(500, max(1, turns // 10))
    warm_turns: int = args.warm_turns if args.warm_turns is not None else min(1_000, turns // 5)
    _machine()
    child = Child()
    try:
        server = await child.start()
        retry = RetryPolicy(wait_initial=0.01, wait_max=0.05)  # drops recover in milliseconds
        async with GenieClient(
            server.genie_id,
            base_url=server.url,
            api_key=server.api_key,
            user_id=server.user_id,
            retry=retry,
        ) as client:
            print(
                f"\nsoak: {turns:,} turns, {args.concurrency} concurrent conversations, "
                f"simulator pid {child.process.pid if child.process else '?'}; "
                f"sampled every {sample_every:,} turns, judged from {warm_turns:,}\n"
            )
            print(HEADER)
            soak = Soak(turns, args.concurrency, sample_every, client)
            soak.sample()  # the client before any turn
            await asyncio.gather(*(soak.worker() for _ in range(args.concurrency)))
            if soak.samples[-1].turns != soak.completed:
                soak.sample()
            elapsed = time.perf_counter() - soak.started
    finally:
        await child.stop()
    flat, why = verdict(soak.samples, warm_turns, args.max_rss_growth, args.max_fd_growth)
    print(
        f"\n{soak.completed:,} turns in {elapsed:.1f} s ({soak.completed / elapsed:,.0f} turns/s)"
    )
    if soak.failures:
        print(f"FAILED turns: {len(soak.failures)}, e.g.")
        for failure in soak.failures[:5]:
            print(f"  {failure}")
    print(f"growth {why}")
    print(f"verdict: {'flat' if flat else 'GROWING'}")
    return 0 if flat and not soak.failures else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--turns", type=int, default=DEFAULT_TURNS, help="turns to run")
    parser.add_argument("--quick", action="store_true", help=f"a short run: {QUICK_TURNS:,} turns")
    parser.add_argument(
        "--concurrency", type=int, default=DEFAULT_CONCURRENCY, help="concurrent conversations"
    )
    parser.add_argument(
        "--sample-every", type=int, default=0, help="turns between samples (default: 500)"
    )
    parser.add_argument(
        "--warm-turns", type=int, default=None, help="the sample growth is judged from (1,000)"
    )
    parser.add_argument("--max-rss-growth", type=float, default=10.0, help="MiB")
    parser.add_argument("--max-fd-growth", type=int, default=5)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        asyncio.run(serve())
        return 0
    if args.quick:
        args.turns = QUICK_TURNS
    if args.turns < 1 or args.concurrency < 1:
        parser.error("--turns and --concurrency must be at least 1")
    if not Path("/proc/self/status").exists():
        parser.error("the soak reads /proc/self: Linux only")
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
