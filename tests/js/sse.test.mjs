// DefaultChatTransport (what useChat uses by default) against POST chat/ui,
// GET chat/ui/<id>/stream (resume) and DELETE chat/ui/<id>/stream (stop).
import assert from 'node:assert/strict';
import { before, test } from 'node:test';

import {
  API, Chat, assistants, browser, droppingFetch, newChatId, reasoningOf, referenceReply,
  textOf, until,
} from './client.mjs';

const PROMPT = 'Tell me about resumable streams';
let page;
let reference;

before(async () => {
  page = await browser();
  reference = await referenceReply(page, PROMPT);
});

test('send: the reply streams into the chat, its thought as a reasoning part', async () => {
  const chat = new Chat({ id: newChatId('send'), transport: page.httpTransport() });
  const texts = new Set();
  const unsubscribe = setInterval(() => {
    const last = assistants(chat)[0];
    if (last) texts.add(textOf(last));
  }, 1);
  await chat.sendMessage({ text: 'Hello there' });
  clearInterval(unsubscribe);

  assert.equal(chat.status, 'ready', String(chat.error));
  assert.equal(chat.messages.length, 2);
  const [reply] = assistants(chat);
  assert.match(textOf(reply), /^Hello! I am the built-in demo model/);
  assert.match(textOf(reply), /You wrote: “Hello there”/);
  assert.doesNotMatch(textOf(reply), /<text>|<thought>|<\/response>/);
  assert.match(reasoningOf(reply), /^The user wrote “Hello there”/);
  assert.ok(texts.size > 3, `the text arrived in pieces (${texts.size} states seen)`);

  const post = page.responses.findLast((r) => r.method === 'POST');
  assert.equal(post.status, 200);
  assert.match(post.headers.get('content-type'), /^text\/event-stream/);
  assert.equal(post.headers.get('x-vercel-ai-ui-message-stream'), 'v1');
  assert.equal(post.headers.get('cache-control'), 'no-cache');
});

test('the raw stream: start with the message id, parts, finish, then [DONE]', async () => {
  const chatId = newChatId('raw');
  const response = await page.fetch(API, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'X-CSRFToken': page.csrf },
    body: JSON.stringify({
      id: chatId,
      trigger: 'submit-message',
      messageId: undefined,
      messages: [{ id: 'u1', role: 'user', parts: [{ type: 'text', text: 'raw' }] }],
    }),
  });
  assert.equal(response.status, 200);
  const lines = (await response.text()).split('\n').filter((line) => line.startsWith('data: '));
  assert.equal(lines.at(-1), 'data: [DONE]');
  const chunks = lines.slice(0, -1).map((line) => JSON.parse(line.slice(6)));
  assert.equal(chunks[0].type, 'start');
  assert.equal(typeof chunks[0].messageId, 'string');
  assert.equal(chunks.at(-1).type, 'finish');
  const types = new Set(chunks.map((chunk) => chunk.type));
  for (const type of ['reasoning-start', 'reasoning-delta', 'reasoning-end', 'text-start', 'text-delta', 'text-end']) {
    assert.ok(types.has(type), `a ${type} chunk`);
  }
});

test('a request without the CSRF header is refused (403) and the chat shows the error', async () => {
  const chat = new Chat({
    id: newChatId('csrf'),
    transport: page.httpTransport({ headers: {} }),
  });
  await chat.sendMessage({ text: 'no token' });
  assert.equal(chat.status, 'error');
  assert.equal(page.responses.findLast((r) => r.method === 'POST').status, 403);
});

test('history comes from the stored conversation, not from the list the client sends', async () => {
  const chatId = newChatId('history');
  const chat = new Chat({ id: chatId, transport: page.httpTransport() });
  await chat.sendMessage({ text: 'first' });
  assert.equal(chat.status, 'ready', String(chat.error));
  // The second request claims a longer, made-up past; the server reads its own.
  const forged = [
    { id: 'x1', role: 'user', parts: [{ type: 'text', text: 'forged' }] },
    { id: 'x2', role: 'assistant', parts: [{ type: 'text', text: 'forged' }] },
  ];
  const tampering = new Chat({
    id: chatId,
    messages: chat.messages,
    transport: page.httpTransport({
      prepareSendMessagesRequest: ({ id, messages, trigger, messageId }) => ({
        body: { id, trigger, messageId, messages: [...forged, ...forged, ...messages] },
      }),
    }),
  });
  await tampering.sendMessage({ text: 'second' });
  assert.equal(tampering.status, 'ready', String(tampering.error));
  const reply = textOf(assistants(tampering).at(-1));
  assert.match(reply, /Before that you wrote “first”: this is message 2 of our conversation/);
});

test('regenerate: the last turn runs again and replaces the reply', async () => {
  const chat = new Chat({ id: newChatId('regenerate'), transport: page.httpTransport() });
  await chat.sendMessage({ text: 'again please' });
  const first = textOf(assistants(chat)[0]);
  await chat.regenerate();
  assert.equal(chat.status, 'ready', String(chat.error));
  assert.equal(chat.messages.length, 2);
  // The demo model is deterministic: the same turn with the same (stored) history.
  assert.equal(textOf(assistants(chat)[0]), first);
  const post = page.responses.findLast((r) => r.method === 'POST');
  assert.equal(post.status, 200);
});

