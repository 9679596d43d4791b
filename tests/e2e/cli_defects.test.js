'use strict';
// Config edits under contention (F06), MCP logging defaults (F02), 'none'
// on add (F49, F72), and the wording of hints and type errors.
const { test, describe } = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const path = require('node:path');
const { newEnv, sleep } = require('./lib');

/** Agent names present in agents.yaml (two-space indented mapping keys). */
function agentNames(env) {
  const names = new Set();
  const text = env.readConfig();
  const agents = text.split(/^groups:|^settings:/m)[0];
  for (const m of agents.matchAll(/^ {2}([A-Za-z0-9_-]+):\s*$/gm)) names.add(m[1]);
  return names;
}

/** Starts a process that holds <config>.lock until killed; resolves when it holds it. */
async function holdLock(t, env) {
  const script = path.join(env.root, 'hold.lua');
  fs.writeFileSync(script, `local core = require "ad.core"
local lock = assert(core.fs.lock(os.getenv("AGENT_DISPATCH_CONFIG") .. ".lock", 0))
io.stdout:write("locked\\n") io.stdout:flush()
core.task.sleep(60)
lock:unlock()
`);
  fs.mkdirSync(env.cfgDir, { recursive: true });
  const h = env.start(['run', script]);
  let out = '';
  h.child.stdout.on('data', (d) => { out += d; });
  const ok = await new Promise((resolve) => {
    const iv = setInterval(() => { if (out.includes('locked')) { clearInterval(iv); resolve(true); } }, 20);
    h.done.then(() => { clearInterval(iv); resolve(out.includes('locked')); });
  });
  assert.ok(ok, 'the holder took the lock');
  const release = async () => { h.child.kill('SIGKILL'); await h.done; };
  t.after(release);
  return release;
}

