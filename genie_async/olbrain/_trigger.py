"""Starting a workflow run (E1) exactly once, without relying on server de-duplication.

The docs promise no gateway-level de-duplication (reference §9.3): the ``Idempotency-Key``
body field is for the workflow's own logic. So a trigger whose outcome is unknown (a 5xx
answer, or a connection lost or timed out after sending) is not simply re-sent: the agent's
recent runs (E3) are read first, as §7.2 describes, and a run this trigger created is adopted.
Only when none is found is the same body (the same key) sent again.

Where the key goes [INFERRED]: inside the object the workflow receives, which is also what
the run record echoes as ``inputs`` (§4.4). With ``trigger(inputs)`` that is the ``inputs``
object, ``{"inputs": {..., "Idempotency-Key": k}}``; with ``trigger(body=...)`` it is the
body's ``inputs`` object when it has one, else the body itself (whose top level then is what
the workflow reads). Reasons: §9.3 says the workflow can de-duplicate against the key, so the
key must reach it; and §7.2's recovery matches on "the idempotency key inside ``inputs``",
which is only possible if the run's ``inputs`` carry it. A caller's own ``Idempotency-Key``
(in ``inputs``, or at the body's top level) is kept as is and used for matching.

Matching a listed run, in order:

1. its ``inputs`` carry our key: ours, whatever its status or age;
2. otherwise, only when its ``inputs`` carry no key at all (a run carrying another key is
   another logical trigger, however alike): its ``inputs`` equal ours, it was created after
   our first send (on the server's clock when its ``Date`` header allows, else the client
   clock less a skew allowance), and this client has not already returned it from a trigger.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import msgspec

from .._conversation import _send_floor
from .._turn import format_timestamp, parse_timestamp
from ..errors import InvalidRequestError
from . import _constants as OC
from ._api import KnownRuns
from ._models import RunRecord

__all__ = ["SentTrigger", "build_trigger"]

logger = logging.getLogger("genie_async")

_DECODER = msgspec.json.Decoder()


def build_trigger(
    inputs: Mapping[str, Any] | None,
    body: Mapping[str, Any] | None,
    *,
    idempotency_key: str | None,
    inject: bool,
) -> tuple[dict[str, Any], str | None]:
    """The body to send and the idempotency key it carries (None without one)."""
    if (inputs is None) == (body is None):
        raise InvalidRequestError("Give exactly one of inputs and body.")
    if not inject and idempotency_key is not None:
        raise InvalidRequestError("idempotency_key needs inject_idempotency_key=True.")
    target: dict[str, Any]
    if body is not None:
        payload = dict(body)
        nested = payload.get("inputs")
        if isinstance(nested, Mapping):
            target = payload["inputs"] = dict(nested)
        else:
            target = payload
    else:
        target = dict(inputs or {})
        payload = {"inputs": target}
    # A caller's own field wins (reference §9.3); else ours, one per logical call.
    key = target.get(OC.IDEMPOTENCY_FIELD, payload.get(OC.IDEMPOTENCY_FIELD))
    if key is None and inject:
        # Inside the inputs, so the workflow sees it and the run record shows it (§7.2).
        key = target[OC.IDEMPOTENCY_FIELD] = idempotency_key or uuid.uuid4().hex
    return payload, key if isinstance(key, str) and key else None


@dataclass
class SentTrigger:
    """One logical trigger: what was sent and when, to recognise its run in a list."""

    key: str | None
    inputs: Any  # the JSON the run's ``inputs`` should echo, as sent
    sent_at: str  # client clock (RFC 3339) at the first send
    started: float  # time.monotonic() at the first send

    @classmethod
    def of(cls, content: bytes, key: str | None) -> SentTrigger:
        sent = _DECODER.decode(content)
        inputs = sent.get("inputs", sent) if isinstance(sent, dict) else sent
        return cls(
            key=key,
            inputs=inputs,
            sent_at=format_timestamp(dt.datetime.now(dt.timezone.utc)),
            started=time.monotonic(),
        )

    def find(
        self, records: list[RunRecord], *, date: str | None, known: KnownRuns
    ) -> RunRecord | None:
        """The run this trigger created among ``records``, or None."""
        if self.key is not None:
            for record in records:
                if _key_of(record.inputs) == self.key:
                    logger.debug("trigger recovery: run %s carries our key", record.run_id)
                    return record
        floor = _send_floor(date, self.started, self.sent_at)
        expected = _without_key(self.inputs)
        candidates = []
        for record in records:
            if record.run_id in known or _key_of(record.inputs) is not None:
                continue
            created = parse_timestamp(record.created_at or record.started_at)
            if created is None or (floor is not None and created < floor):
                continue
            if _without_key(record.inputs) == expected:
                candidates.append((created, record))
        if not candidates:
            return None
        created, record = min(candidates, key=lambda pair: pair[0])  # the first after our send
        logger.debug(
            "trigger recovery: run %s has our inputs and was created at %s (send floor %s)",
            record.run_id,
            created.isoformat(),
            floor.isoformat() if floor else "?",
        )
        return record


def _key_of(inputs: Any) -> str | None:
    if isinstance(inputs, dict):
        key = inputs.get(OC.IDEMPOTENCY_FIELD)
        if isinstance(key, str):
            return key
    return None


def _without_key(inputs: Any) -> Any:
    if isinstance(inputs, dict) and OC.IDEMPOTENCY_FIELD in inputs:
        return {k: v for k, v in inputs.items() if k != OC.IDEMPOTENCY_FIELD}
    return inputs
