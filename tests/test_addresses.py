"""The client address: the socket's peer, or what a trusted reverse proxy forwarded."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import RequestFactory, override_settings

from streaming.addresses import client_address, parse_address, scope_client_address

PROXY = "10.0.0.5"


def request_from(peer: str | None, **headers: str) -> Any:
    request = RequestFactory().get("/", headers=headers)
    if peer is None:
        del request.META["REMOTE_ADDR"]
    else:
        request.META["REMOTE_ADDR"] = peer
    return request


def scope_from(peer: str | None, *headers: tuple[str, str]) -> dict[str, Any]:
    return {
        "type": "websocket",
        "client": None if peer is None else [peer, 51000],
        "headers": [(name.lower().encode(), value.encode()) for name, value in headers],
    }


def both(peer: str | None, forwarded: list[str], header: str = "X-Forwarded-For") -> set[str]:
    """The address by the request function and by the scope function (they must agree)."""
    request = request_from(peer, **({header: ", ".join(forwarded)} if forwarded else {}))
    scope = scope_from(peer, *((header, value) for value in forwarded))
    return {client_address(request), scope_client_address(scope)}


def test_by_default_the_peer_is_the_client_and_forwarded_headers_are_ignored() -> None:
    assert both("203.0.113.7", ["198.51.100.1"]) == {"203.0.113.7"}


@override_settings(STREAMING={"TRUSTED_PROXIES": [PROXY]})
def test_behind_a_trusted_proxy_the_forwarded_client_counts() -> None:
    assert both(PROXY, ["198.51.100.1"]) == {"198.51.100.1"}


@override_settings(STREAMING={"TRUSTED_PROXIES": [PROXY]})
def test_a_forged_left_part_of_the_header_gains_nothing() -> None:
    # The client sent "X-Forwarded-For: 1.1.1.1"; the proxy appended the real peer.
    assert both(PROXY, ["1.1.1.1", "198.51.100.1"]) == {"198.51.100.1"}


@override_settings(STREAMING={"TRUSTED_PROXIES": ["10.0.0.0/8"]})
def test_a_chain_of_trusted_proxies_is_skipped_from_the_right() -> None:
    assert both("10.0.0.1", ["1.1.1.1", "198.51.100.1", "10.2.3.4", "10.9.9.9"]) == {"198.51.100.1"}


@override_settings(STREAMING={"TRUSTED_PROXIES": ["10.0.0.0/8"]})
def test_every_hop_trusted_gives_the_left_most() -> None:
    assert both("10.0.0.1", ["10.1.1.1", "10.2.2.2"]) == {"10.1.1.1"}


@override_settings(STREAMING={"TRUSTED_PROXIES": [PROXY]})
def test_an_untrusted_peer_cannot_forward_anything() -> None:
    assert both("203.0.113.7", ["198.51.100.1"]) == {"203.0.113.7"}


@override_settings(STREAMING={"TRUSTED_PROXIES": [PROXY]})
def test_a_trusted_proxy_without_the_header_is_the_client() -> None:
    assert both(PROXY, []) == {PROXY}


@override_settings(STREAMING={"TRUSTED_PROXIES": [PROXY]})
def test_garbage_where_the_proxy_writes_counts_as_the_proxy() -> None:
    assert both(PROXY, ["198.51.100.1", "not-an-ip"]) == {PROXY}


@override_settings(STREAMING={"TRUSTED_PROXIES": [PROXY], "CLIENT_ADDRESS_HEADER": "X-Real-IP"})
def test_another_header_can_be_chosen() -> None:
    assert both(PROXY, ["198.51.100.1"], header="X-Real-IP") == {"198.51.100.1"}
    assert both(PROXY, ["198.51.100.1"], header="X-Forwarded-For") == {PROXY}


def test_a_unix_socket_peer_is_unknown_unless_trusted() -> None:
    assert both(None, ["198.51.100.1"]) == {"unknown"}
    with override_settings(STREAMING={"TRUSTED_PROXIES": ["unix"]}):
        assert both(None, ["198.51.100.1"]) == {"198.51.100.1"}


@override_settings(STREAMING={"TRUSTED_PROXIES": ["::1"]})
def test_ipv6_hops_with_brackets_and_ports() -> None:
    assert both("::1", ["[2001:db8::7]:4711"]) == {"2001:db8::7"}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1.2.3.4", "1.2.3.4"),
        (" 1.2.3.4:8080 ", "1.2.3.4"),
        ("[2001:db8::1]:443", "2001:db8::1"),
        ('"[2001:db8::1]"', "2001:db8::1"),
        ("2001:DB8::1", "2001:db8::1"),
        ("::ffff:192.0.2.1", "192.0.2.1"),
        ("unknown", None),
        ("", None),
    ],
)
def test_parse_address(value: str, expected: str | None) -> None:
    parsed = parse_address(value)
    assert (None if parsed is None else str(parsed)) == expected