describe('config lock (F06)', () => {
  test('600 CLI adds and 200 MCP add_agent at once: every success is in the file, every failure says why', async (t) => {
    const env = newEnv(t);
    env.writeConfig('agents: {}\n');
    const dir = env.project('p');
    // A short bound, so that some waits run out even on a fast machine.
    const wait = { AGENT_DISPATCH_LOCK_WAIT: '2' };
    const srv = env.serve({ env: wait });
    await srv.init();
    const cli = [];
    for (let i = 0; i < 600; i++) cli.push(env.start(['add', `c${i}`, dir, '-d', 'x'], { env: wait }).done);
    const mcp = [];
    for (let i = 0; i < 200; i++) {
      mcp.push(srv.call('add_agent', { name: `m${i}`, directory: dir, description: 'x' }, { ms: 240000 }));
    }
    const [cr, mr] = [await Promise.all(cli), await Promise.all(mcp)];
    const names = agentNames(env);
    let okCount = 0;
    cr.forEach((r, i) => {
      assert.ok(!/without the lock/.test(r.stderr), `c${i} wrote without the lock: ${r.stderr}`);
      if (r.code === 0) {
        okCount++;
        assert.ok(names.has(`c${i}`), `c${i} exited 0 but is not in the config`);
      } else {
        assert.strictEqual(r.code, 1, `c${i}: ${r.stderr}`);
        assert.match(r.stderr, /could not lock .*agents\.yaml\.lock/, `c${i}`);
        assert.ok(!names.has(`c${i}`), `c${i} failed but was written`);
      }
    });
    mr.forEach((r, i) => {
      if (!r.isError) {
        okCount++;
        assert.strictEqual(r.value.added, `m${i}`);
        assert.ok(names.has(`m${i}`), `m${i} succeeded but is not in the config`);
      } else {
        assert.match(r.value.error, /could not lock/, `m${i}`);
        assert.ok(!names.has(`m${i}`), `m${i} failed but was written`);
      }
    });
    assert.ok(!/without the lock/.test(srv.stderr));
    assert.strictEqual(names.size, okCount, 'the file holds exactly the successful adds');
    assert.ok(okCount > 0);
    await srv.close();
  });

  test('a lock held past the bound: each change fails with a clear error and the file is unchanged', async (t) => {
    const env = newEnv(t);
    const dirs = env.setup({ agents: { a: true }, groups: '  g:\n    members: []\n' });
    const before = env.readConfig();
    const release = await holdLock(t, env);
    const wait = { AGENT_DISPATCH_LOCK_WAIT: '0.5' };
    for (const args of [['add', 'b', dirs.a, '-d', 'x'], ['update', 'a', '-d', 'new'], ['remove', 'a'],
      ['group', 'add', 'h', '--member', 'a'], ['group', 'remove', 'g']]) {
      const r = env.run(args, { env: wait });
      assert.strictEqual(r.code, 1, `${args.join(' ')}: ${r.stdout}${r.stderr}`);
      assert.match(r.stderr, /^Error: could not lock .*agents\.yaml\.lock: another process has held it for over 0\.5 s/m);
      assert.match(r.stderr, /Nothing changed/);
      assert.ok(!/without the lock|Added|Updated|Removed/.test(r.stdout + r.stderr));
      assert.strictEqual(env.readConfig(), before, args.join(' '));
    }
    const srv = env.serve({ env: wait });
    await srv.init();
    for (const [tool, args] of [['add_agent', { name: 'b', directory: dirs.a, description: 'x' }],
      ['update_agent', { name: 'a', description: 'new' }], ['remove_agent', { name: 'a' }]]) {
      const r = await srv.call(tool, args);
      assert.strictEqual(r.isError, true, tool);
      assert.match(r.value.error, new RegExp(`^${tool} could not lock .*agents\\.yaml\\.lock`), tool);
      assert.strictEqual(env.readConfig(), before, tool);
    }
    await srv.close();
    // A waiter is woken when the holder lets go, and its change is kept.
    const waiting = env.start(['add', 'c', dirs.a, '-d', 'x'], { env: { AGENT_DISPATCH_LOCK_WAIT: '20' } });
    await sleep(300);
    await release();
    const r = await waiting.done;
    assert.strictEqual(r.code, 0, r.stderr);
    assert.ok(agentNames(env).has('c'));
  });

  test('a server stopping while a call waits for the lock exits at once and changes nothing', async (t) => {
    const env = newEnv(t);
    const dirs = env.setup({ agents: { a: true } });
    const before = env.readConfig();
    const release = await holdLock(t, env);
    const srv = env.serve();
    await srv.init();
    srv.send({ jsonrpc: '2.0', id: 'w', method: 'tools/call',
      params: { name: 'add_agent', arguments: { name: 'b', directory: dirs.a, description: 'x' } } });
    await sleep(300);
    await srv.close(3000);
    await release();
    assert.strictEqual(env.readConfig(), before);
  });
});

describe('logging defaults (F02)', () => {
  test('a 2025-era client that sets no level gets info messages and stream progress as log messages', async (t) => {
    const env = newEnv(t);
    env.setup({ agents: { a: true } });
    const srv = env.serve();
    await srv.init();
    await srv.call('update_agent', { name: 'a', permission_mode: 'plan' });
    const info = srv.notifications('notifications/message').map((m) => m.msg.params)
      .filter((p) => p.level === 'info' && /Updated agent a: permission_mode/.test(JSON.stringify(p.data)));
    assert.strictEqual(info.length, 1);
    const r = await srv.call('dispatch_stream', { agent: 'a', task: 'go [stub:progress=2] [stub:interval=0.05]' });
    assert.strictEqual(r.value.success, true);
    const logs = srv.notifications('notifications/message')
      .filter((m) => /\[a\] progress/.test(JSON.stringify(m.msg.params.data)));
    assert.strictEqual(logs.length, 2);
    assert.ok(logs.every((m) => m.msg.params.level === 'info'));
    // debug stays below the default level; setLevel still raises it.
    assert.ok(!srv.notifications('notifications/message').some((m) => m.msg.params.level === 'debug'));
    await srv.request('logging/setLevel', { level: 'error' });
    const n = srv.notifications('notifications/message').length;
    await srv.call('update_agent', { name: 'a', permission_mode: 'default' });
    assert.strictEqual(srv.notifications('notifications/message').length, n);
    await srv.close();
  });

  test('the 2026 era still sends no log message without a per-request logLevel', async (t) => {
    const env = newEnv(t);
    env.setup({ agents: { a: true } });
    const srv = env.serve();
    await srv.call('update_agent', { name: 'a', permission_mode: 'plan' }, { modern: true });
    assert.strictEqual(srv.notifications('notifications/message').length, 0);
    await srv.call('update_agent', { name: 'a', permission_mode: 'default' },
      { modern: true, meta: { 'io.modelcontextprotocol/logLevel': 'info' } });
    assert.strictEqual(srv.notifications('notifications/message').length, 1);
    await srv.close();
  });
});

