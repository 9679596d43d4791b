'use strict';
// The fast paths of a fresh server and the repository's own hygiene:
// nothing built is committed (every helper program is built from source),
// and tools/list answered from the definitions produced at build time is
// byte for byte what the server builds at run time, while user overrides
// and tool files still change it.
const { test, describe } = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const path = require('node:path');
const { spawnSync } = require('node:child_process');
const { SUPPORTED, MODERN, newEnv, modernMeta } = require('./lib');

const ROOT = path.resolve(__dirname, '../..');

describe('repository', () => {
  test('no build product is committed: every program is built from its source', () => {
    const ls = spawnSync('git', ['-C', ROOT, 'ls-files', '-z'], { encoding: 'utf8' });
    assert.strictEqual(ls.status, 0, `git ls-files failed: ${ls.stderr}`);
    const files = ls.stdout.split('\0').filter(Boolean);
    assert.ok(files.length > 50, `only ${files.length} files listed`);
    const built = [];
    for (const f of files) {
      let fd;
      try { fd = fs.openSync(path.join(ROOT, f), 'r'); } catch { continue; }
      const head = Buffer.alloc(4);
      const n = fs.readSync(fd, head, 0, 4, 0);
      fs.closeSync(fd);
      if (n === 4 && head.equals(Buffer.from([0x7f, 0x45, 0x4c, 0x46]))) built.push(f);
    }
    assert.deepStrictEqual(built, [], 'committed ELF binaries');
  });
});

// ------------------------------------------------------------ tools/list --

const initLine = (version, caps = {}) => JSON.stringify({ jsonrpc: '2.0', id: 1,
  method: 'initialize', params: { protocolVersion: version, capabilities: caps,
    clientInfo: { name: 'e2e', version: '1' } } });
const INITIALIZED = '{"jsonrpc":"2.0","method":"notifications/initialized"}';
const LIST = '{"jsonrpc":"2.0","id":2,"method":"tools/list"}';
const LIST_MODERN = JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'tools/list',
  params: { _meta: modernMeta() } });

// Every shape of tools/list a client can get: each protocol version, and
// 2025-11-25 with the tasks capability (tools then carry `execution`).
const SHAPES = [
  ...SUPPORTED.filter((v) => v !== MODERN).map((v) => ({ what: v, lines: [initLine(v), INITIALIZED, LIST] })),
  { what: '2025-11-25 with tasks', lines: [initLine('2025-11-25', { tasks: {} }), INITIALIZED, LIST] },
  { what: MODERN, lines: [LIST_MODERN] },
];

/** The raw tools/list response line of a fresh server fed these lines. */
function toolsListLine(env, lines, extra = {}) {
  const r = env.run(['serve'], { input: lines.join('\n') + '\n', env: extra });
  assert.strictEqual(r.code, 0, r.stderr);
  const line = r.stdout.split('\n').find((l) => l.startsWith('{"jsonrpc":"2.0","id":2,'));
  assert.ok(line, `no tools/list response in ${r.stdout.slice(0, 500)}`);
  return line;
}

const toolsOf = (line) => JSON.parse(line).result.tools;

describe('tools/list of a fresh server', () => {
  for (const shape of SHAPES) {
    test(`${shape.what}: the same bytes as the list built at run time from the same Lua`, (t) => {
      const env = newEnv(t);
      env.setup({ agents: { a: true } });
      const fast = toolsListLine(env, shape.lines);
      // The developer switch loads lua/ from the checkout: the list is then
      // built from the registry at run time.
      const built = toolsListLine(env, shape.lines, { AGENT_DISPATCH_LUA_DIR: path.join(ROOT, 'lua') });
      assert.strictEqual(fast, built);
      assert.ok(toolsOf(fast).length >= 21);
    });
  }

  test('a tool file is listed by the first tools/list, in both eras', (t) => {
    const env = newEnv(t);
    env.setup({ agents: { a: true } });
    const tools = path.join(env.root, 'tools');
    fs.mkdirSync(tools);
    fs.writeFileSync(path.join(tools, 'hello.lua'), 'tool{ name = "hello_tool", description = "Says hello.", ' +
      'handler = function() return {hello = true} end }\n');
    for (const shape of [SHAPES[0], SHAPES[SHAPES.length - 1]]) {
      const names = toolsOf(toolsListLine(env, shape.lines, { AGENT_DISPATCH_TOOLS_DIR: tools }))
        .map((x) => x.name);
      assert.ok(names.includes('hello_tool') && names.includes('dispatch'), names.join(','));
    }
  });

  test('a tool file in the default tools directory (next to the config) is listed too', (t) => {
    const env = newEnv(t);
    env.setup({ agents: { a: true } });
    const tools = path.join(path.dirname(env.config), 'tools');
    fs.mkdirSync(tools, { recursive: true });
    fs.writeFileSync(path.join(tools, 'hello.lua'), 'tool{ name = "hello_tool", description = "Says hello.", ' +
      'handler = function() return {hello = true} end }\n');
    const names = toolsOf(toolsListLine(env, SHAPES[0].lines)).map((x) => x.name);
    assert.ok(names.includes('hello_tool'), names.join(','));
  });

  test('a user override of a module the definitions come from changes the first tools/list', (t) => {
    const env = newEnv(t);
    env.setup({ agents: { a: true } });
    const lua = path.join(env.root, 'userlua');
    fs.mkdirSync(path.join(lua, 'ad', 'infra'), { recursive: true });
    const limits = fs.readFileSync(path.join(ROOT, 'lua/ad/infra/limits.lua'), 'utf8')
      .replace(/M\.MAX_TIMEOUT = \d+/, 'M.MAX_TIMEOUT = 3600');
    assert.match(limits, /MAX_TIMEOUT = 3600/);
    fs.writeFileSync(path.join(lua, 'ad', 'infra', 'limits.lua'), limits);
    for (const shape of [SHAPES[0], SHAPES[SHAPES.length - 1]]) {
      const tools = toolsOf(toolsListLine(env, shape.lines, { AGENT_DISPATCH_USER_LUA_DIR: lua }));
      const d = tools.find((x) => x.name === 'dispatch');
      assert.match(d.inputSchema.properties.timeout_seconds.description, /10-3600/);
    }
    // The same override in the default user Lua directory (next to the config).
    const dflt = path.join(path.dirname(env.config), 'lua');
    fs.cpSync(lua, dflt, { recursive: true });
    const d = toolsOf(toolsListLine(env, SHAPES[0].lines)).find((x) => x.name === 'dispatch');
    assert.match(d.inputSchema.properties.timeout_seconds.description, /10-3600/);
  });

  test('a user override of a tool module changes the first tools/list', (t) => {
    const env = newEnv(t);
    env.setup({ agents: { a: true } });
    const lua = path.join(env.root, 'userlua');
    fs.mkdirSync(path.join(lua, 'ad', 'tools'), { recursive: true });
    const cache = fs.readFileSync(path.join(ROOT, 'lua/ad/tools/cache.lua'), 'utf8')
      .replace('Empty the in-memory result cache', 'Flush the in-memory result cache');
    fs.writeFileSync(path.join(lua, 'ad', 'tools', 'cache.lua'), cache);
    const tools = toolsOf(toolsListLine(env, SHAPES[0].lines, { AGENT_DISPATCH_USER_LUA_DIR: lua }));
    assert.match(tools.find((x) => x.name === 'cache_clear').description, /^Flush the in-memory/);
  });
});
