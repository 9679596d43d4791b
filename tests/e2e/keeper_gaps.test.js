'use strict';
// What a later server can do with a job the keeper runs after its server
// stopped: the one concurrency limit holds for a handed-off turn on a
// kept live process (the keeper holds the turn's slot), and a handed-off
// fan-out the keeper finishes is cancelled from another server (its
// running items' groups killed, nothing started after). Helpers:
// tests/e2e/lib.js.
const { test } = require('node:test');
const assert = require('node:assert');
const { newEnv, sleep, alive, groupAlive, waitUntil, stubFor, readRec, recUntil, stopLikeClaudeCode } = require('./lib');

async function stopServer(srv, how) {
  if (how === 'stop') return stopLikeClaudeCode(srv);
  srv.child.kill('SIGKILL');
  await srv.exited;
}

for (const how of ['stop', 'SIGKILL']) {
  test(`limit 1: a handed-off live turn kept after its server stopped (${how}) makes a new server's dispatch wait until it ends`,
    async (t) => {
      const env = newEnv(t);
      env.setup({ agents: { a: true }, settings: '  max_concurrency: 1\n' });
      const srv = env.serve();
      await srv.init();
      const first = (await srv.call('dispatch_session', { agent: 'a', task: 'turn one' })).value;
      assert.strictEqual(first.success, true, JSON.stringify(first));
      const { value } = await srv.call('dispatch_session', { agent: 'a', session_id: first.session_id,
        task: '[stub:sleep=4][stub:reply=kept turn] turn two', handoff_after_seconds: 1 });
      assert.strictEqual(value.status, 'running', JSON.stringify(value));
      await stopServer(srv, how);
      const srv2 = env.serve();
      await srv2.init();
      const after = (await srv2.call('dispatch', { agent: 'a', task: 'after the kept turn' },
        { ms: 30000 })).value;
      assert.strictEqual(after.success, true, JSON.stringify(after));
      const w = await srv2.call('dispatch_wait', { job_id: value.job_id, timeout_seconds: 30 }, { ms: 35000 });
      assert.strictEqual(w.value.status, 'done', JSON.stringify(w.value));
      assert.match(w.value.result.result, /turn two/, JSON.stringify(w.value));
      // The new child started only once the kept turn had ended there.
      const started = stubFor(env, 'after the kept turn').time;
      assert.ok(started >= w.value.completed_at - 0.05,
        `the new dispatch started at ${started}, before the kept turn ended at ${w.value.completed_at}`);
      await srv2.close();
      await env.assertNoLeftovers();
    });
}

for (const by of ['dispatch_cancel', 'CLI cancel']) {
  test(`a handed-off fan-out the keeper finishes is cancelled from a later server (${by}): its running item's group killed, nothing started after`,
    async (t) => {
      const env = newEnv(t);
      env.setup({ agents: { a: true }, settings: '  max_concurrency: 1\n' });
      const srv = env.serve();
      await srv.init();
      const items = [1, 2, 3].map((n) => ({ agent: 'a', task: `[stub:hang] fan part n${n}` }));
      const { value } = await srv.call('dispatch_parallel', { dispatches: JSON.stringify(items),
        handoff_after_seconds: 1 });
      assert.strictEqual(value.status, 'running', JSON.stringify(value));
      const id = value.job_id;
      assert.ok(await waitUntil(() => env.dispatches().length === 1, 5000), 'the first item started');
      const first = env.dispatches()[0];
      await stopLikeClaudeCode(srv);
      assert.ok(alive(first.pid), 'the running item runs on in the keeper');
      // The keeper's job runner names itself on the record once it runs the job.
      const runner = (await recUntil(env, id, (r) => r.process && r.process.pid, 10000,
        'the job runner named')).process.pid;
      assert.ok(alive(runner));
      let out;
      if (by === 'dispatch_cancel') {
        const srv2 = env.serve();
        await srv2.init();
        out = (await srv2.call('dispatch_cancel', { job_id: id }, { ms: 40000 })).value;
        await srv2.close();
      } else {
        const r = env.run(['cancel', id], { timeout: 40000 });
        assert.strictEqual(r.code, 0, r.stdout + r.stderr);
        out = { outcome: 'cancelled_running', status: readRec(env, id).status };
      }
      assert.strictEqual(out.outcome, 'cancelled_running', JSON.stringify(out));
      assert.strictEqual(out.status, 'cancelled', JSON.stringify(out));
      assert.ok(await waitUntil(() => !groupAlive(first.pgid), 5000), 'the running item\'s group is gone');
      await sleep(1500);
      assert.strictEqual(env.dispatches().length, 1,
        `items started after the cancel: ${JSON.stringify(env.dispatches().map((e) => e.prompt))}`);
      const rec = readRec(env, id);
      assert.strictEqual(rec.status, 'cancelled', JSON.stringify(rec));
      assert.ok(await waitUntil(() => !alive(runner), 5000), 'the job runner exited');
      await env.assertNoLeftovers();
    });
}
