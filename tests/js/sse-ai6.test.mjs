// The HTTP transport's tests again with ai 6 (npm:ai@6.0.326, which declares Node 18+):
// apps still on ai 5/6 speak the same UI message stream protocol (v1).
process.env.AI_PACKAGE = 'ai6';
await import('./sse.test.mjs');
