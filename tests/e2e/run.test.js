'use strict';
// `agent-dispatch run script.lua`: Lua batch scripts with require("agent_dispatch").
const { test } = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const path = require('node:path');
const { newEnv, sleep, alive, waitUntil } = require('./lib');

function script(env, name, text) {
  const p = path.join(env.root, name);
  fs.writeFileSync(p, text);
  return p;
}

test('ad.agents, ad.dispatch (same shape as the tool), ad.log, args, --json', async (t) => {
  const env = newEnv(t);
  const dirs = env.setup({ agents: { a: true, b: { directory: path.join(env.root, 'gone') } } });
  const s = script(env, 'basic.lua', `
local ad = require("agent_dispatch")
local names = {}
for _, a in ipairs(ad.agents()) do names[#names + 1] = a.name .. "=" .. tostring(a.healthy) end
ad.log("agents:", table.concat(names, ","), "args:", select("#", ...), ...)
local r = ad.dispatch{agent = "a", task = "hello " .. (select(1, ...)), caller = "script", goal = "test"}
local bad = ad.dispatch{agent = "b", task = "x"}
return {r = r, bad = bad, first = arg[1], n = select("#", ...)}
`);
  const res = env.run(['run', '--json', s, 'one', 'two']);
  assert.strictEqual(res.code, 0, res.stderr);
  assert.match(res.stderr, /agents: a=true,b=false args: 2 one two/);
  const v = JSON.parse(res.stdout);
  assert.strictEqual(v.first, 'one');
  assert.strictEqual(v.n, 2);
  assert.deepStrictEqual(Object.keys(v.r), ['agent', 'success', 'result', 'session_id', 'cost_usd', 'duration_ms', 'num_turns']);
  assert.strictEqual(v.r.agent, 'a');
  assert.strictEqual(v.r.success, true);
  assert.strictEqual(v.r.result, 'stub ok: hello one');
  assert.strictEqual(v.r.cost_usd, 0.0012);
  assert.strictEqual(v.bad.success, false);
  assert.strictEqual(v.bad.error_type, 'not_found');
  assert.match(v.bad.error, /does not exist/);
  const [e] = env.dispatches();
  assert.strictEqual(e.cwd, dirs.a);
  assert.match(e.prompt, /## Dispatched by\nscript/);
  // without --json nothing is printed on stdout
  const quiet = env.run(['run', s, 'x']);
  assert.strictEqual(quiet.code, 0);
  assert.strictEqual(quiet.stdout, '');
});

test('exit status: return false -> 1, integer -> itself, runtime error -> 1 with file:line', (t) => {
  const env = newEnv(t);
  env.setup({ agents: { a: true } });
  assert.strictEqual(env.run(['run', script(env, 'f.lua', 'return false\n')]).code, 1);
  assert.strictEqual(env.run(['run', script(env, 't.lua', 'return true\n')]).code, 0);
  assert.strictEqual(env.run(['run', script(env, 'n.lua', 'return nil\n')]).code, 0);
  assert.strictEqual(env.run(['run', script(env, 'i.lua', 'return 3\n')]).code, 3);
  const boom = script(env, 'boom.lua', 'local x = 1\n\nerror("kaboom")\n');
  const r = env.run(['run', boom]);
  assert.strictEqual(r.code, 1);
  assert.ok(r.stderr.includes(`${boom}:3: kaboom`), r.stderr);
  const nil = script(env, 'nil.lua', 'local t = nil\nreturn t.x\n');
  const r2 = env.run(['run', nil]);
  assert.strictEqual(r2.code, 1);
  assert.ok(r2.stderr.includes(`${nil}:2:`), r2.stderr);
  // unknown agent raises a Lua error naming it
  const u = env.run(['run', script(env, 'u.lua', 'require("agent_dispatch").dispatch{agent="zz", task="x"}\n')]);
  assert.strictEqual(u.code, 1);
  assert.match(u.stderr, /Unknown agent: 'zz'/);
  const missing = env.run(['run', path.join(env.root, 'nope.lua')]);
  assert.strictEqual(missing.code, 1);
  assert.strictEqual(env.run(['run', '--json', script(env, 'j.lua', 'return {1, "two", {k = 3}}\n')]).stdout.trim(),
    '[1,"two",{"k":3}]');
});

test('ad.parallel runs items concurrently and keeps input order', (t) => {
  const env = newEnv(t);
  env.setup({ agents: { a: true, b: true } });
  const s = script(env, 'par.lua', `
local ad = require("agent_dispatch")
local t0 = ad.now()
local rs = ad.parallel{
  {agent = "a", task = "one [stub:sleep=0.8]"},
  {agent = "b", task = "two [stub:sleep=0.8]"},
  {agent = "a", task = "three [stub:sleep=0.8]"},
}
return {elapsed = ad.now() - t0, results = rs}
`);
  const r = env.run(['run', '--json', s]);
  assert.strictEqual(r.code, 0, r.stderr);
  const v = JSON.parse(r.stdout);
  assert.deepStrictEqual(v.results.map((x) => x.result), ['stub ok: one', 'stub ok: two', 'stub ok: three']);
  assert.ok(v.elapsed >= 0.75 && v.elapsed < 1.8, `elapsed ${v.elapsed}`);
});

test('ad.spawn / ad.all run dispatches concurrently', (t) => {
  const env = newEnv(t);
  env.setup({ agents: { a: true } });
  const s = script(env, 'spawn.lua', `
local ad = require("agent_dispatch")
local t0 = ad.now()
local task = ad.spawn(function() return ad.dispatch{agent = "a", task = "bg [stub:sleep=0.8]"}.result end)
local outs = ad.all{
  function() return ad.dispatch{agent = "a", task = "x [stub:sleep=0.8]"}.result end,
  function() return ad.dispatch{agent = "a", task = "y [stub:sleep=0.8]"}.result end,
}
local ok, bg = task:wait()
return {elapsed = ad.now() - t0, bg = bg, x = outs[1].value, y = outs[2].value, ok = outs[1].ok}
`);
  const r = env.run(['run', '--json', s]);
  assert.strictEqual(r.code, 0, r.stderr);
  const v = JSON.parse(r.stdout);
  assert.strictEqual(v.bg, 'stub ok: bg');
  assert.strictEqual(v.x, 'stub ok: x');
  assert.strictEqual(v.y, 'stub ok: y');
  assert.strictEqual(v.ok, true);
  assert.ok(v.elapsed >= 0.75 && v.elapsed < 1.8, `elapsed ${v.elapsed}`);
  const times = env.dispatches().map((e) => e.time);
  assert.ok(Math.max(...times) - Math.min(...times) < 0.5, 'the three stubs did not start together');
});

test('SIGINT during a running dispatch exits 130 and the child is gone', async (t) => {
  const env = newEnv(t);
  env.setup({ agents: { a: true } });
  const s = script(env, 'hang.lua', `
local ad = require("agent_dispatch")
ad.dispatch{agent = "a", task = "wait [stub:hang] [stub:grandchild=30]"}
return true
`);
  const { child, done } = env.start(['run', s]);
  assert.ok(await waitUntil(() => env.dispatches().length === 1 && env.grandchildPid(), 5000));
  const stub = env.dispatches()[0];
  const gc = env.grandchildPid();
  child.kill('SIGINT');
  const r = await Promise.race([done, sleep(5000).then(() => null)]);
  assert.ok(r, 'run did not exit within 5 s of SIGINT');
  assert.strictEqual(r.code, 130, r.stderr);
  assert.ok(await waitUntil(() => !alive(stub.pid) && !alive(gc), 2000), 'child or grandchild survived');
});
