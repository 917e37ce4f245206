"""Every error of the seed's table, from the simulator, mapped to its class, hint and request id."""

from __future__ import annotations

import pytest

from genie_async import (
    AgentNotFoundError,
    APIStatusError,
    AuthenticationError,
    BadGatewayError,
    BadRequestError,
    GatewayTimeoutError,
    InternalServerError,
    InvalidStateTransitionError,
    MessageNotFoundError,
    NotFoundError,
    RateLimitError,
    RequestTooLargeError,
    RetryPolicy,
    RunNotFoundError,
    RuntimeNotApplicableError,
    ServiceUnavailableError,
    SessionNotFoundError,
    UnprocessableEntityError,
    UnsupportedMediaTypeError,
    UpstreamTimeoutError,
)
from genie_async import _hints as H
from genie_async._http import OLBRAIN_DIALECT, make_status_error
from genie_async.olbrain import OlbrainClient
from genie_async.testing import OlbrainSimulator, VirtualClock

from .conftest import make_client


def _answered(sim: OlbrainSimulator, error: APIStatusError) -> None:
    """The error carries the request id of the response the simulator logged for it."""
    assert error.request_id is not None
    assert error.request_id.startswith("req_")
    statuses = {r.request_id: r.status for r in sim.requests}
    assert statuses[error.request_id] == error.status


async def test_400_bad_body(sim: OlbrainSimulator, client: OlbrainClient) -> None:
    """400 without a documented code: BadRequestError, the schema hint, never retried."""
    agent_id = sim.add_workflow_agent()
    sim.fail_next("POST", "/api/agents/webhook/*", 400)
    with pytest.raises(BadRequestError) as info:
        await client.agent(agent_id).trigger({"x": 1})
    assert type(info.value) is BadRequestError
    assert info.value.hint == H.OLBRAIN_STATUS_HINTS[400]
    assert "agent's schema in Studio" in (info.value.hint or "")
    assert len(sim.requests_to("trigger")) == 1
    _answered(sim, info.value)


async def test_400_runtime_not_applicable_both_directions(
    sim: OlbrainSimulator, client: OlbrainClient
) -> None:
    """Run endpoints on a conversational agent and session endpoints on a workflow agent."""
    chat = sim.add_conversational_agent()
    flow = sim.add_workflow_agent()
    with pytest.raises(RuntimeNotApplicableError) as runs_on_chat:
        await client.agent(chat).runs()
    with pytest.raises(RuntimeNotApplicableError) as sessions_on_flow:
        await client.agent(flow).sessions()
    for info in (runs_on_chat, sessions_on_flow):
        error = info.value
        assert isinstance(error, BadRequestError)
        assert error.status == 400
        assert error.error_code == "runtime_not_applicable"
        assert error.hint == H.OLBRAIN_CODE_HINTS["runtime_not_applicable"]
        assert "workflow-only" in (error.hint or "")
        _answered(sim, error)


async def test_401_unknown_or_revoked_key(sim: OlbrainSimulator, retry: RetryPolicy) -> None:
    """401 unauthorized: AuthenticationError with the 'Bearer ak_...' checklist, no retry."""
    agent_id = sim.add_conversational_agent()
    other = sim.add_key()
    sim.revoke_key(other)
    for key in ("ak_" + "0" * 40, other):
        async with OlbrainClient(api_key=key, base_url=sim.url, retry=retry) as client:
            with pytest.raises(AuthenticationError) as info:
                await client.agent(agent_id).sessions()
        error = info.value
        assert error.error_code == "unauthorized"
        assert error.hint == H.OLBRAIN_STATUS_HINTS[401]
        assert "Bearer ak_..." in (error.hint or "")
        assert key not in str(error)
        assert key not in repr(error.body)
        _answered(sim, error)
    assert len(sim.requests) == 2


