'use strict';
// The fault matrix of docs/reliability.md, the rows no other file covers:
// each fault asserts that nothing is lost (the reply arrives, job and
// config state intact), no process is left (lib.js checks every stub, its
// group and its grandchildren after each test) and the error is clear.
const { test, describe } = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const path = require('node:path');
const { newEnv, sleep, alive, waitUntil, readRec } = require('./lib');

const HEX = /^[0-9a-f]{32}$/;
const { BIN, SANITIZED } = require('./lib');

// Sanitized builds use several times the memory: RSS bounds are checked
// in the plain build only.
const INJECT = process.env.AD_FAULT_INJECT
  || path.resolve(__dirname, '../../build/tests/faults/libad_fault_inject.so');

function peakKb(pid) {
  const m = /VmHWM:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : -1;
}

function fdCount(pid) {
  return fs.readdirSync(`/proc/${pid}/fd`).length;
}

async function serve(t, cfg = { agents: { a: true } }, env = {}) {
  const e = newEnv(t);
  const dirs = e.setup(cfg);
  const srv = e.serve({ env });
  await srv.init();
  return { env: e, srv, dirs };
}

/** Environment that preloads the fault injector (tests/faults/inject.c). */
function faultEnv(pathPart, errno, ops, extra = {}) {
  assert.ok(INJECT, 'AD_FAULT_INJECT names the injector library (ctest sets it)');
  const asan = process.env.ASAN_OPTIONS ? `${process.env.ASAN_OPTIONS}:` : '';
  return { LD_PRELOAD: INJECT, AD_FAULT_PATH: pathPart, AD_FAULT_ERRNO: errno, AD_FAULT_OPS: ops,
    ASAN_OPTIONS: `${asan}verify_asan_link_order=0`, ...extra };
}

async function waitJob(srv, id, secs = 20) {
  return (await srv.call('dispatch_wait', { job_id: id, timeout_seconds: secs }, { ms: (secs + 5) * 1000 })).value;
}

