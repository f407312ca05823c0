"""The model runtime, as ElizaOS's ``useModel`` with a streaming context.

``use_model`` reads a text source to the end, hands every raw chunk to the streaming
context (which filters it through its extractor and forwards the streamable text) and
returns the full raw reply. ``stream_to_action`` is ElizaOS's "Streaming in Actions":
an action callback gets each filtered piece, then the whole reply.

Whatever ends the run (the last chunk, an abort, an error, a cancelled task) the source is
closed, so an upstream HTTP request stops at once.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterable, Awaitable, Callable, Sequence
from typing import Any, Protocol

from .errors import StreamError, StreamErrorCode
from .extractors import ActionStreamFilter, StreamExtractor, StreamingContext
from .sources.reasoning import Reasoning
from .surrogates import replace_surrogates

#: Stops a run between two chunks: an ``asyncio.Event`` that is set, or a callable that
#: returns true.
Abort = asyncio.Event | Callable[[], bool]

#: An action's callback: gets ``{"text": ..., "streaming": ...}`` dicts, may be async.
ActionCallback = Callable[[dict[str, Any]], Awaitable[Any] | Any]


class ChunkConsumer(Protocol):
    """What ``use_model`` feeds: a streaming context, or anything with ``push(chunk)``."""

    def push(self, chunk: str) -> Awaitable[Any] | Any: ...


async def use_model(
    source: AsyncIterable[str],
    *,
    streaming_context: ChunkConsumer | None = None,
    abort: Abort | None = None,
) -> str:
    """Feed every raw chunk of ``source`` to ``streaming_context``; return the full raw text.
    Reasoning the source yields apart (``Reasoning`` pieces) is neither: it is passed over.

    ``abort`` is checked before waiting for each chunk and when one arrives (that chunk is
    then dropped): the run stops and returns the text so far, as ElizaOS's runtime does.
    To stop at once, even while the source waits for its upstream, cancel the task: the
    source is closed and ``CancelledError`` propagates. Errors of the source or the
    context propagate after the source is closed.
    """
    iterator = aiter(source)
    parts: list[str] = []
    try:
        while not _aborted(abort):
            try:
                chunk = await anext(iterator)
            except StopAsyncIteration:
                break
            if _aborted(abort):
                break
            if isinstance(chunk, Reasoning):
                continue  # the model's reasoning, sent apart: not its reply
            parts.append(chunk)
            if streaming_context is not None:
                await _maybe_await(streaming_context.push(chunk))
    finally:
        close = getattr(iterator, "aclose", None)
        if close is not None:
            await close()
    return "".join(parts)


async def stream_to_action(
    source: AsyncIterable[str],
    callback: ActionCallback,
    *,
    extractor: StreamExtractor | None = None,
    actions: Sequence[str] | None = None,
    message_id: str | None = None,
    abort: Abort | None = None,
) -> str:
    """Stream a model's reply from inside an action; return the full raw reply.

    The reply goes through ``extractor`` (default: a fresh ``ActionStreamFilter``, which
    streams plain text, the ``<text>`` of XML and nothing of JSON); each piece becomes
    ``callback({"text": piece, "streaming": True})``, the held-back tail included. Last
    comes ``callback({"text": full_raw_reply, "streaming": False})``, with ``"actions"``
    when given, as the final message of ElizaOS's "Streaming in Actions".
    """
    active = extractor if extractor is not None else ActionStreamFilter()

    async def on_chunk(text: str, chunk_message_id: str | None = None) -> None:
        await _maybe_await(callback({"text": text, "streaming": True}))

    context = StreamingContext(active, on_chunk, message_id)
    full = await use_model(source, streaming_context=context, abort=abort)
    tail = active.flush()
    drain = getattr(active, "drain", None)
    if drain is not None:
        await drain()  # the async callbacks the flush called
    if tail:
        await on_chunk(tail)
    final: dict[str, Any] = {"text": full, "streaming": False}
    if actions is not None:
        final["actions"] = list(actions)
    await _maybe_await(callback(final))
    return full


def text_chunk(chunk: Any) -> str:
    """One raw model chunk (an item of what a transport's ``stream()`` returned, read
    with ``sources.iterables.iterate``) as text, or ``StreamError`` (PARSE_ERROR):
    extractors work on text. Lone surrogates become U+FFFD (``streaming.surrogates``), so
    no write of the text fails."""
    if isinstance(chunk, str):
        return chunk if chunk.isascii() else replace_surrogates(chunk)
    if isinstance(chunk, bytes):
        raise StreamError(
            StreamErrorCode.PARSE_ERROR, "Model chunks must be text; decode bytes first"
        )
    raise StreamError(
        StreamErrorCode.PARSE_ERROR, f"Model chunks must be text, not {type(chunk).__name__}"
    )


def _aborted(abort: Abort | None) -> bool:
    if abort is None:
        return False
    if isinstance(abort, asyncio.Event):
        return abort.is_set()
    return bool(abort())


async def _maybe_await(result: Any) -> Any:
    return await result if inspect.isawaitable(result) else result
