"""Never executed: type-checked with `mypy --strict` to pin what users see of the Olbrain API.

If a public signature changes in a way that breaks this file, users' code breaks too.
"""

from __future__ import annotations

import aiohttp

from genie_async import (
    AgentMessage,
    AgentNotFoundError,
    GenieError,
    InvalidStateTransitionError,
    ProcessingFinished,
    RequestTooLargeError,
    RetryPolicy,
    RunNotFoundError,
    RuntimeNotApplicableError,
    SessionNotFoundError,
    Timeouts,
    UpstreamTimeoutError,
)
from genie_async.olbrain import (
    TRANSITIONS,
    Agent,
    Approval,
    ApprovalResult,
    Conversation,
    Message,
    OlbrainClient,
    OlbrainEvent,
    OutputFile,
    Reply,
    Run,
    RunAction,
    RunRecord,
    RunStatus,
    RunWatch,
    Session,
    TokenUsage,
    TurnFinished,
    TurnStream,
    UploadedFile,
)
from genie_async.testing import OlbrainSimulator


def keep(*values: object) -> None:
    """Uses a value, so every annotated name below is a checked assignment."""


async def usage(session: aiohttp.ClientSession) -> None:
    client = OlbrainClient(
        api_key="ak_x",
        base_url="https://webhook.olbrain.com",
        timeouts=Timeouts(read=120),
        retry=RetryPolicy(wait_budget=600),
        session=session,
    )
    async with client:
        agent: Agent = client.agent("agt_1")
        keep(agent)
        conversation: Conversation = agent.conversation(session_id=None, user_id="u")
        keep(conversation)
        stream: TurnStream = conversation.send("hi", metadata={"k": "v"}, idempotency_key="k")
        keep(stream)
        async with stream:
            async for event in stream:
                e: OlbrainEvent = event
                keep(e)
                if isinstance(e, AgentMessage):
                    text: str = e.text
                    keep(text)
                elif isinstance(e, TurnFinished):
                    finished: ProcessingFinished = e
                    keep(finished)
                    usage: TokenUsage | None = e.token_usage
                    keep(usage)
                    sid: str | None = e.session_id
                    keep(sid)
        reply: Reply = await conversation.ask("again")
        keep(reply)
        recovered: bool = reply.recovered
        keep(recovered)
        session_id: str | None = conversation.session_id
        keep(session_id)
        async for message in conversation.messages(page_size=50):
            m: Message = message
            keep(m)
        one: Message = await conversation.message("msg_1")
        keep(one)
        info: Session = await conversation.info()
        keep(info)
        sessions: list[Session] = await agent.sessions(limit=10, status="active", since=None)
        keep(sessions)
        uploaded: UploadedFile = await agent.upload(b"data", filename="a.csv")
        keep(uploaded)
        run: Run = await agent.trigger({"csv": uploaded.file_id}, idempotency_key="order-1")
        keep(run)
        record: RunRecord = await run.refresh()
        keep(record)
        status: RunStatus | None = record.run_status
        keep(status)
        terminal: bool = record.terminal or status is RunStatus.SUCCEEDED
        keep(terminal)
        watch: RunWatch = run.watch(interval=3.0, max_interval=60.0, backoff=1.5)
        keep(watch)
        async with watch:
            async for change in watch:
                current: str = change.status
                keep(current)
        actions: tuple[RunAction, ...] = ("pause", "resume", "cancel", "retry")
        for action in actions:
            act: RunAction = action
            keep(act)
            legal: frozenset[str] = TRANSITIONS[act][0]
            keep(legal)
        paused: RunRecord = await run.pause()
        keep(paused)
        resumed: RunRecord = await run.resume()
        keep(resumed)
        cancelled: RunRecord = await run.cancel()
        keep(cancelled)
        retried: RunRecord = await run.retry()
        keep(retried)
        final: RunRecord = await run.wait()
        keep(final)
        files: list[OutputFile] = await run.output_files(margin=30.0)
        keep(files)
        runs: list[Run] = await agent.runs(status="running", limit=5)
        keep(runs)
        fetched: Run = await agent.get_run("run_1")
        keep(fetched)
        approvals: list[Approval] = await run.approvals()
        keep(approvals)
        resolved: ApprovalResult = await run.resolve_approval("exc_1", "approved")
        keep(resolved)
    try:
        pass
    except InvalidStateTransitionError as error:
        local: bool = error.refused_locally
        keep(local)
        action_name: str | None = error.action
        keep(action_name)
    except (
        AgentNotFoundError,
        SessionNotFoundError,
        RunNotFoundError,
        RuntimeNotApplicableError,
        UpstreamTimeoutError,
        RequestTooLargeError,
    ) as error:
        rid: str | None = error.request_id
        keep(rid)
    except GenieError:
        pass


async def with_simulator() -> None:
    async with OlbrainSimulator() as sim:
        agent_id: str = sim.add_conversational_agent()
        keep(agent_id)
        flow: str = sim.add_workflow_agent(auto_advance=False)
        keep(flow)
        async with OlbrainClient(api_key=sim.api_key, base_url=sim.url) as client:
            await client.agent(agent_id).conversation().ask("hi")
            await client.agent(flow).trigger({})
