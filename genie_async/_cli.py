"""The ``genie-async`` command: ``demo``, ``chat`` and ``simulate`` (needs the ``cli`` extra).

Credentials come from the environment only (``GENIE_API_KEY`` + ``GENIE_USER_ID``, or
``GENIE_ACCESS_TOKEN``), never from the command line, where they would land in shell history
and process listings.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import shlex
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp

from . import __version__
from ._client import GenieClient
from ._config import Timeouts
from ._conversation import Conversation
from ._doctor import DoctorConfig, run_checks
from ._hooks import Approve, AuthRequest, Reject
from ._models import Message, UploadedFile
from .errors import GenieError
from .events import (
    AgentMessage,
    GenieEvent,
    MalformedEvent,
    ProcessingFinished,
    RuntimeConnectionAuthRequired,
    SkillCompleted,
    SkillConfirmationRequired,
    SkillFailed,
    SkillRunning,
    SkillStopped,
    UnknownEvent,
)
from .testing import Confirm as ConfirmStep
from .testing import ConnectAuth, GenieSimulator, Say, Skill, StreamFault, Turn

if TYPE_CHECKING:
    from rich.console import Console


def escape(text: str) -> str:
    """Rich markup escaping (rich is imported only once the command runs)."""
    from rich.markup import escape as rich_escape

    return rich_escape(text)


INSTALL_HINT = "The genie-async command needs the cli extra: pip install 'genie-async[cli]'"
CREDENTIALS_HELP = (
    "Set GENIE_API_KEY and GENIE_USER_ID (a genie client API key and the end user's Workato "
    "Identity id), or GENIE_ACCESS_TOKEN (an end user's OAuth token), in the environment."
)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``genie-async`` console script."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        from rich.console import Console
    except ImportError:
        print(INSTALL_HINT, file=sys.stderr)
        return 2
    console = Console(highlight=False)
    try:
        if args.command == "demo":
            if args.backend == "olbrain":
                return asyncio.run(_olbrain_demo(console))
            return asyncio.run(_demo(console, interactive=args.interactive))
        if args.command == "chat":
            return asyncio.run(_chat(console, args))
        if args.command == "doctor":
            return asyncio.run(_doctor_command(console, args))
        return asyncio.run(_simulate(console, args.host, args.port, args.ping_interval))
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="genie-async", description="Client tools for Workato's Genie Headless API."
    )
    parser.add_argument("--version", action="version", version=f"genie-async {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo = commands.add_parser(
        "demo", help="run a scripted conversation against the bundled simulator"
    )
    demo.add_argument(
        "--interactive", action="store_true", help="answer the confirmation and the auth yourself"
    )
    demo.add_argument(
        "--backend",
        choices=("genie", "olbrain"),
        default="genie",
        help="which simulated backend to demo (default genie)",
    )
    chat = commands.add_parser(
        "chat",
        help="chat with a genie (credentials from the environment) or with the simulator",
        epilog=CREDENTIALS_HELP,
    )
    where = chat.add_mutually_exclusive_group(required=True)
    where.add_argument("--data-center", help="us, eu, jp, sg, au, il or in")
    where.add_argument("--base-url", help="an explicit API origin (a proxy, a private host)")
    where.add_argument("--simulator", action="store_true", help="chat with the bundled simulator")
    chat.add_argument("--genie", help="the genie id (gin-…); required unless --simulator")
    chat.add_argument("--conversation", help="continue an existing conversation")
    doctor = commands.add_parser(
        "doctor",
        help="check a genie's Headless API setup, step by step, with the fix for each failure",
        epilog=f"{CREDENTIALS_HELP} Optionally GENIE_DEVELOPER_TOKEN (wrkaus-…) and "
        "GENIE_USER_EMAIL, to check the genie and the end user with the Developer API.",
    )
    doctor.add_argument("--genie", required=True, help="the genie id (gin-…)")
    doctor_where = doctor.add_mutually_exclusive_group(required=True)
    doctor_where.add_argument("--data-center", help="us, eu, jp, sg, au, il or in")
    doctor_where.add_argument("--base-url", help="an explicit runtime API origin")
    doctor.add_argument(
        "--admin-base-url", help="the Developer API origin, when --base-url is used"
    )
    doctor.add_argument(
        "--stream-timeout",
        type=float,
        default=20.0,
        help="seconds without a meaningful event before the stream check fails (default 20)",
    )
    simulate = commands.add_parser(
        "simulate", help="run the simulator standalone (for front ends in any language)"
    )
    simulate.add_argument("--port", type=int, default=8080)
    simulate.add_argument("--host", default="127.0.0.1")
    simulate.add_argument("--ping-interval", type=float, default=30.0)
    return parser


# --- rendering a turn ------------------------------------------------------------------------


class _TurnView:
    """Renders a turn's events and answers its pauses, interactively or automatically."""

    def __init__(self, console: Console, *, interactive: bool, visit_links: bool) -> None:
        self.console = console
        self.interactive = interactive
        self.visit_links = visit_links  # the simulator's links authorize when opened
        self.status = console.status("the genie is thinking…", spinner="dots")

    async def ask(self, prompt: str) -> str:
        self.status.stop()
        try:
            return await asyncio.to_thread(self.console.input, prompt)
        finally:
            self.status.start()

    async def confirm(self, event: SkillConfirmationRequired) -> Approve | Reject:
        from rich.panel import Panel
        from rich.table import Table

        table = Table(show_header=False, box=None)
        for name, value in event.skill_parameters.items():
            table.add_row(f"[dim]{escape(str(name))}[/dim]", escape(str(value)))
        self.console.print(
            Panel(
                table,
                title=f"confirm: {escape(event.skill_name or 'skill')}",
                border_style="yellow",
                expand=False,
            )
        )
        decision: Approve | Reject = Approve()
        if self.interactive:
            answer = (await self.ask("approve? \\[y/N] ")).strip().lower()
            decision = Approve() if answer.startswith("y") else Reject("Declined by the user")
        label = "approved" if isinstance(decision, Approve) else "rejected"
        suffix = "" if self.interactive else " (automatically)"
        self.console.print(f"[yellow]→ {label}{suffix}[/yellow]")
        return decision

    async def authorize(self, request: AuthRequest) -> None:
        from rich.panel import Panel

        link = request.link
        url = link.url if link else "(no link: ask the genie's admin)"
        name = link.connector_name if link and link.connector_name else "the"
        self.console.print(
            Panel(
                f"Authorize {escape(name)} connection:\n{escape(url)}",
                title="connection needed",
                border_style="magenta",
                expand=False,
            )
        )
        if self.interactive:
            await self.ask("open the link and finish signing in, then press Enter ")
        elif self.visit_links and link is not None:
            # The simulator's link authorizes the attempt when opened, as a browser would.
            async with aiohttp.ClientSession() as browser, browser.get(link.url) as response:
                await response.read()
        self.console.print("[magenta]→ waiting for the resumed reply…[/magenta]")

    def render(self, event: GenieEvent) -> None:
        from rich.markdown import Markdown

        console, status = self.console, self.status
        if isinstance(event, AgentMessage):
            console.print("[bold green]genie ›[/bold green]")
            console.print(Markdown(event.text))
        elif isinstance(event, SkillRunning):
            status.update(f"running skill: {escape(event.skill_name or '')}…")
            console.print(f"[dim]⚙ {escape(event.skill_name or 'skill')} started[/dim]")
        elif isinstance(event, (SkillCompleted, SkillStopped, SkillFailed)):
            verb = "failed" if isinstance(event, SkillFailed) else "completed"
            console.print(f"[dim]⚙ {escape(event.skill_name or 'skill')} {verb}[/dim]")
            status.update("the genie is thinking…")
        elif isinstance(event, RuntimeConnectionAuthRequired):
            status.update("waiting for the user to authorize the connection…")
        elif isinstance(event, ProcessingFinished):
            status.update("done")
        elif isinstance(event, (UnknownEvent, MalformedEvent)):
            console.print(f"[dim]· {escape(event.type)}[/dim]")

    async def run(
        self,
        conversation: Conversation,
        text: str,
        *,
        file: UploadedFile | None = None,
        echo: bool = True,
    ) -> list[GenieEvent]:
        if echo:  # the chat's own prompt already shows what was typed
            self.console.print(f"[bold cyan]you ›[/bold cyan] {escape(text)}")
        events: list[GenieEvent] = []
        self.status.start()
        try:
            async with conversation.send(
                text, file=file, on_skill_confirmation=self.confirm, on_auth_required=self.authorize
            ) as stream:
                async for event in stream:
                    events.append(event)
                    self.render(event)
        finally:
            self.status.stop()
        return events


