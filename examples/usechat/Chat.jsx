// A React chat on Django with the AI SDK's useChat (npm: ai, @ai-sdk/react), over SSE.
// Serve the page from Django (so the browser has the CSRF cookie and a session), include
// streaming.urls at "" and point the transport at chat/ui. See README.md beside this file.
import { useChat } from '@ai-sdk/react';
import { DefaultChatTransport } from 'ai';
import { useState } from 'react';

/** The CSRF token Django set in the `csrftoken` cookie (ensure_csrf_cookie on the page). */
function csrfToken() {
  return document.cookie.match(/(?:^|;\s*)csrftoken=([^;]*)/)?.[1] ?? '';
}

const transport = new DefaultChatTransport({
  api: '/chat/ui',                              // POST; resume: GET /chat/ui/<id>/stream
  headers: () => ({ 'X-CSRFToken': csrfToken() }),
  credentials: 'same-origin',
});

export function Chat({ chatId, initialMessages = [] }) {
  const { messages, sendMessage, regenerate, status, error } = useChat({
    id: chatId,               // a UUID: the stored conversation's id (see README.md)
    messages: initialMessages,
    transport,
    resume: true,             // on mount: GET /chat/ui/<id>/stream (204 when nothing runs)
  });
  const [input, setInput] = useState('');

  // Stop: the server cancels the reply; the open stream then ends by itself with an
  // `abort` chunk. (useChat's own stop() only drops the connection, and the reply would
  // run on, to be resumed.)
  async function stop() {
    await fetch(`/chat/ui/${encodeURIComponent(chatId)}/stream`, {
      method: 'DELETE',
      headers: { 'X-CSRFToken': csrfToken() },
      credentials: 'same-origin',
    });
  }

  const busy = status === 'submitted' || status === 'streaming';
  return (
    <div>
      {messages.map((message) => (
        <div key={message.id} className={message.role}>
          {message.parts.map((part, i) =>
            part.type === 'reasoning' ? <details key={i}><summary>Thought</summary>{part.text}</details>
            : part.type === 'text' ? <p key={i}>{part.text}</p>
            : null)}
        </div>
      ))}
      {error && <p role="alert">{error.message}</p>}
      <form onSubmit={(e) => { e.preventDefault(); sendMessage({ text: input }); setInput(''); }}>
        <input value={input} onChange={(e) => setInput(e.target.value)} disabled={busy} />
        {busy ? <button type="button" onClick={stop}>Stop</button> : <button>Send</button>}
        {!busy && messages.length > 0 && <button type="button" onClick={() => regenerate()}>Regenerate</button>}
      </form>
    </div>
  );
}
