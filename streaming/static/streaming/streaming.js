/**
 * streaming.js: the browser client of the `streaming` Django app.
 *
 * Streams a model's reply over Server-Sent Events (`EventSource` for GET, `fetch` for POST)
 * or a WebSocket, hands the text to callbacks piece by piece, cancels, and reconnects with
 * backoff when the connection drops. An ES module with no dependencies and no build step:
 *
 *     import { createStream } from "/static/streaming/streaming.js";
 *
 *     const chat = createStream({
 *       url: "/chat/stream",
 *       transport: "sse-post",
 *       pipeline: "response",
 *       onChunk: (text) => { output.textContent += text; },
 *       onError: (error) => { console.warn(error.code, error.message); },
 *     });
 *     const result = await chat.send("Hello");   // {status: "complete", text: "..."}
 *
 * Model text is handed over as plain strings: put it on the page with `textContent`
 * (or a Text node), never `innerHTML`.
 *
 * @module streaming
 */

/**
 * @typedef {"sse" | "sse-post" | "ws"} Transport
 * `sse`: GET with the parameters in the query string, read by `EventSource`;
 * `sse-post`: POST of a JSON body, read by `fetch` and {@link SSEParser};
 * `ws`: JSON frames over one WebSocket that stays open between replies.
 */

/**
 * @typedef {"connecting" | "open" | "streaming" | "reconnecting" | "complete" | "cancelled"
 *   | "error" | "detached" | "closed"} Status
 * `connecting`: a request or socket is being opened; `open`: the server answered (SSE) or
 * the socket is open (WS); `streaming`: the first text of the reply arrived; `reconnecting`:
 * the connection dropped and a new attempt is scheduled (`info.attempt`, `info.delay`);
 * `complete` / `cancelled` / `error`: how the reply ended; `detached`: the client stopped
 * following it ({@link StreamClient#detach}); `closed`: {@link StreamClient#close}.
 */

/**
 * @typedef {object} StreamInfo
 * @property {Transport} transport
 * @property {string} text The reply so far (the whole reply in `onComplete`).
 * @property {string | null} messageId The server's id of the reply (WebSocket).
 * @property {string} lastEventId The last SSE event id received ("" if none).
 * @property {number} [attempt] Reconnection attempt (with status `reconnecting`).
 * @property {number | null} [delay] Milliseconds until that attempt (null: the browser's
 *   `EventSource` reconnects by itself, after a delay of its own).
 */

/**
 * @typedef {object} StreamResult
 * @property {"complete" | "cancelled" | "error" | "detached"} status `detached`: see
 *   {@link StreamClient#detach}.
 * @property {string} text The text received (the whole reply when complete).
 * @property {StreamError} [error] Why the reply failed (status `error`).
 * @property {string | null} messageId The server's id of the reply (WebSocket `message_id`,
 *   or the generation named by this app's SSE event ids), null if it never started.
 * @property {Promise<StreamError | null>} [refusal] WebSocket, status `detached` before the
 *   server answered the prompt: the server's refusal of it (`CONVERSATION_BUSY` …), or null
 *   once its reply started (at most 10 s).
 */

/**
 * @typedef {object} ReconnectOptions
 * @property {number} [retries=6] Attempts after a drop before giving up.
 * @property {number} [delay=500] Milliseconds before the first attempt; doubles each time.
 * @property {number} [maxDelay=10000] Longest wait between two attempts.
 */

/**
 * @typedef {object} StreamOptions
 * @property {string} url SSE endpoint (`/chat/stream`) or WebSocket endpoint (`/ws/chat/`,
 *   `ws://` and `wss://` URLs work too; a relative URL gets the page's host and scheme).
 * @property {Transport} [transport="sse"]
 * @property {string} [pipeline] Extractor pipeline name sent with every prompt.
 * @property {Record<string, unknown>} [params] More parameters sent with every prompt.
 * @property {(text: string, info: StreamInfo) => void} [onChunk] Each new piece of text.
 * @property {(fullText: string, info: StreamInfo) => void} [onComplete] The whole reply.
 * @property {(error: StreamError, info: StreamInfo) => void} [onError]
 * @property {(status: Status, info: StreamInfo) => void} [onStatus]
 * @property {(type: string, data: unknown, info: StreamInfo) => void} [onEvent] Named SSE
 *   events listed in `events`, and WebSocket frames of a type this client does not know.
 * @property {string[]} [events] Named SSE events to hand to `onEvent` (`field_validated` …).
 * @property {ReconnectOptions | false} [reconnect] `false`: fail at the first drop.
 * @property {Record<string, string>} [headers] Extra request headers (`sse-post`).
 * @property {string | (() => string | null)} [csrfToken] Sent as `X-CSRFToken` with POST;
 *   by default read from the `csrftoken` cookie.
 * @property {boolean} [withCredentials=false] `EventSource` credentials for cross-origin URLs.
 * @property {number} [pingInterval=20000] WebSocket: milliseconds between `ping` frames; a
 *   ping left unanswered until the next one closes and reconnects the socket (0: off).
 * @property {boolean} [resendUnanswered=true] A prompt that may have reached the server
 *   with no answer heard is sent again: on a WebSocket, one sent on a socket that closed
 *   before any frame answered it; with `sse-post`, a POST that failed after it left and
 *   before a byte of its reply (a network error, or a proxy's own 502 or 504). `false`:
 *   the reply fails instead, `CONNECTION_LOST` with `messageId` null, for the caller to
 *   find out whether the server has it (it may run its reply: sent again, the prompt would
 *   be refused as a second reply, or answered twice once that reply ended).
 * @property {number} [resumeTimeout=10000] WebSocket: milliseconds to wait for an answer to
 *   a `resume` (the pong of the `ping` sent with it, or a refusal) before the socket is
 *   given up and the reply resumed on a new one (at most `reconnect.retries` times, then
 *   the reply fails with `RESUME_FAILED`, cause `TIMEOUT`).
 * @property {number} [stallTimeout=45000] SSE: milliseconds without a byte of the stream
 *   (the server sends a `: ping` comment after `KEEPALIVE` seconds of silence, 15 by
 *   default) after which the connection is taken for dead (a half-open connection after
 *   a network change carries nothing and never ends) and resumed as a dropped one; keep it
 *   above the server's `KEEPALIVE` (0: off). `EventSource` shows no comments: it counts
 *   its messages only, and only once a message named the reply.
 * @property {number} [maxURLLength=8000] `sse`: the longest URL a prompt is sent in. Servers
 *   and proxies drop longer request lines without an answer (daphne past 16 KB, nginx and
 *   Apache past 8 KB by default), so a longer one fails at once with `URL_TOO_LONG`.
 */

