"""`genie-async doctor`: one test per failure the troubleshooting guide lists."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys

import pytest

from genie_async import RetryPolicy
from genie_async._doctor import Check, DoctorConfig, run_checks
from genie_async.testing import GenieSimulator, VirtualClock


def config_for(sim: GenieSimulator, **changes: object) -> DoctorConfig:
    clock = VirtualClock()
    options: dict[str, object] = {
        "genie_id": sim.genie_id,
        "base_url": sim.url,
        "api_key": sim.api_key,
        "user_id": sim.user_id,
        "developer_token": sim.developer_token,
        "stream_timeout": 0.5,
        "retry": RetryPolicy(clock=clock.now, sleep=clock.sleep),
    }
    options.update(changes)
    return DoctorConfig(**options)  # type: ignore[arg-type]


async def checks_for(config: DoctorConfig) -> dict[int, Check]:
    return {int(check.name.split(".")[0]): check async for check in run_checks(config)}


def statuses(checks: dict[int, Check]) -> list[str]:
    return [checks[number].status for number in sorted(checks)]


async def test_a_healthy_setup_passes_every_check(sim: GenieSimulator) -> None:
    """With a Developer API token, all eight checks run and pass."""
    checks = await checks_for(config_for(sim))
    assert statuses(checks) == ["pass"] * 8
    assert "the genie replied" in checks[8].detail


async def test_without_a_developer_token_the_admin_checks_are_skipped(sim: GenieSimulator) -> None:
    """The Developer API checks are skipped, never failed, without a token."""
    checks = await checks_for(config_for(sim, developer_token=None))
    assert statuses(checks) == ["pass", "pass", "skip", "pass", "pass", "skip", "pass", "pass"]
    assert "GENIE_DEVELOPER_TOKEN" in checks[3].detail


async def test_a_developer_token_used_for_runtime_calls(sim: GenieSimulator) -> None:
    """A wrkaus- token as the runtime credential fails the first check with the fix."""
    checks = await checks_for(config_for(sim, api_key="wrkaus-abc123"))
    assert checks[1].status == "fail"
    assert "Developer API token" in checks[1].detail
    assert "genie client API key" in (checks[1].fix or "")
    assert statuses(checks)[1:] == ["skip"] * 7


async def test_no_credentials(sim: GenieSimulator) -> None:
    """Missing credentials name the environment variables to set."""
    checks = await checks_for(config_for(sim, api_key=None, user_id=None))
    assert checks[1].status == "fail"
    assert "GENIE_API_KEY" in (checks[1].fix or "")


async def test_an_unreachable_host(sim: GenieSimulator) -> None:
    """A host that does not answer fails check 2 and stops there."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    checks = await checks_for(config_for(sim, base_url=f"http://127.0.0.1:{closed_port}"))
    assert checks[2].status == "fail"
    assert "data center" in (checks[2].fix or "")
    assert statuses(checks)[2:] == ["skip"] * 6


async def test_a_genie_unknown_to_this_data_center(sim: GenieSimulator) -> None:
    """The Developer API not knowing the genie points at the data center."""
    checks = await checks_for(config_for(sim, genie_id="gin-Elsewhere-0000-00"))
    assert checks[3].status == "fail"
    assert "data-center-scoped" in (checks[3].fix or "")


async def test_a_rejected_key_lists_the_auth_failed_causes(sim: GenieSimulator) -> None:
    """401 auth_failed: the fix walks token type, data center, rotation and header form."""
    checks = await checks_for(config_for(sim, api_key="0" * 64))
    assert checks[4].status == "fail"
    assert checks[4].detail == "401 auth_failed"
    fix = checks[4].fix or ""
    for cause in ("wrkaus-", "data center", "regenerating", "Authorization: Bearer"):
        assert cause in fix
    assert checks[4].request_id


async def test_a_rotated_key(sim: GenieSimulator) -> None:
    """After regenerating the client's key, the old key fails the credential check."""
    old = sim.api_key
    sim.regenerate_api_key()
    checks = await checks_for(config_for(sim, api_key=old))
    assert checks[4].status == "fail"


async def test_an_invited_user(sim: GenieSimulator) -> None:
    """An invited user: the IAM lookup tells the user to accept the invitation."""
    invited = sim.add_user(status="invited", email="ivy@example.com")
    checks = await checks_for(config_for(sim, user_id=invited, user_email="ivy@example.com"))
    assert checks[4].status == "pass"
    assert checks[5].status == "fail"
    assert "invited" in checks[5].detail
    assert "accept the email invitation" in (checks[5].fix or "")
    assert invited not in checks[5].detail + (checks[5].fix or "")


