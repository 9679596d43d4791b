'use strict';
// Input and output edge cases of the server: JSON number and escape
// strictness, NUL bytes in values, argument validation on every route,
// and the stdio channel under a slow client (the result cache's memory:
// cache_memory.test.js).
const { test, describe } = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const { spawn } = require('node:child_process');
const { newEnv, sleep, waitUntil, BIN, SANITIZED } = require('./lib');

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

async function initTasks(srv) {
  const r = await srv.request('initialize', { protocolVersion: '2025-11-25',
    capabilities: { tasks: {} }, clientInfo: { name: 'io-e2e', version: '1' } });
  srv.send({ jsonrpc: '2.0', method: 'notifications/initialized' });
  return r;
}

/** A task-augmented tools/call; returns the CallToolResult's parsed text. */
async function taskCall(srv, name, args) {
  const r = await srv.request('tools/call', { name, arguments: args, task: {} });
  assert.ok(r.result, JSON.stringify(r));
  assert.strictEqual(r.result.isError, true, `expected a refusal, got ${JSON.stringify(r.result)}`);
  return JSON.parse(r.result.content[0].text);
}

describe('NUL bytes in values are refused', () => {
  test('MCP tools: the field is named and nothing is dispatched or saved', async (t) => {
    const { env, srv } = serverWithAgent(t);
    await srv.init();
    const before = env.readConfig();
    const cases = [
      ['dispatch', { agent: 'a', task: 'do it', context: 'x\u0000' }, 'context'],
      ['dispatch', { agent: 'a', task: 'do\u0000 it' }, 'task'],
      ['dispatch_session', { agent: 'a', task: 'go', session_id: '\u0000--help' }, 'session_id'],
      ['dispatch_stream', { agent: 'a', task: 'go', goal: 'g\u0000' }, 'goal'],
      ['dispatch_async', { agent: 'a', task: 'go', caller: '\u0000' }, 'caller'],
      ['update_agent', { name: 'a', disallowed_tools: '\u0000-x' }, 'disallowed_tools'],
      ['add_agent', { name: 'b\u0000', directory: env.root }, 'name'],
    ];
    for (const [tool, args, field] of cases) {
      const r = await srv.call(tool, args);
      assert.strictEqual(r.isError, true, `${tool}: ${r.text}`);
      assert.match(r.value.error, new RegExp(`Invalid arguments for ${tool}: '${field}' must not contain NUL`),
        `${tool}: ${r.text}`);
    }
    const p = await srv.call('dispatch_parallel',
      { dispatches: JSON.stringify([{ agent: 'a', task: 'ok' }, { agent: 'a', task: 't', context: 'c\u0000' }]) });
    assert.strictEqual(p.isError, true, p.text);
    assert.match(p.value.error, /dispatches\[1\]\.context must not contain NUL/);
    const d = await srv.call('dispatch_dialogue', { requester: 'a', responder: 'a', topic: 't\u0000' });
    assert.strictEqual(d.isError, true, d.text);
    assert.match(d.value.error, /'topic' must not contain NUL/);
    assert.strictEqual(env.dispatches().length, 0);
    assert.strictEqual(env.readConfig(), before);
    await srv.close();
  });

  test('MCP tasks: the same refusal as the tools route', async (t) => {
    const { env, srv } = serverWithAgent(t);
    await initTasks(srv);
    const v = await taskCall(srv, 'dispatch', { agent: 'a', task: 'go', context: 'x\u0000' });
    assert.match(v.error, /Invalid arguments for dispatch: 'context' must not contain NUL/);
    const w = await taskCall(srv, 'dispatch_async', { agent: 'a', task: 'go\u0000' });
    assert.match(w.error, /Invalid arguments for dispatch_async: 'task' must not contain NUL/);
    assert.strictEqual(env.dispatches().length, 0);
    await srv.close();
  });

  test('run API: the script gets an error naming the field; nothing is dispatched', (t) => {
    const env = newEnv(t);
    env.setup({ agents: { a: true } });
    const script = `${env.root}/nul.lua`;
    fs.writeFileSync(script, [
      'local ad = require "agent_dispatch"',
      'local function try(f, spec) local ok, e = pcall(f, spec) print(ok, e) end',
      'try(ad.dispatch, { agent = "a", task = "t", context = "x\\0" })',
      'try(ad.session, { agent = "a", task = "t", session_id = "\\0--help" })',
      'try(ad.async, { agent = "a", task = "t\\0" })',
      'try(ad.parallel, { { agent = "a", task = "t", goal = "\\0" } })',
      'try(ad.dialogue, { requester = "a", responder = "a", topic = "\\0" })',
    ].join('\n'));
    const r = env.run(['run', script]);
    const lines = r.stdout.trim().split('\n');
    assert.strictEqual(lines.length, 5, r.stdout + r.stderr);
    for (const l of lines) assert.match(l, /^false\t.*must not contain NUL/, l);
    assert.match(lines[0], /'context'/);
    assert.match(lines[1], /'session_id'/);
    assert.match(lines[2], /'task'/);
    assert.match(lines[3], /goal/);
    assert.match(lines[4], /'topic'/);
    assert.strictEqual(env.dispatches().length, 0);
  });

  test('CLI and the argv builder: a NUL from agents.yaml never becomes an argument', async (t) => {
    const env = newEnv(t);
    const dir = env.project('a');
    env.writeConfig(`agents:\n  a:\n    directory: ${JSON.stringify(dir)}\n` +
      '    disallowed_tools: ["\\0-x"]\n    model: "son\\0net"\n');
    const r = env.run(['test', 'a', 'hello']);
    assert.notStrictEqual(r.code, 0, r.stdout);
    assert.match(r.stdout + r.stderr, /NUL/);
    assert.strictEqual(env.dispatches().length, 0);
  });
});