describe('the claude child', () => {
  test('claude killed mid-stream: the call and the job fail naming the signal; the server keeps serving', async (t) => {
    const { srv } = await serve(t);
    const s = await srv.call('dispatch_stream', { agent: 'a', task: 'x [stub:progress=5] [stub:interval=0.05] [stub:die=2]' });
    assert.strictEqual(s.value.success, false, s.text);
    assert.match(s.value.error, /signal 9|SIGKILL|killed/i, s.text);
    const { value } = await srv.call('dispatch_async', { agent: 'a', task: 'y [stub:progress=5] [stub:interval=0.05] [stub:die=2]' });
    assert.match(value.job_id, HEX, JSON.stringify(value));
    const rec = await waitJob(srv, value.job_id);
    assert.strictEqual(rec.status, 'failed', JSON.stringify(rec));
    assert.match(JSON.stringify(rec), /signal 9|SIGKILL|killed/i);
    const ok = await srv.call('dispatch', { agent: 'a', task: 'alive' });
    assert.strictEqual(ok.value.result, 'stub ok: alive');
    await srv.close();
  });

  test('a grandchild holding the pipe after claude exits: the answer arrives, the grandchild is gone', async (t) => {
    const { env, srv } = await serve(t);
    const t0 = Date.now();
    const { value } = await srv.call('dispatch', { agent: 'a', task: '[stub:grandchild=60] [stub:reply=done anyway]' }, { ms: 30000 });
    assert.strictEqual(value.success, true, JSON.stringify(value));
    assert.strictEqual(value.result, 'done anyway');
    assert.ok(Date.now() - t0 < 15000, `the answer waited ${Date.now() - t0} ms for the grandchild`);
    const g = env.grandchildPid();
    assert.ok(g, 'the stub forked a grandchild');
    assert.ok(await waitUntil(() => !alive(g), 5000), `grandchild ${g} still alive`);
    const s = await srv.call('dispatch_stream', { agent: 'a', task: '[stub:grandchild=60] [stub:reply=streamed anyway]' }, { ms: 30000 });
    assert.strictEqual(s.value.result, 'streamed anyway', s.text);
    await srv.close();
  });

  test('1 MB of stderr: the answer arrives; a failure quotes a bounded tail of it', async (t) => {
    const { srv } = await serve(t);
    const okr = await srv.call('dispatch', { agent: 'a', task: '[stub:stderr_bytes=1048576] [stub:reply=fine]' }, { ms: 30000 });
    assert.strictEqual(okr.value.success, true, okr.text.slice(0, 500));
    assert.strictEqual(okr.value.result, 'fine');
    const bad = await srv.call('dispatch', { agent: 'a', task: '[stub:stderr_bytes=1048576] [stub:stderr=the real reason] [stub:no_result] [stub:exit=3]' }, { ms: 30000 });
    assert.strictEqual(bad.value.success, false);
    assert.match(bad.value.error, /the real reason/, bad.text.slice(0, 500));
    assert.ok(bad.text.length < 256 * 1024, `the error carries ${bad.text.length} bytes`);
    await srv.close();
  });

  test('a 100 MB stdout line: skipped in a stream, refused as a result; bounded server memory', { timeout: 240000 }, async (t) => {
    const { srv } = await serve(t);
    // A progress line that long is dropped; the result after it counts.
    const s = await srv.call('dispatch_stream', { agent: 'a', task: '[stub:huge_line=104857600] [stub:reply=after the flood]' }, { ms: 180000 });
    assert.strictEqual(s.value.success, true, s.text.slice(0, 300));
    assert.strictEqual(s.value.result, 'after the flood');
    // A result line that long exceeds the output cap: a clear error.
    const j = await srv.call('dispatch', { agent: 'a', task: '[stub:huge=104857600]' }, { ms: 180000 });
    assert.strictEqual(j.value.success, false, j.text.slice(0, 300));
    assert.match(j.value.error, /^Output truncated: claude wrote more than \d+ bytes on stdout/, j.text.slice(0, 300));
    const hwm = peakKb(srv.child.pid);
    if (!SANITIZED) assert.ok(hwm > 0 && hwm < 100 * 1024, `server peak RSS ${hwm} kB`);
    const ok = await srv.call('dispatch', { agent: 'a', task: 'alive' });
    assert.strictEqual(ok.value.result, 'stub ok: alive');
    await srv.close();
  });

  test('a 20 MB result is refused alike by dispatch, dispatch_stream and dispatch_async, naming the limit', { timeout: 120000 }, async (t) => {
    const { srv } = await serve(t);
    const task = '[stub:huge=20000000]';
    const check = (v, how) => {
      assert.strictEqual(v.success, false, `${how}: ${JSON.stringify(v).slice(0, 300)}`);
      assert.strictEqual(v.error_type, 'cli_error', how);
      assert.match(v.error, /more than 8388608 bytes/, `${how}: ${v.error.slice(0, 300)}`);
      // Nothing to quote: no "The output began: " followed by nothing.
      assert.doesNotMatch(v.error, /began: *$/, `${how}: ${v.error.slice(0, 300)}`);
      assert.ok(JSON.stringify(v).length < 64 * 1024, `${how}: the error carries the output`);
    };
    check((await srv.call('dispatch', { agent: 'a', task }, { ms: 60000 })).value, 'dispatch');
    check((await srv.call('dispatch_stream', { agent: 'a', task }, { ms: 60000 })).value, 'dispatch_stream');
    const { value } = await srv.call('dispatch_async', { agent: 'a', task });
    assert.match(value.job_id, HEX, JSON.stringify(value));
    const rec = await waitJob(srv, value.job_id, 60);
    assert.strictEqual(rec.status, 'failed', JSON.stringify(rec).slice(0, 300));
    check(rec.result, 'dispatch_async');
    // Just under the limit still answers, in every mode.
    const ok = '[stub:huge=8000000]';
    assert.strictEqual((await srv.call('dispatch', { agent: 'a', task: ok }, { ms: 60000 })).value.result.length, 8000000);
    assert.strictEqual((await srv.call('dispatch_stream', { agent: 'a', task: ok }, { ms: 60000 })).value.result.length, 8000000);
    await srv.close();
  });

  test('stdin EOF with 20 children running in the server (jobs_outlive_server: false): each child gone, each job recorded as failed', { timeout: 60000 }, async (t) => {
    const { env, srv } = await serve(t, { agents: { a: true },
      settings: '  max_concurrency: 20\n  jobs_outlive_server: false\n' });
    const ids = [];
    for (let i = 0; i < 20; i++) {
      const { value } = await srv.call('dispatch_async', { agent: 'a', task: `[stub:hang] [stub:grandchild=60] eof ${i}` });
      assert.match(value.job_id, HEX, JSON.stringify(value));
      ids.push(value.job_id);
    }
    assert.ok(await waitUntil(() => env.dispatches().length === 20, 15000), `${env.dispatches().length} of 20 children started`);
    await srv.close(15000);
    await env.assertNoLeftovers(5000);
    for (const id of ids) {
      const rec = JSON.parse(fs.readFileSync(path.join(env.jobs, `${id}.json`), 'utf8'));
      assert.strictEqual(rec.status, 'failed', JSON.stringify(rec));
      assert.match(rec.error, /stopped/i, rec.error);
    }
  });

  test('stdin EOF with 20 detached jobs running (the default): the server exits, the jobs go on, a later cancel leaves nothing', { timeout: 90000 }, async (t) => {
    const { env, srv } = await serve(t, { agents: { a: true }, settings: '  max_concurrency: 20\n' });
    const ids = [];
    for (let i = 0; i < 20; i++) {
      const { value } = await srv.call('dispatch_async', { agent: 'a', task: `[stub:hang] [stub:grandchild=60] eof ${i}` });
      assert.match(value.job_id, HEX, JSON.stringify(value));
      ids.push(value.job_id);
    }
    assert.ok(await waitUntil(() => env.dispatches().length === 20, 15000), `${env.dispatches().length} of 20 children started`);
    await srv.close(15000);
    for (const id of ids) {
      const rec = JSON.parse(fs.readFileSync(path.join(env.jobs, `${id}.json`), 'utf8'));
      assert.strictEqual(rec.status, 'running', JSON.stringify(rec));
    }
    // All at once: each cancel of a live child waits out its interrupt
    // grace (2 s); one after another they took 40 s.
    const cancels = await Promise.all(ids.map((id) => env.start(['cancel', id]).done));
    for (const r of cancels) assert.strictEqual(r.code, 0, r.stdout + r.stderr);
    await env.assertNoLeftovers(10000);
    for (const id of ids) {
      const rec = JSON.parse(fs.readFileSync(path.join(env.jobs, `${id}.json`), 'utf8'));
      assert.strictEqual(rec.status, 'cancelled', JSON.stringify(rec));
    }
  });
});

