'use strict';
// MCP conformance of `agent-dispatch serve` (MCP.md section 6), both eras.
const { test, describe } = require('node:test');
const assert = require('node:assert');
const { newEnv, modernMeta, sleep, alive, groupAlive, waitUntil, SUPPORTED, MODERN } = require('./lib');

const TOOL_NAMES = ['list_agents', 'inspect_agent', 'list_groups', 'inspect_group', 'dispatch',
  'dispatch_session', 'dispatch_parallel', 'dispatch_stream', 'dispatch_dialogue', 'add_agent',
  'remove_agent', 'update_agent', 'cache_stats', 'cache_clear'];

function assertError(res, code, id) {
  assert.ok(res.error, `expected an error, got ${JSON.stringify(res)}`);
  assert.strictEqual(res.error.code, code, JSON.stringify(res));
  assert.ok(Number.isInteger(res.error.code));
  assert.strictEqual(typeof res.error.message, 'string');
  assert.ok(!('result' in res));
  if (id !== undefined) assert.strictEqual(res.id, id);
}

/** An env with one agent "a"; returns {env, srv}. */
function serverWithAgent(t, opts = {}) {
  const env = newEnv(t);
  env.setup({ agents: { a: true, b: true }, settings: opts.settings || '' });
  const srv = env.serve({ env: opts.env || {} });
  return { env, srv };
}

describe('framing and process', () => {
  test('1-2: nothing is written before the first request; replies are single JSON lines', async (t) => {
    const { srv } = serverWithAgent(t);
    await sleep(300);
    assert.strictEqual(srv.messages.length, 0);
    const r = await srv.request('ping');
    assert.deepStrictEqual(r.result, {});
    assert.strictEqual(r.jsonrpc, '2.0');
    await srv.close();
  });

  test('3: diagnostics go to stderr only, even with verbose logging', async (t) => {
    const { srv } = serverWithAgent(t, { env: { AGENT_DISPATCH_VERBOSE: '1' } });
    await srv.init();
    const { value } = await srv.call('dispatch', { agent: 'a', task: 'hello' });
    assert.strictEqual(value.success, true);
    await srv.close();
    assert.match(srv.stderr, /Dispatching to a/);
    // every stdout line is checked by the lib: only JSON-RPC objects
    assert.ok(srv.messages.every((m) => m.msg.jsonrpc === '2.0'));
  });

  test('4: empty and whitespace-only lines get no reply', async (t) => {
    const { srv } = serverWithAgent(t);
    srv.write('\n   \n\t\n \r\n');
    const r = await srv.request('ping', undefined, { id: 1 });
    assert.deepStrictEqual(r.result, {});
    await sleep(100);
    assert.strictEqual(srv.messages.length, 1);
    await srv.close();
  });

  test('5: a request ending in CRLF is answered like LF', async (t) => {
    const { srv } = serverWithAgent(t);
    srv.write('{"jsonrpc":"2.0","id":5,"method":"ping"}\r\n');
    const r = await srv.response(5);
    assert.deepStrictEqual(r.result, {});
    await srv.close();
  });

  test('6: split writes are answered once; five pipelined requests all answered', async (t) => {
    const { srv } = serverWithAgent(t);
    const line = '{"jsonrpc":"2.0","id":"split","method":"ping"}\n';
    srv.write(line.slice(0, 17));
    await sleep(150);
    srv.write(line.slice(17));
    await srv.response('split');
    let five = '';
    for (let i = 1; i <= 5; i++) five += JSON.stringify({ jsonrpc: '2.0', id: i, method: 'ping' }) + '\n';
    srv.write(five);
    for (let i = 1; i <= 5; i++) await srv.response(i);
    await sleep(100);
    assert.strictEqual(srv.responsesTo('split').length, 1);
    assert.strictEqual(srv.messages.length, 6);
    await srv.close();
  });

  test('7: an 8 MiB line is processed or rejected, and the server keeps serving', async (t) => {
    const { srv } = serverWithAgent(t);
    const pad = 'x'.repeat(8 << 20);
    srv.send(`{"jsonrpc":"2.0","id":"big","method":"ping","params":{"pad":"${pad}"}}`);
    const r = await srv.response('big', 20000);
    assert.ok(r.result || r.error);
    const p = await srv.request('ping', undefined, { id: 'after' });
    assert.deepStrictEqual(p.result, {});
    await srv.close();
  });

  test('8: invalid UTF-8 gets -32700 with id null and the server keeps serving', async (t) => {
    const { srv } = serverWithAgent(t);
    srv.write(Buffer.concat([Buffer.from('{"jsonrpc":"2.0","id":1,"method":"ping","params":{"x":"'),
      Buffer.from([0xff, 0xfe]), Buffer.from('"}}\n')]));
    const r = await srv.waitFor((m) => m.error);
    assertError(r, -32700, null);
    const p = await srv.request('ping', undefined, { id: 2 });
    assert.deepStrictEqual(p.result, {});
    await srv.close();
  });

  test('9: EOF with nothing in flight exits 0 within 2 s', async (t) => {
    const { srv } = serverWithAgent(t);
    await srv.init();
    const t0 = Date.now();
    const r = await srv.close(2000);
    assert.strictEqual(r.code, 0);
    assert.ok(Date.now() - t0 < 2000);
  });

  for (const how of ['EOF', 'SIGTERM', 'SIGINT', 'SIGHUP']) {
    test(`10: ${how} with a dispatch in flight: exit 0 within 5 s, child group gone`, async (t) => {
      const { env, srv } = serverWithAgent(t);
      await srv.init();
      srv.send({ jsonrpc: '2.0', id: 9, method: 'tools/call',
        params: { name: 'dispatch', arguments: { agent: 'a', task: 'wait [stub:grandchild=30] [stub:hang]' } } });
      assert.ok(await waitUntil(() => env.dispatches().length === 1 && env.grandchildPid(), 5000));
      const stub = env.dispatches()[0];
      const gc = env.grandchildPid();
      assert.ok(alive(stub.pid) && alive(gc));
      const t0 = Date.now();
      if (how === 'EOF') srv.child.stdin.end(); else srv.child.kill(how);
      const r = await Promise.race([srv.exited, sleep(5000).then(() => null)]);
      assert.ok(r, `server still running 5 s after ${how}`);
      // (how it ended and what it said, should it end otherwise)
      assert.strictEqual(r.code, 0, `ended ${JSON.stringify(r)}; stderr:\n${srv.stderr.slice(-4000)}`);
      assert.ok(Date.now() - t0 < 5000);
      assert.ok(await waitUntil(() => !alive(stub.pid) && !alive(gc) && !groupAlive(stub.pgid), 1000),
        'the dispatch child or its grandchild survived');
      // nothing is answered for the cancelled call
      assert.strictEqual(srv.responsesTo(9).length, 0);
    });
  }

  test('10: a child that ignores SIGTERM is still gone within 5 s of EOF', async (t) => {
    const { env, srv } = serverWithAgent(t);
    await srv.init();
    srv.send({ jsonrpc: '2.0', id: 9, method: 'tools/call',
      params: { name: 'dispatch_stream', arguments: { agent: 'a', task: 'stubborn [stub:ignore_term] [stub:hang]' } } });
    assert.ok(await waitUntil(() => env.dispatches().length === 1, 5000));
    await sleep(100); // let the stub install its SIG_IGN
    const stub = env.dispatches()[0];
    const t0 = Date.now();
    srv.child.stdin.end();
    const r = await Promise.race([srv.exited, sleep(5000).then(() => null)]);
    assert.ok(r, 'server still running 5 s after EOF');
    assert.strictEqual(r.code, 0);
    assert.ok(await waitUntil(() => !alive(stub.pid), Math.max(0, 5000 - (Date.now() - t0))), 'child survived');
  });

  test('11: a vanished stdout reader (EPIPE) makes the server exit', async (t) => {
    const { srv } = serverWithAgent(t);
    await srv.init();
    srv.child.stdout.destroy();
    for (let i = 0; i < 50; i++) srv.send({ jsonrpc: '2.0', id: 100 + i, method: 'tools/list' });
    const r = await Promise.race([srv.exited, sleep(5000).then(() => null)]);
    assert.ok(r, 'server kept running after its stdout reader went away');
  });
});

