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
