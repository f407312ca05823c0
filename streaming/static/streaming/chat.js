/**
 * The chat page: stored conversations, replies streamed by the `streaming` client module.
 *
 * Conversations live on the server (`chat/conversations`); the open one is in the URL
 * (`?c=<id>`), so a reload shows it again and picks up a reply that is still running.
 * Replies are Markdown, rendered by `streaming/markdown` (marked + DOMPurify) while they
 * stream; the user's own messages and the reply's reasoning are plain text (Text nodes).
 */

import { backoffDelay, createStream, retryAfter } from "streaming";
import { renderMarkdown } from "streaming/markdown";

const TRANSPORT_NAMES = {
  "sse-post": "SSE POST (fetch)",
  sse: "SSE GET (EventSource)",
  ws: "WebSocket",
};

/** Refusals that the same request would meet again: no "Try again". */
const FINAL_CODES = new Set([
  "PROMPT_TOO_LARGE", "URL_TOO_LONG", "UNKNOWN_PIPELINE", "BAD_REQUEST", "CSRF_FAILED", "FORBIDDEN",
  "CROSS_SITE",
]);

/** Errors of a prompt the client names, not the server: the server may have it after all. */
const UNANSWERED_CODES = new Set(["HTTP_ERROR", "CONNECTION_LOST", "PROTOCOL_ERROR"]);

/** Errors of a reply whose connection was lost: the server may have run it on, or ended it. */
const LOST_CODES = new Set(["CONNECTION_LOST", "NOT_RESUMABLE", "RESUME_FAILED", "ABORTED"]);

/** How a stored message's status shows on the page, and back. */
const STATE_OF_STATUS = { complete: "complete", stopped: "cancelled", failed: "error" };
const STATUS_OF_STATE = { complete: "complete", cancelled: "stopped", error: "failed" };

const TITLE_LENGTH = 60;
/** The longest name of a chat, in characters (code points), as the server counts them
 * (`streaming.models.TITLE_MAX_LENGTH`); an input's `maxLength` counts UTF-16 units. */
const TITLE_MAX = 200;
/** Chats found gone in a row while asking for older ones before listing from the newest. */
const MAX_GONE = 3;
/** How long a chat left with a prompt the server may not have yet waits, when opened
 * again, for that prompt to be named (ms; the client gives up naming after 10 s). */
const LEFT_WAIT_MS = 10000;
/** How often a chat whose reply is starting is asked again, and for how long at most (ms):
 * the server gives a reply 10 s to start (`START_GRACE`), then stores it as failed. */
const STARTING_POLL_MS = 200;
const STARTING_WAIT_MS = 12000;

const reducedMotion = window.matchMedia("(prefers-reduced-motion: reduce)");

const $ = (selector, root = document) => root.querySelector(selector);

// ---------------------------------------------------------------- language

/** The page's language (Django's, on `<html lang>`), for plurals and numbers. */
const LANG = (() => {
  try {
    return Intl.getCanonicalLocales(document.documentElement.lang || "en")[0];
  } catch {
    return "en";
  }
})();
/** The page's sentences, translated by the server (`streaming.chat_strings`). */
const STRINGS = JSON.parse($("#chat-strings")?.textContent || "{}");
const pluralRules = new Intl.PluralRules(LANG);
const numberFormat = new Intl.NumberFormat(LANG);
const secondsFormat = new Intl.NumberFormat(LANG, { minimumFractionDigits: 1, maximumFractionDigits: 1 });

/** The form of a plural sentence for `count`: the form the server gave a sample count of
 * the same CLDR category (`streaming.chat_strings` explains why). */
function pluralForm(entry, count) {
  const samples = STRINGS.plural_samples || [];
  const category = pluralRules.select(count);
  let at = samples.findIndex((sample) => pluralRules.select(sample) === category);
  if (at === -1) at = samples.findIndex((sample) => pluralRules.select(sample) === "other");
  return entry.forms[entry.pick[at]] ?? entry.forms[entry.forms.length - 1];
}

/**
 * The sentence `key` in the page's language, its `%(name)s` placeholders filled from
 * `params` (numbers formatted for the language); a plural sentence by `params.count`.
 */
function t(key, params = {}) {
  let text = STRINGS[key];
  if (text === undefined) return key;
  if (typeof text === "object") text = pluralForm(text, params.count);
  return text.replace(/%(?:\((\w+)\)s|%)/g, (whole, name) => {
    if (name === undefined) return "%";
    if (!(name in params)) return whole;
    const value = params[name];
    return typeof value === "number" ? numberFormat.format(value) : String(value);
  });
}

/** Seconds with one decimal, as the language writes them. */
function formatSeconds(seconds) {
  return secondsFormat.format(seconds);
}

const app = $("#chat");
const ui = {
  connection: $("#connection"),
  connectionLabel: $("#connection .connection-label"),
  connectionShort: $("#connection .connection-short"),
  sidebar: $("#sidebar"),
  main: $(".main"),
  backdrop: $("#backdrop"),
  openDrawer: $("#open-drawer"),
  closeDrawer: $("#close-drawer"),
  conversations: $("#conversations"),
  moreConversations: $("#more-conversations"),
  settingsButton: $("#settings-button"),
  settings: $("#settings"),
  pipeline: $("#pipeline"),
  pipelineHelp: $("#pipeline-help"),
  newChat: $("#new-chat"),
  conversation: $("#conversation"),
  empty: $("#empty"),
  messages: $("#messages"),
  earlier: $("#earlier"),
  loadError: $("#load-error"),
  jump: $("#jump"),
  composer: $("#composer"),
  prompt: $("#prompt"),
  send: $("#send"),
  stop: $("#stop"),
  announcer: $("#announcer"),
  conversationTemplate: $("#conversation-item"),
  userTemplate: $("#user-message"),
  assistantTemplate: $("#assistant-message"),
};
const baseTitle = document.title;

// ---------------------------------------------------------------------- API

class ApiError extends Error {
  constructor(message, status) {
    super(message);
    this.status = status;
  }
}

/** The CSRF token: the project's CSRF cookie (``CSRF_COOKIE_NAME``), which a login in
 * another tab renews, else the token the page came with (an ``HttpOnly`` cookie, or
 * ``CSRF_USE_SESSIONS``: no cookie scripts can read). */
function csrfToken() {
  const name = app.dataset.csrfCookie;
  for (const cookie of name ? document.cookie.split(";") : []) {
    const [key, ...value] = cookie.trim().split("=");
    if (key === name && value.join("=")) return decodeURIComponent(value.join("="));
  }
  return app.dataset.csrfToken || "";
}

