"""The Olbrain simulator's workflow side over raw HTTP: triggers, the run lifecycle, the full
§5.2 transition matrix, approvals and expiring signed output URLs."""

from __future__ import annotations

import io
import itertools
import re
from typing import Any

import aiohttp
import pytest

from genie_async.testing import OlbrainSimulator, VirtualClock

from .test_simulator import Api, api, assert_error, olb

__all__ = ["api", "olb"]  # the fixtures, re-used from the sibling module

STATUSES = ["queued", "running", "paused", "needs_review", "succeeded", "failed", "cancelled"]
ACTIONS = ["cancel", "pause", "retry", "resume"]
LEGAL = {
    ("cancel", "queued"): "cancelled",
    ("cancel", "running"): "cancelled",
    ("pause", "running"): "paused",
    ("resume", "paused"): "running",
    ("retry", "failed"): "queued",
}


async def start_run(api: Api, agent: str, body: Any = None) -> str:
    status, reply, _ = await api.call(
        "POST", f"/api/agents/webhook/{agent}", json={} if body is None else body
    )
    assert status == 202, reply
    return str(reply["run_id"])


async def get_run(api: Api, agent: str, run_id: str) -> dict[str, Any]:
    status, body, _ = await api.call("GET", f"/api/agents/{agent}/runs/{run_id}")
    assert status == 200, body
    return dict(body)


# ------------------------------------------------------------------------- triggers


async def test_workflow_trigger_creates_queued_run(olb: OlbrainSimulator, api: Api) -> None:
    """E1 on a workflow agent: 202 {run_id, status: queued, agent_id}, one stored run."""
    agent = olb.add_workflow_agent(auto_advance=False)
    status, body, headers = await api.call(
        "POST", f"/api/agents/webhook/{agent}", json={"inputs": {"csv_file": "fi_x"}}
    )
    assert status == 202
    assert re.fullmatch(r"run_01[0-9A-Z]{24}", body["run_id"])
    assert body == {"run_id": body["run_id"], "status": "queued", "agent_id": agent}
    assert headers["x-request-id"].startswith("req_")
    (run,) = olb.runs_for(agent)
    assert (run.run_id, run.status, run.inputs) == (body["run_id"], "queued", {"csv_file": "fi_x"})
    record = await get_run(api, agent, run.run_id)
    assert record["workflow_id"] == agent
    assert record["inputs"] == {"csv_file": "fi_x"}
    assert record["started_at"] is None
    assert record["output_files"] == []


async def test_body_without_inputs_is_the_inputs(olb: OlbrainSimulator, api: Api) -> None:
    """Any JSON object is accepted; without 'inputs' the whole body, key included (what the
    workflow receives, so it can dedupe on it, §9.3), is stored."""
    agent = olb.add_workflow_agent()
    run_id = await start_run(api, agent, {"order": 7, "Idempotency-Key": "k"})
    assert olb.runs[run_id].inputs == {"order": 7, "Idempotency-Key": "k"}
    assert olb.runs[run_id].idempotency_key == "k"
    assert (await get_run(api, agent, run_id))["inputs"] == {"order": 7, "Idempotency-Key": "k"}


async def test_a_key_inside_inputs_is_the_runs_key_and_is_echoed(
    olb: OlbrainSimulator, api: Api
) -> None:
    """A key inside 'inputs' (where the library puts it) is recorded as the run's key and
    echoed in the record's inputs (§7.2 matches on it)."""
    agent = olb.add_workflow_agent(auto_advance=False)
    run_id = await start_run(api, agent, {"inputs": {"n": 1, "Idempotency-Key": "in-1"}})
    assert olb.runs[run_id].idempotency_key == "in-1"
    assert olb.requests_to("trigger")[-1].idempotency_key == "in-1"
    assert (await get_run(api, agent, run_id))["inputs"] == {"n": 1, "Idempotency-Key": "in-1"}


async def test_by_default_a_repeated_key_makes_a_second_run(
    olb: OlbrainSimulator, api: Api
) -> None:
    """The default is no gateway dedupe (§9.3): the same body and key twice make two runs."""
    assert olb.idempotency == "off"
    agent = olb.add_workflow_agent(auto_advance=False)
    body = {"inputs": {"n": 1, "Idempotency-Key": "k"}}
    first, second = await start_run(api, agent, body), await start_run(api, agent, body)
    assert first != second
    assert [r.idempotency_key for r in olb.runs_for(agent)] == ["k", "k"]
    assert not any(r.replayed for r in olb.requests_to("trigger"))


