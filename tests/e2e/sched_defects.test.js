'use strict';
// Scheduler and lifecycle guarantees: startup maintenance in a short-lived
// server, prompt exit of `run` after Ctrl-C or --timeout, and the
// runaway-code budget on every task that runs user code.
const { test, describe } = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const path = require('node:path');
const crypto = require('node:crypto');
const { newEnv, sleep, alive, waitUntil } = require('./lib');

const DAY = 86400;
const now = () => Date.now() / 1000;

function script(env, name, text) {
  const p = path.join(env.root, name);
  fs.writeFileSync(p, text);
  return p;
}

/** Writes a job record as an earlier server would have left it. */
function plant(env, fields, mtime) {
  fs.mkdirSync(env.jobs, { recursive: true, mode: 0o700 });
  const id = crypto.randomBytes(16).toString('hex');
  const file = path.join(env.jobs, `${id}.json`);
  fs.writeFileSync(file, JSON.stringify({ id, agent: 'a', task: 'planted', ...fields }, null, 2),
    { mode: 0o600 });
  if (mtime !== undefined) fs.utimesSync(file, mtime, mtime);
  fs.rmSync(path.join(env.jobs, '.index'), { force: true });
  return { id, file };
}

describe('startup maintenance', () => {
  test('a server that lives for one call still purges and recovers jobs', async (t) => {
    const env = newEnv(t);
    env.setup({ agents: { a: true }, settings: '  job_retention_days: 30\n' });
    const n = now();
    const old = plant(env, { status: 'done', created_at: n - 41 * DAY, completed_at: n - 40 * DAY });
    const stale = plant(env, { status: 'running', created_at: n - 7300, started_at: n - 7200 }, n - 7200);
    const srv = env.serve();
    const t0 = Date.now();
    srv.send({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18',
      capabilities: {}, clientInfo: { name: 'e2e', version: '1' } } });
    srv.send({ jsonrpc: '2.0', method: 'notifications/initialized' });
    srv.send({ jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 'list_agents', arguments: {} } });
    await srv.response(2);
    srv.child.stdin.end();
    assert.ok(Date.now() - t0 < 400, `the exchange itself took ${Date.now() - t0} ms`);
    const r = await srv.close(5000);
    assert.strictEqual(r.code, 0, srv.stderr);
    assert.ok(!fs.existsSync(old.file), 'the 40-day-old job was not purged');
    const rec = JSON.parse(fs.readFileSync(stale.file, 'utf8'));
    assert.strictEqual(rec.status, 'failed', 'the abandoned running job was not recovered');
    assert.match(rec.error, /Abandoned/);
  });

  test('initialize alone, then EOF at once: maintenance still runs', async (t) => {
    const env = newEnv(t);
    env.setup({ agents: { a: true }, settings: '  job_retention_days: 30\n' });
    const n = now();
    const old = plant(env, { status: 'failed', created_at: n - 41 * DAY, completed_at: n - 40 * DAY });
    const srv = env.serve();
    srv.send({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18',
      capabilities: {}, clientInfo: { name: 'e2e', version: '1' } } });
    srv.child.stdin.end();
    const r = await srv.close(5000);
    assert.strictEqual(r.code, 0, srv.stderr);
    assert.ok(srv.responsesTo(1).length === 1, 'initialize was answered');
    assert.ok(!fs.existsSync(old.file), 'the 40-day-old job was not purged');
  });
});

