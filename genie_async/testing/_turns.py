"""Executing a scripted `Turn`: the coroutine that produces a run's events.

One task per accepted message (never per event or per reader). It appends events to the run
through `World.emit`, which wakes the SSE writers; a client disconnect never touches it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from ._ids import skill_id_for
from ._model import SimConversation, SimRun
from ._scenario import Confirm, ConnectAuth, Emit, Say, Skill, Step, Turn, Wait
from ._state import World

__all__ = ["run_turn"]


def _fill(text: str, context: dict[str, str]) -> str:
    # Plain replacement rather than str.format: user texts may contain literal braces.
    for key, value in context.items():
        text = text.replace("{" + key + "}", value)
    return text


def _default_schema(parameters: dict[str, Any]) -> list[dict[str, Any]]:
    kinds = {bool: "boolean", int: "integer", float: "number"}
    return [
        {
            "name": name,
            "label": name.replace("_", " ").capitalize(),
            "type": kinds.get(type(value), "string"),
            "control_type": "text",
            "optional": False,
            "hint": "",
        }
        for name, value in parameters.items()
    ]


async def _forever() -> None:
    # A future nobody resolves: the turn stalls until the simulator cancels it on close().
    await asyncio.get_running_loop().create_future()


async def run_turn(world: World, conv: SimConversation, run: SimRun, turn: Turn, text: str) -> None:
    """Play ``turn`` in ``run``: ``processing.started``, the steps, ``processing.finished``."""
    context = {"message": text, "reason": "", "connector": ""}
    world.set_state(conv, "ai_running")
    world.emit(run, "processing.started")
    if await _play(world, conv, run, turn.steps, context):
        return  # parked on a runtime connection: this run never finishes
    world.emit(run, "processing.finished")
    run.finished = True
    world.set_state(conv, "idle")


async def _play(
    world: World,
    conv: SimConversation,
    run: SimRun,
    steps: Sequence[Step],
    context: dict[str, str],
) -> bool:
    """Run ``steps``; True if the turn parked on a runtime connection."""
    for step in steps:
        if step.delay:
            await asyncio.sleep(step.delay)
        if isinstance(step, Say):
            content = _fill(step.text, context)
            message = world.add_message(conv, "genie", content, run.run_id)
            world.emit(run, "agent.message", {"message": content, "message_id": message.message_id})
        elif isinstance(step, Skill):
            await _skill(world, conv, run, step)
        elif isinstance(step, Confirm):
            follow_up = await _confirm(world, conv, run, step, context)
            if await _play(world, conv, run, follow_up, context):
                return True
        elif isinstance(step, ConnectAuth):
            await _connect(world, conv, run, step, context)
            return True
        elif isinstance(step, Emit):
            if step.raw_data is not None:
                world.emit(run, step.type, raw_data=step.raw_data)
            else:
                world.emit(run, step.type, dict(step.payload or {}))
        elif isinstance(step, Wait):
            await (_forever() if step.seconds is None else asyncio.sleep(step.seconds))
    return False


async def _skill(world: World, conv: SimConversation, run: SimRun, step: Skill) -> None:
    fields: dict[str, Any] = {
        "skill_name": step.name,
        "skill_id": step.skill_id or skill_id_for(step.name),
    }
    world.set_state(conv, "skill_processing")
    world.emit(run, "skill.running", fields)
    if step.duration:
        await asyncio.sleep(step.duration)
    if step.outcome == "failed":
        world.emit(run, "skill.failed", {**fields, "error": step.error})
    elif step.outcome == "stopped":
        world.emit(run, "skill.stopped", fields)
    else:
        result = {} if step.result is None else {"result": step.result}
        world.emit(run, "skill.completed", {**fields, **result})
    world.set_state(conv, "ai_running")


async def _confirm(
    world: World, conv: SimConversation, run: SimRun, step: Confirm, context: dict[str, str]
) -> tuple[Step, ...]:
    parameters = dict(step.parameters or {})
    approval = world.open_approval(conv, "business" if step.business else "skill")
    world.set_state(conv, "skill_processing")
    fields: dict[str, Any] = {"call_id": approval.call_id, "skill_name": step.skill_name}
    if step.business:
        world.emit(run, "business_approval.required", fields)
    else:
        fields["skill_id"] = step.skill_id or skill_id_for(step.skill_name)
        fields["skill_parameters"] = parameters
        fields["skill_parameter_schema"] = (
            step.schema if step.schema is not None else _default_schema(parameters)
        )
        world.emit(run, "skill.confirmation_required", fields)
    resolution, reason = await approval.future
    world.set_state(conv, "ai_running")
    if resolution == "approved":
        return step.approve_steps
    context["reason"] = reason or ""
    return tuple(step.on_reject)


async def _connect(
    world: World, conv: SimConversation, run: SimRun, step: ConnectAuth, context: dict[str, str]
) -> None:
    attempt = world.open_attempt(conv, step.connector)
    payload: dict[str, object] = {}
    if step.fields in ("both", "attempt_id"):
        payload["runtime_connection_attempt_id"] = attempt.attempt_id
    if step.fields in ("both", "auth_link"):
        payload["auth_link"] = world.auth_link(attempt)
    world.emit(run, "runtime_connection.auth_required", payload)
    # Production quirk: the parked conversation reads `idle`, yet POST …/messages gets 409.
    conv.parked_attempt = attempt.attempt_id
    run.parked = True
    world.set_state(conv, "idle")
    run.signal.notify()
    outcome, _reason = await attempt.future
    try:
        if outcome == "authorized":
            await _resume(world, conv, step, {**context, "connector": step.connector})
    finally:
        conv.parked_attempt = None
        world.set_state(conv, "idle")


async def _resume(
    world: World, conv: SimConversation, step: ConnectAuth, context: dict[str, str]
) -> None:
    """The resumed turn: a new run whose genie messages reach history and nothing else."""
    resumed = world.new_run(conv, persisted=False)
    world.set_state(conv, "ai_running")
    for then in step.then:
        if then.delay:
            await asyncio.sleep(then.delay)
        if isinstance(then, Say):
            world.add_message(conv, "genie", _fill(then.text, context), resumed.run_id)
        elif isinstance(then, Skill) and then.duration:
            await asyncio.sleep(then.duration)
        elif isinstance(then, Wait):
            await (_forever() if then.seconds is None else asyncio.sleep(then.seconds))
    resumed.finished = True