async def test_replay_switch_dedupes_a_key_inside_inputs(olb: OlbrainSimulator, api: Api) -> None:
    """With idempotency='replay', a key inside 'inputs' replays the first run like a top-level
    one."""
    olb.idempotency = "replay"
    agent = olb.add_workflow_agent(auto_advance=False)
    body = {"inputs": {"n": 1, "Idempotency-Key": "k"}}
    first, second = await start_run(api, agent, body), await start_run(api, agent, body)
    assert first == second
    assert len(olb.runs_for(agent)) == 1
    assert olb.requests_to("trigger")[-1].replayed


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({"inputs": "x"}, ["inputs"]),
        ({"inputs": {}}, ["inputs.csv_file", "inputs.operation"]),
        ({"inputs": {"csv_file": "fi_1"}}, ["inputs.operation"]),
        ([1], ["body"]),
    ],
)
async def test_workflow_schema_mismatch_is_422(
    olb: OlbrainSimulator, api: Api, body: Any, fields: list[str]
) -> None:
    """required_inputs is the agent's schema: missing inputs are 422 with fields, no run."""
    agent = olb.add_workflow_agent(required_inputs=["csv_file", "operation"])
    status, reply, h = await api.call("POST", f"/api/agents/webhook/{agent}", json=body)
    assert_error(status, reply, h, 422, "validation_error")
    assert [f["field"] for f in reply["error"]["fields"]] == fields
    assert olb.runs == {}


async def test_e13_alias_creates_run(olb: OlbrainSimulator, api: Api) -> None:
    """E13 answers 202 'triggered' (the SDK fixture) and creates a queued run."""
    agent = olb.add_workflow_agent(auto_advance=False)
    status, body, _ = await api.call(
        "POST",
        f"/api/workflows/{agent}/trigger",
        json={"payload": {"a": 1}, "variables": {"v": 2}},
    )
    assert (status, body["status"]) == (202, "triggered")
    run = olb.runs[body["run_id"]]
    assert (run.status, run.inputs) == ("queued", {"v": 2, "payload": {"a": 1}})
    status, body, h = await api.call(
        "POST", f"/api/workflows/{agent}/trigger", json={"variables": []}
    )
    assert_error(status, body, h, 422, "validation_error")


async def test_idempotent_retry_after_accept_creates_one_run(
    olb: OlbrainSimulator, api: Api
) -> None:
    """A 502 after the run was created, then a keyed retry: one run, the same run_id."""
    olb.idempotency = "replay"
    agent = olb.add_workflow_agent()
    olb.fail_next("POST", f"/api/agents/webhook/{agent}", 502, after_accept=True)
    body = {"inputs": {"x": 1}, "Idempotency-Key": "key-1"}
    status, error, h = await api.call("POST", f"/api/agents/webhook/{agent}", json=body)
    assert_error(status, error, h, 502, "upstream_error")
    (created,) = olb.runs_for(agent)
    status, reply, headers = await api.call("POST", f"/api/agents/webhook/{agent}", json=body)
    assert (status, reply["run_id"]) == (202, created.run_id)
    assert headers["Idempotent-Replayed"] == "true"
    assert len(olb.runs_for(agent)) == 1
    # The E13 alias shares the scope: the same key there does not make a second run either.
    status, _, _ = await api.call(
        "POST", f"/api/workflows/{agent}/trigger", json={"Idempotency-Key": "key-1"}
    )
    assert status == 202
    assert len(olb.runs_for(agent)) == 1


async def test_unkeyed_retry_after_accept_duplicates(olb: OlbrainSimulator, api: Api) -> None:
    """Without a key the same after_accept scenario makes two runs (the test above can fail)."""
    agent = olb.add_workflow_agent()
    olb.fail_next("POST", f"/api/agents/webhook/{agent}", 503, after_accept=True)
    assert (await api.call("POST", f"/api/agents/webhook/{agent}", json={}))[0] == 503
    assert (await api.call("POST", f"/api/agents/webhook/{agent}", json={}))[0] == 202
    assert len(olb.runs_for(agent)) == 2


