"""The OpenAI source: a chat completion streamed with the official ``openai`` SDK.

It works with any OpenAI-compatible server (Ollama, vLLM, LM Studio, a gateway…) through
the SDK's own ``base_url`` argument or ``OPENAI_BASE_URL`` environment variable. It yields
the text of ``choices[0].delta.content``, and the reasoning a reasoning model sends apart
(``reasoning_content`` or ``reasoning``) as ``Reasoning`` pieces; closing or cancelling
the iterator closes the SDK stream, so the upstream HTTP connection closes at once and the
server stops generating.

A reply is complete only when the server ended it: the ``data: [DONE]`` event, or
``finish_reason`` ``stop`` (the stream then read for ``FINISH_GRACE`` seconds more at
most, unless text follows it: some servers mark every chunk ``stop``).
A stream that ends with neither was cut short (a proxy timeout, a crashed worker) and is
an ``UPSTREAM_ERROR``, as are a reply cut at the model's token limit (``length``), one its
provider filtered (``content_filter``), one it failed (OpenRouter's ``error``), a tool call
(this source runs none), and a body that is not valid UTF-8 or JSON objects. The SDK
swallows ``[DONE]`` and reads lines of any length, so ``_EventWatcher`` stands in for its
decoder: it notes ``[DONE]``, refuses a line over ``UPSTREAM_MAX_LINE`` and data that is
not a JSON object, and drops events without data (``id:`` or ``retry:`` alone), which
dispatch nothing in SSE. The two halves of a surrogate pair (an emoji) sent in two deltas,
as a server that cuts its text in UTF-16 units does, are joined into their character.

What the model server says about an error (its message may name the account, the key's
last characters or a quota) goes to the log; clients get the status and what it means.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, cast
from urllib.parse import urlsplit, urlunsplit

import httpx
import openai

from ..conf import setting
from ..errors import StreamError, StreamErrorCode
from ..surrogates import SplitPairs
from .http import timeouts, tls_context, transport_error
from .reasoning import Reasoning

logger = logging.getLogger("streaming")

#: The model used when neither ``model=`` nor ``OPENAI_MODEL`` names one.
DEFAULT_MODEL = "gpt-4o-mini"
#: Seconds a finished reply's stream may stay open for its last events (a usage chunk,
#: ``[DONE]``): a server that keeps it open longer is taken at its ``finish_reason``.
FINISH_GRACE = 2.0
#: Why a reply is not complete, by the ``finish_reason`` that ended it.
UNFINISHED = {
    "length": "The model reached its length limit (max_tokens); the reply is cut short",
    "content_filter": "The model's provider filtered the reply",
    "tool_calls": "The model asked for a tool call, which this server does not run",
    "function_call": "The model asked for a function call, which this server does not run",
    # OpenRouter and other gateways: the provider failed mid-reply (the chunk's ``error``
    # object, when there is one, fails the stream before this is read).
    "error": "The model server reported an error mid-reply",
}


async def openai_chat(
    messages: Sequence[Mapping[str, Any]],
    *,
    model: str | None = None,
    client: openai.AsyncOpenAI | None = None,
    base_url: str | None = None,
    api_key: str | None = None,
    connect_timeout: float | None = None,
    read_timeout: float | None = None,
    reasoning: bool = True,
    **params: Any,
) -> AsyncIterator[str]:
    """Stream the reply to ``messages`` as text pieces.

    ``model`` defaults to ``OPENAI_MODEL``, else ``gpt-4o-mini``. Without ``client`` a
    client is made for this reply (``api_key`` / ``base_url``, else the SDK's environment
    variables), which does not retry, and closed with it; pass a ``client`` to share its
    connections, or for the SDK's retries (its ``max_retries``). Timeouts default to
    ``STREAMING["UPSTREAM_CONNECT_TIMEOUT"]`` and ``["UPSTREAM_READ_TIMEOUT"]`` (the
    longest silence between two chunks). ``params`` go to ``chat.completions.create``
    (``temperature``, ``max_tokens``…). Failures are a ``StreamError``: TIMEOUT, or
    UPSTREAM_ERROR with the HTTP status in ``details``.

    The model's reasoning, which reasoning models send apart from the reply (a delta's
    ``reasoning_content``, else its ``reasoning``), is yielded as ``Reasoning`` pieces
    among the text (``reasoning=False``: left out). A reply that has reasoning but no
    text is an UPSTREAM_ERROR after it: "The model reasoned but wrote no answer".
    """
    connect, read = timeouts(connect_timeout, read_timeout)
    owned = client is None
    api = client or _new_client(api_key, base_url)
    started = False  # a chunk arrived: a silence now is one between chunks
    try:
        try:
            stream = await api.chat.completions.create(
                model=model or os.environ.get("OPENAI_MODEL") or DEFAULT_MODEL,
                messages=cast(Any, messages),
                stream=True,
                timeout=openai.Timeout(read, connect=connect),
                **params,
            )
            done = _EventWatcher.install(stream, int(setting("UPSTREAM_MAX_LINE")))
            finish_reason = None
            reasoned = answered = False  # reasoning came; text came
            marks_every_chunk = False
            # The halves of a surrogate pair the server sent in two deltas, joined.
            texts, thoughts = SplitPairs(), SplitPairs()
            try:
                _require_a_stream(stream)
                chunks = aiter(stream)
                while True:
                    try:
                        if finish_reason and not marks_every_chunk:
                            # Finished: a server may keep the stream open with no [DONE].
                            async with asyncio.timeout(FINISH_GRACE):
                                chunk = await anext(chunks)
                        else:
                            chunk = await anext(chunks)
                    except StopAsyncIteration:
                        break
                    except TimeoutError:
                        if finish_reason and not marks_every_chunk:
                            break
                        raise
                    started = True
                    if not chunk.choices:
                        continue
                    choice = chunk.choices[0]
                    if getattr(choice, "index", 0):
                        continue  # another of ``n`` choices: only the first is the reply
                    # Some compatible servers leave ``delta`` out of their last chunk.
                    delta = getattr(choice, "delta", None)
                    # The fields the SDK does not declare (a provider's reasoning): an
                    # empty dict for a model that sends none, so it pays one lookup.
                    extra = getattr(delta, "__pydantic_extra__", None)
                    if extra:
                        thought = _reasoning(extra)
                        if thought:
                            reasoned = True
                            if texts.high:  # a half the text did not complete, in order
                                yield texts.rest()
                            if reasoning and (thoughts.high or not thought.isascii()):
                                thought = thoughts.join(thought)
                            if reasoning and thought:
                                yield Reasoning(thought)
                    content = getattr(delta, "content", None)
                    if content:
                        # Text after a finish_reason: this server marks every chunk so.
                        marks_every_chunk = marks_every_chunk or finish_reason is not None
                        answered = True
                        if thoughts.high:  # a half the reasoning did not complete, in order
                            yield Reasoning(thoughts.rest())
                        if texts.high or not content.isascii():
                            content = texts.join(content)
                        if content:
                            yield content
                    finish_reason = getattr(choice, "finish_reason", None) or finish_reason
            finally:
                await stream.close()
            # A high surrogate no low one followed (a lone one, replaced where it enters).
            if thoughts.high and reasoning:
                yield Reasoning(thoughts.rest())
            if texts.high:
                yield texts.rest()
            if finish_reason in UNFINISHED:
                logger.warning("The model server ended a reply with %r", finish_reason)
                raise StreamError(
                    StreamErrorCode.UPSTREAM_ERROR,
                    UNFINISHED[finish_reason],
                    {"finish_reason": finish_reason},
                )
            if not finish_reason and not done.seen:
                raise StreamError(
                    StreamErrorCode.UPSTREAM_ERROR,
                    "The model server's stream ended before the reply was finished "
                    "(no finish_reason, no [DONE])",
                )
            if reasoned and not answered:
                logger.warning("The model server ended a reply that had reasoning only")
                raise StreamError(
                    StreamErrorCode.UPSTREAM_ERROR,
                    "The model reasoned but wrote no answer",
                    {"finish_reason": finish_reason},
                )
        except (openai.APIError, httpx.HTTPError) as exc:
            raise _stream_error(exc, connect, read, started=started) from exc
        except UnicodeDecodeError as exc:
            raise StreamError(
                StreamErrorCode.UPSTREAM_ERROR,
                "The model server sent invalid UTF-8",
                {"reason": str(exc)},
            ) from exc
        except json.JSONDecodeError as exc:  # from the SDK's event parser
            raise StreamError(
                StreamErrorCode.UPSTREAM_ERROR,
                f"The model server sent an event that is not valid JSON: {exc}",
            ) from exc
    finally:
        if owned:
            await api.close()


class _EventWatcher:
    """Stands in for the SDK stream's event decoder: notes the ``[DONE]`` event, bounds
    its lines, refuses data that is not a JSON object and drops events without data."""

    def __init__(self, decoder: Any, max_line: int) -> None:
        self.decoder = decoder
        self.max_line = max_line
        self.seen = False

    @classmethod
    def install(cls, stream: Any, max_line: int) -> _EventWatcher:
        """Watch ``stream`` (before it is iterated). An SDK without the ``_decoder`` it
        has had since 1.0 leaves the watcher unused: then only ``finish_reason`` counts."""
        watcher = cls(getattr(stream, "_decoder", None), max_line)
        if watcher.decoder is not None and hasattr(watcher.decoder, "aiter_bytes"):
            stream._decoder = watcher
        return watcher

    def aiter_bytes(self, iterator: AsyncIterator[bytes]) -> AsyncIterator[Any]:
        return self._watch(self.decoder.aiter_bytes(self._bounded(iterator)))

    async def _bounded(self, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        """The body's bytes, refused once a line grows past ``max_line`` (a byte is at
        most a character: a line of that many bytes is never refused)."""
        limit = self.max_line
        line = 0  # the bytes of the line that is not ended yet
        async for chunk in chunks:
            end = max(chunk.rfind(b"\n"), chunk.rfind(b"\r"))
            if line + len(chunk) > limit and _longest_line(chunk, line) > limit:
                raise StreamError(
                    StreamErrorCode.PARSE_ERROR,
                    f"The model server sent an SSE line longer than {limit} characters",
                )
            line = line + len(chunk) if end < 0 else len(chunk) - end - 1
            yield chunk

    async def _watch(self, events: AsyncIterator[Any]) -> AsyncIterator[Any]:
        async for event in events:
            data = event.data
            if data[:1] != "{":
                if data.startswith("[DONE]"):
                    self.seen = True
                elif not data:
                    continue  # ``id:``, ``retry:`` or ``event:`` alone: nothing to read
                elif data.lstrip()[:1] != "{":
                    raise StreamError(
                        StreamErrorCode.UPSTREAM_ERROR,
                        "The model server sent an event whose data is not a JSON object",
                    )
            yield event

    def __getattr__(self, name: str) -> Any:
        return getattr(self.decoder, name)


def _reasoning(extra: Mapping[str, Any]) -> str:
    """The reasoning in a delta's undeclared fields: ``reasoning_content`` (DeepSeek, vLLM,
    SGLang, LM Studio, llama.cpp), else ``reasoning`` (OpenRouter, Ollama, newer vLLM);
    a server that sends both sends the same text twice, so one is read. Anything but a
    string (``null``, OpenRouter's ``reasoning_details`` objects) is not reasoning."""
    for key in ("reasoning_content", "reasoning"):
        value = extra.get(key)
        if value and isinstance(value, str):
            return value
    return ""


def _require_a_stream(stream: Any) -> None:
    """Refuse a body that is a whole JSON document or a page, not an event stream (a
    server that ignores ``stream=True``, a proxy's error page): said as such, rather than
    as a stream that ended unfinished."""
    response = getattr(stream, "response", None)
    if response is None:
        return
    kind = response.headers.get("content-type", "")
    if kind.startswith(("application/json", "text/html")):
        logger.warning(
            "The model server at %s answered %s, not a stream", _loggable(response.url), kind
        )
        raise StreamError(
            StreamErrorCode.UPSTREAM_ERROR,
            f"The model server did not stream its reply (it sent {kind.split(';')[0]})",
        )


def _longest_line(chunk: bytes, carried: int) -> int:
    """The longest line in ``chunk`` in bytes, its first continuing ``carried`` bytes."""
    lines = chunk.replace(b"\r", b"\n").split(b"\n")
    return max(carried + len(lines[0]), *(len(line) for line in lines[1:]), 0)


def _new_client(api_key: str | None, base_url: str | None) -> openai.AsyncOpenAI:
    """A client for one reply; without a key (``api_key`` or ``OPENAI_API_KEY``) an
    ``UPSTREAM_ERROR`` that says so, not the SDK's bare ``OpenAIError``."""
    http_client = openai.DefaultAsyncHttpxClient(verify=tls_context())
    try:
        # No retries: the SDK's two would triple every timeout before the first chunk
        # (UPSTREAM_READ_TIMEOUT 60 s became about 3 minutes of nothing but keep-alives).
        return openai.AsyncOpenAI(
            api_key=api_key, base_url=base_url, http_client=http_client, max_retries=0
        )
    except openai.OpenAIError as exc:
        raise StreamError(
            StreamErrorCode.UPSTREAM_ERROR,
            "No API key for the model server: set OPENAI_API_KEY, or pass api_key",
        ) from exc


def sdk_failure(exc: BaseException) -> StreamError | None:
    """An ``openai`` SDK failure in a stream the SDK made outside ``openai_chat``
    (``sse_response(client.chat.completions.create(...))``) as the ``StreamError`` that
    ``openai_chat`` raises (the timeouts are the client's, unknown here); else None."""
    if not isinstance(exc, openai.OpenAIError):
        return None
    if isinstance(exc, openai.APITimeoutError):
        return StreamError(StreamErrorCode.TIMEOUT, "The model server timed out")
    return _stream_error(exc, *timeouts())


def _url(exc: Exception) -> str:
    """The URL of the request that failed, for the log (only the log names the server)."""
    try:
        return _loggable(exc.request.url)  # type: ignore[attr-defined]
    except (AttributeError, RuntimeError):  # httpx raises RuntimeError when it has none
        return "?"


def _loggable(url: object) -> str:
    """``url`` without its query, fragment and user info: a gateway that takes its key
    there (``?api-key=``, ``https://user:key@host``) does not have it written to the log."""
    parts = urlsplit(str(url))
    return urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, "", ""))


