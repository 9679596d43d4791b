'use strict';
// Children and the server's life: children die with a SIGKILLed server, a
// restarted server settles the jobs of a dead one at once, an async job's
// record names its child before the child runs; prompts of any size reach
// the child (stdin, not argv); a non-stream dispatch's output is bounded.
// Helpers: tests/e2e/lib.js.
const { test, describe } = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const path = require('node:path');
const crypto = require('node:crypto');
const { newEnv, sleep, alive, groupAlive, waitUntil, stubFor, readRec } = require('./lib');

async function start(t, cfg = { agents: { a: true } }, serveEnv = {}) {
  const env = newEnv(t);
  const dirs = env.setup(cfg);
  const srv = env.serve({ env: serveEnv });
  await srv.init();
  return { env, srv, dirs };
}

async function statusUntil(srv, id, pred, ms, what) {
  const end = Date.now() + ms;
  for (;;) {
    const last = (await srv.call('dispatch_status', { job_id: id })).value;
    if (pred(last)) return last;
    if (Date.now() > end) assert.fail(`timed out waiting for ${what}: ${JSON.stringify(last)}`);
    await sleep(50);
  }
}

/** Kills what a failed assertion may have left behind (the unfixed code). */
function killStubs(env) {
  for (const e of env.dispatches()) {
    try { process.kill(-e.pgid, 'SIGKILL'); } catch { /* gone */ }
    try { process.kill(e.pid, 'SIGKILL'); } catch { /* gone */ }
  }
}

describe('children and a SIGKILLed server', () => {
  test('a sync dispatch\'s child dies with its SIGKILLed server', async (t) => {
    const { env, srv } = await start(t);
    t.after(() => killStubs(env));
    const call = srv.call('dispatch', { agent: 'a', task: '[stub:hang] sync-orphan' }, { ms: 3000 })
      .catch(() => null);
    assert.ok(await waitUntil(() => stubFor(env, 'sync-orphan'), 5000), 'the stub started');
    const stub = stubFor(env, 'sync-orphan');
    srv.child.kill('SIGKILL');
    await srv.exited;
    await call;
    assert.ok(await waitUntil(() => !alive(stub.pid), 3000),
      'the child outlived its server (no timeout applies to it any more)');
    assert.ok(await waitUntil(() => !groupAlive(stub.pgid), 3000));
  });

  test('async jobs of a SIGKILLed server: children gone, settled by the next server at once', async (t) => {
    // Jobs run by the server itself (jobs_outlive_server off); detached
    // jobs are covered in detached_jobs.test.js.
    const env = newEnv(t);
    env.setup({ agents: { a: true }, settings: '  jobs_outlive_server: false\n' });
    t.after(() => killStubs(env));
    const srv = env.serve();
    await srv.init();
    const hang = (await srv.call('dispatch_async', { agent: 'a', task: '[stub:hang] job-hang' })).value.job_id;
    const quick = (await srv.call('dispatch_async', { agent: 'a', task: '[stub:sleep=1] job-quick' })).value.job_id;
    for (const id of [hang, quick]) {
      await statusUntil(srv, id, (r) => r.status === 'running', 5000, 'running');
    }
    assert.ok(await waitUntil(() => stubFor(env, 'job-hang') && stubFor(env, 'job-quick'), 5000));
    const rec = readRec(env, hang);
    srv.child.kill('SIGKILL');
    await srv.exited;
    const stubs = [stubFor(env, 'job-hang'), stubFor(env, 'job-quick')];
    assert.ok(await waitUntil(() => stubs.every((s) => !alive(s.pid)), 3000),
      'a child outlived its SIGKILLed server');
    assert.strictEqual(readRec(env, hang).status, 'running');

    // The next server settles both now, not after the one-hour stale rule.
    const srv2 = env.serve();
    await srv2.init();
    for (const id of [hang, quick]) {
      const r = await statusUntil(srv2, id, (x) => x.status !== 'running', 5000, 'settled');
      assert.strictEqual(r.status, 'failed');
      assert.match(r.error, /Server stopped while the job was running/);
    }
    // The records named their server (pid and start time) and the child.
    assert.ok(rec.server && rec.server.start > 0, JSON.stringify(rec));
    assert.deepStrictEqual(rec.server, { pid: srv.child.pid, start: rec.server.start });
    assert.strictEqual(rec.process.server_pid, srv.child.pid);
    assert.strictEqual(rec.process.server_start, rec.server.start);
    await srv2.close();
  });

  test('a pending job of a dead server is settled at restart', async (t) => {
    const env = newEnv(t);
    env.setup({ agents: { a: true } });
    // A process that existed and is gone: its pid with a start time that
    // cannot match (start times count up from boot).
    fs.mkdirSync(env.jobs, { recursive: true, mode: 0o700 });
    const id = crypto.randomBytes(16).toString('hex');
    const n = Date.now() / 1000;
    fs.writeFileSync(path.join(env.jobs, `${id}.json`), JSON.stringify({
      id, agent: 'a', task: 'planted', status: 'pending', created_at: n - 60,
      server: { pid: process.pid, start: 1 } }), { mode: 0o600 });
    const srv = env.serve();
    await srv.init();
    const r = await statusUntil(srv, id, (x) => x.status !== 'pending', 5000, 'settled');
    assert.strictEqual(r.status, 'failed');
    assert.match(r.error, /Server stopped while the job was pending/);
    await srv.close();
  });

  test('an async job\'s record names its child before the child runs', async (t) => {
    const { env, srv } = await start(t);
    const ids = [];
    for (let i = 0; i < 4; i++) {
      ids.push((await srv.call('dispatch_async', { agent: 'a', task: `[stub:job_record] gate-${i}` })).value.job_id);
    }
    for (const id of ids) {
      const { value } = await srv.call('dispatch_wait', { job_id: id, timeout_seconds: 30 }, { ms: 35000 });
      assert.strictEqual(value.status, 'done', JSON.stringify(value));
      assert.strictEqual(value.result.result, 'named running',
        'the child ran before its record said "running" with its pid');
    }
    await srv.close();
  });
});

