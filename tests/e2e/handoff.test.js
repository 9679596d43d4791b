'use strict';
// The sync-to-async hand-off: a dispatch / dispatch_session /
// dispatch_stream / dispatch_parallel call still running after
// handoff_after_seconds returns {status: "running", job_id, progress, hint}
// at once, and the same child goes on as a job of the server (no second
// spawn): dispatch_wait gets its answer, dispatch_cancel kills its group.
// A server whose input ends stays as the supervisor of such jobs until
// they end; a signal ends them honestly. Helpers: tests/e2e/lib.js.
const { test, describe } = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const path = require('node:path');
const { newEnv, alive, groupAlive, waitUntil, readRec, recUntil } = require('./lib');

const HEX32 = /^[0-9a-f]{32}$/;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

function jobFiles(env) {
  try { return fs.readdirSync(env.jobs).filter((n) => /^[0-9a-f]{32}\.json$/.test(n)); } catch { return []; }
}

function argAfter(e, flag) {
  const i = e.argv.indexOf(flag);
  return i >= 0 ? e.argv[i + 1] : undefined;
}

/** Asserts a hand-off answer and returns its job id. */
function assertHandedOff(value, agent) {
  assert.strictEqual(value.status, 'running', JSON.stringify(value));
  assert.match(value.job_id, HEX32);
  assert.strictEqual(value.agent, agent);
  assert.ok(Array.isArray(value.progress), JSON.stringify(value));
  assert.match(value.hint, /dispatch_wait/);
  assert.ok(value.hint.includes(`"${value.job_id}"`), value.hint);
  return value.job_id;
}

async function start(t, settings = '') {
  const env = newEnv(t);
  env.setup({ agents: { a: true, b: true }, settings });
  const srv = env.serve();
  await srv.init();
  return { env, srv };
}

