// The same chat over one WebSocket (the AI SDK's WebSocketChatTransport, ai >= 7.0.135):
// add streaming.routing.websocket_urlpatterns to your ASGI router; /ws/chat/ui/ answers.
import { useChat } from '@ai-sdk/react';
import { WebSocketChatTransport } from 'ai';

// One transport (one socket) for the whole page: every chat's requests share it.
// Browsers send the session cookie with the handshake; Channels' AuthMiddlewareStack reads
// it, so the socket's replies belong to the same visitor as the page's HTTP requests.
const transport = new WebSocketChatTransport({ url: '/ws/chat/ui/' });

export function Chat({ chatId, initialMessages = [] }) {
  const { messages, sendMessage, status, stop } = useChat({
    id: chatId,
    messages: initialMessages,
    transport,
    resume: true,     // a `resume` frame on mount: the running reply from its start, or no-active
  });
  // Over the socket, useChat's own stop() sends an `abort` frame: the server cancels the
  // reply. No DELETE needed.
  const busy = status === 'submitted' || status === 'streaming';
  return (
    <div>
      {messages.map((m) => (
        <p key={m.id} className={m.role}>
          {m.parts.filter((p) => p.type === 'text').map((p) => p.text).join('')}
        </p>
      ))}
      <button onClick={() => (busy ? stop() : sendMessage({ text: 'Hello!' }))}>
        {busy ? 'Stop' : 'Say hello'}
      </button>
    </div>
  );
}
