/**
 * The demo chat page: a conversation streamed by the `streaming` client module.
 *
 * Model text only ever reaches the page through Text nodes (`appendData`, `textContent`),
 * never `innerHTML`: a reply that contains markup is shown as the characters it is.
 */

import { createStream } from "streaming";

const TRANSPORT_NAMES = {
  "sse-post": "SSE POST (fetch)",
  sse: "SSE GET (EventSource)",
  ws: "WebSocket",
};

const PIPELINE_HELP = {
  response: "Only the reply's <text>, and only when its action is REPLY; thought and actions are filtered out.",
  xml: "The content of the <text> element as it streams; everything around it is filtered out.",
  action: "Decides by the reply's shape: XML streams its <text>, JSON nothing, plain text all.",
  passthrough: "The model's reply exactly as it streams, unfiltered (the demo model then answers in plain text).",
};

const ERROR_TITLES = {
  CONNECTION_LOST: "Connection lost",
  NOT_RESUMABLE: "Connection lost mid-reply",
  RESUME_FAILED: "Connection lost mid-reply",
  HTTP_ERROR: "The server refused the request",
  PROTOCOL_ERROR: "Unexpected answer from the server",
  RATE_LIMITED: "Too many messages",
  QUEUE_FULL: "Too many messages",
  PROMPT_TOO_LARGE: "The message is too long",
  UNKNOWN_PIPELINE: "Unknown extractor pipeline",
  BAD_REQUEST: "The server could not read the request",
  TIMEOUT: "The model took too long",
  UPSTREAM_ERROR: "The model failed",
};

const reducedMotion = window.matchMedia("(prefers-reduced-motion: reduce)");

const $ = (selector, root = document) => root.querySelector(selector);

const app = $("#chat");
const ui = {
  connection: $("#connection"),
  connectionLabel: $("#connection .connection-label"),
  settings: $("#settings"),
  pipeline: $("#pipeline"),
  pipelineHelp: $("#pipeline-help"),
  newChat: $("#new-chat"),
  conversation: $("#conversation"),
  empty: $("#empty"),
  messages: $("#messages"),
  composer: $("#composer"),
  prompt: $("#prompt"),
  send: $("#send"),
  stop: $("#stop"),
  userTemplate: $("#user-message"),
  assistantTemplate: $("#assistant-message"),
};

/** One assistant message: its state, and its text revealed smoothly as chunks arrive. */
class AssistantMessage {
  constructor(item) {
    this.item = item;
    this.textBox = $(".text", item);
    this.node = document.createTextNode("");
    this.textBox.append(this.node);
    this.notice = $(".notice", item);
    this.noticeTitle = $(".notice-title", item);
    this.noticeMessage = $(".notice-message", item);
    this.retry = $(".retry", item);
    this.meta = $(".meta", item);
    this.pending = "";
    this.frame = 0;
    this.drained = [];
  }

  /** `waiting` → `streaming` → `complete` | `cancelled` | `error`; `reconnecting` meanwhile. */
  setState(state) {
    this.item.dataset.state = state;
    const busy = state === "waiting" || state === "streaming" || state === "reconnecting";
    this.textBox.setAttribute("aria-busy", String(busy));
  }

  get state() {
    return this.item.dataset.state;
  }

  get shown() {
    return this.node.data;
  }

  reset() {
    cancelAnimationFrame(this.frame);
    this.frame = 0;
    this.pending = "";
    this.node.data = "";
    this.hideNotice();
    this.meta.textContent = "";
    this.setState("waiting");
  }

