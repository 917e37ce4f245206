"""The Olbrain backend's defaults and limits, with where each comes from (reference §2, §10)."""

from __future__ import annotations

from typing import Final

DEFAULT_BASE_URL: Final = "https://webhook.olbrain.com"  # [DOC home]
KEY_PREFIX: Final = "ak_"  # the only kind of key issued today [SDK]
MAX_TRIGGER_BYTES: Final = 1024 * 1024  # 1 MiB JSON body on E1; 413 above [SEED]
IDEMPOTENCY_FIELD: Final = "Idempotency-Key"  # a field INSIDE the JSON body [SEED]
OUTPUT_URL_LIFETIME: Final = 15 * 60.0  # signed output-file URLs [DOC run-management]
OUTPUT_URL_MARGIN: Final = 60.0  # re-fetch this long before the URLs expire
# A chat turn is answered synchronously and may take long: the SDK allows 120 s per turn.
TURN_READ_TIMEOUT: Final = 120.0
TURN_REQUEST_TIMEOUT: Final = 130.0
# Polling a run (E4): the SDK's example polls every 3 s; backed off while nothing changes.
RUN_POLL_INITIAL: Final = 3.0
RUN_POLL_MAX: Final = 60.0
RUN_POLL_FACTOR: Final = 1.5
# Polling the history while recovering an ambiguous turn (§7.2); the SDK polls every 2 s.
HISTORY_POLL_INITIAL: Final = 1.0
HISTORY_POLL_MAX: Final = 10.0
MESSAGES_PAGE_LIMIT: Final = 200  # E11 maximum [SDK]
SESSIONS_PAGE_LIMIT: Final = 100  # E9 maximum [DOC session-management]
MAX_PAGES: Final = 10_000
# Recovering an ambiguous trigger (§7.2): one E3 page this long, then (if full) per status.
RECOVERY_RUNS_LIMIT: Final = 100
# Every status a run created moments ago may already have reached (§5.2); queued and running
# are §7.2's, the others are a fast run's.
RECOVERY_STATUSES: Final = ("queued", "running", "needs_review", "paused", "succeeded", "failed")
# Terminal run statuses: the docs' three plus the SDK's spellings (§5.1, §11).
TERMINAL_STATUSES_SET: Final = frozenset(
    {"succeeded", "failed", "cancelled", "completed", "canceled"}
)