describe("'none' on add (F49, F72)", () => {
  test("CLI add: 'none' for --model, --permission-mode and the tool lists means inherit (key absent)", (t) => {
    const env = newEnv(t);
    const dir = env.project('p');
    env.writeConfig('agents: {}\n');
    const r = env.run(['add', 'a', dir, '-d', 'x', '--model', 'none', '--permission-mode', 'None',
      '--allowed-tools', 'none', '--disallowed-tools', 'NONE', '--capabilities', 'none']);
    assert.strictEqual(r.code, 0, r.stderr);
    assert.ok(!/Unknown permission_mode/.test(r.stderr), r.stderr);
    const text = env.readConfig();
    for (const k of ['model', 'permission_mode', 'allowed_tools', 'disallowed_tools']) {
      assert.ok(!new RegExp(`^\\s+${k}:`, 'm').test(text), `${k} stored:\n${text}`);
    }
    assert.ok(!/none/i.test(text), text);
    const d = env.run(['describe', 'a']);
    assert.match(d.stdout, /allowed_tools:\s+\(inherit defaults\)/);
    // The dispatch does not pass the word as a model name.
    const tr = env.run(['test', 'a', 'hello']);
    assert.strictEqual(tr.code, 0, tr.stderr);
    const argv = env.dispatches().at(-1).argv;
    assert.ok(!argv.includes('--model') && !argv.includes('none'), argv.join(' '));
  });

  test("CLI update and MCP add_agent/update_agent treat 'none' the same way", async (t) => {
    const env = newEnv(t);
    const dirs = env.setup({ agents: { a: { model: 'haiku', allowed_tools: ['Read'] } } });
    const u = env.run(['update', 'a', '--model', 'none', '--allowed-tools', 'None']);
    assert.strictEqual(u.code, 0, u.stderr);
    let text = env.readConfig();
    assert.ok(!/^\s+(model|allowed_tools):/m.test(text), text);
    const srv = env.serve();
    await srv.init();
    const r = await srv.call('add_agent', { name: 'b', directory: dirs.a, description: 'x',
      permission_mode: 'none', allowed_tools: 'none', disallowed_tools: 'None' });
    assert.strictEqual(r.isError, false, r.text);
    assert.ok(!('allowed_tools' in r.value) && !('permission_mode' in r.value), r.text);
    text = env.readConfig();
    assert.ok(!/none/i.test(text), text);
    assert.ok(!srv.notifications('notifications/message').some((m) => /Unknown permission_mode/.test(JSON.stringify(m.msg.params))));
    await srv.close();
  });
});

describe('non-finite numbers (F06)', () => {
  test('add and update refuse a budget that is not a finite number and leave the file as it was', (t) => {
    const env = newEnv(t);
    const dir = env.project('p');
    env.writeConfig('agents: {}\n');
    for (const v of ['1e400', '-1e400', 'inf', 'nan']) {
      const r = env.run(['add', 'a', dir, '-d', 'x', '--max-budget-usd', v]);
      assert.strictEqual(r.code, 2, `${v}: ${r.stdout}${r.stderr}`);
      assert.match(r.stderr, /--max-budget-usd: '[^']+' is not a (valid|finite) number/);
      assert.strictEqual(env.readConfig(), 'agents: {}\n');
    }
    assert.strictEqual(env.run(['add', 'a', dir, '-d', 'x']).code, 0);
    const before = env.readConfig();
    const u = env.run(['update', 'a', '--max-budget-usd', '1e400']);
    assert.strictEqual(u.code, 2, u.stdout + u.stderr);
    assert.strictEqual(env.readConfig(), before);
    // The file still loads: the agent is listed.
    assert.match(env.run(['list']).stdout, /\ba\b/);
  });
});

