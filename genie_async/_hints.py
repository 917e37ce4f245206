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