const TRANSPORTS = ["sse", "sse-post", "ws"];
const DEFAULT_RECONNECT = { retries: 6, delay: 500, maxDelay: 10000 };
/** WebSocket close codes after which reconnecting would not help. */
const FINAL_CLOSE_CODES = new Set([1000, 1008]);
/** WebSocket frames that belong to one reply (by `message_id`). */
const REPLY_FRAMES = ["chunk", "event", "complete", "cancelled", "error"];
/** How long a reply stopped before its response named it waits for the name (ms). */
const NAMING_WAIT_MS = 10000;
/** The longest a request waits for this client's stop of the reply before it (its
 * `DELETE`) to be answered: a prompt that overtook the stop would find the reply running. */
const STOP_WAIT_MS = 5000;
/** SSE: how long a stream may carry nothing before it is taken for dead (`stallTimeout`):
 * three keep-alives of the server's default `KEEPALIVE` (15 s). */
const STALL_TIMEOUT_MS = 45000;
/** `sse`: the longest URL sent by default (see `maxURLLength`). */
const MAX_URL_LENGTH = 8000;

/** An error of the stream, with a machine-readable `code` (the server's, or one below). */
export class StreamError extends Error {
  /**
   * @param {string} message
   * @param {string} code The server's code (`UNKNOWN_PIPELINE` …) or the client's own:
   *   `CONNECTION_LOST` (dropped, and retrying did not help), `NOT_RESUMABLE` (dropped,
   *   and the server has nothing more to send), `RESUME_FAILED` (dropped, and the server
   *   refused to resume: see `cause`), `HTTP_ERROR`, `PROTOCOL_ERROR`.
   * @param {{status?: number, cause?: string}} [details] `status`: the HTTP status of a
   *   refused request; `cause`: the server's code when a resume was refused (`NOT_FOUND` …).
   */
  constructor(message, code, details = {}) {
    super(message);
    this.name = "StreamError";
    this.code = code;
    this.status = details.status ?? null;
    this.cause = details.cause ?? null;
  }
}

/**
 * An incremental Server-Sent Events parser (WHATWG HTML §9.2.6): feed it decoded text in
 * pieces of any size; it calls `onEvent` for every complete event.
 *
 * Lines end at CRLF, LF or CR (also when a CRLF is split between two pieces); comments are
 * handed to `onComment`; `id` with a NUL and non-numeric `retry` are ignored; an event
 * without data is not dispatched but still moves `lastEventId`; a last event that is not
 * ended by a blank line is dropped by {@link SSEParser#end}.
 */
export class SSEParser {
  /**
   * @param {(event: {type: string, data: string, lastEventId: string}) => void} onEvent
   * @param {{onComment?: (text: string) => void, maxLineLength?: number}} [options]
   */
  constructor(onEvent, { onComment, maxLineLength = 16 * 1024 * 1024 } = {}) {
    this.onEvent = onEvent;
    this.onComment = onComment;
    this.maxLineLength = maxLineLength;
    /** The id of the last dispatched event (what a reconnect sends as `Last-Event-ID`). */
    this.lastEventId = "";
    /** The last valid `retry` value in milliseconds, or null. */
    this.retry = null;
    this._pending = "";
    this._started = false;
    this._afterCR = false;
    this._resetEvent();
    this._id = "";
  }

  /** Parse the next piece of the stream's text. */
  push(text) {
    if (!this._started && text) {
      this._started = true;
      if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
    }
    let buffer = this._pending + text;
    let start = 0;
    if (this._afterCR && buffer.length > 0) {
      this._afterCR = false;
      if (buffer[0] === "\n") start = 1;
    }
    const lineEnd = /[\r\n]/g;
    lineEnd.lastIndex = start;
    let match;
    while ((match = lineEnd.exec(buffer)) !== null) {
      const end = match.index;
      let next = end + 1;
      if (buffer[end] === "\r") {
        if (next === buffer.length) this._afterCR = true;
        else if (buffer[next] === "\n") next += 1;
      }
      this._line(buffer.slice(start, end));
      start = next;
      lineEnd.lastIndex = next;
    }
    this._pending = buffer.slice(start);
    if (this._pending.length > this.maxLineLength) {
      this._pending = "";
      throw new StreamError("An event stream line is too long", "PROTOCOL_ERROR");
    }
  }

  /** The stream ended: drop an incomplete last event (as browsers do). */
  end() {
    this._pending = "";
    this._afterCR = false;
    this._resetEvent();
  }

  _resetEvent() {
    this._type = "";
    this._data = [];
  }

  _line(line) {
    if (line === "") {
      this._dispatch();
      return;
    }
    if (line[0] === ":") {
      this.onComment?.(line.slice(1).replace(/^ /, ""));
      return;
    }
    const colon = line.indexOf(":");
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? "" : line.slice(colon + 1);
    if (value[0] === " ") value = value.slice(1);
    if (field === "data") this._data.push(value);
    else if (field === "event") this._type = value;
    else if (field === "id" && !value.includes("\0")) this._id = value;
    else if (field === "retry" && /^\d+$/.test(value)) this.retry = Number(value);
  }

  _dispatch() {
    this.lastEventId = this._id;
    if (this._data.length === 0) {
      this._resetEvent();
      return;
    }
    const event = {
      type: this._type || "message",
      data: this._data.join("\n"),
      lastEventId: this.lastEventId,
    };
    this._resetEvent();
    this.onEvent(event);
  }
}