def _print_error(console: Console, text: str) -> None:
    """One line, however long: escaped (no markup) and never wrapped."""
    console.print(f"[red]✗ {escape(text)}[/red]", soft_wrap=True)


def _one_line_error(exc: GenieError) -> str:
    """An API error as one line: what failed, the request id, and how to fix it."""
    first = str(exc).split("\nHint:")[0].replace("\n", " ")
    parts = [f"{type(exc).__name__}: {first}"]
    if exc.request_id and "request_id=" not in first:
        parts.append(f"[request_id={exc.request_id}]")
    if exc.hint:
        parts.append(f"— hint: {exc.hint}")
    return " ".join(parts)


# --- demo ------------------------------------------------------------------------------------

PTO_CARD = {"start_date": "2026-12-21", "end_date": "2026-12-23", "leave_type": "pto"}


@dataclass
class _Step:
    title: str
    message: str
    turn: Turn
    check: Callable[[list[GenieEvent], GenieSimulator, str], str | None]


def _kinds(events: list[GenieEvent]) -> list[str]:
    return [e.type for e in events]


def _check_plain(events: list[GenieEvent], sim: GenieSimulator, cid: str) -> str | None:
    expected = ["processing.started", "agent.message", "processing.finished"]
    return None if _kinds(events) == expected else f"unexpected events {_kinds(events)}"