describe('JSON-RPC', () => {
  test('12: truncated JSON gets -32700 id null; the server keeps serving', async (t) => {
    const { srv } = serverWithAgent(t);
    srv.send('{"jsonrpc":"2.0","id":1,"method":"pi');
    const r = await srv.waitFor((m) => m.error);
    assertError(r, -32700, null);
    assert.ok('id' in r);
    assert.deepStrictEqual((await srv.request('ping', undefined, { id: 2 })).result, {});
    await srv.close();
  });

  test('13: non-object JSON gets -32600 id null', async (t) => {
    const { srv } = serverWithAgent(t);
    for (const bad of ['42', '"x"', 'null', 'true']) {
      const before = srv.messages.length;
      srv.send(bad);
      const r = await srv.waitFor((m, rec) => srv.messages.indexOf(rec) >= before);
      assertError(r, -32600, null);
    }
    await srv.close();
  });

  test('14: jsonrpc "1.0" or missing gets -32600', async (t) => {
    const { srv } = serverWithAgent(t);
    srv.send({ jsonrpc: '1.0', id: 1, method: 'ping' });
    assertError(await srv.response(1), -32600, 1);
    srv.send({ id: 2, method: 'ping' });
    assertError(await srv.response(2), -32600, 2);
    await srv.close();
  });

  test('15: ids of invalid type get -32600 with id null, no crash', async (t) => {
    const { srv } = serverWithAgent(t);
    const bad = ['null', 'true', '{"a":1}', '[1]', '1.5'];
    for (const id of bad) srv.send(`{"jsonrpc":"2.0","id":${id},"method":"ping"}`);
    await waitUntil(() => srv.messages.length >= bad.length, 3000);
    assert.strictEqual(srv.messages.length, bad.length);
    for (const m of srv.messages) assertError(m.msg, -32600, null);
    assert.deepStrictEqual((await srv.request('ping', undefined, { id: 3 })).result, {});
    await srv.close();
  });

  test('16-17: unknown method -> -32601 with the id; unknown notification -> nothing', async (t) => {
    const { srv } = serverWithAgent(t);
    await srv.init();
    srv.send({ jsonrpc: '2.0', method: 'notifications/whatever', params: {} });
    srv.send({ jsonrpc: '2.0', method: 'no/such/notification' });
    const r = await srv.request('no/such/method', {}, { id: 'u1' });
    assertError(r, -32601, 'u1');
    await sleep(100);
    assert.strictEqual(srv.messages.length, 2); // initialize + the error
    await srv.close();
  });

  test('18: ids echoed with identical type and value', async (t) => {
    const { srv } = serverWithAgent(t);
    srv.send('{"jsonrpc":"2.0","id":"7","method":"ping"}');
    srv.send('{"jsonrpc":"2.0","id":7,"method":"ping"}');
    srv.send('{"jsonrpc":"2.0","id":9007199254740993,"method":"ping"}');
    srv.send('{"jsonrpc":"2.0","id":-3,"method":"ping"}');
    srv.send('{"jsonrpc":"2.0","id":"","method":"ping"}');
    await waitUntil(() => srv.messages.length >= 5, 3000);
    const raws = srv.messages.map((m) => m.raw);
    assert.ok(raws.some((r) => r.includes('"id":"7"')));
    assert.ok(raws.some((r) => /"id":7[,}]/.test(r)));
    assert.ok(raws.some((r) => r.includes('"id":9007199254740993')), raws.join('\n'));
    assert.ok(raws.some((r) => /"id":-3[,}]/.test(r)));
    assert.ok(raws.some((r) => r.includes('"id":""')));
    assert.ok(!raws.some((r) => r.includes('9007199254740992')));
    await srv.close();
  });

  test('19-20: errors have integer code and string message; one response per request', async (t) => {
    const { srv } = serverWithAgent(t);
    await srv.init();
    const ids = [];
    for (let i = 0; i < 10; i++) {
      const id = `r${i}`;
      ids.push(id);
      srv.send({ jsonrpc: '2.0', id, method: i % 2 ? 'tools/list' : 'bogus' });
    }
    for (const id of ids) await srv.response(id);
    await sleep(150);
    for (const id of ids) assert.strictEqual(srv.responsesTo(id).length, 1);
    for (const m of srv.messages) {
      if (m.msg.error) {
        assert.ok(Number.isInteger(m.msg.error.code));
        assert.strictEqual(typeof m.msg.error.message, 'string');
      }
      assert.ok(!(m.msg.error && m.msg.result));
    }
    await srv.close();
  });

  test('21: a response object from the client is ignored', async (t) => {
    const { srv } = serverWithAgent(t);
    await srv.init();
    srv.send({ jsonrpc: '2.0', id: 55, result: {} });
    srv.send({ jsonrpc: '2.0', id: 56, error: { code: -32601, message: 'x' } });
    await sleep(200);
    assert.strictEqual(srv.messages.length, 1);
    await srv.close();
  });

  test('22: params present but not an object', async (t) => {
    const { srv } = serverWithAgent(t);
    await srv.init();
    srv.send({ jsonrpc: '2.0', id: 1, method: 'tools/list', params: [1, 2] });
    assertError(await srv.response(1), -32602, 1);
    srv.send({ jsonrpc: '2.0', id: 2, method: 'tools/list', params: 'x' });
    assertError(await srv.response(2), -32600, 2);
    srv.send({ jsonrpc: '2.0', id: 3, method: 'tools/list', params: 3 });
    assertError(await srv.response(3), -32600, 3);
    // An empty array is an array too (it decodes as an empty table).
    srv.send('{"jsonrpc":"2.0","id":4,"method":"tools/list","params":[]}');
    assertError(await srv.response(4), -32602, 4);
    srv.send('{"jsonrpc":"2.0","id":5,"method":"tools/list","params": [ ]}');
    assertError(await srv.response(5), -32602, 5);
    srv.send('{"jsonrpc":"2.0","id":6,"method":"tools/list","params":{}}');
    assert.ok((await srv.response(6)).result.tools.length > 0);
    await srv.close();
  });

  test('23: a top-level array gets one -32600 (id null) outside 2025-03-26', async (t) => {
    const { srv } = serverWithAgent(t);
    await srv.init('2025-11-25');
    srv.send('[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","id":2,"method":"ping"}]');
    const r = await srv.waitFor((m) => m.error);
    assertError(r, -32600, null);
    await sleep(150);
    assert.strictEqual(srv.messages.length, 2);
    await srv.close();
  });

  test('23: under 2025-03-26 a batch is processed and answered with one array', async (t) => {
    const { srv } = serverWithAgent(t);
    srv.allowBatch = true;
    await srv.init('2025-03-26');
    srv.send('[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","method":"notifications/x"},' +
      '{"jsonrpc":"2.0","id":2,"method":"tools/list"}]');
    const arr = await srv.waitFor((m) => Array.isArray(m));
    assert.strictEqual(arr.length, 2);
    assert.deepStrictEqual(arr.map((m) => m.id).sort(), [1, 2]);
    // only notifications -> no reply; empty array -> one -32600
    srv.send('[{"jsonrpc":"2.0","method":"notifications/x"}]');
    srv.send('[]');
    const e = await srv.waitFor((m) => !Array.isArray(m) && m.error);
    assertError(e, -32600, null);
    await sleep(150);
    assert.strictEqual(srv.messages.length, 3);
    await srv.close();
  });

  test('23b: under 2025-03-26 a call inside a batch can be cancelled; the batch answers the rest', async (t) => {
    const { env, srv } = serverWithAgent(t);
    srv.allowBatch = true;
    await srv.init('2025-03-26');
    srv.send('[{"jsonrpc":"2.0","id":"long","method":"tools/call","params":{"name":"dispatch",' +
      '"arguments":{"agent":"a","task":"batched [stub:hang]"}}},{"jsonrpc":"2.0","id":7,"method":"ping"}]');
    assert.ok(await waitUntil(() => env.dispatches().length === 1, 10000), 'the batched call did not start');
    const child = env.dispatches()[0];
    srv.send({ jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: 'long', reason: 'changed my mind' } });
    const arr = await srv.waitFor((m) => Array.isArray(m), 10000);
    // The cancelled request gets no response (MCP: the receiver should not
    // answer a cancelled request); the batch still answers the others.
    assert.deepStrictEqual(arr.map((m) => m.id), [7]);
    assert.ok(await waitUntil(() => !groupAlive(child.pgid), 10000), 'the cancelled call\'s child still runs');
    await srv.close();
  });

  test('23c: under 2025-03-26 a resources/subscribe inside a batch delivers its updates', async (t) => {
    const { srv } = serverWithAgent(t);
    srv.allowBatch = true;
    await srv.init('2025-03-26');
    const { value } = await srv.call('dispatch_async', { agent: 'a', task: '[stub:sleep=1] subscribed in a batch' });
    const uri = value.resource;
    srv.send(JSON.stringify([{ jsonrpc: '2.0', id: 'sub', method: 'resources/subscribe', params: { uri } },
      { jsonrpc: '2.0', id: 'p', method: 'ping' }]));
    const arr = await srv.waitFor((m) => Array.isArray(m), 10000);
    assert.deepStrictEqual(arr.map((m) => m.id).sort(), ['p', 'sub']);
    const up = await srv.waitFor((m) => m.method === 'notifications/resources/updated' && m.params.uri === uri, 15000);
    assert.strictEqual(up.params.uri, uri);
    await srv.close();
  });

  test('24: a long tools/call does not delay tools/list or ping', async (t) => {
    const { srv } = serverWithAgent(t);
    await srv.init();
    srv.send({ jsonrpc: '2.0', id: 'long', method: 'tools/call',
      params: { name: 'dispatch', arguments: { agent: 'a', task: 'slow [stub:sleep=1.5]' } } });
    await sleep(200);
    // best of three round trips, so one scheduling hiccup on a loaded
    // machine does not fail the test; a blocked server fails all three
    const best = async (method) => {
      let min = Infinity;
      for (let i = 0; i < 3; i++) {
        const t0 = Date.now();
        await srv.request(method, method === 'ping' ? undefined : {});
        min = Math.min(min, Date.now() - t0);
      }
      return min;
    };
    const tl = await best('tools/list');
    assert.ok(tl < 100, `tools/list took ${tl} ms`);
    const pg = await best('ping');
    assert.ok(pg < 100, `ping took ${pg} ms`);
    assert.strictEqual(srv.responsesTo('long').length, 0);
    const r = await srv.response('long', 5000);
    assert.strictEqual(r.result.isError, false);
    await srv.close();
  });
});

