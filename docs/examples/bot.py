"""A long-running chat bot: many end users, one GenieClient, bounded concurrency, clean stop.

Against the bundled simulator (a scripted load of a few users; exits 0 when it is served)::

    python docs/examples/bot.py --simulator

Against your genie, reading ``user_id<TAB>message`` lines from stdin until EOF (a stand-in
for your chat platform's webhook or socket)::

    export GENIE_API_KEY=… GENIE_USER_ID=…
    python docs/examples/bot.py --genie gin-… --data-center us < messages.tsv

Incoming messages wait on a bounded queue. At most ``--concurrency`` turns run at once, one
at a time per user (a conversation takes one turn at a time); a user's later messages wait
without holding a turn slot, so one chatty user cannot hold up the others. Each user is in
their own
conversation, created on their first message and remembered. The client is shared: each
turn runs as its user through ``client.as_user(user_id)``. SIGINT or SIGTERM stops intake,
lets the turns in flight finish for ``--grace`` seconds, cancels what is left, then closes
the client: no task outlives ``main``.

Sections excerpted by the documentation (``--8<--`` markers): ``bot-setup``,
``conversations``, ``handle-message``, ``dispatch``, ``shutdown``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import stat
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import aiohttp

from genie_async import (
    Approve,
    AuthRequest,
    Conversation,
    GenieClient,
    GenieError,
    Reject,
    SkillConfirmationRequired,
)
from genie_async.testing import Confirm, ConnectAuth, GenieSimulator, Say, Skill, Turn

log = logging.getLogger("genie_bot")

Deliver = Callable[[str, str], Awaitable[None]]
"""Sends a text to a user on your chat platform: ``await deliver(user_id, text)``."""

# Skills the bot may run without asking anyone: it cannot show a confirmation card, so
# everything else is refused (the genie tells the user why).
AUTO_APPROVED_SKILLS = frozenset({"Submit Time Off Request"})


@dataclass(frozen=True)
class Incoming:
    """A message from the chat platform."""

    user_id: str  # the sender's Workato Identity id
    text: str


@dataclass(eq=False)
class UserState:
    conversation: Conversation | None = None
    turn: asyncio.Lock = field(default_factory=asyncio.Lock)  # one turn at a time per user


# --8<-- [start:bot-setup]
class Bot:
    """Serves ``inbox`` until :meth:`run`'s ``stop`` is set; see the module docstring."""

    def __init__(
        self,
        client: GenieClient,
        deliver: Deliver,
        *,
        concurrency: int = 20,
        grace: float = 30.0,
        queue_size: int = 1000,
    ) -> None:
        self.client = client
        self.deliver = deliver
        self.grace = grace
        # Bounded: when the genie falls behind, producers wait instead of memory growing.
        self.inbox: asyncio.Queue[Incoming] = asyncio.Queue(maxsize=queue_size)
        self.in_flight: set[asyncio.Task[None]] = set()
        self.handled = 0
        self.turns_running = 0
        self.not_started = 0  # taken off the inbox, but stopped before their turn began
        self._stopping = False
        # Two bounds: tasks taken off the inbox (as many as it holds), and turns running. A
        # message waiting for its user's previous turn holds a task slot, never a turn slot.
        self._slots = asyncio.Semaphore(queue_size)
        self._turns = asyncio.Semaphore(concurrency)
        self._users: dict[str, UserState] = {}

    # --8<-- [end:bot-setup]

    # --8<-- [start:conversations]
    async def conversation_for(self, user_id: str) -> Conversation:
        """The user's conversation, created on their first message. (Keep the id in your
        database to carry conversations across restarts: ``client.conversation(id)``.)"""
        state = self._users[user_id]
        if state.conversation is None:
            # A cheap view of the shared client acting as this user: same connection pool.
            state.conversation = await self.client.as_user(user_id).create_conversation()
        return state.conversation

    # --8<-- [end:conversations]

    # --8<-- [start:handle-message]
    async def handle(self, message: Incoming) -> None:
        """One turn: send the message, deliver the genie's answer (or what went wrong)."""
        state = self._users.setdefault(message.user_id, UserState())
        # The user's lock first, then a turn slot: waiting on one's own previous turn takes
        # no slot away from other users.
        async with state.turn, self._turns:
            if self._stopping:  # waited for the user's previous turn; too late to start
                self.not_started += 1
                return
            self.turns_running += 1
            # Never the text: messages are personal data, and may hold secrets.
            log.info("turn started for %s (%d characters)", message.user_id, len(message.text))
            try:
                conversation = await self.conversation_for(message.user_id)

                async def on_auth(request: AuthRequest) -> None:
                    # The user signs in out of band; the stream waits, then reads the reply.
                    if request.link is not None:
                        name = request.link.connector_name or "the app"
                        await self.deliver(
                            message.user_id, f"Please connect {name}: {request.link.url}"
                        )

                reply = await conversation.ask(
                    message.text, on_skill_confirmation=confirm, on_auth_required=on_auth
                )
                answer = reply.text or "(the genie had nothing to say)"
            except GenieError as exc:
                # The library's message is safe to log (no secrets); the request id is
                # what Workato support asks for.
                log.warning("turn for %s failed: %s", message.user_id, exc)
                answer = "Sorry, I could not get an answer right now. Please try again."
            try:
                await self.deliver(message.user_id, answer)
            finally:
                self.turns_running -= 1
            self.handled += 1
            log.info("turn finished for %s", message.user_id)

    # --8<-- [end:handle-message]

    # --8<-- [start:dispatch]
    async def run(self, stop: asyncio.Event) -> None:
        """Take messages until ``stop`` is set, then shut down gracefully."""
        dispatcher = asyncio.create_task(self._dispatch())
        await stop.wait()
        await self.shutdown(dispatcher)

    async def _dispatch(self) -> None:
        while True:
            await self._slots.acquire()  # a free slot first: never hold a message unserved
            try:
                message = await self.inbox.get()
            except asyncio.CancelledError:
                self._slots.release()
                raise
            task = asyncio.create_task(self.handle(message))
            self.in_flight.add(task)
            task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self.in_flight.discard(task)
        self._slots.release()
        self.inbox.task_done()
        if not task.cancelled() and task.exception() is not None:
            log.error("a turn crashed", exc_info=task.exception())

    # --8<-- [end:dispatch]

    # --8<-- [start:shutdown]
    async def shutdown(self, dispatcher: asyncio.Task[None]) -> None:
        """Stop intake, give turns in flight ``grace`` seconds, cancel the rest."""
        self._stopping = True  # messages still waiting for their user's turn won't start
        dispatcher.cancel()
        await asyncio.wait({dispatcher})  # unlike suppress(CancelledError), never hides ours
        running = set(self.in_flight)
        log.info("stopping: %d turns running", self.turns_running)
        if running:
            _, late = await asyncio.wait(running, timeout=self.grace)
            for task in late:
                task.cancel()  # ends the turn's stream: its connection is released at once
            await asyncio.gather(*late, return_exceptions=True)
            finished = len(running) - len(late) - self.not_started
            log.info("%d turns finished, %d cancelled", finished, len(late))
        log.info("%d messages not started", self.inbox.qsize() + self.not_started)
        # A real bot would hand the messages never started back to the platform (nack them)
        # so that they are redelivered; here they are only counted.

    # --8<-- [end:shutdown]