# ------------------------------------------------------------------------ E3 / E4


async def test_list_runs_newest_first_with_filter_and_limit(
    olb: OlbrainSimulator, api: Api
) -> None:
    """E3: this agent's runs newest first; status filter; limit; bad limit 422."""
    agent, other = olb.add_workflow_agent(auto_advance=False), olb.add_workflow_agent()
    ids = [await start_run(api, agent) for _ in range(3)]
    await start_run(api, other)
    olb.set_run_status(ids[0], "running")
    status, body, _ = await api.call("GET", f"/api/agents/{agent}/runs")
    assert status == 200
    assert [r["run_id"] for r in body["runs"]] == ids[::-1]
    assert body["limit"] == 50
    _, body, _ = await api.call("GET", f"/api/agents/{agent}/runs?status=running")
    assert [r["run_id"] for r in body["runs"]] == [ids[0]]
    _, body, _ = await api.call("GET", f"/api/agents/{agent}/runs?limit=2")
    assert [r["run_id"] for r in body["runs"]] == ids[:0:-1]
    assert_error(
        *(await api.call("GET", f"/api/agents/{agent}/runs?limit=x")), 422, "validation_error"
    )


async def test_list_runs_bare_array_switch() -> None:
    """runs_list_shape='array' answers a bare JSON array (the SDK's typing)."""
    async with OlbrainSimulator(runs_list_shape="array") as sim, aiohttp.ClientSession() as http:
        api = Api(sim, http)
        agent = sim.add_workflow_agent()
        run_id = await start_run(api, agent)
        status, body, _ = await api.call("GET", f"/api/agents/{agent}/runs")
        assert status == 200
        assert [r["run_id"] for r in body] == [run_id]


async def test_auto_advance_steps_once_per_get(olb: OlbrainSimulator, api: Api) -> None:
    """Each GET moves queued -> running -> succeeded, then stays; timestamps follow."""
    agent = olb.add_workflow_agent()
    run_id = await start_run(api, agent)
    first = await get_run(api, agent, run_id)
    assert (first["status"], first["completed_at"]) == ("running", None)
    assert first["started_at"] is not None
    second = await get_run(api, agent, run_id)
    assert second["status"] == "succeeded"
    assert second["completed_at"] is not None
    assert second["progress_percent"] == 100
    assert (await get_run(api, agent, run_id))["status"] == "succeeded"
    assert olb.runs[run_id].history == ["queued", "running", "succeeded"]


async def test_auto_advance_to_failed(olb: OlbrainSimulator, api: Api) -> None:
    """fail=True ends every execution 'failed' with an error message."""
    agent = olb.add_workflow_agent(fail=True)
    run_id = await start_run(api, agent)
    await get_run(api, agent, run_id)
    record = await get_run(api, agent, run_id)
    assert record["status"] == "failed"
    assert record["error"]
    assert record["output_files"] == []


async def test_fail_count_then_retry_succeeds(olb: OlbrainSimulator, api: Api) -> None:
    """fail=1 fails the first execution; retry keeps run_id and the second one succeeds."""
    agent = olb.add_workflow_agent(fail=1)
    run_id = await start_run(api, agent)
    await get_run(api, agent, run_id)
    assert (await get_run(api, agent, run_id))["status"] == "failed"
    status, body, _ = await api.call("POST", f"/api/agents/{agent}/runs/{run_id}/retry")
    assert (status, body["run_id"], body["status"], body["attempt"]) == (200, run_id, "queued", 2)
    assert body["error"] is None
    await get_run(api, agent, run_id)
    assert (await get_run(api, agent, run_id))["status"] == "succeeded"
    assert len(olb.runs_for(agent)) == 1


async def test_retry_new_run_id_switch() -> None:
    """retry_new_run_id mints a new queued run pointing back at the failed one."""
    async with OlbrainSimulator(retry_new_run_id=True) as sim, aiohttp.ClientSession() as http:
        api = Api(sim, http)
        agent = sim.add_workflow_agent(auto_advance=False)
        run_id = await start_run(api, agent, {"inputs": {"a": 1}})
        sim.set_run_status(run_id, "failed")
        status, body, _ = await api.call("POST", f"/api/agents/{agent}/runs/{run_id}/retry")
        assert status == 200
        assert body["run_id"] != run_id
        assert (body["status"], body["retry_of"], body["inputs"]) == ("queued", run_id, {"a": 1})
        assert sim.runs[run_id].status == "failed"
        assert len(sim.runs_for(agent)) == 2


