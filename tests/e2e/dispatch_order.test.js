'use strict';
// The order of what a dispatch says around its child: its "Dispatching to"
// line (stderr, and the call's log notification) is said once, before the
// call's answer, whether a child was started, could not be started, was
// refused before it was spawned, or is still queued for a concurrency slot
// when the call is handed off to a job.
const { test, describe } = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const path = require('node:path');
const { newEnv, waitUntil } = require('./lib');

// Index of the first stdout message matching pred (-1: none).
function indexOf(srv, pred) {
  return srv.messages.findIndex((m) => m.msg && pred(m.msg));
}

const isLog = (text) => (m) => m.method === 'notifications/message' &&
  JSON.stringify(m.params.data).includes(text);

function countOf(srv, pred) {
  return srv.messages.filter((m) => m.msg && pred(m.msg)).length;
}

const stderrLines = (srv, text) =>
  srv.stderr.split('\n').filter((l) => / INFO /.test(l) && l.includes(text)).length;

// The line was said once on stderr and once to the client, before reply id.
// (stderr is another pipe: its line may be read after the reply.)
async function assertSaidBefore(srv, text, id) {
  const log = indexOf(srv, isLog(text));
  const reply = indexOf(srv, (m) => m.id === id);
  assert.ok(log >= 0, `no log notification "${text}"`);
  assert.ok(reply > log, `log ${log}, reply ${reply}`);
  assert.strictEqual(countOf(srv, isLog(text)), 1, 'said once');
  assert.ok(await waitUntil(() => stderrLines(srv, text) > 0, 3000), srv.stderr);
  assert.strictEqual(stderrLines(srv, text), 1, srv.stderr);
}

// A server with max_concurrency 1 whose only slot another call holds
// for `seconds`: {env, srv, holder} (holder: that call's promise).
async function slotHeld(t, seconds) {
  const env = newEnv(t);
  env.setup({ agents: { a: true }, settings: '  max_concurrency: 1\n' });
  const srv = env.serve();
  await srv.init();
  const holder = srv.call('dispatch', { agent: 'a', task: `[stub:sleep=${seconds}] holds the slot` }, { id: 'h1' });
  assert.ok(await waitUntil(() => env.dispatches().length === 1, 5000), 'the slot is taken');
  return { env, srv, holder };
}

