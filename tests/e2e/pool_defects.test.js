'use strict';
// Warm pool and live-session processes (ad.domain.live) with the permission
// relay and the trace context: a pool process is started with the command
// line a fresh dispatch of its agent would use (the relay flag included),
// and a kept process (pool or session) learns the trace context of each
// request it serves through a private per-process context file named in its
// environment (AGENT_DISPATCH_TRACE_FILE), so that an agent-dispatch started
// inside it joins the caller's tree under the right span.
const { test, describe } = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const path = require('node:path');
const { spawnSync } = require('node:child_process');
const { newEnv, BIN, sleep } = require('./lib');

// Waits (up to ms) until pred (sync or async) holds; true if it did.
async function waitUntil(pred, ms) {
  const end = Date.now() + ms;
  for (;;) {
    if (await pred()) return true;
    if (Date.now() > end) return false;
    await sleep(50);
  }
}

function q(s) { return JSON.stringify(s); }

// Every live claude the stub saw start (STUB_CLAUDE_STARTS).
function liveSpawns(env) {
  let text = '';
  try { text = fs.readFileSync(path.join(env.root, 'starts.log'), 'utf8'); } catch { return []; }
  return text.split('\n').filter(Boolean).map((l) => JSON.parse(l))
    .filter((e) => e.argv.includes('-p') && e.argv.includes('stream-json'));
}

function serve(env) {
  return env.serve({ env: { STUB_CLAUDE_STARTS: path.join(env.root, 'starts.log') } });
}

async function stats(srv) {
  return (await srv.call('live_stats')).value;
}

/** Every span (its last record) of every trace: {trace_id: [span]}. */
function traces(env) {
  const dir = path.join(env.cfgDir, 'traces');
  let names = [];
  try { names = fs.readdirSync(dir); } catch { return {}; }
  const by = {};
  for (const n of names.filter((x) => /^spans-\d{8}(\.\d+)?\.jsonl$/.test(x)).sort()) {
    for (const l of fs.readFileSync(path.join(dir, n), 'utf8').split('\n').filter(Boolean)) {
      const r = JSON.parse(l);
      by[r.span_id] = r;
    }
  }
  const out = {};
  for (const r of Object.values(by)) (out[r.trace_id] = out[r.trace_id] || []).push(r);
  return out;
}

const ASK_GIT = '[stub:ask=Bash {"command":"git status"}]';

describe('warm pool and the permission relay', () => {
  test('a relayed agent\'s pool process has the relay flag and serves a fresh dispatch', async (t) => {
    const env = newEnv(t);
    const dir = env.project('a');
    env.writeConfig(`agents:\n  a:\n    directory: ${q(dir)}\n    warm: 1\n` +
      `    permissions: ${JSON.stringify({ relay: true, allow: ['Bash(git status:*)'] })}\n`);
    const srv = serve(env);
    await srv.init();
    let s;
    assert.ok(await waitUntil(async () => { s = await stats(srv); return s.warm === 1; }, 15000),
      `the pool of a relayed agent filled: ${JSON.stringify(s)}`);
    const poolPid = s.processes[0].pid;
    // The stub logs its start once it runs, which may be after the server
    // counted the process as warm.
    let started;
    assert.ok(await waitUntil(() => (started = liveSpawns(env).find((e) => e.pid === poolPid)), 10000),
      'the pool process started');
    const i = started.argv.indexOf('--permission-prompt-tool');
    assert.ok(i >= 0 && started.argv[i + 1] === 'stdio', started.argv.join(' '));
    const v = (await srv.call('dispatch', { agent: 'a', task: ASK_GIT }, { ms: 30000 })).value;
    assert.strictEqual(v.success, true, JSON.stringify(v));
    assert.match(v.result, /asked Bash: allow updatedInput=\{"command":"git status"\}/);
    assert.strictEqual(v.permissions[0].by, 'rule');
    const served = liveSpawns(env).find((e) => e.argv.includes(v.session_id));
    assert.ok(served, 'the session id names a started process');
    assert.strictEqual(served.pid, poolPid, 'served by the pool process, not a fresh spawn');
    s = await stats(srv);
    assert.strictEqual(s.totals.warm_taken, 1, JSON.stringify(s.totals));
    await srv.close();
  });

  test('a pool process never serves a request with another command line', async (t) => {
    const env = newEnv(t);
    const dir = env.project('a');
    env.writeConfig(`agents:\n  a:\n    directory: ${q(dir)}\n    warm: 1\n` +
      `    permissions: ${JSON.stringify({ relay: true, allow: ['Bash(git status:*)'] })}\n`);
    const srv = serve(env);
    await srv.init();
    assert.ok(await waitUntil(async () => (await stats(srv)).warm === 1, 15000));
    const poolPid = (await stats(srv)).processes[0].pid;
    // A response schema is another argv (--json-schema): never the pool's.
    const v = (await srv.call('dispatch', { agent: 'a', task: 'with a schema',
      response_schema: { type: 'object' } }, { ms: 30000 })).value;
    assert.ok(v.session_id, JSON.stringify(v));
    const served = liveSpawns(env).find((e) => e.argv.includes(v.session_id));
    assert.ok(served && served.pid !== poolPid, 'a fresh process');
    const s = await stats(srv);
    assert.strictEqual(s.totals.warm_taken, 0);
    assert.strictEqual(s.processes[0].pid, poolPid, 'the pool process still waits');
    await srv.close();
  });
});

