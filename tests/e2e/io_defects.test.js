'use strict';
// Input and output edge cases of the server: JSON number and escape
// strictness, NUL bytes in values, argument validation on every route,
// the result cache's memory and the stdio channel under a slow client.
const { test, describe } = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const { spawn } = require('node:child_process');
const { newEnv, sleep, waitUntil, BIN } = require('./lib');

function assertError(res, code) {
  assert.ok(res.error, `expected an error, got ${JSON.stringify(res)}`);
  assert.strictEqual(res.error.code, code, JSON.stringify(res));
}

function serverWithAgent(t, opts = {}) {
  const env = newEnv(t);
  env.setup({ agents: { a: true }, settings: opts.settings || '' });
  const srv = env.serve({ env: opts.env || {} });
  return { env, srv };
}

describe('non-standard JSON numbers', () => {
  test('Infinity, NaN, hex and out-of-range numbers are parse errors (-32700)', async (t) => {
    const { env, srv } = serverWithAgent(t);
    await srv.init();
    const lines = [
      '{"jsonrpc":"2.0","id":1,"method":"ping","params":{"x":Infinity}}',
      '{"jsonrpc":"2.0","id":2,"method":"ping","params":{"x":NaN}}',
      '{"jsonrpc":"2.0","id":3,"method":"ping","params":{"x":0x10}}',
      '{"jsonrpc":"2.0","id":4,"method":"ping","params":{"x":1e309}}',
      '{"jsonrpc":"2.0","id":5,"method":"ping","params":{"x":-1e309}}',
      '{"jsonrpc":"2.0","id":6,"method":"tools/call","params":{"name":"update_agent",' +
        '"arguments":{"name":"a","max_budget_usd":1e309}}}',
    ];
    for (const l of lines) {
      const before = srv.messages.length;
      srv.send(l);
      await waitUntil(() => srv.messages.length > before, 5000);
      const r = srv.messages[srv.messages.length - 1].msg;
      assertError(r, -32700);
      assert.strictEqual(r.id, null, l);
    }
    // Nothing reached the config, and no dispatch gets an infinite cap.
    assert.doesNotMatch(env.readConfig(), /max_budget_usd/);
    const { value } = await srv.call('dispatch', { agent: 'a', task: 'x [stub:echo_argv]' });
    assert.strictEqual(value.success, true);
    assert.doesNotMatch(value.result, /inf/);
    // Ordinary exponents still work.
    const ok = await srv.request('ping', { x: 1e300 });
    assert.deepStrictEqual(ok.result, {});
    await srv.close();
  });

  test('JSON read from a tool argument rejects non-finite numbers too', async (t) => {
    const { srv } = serverWithAgent(t);
    await srv.init();
    const r = await srv.call('dispatch_parallel',
      { dispatches: '[{"agent":"a","task":"x","timeout_seconds":1e999}]' });
    assert.strictEqual(r.isError, true);
    assert.match(r.value.error, /Invalid JSON in dispatches/);
    assert.strictEqual(srv.responsesTo(srv.nextId - 1).length, 1);
    await srv.close();
  });
});

describe('a lone UTF-16 surrogate escape in the CLI output', () => {
  for (const tool of ['dispatch', 'dispatch_stream']) {
    test(`${tool}: the answer and its cost are kept (U+FFFD replaces the escape)`, async (t) => {
      const { srv } = serverWithAgent(t);
      await srv.init();
      const { value } = await srv.call(tool,
        { agent: 'a', task: 'q [stub:reply=the answer] [stub:lone_surrogate] [stub:cost=0.25]' });
      assert.strictEqual(value.success, true, JSON.stringify(value));
      assert.strictEqual(value.result, 'the answer \uFFFD cut');
      assert.strictEqual(value.cost_usd, 0.25);
      await srv.close();
    });
  }

  test('dispatch_async: the job completes with the answer', async (t) => {
    const { srv } = serverWithAgent(t);
    await srv.init();
    const { value: started } = await srv.call('dispatch_async',
      { agent: 'a', task: 'q [stub:reply=async answer] [stub:lone_surrogate] [stub:cost=0.5]' });
    const { value: rec } = await srv.call('dispatch_wait', { job_id: started.job_id, timeout_seconds: 20 },
      { ms: 25000 });
    assert.strictEqual(rec.status, 'done', JSON.stringify(rec));
    assert.strictEqual(rec.result.result, 'async answer \uFFFD cut');
    assert.strictEqual(rec.result.cost_usd, 0.5);
    await srv.close();
  });

  test('a request line with a lone surrogate escape is served, not a parse error', async (t) => {
    const { srv } = serverWithAgent(t);
    await srv.init();
    srv.send('{"jsonrpc":"2.0","id":"s1","method":"ping","params":{"x":"\\ud83d"}}');
    const r = await srv.response('s1');
    assert.deepStrictEqual(r.result, {});
    // An escaped backslash followed by "ud83d" is ordinary text and a real
    // pair stays a pair: both are answered as before.
    const { value } = await srv.call('dispatch',
      { agent: 'a', task: 'x [stub:reply=A \\ud83d B \ud83d\ude00 C \udc00]' });
    assert.strictEqual(value.success, true);
    assert.strictEqual(value.result, 'A \\ud83d B \ud83d\ude00 C \uFFFD');
    await srv.close();
  });
});

module.exports = { serverWithAgent, assertError };
