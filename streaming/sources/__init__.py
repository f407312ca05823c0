"""Text sources: async iterators of a model's raw reply, in chunks split anywhere.

* ``openai_chat``: a chat completion from OpenAI or any OpenAI-compatible server;
* ``proxy``: any upstream HTTP endpoint that streams text or Server-Sent Events;
* ``DemoModel``: the built-in, deterministic demo model;
* ``source_from_settings``: the chat's model, as ``STREAMING["MODEL"]`` (or, by default,
  the environment) chooses it (``streaming.sources.model``).

A source may yield ``Reasoning`` pieces among its text: the model's reasoning, sent apart
from its reply (``streaming.sources.reasoning``).

``openai_chat`` is imported on first use, as the ``openai`` SDK takes a while to import.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .demo import DemoModel
from .model import demo_model, source_from_settings
from .prompts import Message, chat_messages, expects_xml, system_prompt
from .proxy import proxy
from .reasoning import Reasoning

if TYPE_CHECKING:
    from .openai import openai_chat

__all__ = [
    "DemoModel",
    "Message",
    "Reasoning",
    "chat_messages",
    "demo_model",
    "expects_xml",
    "openai_chat",
    "proxy",
    "source_from_settings",
    "system_prompt",
]


def __getattr__(name: str) -> Any:
    if name == "openai_chat":
        from .openai import openai_chat

        return openai_chat
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
