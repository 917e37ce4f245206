"""The exception tree, the status-to-class factory, hints and redaction."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import genie_async
from genie_async import errors as E
from genie_async._http import make_status_error


def _tree_from_docstring() -> dict[str, str]:
    """child -> parent, read from the tree drawn in the errors module's docstring."""
    doc = E.__doc__ or ""
    parents: dict[int, str] = {}
    edges: dict[str, str] = {}
    for line in doc.splitlines():
        match = re.match(r"^(\s*)(?:[│ ]*)(?:[├└]── )?([A-Z][A-Za-z]+)", line)
        if not match or not line.strip() or match.group(2) not in E.__all__:
            continue
        depth = (len(line) - len(line.lstrip(" │├└─"))) // 4
        name = match.group(2)
        parents[depth] = name
        if depth > 1:
            edges[name] = parents[depth - 1]
    return edges


def test_docstring_tree_matches_the_classes() -> None:
    """Every edge of the tree drawn in the docstring is a real subclass relation."""
    edges = _tree_from_docstring()
    assert len(edges) == len(E.__all__) - 1  # every class but the root appears
    for child, parent in edges.items():
        assert issubclass(getattr(E, child), getattr(E, parent)), (child, parent)


def test_docs_repeat_the_tree() -> None:
    """docs/pages/errors.md starts with the same tree as the module docstring."""
    docs = Path(__file__).parent.parent / "docs" / "pages" / "errors.md"
    tree = (E.__doc__ or "").split("::")[1].split("\n\n")[1]
    assert tree.strip() in docs.read_text()


@pytest.mark.parametrize(
    ("cls", "base"),
    [
        (E.AuthFailedError, E.AuthenticationError),
        (E.UserNotActiveError, E.AuthenticationError),
        (E.AuthenticationError, E.APIStatusError),
        (E.BadGatewayError, E.ServerError),
        (E.APITimeoutError, E.APIConnectionError),
        (E.APIConnectionError, E.APIError),
        (E.StreamStalledError, E.StreamError),
        (E.EventsExpiredError, E.RecoveryError),
        (E.MessageNotConfirmedError, E.RecoveryError),
        (E.InvalidIdError, ValueError),
        (E.FileTooLargeError, E.InvalidRequestError),
        (E.DeveloperTokenError, E.ConfigurationError),
        (E.ConfigurationError, ValueError),
        (E.StreamClosedError, RuntimeError),
        (E.ClientClosedError, E.UsageError),
        (E.AgentNotFoundError, E.NotFoundError),
        (E.SessionNotFoundError, E.NotFoundError),
        (E.MessageNotFoundError, E.NotFoundError),
        (E.RunNotFoundError, E.NotFoundError),
        (E.RuntimeNotApplicableError, E.BadRequestError),
        (E.InvalidStateTransitionError, E.ConflictError),
        (E.UpstreamTimeoutError, E.BadGatewayError),
    ],
)
def test_pinned_relations(cls: type, base: type) -> None:
    """The relations callers rely on in except clauses."""
    assert issubclass(cls, base)
    assert issubclass(cls, E.GenieError)


def test_misuse_is_never_an_api_error() -> None:
    """Usage errors are RuntimeErrors outside APIError, so no retry predicate matches them."""
    assert not issubclass(E.UsageError, E.APIError)
    assert not issubclass(E.InvalidRequestError, E.APIError)


STATUS_CLASSES = [
    (400, E.BadRequestError),
    (401, E.AuthenticationError),
    (403, E.PermissionDeniedError),
    (404, E.NotFoundError),
    (406, E.NotAcceptableError),
    (409, E.ConflictError),
    (413, E.RequestTooLargeError),
    (415, E.UnsupportedMediaTypeError),
    (422, E.UnprocessableEntityError),
    (429, E.RateLimitError),
    (500, E.InternalServerError),
    (502, E.BadGatewayError),
    (503, E.ServiceUnavailableError),
    (504, E.GatewayTimeoutError),
    (501, E.ServerError),
    (418, E.APIStatusError),
    (302, E.RedirectError),
]