async def test_an_unknown_user(sim: GenieSimulator) -> None:
    """No Identity user with that email: create the user."""
    checks = await checks_for(
        config_for(sim, user_id="nobody1234567890", user_email="nobody@example.com")
    )
    assert checks[5].status == "fail"
    assert "no Workato Identity user" in checks[5].detail
    assert "Create the user" in (checks[5].fix or "")


async def test_an_active_user_outside_the_allow_list(sim: GenieSimulator) -> None:
    """An active user in no allow-listed group: add them to one."""
    outsider = sim.add_user(allow_listed=False, email="otto@example.com")
    checks = await checks_for(config_for(sim, user_id=outsider, user_email="otto@example.com"))
    assert checks[5].status == "fail"
    assert "not in a user group allow-listed" in checks[5].detail


async def test_a_user_id_that_is_not_the_users_identity_id(sim: GenieSimulator) -> None:
    """GENIE_USER_ID holding something else (an email, say) is called out."""
    sim.add_user(email="ana@example.com")
    checks = await checks_for(
        config_for(sim, user_id="ana@example.com", user_email="ana@example.com")
    )
    assert checks[5].status == "fail"
    assert "is not the Workato Identity id" in checks[5].detail


async def test_without_the_lookup_the_user_advice_is_general(sim: GenieSimulator) -> None:
    """Without a Developer API token the check explains all three causes and what to set."""
    invited = sim.add_user(status="invited")
    checks = await checks_for(config_for(sim, user_id=invited, developer_token=None))
    assert checks[5].status == "fail"
    fix = checks[5].fix or ""
    assert "invited" in fix
    assert "GENIE_USER_EMAIL" in fix


async def test_a_stopped_genie(sim: GenieSimulator) -> None:
    """A stopped genie fails the started check and the stream check, which says why."""
    sim.genie_started = False
    checks = await checks_for(config_for(sim))
    assert checks[6].status == "fail"
    assert "/start" in (checks[6].fix or "")
    assert checks[8].status == "fail"
    assert "only keep-alives" in checks[8].detail
    assert "stopped" in (checks[8].fix or "")


async def test_a_stopped_genie_found_by_the_stream_alone(sim: GenieSimulator) -> None:
    """Without a Developer API token, the stream check still names the likely cause."""
    sim.genie_started = False
    checks = await checks_for(config_for(sim, developer_token=None))
    assert checks[6].status == "skip"
    assert checks[8].status == "fail"
    assert "not started" in (checks[8].fix or "")


async def test_no_client_attached(sim: GenieSimulator) -> None:
    """406: the client check fails with the 1:1 attach advice; the stream is not tried."""
    sim.client_attached = False
    checks = await checks_for(config_for(sim, developer_token=None))
    assert checks[4].status == "pass"
    assert checks[7].status == "fail"
    assert "detach the old first" in (checks[7].fix or "")
    assert checks[8].status == "skip"


async def test_the_propagation_window(sim: GenieSimulator) -> None:
    """403 access_denied right after provisioning: wait 30-60 s."""
    sim.propagation_window = 60
    sim.mark_provisioned()
    checks = await checks_for(config_for(sim, developer_token=None))
    assert checks[4].status == "fail"
    assert "30-60 s" in (checks[4].fix or "")


@pytest.mark.parametrize("healthy", [True, False])
async def test_the_command_exit_code_and_output(sim: GenieSimulator, healthy: bool) -> None:
    """The CLI prints one line per check, exits 0 only when all pass, and shows no secret."""
    if not healthy:
        sim.client_attached = False
    env = {
        **os.environ,
        "GENIE_API_KEY": sim.api_key,
        "GENIE_USER_ID": sim.user_id,
        "GENIE_DEVELOPER_TOKEN": sim.developer_token,
        "NO_COLOR": "1",
        "COLUMNS": "200",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "genie_async._cli",
        "doctor",
        "--genie",
        sim.genie_id,
        "--base-url",
        sim.url,
        "--stream-timeout",
        "2",
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    raw, _ = await process.communicate()
    out = raw.decode()
    assert process.returncode == (0 if healthy else 1)
    marks = ("\u2713", "\u2717", "\u2013")  # pass, fail, skip
    assert sum(out.count(mark) for mark in marks) == 8
    for secret in (sim.api_key, sim.user_id, sim.developer_token):
        assert secret not in out
    assert ("All checks passed." in out) is healthy
