'use strict';
// The delegation tree: every dispatch records a span in
// <config dir>/traces/spans-YYYYMMDD.jsonl (one file per UTC day shared by
// every tree; one line at a span's start, one at its end), group operations add their nodes as parents, a nested
// agent-dispatch started by a child joins its parent's tree through
// AGENT_DISPATCH_TRACE, and tree_budget_usd caps what a whole tree spends
// (refused before spawning once nothing is left). Helpers: tests/e2e/lib.js.
const { test, describe } = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const path = require('node:path');
const { newEnv, BIN, waitUntil } = require('./lib');

const HEX32 = /^[0-9a-f]{32}$/;

function traceDir(env) { return path.join(env.cfgDir, 'traces'); }

/** Every record of the day files, oldest file first, each parsed (throws on a torn line). */
function allLines(env) {
  let names = [];
  try { names = fs.readdirSync(traceDir(env)); } catch { return []; }
  const out = [];
  for (const n of names.filter((x) => /^spans-\d{8}\.jsonl$/.test(x)).sort()) {
    const text = fs.readFileSync(path.join(traceDir(env), n), 'utf8');
    assert.ok(text.endsWith('\n'), 'a trace file ends with a complete line');
    for (const l of text.split('\n').filter(Boolean)) out.push(JSON.parse(l));
  }
  return out;
}

/** Raw records of one trace. */
function lines(env, id) {
  return allLines(env).filter((r) => r.trace_id === id);
}

/** {trace_id: [span (its last record)]} of every trace. */
/** Writes src as the script name in the test's dir and runs it with
 * `run --json` (no board); returns its value, after checking exit 0. */
function runJson(env, name, src) {
  const script = path.join(env.root, name);
  fs.writeFileSync(script, src);
  const r = env.run(['run', '--json', script], { env: { AGENT_DISPATCH_QUIET: '1' } });
  assert.strictEqual(r.code, 0, r.stderr);
  return JSON.parse(r.stdout);
}

function traces(env) {
  const out = {};
  const by = {};
  for (const rec of allLines(env)) {
    if (!by[rec.trace_id]) by[rec.trace_id] = new Map();
    by[rec.trace_id].set(rec.span_id, rec);
  }
  for (const [id, m] of Object.entries(by)) out[id] = [...m.values()];
  return out;
}

function only(obj) {
  const ids = Object.keys(obj);
  assert.strictEqual(ids.length, 1, `expected one trace, got ${ids.length}: ${JSON.stringify(obj)}`);
  return obj[ids[0]];
}

const round = (x) => Math.round(x * 1e6) / 1e6;
const sum = (spans) => round(spans.reduce((a, s) => a + s.cost_usd, 0));

function checkShape(s) {
  assert.match(s.trace_id, HEX32);
  assert.match(s.span_id, /^[0-9a-f]{16}$/);
  for (const k of ['kind', 'task', 'status']) assert.strictEqual(typeof s[k], 'string', k);
  for (const k of ['start', 'cost_usd', 'depth', 'pid']) assert.strictEqual(typeof s[k], 'number', k);
  assert.ok(Array.isArray(s.denied_tools));
  assert.strictEqual(typeof s.cached, 'boolean');
  if (s.status !== 'running') {
    assert.strictEqual(typeof s.end, 'number');
    assert.strictEqual(typeof s.duration_ms, 'number');
  }
}

function budgetArg(e) {
  const i = e.argv.indexOf('--max-budget-usd');
  return i < 0 ? null : Number(e.argv[i + 1]);
}

