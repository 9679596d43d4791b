'use strict';
// Commands that start a child: shutdown signals stop the whole group,
// `dispatch` from the shell, signs of life while waiting, and the `run`
// board, its --json stdout and its script errors.
const { test } = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const path = require('node:path');
const { newEnv, sleep, waitUntil, alive } = require('./lib');

for (const [cmd, extra] of [['test', []], ['test', ['--stream']]]) {
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
    test(`${sig} on '${cmd} ${extra.join(' ')}' stops the child and its group, exits 128+signal number`, async (t) => {
      const env = newEnv(t);
      env.setup({ agents: { a: true } });
      const { child, done } = env.start([cmd, 'a', 'wait [stub:hang] [stub:grandchild=30]', ...extra]);
      assert.ok(await waitUntil(() => env.dispatches().length === 1 && env.grandchildPid(), 5000),
        'the stub did not start');
      const stub = env.dispatches()[0];
      const gc = env.grandchildPid();
      child.kill(sig);
      const r = await Promise.race([done, sleep(5000).then(() => null)]);
      assert.ok(r, `${cmd} did not exit within 5 s of ${sig}`);
      const want = { SIGINT: 130, SIGTERM: 143, SIGHUP: 129 }[sig];
      assert.strictEqual(r.code, want, `exit ${r.code} ${r.signal} ${r.stderr}`);
      assert.ok(await waitUntil(() => !alive(stub.pid) && !alive(gc), 2000), 'child or grandchild survived');
    });
  }
}

test("'dispatch AGENT TASK' prints the answer; --context reaches the agent; --json is the result", (t) => {
  const env = newEnv(t);
  env.setup({ agents: { a: true } });
  let r = env.run(['dispatch', 'a', 'hello', '--context', 'CTX-MARK']);
  assert.strictEqual(r.code, 0, r.stderr);
  assert.strictEqual(r.stdout, 'stub ok: hello\n');
  assert.ok(env.dispatches()[0].prompt.includes('CTX-MARK'), 'the context did not reach the prompt');
  r = env.run(['dispatch', 'a', 'again', '--json']);
  assert.strictEqual(r.code, 0, r.stderr);
  const v = JSON.parse(r.stdout);
  assert.strictEqual(v.success, true);
  assert.strictEqual(v.result, 'stub ok: again');
  r = env.run(['dispatch', 'a', 'bad [stub:budget]']);
  assert.strictEqual(r.code, 1);
  assert.match(r.stderr, /^Error: /m);
  r = env.run(['dispatch', 'nope', 'x']);
  assert.strictEqual(r.code, 1);
  assert.match(r.stderr, /Agent 'nope' not found/);
});

test("'dispatch' piped: progress lines on stderr as they come, answer on stdout", (t) => {
  const env = newEnv(t);
  env.setup({ agents: { a: true } });
  const r = env.run(['dispatch', 'a', 'go [stub:progress=2] [stub:interval=0.05]']);
  assert.strictEqual(r.code, 0, r.stderr);
  assert.match(r.stderr, /-> progress 1\/2\n.*-> progress 2\/2\n/s);
  assert.ok(!r.stderr.includes('\r'), 'no terminal redraws when piped');
});

/** Runs the CLI with a terminal as its stdio (script(1)): the bytes written. */
function onTerminal(env, args) {
  const { spawnSync } = require('node:child_process');
  const { BIN } = require('./lib');
  const cmd = [BIN, ...args].map((a) => `'${a.replace(/'/g, "'\\''")}'`).join(' ');
  const r = spawnSync('script', ['-qec', cmd, '/dev/null'], { env: env.env(), cwd: env.root,
    encoding: 'utf8', timeout: 30000 });
  return { code: r.status, out: r.stdout };
}

