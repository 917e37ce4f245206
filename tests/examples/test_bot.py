"""The chat bot: many users on one client, bounded concurrency, and a graceful stop."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

from genie_async import GenieClient
from genie_async.testing import GenieSimulator, Say, Turn, Wait

from .conftest import EXAMPLES

BOT = EXAMPLES / "bot.py"


def client_for(sim: GenieSimulator) -> GenieClient:
    return GenieClient(sim.genie_id, base_url=sim.url, api_key=sim.api_key, user_id=sim.user_id)


async def test_serves_many_users_with_one_client(bot: ModuleType) -> None:
    """Each user gets their answers in order, in one conversation of their own, ≤ N at once."""
    async with GenieSimulator(ping_interval=0.2) as sim:
        bot.script_demo_genie(sim)
        users = [sim.add_user() for _ in range(5)]
        replies: dict[str, list[str]] = collections.defaultdict(list)
        peak = 0
        async with client_for(sim) as client:

            async def deliver(user_id: str, text: str) -> None:
                nonlocal peak
                peak = max(peak, the_bot.turns_running)
                replies[user_id].append(text)

            the_bot = bot.Bot(client, deliver, concurrency=3)
            stop = asyncio.Event()
            running = asyncio.create_task(the_bot.run(stop))
            for user_id in users:
                await the_bot.inbox.put(bot.Incoming(user_id, "How much PTO do I have?"))
                await the_bot.inbox.put(bot.Incoming(user_id, "Book Dec 21-23 off"))
                await the_bot.inbox.put(bot.Incoming(user_id, "Delete my account"))
            await asyncio.wait_for(the_bot.inbox.join(), timeout=60)
            stop.set()
            await asyncio.wait_for(running, timeout=30)
        assert the_bot.handled == 15
        assert 1 < peak <= 3
        for user_id in users:
            assert replies[user_id] == [
                "You have **12 days** of PTO left.",
                "Booked.",
                "I did not delete it: Delete Account needs a person's confirmation; use the "
                "web app.",
            ]
            mine = [c for c in sim.conversations if c.user_id == user_id]
            assert len(mine) == 1  # one conversation per user, remembered
        assert {r.user_id for r in sim.requests("send")} == set(users)


async def test_auth_link_is_delivered_to_the_user(bot: ModuleType) -> None:
    """A connection pause sends the user the link; once authorized, the answer follows."""
    async with GenieSimulator(ping_interval=0.2) as sim:
        bot.script_demo_genie(sim)
        user_id = sim.add_user()
        replies: list[str] = []
        async with client_for(sim) as client:

            async def deliver(user: str, text: str) -> None:
                replies.append(text)
                if text.startswith("Please connect"):
                    sim.authorize()  # the user signs in

            the_bot = bot.Bot(client, deliver)
            await asyncio.wait_for(the_bot.handle(bot.Incoming(user_id, "Show my deals")), 60)
        assert replies[0].startswith(f"Please connect Salesforce: {sim.url}/")
        assert replies[1:] == ["You have **3** open deals."]


async def test_stop_cancels_turns_past_the_grace_period(bot: ModuleType) -> None:
    """A turn still running after the grace period is cancelled; nothing is left behind."""
    async with GenieSimulator(ping_interval=0.2) as sim:
        sim.on_message("quick", Turn(Say("quick answer", delay=0.3)))
        sim.on_message("stuck", Turn(Say("thinking…"), Wait(None)))
        replies: list[str] = []
        async with client_for(sim) as client:

            async def deliver(user_id: str, text: str) -> None:
                replies.append(text)

            # The grace must outlast the quick turn on a loaded machine; the stuck turn then
            # waits all of it, so keep it short but not tight.
            the_bot = bot.Bot(client, deliver, concurrency=4, grace=3.0)
            stop = asyncio.Event()
            running = asyncio.create_task(the_bot.run(stop))
            await the_bot.inbox.put(bot.Incoming(sim.add_user(), "stuck"))
            await the_bot.inbox.put(bot.Incoming(sim.add_user(), "quick"))
            for _ in range(500):  # until both turns are under way
                if len(sim.requests("send")) == 2 and any(
                    e.type == "agent.message" for c in sim.conversations for e in c.events
                ):
                    break
                await asyncio.sleep(0.02)
            assert len(sim.requests("send")) == 2
            stop.set()
            await asyncio.wait_for(running, timeout=10)
            assert the_bot.in_flight == set()
        assert replies == ["quick answer"]  # finished within the grace; the stuck one was not
        assert the_bot.handled == 1
        for _ in range(250):  # the cancelled turn's connection is closed
            if sim.open_streams == 0:
                break
            await asyncio.sleep(0.02)
        assert sim.open_streams == 0
    assert asyncio.all_tasks() == {asyncio.current_task()}  # the bot left no task behind


async def test_sigterm_mid_run_lets_turns_in_flight_finish() -> None:
    """SIGTERM while turns run: they finish, the rest is not started, exit 0, no tasks left."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(BOT),
        "--simulator",
        "--concurrency",
        "2",
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stderr is not None
    lines: list[str] = []
    while not any("turn started" in line for line in lines):
        line = await asyncio.wait_for(process.stderr.readline(), timeout=60)
        assert line, "the bot ended before any turn started:\n" + "".join(lines)
        lines.append(line.decode())
    process.send_signal(signal.SIGTERM)
    _, rest = await asyncio.wait_for(process.communicate(), timeout=60)
    log = "".join(lines) + rest.decode()
    assert process.returncode == 0, log
    assert "tasks left: 0" in log
    assert ", 0 cancelled" in log
    started, finished = log.count("turn started"), log.count("turn finished")
    assert started == finished  # every turn that began was answered
    assert 0 < finished < 20  # and the load was cut short: intake stopped
    assert "messages not started" in log


