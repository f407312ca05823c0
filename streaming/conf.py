"""One settings namespace, ``settings.STREAMING``, with documented defaults.

Read a value as ``setting("KEEPALIVE")``; a project overrides any key in
``STREAMING = {...}``. ``setting()`` caches values and forgets them on Django's
``setting_changed``, so ``override_settings(STREAMING=...)`` in tests takes effect at once.
Without Django (the extractors are plain Python) it returns the defaults.
"""

from __future__ import annotations

from typing import Any

DEFAULTS: dict[str, Any] = {
    # Seconds of silence after which a ": ping" comment keeps proxies from closing the stream.
    "KEEPALIVE": 15.0,
    # Messages a stream may hold for a slow client before ``send()`` raises QUEUE_FULL.
    "MAX_QUEUE": 10_000,
    # Events written to the socket in one body chunk at most, when many are ready at once.
    "MAX_BATCH": 512,
    # Seconds a closing source gets to run its cleanup (``aclose()``) after a disconnect.
    "CLEANUP_TIMEOUT": 5.0,
    # Characters a prompt may have (longer: PROMPT_TOO_LARGE).
    "MAX_PROMPT_LENGTH": 32_000,
    # WebSocket flood limit: messages a second on one connection, with a burst allowance;
    # past it the consumer closes the connection with code 4008.
    "WS_RATE": 20.0,
    "WS_BURST": 40,
    # Prompts a WebSocket connection may queue while a reply is streaming.
    "WS_MAX_PENDING": 4,
    # Upstream sources (OpenAI SDK, HTTP proxy): seconds to connect, seconds of silence
    # between chunks before TIMEOUT, and the longest SSE line (characters) before PARSE_ERROR.
    "UPSTREAM_CONNECT_TIMEOUT": 10.0,
    "UPSTREAM_READ_TIMEOUT": 60.0,
    "UPSTREAM_MAX_LINE": 1024 * 1024,
    # Seconds between two tokens of the built-in demo model (on average; it varies a little).
    "DEMO_TOKEN_DELAY": 0.03,
    # Resumable streams. The event store every generation writes to and transports read
    # from: a dotted path and its options, as Django's CACHES. The in-memory store serves
    # one process; ``streaming.store.redis.RedisStore`` (the ``redis`` extra, options
    # ``url``, ``key_prefix``) serves several. Common options: ``ttl_finished`` (seconds a
    # finished reply stays replayable, 300), ``ttl_active`` (3600), ``max_events`` (10000).
    "STORE": {"BACKEND": "streaming.store.memory.MemoryStore", "OPTIONS": {}},
    # Characters of text a reply may have; past it the reply ends with the text so far
    # and REPLY_TOO_LARGE, and its upstream request is closed. None: no limit.
    "MAX_REPLY_CHARS": 1_000_000,
    # Seconds a reply may run in all (UPSTREAM_READ_TIMEOUT bounds each silence); past
    # it the reply ends with TIMEOUT. None: no limit.
    "MAX_REPLY_SECONDS": 600.0,
    # Seconds a reply's lease lasts: the process that runs it renews it (one store call
    # for all its replies, every third of this); a follower that sees it lapse (the
    # process died) ends the reply with INTERRUPTED.
    "LEASE_SECONDS": 10.0,
    # On SIGTERM/SIGINT under daphne: seconds open replies get to tell their clients
    # (SHUTTING_DOWN) before the server stops.
    "SHUTDOWN_TIMEOUT": 3.0,
    # Seconds a generation with the ``keep`` policy runs on with nobody following it.
    "KEEP_GRACE": 60.0,
    # Seconds a generation with the ``cancel`` policy runs with nobody following it (its
    # client went away before reading, say) before it is cancelled.
    "CANCEL_GRACE": 3.0,
    # The chat's model: None (the OPENAI_* environment variables, else the demo model), an
    # OpenAI-compatible server {"BASE_URL": ..., "NAME": ..., "API_KEY_ENV": "OPENAI_API_KEY"}
    # (each key optional; the key is read from that environment variable), or the dotted
    # path of a source factory ``(prompt, *, pipeline, history) -> async iterator of str``.
    "MODEL": None,
    # Characters of a conversation's earlier turns sent to the model with a new prompt;
    # the oldest turns are dropped first beyond it.
    "HISTORY_MAX_CHARS": 24_000,
    # Milliseconds during which a reply's tokens are merged into one message (one SSE
    # event, one WebSocket frame): for fast models (300-1,000 tokens a second), 16 (one
    # display frame) cuts the server's work per token at the cost of up to that much
    # latency. None or 0: off, each token goes out as soon as it arrives.
    "FLUSH_INTERVAL_MS": None,
    # Milliseconds a store that needs a round trip (Redis) gathers the new events of every
    # reply in the process before writing them all in one call: fewer round trips per
    # token. Followers in the reply's process get each event before it is stored, so
    # this delays only followers in other processes (a reply's first events go at once).
    # 0: write at the next event-loop turn.
    "STORE_BATCH_MS": 10.0,
    # Extractor limits (characters), as the ElizaOS reference names them.
    "SAFE_MARGIN": 10,
    "MAX_BUFFER": 100 * 1024,
    "MAX_CHUNK_SIZE": 1024 * 1024,
    # The client's address (per-address limits, logs): the socket's peer, unless the peer
    # is one of these reverse proxies (IPs or CIDR networks; "unix" for a Unix socket):
    # then the right-most address of CLIENT_ADDRESS_HEADER that is not a trusted proxy.
    # Behind a proxy without this setting every client shares the proxy's address.
    "TRUSTED_PROXIES": [],
    "CLIENT_ADDRESS_HEADER": "X-Forwarded-For",
    # Paid replies a client may run at once (per owner: the user or the session's visitor;
    # per client address) and start per minute from one address; None turns one off.
    # Counted in the event store, so across processes with Redis. Over a limit: 429
    # TOO_MANY_REPLIES / RATE_LIMITED with Retry-After (an error frame on a WebSocket).
    "MAX_ACTIVE_PER_OWNER": 3,
    "MAX_ACTIVE_PER_ADDRESS": 10,
    "MAX_STARTS_PER_MINUTE": 30,
    # Replies running in this process (whoever asked), past which it refuses new ones
    # with 503 SERVER_BUSY and Retry-After, so that those it streams keep their pace
    # instead of all falling behind; None: no limit. What a process holds depends on the
    # models' pace and the machine: measure it (README, Capacity).
    "MAX_ACTIVE_PER_PROCESS": None,
    # Stored conversations: those one owner keeps (one more: 409 TOO_MANY_CONVERSATIONS),
    # and those the conversations API creates per client address in 60 s (429
    # RATE_LIMITED with Retry-After); None turns one off.
    "MAX_CONVERSATIONS_PER_OWNER": 10_000,
    "MAX_CONVERSATIONS_PER_MINUTE": 20,
}


def setting(name: str) -> Any:
    """The value of one STREAMING setting, or its default when Django is not configured.

    Values are cached once Django is configured (extractors read their limits on every
    reply) and the cache is cleared whenever ``settings.STREAMING`` changes.
    """
    try:
        return _cache[name]
    except KeyError:
        pass
    if name not in DEFAULTS:
        raise KeyError(f"Unknown STREAMING setting: {name!r}")
    try:
        from django.conf import settings

        if settings.configured:
            if not _cache:
                from django.core.signals import setting_changed

                setting_changed.connect(_clear_cache, dispatch_uid="streaming.conf")
            user = getattr(settings, "STREAMING", None) or {}
            value = _cache[name] = user.get(name, DEFAULTS[name])
            return value
    except ImportError:
        pass
    return DEFAULTS[name]


_cache: dict[str, Any] = {}


def _clear_cache(*, setting: str, **kwargs: Any) -> None:
    if setting == "STREAMING":
        _cache.clear()
