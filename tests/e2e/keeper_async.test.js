'use strict';
// The server does not wait, blocked, for its keeper to start a child: it
// sends the keeper the spawn and goes on serving while the answer comes
// (a fan-out prepares its next item meanwhile). A keeper that stops or
// dies before it answers costs the call a clear error, never the server
// its other requests, and no child runs unknown: one started for a call
// cancelled meanwhile is killed. Helpers: tests/e2e/lib.js.
const { test } = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const { newEnv, alive, waitUntil } = require('./lib');

function ppid(pid) {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
  } catch { return null; }
}

// A server whose keeper runs (started by a first dispatch): {env, srv, keeper}.
async function withKeeper(t) {
  const env = newEnv(t);
  env.setup({ agents: { a: true } });
  const srv = env.serve();
  await srv.init();
  const call = srv.call('dispatch', { agent: 'a', task: '[stub:sleep=1] start the keeper' });
  assert.ok(await waitUntil(() => env.dispatches().length === 1, 5000), 'the first child runs');
  const keeper = ppid(env.dispatches()[0].pid);
  const first = (await call).value;
  assert.strictEqual(first.success, true, JSON.stringify(first));
  assert.ok(keeper > 1 && keeper !== srv.child.pid, `the child's parent is the keeper (${keeper})`);
  t.after(() => { try { process.kill(keeper, 'SIGKILL'); } catch { /* gone */ } });
  return { env, srv, keeper };
}

test('a keeper that stops before it starts a child: the server answers meanwhile; ' +
  'its death fails that call clearly, nothing runs, and the next call gets a new keeper', async (t) => {
  const { env, srv, keeper } = await withKeeper(t);
  process.kill(keeper, 'SIGSTOP');
  const call = srv.call('dispatch', { agent: 'a', task: 'never started' }, { ms: 30000 });
  // The spawn waits for the stopped keeper; the server's loop does not.
  const t0 = Date.now();
  const pong = await srv.request('ping', {}, { ms: 3000 });
  assert.deepStrictEqual(pong.result, {}, JSON.stringify(pong));
  assert.ok(Date.now() - t0 < 3000, 'ping answered while the keeper is stopped');
  process.kill(keeper, 'SIGKILL');
  const { value } = await call;
  assert.strictEqual(value.success, false, JSON.stringify(value));
  assert.match(value.error, /keeper/, JSON.stringify(value));
  assert.strictEqual(env.dispatches().length, 1, 'the second child never ran');
  const next = srv.call('dispatch', { agent: 'a', task: '[stub:sleep=1] after the keeper died' });
  assert.ok(await waitUntil(() => env.dispatches().length === 2, 5000), 'the next child runs');
  const newKeeper = ppid(env.dispatches()[1].pid);
  const again = (await next).value;
  assert.strictEqual(again.success, true, JSON.stringify(again));
  assert.ok(newKeeper > 1 && newKeeper !== keeper && newKeeper !== srv.child.pid,
    `started by a new keeper (${newKeeper})`);
  await srv.close();
  await env.assertNoLeftovers();
});

test('a call cancelled while the keeper starts its child: the child, once started, is killed', async (t) => {
  const { env, srv, keeper } = await withKeeper(t);
  process.kill(keeper, 'SIGSTOP');
  srv.send({ jsonrpc: '2.0', id: 77, method: 'tools/call',
    params: { name: 'dispatch', arguments: { agent: 'a', task: '[stub:hang] cancelled while starting' } } });
  await srv.request('ping', {}, { ms: 3000 });
  srv.send({ jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: 77 } });
  await srv.request('ping', {}, { ms: 3000 });
  process.kill(keeper, 'SIGCONT');
  // The keeper starts it now; the server, which knows the call is gone,
  // kills it as soon as it learns its pid (it may die before it logs).
  // The next call's child is started after it: once that call is
  // answered, the keeper has started the cancelled one.
  const after = (await srv.call('dispatch', { agent: 'a', task: 'after the cancel' })).value;
  assert.strictEqual(after.success, true, JSON.stringify(after));
  assert.ok(alive(keeper), 'the keeper lives on');
  const kids = () => {
    try { return fs.readFileSync(`/proc/${keeper}/task/${keeper}/children`, 'utf8').trim(); } catch { return ''; }
  };
  assert.ok(await waitUntil(() => kids() === '', 5000), `the keeper's children were not all killed: ${kids()}`);
  await srv.close();
  await env.assertNoLeftovers();
});