describe('write faults (ENOSPC, EACCES) on config, job and index files', () => {
  for (const errno of ['ENOSPC', 'EACCES']) {
    const words = errno === 'ENOSPC' ? /No space left on device/ : /Permission denied/;

    test(`config, ${errno}: CLI and MCP changes fail clearly and the previous file is intact`, async (t) => {
      const env = newEnv(t);
      const dirs = env.setup({ agents: { a: true } });
      const before = env.readConfig();
      for (const ops of ['open', 'write', 'fsync', 'rename']) {
        const r = env.run(['add', 'b', dirs.a], { env: faultEnv('.tmp', errno, ops) });
        assert.strictEqual(r.code, 1, `${ops}: ${r.stdout}${r.stderr}`);
        assert.match(r.stderr, new RegExp(`could not write ${env.config.replace(/[.]/g, '\\.')}`), r.stderr);
        assert.match(r.stderr, words, r.stderr);
        assert.match(r.stderr, /the previous config is intact/, r.stderr);
        assert.strictEqual(env.readConfig(), before, `${ops}: the config changed`);
      }
      const srv = env.serve({ env: faultEnv('.tmp', errno, 'write') });
      await srv.init();
      const { value } = await srv.call('add_agent', { name: 'c', directory: dirs.a });
      assert.match(JSON.stringify(value), words, JSON.stringify(value));
      assert.strictEqual(env.readConfig(), before, 'the config changed');
      assert.deepStrictEqual(fs.readdirSync(env.cfgDir).filter((n) => n.endsWith('.tmp')), [], 'a temp file was left');
      const listed = (await srv.call('list_agents', {})).value;
      assert.deepStrictEqual(JSON.stringify(listed).includes('"a"'), true);
      await srv.close();
    });

    test(`job record, ${errno}: dispatch_async fails clearly, nothing runs, earlier jobs intact`, async (t) => {
      const env = newEnv(t);
      env.setup({ agents: { a: true } });
      const flag = path.join(env.root, 'armed');
      const srv = env.serve({ env: faultEnv('.json', errno, 'open,write,fsync,rename', { AD_FAULT_WHEN: flag }) });
      await srv.init();
      const first = (await srv.call('dispatch_async', { agent: 'a', task: '[stub:reply=kept]' })).value.job_id;
      assert.match(first, HEX);
      assert.strictEqual((await waitJob(srv, first)).status, 'done');
      fs.writeFileSync(flag, '');
      const { value } = await srv.call('dispatch_async', { agent: 'a', task: '[stub:reply=never]' });
      assert.match(value.error, /^dispatch_async failed on I\/O: /, JSON.stringify(value));
      assert.match(value.error, words, JSON.stringify(value));
      await sleep(300);
      assert.strictEqual(env.dispatches().length, 1, 'nothing was dispatched for the refused job');
      fs.rmSync(flag);
      const rec = await waitJob(srv, first);
      assert.strictEqual(rec.status, 'done');
      assert.strictEqual(rec.result.result, 'kept');
      const listed = (await srv.call('dispatch_jobs', {})).value;
      assert.deepStrictEqual(listed.map((j) => j.id), [first]);
      await srv.close();
    });

    test(`return_ref, ${errno}: the answer comes back in full, saying its ref could not be stored`, async (t) => {
      const env = newEnv(t);
      env.setup({ agents: { a: true } });
      const srv = env.serve({ env: faultEnv('.json', errno, 'open,write,fsync,rename') });
      await srv.init();
      const { value } = await srv.call('dispatch', { agent: 'a', task: '[stub:reply=the paid answer]', return_ref: true });
      assert.strictEqual(value.success, true, JSON.stringify(value));
      assert.strictEqual(value.result, 'the paid answer', JSON.stringify(value));
      assert.match(value.hint, /return_ref/, JSON.stringify(value));
      assert.match(value.hint, words, JSON.stringify(value));
      assert.strictEqual(value.ref, undefined);
      await srv.close();
    });

    test(`job index, ${errno}: jobs still run, are listed and found`, async (t) => {
      const env = newEnv(t);
      env.setup({ agents: { a: true } });
      const log = path.join(env.root, 'faults.log');
      const srv = env.serve({ env: faultEnv('.index', errno, 'open,write', { AD_FAULT_LOG: log }) });
      await srv.init();
      const ids = [];
      for (const r of ['one', 'two']) {
        const { value } = await srv.call('dispatch_async', { agent: 'a', task: `[stub:reply=${r}]` });
        assert.match(value.job_id || '', HEX, JSON.stringify(value));
        ids.push(value.job_id);
        assert.strictEqual((await waitJob(srv, value.job_id)).result.result, r);
      }
      const listed = (await srv.call('dispatch_jobs', {})).value;
      assert.deepStrictEqual(listed.map((j) => j.id).sort(), [...ids].sort(), JSON.stringify(listed));
      await srv.close();
      assert.ok(fs.readFileSync(log, 'utf8').includes('.index'), 'index writes failed');
      const cli = env.run(['jobs']);
      assert.strictEqual(cli.code, 0, cli.stderr);
      for (const id of ids) assert.ok(cli.stdout.includes(id.slice(0, 8)), cli.stdout);
    });
  }
});

