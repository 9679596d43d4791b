'use strict';
// What a dispatch's span costs the store: a dispatch that ends within a
// second is one line (its end record; readers keep a span's last record),
// while one still running after that shows as running, to `trace` and
// dispatch_trace, until its end record follows. Helpers: tests/e2e/lib.js.
const { test } = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const path = require('node:path');
const { newEnv, waitUntil } = require('./lib');

function records(env) {
  const dir = path.join(env.cfgDir, 'traces');
  const out = [];
  let names = [];
  try { names = fs.readdirSync(dir).filter((n) => n.endsWith('.jsonl')); } catch { return out; }
  for (const n of names) {
    for (const l of fs.readFileSync(path.join(dir, n), 'utf8').split('\n')) {
      if (l) out.push(JSON.parse(l));
    }
  }
  return out;
}

test('a quick dispatch writes one span line; a slow one shows as running while it runs',
  async (t) => {
    const env = newEnv(t);
    env.setup({ agents: { a: true } });
    const srv = env.serve();
    await srv.init();
    const quick = await srv.call('dispatch', { agent: 'a', task: 'quick' });
    assert.strictEqual(quick.value.success, true, quick.text);
    // (the record is written right after the reply, before the next
    // request is read: a ping's answer means it is there)
    await srv.request('ping');
    const recs = records(env);
    assert.strictEqual(recs.length, 1, JSON.stringify(recs));
    assert.strictEqual(recs[0].status, 'ok');
    assert.strictEqual(typeof recs[0].start, 'number');
    assert.ok(recs[0].end >= recs[0].start);

    const slow = srv.call('dispatch', { agent: 'a', task: '[stub:sleep=3] slow' }, { ms: 20000 });
    let running = null;
    assert.ok(await waitUntil(() => {
      running = records(env).find((r) => r.status === 'running');
      return running !== undefined;
    }, 10000), 'a running record appears while the child runs');
    assert.strictEqual(running.task, '[stub:sleep=3] slow');
    const during = await srv.call('dispatch_trace', { trace_id: running.trace_id });
    assert.strictEqual(during.isError, false, during.text);
    assert.strictEqual(during.value.spans[0].status, 'running');
    const done = await slow;
    assert.strictEqual(done.value.success, true, done.text);
    const mine = () => records(env).filter((r) => r.span_id === running.span_id);
    await srv.request('ping');
    const lines = mine();
    assert.deepStrictEqual(lines.map((r) => r.status), ['running', 'ok']);
    await srv.close();
  });