describe('legacy lifecycle', () => {
  for (const v of ['2025-11-25', '2025-06-18', '2025-03-26', '2024-11-05']) {
    test(`25: initialize ${v} is echoed`, async (t) => {
      const { srv } = serverWithAgent(t);
      const r = await srv.init(v);
      assert.strictEqual(r.result.protocolVersion, v);
      await srv.close();
    });
  }

  for (const v of ['1999-01-01', '2026-07-28']) {
    test(`26/83: initialize ${v} gets a 2025-11-25 result`, async (t) => {
      const { srv } = serverWithAgent(t);
      const r = await srv.init(v);
      assert.ok(r.result);
      assert.strictEqual(r.result.protocolVersion, '2025-11-25');
      await srv.close();
    });
  }

  test('27-29: initialize result shape; initialized gets no reply; ping before and after', async (t) => {
    const { srv } = serverWithAgent(t);
    assert.deepStrictEqual((await srv.request('ping', undefined, { id: 'p0' })).result, {});
    const r = await srv.init();
    const res = r.result;
    assert.strictEqual(typeof res.capabilities.tools, 'object');
    assert.strictEqual(res.serverInfo.name, 'agent-dispatch');
    assert.strictEqual(typeof res.serverInfo.version, 'string');
    assert.strictEqual(typeof res.instructions, 'string');
    assert.ok(!('resultType' in res));
    assert.deepStrictEqual((await srv.request('ping', undefined, { id: 'p1' })).result, {});
    await sleep(100);
    assert.strictEqual(srv.messages.length, 3); // no reply to notifications/initialized
    await srv.close();
  });

  test('30: tools/list before initialize gets -32600, then works after', async (t) => {
    const { srv } = serverWithAgent(t);
    assertError(await srv.request('tools/list', {}, { id: 1 }), -32600, 1);
    assertError(await srv.request('tools/call', { name: 'list_agents' }, { id: 2 }), -32600, 2);
    await srv.init();
    const r = await srv.request('tools/list', {}, { id: 3 });
    assert.ok(Array.isArray(r.result.tools));
    await srv.close();
  });

  test('31-32: second initialize -> -32600, version kept; server never sends requests', async (t) => {
    const { srv } = serverWithAgent(t);
    await srv.init('2024-11-05');
    const r = await srv.request('initialize', { protocolVersion: '2025-11-25', capabilities: {},
      clientInfo: { name: 'x', version: '1' } }, { id: 'again' });
    assertError(r, -32600, 'again');
    const tl = await srv.request('tools/list', {}, { id: 'tl' });
    // still 2024-11-05: no annotations/title
    assert.ok(tl.result.tools.every((x) => !('annotations' in x) && !('title' in x)));
    await srv.call('list_agents', {});
    await srv.close();
    assert.ok(srv.messages.every((m) => !('method' in m.msg) || !('id' in m.msg)));
  });
});