/**
 * Milliseconds to wait before reconnection attempt `attempt` (1, 2, …): exponential from
 * `delay`, capped at `maxDelay`, with ±25 % jitter so many clients do not return at once.
 * @param {number} attempt
 * @param {ReconnectOptions} [options]
 * @returns {number}
 */
export function backoffDelay(attempt, { delay = 500, maxDelay = 10000 } = {}) {
  const base = Math.min(maxDelay, delay * 2 ** Math.max(0, attempt - 1));
  return Math.round(base * (0.75 + Math.random() * 0.5));
}

/**
 * Open a client for one chat endpoint; see {@link StreamOptions}.
 * @param {StreamOptions} options
 * @returns {StreamClient}
 */
export function createStream(options) {
  return new StreamClient(options);
}

/**
 * One chat endpoint: {@link StreamClient#send} a prompt, get its reply through the
 * callbacks and the returned promise. One reply at a time.
 */
export class StreamClient {
  /** @param {StreamOptions} options */
  constructor(options) {
    if (!options || !options.url) throw new TypeError("createStream: `url` is required");
    const transport = options.transport ?? "sse";
    if (!TRANSPORTS.includes(transport)) {
      throw new TypeError(`createStream: unknown transport ${JSON.stringify(transport)}`);
    }
    /** @type {Transport} */
    this.transport = transport;
    this.options = options;
    this.reconnect =
      options.reconnect === false ? null : { ...DEFAULT_RECONNECT, ...options.reconnect };
    /** @type {Status | null} */
    this.status = null;
    this._reply = null;
    // WebSocket state: the socket stays open between replies until close().
    this._socket = null;
    this._socketAttempt = 0;
    this._socketTimer = null;
    this._pingTimer = null;
    this._pongDue = false;
    this._cancelAcks = 0;
    this._closed = false;
    // SSE: the stop (`DELETE`) of the last cancelled reply, until the server answered it.
    this._stopping = null;
  }

  /** True while a reply is on its way (until it completes, fails or is cancelled). */
  get busy() {
    return this._reply !== null;
  }

  /** WebSocket: true while the socket is open (SSE: always false between replies). */
  get connected() {
    return this._socketOpen();
  }

  /** The text of the current reply so far ("" when idle). */
  get text() {
    return this._reply ? this._reply.text : "";
  }

  /**
   * Send a prompt and stream its reply. Throws if a reply is already streaming.
   * @param {string | null} prompt null sends no prompt (`{regenerate: true}` in `params`).
   * @param {Record<string, unknown>} [params] Parameters for this prompt only
   *   (`{pipeline: "passthrough"}`), over the options' `pipeline` and `params`.
   * @returns {Promise<StreamResult>} Settles when the reply ends; never rejects.
   */
  send(prompt, params = {}) {
    if (this._reply) throw new Error("A reply is already streaming: cancel() it first");
    this._closed = false;
    const body = { ...this.options.params, ...(prompt == null ? {} : { prompt }), ...params };
    if (this.options.pipeline && body.pipeline === undefined) body.pipeline = this.options.pipeline;
    return new Promise((resolve) => {
      this._reply = newReply(body, resolve);
      if (this.transport === "ws") this._sendPrompt(this._reply);
      else this._request(this._reply, false);
    });
  }

  /**
   * Follow a reply that is already running on the server from its start, such as the one
   * a page was showing before a reload (its generation id comes from the server). SSE asks
   * with `Last-Event-ID: <id>:0`, a WebSocket with a `resume` frame; callbacks and result
   * are those of {@link StreamClient#send}. Throws if a reply is already streaming.
   * @param {string} generationId
   * @returns {Promise<StreamResult>}
   */
  resume(generationId) {
    if (this._reply) throw new Error("A reply is already streaming: cancel() it first");
    this._closed = false;
    return new Promise((resolve) => {
      const reply = newReply({}, resolve);
      Object.assign(reply, { messageId: generationId, seq: 0, sent: true });
      reply.lastEventId = `${generationId}:0`;
      this._reply = reply;
      this._setStatus("connecting", reply);
      if (this.transport !== "ws") this._request(reply, true);
      else if (this._socketOpen()) this._resume(reply);
      else this._openSocket(); // resumes when the socket opens
    });
  }

  /**
   * Stop the current reply: a `cancel` frame is sent (WS), or the request is aborted and
   * `DELETE <url>?id=<reply>` sent (SSE), so the server stops generating even a reply it
   * keeps for resumption. Both say how many characters of the reply were shown (`shown`):
   * the chat stores a stopped reply as its user saw it. Returns false if no reply was
   * streaming.
   * @returns {boolean}
   */
  cancel() {
    const reply = this._reply;
    if (!reply) return false;
    if (this.transport === "ws" && reply.sent && this._socketOpen()) {
      this._socket.send(JSON.stringify({ type: "cancel", shown: shownLength(reply) }));
      this._cancelAcks += 1;
    } else if (this.transport !== "ws" && !this._deleteReply(reply)) {
      reply.cancelWhenNamed?.(); // EventSource, before its first message
    }
    this._finish(reply, "cancelled");
    return true;
  }

  /**
   * Stop following the current reply and leave it running on the server (a view that
   * keeps replies, such as the chat, runs it on and stores it), where {@link
   * StreamClient#cancel} would stop it; {@link StreamClient#resume} follows it again.
   * SSE closes its request; a WebSocket closes its socket (and opens a new one, unless
   * `close`). A prompt the server may not have yet goes on until it does: sent over the
   * socket (reconnecting as usual), or its reply named by the response (at most 10 s),
   * so leaving never loses it. With `close`, the client then closes, as {@link
   * StreamClient#close} (the chat page leaves this client to it and takes a new one).
   * The reply's promise settles with status `detached`. Returns false if no reply was
   * streaming.
   * @param {{close?: boolean}} [options]
   * @returns {boolean}
   */
  detach({ close = false } = {}) {
    const reply = this._reply;
    if (!reply) {
      if (close) this.close();
      return false;
    }
    reply.closeWhenDetached = close;
    if (this.transport === "ws" ? reply.sent : reply.lastEventId !== "") this._detachNow(reply);
    else if (!reply.detachWhenNamed) {
      reply.detachWhenNamed = true;
      if (this.transport !== "ws") {
        reply.detachTimer = setTimeout(() => this._detachNow(reply), NAMING_WAIT_MS);
      }
    }
    return true;
  }

