'use strict';
// Job store defects end to end: every async job ends (old-CLI self-healing),
// hook redaction of progress lines, index reconciliation with the
// directory, I/O errors of the job tools, cancelling records without a
// process, and write failures (a full disk). Helpers: tests/e2e/lib.js.
const { test, describe } = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const path = require('node:path');
const crypto = require('node:crypto');
const os = require('node:os');
const { execFileSync } = require('node:child_process');
const { newEnv, sleep } = require('../e2e/lib');
// These tests cover jobs run by the server itself (jobs_outlive_server
// off); detached jobs are covered by tests/e2e/detached_jobs.test.js.
const { Env } = require('../e2e/lib');
const inServerSetup = Env.prototype.setup;
Env.prototype.setup = function setup(o = {}) {
  return inServerSetup.call(this, { ...o, settings: `${o.settings || ''}  jobs_outlive_server: false\n` });
};

const HEX = /^[0-9a-f]{32}$/;
const now = () => Date.now() / 1000;

async function start(t, cfg = { agents: { a: true } }, serverEnv = {}) {
  const env = newEnv(t);
  const dirs = cfg ? env.setup(cfg) : {};
  const srv = env.serve({ env: serverEnv });
  await srv.init();
  return { env, srv, dirs };
}

const recPath = (env, id) => path.join(env.jobs, `${id}.json`);
const readRec = (env, id) => JSON.parse(fs.readFileSync(recPath(env, id), 'utf8'));

/** Writes a record file directly, as another writer would (index untouched). */
function plant(env, fields) {
  fs.mkdirSync(env.jobs, { recursive: true, mode: 0o700 });
  const id = fields.id || crypto.randomBytes(16).toString('hex');
  fs.writeFileSync(recPath(env, id), JSON.stringify({ id, agent: 'a', task: 'planted', ...fields }),
    { mode: 0o600 });
  return id;
}

async function asyncJob(srv, task, agent = 'a') {
  const { value } = await srv.call('dispatch_async', { agent, task });
  assert.ok(HEX.test(value.job_id), JSON.stringify(value));
  return value.job_id;
}

describe('every async job ends', () => {
  test('a CLI that rejects --session-id: the job heals with a second spawn and ends done', async (t) => {
    const { env, srv } = await start(t);
    const id = await asyncJob(srv, '[stub:old_cli][stub:reply=healed answer]');
    const rec = (await srv.call('dispatch_wait', { job_id: id, timeout_seconds: 15 })).value;
    assert.strictEqual(rec.status, 'done', JSON.stringify(rec));
    assert.strictEqual(rec.result.result, 'healed answer');
    const runs = env.dispatches();
    assert.strictEqual(runs.length, 2, 'one rejected spawn, one healed spawn');
    assert.ok(runs[0].argv.includes('--session-id') && !runs[1].argv.includes('--session-id'));
    assert.strictEqual(rec.process, undefined, 'a finished job names no process');
  });
});

describe('job tools report I/O errors', () => {
  const ID = '0123456789abcdef0123456789abcdef';
  for (const [what, layout] of [['under a regular file', (root) => { fs.writeFileSync(path.join(root, 'plain'), 'x'); return path.join(root, 'plain', 'jobs'); }],
    ['a regular file', (root) => { fs.writeFileSync(path.join(root, 'jobsfile'), 'x'); return path.join(root, 'jobsfile'); }]]) {
    test(`jobs dir ${what}: all six job tools answer the I/O envelope with its hint`, async (t) => {
      const env = newEnv(t);
      env.setup({ agents: { a: true } });
      const srv = env.serve({ env: { AGENT_DISPATCH_JOBS_DIR: layout(env.root) } });
      await srv.init();
      const calls = [['dispatch_jobs', {}], ['dispatch_gc', {}], ['dispatch_status', { job_id: ID }],
        ['dispatch_wait', { job_id: ID, timeout_seconds: 1 }], ['fetch_result', { ref: ID }],
        ['dispatch_cancel', { job_id: ID }]];
      for (const [name, args] of calls) {
        const r = await srv.call(name, args);
        assert.ok(r.value && typeof r.value.error === 'string', `${name}: ${r.text}`);
        assert.match(r.value.error, new RegExp(`^${name} failed on I/O: .*Not a directory`), `${name}: ${r.text}`);
        assert.match(r.value.hint, /AGENT_DISPATCH_JOBS_DIR/, name);
        assert.strictEqual(r.isError, true, name);
      }
      const cli = env.run(['jobs'], { env: { AGENT_DISPATCH_JOBS_DIR: layout(env.root) } });
      assert.strictEqual(cli.code, 1);
      assert.match(cli.stderr, /Not a directory/);
      assert.doesNotMatch(cli.stderr, /internal error/);
    });
  }
});

