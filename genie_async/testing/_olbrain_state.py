"""The Olbrain simulator's state: organizations, keys, agents, runs (with the §5 lifecycle),
sessions, uploads, signed output URLs, the idempotency replay cache and the request log."""

from __future__ import annotations

import asyncio
import urllib.parse
from dataclasses import dataclass
from typing import Any, Literal

from ._olbrain_faults import FaultQueue
from ._olbrain_model import (
    LEGAL_TRANSITIONS,
    TERMINAL_STATUSES,
    AgentKind,
    Clock,
    OlbrainAgent,
    OlbrainApproval,
    OlbrainIds,
    OlbrainRequest,
    OlbrainRun,
    OlbrainSession,
    OlbrainUpload,
    ReplyFunc,
    iso,
)

__all__ = ["FILE_URL_LIFETIME", "AccessKey", "OlbrainWorld", "Reply", "SignedFile"]

#: Output-file URLs live 15 minutes after the GET that produced them (§4.4, §10).
FILE_URL_LIFETIME = 15 * 60.0


@dataclass(frozen=True)
class Reply:
    """A handler's JSON answer before rendering (kept so it can be replayed verbatim)."""

    status: int
    payload: Any


@dataclass
class AccessKey:
    """An ``ak_`` key: its organization and whether it is still active."""

    organization_id: str
    active: bool = True


@dataclass(frozen=True)
class SignedFile:
    """One signed output-file URL: what it serves and until when."""

    run_id: str
    name: str
    expires_at: float