async def test_404_agent_missing_or_in_another_organization(
    sim: OlbrainSimulator, client: OlbrainClient
) -> None:
    """Both cases answer the same uniform 404: AgentNotFoundError with the seed's hint."""
    foreign = sim.add_conversational_agent(organization_id=sim.add_organization())
    for agent_id in ("agt_missing", foreign):
        with pytest.raises(AgentNotFoundError) as info:
            await client.agent(agent_id).conversation().ask("hi")
        assert isinstance(info.value, NotFoundError)
        assert info.value.hint == H.OLBRAIN_CODE_HINTS["agent_not_found"]
        _answered(sim, info.value)


async def test_404_session_not_found(sim: OlbrainSimulator, client: OlbrainClient) -> None:
    """An unknown session id, on E10 and on a continued turn: SessionNotFoundError."""
    agent_id = sim.add_conversational_agent()
    with pytest.raises(SessionNotFoundError) as read:
        await client.agent(agent_id).session("sess_nope")
    with pytest.raises(SessionNotFoundError) as turn:
        await client.agent(agent_id).conversation(session_id="sess_nope").ask("hi")
    for info in (read, turn):
        assert info.value.hint == H.OLBRAIN_CODE_HINTS["session_not_found"]
        _answered(sim, info.value)


async def test_404_message_not_found(sim: OlbrainSimulator, client: OlbrainClient) -> None:
    """An unknown message id within a real session: MessageNotFoundError."""
    agent_id = sim.add_conversational_agent()
    conversation = client.agent(agent_id).conversation()
    await conversation.ask("hi")
    with pytest.raises(MessageNotFoundError) as info:
        await conversation.message("msg_nope")
    assert info.value.hint == "Confirm both session_id and message_id."
    _answered(sim, info.value)


async def test_404_run_not_found(sim: OlbrainSimulator, client: OlbrainClient) -> None:
    """An unknown run id, or another agent's run: RunNotFoundError."""
    flow = sim.add_workflow_agent()
    other = sim.add_workflow_agent()
    run = await client.agent(other).trigger({})
    for agent_id, run_id in ((flow, "run_nope"), (flow, run.run_id)):
        with pytest.raises(RunNotFoundError) as info:
            await client.agent(agent_id).get_run(run_id)
        assert info.value.error_code == "run_not_found"
        assert info.value.hint == H.OLBRAIN_CODE_HINTS["run_not_found"]
        _answered(sim, info.value)


async def test_409_invalid_state_transition_from_the_server(
    sim: OlbrainSimulator, client: OlbrainClient
) -> None:
    """The server's 409: InvalidStateTransitionError with the re-fetch hint and request id."""
    flow = sim.add_workflow_agent(auto_advance=False)
    run = await client.agent(flow).trigger({})
    sim.set_run_status(run.run_id, "succeeded")  # the handle still believes "queued"
    with pytest.raises(InvalidStateTransitionError) as info:
        await run.cancel()
    error = info.value
    assert not error.refused_locally
    assert error.status == 409
    assert error.hint == H.OLBRAIN_CODE_HINTS["invalid_state_transition"]
    assert "Re-fetch the run" in (error.hint or "")
    _answered(sim, error)


async def test_413_from_the_server(sim: OlbrainSimulator, client: OlbrainClient) -> None:
    """A server 413 (a proxy counting differently): RequestTooLargeError, the upload hint."""
    flow = sim.add_workflow_agent()
    sim.fail_next("POST", "/api/agents/webhook/*", 413)
    with pytest.raises(RequestTooLargeError) as info:
        await client.agent(flow).trigger({"x": 1})
    assert info.value.hint == H.OLBRAIN_STATUS_HINTS[413]
    assert "fi_" in info.value.hint
    assert len(sim.requests_to("trigger")) == 1
    _answered(sim, info.value)


async def test_415_non_multipart_upload(sim: OlbrainSimulator, client: OlbrainClient) -> None:
    """A raw JSON POST to the upload route gets 415 (the client itself always sends multipart)."""
    flow = sim.add_workflow_agent()
    api = client.agent(flow)._api
    with pytest.raises(UnsupportedMediaTypeError) as info:
        await api.post("/upload", content=b"{}")
    assert info.value.hint == H.OLBRAIN_STATUS_HINTS[415]
    assert "multipart/form-data" in info.value.hint
    _answered(sim, info.value)