async def confirm(event: SkillConfirmationRequired) -> Approve | Reject:
    """The bot's confirmation policy: approve the allow-listed skills, refuse the rest."""
    if event.skill_name in AUTO_APPROVED_SKILLS:
        return Approve()
    return Reject(f"{event.skill_name} needs a person's confirmation; use the web app.")


# --- running it --------------------------------------------------------------------------


def stop_on_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)


async def stdin_lines() -> AsyncIterator[bytes]:
    """Lines of standard input, without blocking the event loop, until EOF."""
    if stat.S_ISREG(os.fstat(sys.stdin.fileno()).st_mode):
        # A file (`< messages.tsv`): the pipe transport refuses those, and a file read
        # never blocks for long, so a worker thread may do it.
        while line := await asyncio.to_thread(sys.stdin.buffer.readline):
            yield line
        return
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        yield line


async def read_stdin(bot: Bot, stop: asyncio.Event) -> None:
    """Intake from ``user_id<TAB>text`` lines; at EOF, wait for the queue, then stop."""
    async for raw in stdin_lines():
        user_id, _, text = raw.decode(errors="replace").rstrip("\r\n").partition("\t")
        if user_id and text.strip():  # blank or malformed lines are skipped, not the end
            await bot.inbox.put(Incoming(user_id, text))
    await bot.inbox.join()
    stop.set()


async def log_delivery(user_id: str, text: str) -> None:
    log.info("-> %s: %s", user_id, text)