describe('trace: spans for every entry point', () => {
  test('MCP dispatch, dispatch_session, dispatch_stream and dispatch_async each record a tree of one span',
    async (t) => {
      const env = newEnv(t);
      env.setup({ agents: { a: true } });
      const srv = env.serve();
      await srv.init();
      await srv.call('dispatch', { agent: 'a', task: '[stub:cost=0.25] one', caller: 'me', goal: 'g' });
      await srv.call('dispatch_session', { agent: 'a', task: '[stub:cost=0.5] two' });
      await srv.call('dispatch_stream', { agent: 'a', task: '[stub:cost=0.125] three' });
      const { value } = await srv.call('dispatch_async', { agent: 'a', task: '[stub:cost=0.0625] four' });
      await srv.call('dispatch_wait', { job_id: value.job_id, timeout: 20 });
      await waitUntil(() => Object.values(traces(env)).flat().every((s) => s.status !== 'running'), 20000);
      const all = traces(env);
      assert.strictEqual(Object.keys(all).length, 4, JSON.stringify(all));
      const byKind = {};
      for (const spans of Object.values(all)) {
        assert.strictEqual(spans.length, 1);
        const s = spans[0];
        checkShape(s);
        assert.strictEqual(s.parent_id, null);
        assert.strictEqual(s.status, 'ok');
        assert.strictEqual(s.agent, 'a');
        assert.strictEqual(s.depth, 0);
        assert.ok(s.session_id);
        byKind[s.kind] = s;
      }
      assert.deepStrictEqual(Object.keys(byKind).sort(), ['async', 'dispatch', 'session', 'stream']);
      assert.strictEqual(byKind.dispatch.cost_usd, 0.25);
      assert.strictEqual(byKind.dispatch.caller, 'me');
      assert.strictEqual(byKind.dispatch.goal, 'g');
      assert.strictEqual(byKind.session.cost_usd, 0.5);
      assert.strictEqual(byKind.async.job_id, value.job_id);
      assert.strictEqual(byKind.async.cost_usd, 0.0625);
      // Two records per dispatch at most: its start and its end.
      for (const id of Object.keys(all)) assert.ok(lines(env, id).length <= 2);
      // The files are the owner's only.
      assert.strictEqual(fs.statSync(traceDir(env)).mode & 0o777, 0o700);
      for (const n of fs.readdirSync(traceDir(env))) {
        assert.strictEqual(fs.statSync(path.join(traceDir(env), n)).mode & 0o777, 0o600, n);
      }
      // dispatch_trace finds the async job's tree by its job id.
      const tr = await srv.call('dispatch_trace', { job_id: value.job_id });
      assert.strictEqual(tr.value.trace_id, byKind.async.trace_id);
      assert.strictEqual(tr.value.summary.total_cost_usd, 0.0625);
      assert.match(tr.value.text, /\ba\b.*async/);
    });

  test('a cache hit records one span marked cached; the CLI test and dispatch commands record theirs',
    async (t) => {
      const env = newEnv(t);
      env.setup({ agents: { a: true } });
      const srv = env.serve();
      await srv.init();
      await srv.call('dispatch', { agent: 'a', task: '[stub:cost=0.5] same' });
      await srv.call('dispatch', { agent: 'a', task: '[stub:cost=0.5] same' });
      await srv.request('ping'); // (the records after the reply)
      assert.strictEqual(env.run(['test', 'a', '[stub:cost=0.25] cli-test']).code, 0);
      assert.strictEqual(env.run(['dispatch', 'a', '[stub:cost=0.125] cli-dispatch']).code, 0);
      const spans = Object.values(traces(env)).flat();
      assert.strictEqual(spans.length, 4, JSON.stringify(spans));
      const cached = spans.filter((s) => s.cached);
      assert.strictEqual(cached.length, 1);
      assert.strictEqual(cached[0].status, 'ok');
      assert.ok(spans.some((s) => s.task.includes('cli-test') && s.cost_usd === 0.25));
      assert.ok(spans.some((s) => s.task.includes('cli-dispatch') && s.cost_usd === 0.125));
      assert.strictEqual(env.dispatches().length, 3);
    });

  test('a detached async job: the submitting process starts the span, its job runner ends it', async (t) => {
    const env = newEnv(t);
    env.setup({ agents: { a: true } });
    const r = env.run(['dispatch', 'a', '[stub:cost=0.25] detached', '--async']);
    assert.strictEqual(r.code, 0, r.stderr);
    const id = r.stdout.trim();
    let spans = [];
    await waitUntil(() => {
      spans = Object.values(traces(env)).flat();
      return spans.length === 1 && spans[0].status !== 'running';
    }, 30000);
    const s = spans[0];
    assert.strictEqual(s.kind, 'async');
    assert.strictEqual(s.job_id, id);
    assert.strictEqual(s.status, 'ok');
    assert.strictEqual(s.cost_usd, 0.25);
    const recs = lines(env, s.trace_id);
    assert.strictEqual(recs.length, 2);
    assert.notStrictEqual(recs[0].pid, recs[1].pid, 'the runner (another process) wrote the end');
    const shown = env.run(['trace', id, '--json']);
    assert.strictEqual(shown.code, 0, shown.stderr);
    assert.strictEqual(JSON.parse(shown.stdout).trace_id, s.trace_id);
    await env.assertNoLeftovers();
  });
});