  _detachNow(reply) {
    if (this._reply !== reply) return;
    clearTimeout(reply.detachTimer);
    if (this.transport === "ws" && (this._socket || this._socketTimer !== null)) {
      // A socket follows its reply until it closes: the server's replies are not muted.
      const socket = this._socket;
      this._socket = null;
      this._socketTimer?.cancel();
      this._socketTimer = null;
      this._socketAttempt = 0;
      this._stopPing();
      this._cancelAcks = 0;
      const unanswered = reply.sent && reply.messageId === null && reply.received === 0;
      if (unanswered && socket?.readyState === WebSocket.OPEN) reply.refusal = awaitAnswer(socket);
      else socket?.close(1000, "detached");
    }
    this._finish(reply, "detached");
    if (reply.closeWhenDetached) this.close();
    else if (this.transport === "ws" && !this._closed) this._openSocket();
  }

  /** WebSocket: open the socket now rather than with the first prompt. */
  connect() {
    this._closed = false;
    if (this.transport === "ws") this._openSocket();
  }

  /** Cancel the current reply and close every connection; `send()` opens them again. */
  close() {
    this.cancel();
    this._closed = true;
    this._socketTimer?.cancel();
    this._socketTimer = null;
    this._stopPing();
    if (this._socket) {
      const socket = this._socket;
      this._socket = null;
      socket.close(1000);
    }
    this._setStatus("closed");
  }

  // ----------------------------------------------------------------- shared

  _info(reply, extra) {
    return {
      transport: this.transport,
      text: reply ? reply.text : "",
      messageId: reply ? reply.messageId : null,
      lastEventId: reply ? reply.lastEventId : "",
      ...extra,
    };
  }

  _setStatus(status, reply = this._reply, extra = {}) {
    this.status = status;
    this.options.onStatus?.(status, this._info(reply, extra));
  }

  _chunk(reply, text) {
    if (typeof text !== "string" || text === "") return;
    reply.received += 1;
    reply.text += text;
    if (reply.received === 1) this._setStatus("streaming", reply);
    this.options.onChunk?.(text, this._info(reply));
  }

  /** End `reply` once: stop its connection and timers, call back, settle its promise. */
  _finish(reply, status, { error = null, fullText = null } = {}) {
    if (this._reply !== reply) return;
    this._reply = null;
    clearTimeout(reply.timer);
    reply.retry?.cancel();
    reply.stop?.();
    if (typeof fullText === "string") reply.text = fullText;
    const info = this._info(reply);
    if (status === "complete") this.options.onComplete?.(reply.text, info);
    if (status === "error") this.options.onError?.(error, info);
    this._setStatus(status, reply);
    const messageId = reply.messageId ?? generationOf(reply.lastEventId);
    const refusal = reply.refusal;
    reply.resolve({
      status, text: reply.text, messageId, ...(error && { error }), ...(refusal && { refusal }),
    });
  }

  _fail(reply, message, code, details) {
    this._finish(reply, "error", { error: new StreamError(message, code, details) });
  }

  // -------------------------------------------------------------------- SSE

  /** Open (or, with `resume`, reopen) the event stream of `reply`. */
  _request(reply, resume) {
    if (this._reply !== reply) return;
    if (this._stopping) {
      // After the stop of the reply before: a prompt sent beside it would find it running.
      this._stopping.then(() => this._request(reply, resume));
      return;
    }
    if (!resume) this._setStatus("connecting", reply);
    if (this.transport === "sse" && !resume) {
      const length = this._queryURL(reply.body).href.length;
      const max = this.options.maxURLLength ?? MAX_URL_LENGTH;
      if (length > max) {
        this._fail(reply, `The prompt is too long to send in a URL (${length} characters, ` +
          `at most ${max}): send it with POST (transport "sse-post")`, "URL_TOO_LONG",
          { length, max });
        return;
      }
      this._openEventSource(reply);
    } else this._fetch(reply);
  }

  _queryURL(body) {
    const url = new URL(this.options.url, globalThis.location?.href);
    for (const [key, value] of Object.entries(body)) {
      if (value !== undefined && value !== null) url.searchParams.set(key, String(value));
    }
    return url;
  }