describe('sync-to-async hand-off', () => {
  test('dispatch past its deadline returns a job at once; dispatch_wait gets the same child\'s answer (one spawn)',
    async (t) => {
      const { env, srv } = await start(t);
      const t0 = Date.now();
      const { value, isError } = await srv.call('dispatch', { agent: 'a',
        task: '[stub:sleep=3][stub:reply=late answer] slow one', handoff_after_seconds: 1 });
      const took = Date.now() - t0;
      assert.strictEqual(isError, false);
      const id = assertHandedOff(value, 'a');
      assert.ok(took < 2800, `the call took ${took} ms`);
      assert.strictEqual(env.dispatches().length, 1);
      // A job like any other while it runs.
      const st = await srv.call('dispatch_status', { job_id: id });
      assert.strictEqual(st.value.status, 'running');
      assert.strictEqual(st.value.process.pid, env.dispatches()[0].pid);
      const list = await srv.call('dispatch_jobs', {});
      assert.ok(list.value.some((j) => j.id === id && j.status === 'running'));
      const w = await srv.call('dispatch_wait', { job_id: id, timeout_seconds: 30 }, { ms: 35000 });
      assert.strictEqual(w.value.status, 'done', JSON.stringify(w.value));
      assert.strictEqual(w.value.result.success, true);
      assert.strictEqual(w.value.result.result, 'late answer');
      assert.match(w.value.result.session_id, UUID);
      const spawns = env.dispatches();
      assert.strictEqual(spawns.length, 1, 'no second spawn');
      assert.strictEqual(argAfter(spawns[0], '--session-id'), w.value.result.session_id);
      // The handed-off answer went to the cache as the sync path would.
      const again = await srv.call('dispatch', { agent: 'a',
        task: '[stub:sleep=3][stub:reply=late answer] slow one', handoff_after_seconds: 1 });
      assert.strictEqual(again.value.cached, true, JSON.stringify(again.value));
      assert.strictEqual(again.value.result, 'late answer');
      assert.strictEqual(env.dispatches().length, 1);
      // `agent-dispatch job ID` reads it like any job.
      const cli = env.run(['job', id, '--json']);
      assert.strictEqual(cli.code, 0, cli.stderr);
      assert.strictEqual(JSON.parse(cli.stdout).result.result, 'late answer');
      await srv.close();
    });

  test('a fast call is answered as before: no job is created', async (t) => {
    const { env, srv } = await start(t);
    const { value } = await srv.call('dispatch', { agent: 'a', task: 'quick', handoff_after_seconds: 5 });
    assert.strictEqual(value.success, true);
    assert.strictEqual(value.result, 'stub ok: quick');
    assert.deepStrictEqual(jobFiles(env), []);
    await srv.close();
  });

  test('the default comes from settings.handoff_after_seconds; dispatch_session and dispatch_stream hand off too',
    async (t) => {
      const { env, srv } = await start(t, '  handoff_after_seconds: 1\n');
      const s = await srv.call('dispatch_session', { agent: 'a', task: '[stub:sleep=2.5] a session turn' });
      const sid = assertHandedOff(s.value, 'a');
      const st = await srv.call('dispatch_stream', { agent: 'b',
        task: '[stub:progress=20][stub:interval=0.1] watched' });
      const stid = assertHandedOff(st.value, 'b');
      // The progress so far comes back with the hand-off.
      assert.ok(st.value.progress.length > 0 && st.value.progress.every((l) => /progress/.test(l)),
        JSON.stringify(st.value.progress));
      const ws = await srv.call('dispatch_wait', { job_id: sid, timeout_seconds: 30 }, { ms: 35000 });
      assert.strictEqual(ws.value.status, 'done');
      assert.match(ws.value.result.session_id, UUID);
      const wst = await srv.call('dispatch_wait', { job_id: stid, timeout_seconds: 30 }, { ms: 35000 });
      assert.strictEqual(wst.value.status, 'done');
      assert.ok(wst.value.progress.length > 0);
      assert.strictEqual(env.dispatches().length, 2);
      await srv.close();
    });

  test('0 = never (setting and per-call), and the parameter is validated', async (t) => {
    const { env, srv } = await start(t, '  handoff_after_seconds: 1\n');
    const r = await srv.call('dispatch', { agent: 'a', task: '[stub:sleep=2] never handed off',
      handoff_after_seconds: 0 }, { ms: 20000 });
    assert.strictEqual(r.value.success, true, JSON.stringify(r.value));
    assert.strictEqual(r.value.result, 'stub ok: never handed off');
    assert.deepStrictEqual(jobFiles(env), []);
    const bad = await srv.call('dispatch', { agent: 'a', task: 'x', handoff_after_seconds: -1 });
    assert.strictEqual(bad.isError, true);
    assert.match(bad.value.error, /handoff_after_seconds must be 0 \(never\) or a number of seconds/);
    const badp = await srv.call('dispatch_parallel', { dispatches: JSON.stringify([{ agent: 'a', task: 'x' }]),
      handoff_after_seconds: -3 });
    assert.strictEqual(badp.isError, true);
    assert.match(badp.value.error, /handoff_after_seconds/);
    const notint = await srv.call('dispatch', { agent: 'a', task: 'x', handoff_after_seconds: 'soon' });
    assert.strictEqual(notint.isError, true);
    assert.match(notint.value.error, /'handoff_after_seconds' must be an integer/);
    assert.strictEqual(env.dispatches().length, 1);
    await srv.close();

    const env2 = newEnv(t);
    env2.setup({ agents: { a: true }, settings: '  handoff_after_seconds: 0\n' });
    const srv2 = env2.serve();
    await srv2.init();
    const r2 = await srv2.call('dispatch', { agent: 'a', task: '[stub:sleep=1.5] setting zero' }, { ms: 20000 });
    assert.strictEqual(r2.value.success, true, JSON.stringify(r2.value));
    assert.deepStrictEqual(jobFiles(env2), []);
    await srv2.close();

    const env3 = newEnv(t);
    env3.setup({ agents: { a: true }, settings: '  handoff_after_seconds: -5\n' });
    const cli = env3.run(['list']);
    assert.notStrictEqual(cli.code, 0);
    assert.match(cli.stderr, /settings\.handoff_after_seconds/);
  });

  test('tools/list offers handoff_after_seconds on the sync dispatch tools only', async (t) => {
    const { srv } = await start(t);
    const r = await srv.request('tools/list', {});
    const by = Object.fromEntries(r.result.tools.map((x) => [x.name, x]));
    for (const name of ['dispatch', 'dispatch_session', 'dispatch_stream', 'dispatch_parallel']) {
      const p = by[name].inputSchema.properties.handoff_after_seconds;
      assert.ok(p, `${name} lacks handoff_after_seconds`);
      assert.strictEqual(p.type, 'integer');
      assert.strictEqual(p.minimum, 0);
    }
    assert.ok(!by.dispatch_async.inputSchema.properties.handoff_after_seconds);
    await srv.close();
  });

  test('dispatch_cancel of a handed-off job kills the child\'s group', async (t) => {
    const { env, srv } = await start(t);
    const { value } = await srv.call('dispatch', { agent: 'a', task: '[stub:hang][stub:grandchild=60] forever',
      handoff_after_seconds: 1 });
    const id = assertHandedOff(value, 'a');
    const [e] = env.dispatches();
    assert.ok(alive(e.pid));
    const c = await srv.call('dispatch_cancel', { job_id: id });
    assert.strictEqual(c.value.outcome, 'cancelled_running', JSON.stringify(c.value));
    assert.ok(await waitUntil(() => !alive(e.pid) && !groupAlive(e.pgid), 5000), 'the group is gone');
    const rec = readRec(env, id);
    assert.strictEqual(rec.status, 'cancelled');
    assert.strictEqual(env.dispatches().length, 1);
    await srv.close();
  });

  test('notifications/cancelled before the deadline still kills the child (no job)', async (t) => {
    const { env, srv } = await start(t);
    srv.send({ jsonrpc: '2.0', id: 77, method: 'tools/call', params: { name: 'dispatch',
      arguments: { agent: 'a', task: '[stub:hang] cancel me', handoff_after_seconds: 30 } } });
    assert.ok(await waitUntil(() => env.dispatches().length === 1, 5000));
    const [e] = env.dispatches();
    srv.send({ jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: 77 } });
    assert.ok(await waitUntil(() => !alive(e.pid), 5000), 'the child is gone');
    assert.deepStrictEqual(jobFiles(env), []);
    await srv.close();
  });

  test('dispatch_parallel hands the whole fan-out off as one job holding every result and the aggregation',
    async (t) => {
      const { env, srv } = await start(t);
      const { value } = await srv.call('dispatch_parallel', {
        dispatches: JSON.stringify([{ agent: 'a', task: '[stub:sleep=2.5][stub:reply=from a] part one' },
          { agent: 'b', task: '[stub:reply=from b] part two' }]),
        aggregate: 'b', handoff_after_seconds: 1 });
      const id = assertHandedOff(value, 'a,b');
      assert.strictEqual(jobFiles(env).length, 1, 'one job for the fan-out');
      const w = await srv.call('dispatch_wait', { job_id: id, timeout_seconds: 30 }, { ms: 35000 });
      assert.strictEqual(w.value.status, 'done', JSON.stringify(w.value));
      const r = w.value.result;
      assert.strictEqual(r.success, true);
      assert.deepStrictEqual(r.individual_results.map((x) => x.result), ['from a', 'from b']);
      assert.ok(r.individual_results.every((x) => UUID.test(x.session_id)));
      assert.strictEqual(r.aggregated.success, true);
      assert.strictEqual(r.result, r.aggregated.result);
      assert.strictEqual(env.dispatches().length, 3, 'two items and the aggregator, each once');
      await srv.close();
    });

  test('dispatch_cancel of a handed-off fan-out kills every item\'s group', async (t) => {
    const { env, srv } = await start(t);
    const { value } = await srv.call('dispatch_parallel', {
      dispatches: JSON.stringify([{ agent: 'a', task: '[stub:hang] item one' },
        { agent: 'b', task: '[stub:hang] item two' }]), handoff_after_seconds: 1 });
    const id = assertHandedOff(value, 'a,b');
    assert.ok(await waitUntil(() => env.dispatches().length === 2, 5000));
    const c = await srv.call('dispatch_cancel', { job_id: id });
    assert.strictEqual(c.value.outcome, 'cancelled_running', JSON.stringify(c.value));
    const spawned = env.dispatches();
    assert.ok(await waitUntil(() => spawned.every((e) => !alive(e.pid) && !groupAlive(e.pgid)), 5000),
      'every item\'s group is gone');
    assert.strictEqual(readRec(env, id).status, 'cancelled');
    await srv.close();
  });

  test('a call made as an MCP task is not handed off (it is a job already)', async (t) => {
    const env = newEnv(t);
    env.setup({ agents: { a: true }, settings: '  handoff_after_seconds: 1\n' });
    const srv = env.serve();
    await srv.request('initialize', { protocolVersion: '2025-11-25', capabilities: { tasks: {} },
      clientInfo: { name: 'e2e', version: '1' } });
    srv.send({ jsonrpc: '2.0', method: 'notifications/initialized' });
    const created = await srv.request('tools/call', { name: 'dispatch', task: {},
      arguments: { agent: 'a', task: '[stub:sleep=2] as a task', handoff_after_seconds: 1 } });
    const tid = created.result.task.taskId;
    const res = await srv.request('tasks/result', { taskId: tid }, { ms: 20000 });
    const v = JSON.parse(res.result.content[0].text);
    assert.strictEqual(v.success, true, JSON.stringify(v));
    assert.strictEqual(v.result, 'stub ok: as a task');
    assert.ok(!('status' in v) && !('job_id' in v));
    assert.deepStrictEqual(jobFiles(env), [`${tid}.json`], 'the task\'s job only');
    assert.strictEqual(env.dispatches().length, 1);
    await srv.close();
  });
});

