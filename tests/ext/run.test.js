'use strict';
// Issue #6, `agent-dispatch run [--json] [--timeout S] SCRIPT [ARGS]`: exit
// statuses, --json, --timeout, signals (every child's process group is
// gone), and the tool-file hooks applying to scripts too.
const { test } = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const path = require('node:path');
const { newEnv, sleep, alive, groupAlive, waitUntil } = require('../e2e/lib');

/** p, or null after ms (the timer does not keep the test process alive). */
function within(p, ms) {
  return Promise.race([p, new Promise((r) => setTimeout(() => r(null), ms).unref())]);
}

function script(env, name, text) {
  const p = path.join(env.root, name);
  fs.writeFileSync(p, text);
  return p;
}

function toolsDir(env, files) {
  const dir = path.join(env.root, 'tools');
  fs.mkdirSync(dir, { recursive: true });
  for (const [f, text] of Object.entries(files)) {
    fs.writeFileSync(path.join(dir, f), text);
    fs.chmodSync(path.join(dir, f), 0o644);
  }
  fs.chmodSync(dir, 0o755);
  return dir;
}

/** Every stub the test started is gone, with its whole process group. */
async function assertAllGone(env) {
  const stubs = env.dispatches();
  assert.ok(stubs.length > 0, 'premise: a child was started');
  const gone = await waitUntil(() => stubs.every((e) => !alive(e.pid) && !groupAlive(e.pgid)), 3000);
  const left = stubs.filter((e) => alive(e.pid) || groupAlive(e.pgid)).map((e) => `pid ${e.pid} pgrp ${e.pgid}`);
  assert.ok(gone, `still alive: ${left.join(', ')}`);
}

const HANG = (n) => `
local ad = require("agent_dispatch")
local fns = {}
for i = 1, ${n} do
  fns[i] = function() return ad.dispatch{agent = "a", task = "wait " .. i .. " [stub:hang] [stub:grandchild=30]"} end
end
ad.log("starting")
ad.all(fns)
return 0
`;

test('exit status: 0, 1 on return false, a returned integer, 1 with file:line on a runtime error, 2 on usage errors', (t) => {
  const env = newEnv(t);
  env.setup({ agents: { a: true } });
  assert.strictEqual(env.run(['run', script(env, 'ok.lua', 'return "fine"\n')]).code, 0);
  assert.strictEqual(env.run(['run', script(env, 'nil.lua', '')]).code, 0);
  assert.strictEqual(env.run(['run', script(env, 'tbl.lua', 'return {x = 1}\n')]).code, 0);
  assert.strictEqual(env.run(['run', script(env, 'false.lua', 'return false\n')]).code, 1);
  assert.strictEqual(env.run(['run', script(env, 'seven.lua', 'return 7\n')]).code, 7);
  assert.strictEqual(env.run(['run', script(env, 'zero.lua', 'return 0\n')]).code, 0);
  const argExit = script(env, 'argexit.lua', 'return math.tointeger(tonumber((...)))\n');
  assert.strictEqual(env.run(['run', argExit, '42']).code, 42);

  const boom = script(env, 'boom.lua', 'local ad = require("agent_dispatch")\nlocal function f()\n  error("kaboom")\nend\nf()\n');
  const r = env.run(['run', boom]);
  assert.strictEqual(r.code, 1);
  assert.ok(r.stderr.includes(`${boom}:3: kaboom`), r.stderr);
  assert.ok(!r.stderr.includes('stack traceback'), 'the traceback is for --verbose');
  assert.match(env.run(['run', '--verbose', boom]).stderr, /stack traceback/);
  assert.strictEqual(r.stdout, '');
  const idx = script(env, 'idx.lua', 'local t\n\nreturn t.field\n');
  const r2 = env.run(['run', '--json', idx]);
  assert.strictEqual(r2.code, 1);
  assert.ok(r2.stderr.includes(`${idx}:3:`), r2.stderr);
  assert.strictEqual(r2.stdout, '', 'nothing on stdout when the script failed');
  // an error raised by the API points at the script's line too
  const unknown = script(env, 'unknown.lua', 'local ad = require("agent_dispatch")\nlocal r = ad.dispatch{agent = "zz", task = "x"}\nreturn r\n');
  const r4 = env.run(['run', unknown]);
  assert.strictEqual(r4.code, 1);
  assert.ok(r4.stderr.includes(`${unknown}:2: Unknown agent: 'zz'`), r4.stderr);
  const syntax = script(env, 'syntax.lua', 'local x =\n= 1\n');
  const r3 = env.run(['run', syntax]);
  assert.strictEqual(r3.code, 1);
  assert.ok(r3.stderr.includes(`${syntax}:2:`), r3.stderr);

  // usage errors
  const none = env.run(['run']);
  assert.strictEqual(none.code, 2);
  // (the usage text goes to stdout today; cli.lua owns it)
  assert.match(none.stdout + none.stderr, /Usage: agent-dispatch run /);
  const bad = env.run(['run', '--timeout', 'soon', argExit]);
  assert.strictEqual(bad.code, 2);
  assert.match(bad.stderr, /--timeout needs a positive number/);
  assert.strictEqual(env.run(['run', '--timeout=-1', argExit]).code, 2);
  assert.strictEqual(env.dispatches().length, 0);
});