describe('run: prompt exit once the children are gone', () => {
  const HANG = `
local ad = require("agent_dispatch")
ad.dispatch{agent = "a", task = "wait [stub:hang]"}
return true
`;

  test('Ctrl-C: exits 130 well within the kill grace period', async (t) => {
    const env = newEnv(t);
    env.setup({ agents: { a: true } });
    const s = script(env, 'hang.lua', HANG);
    const { child, done } = env.start(['run', s]);
    assert.ok(await waitUntil(() => env.dispatches().length === 1, 5000), 'the stub started');
    const stub = env.dispatches()[0];
    const t0 = Date.now();
    child.kill('SIGINT');
    const r = await Promise.race([done, sleep(5000).then(() => null)]);
    const dt = Date.now() - t0;
    assert.ok(r, 'run did not exit within 5 s of SIGINT');
    assert.strictEqual(r.code, 130, r.stderr);
    assert.ok(dt < 1500, `exit took ${dt} ms after SIGINT`);
    assert.ok(!alive(stub.pid), 'the child survived');
  });

  test('--timeout: exits 124 well within the kill grace period', async (t) => {
    const env = newEnv(t);
    env.setup({ agents: { a: true } });
    const s = script(env, 'hang.lua', HANG);
    const t0 = Date.now();
    const { done } = env.start(['run', '--timeout', '1', s]);
    const r = await Promise.race([done, sleep(6000).then(() => null)]);
    const dt = Date.now() - t0;
    assert.ok(r, 'run did not exit within 6 s');
    assert.strictEqual(r.code, 124, r.stderr);
    assert.ok(env.dispatches().length === 1, 'the stub ran');
    assert.ok(dt < 1000 + 1500, `exit took ${dt} ms with --timeout 1`);
  });
});

// ------------------------------------------------ runaway-code budget

/** A tools dir (0755) with files {name: text} (0644). */
function toolsDir(env, files) {
  const dir = path.join(env.root, 'tools');
  fs.mkdirSync(dir, { recursive: true });
  for (const [f, text] of Object.entries(files)) {
    fs.writeFileSync(path.join(dir, f), text);
    fs.chmodSync(path.join(dir, f), 0o644);
  }
  fs.chmodSync(dir, 0o755);
  return dir;
}

async function callText(srv, name, args, ms = 30000) {
  const r = await srv.request('tools/call', { name, arguments: args }, { ms });
  assert.ok(r.result, `tools/call ${name}: ${JSON.stringify(r)}`);
  return { text: r.result.content[0].text, isError: r.result.isError === true };
}

/** The job record once it is terminal; fails after 15 s (a 2 s budget). */
async function jobEnds(env, id) {
  const file = path.join(env.jobs, `${id}.json`);
  let rec = null;
  const ended = await waitUntil(() => {
    try { rec = JSON.parse(fs.readFileSync(file, 'utf8')); } catch { return false; }
    return !['pending', 'running'].includes(rec.status);
  }, 15000, 100);
  assert.ok(ended, `the job did not end within 15 s: ${JSON.stringify(rec)}`);
  return rec;
}

// The call budget is 2 s here (AGENT_DISPATCH_TEST_CALL_BUDGET): each case
// spins until it stops the loop; e2e_perf_defects checks the real 10 s.
const BUDGET = '2';
const BUDGET_RE = /ran for more than 2(\.0+)? s without yielding/;

