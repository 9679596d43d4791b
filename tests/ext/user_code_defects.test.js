'use strict';
// What a hook leaves, or does, that the hook API does not allow: each
// fails the request it ran for, naming the hook's file, and the server
// goes on serving (docs/lua-api.md, "Safety").
const { test } = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const path = require('node:path');
const { newEnv } = require('../e2e/lib');

function toolsDir(env, files) {
  const dir = path.join(env.root, 'tools');
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  for (const [f, text] of Object.entries(files)) fs.writeFileSync(path.join(dir, f), text, { mode: 0o600 });
  return dir;
}

async function serve(t, files) {
  const env = newEnv(t);
  env.setup({ agents: { a: true, b: true } });
  const srv = env.serve({ env: { AGENT_DISPATCH_TOOLS_DIR: toolsDir(env, files) } });
  await srv.init();
  return { env, srv };
}

test('an after_result hook that leaves something that is not a result fails the request naming its file', async (t) => {
  const { srv } = await serve(t, { 'post.lua': `
hook("after_result", function(req, r)
  if req.task:find("EMPTY") then return {} end
  if req.task:find("NUM") then r.result = 42 return r end
  if req.task:find("TABLE") then error({ code = 7, reason = "quota" }) end
  return r
end)
` });
  for (const [task, why] of [['EMPTY [stub:reply=hi]', /agent must be a string/],
    ['NUM [stub:reply=hi]', /result must be a string, got number/]]) {
    const r = await srv.call('dispatch', { agent: 'a', task });
    assert.strictEqual(r.isError, true, r.text);
    assert.strictEqual(r.value.success, false, r.text);
    assert.strictEqual(r.value.agent, 'a', r.text);
    assert.match(r.value.error, /after_result hook in post\.lua left a bad result: /);
    assert.match(r.value.error, why);
    const ref = await srv.call('dispatch', { agent: 'a', task, return_ref: true });
    assert.strictEqual(ref.isError, true, ref.text);
    assert.doesNotMatch(ref.text, /internal error|bug in agent-dispatch/, ref.text);
  }
  const tbl = await srv.call('dispatch', { agent: 'a', task: 'TABLE [stub:reply=hi]' });
  assert.match(tbl.value.error, /after_result hook in post\.lua failed: error value \{"code":7,"reason":"quota"\}/, tbl.text);
  const ok = await srv.call('dispatch', { agent: 'a', task: 'fine [stub:reply=fine]' });
  assert.strictEqual(ok.value.result, 'fine');
  await srv.close();
});

test('a before_dispatch hook that changes the agent refuses the call naming its file; nothing runs', async (t) => {
  const { env, srv } = await serve(t, { 'route.lua': `
hook("before_dispatch", function(req)
  if req.agent == "a" then req.agent = "b" end
  return req
end)
` });
  const r = await srv.call('dispatch', { agent: 'a', task: 'rerouted?' });
  assert.strictEqual(r.isError, true, r.text);
  assert.match(r.text, /before_dispatch hook in route\.lua changed the agent \(a -> b\)/);
  assert.strictEqual(env.dispatches().length, 0, 'a child ran');
  const b = await srv.call('dispatch', { agent: 'b', task: 'direct [stub:reply=b ran]' });
  assert.strictEqual(b.value.result, 'b ran');
  await srv.close();
});

test('a hook that yields its task directly fails its request naming the file; the server goes on', async (t) => {
  const { env, srv } = await serve(t, { 'y.lua': `
local co = require "coroutine"
hook("before_dispatch", function(req)
  if req.task:find("YIELD") then co.yield("not a wait") end
  return req
end)
` });
  const r = await srv.call('dispatch', { agent: 'a', task: 'YIELD please' }, { ms: 10000 });
  assert.strictEqual(r.isError, true, r.text);
  assert.match(r.text, /before_dispatch hook in y\.lua failed: .*coroutine\.yield\(\) was called directly/);
  assert.strictEqual(env.dispatches().length, 0);
  const ok = await srv.call('dispatch', { agent: 'a', task: 'fine [stub:reply=fine]' });
  assert.strictEqual(ok.value.result, 'fine');
  // A coroutine of the hook's own still yields and resumes as Lua's do.
  await srv.close();
});

test('an override file added while a server runs applies from its next start, not at the next require', async (t) => {
  const env = newEnv(t);
  env.setup({ agents: { a: true } });
  const ud = path.join(env.root, 'ulua');
  fs.mkdirSync(ud, { mode: 0o700 });
  const srv = env.serve({ env: { AGENT_DISPATCH_USER_LUA_DIR: ud } });
  await srv.init();
  await srv.call('list_agents', {});
  const f = path.join(ud, 'ad', 'domain', 'dialogue.lua');
  fs.mkdirSync(path.dirname(f), { recursive: true, mode: 0o700 });
  fs.chmodSync(path.join(ud, 'ad'), 0o700);
  fs.writeFileSync(f, 'error("override added after startup")', { mode: 0o600 });
  const r = await srv.call('dispatch_dialogue', { requester: 'a', responder: 'a', topic: 't [stub:reply=hi]', max_rounds: 1 });
  assert.doesNotMatch(r.text, /override added after startup/, r.text);
  await srv.close();
  // The next server loads it, and says whose file fails.
  const srv2 = env.serve({ env: { AGENT_DISPATCH_USER_LUA_DIR: ud } });
  await srv2.init();
  const r2 = await srv2.call('dispatch_dialogue', { requester: 'a', responder: 'a', topic: 't [stub:reply=hi]', max_rounds: 1 });
  assert.match(r2.text, /override added after startup/, r2.text);
  await srv2.close();
});

test('a broken override of a module every command loads: the shipped one is used, with a warning naming the file', async (t) => {
  const env = newEnv(t);
  env.setup({ agents: { a: true } });
  const ud = path.join(env.root, 'ulua');
  for (const d of ['', 'ad', 'ad/infra']) fs.mkdirSync(path.join(ud, d), { recursive: true, mode: 0o700 });
  const put = (f, text) => fs.writeFileSync(path.join(ud, f), text, { mode: 0o600 });
  put('ad/infra/json.lua', 'error("override boom")\n');
  put('ad/infra/util.lua', 'return nil\n');
  const e = { AGENT_DISPATCH_USER_LUA_DIR: ud };
  const srv = env.serve({ env: e });
  await srv.init();
  const r = await srv.call('dispatch', { agent: 'a', task: 'still here [stub:reply=yes]' });
  assert.strictEqual(r.value.result, 'yes', r.text);
  assert.match(srv.stderr, /override of ad\.infra\.json failed to load \(.*ad\/infra\/json\.lua:1: override boom\); the shipped module is used/);
  assert.match(srv.stderr, /override of ad\.infra\.util failed to load \(.*ad\/infra\/util\.lua: it returned nil/);
  await srv.close();
  for (const cmd of [['doctor'], ['lua', 'list'], ['--help']]) {
    const c = env.run(cmd, { env: e });
    assert.doesNotMatch(c.stdout + c.stderr, /is not available|internal error/, c.stdout + c.stderr);
    assert.match(c.stderr, /override of ad\.infra\.json failed to load/, cmd.join(' '));
  }
});
