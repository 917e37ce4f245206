"""How to fix each failure: the seed's troubleshooting page, keyed by status and error code."""

from __future__ import annotations

AUTH_FAILED = (
    "The gateway rejected the credential. Check, in order: (1) token type: runtime calls take "
    "a genie client API key (with X-IDP-User-Id) or an end user's OAuth access token, not a "
    "wrkaus-… Developer API token; (2) data center: credentials are data-center-scoped, so call "
    "the genie-api host of the data center your workspace runs in (this client called {host}); "
    "(3) expired or rotated key: regenerating a client's API key invalidates the previous one, "
    "so update your backend with the new key; (4) header form: 'Authorization: Bearer <token>' "
    "exactly."
)

USER_NOT_ACTIVE = (
    "X-IDP-User-Id does not resolve to an active end user allow-listed on this genie. The API "
    "gives the same answer when the user does not exist, is not in a user group allow-listed "
    "on the genie, or was invited but has not accepted the email invitation and finished "
    "setting up their Workato Identity. Look the user up server-side with "
    "GET /api/iam/users?query=<email> (genie_async.admin.AdminClient.find_users): no match "
    "means create the user; status 'invited' means they must finish setup; status 'active' "
    "means add them to a user group allow-listed on the genie. The value must be the Workato "
    "Identity user id, not an email address."
)

STATUS_HINTS: dict[int, str] = {
    400: (
        "The request was rejected as malformed. A message is limited to 12,288 characters, "
        "and an attachment is passed as the file_id returned by upload()."
    ),
    403: (
        "Access denied. Right after provisioning a client, user group or skill, configuration "
        "reaches the gateway asynchronously (30-60 s); try again in a minute. If it persists, "
        "check that the workspace has the Headless API enabled (private beta: ask your "
        "Customer Success Manager)."
    ),
    404: (
        "Not found. Check the id in the path (genie id, conversation, run, call or attempt id). "
        "Conversations belong to one end user: another user's conversation id is a 404."
    ),
    406: (
        "The genie has no genie client attached (its chat_interface is null). Attach one with "
        "the Developer API (POST /api/agentic/genies/:id/clients); a genie has exactly one."
    ),
    409: (
        "The conversation is busy: a turn is still running, a skill confirmation is waiting "
        "for a decision, or the turn is parked while the end user authorizes a connection. "
        "Finish or resume that turn first (don't nudge a parked turn with a new message)."
    ),
    413: "Too large: uploads are limited to 20 MB. Reduce or split the file.",
    415: (
        "Send the file as multipart/form-data with a single part named 'file', and don't set "
        "Content-Type by hand."
    ),
    422: "The request's fields failed validation; see the message for the field.",
    429: (
        "Rate limited. Not retried automatically unless RetryPolicy(retry_rate_limited=True); "
        "wait retry_after seconds before trying again."
    ),
    500: (
        "Unexpected server error. The retry policy retries a 500 once (see .attempts); if "
        "it persists, contact Workato support with the request id."
    ),
    502: (
        "Upstream failure. The retry policy retries it with exponential backoff within its "
        "budget (see .attempts); if it persists, contact Workato support with the request id."
    ),
    503: (
        "Service unavailable. The retry policy retries it with exponential backoff within "
        "its budget (see .attempts); if it persists, contact Workato support with the "
        "request id."
    ),
    504: (
        "Upstream timeout. The retry policy retries it with exponential backoff within its "
        "budget (see .attempts); if it persists, contact Workato support with the request id."
    ),
}

SERVER_ERROR = (
    "The server failed (not retried for this status). If it persists, contact Workato "
    "support with the request id."
)

REDIRECT = (
    "The API answered with a redirect, which is never followed so credentials stay on the "
    "configured host. Check base_url / data_center (Location: {location})."
)

CONNECT = (
    "Could not connect to {host}. Check the network, the data center (data_center=... or "
    "base_url) and any proxy. If many streams are open at once, the connection pool "
    "(connection_limit) may be exhausted."
)

STALLED = (
    "Only keep-alives arrived for {seconds:g} s. Common causes: the genie is not started "
    "(start it: POST /api/agentic/genies/:id/start); the turn waits on a skill confirmation "
    "nobody answered; or it waits on the end user to authorize a runtime connection. "
    "stream.cursor resumes the turn later."
)

RETENTION = (
    "Persisted events are kept for 24 hours. Rebuild what remains from the message history "
    "(conversation.messages() / conversation.timeline())."
)

NOT_CONFIRMED = (
    "The connection dropped before the first event and the message is not in the "
    "conversation's history, so it was most likely not accepted. It was not re-sent "
    "automatically; send it again if the user still wants it."
)