describe('every route validates arguments the same way', () => {
  test('MCP tasks: wrong types are refused like tools/call, and the server keeps serving', async (t) => {
    const { env, srv } = serverWithAgent(t);
    await initTasks(srv);
    const cases = [
      ['dispatch', { agent: 'a', task: 'go', context: {} }, "'context' must be a string, got an empty array or object"],
      ['dispatch', { agent: 'a', task: 'go', timeout_seconds: 'soon' }, "'timeout_seconds' must be an integer"],
      ['dispatch_async', { agent: 'a', task: ['x'] }, "'task' must be a string, got an array"],
      ['dispatch_async', { agent: 'a' }, "'task' is required"],
    ];
    for (const [tool, args, msg] of cases) {
      const plain = await srv.call(tool, args);
      assert.strictEqual(plain.isError, true);
      const v = await taskCall(srv, tool, args);
      assert.strictEqual(v.error, plain.value.error);
      assert.ok(v.error.includes(msg), v.error);
    }
    assert.strictEqual(env.dispatches().length, 0);
    const ok = await srv.request('tools/call', { name: 'dispatch',
      arguments: { agent: 'a', task: 'fine' }, task: {} });
    const res = await srv.request('tasks/result', { taskId: ok.result.task.taskId }, { ms: 10000 });
    assert.strictEqual(JSON.parse(res.result.content[0].text).success, true);
    await srv.close();
    assert.doesNotMatch(srv.stderr, /crashed/);
  });
});

// Memory figures are only meaningful without a sanitizer: AddressSanitizer
// keeps freed memory in quarantine and never trims its heap, so under it
// the RSS bounds are not asserted (everything else is).

/** VmHWM (peak RSS) of pid in kB. */
function peakKb(pid) {
  const m = fs.readFileSync(`/proc/${pid}/status`, 'utf8').match(/VmHWM:\s+(\d+) kB/);
  return Number(m[1]);
}