  /**
   * `EventSource` would reconnect by itself at a fixed interval, forever. We close it at
   * the first drop and resume with `fetch` (which sends `Last-Event-ID` as EventSource
   * would) on our own backoff, so both SSE transports recover the same way.
   *
   * Before the first message, though, only the browser knows the reply's id (the id the
   * response opens with, in an event without data, which `EventSource` does not show):
   * a drop then lets the browser reconnect by itself with it (at most `retries` times),
   * and `cancel()` keeps the source, muted, until a message names the reply to `DELETE`.
   */
  _openEventSource(reply) {
    const source = new EventSource(this._queryURL(reply.body), {
      withCredentials: Boolean(this.options.withCredentials),
    });
    let opened = false;
    let cancelled = false;
    // A source that shows nothing for `stallTimeout` once its reply is named (a half-open
    // connection) is closed and resumed with `fetch`, from the last id.
    const stallAfter = this.options.stallTimeout ?? STALL_TIMEOUT_MS;
    let stallTimer = null;
    const watch = () => {
      clearTimeout(stallTimer);
      if (!stallAfter) return;
      stallTimer = setTimeout(() => {
        if (this._reply !== reply || cancelled) return;
        if (!reply.lastEventId) return watch(); // a reconnect now would start it again
        source.close();
        this._lost(reply);
      }, stallAfter);
    };
    reply.stop = () => {
      clearTimeout(stallTimer);
      source.close();
    };
    let stopSent = null;
    reply.cancelWhenNamed = () => {
      cancelled = true;
      reply.stop = null; // _finish leaves the source open
      this._waitForStop(new Promise((resolve) => { stopSent = resolve; }));
    };
    watch();
    source.onopen = () => {
      watch();
      opened = true;
      if (this._reply === reply) this._setStatus("open", reply);
    };
    const handle = (event) => {
      watch();
      if (!cancelled) {
        this._event(reply, event.type, event.data, event.lastEventId);
        return;
      }
      source.close();
      reply.lastEventId = event.lastEventId;
      this._deleteReply(reply);
      stopSent?.();
    };
    source.onmessage = handle;
    for (const name of this.options.events ?? []) source.addEventListener(name, handle);
    source.addEventListener("error", (event) => {
      if (event instanceof MessageEvent) {
        handle(event); // a server-sent `event: error`
        return;
      }
      if (this._reply !== reply) {
        clearTimeout(stallTimer);
        source.close();
        stopSent?.();
        return;
      }
      const unnamed = reply.lastEventId === "" && reply.received === 0;
      const retry = this.reconnect && reply.attempt < this.reconnect.retries;
      if (opened && unnamed && retry && source.readyState === EventSource.CONNECTING) {
        reply.attempt += 1; // the browser reconnects, with the id we cannot read
        this._setStatus("reconnecting", reply, { attempt: reply.attempt, delay: null });
        return;
      }
      clearTimeout(stallTimer);
      source.close();
      if (opened || source.readyState === EventSource.CONNECTING) this._lost(reply);
      // Offline, the request never left: reconnect with backoff. Online, EventSource
      // cannot say why it failed to open (a refusal, or a connection reset after the
      // server started the reply): asking again could start the reply twice.
      else if (globalThis.navigator?.onLine === false) this._lost(reply);
      else this._fail(reply, "The server refused the stream request, or could not be " +
        "reached: EventSource cannot say which", "HTTP_ERROR");
    });
  }

  async _fetch(reply) {
    const controller = new AbortController();
    reply.stop = () => controller.abort();
    // No byte for `stallTimeout` (not even the server's keep-alive): a half-open connection
    // never ends by itself; the abort makes it a drop, resumed from the last event id.
    const stallAfter = this.options.stallTimeout ?? STALL_TIMEOUT_MS;
    let stallTimer = null;
    const watch = () => {
      clearTimeout(stallTimer);
      if (stallAfter) stallTimer = setTimeout(() => controller.abort(), stallAfter);
    };
    // Stopped before the response's first bytes named the reply: the server may have
    // started it already, and keeps a reply whose client went away. Read on, muted, until
    // those bytes come (at most NAMING_WAIT_MS), then `DELETE` it.
    let deleteWhenNamed = false;
    let stopSent = null;
    reply.cancelWhenNamed = () => {
      deleteWhenNamed = true;
      reply.stop = null; // _finish leaves the request open
      this._waitForStop(new Promise((resolve) => { stopSent = resolve; }));
      setTimeout(() => controller.abort(), NAMING_WAIT_MS);
    };
    const named = () => {
      controller.abort();
      if (reply.lastEventId) this._deleteReply(reply);
    };
    const headers = { Accept: "text/event-stream", ...this.options.headers };
    if (reply.lastEventId) headers["Last-Event-ID"] = reply.lastEventId;
    const init = { headers, signal: controller.signal, cache: "no-store", credentials: "same-origin" };
    let url = this.options.url;
    if (this.transport === "sse-post") {
      init.method = "POST";
      init.body = JSON.stringify(reply.body);
      headers["Content-Type"] = "application/json";
      const token = this._csrfToken();
      if (token) headers["X-CSRFToken"] = token;
    } else {
      url = this._queryURL(reply.body);
    }
    const resumeFrom = reply.lastEventId;
    watch();
    try {
      const response = await fetch(url, init);
      if (this._reply !== reply && !deleteWhenNamed) return;
      if (this._reply !== reply && !response.ok) return named();
      if (this._reply === reply) {
        if (!(await this._accept(reply, response))) return;
        this._setStatus("open", reply);
      }
      const parser = new SSEParser((event) => {
        if (resumeFrom && isReplayed(event.lastEventId, resumeFrom)) return;
        this._event(reply, event.type, event.data, event.lastEventId);
      });
      const reader = response.body.getReader();
      const decoder = new TextDecoder("utf-8", { ignoreBOM: true });
      for (;;) {
        const { done, value } = await reader.read();
        watch();
        if (this._reply !== reply && !deleteWhenNamed) {
          reader.cancel().catch(() => {});
          return;
        }
        if (done) break;
        parser.push(decoder.decode(value, { stream: true }));
        // An event with an id and no data (this app's opening bytes) is not dispatched,
        // but names the reply: Stop and a reconnect can use it before the first token.
        if (!reply.lastEventId && parser.lastEventId) reply.lastEventId = parser.lastEventId;
        if (deleteWhenNamed && reply.lastEventId) return named();
        if (reply.detachWhenNamed && reply.lastEventId) return this._detachNow(reply);
      }
      if (deleteWhenNamed) return named();
      parser.push(decoder.decode());
      parser.end();
      if (!this._failUnanswered(reply)) this._lost(reply); // the body ended before `done`
    } catch (error) {
      if (deleteWhenNamed) return named(); // not named within NAMING_WAIT_MS, or failed
      if (this._reply !== reply) return; // cancelled: the abort is ours
      if (error instanceof StreamError) this._finish(reply, "error", { error });
      else if (!this._failUnanswered(reply)) this._lost(reply);
    } finally {
      clearTimeout(stallTimer);
      stopSent?.(); // after named(): a request waiting for the stop now waits for its DELETE
    }
  }

  /**
   * A POSTed prompt (`sse-post`) whose request failed once it may have left, with not a
   * byte of its reply heard: unless `resendUnanswered`, fail it (`CONNECTION_LOST`,
   * `messageId` null) rather than POST it again, since the server may run or have ended
   * its reply. Fetch cannot tell a connection refused from one reset after the body went:
   * the caller finds out. True if it failed.
   */
  _failUnanswered(reply, details) {
    if (this.options.resendUnanswered !== false || this.transport !== "sse-post") return false;
    if (reply.lastEventId !== "" || reply.received !== 0) return false;
    this._fail(reply, "The connection was lost before the server answered the prompt",
      "CONNECTION_LOST", details);
    return true;
  }