// Each case spins until the budget stops it, each with its own
// server: three at a time (the budget is wall time, so they end as soon
// together as alone), the one with two loops first.
describe('runaway-code budget on every task that runs user code', { concurrency: 3 }, () => {
  const SPIN_HOOK = `
hook("before_dispatch", function(req)
  if req.task:find("SPIN", 1, true) then while true do end end
end)
tool{ name = "spawn_spin", handler = function(args, ad)
  local t = ad.spawn(function() while true do end end)
  local ok, err = t:wait()
  return "spawned task: " .. tostring(ok) .. " " .. tostring(err)
end }
tool{ name = "wrap_spin", handler = function()
  require("coroutine").wrap(function() while true do end end)()
  return "unreachable"
end }
`;

  test('a looping task started with ad.spawn, or looping inside coroutine.wrap, is stopped',
    { timeout: 60000 }, async (t) => {
      const env = newEnv(t);
      env.setup({ agents: { a: true } });
      const srv = env.serve({ env: { AGENT_DISPATCH_TOOLS_DIR: toolsDir(env, { 'spin.lua': SPIN_HOOK }),
        AGENT_DISPATCH_TEST_CALL_BUDGET: BUDGET } });
      await srv.init();
      let t0 = Date.now();
      const s = await callText(srv, 'spawn_spin', {});
      assert.ok(Date.now() - t0 < 15000, 'the ad.spawn loop was stopped by the budget');
      assert.match(s.text, /spawned task: false/);
      assert.match(s.text, BUDGET_RE);
      assert.ok((await srv.request('ping')).result !== undefined, 'ping answered');
      t0 = Date.now();
      const w = await callText(srv, 'wrap_spin', {});
      assert.ok(Date.now() - t0 < 15000, 'the coroutine.wrap loop was stopped by the budget');
      assert.strictEqual(w.isError, true);
      assert.match(w.text, BUDGET_RE);
      assert.ok((await srv.request('ping')).result !== undefined, 'ping answered');
      await srv.close();
    });

  test('a looping hook reached through dispatch_async is stopped; the server keeps answering',
    { timeout: 60000 }, async (t) => {
      const env = newEnv(t);
      env.setup({ agents: { a: true } });
      const srv = env.serve({ env: { AGENT_DISPATCH_TOOLS_DIR: toolsDir(env, { 'spin.lua': SPIN_HOOK }),
        AGENT_DISPATCH_TEST_CALL_BUDGET: BUDGET } });
      await srv.init();
      const { value } = await srv.call('dispatch_async', { agent: 'a', task: 'SPIN async' });
      assert.match(value.job_id, /^[0-9a-f]{32}$/, JSON.stringify(value));
      await jobEnds(env, value.job_id);
      const ping = await srv.request('ping');
      assert.ok(ping.result !== undefined, 'ping answered');
      const st = (await srv.call('dispatch_status', { job_id: value.job_id })).value;
      assert.strictEqual(st.status, 'failed', JSON.stringify(st));
      assert.match(st.error, BUDGET_RE);
      assert.match(st.error, /spin\.lua/);
      const d = await srv.call('dispatch', { agent: 'a', task: 'alive' });
      assert.strictEqual(d.value.result, 'stub ok: alive', d.text);
      await srv.close();
    });

  test('a looping hook reached through dispatch_parallel is stopped; the server keeps answering',
    { timeout: 60000 }, async (t) => {
      const env = newEnv(t);
      env.setup({ agents: { a: true, b: true } });
      const srv = env.serve({ env: { AGENT_DISPATCH_TOOLS_DIR: toolsDir(env, { 'spin.lua': SPIN_HOOK }),
        AGENT_DISPATCH_TEST_CALL_BUDGET: BUDGET } });
      await srv.init();
      const t0 = Date.now();
      const r = await callText(srv, 'dispatch_parallel', { dispatches: JSON.stringify([
        { agent: 'a', task: 'SPIN parallel' }, { agent: 'b', task: 'fine' }]) });
      assert.ok(Date.now() - t0 < 15000, 'the loop was stopped by the budget');
      assert.match(r.text, BUDGET_RE);
      assert.match(r.text, /stub ok: fine/);
      assert.ok((await srv.request('ping')).result !== undefined, 'ping answered');
      await srv.close();
    });

  test('a looping hook reached through a task-augmented tools/call is stopped',
    { timeout: 60000 }, async (t) => {
      const env = newEnv(t);
      env.setup({ agents: { a: true } });
      const srv = env.serve({ env: { AGENT_DISPATCH_TOOLS_DIR: toolsDir(env, { 'spin.lua': SPIN_HOOK }),
        AGENT_DISPATCH_TEST_CALL_BUDGET: BUDGET } });
      await srv.request('initialize', { protocolVersion: '2025-11-25', capabilities: { tasks: {} },
        clientInfo: { name: 'e2e', version: '1' } });
      srv.send({ jsonrpc: '2.0', method: 'notifications/initialized' });
      const created = await srv.request('tools/call', { name: 'dispatch',
        arguments: { agent: 'a', task: 'SPIN task' }, task: {} });
      const id = created.result.task.taskId;
      const rec = await jobEnds(env, id);
      assert.strictEqual(rec.status, 'failed', JSON.stringify(rec));
      assert.match(rec.error, BUDGET_RE);
      assert.ok((await srv.request('ping')).result !== undefined, 'ping answered');
      await srv.close();
    });
});