/** A raw `serve` child whose stdout and stderr are not read until asked. */
function rawServer(t, env) {
  const child = spawn(BIN, ['serve'], { env: env.env(), cwd: env.root, stdio: ['pipe', 'pipe', 'pipe'] });
  env.extraPids.push(child.pid);
  t.after(() => { if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL'); });
  child.stdin.on('error', () => {});
  child.stdout.pause();
  child.stderr.pause();
  const exited = new Promise((r) => child.on('exit', (code) => r(code)));
  const ids = new Set();
  let out = '', err = '', nLines = 0;
  const api = {
    child, exited, ids,
    get stderr() { return err; },
    get lines() { return nLines; },
    readStdout() {
      child.stdout.on('data', (d) => {
        out += d;
        let nl;
        while ((nl = out.indexOf('\n')) >= 0) {
          const line = out.slice(0, nl);
          out = out.slice(nl + 1);
          nLines++;
          const m = line.match(/^\{"jsonrpc":"2\.0","id":(\d+),"result"/);
          if (m) ids.add(Number(m[1]));
        }
      });
      child.stdout.resume();
    },
    readStderr() {
      child.stderr.on('data', (d) => { err += d; });
      child.stderr.resume();
    },
  };
  return api;
}

describe('a client that does not read', () => {
  test('unread stdout: memory stays bounded, then every reply arrives', async (t) => {
    const env = newEnv(t);
    env.setup({ agents: { a: true } });
    const srv = rawServer(t, env);
    srv.readStderr();
    const N = 20000;
    const init = { jsonrpc: '2.0', id: 0, method: 'initialize',
      params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'x', version: '1' } } };
    let text = JSON.stringify(init) + '\n';
    for (let i = 1; i <= N; i++) text += `{"jsonrpc":"2.0","id":${i},"method":"tools/list"}\n`;
    srv.child.stdin.write(text);
    // Let the server run into the unread pipe and sit there for a while.
    let last = 0;
    for (let i = 0; i < 40; i++) {
      await sleep(100);
      last = peakKb(srv.child.pid);
    }
    const peak = peakKb(srv.child.pid);
    if (!SANITIZED) assert.ok(peak < 80 * 1024, `peak RSS ${peak} kB with ${N} unread replies (last ${last})`);
    srv.readStdout();
    const all = await waitUntil(() => srv.ids.size === N + 1, 120000, 100);
    assert.ok(all, `only ${srv.ids.size} of ${N + 1} replies arrived`);
    for (let i = 0; i <= N; i++) assert.ok(srv.ids.has(i), `reply ${i} missing`);
    assert.strictEqual(srv.lines, N + 1);
    if (!SANITIZED) assert.ok(peakKb(srv.child.pid) < 80 * 1024);
    srv.child.stdin.end();
    assert.strictEqual(await srv.exited, 0);
  });

  test('unread stderr: the server keeps answering; the dropped count comes when it drains', async (t) => {
    const env = newEnv(t);
    env.setup({ agents: { a: true } });
    const srv = rawServer(t, env);
    srv.readStdout();
    const N = 12000;
    let text = '{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":' +
      '"2025-11-25","capabilities":{},"clientInfo":{"name":"x","version":"1"}}}\n';
    // Each call logs one line on stderr ("... INFO Found 1 configured agents").
    for (let i = 1; i <= N; i++) {
      text += `{"jsonrpc":"2.0","id":${i},"method":"tools/call","params":{"name":"list_agents"}}\n`;
    }
    srv.child.stdin.write(text);
    const all = await waitUntil(() => srv.ids.size === N + 1, 90000, 100);
    assert.ok(all, `the server stopped answering after ${srv.ids.size} replies`);
    srv.readStderr();
    const noted = await waitUntil(() => /\d+ log lines? dropped/.test(srv.stderr), 10000);
    assert.ok(noted, `no dropped-lines notice; stderr tail: ${srv.stderr.slice(-300)}`);
    const dropped = Number(srv.stderr.match(/(\d+) log lines? dropped/)[1]);
    const kept = (srv.stderr.match(/Found 1 configured agents/g) || []).length;
    assert.ok(dropped > 0);
    // Every call's line is kept or counted as dropped; so may be the notice
    // that notifications are dropped, said once each time stdout backs up
    // past the gate (the dropped count does not say which lines it was).
    const notices = (srv.stderr.match(/the client is not reading its output/g) || []).length;
    assert.ok(kept + dropped - notices >= N && kept + dropped - notices <= N + 10,
      `kept ${kept} + dropped ${dropped} for ${N} calls (${notices} notices kept)`);
    // Logging works normally again once stderr is read.
    srv.child.stdin.write('{"jsonrpc":"2.0","id":99999,"method":"tools/call","params":{"name":"list_agents"}}\n');
    assert.ok(await waitUntil(() => srv.ids.has(99999), 10000));
    assert.ok(await waitUntil(() => (srv.stderr.match(/Found 1 configured agents/g) || []).length === kept + 1, 5000));
    srv.child.stdin.end();
    assert.strictEqual(await srv.exited, 0);
  });
});

test('a client that stops reading while a call streams progress: memory stays bounded, the reply still comes', async (t) => {
  const env = newEnv(t);
  env.setup({ agents: { a: true } });
  const srv = env.serve();
  await srv.init();
  const N = 100000;
  const hwm = () => Number(/VmHWM:\s+(\d+)/.exec(fs.readFileSync(`/proc/${srv.child.pid}/status`, 'utf8'))[1]);
  srv.child.stdout.pause(); // the client stops reading
  srv.send({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'dispatch_stream',
    arguments: { agent: 'a', task: `p [stub:progress=${N}] [stub:interval=0]` }, _meta: { progressToken: 'tok' } } });
  assert.ok(await waitUntil(() => env.dispatches().length === 1, 15000), 'the child started');
  const child = env.dispatches()[0].pid;
  const alive = (pid) => { try { process.kill(pid, 0); return true; } catch { return false; } };
  assert.ok(await waitUntil(() => !alive(child), 60000), 'the child ran to its end');
  await sleep(300);
  const peak = hwm();
  srv.child.stdout.resume();
  assert.ok(await waitUntil(() => srv.responsesTo(1).length === 1, 60000), 'the reply came');
  const prog = srv.notifications('notifications/progress').length;
  assert.ok(prog < N, `every one of ${N} progress notifications was held for the client`);
  if (!SANITIZED) assert.ok(peak < 48 * 1024, `peak RSS ${peak} kB with the client not reading`);
  await srv.close();
});