/** One call of the conversations API: its JSON answer, null for 204, or an ApiError. */
async function api(method, path = "", body = undefined) {
  const headers = { Accept: "application/json" };
  const init = { method, headers, credentials: "same-origin", cache: "no-store" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  if (method !== "GET") headers["X-CSRFToken"] = csrfToken();
  let response;
  try {
    response = await fetch(app.dataset.conversationsUrl + path, init);
  } catch {
    throw new ApiError(t("api.unreachable"), 0);
  }
  if (response.status === 204) return null;
  const data = await response.json().catch(() => null);
  if (!response.ok) {
    // Signed out (another tab, expired) where the site requires a login: say so in the
    // page's language (the server's sentence is English).
    if (data?.code === "UNAUTHENTICATED") throw new ApiError(t("error.UNAUTHENTICATED"), response.status);
    throw new ApiError(data?.error || data?.message || t("api.status", { status: String(response.status) }), response.status);
  }
  return data;
}

// --------------------------------------------------------------- a message

/** One assistant message: its state, reasoning, and Markdown revealed smoothly as it comes. */
class AssistantMessage {
  constructor(item) {
    this.item = item;
    this.textBox = $(".text", item);
    this.reasoning = $(".reasoning", item);
    this.reasoningText = $(".reasoning-text", item);
    this.reasoningNode = document.createTextNode("");
    this.reasoningText.append(this.reasoningNode);
    this.notice = $(".notice", item);
    this.noticeTitle = $(".notice-title", item);
    this.noticeMessage = $(".notice-message", item);
    this.retry = $(".retry", item);
    this.meta = $(".meta", item);
    this.regenerate = $(".regenerate", item);
    item.view = this;
    this.source = "";
    this.pending = "";
    this.frame = 0;
    this.drained = [];
    /** A reply whose connection was lost, `{id, code}` (its id, the error's code), until
     * what became of it is known (`recoverReply`). */
    this.lost = null;
    /** The server's id of the reply shown (stored, or streamed here), when known: a
     * prompt after it that the server may not have is looked for after it (`settleUnanswered`). */
    this.generation = null;
    /** A failed exchange left unanswered (`isUnanswered`), `{exchange, result}`, until it
     * is asked again: Try again, or the network back, looks it up (`lookUpUnanswered`). */
    this.unanswered = null;
  }

  /** `waiting` → `streaming` → `complete` | `cancelled` | `error`; `reconnecting` meanwhile. */
  setState(state) {
    this.item.dataset.state = state;
    const busy = state === "waiting" || state === "streaming" || state === "reconnecting";
    this.textBox.setAttribute("aria-busy", String(busy));
    if (STATUS_OF_STATE[state]) this.item.dataset.status = STATUS_OF_STATE[state];
    else delete this.item.dataset.status;
    if (!busy) this.reasoning.dataset.streaming = "false";
  }

  get state() {
    return this.item.dataset.state;
  }

  /** The Markdown source on the page (what Copy copies). */
  get shown() {
    return this.source;
  }

  reset() {
    this.lost = null;
    this.unanswered = null;
    cancelAnimationFrame(this.frame);
    this.frame = 0;
    this.pending = "";
    this.setText("");
    this.reasoningNode.data = "";
    this.reasoning.hidden = true;
    this.reasoning.open = false;
    this.hideNotice();
    this.meta.textContent = "";
    this.setState("waiting");
  }

  /** Replace the whole text at once (a stored message, or the server's full reply). */
  setText(text) {
    this.source = text;
    this.render();
  }

  render() {
    this.textBox.replaceChildren(renderMarkdown(this.source));
    // The reply's own headings sit below its "The model said:" (level 2) in the outline.
    for (const heading of this.textBox.querySelectorAll("h1, h2, h3, h4, h5, h6")) {
      heading.setAttribute("aria-level", String(Math.min(6, Number(heading.tagName[1]) + 2)));
    }
    this.textBox.dataset.length = String(this.source.length);
    for (const pre of this.textBox.querySelectorAll("pre")) addCodeHeader(pre);
  }

  /** Reasoning (the reply's thought) arrives before the answer and is shown apart. */
  addReasoning(text) {
    if (!text) return;
    const follow = following;
    this.reasoning.hidden = false;
    this.reasoning.dataset.streaming = String(!this.source);
    this.reasoningNode.appendData(text);
    followReply(follow);
  }

  setReasoning(text) {
    this.reasoningNode.data = text || "";
    this.reasoning.hidden = !text;
  }

  /** Queue `text` for display; it is revealed a few characters per frame. */
  append(text) {
    this.pending += text;
    this.reasoning.dataset.streaming = "false";
    if (reducedMotion.matches || document.hidden) {
      this.flush();
      return;
    }
    if (!this.source) {
      this.tick(); // the first characters replace the loading dots at once
      return;
    }
    if (!this.frame) this.frame = requestAnimationFrame(() => this.tick());
  }

  tick() {
    cancelAnimationFrame(this.frame);
    this.frame = 0;
    if (!this.pending) return;
    // Reveal faster the more is waiting, so the text never lags far behind the stream.
    let count = Math.max(2, Math.ceil(this.pending.length / 8));
    const code = this.pending.charCodeAt(count - 1);
    if (code >= 0xd800 && code <= 0xdbff) count += 1; // keep surrogate pairs whole
    this.reveal(this.pending.slice(0, count));
    this.pending = this.pending.slice(count);
    if (this.pending) this.frame = requestAnimationFrame(() => this.tick());
    else this.settle();
  }

  reveal(text) {
    const follow = following;
    this.setText(this.source + text);
    followReply(follow);
  }

  flush() {
    cancelAnimationFrame(this.frame);
    this.frame = 0;
    if (this.pending) this.reveal(this.pending);
    this.pending = "";
    this.settle();
  }

  settle() {
    for (const resolve of this.drained.splice(0)) resolve();
  }

  /** Resolves when everything received so far is on the page. */
  drain() {
    if (!this.pending) return Promise.resolve();
    if (document.hidden) {
      this.flush();
      return Promise.resolve();
    }
    return new Promise((resolve) => this.drained.push(resolve));
  }

  showNotice(title, message, { retry = false, kind = "error" } = {}) {
    this.notice.hidden = false;
    this.notice.dataset.kind = kind;
    // An error is an alert; news (reconnecting, attempt after attempt) is said once by
    // the announcer instead (`showStatus`), so the notice is not live then.
    if (kind === "error") this.notice.setAttribute("role", "alert");
    else this.notice.removeAttribute("role");
    this.noticeTitle.textContent = title;
    this.noticeMessage.textContent = message;
    this.retry.hidden = !retry;
  }

  hideNotice() {
    this.notice.hidden = true;
    this.retry.hidden = true;
  }
}

/** A code block gets a bar with its language and a Copy button. */
function addCodeHeader(pre) {
  const block = document.createElement("div");
  block.className = "code-block";
  const head = document.createElement("div");
  head.className = "code-head";
  const language = document.createElement("span");
  const match = pre.querySelector("code")?.className.match(/language-([\w+#.-]+)/);
  language.textContent = match ? match[1] : t("code.language");
  const copy = document.createElement("button");
  copy.type = "button";
  copy.className = "copy-code";
  copy.textContent = t("code.copy");
  copy.setAttribute("aria-label", t("code.copy_label", { language: language.textContent }));
  head.append(language, copy);
  pre.replaceWith(block);
  block.append(head, pre);
}

async function copyText(text, button) {
  try {
    await navigator.clipboard.writeText(text);
  } catch {
    const area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.style.position = "fixed";
    area.style.opacity = "0";
    document.body.append(area);
    area.select();
    document.execCommand("copy");
    area.remove();
  }
  const label = button.textContent;
  button.textContent = t("copied");
  announce(t("announce.copied"));
  button.dataset.copied = "true";
  setTimeout(() => {
    button.textContent = label;
    delete button.dataset.copied;
  }, 1500);
}

/** How long an announcement stays in the live region: read by then, it is cleared, so
 * no stale copy is left for a screen reader's virtual cursor to find. */
const ANNOUNCE_FOR = 5000;
let announceTimers = [];

/** Say `text` to screen readers once: a short sentence (never a reply's text: the user
 * reads the reply itself, each introduced by a heading), cleared after a few seconds. */
function announce(text) {
  for (const timer of announceTimers) clearTimeout(timer);
  ui.announcer.textContent = "";
  announceTimers = [
    setTimeout(() => {
      ui.announcer.textContent = text;
    }, 50),
    setTimeout(() => {
      ui.announcer.textContent = "";
    }, 50 + ANNOUNCE_FOR),
  ];
}

/** "Reply finished." with its length in words, for the announcer; `whileLost`: it
 * finished while the connection was lost. */
function finishedSentence(view, { whileLost = false } = {}) {
  const words = view.textBox.textContent.split(/\s+/).filter(Boolean).length;
  if (!words) return t(whileLost ? "announce.empty_while_lost" : "announce.empty");
  return t(whileLost ? "announce.words_while_lost" : "announce.words", { count: words });
}

/** Focus went with an element that was hidden or disabled (Send turned into Stop, the
 * suggestions went away, a reply's button was hidden): it goes to the message box. */
function rescueFocus() {
  const focused = document.activeElement;
  const lost = !focused || focused === document.body || !focused.checkVisibility?.() || focused.disabled;
  if (lost && !ui.main.inert) ui.prompt.focus();
}

// ---------------------------------------------------------------- connection

let client = null;
let clientTransport = null;
/** The exchange in progress: {view, prompt, regenerate, pipeline, transport, started}. */
let current = null;
/** A new chat is being created for the first prompt (no exchange, and no view, yet). */
let creatingChat = false;
/** The open chat's reply is starting (its turn stored, not yet running: the API's
 * `starting`): the page waits to follow it (`followStartingReply`). */
let awaitingStart = false;
/** Replies left running (`leaveReply`) whose clients still follow them until the server
 * has their prompt, by conversation: the promise of each one's end there. */
const leftReplies = new Map();
/** Where this tab keeps the prompts refused after their chat was left, so that a reload
 * finds them (`sessionStorage`: this tab only, and gone with it), and how many chats and
 * characters of them at most: the newest are kept. */
const KEPT_PROMPTS_KEY = "streaming-chat-refused";
const KEPT_PROMPTS_MAX = 20;
const KEPT_PROMPTS_MAX_CHARS = 100000;
/** Prompts refused after their chat was left (`keepRefusedPrompt`), by conversation, oldest
 * first: each goes back in the message box when its chat is shown again. */
const refusedPrompts = readKeptPrompts();

/** Whether the visitor has an owner (a user, or a token in their session) the server can
 * see: the page stores none for a visitor until their first chat (its POST) makes it. */
let owned = app.dataset.owned === "true";

/** The server answered as this visitor's (their first chat, created; or a chat of theirs,
 * read): a WebSocket opened before it has no session (a socket cannot set a cookie, and
 * its handshake had none), so it is opened again, its handshake carrying the cookie. */
function becameOwner() {
  if (owned) return;
  owned = true;
  if (clientTransport === "ws" && client && !current) {
    client.close();
    client.connect();
  }
}

/** No second send while a reply streams, starts, or its chat is being created. */
function isBusy() {
  return current !== null || creatingChat || awaitingStart;
}

function selectedTransport() {
  return ui.settings.elements.transport.value || "sse-post";
}

function clientFor(transport) {
  if (client && clientTransport === transport) return client;
  client?.close();
  clientTransport = transport;
  // Callbacks of a client the page left (``leaveReply``) are not the page's any more.
  const stream = createStream({
    url: transport === "ws" ? app.dataset.wsUrl : app.dataset.sseUrl,
    transport,
    csrfToken,
    events: ["reasoning"],
    // A prompt left unanswered by a closed socket or a failed POST is looked for in the
    // stored chat first (`settleUnanswered`): the server may run its reply.
    resendUnanswered: false,
    // Three of the server's keep-alives: a stream silent that long is dead (half-open).
    stallTimeout: Number(app.dataset.stallTimeout) || undefined,
    onChunk: (text) => {
      if (stream !== client || !current) return;
      if (current.view.state !== "streaming") {
        current.view.setState("streaming");
        current.view.hideNotice();
      }
      current.view.append(text);
    },
    onEvent: (type, data) => {
      if (stream !== client || !current) return;
      // SSE: a named `reasoning` event; WebSocket: an `event` frame named `reasoning`.
      const payload = type === "event" && data?.name === "reasoning" ? data.data : type === "reasoning" ? data : null;
      if (payload && typeof payload.text === "string") current.view.addReasoning(payload.text);
    },
    onStatus: (status, info) => {
      if (stream === client) showStatus(status, info);
    },
  });
  client = stream;
  return client;
}

/** The connection pill's word on narrow screens, where its label does not fit. */
const CONNECTION_SHORT = new Set(["idle", "connecting", "open", "streaming", "reconnecting", "error"]);

/** The pill is not live (it changes several times a reply): what a user needs to hear,
 * the connection lost, back, or given up, is announced once each (`showStatus`). */
function setConnection(state, label) {
  ui.connection.dataset.state = state;
  ui.connectionLabel.textContent = label;
  ui.connectionShort.textContent = CONNECTION_SHORT.has(state) ? t(`pill.${state}`) : "";
}

/** Whether "Connection lost" was announced, and "Reconnected" or a failure is owed. */
let connectionLost = false;

function connectionBack() {
  if (!connectionLost) return;
  connectionLost = false;
  announce(t("announce.reconnected"));
}

function showStatus(status, info) {
  const name = TRANSPORT_NAMES[clientTransport];
  const ws = clientTransport === "ws";
  switch (status) {
    case "connecting":
      setConnection("connecting", t("connection.connecting", { transport: name }));
      break;
    case "open":
      setConnection("open", current ? t("connection.waiting") : t("connection.open", { transport: name }));
      connectionBack();
      if (current?.view.state === "reconnecting") {
        current.view.setState(current.view.shown ? "streaming" : "waiting");
        current.view.hideNotice();
      }
      break;
    case "streaming":
      setConnection("streaming", t("connection.streaming", { transport: name }));
      connectionBack();
      if (current?.view.state === "reconnecting") current.view.setState("streaming");
      break;
    case "reconnecting": {
      // No delay: the browser's EventSource reconnects by itself, when it sees fit.
      const timed = info.delay !== null;
      const when = { attempt: info.attempt, ...(timed && { seconds: formatSeconds(info.delay / 1000) }) };
      setConnection("reconnecting", t(timed ? "connection.reconnecting_in" : "connection.reconnecting", when));
      if (!connectionLost) announce(t("announce.lost"));
      connectionLost = true;
      if (current) {
        current.view.setState("reconnecting");
        current.view.showNotice(t("error.CONNECTION_LOST"), t(timed ? "notice.reconnecting_in" : "notice.reconnecting", when), {
          kind: "info",
        });
      }
      break;
    }
    case "complete":
    case "cancelled":
    case "detached":
      connectionLost = false;
      setConnection(ws ? "open" : "idle", t(ws ? "connection.open" : "connection.ready", { transport: name }));
      break;
    case "error": {
      const socketUp = ws && client?.connected;
      // Given up: a reply's own alert says so; with none, the announcer does.
      if (connectionLost && !current) announce(t("announce.gave_up"));
      connectionLost = false;
      if (ws && !socketUp) setConnection("error", t("connection.down"));
      else setConnection(ws ? "open" : "idle", t(ws ? "connection.open" : "connection.ready", { transport: name }));
      break;
    }
    case "closed":
      if (connectionLost) announce(t("announce.gave_up"));
      connectionLost = false;
      setConnection("idle", t("connection.ready", { transport: TRANSPORT_NAMES[selectedTransport()] }));
      break;
    default:
      break;
  }
}

/** Switch transport: the old client stops (its reply is cancelled), the new one is ready. */
function useTransport(transport) {
  stopReply();
  clientFor(transport);
  if (transport === "ws") client.connect();
  else setConnection("idle", t("connection.ready", { transport: TRANSPORT_NAMES[transport] }));
  remember();
}

// ------------------------------------------------------------------ scrolling

/** True while the view follows the stream: the user has not scrolled up. */
let following = true;

function isNearBottom() {
  const box = ui.conversation;
  return box.scrollHeight - box.scrollTop - box.clientHeight < 80;
}

function scrollToBottom() {
  ui.conversation.scrollTop = ui.conversation.scrollHeight;
  following = true;
  ui.jump.hidden = true;
}

/** True while a finger is on the conversation. */
let touching = false;

/** Scroll down to the end of a reply that grew, if the view follows it; not while a finger
 * is on the conversation: a drag scrolls a few pixels a frame, and the reply growing each
 * frame would pull the view back down under it before it got far from the bottom. */
function followReply(follow) {
  if (follow && !touching) scrollToBottom();
}

ui.conversation.addEventListener("touchstart", () => (touching = true), { passive: true });
for (const type of ["touchend", "touchcancel"]) {
  ui.conversation.addEventListener(type, () => (touching = false), { passive: true });
}

ui.conversation.addEventListener("scroll", () => {
  following = isNearBottom();
  ui.jump.hidden = following || ui.messages.childElementCount === 0;
});

ui.jump.addEventListener("click", () => {
  scrollToBottom();
  ui.prompt.focus();
});

new ResizeObserver(() => {
  app.style.setProperty("--composer-height", `${ui.composer.offsetHeight}px`);
}).observe(ui.composer);

// -------------------------------------------------------------- conversation

/** The open conversation: {id, title} or null for a new chat not yet sent. */
let active = null;
/** The owner's conversations, newest first: [{id, title, updated}]; the API's pages of
 * them, from the newest, as far as the user asked ("Show older chats"). */
let conversations = [];
/** Where the next page starts (the API's `next`: the last chat listed); null: no more. */
let olderCursor = null;
/** Whether pages past the first are listed (a refresh of the first page keeps them). */
let olderLoaded = false;
/** Counts the chats asked to be shown: a load that returns after another was asked for
 * (a second click in the list, New chat) is dropped, not shown with the newer one; so is
 * a new chat created for a first prompt after the user left it (or pressed Esc). */
let shownRequest = 0;
/** A chat created here for a first prompt whose reply has not ended yet. */
let createdChat = null;
/** A chat created here whose first prompt was refused: nothing of it is stored. */
let unusedChat = null;
/** Where the page of messages before the first one shown ends (the API's `earlier`: that
 * first message's id); null: the chat is shown from its start. */
let earlierCursor = null;
/** The shown chat (`shownRequest`) whose earlier page "Show earlier messages" is asking
 * for now, else null: one asked for in a chat left since does not hold the next one's. */
let loadingEarlier = null;

function userItem(text) {
  const item = ui.userTemplate.content.firstElementChild.cloneNode(true);
  $(".text", item).textContent = text;
  return item;
}

function assistantView() {
  const view = new AssistantMessage(ui.assistantTemplate.content.firstElementChild.cloneNode(true));
  view.reset();
  return view;
}

function addUserMessage(text) {
  const item = userItem(text);
  ui.messages.append(item);
  ui.empty.hidden = true;
  return item;
}

function addAssistantMessage() {
  const view = assistantView();
  ui.messages.append(view.item);
  ui.empty.hidden = true;
  return view;
}

/** Stored `messages` as the page shows them, not yet on it: their items, and the view of
 * the reply of generation `running` (left waiting, to be resumed), if among them. */
function storedItems(messages, running = null) {
  const items = [];
  let resumeView = null;
  for (const message of messages) {
    if (message.role === "user") {
      items.push(userItem(message.content));
      continue;
    }
    if (message.role !== "assistant") continue;
    const view = assistantView();
    items.push(view.item);
    view.generation = message.generation ?? null;
    view.setText(message.content || "");
    view.setReasoning(message.reasoning);
    if (running && message.generation === running) {
      resumeView = view;
      continue;
    }
    view.setState(STATE_OF_STATUS[message.status] || "complete");
    if (message.status === "stopped") view.meta.textContent = t("meta.stopped");
    if (message.status === "failed") {
      view.showNotice(t("notice.failed"), t("notice.model_failed"), { retry: true });
      view.retry.onclick = () => regenerate(view);
    }
  }
  return { items, resumeView };
}

/** Offer the page before the first message shown, while there is one. */
function showEarlierButton(cursor) {
  earlierCursor = cursor ?? null;
  if (loadingEarlier !== shownRequest) {
    loadingEarlier = null; // asked for in a chat since left: its answer is dropped
    ui.earlier.removeAttribute("aria-disabled");
  }
  if (!earlierCursor && ui.earlier.contains(document.activeElement)) {
    ui.conversation.focus({ preventScroll: true }); // not lost to the body with its button
  }
  ui.earlier.hidden = !earlierCursor;
}

/** "Show earlier messages": the page before the first message shown goes above it, and
 * the view stays where it was (what was on screen does not move); announced. */
async function showEarlierMessages() {
  const conversation = active?.id;
  const cursor = earlierCursor;
  const request = shownRequest;
  if (!conversation || !cursor || loadingEarlier === request) return;
  loadingEarlier = request;
  ui.earlier.setAttribute("aria-disabled", "true"); // still focusable, unlike `disabled`
  let data;
  try {
    const query = `?before=${encodeURIComponent(cursor)}`;
    data = await api("GET", `/${encodeURIComponent(conversation)}${query}`);
  } catch (error) {
    if (request === shownRequest) showLoadError(t("load.earlier", { message: error.message }));
    return;
  } finally {
    if (loadingEarlier === request) {
      loadingEarlier = null;
      ui.earlier.removeAttribute("aria-disabled");
    }
  }
  if (request !== shownRequest || earlierCursor !== cursor) return; // another chat meanwhile
  // A failed earlier try's error goes; the notice of a reply running here (`showRunningReply`)
  // stays until that reply ends.
  if (!ui.loadError.dataset.runningIn) hideLoadError();
  const { items } = storedItems(data.messages);
  const box = ui.conversation;
  const fromBottom = box.scrollHeight - box.scrollTop;
  ui.messages.prepend(...items);
  box.scrollTop = box.scrollHeight - fromBottom;
  showEarlierButton(data.earlier);
  updateRegenerate();
  const shown = t("announce.earlier", { count: items.length });
  announce(earlierCursor ? shown : `${shown} ${t("announce.chat_start")}`);
}

function lastAssistant() {
  const items = ui.messages.querySelectorAll(".message[data-role='assistant']");
  return items.length ? items[items.length - 1].view : null;
}

/** Regenerate is offered on the last reply only, and not while one streams; so is Try
 * again on a failed reply (asked again, a reply comes last in the stored chat), but for a
 * reply whose connection was lost: there it asks what became of it. */
function updateRegenerate() {
  const last = lastAssistant();
  for (const item of ui.messages.querySelectorAll(".message[data-role='assistant']")) {
    const view = item.view;
    view.regenerate.hidden = isBusy() || !active || view !== last;
    if (view !== last && !view.lost) view.retry.hidden = true;
  }
}

function setBusy(busy) {
  app.dataset.busy = String(busy);
  ui.send.hidden = busy;
  ui.stop.hidden = !busy;
  updateSendButton();
  updateRegenerate();
  rescueFocus();
}

function updateSendButton() {
  ui.send.disabled = isBusy() || !ui.prompt.value.trim();
}

function titleFrom(prompt) {
  const line = prompt.split("\n").find((part) => part.trim()) || t("chat.untitled");
  const text = line.trim();
  return text.length > TITLE_LENGTH ? `${text.slice(0, TITLE_LENGTH - 1)}…` : text;
}

async function submit() {
  const prompt = ui.prompt.value.trim();
  if (!prompt || isBusy()) return;
  // Send turns into Stop: focus stays in the message box (Esc stops from there).
  if (document.activeElement === ui.send) ui.prompt.focus();
  hideLoadError();
  // The server's limit, counted as it counts (code points): the text stays in its box.
  const length = [...prompt].length;
  const limit = Number(app.dataset.maxPromptLength);
  if (limit && length > limit) {
    showLoadError(t("load.too_long", { count: length, limit }));
    return;
  }
  if (!active) {
    const request = shownRequest;
    creatingChat = true;
    updateSendButton();
    let created;
    try {
      // Untitled: the server names it after the first prompt (shown here meanwhile).
      created = await api("POST", "", {});
    } catch (error) {
      if (request !== shownRequest) return;
      creatingChat = false;
      updateSendButton();
      showLoadError(t("load.new_chat", { message: error.message }));
      return;
    }
    becameOwner();
    if (request !== shownRequest) {
      // Left meanwhile (another chat, New chat, Esc): the chat is dropped, never used;
      // the prompt stays in its box.
      api("DELETE", `/${encodeURIComponent(created.id)}`).catch(() => {});
      return;
    }
    creatingChat = false;
    createdChat = created.id;
    created.title ||= titleFrom(prompt);
    showConversation(created, { push: true });
    conversations = [created, ...conversations.filter((c) => c.id !== created.id)];
    renderConversations();
  }
  ui.prompt.value = "";
  autosize();
  addUserMessage(prompt);
  const view = addAssistantMessage();
  scrollToBottom();
  await run(view, { prompt });
}

/** Stream a reply into `view`: to `prompt`, or `regenerate` the last one, or `resume` it;
 * `resent`: the prompt is sent again, its first sending left unanswered (`settleUnanswered`). */
async function run(view, { prompt = null, regenerate = false, resume = null, resent = false }) {
  const transport = selectedTransport();
  const pipeline = ui.pipeline.value;
  const stream = clientFor(transport);
  const conversation = active?.id;
  // The reply shown before the one asked for: the one Regenerate replaces, else the one
  // before the prompt.
  const before = regenerate ? view : view.item.previousElementSibling?.previousElementSibling?.view;
  const exchange = {
    view, prompt, regenerate, resumed: Boolean(resume), resent, after: before?.generation ?? null,
    pipeline, transport, conversation, started: performance.now(),
  };
  current = exchange;
  setBusy(true);
  view.reset();
  if (resume) {
    exchange.reply = stream.resume(resume);
  } else {
    const params = { pipeline, conversation, ...(regenerate && { regenerate: true }) };
    exchange.reply = stream.send(prompt, params);
  }
  const result = await exchange.reply;
  // Looked up while the page is still busy with it: no other prompt goes out meanwhile.
  const stored = current === exchange && isUnanswered(exchange, result)
    ? await readUnansweredChat(exchange, stream.reconnect)
    : null;
  if (current !== exchange) {
    keepRefusedPrompt(exchange, result);
    // A WebSocket left before the server answered the prompt hears its answer later.
    result.refusal?.then((error) => {
      if (error) keepRefusedPrompt(exchange, { status: "error", error, messageId: null });
    });
    await finish(exchange, result); // left meanwhile (leaveReply): another reply may run
    return;
  }
  current = null;
  setBusy(false);
  if (stored && settleUnanswered(exchange, result, stored)) return;
  if (await refusedAsBusy(exchange, result)) {
    await showRunningReply(exchange);
    return;
  }
  await finish(exchange, result);
  // The notice of a reply running in this chat (`showRunningReply`) goes with the reply
  // it speaks of: its end is announced (`finish`), as the notice was when it came.
  if (exchange.resumed && ui.loadError.dataset.runningIn === conversation) hideLoadError();
  if (active?.id === conversation) refreshConversations();
  rescueFocus();
}

/** Whether the exchange's prompt (or Regenerate) was left unanswered: its WebSocket closed
 * after it left and before any frame answered it, or its POST failed once it may have left
 * and before a byte of its reply (the client's `resendUnanswered: false`). */
function isUnanswered(exchange, result) {
  const unsure = exchange.transport === "ws" || exchange.transport === "sse-post";
  return unsure && !exchange.resumed && result.status === "error"
    && result.messageId === null && result.error.code === "CONNECTION_LOST";
}

/** The end of chat `conversation` as stored (its last prompt and reply), or null when it
 * cannot be read. */
async function readChat(conversation) {
  try {
    return await api("GET", `/${encodeURIComponent(conversation)}?limit=2`);
  } catch {
    return null;
  }
}

/**
 * The end of the chat of an exchange left unanswered (`isUnanswered`). While the server
 * cannot be reached (a restart, the network gone), it is read again after the client's
 * backoff (`reconnect`: its `retries`, `delay` and `maxDelay`; at once when the browser
 * says the network is back), the reply shown reconnecting, as a WebSocket reconnects
 * before it reports such a prompt. Stop, or leaving the chat, ends the wait. Null: the
 * chat could not be read.
 */
async function readUnansweredChat(exchange, reconnect) {
  const retries = reconnect?.retries ?? 0;
  let data = await readChat(exchange.conversation);
  for (let attempt = 1; data === null && attempt <= retries; attempt += 1) {
    const delay = backoffDelay(attempt, reconnect);
    showStatus("reconnecting", { attempt, delay });
    await new Promise((resolve) => {
      const wait = retryAfter(delay, resolve);
      exchange.endWait = () => {
        wait.cancel();
        resolve();
      };
    });
    exchange.endWait = null;
    if (current !== exchange) return null;
    if (!exchange.stopped) data = await readChat(exchange.conversation);
    if (current !== exchange) return data;
    if (data !== null) connectionBack();
    if (data !== null || exchange.stopped || attempt === retries) {
      showStatus("error", {}); // the connection line as the client left it
      return data;
    }
  }
  return data;
}

/**
 * An exchange left unanswered (`isUnanswered`): the server may not have its prompt, or may
 * run its reply, and the prompt sent again would then be refused as a second reply, or,
 * once that reply ended, answered twice. The stored chat (`data`) says which. It ends with
 * the exchange's prompt and a reply that runs, is starting, or has ended (not the reply the
 * page showed before, `exchange.after`): that reply is followed, or shown as stored. Else
 * the server does not have the prompt: with `resend`, it is sent again, once; lost again,
 * it goes back in the message box with a notice (Regenerate fails, with Try again).
 * False: not settled (without `resend`, nothing is sent).
 */
function settleUnanswered(exchange, result, data, { resend = true } = {}) {
  const { view, conversation, prompt } = exchange;
  if (active?.id !== conversation || !view.item.isConnected || isBusy()) return false;
  const asked = prompt ?? $(".text", view.item.previousElementSibling)?.textContent;
  const ours = data.messages.findLast((message) => message.role === "user")?.content === asked;
  const reply = data.messages.at(-1);
  if (ours && data.running) {
    run(view, { resume: data.running });
  } else if (ours && data.starting) {
    followStartingReply(conversation, shownRequest, view);
  } else if (ours && reply?.role === "assistant" && reply.generation !== exchange.after) {
    showStartedReply(conversation, view, data);
  } else if (!resend) {
    return false;
  } else if (!exchange.resent) {
    run(view, { prompt, regenerate: exchange.regenerate, resent: true });
  } else if (prompt !== null) {
    giveBackUnanswered(exchange, result);
  } else {
    return false;
  }
  return true;
}

/**
 * The last reply, failed as an exchange left unanswered (`view.unanswered`), its chat not
 * read then: the chat is read now, and the exchange settled (`settleUnanswered`). Try again
 * (`resend`) may send the prompt again, once, and says so while the chat still cannot be
 * read. The network back (`online`) only follows or shows a reply the server has: else the
 * error stays, with Try again, as no prompt goes out that the user did not ask for again.
 */
async function lookUpUnanswered(view, { resend = true } = {}) {
  const unanswered = view.unanswered;
  if (!unanswered) return;
  const { exchange, result } = unanswered;
  const data = await readChat(exchange.conversation);
  if (view.unanswered !== unanswered || isBusy() || active?.id !== exchange.conversation) return;
  if (!view.item.isConnected || view !== lastAssistant()) return;
  if (data === null) {
    const message = t("notice.try_later", { message: t("api.unreachable") });
    if (resend) view.showNotice(t("notice.offline"), message, { retry: true });
    return;
  }
  settleUnanswered({ ...exchange, resent: false }, result, data, { resend });
}

/** A prompt the server does not have, lost twice on its way: its bubbles go, and it goes
 * back in the message box, with a notice (a chat created for it is left unused). */
function giveBackUnanswered(exchange, result) {
  const { view, conversation } = exchange;
  const asked = view.item.previousElementSibling;
  if (asked?.dataset.role === "user") asked.remove();
  view.item.remove();
  ui.empty.hidden = ui.messages.childElementCount > 0;
  if (conversation === createdChat) {
    createdChat = null;
    unusedChat = conversation;
  }
  restorePrompt(exchange.prompt);
  const { code, message } = result.error;
  const notice = `${t("notice.prompt_refused", { title: t(`error.${code}`) })} ${message} (${code})`;
  showLoadError(notice, { live: false });
  announce(notice);
  updateRegenerate();
}

/**
 * Whether `result` refused the exchange's prompt (or Regenerate) because a reply already
 * runs in its chat, started elsewhere: the same chat open in another tab or window
 * (`CONVERSATION_BUSY`). `EventSource` (transport `sse`) cannot read a refusal: a prompt
 * it could not send (or Regenerate's, whose prompt is the one before its reply) is
 * looked up in the stored chat, refused as busy if a reply runs there that is not the
 * prompt's own (the server may have started it before the connection failed: then its
 * prompt is the last one stored).
 */
async function refusedAsBusy(exchange, result) {
  if (result.status !== "error" || !exchange.conversation || active?.id !== exchange.conversation) return false;
  if (result.error.code === "CONVERSATION_BUSY") return true;
  const unread = exchange.transport === "sse" && result.error.code === "HTTP_ERROR" && result.messageId === null;
  // Regenerate asks again the prompt shown before the reply it replaces.
  const asked = exchange.view.item.previousElementSibling;
  const prompt = exchange.prompt ?? (exchange.regenerate && asked?.dataset.role === "user" ? $(".text", asked).textContent : null);
  if (!unread || prompt === null) return false;
  const request = shownRequest;
  let data;
  try {
    data = await api("GET", `/${encodeURIComponent(exchange.conversation)}`);
  } catch {
    return false;
  }
  // A reply starting there (stored, not yet running: `starting`) is another's as well.
  if (request !== shownRequest || isBusy() || !(data.running || data.starting)) return false;
  const prompts = data.messages.filter((message) => message.role === "user");
  return prompts.at(-1)?.content !== prompt;
}

/**
 * The exchange was refused because another reply runs in its chat (`refusedAsBusy`): its
 * bubbles go, its prompt goes back in the message box, and the chat is opened again,
 * showing that reply's exchange and following it to its end; a notice says why.
 */
async function showRunningReply(exchange) {
  const { view, conversation } = exchange;
  if (conversation === createdChat) createdChat = null;
  if (exchange.prompt !== null) {
    const asked = view.item.previousElementSibling;
    if (asked?.dataset.role === "user") asked.remove();
    view.item.remove();
    restorePrompt(exchange.prompt);
  }
  const opening = openConversation(conversation);
  const request = shownRequest;
  await opening;
  if (request !== shownRequest || active?.id !== conversation) return; // left meanwhile, or it failed
  // That reply ended before the chat was read again: it is shown as stored, and no notice
  // is left of a reply that no longer runs (nothing would take it away); a prompt back in
  // the box is said, once, why it was not sent.
  if (!isBusy()) {
    if (exchange.prompt !== null) sayBusyEnded();
    refreshConversations();
    return;
  }
  // It speaks of the reply followed there and goes when that one ends (`run`): news,
  // said once by the announcer, as a reply's notices that go by themselves are.
  const notice = t(exchange.prompt === null ? "notice.busy" : "notice.busy_prompt");
  showLoadError(notice, { live: false });
  announce(notice);
  ui.loadError.dataset.runningIn = conversation;
  refreshConversations();
}

/**
 * A prompt whose chat was left while its request was on its way (`leaveReply`), refused
 * before its reply started (a reply ran there, `CONVERSATION_BUSY`; a limit, a busy server
 * or store; the connection lost before the server answered; over `EventSource`, which
 * cannot read a refusal, any failure before the reply was named): kept for its chat, in
 * this tab's storage (a reload finds it), and put back in the message box, with why, when
 * that chat is shown again (`restoreRefusedPrompt`): the server stored nothing of it, so
 * the chat shows no trace of it to try again from. The chat shown now keeps its own box.
 */
function keepRefusedPrompt(exchange, result) {
  const { prompt, conversation } = exchange;
  if (prompt === null || !conversation || result.status !== "error" || result.messageId !== null) return;
  const { code, message } = result.error;
  const kept = refusedPrompts.get(conversation);
  const unread = UNANSWERED_CODES.has(code);
  refusedPrompts.delete(conversation); // kept again as the newest
  refusedPrompts.set(conversation, {
    text: kept ? `${kept.text}\n\n${prompt}` : prompt,
    unread: (kept?.unread ?? true) && unread,
    error: { code, message },
  });
  for (const oldest of refusedPrompts.keys()) {
    if (refusedPrompts.size <= KEPT_PROMPTS_MAX) break;
    refusedPrompts.delete(oldest);
  }
  writeKeptPrompts();
  // Back in its chat already (shown again before the refusal came).
  if (active?.id === conversation && app.dataset.loading !== "true") restoreRefusedPrompt(conversation);
}

/**
 * Chat `conversation` is shown (`data`, as stored; none: as it is on the page): a prompt
 * of it refused after it was left (`keepRefusedPrompt`) goes back in the message box, with
 * a notice of why; one whose refusal may not be the server's (`unread`) only if it is not
 * the chat's last stored prompt (the server may have it after all).
 */
function restoreRefusedPrompt(conversation, data = null) {
  const kept = refusedPrompts.get(conversation);
  if (!kept) return;
  refusedPrompts.delete(conversation);
  writeKeptPrompts();
  const prompts = (data?.messages ?? []).filter((message) => message.role === "user");
  if (kept.unread && prompts.at(-1)?.content === kept.text) return;
  restorePrompt(kept.text);
  const { code, message } = kept.error ?? {};
  // Shown already (`data` none), the chat's reply is followed if one runs there.
  const running = data ? Boolean(data.running || data.starting) : Boolean(current?.resumed || awaitingStart);
  // A refusal the client could not read, of a prompt the chat has not, while another reply
  // runs there: refused as busy (`refusedAsBusy` decides so with the chat open).
  if ((code === "CONVERSATION_BUSY" || (kept.unread && data)) && running) {
    // It goes when that reply ends, as the notice of a refusal while the chat was open.
    showLoadError(t("notice.busy_prompt"), { live: false });
    ui.loadError.dataset.runningIn = conversation;
    announce(t("notice.busy_prompt"));
  } else if (code === "CONVERSATION_BUSY") {
    sayBusyEnded();
  } else if (code) {
    const title = STRINGS[`error.${code}`] ? t(`error.${code}`) : t("error.other");
    const notice = `${t("notice.prompt_refused", { title })} ${message} (${code})`;
    showLoadError(notice, { live: false });
    announce(notice);
  }
}

/** A prompt refused because a reply ran in its chat is back in the box, and that reply
 * has ended since: a notice says why the prompt was not sent (no running reply to show). */
function sayBusyEnded() {
  const notice = t("notice.busy_ended");
  showLoadError(notice, { live: false });
  announce(notice);
}

/** The kept prompts of this tab from an earlier page of it (a reload); none when the
 * storage cannot be read (disabled, or private browsing): the page keeps them in memory. */
function readKeptPrompts() {
  try {
    const saved = JSON.parse(sessionStorage.getItem(KEPT_PROMPTS_KEY) || "[]");
    const valid = ([id, kept]) => typeof id === "string" && typeof kept?.text === "string";
    return new Map(Array.isArray(saved) ? saved.filter(valid).slice(-KEPT_PROMPTS_MAX) : []);
  } catch {
    return new Map();
  }
}

/** Write the kept prompts where a reload finds them: the newest, up to KEPT_PROMPTS_MAX_CHARS
 * of text in all. A storage that refuses (full, disabled) leaves them in memory only. */
function writeKeptPrompts() {
  const saved = [];
  let characters = 0;
  for (const entry of [...refusedPrompts].reverse()) {
    characters += entry[1].text.length;
    if (characters > KEPT_PROMPTS_MAX_CHARS) break;
    saved.unshift(entry);
  }
  try {
    if (saved.length) sessionStorage.setItem(KEPT_PROMPTS_KEY, JSON.stringify(saved));
    else sessionStorage.removeItem(KEPT_PROMPTS_KEY);
  } catch {
    // storage full or disabled: the prompts stay in this page's memory
  }
}

/** Put a prompt that was not sent back in the message box: whole in an empty box, else
 * before what the user typed there since (their caret stays where it was in it). */
function restorePrompt(prompt) {
  const typed = ui.prompt.value;
  if (typed.trim() === prompt) return;
  if (!typed.trim()) ui.prompt.value = prompt;
  else ui.prompt.setRangeText(`${prompt}\n\n`, 0, 0, "preserve");
  autosize();
}

/** Show how a reply ended: complete, stopped or failed (with "Try again"). */
async function finish(exchange, result) {
  if (result.status === "detached" || !exchange.view.item.isConnected) {
    // Its chat was left (the view is gone); the server runs the reply on and stores it.
    if (exchange.conversation === createdChat) createdChat = null;
    return;
  }
  const { view, pipeline, transport } = exchange;
  if (result.messageId !== null) view.generation = result.messageId;
  if (exchange.conversation === createdChat || exchange.conversation === unusedChat) {
    // Refused before its turn was stored (or stored since: Try again worked).
    const refused = result.status === "error" && result.messageId === null;
    unusedChat = refused ? exchange.conversation : null;
    createdChat = null;
  }
  const seconds = formatSeconds((performance.now() - exchange.started) / 1000);
  const via = `${TRANSPORT_NAMES[transport]} · ${pipeline}`;
  if (result.status === "complete") {
    await view.drain();
    if (result.text && view.shown !== result.text) view.setText(result.text);
    view.setState("complete");
    view.hideNotice();
    const characters = view.shown.length;
    view.meta.textContent = characters
      ? t("meta.characters", { via, count: characters, seconds })
      : t("meta.empty", { via, seconds });
    announce(finishedSentence(view));
  } else if (result.status === "cancelled") {
    view.flush();
    view.setState("cancelled");
    view.hideNotice();
    view.meta.textContent = t("meta.stopped_after", { via, seconds });
    announce(t("announce.stopped"));
  } else {
    view.flush();
    view.setState("error");
    const { error } = result;
    const title = (STRINGS[`error.${error.code}`] ? t(`error.${error.code}`) : t("error.other"));
    const code = error.cause ? `${error.code}, ${error.cause}` : error.code;
    view.showNotice(title, `${error.message} (${code})`, { retry: !FINAL_CODES.has(error.code) });
    view.meta.textContent = t("meta.failed_after", { via, seconds });
    // A reply that started was stored with its prompt: try it again as a regeneration.
    const stored = result.messageId !== null || !exchange.prompt;
    view.lost = LOST_CODES.has(error.code) && result.messageId !== null ? { id: result.messageId, code: error.code } : null;
    view.unanswered = isUnanswered(exchange, result) ? { exchange, result } : null;
    view.retry.onclick = () => {
      if (isBusy() || active?.id !== exchange.conversation) return;
      if (view.lost) recoverReply(view, { otherwise: "regenerate" });
      else if (view.unanswered) lookUpUnanswered(view);
      else if (view === lastAssistant()) run(view, stored ? { regenerate: true } : { prompt: exchange.prompt });
    };
    // Once only: a resume that failed in turn is not resumed again by itself.
    if (view.lost) recoverReply(view, { resume: !exchange.resumed });
  }
  updateRegenerate();
}

/**
 * A reply whose connection was lost (`view.lost`: its id, and the error's code) may have
 * run on without us: ask the stored conversation. Still running: resume it; finished or
 * stopped: show it as stored. Failed or gone: Try again then asks the model anew, and only
 * on the last reply (a reply asked again comes last in the stored chat). While the server
 * cannot be reached the error stays; `otherwise: "regenerate"` is Try again's: it asks
 * the model anew only when the server answered that the reply failed or is gone.
 */
async function recoverReply(view, { otherwise = null, resume = true } = {}) {
  const lost = view.lost;
  const conversation = active?.id;
  if (!lost || !conversation) return;
  let data;
  try {
    data = await api("GET", `/${encodeURIComponent(conversation)}`);
  } catch (error) {
    if (view.lost !== lost) return;
    if (error.status === 404) {
      view.lost = null;
      view.showNotice(t("notice.chat_gone"), t("notice.chat_deleted"));
      dropConversation(conversation);
      renderConversations();
    } else if (otherwise) {
      const title = t(error.status ? "notice.lookup_failed" : "notice.offline");
      view.showNotice(title, t("notice.try_later", { message: error.message }), { retry: true });
    }
    return;
  }
  if (view.lost !== lost) {
    // Another look-up settled it first (the one the error started, while Try again was
    // clicked): Try again acts on what that one found, instead of doing nothing.
    if (otherwise === "regenerate" && view.state === "error" && !isBusy()) view.retry.onclick?.();
    return;
  }
  // Meanwhile the user may have opened another chat, or asked for another reply.
  if (active?.id !== conversation || !view.item.isConnected || isBusy()) return;
  if (data.running === lost.id) {
    if (resume || otherwise) run(view, { resume: lost.id });
    return;
  }
  view.lost = null;
  const message = data.messages.find((m) => m.role === "assistant" && m.generation === lost.id);
  if (message && (message.status === "complete" || message.status === "stopped")) {
    const stopped = message.status === "stopped";
    view.setText(message.content || "");
    view.setReasoning(message.reasoning);
    view.setState(STATE_OF_STATUS[message.status]);
    view.hideNotice();
    // A stop from another tab, or the server's own: it stops a reply nobody follows.
    view.meta.textContent = stopped
      ? t(lost.code === "ABORTED" ? "meta.stopped" : "meta.stopped_while_lost")
      : t("meta.finished_while_lost");
    announce(stopped ? t("announce.stopped") : finishedSentence(view, { whileLost: true }));
    updateRegenerate();
    return;
  }
  const last = view === lastAssistant();
  view.retry.onclick = () => regenerate(view);
  if (otherwise === "regenerate" && last) {
    run(view, { regenerate: true });
  } else if (otherwise) {
    view.showNotice(
      t(message ? "notice.failed" : "notice.reply_gone"),
      t(message ? "notice.failed_while_lost" : "notice.server_forgot"),
      { retry: last },
    );
  } else if (!last) {
    view.retry.hidden = true;
  }
}

/** Stop the reply; one whose prompt is still looked for in the chat (`readUnansweredChat`)
 * is looked for no more, and fails as it was left. */
function stopReply() {
  if (current?.endWait) {
    current.stopped = true;
    current.endWait();
  } else if (current) {
    client?.cancel();
  }
}

/** Leave the reply on the page running: the server runs it on and stores it, and opening
 * its chat again resumes it (a reload does the same). Its client follows it until the
 * server has its prompt, then closes; the page takes a new client, idle at once. */
function leaveReply() {
  if (!current || !client) return;
  const leaving = client;
  const { conversation, reply } = current;
  current.endWait?.(); // a prompt looked for in its chat (`readUnansweredChat`) no more
  if (conversation && reply) {
    leftReplies.set(conversation, reply);
    reply.finally(() => {
      if (leftReplies.get(conversation) === reply) leftReplies.delete(conversation);
    });
  }
  current = null;
  client = null;
  setBusy(false);
  leaving.detach({ close: true });
  if (clientTransport === "ws") clientFor("ws").connect();
}

function regenerate(view) {
  if (isBusy() || !active || view !== lastAssistant()) return;
  run(view, { regenerate: true });
}

/** Show `conversation` as the open one (title, list highlight, URL). */
function showConversation(conversation, { push = false } = {}) {
  active = conversation ? { id: conversation.id, title: conversation.title } : null;
  updateTitle();
  const url = new URL(location.href);
  if (active) url.searchParams.set("c", active.id);
  else url.searchParams.delete("c");
  if (url.href !== location.href) {
    if (push) history.pushState({ c: active?.id ?? null }, "", url);
    else history.replaceState({ c: active?.id ?? null }, "", url);
  }
  renderConversations();
}

function updateTitle() {
  document.title = active?.title ? `${active.title} · ${baseTitle}` : baseTitle;
}

function clearMessages() {
  for (const item of ui.messages.children) cancelAnimationFrame(item.view?.frame ?? 0);
  ui.messages.replaceChildren();
  showEarlierButton(null);
  ui.empty.hidden = false;
  ui.jump.hidden = true;
  hideLoadError();
}

/** Another chat is to be shown: a chat's load, or a new chat's creation, under way is dropped. */
function nextShown() {
  creatingChat = false;
  awaitingStart = false;
  updateSendButton();
  return ++shownRequest;
}

/** Leaving the shown chat for chat `next` (null: a new one): a chat created here whose
 * first prompt was refused is deleted, unless the server has messages in it after all. */
async function dropUnusedChat(next) {
  const id = unusedChat;
  if (!id || id === next) return;
  unusedChat = null;
  try {
    const data = await api("GET", `/${encodeURIComponent(id)}`);
    if (data.messages.length || data.running) return;
    await api("DELETE", `/${encodeURIComponent(id)}`);
  } catch {
    return; // kept: the list shows it, as any empty chat
  }
  dropConversation(id);
  renderConversations();
}

function newChat({ push = true } = {}) {
  dropUnusedChat(null);
  nextShown();
  app.dataset.loading = "false";
  leaveReply();
  clearMessages();
  showConversation(null, { push });
  closeDrawer();
  ui.prompt.focus();
}

/** Load conversation `id` from the server and show it; resume its reply if one runs. */
async function openConversation(id, { push = false } = {}) {
  dropUnusedChat(id);
  const request = nextShown();
  leaveReply();
  clearMessages();
  ui.empty.hidden = true;
  app.dataset.loading = "true";
  // A prompt sent here just before the chat was left may not be stored yet: its client
  // follows it until the server names its reply (`leaveReply`); the chat is asked for then.
  const left = leftReplies.get(id);
  if (left) {
    await Promise.race([left, new Promise((resolve) => setTimeout(resolve, LEFT_WAIT_MS))]);
    if (request !== shownRequest) return;
  }
  let data;
  try {
    data = await api("GET", `/${encodeURIComponent(id)}`);
  } catch (error) {
    if (request !== shownRequest) return;
    app.dataset.loading = "false";
    showConversation(null, { push });
    ui.empty.hidden = false;
    showLoadError(
      error.status === 404 ? t("load.missing") : t("load.open", { message: error.message }),
    );
    if (error.status === 404) {
      conversations = conversations.filter((c) => c.id !== id);
      renderConversations();
    }
    return;
  }
  becameOwner();
  if (request !== shownRequest) return; // another chat was asked for meanwhile
  showConversation(data, { push });
  restoreRefusedPrompt(id, data);
  // The latest page of its messages; "Show earlier messages" adds the ones before.
  const { items, resumeView } = storedItems(data.messages, data.running);
  ui.messages.append(...items);
  showEarlierButton(data.earlier);
  ui.empty.hidden = ui.messages.childElementCount > 0;
  app.dataset.loading = "false";
  updateRegenerate();
  scrollToBottom();
  if (data.running && !isBusy()) run(resumeView || addAssistantMessage(), { resume: data.running });
  else if (data.starting && !isBusy()) followStartingReply(id, request, addAssistantMessage());
}

/**
 * The open chat's last reply is starting (the API's `starting`: its turn is stored, and
 * it runs in a moment): `view` waits for it, the chat is asked again until it runs, then
 * the reply is followed; one that never ran (lost: the server stores it as failed) is
 * shown as stored. No prompt is sent meanwhile (a second reply would be refused). Each
 * look asks for the last message only (`?limit=1`): whether the reply runs, and the reply
 * as stored if it ended meanwhile (`showStartedReply`), are all it needs.
 */
async function followStartingReply(id, request, view) {
  awaitingStart = true;
  updateSendButton();
  updateRegenerate();
  const until = performance.now() + STARTING_WAIT_MS;
  let running = null;
  let settled = false;
  let latest = null;
  while (!settled && performance.now() < until) {
    await new Promise((resolve) => setTimeout(resolve, STARTING_POLL_MS));
    if (request !== shownRequest || !awaitingStart) return;
    try {
      const data = await api("GET", `/${encodeURIComponent(id)}?limit=1`);
      settled = !data.starting;
      running = data.running;
      latest = data;
    } catch {
      // asked again after a while, until STARTING_WAIT_MS
    }
    if (request !== shownRequest || !awaitingStart) return;
  }
  awaitingStart = false;
  updateSendButton();
  if (running) run(view, { resume: running });
  else if (!(settled && showStartedReply(id, view, latest))) {
    openConversation(id); // it ended without running, or the server is unreachable
  }
}

/**
 * A starting reply that ran and ended between two looks (`followStartingReply`, a short
 * one): shown as stored in the place of `view`, which waited for it; the rest of the page
 * stays as it is (an earlier page shown meanwhile, the reader's place). False when the
 * chat's last stored message is not a reply: the chat is then loaded again.
 */
function showStartedReply(id, view, data) {
  const message = data.messages.at(-1);
  if (message?.role !== "assistant" || !view.item.isConnected) return false;
  const { items } = storedItems([message]);
  const stick = following;
  view.item.replaceWith(items[0]);
  updateRegenerate();
  if (stick) scrollToBottom();
  if (message.status === "complete") announce(finishedSentence(items[0].view));
  else if (message.status === "stopped") announce(t("announce.stopped"));
  // The notice of a reply running here (a prompt refused meanwhile) goes with it.
  if (ui.loadError.dataset.runningIn === id) hideLoadError();
  refreshConversations();
  return true;
}

// --------------------------------------------------------- conversation list

async function refreshConversations() {
  try {
    const data = await api("GET");
    conversations = withOlder(data.conversations);
    if (!olderLoaded) olderCursor = data.next;
    const shown = active && conversations.find((c) => c.id === active.id);
    if (shown?.title && shown.title !== active.title) {
      active.title = shown.title;
      updateTitle();
    }
    renderConversations();
  } catch {
    // the list stays as it was; the next reply refreshes it again
  }
}

/** The first page, then the older chats listed before that still come after it (one
 * newer than the page's last chat yet not on the page was deleted elsewhere). */
function withOlder(first) {
  if (!olderLoaded) return first;
  if (!first.length) {
    olderLoaded = false;
    return first;
  }
  const listed = new Set(first.map((c) => c.id));
  const last = Date.parse(first[first.length - 1].updated);
  return [...first, ...conversations.filter((c) => !listed.has(c.id) && Date.parse(c.updated) <= last)];
}

/** Take a deleted chat off the list. When it was the last one listed, where the older ones
 * start, they now start after the new last one; returns whether it was. */
function dropConversation(id) {
  conversations = conversations.filter((c) => c.id !== id);
  if (olderCursor !== id) return false;
  olderCursor = conversations.at(-1)?.id ?? null;
  return true;
}

/** "Show older chats": the page after the last chat listed. That chat may be gone (deleted
 * in another tab, or here while this was asked; the API answers 404): it is dropped and the
 * page after the new last one is asked for. After `MAX_GONE` such chats in a row the list
 * starts again from the newest. */
async function showOlderConversations() {
  ui.moreConversations.disabled = true;
  try {
    for (let gone = 0; olderCursor; gone++) {
      const cursor = olderCursor;
      try {
        const data = await api("GET", `?before=${encodeURIComponent(cursor)}`);
        const listed = new Set(conversations.map((c) => c.id));
        conversations = [...conversations, ...data.conversations.filter((c) => !listed.has(c.id))];
        olderCursor = data.next;
        olderLoaded = true;
        break;
      } catch (error) {
        if (error.status !== 404) throw error;
        dropConversation(cursor);
        if (!olderCursor || gone + 1 >= MAX_GONE) {
          olderLoaded = false;
          await refreshConversations();
          break;
        }
      }
    }
    renderConversations();
  } catch (error) {
    showLoadError(t("load.older", { message: error.message }));
  } finally {
    ui.moreConversations.disabled = false;
  }
}

function renderConversations() {
  ui.moreConversations.hidden = !olderCursor;
  const focused = document.activeElement?.closest?.(".conversation-item");
  const focusedId = focused?.dataset.id;
  const focusedClass = document.activeElement?.className;
  if (ui.conversations.querySelector(".rename-input, .confirm-delete")) return; // mid-edit
  ui.conversations.replaceChildren(
    ...conversations.map((conversation) => {
      const item = ui.conversationTemplate.content.firstElementChild.cloneNode(true);
      item.dataset.id = conversation.id;
      const link = $(".conversation-link", item);
      link.href = `?c=${encodeURIComponent(conversation.id)}`;
      link.textContent = conversation.title || t("chat.untitled");
      link.title = conversation.title || t("chat.untitled");
      const isActive = active?.id === conversation.id;
      item.classList.toggle("active", isActive);
      if (isActive) link.setAttribute("aria-current", "page");
      $(".rename", item).setAttribute("aria-label", t("chat.rename", { title: link.textContent }));
      $(".delete", item).setAttribute("aria-label", t("chat.delete", { title: link.textContent }));
      return item;
    }),
  );
  if (focusedId) {
    const item = ui.conversations.querySelector(`[data-id="${CSS.escape(focusedId)}"]`);
    const target = item && (item.querySelector(`.${focusedClass?.split(" ").pop()}`) || $(".conversation-link", item));
    target?.focus();
  }
}

function startRename(item) {
  const id = item.dataset.id;
  const conversation = conversations.find((c) => c.id === id);
  if (!conversation) return;
  const input = document.createElement("input");
  input.className = "rename-input";
  input.value = conversation.title || "";
  // Cut to TITLE_MAX characters, once an input method has composed them.
  const cut = () => {
    const characters = [...input.value];
    if (characters.length > TITLE_MAX) input.value = characters.slice(0, TITLE_MAX).join("");
  };
  input.addEventListener("input", (event) => event.isComposing || cut());
  input.addEventListener("compositionend", cut);
  input.setAttribute("aria-label", t("chat.new_name"));
  item.replaceChildren(input);
  input.focus();
  input.select();
  let done = false;
  const end = async (save) => {
    if (done) return;
    done = true;
    const title = input.value.trim();
    item.replaceChildren(); // leaves edit mode, so the list can be drawn again
    if (save && title && title !== conversation.title) {
      try {
        const updated = await api("PATCH", `/${encodeURIComponent(id)}`, { title });
        // The list may have been fetched again meanwhile (a reply ended): name its entry.
        const named = updated?.title ?? title;
        for (const listed of conversations) if (listed.id === id) listed.title = named;
        if (active?.id === id) showConversation({ id, title: named });
      } catch (error) {
        showLoadError(t("load.rename", { message: error.message }));
      }
    }
    renderConversations();
    ui.conversations.querySelector(`[data-id="${CSS.escape(id)}"] .rename`)?.focus();
  };
  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter") {
      event.preventDefault();
      end(true);
    } else if (event.key === "Escape") {
      event.preventDefault();
      event.stopPropagation();
      end(false);
    }
  });
  input.addEventListener("blur", () => end(true));
}

function startDelete(item) {
  const id = item.dataset.id;
  const conversation = conversations.find((c) => c.id === id);
  if (!conversation) return;
  const box = document.createElement("div");
  box.className = "confirm-delete";
  box.setAttribute("role", "group");
  box.setAttribute("aria-label", t("chat.confirm_label"));
  const question = document.createElement("span");
  question.textContent = t("chat.confirm", { title: conversation.title || t("chat.untitled") });
  const yes = document.createElement("button");
  yes.type = "button";
  yes.className = "danger";
  yes.textContent = t("chat.delete_button");
  const no = document.createElement("button");
  no.type = "button";
  no.textContent = t("chat.cancel");
  box.append(question, yes, no);
  item.replaceChildren(box);
  no.focus();
  const cancel = () => {
    item.replaceChildren();
    renderConversations();
    ui.conversations.querySelector(`[data-id="${CSS.escape(id)}"] .delete`)?.focus();
  };
  no.addEventListener("click", cancel);
  box.addEventListener("keydown", (event) => {
    if (event.key === "Escape") {
      event.preventDefault();
      event.stopPropagation();
      cancel();
    }
  });
  yes.addEventListener("click", async () => {
    try {
      await api("DELETE", `/${encodeURIComponent(id)}`);
    } catch (error) {
      if (error.status !== 404) {
        cancel();
        showLoadError(t("load.delete", { message: error.message }));
        return;
      }
    }
    // None listed now, yet older ones may remain: list again.
    if (dropConversation(id) && !olderCursor) refreshConversations();
    item.replaceChildren();
    if (active?.id === id) newChat({ push: false });
    renderConversations();
    // The open chat deleted from the drawer closes it: focus goes to the message box.
    if (drawerOpen() || !narrow.matches) ui.newChat.focus();
    else ui.prompt.focus();
    announce(t("announce.deleted", { title: conversation.title || t("chat.untitled") }));
  });
}

ui.moreConversations.addEventListener("click", showOlderConversations);

ui.conversations.addEventListener("click", (event) => {
  const item = event.target.closest(".conversation-item");
  if (!item) return;
  if (event.target.closest(".rename")) {
    startRename(item);
  } else if (event.target.closest(".delete")) {
    startDelete(item);
  } else if (event.target.closest(".conversation-link")) {
    if (event.ctrlKey || event.metaKey || event.shiftKey || event.button !== 0) return;
    event.preventDefault();
    closeDrawer();
    // The chat shown is opened again while a reply runs in it, or while another loads.
    const loading = app.dataset.loading === "true";
    if (active?.id !== item.dataset.id || current || loading) {
      openConversation(item.dataset.id, { push: true });
    }
    ui.prompt.focus();
  }
});

// ------------------------------------------------------------------ drawer

function drawerOpen() {
  return app.dataset.drawer === "open";
}

const narrow = window.matchMedia("(max-width: 800px)");

/** On narrow screens the chat list is a drawer over the page, which is inert meanwhile. */
function openDrawer() {
  app.dataset.drawer = "open";
  ui.backdrop.hidden = false;
  ui.main.inert = narrow.matches;
  if (narrow.matches) {
    ui.sidebar.setAttribute("role", "dialog");
    ui.sidebar.setAttribute("aria-modal", "true");
  }
  ui.openDrawer.setAttribute("aria-expanded", "true");
  ui.newChat.focus();
}

function closeDrawer({ focus = false } = {}) {
  if (!drawerOpen()) return;
  app.dataset.drawer = "closed";
  ui.backdrop.hidden = true;
  ui.main.inert = false;
  ui.sidebar.removeAttribute("role");
  ui.sidebar.removeAttribute("aria-modal");
  ui.openDrawer.setAttribute("aria-expanded", "false");
  if (focus) ui.openDrawer.focus();
}

ui.openDrawer.addEventListener("click", openDrawer);
ui.closeDrawer.addEventListener("click", () => closeDrawer({ focus: true }));
ui.backdrop.addEventListener("click", () => closeDrawer({ focus: true }));
narrow.addEventListener("change", () => closeDrawer());

/** The open drawer is modal: Tab and Shift+Tab go round inside it. */
ui.sidebar.addEventListener("keydown", (event) => {
  if (event.key !== "Tab" || !drawerOpen() || !narrow.matches) return;
  const stops = [...ui.sidebar.querySelectorAll("a[href], button, input, select, textarea, [tabindex]")].filter(
    (element) => !element.disabled && element.tabIndex >= 0 && element.checkVisibility(),
  );
  if (!stops.length) return;
  const first = stops[0];
  const last = stops[stops.length - 1];
  if (event.shiftKey && document.activeElement === first) {
    event.preventDefault();
    last.focus();
  } else if (!event.shiftKey && document.activeElement === last) {
    event.preventDefault();
    first.focus();
  }
});

// ---------------------------------------------------------------- settings

function settingsOpen() {
  return !ui.settings.hidden;
}

/** The settings fit the window (zoomed in, or a short window): the rest scrolls in them. */
function fitSettings() {
  if (!settingsOpen()) return;
  const top = ui.settings.getBoundingClientRect().top;
  ui.settings.style.maxHeight = `${Math.max(0, Math.floor(window.innerHeight - top - 8))}px`;
}

window.addEventListener("resize", fitSettings);

function toggleSettings(open = !settingsOpen(), { focus = true } = {}) {
  ui.settings.hidden = !open;
  fitSettings();
  ui.settingsButton.setAttribute("aria-expanded", String(open));
  if (open && focus) ui.settings.querySelector("input:checked")?.focus();
  else if (!open && focus) ui.settingsButton.focus();
}

ui.settingsButton.addEventListener("click", () => toggleSettings());
document.addEventListener("pointerdown", (event) => {
  if (settingsOpen() && !event.target.closest(".settings-anchor")) toggleSettings(false, { focus: false });
});

// -------------------------------------------------------------- load errors

/** Show a notice above the message box: an alert, or with `live: false` news the caller
 * has the announcer say once (one that goes by itself, as a reply's info notices). */
function showLoadError(message, { live = true } = {}) {
  ui.loadError.textContent = message;
  if (live) ui.loadError.setAttribute("role", "alert");
  else ui.loadError.removeAttribute("role");
  ui.loadError.hidden = false;
  delete ui.loadError.dataset.runningIn;
}

function hideLoadError() {
  ui.loadError.hidden = true;
  delete ui.loadError.dataset.runningIn;
}

// ----------------------------------------------------------------- composer

function autosize() {
  ui.prompt.style.height = "auto";
  ui.prompt.style.height = `${Math.min(ui.prompt.scrollHeight, 200)}px`;
  updateSendButton();
}

function remember() {
  try {
    localStorage.setItem(
      "streaming-chat",
      JSON.stringify({ transport: selectedTransport(), pipeline: ui.pipeline.value }),
    );
  } catch {
    // storage disabled: nothing to remember
  }
}

function restore() {
  let saved = {};
  try {
    saved = JSON.parse(localStorage.getItem("streaming-chat") || "{}") || {};
  } catch {
    saved = {};
  }
  const params = new URLSearchParams(location.search);
  const transport = params.get("transport") || saved.transport;
  const pipeline = params.get("pipeline") || saved.pipeline;
  if (transport && TRANSPORT_NAMES[transport]) ui.settings.elements.transport.value = transport;
  if (pipeline && STRINGS[`pipeline.${pipeline}`]) ui.pipeline.value = pipeline;
  return params.get("c");
}

function showPipelineHelp() {
  const key = `pipeline.${ui.pipeline.value}`;
  ui.pipelineHelp.textContent = STRINGS[key] ? t(key) : "";
}

ui.composer.addEventListener("submit", (event) => {
  event.preventDefault();
  submit();
});

/** A touch-first screen (a phone, a tablet without trackpad): as in the major chat apps,
 * Enter on its keyboard starts a new line, and Send sends. */
const touchFirst = window.matchMedia("(pointer: coarse) and (hover: none)");

/** The keyboard hint describes the message box only where Enter sends, as it says. */
function describeKeys() {
  if (touchFirst.matches) ui.prompt.removeAttribute("aria-describedby");
  else ui.prompt.setAttribute("aria-describedby", "composer-hint");
}
touchFirst.addEventListener("change", describeKeys);
describeKeys();

ui.prompt.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing && !touchFirst.matches) {
    event.preventDefault();
    submit();
  }
});
ui.prompt.addEventListener("input", autosize);

