'use strict';
// A live dispatch is answered at its successful result: the child's end
// (stdin closed, read to its end, its exit, the process object) goes on
// after the answer, still holding the concurrency slot, bounded (a child
// that lingers is killed), and ended by a shutdown. A failed result still
// waits for the exit. The bookkeeping after the answer (the span, the
// cache entry) is in place before the next request is handled.
// [stub:linger=S]: the stub stays S seconds after its result line.
// Helpers: tests/e2e/lib.js.
const { test, describe } = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const path = require('node:path');
const { newEnv, waitUntil, alive, groupAlive, stubFor } = require('./lib');

async function serve(t, settings = '') {
  const env = newEnv(t);
  env.setup({ agents: { a: true }, settings });
  const srv = env.serve();
  await srv.init();
  return { env, srv };
}

const gone = (e) => !alive(e.pid) && !groupAlive(e.pgid);

describe('answer at the live result', () => {
  test('the answer arrives while the child still lingers; the child then ends on its own', async (t) => {
    const { env, srv } = await serve(t);
    const v = (await srv.call('dispatch', { agent: 'a', task: '[stub:linger=1.5] early one' })).value;
    assert.strictEqual(v.success, true, JSON.stringify(v));
    assert.strictEqual(v.result, 'stub ok: early one');
    const e = stubFor(env, 'early one');
    assert.ok(alive(e.pid), 'answered before the child exited');
    assert.ok(await waitUntil(() => gone(e), 6000), 'the child ends after its linger');
    // The server still serves, and the next dispatch is answered as well.
    const v2 = (await srv.call('dispatch', { agent: 'a', task: 'next one' })).value;
    assert.strictEqual(v2.result, 'stub ok: next one');
    await srv.close();
    await env.assertNoLeftovers();
  });

  test('a resume of the session waits until the answered child of that session has exited', async (t) => {
    // Two CLIs must not work on one session's transcript at once: the
    // answer comes before the child has ended, and a follow-up that
    // resumes its session at once must not start beside it. (No kept
    // live sessions: a kept session's turns run in its one process.)
    const { env, srv } = await serve(t, '  live_sessions: {max: 0}\n');
    const first = (await srv.call('dispatch_session', { agent: 'a', task: '[stub:linger=1.5] opening' })).value;
    assert.strictEqual(first.success, true, JSON.stringify(first));
    const e = stubFor(env, 'opening');
    assert.ok(alive(e.pid), 'answered before the child exited');
    const next = (await srv.call('dispatch_session', { agent: 'a', session_id: first.session_id,
      task: `[stub:sh=kill -0 ${e.pid} 2>/dev/null && echo alive || echo gone] follow-up` },
    { ms: 20000 })).value;
    assert.strictEqual(next.success, true, JSON.stringify(next));
    assert.match(next.result, /gone/, 'the first child had exited when the resume started');
    await srv.close();
    await env.assertNoLeftovers();
  });

  test('the concurrency slot stays held until the answered child has exited', async (t) => {
    const { env, srv } = await serve(t, '  max_concurrency: 1\n');
    const first = (await srv.call('dispatch', { agent: 'a', task: '[stub:linger=1.5] holder' })).value;
    assert.strictEqual(first.result, 'stub ok: holder');
    const e = stubFor(env, 'holder');
    assert.ok(alive(e.pid), 'answered before the child exited');
    // The second child starts only once the first is gone: it looks.
    const second = (await srv.call('dispatch', { agent: 'a',
      task: `[stub:sh=kill -0 ${e.pid} 2>/dev/null && echo alive || echo gone] second` },
    { ms: 20000 })).value;
    assert.strictEqual(second.success, true, JSON.stringify(second));
    assert.match(second.result, /gone/, 'the first child had exited when the second started');
    await srv.close();
    await env.assertNoLeftovers();
  });

  test('a child that lingers past the bound after its answer is killed: nothing lives on', async (t) => {
    const { env, srv } = await serve(t);
    const v = (await srv.call('dispatch', { agent: 'a', task: '[stub:linger=60] stays' })).value;
    assert.strictEqual(v.result, 'stub ok: stays');
    const e = stubFor(env, 'stays');
    assert.ok(alive(e.pid), 'answered before the child exited');
    assert.ok(await waitUntil(() => gone(e), 10000), 'the lingering child and its group were killed');
    assert.strictEqual(srv.exit, null, 'the server goes on');
    await srv.close();
    await env.assertNoLeftovers();
  });

  for (const how of ['end of input', 'SIGTERM']) {
    test(`a shutdown (${how}) while an answered child lingers ends it: no orphan, no zombie`, async (t) => {
      const { env, srv } = await serve(t);
      const v = (await srv.call('dispatch', { agent: 'a', task: '[stub:linger=60] at shutdown' })).value;
      assert.strictEqual(v.result, 'stub ok: at shutdown');
      const e = stubFor(env, 'at shutdown');
      assert.ok(alive(e.pid), 'answered before the child exited');
      if (how === 'SIGTERM') {
        srv.child.kill('SIGTERM');
        const r = await srv.exited;
        assert.strictEqual(r.code, 0);
      } else {
        await srv.close(8000);
      }
      assert.ok(await waitUntil(() => gone(e), 6000), 'the child is gone');
      await env.assertNoLeftovers();
    });
  }

  test('a failed result is answered after the exit, with what the exit told', async (t) => {
    const { env, srv } = await serve(t);
    const v = (await srv.call('dispatch', { agent: 'a', task: '[stub:is_error][stub:linger=1] failing' })).value;
    assert.strictEqual(v.success, false, JSON.stringify(v));
    const e = stubFor(env, 'failing');
    assert.ok(gone(e), 'a failure waits for the child to exit');
    await srv.close();
    await env.assertNoLeftovers();
  });

  test('a CLI dispatch prints the answer, lets the child end and records its span before it exits', async (t) => {
    const env = newEnv(t);
    env.setup({ agents: { a: true } });
    const t0 = Date.now();
    const r = env.run(['dispatch', 'a', '[stub:linger=0.5] from the cli']);
    // It let the child end on its own (linger), rather than killing it at exit.
    assert.ok(Date.now() - t0 >= 450, `the command exited after ${Date.now() - t0} ms`);
    assert.strictEqual(r.code, 0, r.stderr);
    assert.match(r.stdout, /stub ok: from the cli/);
    const e = stubFor(env, 'from the cli');
    assert.ok(gone(e), 'the child ended before the command exited');
    const dir = path.join(env.cfgDir, 'traces');
    const text = fs.readdirSync(dir).map((n) => fs.readFileSync(path.join(dir, n), 'utf8')).join('');
    assert.ok(text.split('\n').filter(Boolean).map((l) => JSON.parse(l))
      .some((s) => s.task.includes('from the cli') && s.status === 'ok' && s.end), text);
  });
});

describe('bookkeeping after the answer', () => {
  test('dispatch_trace right after a dispatch sees its span ended', async (t) => {
    const { env, srv } = await serve(t);
    const v = (await srv.call('dispatch', { agent: 'a', task: '[stub:cost=0.5] traced now' })).value;
    assert.strictEqual(v.success, true);
    const tr = (await srv.call('dispatch_trace', { last: true })).value;
    const span = tr.spans.find((s) => s.task.includes('traced now'));
    assert.ok(span && span.status === 'ok' && span.end, JSON.stringify(tr));
    assert.strictEqual(tr.summary.total_cost_usd, 0.5, JSON.stringify(tr));
    await srv.close();
    await env.assertNoLeftovers();
  });

  test('a cache hit right after the first answer', async (t) => {
    const { env, srv } = await serve(t);
    const a = (await srv.call('dispatch', { agent: 'a', task: 'cached twice' })).value;
    const b = (await srv.call('dispatch', { agent: 'a', task: 'cached twice' })).value;
    assert.strictEqual(a.result, b.result);
    assert.strictEqual(b.cached, true, JSON.stringify(b));
    assert.strictEqual(env.dispatches().length, 1);
    await srv.close();
    await env.assertNoLeftovers();
  });
});