describe('cancelling a running record without a process field', () => {
  test('dispatch_cancel and CLI cancel refuse, leave it running and say how to proceed', async (t) => {
    const { env, srv } = await start(t);
    const n = now();
    const id = plant(env, { status: 'running', created_at: n - 5, started_at: n - 5 });
    const c = (await srv.call('dispatch_cancel', { job_id: id })).value;
    assert.strictEqual(c.outcome, 'running', JSON.stringify(c));
    assert.strictEqual(c.status, 'running');
    assert.match(c.message, /no process/i);
    assert.match(c.message, /dispatch_wait|stop/);
    assert.strictEqual(readRec(env, id).status, 'running');
    const r = env.run(['cancel', id]);
    assert.strictEqual(r.code, 1);
    assert.match(r.stderr, /no process/i);
    assert.strictEqual(readRec(env, id).status, 'running', 'left untouched');
  });
});

describe('the jobs lock is waited for, never skipped', () => {
  test('a jobs lock held past the bound: cancel and dispatch_async fail clearly and write nothing', async (t) => {
    const env = newEnv(t);
    env.setup({ agents: { a: true } });
    const n = now();
    const id = plant(env, { status: 'pending', created_at: n });
    const script = path.join(env.root, 'hold.lua');
    fs.writeFileSync(script, `local core = require "ad.core"
local lock = assert(core.fs.lock(os.getenv("AGENT_DISPATCH_JOBS_DIR") .. "/.jobs.lock", 0))
io.stdout:write("locked\\n") io.stdout:flush()
core.task.sleep(60)
lock:unlock()
`);
    const h = env.start(['run', script]);
    const release = async () => { h.child.kill('SIGKILL'); await h.done; };
    let out = '';
    h.child.stdout.on('data', (d) => { out += d; });
    for (let i = 0; i < 500 && !out.includes('locked'); i++) await sleep(20);
    assert.ok(out.includes('locked'), 'the holder took the jobs lock');
    const r = env.run(['cancel', id], { env: { AGENT_DISPATCH_LOCK_WAIT: '0.5' } });
    assert.notStrictEqual(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stderr, /could not lock .*\.jobs\.lock: another process has held it for over 0\.5 s/);
    assert.ok(!/without the lock/.test(r.stderr), r.stderr);
    assert.strictEqual(readRec(env, id).status, 'pending', 'nothing written without the lock');
    const srv = env.serve({ env: { AGENT_DISPATCH_LOCK_WAIT: '0.5' } });
    await srv.init();
    // Records only: the concurrency slot files live in the same directory.
    const records = () => fs.readdirSync(env.jobs).filter((n) => n.endsWith('.json')).length;
    const before = records();
    const a = await srv.call('dispatch_async', { agent: 'a', task: 'x' });
    assert.match(a.value.error || '', /could not lock .*\.jobs\.lock/, JSON.stringify(a.value));
    assert.strictEqual(records(), before, 'no record written without the lock');
    assert.ok(!/without the lock/.test(srv.stderr));
    await release();
  });
});

