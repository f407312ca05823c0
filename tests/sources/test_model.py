"""``STREAMING["MODEL"]``: the chat's model from settings, against a local OpenAI-compatible
server through the real ``openai`` SDK; the dotted-path factory; the system check."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

import pytest
from django.test import override_settings

from streaming.checks import check_settings
from streaming.errors import StreamError
from streaming.sources import source_from_settings
from streaming.sources.model import ModelSettingError, model_factory
from streaming.sources.prompts import XML_SYSTEM_PROMPT, Message

from ..conftest import Serve
from .consume import collect
from .test_openai import hello

HISTORY = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]
CALLS: list[tuple[str, str | None, list[Message]]] = []


async def echo_factory(
    prompt: str, *, pipeline: str | None, history: Sequence[Message]
) -> AsyncIterator[str]:
    """A source factory as a project writes one (found by its dotted path)."""
    CALLS.append((prompt, pipeline, list(history)))
    for word in ("you", "said", prompt):
        yield f"{word} "


async def test_a_model_dict_names_an_openai_compatible_server(
    serve: Serve, monkeypatch: pytest.MonkeyPatch
) -> None:
    upstream = await serve(hello)
    monkeypatch.setenv("LOCAL_MODEL_KEY", "secret-from-env")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    model = {"BASE_URL": f"{upstream.url}/v1", "NAME": "local-8b", "API_KEY_ENV": "LOCAL_MODEL_KEY"}
    with override_settings(STREAMING={"MODEL": model}):
        source = source_from_settings("Say hello", pipeline="response", history=HISTORY)
    assert "".join(await collect(source)) == "Hello, world!"
    [request] = upstream.requests
    assert request.headers["authorization"] == "Bearer secret-from-env"
    body = request.json()
    assert body["model"] == "local-8b"
    assert body["messages"] == [
        {"role": "system", "content": XML_SYSTEM_PROMPT},
        *HISTORY,
        {"role": "user", "content": "Say hello"},
    ]


async def test_a_model_dict_with_a_base_url_sends_no_key_unless_it_names_one(
    serve: Serve, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a ``BASE_URL`` and no ``API_KEY_ENV``, no key is sent, not even OpenAI's."""
    upstream = await serve(hello)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-for-openai-only")
    with override_settings(STREAMING={"MODEL": {"BASE_URL": f"{upstream.url}/v1"}}):
        source = source_from_settings("Say hello")
    assert "".join(await collect(source)) == "Hello, world!"
    assert upstream.requests[0].json()["model"] == "gpt-4o-mini"
    assert upstream.requests[0].headers["authorization"] == "Bearer none"


async def test_openai_without_a_key_is_a_clear_error_and_no_request(
    serve: Serve, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No ``BASE_URL`` (OpenAI itself) and no key: never ``Bearer none`` sent to it."""
    upstream = await serve(hello)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.setenv("OPENAI_BASE_URL", f"{upstream.url}/v1")  # standing in for OpenAI
    with override_settings(STREAMING={"MODEL": {"NAME": "gpt-4o-mini"}}):
        source = source_from_settings("Say hello")
    with pytest.raises(StreamError, match="No API key for the model server: set OPENAI_API_KEY"):
        await collect(source)
    assert upstream.requests == []


async def test_a_dotted_path_names_a_source_factory() -> None:
    CALLS.clear()
    with override_settings(STREAMING={"MODEL": f"{__name__}.echo_factory"}):
        source = source_from_settings("hi", pipeline="passthrough", history=HISTORY)
    assert "".join(await collect(source)) == "you said hi "
    assert CALLS == [("hi", "passthrough", HISTORY)]


async def test_no_model_setting_and_no_key_is_the_demo_model(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with override_settings(STREAMING={"DEMO_TOKEN_DELAY": 0.0001}):
        text = "".join(await collect(source_from_settings("Hi", pipeline="passthrough")))
    assert text.startswith("Hello! I am the built-in demo model")


async def test_the_demo_model_setting_keeps_a_key_in_the_environment_unused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``"streaming.sources.demo_model"``: tests stay off a paid model in a shell that has
    ``OPENAI_API_KEY`` (and an unreachable ``OPENAI_BASE_URL``, so a request would fail)."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-real-and-paid")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    settings = {"MODEL": "streaming.sources.demo_model", "DEMO_TOKEN_DELAY": 0.0001}
    with override_settings(STREAMING=settings):
        assert check_settings() == []
        text = "".join(await collect(source_from_settings("Hi", pipeline="passthrough")))
    assert text.startswith("Hello! I am the built-in demo model")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"URL": "http://x"}, "unknown keys URL"),
        ({"NAME": ""}, "NAME must be a non-empty string"),
        ({"BASE_URL": 8080}, "BASE_URL must be a non-empty string"),
        ({"BASE_URL": "127.0.0.1:8000/v1"}, "BASE_URL must start with http:// or https://"),
        ({"BASE_URL": "localhost:11434/v1"}, "BASE_URL must start with http:// or https://"),
        ("streaming.sources.nope.factory", "does not import"),
        ("streaming.sources.model.MODEL_KEYS", "is not callable"),
        (
            "streaming.sources.prompts.system_prompt",
            "must take \\(prompt, \\*, pipeline, history\\)",
        ),
        (42, "expected None, a dict or a dotted path, not int"),
        # Sources whose **params (or a recursion) would accept a factory's call.
        ("streaming.sources.openai_chat", "is a source, not a source factory.*BASE_URL"),
        ("streaming.sources.openai.openai_chat", "is a source, not a source factory"),
        ("streaming.sources.proxy", "a factory of your own that calls proxy"),
        ("streaming.sources.source_from_settings", "is a source, not a source factory"),
    ],
)
def test_a_bad_model_setting_is_a_clear_error_and_a_check(value: object, message: str) -> None:
    with pytest.raises(ModelSettingError, match=message):
        model_factory(value)
    with override_settings(STREAMING={"MODEL": value}):
        assert [m.id for m in check_settings()] == ["streaming.E006"]


@pytest.mark.parametrize("value", [0, -1, 1.5, True, "24000"])
def test_a_bad_history_budget_is_a_check(value: object) -> None:
    with override_settings(STREAMING={"HISTORY_MAX_CHARS": value}):
        assert [m.id for m in check_settings()] == ["streaming.E003"]
