"""The client's network address, for limits and logs: the peer by default, or the
address a trusted reverse proxy forwarded.

A server sees the peer of its socket (``REMOTE_ADDR``, the ASGI scope's ``client``).
Behind a reverse proxy that peer is the proxy, so every client would share one address
(and one per-address limit). ``STREAMING["TRUSTED_PROXIES"]`` lists the proxies (IPs
or CIDR networks) whose ``STREAMING["CLIENT_ADDRESS_HEADER"]`` (default
``X-Forwarded-For``) is believed: the header is read from the right, skipping trusted
hops, and the first address that is not a trusted proxy is the client. Anything left of
it was written by the client itself and is ignored, so a forged header gains nothing.

A peer that is not a trusted proxy is the client, whatever headers it sends. A Unix
socket has no peer address; list ``"unix"`` in ``TRUSTED_PROXIES`` to believe the
proxy in front of one.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from .conf import setting

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

#: The entry of ``TRUSTED_PROXIES`` that trusts a peer without an address (a Unix socket).
UNIX = "unix"
#: The address of a client whose peer has none (a Unix socket) and no trusted header.
UNKNOWN = "unknown"


def client_address(request: Any) -> str:
    """The client address of a Django ``HttpRequest`` (``REMOTE_ADDR``, or forwarded)."""
    meta: Mapping[str, Any] = request.META
    header = str(setting("CLIENT_ADDRESS_HEADER"))
    key = "HTTP_" + header.upper().replace("-", "_")
    return resolve(meta.get("REMOTE_ADDR") or None, _split(meta.get(key)))


def scope_client_address(scope: Mapping[str, Any]) -> str:
    """The client address of an ASGI scope (a WebSocket's), by the same rule."""
    client = scope.get("client")
    peer = str(client[0]) if client else None
    wanted = str(setting("CLIENT_ADDRESS_HEADER")).lower().encode("latin-1")
    values = [value.decode("latin-1") for name, value in scope.get("headers", ()) if name == wanted]
    return resolve(peer, _split(",".join(values)) if values else [])


def resolve(peer: str | None, forwarded: Sequence[str]) -> str:
    """The client address given the socket's ``peer`` and the forwarded hops (left to
    right, as the header lists them): the right-most hop that is not a trusted proxy."""
    trusted = _trusted(tuple(setting("TRUSTED_PROXIES") or ()))
    if not _is_trusted(peer, trusted):
        return _normal(peer) if peer else UNKNOWN
    address = _normal(peer) if peer else UNKNOWN
    for hop in reversed(forwarded):
        parsed = parse_address(hop)
        if parsed is None:
            # Garbage where a trusted proxy should have written its peer: believe no
            # further, and count the request as the proxy's.
            return address
        address = str(parsed)
        if not _is_trusted(address, trusted):
            return address
    return address


def parse_address(value: str) -> IPAddress | None:
    """An IP address from a header entry (``1.2.3.4``, ``1.2.3.4:80``, ``[::1]:80``,
    ``"[::1]"``), or ``None`` when it is not one."""
    text = value.strip().strip('"')
    if text.startswith("["):
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:
        text = text.partition(":")[0]  # IPv4 with a port
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def check_trusted_proxies(value: Any) -> list[str]:
    """Why ``value`` is not a valid ``TRUSTED_PROXIES`` (one message per bad entry)."""
    if isinstance(value, str) or not isinstance(value, Iterable):
        return ["must be a list of IP addresses or networks"]
    problems = []
    for entry in value:
        if entry == UNIX:
            continue
        try:
            ipaddress.ip_network(entry, strict=False)
        except (TypeError, ValueError):
            problems.append(f"{entry!r} is not an IP address or network")
    return problems


def _split(header: Any) -> list[str]:
    if not header:
        return []
    return [part for part in str(header).split(",") if part.strip()]


def _normal(peer: str) -> str:
    parsed = parse_address(peer)
    return str(parsed) if parsed is not None else peer


@functools.lru_cache(maxsize=8)
def _trusted(entries: tuple[str, ...]) -> tuple[bool, tuple[IPNetwork, ...]]:
    """``(unix trusted, networks)`` of a ``TRUSTED_PROXIES`` value (checked by the system
    checks; an invalid entry is skipped here rather than failing every request)."""
    networks: list[IPNetwork] = []
    for entry in entries:
        if entry == UNIX:
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except (TypeError, ValueError):
            continue
    return UNIX in entries, tuple(networks)


def _is_trusted(address: str | None, trusted: tuple[bool, tuple[IPNetwork, ...]]) -> bool:
    unix, networks = trusted
    if not address:
        return unix
    if not networks:
        return False
    parsed = parse_address(address)
    return parsed is not None and any(parsed in network for network in networks)