describe('redaction reaches everything that leaves the process', () => {
  const SECRET = 'sk-abc123secret';
  const REDACT = `
hook("redact", function(text) return (text:gsub("sk%-%w+", "sk-REDACTED")) end)
`;
  function toolsDir(env) {
    const dir = path.join(env.root, 'tools');
    fs.mkdirSync(dir, { mode: 0o755 });
    fs.writeFileSync(path.join(dir, 'redact.lua'), REDACT, { mode: 0o644 });
    return dir;
  }

  test('a redact hook cleans the job record (result and progress tail), status, wait, job ID and stream notifications', async (t) => {
    const env = newEnv(t);
    env.setup({ agents: { a: true } });
    const tools = toolsDir(env);
    const srv = env.serve({ env: { AGENT_DISPATCH_TOOLS_DIR: tools, AD_TEST_SECRET: SECRET } });
    await srv.init();
    // The agent's answer (and so its last progress line) is the secret.
    const id = await asyncJob(srv, '[stub:progress=2][stub:interval=0.05][stub:echo_env=AD_TEST_SECRET]');
    const waited = (await srv.call('dispatch_wait', { job_id: id, timeout_seconds: 15 })).text;
    assert.match(waited, /"status":"done"/);
    assert.match(waited, /sk-REDACTED/, 'the progress tail and result were redacted');
    assert.ok(!waited.includes(SECRET), waited);
    const status = (await srv.call('dispatch_status', { job_id: id })).text;
    assert.ok(!status.includes(SECRET), status);
    assert.ok(JSON.parse(status).progress.some((l) => l.includes('sk-REDACTED')), status);
    assert.ok(!fs.readFileSync(recPath(env, id), 'utf8').includes(SECRET), 'stored record');
    const cli = env.run(['job', id], { env: { AGENT_DISPATCH_TOOLS_DIR: tools } });
    assert.strictEqual(cli.code, 0, cli.stderr);
    assert.ok(!cli.stdout.includes(SECRET), cli.stdout);

    const r = await srv.call('dispatch_stream', { agent: 'a', task: '[stub:echo_env=AD_TEST_SECRET]' },
      { meta: { progressToken: 'tok' } });
    assert.strictEqual(r.value.result, 'sk-REDACTED');
    const leaked = srv.messages.filter((m) => m.raw.includes(SECRET)).map((m) => m.raw);
    assert.deepStrictEqual(leaked, [], 'no message on stdout carries the secret');
    assert.ok(srv.notifications('notifications/progress').some((m) => m.raw.includes('sk-REDACTED')));
  });

  test('a failing redact hook withholds the text instead of leaking it', async (t) => {
    const env = newEnv(t);
    env.setup({ agents: { a: true } });
    const dir = path.join(env.root, 'tools');
    fs.mkdirSync(dir, { mode: 0o755 });
    fs.writeFileSync(path.join(dir, 'bad.lua'), 'hook("redact", function(text) error("broken") end)\n', { mode: 0o644 });
    const srv = env.serve({ env: { AGENT_DISPATCH_TOOLS_DIR: dir, AD_TEST_SECRET: SECRET } });
    await srv.init();
    const id = await asyncJob(srv, '[stub:progress=1][stub:echo_env=AD_TEST_SECRET]');
    const waited = (await srv.call('dispatch_wait', { job_id: id, timeout_seconds: 15 })).text;
    assert.ok(!waited.includes(SECRET), waited);
    const rec = JSON.parse(waited);
    assert.strictEqual(rec.status, 'failed');
    assert.match(rec.result.error, /redact hook in bad\.lua failed/);
  });
});

describe('the index is reconciled with the directory', () => {
  test('records the index lacks are listed, purged by gc and recovered when stale', async (t) => {
    const { env, srv } = await start(t);
    const first = await asyncJob(srv, '[stub:reply=one]');
    await srv.call('dispatch_wait', { job_id: first, timeout_seconds: 10 });
    assert.ok(fs.existsSync(path.join(env.jobs, '.index')), 'the store has an index');
    // The job's last writes settle first: a file planted in the same tick
    // of the file-time clock as the store's own last change cannot be told
    // from it by the directory's mtime (docs/architecture.md, "Jobs").
    await sleep(50);
    const n = now();
    // Written behind the store's back: another program, a restore, a crash
    // between a record write and its index update.
    const foreign = plant(env, { status: 'done', created_at: n + 5, completed_at: n + 5,
      result: { agent: 'a', success: true, result: 'from elsewhere' } });
    const old = plant(env, { status: 'failed', created_at: n - 30 * 86400, completed_at: n - 30 * 86400,
      error: 'old' });
    const listed = (await srv.call('dispatch_jobs', {})).value.map((j) => j.id);
    assert.deepStrictEqual(listed, [foreign, first, old]);
    const cli = env.run(['jobs']);
    assert.match(cli.stdout.split('\n')[1], new RegExp(`^${foreign} +done`), cli.stdout);
    const gc = (await srv.call('dispatch_gc', { max_age_days: 7 })).value;
    assert.strictEqual(gc.purged, 1);
    assert.ok(!fs.existsSync(recPath(env, old)), 'the unindexed old record was purged');
    assert.deepStrictEqual((await srv.call('dispatch_jobs', {})).value.map((j) => j.id), [foreign, first]);
    await srv.close();

    // Abandoned two hours ago, written without the index: recovered at startup.
    const stale = plant(env, { status: 'running', created_at: n - 7300, started_at: n - 7200 });
    const file = recPath(env, stale);
    fs.utimesSync(file, n - 7200, n - 7200);
    const srv2 = env.serve();
    await srv2.init();
    const deadline = Date.now() + 8000;
    while (readRec(env, stale).status !== 'failed' && Date.now() < deadline) await sleep(100);
    assert.strictEqual(readRec(env, stale).status, 'failed');
    assert.match(readRec(env, stale).error, /Abandoned/);
  });
});

