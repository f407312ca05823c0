// The AI SDK's real chat client, set up as a browser page would have it, against the
// server named by STREAMING_URL (tests/test_ai_sdk_node.py starts daphne and sets it).
//
// Node has no cookie jar and no global WebSocket: `browser()` keeps the cookies a page
// would (session, CSRF), sends them with every fetch and WebSocket handshake, and sends
// an Origin header as browsers do. Nothing else is faked: the chat, both transports and
// the chunk validation are the `ai` package's own.
import WebSocket from 'ws';

// AI_PACKAGE=ai6 runs the same tests with ai 6 (which has no WebSocketChatTransport).
export const AI_PACKAGE = process.env.AI_PACKAGE ?? 'ai';
const { AbstractChat, DefaultChatTransport, WebSocketChatTransport } = await import(AI_PACKAGE);

export const BASE = (process.env.STREAMING_URL ?? '').replace(/\/$/, '');
if (!BASE) throw new Error('Set STREAMING_URL to the server under test, e.g. http://127.0.0.1:8000');
export const API = `${BASE}/chat/ui`;
export const WS_URL = `${BASE.replace(/^http/, 'ws')}/ws/chat/ui/`;

/** A minimal ChatState, as @ai-sdk/react's (immutable arrays, structuredClone snapshots). */
class State {
  status = 'ready';
  error = undefined;
  messages = [];
  pushMessage = (message) => { this.messages = this.messages.concat(message); };
  popMessage = () => { this.messages = this.messages.slice(0, -1); };
  replaceMessage = (index, message) => {
    this.messages = [...this.messages.slice(0, index), message, ...this.messages.slice(index + 1)];
  };
  snapshot = (value) => structuredClone(value);
}

/** The chat `useChat` wraps, with a plain state instead of React's. */
export class Chat extends AbstractChat {
  constructor({ messages = [], ...init }) {
    const state = new State();
    state.messages = messages;
    super({ ...init, state });
  }
}

/** One browser: its cookies, a fetch that sends them, a WebSocket class that sends them. */
export async function browser() {
  const cookies = new Map();
  const remember = (response) => {
    for (const line of response.headers.getSetCookie()) {
      const [pair] = line.split(';');
      const at = pair.indexOf('=');
      cookies.set(pair.slice(0, at).trim(), pair.slice(at + 1).trim());
    }
  };
  const cookieHeader = () => [...cookies].map(([k, v]) => `${k}=${v}`).join('; ');
  /** Every response this browser got, for the tests to look at (status, headers). */
  const responses = [];
  const fetchWithCookies = async (url, init = {}) => {
    const headers = new Headers(init.headers);
    if (cookies.size) headers.set('cookie', cookieHeader());
    headers.set('origin', BASE);
    const response = await fetch(url, { ...init, headers });
    remember(response);
    responses.push({ url: String(url), method: init.method ?? 'GET', status: response.status, headers: response.headers });
    return response;
  };
  // The page: it sets the CSRF cookie and the visitor's session, as a useChat app's page does.
  const page = await fetchWithCookies(`${BASE}/`);
  if (!page.ok) throw new Error(`GET / answered ${page.status}`);
  await page.arrayBuffer();
  const csrf = cookies.get('csrftoken');
  if (!csrf) throw new Error('the page set no csrftoken cookie');

  const sockets = new Set();
  class BrowserWebSocket extends WebSocket {
    constructor(url, protocols) {
      super(url, protocols, { headers: { cookie: cookieHeader(), origin: BASE } });
      sockets.add(this);
      this.addEventListener('close', () => sockets.delete(this));
    }
  }
  return {
    fetch: fetchWithCookies,
    csrf,
    responses,
    WebSocket: BrowserWebSocket,
    /** Every open WebSocket of this browser (to cut one as a network failure would). */
    sockets,
    /** The transport options a useChat app passes: the CSRF header on every request. */
    httpTransport(options = {}) {
      return new DefaultChatTransport({
        api: API,
        fetch: fetchWithCookies,
        headers: { 'X-CSRFToken': csrf },
        ...options,
      });
    },
    wsTransport(options = {}) {
      if (!WebSocketChatTransport) throw new Error(`${AI_PACKAGE} has no WebSocketChatTransport`);
      return new WebSocketChatTransport({ url: WS_URL, webSocket: BrowserWebSocket, ...options });
    },
    /** Stop a reply as the documented useChat wiring does: DELETE its stream. */
    async stop(chatId) {
      const response = await fetchWithCookies(`${API}/${encodeURIComponent(chatId)}/stream`, {
        method: 'DELETE',
        headers: { 'X-CSRFToken': csrf },
      });
      await response.arrayBuffer();
      return response.status;
    },
  };
}

/** A fetch that fails with a network error once `bytes` of a POST's reply have arrived:
 * the connection drops mid-reply (the server sees its client go away). */
export function droppingFetch(fetchImpl, bytes) {
  return async (url, init = {}) => {
    const response = await fetchImpl(url, init);
    if ((init.method ?? 'GET') !== 'POST' || !response.body) return response;
    const reader = response.body.getReader();
    let seen = 0;
    const body = new ReadableStream({
      async pull(controller) {
        const { done, value } = await reader.read();
        if (done) { controller.close(); return; }
        seen += value.byteLength;
        controller.enqueue(value);
        if (seen >= bytes) {
          await reader.cancel();
          controller.error(new TypeError('network error: the test dropped the connection'));
        }
      },
      cancel(reason) { return reader.cancel(reason); },
    });
    return new Response(body, { status: response.status, headers: response.headers });
  };
}

export const textOf = (message) =>
  message.parts.filter((part) => part.type === 'text').map((part) => part.text).join('');
export const reasoningOf = (message) =>
  message.parts.filter((part) => part.type === 'reasoning').map((part) => part.text).join('');
export const assistants = (chat) => chat.messages.filter((message) => message.role === 'assistant');

/** Resolve once `predicate()` holds (polled), or fail after `ms`. */
export async function until(predicate, ms = 15000, what = 'condition') {
  const deadline = Date.now() + ms;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

let counter = 0;
/** A fresh chat id, as useChat generates one. */
export const newChatId = (label) => `${label}-${process.pid}-${Date.now()}-${counter++}`;

/** The reply the demo model gives to `prompt` as the first turn of a fresh chat (it is
 * deterministic), read with the real client over SSE: what a resumed reply must equal. */
export async function referenceReply(page, prompt) {
  const chat = new Chat({ id: newChatId('reference'), transport: page.httpTransport() });
  await chat.sendMessage({ text: prompt });
  if (chat.status !== 'ready') throw new Error(`reference reply failed: ${chat.error}`);
  return assistants(chat)[0];
}
