"""``genie-async doctor``: Workato's Headless API troubleshooting page, as ordered checks.

Each check yields a :class:`Check` (pass, fail or skip) with what was found and how to fix
it. The checks run in the page's order, and a failure that makes the later checks
meaningless stops them (they are reported as skipped). Nothing here prints: the CLI renders.
Credentials and end-user ids never appear in a check's text.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Literal

import aiohttp

from . import _hints
from ._client import GenieClient
from ._config import RetryPolicy, Timeouts
from ._conversation import Conversation
from ._hooks import AuthRequest, Decline, Reject
from ._http import resolve_base_url
from .admin import AdminClient, GenieInfo
from .errors import (
    APIError,
    AuthFailedError,
    ConfigurationError,
    DeveloperTokenError,
    GenieError,
    NotAcceptableError,
    NotFoundError,
    PermissionDeniedError,
    StreamStalledError,
    UserNotActiveError,
)
from .events import SkillConfirmationRequired

Status = Literal["pass", "fail", "skip"]

CREDENTIALS_FIX = (
    "Set GENIE_API_KEY and GENIE_USER_ID (a genie client API key and the end user's Workato "
    "Identity id), or GENIE_ACCESS_TOKEN (an end user's OAuth access token)."
)
DIAGNOSE_USERS = (
    "Set GENIE_DEVELOPER_TOKEN and GENIE_USER_EMAIL to tell these cases apart with the IAM "
    "user lookup."
)


@dataclass(frozen=True)
class Check:
    """One line of the doctor's report."""

    name: str
    status: Status
    detail: str
    fix: str | None = None
    request_id: str | None = None


@dataclass(frozen=True)
class DoctorConfig:
    """What the doctor checks: a genie, where it lives, and the credentials to use."""

    genie_id: str
    data_center: str | None = None
    base_url: str | None = None
    api_key: str | None = None
    user_id: str | None = None
    access_token: str | None = None
    developer_token: str | None = None
    user_email: str | None = None
    admin_base_url: str | None = None
    stream_timeout: float = 20.0
    retry: RetryPolicy | None = None


@dataclass
class _Findings:
    """What earlier checks learnt, for the later ones."""

    genie: GenieInfo | None = None
    not_acceptable: bool = False
    runtime_ok: bool = False
    blocked: str | None = None  # why the remaining checks cannot run


async def run_checks(config: DoctorConfig) -> AsyncIterator[Check]:
    """Run every check in order, yielding each result as soon as it is known."""
    found = _Findings()
    for number, (title, check) in enumerate(_CHECKS, start=1):
        name = f"{number}. {title}"
        if found.blocked is not None:
            yield Check(name, "skip", f"not checked: {found.blocked}")
            continue
        async for result in check(name, config, found):
            yield result


def _client(config: DoctorConfig, **overrides: object) -> GenieClient:
    credentials: dict[str, object] = (
        {"api_key": config.api_key, "user_id": config.user_id}
        if config.api_key
        else {"access_token": config.access_token}
    )
    where: dict[str, object] = (
        {"data_center": config.data_center} if config.data_center else {"base_url": config.base_url}
    )
    options: dict[str, object] = {
        **credentials,
        **where,
        "retry": config.retry or RetryPolicy(wait_budget=30),
        **overrides,
    }
    return GenieClient(config.genie_id, **options)  # type: ignore[arg-type]


def _admin(config: DoctorConfig) -> AdminClient | None:
    if not config.developer_token:
        return None
    if config.admin_base_url or config.data_center is None:
        return AdminClient(
            token=config.developer_token,
            base_url=config.admin_base_url or config.base_url,
            retry=config.retry or RetryPolicy(wait_budget=30),
        )
    return AdminClient(
        token=config.developer_token,
        data_center=config.data_center,
        retry=config.retry or RetryPolicy(wait_budget=30),
    )


def _explain(exc: GenieError) -> str:
    first = str(exc).split("\nHint:")[0]
    return " ".join(first.split())


async def _credential_kind(
    name: str, config: DoctorConfig, found: _Findings
) -> AsyncIterator[Check]:
    if not (config.api_key and config.user_id) and not config.access_token:
        found.blocked = "no runtime credential"
        yield Check(name, "fail", "no runtime credential in the environment", CREDENTIALS_FIX)
        return
    try:
        client = _client(config)
    except DeveloperTokenError as exc:
        found.blocked = "the runtime credential is a Developer API token"
        yield Check(name, "fail", exc.message, exc.hint)
        return
    except ConfigurationError as exc:
        found.blocked = "the client cannot be configured"
        yield Check(name, "fail", exc.message, exc.hint)
        return
    await client.close()
    kind = (
        "a genie client API key with an end-user id"
        if config.api_key
        else "an end user's OAuth access token"
    )
    yield Check(name, "pass", kind)