  /** Queue `text` for display; it is revealed a few characters per frame. */
  append(text) {
    this.pending += text;
    if (reducedMotion.matches || document.hidden) {
      this.flush();
      return;
    }
    if (!this.node.data) {
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
    const follow = isNearBottom();
    this.node.appendData(text);
    if (follow) scrollToBottom();
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
    this.notice.setAttribute("role", kind === "error" ? "alert" : "status");
    this.noticeTitle.textContent = title;
    this.noticeMessage.textContent = message;
    this.retry.hidden = !retry;
  }

  hideNotice() {
    this.notice.hidden = true;
    this.retry.hidden = true;
  }
}

// ---------------------------------------------------------------- connection

let client = null;
let clientTransport = null;
/** The exchange in progress: {view, prompt, pipeline, transport, started}. */
let current = null;

function selectedTransport() {
  return ui.settings.elements.transport.value || "sse-post";
}

function clientFor(transport) {
  if (client && clientTransport === transport) return client;
  client?.close();
  clientTransport = transport;
  client = createStream({
    url: transport === "ws" ? app.dataset.wsUrl : app.dataset.sseUrl,
    transport,
    onChunk: (text) => {
      if (!current) return;
      if (current.view.state !== "streaming") {
        current.view.setState("streaming");
        current.view.hideNotice();
      }
      current.view.append(text);
    },
    onStatus: (status, info) => showStatus(status, info),
  });
  return client;
}

function setConnection(state, label) {
  ui.connection.dataset.state = state;
  ui.connectionLabel.textContent = label;
}

function showStatus(status, info) {
  const name = TRANSPORT_NAMES[clientTransport];
  const ws = clientTransport === "ws";
  switch (status) {
    case "connecting":
      setConnection("connecting", `Connecting · ${name}`);
      break;
    case "open":
      setConnection("open", current ? `Connected · waiting for the model` : `Connected · ${name}`);
      if (current?.view.state === "reconnecting") {
        current.view.setState(current.view.shown ? "streaming" : "waiting");
        current.view.hideNotice();
      }
      break;
    case "streaming":
      setConnection("streaming", `Streaming · ${name}`);
      if (current?.view.state === "reconnecting") current.view.setState("streaming");
      break;
    case "reconnecting": {
      const seconds = (info.delay / 1000).toFixed(1);
      setConnection("reconnecting", `Connection lost · reconnecting in ${seconds} s (attempt ${info.attempt})`);
      if (current) {
        current.view.setState("reconnecting");
        current.view.showNotice(
          "Connection lost",
          `Reconnecting in ${seconds} s (attempt ${info.attempt})…`,
          { kind: "info" },
        );
      }
      break;
    }
    case "complete":
    case "cancelled":
      setConnection(ws ? "open" : "idle", ws ? `Connected · ${name}` : `Ready · ${name}`);
      break;
    case "error": {
      const socketUp = ws && client?.connected;
      if (ws && !socketUp) setConnection("error", "Disconnected · sending reconnects");
      else setConnection(ws ? "open" : "idle", ws ? `Connected · ${name}` : `Ready · ${name}`);
      break;
    }
    case "closed":
      setConnection("idle", `Ready · ${TRANSPORT_NAMES[selectedTransport()]}`);
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
  else setConnection("idle", `Ready · ${TRANSPORT_NAMES[transport]}`);
  remember();
}

// -------------------------------------------------------------- conversation

function isNearBottom() {
  const box = ui.conversation;
  return box.scrollHeight - box.scrollTop - box.clientHeight < 80;
}

function scrollToBottom() {
  ui.conversation.scrollTop = ui.conversation.scrollHeight;
}

function addUserMessage(text) {
  const item = ui.userTemplate.content.firstElementChild.cloneNode(true);
  $(".text", item).textContent = text;
  ui.messages.append(item);
}

function addAssistantMessage() {
  const item = ui.assistantTemplate.content.firstElementChild.cloneNode(true);
  ui.messages.append(item);
  const view = new AssistantMessage(item);
  view.reset();
  return view;
}

function setBusy(busy) {
  app.dataset.busy = String(busy);
  ui.send.hidden = busy;
  ui.stop.hidden = !busy;
  ui.send.disabled = busy;
}

async function submit() {
  const prompt = ui.prompt.value.trim();
  if (!prompt || current) return;
  ui.prompt.value = "";
  autosize();
  ui.empty.hidden = true;
  addUserMessage(prompt);
  const view = addAssistantMessage();
  scrollToBottom();
  await run(view, prompt, ui.pipeline.value, selectedTransport());
}

/** Stream the reply to `prompt` into `view`, then show how it ended. */
async function run(view, prompt, pipeline, transport) {
  const stream = clientFor(transport);
  const exchange = { view, prompt, pipeline, transport, started: performance.now() };
  current = exchange;
  setBusy(true);
  view.reset();
  const result = await stream.send(prompt, { pipeline });
  if (current === exchange) {
    current = null;
    setBusy(false);
  }
  const seconds = ((performance.now() - exchange.started) / 1000).toFixed(1);
  const via = `${TRANSPORT_NAMES[transport]} · ${pipeline}`;
  if (result.status === "complete") {
    await view.drain();
    if (result.text && view.shown !== result.text) view.node.data = result.text;
    view.setState("complete");
    view.hideNotice();
    const characters = view.shown.length;
    view.meta.textContent = characters
      ? `${via} · ${characters} characters in ${seconds} s`
      : `${via} · an empty reply (the pipeline filtered everything out) in ${seconds} s`;
  } else if (result.status === "cancelled") {
    view.flush();
    view.setState("cancelled");
    view.hideNotice();
    view.meta.textContent = `${via} · stopped after ${seconds} s`;
  } else {
    view.flush();
    view.setState("error");
    const { error } = result;
    const title = ERROR_TITLES[error.code] || "Something went wrong";
    const code = error.cause ? `${error.code}, ${error.cause}` : error.code;
    view.showNotice(title, `${error.message} (${code})`, { retry: true });
    view.meta.textContent = `${via} · failed after ${seconds} s`;
    view.retry.onclick = () => {
      if (current) return;
      run(view, prompt, pipeline, selectedTransport());
    };
  }
  if (document.activeElement === document.body) ui.prompt.focus();
}

function stopReply() {
  if (current) client?.cancel();
}

function newChat() {
  stopReply();
  ui.messages.replaceChildren();
  ui.empty.hidden = false;
  ui.prompt.focus();
}

// --------------------------------------------------------------- composer

function autosize() {
  ui.prompt.style.height = "auto";
  ui.prompt.style.height = `${Math.min(ui.prompt.scrollHeight, 200)}px`;
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
  if (pipeline && PIPELINE_HELP[pipeline]) ui.pipeline.value = pipeline;
}

function showPipelineHelp() {
  ui.pipelineHelp.textContent = PIPELINE_HELP[ui.pipeline.value] || "";
}

ui.composer.addEventListener("submit", (event) => {
  event.preventDefault();
  submit();
});

ui.prompt.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    submit();
  }
});
ui.prompt.addEventListener("input", autosize);

document.addEventListener("keydown", (event) => {
  if (event.key === "Escape" && current) {
    event.preventDefault();
    stopReply();
  }
});

ui.stop.addEventListener("click", () => {
  stopReply();
  ui.prompt.focus();
});
ui.newChat.addEventListener("click", newChat);

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
    submit();
  });
}

// The browser tells us when the network is back: a WebSocket reconnects at once.
window.addEventListener("online", () => {
  if (clientTransport === "ws" && !current) client?.connect();
});

restore();
showPipelineHelp();
useTransport(selectedTransport());
setBusy(false);
app.dataset.ready = "true";
ui.prompt.focus();
