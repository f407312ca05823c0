"""The ``useChat`` endpoints with the scripted model (``transport_views.scripted_reply``),
for tests/test_chat_ui.py: the history each turn gets, and when the model's stream
starts and closes, are recorded under the request's ``key``."""

from __future__ import annotations

from typing import Any

from streaming.chat_ui import AISDKChatConsumer, AISDKChatView

from .routes import record
from .transport_views import scripted_reply


def scripted_turn(prompt: str, params: dict[str, Any]) -> Any:
    history = params.pop("history", None) or []
    key = str(params.get("key", "default"))
    record(key, f"prompt:{prompt}")
    record(key, "history:" + "|".join(f"{m['role']}={m['content']}" for m in history))
    return scripted_reply(params)


class ScriptedChatUIView(AISDKChatView):
    def stream(self, prompt: str, **params: Any) -> Any:
        return scripted_turn(prompt, params)


class ScriptedChatUIConsumer(AISDKChatConsumer):
    def stream(self, prompt: str, **params: Any) -> Any:
        return scripted_turn(prompt, params)