def _stream_error(
    exc: Exception, connect: float, read: float, *, started: bool | None = None
) -> StreamError:
    """The ``StreamError`` for an SDK failure (``httpx`` ones come from openai 1.x streams);
    a timeout says which wait ran out when ``started`` says whether a chunk had arrived."""
    if isinstance(exc, httpx.HTTPError):
        error = transport_error(exc, connect, read)
        logger.warning("The model server at %s: %s", _url(exc), error.message)
        return error
    if isinstance(exc, openai.APITimeoutError):
        if started is None:
            what = f"timed out (connect {connect:g} s, between chunks {read:g} s)"
        elif type(exc.__cause__).__name__ == "ConnectTimeout":  # httpx's, or httpx2's
            what = f"did not accept the connection within {connect:g} s"
        elif started:
            what = f"sent nothing for {read:g} s mid-reply"
        else:
            # A local server (Ollama, LM Studio) may be loading the model from disk.
            what = f"sent nothing for {read:g} s before its reply began"
        logger.warning("The model server at %s %s", _url(exc), what)
        return StreamError(
            StreamErrorCode.TIMEOUT,
            f"The model server {what}",
            {"connect_timeout": connect, "read_timeout": read},
        )
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        logger.warning(
            "The model server at %s answered HTTP %s: %s",
            _url(exc),
            status,
            _error_message(exc.body) or "(no message)",
        )
        return StreamError(
            StreamErrorCode.UPSTREAM_ERROR,
            f"The model server answered HTTP {status}{_status_meaning(exc)}",
            {"status": status},
        )
    if isinstance(exc, openai.APIConnectionError):
        # Only the log names the server and the cause (a wrong BASE_URL, a refused port).
        logger.warning(
            "The model server at %s could not be reached: %r", _url(exc), exc.__cause__ or exc
        )
        return StreamError(
            StreamErrorCode.UPSTREAM_ERROR,
            "The connection to the model server failed",
            {"reason": repr(exc.__cause__ or exc)},
        )
    logger.warning("The model server at %s reported an error: %s", _url(exc), exc)
    return StreamError(
        StreamErrorCode.UPSTREAM_ERROR,
        "The model server reported an error mid-reply",
        {"body": getattr(exc, "body", None)},
    )


