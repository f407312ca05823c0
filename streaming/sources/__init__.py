"""Text sources: async iterators of a model's raw reply, in chunks split anywhere.

* ``openai_chat``: a chat completion from OpenAI or any OpenAI-compatible server;
* ``proxy``: any upstream HTTP endpoint that streams text or Server-Sent Events;
* ``DemoModel``: the built-in, deterministic demo model;
* ``source_from_settings``: the one of the first and last the environment asks for.

``openai_chat`` is imported on first use, as the ``openai`` SDK takes a while to import.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any

from .demo import DemoModel
from .prompts import Message, chat_messages, expects_xml, system_prompt
from .proxy import proxy

if TYPE_CHECKING:
    from .openai import openai_chat

__all__ = [
    "DemoModel",
    "Message",
    "chat_messages",
    "expects_xml",
    "openai_chat",
    "proxy",
    "source_from_settings",
    "system_prompt",
]


def source_from_settings(
    prompt: str, *, pipeline: str | None = "response", history: Sequence[Message] | None = None
) -> AsyncIterator[str]:
    """The reply to ``prompt`` from the model the environment configures.

    ``OPENAI_API_KEY`` set: ``openai_chat`` (``OPENAI_BASE_URL`` for any compatible server,
    ``OPENAI_MODEL`` default ``gpt-4o-mini``), asked for the shape ``pipeline`` expects.
    Otherwise the demo model, answering in XML exactly when ``pipeline`` expects it.
    """
    if os.environ.get("OPENAI_API_KEY"):
        from .openai import openai_chat

        return openai_chat(chat_messages(prompt, pipeline=pipeline, history=history))
    return DemoModel(xml=expects_xml(pipeline)).stream(prompt, history)


def __getattr__(name: str) -> Any:
    if name == "openai_chat":
        from .openai import openai_chat

        return openai_chat
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