def _check_skill(events: list[GenieEvent], sim: GenieSimulator, cid: str) -> str | None:
    kinds = _kinds(events)
    ok = (
        "skill.running" in kinds
        and "skill.completed" in kinds
        and kinds[-1] == "processing.finished"
    )
    return None if ok else f"unexpected events {kinds}"


def _check_confirmation(events: list[GenieEvent], sim: GenieSimulator, cid: str) -> str | None:
    decisions = sim.approvals()
    if len(decisions) != 1:
        return f"{len(decisions)} decisions were posted, expected exactly 1"
    if _kinds(events)[-1] != "processing.finished":
        return "the turn did not finish"
    return None


def _check_auth(events: list[GenieEvent], sim: GenieSimulator, cid: str) -> str | None:
    kinds = _kinds(events)
    if "runtime_connection.auth_required" not in kinds or kinds[-1] != "agent.message":
        return f"unexpected events {kinds}"
    return None


def _check_recovery(events: list[GenieEvent], sim: GenieSimulator, cid: str) -> str | None:
    run = next((e.genie_run_id for e in events if e.genie_run_id), None)
    if run is None:
        return "no run id"
    persisted = [e.event_id for e in sim.conversation(cid).runs_by_id[run].events]
    delivered = [e.event_id for e in events]
    if delivered != persisted:
        lost = len(set(persisted) - set(delivered))
        repeated = len(delivered) - len(set(delivered))
        return f"{lost} lost, {repeated} repeated"
    if sim.stream_connections(run) < 2:
        return "the connection was never dropped"
    return None