describe('trace: the shape of a tree', () => {
  test('parallel with an aggregator: a parallel node, an item span per item and the aggregate under it',
    async (t) => {
      const env = newEnv(t);
      env.setup({ agents: { a: true, b: true, agg: true } });
      const srv = env.serve();
      await srv.init();
      const { value } = await srv.call('dispatch_parallel', {
        dispatches: JSON.stringify([
          { agent: 'a', task: '[stub:cost=0.25] p1' },
          { agent: 'b', task: '[stub:cost=0.5] p2' },
          { agent: 'b', task: '[stub:is_error] p3' },
        ]),
        aggregate: 'agg' });
      assert.strictEqual(value.individual_results.length, 3);
      // (a span's end is written right after the reply, before the next request is read)
      await srv.request('ping');
      const spans = only(traces(env));
      spans.forEach(checkShape);
      const group = spans.filter((s) => s.kind === 'parallel');
      assert.strictEqual(group.length, 1);
      assert.strictEqual(group[0].parent_id, null);
      assert.strictEqual(group[0].agent, null);
      assert.strictEqual(group[0].status, 'error', 'one item failed');
      const items = spans.filter((s) => s.kind === 'item');
      assert.strictEqual(items.length, 3);
      for (const s of items) assert.strictEqual(s.parent_id, group[0].span_id);
      assert.strictEqual(items.filter((s) => s.status === 'error').length, 1);
      const agg = spans.filter((s) => s.kind === 'aggregate');
      assert.strictEqual(agg.length, 1);
      assert.strictEqual(agg[0].parent_id, group[0].span_id);
      assert.strictEqual(agg[0].agent, 'agg');
      // The tree's total is what the children reported, nothing counted twice.
      const reported = round(value.individual_results.reduce((a, r) => a + (r.cost_usd || 0), 0) +
        (value.aggregated.cost_usd || 0));
      assert.strictEqual(sum(spans), reported);
      const shown = env.run(['trace', group[0].trace_id]);
      assert.strictEqual(shown.code, 0, shown.stderr);
      assert.match(shown.stdout, /parallel/);
      assert.match(shown.stdout, /aggregate/);
    });

  test('a dialogue: a dialogue node with a turn span per turn', async (t) => {
    const env = newEnv(t);
    env.setup({ agents: { req: true, resp: true } });
    const srv = env.serve();
    await srv.init();
    const { value } = await srv.call('dispatch_dialogue',
      { requester: 'req', responder: 'resp', topic: 'talk [stub:cost=0.25]', max_rounds: 2 });
    // (the last records are written right after the reply, before the
    // next request is read)
    await srv.request('ping');
    const spans = only(traces(env));
    const d = spans.filter((s) => s.kind === 'dialogue');
    assert.strictEqual(d.length, 1);
    const turns = spans.filter((s) => s.kind === 'turn');
    assert.strictEqual(turns.length, value.conversation.length);
    for (const s of turns) assert.strictEqual(s.parent_id, d[0].span_id);
    assert.strictEqual(sum(spans), round(value.total_cost_usd));
  });

  test('a run script is one tree: its dispatches hang under the run span', async (t) => {
    const env = newEnv(t);
    env.setup({ agents: { a: true, b: true } });
    const script = path.join(env.root, 's.lua');
    fs.writeFileSync(script, `local ad = require "agent_dispatch"
ad.dispatch{ agent = "a", task = "[stub:cost=0.25] s1" }
ad.parallel{ { agent = "a", task = "s2" }, { agent = "b", task = "s3" } }
return true
`);
    const r = env.run(['run', script], { env: { AGENT_DISPATCH_QUIET: '1' } });
    assert.strictEqual(r.code, 0, r.stderr);
    const spans = only(traces(env));
    const run = spans.find((s) => s.kind === 'run');
    assert.ok(run);
    assert.strictEqual(run.parent_id, null);
    assert.strictEqual(run.status, 'ok');
    const par = spans.find((s) => s.kind === 'parallel');
    assert.strictEqual(par.parent_id, run.span_id);
    assert.strictEqual(spans.find((s) => s.task.includes('s1')).parent_id, run.span_id);
    assert.strictEqual(spans.filter((s) => s.parent_id === par.span_id).length, 2);
    const listed = env.run(['traces']);
    assert.strictEqual(listed.code, 0);
    assert.ok(listed.stdout.includes(run.trace_id));
  });

  test('a run script that dispatches nothing records no tree (the completions list names with one)', (t) => {
    const env = newEnv(t);
    env.setup({ agents: { a: true } });
    assert.strictEqual(env.run(['dispatch', 'a', 'the real last one']).code, 0);
    const before = Object.keys(traces(env));
    const script = path.join(env.root, 'names.lua');
    fs.writeFileSync(script, 'for _, a in ipairs(require("agent_dispatch").agents()) do print(a.name) end\n');
    for (let i = 0; i < 3; i++) {
      const r = env.run(['run', script]);
      assert.strictEqual(r.code, 0, r.stderr);
      assert.match(r.stdout, /^a$/m);
    }
    assert.deepStrictEqual(Object.keys(traces(env)), before);
    const last = env.run(['trace']);
    assert.strictEqual(last.code, 0, last.stderr);
    assert.strictEqual(before.length, 1);
    assert.ok(last.stdout.includes(before[0]), `'trace' shows another tree than the last dispatch: ${last.stdout}`);
    // One that fails before any dispatch records none either.
    fs.writeFileSync(script, 'error("no dispatch")\n');
    assert.strictEqual(env.run(['run', script]).code, 1);
    assert.deepStrictEqual(Object.keys(traces(env)), before);
  });
});

