'use strict';
// The live transport: claude children driven over the CLI's stream-json
// control channel (settings.transport auto|live|oneshot), steering a
// running job (dispatch_steer, `agent-dispatch steer`), cancel as an
// interrupt first (the session stays resumable), and the job inbox files.
// The stub claude has the channel (its --help lists --input-format) unless
// STUB_CLAUDE_NO_LIVE is set. Helpers: tests/e2e/lib.js.
const { test, describe } = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const path = require('node:path');
const { spawnSync } = require('node:child_process');
const { newEnv, waitUntil, groupAlive, readRec, recUntil, stubFor } = require('./lib');

function trackRunner(env, rec) {
  if (rec && rec.server && rec.server.pid > 0) env.extraPids.push(rec.server.pid);
}

// A server with agent `a` (and settings) whose dispatch_async of task is
// running (its job runner, if any, checked for at the end): {env, srv, id}.
async function runningJob(t, task, settings = '') {
  const env = newEnv(t);
  env.setup({ agents: { a: true }, settings });
  const srv = env.serve();
  await srv.init();
  const id = (await srv.call('dispatch_async', { agent: 'a', task })).value.job_id;
  trackRunner(env, await recUntil(env, id, (r) => r.status === 'running', 10000, 'running'));
  return { env, srv, id };
}

// runningJob, with the stub of the prompt `name` started: also its log line.
async function runningStub(t, task, name, settings) {
  const job = await runningJob(t, task, settings);
  await waitUntil(() => stubFor(job.env, name), 5000);
  return { ...job, stub: stubFor(job.env, name) };
}

const isLive = (e) => e.argv.includes('--input-format') &&
  e.argv[e.argv.indexOf('--input-format') + 1] === 'stream-json';