describe('handed-off jobs and the end of the server', () => {
  test('input ends: the server closes stdout, stays as the supervisor until the job ends, then exits',
    async (t) => {
      const { env, srv } = await start(t);
      const { value } = await srv.call('dispatch', { agent: 'a',
        task: '[stub:sleep=3][stub:reply=survived eof] outlive input', handoff_after_seconds: 1 });
      const id = assertHandedOff(value, 'a');
      const stdoutEnd = new Promise((r) => srv.child.stdout.on('end', r));
      srv.child.stdin.end();
      await stdoutEnd; // the client sees our stdout close
      assert.strictEqual(srv.exit, null, 'still supervising');
      const [e] = env.dispatches();
      assert.ok(alive(e.pid), 'the child still runs');
      const rec = await recUntil(env, id, (r) => r.status === 'done', 15000, 'the job to finish');
      assert.strictEqual(rec.result.result, 'survived eof');
      const exit = await Promise.race([srv.exited, new Promise((r) => setTimeout(() => r(null), 5000))]);
      assert.ok(exit, 'the server exits once its jobs ended');
      assert.strictEqual(exit.code, 0);
      assert.match(srv.stderr, /staying as their supervisor/);
      // A later server reads the answer.
      const srv2 = env.serve();
      await srv2.init();
      const w = await srv2.call('dispatch_wait', { job_id: id, timeout_seconds: 5 });
      assert.strictEqual(w.value.result.result, 'survived eof');
      assert.strictEqual(env.dispatches().length, 1);
      await srv2.close();
    });

  // With jobs_outlive_server on, the keeper takes such jobs over
  // (handoff_keeper.test.js); off, they end with the server.
  test('jobs_outlive_server off: a shutdown signal ends a handed-off job as failed, with its child, and says why', async (t) => {
    const { env, srv } = await start(t, '  jobs_outlive_server: false\n');
    const { value } = await srv.call('dispatch', { agent: 'a', task: '[stub:hang] until the host stops us',
      handoff_after_seconds: 1 });
    const id = assertHandedOff(value, 'a');
    const [e] = env.dispatches();
    srv.child.kill('SIGTERM');
    const exit = await Promise.race([srv.exited, new Promise((r) => setTimeout(() => r(null), 5000))]);
    assert.ok(exit, 'the server exits');
    assert.ok(await waitUntil(() => !alive(e.pid) && !groupAlive(e.pgid), 5000), 'the child is gone');
    const rec = readRec(env, id);
    assert.strictEqual(rec.status, 'failed');
    assert.match(rec.error, /Server stopped \(SIGTERM\) while the job was running: a call handed off/);
  });

  test('jobs_outlive_server off: a SIGKILLed server takes the child along; the next server marks the job failed', async (t) => {
    const { env, srv } = await start(t, '  jobs_outlive_server: false\n');
    const { value } = await srv.call('dispatch', { agent: 'a', task: '[stub:hang] killed host',
      handoff_after_seconds: 1 });
    const id = assertHandedOff(value, 'a');
    const [e] = env.dispatches();
    srv.child.kill('SIGKILL');
    await srv.exited;
    assert.ok(await waitUntil(() => !alive(e.pid), 5000), 'the child died with its server');
    const srv2 = env.serve();
    await srv2.init();
    await srv2.request('tools/list', {});
    const rec = await recUntil(env, id, (r) => r.status === 'failed', 10000, 'the job to be settled');
    assert.match(rec.error, /Server stopped while the job was running/);
    await srv2.close();
  });

  test('the keeper killed with SIGKILL: the server still exits at once when its input ends', async (t) => {
    // (its child died with the keeper: no grace period is owed to it)
    const { env, srv } = await start(t);
    const { value } = await srv.call('dispatch', { agent: 'a', task: '[stub:hang] kept',
      handoff_after_seconds: 1 });
    const id = assertHandedOff(value, 'a');
    assert.ok(await waitUntil(() => env.dispatches().length === 1, 15000), 'spawned');
    const [e] = env.dispatches();
    const stat = fs.readFileSync(`/proc/${e.pid}/stat`, 'utf8');
    const keeper = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
    assert.notStrictEqual(keeper, srv.child.pid, 'the child is the keeper\'s');
    process.kill(keeper, 'SIGKILL');
    const w = await srv.call('dispatch_wait', { job_id: id, timeout_seconds: 30 }, { ms: 35000 });
    assert.strictEqual(w.value.status, 'failed', JSON.stringify(w.value));
    const t0 = Date.now();
    srv.child.stdin.end();
    await srv.exited;
    const ms = Date.now() - t0;
    assert.ok(ms < 700, `the server took ${ms} ms to exit`);
  });
});