async def test_no_auto_advance_without_hooks(olb: OlbrainSimulator, api: Api) -> None:
    """auto_advance=False: GETs never move the run; advance() does, one step at a time."""
    agent = olb.add_workflow_agent(auto_advance=False)
    run_id = await start_run(api, agent)
    for _ in range(3):
        assert (await get_run(api, agent, run_id))["status"] == "queued"
    assert olb.advance(run_id) == "running"
    assert olb.advance(run_id) == "succeeded"
    assert olb.advance(run_id) == "succeeded"
    assert (await get_run(api, agent, run_id))["status"] == "succeeded"
    with pytest.raises(KeyError):
        olb.advance("run_missing")


async def test_paused_never_auto_advances(olb: OlbrainSimulator, api: Api) -> None:
    """A paused run stays paused across GETs and advance(); only resume moves it."""
    agent = olb.add_workflow_agent()
    run_id = await start_run(api, agent)
    await get_run(api, agent, run_id)  # running
    status, body, _ = await api.call("POST", f"/api/agents/{agent}/runs/{run_id}/pause")
    assert (status, body["status"]) == (200, "paused")
    for _ in range(3):
        assert (await get_run(api, agent, run_id))["status"] == "paused"
    assert olb.advance(run_id) == "paused"
    status, body, _ = await api.call("POST", f"/api/agents/{agent}/runs/{run_id}/resume")
    assert (status, body["status"]) == (200, "running")
    assert (await get_run(api, agent, run_id))["status"] == "succeeded"


async def test_run_not_found(olb: OlbrainSimulator, api: Api) -> None:
    """An unknown run id, or another agent's run, is 404 run_not_found on every run route."""
    agent, other = olb.add_workflow_agent(), olb.add_workflow_agent()
    theirs = await start_run(api, other)
    for run_id in ("run_missing", theirs):
        for method, suffix in [
            ("GET", ""),
            ("POST", "/cancel"),
            ("POST", "/pause"),
            ("POST", "/retry"),
            ("POST", "/resume"),
            ("GET", "/approvals"),
            ("POST", "/approvals/resolve"),
        ]:
            result = await api.call(method, f"/api/agents/{agent}/runs/{run_id}{suffix}")
            assert_error(*result, 404, "run_not_found")
    assert olb.runs[theirs].status == "queued"


# ------------------------------------------------------------------ §5.2 matrix


@pytest.mark.parametrize(("status", "action"), list(itertools.product(STATUSES, ACTIONS)))
async def test_transition_matrix(olb: OlbrainSimulator, api: Api, status: str, action: str) -> None:
    """Every (status, action): the five legal ones move the run, the rest are 409, unchanged."""
    agent = olb.add_workflow_agent(auto_advance=False)
    run_id = await start_run(api, agent)
    olb.set_run_status(run_id, status)
    code, body, headers = await api.call("POST", f"/api/agents/{agent}/runs/{run_id}/{action}")
    target = LEGAL.get((action, status))
    if target is None:
        assert_error(code, body, headers, 409, "invalid_state_transition")
        assert olb.runs[run_id].status == status
    else:
        assert (code, body["status"], body["run_id"]) == (200, target, run_id)
        assert olb.runs[run_id].status == target
        assert (await get_run(api, agent, run_id))["status"] == target


async def test_control_body_is_optional_json(olb: OlbrainSimulator, api: Api) -> None:
    """Control POSTs accept no body or a JSON object; bad JSON 400, non-object 422, >1 MiB 413."""
    agent = olb.add_workflow_agent(auto_advance=False)
    run_id = await start_run(api, agent)
    path = f"/api/agents/{agent}/runs/{run_id}/cancel"
    ctype = {"Content-Type": "application/json"}
    assert_error(*(await api.call("POST", path, data=b"{", headers=ctype)), 400, "bad_request")
    assert_error(*(await api.call("POST", path, json=[1])), 422, "validation_error")
    big = io.BytesIO(b"{" * ((1 << 20) + 1))
    assert_error(*(await api.call("POST", path, data=big, headers=ctype)), 413, "payload_too_large")
    assert olb.runs[run_id].status == "queued"
    status, body, _ = await api.call("POST", path, json={"Idempotency-Key": "c1"})
    assert (status, body["status"]) == (200, "cancelled")