def script_demo_genie(sim: GenieSimulator) -> None:
    """The simulated genie: answers after a skill, a confirmation, a connection to sign in."""
    sim.on_message(
        lambda text: "pto" in text.lower(),
        Turn(Skill("Get PTO balance", duration=0.5), Say("You have **12 days** of PTO left.")),
    )
    sim.on_message(
        lambda text: "book" in text.lower(),
        Turn(
            Confirm(
                "Submit Time Off Request",
                parameters={"start_date": "2026-12-21", "end_date": "2026-12-23"},
                on_approve=[Skill("Submit Time Off Request", duration=0.3), Say("Booked.")],
            )
        ),
    )
    sim.on_message(
        lambda text: "delete" in text.lower(),
        Turn(Confirm("Delete Account", on_reject=[Say("I did not delete it: {reason}")])),
    )
    sim.on_message(
        lambda text: "deals" in text.lower(),
        Turn(ConnectAuth("Salesforce", then=[Say("You have **3** open deals.")])),
    )
    sim.default_turn = Turn(Say("You said: {message}", delay=0.3))


async def simulated_load(sim: GenieSimulator, bot: Bot, stop: asyncio.Event) -> None:
    """A few users chatting at once; the simulator's sign-in page stands in for the user."""
    users = [sim.add_user() for _ in range(4)]
    lines = [
        "Hello!",
        "How much PTO do I have?",
        "Book Dec 21-23 off",
        "Show my deals",
        "Delete my account",
    ]
    for round_ in range(len(lines)):
        for index, user_id in enumerate(users):
            await bot.inbox.put(Incoming(user_id, lines[(round_ + index) % len(lines)]))
    await bot.inbox.join()
    stop.set()


def simulated_user(deliver: Deliver, session: aiohttp.ClientSession) -> Deliver:
    """Deliver, and act as the simulated user: open any sign-in link the bot sends."""

    async def send(user_id: str, text: str) -> None:
        await deliver(user_id, text)
        if text.startswith("Please connect"):
            async with session.get(text.rsplit(" ", 1)[-1]) as response:
                await response.read()  # the simulator's link page authorizes the connection

    return send


@contextlib.asynccontextmanager
async def genie_client(args: argparse.Namespace) -> AsyncIterator[GenieClient]:
    """The client for the genie named on the command line or in the environment."""
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
        connection_limit=2 * args.concurrency + 10,  # a stream and a decision per turn
    ) as client:
        yield client


async def main_async(args: argparse.Namespace) -> int:
    stop = asyncio.Event()
    stop_on_signals(stop)
    async with contextlib.AsyncExitStack() as stack:
        if args.simulator:
            sim = await stack.enter_async_context(GenieSimulator(ping_interval=5.0))
            script_demo_genie(sim)
            client = await stack.enter_async_context(
                GenieClient(
                    sim.genie_id, base_url=sim.url, api_key=sim.api_key, user_id=sim.user_id
                )
            )
            browser = await stack.enter_async_context(aiohttp.ClientSession())
            bot = Bot(
                client,
                simulated_user(log_delivery, browser),
                concurrency=args.concurrency,
                grace=args.grace,
            )
            intake = simulated_load(sim, bot, stop)
        else:
            client = await stack.enter_async_context(genie_client(args))
            bot = Bot(client, log_delivery, concurrency=args.concurrency, grace=args.grace)
            intake = read_stdin(bot, stop)
        producer = asyncio.create_task(intake)
        producer.add_done_callback(lambda _: stop.set())  # intake crashed: stop, don't hang
        try:
            await bot.run(stop)
        finally:
            producer.cancel()  # intake stops first, whatever stopped the bot
            await asyncio.wait({producer})
        error = None if producer.cancelled() else producer.exception()
        if error is not None:
            raise error
    # The client, and the simulator, are closed here.
    leftovers = asyncio.all_tasks() - {asyncio.current_task()}
    log.info("stopped after %d turns; tasks left: %d", bot.handled, len(leftovers))
    return 0 if not leftovers else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="A chat bot serving many users with one client.")
    parser.add_argument("--simulator", action="store_true", help="a scripted load, then exit")
    parser.add_argument("--genie", help="the genie id (gin-…); default $GENIE_ID")
    parser.add_argument("--data-center", help="us, eu, jp, sg, au, il or in")
    parser.add_argument("--base-url", help="an explicit API origin instead of a data center")
    parser.add_argument("--concurrency", type=int, default=8, help="turns at once (default 8)")
    parser.add_argument("--grace", type=float, default=30.0, help="seconds to finish on stop")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    return asyncio.run(main_async(parser.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