class OlbrainWorld:
    """Everything the simulator knows; the routes and `OlbrainSimulator` share one."""

    def __init__(self, *, seed: int, clock: Clock) -> None:
        self.ids = OlbrainIds(seed)
        self.clock = clock
        self.base_url = ""
        self.organizations: dict[str, str] = {}  # org id -> project id
        self.keys: dict[str, AccessKey] = {}
        self.agents: dict[str, OlbrainAgent] = {}
        self.runs: dict[str, OlbrainRun] = {}
        self.sessions: dict[str, OlbrainSession] = {}
        self.uploads: dict[str, OlbrainUpload] = {}
        self.requests: list[OlbrainRequest] = []
        self.faults = FaultQueue()
        # (agent, scope, key) -> the first answer (None while in flight or after a failure).
        self.replays: dict[tuple[str, str, str], asyncio.Future[Reply | None]] = {}
        self.signed: dict[str, SignedFile] = {}
        self.tasks: set[asyncio.Task[Any]] = set()
        self.idempotency: Literal["replay", "off"] = "off"
        self.retry_new_run_id = False
        self.runs_list_shape: Literal["envelope", "array"] = "envelope"
        self.max_upload_bytes: int | None = None
        self.upstream_timeout: float | None = None
        self.reply_delay = 0.0

    # ---------------------------------------------------------------- identity

    def add_organization(self, organization_id: str | None = None) -> str:
        """Create an organization (and its project); return its id."""
        org = organization_id or self.ids.organization_id()
        if org not in self.organizations:
            self.organizations[org] = self.ids.project_id()
        return org

    def add_key(self, key: str | None, organization_id: str) -> str:
        """Register (or reactivate) an access key for ``organization_id``."""
        org = self.add_organization(organization_id)
        key = key or self.ids.access_key()
        self.keys[key] = AccessKey(org)
        return key

    def revoke_key(self, key: str) -> None:
        """Deactivate ``key`` (KeyError if unknown)."""
        self.keys[key].active = False

    def add_agent(
        self,
        agent_id: str | None,
        *,
        kind: AgentKind,
        name: str,
        organization_id: str,
        reply: ReplyFunc | None = None,
        auto_advance: bool = True,
        fail: bool | int = False,
        needs_review: bool = False,
        output_files: dict[str, bytes] | None = None,
        required_inputs: tuple[str, ...] = (),
    ) -> str:
        """Create an agent; return its id (ValueError if the id is taken)."""
        org = self.add_organization(organization_id)
        agent_id = agent_id or self.ids.agent_id()
        if agent_id in self.agents:
            raise ValueError(f"agent {agent_id!r} already exists")
        if not isinstance(fail, bool) and fail < 0:
            raise ValueError("fail must be a bool or an int >= 0")
        self.agents[agent_id] = OlbrainAgent(
            agent_id=agent_id,
            kind=kind,
            name=name,
            organization_id=org,
            project_id=self.organizations[org],
            reply=reply,
            auto_advance=auto_advance,
            fail=fail,
            needs_review=needs_review,
            output_files=dict(output_files or {}),
            required_inputs=required_inputs,
        )
        return agent_id

    # -------------------------------------------------------------------- runs

    def create_run(
        self, agent: OlbrainAgent, inputs: Any, idempotency_key: str | None
    ) -> OlbrainRun:
        """A new ``queued`` run of ``agent``."""
        run = OlbrainRun(
            run_id=self.ids.run_id(),
            agent_id=agent.agent_id,
            inputs=inputs,
            created_at=self.clock.now(),
            idempotency_key=idempotency_key,
        )
        self.runs[run.run_id] = run
        return run

    def step(self, run: OlbrainRun) -> str:
        """One scheduler step: ``queued → running → succeeded | failed | needs_review``.

        ``paused`` and ``needs_review`` wait for resume / approvals; terminal runs stay.
        """
        agent = self.agents[run.agent_id]
        if run.status == "queued":
            self.enter(run, "running")
        elif run.status == "running":
            if agent.needs_review and not run.reviewed:
                self.enter(run, "needs_review")
            elif _fails(agent.fail, run.attempt):
                self.enter(run, "failed", error="The workflow failed (simulated).")
            else:
                self.enter(run, "succeeded")
        return run.status

    def enter(self, run: OlbrainRun, status: str, *, error: str | None = None) -> None:
        """Put ``run`` in ``status``, keeping timestamps, error and approvals consistent."""
        now = self.clock.now()
        if status == "queued":
            run.started_at = run.completed_at = None
            run.error = None
        if status == "running" and run.started_at is None:
            run.started_at = now
        if status in TERMINAL_STATUSES:
            run.completed_at = now
        else:
            run.completed_at = None
        if status == "failed":
            run.error = error or run.error or "The workflow failed."
        elif status != "queued":
            run.error = None
        if status == "needs_review":
            run.reviewed = True
            if not any(a.resolution is None for a in run.approvals):
                run.approvals.append(self._approval(len(run.approvals) + 1))
        run.status = status
        run.history.append(status)

    def force_status(self, run: OlbrainRun, status: str, *, error: str | None = None) -> None:
        """`OlbrainSimulator.set_run_status`."""
        self.enter(run, status, error=error)

    def act(self, run: OlbrainRun, action: str) -> OlbrainRun | None:
        """Apply control ``action`` per §5.2; the run to answer with, or None for a 409."""
        target = LEGAL_TRANSITIONS.get((action, run.status))
        if target is None:
            return None
        if action == "retry":
            if self.retry_new_run_id:
                agent = self.agents[run.agent_id]
                fresh = self.create_run(agent, run.inputs, None)
                fresh.attempt = run.attempt + 1
                fresh.retry_of = run.run_id
                return fresh
            run.attempt += 1
        self.enter(run, target)
        return run

    def _approval(self, index: int) -> OlbrainApproval:
        return OlbrainApproval(
            exception_id=self.ids.exception_id(),
            step_id=f"step_{index}",
            item_id=f"item_{index}",
            data={"row": index},
            error="This item needs human review.",
        )

    def run_json(self, run: OlbrainRun) -> dict[str, Any]:
        """The E4 record with freshly signed output-file URLs (succeeded runs only)."""
        files: list[dict[str, Any]] = []
        if run.status in ("succeeded", "completed"):
            agent = self.agents[run.agent_id]
            for name, content in agent.output_files.items():
                url, expires_at = self.sign(run.run_id, name)
                files.append(
                    {
                        "name": name,
                        "size_bytes": len(content),
                        "url": url,
                        "url_expires_at": iso(expires_at),
                    }
                )
        return run.to_json(files)

    def sign(self, run_id: str, name: str) -> tuple[str, float]:
        """A new signed URL for an output file, valid `FILE_URL_LIFETIME` from now."""
        now = self.clock.now()
        signature = self.ids.signature()
        expires_at = now + FILE_URL_LIFETIME
        self.signed[signature] = SignedFile(run_id, name, expires_at)
        query = urllib.parse.urlencode(
            {
                "X-Goog-Algorithm": "GOOG4-HMAC-SHA256",
                "X-Goog-Date": iso(now),
                "X-Goog-Expires": str(int(FILE_URL_LIFETIME)),
                "X-Goog-Signature": signature,
            }
        )
        path = f"/_files/{urllib.parse.quote(run_id)}/{urllib.parse.quote(name)}"
        return f"{self.base_url}{path}?{query}", expires_at

    # --------------------------------------------------------------- background

    def spawn(self, coro: Any) -> asyncio.Task[Any]:
        """Run ``coro`` as a tracked task (cancelled by `OlbrainSimulator.close`)."""
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(_retire)
        task.add_done_callback(self.tasks.discard)
        return task


def _retire(task: asyncio.Task[Any]) -> None:
    # Retrieve the outcome so an answer nobody awaited (client gone) is not reported as a
    # "never retrieved" exception; the handler that did await it has rendered it already.
    if not task.cancelled():
        task.exception()


def _fails(fail: bool | int, attempt: int) -> bool:
    if isinstance(fail, bool):
        return fail
    return attempt <= fail