def test_simulator_load_runs_with_one_command() -> None:
    """`python docs/examples/bot.py --simulator` serves its scripted load and exits 0."""
    done = subprocess.run(
        [sys.executable, str(BOT), "--simulator"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "stopped after 20 turns; tasks left: 0" in done.stderr


async def test_a_chatty_user_does_not_hold_up_the_others(bot: ModuleType) -> None:
    """One user's backlog waits on their own previous turn without taking turn slots: another
    user's message is answered while the backlog is still being worked through."""
    async with GenieSimulator(ping_interval=0.2) as sim:
        sim.on_message("slow", Turn(Say("slow answer", delay=0.5)))
        sim.on_message("quick", Turn(Say("quick answer")))
        chatty, other = sim.add_user(), sim.add_user()
        delivered: list[tuple[str, str]] = []
        async with client_for(sim) as client:

            async def deliver(user_id: str, text: str) -> None:
                delivered.append((user_id, text))

            the_bot = bot.Bot(client, deliver, concurrency=2)
            stop = asyncio.Event()
            running = asyncio.create_task(the_bot.run(stop))
            for _ in range(4):
                await the_bot.inbox.put(bot.Incoming(chatty, "slow"))
            await the_bot.inbox.put(bot.Incoming(other, "quick"))
            await asyncio.wait_for(the_bot.inbox.join(), timeout=60)
            stop.set()
            await asyncio.wait_for(running, timeout=30)
        assert len(delivered) == 5
        # Before the fix the quick answer came after three slow ones (two slots, both held
        # by the chatty user's turn and the next message waiting for it).
        assert delivered.index((other, "quick answer")) <= 1, delivered


def test_reads_messages_from_a_file_on_stdin(tmp_path: Path) -> None:
    """`bot.py ... < messages.tsv`, as documented: a regular file on stdin, blank lines
    skipped; every message answered, then exit 0 at the end of the file. The message text
    never reaches the log."""
    with _served_simulator() as (url, sim_info):
        messages = tmp_path / "messages.tsv"
        first, second = sim_info["users"]
        messages.write_text(f"{first}\tsecret phrase one\n\n{second}\tsecret phrase two\n")
        with messages.open("rb") as stdin:
            done = subprocess.run(
                [sys.executable, str(BOT), "--genie", sim_info["genie_id"], "--base-url", url],
                stdin=stdin,
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
                env={
                    **os.environ,
                    "GENIE_API_KEY": sim_info["api_key"],
                    "GENIE_USER_ID": sim_info["user_id"],
                },
            )
    assert done.returncode == 0, done.stderr
    assert f"-> {first}: You said: secret phrase one" in done.stderr
    assert f"-> {second}: You said: secret phrase two" in done.stderr
    assert "stopped after 2 turns; tasks left: 0" in done.stderr
    assert "turn started" in done.stderr
    started = [line for line in done.stderr.splitlines() if "turn started" in line]
    assert not any("secret" in line for line in started)


@contextlib.contextmanager
def _served_simulator() -> Iterator[tuple[str, dict[str, Any]]]:
    """A simulator serving on loopback from its own thread, for a subprocess to call."""
    ready: queue.Queue[tuple[str, dict[str, Any]]] = queue.Queue()
    loop = asyncio.new_event_loop()
    finished = threading.Event()

    async def serve() -> None:
        async with GenieSimulator(ping_interval=0.2) as sim:
            sim.default_turn = Turn(Say("You said: {message}"))
            users = [sim.add_user(), sim.add_user()]
            info = {
                "genie_id": sim.genie_id,
                "api_key": sim.api_key,
                "user_id": sim.user_id,
                "users": users,
            }
            ready.put((sim.url, info))
            await asyncio.to_thread(finished.wait)

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),))
    thread.start()
    try:
        yield ready.get(timeout=60)
    finally:
        finished.set()
        thread.join(timeout=60)
        loop.close()