async def _host_reachable(
    name: str, config: DoctorConfig, found: _Findings
) -> AsyncIterator[Check]:
    try:
        base = resolve_base_url(
            data_center=config.data_center, base_url=config.base_url, allow_insecure_http=False
        )
    except ConfigurationError as exc:
        found.blocked = "no usable host"
        yield Check(name, "fail", exc.message, exc.hint)
        return
    timeout = aiohttp.ClientTimeout(total=15, connect=10)
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.get(base + "/", allow_redirects=False) as response,
        ):
            status = response.status
    except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
        found.blocked = "the host cannot be reached"
        yield Check(
            name,
            "fail",
            f"{base} did not answer ({type(exc).__name__})",
            "Check the network and any proxy, and that data_center / base_url names the "
            "genie-api host of the data center your workspace runs in.",
        )
        return
    yield Check(name, "pass", f"{base} answered (HTTP {status})")


async def _data_center_matches(
    name: str, config: DoctorConfig, found: _Findings
) -> AsyncIterator[Check]:
    admin = _admin(config)
    if admin is None:
        yield Check(name, "skip", "needs GENIE_DEVELOPER_TOKEN to look the genie up")
        return
    async with admin:
        try:
            found.genie = await admin.get_genie(config.genie_id)
        except NotFoundError as exc:
            yield Check(
                name,
                "fail",
                "the Developer API of this data center does not know the genie",
                "Credentials and genies are data-center-scoped: call the hosts of the data "
                "center your workspace runs in, and check the genie id.",
                exc.request_id,
            )
            return
        except APIError as exc:
            yield Check(name, "fail", _explain(exc), exc.hint, exc.request_id)
            return
    yield Check(name, "pass", f"genie {config.genie_id} exists ({found.genie.state or '?'})")


async def _credential_accepted(
    name: str, config: DoctorConfig, found: _Findings
) -> AsyncIterator[Check]:
    async with _client(config) as client:
        try:
            await client.list_conversations(limit=1)
        except AuthFailedError as exc:
            found.blocked = "the credential is rejected"
            yield Check(name, "fail", "401 auth_failed", exc.hint, exc.request_id)
            return
        except UserNotActiveError:
            found.runtime_ok = False
            yield Check(name, "pass", "the credential is valid (the end user is not: see 5)")
            return
        except NotAcceptableError:
            found.not_acceptable = True
            yield Check(name, "pass", "the credential is valid (the genie has no client: see 7)")
            return
        except PermissionDeniedError as exc:
            found.blocked = "access is denied"
            yield Check(name, "fail", _explain(exc), exc.hint, exc.request_id)
            return
        except APIError as exc:
            found.blocked = "the runtime API fails"
            yield Check(name, "fail", _explain(exc), exc.hint, exc.request_id)
            return
    found.runtime_ok = True
    yield Check(name, "pass", "runtime calls are accepted")


async def _user_active(name: str, config: DoctorConfig, found: _Findings) -> AsyncIterator[Check]:
    if found.runtime_ok or found.not_acceptable:
        yield Check(name, "pass", "the end user is accepted")
        return
    found.blocked = "the end user is not usable"
    admin = _admin(config)
    if admin is None or not config.user_email:
        yield Check(
            name,
            "fail",
            "401 user_nonactive_or_missing",
            f"{_hints.USER_NOT_ACTIVE} {DIAGNOSE_USERS}",
        )
        return
    async with admin:
        try:
            users = await admin.find_users(config.user_email)
        except APIError as exc:
            yield Check(
                name,
                "fail",
                f"401 user_nonactive_or_missing; the IAM lookup failed: {_explain(exc)}",
                _hints.USER_NOT_ACTIVE,
                exc.request_id,
            )
            return
    email = config.user_email
    if not users:
        yield Check(
            name,
            "fail",
            f"no Workato Identity user has the email {email}",
            "Create the user (POST /api/iam/users), and add them to a user group "
            "allow-listed on the genie.",
        )
        return
    user = users[0]
    if user.status == "invited":
        yield Check(
            name,
            "fail",
            f"{email} was invited but has not accepted the invitation",
            "Ask the user to accept the email invitation and finish setting up their "
            "Workato Identity; until then the runtime cannot assert them.",
        )
        return
    if config.user_id is not None and user.id != config.user_id:
        yield Check(
            name,
            "fail",
            f"GENIE_USER_ID is not the Workato Identity id of {email}",
            "X-IDP-User-Id takes the Identity user id (the `id` from GET /api/iam/users), "
            "not an email address or a workspace collaborator id.",
        )
        return
    yield Check(
        name,
        "fail",
        f"{email} is active but not in a user group allow-listed on the genie",
        "Add the user to a user group allow-listed on the genie (assign_user_groups), then "
        "allow 30-60 s for the change to reach the gateway.",
    )