async def test_control_idempotent_replay(olb: OlbrainSimulator, api: Api) -> None:
    """A keyed control action repeated replays its 200 instead of answering 409."""
    olb.idempotency = "replay"
    agent = olb.add_workflow_agent(auto_advance=False)
    run_id = await start_run(api, agent)
    path = f"/api/agents/{agent}/runs/{run_id}/cancel"
    first = await api.call("POST", path, json={"Idempotency-Key": "c"})
    second = await api.call("POST", path, json={"Idempotency-Key": "c"})
    assert first[0] == second[0] == 200
    assert first[1] == second[1]
    assert_error(*(await api.call("POST", path)), 409, "invalid_state_transition")


async def test_set_run_status_failed_sets_error(olb: OlbrainSimulator, api: Api) -> None:
    """set_run_status('failed', error=...) shows up in the run record."""
    agent = olb.add_workflow_agent(auto_advance=False)
    run_id = await start_run(api, agent)
    olb.set_run_status(run_id, "failed", error="disk full")
    record = await get_run(api, agent, run_id)
    assert (record["status"], record["error"]) == ("failed", "disk full")
    assert record["completed_at"] is not None


# ------------------------------------------------------------------------ approvals


async def test_needs_review_flow(olb: OlbrainSimulator, api: Api) -> None:
    """needs_review: the run stops, E14 lists one blocking gate, E15 resolves and resumes."""
    agent = olb.add_workflow_agent(needs_review=True)
    run_id = await start_run(api, agent)
    await get_run(api, agent, run_id)
    assert (await get_run(api, agent, run_id))["status"] == "needs_review"
    assert (await get_run(api, agent, run_id))["status"] == "needs_review"
    status, approvals, _ = await api.call("GET", f"/api/agents/{agent}/runs/{run_id}/approvals")
    assert status == 200
    (gate,) = approvals
    assert gate["blocking"] is True
    assert gate["requires_human_review"] is True
    assert set(gate) == {
        "exception_id",
        "step_id",
        "item_id",
        "data",
        "error",
        "requires_human_review",
        "blocking",
    }
    resolve = f"/api/agents/{agent}/runs/{run_id}/approvals/resolve"
    status, body, _ = await api.call(
        "POST",
        resolve,
        json={"exception_id": gate["exception_id"], "resolution": "modified", "modified_data": {}},
    )
    assert status == 200
    assert body == {
        "exception_id": gate["exception_id"],
        "resolution": "modified",
        "all_resolved": True,
        "resumed": True,
    }
    assert olb.runs[run_id].status == "running"
    _, approvals, _ = await api.call("GET", f"/api/agents/{agent}/runs/{run_id}/approvals")
    assert approvals == []
    assert (await get_run(api, agent, run_id))["status"] == "succeeded"
    again = {"exception_id": gate["exception_id"], "resolution": "approved"}
    assert_error(*(await api.call("POST", resolve, json=again)), 409, "invalid_state_transition")


@pytest.mark.parametrize(
    "body",
    [
        {"resolution": "maybe"},
        {"resolution": "modified"},
        {"resolution": "approved", "modified_data": {"a": 1}},
        {"resolution": "modified", "modified_data": "x"},
    ],
)
async def test_invalid_resolution_is_400(
    olb: OlbrainSimulator, api: Api, body: dict[str, Any]
) -> None:
    """Unknown resolutions, and modified_data without/with 'modified': 400 invalid_resolution."""
    agent = olb.add_workflow_agent(auto_advance=False)
    run_id = await start_run(api, agent)
    olb.set_run_status(run_id, "needs_review")
    gate = olb.runs[run_id].approvals[0]
    status, reply, h = await api.call(
        "POST",
        f"/api/agents/{agent}/runs/{run_id}/approvals/resolve",
        json={"exception_id": gate.exception_id, **body},
    )
    assert_error(status, reply, h, 400, "invalid_resolution")
    assert gate.resolution is None