describe('concurrency slot files', () => {
  test('a slot file that cannot be opened for a moment (EMFILE) does not end the shared limit', async (t) => {
    const env = newEnv(t);
    env.setup({ agents: { a: true }, settings: '  max_concurrency: 1\n  handoff_after_seconds: 0\n' });
    const log = path.join(env.root, 'faults.log');
    const srv = env.serve({ env: faultEnv('0.lock', 'EMFILE', 'open', { AD_FAULT_TIMES: '1', AD_FAULT_LOG: log }) });
    await srv.init();
    const first = await srv.call('dispatch', { agent: 'a', task: 'first' });
    assert.strictEqual(first.value.success, true, first.text);
    assert.match(fs.readFileSync(log, 'utf8'), /0\.lock/, 'the fault happened');
    assert.match(srv.stderr, /concurrency slot 0: cannot open slot file 0\.lock: Too many open files; this child runs outside the shared limit/);
    // Another process holds the one slot: the server's next child waits.
    const cli = env.start(['dispatch', 'a', '[stub:sleep=1.5] cli-holds-the-slot']);
    assert.ok(await waitUntil(() => env.dispatches().some((e) => e.prompt.includes('cli-holds-the-slot')), 5000));
    const t0 = Date.now();
    const r = await srv.call('dispatch', { agent: 'a', task: 'second' }, { ms: 20000 });
    assert.strictEqual(r.value.success, true, r.text);
    assert.ok(Date.now() - t0 >= 700, 'the server did not wait for the slot the CLI held');
    assert.strictEqual((await cli.done).code, 0);
    assert.doesNotMatch(srv.stderr, /holds for this process only/, srv.stderr);
    await srv.close();
  });
});

