'use strict';
// CLI `agent-dispatch wait JOB... [--any|--all] [--timeout N] [--json]`:
// waits for background jobs (by id or unique prefix) from a script, prints
// each result as it ends, and exits with the jobs' outcome (0 all
// succeeded, 1 one failed or was cancelled, 124 timeout). Helpers:
// tests/e2e/lib.js.
const { test, describe } = require('node:test');
const assert = require('node:assert');
const { newEnv, alive, waitUntil, readRec } = require('./lib');

/** Starts a detached job with CLI dispatch --async; returns its id. */
function startJob(env, task) {
  const r = env.run(['dispatch', 'a', task, '--async']);
  assert.strictEqual(r.code, 0, r.stderr);
  return r.stdout.trim();
}

/** Tracks the job's runner for the no-leftovers check. */
function track(env, id) {
  const r = readRec(env, id);
  if (r && r.server && r.server.pid > 1) env.extraPids.push(r.server.pid);
}

function cancelAll(env, ids) {
  for (const id of ids) { track(env, id); env.run(['cancel', id]); }
}

describe('agent-dispatch wait', () => {
  test('an interrupted wait says it was interrupted, not that it timed out (exit 128+signal)', async (t) => {
    const env = newEnv(t);
    env.setup({ agents: { a: true } });
    const id = startJob(env, '[stub:hang] interrupted wait');
    for (const [sig, status, extra] of [['SIGINT', 130, []], ['SIGTERM', 143, ['--timeout', '100']]]) {
      const h = env.start(['wait', id, ...extra]);
      await new Promise((r) => setTimeout(r, 700));
      h.child.kill(sig);
      const r = await h.done;
      assert.strictEqual(r.code, status, r.stderr);
      assert.doesNotMatch(r.stderr, /Timed out/, r.stderr);
      assert.match(r.stderr, /interrupted/);
    }
    cancelAll(env, [id]);
  });

  test('waits for a running job (by unique prefix), prints its answer, exits 0', async (t) => {
    const env = newEnv(t);
    env.setup({ agents: { a: true } });
    const id = startJob(env, '[stub:sleep=1] wait-me');
    const t0 = Date.now();
    const r = await env.start(['wait', id.slice(0, 8)]).done;
    const ms = Date.now() - t0;
    track(env, id);
    assert.strictEqual(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`^${id} \\[done\\] a\\n`));
    assert.match(r.stdout, /stub ok: .*wait-me/);
    assert.strictEqual(readRec(env, id).status, 'done');
    assert.ok(ms < 5000, `took ${ms} ms`);
    // An ended job: at once, same answer.
    const again = env.run(['wait', id]);
    assert.strictEqual(again.code, 0);
    assert.strictEqual(again.stdout, r.stdout);
  });

  test('--all exits 1 when one job failed; --json prints the records in argument order', async (t) => {
    const env = newEnv(t);
    env.setup({ agents: { a: true } });
    const good = startJob(env, '[stub:sleep=0.3] good');
    const bad = startJob(env, '[stub:sleep=0.5] [stub:is_error] bad');
    const r = await env.start(['wait', good, bad, '--json']).done;
    track(env, good); track(env, bad);
    assert.strictEqual(r.code, 1, r.stdout + r.stderr);
    const recs = JSON.parse(r.stdout);
    assert.deepStrictEqual(recs.map((x) => x.id), [good, bad]);
    assert.strictEqual(recs[0].result.success, true);
    assert.strictEqual(recs[1].result.success, false);
    const text = env.run(['wait', bad, good, '--all']);
    assert.strictEqual(text.code, 1);
    assert.match(text.stdout, new RegExp(`${bad} \\[failed\\] a \\(the agent failed`));
  });

  test('--any returns when the first job ends, with its outcome; others keep running', async (t) => {
    const env = newEnv(t);
    env.setup({ agents: { a: true } });
    const slow = startJob(env, '[stub:hang] slow');
    const fast = startJob(env, '[stub:sleep=0.5] fast');
    const r = await env.start(['wait', slow, fast, '--any', '--timeout', '20']).done;
    assert.strictEqual(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`^${fast} \\[done\\] a\\n`));
    assert.ok(!r.stdout.includes(slow), r.stdout);
    assert.strictEqual(readRec(env, slow).status, 'running');
    cancelAll(env, [slow, fast]);
  });

  test('--timeout: exit 124 naming the jobs still running; they are left running', async (t) => {
    const env = newEnv(t);
    env.setup({ agents: { a: true } });
    const id = startJob(env, '[stub:hang] forever');
    const t0 = Date.now();
    const r = await env.start(['wait', id, '--timeout', '0.5']).done;
    assert.strictEqual(r.code, 124, r.stdout + r.stderr);
    assert.ok(Date.now() - t0 < 5000);
    assert.match(r.stderr, new RegExp(`Timed out after 0.5s; still running: ${id}`));
    assert.ok(await waitUntil(() => readRec(env, id).status === 'running', 5000));
    const c = env.run(['wait', id, '--any', '--timeout', '0']);
    assert.strictEqual(c.code, 124);
    cancelAll(env, [id]);
  });

  test('a cancelled job exits 1; a job whose runner was killed is settled as failed', async (t) => {
    const env = newEnv(t);
    env.setup({ agents: { a: true } });
    const id = startJob(env, '[stub:hang] to-cancel');
    assert.ok(await waitUntil(() => (readRec(env, id) || {}).status === 'running', 5000));
    const w = env.start(['wait', id]);
    await new Promise((r) => setTimeout(r, 300));
    track(env, id);
    assert.strictEqual(env.run(['cancel', id]).code, 0);
    const r = await w.done;
    assert.strictEqual(r.code, 1, r.stdout + r.stderr);
    assert.match(r.stdout, new RegExp(`^${id} \\[cancelled\\] a\\n`));

    const id2 = startJob(env, '[stub:hang] runner-killed');
    const rec = await (async () => {
      let x = null;
      await waitUntil(() => { x = readRec(env, id2); return x && x.status === 'running' && x.process; }, 5000);
      return x;
    })();
    env.extraPids.push(rec.server.pid);
    // A wait already waiting is woken by the runner's death (it writes
    // nothing when SIGKILLed) and settles the job.
    const early = env.start(['wait', id2, '--timeout', '60']);
    await new Promise((r) => setTimeout(r, 300));
    const t0 = Date.now();
    process.kill(rec.server.pid, 'SIGKILL');
    const r1 = await early.done;
    assert.ok(Date.now() - t0 < 10000, `wait took ${Date.now() - t0} ms after the runner died`);
    assert.strictEqual(r1.code, 1, r1.stdout + r1.stderr);
    assert.match(r1.stdout, /\[failed\].*\nerror: Server stopped while the job was running/);
    assert.ok(await waitUntil(() => !alive(rec.process.pid), 5000), 'the child outlived its runner');
    const r2 = env.run(['wait', id2, '--timeout', '5']);
    assert.strictEqual(r2.code, 1, r2.stdout + r2.stderr);
    assert.match(r2.stdout, /\[failed\].*\nerror: Server stopped while the job was running/);
  });

  test('dispatch_wait of a server is woken by a SIGKILLed runner too and returns the failed job', async (t) => {
    const env = newEnv(t);
    env.setup({ agents: { a: true } });
    const id = startJob(env, '[stub:hang] killed-under-dispatch_wait');
    let rec = null;
    await waitUntil(() => { rec = readRec(env, id); return rec && rec.status === 'running' && rec.process; }, 5000);
    assert.ok(rec && rec.process, JSON.stringify(rec));
    env.extraPids.push(rec.server.pid);
    const srv = env.serve();
    await srv.init();
    const pending = srv.call('dispatch_wait', { job_id: id, timeout_seconds: 60 }, { ms: 70000 });
    await new Promise((r) => setTimeout(r, 300));
    const t0 = Date.now();
    process.kill(rec.server.pid, 'SIGKILL');
    const w = await pending;
    assert.ok(Date.now() - t0 < 10000, `dispatch_wait took ${Date.now() - t0} ms after the runner died`);
    assert.strictEqual(w.value.status, 'failed', JSON.stringify(w.value));
    assert.match(w.value.error, /Server stopped while the job was running/);
    await srv.close();
  });

  test('usage and lookup errors', async (t) => {
    const env = newEnv(t);
    env.setup({ agents: { a: true } });
    const u = env.run(['wait']);
    assert.strictEqual(u.code, 2);
    const both = env.run(['wait', 'abcd', '--any', '--all']);
    assert.strictEqual(both.code, 2);
    assert.match(both.stderr, /--any and --all exclude each other/);
    const none = env.run(['wait', 'abcdef']);
    assert.strictEqual(none.code, 1);
    assert.match(none.stderr, /No job id starts with 'abcdef'/);
    const h = env.run(['wait', '--help']);
    assert.strictEqual(h.code, 0);
    assert.match(h.stdout, /124/);
  });
});