describe('tools', () => {
  test('33-34: tools/list shape, stable order, every tool present', async (t) => {
    const { srv } = serverWithAgent(t);
    await srv.init();
    const a = (await srv.request('tools/list', {}, { id: 1 })).result.tools;
    const b = (await srv.request('tools/list', undefined, { id: 2 })).result.tools;
    assert.deepStrictEqual(a, b);
    const names = a.map((x) => x.name);
    let at = -1;
    for (const n of TOOL_NAMES) {
      const i = names.indexOf(n);
      assert.ok(i > at, `${n} missing or out of order in ${names}`);
      at = i;
    }
    assert.strictEqual(new Set(names).size, names.length);
    for (const tool of a) {
      assert.match(tool.name, /^[A-Za-z0-9_.-]{1,128}$/);
      assert.strictEqual(typeof tool.description, 'string');
      assert.strictEqual(tool.inputSchema.type, 'object');
    }
    const d = a.find((x) => x.name === 'dispatch');
    assert.deepStrictEqual(d.inputSchema.required.sort(), ['agent', 'task']);
    assert.strictEqual(d.inputSchema.properties.timeout_seconds.type, 'integer');
    await srv.close();
  });

  test('F02: tools/list has exactly 25 tools (the job, steer, relay, trace and live tools included)', async (t) => {
      const { srv } = serverWithAgent(t);
      await srv.init();
      const tools = (await srv.request('tools/list', {}, { id: 1 })).result.tools;
      await srv.close();
      assert.deepStrictEqual(tools.map((x) => x.name), [...TOOL_NAMES.slice(0, 12), 'dispatch_async',
        'dispatch_status', 'dispatch_wait', 'dispatch_cancel', 'dispatch_steer', 'dispatch_approve',
        'dispatch_jobs', 'fetch_result', 'dispatch_gc', 'dispatch_trace', 'cache_stats', 'cache_clear', 'live_stats']);
    });

  test('35: a bad cursor gets -32602 (both eras)', async (t) => {
    const { srv } = serverWithAgent(t);
    await srv.init();
    assertError(await srv.request('tools/list', { cursor: 'nope' }, { id: 1 }), -32602, 1);
    assertError(await srv.request('tools/list', { cursor: 'nope', _meta: modernMeta() }, { id: 2 }), -32602, 2);
    await srv.close();
  });

  test('36: annotation hints are booleans; 2024-11-05 has no annotations/title/outputSchema', async (t) => {
    const { srv } = serverWithAgent(t);
    await srv.init('2025-06-18');
    const tools = (await srv.request('tools/list', {}, { id: 1 })).result.tools;
    assert.ok(tools.some((x) => x.annotations));
    for (const x of tools) {
      for (const [k, v] of Object.entries(x.annotations || {})) {
        if (k.endsWith('Hint')) assert.strictEqual(typeof v, 'boolean', `${x.name}.${k}`);
      }
    }
    await srv.close();
    const env2 = serverWithAgent(t);
    await env2.srv.init('2024-11-05');
    const old = (await env2.srv.request('tools/list', {}, { id: 1 })).result.tools;
    for (const x of old) {
      assert.ok(!('annotations' in x) && !('title' in x) && !('outputSchema' in x), x.name);
    }
    await env2.srv.close();
  });

  test('37-38: unknown tool, missing name, non-object arguments -> -32602', async (t) => {
    const { srv } = serverWithAgent(t);
    await srv.init();
    const r = await srv.request('tools/call', { name: 'no_such_tool', arguments: {} }, { id: 1 });
    assertError(r, -32602, 1);
    assert.match(r.error.message, /no_such_tool/);
    assertError(await srv.request('tools/call', { arguments: {} }, { id: 2 }), -32602, 2);
    assertError(await srv.request('tools/call', { name: 'dispatch', arguments: [1] }, { id: 3 }), -32602, 3);
    assertError(await srv.request('tools/call', { name: 'dispatch', arguments: 'x' }, { id: 4 }), -32602, 4);
    await srv.close();
  });

  test('39: invalid arguments -> isError result with an explanation', async (t) => {
    const { env, srv } = serverWithAgent(t);
    await srv.init();
    let r = await srv.call('dispatch', { agent: 'a' });
    assert.strictEqual(r.isError, true);
    assert.match(r.value.error, /task/);
    r = await srv.call('dispatch', { agent: 'a', task: 'x', timeout_seconds: 'soon' });
    assert.strictEqual(r.isError, true);
    assert.match(r.value.error, /timeout_seconds/);
    r = await srv.call('dispatch', { agent: 42, task: 'x' });
    assert.strictEqual(r.isError, true);
    assert.match(r.value.error, /agent/);
    assert.strictEqual(env.dispatches().length, 0);
    await srv.close();
  });

  test('40/42: success content; delegated failures are isError results, never -32603', async (t) => {
    const { srv } = serverWithAgent(t);
    await srv.init();
    let r = await srv.call('dispatch', { agent: 'a', task: 'fine' });
    assert.strictEqual(r.isError, false);
    for (const b of r.response.result.content) {
      assert.strictEqual(b.type, 'text');
      assert.strictEqual(typeof b.text, 'string');
    }
    for (const task of ['x [stub:exit=3] [stub:no_result]', 'y [stub:budget]', 'z [stub:is_error]']) {
      r = await srv.call('dispatch', { agent: 'a', task });
      assert.strictEqual(r.isError, true, task);
      assert.strictEqual(r.value.success, false);
    }
    await srv.close();
  });
});