STEPS = [
    _Step(
        "1. A plain reply, rendered as markdown",
        "Hi! What can you do?",
        Turn(
            Say(
                "Hi! I'm the **HR genie**. I can:\n\n"
                "- check your *PTO balance*\n- submit time-off requests\n"
                "- look things up in Salesforce"
            )
        ),
        _check_plain,
    ),
    _Step(
        "2. A skill runs while the genie works",
        "How much PTO do I have left?",
        Turn(
            Say("Let me check your balance…"),
            Skill("Get PTO balance", duration=0.6),
            Say("You have **12 days** of PTO left this year."),
        ),
        _check_skill,
    ),
    _Step(
        "3. A skill that needs your confirmation",
        "Book Dec 21-23 off, please.",
        Turn(
            ConfirmStep("Submit Time Off Request", parameters=PTO_CARD),
            Say("Done — your request for **Dec 21-23** was submitted."),
        ),
        _check_confirmation,
    ),
    _Step(
        "4. A runtime connection the user must authorize",
        "What are my open Salesforce opportunities?",
        Turn(
            ConnectAuth(
                "Salesforce",
                then=(Say("You have **3** open opportunities, worth **$84,000** in total."),),
            )
        ),
        _check_auth,
    ),
    _Step(
        "5. The connection drops mid-event and the stream recovers",
        "Summarise this quarter for me.",
        Turn(
            *(Say(f"Part {i}: …", delay=0.05) for i in range(1, 7)),
            faults=[StreamFault("abort_mid_event", after_events=4)],
        ),
        _check_recovery,
    ),
]


async def _demo(console: Console, *, interactive: bool) -> int:
    from rich.panel import Panel
    from rich.rule import Rule

    console.print(
        Panel.fit(
            "genie-async demo: a scripted conversation with the bundled Genie simulator.\n"
            "Everything below goes through the public API over real HTTP on loopback.",
            border_style="cyan",
        )
    )
    failures: list[str] = []
    view = _TurnView(console, interactive=interactive, visit_links=True)
    async with GenieSimulator(ping_interval=0.2, auth_interrupt_after=0.1) as sim:
        console.print(f"[dim]simulator listening on {sim.url}[/dim]\n")
        async with GenieClient(
            sim.genie_id,
            base_url=sim.url,
            api_key=sim.api_key,
            user_id=sim.user_id,
            timeouts=Timeouts(stall=30, decision=300 if interactive else 10, auth=300),
        ) as client:
            conversation = await client.create_conversation()
            for step in STEPS:
                console.print(Rule(f"[bold]{step.title}[/bold]", align="left"))
                sim.next_turn(step.turn)
                try:
                    events = await view.run(conversation, step.message)
                    problem = step.check(events, sim, conversation.conversation_id)
                except GenieError as exc:
                    problem = _one_line_error(exc)
                else:
                    run = events[0].genie_run_id if events else None
                    connections = sim.stream_connections(run) if run else 0
                    if connections > 1:
                        console.print(
                            f"[dim]↻ the connection dropped; the client reconnected "
                            f"({connections} connections) and delivered {len(events)} events, "
                            "each exactly once[/dim]"
                        )
                if problem is None:
                    console.print("[green]✓ behaved as expected[/green]\n")
                else:
                    _print_error(console, problem)
                    console.print()
                    failures.append(f"{step.title}: {problem}")
    if failures:
        console.print(f"[red bold]{len(failures)} step(s) failed.[/red bold]")
        return 1
    console.print(f"[green bold]All {len(STEPS)} steps behaved as expected.[/green bold]")
    return 0


# --- demo: the Olbrain backend ---------------------------------------------------------------

OLBRAIN_STEPS = (
    "1. A conversational turn: one synchronous reply, with token usage",
    "2. The session id is carried to a second turn",
    "3. A workflow run, watched, paused, resumed and completed",
)


