"""Client construction: hosts, URL safety, credentials, ids in paths, immutable settings."""

from __future__ import annotations

import pytest

from genie_async import (
    ConfigurationError,
    DeveloperTokenError,
    GenieClient,
    InsecureURLError,
    InvalidIdError,
    RetryPolicy,
    Timeouts,
)
from genie_async._http import resolve_base_url, segment

KEY = "f" * 64
USER = "47fdThLz5SDpxukG9xtAwh"


@pytest.mark.parametrize(
    ("dc", "host"),
    [
        ("us", "https://genie-api.workato.com"),
        ("eu", "https://genie-api.eu.workato.com"),
        ("jp", "https://genie-api.jp.workato.com"),
        ("sg", "https://genie-api.sg.workato.com"),
        ("au", "https://genie-api.au.workato.com"),
        ("il", "https://genie-api.il.workato.com"),
        ("EU", "https://genie-api.eu.workato.com"),
    ],
)
def test_data_centers_map_to_the_documented_hosts(dc: str, host: str) -> None:
    """data_center selects the per-data-center genie-api host."""
    assert resolve_base_url(data_center=dc, base_url=None, allow_insecure_http=False) == host


def test_unknown_data_center_is_refused_with_the_choices() -> None:
    """An unknown data center names the valid ones and the base_url alternative."""
    with pytest.raises(ConfigurationError, match="base_url"):
        resolve_base_url(data_center="mars", base_url=None, allow_insecure_http=False)


def test_exactly_one_of_data_center_and_base_url() -> None:
    """Neither, or both, is a configuration error."""
    for dc, url in ((None, None), ("us", "https://x.example")):
        with pytest.raises(ConfigurationError):
            resolve_base_url(data_center=dc, base_url=url, allow_insecure_http=False)


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8080", "http://localhost:1", "http://[::1]:9", "http://127.8.9.1"]
)
def test_plain_http_to_loopback_is_allowed(url: str) -> None:
    """The simulator runs on loopback over plain http."""
    assert resolve_base_url(data_center=None, base_url=url, allow_insecure_http=False) == url


def test_plain_http_elsewhere_needs_an_explicit_opt_in() -> None:
    """http:// to a remote host is refused unless allow_insecure_http=True."""
    with pytest.raises(InsecureURLError, match="allow_insecure_http"):
        resolve_base_url(
            data_center=None, base_url="http://proxy.internal", allow_insecure_http=False
        )
    assert (
        resolve_base_url(
            data_center=None, base_url="http://proxy.internal/", allow_insecure_http=True
        )
        == "http://proxy.internal"
    )


@pytest.mark.parametrize(
    "url",
    ["ftp://x.example", "genie-api.workato.com", "https://x.example/?q=1", "https://u:p@x.example"],
)
def test_malformed_base_urls_are_refused(url: str) -> None:
    """Non-http schemes, relative URLs, queries and embedded credentials are refused."""
    with pytest.raises(ConfigurationError):
        resolve_base_url(data_center=None, base_url=url, allow_insecure_http=False)


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        ("gin-AaNpL4XP-baNnFY-CD", "gin-AaNpL4XP-baNnFY-CD"),
        ("a b", "a%20b"),
        ("x?y#z", "x%3Fy%23z"),
        ("..x", "..x"),
        ("é", "%C3%A9"),
        ("%2F", "%252F"),
    ],
)
def test_ids_are_percent_encoded_as_one_segment(value: str, encoded: str) -> None:
    """Every id in a path is quoted so '?', '#', '%' and spaces cannot alter the URL."""
    assert segment(value, "id") == encoded


@pytest.mark.parametrize("value", ["", "a/b", "..", ".", "a\\b", "a\nb", "a\x00b", "\x7f", 5, None])
def test_ids_that_could_alter_the_path_are_refused(value: object) -> None:
    """Empty ids, slashes, dot segments and control characters are refused before sending."""
    with pytest.raises(InvalidIdError):
        segment(value, "conversation_id")


