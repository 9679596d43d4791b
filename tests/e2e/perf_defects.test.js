'use strict';
// What the fast paths must keep: the per-call time budget still stops
// user code that never yields when it comes from an override in the user
// Lua directory (tool files: sched_defects.test.js), and the user Lua
// directory is looked at once, at startup.
const { test, describe } = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const path = require('node:path');
const { newEnv } = require('./lib');

const ROOT = path.resolve(__dirname, '..', '..');

const BUDGET_RE = /ran for more than 10(\.0)? s without yielding/;

// ad.domain.prompt as shipped, but its build loops on a SPIN task.
const SPIN_PROMPT = `
local core = require "ad.core"
local M = load(core.embed.source("ad.domain.prompt"), "=ad.domain.prompt")()
local build = M.build
function M.build(p)
  if tostring(p and p.task):find("SPIN", 1, true) then while true do end end
  return build(p)
end
return M
`;

function userLua(env, files) {
  const dir = path.join(env.root, 'userlua');
  for (const [mod, text] of Object.entries(files)) {
    const file = path.join(dir, ...mod.split('.')) + '.lua';
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(file, text, { mode: 0o644 });
  }
  return dir;
}

describe('the call budget where user code can run', () => {
  test('a looping override in the user Lua directory is stopped; the server keeps answering',
    { timeout: 60000 }, async (t) => {
      const env = newEnv(t);
      env.setup({ agents: { a: true } });
      const lua = userLua(env, { 'ad.domain.prompt': SPIN_PROMPT });
      const srv = env.serve({ env: { AGENT_DISPATCH_USER_LUA_DIR: lua } });
      await srv.init();
      const t0 = Date.now();
      const r = await srv.request('tools/call', { name: 'dispatch',
        arguments: { agent: 'a', task: 'SPIN override' } }, { ms: 30000 });
      assert.ok(Date.now() - t0 < 15000, 'the loop was stopped by the budget');
      assert.ok(r.result, JSON.stringify(r));
      assert.match(r.result.content[0].text, BUDGET_RE);
      const d = await srv.call('dispatch', { agent: 'a', task: 'alive' });
      assert.strictEqual(d.value.result, 'stub ok: alive', d.text);
      await srv.close();
    });
});

describe('the user Lua directory is looked at once, at startup', () => {
  test('an override directory created while a server runs applies from its next start', async (t) => {
    const env = newEnv(t);
    env.setup({ agents: { a: true } });
    const lua = path.join(env.root, 'userlua');
    const cache = fs.readFileSync(path.join(ROOT, 'lua/ad/tools/cache.lua'), 'utf8')
      .replace('Empty the in-memory result cache', 'Flush the in-memory result cache');
    assert.match(cache, /Flush the in-memory/);
    const describeClear = async (srv) => {
      const r = await srv.request('tools/list');
      return r.result.tools.find((x) => x.name === 'cache_clear').description;
    };
    const srv = env.serve({ env: { AGENT_DISPATCH_USER_LUA_DIR: lua } });
    await srv.init();
    userLua(env, { 'ad.tools.cache': cache });
    assert.match(await describeClear(srv), /^Empty the in-memory/);
    await srv.close();
    const next = env.serve({ env: { AGENT_DISPATCH_USER_LUA_DIR: lua } });
    await next.init();
    assert.match(await describeClear(next), /^Flush the in-memory/);
    await next.close();
  });
});
