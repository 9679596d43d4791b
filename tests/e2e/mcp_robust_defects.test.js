'use strict';
// A request whose handling fails (a job store that cannot be read, a
// module that does not load, the jobs lock held too long) is answered
// with its own error; the server goes on reading and answering, and exits
// 0 at the end of its input (MCP.md 1.3: exactly one response).
const { test } = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const path = require('node:path');
const { spawn, spawnSync } = require('node:child_process');
const { newEnv, sleep, waitUntil } = require('./lib');

const TASKS_INIT = { protocolVersion: '2025-11-25', capabilities: { tasks: {} }, clientInfo: { name: 't', version: '1' } };

// Hold the jobs lock from another process for `secs` seconds; resolves once
// it is held (a loaded machine may take a while to start flock).
async function holdJobsLock(env, secs) {
  const held = path.join(env.root, `held-${Date.now()}`);
  const holder = spawn('flock', [path.join(env.jobs, '.jobs.lock'), 'sh', '-c', `: > "${held}"; sleep ${secs}`], { stdio: 'ignore' });
  const released = new Promise((res) => holder.on('exit', res));
  assert.ok(await waitUntil(() => fs.existsSync(held), 10000), 'flock did not take the jobs lock');
  return { released };
}

async function endsCleanly(srv) {
  srv.child.stdin.end();
  const ex = await Promise.race([srv.exited, sleep(10000).then(() => null)]);
  assert.ok(ex, 'the server did not exit at the end of its input');
  assert.strictEqual(ex.code, 0, srv.stderr);
}

test('tasks/get on a job store that cannot be read: an error for that request; the reader goes on', async (t) => {
  const env = newEnv(t);
  env.setup({ agents: { a: true } });
  fs.mkdirSync(env.jobs, { recursive: true });
  const id = '0123456789abcdef0123456789abcdef';
  fs.symlinkSync('/etc/hostname', path.join(env.jobs, `${id}.json`));
  const srv = env.serve();
  await srv.request('initialize', TASKS_INIT);
  const r = await srv.request('tasks/get', { taskId: id }, { ms: 5000 });
  assert.ok(r.error, JSON.stringify(r));
  assert.strictEqual(r.error.code, -32603, JSON.stringify(r));
  assert.match(r.error.message, /Internal error: .*refusing the job file/, r.error.message);
  assert.ok((await srv.request('ping', {}, { ms: 5000 })).result, 'ping after it');
  await endsCleanly(srv);
});

test('a module that fails to load at its first use: that request gets -32603 naming it, the next ones are answered', async (t) => {
  const env = newEnv(t);
  env.setup({ agents: { a: true } });
  const ud = path.join(env.root, 'ulua');
  for (const d of ['', 'ad', 'ad/protocol']) fs.mkdirSync(path.join(ud, d), { mode: 0o700 });
  fs.writeFileSync(path.join(ud, 'ad/protocol/mcp_call.lua'), 'error("call module broken")\n', { mode: 0o600 });
  const srv = env.serve({ env: { AGENT_DISPATCH_USER_LUA_DIR: ud } });
  await srv.init();
  const r = await srv.request('tools/call', { name: 'list_agents', arguments: {} }, { ms: 5000 });
  assert.ok(r.error, JSON.stringify(r));
  assert.strictEqual(r.error.code, -32603);
  assert.match(r.error.message, /mcp_call\.lua:1: call module broken/);
  // stderr and stdout are separate pipes: the log line may arrive after the reply
  assert.ok(await waitUntil(() => /call module broken/.test(srv.stderr), 5000), srv.stderr);
  assert.ok((await srv.request('ping', {}, { ms: 5000 })).result, 'ping after it');
  await endsCleanly(srv);
});

test('a legacy tasks/cancel that cannot take the jobs lock is answered with an error', async (t) => {
  const env = newEnv(t);
  env.setup({ agents: { a: true } });
  const srv = env.serve({ env: { AGENT_DISPATCH_LOCK_WAIT: '1' } });
  await srv.request('initialize', TASKS_INIT);
  const c = await srv.request('tools/call', { name: 'dispatch_async',
    arguments: { agent: 'a', task: '[stub:sleep=4] run' }, task: {} });
  const tid = c.result.task.taskId;
  await sleep(300);
  const { released } = await holdJobsLock(env, 2.5);
  const r = await srv.request('tasks/cancel', { taskId: tid }, { ms: 8000 });
  assert.ok(r.error, JSON.stringify(r));
  assert.strictEqual(r.error.code, -32603, JSON.stringify(r));
  assert.match(r.error.message, /lock/i, r.error.message);
  await released;
  assert.ok((await srv.request('ping', {}, { ms: 5000 })).result);
  await srv.close();
});

test('a task-creating tools/call is in flight: notifications/cancelled before it is created sends nothing and creates no job', async (t) => {
  const env = newEnv(t);
  env.setup({ agents: { a: true } });
  const srv = env.serve({ env: { AGENT_DISPATCH_LOCK_WAIT: '5' } });
  await srv.request('initialize', TASKS_INIT);
  await srv.request('tools/call', { name: 'list_agents', arguments: {} }); // the jobs dir exists
  fs.mkdirSync(env.jobs, { recursive: true });
  const { released } = await holdJobsLock(env, 1.5);
  srv.send({ jsonrpc: '2.0', id: 'T', method: 'tools/call',
    params: { name: 'dispatch_async', arguments: { agent: 'a', task: 'never [stub:reply=x]' }, task: {} } });
  await sleep(200);
  srv.send({ jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: 'T' } });
  await released;
  await sleep(1000);
  assert.strictEqual(srv.responsesTo('T').length, 0, 'a response to a cancelled request');
  const jobs = fs.readdirSync(env.jobs).filter((f) => /^[0-9a-f]{32}\.json$/.test(f));
  assert.deepStrictEqual(jobs, [], 'a job was created for a cancelled request');
  await srv.close();
});

test('every command runs with stdin, stdout or stderr closed at start', (t) => {
  const env = newEnv(t);
  env.setup({ agents: { a: true } });
  const bin = process.env.AD_BIN;
  for (const [cmd, redir] of [['serve', '<&-'], ['list', '>&-'], ['list', '2>&-'], ['serve', '<&- >&- 2>&-']]) {
    const r = spawnSync('sh', ['-c', `exec "${bin}" ${cmd} ${redir}`], { env: env.env(), encoding: 'utf8', timeout: 15000 });
    assert.strictEqual(r.status, 0, `${cmd} ${redir}: status ${r.status} ${r.signal || ''} ${r.stderr}`);
  }
});
