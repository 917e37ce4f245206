"""The ``genie-async`` command: ``demo`` and ``simulate`` (needs the ``cli`` extra for rich)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import aiohttp

from . import __version__
from ._client import GenieClient
from ._config import Timeouts
from ._conversation import Conversation
from ._hooks import Approve, AuthRequest, Reject
from .errors import GenieError
from .events import (
    AgentMessage,
    GenieEvent,
    ProcessingFinished,
    RuntimeConnectionAuthRequired,
    SkillCompleted,
    SkillConfirmationRequired,
    SkillFailed,
    SkillRunning,
    UnknownEvent,
)
from .testing import Confirm as ConfirmStep
from .testing import ConnectAuth, GenieSimulator, Say, Skill, StreamFault, Turn

if TYPE_CHECKING:
    from rich.console import Console
    from rich.status import Status

INSTALL_HINT = "The genie-async command needs the cli extra: pip install 'genie-async[cli]'"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``genie-async`` console script."""
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
    simulate = commands.add_parser(
        "simulate", help="run the simulator standalone (for front ends in any language)"
    )
    simulate.add_argument("--port", type=int, default=8080)
    simulate.add_argument("--host", default="127.0.0.1")
    simulate.add_argument("--ping-interval", type=float, default=30.0)
    args = parser.parse_args(argv)
    try:
        from rich.console import Console
    except ImportError:
        print(INSTALL_HINT, file=sys.stderr)
        return 2
    console = Console(highlight=False)
    try:
        if args.command == "demo":
            return asyncio.run(_demo(console, interactive=args.interactive))
        return asyncio.run(_simulate(console, args.host, args.port, args.ping_interval))
    except KeyboardInterrupt:
        return 130


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
                    events = await _run_turn(console, sim, conversation, step.message, interactive)
                    problem = step.check(events, sim, conversation.conversation_id)
                except GenieError as exc:
                    problem = f"{type(exc).__name__}: {exc}"
                if problem is None:
                    console.print("[green]✓ behaved as expected[/green]\n")
                else:
                    console.print(f"[red]✗ {problem}[/red]\n")
                    failures.append(f"{step.title}: {problem}")
    if failures:
        console.print(f"[red bold]{len(failures)} step(s) failed.[/red bold]")
        return 1
    console.print(f"[green bold]All {len(STEPS)} steps behaved as expected.[/green bold]")
    return 0


async def _run_turn(
    console: Console,
    sim: GenieSimulator,
    conversation: Conversation,
    text: str,
    interactive: bool,
) -> list[GenieEvent]:
    from rich.markdown import Markdown
    from rich.panel import Panel
    from rich.table import Table

    console.print(f"[bold cyan]you ›[/bold cyan] {text}")
    status = console.status("the genie is thinking…", spinner="dots")

    async def confirm(event: SkillConfirmationRequired) -> Approve | Reject:
        table = Table(show_header=False, box=None)
        for name, value in event.skill_parameters.items():
            table.add_row(f"[dim]{name}[/dim]", str(value))
        console.print(
            Panel(table, title=f"confirm: {event.skill_name}", border_style="yellow", expand=False)
        )
        if interactive:
            status.stop()
            answer = await asyncio.to_thread(console.input, "approve? [y/N] ")
            status.start()
            decision: Approve | Reject = (
                Approve() if answer.strip().lower().startswith("y") else Reject("Declined")
            )
        else:
            decision = Approve()
        label = "approved" if isinstance(decision, Approve) else "rejected"
        console.print(f"[yellow]→ {label}{'' if interactive else ' (automatically)'}[/yellow]")
        return decision

    async def authorize(request: AuthRequest) -> None:
        url = request.link.url if request.link else "(no link)"
        console.print(
            Panel(
                f"Authorize your {request.link.connector_name if request.link else ''} "
                f"connection:\n[link={url}]{url}[/link]",
                title="connection needed",
                border_style="magenta",
                expand=False,
            )
        )
        if interactive:
            status.stop()
            await asyncio.to_thread(console.input, "open the link, then press Enter ")
            status.start()
        # The simulator's link authorizes the attempt when opened, as a browser would.
        async with aiohttp.ClientSession() as browser, browser.get(url) as response:
            await response.read()
        console.print("[magenta]→ authorized; waiting for the resumed reply…[/magenta]")

    events: list[GenieEvent] = []
    status.start()
    try:
        async with conversation.send(
            text, on_skill_confirmation=confirm, on_auth_required=authorize
        ) as stream:
            async for event in stream:
                events.append(event)
                _render(console, status, event, Markdown)
    finally:
        status.stop()
    if sim.stream_connections(stream.genie_run_id or "") > 1:
        console.print(
            f"[dim]↻ the connection dropped; the client reconnected "
            f"({sim.stream_connections(stream.genie_run_id or '')} connections) and delivered "
            f"{len(events)} events, each exactly once[/dim]"
        )
    return events


def _render(console: Console, status: Status, event: GenieEvent, markdown: type) -> None:
    if isinstance(event, AgentMessage):
        console.print("[bold green]genie ›[/bold green]")
        console.print(markdown(event.text))
    elif isinstance(event, SkillRunning):
        status.update(f"running skill: {event.skill_name}…")
        console.print(f"[dim]⚙ {event.skill_name} started[/dim]")
    elif isinstance(event, (SkillCompleted, SkillFailed)):
        verb = "failed" if isinstance(event, SkillFailed) else "completed"
        console.print(f"[dim]⚙ {event.skill_name} {verb}[/dim]")
        status.update("the genie is thinking…")
    elif isinstance(event, RuntimeConnectionAuthRequired):
        status.update("waiting for the user to authorize the connection…")
    elif isinstance(event, ProcessingFinished):
        status.update("done")
    elif isinstance(event, UnknownEvent):
        console.print(f"[dim]· {event.type}[/dim]")


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
