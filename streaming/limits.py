"""How many paid replies a client may run and start: per owner, per address, per minute.

Before a transport starts a reply it ``reserve()``s a place in up to three quotas of
the event store, all or none: the replies running for the owner
(``MAX_ACTIVE_PER_OWNER``), those running for the client address
(``MAX_ACTIVE_PER_ADDRESS``) and the replies started from that address in the last
minute (``MAX_STARTS_PER_MINUTE``, a sliding window). With the Redis store the counts are
shared by every process. A running reply holds its places on a lease it renews
(``LEASE`` seconds), and gives them back when it ends, however it ends; the places of
a process that dies lapse with their lease.

Over a limit the reservation raises ``StreamError`` ``TOO_MANY_REPLIES`` or
``RATE_LIMITED`` with ``details["retry_after"]`` (whole seconds): SSE answers 429 with a
``Retry-After`` header, the WebSocket an error frame. ``get_limits()`` on ``SSEView``
and ``StreamConsumer`` decides per request (``UNLIMITED`` for staff, another ``Limits``
for an API key…).

The conversations API counts the conversations it creates per address in the same way
(``admit_conversation``, ``MAX_CONVERSATIONS_PER_MINUTE``).

IPv6 clients are counted per /64 network: one host usually holds a whole /64.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from .conf import setting
from .errors import StreamError, StreamErrorCode
from .store.base import EventStore, Quota

logger = logging.getLogger("streaming")

#: Seconds a running reply's places last unless renewed (a dead process frees them then).
LEASE = 30.0
#: Seconds between two renewals of a running reply's places.
RENEW_EVERY = LEASE / 3
#: The window of ``MAX_STARTS_PER_MINUTE``, in seconds.
WINDOW = 60.0
#: ``Retry-After`` for a limit on running replies: when one of them may have ended.
ACTIVE_RETRY_AFTER = 5


@dataclass(frozen=True, slots=True)
class Limits:
    """The limits of one request; ``None`` turns one off."""

    max_active_per_owner: int | None = None
    max_active_per_address: int | None = None
    max_starts_per_minute: int | None = None

    @classmethod
    def from_settings(cls) -> Limits:
        """``STREAMING["MAX_ACTIVE_PER_OWNER"]``, ``["MAX_ACTIVE_PER_ADDRESS"]`` and
        ``["MAX_STARTS_PER_MINUTE"]``."""
        return cls(
            setting("MAX_ACTIVE_PER_OWNER"),
            setting("MAX_ACTIVE_PER_ADDRESS"),
            setting("MAX_STARTS_PER_MINUTE"),
        )


#: No limit at all (an exempt request).
UNLIMITED = Limits()


def address_key(address: str) -> str:
    """What a client address counts as: itself, or its /64 network for IPv6."""
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(parsed, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((parsed, 64), strict=False))
    return str(parsed)


class Reservation:
    """The places one reply holds (``active``, all ``Quota.renewed``): renewed while it
    runs (with those of every reply of its process, by ``Generations``), released once
    when it ends; and its place among the address's starts of the last minute
    (``start``), which it keeps unless it never started (``refund``)."""

    __slots__ = ("active", "holder", "released", "start", "store")

    def __init__(
        self,
        store: EventStore,
        holder: str,
        active: Sequence[Quota],
        start: Quota | None = None,
    ) -> None:
        if not all(quota.renewed for quota in active):
            # A store that renews per process renews them all when told of one.
            raise ValueError("A reply's active places must be renewed ones (Quota.renewed)")
        self.store = store
        self.holder = holder
        self.active = tuple(active)
        self.start = start
        self.released = False

    async def release(self) -> None:
        """Give the places back (once; errors of the store are logged, never raised:
        the places then lapse with their lease)."""
        if not self.released:
            self.released = True
            await self._give_back(self.active)

    async def refund(self) -> None:
        """The reply did not start (its request was refused, its hook failed): give back
        its places and its start too, so that refusals never count as starts."""
        if not self.released:
            self.released = True
            await self._give_back(self.active if self.start is None else (*self.active, self.start))

    async def _give_back(self, quotas: Sequence[Quota]) -> None:
        if not quotas:
            return
        keys = [quota.key for quota in quotas]
        try:
            await self.store.release_quotas(self.holder, keys)
        except StreamError as exc:
            logger.warning(
                "Reply places %s not released (they lapse with their lease): %r", keys, exc
            )


async def reserve(store: EventStore, limits: Limits, *, owner: str, address: str) -> Reservation:
    """Take the places of one new reply, or raise ``StreamError`` (``TOO_MANY_REPLIES``,
    ``RATE_LIMITED``; ``STORE_UNAVAILABLE`` when the store cannot count)."""
    holder = uuid.uuid4().hex
    where = address_key(address)
    active: list[Quota] = []
    if limits.max_active_per_owner is not None:
        active.append(
            Quota(f"active:owner:{owner}", limits.max_active_per_owner, LEASE, renewed=True)
        )
    if limits.max_active_per_address is not None:
        active.append(
            Quota(f"active:address:{where}", limits.max_active_per_address, LEASE, renewed=True)
        )
    start = None
    if limits.max_starts_per_minute is not None:
        start = Quota(f"starts:address:{where}", limits.max_starts_per_minute, WINDOW)
    quotas = active if start is None else [*active, start]
    if quotas:
        refusal = await store.acquire_quotas(holder, quotas)
        if refusal is not None:
            raise _refused(refusal.key, refusal.retry_after, limits)
    return Reservation(store, holder, active, start)


async def admit_conversation(store: EventStore, *, address: str, per_minute: int | None) -> None:
    """Count a conversation created from ``address`` among those of the last minute, or
    raise ``RATE_LIMITED`` (with ``retry_after``) past ``per_minute`` (``None``: no limit).
    A conversation costs no model time, but each is a row that stays: this bounds how
    fast one client can add them, whatever sessions it comes with."""
    if per_minute is None:
        return
    quota = Quota(f"conversations:address:{address_key(address)}", per_minute, WINDOW)
    refusal = await store.acquire_quotas(uuid.uuid4().hex, [quota])
    if refusal is not None:
        seconds = max(1, math.ceil(refusal.retry_after))
        raise StreamError(
            StreamErrorCode.RATE_LIMITED,
            f"Too many conversations created from this address: at most {per_minute} a "
            f"minute; retry in {seconds} s",
            {"retry_after": seconds},
        )


def _refused(key: str, retry_after: float, limits: Limits) -> StreamError:
    if key.startswith("starts:"):
        seconds = max(1, math.ceil(retry_after))
        return StreamError(
            StreamErrorCode.RATE_LIMITED,
            f"Too many replies started from this address: at most "
            f"{limits.max_starts_per_minute} a minute; retry in {seconds} s",
            {"retry_after": seconds},
        )
    per_owner = key.startswith("active:owner:")
    limit = limits.max_active_per_owner if per_owner else limits.max_active_per_address
    return StreamError(
        StreamErrorCode.TOO_MANY_REPLIES,
        f"Too many replies running {'for you' if per_owner else 'from this address'}: "
        f"at most {limit} at once; wait for one to end",
        {"retry_after": ACTIVE_RETRY_AFTER},
    )


def retry_after(error: StreamError) -> int | None:
    """The ``Retry-After`` seconds of a refusal, if it has one."""
    value = (error.details or {}).get("retry_after")
    return int(value) if isinstance(value, int | float) else None


__all__ = [
    "LEASE",
    "UNLIMITED",
    "Limits",
    "Reservation",
    "address_key",
    "admit_conversation",
    "reserve",
    "retry_after",
]