describe('progress', () => {
  for (const token of ['p-1', 7]) {
    test(`43-44: dispatch_stream progress carries token ${JSON.stringify(token)}, increases, stops before the response`, async (t) => {
      const { srv } = serverWithAgent(t);
      await srv.init();
      const r = await srv.call('dispatch_stream', { agent: 'a', task: 'go [stub:progress=3] [stub:interval=0.1]' },
        { id: 'st', meta: { progressToken: token } });
      assert.strictEqual(r.value.success, true);
      await sleep(300);
      const idx = srv.messages.findIndex((m) => m.msg.id === 'st');
      const prog = srv.messages.map((m, i) => ({ ...m, i })).filter((m) => m.msg.method === 'notifications/progress');
      assert.ok(prog.length >= 3, `only ${prog.length} progress notifications`);
      let last = -Infinity;
      for (const p of prog) {
        assert.strictEqual(p.msg.params.progressToken, token);
        assert.ok(p.msg.params.progress > last);
        last = p.msg.params.progress;
        assert.ok(p.i < idx, 'progress after the response');
      }
      await srv.close();
    });
  }

  test('43: a numeric token a double does not keep as printed comes back as the client wrote it', async (t) => {
    const { srv } = serverWithAgent(t);
    await srv.init();
    for (const token of ['123456789012345', '9007199254740993', '-100000000000000', '1.5']) {
      const id = `tok-${token}`;
      srv.write(`{"jsonrpc":"2.0","id":${JSON.stringify(id)},"method":"tools/call","params":{"name":"dispatch_stream",` +
        `"arguments":{"agent":"a","task":"go [stub:progress=2] [stub:interval=0.05]"},"_meta":{"progressToken":${token}}}}\n`);
      assert.ok(await waitUntil(() => srv.responsesTo(id).length === 1, 15000), `no answer for ${token}`);
      const raws = srv.messages.filter((m) => m.msg.method === 'notifications/progress' &&
        m.raw.includes(`"progressToken":${token},`));
      assert.ok(raws.length >= 2, `token ${token} not echoed as written: ` +
        JSON.stringify(srv.messages.filter((m) => m.msg.method === 'notifications/progress').map((m) => m.raw).slice(-3)));
    }
    await srv.close();
  });

  test('45: no progress without a progressToken', async (t) => {
    const { srv } = serverWithAgent(t, { env: { AGENT_DISPATCH_MCP_HEARTBEAT: '0.2' } });
    await srv.init();
    await srv.call('dispatch_stream', { agent: 'a', task: 'go [stub:progress=3] [stub:interval=0.2]' });
    await srv.call('dispatch', { agent: 'a', task: 'slow [stub:sleep=0.7]' });
    assert.strictEqual(srv.notifications('notifications/progress').length, 0);
    await srv.close();
  });

  for (const v of ['2025-11-25', '2024-11-05']) {
    test(`46: heartbeats during a long call (${v}): >= 2, message rules`, async (t) => {
      const { srv } = serverWithAgent(t, { env: { AGENT_DISPATCH_MCP_HEARTBEAT: '0.25' } });
      await srv.init(v);
      const r = await srv.call('dispatch', { agent: 'a', task: 'slow [stub:sleep=1.2]' },
        { meta: { progressToken: 'hb' } });
      assert.strictEqual(r.value.success, true);
      const prog = srv.notifications('notifications/progress');
      assert.ok(prog.length >= 2, `only ${prog.length} heartbeats`);
      for (const p of prog) {
        if (v === '2024-11-05') {
          assert.ok(!('message' in p.msg.params));
        } else {
          assert.strictEqual(typeof p.msg.params.message, 'string');
          assert.ok(p.msg.params.message.length <= 200);
          assert.ok(!/[\r\n]/.test(p.msg.params.message));
        }
      }
      await srv.close();
    });
  }

  test('46: a fan-out with heartbeats between its items: progress only rises, never past its total', async (t) => {
    const { srv } = serverWithAgent(t, { env: { AGENT_DISPATCH_MCP_HEARTBEAT: '0.2' } });
    await srv.init();
    const items = [0.5, 1.1, 1.7, 2.3].map((s, i) => ({ agent: 'a', task: `item ${i} [stub:sleep=${s}]` }));
    const r = await srv.call('dispatch_parallel', { dispatches: JSON.stringify(items) },
      { meta: { progressToken: 'fan' } });
    assert.strictEqual(r.value.length, 4, JSON.stringify(r.value));
    const prog = srv.notifications('notifications/progress').map((p) => p.msg.params);
    assert.ok(prog.length > 6, `premise: heartbeats between the items: ${JSON.stringify(prog)}`);
    let last = 0;
    for (const p of prog) {
      assert.ok(p.progress > last, `progress went from ${last} to ${p.progress}: ${JSON.stringify(prog)}`);
      if (p.total !== undefined) assert.ok(p.progress <= p.total, `past its total: ${JSON.stringify(p)}`);
      last = p.progress;
    }
    assert.deepStrictEqual(prog.filter((p) => Number.isInteger(p.progress)).map((p) => [p.progress, p.total]),
      [[1, 4], [2, 4], [3, 4], [4, 4]]);
    await srv.close();
  });
});