HEADLESS_NOT_ENABLED = (
    "The Headless API is not enabled for this workspace (it is in private beta). Ask your "
    "Customer Success Manager to enable it."
)


def for_status(status: int, error_code: str | None, *, host: str) -> str | None:
    """The hint for an error response."""
    if error_code == "headless_not_enabled":
        return HEADLESS_NOT_ENABLED
    if status == 401:
        if error_code == "user_nonactive_or_missing":
            return USER_NOT_ACTIVE
        return AUTH_FAILED.format(host=host)
    if 300 <= status < 400:
        return None
    return STATUS_HINTS.get(status) or (SERVER_ERROR if status >= 500 else None)


# --- Olbrain (seed: docs.olbrain.com/errors, "What to do") ------------------------------------

OLBRAIN_CODE_HINTS: dict[str, str] = {
    "runtime_not_applicable": (
        "Session endpoints are conversational-only; run endpoints are workflow-only. Use "
        "agent.conversation() for a conversational agent and agent.trigger() / runs for a "
        "workflow agent."
    ),
    "agent_not_found": (
        "Verify the agent_id in the URL matches what Studio shows, and that the key was "
        "minted in that agent's organization (the API answers both the same way on purpose)."
    ),
    "session_not_found": (
        "Confirm the session_id, and that the key matches the agent that created it."
    ),
    "message_not_found": "Confirm both session_id and message_id.",
    "run_not_found": ("Confirm both ids. Runs are scoped to the agent that started them."),
    "invalid_state_transition": (
        "Re-fetch the run (await run.refresh()) to see its current state before retrying the "
        "action: pause needs a running run, resume a paused one, cancel a queued or running "
        "one, retry a failed one."
    ),
    "upstream_timeout": (
        "The agent runtime did not respond in time. Retried with exponential backoff within "
        "the retry budget (see .attempts); if it persists, email support@olbrain.com with the "
        "request id and the time of failure."
    ),
}

OLBRAIN_BILLING_CODES = frozenset(
    {
        "insufficient_funds",
        "credit_limit_exceeded",
        "subscription_suspended",
        "subscription_inactive",
        "billing_unavailable",
    }
)

OLBRAIN_BILLING = (
    "The organization cannot pay for this call ({code}); check its billing in Olbrain Studio."
)

OLBRAIN_STATUS_HINTS: dict[int, str] = {
    400: (
        "The body couldn't be parsed, or the inputs don't match what the agent expects. Check "
        "your JSON shape against the agent's schema in Studio."
    ),
    401: (
        "Check the header is exactly 'Bearer ak_...' and that the key is still active in "
        "Studio (revocation takes about 30 s). Keys are case-sensitive: copy it again."
    ),
    404: OLBRAIN_CODE_HINTS["agent_not_found"],
    409: OLBRAIN_CODE_HINTS["invalid_state_transition"],
    413: (
        "The trigger body is limited to 1 MiB. Upload large payloads with agent.upload() and "
        "reference the returned fi_… id from your JSON."
    ),
    415: "Set Content-Type: multipart/form-data and send one part named 'file'.",
    422: "Validation error on the inputs defined by the agent. Check its input schema in Studio.",
    429: (
        "Rate limited. Not retried automatically unless RetryPolicy(retry_rate_limited=True); "
        "wait retry_after seconds before trying again."
    ),
    500: (
        "Unexpected server error. Safe to retry once (the retry policy did, see .attempts); "
        "if it persists, escalate to support@olbrain.com with the request id."
    ),
    502: (
        "Upstream failure or timeout. Retried with exponential backoff within the retry budget "
        "(see .attempts); if it persists, email support@olbrain.com with the request id."
    ),
    503: (
        "Service unavailable. Retried with exponential backoff within the retry budget (see "
        ".attempts); if it persists, email support@olbrain.com with the request id."
    ),
    504: (
        "Gateway timeout. Retried with exponential backoff within the retry budget (see "
        ".attempts); if it persists, email support@olbrain.com with the request id."
    ),
}

OLBRAIN_SERVER_ERROR = (
    "The server failed. If it persists, email support@olbrain.com with the request id."
)


def olbrain_for_status(status: int, error_code: str | None, *, host: str) -> str | None:
    """The hint for an Olbrain error response: by code when the seed names one, else status."""
    if error_code in OLBRAIN_BILLING_CODES:
        return OLBRAIN_BILLING.format(code=error_code)
    if error_code is not None and error_code in OLBRAIN_CODE_HINTS:
        return OLBRAIN_CODE_HINTS[error_code]
    if 300 <= status < 400:
        return None
    return OLBRAIN_STATUS_HINTS.get(status) or (OLBRAIN_SERVER_ERROR if status >= 500 else None)