module.exports = { serverWithAgent, assertError };

describe('a client whose stdout reader is gone', () => {
  test('EPIPE on stdout shuts the server down with its children, stdin still open (MCP: client gone)', async (t) => {
    const env = newEnv(t);
    env.setup({ agents: { a: true }, settings: '  handoff_after_seconds: 0\n' });
    const { alive } = require('./lib');
    const child = spawn(BIN, ['serve'], { env: env.env({}), stdio: ['pipe', 'pipe', 'pipe'] });
    env.extraPids.push(child.pid);
    let out = '';
    child.stdout.on('data', (d) => { out += d; });
    const exited = new Promise((r) => child.on('exit', (code, sig) => r({ code, sig })));
    child.stdin.write(JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: {
      protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'x', version: '1' } } }) + '\n');
    assert.ok(await waitUntil(() => out.includes('"id":1'), 10000), 'no initialize reply');
    child.stdout.destroy(); // the reader goes away; stdin stays open
    child.stdin.write(JSON.stringify({ jsonrpc: '2.0', method: 'notifications/initialized' }) + '\n');
    child.stdin.write(JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 'dispatch',
      arguments: { agent: 'a', task: '[stub:hang] for nobody' } } }) + '\n');
    assert.ok(await waitUntil(() => env.dispatches().length === 1, 10000), 'the call did not start');
    const stub = env.dispatches()[0];
    const end = await Promise.race([exited, sleep(8000).then(() => null)]);
    assert.ok(end, 'the server runs on for a client that is gone');
    assert.ok(await waitUntil(() => !alive(stub.pid), 5000), 'its child runs on');
    child.stdin.destroy();
  });
});

describe('a line over the output cap before the result', () => {
  test('the result object on the last line still counts after a skipped 9 MB line, for dispatch as for the CLI', async (t) => {
    const env = newEnv(t);
    const dir = env.project('a');
    env.writeConfig(`agents:\n  a:\n    directory: ${JSON.stringify(dir)}\nsettings:\n  transport: oneshot\n`);
    const fake = require('node:path').join(env.root, 'claude-9mb');
    fs.writeFileSync(fake, '#!/bin/sh\nfor a in "$@"; do [ "$a" = --help ] && { echo "  --input-format"; exit 0; }; done\n' +
      'cat >/dev/null\nhead -c 9000000 /dev/zero | tr "\\0" x; echo\n' +
      'echo \'{"type":"result","subtype":"success","is_error":false,"result":"THE-ANSWER","session_id":"11111111-1111-1111-1111-111111111111","total_cost_usd":0.001,"num_turns":1,"duration_ms":1}\'\n',
    { mode: 0o755 });
    const extra = { AGENT_DISPATCH_CLAUDE: fake };
    const srv = env.serve({ env: extra });
    await srv.init();
    const { value } = await srv.call('dispatch', { agent: 'a', task: 'go' }, { ms: 60000 });
    assert.strictEqual(value.success, true, JSON.stringify(value).slice(0, 400));
    assert.strictEqual(value.result, 'THE-ANSWER');
    await srv.close();
    const cli = env.run(['dispatch', 'a', 'go'], { env: extra });
    assert.strictEqual(cli.code, 0, cli.stderr.slice(0, 400));
    assert.match(cli.stdout, /THE-ANSWER/);
  });
});
