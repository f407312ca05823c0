"""Which requests count as another site's (``streaming.origins``), for a request and for
a WebSocket scope alike; the transports' answers are tested over daphne elsewhere."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import RequestFactory, override_settings

from streaming.errors import StreamError
from streaming.origins import check_request_origin, check_scope_origin

HOST = "127.0.0.1:8000"


def request_with(secure: bool = False, **headers: str) -> Any:
    return RequestFactory().get("/chat/stream", headers={"Host": HOST, **headers}, secure=secure)


def scope_with(secure: bool = False, **headers: str) -> dict[str, Any]:
    pairs = [("host", HOST), *((k.replace("_", "-").lower(), v) for k, v in headers.items())]
    return {
        "type": "websocket",
        "scheme": "wss" if secure else "ws",
        "headers": [(k.encode(), v.encode()) for k, v in pairs],
    }


def verdicts(secure: bool = False, **headers: str) -> set[bool]:
    """Whether each check (request, scope) lets the request through."""
    results = set()
    for check, value in (
        (check_request_origin, request_with(secure, **headers)),
        (check_scope_origin, scope_with(secure, **headers)),
    ):
        try:
            check(value)
        except StreamError as exc:
            assert str(exc.code) == "CROSS_SITE"
            results.add(False)
        else:
            results.add(True)
    return results


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Origin": f"http://{HOST}"},
        {"Origin": f"HTTP://{HOST}"},
        {"Sec-Fetch-Site": "same-origin", "Origin": f"http://{HOST}"},
        {"Sec-Fetch-Site": "same-origin"},
        {"Sec-Fetch-Site": "none"},
    ],
)
def test_own_and_headerless_requests_pass(headers: dict[str, str]) -> None:
    assert verdicts(**headers) == {True}


@pytest.mark.parametrize(
    "headers",
    [
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "cross-site", "Origin": f"http://{HOST}"},
        {"Sec-Fetch-Site": "same-site", "Origin": "http://127.0.0.1:9000"},
        {"Sec-Fetch-Site": "same-site"},
        {"Origin": "http://evil.example"},
        {"Origin": "http://127.0.0.1:9000"},
        {"Origin": f"https://{HOST}"},
        {"Origin": "null"},
        {"Origin": "not a url"},
    ],
)
def test_other_sites_are_refused(headers: dict[str, str]) -> None:
    assert verdicts(**headers) == {False}


def test_the_scheme_follows_is_secure() -> None:
    assert verdicts(secure=True, Origin=f"https://{HOST}") == {True}
    assert verdicts(secure=True, Origin=f"http://{HOST}") == {False}


@override_settings(SECURE_PROXY_SSL_HEADER=("HTTP_X_FORWARDED_PROTO", "https"))
def test_the_scheme_behind_a_tls_proxy() -> None:
    assert verdicts(Origin=f"https://{HOST}", X_Forwarded_Proto="https") == {True}
    assert verdicts(Origin=f"http://{HOST}", X_Forwarded_Proto="https") == {False}


def test_default_ports_are_the_same_origin() -> None:
    request = RequestFactory().get(
        "/", headers={"Host": "example.com:443", "Origin": "https://example.com"}, secure=True
    )
    with override_settings(ALLOWED_HOSTS=["example.com"]):
        check_request_origin(request)


@override_settings(CSRF_TRUSTED_ORIGINS=["http://127.0.0.1:9000", "https://*.example.com"])
def test_trusted_origins_pass_even_when_same_site() -> None:
    assert verdicts(Origin="http://127.0.0.1:9000") == {True}
    assert verdicts(**{"Sec-Fetch-Site": "same-site", "Origin": "http://127.0.0.1:9000"}) == {True}
    assert verdicts(Origin="https://app.example.com") == {True}
    assert verdicts(Origin="https://example.com") == {True}
    assert verdicts(Origin="http://app.example.com") == {False}
    assert verdicts(Origin="https://evilexample.com") == {False}
    assert verdicts(**{"Sec-Fetch-Site": "cross-site", "Origin": "https://app.example.com"}) == {
        False
    }


def test_a_scope_without_host_is_judged_by_sec_fetch_site_only() -> None:
    """Browsers always send ``Host``; test communicators do not."""
    scope = {"type": "websocket", "headers": [(b"origin", b"http://127.0.0.1")]}
    check_scope_origin(scope)
    scope["headers"].append((b"sec-fetch-site", b"cross-site"))
    with pytest.raises(StreamError):
        check_scope_origin(scope)