async def _genie_started(name: str, config: DoctorConfig, found: _Findings) -> AsyncIterator[Check]:
    if found.genie is None:
        yield Check(name, "skip", "needs GENIE_DEVELOPER_TOKEN (the stream check shows it too)")
        return
    if found.genie.active:
        yield Check(name, "pass", "the genie is active")
        return
    yield Check(
        name,
        "fail",
        f"the genie is {found.genie.state or 'not active'}",
        f"Start it: POST /api/agentic/genies/{config.genie_id}/start "
        "(genie_async.admin.AdminClient.start_genie). A stopped genie keeps streams open with "
        "keep-alives only and never replies.",
    )


async def _client_attached(
    name: str, config: DoctorConfig, found: _Findings
) -> AsyncIterator[Check]:
    attached = found.genie.client_attached if found.genie is not None else None
    if found.not_acceptable or attached is False:
        found.blocked = "no genie client is attached"
        yield Check(
            name,
            "fail",
            "the genie has no genie client attached (runtime calls get 406)",
            "Attach one: POST /api/agentic/genies/:id/clients (AdminClient.attach_client). A "
            "genie has exactly one client: attaching a second gives 409, detach the old first.",
        )
        return
    yield Check(name, "pass", "a genie client is attached")


async def _stream_works(name: str, config: DoctorConfig, found: _Findings) -> AsyncIterator[Check]:
    deadline = config.stream_timeout

    async def never_run_skills(event: SkillConfirmationRequired) -> Reject:
        return Reject("genie-async doctor does not run skills")

    async def decline_connections(request: AuthRequest) -> Decline:
        return Decline("genie-async doctor does not authorize connections")

    timeouts = Timeouts(stall=deadline, decision=10, auth=deadline, read=max(deadline, 30))
    async with _client(config, timeouts=timeouts) as client:
        try:
            conversation = await client.create_conversation()
            reply = await asyncio.wait_for(
                conversation.ask(
                    "Hello from genie-async doctor: a connectivity check, no action needed.",
                    on_skill_confirmation=never_run_skills,
                    on_auth_required=decline_connections,
                ),
                timeout=deadline * 3,
            )
        except StreamStalledError as exc:
            yield Check(
                name,
                "fail",
                f"only keep-alives for {deadline:g} s",
                await _why_stalled(conversation, found, exc),
                exc.request_id,
            )
            return
        except asyncio.TimeoutError:
            yield Check(name, "fail", f"the turn did not finish within {deadline * 3:g} s")
            return
        except GenieError as exc:
            yield Check(name, "fail", _explain(exc), exc.hint, exc.request_id)
            return
    events = ", ".join(sorted({e.type for e in reply.events}))
    yield Check(name, "pass", f"{len(reply.events)} events ({events}); the genie replied")


async def _why_stalled(conversation: Conversation, found: _Findings, exc: GenieError) -> str:
    """Which pause or cause left the stream with keep-alives only."""
    if found.genie is not None and not found.genie.active:
        return "The genie is stopped (see the genie-started check): start it."
    try:
        info = await conversation.info()
    except GenieError:
        return exc.hint or ""
    if info.last_event_type == "skill.confirmation_required":
        return "The turn waits on a skill confirmation: post a decision (skill_approval)."
    if info.last_event_type == "runtime_connection.auth_required":
        return "The turn waits on the end user to authorize a runtime connection."
    if info.last_event is None:
        return (
            "Nothing happened at all: the genie is most likely not started (start it: "
            "POST /api/agentic/genies/:id/start). " + (exc.hint or "")
        ).strip()
    return exc.hint or ""


_CHECKS = (
    ("runtime credential kind", _credential_kind),
    ("data-center host reachable", _host_reachable),
    ("genie found in this data center", _data_center_matches),
    ("credential accepted", _credential_accepted),
    ("end user active and allow-listed", _user_active),
    ("genie started", _genie_started),
    ("genie client attached", _client_attached),
    ("a test conversation streams", _stream_works),
)
