"""The model runtime, as ElizaOS's ``useModel`` with a streaming context.

``use_model`` reads a text source to the end, hands every raw chunk to the streaming
context (which filters it through its extractor and forwards the streamable text) and
returns the full raw reply. ``stream_to_action`` is the seed's "Streaming in Actions":
an action callback gets each filtered piece, then the whole reply.

Whatever ends the run (the last chunk, an abort, an error, a cancelled task) the source is
closed, so an upstream HTTP request stops at once.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterator, Sequence
from typing import Any, Protocol

from .context import create_streaming_context
from .errors import StreamError, StreamErrorCode
from .extractors import ActionStreamFilter, StreamExtractor

#: Stops a run between two chunks: an ``asyncio.Event`` that is set, or a callable that
#: returns true.
Abort = asyncio.Event | Callable[[], bool]

#: An action's callback: gets ``{"text": ..., "streaming": ...}`` dicts, may be async.
ActionCallback = Callable[[dict[str, Any]], Awaitable[Any] | Any]


_END = object()


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
    when given, as the final message of the seed's "Streaming in Actions".
    """
    active = extractor if extractor is not None else ActionStreamFilter()

    async def on_chunk(text: str, chunk_message_id: str | None = None) -> None:
        await _maybe_await(callback({"text": text, "streaming": True}))

    context = create_streaming_context(active, on_chunk, message_id)
    full = await use_model(source, streaming_context=context, abort=abort)
    tail = active.flush()
    if tail:
        await on_chunk(tail)
    final: dict[str, Any] = {"text": full, "streaming": False}
    if actions is not None:
        final["actions"] = list(actions)
    await _maybe_await(callback(final))
    return full


async def as_text_source(value: Any) -> AsyncIterator[str]:
    """Raw model chunks from what a view's ``stream()`` returned.

    Accepts an async iterable, a sync iterable (iterated in a worker thread, so a
    blocking one does not stall the server), an awaitable resolving to either, or a
    ``str``. Non-text chunks are a ``StreamError``: extractors work on text.
    """
    if inspect.isawaitable(value):
        value = await value
    if isinstance(value, str):
        yield value
        return
    if hasattr(value, "__aiter__"):
        iterator = aiter(value)
        try:
            async for chunk in iterator:
                yield _text(chunk)
        finally:
            close = getattr(iterator, "aclose", None)
            if close is not None:
                await close()
        return
    if hasattr(value, "__iter__"):
        sync_iterator: Iterator[Any] = iter(value)
        try:
            while (chunk := await asyncio.to_thread(next, sync_iterator, _END)) is not _END:
                yield _text(chunk)
        finally:
            close = getattr(sync_iterator, "close", None)
            if close is not None:
                close()
        return
    raise TypeError(
        f"stream() must return an iterable or async iterable of text, not {type(value).__name__}"
    )


def _text(chunk: Any) -> str:
    if isinstance(chunk, str):
        return chunk
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