describe('trace context through kept processes', () => {
  // A nested agent-dispatch run by the child (the stub runs sh.sh).
  function nested(env) {
    const sh = path.join(env.root, 'nested.sh');
    fs.writeFileSync(sh, `${q(BIN)} dispatch inner "nested-$1" --json\n`);
    return sh;
  }

  test('a nested dispatch from a pool-served child joins the caller\'s trace under its span', async (t) => {
    const env = newEnv(t);
    env.setup({ agents: { outer: { directory: env.project('outer'), warm: 1 }, inner: true } });
    const sh = nested(env);
    const srv = serve(env);
    await srv.init();
    let s;
    assert.ok(await waitUntil(async () => { s = await stats(srv); return s.warm === 1; }, 15000));
    const poolPid = s.processes[0].pid;
    const { value } = await srv.call('dispatch', { agent: 'outer', task: `[stub:sh=sh ${sh} one] go` },
      { ms: 30000 });
    assert.strictEqual(value.success, true, JSON.stringify(value));
    assert.strictEqual(liveSpawns(env).find((e) => e.argv.includes(value.session_id)).pid, poolPid,
      'served by the pool process');
    // (a span's end is written right after the reply, before the next request is read)
    await srv.request('ping');
    const spans = Object.values(traces(env)).flat();
    const outer = spans.find((x) => x.agent === 'outer');
    const inner = spans.find((x) => x.agent === 'inner');
    assert.ok(outer && inner, JSON.stringify(spans));
    assert.strictEqual(inner.trace_id, outer.trace_id, 'one trace');
    assert.strictEqual(inner.parent_id, outer.span_id, 'under the span the pool process served');
    assert.strictEqual(Object.keys(traces(env)).length, 1);
    await srv.close();
  });

  test('each turn of a live session gives its nested dispatches its own parent span', async (t) => {
    const env = newEnv(t);
    env.setup({ agents: { outer: true, inner: true } });
    const sh = nested(env);
    const srv = serve(env);
    await srv.init();
    const first = (await srv.call('dispatch_session', { agent: 'outer', task: `[stub:sh=sh ${sh} one] a` },
      { ms: 30000 })).value;
    assert.strictEqual(first.success, true, JSON.stringify(first));
    const second = (await srv.call('dispatch_session', { agent: 'outer', session_id: first.session_id,
      task: `[stub:sh=sh ${sh} two] b` }, { ms: 30000 })).value;
    assert.strictEqual(second.success, true, JSON.stringify(second));
    assert.strictEqual((await stats(srv)).totals.reused, 1, 'the second turn ran on the live process');
    const all = traces(env);
    const spans = Object.values(all).flat();
    const turns = spans.filter((x) => x.agent === 'outer').sort((a, b) => a.start - b.start);
    const inners = spans.filter((x) => x.agent === 'inner');
    assert.strictEqual(turns.length, 2);
    assert.strictEqual(inners.length, 2, JSON.stringify(spans));
    const i1 = inners.find((x) => x.task.includes('nested-one'));
    const i2 = inners.find((x) => x.task.includes('nested-two'));
    assert.strictEqual(i1.trace_id, turns[0].trace_id);
    assert.strictEqual(i1.parent_id, turns[0].span_id);
    assert.strictEqual(i2.trace_id, turns[1].trace_id, 'the second turn\'s trace');
    assert.strictEqual(i2.parent_id, turns[1].span_id, 'under the second turn, not the first');
    await srv.close();
  });
});

describe('the context file is trusted only when it is this user\'s own', () => {
  function ctxSetup(t) {
    const env = newEnv(t);
    env.setup({ agents: { inner: true } });
    const dir = path.join(env.root, 'ctx');
    fs.mkdirSync(dir, { mode: 0o700 });
    const tid = 'ab'.repeat(16);
    const sid = 'cd'.repeat(8);
    const file = path.join(dir, 'good.ctx');
    fs.writeFileSync(file, `${tid}:${sid}::`, { mode: 0o600 });
    return { env, dir, file, tid, sid };
  }
  function nestedSpan(env, file) {
    const r = env.run(['dispatch', 'inner', 'nested', '--json'], { env: { AGENT_DISPATCH_TRACE_FILE: file } });
    assert.strictEqual(r.code, 0, r.stderr);
    const spans = Object.values(traces(env)).flat();
    return spans[spans.length - 1];
  }

  test('a good file joins its trace', (t) => {
    const { env, file, tid, sid } = ctxSetup(t);
    const sp = nestedSpan(env, file);
    assert.strictEqual(sp.trace_id, tid);
    assert.strictEqual(sp.parent_id, sid);
  });

  test('a symbolic link, a foreign owner or a group-readable file is ignored: a new trace', (t) => {
    const { env, dir, file, tid } = ctxSetup(t);
    const link = path.join(dir, 'link.ctx');
    fs.symlinkSync(file, link);
    assert.notStrictEqual(nestedSpan(env, link).trace_id, tid, 'a link is not followed');
    const loose = path.join(dir, 'loose.ctx');
    fs.copyFileSync(file, loose);
    fs.chmodSync(loose, 0o644);
    assert.notStrictEqual(nestedSpan(env, loose).trace_id, tid, 'a file others may read is refused');
    const user = 'ad-attacker-ctx';
    if (spawnSync('id', ['-u', user]).status !== 0) {
      assert.strictEqual(spawnSync('useradd', ['-M', '-r', user]).status, 0);
    }
    const uid = Number(spawnSync('id', ['-u', user]).stdout.toString().trim());
    const foreign = path.join(dir, 'foreign.ctx');
    fs.copyFileSync(file, foreign);
    fs.chownSync(foreign, uid, uid);
    assert.notStrictEqual(nestedSpan(env, foreign).trace_id, tid, 'another user\'s file is refused');
    const missing = nestedSpan(env, path.join(dir, 'none.ctx'));
    assert.match(missing.trace_id, /^[0-9a-f]{32}$/, 'a missing file: a trace of its own');
  });
});