describe('wording', () => {
  test('budget stop with no cap configured names the configured cap once', async (t) => {
    const env = newEnv(t);
    env.setup({ agents: { a: true } });
    const srv = env.serve();
    await srv.init();
    const r = await srv.call('dispatch', { agent: 'a', task: 'x [stub:budget]' });
    assert.strictEqual(r.value.error_type, 'budget');
    assert.match(r.value.error, /the dispatch was stopped by the configured cap \(passed to claude as --max-budget-usd\)/);
    assert.ok(!/spend cap the configured cap/.test(r.value.error), r.value.error);
    await srv.close();
  });

  test('group add with no members says the group has no members yet', (t) => {
    const env = newEnv(t);
    env.writeConfig('agents: {}\n');
    const r = env.run(['group', 'add', 'empty']);
    assert.strictEqual(r.code, 0, r.stderr);
    assert.match(r.stdout, /Added group 'empty' \(0 member\(s\)\)\./);
    assert.match(r.stderr, /^Warning: the group has no members yet/m);
  });

  test('MCP servers are listed in first-seen order across .mcp.json and settings.local.json', async (t) => {
    const env = newEnv(t);
    const dir = env.project('p', {
      '.mcp.json': '{"mcpServers": {"zeta": {"command": "z"}, "alpha": {}, "mid": {"env": {"K": "1"}}}}',
      '.claude/settings.local.json': '{\n\t"mcpServers": {\n\t\t"beta": {},\n\t\t"zeta": {}\n\t}\n}\n',
    });
    env.setup({ agents: { a: { directory: dir } } });
    const srv = env.serve();
    await srv.init();
    const r = await srv.call('inspect_agent', { name: 'a' });
    assert.deepStrictEqual(r.value.mcp_servers, ['zeta', 'alpha', 'mid', 'beta']);
    await srv.close();
    const add = env.run(['add', 'b', dir]);
    assert.match(add.stdout, /MCP: zeta, alpha, mid, beta/);
  });

  test('type errors name JSON types and print numbers as JSON does', async (t) => {
    const env = newEnv(t);
    env.setup({ agents: { a: true } });
    const srv = env.serve();
    await srv.init();
    const ok = { agent: 'a', task: 't' };
    const cases = [
      [[ok, 5], /^dispatches\[1\] must be an object, got number$/],
      [[ok, 5.5], /^dispatches\[1\] must be an object, got number$/],
      [[ok, true], /^dispatches\[1\] must be an object, got boolean$/],
      [[ok, 'x'], /^dispatches\[1\] must be an object, got string$/],
      [[ok, [1]], /^dispatches\[1\] must be an object, got array$/],
      [[ok, null], /^dispatches\[1\] must be an object, got null$/],
      [[ok, { ...ok, context: { k: 1 } }], /^dispatches\[1\]\.context must be a string, got an object$/],
      [[ok, { ...ok, caller: 5 }], /^dispatches\[1\]\.caller must be a string, got number 5$/],
      [[ok, { ...ok, timeout_seconds: 'abc' }], /^dispatches\[1\]\.timeout_seconds must be a number, got string 'abc'$/],
      [[ok, { ...ok, summary_chars: [2] }], /^dispatches\[1\]\.summary_chars must be a number, got an array$/],
      [[ok, { ...ok, summary_chars: [] }], /^dispatches\[1\]\.summary_chars must be a number, got an empty array or object$/],
    ];
    for (const [list, re] of cases) {
      const r = await srv.call('dispatch_parallel', { dispatches: JSON.stringify(list) });
      assert.match(r.value.error, re, JSON.stringify(list));
    }
    const v = await srv.call('inspect_agent', { name: 42 });
    assert.match(v.value.error, /'name' must be a string, got number 42$/);
    const f = await srv.call('dispatch', { agent: 'a', task: 't', timeout_seconds: 1.5 });
    assert.match(f.value.error, /'timeout_seconds' must be an integer, got number 1\.5$/);
    await srv.close();
  });
});
