"""The chat's model, chosen in settings: ``STREAMING["MODEL"]``.

* ``None`` (the default): ``OPENAI_API_KEY`` set in the environment means OpenAI or any
  compatible server (``OPENAI_BASE_URL``, ``OPENAI_MODEL``); otherwise the demo model.
* A dict ``{"BASE_URL": ..., "NAME": ..., "API_KEY_ENV": "OPENAI_API_KEY"}``: an
  OpenAI-compatible server (each key optional; the key is read from the named environment
  variable when a reply starts, so it is never written in settings, and is ``"none"``
  when that variable is unset and there is a ``BASE_URL``, for local servers that need
  no key; OpenAI itself without a key is an ``UPSTREAM_ERROR`` that says so). Without
  ``API_KEY_ENV`` the variable is ``OPENAI_API_KEY`` only when there is no ``BASE_URL``:
  OpenAI's key is never sent to a server of another URL unless it is named.
* ``"streaming.sources.demo_model"``: the demo model, even with ``OPENAI_API_KEY`` set.
* A dotted path to a *source factory*: ``factory(prompt, *, pipeline, history)`` returning
  an async iterator of the reply's raw text (``history`` is the earlier turns as chat
  messages, oldest first).

Every factory is asked for the shape the pipeline expects (``prompts.system_prompt``).
"""

from __future__ import annotations

import inspect
import os
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, Protocol

from django.utils.module_loading import import_string

from ..conf import setting
from .demo import DemoModel
from .prompts import Message, chat_messages, expects_xml

#: The key sent when ``API_KEY_ENV`` names an unset variable (a local server needs none).
NO_KEY = "none"
#: The keys of a ``MODEL`` dict.
MODEL_KEYS = frozenset({"BASE_URL", "NAME", "API_KEY_ENV"})


#: The library's sources that ``MODEL`` cannot name (they take other arguments than a
#: factory's, but ``**params`` or a recursion would hide it until a reply), and what to
#: set instead.
NOT_FACTORIES = {
    "streaming.sources.openai.openai_chat": (
        'a dict {"BASE_URL": ..., "NAME": ..., "API_KEY_ENV": ...} for an OpenAI-compatible '
        "server, or a factory of your own that calls openai_chat"
    ),
    "streaming.sources.proxy.proxy": "a factory of your own that calls proxy(url, ...)",
    "streaming.sources.model.source_from_settings": "None, a dict or a factory",
}


class SourceFactory(Protocol):
    """Makes the reply to ``prompt``: an async iterator of its raw text."""

    def __call__(
        self, prompt: str, *, pipeline: str | None, history: Sequence[Message]
    ) -> AsyncIterator[str]: ...


class ModelSettingError(ValueError):
    """``STREAMING["MODEL"]`` names no usable model."""


def demo_model(
    prompt: str, *, pipeline: str | None, history: Sequence[Message]
) -> AsyncIterator[str]:
    """The built-in demo model whatever the environment says: ``"MODEL":
    "streaming.sources.demo_model"`` keeps tests off a paid model when
    ``OPENAI_API_KEY`` is set in the shell."""
    return DemoModel(xml=expects_xml(pipeline)).stream(prompt, history)


def environment_model(
    prompt: str, *, pipeline: str | None, history: Sequence[Message]
) -> AsyncIterator[str]:
    """``OPENAI_API_KEY`` set: ``openai_chat`` (``OPENAI_BASE_URL``, ``OPENAI_MODEL``);
    otherwise the demo model, in XML exactly when ``pipeline`` expects it."""
    if os.environ.get("OPENAI_API_KEY"):
        from .openai import openai_chat

        return openai_chat(chat_messages(prompt, pipeline=pipeline, history=history))
    return demo_model(prompt, pipeline=pipeline, history=history)


class OpenAICompatibleModel:
    """A model of an OpenAI-compatible server, as a ``MODEL`` dict describes it."""

    def __init__(self, options: Mapping[str, Any]) -> None:
        unknown = sorted(set(options) - MODEL_KEYS)
        if unknown:
            raise ModelSettingError(
                f"unknown keys {', '.join(unknown)} (known: {', '.join(sorted(MODEL_KEYS))})"
            )
        for key, value in options.items():
            if not isinstance(value, str) or not value:
                raise ModelSettingError(f"{key} must be a non-empty string")
        if "BASE_URL" in options and not options["BASE_URL"].startswith(("http://", "https://")):
            raise ModelSettingError(
                f"BASE_URL must start with http:// or https://, not {options['BASE_URL']!r}"
            )
        self.base_url: str | None = options.get("BASE_URL")
        self.name: str | None = options.get("NAME")
        # OpenAI's key goes to OpenAI only: a server of its own URL names its variable.
        default_env = None if self.base_url else "OPENAI_API_KEY"
        self.api_key_env: str | None = options.get("API_KEY_ENV", default_env)

    def __call__(
        self, prompt: str, *, pipeline: str | None, history: Sequence[Message]
    ) -> AsyncIterator[str]:
        from .openai import openai_chat

        key = self.api_key_env and os.environ.get(self.api_key_env)
        return openai_chat(
            chat_messages(prompt, pipeline=pipeline, history=history),
            model=self.name,
            base_url=self.base_url,
            # A server of its own URL may need no key (the SDK wants one all the same);
            # OpenAI without one is the SDK's "No API key" error, not a request sent.
            api_key=key or (NO_KEY if self.base_url else None),
        )


def model_factory(value: Any) -> SourceFactory:
    """The source factory ``value`` (a ``MODEL`` setting) describes, or ``ModelSettingError``."""
    if value is None:
        return environment_model
    if isinstance(value, Mapping):
        return OpenAICompatibleModel(value)
    if isinstance(value, str):
        try:
            factory = import_string(value)
        except ImportError as exc:
            raise ModelSettingError(f"{value!r} does not import: {exc}") from exc
        if not callable(factory):
            raise ModelSettingError(f"{value!r} is not callable")
        qualified = f"{getattr(factory, '__module__', '')}.{getattr(factory, '__qualname__', '')}"
        if qualified in NOT_FACTORIES:
            raise ModelSettingError(
                f"{value!r} is a source, not a source factory (prompt, *, pipeline, "
                f"history): set {NOT_FACTORIES[qualified]}"
            )
        try:
            inspect.signature(factory).bind("prompt", pipeline=None, history=[])
        except TypeError as exc:
            raise ModelSettingError(
                f"{value!r} must take (prompt, *, pipeline, history): {exc}"
            ) from exc
        except ValueError:
            pass  # no signature to read (a builtin): it is called as it is
        return factory
    raise ModelSettingError(f"expected None, a dict or a dotted path, not {type(value).__name__}")


def source_from_settings(
    prompt: str, *, pipeline: str | None = "response", history: Sequence[Message] | None = None
) -> AsyncIterator[str]:
    """The reply to ``prompt`` (after ``history``) from the model ``STREAMING["MODEL"]``
    configures, asked for the shape ``pipeline`` expects."""
    factory = model_factory(setting("MODEL"))
    return factory(prompt, pipeline=pipeline, history=list(history or ()))