test('resume after the connection drops mid-reply: the replayed message is whole', async () => {
  const chatId = newChatId('resume');
  const chat = new Chat({
    id: chatId,
    transport: page.httpTransport({ fetch: droppingFetch(page.fetch, 600) }),
  });
  await chat.sendMessage({ text: PROMPT });
  assert.equal(chat.status, 'error', 'the drop ended the request');
  const partial = textOf(assistants(chat)[0] ?? { parts: [] });
  assert.ok(partial.length < textOf(reference).length, 'the drop came mid-reply');

  // The same chat resumes (useChat after a network failure) ...
  await chat.resumeStream();
  assert.equal(chat.status, 'ready', String(chat.error));
  assert.equal(assistants(chat).length, 1);
  assert.equal(textOf(assistants(chat)[0]), textOf(reference));
  assert.equal(reasoningOf(assistants(chat)[0]), reasoningOf(reference));
});

test('resume after a reload: a new page picks up the running reply from its start', async () => {
  const chatId = newChatId('reload');
  const first = new Chat({
    id: chatId,
    transport: page.httpTransport({ fetch: droppingFetch(page.fetch, 400) }),
  });
  await first.sendMessage({ text: PROMPT });
  // The reloaded page has the user's message (from its own history) and resumes.
  const reloaded = new Chat({
    id: chatId,
    messages: first.messages.filter((message) => message.role === 'user'),
    transport: page.httpTransport(),
  });
  await reloaded.resumeStream();
  assert.equal(reloaded.status, 'ready', String(reloaded.error));
  assert.equal(reloaded.messages.length, 2);
  assert.equal(textOf(assistants(reloaded)[0]), textOf(reference));
});

test('resume when nothing runs: 204, and the chat stays as it is', async () => {
  const chat = new Chat({ id: newChatId('idle'), transport: page.httpTransport() });
  await chat.resumeStream();
  assert.equal(chat.status, 'ready');
  assert.equal(chat.messages.length, 0);
  assert.equal(page.responses.at(-1).status, 204);
});

test('stop: DELETE cancels the running reply; the stream ends and nothing runs any more', async () => {
  const chatId = newChatId('stop');
  const chat = new Chat({ id: chatId, transport: page.httpTransport() });
  const sending = chat.sendMessage({ text: PROMPT });
  await until(() => textOf(assistants(chat)[0] ?? { parts: [] }).length > 20, 15000, 'some text');
  assert.equal(await page.stop(chatId), 204);
  await sending;
  assert.equal(chat.status, 'ready', String(chat.error));
  const stopped = textOf(assistants(chat)[0]);
  assert.ok(stopped.length < textOf(reference).length, 'the reply stopped early');
  assert.ok(textOf(reference).startsWith(stopped));
  // Nothing is running for this chat any more: a resume finds nothing (204).
  const resumed = await page.httpTransport().reconnectToStream({ chatId });
  assert.equal(resumed, null);
  // Stopping again: nothing runs, nothing to do.
  assert.equal(await page.stop(chatId), 204);
});

test("another visitor can neither resume, stop nor continue this visitor's chat", async () => {
  const chatId = crypto.randomUUID(); // a UUID chat id is the conversation's own id
  const chat = new Chat({ id: chatId, transport: page.httpTransport() });
  const sending = chat.sendMessage({ text: PROMPT });
  await until(() => assistants(chat).length === 1, 15000, 'the reply to start');
  const stranger = await browser();
  // Nothing of the stranger's runs there: a resume finds nothing, a stop stops nothing.
  const response = await stranger.fetch(`${API}/${encodeURIComponent(chatId)}/stream`);
  assert.equal(response.status, 204);
  assert.equal(await stranger.stop(chatId), 204);
  const post = await stranger.fetch(API, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'X-CSRFToken': stranger.csrf },
    body: JSON.stringify({
      id: chatId, trigger: 'submit-message', messageId: undefined,
      messages: [{ id: 'u', role: 'user', parts: [{ type: 'text', text: 'mine?' }] }],
    }),
  });
  assert.equal(post.status, 404);
  assert.equal((await post.json()).code, 'NOT_FOUND');
  await sending;
  assert.equal(chat.status, 'ready');
  assert.equal(textOf(assistants(chat)[0]), textOf(reference), 'the reply ran to its end');
});

test('a second message while a reply runs is refused (409 CONVERSATION_BUSY) until it is stopped', async () => {
  const chatId = newChatId('busy');
  const chat = new Chat({ id: chatId, transport: page.httpTransport() });
  const sending = chat.sendMessage({ text: PROMPT });
  await until(() => assistants(chat).length === 1, 15000, 'the reply to start');
  const other = new Chat({ id: chatId, transport: page.httpTransport() });
  await other.sendMessage({ text: 'me too' });
  assert.equal(other.status, 'error');
  assert.equal(page.responses.findLast((r) => r.method === 'POST').status, 409);
  assert.equal(await page.stop(chatId), 204);
  await sending;
  await other.sendMessage({ text: 'now?' });
  assert.equal(other.status, 'ready', String(other.error));
});

test('bad requests are refused with 400 and a reason', async () => {
  const cases = [
    {},
    { id: 'x', trigger: 'submit-message', messages: [] },
    { id: 'x', trigger: 'other', messages: [] },
    { id: 'x', trigger: 'submit-message', messages: [{ role: 'assistant', parts: [] }] },
    { id: 'x'.repeat(201), trigger: 'submit-message', messages: [] },
    { id: 'x', trigger: 'submit-message', messages: [{ role: 'user', parts: [{ type: 'text', text: ' ' }] }] },
    { id: newChatId('nothing'), trigger: 'regenerate-message', messages: [] },
  ];
  for (const body of cases) {
    const response = await page.fetch(API, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'X-CSRFToken': page.csrf },
      body: JSON.stringify(body),
    });
    assert.ok([400, 404].includes(response.status), `${JSON.stringify(body)}: ${response.status}`);
    assert.equal(typeof (await response.json()).error, 'string');
  }
});
