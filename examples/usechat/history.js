// After a reload: the stored conversation as useChat's initial messages, from the
// conversations API under the include root (GET chat/conversations/<id>): its latest 100
// messages (a longer one has `earlier`: pass it as ?before= for the page before). The
// assistant messages' ids are their generation ids, the message ids the reply streamed with.
export async function loadMessages(conversationId) {
  const response = await fetch(`/chat/conversations/${conversationId}`, { credentials: 'same-origin' });
  if (response.status === 404) return [];          // a new chat: nothing stored yet
  if (!response.ok) throw new Error(`conversation ${conversationId}: HTTP ${response.status}`);
  const conversation = await response.json();
  return conversation.messages.map((m) => ({
    id: m.generation ?? String(m.id),
    role: m.role,
    parts: [
      ...(m.reasoning ? [{ type: 'reasoning', text: m.reasoning, state: 'done' }] : []),
      { type: 'text', text: m.content, state: 'done' },
    ],
  }));
}