async def test_422_input_validation(sim: OlbrainSimulator, client: OlbrainClient) -> None:
    """Inputs missing a required field: UnprocessableEntityError, body kept, no retry."""
    flow = sim.add_workflow_agent(required_inputs=["csv_file"])
    with pytest.raises(UnprocessableEntityError) as info:
        await client.agent(flow).trigger({"operation": "import"})
    assert info.value.hint == H.OLBRAIN_STATUS_HINTS[422]
    assert isinstance(info.value.body, dict)
    assert len(sim.requests_to("trigger")) == 1
    _answered(sim, info.value)


async def test_500_is_retried_exactly_once(
    sim: OlbrainSimulator, client: OlbrainClient, clock: VirtualClock
) -> None:
    """The seed: a 500 is safe to retry once; a second 500 is raised with .attempts == 2."""
    agent_id = sim.add_conversational_agent()
    sim.fail_next("GET", "/api/agents/*/sessions", 500, count=2)
    with pytest.raises(InternalServerError) as info:
        await client.agent(agent_id).sessions()
    assert info.value.attempts == 2
    assert clock.sleeps == [1.0]
    assert "retry once" in (info.value.hint or "")
    assert len(sim.requests_to("list_sessions")) == 2
    _answered(sim, info.value)


@pytest.mark.parametrize(
    ("status", "code", "cls"),
    [
        (502, "upstream_timeout", UpstreamTimeoutError),
        (502, "upstream_error", BadGatewayError),
        (503, "service_unavailable", ServiceUnavailableError),
        (504, "gateway_timeout", GatewayTimeoutError),
    ],
)
async def test_5xx_backoff_1s_doubling_to_60s_within_10_minutes(
    sim: OlbrainSimulator,
    client: OlbrainClient,
    clock: VirtualClock,
    status: int,
    code: str,
    cls: type[APIStatusError],
) -> None:
    """502/503/504 are retried 1, 2, 4 … 60 s until the ~600 s budget, then raised."""
    agent_id = sim.add_conversational_agent()
    sim.fail_next("GET", "/api/agents/*/sessions", status, code=code, count=100)
    with pytest.raises(cls) as info:
        await client.agent(agent_id).sessions()
    assert type(info.value) is cls
    assert clock.sleeps[:7] == [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0]
    assert max(clock.sleeps) == 60.0
    assert 540 <= sum(clock.sleeps) <= 600
    assert info.value.attempts == len(clock.sleeps) + 1 == len(sim.requests)
    assert "exponential backoff" in (info.value.hint or "")
    _answered(sim, info.value)


async def test_upstream_timeout_then_success(
    sim: OlbrainSimulator, client: OlbrainClient, clock: VirtualClock
) -> None:
    """A transient 502 upstream_timeout is retried and the call succeeds."""
    agent_id = sim.add_conversational_agent()
    sim.fail_next("GET", "/api/agents/*/sessions", 502, code="upstream_timeout", count=2)
    assert await client.agent(agent_id).sessions() == []
    assert clock.sleeps == [1.0, 2.0]


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 413, 415, 422])
async def test_no_4xx_is_retried(sim: OlbrainSimulator, client: OlbrainClient, status: int) -> None:
    """The seed: do not retry on 4xx. One request, the error raised at once."""
    agent_id = sim.add_conversational_agent()
    sim.fail_next("GET", "/api/agents/*/sessions", status, count=3)
    with pytest.raises(APIStatusError) as info:
        await client.agent(agent_id).sessions()
    assert info.value.status == status
    assert info.value.attempts == 1
    assert len(sim.requests) == 1


async def test_a_429_is_not_retried_by_default(
    sim: OlbrainSimulator, client: OlbrainClient
) -> None:
    """A 429 carries retry_after and is not retried unless the policy opts in."""
    agent_id = sim.add_conversational_agent()
    sim.fail_next("GET", "/api/agents/*/sessions", 429, retry_after=7, count=3)
    with pytest.raises(RateLimitError) as info:
        await client.agent(agent_id).sessions()
    assert info.value.retry_after == 7.0
    assert len(sim.requests) == 1


