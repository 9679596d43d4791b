'use strict';
// A handed-off dispatch_parallel fan-out outlives the MCP server that took
// it, as a handed-off single call does: its items' children are the
// keeper's, and when the server is stopped the way Claude Code stops it
// (SIGINT, SIGTERM 100 ms later, SIGKILL at 500 ms) the keeper finishes
// the fan-out (reads the running items, starts the rest within the
// concurrency limit, aggregates) and records the job's result as the
// server would have. The keeper's job runner also settles the tree
// budget's ledger as the server's runner does.
// Helpers: tests/e2e/lib.js.
const { test, describe } = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const path = require('node:path');
const { newEnv, alive, groupAlive, waitUntil, stopLikeClaudeCode } = require('./lib');

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function ppid(pid) {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
  } catch { return null; }
}

function promptOf(e) {
  return String(e.prompt || '');
}

async function start(t, settings = '') {
  const env = newEnv(t);
  env.setup({ agents: { a: true, b: true }, settings });
  const srv = env.serve();
  await srv.init();
  return { env, srv };
}

const ITEMS = [1, 2, 3, 4].map((n) => ({ agent: n % 2 ? 'a' : 'b',
  task: `[stub:sleep=2][stub:cost=0.1][stub:reply=item ${n}] part n${n}` }));

async function handOffFanOut(srv, treeBudget) {
  const { value } = await srv.call('dispatch_parallel', { dispatches: JSON.stringify(ITEMS),
    aggregate: 'b', handoff_after_seconds: 1, tree_budget_usd: treeBudget });
  assert.strictEqual(value.status, 'running', JSON.stringify(value));
  return value.job_id;
}