describe('a job runner out of file descriptors', () => {
  test('a runner that cannot open the jobs lock (EMFILE) when its agent ends exits at once; the job then reads failed', { timeout: 60000 }, async (t) => {
    const env = newEnv(t);
    env.setup({ agents: { a: true } });
    const flag = path.join(env.root, 'armed');
    const r = env.run(['dispatch', '--async', 'a', '[stub:sleep=1] runner-emfile'],
      { env: faultEnv('.jobs.lock', 'EMFILE', 'open', { AD_FAULT_WHEN: flag }) });
    assert.strictEqual(r.code, 0, r.stderr);
    const id = (r.stdout.match(/[0-9a-f]{32}/) || [])[0];
    assert.ok(id, r.stdout);
    assert.ok(await waitUntil(() => env.dispatches().some((e) => e.prompt.includes('runner-emfile')), 10000),
      'the job\'s child started');
    const runner = readRec(env, id).server.pid;
    env.extraPids.push(runner);
    fs.writeFileSync(flag, ''); // from now on the runner's process has no descriptor to spare
    // Nothing in the runner frees a descriptor: it does not keep retrying
    // to record the end (600 s for a full disk) while the job reads running.
    assert.ok(await waitUntil(() => !alive(runner), 15000), 'the runner still retries');
    fs.rmSync(flag);
    const st = env.run(['jobs', '--json']);
    assert.strictEqual(st.code, 0, st.stderr);
    const rec = JSON.parse(st.stdout).find((j) => j.id === id || j.job_id === id);
    assert.ok(rec, st.stdout);
    assert.strictEqual(rec.status, 'failed', JSON.stringify(rec));
  });
});

