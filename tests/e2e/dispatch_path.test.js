'use strict';
// The path of one dispatch from its request line to its child: the log line
// a call makes before its child starts reaches the client while the child
// runs (not held until the reply), before the call's reply, in the order
// the calls made them, and never after its call was cancelled; its stderr
// line as well.
const { test, describe } = require('node:test');
const assert = require('node:assert');
const { newEnv, modernMeta, waitUntil } = require('./lib');

function serverWithAgent(t) {
  const env = newEnv(t);
  env.setup({ agents: { a: true } });
  const srv = env.serve({});
  return { env, srv };
}

// Index of the first stdout message matching pred (-1: none).
function indexOf(srv, pred) {
  return srv.messages.findIndex((m) => m.msg && pred(m.msg));
}

const isLog = (text) => (m) => m.method === 'notifications/message' &&
  JSON.stringify(m.params.data).includes(text);

describe('the log line of a dispatch', () => {
  test('is written while the child runs, before the reply, with its stderr line', async (t) => {
    const { srv } = serverWithAgent(t);
    await srv.init();
    const reply = srv.request('tools/call', { name: 'dispatch',
      arguments: { agent: 'a', task: 'slow [stub:sleep=2]', caller: 'c', goal: 'g' } }, { id: 'd1' });
    // The child sleeps 2 s: the notification comes long before its answer.
    assert.ok(await waitUntil(() => indexOf(srv, isLog('Dispatching to a')) >= 0, 1500),
      'the log notification while the child runs');
    assert.strictEqual(indexOf(srv, (m) => m.id === 'd1'), -1, 'no reply yet');
    assert.match(srv.stderr, /INFO Dispatching to a: slow/);
    const r = await reply;
    assert.ok(r.result && r.result.isError === false, JSON.stringify(r));
    assert.ok(indexOf(srv, isLog('Dispatching to a')) < indexOf(srv, (m) => m.id === 'd1'));
    await srv.close();
  });

  test('comes before the reply of every call, one after another and at once', async (t) => {
    const { srv } = serverWithAgent(t);
    await srv.init();
    for (let i = 0; i < 5; i++) {
      await srv.call('dispatch', { agent: 'a', task: `seq ${i}` }, { id: `s${i}` });
    }
    await Promise.all([0, 1, 2, 3, 4].map((i) =>
      srv.call('dispatch', { agent: 'a', task: `par ${i}` }, { id: `p${i}` })));
    for (const [prefix, word] of [['s', 'seq'], ['p', 'par']]) {
      for (let i = 0; i < 5; i++) {
        const log = indexOf(srv, isLog(`Dispatching to a: ${word} ${i}`));
        const res = indexOf(srv, (m) => m.id === `${prefix}${i}`);
        assert.ok(log >= 0 && res > log, `${prefix}${i}: log ${log}, reply ${res}`);
      }
    }
    await srv.close();
  });

  test('a 2026-07-28 call with a log level gets it before its result; without one, none', async (t) => {
    const { srv } = serverWithAgent(t);
    const r1 = await srv.call('dispatch', { agent: 'a', task: 'modern 1' },
      { id: 'm1', meta: modernMeta({ 'io.modelcontextprotocol/logLevel': 'info' }) });
    assert.strictEqual(r1.isError, false);
    const log = indexOf(srv, isLog('Dispatching to a: modern 1'));
    assert.ok(log >= 0 && log < indexOf(srv, (m) => m.id === 'm1'));
    await srv.call('dispatch', { agent: 'a', task: 'modern 2' }, { id: 'm2', modern: true });
    assert.strictEqual(indexOf(srv, isLog('Dispatching to a: modern 2')), -1);
    assert.match(srv.stderr, /INFO Dispatching to a: modern 2/, 'the stderr line all the same');
    await srv.close();
  });

  test('a call cancelled right after its request gets no log notification after the cancellation', async (t) => {
    const { srv } = serverWithAgent(t);
    await srv.init();
    for (let i = 0; i < 5; i++) {
      const id = `c${i}`;
      // Both lines in one write: the cancellation is read right after the
      // request, while the call is starting.
      srv.child.stdin.write(JSON.stringify({ jsonrpc: '2.0', id, method: 'tools/call',
        params: { name: 'dispatch', arguments: { agent: 'a', task: `cancel ${i} [stub:sleep=5]` } } }) +
        '\n' + JSON.stringify({ jsonrpc: '2.0', method: 'notifications/cancelled',
        params: { requestId: id, reason: 'test' } }) + '\n');
    }
    const pong = await srv.request('ping', {}, { id: 'after' });
    assert.deepStrictEqual(pong.result, {});
    await new Promise((r) => setTimeout(r, 300));
    for (let i = 0; i < 5; i++) {
      assert.strictEqual(indexOf(srv, (m) => m.id === `c${i}`), -1, 'no reply to a cancelled call');
    }
    // Any log notification of a cancelled call was written before the
    // server read the cancellation, so before its answer to the ping.
    const pingAt = indexOf(srv, (m) => m.id === 'after');
    for (let i = 0; i < 5; i++) {
      const log = indexOf(srv, isLog(`Dispatching to a: cancel ${i}`));
      assert.ok(log < pingAt, `c${i}: log ${log}, ping reply ${pingAt}`);
    }
    await srv.close();
  });
});
