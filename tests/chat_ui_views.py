"""The ``useChat`` endpoints with the scripted model (``transport_views.scripted_reply``),
for tests/test_chat_ui.py: the prompt and history each turn gets, and when the model's
stream starts and closes, are recorded under the request's ``key``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from streaming.chat_ui import AISDKChatConsumer, AISDKChatView
from streaming.storage import Turn

from .routes import record
from .transport_views import scripted_reply


def scripted_turn(turn: Turn, params: Mapping[str, Any]) -> Any:
    key = str(params.get("key", "default"))
    record(key, f"prompt:{turn.prompt}")
    record(key, "history:" + "|".join(f"{m['role']}={m['content']}" for m in turn.history))
    return scripted_reply(params)


class ScriptedChatUIView(AISDKChatView):
    def model_source(self, turn: Turn, params: Mapping[str, Any]) -> Any:
        return scripted_turn(turn, params)


class ScriptedChatUIConsumer(AISDKChatConsumer):
    def model_source(self, turn: Turn, params: Mapping[str, Any]) -> Any:
        return scripted_turn(turn, params)
