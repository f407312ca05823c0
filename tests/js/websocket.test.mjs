// WebSocketChatTransport (with `ws` as Node's WebSocket) against /ws/chat/ui/:
// send, resume after a dropped socket, abort, no-active, several chats on one socket,
// and the raw frames (sequence numbers, lastSequence).
import assert from 'node:assert/strict';
import { before, test } from 'node:test';

import WebSocket from 'ws';

import {
  Chat, WS_URL, assistants, browser, newChatId, reasoningOf, referenceReply, textOf, until,
} from './client.mjs';

const PROMPT = 'Tell me about resumable streams';
let page;
let reference;

before(async () => {
  page = await browser();
  reference = await referenceReply(page, PROMPT);
});

test('send: the reply streams over the socket, with its reasoning', async () => {
  const transport = page.wsTransport();
  try {
    const chat = new Chat({ id: newChatId('ws-send'), transport });
    await chat.sendMessage({ text: PROMPT });
    assert.equal(chat.status, 'ready', String(chat.error));
    assert.equal(textOf(assistants(chat)[0]), textOf(reference));
    assert.equal(reasoningOf(assistants(chat)[0]), reasoningOf(reference));
  } finally {
    transport.close();
  }
});

test('several chats at once on one socket', async () => {
  const transport = page.wsTransport();
  try {
    const chats = [0, 1, 2].map((n) => new Chat({ id: newChatId(`ws-multi${n}`), transport }));
    await Promise.all(chats.map((chat) => chat.sendMessage({ text: PROMPT })));
    for (const chat of chats) {
      assert.equal(chat.status, 'ready', String(chat.error));
      assert.equal(textOf(assistants(chat)[0]), textOf(reference));
    }
    assert.equal(page.sockets.size, 1, 'one socket carried them all');
  } finally {
    transport.close();
  }
});

test('resume after the socket drops mid-reply: the replayed message is whole', async () => {
  const transport = page.wsTransport();
  try {
    const chatId = newChatId('ws-resume');
    const chat = new Chat({ id: chatId, transport });
    const sending = chat.sendMessage({ text: PROMPT });
    await until(() => textOf(assistants(chat)[0] ?? { parts: [] }).length > 20, 15000, 'some text');
    for (const socket of page.sockets) socket.terminate(); // the network goes away
    await sending;
    assert.equal(chat.status, 'error');
    assert.ok(textOf(assistants(chat)[0]).length < textOf(reference).length, 'dropped mid-reply');

    await chat.resumeStream(); // a new socket; the transport asks for a whole replay
    assert.equal(chat.status, 'ready', String(chat.error));
    assert.equal(assistants(chat).length, 1);
    assert.equal(textOf(assistants(chat)[0]), textOf(reference));
    assert.equal(reasoningOf(assistants(chat)[0]), reasoningOf(reference));
  } finally {
    transport.close();
  }
});

test('a reply started over SSE resumes over the socket (the same chat, the same owner)', async () => {
  const chatId = newChatId('cross');
  const http = new Chat({ id: chatId, transport: page.httpTransport() });
  const sending = http.sendMessage({ text: PROMPT });
  await until(() => assistants(http).length === 1, 15000, 'the reply to start');
  const transport = page.wsTransport();
  try {
    const chat = new Chat({ id: chatId, messages: [http.messages[0]], transport });
    await chat.resumeStream();
    assert.equal(chat.status, 'ready', String(chat.error));
    assert.equal(textOf(assistants(chat)[0]), textOf(reference));
  } finally {
    transport.close();
    await sending;
  }
});