def _error(
    status: int, body: bytes, headers: dict[str, str] | None = None, **kw: object
) -> E.APIStatusError:
    return make_status_error(
        status,
        body,
        headers or {"content-type": "application/json"},
        method="GET",
        path="/p",
        host="genie-api.workato.com",
        **kw,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize(("status", "cls"), STATUS_CLASSES)
def test_each_status_gets_its_class(status: int, cls: type[E.APIStatusError]) -> None:
    """One class per meaningful status, built by one factory."""
    error = _error(status, b'{"error_code":"x","error_message":"m","request_id":"rid"}')
    assert type(error) is cls
    assert error.status == status
    assert error.error_code == "x"
    assert error.message == "m"
    assert error.request_id == "rid"


@pytest.mark.parametrize(
    ("code", "cls"),
    [("auth_failed", E.AuthFailedError), ("user_nonactive_or_missing", E.UserNotActiveError)],
)
def test_401_codes_get_their_subclass(code: str, cls: type) -> None:
    """401 is refined by error_code."""
    assert type(_error(401, f'{{"error_code":"{code}"}}'.encode())) is cls


def test_nested_error_envelope_is_read() -> None:
    """The {"error": {code, message, request_id}} envelope is parsed too."""
    error = _error(404, b'{"error":{"code":"session_not_found","message":"no","request_id":"r9"}}')
    assert (error.error_code, error.message, error.request_id) == ("session_not_found", "no", "r9")


def test_header_request_id_wins_over_body() -> None:
    """x-request-id from the header is preferred to the body's request_id."""
    error = _error(
        500,
        b'{"error_code":"internal_error","request_id":"body"}',
        {"x-request-id": "header", "content-type": "application/json"},
    )
    assert error.request_id == "header"


def test_html_error_page_is_typed_with_status_and_request_id() -> None:
    """An HTML gateway page still yields the typed error, the status and the request id."""
    html = b"<html><body><h1>502 Bad Gateway</h1></body></html>"
    error = _error(502, html, {"content-type": "text/html", "x-request-id": "gw-1"})
    assert type(error) is E.BadGatewayError
    assert error.request_id == "gw-1"
    assert error.error_code is None
    assert "text/html" in error.message
    assert error.body == html.decode()


def test_empty_error_body_is_typed() -> None:
    """An empty 503 body still gives ServiceUnavailableError with its request id."""
    error = _error(503, b"", {"x-request-id": "r"})
    assert type(error) is E.ServiceUnavailableError
    assert error.message == "Service Unavailable"
    assert error.request_id == "r"


def test_retry_after_is_parsed_onto_the_error() -> None:
    """Retry-After is exposed as seconds on the error (e.g. RateLimitError.retry_after)."""
    error = _error(429, b"{}", {"retry-after": "7"})
    assert isinstance(error, E.RateLimitError)
    assert error.retry_after == 7.0


@pytest.mark.parametrize(
    ("status", "code", "needle"),
    [
        (401, "auth_failed", "wrkaus-"),
        (401, "auth_failed", "data center"),
        (401, "auth_failed", "regenerating"),
        (401, "auth_failed", "Authorization: Bearer <token>"),
        (401, "user_nonactive_or_missing", "invited"),
        (401, "user_nonactive_or_missing", "allow-listed"),
        (401, "user_nonactive_or_missing", "/api/iam/users?query="),
        (406, None, "no genie client attached"),
        (409, None, "busy"),
        (403, None, "30-60 s"),
        (413, None, "20 MB"),
    ],
)
def test_hints_carry_the_troubleshooting_advice(status: int, code: str | None, needle: str) -> None:
    """Each seed case's advice is in the hint of the matching error."""
    body = f'{{"error_code":"{code}"}}'.encode() if code else b"{}"
    error = _error(status, body)
    assert error.hint is not None
    assert needle in error.hint
    assert needle in str(error)


def test_auth_failed_hint_names_the_host_called() -> None:
    """The data-center advice names the host this client called."""
    assert "genie-api.workato.com" in (_error(401, b'{"error_code":"auth_failed"}').hint or "")


def test_secrets_in_an_error_body_are_redacted() -> None:
    """A server echoing a credential back never puts it in the exception text or body."""
    secret = "a" * 64
    body = (
        f'{{"error_code":"auth_failed","error_message":"bad key {secret}",'
        f'"detail":{{"k":"{secret}"}}}}'
    )
    error = _error(401, body.encode(), secrets=(secret,))
    assert secret not in str(error)
    assert secret not in repr(error.body)
    assert secret not in error.message


def test_str_includes_call_status_code_request_id_and_hint() -> None:
    """str(error) is a one-stop summary: call, status, code, message, request id, hint."""
    text = str(
        _error(409, b'{"error_code":"conversation_busy","error_message":"busy","request_id":"q"}')
    )
    assert text.startswith("GET /p -> 409 conversation_busy: busy [request_id=q]")
    assert "\nHint: " in text


def test_top_level_reexports_every_error() -> None:
    """Every error class is importable from the package root as well."""
    for name in E.__all__:
        assert getattr(genie_async, name) is getattr(E, name)