describe('the line of a dispatch', () => {
  test('a child that cannot be started: the line is said, before the error reply', async (t) => {
    const env = newEnv(t);
    env.setup({ agents: { a: true }, settings: '  transport: oneshot\n' });
    // An executable whose interpreter does not exist: found on the path,
    // its exec fails.
    const bad = path.join(env.root, 'broken-claude');
    fs.writeFileSync(bad, '#!/nonexistent/interpreter\n');
    fs.chmodSync(bad, 0o755);
    const srv = env.serve({ env: { AGENT_DISPATCH_CLAUDE: bad } });
    await srv.init();
    const r = await srv.call('dispatch', { agent: 'a', task: 'cannot start' }, { id: 'f1' });
    assert.strictEqual(r.value.success, false, JSON.stringify(r.value));
    // (the spawn's own failure, not a child that ran and exited)
    assert.strictEqual(r.value.error_type, 'not_found', JSON.stringify(r.value));
    await assertSaidBefore(srv, 'Dispatching to a: cannot start', 'f1');
    await srv.close();
  });

  test('refused before a child (dispatch depth): the line is said, before the reply', async (t) => {
    const env = newEnv(t);
    env.setup({ agents: { a: true } });
    const srv = env.serve({ env: { AGENT_DISPATCH_DEPTH: '3' } });
    await srv.init();
    const r = await srv.call('dispatch', { agent: 'a', task: 'too deep' }, { id: 'd1' });
    assert.strictEqual(r.value.error_type, 'recursion');
    await assertSaidBefore(srv, 'Dispatching to a: too deep', 'd1');
    await srv.close();
    assert.strictEqual(env.dispatches().length, 0);
  });

  test('a session turn: the resuming line is said once, before the reply', async (t) => {
    const env = newEnv(t);
    env.setup({ agents: { a: true } });
    const srv = env.serve();
    await srv.init();
    const first = await srv.call('dispatch_session', { agent: 'a', task: 'first turn' }, { id: 's1' });
    await assertSaidBefore(srv, 'Dispatching to a: first turn', 's1');
    const sid = first.value.session_id;
    await srv.call('dispatch_session', { agent: 'a', task: 'next turn', session_id: sid }, { id: 's2' });
    await assertSaidBefore(srv, `Dispatching to a (resuming ${sid.slice(0, 12)}...): next turn`, 's2');
    await srv.close();
  });

  test('a call handed off while its dispatch waits for a slot: the line comes before its answer',
    async (t) => {
      const { env, srv, holder } = await slotHeld(t, 3);
      const r = await srv.call('dispatch', { agent: 'a', task: 'queued one',
        handoff_after_seconds: 1 }, { id: 'q1' });
      assert.strictEqual(r.value.status, 'running', JSON.stringify(r.value));
      assert.strictEqual(env.dispatches().length, 1, 'not spawned yet');
      await assertSaidBefore(srv, 'Dispatching to a: queued one', 'q1');
      await holder;
      const w = await srv.call('dispatch_wait', { job_id: r.value.job_id, timeout_seconds: 30 }, { ms: 35000 });
      assert.strictEqual(w.value.status, 'done', JSON.stringify(w.value));
      // Said once, though the dispatch ran later as the job's.
      assert.strictEqual(countOf(srv, isLog('Dispatching to a: queued one')), 1);
      assert.strictEqual(stderrLines(srv, 'Dispatching to a: queued one'), 1);
      await srv.close();
    });

  test('a parallel call handed off while its items wait for a slot: their lines come before its answer',
    async (t) => {
      const { env, srv, holder } = await slotHeld(t, 3);
      const r = await srv.call('dispatch_parallel', { handoff_after_seconds: 1,
        dispatches: JSON.stringify([{ agent: 'a', task: 'item one' }, { agent: 'a', task: 'item two' }]) },
        { id: 'p1' });
      assert.strictEqual(r.value.status, 'running', JSON.stringify(r.value));
      assert.strictEqual(env.dispatches().length, 1, 'no item spawned yet');
      await assertSaidBefore(srv, 'Dispatching to a: item one', 'p1');
      await assertSaidBefore(srv, 'Dispatching to a: item two', 'p1');
      await holder;
      const w = await srv.call('dispatch_wait', { job_id: r.value.job_id, timeout_seconds: 30 }, { ms: 35000 });
      assert.strictEqual(w.value.status, 'done', JSON.stringify(w.value));
      assert.strictEqual(countOf(srv, isLog('Dispatching to a: item two')), 1);
      await srv.close();
    });

  test('a call cancelled while queued for a slot: the stderr line is still there', async (t) => {
    const { env, srv, holder } = await slotHeld(t, 2);
    srv.write(JSON.stringify({ jsonrpc: '2.0', id: 'c1', method: 'tools/call',
      params: { name: 'dispatch', arguments: { agent: 'a', task: 'queued and cancelled' } } }) + '\n');
    await new Promise((res) => setTimeout(res, 300));
    srv.write(JSON.stringify({ jsonrpc: '2.0', method: 'notifications/cancelled',
      params: { requestId: 'c1', reason: 'test' } }) + '\n');
    await holder;
    assert.ok(await waitUntil(() => /INFO Dispatching to a: queued and cancelled/.test(srv.stderr), 3000),
      srv.stderr);
    assert.strictEqual(indexOf(srv, (m) => m.id === 'c1'), -1, 'no reply to a cancelled call');
    assert.strictEqual(env.dispatches().length, 1, 'never spawned');
    await srv.close();
  });
});