def test_developer_api_token_is_refused_at_construction() -> None:
    """A wrkaus- token is refused with an error that says what it is and what to use."""
    with pytest.raises(DeveloperTokenError, match="Developer API token") as info:
        GenieClient("gin-1", data_center="us", api_key="wrkaus-abc123", user_id=USER)
    assert "wrkaus-abc123" not in str(info.value)
    with pytest.raises(DeveloperTokenError):
        GenieClient("gin-1", data_center="us", access_token="wrkaus-xyz")


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"api_key": KEY},
        {"api_key": KEY, "user_id": USER, "access_token": "tok"},
        {"access_token": "tok", "user_id": USER},
        {"api_key": f" {KEY}", "user_id": USER},
        {"api_key": KEY, "user_id": "bad\nid"},
        {"api_key": "", "user_id": USER},
    ],
)
def test_credential_combinations_are_validated(kwargs: dict[str, str]) -> None:
    """Missing, mixed or malformed credentials are refused with a clear error."""
    with pytest.raises(ConfigurationError):
        GenieClient("gin-1", data_center="us", **kwargs)  # type: ignore[arg-type]


def test_repr_never_shows_secrets() -> None:
    """Neither the API key nor the end-user id appears in repr or str of the client."""
    client = GenieClient("gin-1", data_center="us", api_key=KEY, user_id=USER)
    view = client.as_user("otherUser123")
    for text in (repr(client), str(client), repr(view), repr(client._credentials)):
        assert KEY not in text
        assert USER not in text
        assert "otherUser123" not in text
    assert "gin-1" in repr(client)


def test_as_user_needs_api_key_credentials() -> None:
    """With OAuth the token names the user, so as_user is refused with the alternative."""
    client = GenieClient("gin-1", data_center="us", access_token="tok")
    with pytest.raises(ConfigurationError, match="with_access_token"):
        client.as_user(USER)


def test_views_share_the_session_holder() -> None:
    """as_user and with_access_token views share the original's HTTP core (one pool)."""
    client = GenieClient("gin-1", data_center="us", api_key=KEY, user_id=USER)
    assert client.as_user("u2")._core is client._core
    assert client.with_access_token("t")._core is client._core


def test_genie_id_is_validated() -> None:
    """A genie id that would alter the path is refused at construction."""
    with pytest.raises(InvalidIdError):
        GenieClient("gin/1", data_center="us", api_key=KEY, user_id=USER)


@pytest.mark.parametrize(
    "kwargs",
    [{"connect": 0}, {"read": -1}, {"stall": 0}, {"request": float("inf")}, {"auth": "9"}],
)
def test_nonsense_timeouts_are_refused(kwargs: dict[str, object]) -> None:
    """Timeouts must be positive finite numbers (stall may be None)."""
    with pytest.raises(ConfigurationError):
        Timeouts(**kwargs)  # type: ignore[arg-type]
    assert Timeouts(stall=None).stall is None


@pytest.mark.parametrize(
    "kwargs",
    [
        {"wait_initial": 0},
        {"wait_initial": 5, "wait_max": 1},
        {"wait_jitter": 1.0},
        {"wait_exp_base": 0.5},
        {"wait_budget": -1},
        {"reconnect_attempts": -1},
    ],
)
def test_nonsense_retry_policies_are_refused(kwargs: dict[str, float]) -> None:
    """RetryPolicy rejects values that would break the backoff formula."""
    with pytest.raises(ConfigurationError):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


def test_settings_are_immutable() -> None:
    """Timeouts and RetryPolicy are frozen."""
    with pytest.raises(AttributeError):
        Timeouts().read = 1  # type: ignore[misc]
    with pytest.raises(AttributeError):
        RetryPolicy().wait_max = 1  # type: ignore[misc]


def test_default_timeouts_suit_sse() -> None:
    """The read-idle timeout exceeds the ~30 s keep-alive; connect is bounded."""
    timeouts = Timeouts()
    assert timeouts.read > 30
    assert timeouts.connect <= 30