describe('prompts beyond one argument\'s limit (128 KiB)', () => {
  test('a 300 KiB prompt over a sync dispatch reaches the child whole', async (t) => {
    const { env, srv } = await start(t);
    const big = 'y'.repeat(300 * 1024);
    const { value } = await srv.call('dispatch', { agent: 'a', task: `${big} [stub:reply=big ok]` }, { ms: 30000 });
    assert.strictEqual(value.success, true, JSON.stringify(value).slice(0, 500));
    assert.strictEqual(value.result, 'big ok');
    const [e] = env.dispatches();
    assert.ok(e.prompt.includes(`${big} [stub:reply=big ok]`), 'the stub did not get the whole prompt');
    assert.strictEqual(e.argv.at(-1), '--');
    await srv.close();
  });

  test('an aggregation over large parallel results', async (t) => {
    const { env, srv } = await start(t, { agents: { a: true, b: true, boss: true } });
    const items = [{ agent: 'a', task: 'alpha [stub:huge=100000]' }, { agent: 'b', task: 'beta [stub:huge=100000]' }];
    const v = (await srv.call('dispatch_parallel', { dispatches: JSON.stringify(items), aggregate: 'boss' },
      { ms: 30000 })).value;
    assert.ok(v.individual_results.every((r) => r.success && r.result.length === 100000));
    assert.strictEqual(v.aggregated.success, true, JSON.stringify(v.aggregated).slice(0, 500));
    const p = stubFor(env, '## Agent: b').prompt;
    assert.ok(p.length > 200000, `aggregator prompt of ${p.length} chars`);
    await srv.close();
  });

  test('a prompt that looks like flags stays data', async (t) => {
    const { env, srv } = await start(t);
    const { value } = await srv.call('dispatch', { agent: 'a', task: '--model evil --output-format text' });
    assert.strictEqual(value.success, true);
    const [e] = env.dispatches();
    assert.ok(!e.argv.includes('evil') && !e.argv.includes('text'));
    assert.match(e.prompt, /--model evil --output-format text/);
    await srv.close();
  });
});

function vmHWMkB(pid) {
  const m = /VmHWM:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : -1;
}

describe('output of a non-stream dispatch', () => {
  test('200 MB of stray stdout: bounded server memory and a clear error', async (t) => {
    const { srv } = await start(t);
    const { value } = await srv.call('dispatch', { agent: 'a', task: '[stub:spew=209715200] [stub:no_result]' },
      { ms: 120000 });
    const hwm = vmHWMkB(srv.child.pid);
    assert.strictEqual(value.success, false);
    assert.strictEqual(value.error_type, 'cli_error');
    assert.match(value.error, /^Output truncated: claude wrote more than 8388608 bytes on stdout/);
    assert.ok(hwm > 0 && hwm < 100 * 1024, `server peak RSS ${hwm} kB`);
    await srv.close();
  });

  test('a result object after 200 MB of stray stdout still counts', async (t) => {
    const { srv } = await start(t);
    const { value } = await srv.call('dispatch', { agent: 'a', task: '[stub:spew=209715200] [stub:reply=at last]' },
      { ms: 120000 });
    const hwm = vmHWMkB(srv.child.pid);
    assert.strictEqual(value.success, true, JSON.stringify(value).slice(0, 300));
    assert.strictEqual(value.result, 'at last');
    assert.ok(hwm > 0 && hwm < 100 * 1024, `server peak RSS ${hwm} kB`);
    await srv.close();
  });
});