describe('symlinks in the job store', () => {
  test('a symlinked job file is neither read nor written through; its target is untouched', async (t) => {
    const { env, srv } = await serve(t);
    const first = (await srv.call('dispatch_async', { agent: 'a', task: '[stub:reply=real]' })).value.job_id;
    await waitJob(srv, first);
    const target = path.join(env.root, 'elsewhere.json');
    const id = 'ab'.repeat(16);
    const forged = { id, agent: 'a', task: 'forged', status: 'running', created_at: Date.now() / 1000 };
    fs.writeFileSync(target, JSON.stringify(forged));
    fs.symlinkSync(target, path.join(env.jobs, `${id}.json`));
    const st = (await srv.call('dispatch_status', { job_id: id })).value;
    assert.ok(!st.status, JSON.stringify(st));
    assert.match(st.error, /refusing the job file .*\.json: it is a symbolic link/, JSON.stringify(st));
    const c = (await srv.call('dispatch_cancel', { job_id: id })).value;
    assert.ok(!/cancelled/.test(c.status || ''), JSON.stringify(c));
    const listed = (await srv.call('dispatch_jobs', {})).value;
    assert.deepStrictEqual(listed.map((j) => j.id), [first]);
    await srv.call('dispatch_gc', { older_than_days: 0 });
    assert.strictEqual(fs.readFileSync(target, 'utf8'), JSON.stringify(forged), 'the target was changed');
    await srv.close();
  });

  test('a symlinked jobs directory is refused with the reason; nothing is written through it', async (t) => {
    const env = newEnv(t);
    env.setup({ agents: { a: true } });
    const real = path.join(env.root, 'real-jobs');
    fs.mkdirSync(real, { mode: 0o700 });
    fs.symlinkSync(real, env.jobs);
    const srv = env.serve();
    await srv.init();
    const { value } = await srv.call('dispatch_async', { agent: 'a', task: '[stub:reply=x]' });
    assert.ok(!value.job_id, JSON.stringify(value));
    assert.match(value.error, /refusing the jobs directory .*: it is a symbolic link/, JSON.stringify(value));
    const cli = env.run(['jobs']);
    assert.notStrictEqual(cli.code, 0);
    assert.match(cli.stderr + cli.stdout, /it is a symbolic link/);
    assert.deepStrictEqual(fs.readdirSync(real), [], 'something was written through the link');
    assert.strictEqual(env.dispatches().length, 0);
    await srv.close();
  });
});