describe('write failures (a full disk)', () => {
  /** A 256 KiB tmpfs outside the test's root; unmounted when the test ends. */
  function smallFs(t) {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ad-smallfs-'));
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=256k,mode=0700', 'tmpfs', dir]);
    t.after(() => {
      try { execFileSync('umount', ['-l', dir]); } catch { /* already gone */ }
      fs.rmSync(dir, { recursive: true, force: true });
    });
    return dir;
  }

  /** Fills the file system of dir until ENOSPC; returns the filler's path. */
  function fill(dir) {
    const file = path.join(dir, 'filler');
    const fd = fs.openSync(file, 'w');
    for (const size of [65536, 4096, 512, 1]) {
      const buf = Buffer.alloc(size, 120);
      try { for (;;) fs.writeSync(fd, buf); } catch (e) { if (e.code !== 'ENOSPC') throw e; }
    }
    fs.closeSync(fd);
    return file;
  }

  async function runningJob(t, srv, env, task) {
    const id = await asyncJob(srv, task);
    const end = Date.now() + 5000;
    while (Date.now() < end) {
      const r = (await srv.call('dispatch_status', { job_id: id })).value;
      if (r.status === 'running' && r.progress) return id;
      await sleep(50);
    }
    assert.fail('the job did not start');
  }

  test('the disk fills while a job runs: the worker survives, keeps the answer and records it when space is back', async (t) => {
    const mnt = smallFs(t);
    const jobsDir = path.join(mnt, 'jobs');
    const { env, srv } = await start(t, { agents: { a: true } }, { AGENT_DISPATCH_JOBS_DIR: jobsDir });
    const id = await runningJob(t, srv, env, '[stub:progress=8][stub:interval=0.2][stub:reply=the precious answer]');
    const filler = fill(mnt);
    // The child ends while nothing can be written.
    await sleep(2500);
    assert.strictEqual(srv.exit, null, 'the server is still up');
    const st = (await srv.call('dispatch_status', { job_id: id })).value;
    assert.notStrictEqual(st.status, 'failed', JSON.stringify(st));
    const listed = (await srv.call('dispatch_jobs', {})).value;
    assert.deepStrictEqual(listed.map((j) => j.id), [id]);
    const refused = await srv.call('dispatch_async', { agent: 'a', task: 'no room' });
    assert.match(refused.value.error, /^dispatch_async failed on I\/O: .*No space left/);
    fs.rmSync(filler);
    const rec = (await srv.call('dispatch_wait', { job_id: id, timeout_seconds: 15 }, { ms: 20000 })).value;
    assert.strictEqual(rec.status, 'done', JSON.stringify(rec));
    assert.strictEqual(rec.result.result, 'the precious answer');
    assert.match(srv.stderr, /cannot record/);
  });

  test('the disk stays full: stopping the server records that the job finished but its result was lost', async (t) => {
    const mnt = smallFs(t);
    const jobsDir = path.join(mnt, 'jobs');
    const { env, srv } = await start(t, { agents: { a: true } }, { AGENT_DISPATCH_JOBS_DIR: jobsDir });
    const id = await runningJob(t, srv, env, '[stub:progress=6][stub:interval=0.2][stub:reply=lost answer]');
    fill(mnt);
    await sleep(2000);
    await srv.close(10000);
    const rec = readRec({ jobs: jobsDir }, id);
    assert.strictEqual(rec.status, 'failed', JSON.stringify(rec));
    assert.match(rec.error, /finished/);
    assert.match(rec.error, /could not be stored/);
    assert.doesNotMatch(rec.error, /Server stopped while the job was running/);
  });

  test('a torn index line on a full disk: jobs are still listed', async (t) => {
    const mnt = smallFs(t);
    const jobsDir = path.join(mnt, 'jobs');
    const { env, srv } = await start(t, { agents: { a: true } }, { AGENT_DISPATCH_JOBS_DIR: jobsDir });
    const a = await asyncJob(srv, '[stub:reply=a]');
    await srv.call('dispatch_wait', { job_id: a, timeout_seconds: 10 });
    const b = await asyncJob(srv, '[stub:reply=b]');
    await srv.call('dispatch_wait', { job_id: b, timeout_seconds: 10 });
    fs.appendFileSync(path.join(jobsDir, '.index'), 'c'.repeat(25)); // half a line
    fill(mnt);
    const listed = await srv.call('dispatch_jobs', {});
    assert.deepStrictEqual(listed.value.map((j) => j.id), [b, a], listed.text);
    const cli = env.run(['jobs'], { env: { AGENT_DISPATCH_JOBS_DIR: jobsDir } });
    assert.strictEqual(cli.code, 0, cli.stderr);
    assert.strictEqual(cli.stdout.trim().split('\n').length, 3, cli.stdout); // the header and two jobs
  });
});