async def test_resolve_unknown_exception_and_wrong_state(olb: OlbrainSimulator, api: Api) -> None:
    """An unknown exception id is 404; a missing one 422; resolving outside needs_review 409."""
    agent = olb.add_workflow_agent(auto_advance=False)
    run_id = await start_run(api, agent)
    olb.set_run_status(run_id, "needs_review")
    resolve = f"/api/agents/{agent}/runs/{run_id}/approvals/resolve"
    result = await api.call(
        "POST", resolve, json={"exception_id": "exc_nope", "resolution": "approved"}
    )
    assert_error(*result, 404, "exception_not_found")
    result = await api.call("POST", resolve, json={"resolution": "approved"})
    assert_error(*result, 422, "validation_error")
    olb.set_run_status(run_id, "cancelled")
    gate = olb.runs[run_id].approvals[0]
    result = await api.call(
        "POST", resolve, json={"exception_id": gate.exception_id, "resolution": "rejected"}
    )
    assert_error(*result, 409, "invalid_state_transition")


# ---------------------------------------------------------------------- output files


async def test_output_file_urls_expire_after_15_minutes(olb: OlbrainSimulator, api: Api) -> None:
    """A signed URL serves the file until 15 min after its GET, then 403; a new GET re-signs."""
    agent = olb.add_workflow_agent(output_files={"report.csv": b"a,b\n1,2\n"})
    run_id = await start_run(api, agent)
    await get_run(api, agent, run_id)
    (entry,) = (await get_run(api, agent, run_id))["output_files"]
    assert (entry["name"], entry["size_bytes"]) == ("report.csv", 8)
    assert entry["url"].startswith(olb.url + "/_files/")
    status, content, _ = await api.call("GET", entry["url"], auth=False)
    assert (status, content) == (200, "a,b\n1,2\n")
    olb.clock.advance(14 * 60)
    assert (await api.call("GET", entry["url"], auth=False))[0] == 200
    olb.clock.advance(61)
    status, text, _ = await api.call("GET", entry["url"], auth=False)
    assert status == 403
    assert "ExpiredToken" in text
    (fresh,) = (await get_run(api, agent, run_id))["output_files"]
    assert fresh["url"] != entry["url"]
    assert fresh["url_expires_at"] > entry["url_expires_at"]
    assert (await api.call("GET", fresh["url"], auth=False))[0] == 200


async def test_tampered_signature_is_403(olb: OlbrainSimulator, api: Api) -> None:
    """A URL whose signature is unknown, or points at another file, is 403."""
    agent = olb.add_workflow_agent(output_files={"a.txt": b"A", "b.txt": b"B"})
    run_id = await start_run(api, agent)
    olb.set_run_status(run_id, "succeeded")
    a, b = (await get_run(api, agent, run_id))["output_files"]
    forged = re.sub(r"X-Goog-Signature=[0-9a-f]+", "X-Goog-Signature=00", a["url"])
    swapped = a["url"].replace("/a.txt?", "/b.txt?")
    for url in (forged, swapped):
        status, text, _ = await api.call("GET", url, auth=False)
        assert (status, "SignatureDoesNotMatch" in text) == (403, True)
    assert (await api.call("GET", b["url"], auth=False))[1] == "B"


async def test_injected_virtual_clock_drives_expiry() -> None:
    """An injected clock decides both the stamps and the expiry."""
    clock = VirtualClock(start=1_800_000_000.0)
    async with OlbrainSimulator(clock=clock) as sim, aiohttp.ClientSession() as http:
        api = Api(sim, http)
        agent = sim.add_workflow_agent()
        run_id = await start_run(api, agent)
        sim.set_run_status(run_id, "succeeded")
        (entry,) = (await get_run(api, agent, run_id))["output_files"]
        assert entry["url_expires_at"] == "2027-01-15T08:15:00.000Z"
        await clock.sleep(15 * 60)
        assert (await api.call("GET", entry["url"], auth=False))[0] == 403


async def test_request_log_counts_run_gets(olb: OlbrainSimulator, api: Api) -> None:
    """requests_to() filters the log by route and agent."""
    agent = olb.add_workflow_agent()
    run_id = await start_run(api, agent)
    for _ in range(3):
        await get_run(api, agent, run_id)
    assert len(olb.requests_to("get_run", agent)) == 3
    assert len(olb.requests_to("get_run", "agt_other")) == 0
