'use strict';
// Inputs the fuzz harnesses (fuzz/) found mishandled, kept as end-to-end
// regressions of the built server.
const { test, describe } = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const { newEnv, modernMeta } = require('./lib');

describe('request ids are echoed as sent', () => {
  test('a string id with a lone surrogate escape comes back unchanged', async (t) => {
    const env = newEnv(t);
    env.setup({ agents: { a: true } });
    const srv = env.serve();
    await srv.init();
    // Node reads "\ud800" as a lone surrogate code unit: the reply must
    // carry that very id, not U+FFFD, or the client cannot match it.
    srv.send('{"jsonrpc":"2.0","id":"\\ud800","method":"ping"}');
    const r = await srv.response('\ud800');
    assert.deepStrictEqual(r.result, {});
    srv.send('{"jsonrpc":"2.0","id":"x\\udc00y","method":"tools/call",' +
      '"params":{"name":"list_agents","arguments":{}}}');
    const c = await srv.response('x\udc00y', 15000);
    assert.ok(c.result, JSON.stringify(c));
    // A string id with a comma and spaces is echoed whole, too.
    srv.send('{"jsonrpc":"2.0","id":"a, b } c","method":"ping"}');
    await srv.response('a, b } c');
    // An escaped backslash before a slash stays a backslash: the id is
    // a\/b plus the lone surrogate, not a/b plus it.
    srv.send('{"jsonrpc":"2.0","id":"a\\\\/b\\udc00","method":"ping"}');
    const e = await srv.response('a\\/b\udc00');
    assert.deepStrictEqual(e.result, {});
    await srv.close();
  });

  test('a request with two id members is answered with the id its decoder read (the last)', async (t) => {
    const env = newEnv(t);
    env.setup({ agents: { a: true } });
    const srv = env.serve();
    await srv.init();
    const lines = [];
    srv.child.stdout.on('data', (d) => lines.push(...d.toString().split('\n').filter(Boolean)));
    // A number id echoed digit for digit must be the member the request
    // was read with, not the first one in the text.
    srv.send('{"jsonrpc":"2.0","id":5,"id":7,"method":"ping"}');
    const r = await srv.response(7);
    assert.deepStrictEqual(r.result, {});
    // An object first, then a string with a lone surrogate: the string,
    // as written.
    srv.send('{"jsonrpc":"2.0","id":{"\\ud800x":3},"id":"q\\udc00","method":"ping"}');
    const s = await srv.response('q\udc00');
    assert.deepStrictEqual(s.result, {});
    await srv.close();
    assert.ok(!lines.some((l) => /"id":5[,}]/.test(l) || /"id":\{/.test(l)), lines.join('\n'));
  });

  test('a line with a NUL byte after its object is a parse error, not a request', async (t) => {
    const env = newEnv(t);
    env.setup({ agents: { a: true } });
    const srv = env.serve();
    await srv.init();
    const lines = [];
    srv.child.stdout.on('data', (d) => lines.push(...d.toString().split('\n').filter(Boolean)));
    // The decoder stopped at the NUL and read a ping with id 1; the id's
    // raw text was then looked for in the whole line, and the last "id"
    // (an unterminated string past the NUL) was echoed: not JSON.
    srv.send('{"jsonrpc":"2.0","id":"\\ud800","method":"ping"}\u0000{"id":"}}');
    srv.send('{"jsonrpc":"2.0","id":1,"method":"ping"}\u0000,"id":"}}');
    srv.send({ jsonrpc: '2.0', id: 2, method: 'ping' });
    await srv.response(2);
    await srv.close();
    for (const l of lines) assert.doesNotThrow(() => JSON.parse(l), `not JSON: ${l}`);
    const replies = lines.map((l) => JSON.parse(l)).filter((m) => m.id !== 2);
    assert.deepStrictEqual(replies.map((m) => [m.id, m.error && m.error.code]),
      [[null, -32700], [null, -32700]], lines.join('\n'));
  });
});

describe('an id in use by an open subscription', () => {
  test('a second subscriptions/listen with the same id gets an error reply', async (t) => {
    const env = newEnv(t);
    env.setup({ agents: { a: true } });
    const srv = env.serve();
    const listen = { jsonrpc: '2.0', id: 3, method: 'subscriptions/listen',
      params: { _meta: modernMeta() } };
    srv.send(listen);
    await srv.waitFor((m) => m.method === 'notifications/subscriptions/acknowledged');
    srv.send(listen);
    const r = await srv.response(3);
    assert.ok(r.error, JSON.stringify(r));
    assert.strictEqual(r.error.code, -32600);
    assert.match(r.error.message, /already in use/);
    await srv.close();
    // The first subscription is still answered once when the server stops.
    assert.strictEqual(srv.responsesTo(3).length, 2);
  });
});

describe('agents.yaml edits keep the line breaks YAML counts', () => {
  test('add and remove on a file with lone CR line breaks edit it in place', (t) => {
    const env = newEnv(t);
    const dir = env.project('p');
    // "\r" alone is a line break to YAML: the file holds agents a and b.
    const text = `# my agents\ragents:\r  a:\r    directory: ${dir}   # main\r` +
      `    description: |\r      first\r\r  b:\r    directory: ${dir}\r    timeout: 60\r`;
    env.writeConfig(text);
    const add = env.run(['add', 'c', dir, '-d', 'third']);
    assert.strictEqual(add.code, 0, add.stderr);
    assert.doesNotMatch(add.stderr, /rewritten in full|warning/);
    const added = fs.readFileSync(env.config, 'utf8');
    assert.ok(added.startsWith(text), `not kept:\n${JSON.stringify(added)}`);
    assert.ok(!added.includes('\n'), `another line break:\n${JSON.stringify(added)}`);
    const rm = env.run(['remove', 'b']);
    assert.strictEqual(rm.code, 0, rm.stderr);
    assert.doesNotMatch(rm.stderr, /rewritten in full|warning/);
    const removed = fs.readFileSync(env.config, 'utf8');
    assert.ok(removed.startsWith(`# my agents\ragents:\r  a:\r    directory: ${dir}   # main\r` +
      '    description: |\r      first\r\r  c:\r'), `not kept:\n${JSON.stringify(removed)}`);
    assert.ok(!removed.includes('  b:'), removed);
    const list = env.run(['list', '--json']);
    assert.strictEqual(list.code, 0, list.stderr);
    assert.deepStrictEqual(JSON.parse(list.stdout).map((a) => a.name).sort(), ['a', 'c']);
  });
});
