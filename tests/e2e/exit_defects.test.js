'use strict';
// The process's exit status when the collector runs between the end of the
// main task and the exit: another task resumed in the same turn (as during
// a server's shutdown, when cancelled calls and timers wake together) may
// collect the finished main task before its status is read.
const { test, describe } = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const path = require('node:path');
const { newEnv, sleep, alive, waitUntil } = require('./lib');

// A user Lua directory whose ad.main wraps the shipped one: once the real
// main has returned, it wakes itself and a second task in one turn, so the
// second task runs right after the main task has finished, and collects
// garbage twice (the finished main task is unreferenced by then).
const MAIN = `local core = require "ad.core"
local real = assert(load(core.embed.source("ad.main")))()
local M = setmetatable({}, { __index = real })
function M.main(args)
  local code = real.main(args)
  local go, after = core.task.event(), core.task.event()
  core.task.spawn(function() after:wait(); collectgarbage(); collectgarbage() end)
  core.task.spawn(function() go:set(true); after:set(true) end)
  go:wait()
  return code
end
return M
`;

function collectingEnv(t) {
  const env = newEnv(t);
  env.setup({ agents: { a: true } });
  const dir = path.join(env.root, 'ulua');
  fs.mkdirSync(path.join(dir, 'ad'), { recursive: true });
  fs.writeFileSync(path.join(dir, 'ad', 'main.lua'), MAIN);
  return { env, dir };
}

describe('exit status after the main task', () => {
  test('the CLI exits with the status main returned, a collection after it notwithstanding', (t) => {
    const { env, dir } = collectingEnv(t);
    const plain = env.run(['no-such-command']);
    assert.notStrictEqual(plain.code, 0);
    const r = env.run(['no-such-command'], { env: { AGENT_DISPATCH_USER_LUA_DIR: dir } });
    assert.strictEqual(r.signal, null, `ended by ${r.signal}; stderr:\n${r.stderr.slice(-4000)}`);
    assert.strictEqual(r.code, plain.code, r.stderr.slice(-4000));
    assert.doesNotMatch(r.stderr, /PANIC|AddressSanitizer/);
    const ok = env.run(['list'], { env: { AGENT_DISPATCH_USER_LUA_DIR: dir } });
    assert.strictEqual(ok.signal, null, `ended by ${ok.signal}; stderr:\n${ok.stderr.slice(-4000)}`);
    assert.strictEqual(ok.code, 0, ok.stderr.slice(-4000));
  });

  test('serve: SIGTERM with a dispatch in flight exits 0, a collection after serve returned notwithstanding',
    async (t) => {
      const { env, dir } = collectingEnv(t);
      const srv = env.serve({ env: { AGENT_DISPATCH_USER_LUA_DIR: dir } });
      await srv.init();
      srv.send({ jsonrpc: '2.0', id: 9, method: 'tools/call',
        params: { name: 'dispatch', arguments: { agent: 'a', task: 'wait [stub:grandchild=30] [stub:hang]' } } });
      assert.ok(await waitUntil(() => env.dispatches().length === 1 && env.grandchildPid(), 5000));
      const stub = env.dispatches()[0];
      srv.child.kill('SIGTERM');
      const r = await Promise.race([srv.exited, sleep(5000).then(() => null)]);
      assert.ok(r, 'server still running 5 s after SIGTERM');
      assert.strictEqual(r.code, 0, `ended ${JSON.stringify(r)}; stderr:\n${srv.stderr.slice(-4000)}`);
      assert.ok(await waitUntil(() => !alive(stub.pid) && !alive(env.grandchildPid()), 1000),
        'the dispatch child or its grandchild survived');
    });

  // Claude Code stops a server with SIGINT, then SIGTERM about 100 ms
  // later (and SIGKILL later still). A stop signal that lands while the
  // server is already on its way out, however late, must not turn its
  // exit 0 into death by that signal.
  test('serve: more stop signals during the shutdown still end in exit 0', async (t) => {
    const env = newEnv(t);
    env.setup({ agents: { a: true } });
    const srv = env.serve();
    await srv.init();
    srv.send({ jsonrpc: '2.0', id: 9, method: 'tools/call',
      params: { name: 'dispatch', arguments: { agent: 'a', task: 'wait [stub:grandchild=30] [stub:hang]' } } });
    assert.ok(await waitUntil(() => env.dispatches().length === 1 && env.grandchildPid(), 5000));
    srv.child.kill('SIGINT');
    let done = false;
    srv.exited.then(() => { done = true; });
    const deadline = Date.now() + 8000;
    while (!done && Date.now() < deadline) {
      try { srv.child.kill('SIGTERM'); } catch { break; }
      await sleep(5);
    }
    const r = await Promise.race([srv.exited, sleep(1000).then(() => null)]);
    assert.ok(r, 'server still running 8 s after SIGINT');
    assert.deepStrictEqual({ code: r.code, signal: r.signal }, { code: 0, signal: null },
      `stderr:\n${srv.stderr.slice(-4000)}`);
  });
});

test('a process limit of open files too small to start (ulimit -n 6) is a clear error, not a crash', (t) => {
  const env = newEnv(t);
  env.setup({ agents: { a: true } });
  const { spawnSync } = require('node:child_process');
  const { BIN } = require('./lib');
  for (const n of [4, 6, 8, 12]) {
    const r = spawnSync('sh', ['-c', `ulimit -n ${n}; exec "$0" list`, BIN], { env: env.env({}), encoding: 'utf8' });
    assert.strictEqual(r.signal, null, `ulimit -n ${n}: killed by ${r.signal}`);
    assert.notStrictEqual(r.status, 0);
    assert.match(r.stderr, /open files limit is \d+; it needs at least 16/, `ulimit -n ${n}: ${r.stderr}`);
  }
});

test('a child the system refuses (out of open files) is said as such, never as a bug', (t) => {
  const env = newEnv(t);
  env.setup({ agents: { a: true } });
  const { spawnSync } = require('node:child_process');
  const { BIN } = require('./lib');
  const run = (args) => spawnSync('sh', ['-c', 'ulimit -n 16; exec "$0" "$@"', BIN, ...args],
    { env: env.env({}), encoding: 'utf8' });
  const r = run(['dispatch', 'a', 'hi']);
  assert.notStrictEqual(r.status, 0);
  assert.match(r.stderr, /claude could not be started: Too many open files \(the limit of open files \(ulimit -n\) was reached\)/, r.stderr);
  assert.doesNotMatch(r.stderr, /bug in agent-dispatch|internal error|stack traceback/i);
});