for (const cmd of ['dispatch', 'test']) {
  test(`'${cmd}' on a terminal shows a spinner with the elapsed time and the last progress line`, (t) => {
    const env = newEnv(t);
    env.setup({ agents: { a: true } });
    const r = onTerminal(env, [cmd, 'a', 'go [stub:progress=3] [stub:interval=0.6]']);
    assert.strictEqual(r.code, 0, r.out);
    assert.match(r.out, /\r\x1b\[2K[|/\\-] +1s {2}progress 1\/3/, 'no spinner line with 1 s elapsed');
    assert.match(r.out, /progress 3\/3/);
    assert.match(r.out, /stub ok: go/);
  });
}

function script(env, name, text) {
  const p = path.join(env.root, name);
  fs.writeFileSync(p, text);
  return p;
}

test("'run --json' keeps stdout pure JSON: the script's print goes to stderr", (t) => {
  const env = newEnv(t);
  env.setup({ agents: { a: true } });
  const s = script(env, 'p.lua', 'print("hello from the script")\nreturn {n = 1}\n');
  const r = env.run(['run', '--json', s]);
  assert.strictEqual(r.code, 0, r.stderr);
  assert.deepStrictEqual(JSON.parse(r.stdout), { n: 1 });
  assert.match(r.stderr, /hello from the script/);
  const plain = env.run(['run', s]);
  assert.strictEqual(plain.stdout, 'hello from the script\n', 'without --json print stays on stdout');
});

test("'run' script errors name the user's file:line; the traceback only with --verbose", (t) => {
  const env = newEnv(t);
  env.setup({ agents: { a: true } });
  const s = script(env, 'e.lua', 'local ad = require("agent_dispatch")\n\nad.dispatch{agent = 42, task = "x"}\n');
  let r = env.run(['run', s]);
  assert.strictEqual(r.code, 1);
  assert.match(r.stderr, new RegExp(`^Error: ${s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}:3: `, 'm'));
  assert.ok(!r.stderr.includes('stack traceback'), r.stderr);
  assert.ok(!/lua\/ad\/|agent_dispatch\.lua/.test(r.stderr), r.stderr);
  r = env.run(['run', '--verbose', s]);
  assert.strictEqual(r.code, 1);
  assert.match(r.stderr, /stack traceback/);
});

test("'run' board: a queued dispatch is shown as queued and its queue time is not run time", (t) => {
  const env = newEnv(t);
  env.setup({ agents: { a: true }, settings: '  max_concurrency: 1\n' });
  const s = script(env, 'q.lua', `local ad = require("agent_dispatch")
ad.all{
  function() return ad.dispatch{agent = "a", task = "one [stub:sleep=0.8]"} end,
  function() return ad.dispatch{agent = "a", task = "two [stub:sleep=0.8]"} end,
}
return true
`);
  const r = env.run(['run', s]);
  assert.strictEqual(r.code, 0, r.stderr);
  assert.match(r.stderr, /\[a\] queued: /, r.stderr);
  const times = [...r.stderr.matchAll(/\[a\] done in ([\d.]+)s/g)].map((m) => Number(m[1]));
  assert.strictEqual(times.length, 2, r.stderr);
  assert.ok(Math.max(...times) < 1.4, `run time counted the queue: ${times}`);
});

test("'run' board: the aggregation row is labelled", (t) => {
  const env = newEnv(t);
  env.setup({ agents: { a: true, b: true } });
  const s = script(env, 'agg.lua', `local ad = require("agent_dispatch")
ad.parallel{ {agent = "a", task = "x"}, {agent = "b", task = "y"}, aggregate = "a" }
return true
`);
  const r = env.run(['run', s]);
  assert.strictEqual(r.code, 0, r.stderr);
  assert.match(r.stderr, /\[a \(aggregation\)\] started/, r.stderr);
});

test('a script or hook that never yields is still stopped by SIGINT or SIGTERM, with a clear message', async (t) => {
  const env = newEnv(t);
  env.setup({ agents: { a: true } });
  const s = script(env, 'spin.lua', 'local ad = require("agent_dispatch")\nad.sleep(0.1)\nwhile true do end\n');
  let p = env.start(['run', s]);
  const started = [p];
  t.after(() => { for (const q of started) { try { q.child.kill('SIGKILL'); } catch { /* gone */ } } });
  await sleep(700);
  p.child.kill('SIGINT');
  let r = await Promise.race([p.done, sleep(10000).then(() => null)]);
  assert.ok(r, 'the script ran on after SIGINT');
  assert.strictEqual(r.code, 130, r.stderr);
  assert.match(r.stderr, /interrupted: .*spin\.lua:3: stopped by SIGINT: .*without yielding/);
  // A looping before_dispatch hook of a CLI dispatch (no per-call budget there).
  const dir = path.join(env.root, 'tools');
  fs.mkdirSync(dir, { mode: 0o700 });
  fs.writeFileSync(path.join(dir, 'h.lua'), 'hook("before_dispatch", function(r) while true do end end)\n',
    { mode: 0o600 });
  p = env.start(['dispatch', 'a', 'hello'], { env: { AGENT_DISPATCH_TOOLS_DIR: dir } });
  started.push(p);
  await sleep(900);
  p.child.kill('SIGTERM');
  r = await Promise.race([p.done, sleep(10000).then(() => null)]);
  assert.ok(r, 'the dispatch ran on after SIGTERM');
  assert.notStrictEqual(r.code, 0);
  assert.match(r.stderr, /stopped by SIGTERM/);
  assert.strictEqual(env.dispatches().length, 0);
});

test("a script's bare coroutine.yield() is reported as its error, not as an interruption", (t) => {
  const env = newEnv(t);
  env.setup({ agents: { a: true } });
  const s = script(env, 'y.lua', 'coroutine.yield(1)\n');
  const r = env.run(['run', s]);
  assert.strictEqual(r.code, 1, r.stderr);
  assert.match(r.stderr, /coroutine\.yield\(\) was called directly/);
  assert.ok(!/interrupted/.test(r.stderr), r.stderr);
});

test("os.exit in a script ends the run as its end does: that status, every child's group stopped", async (t) => {
  const env = newEnv(t);
  env.setup({ agents: { a: true } });
  const s = script(env, 'ox.lua', 'local ad = require("agent_dispatch")\n' +
    'ad.spawn(function() ad.dispatch{agent = "a", task = "x [stub:grandchild=60] [stub:hang]"} end)\n' +
    'ad.sleep(0.5)\nos.exit(3)\n');
  const r = env.run(['run', s]);
  assert.strictEqual(r.code, 3, r.stderr);
  assert.ok(await waitUntil(() => env.grandchildPid(), 5000), 'premise: the grandchild was started');
  const g = env.grandchildPid();
  assert.ok(await waitUntil(() => !alive(g), 5000), 'the grandchild outlived os.exit');
  const traces = env.run(['traces']);
  assert.doesNotMatch(traces.stdout, /running/, traces.stdout);
  await env.assertNoLeftovers();
});

test('a script may start with a #! line or a UTF-8 byte order mark, as lua runs it; line numbers stay', (t) => {
  const env = newEnv(t);
  env.setup({ agents: { a: true } });
  const s = script(env, 'she.lua', '#!/usr/bin/env -S agent-dispatch run\nprint("ran")\nerror("on line three")\n');
  const r = env.run(['run', s]);
  assert.strictEqual(r.code, 1, r.stderr);
  assert.match(r.stdout, /^ran$/m);
  assert.match(r.stderr, /she\.lua:3: on line three/);
  const b = script(env, 'bom.lua', '\ufeffprint("bom ran")\n');
  const rb = env.run(['run', b]);
  assert.strictEqual(rb.code, 0, rb.stderr);
  assert.match(rb.stdout, /^bom ran$/m);
  const both = script(env, 'both.lua', '\ufeff#!/usr/bin/env agent-dispatch run\nprint("both ran")\n');
  const r2 = env.run(['run', both]);
  assert.strictEqual(r2.code, 0, r2.stderr);
  assert.match(r2.stdout, /^both ran$/m);
});

test('a script that raises a table shows what it holds, not its address', (t) => {
  const env = newEnv(t);
  env.setup({ agents: { a: true } });
  const s = script(env, 'tbl.lua', 'error({ code = 7, why = "quota" })\n');
  const r = env.run(['run', s]);
  assert.strictEqual(r.code, 1, r.stderr);
  assert.ok(!/table: 0x/.test(r.stderr), r.stderr);
  assert.match(r.stderr, /"code":7/);
  assert.match(r.stderr, /"why":"quota"/);
});

test('a dispatch spec with a key the API does not know is refused, naming it (a typo is not ignored)', (t) => {
  const env = newEnv(t);
  env.setup({ agents: { a: true } });
  const cases = [
    ['ad.dispatch{ agent = "a", task = "x", timeout = 30 }', /unknown key 'timeout' \(did you mean 'timeout_seconds'\?\)/],
    ['ad.session{ agent = "a", task = "x", sesion_id = "abc" }', /unknown key 'sesion_id' \(did you mean 'session_id'\?\)/],
    ['ad.async{ agent = "a", task = "x", contxt = "c" }', /unknown key 'contxt' \(did you mean 'context'\?\)/],
    ['ad.parallel{ { agent = "a", task = "x" }, { agent = "a", task = "y", gaol = "g" } }', /item 2: unknown key 'gaol' \(did you mean 'goal'\?\)/],
    ['ad.parallel{ { agent = "a", task = "x" }, agregate = "a" }', /unknown key 'agregate' \(did you mean 'aggregate'\?\)/],
    ['ad.stream{ agent = "a", task = "x", on_progres = print }', /unknown key 'on_progres' \(did you mean 'on_progress'\?\)/],
  ];
  for (const [i, [code, re]] of cases.entries()) {
    const s = script(env, `k${i}.lua`, `local ad = require "agent_dispatch"\n${code}\n`);
    const r = env.run(['run', s]);
    assert.strictEqual(r.code, 1, `${code}: ${r.stderr}`);
    assert.match(r.stderr, re, code);
    assert.match(r.stderr, new RegExp(`k${i}\\.lua:2:`), 'the error names the script line');
  }
  assert.strictEqual(env.dispatches().length, 0, 'nothing ran');
  // Every documented key is taken.
  const ok = script(env, 'ok.lua', 'local ad = require "agent_dispatch"\n' +
    'local r = ad.dispatch{ agent = "a", task = "fine", context = "c", caller = "me", goal = "g", ' +
    'timeout_seconds = 60, tree_budget_usd = 1 }\nassert(r.success, r.error)\n' +
    'local l = ad.parallel{ { agent = "a", task = "p" }, tree_budget_usd = 2 }\nassert(l[1].success)\n');
  const r = env.run(['run', ok]);
  assert.strictEqual(r.code, 0, r.stderr);
});
