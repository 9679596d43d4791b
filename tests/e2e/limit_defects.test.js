'use strict';
// One concurrency limit across processes: every agent-dispatch process
// using one jobs directory (servers, CLI commands, detached job runners)
// shares settings.max_concurrency through slot files (<jobs>/slots/N.lock,
// held with flock by the process whose child uses the slot). Helpers:
// tests/e2e/lib.js.
const { test, describe } = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const path = require('node:path');
const { newEnv, alive, waitUntil, readRec } = require('./lib');

/** Samples how many stub children of env run at once until stop() is
 * called; returns {stop: () => max}. */
function sampler(env) {
  let max = 0, seen = new Set();
  const timer = setInterval(() => {
    let live = 0;
    for (const e of env.dispatches()) {
      seen.add(e.pid);
      if (alive(e.pid)) live++;
    }
    if (live > max) max = live;
  }, 10);
  return { stop: () => { clearInterval(timer); return max; }, seen };
}

const terminal = (r) => r && ['done', 'failed', 'cancelled'].includes(r.status);

async function allEnded(env, ids, ms) {
  const ok = await waitUntil(() => ids.every((id) => terminal(readRec(env, id))), ms, 50);
  assert.ok(ok, `jobs did not end: ${ids.map((id) => JSON.stringify(readRec(env, id))).join('\n')}`);
  for (const id of ids) {
    const r = readRec(env, id);
    if (r.server && r.server.pid > 1) env.extraPids.push(r.server.pid);
    assert.strictEqual(r.status, 'done', JSON.stringify(r));
  }
}

