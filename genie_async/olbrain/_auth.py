"""The Olbrain credential: an organization access key sent as ``Authorization: Bearer ak_…``."""

from __future__ import annotations

from collections.abc import Iterable

from .._auth import Credentials, _check_header_value
from ..errors import ConfigurationError
from ._constants import KEY_PREFIX


class AccessKeyCredentials(Credentials):
    """``Authorization: Bearer ak_…``. The key is never shown by ``repr`` and is redacted
    from anything the HTTP core turns into text."""

    __slots__ = ("_headers", "_key")

    def __init__(self, api_key: str) -> None:
        _check_header_value(api_key, "api_key")
        if not api_key.startswith(KEY_PREFIX):
            # Never echo the value: it may be a real secret of another kind.
            raise ConfigurationError(
                "The Olbrain api_key must be an organization access key starting with "
                f"'{KEY_PREFIX}' (keys are case-sensitive).",
                hint="Mint one in Olbrain Studio (Organization → Access Keys) with the "
                "agents:invoke permission, and pass the whole key.",
            )
        self._key = api_key
        self._headers = {"Authorization": f"Bearer {api_key}"}

    async def headers(self, *, refresh: bool = False) -> dict[str, str]:
        return self._headers

    def secrets(self) -> Iterable[str]:
        return (self._key,)