  /** Check a fetch response; fail or retry `reply` and return false if it is no stream. */
  async _accept(reply, response) {
    if (response.status === 204) {
      this._fail(
        reply,
        reply.lastEventId
          ? "The connection was lost and the server cannot resume this reply"
          : "The server has no reply to send",
        "NOT_RESUMABLE",
        { status: 204 },
      );
      return false;
    }
    if (!response.ok) {
      let message = `The server answered ${response.status} ${response.statusText}`.trim();
      let code = "HTTP_ERROR";
      try {
        const body = await response.json();
        message = body.error || body.message || message;
        code = body.code || code;
      } catch {
        // not JSON: keep the status line
      }
      if (this._reply !== reply) return false;
      // A proxy's 502 or 504 (not the server's own error) may come after it forwarded the
      // prompt; its 503, or the server's own, is a refusal, safe to send again.
      const gateway = code === "HTTP_ERROR" && (response.status === 502 || response.status === 504);
      if (gateway && this._failUnanswered(reply, { status: response.status })) return false;
      if (response.status >= 502 && response.status <= 504) {
        // A proxy in front of a restarting server, or the server itself busy, restarting
        // or without its store: try again, not before its `Retry-After`. Once the attempts
        // run out, the server's own error is the reply's, not a lost connection.
        reply.refusal = code === "HTTP_ERROR" ? null : { message, code, status: response.status };
        reply.notBefore = retryAfterMs(response.headers.get("Retry-After"));
        this._lost(reply);
        return false;
      }
      if (reply.lastEventId) this._resumeFailed(reply, message, code, response.status);
      else this._fail(reply, message, code, { status: response.status });
      return false;
    }
    reply.refusal = null; // answered: a drop from now on is a lost connection
    const type = response.headers.get("Content-Type") || "";
    if (!type.toLowerCase().startsWith("text/event-stream") || !response.body) {
      this._fail(reply, `Expected an event stream, got ${type || "no content type"}`, "PROTOCOL_ERROR");
      return false;
    }
    return true;
  }

  /** One SSE event: text, the end, an error, or a named event for `onEvent`. */
  _event(reply, type, data, lastEventId) {
    if (this._reply !== reply) return;
    if (lastEventId) reply.lastEventId = lastEventId;
    if (reply.detachWhenNamed && reply.lastEventId) {
      this._detachNow(reply);
      return;
    }
    reply.attempt = 0; // the connection works again
    const payload = parseJSON(data);
    if (type === "error") {
      const message = payload?.message || payload?.error || "The stream failed";
      this._fail(reply, message, payload?.code || "STREAM_ERROR");
      return;
    }
    if (type !== "message") {
      this.options.onEvent?.(type, payload === undefined ? data : payload, this._info(reply));
      return;
    }
    if (payload === undefined || typeof payload === "string") {
      this._chunk(reply, payload ?? data); // plain-text streams: every message is text
    } else if (payload && typeof payload.chunk === "string") {
      this._chunk(reply, payload.chunk);
    } else if (payload && payload.done === true) {
      this._finish(reply, "complete");
    } else if (payload && payload.error) {
      this._fail(reply, String(payload.error), payload.code || "STREAM_ERROR");
    } else {
      this.options.onEvent?.(type, payload, this._info(reply));
    }
  }

  /** The connection of `reply` dropped before its end: retry with backoff, or give up. */
  _lost(reply) {
    if (this._reply !== reply) return;
    reply.stop?.();
    reply.stop = null;
    reply.cancelWhenNamed = null;
    // Without an event id a reconnect would start the reply again: only if nothing came yet.
    const resumable = reply.lastEventId !== "" || reply.received === 0;
    if (!this.reconnect || !resumable || reply.attempt >= this.reconnect.retries) {
      const refusal = reply.refusal;
      if (refusal) this._fail(reply, refusal.message, refusal.code, { status: refusal.status });
      else this._fail(reply, "The connection to the server was lost", "CONNECTION_LOST");
      return;
    }
    reply.attempt += 1;
    const delay = Math.max(
      backoffDelay(reply.attempt, this.reconnect),
      Math.min(reply.notBefore ?? 0, this.reconnect.maxDelay),
    );
    reply.notBefore = 0;
    this._setStatus("reconnecting", reply, { attempt: reply.attempt, delay });
    reply.retry = retryAfter(delay, () => this._request(reply, true));
  }

  /**
   * Ask the server to stop `reply` (its id is the part of an event id before `:`); false
   * when no id is known yet.
   */
  _deleteReply(reply) {
    const generation = reply.lastEventId.split(":")[0];
    if (!generation) return false;
    const url = new URL(this.options.url, globalThis.location?.href);
    url.searchParams.set("id", generation);
    url.searchParams.set("shown", String(shownLength(reply)));
    const headers = { ...this.options.headers };
    const token = this._csrfToken();
    if (token) headers["X-CSRFToken"] = token;
    this._waitForStop(
      fetch(url, { method: "DELETE", headers, credentials: "same-origin", keepalive: true }),
    );
    return true;
  }

  /** Hold the next request until `stop` settles (at most STOP_WAIT_MS). */
  _waitForStop(stop) {
    const bounded = new Promise((resolve) => {
      const timer = setTimeout(resolve, STOP_WAIT_MS);
      stop.catch(() => {}).finally(() => {
        clearTimeout(timer);
        resolve();
      });
    });
    const stopping = bounded.then(() => {
      if (this._stopping === stopping) this._stopping = null;
    });
    this._stopping = stopping;
  }

  _csrfToken() {
    const option = this.options.csrfToken;
    if (typeof option === "function") return option();
    if (typeof option === "string") return option;
    const match = globalThis.document?.cookie.match(/(?:^|;\s*)csrftoken=([^;]*)/);
    return match ? decodeURIComponent(match[1]) : null;
  }