describe('one concurrency limit across processes', () => {
  for (const outlive of [false, true]) {
    test(`two servers at limit 2 with 6 jobs never run more than 2 children (jobs_outlive_server: ${outlive})`,
      async (t) => {
        const env = newEnv(t);
        env.setup({ agents: { a: true },
          settings: `  max_concurrency: 2\n  jobs_outlive_server: ${outlive}\n` });
        const s = sampler(env);
        const a = env.serve(), b = env.serve();
        await a.init();
        await b.init();
        const ids = [];
        for (let i = 0; i < 3; i++) {
          for (const srv of [a, b]) {
            const r = await srv.call('dispatch_async', { agent: 'a', task: `[stub:sleep=0.6] job-${ids.length}` });
            ids.push(r.value.job_id);
          }
        }
        await allEnded(env, ids, 30000);
        const max = s.stop();
        assert.strictEqual(s.seen.size, 6, 'every job ran its child');
        assert.ok(max <= 2, `${max} children ran at once with max_concurrency 2`);
        assert.strictEqual(max, 2, 'the jobs never ran side by side');
        await a.close();
        await b.close();
      });
  }

  test('CLI dispatch waits for a slot held by a server, then runs', async (t) => {
    const env = newEnv(t);
    env.setup({ agents: { a: true }, settings: '  max_concurrency: 1\n  jobs_outlive_server: false\n' });
    const srv = env.serve();
    await srv.init();
    const id = (await srv.call('dispatch_async', { agent: 'a', task: '[stub:sleep=1.5] held' })).value.job_id;
    assert.ok(await waitUntil(() => env.dispatches().length === 1, 5000), 'the job started');
    const s = sampler(env);
    const t0 = Date.now();
    const r = await env.start(['dispatch', 'a', 'second']).done;
    assert.strictEqual(r.code, 0, r.stderr);
    const max = s.stop();
    assert.ok(Date.now() - t0 >= 700, 'the CLI did not wait for the server\'s slot');
    assert.strictEqual(max, 1, `${max} children at once with max_concurrency 1`);
    await allEnded(env, [id], 10000);
    await srv.close();
  });

  test('the jobs directory removed under a running server: its next child still waits for a slot another process holds', async (t) => {
    const env = newEnv(t);
    env.setup({ agents: { a: true }, settings: '  max_concurrency: 1\n  handoff_after_seconds: 0\n' });
    const srv = env.serve();
    await srv.init();
    await srv.call('dispatch', { agent: 'a', task: 'warm' }); // the server opens its slot files
    fs.rmSync(env.jobs, { recursive: true, force: true }); // a user cleaning up state
    // The CLI recreates the directory and holds the one slot for 1.5 s.
    const cli = env.start(['dispatch', 'a', '[stub:sleep=1.5] cli-holds-the-slot']);
    assert.ok(await waitUntil(() => env.dispatches().some((e) => e.prompt.includes('cli-holds-the-slot')), 5000),
      'the CLI\'s child started');
    const s = sampler(env);
    const t0 = Date.now();
    const r = await srv.call('dispatch', { agent: 'a', task: 'server' }, { ms: 20000 });
    assert.strictEqual(r.value.success, true, r.text);
    assert.ok(Date.now() - t0 >= 700, 'the server ran its child beside the CLI\'s with max_concurrency 1');
    assert.strictEqual(s.stop(), 1, 'more than one child at once with max_concurrency 1');
    assert.strictEqual((await cli.done).code, 0);
    assert.doesNotMatch(srv.stderr, /concurrency slot/, srv.stderr);
    await srv.close();
  });

  test('a SIGKILLed holder frees its slot: a waiting server goes on at once', async (t) => {
    const env = newEnv(t);
    env.setup({ agents: { a: true }, settings: '  max_concurrency: 1\n  jobs_outlive_server: false\n' });
    const a = env.serve(), b = env.serve();
    await a.init();
    await b.init();
    await a.call('dispatch_async', { agent: 'a', task: '[stub:hang] holder' });
    assert.ok(await waitUntil(() => env.dispatches().length === 1, 5000), 'the holder started');
    const holder = env.dispatches()[0];
    const id = (await b.call('dispatch_async', { agent: 'a', task: 'waiter' })).value.job_id;
    await new Promise((r) => setTimeout(r, 300));
    assert.strictEqual(env.dispatches().length, 1, 'the waiter ran beside the holder');
    // Waiting for the slot does not block the waiting server's loop.
    const t0 = Date.now();
    const st = await b.call('dispatch_status', { job_id: id });
    assert.strictEqual(st.value.status, 'pending', JSON.stringify(st.value));
    assert.ok(Date.now() - t0 < 2000, `the waiting server took ${Date.now() - t0} ms to answer`);
    a.child.kill('SIGKILL');
    // The holder's child dies with it (PR_SET_PDEATHSIG); the kernel drops
    // its lock; the waiter is not left waiting for a release that never
    // comes.
    assert.ok(await waitUntil(() => !alive(holder.pid), 5000), 'the holder\'s child survived');
    await allEnded(env, [id], 10000);
    await b.close();
  });

  test('a waiter cancelled while queued never takes a slot later', async (t) => {
    const env = newEnv(t);
    env.setup({ agents: { a: true }, settings: '  max_concurrency: 1\n  jobs_outlive_server: false\n' });
    const a = env.serve(), b = env.serve();
    await a.init();
    await b.init();
    await a.call('dispatch_async', { agent: 'a', task: '[stub:sleep=1] first' });
    assert.ok(await waitUntil(() => env.dispatches().length === 1, 5000), 'the first job started');
    const q = (await b.call('dispatch_async', { agent: 'a', task: 'queued-then-cancelled' })).value.job_id;
    const c = await b.call('dispatch_cancel', { job_id: q });
    assert.strictEqual(c.value.status, 'cancelled', JSON.stringify(c.value));
    // After the first job, a third process gets the slot: the cancelled
    // waiter did not take it and keep it.
    const r = env.run(['dispatch', 'a', 'third'], { timeout: 15000 });
    assert.strictEqual(r.code, 0, r.stderr);
    assert.ok(!env.dispatches().some((e) => e.prompt.includes('queued-then-cancelled')),
      'the cancelled job ran');
    await a.close();
    await b.close();
  });

  test('slot files are owner-only; a symlinked slot directory is refused', async (t) => {
    const env = newEnv(t);
    env.setup({ agents: { a: true }, settings: '  max_concurrency: 2\n' });
    const r = env.run(['dispatch', 'a', 'modes']);
    assert.strictEqual(r.code, 0, r.stderr);
    const dir = path.join(env.jobs, 'slots');
    assert.strictEqual(fs.statSync(dir).mode & 0o777, 0o700);
    assert.deepStrictEqual(fs.readdirSync(dir), ['0.lock']);
    assert.strictEqual(fs.statSync(path.join(dir, '0.lock')).mode & 0o777, 0o600);

    const env2 = newEnv(t);
    env2.setup({ agents: { a: true } });
    const elsewhere = path.join(env2.root, 'elsewhere');
    fs.mkdirSync(elsewhere, { mode: 0o700 });
    fs.mkdirSync(env2.jobs, { mode: 0o700 });
    fs.symlinkSync(elsewhere, path.join(env2.jobs, 'slots'));
    const r2 = env2.run(['dispatch', 'a', 'refused']);
    assert.strictEqual(r2.code, 0, r2.stderr);
    assert.match(r2.stderr, /refusing the slot directory .*symbolic link/);
    assert.deepStrictEqual(fs.readdirSync(elsewhere), [], 'slot files were made through the symlink');

    // A symlinked slot file: refused (never opened through the link), the
    // dispatch still runs, limited per process, and says so.
    const env3 = newEnv(t);
    env3.setup({ agents: { a: true } });
    fs.mkdirSync(path.join(env3.jobs, 'slots'), { recursive: true, mode: 0o700 });
    const target = path.join(env3.root, 'target');
    fs.writeFileSync(target, 'keep', { mode: 0o644 });
    fs.symlinkSync(target, path.join(env3.jobs, 'slots', '0.lock'));
    const r3 = env3.run(['dispatch', 'a', 'link']);
    assert.strictEqual(r3.code, 0, r3.stderr);
    assert.match(r3.stderr, /concurrency slot 0: slot file 0\.lock is a symbolic link; settings\.max_concurrency now holds for this process only/);
    assert.strictEqual(fs.readFileSync(target, 'utf8'), 'keep');
    assert.strictEqual(fs.statSync(target).mode & 0o777, 0o644, 'the link target was chmodded');
  });

  test('a huge max_concurrency opens slot files only as children need them', async (t) => {
    const env = newEnv(t);
    env.setup({ agents: { a: true }, settings: '  max_concurrency: 1000000\n' });
    const r = env.run(['dispatch', 'a', 'huge']);
    assert.strictEqual(r.code, 0, r.stderr);
    assert.strictEqual(r.stderr.includes('concurrency slot'), false, r.stderr);
    assert.deepStrictEqual(fs.readdirSync(path.join(env.jobs, 'slots')), ['0.lock']);
  });
});
