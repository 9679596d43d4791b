'use strict';
// Kept live processes (live sessions, the warm pool) are the keeper's
// children like every child of a call that may be handed off: a turn on
// one that was handed off outlives the server (its input closes with the
// server, so the CLI ends the turn and the keeper records the answer),
// and every idle session or pool process ends with the server, however
// it is stopped. Helpers: tests/e2e/lib.js.
const { test } = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const path = require('node:path');
const { newEnv, sleep, alive, stopLikeClaudeCode } = require('./lib');

// Waits (up to ms) until pred (sync or async) holds; true if it did.
async function waitUntil(pred, ms) {
  const end = Date.now() + ms;
  for (;;) {
    if (await pred()) return true;
    if (Date.now() > end) return false;
    await sleep(50);
  }
}

function ppid(pid) {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
  } catch { return null; }
}

// Every live claude the stub saw start (logged before any input).
function liveSpawns(env) {
  let text = '';
  try { text = fs.readFileSync(path.join(env.root, 'starts.log'), 'utf8'); } catch { return []; }
  return text.split('\n').filter(Boolean).map((l) => JSON.parse(l))
    .filter((e) => e.argv.includes('-p') && e.argv.includes('stream-json'));
}

function serve(env) {
  const srv = env.serve({ env: { STUB_CLAUDE_STARTS: path.join(env.root, 'starts.log') } });
  const tracked = env.trackedPids.bind(env);
  env.trackedPids = () => {
    const t = tracked();
    for (const e of liveSpawns(env)) { t.pids.push(e.pid); t.groups.push(e.pgid); }
    return t;
  };
  return srv;
}

async function stats(srv) {
  return (await srv.call('live_stats')).value;
}

for (const how of ['stop', 'SIGKILL']) {
  test(`a handed-off turn on a live session process outlives the server (${how}); idle session and pool processes end`,
    async (t) => {
      const env = newEnv(t);
      env.setup({ agents: { a: { directory: env.project('a'), warm: 1 } } });
      const srv = serve(env);
      await srv.init();
      // Two sessions: one stays idle, one is continued and handed off.
      const idle = (await srv.call('dispatch_session', { agent: 'a', task: 'idle one' })).value;
      assert.strictEqual(idle.success, true, JSON.stringify(idle));
      const first = (await srv.call('dispatch_session', { agent: 'a', task: 'turn one' })).value;
      assert.strictEqual(first.success, true, JSON.stringify(first));
      assert.ok(await waitUntil(async () => (await stats(srv)).warm === 1, 15000), 'pool filled');
      const s = await stats(srv);
      assert.strictEqual(s.sessions, 2, JSON.stringify(s));
      const proc = s.processes.find((p) => p.session_id === first.session_id);
      assert.ok(proc, JSON.stringify(s));
      const { value } = await srv.call('dispatch_session', { agent: 'a', session_id: first.session_id,
        task: '[stub:sleep=3][stub:reply=kept turn] turn two', handoff_after_seconds: 1 });
      assert.strictEqual(value.status, 'running', JSON.stringify(value));
      const id = value.job_id;
      const keeper = ppid(proc.pid);
      assert.ok(keeper && keeper !== srv.child.pid, 'the live process\'s parent is the keeper, not the server');
      await waitUntil(() => liveSpawns(env).length >= 3, 15000);
      const others = liveSpawns(env).map((e) => e.pid).filter((p) => p !== proc.pid);
      assert.ok(others.length >= 2, JSON.stringify(liveSpawns(env)));
      if (how === 'stop') {
        await stopLikeClaudeCode(srv);
      } else {
        srv.child.kill('SIGKILL');
        await srv.exited;
      }
      // Nothing idle is left: the session and pool processes end with the server.
      assert.ok(await waitUntil(() => others.every((p) => !alive(p)), 5000),
        `idle live processes left: ${others.filter(alive).join(', ')}`);
      const srv2 = env.serve();
      await srv2.init();
      const w = await srv2.call('dispatch_wait', { job_id: id, timeout_seconds: 30 }, { ms: 35000 });
      assert.strictEqual(w.value.status, 'done', JSON.stringify(w.value));
      assert.strictEqual(w.value.result.success, true, JSON.stringify(w.value));
      assert.match(w.value.result.result, /turn two/, JSON.stringify(w.value));
      assert.strictEqual(w.value.result.session_id, first.session_id);
      await srv2.close();
      assert.ok(await waitUntil(() => !alive(proc.pid), 5000), 'the live process ended after its turn');
      await env.assertNoLeftovers();
    });
}