async def _olbrain_demo(console: Console) -> int:
    from rich.panel import Panel
    from rich.rule import Rule

    from .olbrain import OlbrainClient, RunStatus
    from .testing import OlbrainSimulator

    console.print(
        Panel.fit(
            "genie-async demo --backend olbrain: the bundled Olbrain simulator.\n"
            "Everything below goes through genie_async.olbrain over real HTTP on loopback.",
            border_style="cyan",
        )
    )
    failures: list[str] = []

    def verdict(title: str, problem: str | None) -> None:
        if problem is None:
            console.print("[green]✓ behaved as expected[/green]\n")
        else:
            _print_error(console, problem)
            console.print()
            failures.append(f"{title}: {problem}")

    async with OlbrainSimulator() as sim:
        console.print(f"[dim]simulator listening on {sim.url}[/dim]\n")
        chat = sim.add_conversational_agent(
            reply=lambda text, meta: f"Order received ({text}). I'll start processing it."
        )
        flow = sim.add_workflow_agent(output_files={"report.csv": b"id,status\n4421,ok\n"})
        async with OlbrainClient(api_key=sim.api_key, base_url=sim.url) as client:
            conversation = client.agent(chat).conversation()
            first_session: str | None = None
            for title, text in zip(
                OLBRAIN_STEPS[:2], ("Order #4421 placed for Acme Corp", "Any update?"), strict=True
            ):
                console.print(Rule(f"[bold]{title}[/bold]", align="left"))
                console.print(f"[bold cyan]you ›[/bold cyan] {escape(text)}")
                try:
                    reply = await conversation.ask(text)
                except GenieError as exc:
                    verdict(title, _one_line_error(exc))
                    continue
                usage = reply.token_usage
                console.print(f"[bold green]agent ›[/bold green] {escape(reply.text)}")
                console.print(
                    f"[dim]session {reply.session_id} · message {reply.message_id} · "
                    f"tokens {usage.total_tokens if usage else '?'}[/dim]"
                )
                problem = None
                if not reply.text or usage is None or usage.total_tokens <= 0:
                    problem = "no reply text or no token usage"
                elif first_session is None:
                    first_session = reply.session_id
                elif reply.session_id != first_session:
                    problem = f"a new session {reply.session_id} instead of {first_session}"
                elif len(sim.messages(first_session)) != 4:
                    problem = "the session does not hold both turns"
                else:
                    console.print("[dim]↻ same session: the id was carried forward[/dim]")
                verdict(title, problem)

            title = OLBRAIN_STEPS[2]
            console.print(Rule(f"[bold]{title}[/bold]", align="left"))
            problem = None
            try:
                run = await client.agent(flow).trigger({"order_id": "4421"})
                console.print(f"[dim]triggered run {run.run_id}[/dim]")
                console.print(f"  status → {run.status}")
                paused_once = False
                async with run.watch(interval=0.05, max_interval=0.2) as changes:
                    async for record in changes:
                        console.print(f"  status → {record.status}")
                        if record.status == RunStatus.RUNNING and not paused_once:
                            paused_once = True
                            console.print("  [yellow]pause()[/yellow]")
                            await run.pause()
                        elif record.status == RunStatus.PAUSED:
                            console.print("  [yellow]resume()[/yellow]")
                            resumed = await run.resume()
                            console.print(f"  status → {resumed.status}")
                files = await run.output_files()
                names = ", ".join(f.name or "?" for f in files)
                console.print(f"[dim]output files: {escape(names)} (signed URLs, 15 min)[/dim]")
                history = sim.runs[run.run_id].history
                expected = ["queued", "running", "paused", "running", "succeeded"]
                if history != expected:
                    problem = f"the run went {history}, expected {expected}"
            except GenieError as exc:
                problem = _one_line_error(exc)
            verdict(title, problem)
    if failures:
        console.print(f"[red bold]{len(failures)} step(s) failed.[/red bold]")
        return 1
    console.print(f"[green bold]All {len(OLBRAIN_STEPS)} steps behaved as expected.[/green bold]")
    return 0