describe('cancellation', () => {
  test('47-48: cancelling an in-flight call: no response, child gone, server still answers', async (t) => {
    const { env, srv } = serverWithAgent(t, { env: { AGENT_DISPATCH_MCP_HEARTBEAT: '0.2' } });
    await srv.init();
    srv.send({ jsonrpc: '2.0', id: 2, method: 'tools/call',
      params: { name: 'dispatch', arguments: { agent: 'a', task: 'w [stub:hang]' }, _meta: { progressToken: 'c' } } });
    assert.ok(await waitUntil(() => env.dispatches().length === 1, 5000));
    const stub = env.dispatches()[0];
    srv.send({ jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: 2, reason: 'test' } });
    const cancelledAt = srv.messages.length;
    assert.ok(await waitUntil(() => !alive(stub.pid) && !groupAlive(stub.pgid), 5000), 'child survived cancel');
    const p = await srv.request('ping', undefined, { id: 3 });
    assert.deepStrictEqual(p.result, {});
    await sleep(600);
    assert.strictEqual(srv.responsesTo(2).length, 0);
    const after = srv.messages.slice(cancelledAt + 1).filter((m) => m.msg.method === 'notifications/progress');
    assert.strictEqual(after.length, 0, 'progress after cancellation');
    // the server can still dispatch
    const r = await srv.call('dispatch', { agent: 'a', task: 'again' });
    assert.strictEqual(r.value.success, true);
    await srv.close();
  });

  test('47b: a cancel right behind its call (the next write): no child runs on, with or without a hand-off', async (t) => {
    const { env, srv } = serverWithAgent(t);
    await srv.init();
    for (let i = 0; i < 4; i++) {
      const id = `early${i}`;
      const args = { agent: 'a', task: `[stub:sleep=30] cancelled early ${i}` };
      if (i % 2) args.handoff_after_seconds = 1;
      srv.write(JSON.stringify({ jsonrpc: '2.0', id, method: 'tools/call', params: { name: 'dispatch', arguments: args } }) + '\n');
      await new Promise((r) => setImmediate(r));
      srv.write(JSON.stringify({ jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: id } }) + '\n');
      await sleep(1500);
      const child = env.dispatches().find((d) => d.prompt.includes(`cancelled early ${i}`));
      if (child) {
        assert.ok(await waitUntil(() => !alive(child.pid) && !groupAlive(child.pgid), 5000),
          `call ${id}: its child runs on after the cancel`);
      }
      assert.strictEqual(srv.responsesTo(id).length, 0, JSON.stringify(srv.responsesTo(id)));
    }
    assert.deepStrictEqual((await srv.request('ping')).result, {});
    await srv.close();
  });

  test('49-50: unknown/finished/malformed cancels are ignored; "2" does not cancel 2', async (t) => {
    const { srv } = serverWithAgent(t);
    await srv.init();
    await srv.request('ping', undefined, { id: 'done' });
    const n = srv.messages.length;
    srv.send({ jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: 'nope' } });
    srv.send({ jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: 'done' } });
    srv.send({ jsonrpc: '2.0', method: 'notifications/cancelled', params: 'garbage' });
    srv.send({ jsonrpc: '2.0', method: 'notifications/cancelled' });
    await sleep(200);
    assert.strictEqual(srv.messages.length, n);
    srv.send({ jsonrpc: '2.0', id: 2, method: 'tools/call',
      params: { name: 'dispatch', arguments: { agent: 'a', task: 'short [stub:sleep=0.5]' } } });
    await sleep(150);
    srv.send({ jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: '2' } });
    const r = await srv.response(2);
    assert.strictEqual(r.result.isError, false);
    await srv.close();
  });

  test('51: a modern cancel (with _meta) cancels a modern call', async (t) => {
    const { env, srv } = serverWithAgent(t);
    srv.send({ jsonrpc: '2.0', id: 'm1', method: 'tools/call',
      params: { name: 'dispatch', arguments: { agent: 'a', task: 'w [stub:hang]' }, _meta: modernMeta() } });
    assert.ok(await waitUntil(() => env.dispatches().length === 1, 5000));
    const stub = env.dispatches()[0];
    srv.send({ jsonrpc: '2.0', method: 'notifications/cancelled',
      params: { requestId: 'm1', reason: 'SdkError: Request timed out', _meta: modernMeta() } });
    assert.ok(await waitUntil(() => !alive(stub.pid), 5000));
    await sleep(300);
    assert.strictEqual(srv.responsesTo('m1').length, 0);
    await srv.close();
  });
});