test('--json prints the returned value as JSON on stdout; logs stay on stderr; arguments arrive', (t) => {
  const env = newEnv(t);
  env.setup({ agents: { a: true } });
  const s = script(env, 'j.lua', `
local ad = require("agent_dispatch")
ad.log("to stderr")
local r = ad.dispatch{agent = "a", task = "hi " .. select(1, ...)}
return {n = select("#", ...), first = arg[1], zero = arg[0], args = ad.args, result = r.result, empty = ad.json.array({})}
`);
  const r = env.run(['run', '--json', s, 'one', 'two words']);
  assert.strictEqual(r.code, 0, r.stderr);
  assert.match(r.stderr, /to stderr/);
  assert.ok(!r.stdout.includes('to stderr'));
  assert.deepStrictEqual(JSON.parse(r.stdout), {
    n: 2, first: 'one', zero: s, args: ['one', 'two words'], result: 'stub ok: hi one', empty: [],
  });
  assert.strictEqual(r.stdout.trim().split('\n').length, 1, 'exactly one JSON line');
  assert.strictEqual(env.run(['run', '--json', script(env, 'n.lua', 'return nil\n')]).stdout, 'null\n');
  assert.strictEqual(env.run(['run', '--json', script(env, 's.lua', 'return "a\\"b"\n')]).stdout, '"a\\"b"\n');
  const f = env.run(['run', '--json', script(env, 'f.lua', 'return false\n')]);
  assert.strictEqual(f.code, 1);
  assert.strictEqual(f.stdout, 'false\n');
  // `run review.lua --json` (options after the script) works too ...
  const after = env.run(['run', script(env, 'p.lua', 'return {...}\n'), 'x', '--json']);
  assert.strictEqual(after.code, 0);
  assert.strictEqual(after.stdout, '["x"]\n');
  // ... and after `--` everything belongs to the script
  const pass = env.run(['run', script(env, 'p2.lua', 'return {...}\n'), '--', '--json']);
  assert.strictEqual(pass.code, 0);
  assert.strictEqual(pass.stdout, '', 'a --json after -- is an argument of the script');
});

test('--timeout stops the script with 124 and its children are gone', async (t) => {
  const env = newEnv(t);
  env.setup({ agents: { a: true } });
  const s = script(env, 'hang.lua', HANG(1));
  const t0 = Date.now();
  const { done } = env.start(['run', '--timeout', '1', s]);
  const r = await within(done, 8000);
  assert.ok(r, 'run --timeout 1 did not exit within 8 s');
  const took = Date.now() - t0;
  assert.strictEqual(r.code, 124, r.stderr);
  assert.ok(took >= 900 && took < 6000, `exited after ${took} ms`);
  assert.match(r.stderr, /--timeout/);
  assert.ok(env.grandchildPid(), 'premise: the stub forked its grandchild');
  await assertAllGone(env);
  assert.ok(!alive(env.grandchildPid()), 'the grandchild survived');
  // --timeout=S form, and a script that finishes in time is unaffected
  const quick = env.run(['run', '--timeout=5', '--json', script(env, 'q.lua', 'return 5 + 1\n')]);
  assert.strictEqual(quick.code, 6);
  assert.strictEqual(quick.stdout, '6\n');
});

