"""Workflow routes: run creation (E1/E13), listing and reading (E3/E4), the control actions
E5-E8 under the §5.2 state machine, and approvals (E14/E15)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from ._olbrain_http import Call, OlbrainError, field_error, int_param
from ._olbrain_state import Reply

__all__ = [
    "control",
    "get_run",
    "list_approvals",
    "list_runs",
    "resolve_approval",
    "trigger_workflow",
    "workflow_trigger",
]

_RESOLUTIONS = ("approved", "rejected", "modified")


async def trigger_workflow(
    call: Call,
    body: dict[str, Any],
    key: str | None,
    *,
    inputs: Any,
    scope: str = "trigger",
    status_word: str = "queued",
) -> Reply:
    """Validate ``inputs`` against the agent's schema, then create one ``queued`` run
    (once per idempotency key in replay mode): 202 ``{run_id, status, agent_id}``."""
    agent = call.the_agent()
    if "inputs" in body and not isinstance(body["inputs"], dict):
        raise field_error([{"field": "inputs", "message": "Must be an object."}])
    if agent.required_inputs:
        present = inputs if isinstance(inputs, dict) else {}
        missing = [name for name in agent.required_inputs if name not in present]
        if missing:
            raise field_error(
                [{"field": f"inputs.{name}", "message": "Field required."} for name in missing]
            )
    world = call.world

    async def create() -> Reply:
        run = world.create_run(agent, inputs, key)
        return Reply(202, {"run_id": run.run_id, "status": status_word, "agent_id": agent.agent_id})

    return await call.once(scope, key, create)


async def workflow_trigger(call: Call) -> Reply:
    """E13 (SDK-only alias): body ``{"payload", "variables"}``; answers 202 with status
    ``"triggered"`` as the SDK's fixture shows, though the run itself is ``queued``."""
    body = call.json_object(required=False)
    key = call.idempotency_key(body)
    variables = body.get("variables")
    if variables is not None and not isinstance(variables, dict):
        raise field_error([{"field": "variables", "message": "Must be an object."}])
    inputs = dict(variables or {})
    if body.get("payload") is not None:
        inputs.setdefault("payload", body["payload"])
    # The same scope as E1: a key reused across the two routes still makes one run.
    return await trigger_workflow(call, {}, key, inputs=inputs, status_word="triggered")


async def list_runs(call: Call) -> Reply:
    """E3: newest first; ``status`` filter and ``limit`` (default 50, the "runtime's own
    default"); ``{"runs": [...], "limit": N}`` or a bare array per the switch."""
    limit = int_param(call, "limit", 50, minimum=1)
    status = call.request.query.get("status")
    agent_id = call.the_agent().agent_id
    runs = [
        run
        for run in reversed(call.world.runs.values())
        if run.agent_id == agent_id and (status is None or run.status == status)
    ][:limit]
    records = [call.world.run_json(run) for run in runs]
    if call.world.runs_list_shape == "array":
        return Reply(200, records)
    return Reply(200, {"runs": records, "limit": limit})


async def get_run(call: Call) -> Reply:
    """E4: the run record; on an ``auto_advance`` agent the run first moves one step."""
    run = call.run()
    if call.the_agent().auto_advance:
        call.world.step(run)
    return Reply(200, call.world.run_json(run))


def control(action: str) -> Callable[[Call], Awaitable[Reply]]:
    """E5-E8: ``action`` under §5.2; 200 with the run record, else 409
    ``invalid_state_transition``. The optional JSON body may carry an idempotency key."""

    async def handle(call: Call) -> Reply:
        run = call.run()
        body = call.json_object(required=False)
        key = call.idempotency_key(body)
        world = call.world

        async def apply() -> Reply:
            result = world.act(run, action)
            if result is None:
                raise OlbrainError(
                    409,
                    "invalid_state_transition",
                    f"Cannot {action} a run in status {run.status!r}.",
                )
            return Reply(200, world.run_json(result))

        return await call.once(f"{action}:{run.run_id}", key, apply)

    return handle


async def list_approvals(call: Call) -> Reply:
    """E14: the run's pending approvals as a bare JSON array (the SDK's shape)."""
    run = call.run()
    return Reply(200, [a.to_json() for a in run.approvals if a.resolution is None])


async def resolve_approval(call: Call) -> Reply:
    """E15: resolve one approval; once no blocking one is pending, a ``needs_review`` run
    resumes (``running``)."""
    run = call.run()
    body = call.json_object(required=True)
    key = call.idempotency_key(body)
    exception_id = body.get("exception_id")
    if not isinstance(exception_id, str) or not exception_id:
        raise field_error([{"field": "exception_id", "message": "Required: a string."}])
    resolution = body.get("resolution")
    modified = body.get("modified_data")
    if resolution not in _RESOLUTIONS:
        raise OlbrainError(
            400, "invalid_resolution", "resolution must be approved, rejected or modified."
        )
    if (resolution == "modified") != (modified is not None) or (
        modified is not None and not isinstance(modified, dict)
    ):
        raise OlbrainError(
            400,
            "invalid_resolution",
            "modified_data (an object) is required with, and only with, 'modified'.",
        )
    world = call.world

    async def apply() -> Reply:
        approval = next((a for a in run.approvals if a.exception_id == exception_id), None)
        if approval is None:
            raise OlbrainError(404, "exception_not_found", "Approval not found.")
        if approval.resolution is not None or run.status != "needs_review":
            raise OlbrainError(
                409,
                "invalid_state_transition",
                f"Cannot resolve this approval: run status {run.status!r}.",
            )
        approval.resolution = resolution
        approval.modified_data = modified
        all_resolved = not any(a.blocking and a.resolution is None for a in run.approvals)
        if all_resolved:
            world.enter(run, "running")
        return Reply(
            200,
            {
                "exception_id": exception_id,
                "resolution": resolution,
                "all_resolved": all_resolved,
                "resumed": all_resolved,
            },
        )

    return await call.once(f"resolve:{run.run_id}", key, apply)