# --- chat ------------------------------------------------------------------------------------

CHAT_HELP = (
    "Type a message, or a command: /history, /timeline, /upload PATH (attached to your next "
    "message), /help, /quit."
)


def _simulated_genie(sim: GenieSimulator) -> None:
    """A small scripted genie for `chat --simulator`: try 'pto', 'book', 'salesforce'."""
    sim.on_message(
        re.compile("pto|balance", re.IGNORECASE),
        Turn(Skill("Get PTO balance", duration=0.4), Say("You have **12 days** of PTO left.")),
    )
    sim.on_message(
        re.compile("book|submit|time off", re.IGNORECASE),
        Turn(
            ConfirmStep("Submit Time Off Request", parameters=PTO_CARD),
            Say("Done — your request was submitted."),
        ),
    )
    sim.on_message(
        re.compile("salesforce|opportunit", re.IGNORECASE),
        Turn(ConnectAuth("Salesforce", then=(Say("You have **3** open opportunities."),))),
    )
    sim.default_turn = Turn(Say("You said: *{message}*. Try 'pto', 'book' or 'salesforce'."))


def _credentials_from_env() -> dict[str, str] | None:
    key, user, token = (
        os.environ.get("GENIE_API_KEY"),
        os.environ.get("GENIE_USER_ID"),
        os.environ.get("GENIE_ACCESS_TOKEN"),
    )
    if key and user:
        return {"api_key": key, "user_id": user}
    if token:
        return {"access_token": token}
    return None


async def _chat(console: Console, args: argparse.Namespace) -> int:
    view = _TurnView(console, interactive=True, visit_links=False)
    async with contextlib.AsyncExitStack() as stack:
        if args.simulator:
            sim = await stack.enter_async_context(GenieSimulator(ping_interval=5.0))
            _simulated_genie(sim)
            options: dict[str, Any] = {
                "base_url": sim.url,
                "api_key": sim.api_key,
                "user_id": sim.user_id,
            }
            genie_id = sim.genie_id
            console.print(f"[dim]chatting with the simulator at {sim.url}[/dim]")
        else:
            credentials = _credentials_from_env()
            if credentials is None or not args.genie:
                missing = [] if args.genie else ["--genie is required."]
                missing += [] if credentials else [CREDENTIALS_HELP]
                _print_error(console, " ".join(missing))
                return 2
            genie_id = args.genie
            options = dict(credentials)
            if args.data_center:
                options["data_center"] = args.data_center
            else:
                options["base_url"] = args.base_url
        try:
            client = await stack.enter_async_context(GenieClient(genie_id, **options))
            if args.conversation:
                conversation = client.conversation(args.conversation)
            else:
                conversation = await client.create_conversation()
        except GenieError as exc:
            _print_error(console, _one_line_error(exc))
            return 1
        console.print(f"[dim]conversation {conversation.conversation_id}. {CHAT_HELP}[/dim]")
        return await _chat_loop(console, view, conversation)


async def _chat_loop(console: Console, view: _TurnView, conversation: Conversation) -> int:
    attachment: UploadedFile | None = None
    while True:
        try:
            line = (await asyncio.to_thread(console.input, "[bold cyan]you ›[/bold cyan] ")).strip()
        except EOFError:
            return 0
        if not line:
            continue
        try:
            if line in ("/quit", "/exit"):
                return 0
            if line == "/help":
                console.print(CHAT_HELP)
            elif line == "/history":
                await _show_history(console, conversation)
            elif line == "/timeline":
                await _show_timeline(console, conversation)
            elif line.startswith("/upload"):
                attachment = await _upload(console, conversation, line)
            elif line.startswith("/"):
                _print_error(console, f"unknown command {line.split()[0]}. {CHAT_HELP}")
            else:
                await view.run(conversation, line, file=attachment, echo=False)
                attachment = None
        except GenieError as exc:
            _print_error(console, _one_line_error(exc))
        except (OSError, ValueError) as exc:
            _print_error(console, str(exc))