#: What an HTTP status from the model server means, for clients (the server's own
#: message, which may name the account or the key, goes to the log only).
_STATUS_MEANING = {
    400: ": it refused the request",
    401: ": it refused the server's credentials",
    402: ": the account has no credit left",
    # The key's permissions, an unsupported region, or a gateway's moderation (OpenRouter).
    403: ": it forbade the request (the key's permissions, the region or its moderation)",
    404: ": no such model or endpoint",
    408: ": it timed out",
    413: ": the conversation is too long for it",
    429: ": it is busy or over its quota; try again later",
    500: ": it failed",
    502: ": it failed",
    503: ": it is unavailable; try again later",
    504: ": it timed out",
}


#: What an error body's ``code`` or ``type`` says beyond its status: a conversation over
#: the model's context (OpenAI, Azure, Groq; llama.cpp's type), a prompt Azure's content
#: filter refused, an account out of quota (OpenAI's 429, which no retry cures).
_CODE_MEANING = {
    "context_length_exceeded": ": the conversation is too long for the model",
    "exceed_context_size_error": ": the conversation is too long for the model",
    "content_filter": ": its provider's content filter refused the prompt",
    "insufficient_quota": ": the account is over its quota",
}


def _status_meaning(exc: openai.APIStatusError) -> str:
    """What the status of ``exc`` means for a client: its body's ``code`` or ``type`` when
    it is a known one (a 400 whose message speaks of the context length, as vLLM's does,
    is a conversation too long), else the status's meaning, with a 429's or 503's
    ``Retry-After`` seconds. Never the server's own words."""
    body = exc.body
    error = body.get("error", body) if isinstance(body, Mapping) else None
    if isinstance(error, Mapping):
        for key in ("code", "type"):
            value = error.get(key)
            if isinstance(value, str) and value in _CODE_MEANING:
                return _CODE_MEANING[value]
        message = error.get("message")
        context = isinstance(message, str) and re.search(
            r"context (length|size|window)", message, re.IGNORECASE
        )
        if exc.status_code == 400 and context:
            return _CODE_MEANING["context_length_exceeded"]
    meaning = _STATUS_MEANING.get(exc.status_code, "")
    retry_after = exc.response.headers.get("retry-after", "").strip()
    if exc.status_code in (429, 503) and retry_after.isdigit() and int(retry_after) <= 3600:
        meaning = meaning.replace("try again later", f"try again in {int(retry_after)} s")
    return meaning


def _error_message(body: object) -> str:
    """The ``message`` of an OpenAI-style error body, shortened (``""`` when there is none)."""
    if isinstance(body, Mapping):
        error = body.get("error", body)
        message = error.get("message") if isinstance(error, Mapping) else error
        if isinstance(message, str):
            return message[:300]
    return ""