@pytest.mark.parametrize(
    ("status", "code"),
    [(402, "insufficient_funds"), (503, "billing_unavailable"), (503, "subscription_suspended")],
)
async def test_billing_codes_are_never_retried(
    sim: OlbrainSimulator, client: OlbrainClient, status: int, code: str
) -> None:
    """A billing code is not retried even on a 503: one request, the billing hint."""
    agent_id = sim.add_conversational_agent()
    sim.fail_next("GET", "/api/agents/*/sessions", status, code=code, count=3)
    with pytest.raises(APIStatusError) as info:
        await client.agent(agent_id).sessions()
    assert (info.value.status, info.value.error_code) == (status, code)
    assert info.value.hint == H.OLBRAIN_BILLING.format(code=code)
    assert len(sim.requests) == 1
    _answered(sim, info.value)


@pytest.mark.parametrize("style", ["string", "object"])
async def test_fastapi_detail_bodies(
    sim: OlbrainSimulator, client: OlbrainClient, style: str
) -> None:
    """{"detail": "..."} and {"detail": {"code", "message"}} are read like the envelope."""
    agent_id = sim.add_conversational_agent()
    sim.fail_next(
        "GET",
        "/api/agents/*/sessions/*",
        404,
        code="session_not_found",
        detail_body=style,
        message="Session gone.",
    )
    with pytest.raises(NotFoundError) as info:
        await client.agent(agent_id).session("sess_1")
    assert info.value.message == "Session gone."
    if style == "object":
        assert type(info.value) is SessionNotFoundError
    else:  # a bare string carries no code: classified by status alone
        assert type(info.value) is NotFoundError
        assert info.value.error_code is None
    assert info.value.request_id is not None  # from the x-request-id header


async def test_a_non_json_error_body(sim: OlbrainSimulator, client: OlbrainClient) -> None:
    """A load balancer's HTML 502 page: classified by status, described, not quoted."""
    agent_id = sim.add_conversational_agent()
    sim.fail_next("GET", "/api/agents/*/sessions", 502, text="<html>bad gateway</html>", count=100)
    with pytest.raises(BadGatewayError) as info:
        await client.agent(agent_id).sessions()
    assert "non-JSON body: text/html" in info.value.message
    assert "bad gateway" not in info.value.message
    _answered(sim, info.value)


def test_a_fastapi_422_list_is_summarised() -> None:
    """FastAPI's validation list becomes 'loc: msg' pairs in the message."""
    body = (
        b'{"detail": [{"loc": ["body", "inputs", "csv_file"], "msg": "field required",'
        b' "type": "value_error.missing"}]}'
    )
    error = make_status_error(
        422, body, {}, method="POST", path="/p", host="h", dialect=OLBRAIN_DIALECT
    )
    assert isinstance(error, UnprocessableEntityError)
    assert error.message == "body.inputs.csv_file: field required"


def test_codes_only_refine_their_own_status() -> None:
    """A code on an unexpected status does not pick another status's subclass."""
    body = b'{"error": {"code": "invalid_state_transition", "message": "m", "request_id": "r"}}'
    error = make_status_error(
        400, body, {}, method="GET", path="/", host="h", dialect=OLBRAIN_DIALECT
    )
    assert type(error) is BadRequestError
    assert error.request_id == "r"


def test_the_genie_dialect_ignores_olbrain_codes() -> None:
    """The genie backend keeps its own classes and hints for the same body."""
    body = b'{"error": {"code": "run_not_found", "message": "m", "request_id": "r"}}'
    error = make_status_error(404, body, {}, method="GET", path="/", host="h")
    assert type(error) is NotFoundError
    assert error.hint == H.STATUS_HINTS[404]


async def test_retries_use_a_fresh_client_policy(sim: OlbrainSimulator, retry: RetryPolicy) -> None:
    """RetryPolicy.disabled() turns retries off for an Olbrain client too."""
    agent_id = sim.add_conversational_agent()
    sim.fail_next("GET", "/api/agents/*/sessions", 503)
    async with make_client(sim, RetryPolicy.disabled()) as client:
        with pytest.raises(ServiceUnavailableError) as info:
            await client.agent(agent_id).sessions()
    assert info.value.attempts == 1