async def _upload(console: Console, conversation: Conversation, line: str) -> UploadedFile | None:
    parts = shlex.split(line)
    if len(parts) != 2:
        _print_error(console, "usage: /upload PATH")
        return None
    path = await asyncio.to_thread(lambda: Path(parts[1]).expanduser())
    uploaded = await conversation.upload(path)
    console.print(
        f"[dim]uploaded {path.name} as {uploaded.file_id}; sent with your next message[/dim]"
    )
    return uploaded


async def _show_history(console: Console, conversation: Conversation) -> None:
    count = 0
    async for message in conversation.messages():
        count += 1
        who = (
            "[bold cyan]you[/bold cyan]"
            if message.source == "user"
            else "[bold green]genie[/bold green]"
        )
        when = escape(message.created_at or "")
        console.print(f"{who} [dim]{when}[/dim]  {escape(message.content)}", soft_wrap=True)
    if not count:
        console.print("[dim](no messages yet)[/dim]")


async def _show_timeline(console: Console, conversation: Conversation) -> None:
    for item in await conversation.timeline():
        if isinstance(item, Message):
            line = f"message/{item.source}: {item.content}"
            console.print(
                f"[dim]{escape(item.created_at or '')}[/dim] {escape(line)}", soft_wrap=True
            )
        else:
            detail = item.text if isinstance(item, AgentMessage) else ""
            line = f"{item.type} {detail}".rstrip()
            console.print(
                f"[dim]{escape(item.created_at or '')}[/dim] {escape(line)}", soft_wrap=True
            )


# --- doctor ----------------------------------------------------------------------------------

_MARKS = {"pass": "[green]✓[/green]", "fail": "[red]✗[/red]", "skip": "[dim]–[/dim]"}


async def _doctor_command(console: Console, args: argparse.Namespace) -> int:
    env = os.environ
    config = DoctorConfig(
        genie_id=args.genie,
        data_center=args.data_center,
        base_url=args.base_url,
        api_key=env.get("GENIE_API_KEY") or None,
        user_id=env.get("GENIE_USER_ID") or None,
        access_token=env.get("GENIE_ACCESS_TOKEN") or None,
        developer_token=env.get("GENIE_DEVELOPER_TOKEN") or None,
        user_email=env.get("GENIE_USER_EMAIL") or None,
        admin_base_url=args.admin_base_url,
        stream_timeout=args.stream_timeout,
    )
    console.print(f"[bold]genie-async doctor[/bold] — genie {escape(args.genie)}")
    failed = 0
    async for check in run_checks(config):
        failed += check.status == "fail"
        console.print(
            f"{_MARKS[check.status]} {escape(check.name)} — {escape(check.detail)}", soft_wrap=True
        )
        if check.fix and check.status == "fail":
            console.print(f"    [yellow]fix:[/yellow] {escape(check.fix)}", soft_wrap=True)
        if check.request_id and check.status == "fail":
            console.print(f"    [dim]request_id={escape(check.request_id)}[/dim]")
    if failed:
        console.print(f"[red bold]{failed} check(s) failed.[/red bold]")
        return 1
    console.print("[green bold]All checks passed.[/green bold]")
    return 0


# --- simulate --------------------------------------------------------------------------------


async def _simulate(console: Console, host: str, port: int, ping_interval: float) -> int:
    async with GenieSimulator(host=host, port=port, ping_interval=ping_interval) as sim:
        console.print(f"Genie simulator listening on [bold]{sim.url}[/bold]")
        console.print(f"  genie id : {sim.genie_id}")
        console.print(f"  api key  : {sim.api_key}   (a simulator credential, not a secret)")
        console.print(f"  user id  : {sim.user_id}")
        console.print(
            f"  base path: {sim.url}/api/v1/genies/{sim.genie_id}/chat   — Ctrl-C to stop"
        )
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.Event().wait()
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