describe('output of a kept live session', () => {
  test('200 MB of stray stdout in a session turn: bounded server memory, the result counts, the session is kept', async (t) => {
    const { srv } = await start(t);
    const first = (await srv.call('dispatch_session', { agent: 'a', task: 'turn one' }, { ms: 30000 })).value;
    assert.strictEqual(first.success, true, JSON.stringify(first));
    const { value } = await srv.call('dispatch_session', { agent: 'a', session_id: first.session_id,
      task: '[stub:spew=209715200] spewed' }, { ms: 120000 });
    const hwm = vmHWMkB(srv.child.pid);
    assert.strictEqual(value.success, true, JSON.stringify(value).slice(0, 300));
    assert.match(value.result, /\+ spewed$/, JSON.stringify(value).slice(0, 300));
    assert.strictEqual(value.session_id, first.session_id);
    assert.ok(hwm > 0 && hwm < 100 * 1024, `server peak RSS ${hwm} kB`);
    // The turn ran on the session's kept process, which is still kept.
    const s = (await srv.call('live_stats')).value;
    assert.strictEqual(s.sessions, 1, JSON.stringify(s));
    // A later turn's stray stdout is bounded on its own (the cap is per
    // turn): its few lines still reach the run.
    const again = (await srv.call('dispatch_session', { agent: 'a', session_id: first.session_id,
      task: 'third' }, { ms: 30000 })).value;
    assert.match(again.result, /\+ third$/, JSON.stringify(again).slice(0, 300));
    // A turn that only writes stray stdout: the one-shot error.
    const lost = (await srv.call('dispatch_session', { agent: 'a', session_id: first.session_id,
      task: '[stub:spew=209715200] [stub:no_result]' }, { ms: 120000 })).value;
    assert.strictEqual(lost.success, false);
    assert.match(lost.error, /^Output truncated: claude wrote more than 8388608 bytes on stdout/, lost.error);
    await srv.close();
  });
});

describe('the transport check and the timeout', () => {
  test('a CLI slow to answer the transport check (claude --help) spends the dispatch\'s timeout, not time on top of it', async (t) => {
    const env = newEnv(t);
    env.setup({ agents: { a: true } });
    const { STUB_DIR } = require('./lib');
    // A claude whose --help takes 30 s; everything else is the stub.
    const wrap = path.join(env.root, 'slow-help-claude');
    fs.writeFileSync(wrap, `#!/bin/sh\n[ "$1" = --help ] && exec sleep 30\nexec ${JSON.stringify(path.join(STUB_DIR, 'claude'))} "$@"\n`,
      { mode: 0o755 });
    const srv = env.serve({ env: { AGENT_DISPATCH_CLAUDE: wrap, HOME: path.join(env.root, 'home') } });
    await srv.init();
    const t0 = Date.now();
    const { value } = await srv.call('dispatch', { agent: 'a', task: '[stub:sleep=5] slow check', timeout_seconds: 12 },
      { ms: 60000 });
    const took = (Date.now() - t0) / 1000;
    assert.strictEqual(value.success, false, JSON.stringify(value));
    assert.strictEqual(value.error_type, 'timeout', JSON.stringify(value));
    assert.ok(took < 13.5, `the call took ${took} s with a 12 s timeout`);
    await srv.close();
  });
});

describe('listing agents on hosts that do not answer', () => {
  test('three silent hosts are shown UNREACHABLE in about 3 s, not 3 s each (or 10 s for a stall after the banner)', async (t) => {
    const env = newEnv(t);
    const dirs = ['h1', 'h2', 'h3'].map((h) => `  ${h}a:\n    directory: /srv/${h}\n    host: ${h}.invalid\n`);
    env.writeConfig(`agents:\n${dirs.join('')}`);
    // An ssh that connects and then says nothing (a host that stalls).
    const ssh = path.join(env.root, 'silent-ssh');
    fs.writeFileSync(ssh, '#!/bin/sh\nexec sleep 30\n', { mode: 0o755 });
    const t0 = Date.now();
    const r = env.run(['list'], { env: { AGENT_DISPATCH_SSH: ssh } });
    const took = (Date.now() - t0) / 1000;
    assert.strictEqual(r.code, 0, r.stderr);
    assert.strictEqual((r.stdout.match(/\[UNREACHABLE\]/g) || []).length, 3, r.stdout);
    assert.ok(took < 6, `list took ${took} s`);
  });
});