test('abort (stop) cancels the reply on the server; a resume then finds nothing', async () => {
  const transport = page.wsTransport();
  try {
    const chatId = newChatId('ws-abort');
    const chat = new Chat({ id: chatId, transport });
    const sending = chat.sendMessage({ text: PROMPT });
    await until(() => textOf(assistants(chat)[0] ?? { parts: [] }).length > 20, 15000, 'some text');
    await chat.stop(); // the transport sends {type: "abort", requestId}
    await sending;
    assert.equal(chat.status, 'ready');
    const stopped = textOf(assistants(chat)[0]);
    assert.ok(stopped.length < textOf(reference).length);
    // The abort frame went first on the same socket and the server finished cancelling
    // before it read the next frame: the resume finds nothing running.
    assert.equal(await transport.reconnectToStream({ chatId }), null);
  } finally {
    transport.close();
  }
});

test('no-active: resuming a chat with nothing running', async () => {
  const transport = page.wsTransport();
  try {
    assert.equal(await transport.reconnectToStream({ chatId: newChatId('ws-idle') }), null);
    const chat = new Chat({ id: newChatId('ws-idle'), transport });
    await chat.resumeStream();
    assert.equal(chat.status, 'ready');
    assert.equal(chat.messages.length, 0);
  } finally {
    transport.close();
  }
});

/** A raw socket of this browser, with its frames in order. */
async function rawSocket() {
  const socket = new page.WebSocket(WS_URL);
  const frames = [];
  socket.on('message', (data) => frames.push(JSON.parse(String(data))));
  await new Promise((resolve, reject) => { socket.once('open', resolve); socket.once('error', reject); });
  const send = (frame) => socket.send(JSON.stringify(frame));
  return { socket, frames, send };
}

const sendFrame = (requestId, id, text) => ({
  type: 'send', requestId, id, trigger: 'submit-message', messageId: undefined,
  messages: [{ id: 'u1', role: 'user', parts: [{ type: 'text', text }] }],
  headers: {}, body: {}, metadata: undefined,
});

test('frames: start, chunks numbered from 0, end; resume with lastSequence sends the rest', async () => {
  const chatId = newChatId('frames');
  const a = await rawSocket();
  a.send(sendFrame('r1', chatId, PROMPT));
  await until(() => a.frames.filter((f) => f.type === 'chunk').length >= 8, 15000, 'chunks');
  a.socket.terminate();
  const first = a.frames.filter((f) => f.type === 'chunk').slice(0, 8);
  assert.equal(a.frames[0].type, 'start');
  assert.equal(a.frames[0].requestId, 'r1');
  assert.deepEqual(first.map((f) => f.sequence), [0, 1, 2, 3, 4, 5, 6, 7]);
  assert.equal(first[0].chunk.type, 'start');

  const b = await rawSocket();
  try {
    b.send({ type: 'resume', requestId: 'r2', id: chatId, lastSequence: 7, headers: {}, body: {} });
    await until(() => b.frames.some((f) => f.type === 'end' || f.type === 'error'), 15000, 'the end');
    assert.equal(b.frames[0].type, 'start');
    const rest = b.frames.filter((f) => f.type === 'chunk');
    assert.equal(rest[0].sequence, 8);
    rest.forEach((f, i) => assert.equal(f.sequence, 8 + i));
    assert.equal(b.frames.at(-1).type, 'end');
    const chunks = [...first, ...rest].map((f) => f.chunk);
    const text = chunks.filter((c) => c.type === 'text-delta').map((c) => c.delta).join('');
    assert.equal(text, textOf(reference));
    assert.equal(chunks.at(-1).type, 'finish');
  } finally {
    b.socket.close();
  }
});

test('frames: a bad frame is answered with an error frame, and the socket stays usable', async () => {
  const s = await rawSocket();
  try {
    s.send({ type: 'send', requestId: 'bad', id: 'x' }); // no messages, trigger, headers …
    s.send({ type: 'resume', requestId: 'idle', id: newChatId('none'), headers: {}, body: {} });
    await until(() => s.frames.length >= 2, 5000, 'two answers');
    assert.deepEqual(s.frames.map((f) => [f.type, f.requestId]), [['error', 'bad'], ['no-active', 'idle']]);
    assert.equal(typeof s.frames[0].errorText, 'string');
  } finally {
    s.socket.close();
  }
});