  // -------------------------------------------------------------- WebSocket

  _socketOpen() {
    return this._socket !== null && this._socket.readyState === WebSocket.OPEN;
  }

  _sendPrompt(reply) {
    if (!this._socketOpen()) {
      this._openSocket(); // the prompt goes out when the socket opens
      return;
    }
    this._socket.send(JSON.stringify({ type: "prompt", ...reply.body }));
    reply.sent = true;
    this._setStatus("open", reply);
    if (reply.detachWhenNamed) this._detachNow(reply); // the socket sends it before closing
  }

  _openSocket() {
    if (this._socket || this._socketTimer !== null) return;
    const url = new URL(this.options.url, globalThis.location?.href);
    if (url.protocol === "http:") url.protocol = "ws:";
    else if (url.protocol === "https:") url.protocol = "wss:";
    const reconnecting = this._socketAttempt > 0;
    if (!reconnecting) this._setStatus("connecting");
    const socket = new WebSocket(url);
    this._socket = socket;
    socket.onopen = () => this._socketOpened(socket);
    socket.onmessage = (event) => {
      if (this._socket === socket) this._frame(parseJSON(event.data)); // not a detached one's
    };
    socket.onclose = (event) => this._socketClosed(socket, event);
  }

  _socketOpened(socket) {
    if (this._socket !== socket) return;
    this._socketAttempt = 0;
    this._cancelAcks = 0;
    this._startPing();
    const reply = this._reply;
    if (!reply) this._setStatus("open");
    else if (!reply.sent) this._sendPrompt(reply);
    else this._resume(reply);
  }

  /** After a reconnect: ask for the rest of the reply, or send its prompt again. */
  _resume(reply) {
    if (reply.messageId === null && reply.received === 0) {
      // Nothing arrived yet: the server may not have the prompt, or may run its reply.
      if (this.options.resendUnanswered === false) {
        this._fail(reply, "The connection was lost before the server answered the prompt",
          "CONNECTION_LOST");
      } else this._sendPrompt(reply); // start it again
      return;
    }
    if (reply.messageId === null || reply.seq === null) {
      // The server numbers no events: it cannot resume, and a new prompt would repeat.
      this._fail(reply, "The connection to the server was lost", "CONNECTION_LOST");
      return;
    }
    reply.resuming = true;
    this._socket.send(
      JSON.stringify({ type: "resume", message_id: reply.messageId, after: reply.seq }),
    );
    // The server refuses a resume at once, and takes one without a frame: a reply the
    // model is silent in (thinking) would send nothing before `resumeTimeout`. It answers
    // frames in order, so the pong of a ping sent now, with no refusal before it, says
    // the resume was taken (a ping sent earlier is answered first).
    reply.resumePongs = (this._pongDue ? 1 : 0) + 1;
    this._socket.send(JSON.stringify({ type: "ping" }));
    this._pongDue = true;
    this._setStatus(reply.received > 0 ? "streaming" : "open", reply);
    clearTimeout(reply.timer);
    reply.timer = setTimeout(() => this._resumeTimedOut(reply), this.options.resumeTimeout ?? 10000);
  }

  /**
   * No answer to the resume of `reply` in `resumeTimeout`: the server is slow, or the
   * path to it half-open. Its answer may still come on this socket, where the resume
   * runs on and another would be refused ("A reply is streaming"): the socket is given
   * up, and the reply resumed on a new one, as after a drop (`reconnect.retries` times
   * for one reply; then it fails, `RESUME_FAILED` with cause `TIMEOUT`, and a new
   * socket is opened for what comes next, such as a resume of the same reply).
   */
  _resumeTimedOut(reply) {
    if (this._reply !== reply || !reply.resuming) return;
    reply.resuming = false;
    reply.resumeTimeouts += 1;
    const socket = this._socket;
    const retry = this.reconnect !== null && reply.resumeTimeouts <= this.reconnect.retries;
    if (socket && retry) {
      socket.close(4000, "no answer to resume");
      this._socketClosed(socket, { code: 1006, reason: "" });
      return;
    }
    this._resumeFailed(reply, "the server did not answer", "TIMEOUT");
    if (!socket) return;
    this._socket = null;
    this._stopPing();
    this._cancelAcks = 0;
    socket.close(4000, "no answer to resume");
    if (!this._closed) this._openSocket();
  }

  /** A reconnect found the server, but it would not resume the reply (`cause`: its code). */
  _resumeFailed(reply, reason, cause = null, status = null) {
    this._fail(reply, `The connection was lost and the reply could not be resumed: ${reason}`,
      "RESUME_FAILED", { cause, status });
  }

  _socketClosed(socket, event) {
    if (this._socket !== socket) return;
    this._socket = null;
    this._stopPing();
    this._cancelAcks = 0;
    const reply = this._reply;
    if (this._closed) return;
    const final = FINAL_CLOSE_CODES.has(event.code) || (event.code >= 4000 && event.code < 5000);
    const retries = this.reconnect ? this.reconnect.retries : 0;
    if (final || this._socketAttempt >= retries) {
      this._socketAttempt = 0;
      const why = event.reason || (final ? `closed with code ${event.code}` : "");
      if (reply) {
        this._fail(reply, `The connection to the server was lost${why ? ` (${why})` : ""}`,
          "CONNECTION_LOST");
      } else {
        this._setStatus(final ? "closed" : "error");
      }
      return;
    }
    if (reply) {
      reply.resuming = false;
      clearTimeout(reply.timer);
    }
    this._socketAttempt += 1;
    const delay = backoffDelay(this._socketAttempt, this.reconnect);
    this._setStatus("reconnecting", reply, { attempt: this._socketAttempt, delay });
    this._socketTimer = retryAfter(delay, () => {
      this._socketTimer = null;
      if (!this._closed) this._openSocket();
    });
  }

  _startPing() {
    const interval = this.options.pingInterval ?? 20000;
    if (!interval) return;
    this._pongDue = false;
    this._pingTimer = setInterval(() => {
      if (!this._socketOpen()) return;
      if (this._pongDue) {
        this._socket.close(4000, "no answer to ping"); // half-open: start again
        this._socketClosed(this._socket, { code: 1006, reason: "" });
        return;
      }
      this._pongDue = true;
      this._socket.send(JSON.stringify({ type: "ping" }));
    }, interval);
  }

