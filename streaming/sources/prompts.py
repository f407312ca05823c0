"""What a model is asked for: the system prompt per pipeline and the chat messages.

A real model answers in the ElizaOS XML shape only when asked, so the pipelines whose
extractors expect XML (``xml``, ``response``, ``action``) get a system prompt that asks for
``<response><thought>…</thought><actions>REPLY</actions><text>…</text></response>``; any
other pipeline (``passthrough``) gets a plain-text one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

#: Pipelines whose extractors pull the reply's text out of the ElizaOS XML shape.
XML_PIPELINES = frozenset({"xml", "response", "action"})

XML_SYSTEM_PROMPT = """\
You are a helpful assistant whose reply is streamed to a web page while you write it.
Always answer in exactly this XML shape, with nothing before or after it:
<response>
<thought>A short note on how you will answer; the user does not see it.</thought>
<actions>REPLY</actions>
<text>Your answer to the user, in plain text.</text>
</response>
Do not put XML tags inside <thought> or <text>. The action is always REPLY."""

PLAIN_SYSTEM_PROMPT = """\
You are a helpful assistant whose reply is streamed to a web page while you write it.
Answer in plain text, without XML or JSON around it."""

#: A chat message as the OpenAI API takes it: ``{"role": ..., "content": ...}``.
Message = Mapping[str, str]


def expects_xml(pipeline: str | None) -> bool:
    """True when the named pipeline filters an XML-shaped reply."""
    return pipeline in XML_PIPELINES


def system_prompt(pipeline: str | None) -> str:
    """The system prompt that makes a model answer in the shape ``pipeline`` expects."""
    return XML_SYSTEM_PROMPT if expects_xml(pipeline) else PLAIN_SYSTEM_PROMPT


def chat_messages(
    prompt: str, *, pipeline: str | None = "response", history: Sequence[Message] | None = None
) -> list[Message]:
    """System prompt, then the earlier turns of the conversation, then the user's prompt."""
    return [
        {"role": "system", "content": system_prompt(pipeline)},
        *(history or ()),
        {"role": "user", "content": prompt},
    ]
