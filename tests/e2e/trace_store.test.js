'use strict';
// Where spans are stored: sequential top-level dispatches of one server
// (each its own tree) add lines to one shared day file instead of creating
// a file each; a day file removed by gc while a server runs is created
// again by its next span; `trace` and `traces` read the shared file.
// Helpers: tests/e2e/lib.js.
const { test } = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const path = require('node:path');
const { newEnv } = require('./lib');

function traceDir(env) { return path.join(env.cfgDir, 'traces'); }
function names(env) {
  try { return fs.readdirSync(traceDir(env)).sort(); } catch { return []; }
}
function records(env) {
  const out = [];
  for (const n of names(env)) {
    for (const l of fs.readFileSync(path.join(traceDir(env), n), 'utf8').split('\n')) {
      if (l) out.push(JSON.parse(l));
    }
  }
  return out;
}

test('ten top-level dispatches of one server: ten trees, one day file, no file per dispatch',
  async (t) => {
    const env = newEnv(t);
    env.setup({ agents: { a: true } });
    const srv = env.serve();
    await srv.init();
    for (let i = 0; i < 10; i++) {
      const r = await srv.call('dispatch', { agent: 'a', task: `task ${i}` });
      assert.strictEqual(r.value.success, true, r.text);
    }
    await srv.close();
    assert.deepStrictEqual(names(env).map((n) => n.replace(/\d{8}/, 'D')), ['spans-D.jsonl']);
    const ids = new Set(records(env).map((r) => r.trace_id));
    assert.strictEqual(ids.size, 10, 'each top-level call is its own tree');
    assert.strictEqual(fs.statSync(path.join(traceDir(env), names(env)[0])).mode & 0o777, 0o600);
    // Readers find every tree in the shared file, newest first.
    const list = env.run(['traces', '--json']);
    assert.strictEqual(list.code, 0, list.stderr);
    const listed = JSON.parse(list.stdout);
    const got = (Array.isArray(listed) ? listed : listed.traces).map((x) => x.trace_id);
    assert.strictEqual(got.length, 10);
    assert.strictEqual(got[0], records(env).at(-1).trace_id);
    const one = env.run(['trace', got[3], '--json']);
    assert.strictEqual(one.code, 0, one.stderr);
    const tr = JSON.parse(one.stdout);
    assert.strictEqual(tr.spans.length, 1);
    assert.strictEqual(tr.spans[0].task, 'task 6');
    assert.strictEqual(tr.spans[0].status, 'ok');
  });

test('a day file removed while a server runs (by hand, or gc of an old day) is created again by the next span', async (t) => {
  const env = newEnv(t);
  env.setup({ agents: { a: true } });
  const srv = env.serve();
  await srv.init();
  assert.strictEqual((await srv.call('dispatch', { agent: 'a', task: 'before' })).value.success, true);
  // (its span's end is written right after the reply, before the next
  // request is read: after this answer, gc cannot race it)
  await srv.request('ping');
  // (gc keeps a day file written in the last day: removed by hand here)
  for (const n of names(env).filter((x) => x.endsWith('.jsonl'))) fs.rmSync(path.join(traceDir(env), n));
  assert.deepStrictEqual(names(env).filter((n) => n.endsWith('.jsonl')), []);
  assert.strictEqual((await srv.call('dispatch', { agent: 'a', task: 'after' })).value.success, true);
  await srv.close();
  const recs = records(env);
  assert.deepStrictEqual([...new Set(recs.map((r) => r.task))], ['after']);
  assert.strictEqual(recs.filter((r) => r.status === 'ok').length, 1);
});

test('a fan-out handed off to a job: its job id finds the tree, while it runs and after', async (t) => {
  const env = newEnv(t);
  env.setup({ agents: { a: true } });
  const srv = env.serve();
  await srv.init();
  const { value } = await srv.call('dispatch_parallel', { dispatches: JSON.stringify([
    { agent: 'a', task: '[stub:sleep=3] p1' }, { agent: 'a', task: '[stub:sleep=3] p2' }]), handoff_after_seconds: 1 });
  assert.strictEqual(value.status, 'running', JSON.stringify(value));
  const id = value.job_id;
  const during = await srv.call('dispatch_trace', { job_id: id });
  assert.strictEqual(during.isError, false, during.text);
  const group = during.value.spans.find((x) => x.kind === 'parallel');
  assert.ok(group, JSON.stringify(during.value.spans));
  assert.strictEqual(group.job_id, id);
  await srv.call('dispatch_wait', { job_id: id, timeout_seconds: 30 }, { ms: 35000 });
  const after = env.run(['trace', id, '--json']);
  assert.strictEqual(after.code, 0, after.stderr);
  const spans = JSON.parse(after.stdout).spans;
  assert.strictEqual(spans.length, 3, JSON.stringify(spans));
  // An empty list of denied tools is a list, as in the span file.
  for (const x of spans.filter((y) => 'denied_tools' in y)) assert.ok(Array.isArray(x.denied_tools), JSON.stringify(x));
  assert.ok(spans.some((y) => Array.isArray(y.denied_tools)), JSON.stringify(spans));
  await srv.close();
});

test('a sync call handed off to a job: its span goes on as a "handoff" span, found by the job id',
  async (t) => {
    const env = newEnv(t);
    env.setup({ agents: { a: true } });
    const srv = env.serve();
    await srv.init();
    const { value } = await srv.call('dispatch', { agent: 'a',
      task: '[stub:sleep=3][stub:reply=late answer] slow one', handoff_after_seconds: 1 });
    assert.strictEqual(value.status, 'running', JSON.stringify(value));
    const id = value.job_id;
    // While the job runs, its id finds the tree.
    const during = await srv.call('dispatch_trace', { job_id: id });
    assert.strictEqual(during.isError, false, during.text);
    assert.strictEqual(during.value.spans.length, 1);
    assert.strictEqual(during.value.spans[0].kind, 'handoff');
    assert.strictEqual(during.value.spans[0].job_id, id);
    const w = await srv.call('dispatch_wait', { job_id: id, timeout_seconds: 30 }, { ms: 35000 });
    assert.strictEqual(w.value.status, 'done', w.text);
    await srv.close();
    const spans = new Map();
    for (const r of records(env)) spans.set(r.span_id, r);
    assert.strictEqual(spans.size, 1, 'the job continues the call\'s span');
    const s = [...spans.values()][0];
    assert.strictEqual(s.kind, 'handoff');
    assert.strictEqual(s.job_id, id);
    assert.strictEqual(s.status, 'ok');
    assert.ok(s.duration_ms >= 2500, `the span covers the whole dispatch (${s.duration_ms} ms)`);
  });
