"""Deterministic identifiers: every id the simulator hands out comes from a seeded RNG.

Separate RNG streams (ids, request ids) keep entity ids independent of how many requests a test
happened to make, so two simulators with the same seed and the same calls agree on every id.
"""

from __future__ import annotations

import random
import string
import uuid
import zlib

__all__ = ["IdFactory", "skill_id_for"]

_ALNUM = string.ascii_letters + string.digits


class IdFactory:
    """Seeded generators for every id format the runtime API uses (reference §3.4, §12 row 12)."""

    def __init__(self, seed: int) -> None:
        self._seed = seed
        self._rng = random.Random(f"genie-sim:{seed}:ids")
        self._requests = random.Random(f"genie-sim:{seed}:requests")

    def _alnum(self, length: int) -> str:
        return "".join(self._rng.choice(_ALNUM) for _ in range(length))

    def uuid(self) -> str:
        """A UUID4-style string (conversations, runs, events, messages, files, attempts)."""
        return str(uuid.UUID(int=self._rng.getrandbits(128), version=4))

    def request_id(self) -> str:
        """A UUID4-style request id from its own stream."""
        return str(uuid.UUID(int=self._requests.getrandbits(128), version=4))

    def genie_id(self) -> str:
        """A genie id shaped like production's ``gin-AaNpL4XP-baNnFY-CD``."""
        return f"gin-{self._alnum(8)}-{self._alnum(6)}-{self._alnum(2)}"

    def api_key(self) -> str:
        """A genie-client API key: 64 lowercase hex characters."""
        return f"{self._rng.getrandbits(256):064x}"

    def user_id(self) -> str:
        """An opaque Workato Identity end-user id (22 alphanumerics)."""
        return self._alnum(22)

    def access_token(self) -> str:
        """An opaque, JWT-looking OAuth access token (never 64-hex, never ``wrkaus-``)."""
        return f"eyJhbGciOiJSUzI1NiJ9.eyJ{self._alnum(40)}.{self._alnum(43)}"

    def call_id(self) -> str:
        """A tool-call id: ``call_`` + 22 alphanumerics."""
        return "call_" + self._alnum(22)

    def topic_placeholder(self) -> str:
        """The numeric topic placeholder shown before the real topic is generated."""
        return str(self._rng.randint(1000, 9999))

    def link_token(self) -> str:
        """The secret part of a runtime-connection auth link."""
        return self._alnum(24)

    def fragment_rng(self, *parts: object) -> random.Random:
        """An RNG for SSE fragmentation, seeded per connection so sizes never depend on timing."""
        return random.Random(":".join(["genie-sim", str(self._seed), *map(str, parts)]))


def skill_id_for(name: str) -> str:
    """A stable ``recipe:<n>`` skill id derived from the skill name (no RNG draw)."""
    return f"recipe:{10_000_000 + zlib.crc32(name.encode()) % 90_000_000}"