test('a handed-off turn on a live process ends while the server lives: the process serves the next turn, and ends with the server',
  async (t) => {
    const env = newEnv(t);
    env.setup({ agents: { a: true } });
    const srv = serve(env);
    await srv.init();
    const first = (await srv.call('dispatch_session', { agent: 'a', task: 'turn one' })).value;
    assert.strictEqual(first.success, true, JSON.stringify(first));
    const { value } = await srv.call('dispatch_session', { agent: 'a', session_id: first.session_id,
      task: '[stub:sleep=2][stub:reply=second] turn two', handoff_after_seconds: 1 });
    assert.strictEqual(value.status, 'running', JSON.stringify(value));
    const w = await srv.call('dispatch_wait', { job_id: value.job_id, timeout_seconds: 30 }, { ms: 35000 });
    assert.strictEqual(w.value.status, 'done', JSON.stringify(w.value));
    assert.match(w.value.result.result, /turn two/, JSON.stringify(w.value));
    const third = (await srv.call('dispatch_session', { agent: 'a', task: 'turn three',
      session_id: first.session_id })).value;
    assert.strictEqual(third.success, true, JSON.stringify(third));
    assert.match(third.result, /turn three/);
    assert.strictEqual(liveSpawns(env).length, 1, 'one process for three turns');
    const pid = liveSpawns(env)[0].pid;
    await stopLikeClaudeCode(srv);
    // Idle again after its handed-off turn: it ends with the server, and
    // the finished job is not touched.
    assert.ok(await waitUntil(() => !alive(pid), 5000), 'the idle live process ended');
    const srv2 = env.serve();
    await srv2.init();
    const st = await srv2.call('dispatch_status', { job_id: value.job_id });
    assert.strictEqual(st.value.status, 'done', JSON.stringify(st.value));
    assert.match(st.value.result.result, /turn two/);
    await srv2.close();
    await env.assertNoLeftovers();
  });

test('the keeper killed after the server is gone: the live process of a handed-off turn goes too, the job settles failed',
  async (t) => {
    const env = newEnv(t);
    env.setup({ agents: { a: true } });
    const srv = serve(env);
    await srv.init();
    const first = (await srv.call('dispatch_session', { agent: 'a', task: 'turn one' })).value;
    assert.strictEqual(first.success, true, JSON.stringify(first));
    const pid = liveSpawns(env)[0].pid;
    const { value } = await srv.call('dispatch_session', { agent: 'a', session_id: first.session_id,
      task: '[stub:hang] turn two', handoff_after_seconds: 1 });
    assert.strictEqual(value.status, 'running', JSON.stringify(value));
    const keeper = ppid(pid);
    assert.ok(keeper && keeper !== srv.child.pid);
    await stopLikeClaudeCode(srv);
    assert.ok(alive(pid) && alive(keeper), 'the turn goes on in the keeper');
    process.kill(keeper, 'SIGKILL');
    assert.ok(await waitUntil(() => !alive(pid), 5000), 'the live process is gone');
    const srv2 = env.serve();
    await srv2.init();
    const w = await srv2.call('dispatch_wait', { job_id: value.job_id, timeout_seconds: 10 }, { ms: 15000 });
    assert.strictEqual(w.value.status, 'failed', JSON.stringify(w.value));
    assert.match(w.value.error, /stopped|exited/);
    await srv2.close();
    await env.assertNoLeftovers();
  });