document.addEventListener("keydown", (event) => {
  if (event.key !== "Escape" || event.defaultPrevented) return;
  if (settingsOpen()) {
    event.preventDefault();
    toggleSettings(false);
  } else if (drawerOpen()) {
    event.preventDefault();
    closeDrawer({ focus: true });
  } else if (current) {
    event.preventDefault();
    stopReply();
  } else if (creatingChat) {
    event.preventDefault();
    nextShown(); // the chat being created for the first prompt is dropped
  }
});

ui.stop.addEventListener("click", (event) => {
  // Stop takes Send's place at once: the second click of a double-click on Send lands
  // here (its `detail` counts the clicks in a row at that spot), and is not a stop.
  if (event.detail > 1) return;
  stopReply();
  ui.prompt.focus();
});
ui.newChat.addEventListener("click", () => newChat());
ui.earlier.addEventListener("click", () => showEarlierMessages());

ui.messages.addEventListener("click", (event) => {
  const button = event.target.closest("button");
  if (!button) return;
  const item = button.closest(".message");
  if (button.classList.contains("copy-code")) {
    copyText(button.closest(".code-block").querySelector("pre").textContent, button);
  } else if (button.classList.contains("copy")) {
    const text = item.view ? item.view.shown : $(".text", item).textContent;
    copyText(text, button);
  } else if (button.classList.contains("regenerate") && item.view) {
    regenerate(item.view);
  }
});

