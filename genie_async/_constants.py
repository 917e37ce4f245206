"""Every default and API limit in one place, with where it comes from."""

from __future__ import annotations

from typing import Final

# Hosts: the runtime API follows the app host's per-data-center scheme (reference §1.1).
DATA_CENTER_HOSTS: Final[dict[str, str]] = {
    "us": "https://genie-api.workato.com",
    "eu": "https://genie-api.eu.workato.com",
    "jp": "https://genie-api.jp.workato.com",
    "sg": "https://genie-api.sg.workato.com",
    "au": "https://genie-api.au.workato.com",
    "il": "https://genie-api.il.workato.com",
    "in": "https://genie-api.in.workato.com",
}

# Transport timeouts suited to SSE: no total timeout on streams, a bounded connect, and a
# read-idle timeout well above the ~30 s keep-alive interval so a paused turn stays open.
DEFAULT_CONNECT_TIMEOUT: Final = 10.0
DEFAULT_READ_TIMEOUT: Final = 90.0
DEFAULT_REQUEST_TIMEOUT: Final = 60.0  # whole non-streaming request, per attempt
# "No meaningful event" deadline; keep-alives do not reset it. Generous because a skill (a
# recipe) can legitimately run for minutes between skill.running and skill.completed.
DEFAULT_STALL_TIMEOUT: Final = 300.0
DEFAULT_DECISION_TIMEOUT: Final = 300.0  # waiting for a skill-confirmation decision
DEFAULT_AUTH_TIMEOUT: Final = 900.0  # waiting for an end user to authorize a connection

# Retry policy (seed 002: 1 s doubling to a 60 s cap, give up after ~10 min; 500 once).
DEFAULT_WAIT_INITIAL: Final = 1.0
DEFAULT_WAIT_MAX: Final = 60.0
DEFAULT_WAIT_EXP_BASE: Final = 2.0
DEFAULT_WAIT_JITTER: Final = 0.25  # subtractive: a wait is never above the cap
DEFAULT_WAIT_BUDGET: Final = 600.0
DEFAULT_RECONNECT_ATTEMPTS: Final = 3  # genie-runs reconnects before falling back to /events

# Polling while recovering or paused (reference §9.3 step 5, §9.4 step 5).
DEFAULT_POLL_INITIAL: Final = 0.5
DEFAULT_POLL_MAX: Final = 5.0

# API limits.
MAX_MESSAGE_CHARS: Final = 12_288
MAX_UPLOAD_BYTES: Final = 20 * 1024 * 1024
EVENT_RETENTION_SECONDS: Final = 24 * 3600
DEFAULT_PAGE_LIMIT: Final = 50
EVENTS_PAGE_LIMIT: Final = 100

# Ceilings that stop a misbehaving server from making us allocate without bound.
MAX_RESPONSE_BYTES: Final = 64 * 1024 * 1024
MAX_ERROR_BODY_BYTES: Final = 256 * 1024
MAX_PAGES: Final = 10_000

DEVELOPER_TOKEN_PREFIX: Final = "wrkaus-"  # noqa: S105  # a prefix to detect, not a secret
REQUEST_ID_HEADER: Final = "x-request-id"