  _stopPing() {
    clearInterval(this._pingTimer);
    this._pingTimer = null;
  }

  /** One frame from the server. */
  _frame(frame) {
    this._pongDue = false; // any frame shows the connection is alive
    if (!frame || typeof frame !== "object") return;
    const { type } = frame;
    if (type === "pong") {
      const resumed = this._reply;
      if (resumed?.resuming && resumed.resumePongs > 0 && --resumed.resumePongs === 0) {
        resumed.resuming = false; // taken: its events come when the model writes them
        clearTimeout(resumed.timer);
      }
      return;
    }
    if (this._cancelAcks > 0) {
      // Frames of a reply we cancelled, up to the server's answer to the cancel.
      if (type === "cancelled" || type === "error") this._cancelAcks -= 1;
      if (REPLY_FRAMES.includes(type)) return;
    }
    const reply = this._reply;
    const id = frame.message_id ?? null;
    const known = (candidate) => candidate === null || reply.messageId === null
      || candidate === reply.messageId;
    if (!reply || !known(id)) {
      if (!REPLY_FRAMES.includes(type)) {
        this.options.onEvent?.(type, frame, this._info(reply));
      }
      return;
    }
    if (type === "chunk") {
      if (reply.messageId === null) reply.messageId = id;
      if (Number.isInteger(frame.seq)) reply.seq = frame.seq;
      if (reply.resuming) {
        reply.resuming = false;
        clearTimeout(reply.timer);
      }
      this._chunk(reply, frame.content);
    } else if (type === "complete") {
      if (reply.messageId === null) reply.messageId = id;
      const full = typeof frame.fullResponse === "string" ? frame.fullResponse : null;
      this._finish(reply, "complete", { fullText: full });
    } else if (type === "error") {
      const message = frame.message || "The stream failed";
      if (reply.resuming) {
        this._resumeFailed(reply, message, frame.code || null);
      } else {
        this._fail(reply, message, frame.code || "STREAM_ERROR");
      }
    } else if (type === "cancelled") {
      this._finish(reply, "cancelled");
    } else {
      if (type === "event") {
        // An extractor event (such as `reasoning`) is part of the reply: resume after it.
        if (reply.messageId === null) reply.messageId = id;
        if (Number.isInteger(frame.seq)) reply.seq = frame.seq;
      }
      this.options.onEvent?.(type, frame, this._info(reply));
    }
  }
}

/**
 * A socket left with a prompt the server has not answered yet: it listens on, without
 * holding anything up, for that answer, then closes. Settles with the server's refusal of
 * the prompt (an `error` frame naming no reply), or null once a frame names the reply,
 * the socket closes, or NAMING_WAIT_MS have passed.
 * @returns {Promise<StreamError | null>}
 */
function awaitAnswer(socket) {
  return new Promise((resolve) => {
    const answered = (refusal) => {
      clearTimeout(timer);
      socket.onmessage = null;
      socket.onclose = null;
      socket.close(1000, "detached");
      resolve(refusal);
    };
    const timer = setTimeout(() => answered(null), NAMING_WAIT_MS);
    socket.onmessage = (event) => {
      const frame = parseJSON(event.data);
      if (!frame || typeof frame !== "object" || !REPLY_FRAMES.includes(frame.type)) return;
      const refused = frame.type === "error" && (frame.message_id ?? null) === null;
      const code = frame.code || "STREAM_ERROR";
      answered(refused ? new StreamError(frame.message || "The prompt was refused", code) : null);
    };
    socket.onclose = () => answered(null);
  });
}

/** Milliseconds a `Retry-After` header asks to wait (its seconds; 0 if none or a date). */
function retryAfterMs(header) {
  const seconds = Number(header);
  return header && Number.isFinite(seconds) && seconds > 0 ? seconds * 1000 : 0;
}

/**
 * Call `retry` after `delay` ms, or at once when the browser says the network is back
 * (`online`): a reconnection waiting out a long backoff does not keep a user who is
 * online again waiting. Returns a handle whose `cancel()` calls it off.
 * @param {number} delay
 * @param {() => void} retry
 * @returns {{ cancel: () => void }}
 */
export function retryAfter(delay, retry) {
  const target = globalThis.addEventListener ? globalThis : null;
  const cancel = () => {
    clearTimeout(timer);
    target?.removeEventListener("online", now);
  };
  const now = () => {
    cancel();
    retry();
  };
  const timer = setTimeout(now, delay);
  target?.addEventListener("online", now);
  return { cancel };
}

function newReply(body, resolve) {
  return {
    body,
    resolve,
    text: "",
    received: 0,
    seq: null,
    messageId: null,
    lastEventId: "",
    attempt: 0,
    timer: null,
    retry: null,
    stop: null,
    cancelWhenNamed: null,
    sent: false,
    resuming: false,
    resumePongs: 0,
    resumeTimeouts: 0,
    /** The server's own error of a 502–504 it answered (busy, restarting), until answered. */
    refusal: null,
    /** Milliseconds its `Retry-After` asked the next attempt to wait. */
    notBefore: 0,
  };
}

/** How many characters of its text a reply has shown, counted as the server counts them
 * (code points, not UTF-16 units). */
function shownLength(reply) {
  let length = 0;
  for (const _ of reply.text) length += 1;
  return length;
}

/** The reply's id in an SSE event id of this app's `<generation>:<seq>` shape, or null. */
function generationOf(lastEventId) {
  const colon = lastEventId.lastIndexOf(":");
  return colon > 0 ? lastEventId.slice(0, colon) : null;
}

function parseJSON(text) {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** On a resumed stream, an event at or before the id we resumed from was seen already. */
function isReplayed(id, resumedFrom) {
  const a = Number(id);
  const b = Number(resumedFrom);
  return id !== "" && Number.isInteger(a) && Number.isInteger(b) && a <= b;
}