describe('trace: nesting through the environment', () => {
  test('an agent-dispatch run by a child joins the same tree under the child; the variable goes no further',
    async (t) => {
      const env = newEnv(t);
      env.setup({ agents: { outer: true, inner: true } });
      const inner = path.join(env.root, 'inner-task');
      fs.writeFileSync(inner, '[stub:cost=0.125] nested-inner');
      const check = path.join(env.root, 'envcheck.lua');
      fs.writeFileSync(check, 'print("seen:" .. (os.getenv("AGENT_DISPATCH_TRACE") or "<unset>"))\n' +
        'local f = io.popen("env") local e = f:read("a") f:close()\n' +
        'print("child:" .. (e:find("AGENT_DISPATCH_TRACE", 1, true) and "set" or "<unset>"))\n');
      const sh = path.join(env.root, 'nested.sh');
      fs.writeFileSync(sh, `${JSON.stringify(BIN)} dispatch inner "$(cat ${JSON.stringify(inner)})" --json\n` +
        `AGENT_DISPATCH_QUIET=1 ${JSON.stringify(BIN)} run ${JSON.stringify(check)}\n`);
      const srv = env.serve();
      await srv.init();
      const { value } = await srv.call('dispatch', { agent: 'outer', task: `[stub:cost=0.25] [stub:sh=sh ${sh}] go` },
        { ms: 30000 });
      assert.strictEqual(value.success, true, JSON.stringify(value));
      // The nested process's own environment (and what it starts) has no trace variable.
      assert.match(value.result, /seen:<unset>/);
      assert.match(value.result, /child:<unset>/);
      // (the outer span's end is written right after the reply, before
      // the next request is read)
      await srv.request('ping');
      const all = traces(env);
      const spans = Object.values(all).flat();
      const outer = spans.find((s) => s.agent === 'outer');
      const nested = spans.find((s) => s.agent === 'inner');
      assert.ok(outer && nested, JSON.stringify(spans));
      assert.strictEqual(nested.trace_id, outer.trace_id);
      assert.strictEqual(nested.parent_id, outer.span_id);
      assert.strictEqual(nested.depth, 1);
      assert.notStrictEqual(nested.pid, outer.pid);
      assert.strictEqual(nested.cost_usd, 0.125);
      // The envcheck `run` dispatched nothing: no span of its own (one
      // that dispatches hangs under the outer span, as the CLI dispatch).
      assert.ok(!spans.some((s) => s.kind === 'run'), JSON.stringify(spans));
      assert.strictEqual(Object.keys(all).length, 1);
      // The claude children got the context: the outer one of its own span.
      const outerStub = env.dispatches().find((e) => e.prompt.includes('go'));
      assert.strictEqual(outerStub.trace_env.split(':').slice(0, 2).join(':'),
        `${outer.trace_id}:${outer.span_id}`);
      const innerStub = env.dispatches().find((e) => e.prompt.includes('nested-inner'));
      assert.strictEqual(innerStub.trace_env.split(':').slice(0, 2).join(':'),
        `${outer.trace_id}:${nested.span_id}`);
    });

  test('a dispatch stopped before its child spawns (the depth guard) is recorded refused, as one line',
    async (t) => {
      const env = newEnv(t);
      env.setup({ agents: { a: true } });
      const r = env.run(['dispatch', 'a', 'deep', '--json'], { env: { AGENT_DISPATCH_DEPTH: '3' } });
      assert.strictEqual(JSON.parse(r.stdout).error_type, 'recursion');
      assert.strictEqual(env.dispatches().length, 0);
      const spans = only(traces(env));
      assert.strictEqual(spans[0].status, 'refused');
      assert.strictEqual(spans[0].error_type, 'recursion');
      assert.strictEqual(spans[0].depth, 3);
      assert.strictEqual(lines(env, spans[0].trace_id).length, 1);
    });

  test('a trace variable that is not ours is ignored: a new tree starts', async (t) => {
    const env = newEnv(t);
    env.setup({ agents: { a: true } });
    const r = env.run(['dispatch', 'a', 'x'], { env: { AGENT_DISPATCH_TRACE: 'not-a-trace' } });
    assert.strictEqual(r.code, 0, r.stderr);
    const spans = only(traces(env));
    assert.strictEqual(spans[0].parent_id, null);
  });
});

describe('trace: storage', () => {
  test('concurrent writers (four processes, forty dispatches) lose no span and tear no line', async (t) => {
    const env = newEnv(t);
    env.setup({ agents: { a: true } });
    // One tree shared by every writer: each process inherits the same context.
    const script = path.join(env.root, 'many.lua');
    fs.writeFileSync(script, `local ad = require "agent_dispatch"
local list = {}
for i = 1, 10 do list[i] = { agent = "a", task = "w" .. arg[1] .. "-" .. i .. " " .. string.rep("x", 150) } end
ad.parallel(list)
return true
`);
    const ctx = 'ab'.repeat(16) + ':' + 'cd'.repeat(8) + '::';
    const procs = [1, 2, 3, 4].map((n) => env.start(['run', script, String(n)],
      { env: { AGENT_DISPATCH_QUIET: '1', AGENT_DISPATCH_TRACE: ctx } }));
    for (const p of procs) assert.strictEqual((await p.done).code, 0);
    const recs = lines(env, 'ab'.repeat(16));
    const ids = new Set(recs.map((r) => r.span_id));
    // 4 run spans + 4 parallel nodes + 40 items.
    assert.strictEqual(ids.size, 48);
    const ended = new Map();
    for (const r of recs) if (r.status !== 'running') ended.set(r.span_id, r);
    assert.strictEqual(ended.size, 48);
    assert.strictEqual([...ended.values()].filter((s) => s.kind === 'item').length, 40);
  });

  test('retention: traces older than job_retention_days are pruned at server start; gc prunes by age',
    async (t) => {
      const env = newEnv(t);
      env.setup({ agents: { a: true }, settings: '  job_retention_days: 30\n' });
      fs.mkdirSync(traceDir(env), { recursive: true, mode: 0o700 });
      // Retention removes whole day files (and the ledgers of old trees).
      const old = path.join(traceDir(env), 'spans-20200101.jsonl');
      const oldBudget = path.join(traceDir(env), `${'1'.repeat(32)}.budget`);
      const young = path.join(traceDir(env), 'spans-20200102.jsonl');
      const rec = (id) => JSON.stringify({ trace_id: id, span_id: '0'.repeat(16), kind: 'dispatch',
        status: 'ok', start: 1 }) + '\n';
      fs.writeFileSync(old, rec('1'.repeat(32)), { mode: 0o600 });
      fs.writeFileSync(oldBudget, '{}\n', { mode: 0o600 });
      fs.writeFileSync(young, rec('2'.repeat(32)), { mode: 0o600 });
      const forty = Date.now() / 1000 - 40 * 86400;
      fs.utimesSync(old, forty, forty);
      fs.utimesSync(oldBudget, forty, forty);
      const ten = Date.now() / 1000 - 10 * 86400;
      fs.utimesSync(young, ten, ten);
      const srv = env.serve();
      await srv.init();
      await srv.call('list_agents');
      assert.ok(await waitUntil(() => !fs.existsSync(old), 20000), 'the 40-day-old trace was not pruned');
      assert.ok(!fs.existsSync(oldBudget));
      assert.ok(fs.existsSync(young));
      await srv.close();
      const r = env.run(['gc', '--days', '7']);
      assert.strictEqual(r.code, 0, r.stderr);
      assert.match(r.stdout, /Deleted 1 trace/);
      assert.ok(!fs.existsSync(young));
    });

  test('a symlinked trace file is refused, and so is a traces directory others may write', async (t) => {
    const env = newEnv(t);
    env.setup({ agents: { a: true } });
    assert.strictEqual(env.run(['dispatch', 'a', 'first']).code, 0);
    const id = Object.keys(traces(env))[0];
    const victim = path.join(env.root, 'victim');
    fs.writeFileSync(victim, 'untouched\n');
    const f = path.join(traceDir(env), fs.readdirSync(traceDir(env)).find((n) => n.endsWith('.jsonl')));
    fs.rmSync(f);
    fs.symlinkSync(victim, f);
    const shown = env.run(['trace', id]);
    assert.notStrictEqual(shown.code, 0);
    const w = env.run(['dispatch', 'a', 'through the link']);
    assert.strictEqual(w.code, 0, w.stderr);
    assert.match(w.stderr, /trace could not be recorded/);
    assert.strictEqual(fs.readFileSync(victim, 'utf8'), 'untouched\n');
    fs.rmSync(f);
    fs.chmodSync(traceDir(env), 0o777);
    const r = env.run(['dispatch', 'a', 'second']);
    assert.strictEqual(r.code, 0, 'a trace that cannot be written never fails the dispatch');
    assert.match(r.stderr, /trace could not be recorded.*writable by group or others/);
    assert.strictEqual(fs.readFileSync(victim, 'utf8'), 'untouched\n');
    fs.chmodSync(traceDir(env), 0o700);
  });
});