describe('transport selection', () => {
  test('auto: a CLI with the channel runs live; its --help is probed once per binary, across processes', async (t) => {
    const env = newEnv(t);
    env.setup({ agents: { a: true } });
    const help = path.join(env.root, 'help.log');
    const srv = env.serve({ env: { STUB_CLAUDE_HELP_LOG: help } });
    await srv.init();
    // Three first dispatches at once: one probe between them.
    const par = (await srv.call('dispatch_parallel', { dispatches: JSON.stringify(
      ['p1', 'p2', 'p3'].map((task) => ({ agent: 'a', task }))) })).value;
    assert.deepStrictEqual(par.map((x) => x.result), ['stub ok: p1', 'stub ok: p2', 'stub ok: p3']);
    const r1 = (await srv.call('dispatch', { agent: 'a', task: 'one' })).value;
    const r2 = (await srv.call('dispatch_stream', { agent: 'a', task: 'two [stub:progress=2]' })).value;
    assert.strictEqual(r1.result, 'stub ok: one');
    assert.strictEqual(r2.result, 'stub ok: two');
    await srv.close();
    const d = env.dispatches();
    assert.strictEqual(d.length, 5);
    assert.ok(d.every(isLive), JSON.stringify(d.map((e) => e.argv)));
    assert.ok(d.every((e) => e.argv.includes('stream-json') && e.argv.includes('--verbose')));
    // Another process: the answer is on disk, no probe.
    const c = env.run(['dispatch', 'a', 'three'], { env: { STUB_CLAUDE_HELP_LOG: help } });
    assert.strictEqual(c.code, 0, c.stderr);
    assert.match(c.stdout, /stub ok: three/);
    assert.strictEqual(fs.readFileSync(help, 'utf8'), 'help\n', 'one --help for six dispatches in two processes');
    const cache = JSON.parse(fs.readFileSync(path.join(env.cfgDir, 'cli-transport.json'), 'utf8'));
    assert.strictEqual(Object.values(cache)[0].live, true);
  });

  test('auto: a CLI without the channel runs one-shot (prompt on stdin, json output)', async (t) => {
    const env = newEnv(t);
    env.setup({ agents: { a: true } });
    const r = env.run(['dispatch', 'a', 'old cli'], { env: { STUB_CLAUDE_NO_LIVE: '1' } });
    assert.strictEqual(r.code, 0, r.stderr);
    assert.match(r.stdout, /stub ok: old cli/);
    const [e] = env.dispatches();
    assert.ok(!e.argv.includes('--input-format'), e.argv.join(' '));
    assert.strictEqual(e.prompt, 'old cli'); // the whole prompt on stdin, as before
  });

  test('settings.transport oneshot keeps claude -p; live forces the channel; a bad value is a config problem', async (t) => {
    const env = newEnv(t);
    env.setup({ agents: { a: true }, settings: '  transport: oneshot\n' });
    let r = env.run(['dispatch', 'a', 'plain']);
    assert.strictEqual(r.code, 0, r.stderr);
    assert.ok(!env.dispatches()[0].argv.includes('--input-format'));
    env.setup({ agents: { a: true }, settings: '  transport: live\n' });
    r = env.run(['dispatch', 'a', 'forced'], { env: { STUB_CLAUDE_NO_LIVE: undefined } });
    assert.strictEqual(r.code, 0, r.stderr);
    assert.ok(isLive(env.dispatches()[1]));
    env.setup({ agents: { a: true }, settings: '  transport: sometimes\n' });
    r = env.run(['dispatch', 'a', 'x']);
    assert.notStrictEqual(r.code, 0);
    assert.match(r.stderr, /settings\.transport.*auto, live or oneshot/);
  });

  test('live: non-stream limits, plain-text answers and failures read as in one-shot mode', async (t) => {
    const env = newEnv(t);
    env.setup({ agents: { a: true } });
    const srv = env.serve();
    await srv.init();
    let v = (await srv.call('dispatch', { agent: 'a', task: '[stub:stdout=just text]' })).value;
    assert.strictEqual(v.success, true, JSON.stringify(v));
    assert.strictEqual(v.result, 'just text');
    v = (await srv.call('dispatch', { agent: 'a', task: '[stub:spew=9437184] [stub:no_result]' }, { ms: 60000 })).value;
    assert.strictEqual(v.success, false);
    assert.match(v.error, /^Output truncated: claude wrote more than 8388608 bytes on stdout/);
    v = (await srv.call('dispatch', { agent: 'a', task: '[stub:no_result] [stub:exit=3] [stub:stderr=boom here]' })).value;
    assert.strictEqual(v.success, false);
    assert.match(v.error, /boom here/);
    v = (await srv.call('dispatch', { agent: 'a', task: '[stub:is_error] [stub:reply=it broke]' })).value;
    assert.strictEqual(v.success, false);
    assert.strictEqual(v.error, 'it broke');
    await srv.close();
    assert.ok(env.dispatches().every(isLive));
  });
});

