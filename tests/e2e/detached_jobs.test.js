'use strict';
// Jobs that outlive the server (settings.jobs_outlive_server, off by
// default): an async job runs in a detached job runner
// (`agent-dispatch __job-runner ID`) that owns its child, so it finishes
// after the server or CLI that started it exited, and any later process
// reads, waits for and cancels it. A killed runner takes its child along
// and the next server settles the job at once. Helpers: tests/e2e/lib.js.
const { test, describe } = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const path = require('node:path');
const { newEnv, alive, groupAlive, waitUntil, readRec, recUntil, stubFor } = require('./lib');

/** The pid of the job's runner (its recorded owner), tracked for cleanup. */
function trackRunner(env, rec) {
  assert.ok(rec.server && rec.server.pid > 0, JSON.stringify(rec));
  env.extraPids.push(rec.server.pid);
  return rec.server.pid;
}

function killStubs(env) {
  for (const e of env.dispatches()) {
    try { process.kill(-e.pgid, 'SIGKILL'); } catch { /* gone */ }
    try { process.kill(e.pid, 'SIGKILL'); } catch { /* gone */ }
  }
}

describe('jobs that outlive the server', () => {
  test('an async job started through a server that then exits finishes; a new server and `job` read it',
    async (t) => {
      const env = newEnv(t);
      env.setup({ agents: { a: true }, settings: '  jobs_outlive_server: true\n' });
      t.after(() => killStubs(env));
      const srv = env.serve();
      await srv.init();
      const { value } = await srv.call('dispatch_async',
        { agent: 'a', task: '[stub:sleep=1] outlives-eof', response_format: 'json' });
      const id = value.job_id;
      await srv.close(); // stdin EOF: the end of a `claude -p` session
      assert.strictEqual(srv.exit.code, 0);
      const rec = await recUntil(env, id, (r) => r.status !== 'pending' && r.status !== 'running',
        10000, 'the job to end');
      assert.strictEqual(rec.status, 'done', JSON.stringify(rec));
      assert.match(rec.result.result, /stub ok: .*outlives-eof/);
      trackRunner(env, rec);
      assert.notStrictEqual(rec.server.pid, srv.child.pid, 'the job was run by the server itself');
      // The request reached the runner through the record, not argv.
      const stub = stubFor(env, 'outlives-eof');
      assert.match(stub.prompt, /## Response format/);

      const srv2 = env.serve();
      await srv2.init();
      const w = await srv2.call('dispatch_wait', { job_id: id, timeout_seconds: 5 });
      assert.strictEqual(w.value.status, 'done');
      await srv2.close();
      const j = env.run(['job', id, '--json']);
      assert.strictEqual(j.code, 0, j.stderr);
      assert.strictEqual(JSON.parse(j.stdout).status, 'done');
    });

  test('a new server waits for a running detached job and gets its answer', async (t) => {
    const env = newEnv(t);
    env.setup({ agents: { a: true }, settings: '  jobs_outlive_server: true\n' });
    t.after(() => killStubs(env));
    const srv = env.serve();
    await srv.init();
    const id = (await srv.call('dispatch_async', { agent: 'a', task: '[stub:sleep=2] wait-later' })).value.job_id;
    await srv.close();
    const rec = await recUntil(env, id, (r) => r.status === 'running', 5000, 'running');
    trackRunner(env, rec);
    const srv2 = env.serve();
    await srv2.init();
    const w = await srv2.call('dispatch_wait', { job_id: id, timeout_seconds: 20 }, { ms: 25000 });
    assert.strictEqual(w.value.status, 'done', JSON.stringify(w.value));
    assert.match(w.value.result.result, /wait-later/);
    await srv2.close();
  });

  test('CLI dispatch --async prints the job id; the job completes after the CLI exited', async (t) => {
    const env = newEnv(t);
    env.setup({ agents: { a: true }, settings: '  jobs_outlive_server: true\n' });
    t.after(() => killStubs(env));
    const r = env.run(['dispatch', 'a', '[stub:sleep=1] cli-async', '--async']);
    assert.strictEqual(r.code, 0, r.stderr);
    assert.match(r.stdout, /^[0-9a-f]{32}\n$/);
    const id = r.stdout.trim();
    const rec = await recUntil(env, id, (x) => x.status === 'done', 10000, 'done');
    trackRunner(env, rec);
    assert.match(rec.result.result, /cli-async/);

    const js = env.run(['dispatch', 'a', 'cli-async-json', '--async', '--json']);
    assert.strictEqual(js.code, 0, js.stderr);
    const o = JSON.parse(js.stdout);
    assert.deepStrictEqual(Object.keys(o), ['job_id', 'status', 'agent']);
    assert.strictEqual(o.status, 'pending');
    assert.strictEqual(o.agent, 'a');
    trackRunner(env, await recUntil(env, o.job_id, (x) => x.status === 'done', 10000, 'done'));

    const bad = env.run(['dispatch', 'nope', 'x', '--async']);
    assert.strictEqual(bad.code, 1);
    assert.match(bad.stderr, /Agent 'nope' not found/);
  });

  test('cancel of a detached job from another process kills its group', async (t) => {
    const env = newEnv(t);
    env.setup({ agents: { a: true }, settings: '  jobs_outlive_server: true\n' });
    t.after(() => killStubs(env));
    const srv = env.serve();
    await srv.init();
    const id = (await srv.call('dispatch_async', { agent: 'a', task: '[stub:hang] cancel-me' })).value.job_id;
    await srv.close();
    const rec = await recUntil(env, id, (r) => r.status === 'running' && r.process, 5000, 'running');
    const runner = trackRunner(env, rec);
    assert.ok(await waitUntil(() => stubFor(env, 'cancel-me'), 5000), 'the stub started');
    const stub = stubFor(env, 'cancel-me');
    assert.ok(alive(stub.pid), 'the child died with the server');
    const c = env.run(['cancel', id]);
    assert.strictEqual(c.code, 0, c.stdout + c.stderr);
    assert.ok(await waitUntil(() => !alive(stub.pid) && !groupAlive(stub.pgid), 5000),
      'the child\'s group survived the cancel');
    assert.ok(await waitUntil(() => !alive(runner), 5000), 'the job runner did not exit');
    assert.strictEqual(readRec(env, id).status, 'cancelled');
  });

  test('SIGKILL of the job runner leaves no orphan, grandchildren included; the next server settles the job as failed',
    async (t) => {
      const env = newEnv(t);
      env.setup({ agents: { a: true }, settings: '  jobs_outlive_server: true\n' });
      t.after(() => killStubs(env));
      // The child leaves a grandchild in its group: the runner's death
      // takes the child (its parent-death signal) but not the grandchild,
      // which whoever settles the job must end.
      const r = env.run(['dispatch', 'a', '[stub:hang] [stub:grandchild=120] kill-runner', '--async']);
      assert.strictEqual(r.code, 0, r.stderr);
      const id = r.stdout.trim();
      const rec = await recUntil(env, id, (x) => x.status === 'running' && x.process, 5000, 'running');
      const runner = trackRunner(env, rec);
      assert.ok(await waitUntil(() => stubFor(env, 'kill-runner'), 5000), 'the stub started');
      const stub = stubFor(env, 'kill-runner');
      // The stub logs before it forks: killed in between, it has no
      // grandchild to leave behind.
      assert.ok(await waitUntil(() => env.grandchildPid(), 5000), 'the stub started no grandchild');
      process.kill(runner, 'SIGKILL');
      assert.ok(await waitUntil(() => !alive(stub.pid), 5000), 'the child outlived its job runner');
      const srv = env.serve();
      await srv.init();
      let last;
      const end = Date.now() + 5000;
      do {
        last = (await srv.call('dispatch_status', { job_id: id })).value;
      } while (last.status === 'running' && Date.now() < end);
      assert.notStrictEqual(last.status, 'running', JSON.stringify(last));
      assert.strictEqual(last.status, 'failed');
      assert.match(last.error, /stopped while the job was running/);
      assert.ok(env.grandchildPid(), 'the stub started no grandchild');
      assert.ok(await waitUntil(() => !groupAlive(stub.pgid), 5000),
        `the child's group outlived the settled job (grandchild ${env.grandchildPid()})`);
      await srv.close();
      // The killed runner could not remove its inbox: gc does.
      const inbox = path.join(env.jobs, 'inbox', id);
      assert.ok(fs.existsSync(path.join(inbox, 'owner')), 'the runner served no inbox');
      const gc = env.run(['gc', '--all']);
      assert.strictEqual(gc.code, 0, gc.stderr);
      assert.ok(!fs.existsSync(inbox), 'gc left the inbox of a job whose runner was killed');
    });

  test('a job whose runner was SIGKILLed reads failed at once in job and jobs, no server started since',
    async (t) => {
      const env = newEnv(t);
      env.setup({ agents: { a: true }, settings: '  jobs_outlive_server: true\n' });
      t.after(() => killStubs(env));
      const r = env.run(['dispatch', 'a', '[stub:hang] kill-runner-2', '--async']);
      assert.strictEqual(r.code, 0, r.stderr);
      const id = r.stdout.trim();
      const rec = await recUntil(env, id, (x) => x.status === 'running' && x.process, 5000, 'running');
      const runner = trackRunner(env, rec);
      assert.ok(await waitUntil(() => stubFor(env, 'kill-runner-2'), 5000), 'the stub started');
      const stub = stubFor(env, 'kill-runner-2');
      process.kill(runner, 'SIGKILL');
      assert.ok(await waitUntil(() => !alive(stub.pid), 5000), 'the child outlived its job runner');
      // Asked for the failed ones first: the index still says running.
      const failed = JSON.parse(env.run(['jobs', '--status', 'failed', '--json']).stdout);
      assert.deepStrictEqual(failed.map((j) => j.id), [id]);
      const running = JSON.parse(env.run(['jobs', '--status', 'running', '--json']).stdout);
      assert.deepStrictEqual(running.map((j) => j.id), [], 'listed as running');
      const one = JSON.parse(env.run(['job', id, '--json']).stdout);
      assert.strictEqual(one.status, 'failed');
      assert.match(one.error, /stopped while the job was running/);
    });

  test('jobs_outlive_server: false keeps jobs in the server: they end with it', async (t) => {
    const env = newEnv(t);
    env.setup({ agents: { a: true }, settings: '  jobs_outlive_server: false\n' });
    t.after(() => killStubs(env));
    const srv = env.serve();
    await srv.init();
    const id = (await srv.call('dispatch_async', { agent: 'a', task: '[stub:hang] in-server' })).value.job_id;
    await recUntil(env, id, (r) => r.status === 'running', 5000, 'running');
    assert.strictEqual(readRec(env, id).server.pid, srv.child.pid);
    await srv.close();
    const rec = readRec(env, id);
    assert.strictEqual(rec.status, 'failed');
    assert.match(rec.error, /Server stopped while the job was running/);
    const bad = env.setup({ agents: { a: true }, settings: '  jobs_outlive_server: 3\n' });
    assert.ok(bad);
    const l = env.run(['list']);
    assert.strictEqual(l.code, 1);
    assert.match(l.stderr, /settings\.jobs_outlive_server: expected true or false/);
  });
});