describe('a handed-off fan-out and the keeper', () => {
  test('a fan-out of 4 at max_concurrency 2 with an aggregator survives Claude Code\'s stop; ' +
    'a later server gets every item and the aggregate', async (t) => {
    const { env, srv } = await start(t, '  max_concurrency: 2\n  default_max_budget_usd: 0.5\n');
    const id = await handOffFanOut(srv, 5);
    assert.ok(await waitUntil(() => env.dispatches().length === 2, 5000), 'two items started');
    const first = env.dispatches();
    const keeper = ppid(first[0].pid);
    assert.ok(keeper && keeper !== srv.child.pid, 'an item\'s parent is the keeper, not the server');
    await stopLikeClaudeCode(srv);
    assert.ok(first.every((e) => alive(e.pid)), 'the running items still run after the server was killed');
    const srv2 = env.serve();
    await srv2.init();
    const w = await srv2.call('dispatch_wait', { job_id: id, timeout_seconds: 60 }, { ms: 65000 });
    assert.strictEqual(w.value.status, 'done', JSON.stringify(w.value));
    const r = w.value.result;
    assert.strictEqual(r.success, true, JSON.stringify(r));
    assert.deepStrictEqual(r.individual_results.map((x) => x.result), ['item 1', 'item 2', 'item 3', 'item 4']);
    assert.strictEqual(r.aggregated.success, true, JSON.stringify(r.aggregated));
    assert.strictEqual(r.result, r.aggregated.result);
    const log = env.dispatches();
    assert.strictEqual(log.length, 5, 'four items and the aggregator, each once');
    // The limit held across the server and the keeper: never more than 2
    // items at once (intervals from the stub log and the results).
    const spans = log.filter((e) => /part n\d/.test(promptOf(e))).map((e) => {
      const i = Number(promptOf(e).match(/part n(\d)/)[1]) - 1;
      return [e.time, e.time + r.individual_results[i].duration_ms / 1000];
    });
    assert.strictEqual(spans.length, 4);
    let maxLive = 0;
    for (const [s] of spans) {
      maxLive = Math.max(maxLive, spans.filter(([a, b]) => a <= s + 0.01 && b > s + 0.01).length);
    }
    assert.ok(maxLive <= 2, `at most 2 items at once, saw ${maxLive}`);
    // Every child spent from the call's tree, settled by whoever read it
    // (the server, or the keeper after it).
    const traceId = log[0].trace_env.split(':')[0];
    const ledger = JSON.parse(fs.readFileSync(path.join(env.cfgDir, 'traces', `${traceId}.budget`), 'utf8'));
    const spent = r.individual_results.reduce((a, x) => a + x.cost_usd, 0) + r.aggregated.cost_usd;
    assert.ok(spent > 0.4 && Math.abs(ledger.spent - spent) < 1e-9, `${JSON.stringify(ledger)} vs ${spent}`);
    assert.deepStrictEqual(ledger.reserved, {}, JSON.stringify(ledger));
    // The group span the keeper ended still names the server that ran it.
    const tdir = path.join(env.cfgDir, 'traces');
    const group = fs.readdirSync(tdir).filter((f) => f.startsWith('spans-')).flatMap((f) =>
      fs.readFileSync(path.join(tdir, f), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l)))
      .filter((s) => s.trace_id === traceId && s.kind === 'parallel');
    const end = group[group.length - 1];
    assert.ok(end && end.status === 'ok', JSON.stringify(group));
    assert.strictEqual(end.pid, srv.child.pid, 'the group span\'s end record names the server, not the keeper');
    await srv2.close();
    assert.ok(await waitUntil(() => !alive(keeper), 5000), 'the keeper exits when the fan-out is done');
    await env.assertNoLeftovers();
  });

  test('a handed-off fan-out whose client closed stdin (the server supervises it) is cancelled from the CLI', async (t) => {
    const { env, srv } = await start(t);
    const { value } = await srv.call('dispatch_parallel', { dispatches: JSON.stringify([
      { agent: 'a', task: '[stub:hang] h1' }, { agent: 'b', task: '[stub:hang] h2' }]), handoff_after_seconds: 1 });
    assert.strictEqual(value.status, 'running', JSON.stringify(value));
    assert.ok(await waitUntil(() => env.dispatches().length === 2, 5000), 'both items started');
    const kids = env.dispatches();
    srv.child.stdin.end(); // the client goes away; the server stays up for the job
    await new Promise((r) => setTimeout(r, 1000));
    const c = env.run(['cancel', value.job_id]);
    assert.strictEqual(c.code, 0, c.stdout + c.stderr);
    assert.ok(await waitUntil(() => kids.every((e) => !groupAlive(e.pgid)), 10000), 'the items run on');
    const rec = JSON.parse(fs.readFileSync(path.join(env.jobs, `${value.job_id}.json`), 'utf8'));
    assert.strictEqual(rec.status, 'cancelled', JSON.stringify(rec).slice(0, 300));
    await srv.exited;
    await env.assertNoLeftovers();
  });

  test('a fan-out whose server is killed outright (SIGKILL alone) is finished by the keeper', async (t) => {
    const { env, srv } = await start(t, '  max_concurrency: 1\n');
    const { value } = await srv.call('dispatch_parallel', { dispatches: JSON.stringify([
      { agent: 'a', task: '[stub:sleep=2][stub:reply=one] running' },
      { agent: 'b', task: '[stub:reply=two] queued' }]), aggregate: 'a', handoff_after_seconds: 1 });
    assert.strictEqual(value.status, 'running', JSON.stringify(value));
    srv.child.kill('SIGKILL');
    await srv.exited;
    const srv2 = env.serve();
    await srv2.init();
    const w = await srv2.call('dispatch_wait', { job_id: value.job_id, timeout_seconds: 60 }, { ms: 65000 });
    assert.strictEqual(w.value.status, 'done', JSON.stringify(w.value));
    assert.deepStrictEqual(w.value.result.individual_results.map((x) => x.result), ['one', 'two']);
    assert.strictEqual(w.value.result.aggregated.success, true);
    assert.strictEqual(env.dispatches().length, 3, 'two items and the aggregator, each once');
    await srv2.close();
    await env.assertNoLeftovers();
  });

  test('a fan-out stopped while none of its items runs (all wait for a slot) is still finished by the keeper',
    async (t) => {
      const { env, srv } = await start(t, '  max_concurrency: 1\n');
      // Another process's job holds the only slot for a while.
      const other = await srv.call('dispatch_async', { agent: 'a', task: '[stub:sleep=4] holds the slot' });
      assert.ok(await waitUntil(() => env.dispatches().length === 1, 5000), 'the slot is taken');
      const { value } = await srv.call('dispatch_parallel', { dispatches: JSON.stringify([
        { agent: 'a', task: '[stub:reply=first] queued one' }, { agent: 'b', task: '[stub:reply=second] queued two' }]),
      handoff_after_seconds: 1 });
      assert.strictEqual(value.status, 'running', JSON.stringify(value));
      assert.strictEqual(env.dispatches().length, 1, 'no item runs yet');
      await stopLikeClaudeCode(srv);
      const srv2 = env.serve();
      await srv2.init();
      const w = await srv2.call('dispatch_wait', { job_id: value.job_id, timeout_seconds: 60 }, { ms: 65000 });
      assert.strictEqual(w.value.status, 'done', JSON.stringify(w.value));
      assert.deepStrictEqual(w.value.result.individual_results.map((x) => x.result), ['first', 'second']);
      const o = await srv2.call('dispatch_wait', { job_id: other.value.job_id, timeout_seconds: 30 }, { ms: 35000 });
      assert.strictEqual(o.value.status, 'done');
      assert.strictEqual(env.dispatches().length, 3, 'each item once');
      await srv2.close();
      await env.assertNoLeftovers();
    });

  test('items whose result the server had read when it was stopped are not run again; they end on their own',
    async (t) => {
      const { env, srv } = await start(t, '  max_concurrency: 2\n');
      const { value } = await srv.call('dispatch_parallel', { dispatches: JSON.stringify([
        { agent: 'a', task: '[stub:sleep=1.3][stub:reply=read one][stub:linger=4] lingering one' },
        { agent: 'b', task: '[stub:sleep=1.3][stub:reply=read two][stub:linger=4] lingering two' },
        { agent: 'a', task: '[stub:reply=third] after them' }]), handoff_after_seconds: 1 });
      assert.strictEqual(value.status, 'running', JSON.stringify(value));
      const lingering = () => env.dispatches().filter((e) => /lingering/.test(promptOf(e)));
      assert.ok(await waitUntil(() => lingering().length === 2, 15000), 'both items started');
      // Both running items have written their result and linger before exiting.
      await sleep(900);
      const spawned = lingering();
      await stopLikeClaudeCode(srv);
      const srv2 = env.serve();
      await srv2.init();
      const w = await srv2.call('dispatch_wait', { job_id: value.job_id, timeout_seconds: 60 }, { ms: 65000 });
      assert.strictEqual(w.value.status, 'done', JSON.stringify(w.value));
      assert.deepStrictEqual(w.value.result.individual_results.map((x) => x.result),
        ['read one', 'read two', 'third']);
      assert.strictEqual(env.dispatches().length, 3, 'each item once');
      assert.ok(await waitUntil(() => spawned.every((e) => !alive(e.pid)), 10000), 'they exit on their own');
      await srv2.close();
      await env.assertNoLeftovers();
    });

  test('the keeper of a fan-out killed with SIGKILL: no orphan, the job fails with a clear error', async (t) => {
    const { env, srv } = await start(t, '  max_concurrency: 2\n');
    const id = await handOffFanOut(srv);
    assert.ok(await waitUntil(() => env.dispatches().length === 2, 5000));
    const first = env.dispatches();
    const keeper = ppid(first[0].pid);
    await stopLikeClaudeCode(srv);
    assert.ok(alive(keeper), 'the keeper runs the fan-out on');
    process.kill(keeper, 'SIGKILL');
    assert.ok(await waitUntil(() => env.dispatches().every((e) => !alive(e.pid) && !groupAlive(e.pgid)), 5000),
      'every item is gone');
    const srv2 = env.serve();
    await srv2.init();
    const w = await srv2.call('dispatch_wait', { job_id: id, timeout_seconds: 10 }, { ms: 15000 });
    assert.strictEqual(w.value.status, 'failed', JSON.stringify(w.value));
    assert.match(w.value.error, /stopped|exited/);
    await srv2.close();
    await env.assertNoLeftovers();
  });

  test('an item waiting for a slot when its server is killed: its reservation is given back, the keeper runs it',
    async (t) => {
      const env = newEnv(t);
      env.setup({ agents: { a: { directory: env.project('a'), max_budget_usd: 0.2 },
        b: { directory: env.project('b'), max_budget_usd: 0.2 } }, settings: '  max_concurrency: 1\n' });
      const srv = env.serve();
      await srv.init();
      const items = [{ agent: 'a', task: '[stub:sleep=3][stub:cost=0.1] q1' }, { agent: 'a', task: '[stub:sleep=1][stub:cost=0.1] q2' }];
      const { value } = await srv.call('dispatch_parallel', { dispatches: JSON.stringify(items), aggregate: 'b',
        handoff_after_seconds: 1, tree_budget_usd: 0.4 });
      assert.strictEqual(value.status, 'running', JSON.stringify(value));
      srv.child.kill('SIGKILL');
      await srv.exited;
      let rec;
      assert.ok(await waitUntil(() => {
        rec = JSON.parse(fs.readFileSync(path.join(env.jobs, `${value.job_id}.json`), 'utf8'));
        return ['done', 'failed', 'cancelled'].includes(rec.status);
      }, 30000), 'the job did not end');
      const res = rec.result.individual_results;
      assert.ok(res.every((x) => x.success), JSON.stringify(res.map((x) => x.error)));
      const traceId = env.dispatches()[0].trace_env.split(':')[0];
      const ledger = JSON.parse(fs.readFileSync(path.join(env.cfgDir, 'traces', `${traceId}.budget`), 'utf8'));
      assert.deepStrictEqual(ledger.reserved, {}, JSON.stringify(ledger));
      await env.assertNoLeftovers();
    });

  test('the keeper settles the tree budget\'s ledger with what the kept child cost', async (t) => {
    const { env, srv } = await start(t);
    const task = '[stub:sleep=2][stub:cost=0.3][stub:reply=kept and cached] cache me';
    const { value } = await srv.call('dispatch', { agent: 'a', task, handoff_after_seconds: 1,
      tree_budget_usd: 5 });
    assert.strictEqual(value.status, 'running', JSON.stringify(value));
    await stopLikeClaudeCode(srv);
    const srv2 = env.serve();
    await srv2.init();
    const w = await srv2.call('dispatch_wait', { job_id: value.job_id, timeout_seconds: 30 }, { ms: 35000 });
    assert.strictEqual(w.value.status, 'done', JSON.stringify(w.value));
    const tr = await srv2.call('dispatch_trace', { job_id: value.job_id });
    const traceId = tr.value.spans[0].trace_id;
    const ledger = JSON.parse(fs.readFileSync(path.join(env.cfgDir, 'traces', `${traceId}.budget`), 'utf8'));
    assert.ok(Math.abs(ledger.spent - 0.3) < 1e-9, JSON.stringify(ledger));
    assert.deepStrictEqual(ledger.reserved, {}, JSON.stringify(ledger));
    assert.strictEqual(env.dispatches().length, 1, 'one spawn');
    await srv2.close();
    await env.assertNoLeftovers();
  });

});