test('SIGINT during running dispatches exits 130 and every child\'s process group is gone', async (t) => {
  const env = newEnv(t);
  env.setup({ agents: { a: true } });
  const s = script(env, 'hang.lua', HANG(3));
  const { child, done } = env.start(['run', s]);
  assert.ok(await waitUntil(() => env.dispatches().length === 3 && env.grandchildPid(), 5000), 'the three stubs did not start');
  // every stub has its own process group, holding its grandchild
  const pgids = new Set(env.dispatches().map((e) => e.pgid));
  assert.strictEqual(pgids.size, 3);
  await sleep(100); // let the other stubs fork their grandchildren too
  for (const g of pgids) assert.ok(groupAlive(g), `premise: group ${g} is running`);
  child.kill('SIGINT');
  const r = await within(done, 5000);
  assert.ok(r, 'run did not exit within 5 s of SIGINT');
  assert.strictEqual(r.code, 130, r.stderr);
  await assertAllGone(env);
});

test('SIGTERM is handled like SIGINT: 130 and no child left', async (t) => {
  const env = newEnv(t);
  env.setup({ agents: { a: true } });
  const s = script(env, 'hang.lua', HANG(1));
  const { child, done } = env.start(['run', s]);
  assert.ok(await waitUntil(() => env.dispatches().length === 1 && env.grandchildPid(), 5000));
  child.kill('SIGTERM');
  const r = await within(done, 5000);
  assert.ok(r, 'run did not exit within 5 s of SIGTERM');
  assert.strictEqual(r.code, 130, r.stderr);
  assert.strictEqual(r.signal, null, 'exited by itself, not killed by the signal');
  await assertAllGone(env);
});

test('hooks from the tool files apply to run scripts too', async (t) => {
  const env = newEnv(t);
  // The script's job runs on the script's own loop, so job_done has run
  // when ad.wait returns (a detached runner runs it after the record ends:
  // see ext.test.js).
  env.setup({ agents: { a: true, prod: true }, settings: '  jobs_outlive_server: false\n' });
  const jobFile = path.join(env.root, 'job.txt');
  const dir = toolsDir(env, {
    'hooks.lua': `
hook("before_dispatch", function(req)
  if req.agent == "prod" then return false, "prod is off limits" end
  req.context = "SCRIPT HOOK CONTEXT"
  return req
end)
hook("after_result", function(req, result)
  result.result = result.result:gsub("sk%-%w+", "sk-REDACTED")
  return result
end)
hook("job_done", function(record)
  local f = require("io").open(${JSON.stringify(jobFile)}, "w")
  f:write(record.status)
  f:close()
end)
tool{ name = "unused_here", handler = function() return 1 end }
`,
    'zz_broken.lua': 'local x = nil\nx.y = 1\n',
  });
  const ok = script(env, 'ok.lua', `
local ad = require("agent_dispatch")
local r = ad.dispatch{agent = "a", task = "secret [stub:reply=token sk-live123 here]"}
local id = ad.async{agent = "a", task = "bg"}
local rec = ad.wait(id, 10)
return {result = r.result, job = rec.status}
`);
  const r = env.run(['run', '--json', ok], { env: { AGENT_DISPATCH_TOOLS_DIR: dir } });
  assert.strictEqual(r.code, 0, r.stderr);
  const v = JSON.parse(r.stdout);
  assert.strictEqual(v.result, 'token sk-REDACTED here');
  assert.strictEqual(v.job, 'done');
  assert.match(env.dispatches()[0].prompt, /^Context:\nSCRIPT HOOK CONTEXT\n\nTask:\nsecret/);
  assert.strictEqual(fs.readFileSync(jobFile, 'utf8'), 'done', 'job_done ran for the script\'s job');
  // a broken tool file is reported, the script still runs
  assert.ok(r.stderr.includes(`${path.join(dir, 'zz_broken.lua')}:2:`), r.stderr);

  const refused = script(env, 'prod.lua', 'local ad = require("agent_dispatch")\nlocal r = ad.dispatch{agent = "prod", task = "deploy"}\nreturn r\n');
  const r2 = env.run(['run', refused], { env: { AGENT_DISPATCH_TOOLS_DIR: dir } });
  assert.strictEqual(r2.code, 1);
  assert.match(r2.stderr, /Refused by before_dispatch hook in hooks\.lua: prod is off limits/);
  assert.ok(r2.stderr.includes(`${refused}:2: Refused`), `the error points at the script line: ${r2.stderr}`);
  assert.strictEqual(env.dispatches().filter((e) => e.prompt.includes('deploy')).length, 0);
});