describe('trace: views of damaged or hostile spans', () => {
  test('a span with impossible numbers (start 1e308, end -1e308): traces, trace and dispatch_trace still answer', async (t) => {
    const env = newEnv(t);
    env.setup({ agents: { a: true } });
    assert.strictEqual(env.run(['dispatch', 'a', 'fine']).code, 0);
    const id = 'dddddddddddddddddddddddddddddddd';
    const f = path.join(traceDir(env), fs.readdirSync(traceDir(env)).find((n) => n.endsWith('.jsonl')));
    for (const [a, b] of [['1e308', '-1e308'], ['-1e308', '1e308']]) {
      fs.appendFileSync(f, `{"trace_id":"${id}","span_id":"${a === '1e308' ? 'aaaaaaaaaaaaaaaa' : 'bbbbbbbbbbbbbbbb'}",` +
        `"kind":"dispatch","agent":"a","task":"odd","status":"ok","start":${a},"end":${b},"cost_usd":${a}}\n`);
    }
    for (const args of [['traces'], ['trace', id], ['traces', '--json']]) {
      const r = env.run(args);
      assert.strictEqual(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
      assert.doesNotMatch(r.stdout + r.stderr, /internal error|stack traceback|inf|nan/i, `${args.join(' ')}: ${r.stdout}${r.stderr}`);
    }
    const srv = env.serve();
    await srv.init();
    const tr = await srv.call('dispatch_trace', { trace_id: id });
    assert.doesNotMatch(tr.text, /bug in agent-dispatch/, tr.text);
    assert.strictEqual(tr.value.spans.length, 2, tr.text);
    await srv.close();
  });

  test('a chain of 10,000 spans (a forged file, a loop) renders as text, JSON and SVG in bounded time and memory', (t) => {
    const env = newEnv(t);
    env.setup({ agents: { a: true } });
    const id = 'eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee';
    fs.mkdirSync(traceDir(env), { recursive: true, mode: 0o700 });
    const lines = [];
    for (let i = 0; i < 10000; i++) {
      const sid = (i + 1).toString(16).padStart(16, '0');
      const parent = i ? `"parent_id":"${i.toString(16).padStart(16, '0')}",` : '';
      lines.push(`{"trace_id":"${id}","span_id":"${sid}",${parent}"kind":"dispatch","agent":"a",` +
        `"task":"t${i}","status":"ok","start":${1796000000 + i / 1000},"end":${1796000000 + i / 1000 + 0.0005}}`);
    }
    fs.writeFileSync(path.join(traceDir(env), 'spans-20261202.jsonl'), `${lines.join('\n')}\n`, { mode: 0o600 });
    // (quadratic before: each row's indentation as long as its depth; this
    // took a minute and 330 MB, and 100,000 levels were killed for memory)
    for (const args of [['trace', id], ['trace', id, '--json'], ['trace', id, '--svg', path.join(env.root, 'x.svg')]]) {
      const r = env.run(args, { timeout: 30000, killSignal: 'SIGKILL' });
      assert.strictEqual(r.signal, null, `${args.join(' ')} did not end within 30 s`);
      assert.strictEqual(r.code, 0, r.stderr);
    }
    const text = env.run(['trace', id]).stdout;
    assert.ok(text.split('\n').every((l) => l.length < 400), 'a row as long as its depth');
  });

  test('traces keeps the control characters and bidi overrides of a task off the terminal', (t) => {
    const env = newEnv(t);
    env.setup({ agents: { a: true } });
    assert.strictEqual(env.run(['dispatch', 'a', 'hi \u001b]0;OWNED\u0007\u001b[2J\u202eevil']).code, 0);
    const r = env.run(['traces']);
    assert.strictEqual(r.code, 0, r.stderr);
    assert.match(r.stdout, /a: hi/);
    assert.doesNotMatch(r.stdout, /[\u0000-\u0008\u000b-\u001f\u007f\u202e]/, JSON.stringify(r.stdout));
  });

  test('trace --html and --svg write as a shell would: a new file 0666 less the umask, a replaced one keeps its mode', (t) => {
    const env = newEnv(t);
    env.setup({ agents: { a: true } });
    assert.strictEqual(env.run(['dispatch', 'a', 'private task']).code, 0);
    const old = process.umask(0o077);
    try {
      const fresh = path.join(env.root, 'new.html');
      assert.strictEqual(env.run(['trace', '--html', fresh]).code, 0);
      assert.strictEqual(fs.statSync(fresh).mode & 0o777, 0o600);
      const kept = path.join(env.root, 'old.svg');
      fs.writeFileSync(kept, '', { mode: 0o640 });
      fs.chmodSync(kept, 0o640);
      assert.strictEqual(env.run(['trace', '--svg', kept]).code, 0);
      assert.strictEqual(fs.statSync(kept).mode & 0o777, 0o640);
      assert.match(fs.readFileSync(kept, 'utf8'), /<svg/);
    } finally {
      process.umask(old);
    }
  });
});

describe('trace and job stores under a directory others may write', () => {
  test('a traces or jobs directory inside a directory others may write is refused (they could swap it)', (t) => {
    const env = newEnv(t);
    env.setup({ agents: { a: true } });
    const shared = path.join(env.root, 'shared');
    fs.mkdirSync(shared);
    fs.chmodSync(shared, 0o777);
    const own = { AGENT_DISPATCH_TRACES_DIR: path.join(shared, 'traces'), AGENT_DISPATCH_JOBS_DIR: path.join(shared, 'jobs') };
    fs.mkdirSync(own.AGENT_DISPATCH_TRACES_DIR, { mode: 0o700 });
    fs.mkdirSync(own.AGENT_DISPATCH_JOBS_DIR, { mode: 0o700 });
    const d = env.run(['dispatch', 'a', 'x'], { env: own });
    assert.strictEqual(d.code, 0, 'a trace that cannot be written never fails the dispatch');
    assert.match(d.stderr, new RegExp(`trace could not be recorded.*${shared}.*writable by`), d.stderr);
    assert.deepStrictEqual(fs.readdirSync(own.AGENT_DISPATCH_TRACES_DIR), []);
    const a = env.run(['dispatch', 'a', 'x', '--async'], { env: own });
    assert.notStrictEqual(a.code, 0);
    assert.match(a.stderr, new RegExp(`refusing the jobs directory.*${shared}.*writable by`), a.stderr);
    assert.deepStrictEqual(fs.readdirSync(own.AGENT_DISPATCH_JOBS_DIR), []);
  });
});

describe('trace: one spend cap for a tree', () => {
  test('parallel items share the ledger: each child gets what is left, the rest are refused before spawning',
    async (t) => {
      const env = newEnv(t);
      env.setup({ agents: { a: { max_budget_usd: 0.3 } } });
      const srv = env.serve();
      await srv.init();
      const { value } = await srv.call('dispatch_parallel', {
        dispatches: JSON.stringify([1, 2, 3].map((i) => ({ agent: 'a', task: `[stub:cost=0.3] item${i}` }))),
        tree_budget_usd: 0.5 });
      const spawned = env.dispatches();
      assert.strictEqual(spawned.length, 2, 'the third child never spawned');
      assert.deepStrictEqual(spawned.map(budgetArg).sort(), [0.2, 0.3]);
      const refused = value.filter((r) => r.error_type === 'budget');
      assert.strictEqual(refused.length, 1);
      await srv.request('ping'); // (the records after the reply)
      const spans = only(traces(env));
      const tid = spans[0].trace_id;
      assert.ok(refused[0].error.includes(tid), refused[0].error);
      assert.match(refused[0].hint, new RegExp(`agent-dispatch trace ${tid}`));
      assert.strictEqual(spans.filter((s) => s.status === 'refused').length, 1);
      assert.strictEqual(spans.find((s) => s.status === 'refused').error_type, 'budget');
    });

  test('gc while a tree runs keeps its ledger and its spans: the cap still holds (gc --all, gc --days 0.00001)',
    async (t) => {
      for (const gcArgs of [['gc', '--all'], ['gc', '--days', '0.00001']]) {
        const env = newEnv(t);
        env.setup({ agents: { a: true } });
        const gc = [BIN, ...gcArgs].map((a) => JSON.stringify(a)).join(' ');
        const out = runJson(env, 'seq.lua', `local ad = require "agent_dispatch"
local out = {}
for i = 1, 3 do
  if i == 3 then
    ad.sleep(1) -- the ledger has not changed for a second: older than --days 0.00001
    assert(os.execute(${JSON.stringify(gc)} .. " >/dev/null"))
  end
  out[i] = ad.dispatch{ agent = "a", task = "[stub:cost=0.03] item " .. i, tree_budget_usd = 0.05 }
end
return out
`);
        assert.strictEqual(out[0].success, true);
        assert.strictEqual(out[1].success, true);
        assert.strictEqual(out[2].error_type, 'budget', `${gcArgs.join(' ')}: ${JSON.stringify(out[2])}`);
        // Its spans are still there: the whole tree shows.
        const tr = env.run(['trace', '--json']);
        assert.strictEqual(tr.code, 0, tr.stderr);
        assert.ok(tr.stdout.includes('item 1'), `${gcArgs.join(' ')}: the tree lost its first spans`);
      }
    });

  test('a child that reports no cost (timed out, killed) is charged all it was allowed: the cap is not handed out again',
    async (t) => {
      const env = newEnv(t);
      env.setup({ agents: { a: true } });
      const out = runJson(env, 'timeouts.lua', `local ad = require "agent_dispatch"
local out = {}
for i = 1, 3 do
  out[i] = ad.dispatch{ agent = "a", task = "[stub:hang] step " .. i, tree_budget_usd = 0.5, timeout_seconds = 10 }
end
return out
`);
      assert.strictEqual(out[0].error_type, 'timeout', JSON.stringify(out[0]));
      // The first child may have spent its $0.50: nothing is left for the others.
      assert.strictEqual(out[1].error_type, 'budget', JSON.stringify(out[1]));
      assert.strictEqual(out[2].error_type, 'budget', JSON.stringify(out[2]));
      assert.strictEqual(env.dispatches().length, 1);
    });

  test('a budget stop or overrun under the tree cap points at tree_budget_usd, not the agent\'s own cap', (t) => {
    const env = newEnv(t);
    env.setup({ agents: { a: { directory: env.project('a'), max_budget_usd: 5 } } });
    const [stopped, over] = runJson(env, 'hints.lua', `local ad = require "agent_dispatch"
return { ad.dispatch{ agent = "a", task = "[stub:budget] stopped", tree_budget_usd = 0.2 },
  ad.dispatch{ agent = "a", task = "[stub:cost=0.15] over", tree_budget_usd = 0.1 } }
`);
    assert.strictEqual(stopped.error_type, 'budget', JSON.stringify(stopped));
    assert.match(stopped.error, /tree_budget_usd/, stopped.error);
    assert.doesNotMatch(stopped.error, /--max-budget-usd 0\.4/, stopped.error);
    assert.strictEqual(over.budget_exceeded, true, JSON.stringify(over));
    assert.match(over.hint, /tree_budget_usd/, over.hint);
  });

  test('settled spend is named in the refusal: who spent how much', async (t) => {
    const env = newEnv(t);
    env.setup({ agents: { a: true, b: true } });
    const out = runJson(env, 'seq.lua', `local ad = require "agent_dispatch"
local out = {}
out[1] = ad.dispatch{ agent = "a", task = "[stub:cost=0.3] one", tree_budget_usd = 0.5 }
out[2] = ad.dispatch{ agent = "b", task = "[stub:cost=0.2] two", tree_budget_usd = 0.5 }
out[3] = ad.dispatch{ agent = "a", task = "[stub:cost=0.1] three", tree_budget_usd = 0.5 }
return out
`);
    assert.strictEqual(out[0].success, true);
    assert.strictEqual(out[1].success, true);
    assert.strictEqual(out[2].error_type, 'budget');
    assert.match(out[2].error, /\$0\.50 spent \(a \$0\.30, b \$0\.20\)/);
    const spawned = env.dispatches();
    assert.strictEqual(spawned.length, 2);
    assert.strictEqual(budgetArg(spawned[1]), 0.2, 'the second child may spend only what is left');
  });

  test('settings.tree_budget_usd caps every tree on its own; the agent\'s max_budget_usd still caps each child',
    async (t) => {
      const env = newEnv(t);
      env.setup({ agents: { a: { max_budget_usd: 0.05 }, b: { max_budget_usd: 0.01 } },
        settings: '  tree_budget_usd: 0.02\n' });
      for (const task of ['[stub:cost=0.02] x', '[stub:cost=0.02] y']) {
        const r = env.run(['dispatch', 'a', task]);
        assert.strictEqual(r.code, 0, r.stderr);
      }
      assert.strictEqual(env.run(['dispatch', 'b', 'z']).code, 0);
      assert.deepStrictEqual(env.dispatches().map(budgetArg), [0.02, 0.02, 0.01],
        'each CLI call is a tree of its own with the whole cap; the lower own cap wins');
    });

  test('a detached job runner spends from the tree it was submitted in', async (t) => {
    const env = newEnv(t);
    env.setup({ agents: { a: true }, settings: '  jobs_outlive_server: true\n' });
    const script = path.join(env.root, 'async.lua');
    fs.writeFileSync(script, `local ad = require "agent_dispatch"
local first = ad.dispatch{ agent = "a", task = "[stub:cost=0.3] sync", tree_budget_usd = 0.5 }
local id = ad.async{ agent = "a", task = "[stub:cost=0.1] in a runner", tree_budget_usd = 0.5 }
local rec = ad.wait(id, 20)
return { first = first, job = rec }
`);
    const r = env.run(['run', '--json', script], { env: { AGENT_DISPATCH_QUIET: '1' },
      timeout: 30000 });
    assert.strictEqual(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout);
    assert.strictEqual(out.job.status, 'done', JSON.stringify(out.job));
    const stubs = env.dispatches();
    assert.strictEqual(stubs.length, 2);
    assert.ok(Math.abs(budgetArg(stubs[1]) - 0.2) < 1e-9, String(budgetArg(stubs[1])));
    const spans = only(traces(env));
    const job = spans.find((s) => s.kind === 'async');
    assert.strictEqual(job.job_id, out.job.id);
    assert.strictEqual(job.status, 'ok');
    assert.strictEqual(job.parent_id, spans.find((s) => s.kind === 'run').span_id);
    const ledger = JSON.parse(fs.readFileSync(path.join(traceDir(env), `${job.trace_id}.budget`), 'utf8'));
    assert.ok(Math.abs(ledger.spent - 0.4) < 1e-9, JSON.stringify(ledger));
    assert.deepStrictEqual(ledger.reserved, {});
    await env.assertNoLeftovers();
  });

  test('a child that raises the cap in the context it passes on stays under the cap its tree was given', async (t) => {
    const env = newEnv(t);
    env.setup({ agents: { outer: true, inner: true } });
    const sh = path.join(env.root, 'forge.sh');
    // (the third field of the context is the tree's cap)
    fs.writeFileSync(sh, 'AGENT_DISPATCH_TRACE=$(printf %s "$AGENT_DISPATCH_TRACE" | ' +
      "awk -F: 'BEGIN{OFS=\":\"}{$3=\"100\"; print}'); export AGENT_DISPATCH_TRACE\n" +
      `${JSON.stringify(BIN)} dispatch inner "[stub:cost=0.01] forged" --json\n`);
    const script = path.join(env.root, 'tree.lua');
    fs.writeFileSync(script, `local ad = require "agent_dispatch"
ad.dispatch{ agent = "inner", task = "[stub:cost=0.45] first", tree_budget_usd = 0.5 }
return ad.dispatch{ agent = "outer", task = "[stub:cost=0.01] [stub:sh=sh ${sh}] second", tree_budget_usd = 0.5 }
`);
    const r = env.run(['run', '--json', script], { env: { AGENT_DISPATCH_QUIET: '1' }, timeout: 30000 });
    assert.strictEqual(r.code, 0, r.stderr);
    const forged = env.dispatches().find((e) => e.prompt.includes('forged'));
    assert.ok(forged, 'the nested dispatch did not run');
    assert.ok(budgetArg(forged) <= 0.05 + 1e-9, `the forged cap gave the child ${budgetArg(forged)}`);
  });

  test('a non-finite cap in the inherited context is ignored, not an error', (t) => {
    const env = newEnv(t);
    env.setup({ agents: { a: true } });
    const r = env.run(['dispatch', 'a', 'x'], { env: { AGENT_DISPATCH_TRACE:
      `${'ab'.repeat(16)}:${'cd'.repeat(8)}:1e999:` } });
    assert.strictEqual(r.code, 0, r.stderr);
  });

  test('a nested agent-dispatch shares the tree ledger: it is capped by what is left and refused once spent',
    async (t) => {
      const env = newEnv(t);
      env.setup({ agents: { outer: true, inner: true } });
      const t1 = path.join(env.root, 't1');
      const t2 = path.join(env.root, 't2');
      fs.writeFileSync(t1, '[stub:cost=0.1] nested-one');
      fs.writeFileSync(t2, 'nested-two');
      const sh = path.join(env.root, 'nested.sh');
      fs.writeFileSync(sh, `${JSON.stringify(BIN)} dispatch inner "$(cat ${JSON.stringify(t1)})" --json; echo\n` +
        `${JSON.stringify(BIN)} dispatch inner "$(cat ${JSON.stringify(t2)})" --json\n`);
      const script = path.join(env.root, 'tree.lua');
      fs.writeFileSync(script, `local ad = require "agent_dispatch"
local a = ad.dispatch{ agent = "inner", task = "[stub:cost=0.45] first", tree_budget_usd = 0.5 }
local b = ad.dispatch{ agent = "outer", task = "[stub:cost=0.01] [stub:sh=sh ${sh}] second", tree_budget_usd = 0.5 }
return { a, b }
`);
      const r = env.run(['run', '--json', script], { env: { AGENT_DISPATCH_QUIET: '1' }, timeout: 30000 });
      assert.strictEqual(r.code, 0, r.stderr);
      const [, b] = JSON.parse(r.stdout);
      const stubs = env.dispatches();
      const outerStub = stubs.find((e) => e.prompt.includes('second'));
      assert.ok(Math.abs(budgetArg(outerStub) - 0.05) < 1e-9, String(budgetArg(outerStub)));
      const n1 = stubs.find((e) => e.prompt.includes('nested-one'));
      assert.ok(n1, 'the first nested dispatch ran');
      assert.ok(Math.abs(budgetArg(n1) - 0.05) < 1e-9, String(budgetArg(n1)));
      assert.ok(!stubs.some((e) => e.prompt.includes('nested-two')), 'the second nested dispatch never spawned');
      assert.match(b.result, /"error_type":"budget"/);
      const spans = only(traces(env));
      const refused = spans.find((s) => s.status === 'refused');
      assert.strictEqual(refused.parent_id, spans.find((s) => s.task.includes('second')).span_id);
      assert.strictEqual(refused.depth, 1);
    });
});
