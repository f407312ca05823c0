"""What both transports accept from a client: a prompt and a choice of pipeline.

``PipelineChoiceMixin`` gives ``SSEView`` and ``StreamConsumer`` the same
``extractors`` / ``pipelines`` attributes, the same ``get_prompt`` hook and the same
answers to bad input; ``call_hook`` runs their hooks, sync or async, the same way, and
``start_reply`` starts their replies the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import math
import re
import weakref
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

from asgiref.sync import sync_to_async
from django.core.exceptions import ImproperlyConfigured, RequestDataTooBig, SuspiciousOperation
from django.db import DatabaseError
from django.http import HttpRequest, QueryDict

from .conf import setting
from .database_pool import discard_broken_connections, pool_busy, pool_timed_out
from .errors import DATABASE_UNAVAILABLE, StreamError, StreamErrorCode
from .extractors import Pipeline, StreamExtractor
from .generations import DISCONNECT_POLICIES
from .surrogates import replace_surrogates, replace_surrogates_in

logger = logging.getLogger("streaming")
T = TypeVar("T")

if TYPE_CHECKING:
    from .generations import DisconnectPolicy, Generations
    from .limits import Reservation

ExtractorFactory = Callable[[], StreamExtractor]


#: The longest integer a client's JSON may hold (Python's default conversion limit).
MAX_INTEGER_DIGITS = 4300
#: A JSON escape that may make a lone surrogate (``"\ud800"``).
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def parse_json(data: str | bytes) -> Any:
    """A client's JSON (a POST body, a WebSocket frame), strictly: ``ValueError`` for
    invalid JSON or UTF-8, ``NaN``/``Infinity`` (not JSON), a number too large for a float
    and nesting too deep to parse (Python's ``RecursionError``, which would otherwise be
    a 500 page or a closed socket). Bytes must be UTF-8 (JSON's one encoding on the wire;
    ``json.loads`` would also take UTF-16 and UTF-32, lone surrogates and all). Lone
    surrogates in its strings (escaped) become U+FFFD."""
    try:
        text = data if isinstance(data, str) else data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"The JSON is not UTF-8 ({exc.reason} at byte {exc.start})") from None
    try:
        value = json.loads(text, parse_constant=_not_json, parse_float=_finite, parse_int=_integer)
        if _SURROGATE_ESCAPE.search(text):
            value = replace_surrogates_in(value)
    except RecursionError as exc:
        raise ValueError("The JSON is nested too deeply") from exc
    return value


def json_object(request: HttpRequest, too_large: StreamErrorCode) -> dict[str, Any]:
    """The request body as a JSON object (``parse_json``; an empty body is ``{}``), or
    ``StreamError``: ``too_large`` past ``DATA_UPLOAD_MAX_MEMORY_SIZE``, else BAD_REQUEST."""
    try:
        value = parse_json(request.body or b"{}")
    except RequestDataTooBig as exc:
        raise StreamError(
            too_large, "The request body is larger than DATA_UPLOAD_MAX_MEMORY_SIZE"
        ) from exc
    except ValueError as exc:
        raise StreamError(
            StreamErrorCode.BAD_REQUEST, f"The request body must be a JSON object: {exc}"
        ) from exc
    if not isinstance(value, dict):
        raise StreamError(StreamErrorCode.BAD_REQUEST, "The request body must be a JSON object")
    return value


def query_params(request: HttpRequest) -> QueryDict:
    """``request.GET``, or ``StreamError`` BAD_REQUEST when Django refuses to parse it
    (more than ``DATA_UPLOAD_MAX_NUMBER_FIELDS`` parameters): JSON, not its HTML 400."""
    try:
        return request.GET
    except SuspiciousOperation as exc:
        raise StreamError(
            StreamErrorCode.BAD_REQUEST, f"The query string cannot be read: {exc}"
        ) from exc


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not JSON")


def _integer(text: str) -> int:
    """An integer within the digits Python converts (its own error names a setting of
    the server's, not something a client can act on)."""
    if len(text.lstrip("-")) > MAX_INTEGER_DIGITS:
        raise ValueError(f"The number {text[:20]}… is too large")
    return int(text)


def _finite(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(f"The number {text[:20]} is too large")
    return number


def hook_params(params: Mapping[str, Any], *dropped: str) -> dict[str, Any]:
    """A request's parameters for the ``stream`` hook's ``**params``, without ``dropped``
    (the prompt, a frame's type). ``self`` is refused: it is the hook's own argument."""
    if "self" in params:
        raise StreamError(StreamErrorCode.BAD_REQUEST, "'self' cannot be a parameter's name")
    return {key: value for key, value in params.items() if key not in dropped}


#: Parameters the transports read themselves: passed to ``stream`` only if it names them.
READ_BY_THE_VIEW = frozenset({"pipeline"})


def stream_params(
    stream: Callable[..., Any], params: Mapping[str, Any], *dropped: str
) -> dict[str, Any]:
    """``hook_params`` for this ``stream`` hook: a parameter it does not take (no
    ``**params``) is a client's mistake, ``BAD_REQUEST`` naming it, not a failed start."""
    given = hook_params(params, *dropped)
    function = getattr(stream, "__func__", None)  # a method: its ``self`` comes first
    accepted = _keywords(stream, 1) if function is None else _keywords(function, 2)
    if accepted is None:
        return given
    for name in given:
        if name not in accepted and name not in READ_BY_THE_VIEW:
            raise StreamError(
                StreamErrorCode.BAD_REQUEST, f"Unknown parameter {name[:100]!r}", {"name": name}
            )
    return {name: value for name, value in given.items() if name in accepted}


#: ``_keywords`` per hook function, for as long as the function lives (a hook made per
#: request or per socket is not kept alive by this).
_KEYWORDS: weakref.WeakKeyDictionary[Callable[..., Any], frozenset[str] | None] = (
    weakref.WeakKeyDictionary()
)


def _keywords(function: Callable[..., Any], positional: int) -> frozenset[str] | None:
    """The keyword parameters ``function`` takes after its first ``positional`` ones
    (``self``, the prompt); ``None`` when it takes any (``**params``). Remembered per
    function, but for a callable that cannot be (unhashable, no weak references)."""
    with contextlib.suppress(KeyError, TypeError):
        return _KEYWORDS[function]
    keywords = _signature_keywords(function, positional)
    with contextlib.suppress(TypeError):
        _KEYWORDS[function] = keywords
    return keywords


def _signature_keywords(function: Callable[..., Any], positional: int) -> frozenset[str] | None:
    parameters = list(inspect.signature(function).parameters.values())
    if any(parameter.kind is inspect.Parameter.VAR_KEYWORD for parameter in parameters):
        return None
    keywords = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return frozenset(p.name for p in parameters[positional:] if p.kind in keywords)


def get_prompt(params: Mapping[str, Any]) -> str:
    """The non-empty ``prompt`` string of a request, within ``MAX_PROMPT_LENGTH``."""
    prompt = params.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise StreamError(StreamErrorCode.BAD_REQUEST, "'prompt' must be a non-empty string")
    limit = setting("MAX_PROMPT_LENGTH")
    if len(prompt) > limit:
        raise StreamError(
            StreamErrorCode.PROMPT_TOO_LARGE,
            f"The prompt has {len(prompt)} characters; the limit is {limit}",
            {"length": len(prompt), "max_length": limit},
        )
    return replace_surrogates(prompt)


#: The most digits ``shown`` may have (as many as an event id's seq).
MAX_SHOWN_DIGITS = 18


def get_shown(params: Mapping[str, Any], *, query: bool = False) -> int | None:
    """How many characters of a reply's text its client had shown when it stopped it
    (``shown``: a JSON integer, or its digits in a ``query`` string), or ``None``."""
    value = params.get("shown")
    if value is None:
        return None
    if query and isinstance(value, str) and value.isascii() and value.isdigit():
        value = int(value) if len(value) <= MAX_SHOWN_DIGITS else -1
    if type(value) is not int or not 0 <= value < 10**MAX_SHOWN_DIGITS:
        raise StreamError(
            StreamErrorCode.BAD_REQUEST,
            "'shown' must be the number of characters of the reply shown: a whole number "
            f"of at most {MAX_SHOWN_DIGITS} digits",
        )
    return value


async def call_hook(hook: Callable[[], Any]) -> Any:
    """Run a transport hook: awaited when it is async, else in a thread (it may use the ORM).
    A database that fails under it (a session or a user loaded from a database that is
    down) is ``STORE_UNAVAILABLE``, a JSON 503 or an error frame, not Django's 500 page
    (``SERVER_BUSY`` when Django's pool had no connection free)."""
    try:
        if inspect.iscoroutinefunction(hook):
            return await hook()
        return await sync_to_async(hook)()
    except DatabaseError as exc:
        raise await database_failed(exc, getattr(hook, "__qualname__", repr(hook))) from exc


async def database_failed(exc: DatabaseError, under: str) -> StreamError:
    """What a client is told when the database failed ``under`` a request's code, with
    one log line: ``SERVER_BUSY`` when Django's pool had no connection free, else
    ``STORE_UNAVAILABLE``, after the pool's broken connections are found."""
    if pool_timed_out(exc):
        return pool_busy(exc)
    logger.error("The database failed under %s: %r", under, exc)
    await sync_to_async(discard_broken_connections, thread_sensitive=False)(exc)
    return StreamError(StreamErrorCode.STORE_UNAVAILABLE, DATABASE_UNAVAILABLE)


#: Seconds a ``stopping`` hook may hold up its reply's cancel (a database that hangs
#: under the chat's): past them the reply is stopped, and the model no longer paid for.
STOPPING_TIMEOUT = 2.0


async def call_stopping(
    hook: Callable[[str, str, int | None], Any], generation_id: str, owner: str, shown: int | None
) -> None:
    """Run a transport's ``stopping`` hook before a reply is cancelled, for at most
    ``STOPPING_TIMEOUT`` seconds. A failure is logged, never raised: the reply is stopped
    all the same."""
    try:
        async with asyncio.timeout(STOPPING_TIMEOUT):
            await call_hook(partial(hook, generation_id, owner, shown))
    except Exception:
        logger.exception(
            "stopping() failed for reply %s; it is stopped all the same", generation_id
        )


async def start_reply(
    generations: Generations,
    stream: Callable[[], Any],
    pipeline: Pipeline,
    *,
    owner: str,
    reservation: Reservation,
    policy: DisconnectPolicy,
    forward_events: bool,
    options: Callable[[], Mapping[str, Any]],
) -> str:
    """Start a transport's reply: call its ``stream`` hook (sync or async) and start the
    generation with ``reservation`` and the hook's ``options()``; the reservation is
    refunded if the reply does not start (whichever hook raises), its start included.

    The start runs to its end even when the request is cancelled meanwhile (its client
    went away): what the hook stored (a chat's new turn) then gets its reply, stored by
    ``on_end``, as when the client goes away a moment later, never a turn without one.
    """

    async def start() -> str:
        try:
            source = stream()
            if inspect.iscoroutine(source):
                source = await source
            return await generations.start(
                source,
                pipeline,
                owner=owner,
                policy=policy,
                forward_events=forward_events,
                reservation=reservation,
                **options(),
            )
        except StreamError:
            await reservation.refund()
            await end_unstarted(options().get("on_end"))
            raise
        except Exception as exc:
            # A hook that fails otherwise (a subclass's ``stream``, a model source that
            # raises when called): the client is told, never shown a traceback; the
            # details go to the log.
            await reservation.refund()
            logger.exception("The reply could not start")
            await end_unstarted(options().get("on_end"))
            raise StreamError(StreamErrorCode.INTERNAL_ERROR, "The reply could not start") from exc
        except BaseException:
            await reservation.refund()
            raise

    return await run_to_end(start())


async def end_unstarted(on_end: Callable[[str], Awaitable[None]] | None) -> None:
    """A reply that did not start after its hook stored something (a chat's turn, whose
    ``on_end`` its options carry): end that as failed, so a stored prompt never waits
    for a reply that will not come. A chat's ``on_end`` stores once, if it ran already."""
    if on_end is None:
        return
    try:
        await on_end("error")
    except Exception:
        logger.exception("The end of a reply that did not start could not be stored")


async def run_to_end(start: Coroutine[Any, Any, T]) -> T:
    """Await a reply's start, which runs to its end even when the awaiting request is
    cancelled meanwhile (its client went away): what it stored then gets its reply."""
    starting = asyncio.ensure_future(start)
    _starting.add(starting)
    starting.add_done_callback(_started)
    return await asyncio.shield(starting)


#: Starts under way, each kept until it ends: the event loop holds its tasks weakly, and
#: a start whose request was cancelled has nobody else awaiting it.
_starting: set[asyncio.Future[Any]] = set()


def _started(starting: asyncio.Future[Any]) -> None:
    """A start ended; its failure, once nobody awaits it, is the client's no more."""
    _starting.discard(starting)
    if not starting.cancelled():
        starting.exception()  # retrieved: no "never retrieved" warning when nobody awaits


class PipelineChoiceMixin:
    """Extractors per request: ``extractors`` by default, or a named entry of ``pipelines``."""

    #: Extractor classes or factories for every request (empty: the text passes through).
    extractors: Sequence[ExtractorFactory] = ()
    #: Named pipelines a request may pick with its ``pipeline`` parameter.
    pipelines: Mapping[str, Sequence[ExtractorFactory]] = {}
    #: The pipeline used when the request names none (``None``: ``extractors``).
    default_pipeline: str | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Refuse, as the class is made, what would fail every request: an extractor
        instance where a class or factory belongs, an unknown disconnect policy, a
        default pipeline not named."""
        super().__init_subclass__(**kwargs)
        named = [("extractors", cls.extractors)]
        named += [(f"pipelines[{name!r}]", factories) for name, factories in cls.pipelines.items()]
        for where, factories in named:
            for factory in factories:
                if not callable(factory):
                    raise ImproperlyConfigured(
                        f"{cls.__qualname__}.{where} holds a {type(factory).__name__} "
                        "instance: give its class, or a factory such as "
                        'partial(XmlTagExtractor, "text"); each request makes its own'
                    )
        policy = getattr(cls, "disconnect_policy", DISCONNECT_POLICIES[0])
        if policy not in DISCONNECT_POLICIES:
            raise ImproperlyConfigured(
                f"{cls.__qualname__}.disconnect_policy {policy!r} is none of "
                f"{', '.join(map(repr, DISCONNECT_POLICIES))}"
            )
        if cls.default_pipeline is not None and cls.default_pipeline not in cls.pipelines:
            raise ImproperlyConfigured(
                f"{cls.__qualname__}.default_pipeline {cls.default_pipeline!r} is not one of "
                f"its pipelines ({', '.join(sorted(cls.pipelines)) or 'none'})"
            )

    def get_prompt(self, params: Mapping[str, Any]) -> str:
        """The prompt ``stream()`` gets: the request's non-empty ``prompt`` parameter."""
        return get_prompt(params)

    def get_pipeline_name(self, params: Mapping[str, Any]) -> str | None:
        """The pipeline the request asked for, or the default (no ``pipeline``, or an empty
        one: a form's empty field); unknown names and anything but a string are refused."""
        name = params.get("pipeline")
        if name is None or name == "":
            name = self.default_pipeline
        if name is None:
            return None
        if not isinstance(name, str) or name not in self.pipelines:
            known = ", ".join(sorted(self.pipelines)) or "none"
            asked = repr(name)  # a client's value: cut, as an unknown frame type is
            raise StreamError(
                StreamErrorCode.UNKNOWN_PIPELINE,
                f"Unknown pipeline {asked[:100]}; known: {known}",
            )
        return name

    def get_extractors(self, params: Mapping[str, Any]) -> list[StreamExtractor]:
        """Fresh extractor instances for one request, in pipeline order."""
        name = self.get_pipeline_name(params)
        factories = self.extractors if name is None else self.pipelines[name]
        return [factory() for factory in factories]

    def get_pipeline(self, params: Mapping[str, Any]) -> Pipeline:
        return Pipeline(*self.get_extractors(params))