describe('logging', () => {
  test('52: logging/setLevel info -> {}, loud -> -32602', async (t) => {
    const { srv } = serverWithAgent(t);
    const init = await srv.init();
    assert.ok(init.result.capabilities.logging);
    assert.deepStrictEqual((await srv.request('logging/setLevel', { level: 'info' }, { id: 1 })).result, {});
    assertError(await srv.request('logging/setLevel', { level: 'loud' }, { id: 2 }), -32602, 2);
    await srv.close();
  });

  test('53: info and above before setLevel; after setLevel error, nothing below error', async (t) => {
    const { srv } = serverWithAgent(t);
    await srv.init();
    await srv.call('list_agents', {});
    await srv.call('update_agent', { name: 'a', permission_mode: 'plan' });
    const first = srv.notifications('notifications/message').map((m) => m.msg.params);
    assert.ok(first.some((p) => p.level === 'info' && /Updated agent a: permission_mode/.test(JSON.stringify(p.data))));
    assert.ok(first.every((p) => p.level !== 'debug'));
    srv.messages.length = 0;
    await srv.request('logging/setLevel', { level: 'error' }, { id: 'lv' });
    await srv.call('list_agents', {});
    await srv.call('update_agent', { name: 'a', permission_mode: 'default' });
    assert.strictEqual(srv.notifications('notifications/message').length, 0);
    await srv.request('logging/setLevel', { level: 'info' }, { id: 'lv2' });
    await srv.call('list_agents', {});
    await srv.call('update_agent', { name: 'a', permission_mode: 'plan' });
    const msgs = srv.notifications('notifications/message').map((m) => m.msg.params);
    assert.ok(msgs.some((p) => p.level === 'info' && /Found 2 configured agents/.test(JSON.stringify(p.data))));
    assert.ok(msgs.some((p) => p.level === 'info' && /Updated agent a: permission_mode/.test(JSON.stringify(p.data))));
    await srv.close();
  });

  test('54-55: modern logging only with logLevel; bad logLevel -> -32602; setLevel -> -32601', async (t) => {
    const { srv } = serverWithAgent(t);
    await srv.call('list_agents', {}, { modern: true });
    assert.strictEqual(srv.notifications('notifications/message').length, 0);
    await srv.call('list_agents', {}, { modern: true, meta: { 'io.modelcontextprotocol/logLevel': 'info' } });
    assert.ok(srv.notifications('notifications/message').length >= 1);
    const bad = await srv.request('tools/list', { _meta: modernMeta({ 'io.modelcontextprotocol/logLevel': 'loud' }) }, { id: 'b' });
    assertError(bad, -32602, 'b');
    const sl = await srv.request('logging/setLevel', { level: 'info', _meta: modernMeta() }, { id: 's' });
    assertError(sl, -32601, 's');
    await srv.close();
  });
});