describe('user code that misbehaves', () => {
  function toolsDir(env, files) {
    const dir = path.join(env.root, 'tools');
    fs.mkdirSync(dir, { recursive: true, mode: 0o755 });
    for (const [f, text] of Object.entries(files)) fs.writeFileSync(path.join(dir, f), text, { mode: 0o644 });
    return dir;
  }
  const HOG = `
local function hog()
  local t = {}
  while true do t[#t + 1] = string.rep("x", 1 << 20) .. #t end
end
hook("before_dispatch", function(req)
  if req.task:find("HOG", 1, true) then hog() end
end)
tool{ name = "hog", handler = function() hog() end }
tool{ name = "big_rep", handler = function() return #string.rep("y", 1 << 30) end }
tool{ name = "hog_pcall", handler = function()
  local ok, err = pcall(hog)
  return "caught: " .. tostring(err)
end }
`;
  const MEM_RE = /used more than 256 MiB of memory without yielding; stopped/;

  test('a tool or hook that allocates without bound is stopped with a clear error; memory is given back',
    { timeout: 120000 }, async (t) => {
      const env = newEnv(t);
      env.setup({ agents: { a: true } });
      const srv = env.serve({ env: { AGENT_DISPATCH_TOOLS_DIR: toolsDir(env, { 'hog.lua': HOG }) } });
      await srv.init();
      for (const name of ['hog', 'big_rep']) {
        const r = await srv.request('tools/call', { name, arguments: {} }, { ms: 60000 });
        assert.ok(r.result, JSON.stringify(r));
        assert.match(r.result.content[0].text, MEM_RE, `${name}: ${r.result.content[0].text}`);
      }
      // User code that catches the refusal itself carries on.
      const c = await srv.request('tools/call', { name: 'hog_pcall', arguments: {} }, { ms: 60000 });
      assert.strictEqual(c.result.content[0].text, 'caught: not enough memory');
      const d = await srv.call('dispatch', { agent: 'a', task: 'HOG sync' }, { ms: 60000 });
      assert.match(d.text, MEM_RE, d.text);
      assert.strictEqual(env.dispatches().length, 0, 'the hooked dispatch never ran');
      const a = (await srv.call('dispatch_async', { agent: 'a', task: 'HOG async' })).value;
      const rec = await waitJob(srv, a.job_id);
      assert.strictEqual(rec.status, 'failed', JSON.stringify(rec));
      assert.match(rec.error, MEM_RE);
      const ok = await srv.call('dispatch', { agent: 'a', task: 'alive' });
      assert.strictEqual(ok.value.result, 'stub ok: alive');
      if (!SANITIZED) {
        const rss = Number(/VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${srv.child.pid}/status`, 'utf8'))[1]);
        assert.ok(rss < 200 * 1024, `RSS after the hogs: ${rss} kB`);
      }
      await srv.close();
    });
});

describe('the client', () => {
  test('a client that stops reading: bounded memory, the children still end, every reply arrives once', { timeout: 180000 }, async (t) => {
    const env = newEnv(t);
    env.setup({ agents: { a: true }, settings: '  max_concurrency: 20\n' });
    const { spawn } = require('node:child_process');
    const child = spawn(BIN, ['serve'], { env: env.env(), cwd: env.root, stdio: ['pipe', 'pipe', 'pipe'] });
    env.extraPids.push(child.pid);
    t.after(() => { if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL'); });
    child.stdin.on('error', () => {});
    child.stdout.pause();
    let err = '';
    child.stderr.on('data', (d) => { err += d; });
    const exited = new Promise((r) => child.on('exit', (code) => r(code)));
    const N = 20, M = 5000;
    let text = JSON.stringify({ jsonrpc: '2.0', id: 0, method: 'initialize',
      params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'x', version: '1' } } }) + '\n';
    text += '{"jsonrpc":"2.0","method":"notifications/initialized"}\n';
    for (let i = 1; i <= N; i++) {
      text += JSON.stringify({ jsonrpc: '2.0', id: i, method: 'tools/call', params: { name: 'dispatch_stream',
        arguments: { agent: 'a', task: `s${i} [stub:progress=200] [stub:interval=0.005] [stub:stderr_bytes=65536]` },
        _meta: { progressToken: `p${i}` } } }) + '\n';
    }
    for (let i = N + 1; i <= N + M; i++) text += `{"jsonrpc":"2.0","id":${i},"method":"tools/list"}\n`;
    child.stdin.write(text);
    // Every child runs and ends while nobody reads the server's stdout.
    assert.ok(await waitUntil(() => env.dispatches().length === N, 30000), `${env.dispatches().length} of ${N} children started`);
    const pids = env.dispatches().map((e) => e.pid);
    assert.ok(await waitUntil(() => pids.every((p) => !alive(p)), 60000), 'children still running while the client does not read');
    const peak = peakKb(child.pid);
    if (!SANITIZED) assert.ok(peak < 120 * 1024, `peak RSS ${peak} kB while the client did not read`);
    // Now read: each request gets exactly one reply.
    const counts = new Map();
    let out = '';
    child.stdout.on('data', (d) => {
      out += d;
      let nl;
      while ((nl = out.indexOf('\n')) >= 0) {
        const msg = JSON.parse(out.slice(0, nl));
        out = out.slice(nl + 1);
        if ('id' in msg && !('method' in msg)) counts.set(msg.id, (counts.get(msg.id) || 0) + 1);
      }
    });
    child.stdout.resume();
    assert.ok(await waitUntil(() => counts.size === N + M + 1, 120000), `${counts.size} of ${N + M + 1} replies`);
    await sleep(200);
    for (const [id, n] of counts) assert.strictEqual(n, 1, `reply ${id} arrived ${n} times`);
    child.stdin.end();
    assert.strictEqual(await exited, 0, err.slice(-2000));
  });
});