describe('steering a running job', () => {
  test('dispatch_steer delivers to a detached job\'s live child; the answer reflects it; the steer is recorded', async (t) => {
    const { env, srv, id } = await runningJob(t, '[stub:sleep=1.5] paint the shed');
    const s = await srv.call('dispatch_steer', { job_id: id, message: 'use blue paint' });
    assert.strictEqual(s.isError, false, s.text);
    assert.strictEqual(s.value.outcome, 'delivered', s.text);
    const w = (await srv.call('dispatch_wait', { job_id: id, timeout_seconds: 30 })).value;
    assert.strictEqual(w.status, 'done', JSON.stringify(w));
    assert.strictEqual(w.result.result, 'stub ok: paint the shed\n+ use blue paint');
    const done = readRec(env, id);
    assert.strictEqual(done.messages.length, 1);
    assert.strictEqual(done.messages[0].kind, 'steer');
    assert.strictEqual(done.messages[0].text, 'use blue paint');
    assert.strictEqual(done.messages[0].by, 'dispatch_steer');
    assert.ok(done.messages[0].at > 0);
    // Ended: nothing to steer.
    const late = await srv.call('dispatch_steer', { job_id: id, message: 'too late' });
    assert.strictEqual(late.isError, true);
    assert.strictEqual(late.value.outcome, 'not_running');
    const none = await srv.call('dispatch_steer', { job_id: '0'.repeat(32), message: 'x' });
    assert.strictEqual(none.isError, true);
    assert.match(none.text, /Job not found/);
    await srv.close();
    await env.assertNoLeftovers();
  });

  test('CLI steer from another process; the one-shot transport answers not_steerable', async (t) => {
    const env = newEnv(t);
    env.setup({ agents: { a: true } });
    let r = env.run(['dispatch', 'a', '[stub:sleep=1.5] write the report', '--async']);
    assert.strictEqual(r.code, 0, r.stderr);
    const id = r.stdout.match(/[0-9a-f]{32}/)[0];
    trackRunner(env, await recUntil(env, id, (x) => x.status === 'running', 10000, 'running'));
    r = env.run(['steer', id.slice(0, 8), 'in French']);
    assert.strictEqual(r.code, 0, r.stderr);
    assert.match(r.stdout, /Delivered/);
    const w = env.run(['wait', id, '--timeout', '30']);
    assert.strictEqual(w.code, 0, w.stderr);
    assert.match(w.stdout, /stub ok: write the report\n\+ in French/);
    assert.strictEqual(readRec(env, id).messages[0].by, 'cli steer');

    env.setup({ agents: { a: true }, settings: '  transport: oneshot\n' });
    r = env.run(['dispatch', 'a', '[stub:sleep=3] oneshot job', '--async']);
    const id2 = r.stdout.match(/[0-9a-f]{32}/)[0];
    trackRunner(env, await recUntil(env, id2, (x) => x.status === 'running', 10000, 'running'));
    r = env.run(['steer', id2, 'anything', '--json']);
    assert.strictEqual(r.code, 1);
    const j = JSON.parse(r.stdout);
    assert.strictEqual(j.outcome, 'not_steerable');
    assert.match(j.message, /one-shot transport/);
    env.run(['cancel', id2]);
    await env.assertNoLeftovers(10000);
  });
});

describe('steering a handed-off call', () => {
  for (const [owner, settings] of [
    // The job stays this server's: no keeper, so the child is live.
    ['(in-process owner)', '  jobs_outlive_server: false\n'],
    ['while its server runs, with the keeper as its parent (the default)', '']]) {
    test(`a sync dispatch handed off to a job of the server takes steering ${owner}`, async (t) => {
      const env = newEnv(t);
      env.setup({ agents: { a: true }, settings });
      const srv = env.serve();
      await srv.init();
      const h = (await srv.call('dispatch', { agent: 'a', task: '[stub:sleep=2.5] sort the list',
        handoff_after_seconds: 1 }, { ms: 10000 })).value;
      assert.strictEqual(h.status, 'running', JSON.stringify(h));
      const s = (await srv.call('dispatch_steer', { job_id: h.job_id, message: 'descending' })).value;
      assert.strictEqual(s.outcome, 'delivered', JSON.stringify(s));
      const w = (await srv.call('dispatch_wait', { job_id: h.job_id, timeout_seconds: 30 })).value;
      assert.strictEqual(w.result.result, 'stub ok: sort the list\n+ descending');
      assert.strictEqual(readRec(env, h.job_id).messages[0].text, 'descending');
      await srv.close();
      await env.assertNoLeftovers();
    });
  }
});