describe('modern core', () => {
  test('56/79: the Claude Code probe gets a DiscoverResult', async (t) => {
    const { srv } = serverWithAgent(t);
    const r = await srv.request('server/discover', { _meta: {
      'io.modelcontextprotocol/protocolVersion': '2026-07-28',
      'io.modelcontextprotocol/clientInfo': { name: 'claude-code', title: 'Claude Code', version: '2.1.328',
        description: "Anthropic's agentic coding tool", websiteUrl: 'https://claude.com/claude-code' },
      'io.modelcontextprotocol/clientCapabilities': { roots: { listChanged: true }, elicitation: { form: {}, url: {} } },
    } }, { id: 'server-discover-probe-1' });
    const d = r.result;
    assert.strictEqual(d.resultType, 'complete');
    assert.ok(d.supportedVersions.includes(MODERN));
    assert.strictEqual(typeof d.capabilities.tools, 'object');
    assert.ok(Number.isInteger(d.ttlMs) && d.ttlMs >= 0);
    assert.ok(['public', 'private'].includes(d.cacheScope));
    const si = d._meta['io.modelcontextprotocol/serverInfo'];
    assert.strictEqual(si.name, 'agent-dispatch');
    assert.strictEqual(typeof si.version, 'string');
    assert.ok(!('serverInfo' in d));
    await srv.close();
  });

  test('57-58/61: modern tools/list and tools/call without initialize', async (t) => {
    const { srv } = serverWithAgent(t);
    const tl = (await srv.request('tools/list', { _meta: modernMeta() }, { id: 1 })).result;
    assert.strictEqual(tl.resultType, 'complete');
    assert.ok(Number.isInteger(tl.ttlMs) && tl.ttlMs >= 0);
    assert.ok(['public', 'private'].includes(tl.cacheScope));
    assert.ok(tl._meta['io.modelcontextprotocol/serverInfo'].name);
    assert.ok(tl.tools.length >= TOOL_NAMES.length);
    const c = await srv.call('dispatch', { agent: 'a', task: 'modern' }, { modern: true });
    assert.strictEqual(c.response.result.resultType, 'complete');
    assert.ok(c.response.result._meta['io.modelcontextprotocol/serverInfo']);
    assert.strictEqual(c.value.result, 'stub ok: modern');
    await srv.close();
  });

  test('59: unsupported protocol version -> -32022 with supported list', async (t) => {
    const { srv } = serverWithAgent(t);
    const disc = (await srv.request('server/discover', { _meta: modernMeta() }, { id: 0 })).result;
    for (const v of ['1900-01-01', '2025-11-25']) {
      const r = await srv.request('tools/list', { _meta: modernMeta({ 'io.modelcontextprotocol/protocolVersion': v }) }, { id: v });
      assertError(r, -32022, v);
      assert.strictEqual(r.error.data.requested, v);
      assert.deepStrictEqual(r.error.data.supported, disc.supportedVersions);
    }
    assert.deepStrictEqual(disc.supportedVersions, SUPPORTED);
    await srv.close();
  });

  test('60: protocolVersion without clientCapabilities -> -32602', async (t) => {
    const { srv } = serverWithAgent(t);
    const r = await srv.request('tools/list', { _meta: { 'io.modelcontextprotocol/protocolVersion': MODERN } }, { id: 1 });
    assertError(r, -32602, 1);
    await srv.close();
  });

  test('62: removed methods with modern _meta -> -32601', async (t) => {
    const { srv } = serverWithAgent(t);
    for (const m of ['ping', 'logging/setLevel', 'resources/subscribe', 'tasks/result']) {
      assertError(await srv.request(m, { _meta: modernMeta() }, { id: m }), -32601, m);
    }
    await srv.close();
  });

  test('63/81: same tool set before/after a legacy initialize; eras side by side', async (t) => {
    const { srv } = serverWithAgent(t);
    const before = (await srv.request('tools/list', { _meta: modernMeta() }, { id: 1 })).result.tools;
    await srv.init();
    const after = (await srv.request('tools/list', { _meta: modernMeta() }, { id: 2 })).result.tools;
    assert.deepStrictEqual(after, before);
    const legacy = (await srv.request('tools/list', {}, { id: 3 })).result;
    assert.ok(!('resultType' in legacy));
    assert.deepStrictEqual(legacy.tools.map((x) => x.name), before.map((x) => x.name));
    const lc = await srv.call('list_agents', {});
    assert.ok(!('resultType' in lc.response.result));
    const mc = await srv.call('list_agents', {}, { modern: true });
    assert.strictEqual(mc.response.result.resultType, 'complete');
    await srv.close();
  });
});

describe('dual era', () => {
  test('80: discover without _meta -> -32602, then the legacy handshake works', async (t) => {
    const { srv } = serverWithAgent(t);
    assertError(await srv.request('server/discover', {}, { id: 'd' }), -32602, 'd');
    await srv.init();
    const r = await srv.request('tools/list', undefined, { id: 't' });
    assert.ok(r.result.tools.length > 0);
    await srv.close();
  });

  test('82: after a DiscoverResult, a legacy tools/list without initialize is still rejected', async (t) => {
    const { srv } = serverWithAgent(t);
    await srv.request('server/discover', { _meta: modernMeta() }, { id: 'd' });
    await srv.call('list_agents', {}, { modern: true });
    assertError(await srv.request('tools/list', {}, { id: 'x' }), -32600, 'x');
    await srv.close();
  });

  test('AGENT_DISPATCH_MCP_ERA=legacy: server/discover -> -32601, initialize works', async (t) => {
    const { srv } = serverWithAgent(t, { env: { AGENT_DISPATCH_MCP_ERA: 'legacy' } });
    assertError(await srv.request('server/discover', { _meta: modernMeta() }, { id: 'server-discover-probe-1' }),
      -32601, 'server-discover-probe-1');
    // A legacy-only server serves nothing before the handshake, 2026
    // metadata or not, and serves the 2025 way after it.
    assertError(await srv.request('tools/list', { _meta: modernMeta() }, { id: 'early' }), -32600, 'early');
    const r = await srv.request('initialize', { protocolVersion: '2025-11-25', capabilities: {},
      clientInfo: { name: 'claude-code', version: '2.1.328' } }, { id: 0 });
    assert.strictEqual(r.result.protocolVersion, '2025-11-25');
    srv.send({ jsonrpc: '2.0', method: 'notifications/initialized' });
    const l = await srv.request('tools/list', { _meta: modernMeta() }, { id: 'after' });
    assert.ok(Array.isArray(l.result.tools), JSON.stringify(l));
    assert.strictEqual(l.result.resultType, undefined, 'served the 2026 way');
    await srv.close();
  });
});