ui.settings.addEventListener("submit", (event) => event.preventDefault());
ui.settings.addEventListener("change", (event) => {
  if (event.target.name === "transport") useTransport(selectedTransport());
  if (event.target === ui.pipeline) {
    showPipelineHelp();
    remember();
  }
});

for (const button of document.querySelectorAll(".suggestion")) {
  button.addEventListener("click", () => {
    ui.prompt.value = button.textContent.trim();
    ui.prompt.focus(); // the suggestions go away with the first message
    submit();
  });
}

// The browser tells us when the network is back: a WebSocket reconnects at once, and a
// reply lost meanwhile is looked up (it may have finished), as is a prompt left unanswered
// once the page gave up reading its chat (the server may have it, and its reply).
window.addEventListener("online", () => {
  if (clientTransport === "ws" && !current) client?.connect();
  for (const item of ui.messages.querySelectorAll(".message[data-role='assistant']")) {
    if (item.view?.lost) recoverReply(item.view);
    else if (item.view?.unanswered) lookUpUnanswered(item.view, { resend: false });
  }
});

window.addEventListener("popstate", () => {
  const id = new URLSearchParams(location.search).get("c");
  if (id) openConversation(id);
  else newChat({ push: false });
});

const opened = restore();
showPipelineHelp();
useTransport(selectedTransport());
setBusy(false);
refreshConversations();
ui.prompt.focus();
if (opened) {
  openConversation(opened).finally(() => {
    app.dataset.ready = "true";
  });
} else {
  app.dataset.ready = "true";
}