describe('cancel interrupts first', () => {
  test('a cancelled live job stops at the interrupt, keeps its session_id, and dispatch_session resumes it', async (t) => {
    const { env, srv, id, stub } = await runningStub(t, '[stub:sleep=60] long haul', 'long haul',
      '  interrupt_grace_seconds: 20\n');
    const t0 = Date.now();
    const c = (await srv.call('dispatch_cancel', { job_id: id }, { ms: 30000 })).value;
    assert.strictEqual(c.outcome, 'cancelled_running', JSON.stringify(c));
    // It stopped at the interrupt, well before the 20 s grace.
    assert.ok(await waitUntil(() => !groupAlive(stub.pgid), 10000), 'the child\'s group is gone');
    assert.ok(Date.now() - t0 < 15000, `took ${Date.now() - t0} ms`);
    const rec = await recUntil(env, id, (r) => r.status === 'cancelled' && r.session_id, 10000, 'session noted');
    assert.match(rec.session_id, /^[0-9a-f-]{36}$/);
    assert.strictEqual(rec.messages[0].kind, 'interrupt');
    const again = (await srv.call('dispatch_session', { agent: 'a', task: 'go on', session_id: rec.session_id })).value;
    assert.strictEqual(again.success, true, JSON.stringify(again));
    assert.strictEqual(again.session_id, rec.session_id);
    const resumed = env.dispatches().at(-1);
    assert.strictEqual(resumed.argv[resumed.argv.indexOf('--resume') + 1], rec.session_id);
    await srv.close();
    await env.assertNoLeftovers();
  });

  test('a detached job\'s child deaf to the interrupt is killed after the grace too', async (t) => {
    const { env, srv, id, stub } = await runningStub(t, '[stub:deaf] [stub:hang] deaf two', 'deaf two',
      '  interrupt_grace_seconds: 1\n');
    const t0 = Date.now();
    const c = (await srv.call('dispatch_cancel', { job_id: id }, { ms: 40000 })).value;
    assert.strictEqual(c.outcome, 'cancelled_running', JSON.stringify(c));
    assert.ok(await waitUntil(() => !groupAlive(stub.pgid), 10000), 'killed after the grace');
    assert.ok(Date.now() - t0 < 10000, `took ${Date.now() - t0} ms`);
    await srv.close();
    await env.assertNoLeftovers();
  });

  test('a child deaf to the interrupt is killed after interrupt_grace_seconds', async (t) => {
    const { env, srv, id, stub } = await runningStub(t, '[stub:deaf] [stub:sleep=60] deaf one', 'deaf one',
      '  interrupt_grace_seconds: 1\n  jobs_outlive_server: false\n');
    const t0 = Date.now();
    await srv.call('dispatch_cancel', { job_id: id });
    assert.ok(await waitUntil(() => !groupAlive(stub.pgid), 10000), 'killed after the grace');
    const took = Date.now() - t0;
    assert.ok(took >= 900 && took < 8000, `took ${took} ms`);
    await srv.close();
    await env.assertNoLeftovers();
  });
});

describe('job inbox files', () => {
  test('the inbox is private; a message that is a symlink, another user\'s or oversized is removed unread', async (t) => {
    const { env, srv, id } = await runningJob(t, '[stub:sleep=2] guarded');
    const box = path.join(env.jobs, 'inbox', id);
    assert.ok(await waitUntil(() => fs.existsSync(path.join(box, 'owner')), 5000));
    assert.strictEqual(fs.statSync(box).mode & 0o777, 0o700);
    const msg = (text) => JSON.stringify({ kind: 'steer', text, by: 'forger', at: 1 });
    const outside = path.join(env.root, 'outside.json');
    fs.writeFileSync(outside, msg('via a link'));
    fs.symlinkSync(outside, path.join(box, 'm-0000000000000001-1-1.json'));
    fs.writeFileSync(path.join(box, 'm-0000000000000002-1-1.json'), msg('from another user'));
    fs.chownSync(path.join(box, 'm-0000000000000002-1-1.json'), 65534, 65534);
    fs.writeFileSync(path.join(box, 'm-0000000000000003-1-1.json'), msg('x'.repeat(70000)));
    fs.writeFileSync(path.join(box, 'bell'), 'ring');
    // A real steer after them: applied, and the forged ones never were.
    const s = (await srv.call('dispatch_steer', { job_id: id, message: 'the real one' })).value;
    assert.strictEqual(s.outcome, 'delivered', JSON.stringify(s));
    const w = (await srv.call('dispatch_wait', { job_id: id, timeout_seconds: 30 })).value;
    assert.strictEqual(w.result.result, 'stub ok: guarded\n+ the real one');
    assert.deepStrictEqual(readRec(env, id).messages.map((m) => m.text), ['the real one']);
    for (const n of ['m-0000000000000001-1-1.json', 'm-0000000000000002-1-1.json', 'm-0000000000000003-1-1.json']) {
      assert.ok(!fs.existsSync(path.join(box, n)), `${n} removed`);
    }
    assert.ok(fs.existsSync(outside), 'the link target is untouched');
    assert.ok(await waitUntil(() => !fs.existsSync(box), 5000), 'the inbox is removed when the job ends');
    await srv.close();
    await env.assertNoLeftovers();
  });
});
