'use strict';
// The command-line interface as overridable policy modules: `ad.cli` (the
// dispatcher) and one module per command family under `ad.cli.*`, all
// embedded, listed by `agent-dispatch lua list` and replaceable from the
// user Lua directory; and that directory itself, computed once (the
// searcher and `lua list` agree on it, `~` included). See docs/lua-api.md,
// "Overriding the shipped policy".
const { test } = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const path = require('node:path');
const { newEnv } = require('../e2e/lib');

const CLI_MODULES = ['ad.cli', 'ad.cli.agents', 'ad.cli.jobs', 'ad.cli.groups', 'ad.cli.doctor',
  'ad.cli.lua', 'ad.cli.test', 'ad.cli.common'];

/** Writes {rel: text} under dir (files 0644, directories 0755). */
function writeTree(dir, files) {
  for (const [rel, text] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(dir, rel)), { recursive: true, mode: 0o755 });
    fs.writeFileSync(path.join(dir, rel), text, { mode: 0o644 });
  }
  return dir;
}

/** The origin `lua list` shows for module mod. */
function origin(stdout, mod) {
  const line = stdout.split('\n').find((x) => x.split(/\s+/)[0] === mod);
  return line ? line.split(/\s+/).slice(1).join(' ') : undefined;
}

test('`lua list` shows every CLI module as embedded, and `lua cat` prints it', (t) => {
  const env = newEnv(t);
  const l = env.run(['lua', 'list']);
  assert.strictEqual(l.code, 0, l.stderr);
  for (const mod of CLI_MODULES) assert.strictEqual(origin(l.stdout, mod), 'embedded', mod);
  const cat = env.run(['lua', 'cat', 'ad.cli.jobs']);
  assert.strictEqual(cat.code, 0, cat.stderr);
  assert.strictEqual(cat.stdout,
    fs.readFileSync(path.resolve(__dirname, '../../lua/ad/cli/jobs.lua'), 'utf8'));
});

test('an override of one CLI module takes effect and `lua list` names it', (t) => {
  const env = newEnv(t);
  env.setup({ agents: { a: true } });
  const lua = writeTree(path.join(env.root, 'userlua'), {
    'ad/cli/jobs.lua': [
      'local core = require "ad.core"',
      'local M = load(core.embed.source("ad.cli.jobs"), "=ad.cli.jobs")()',
      'M.gc.run = function() io.stdout:write("overridden gc\\n") return 3 end',
      'return M', ''].join('\n'),
  });
  const extra = { env: { AGENT_DISPATCH_USER_LUA_DIR: lua } };
  const gc = env.run(['gc', '--all'], extra);
  assert.strictEqual(gc.code, 3, gc.stderr);
  assert.strictEqual(gc.stdout, 'overridden gc\n');
  const jobs = env.run(['jobs'], extra);
  assert.strictEqual(jobs.code, 0, jobs.stderr);
  assert.strictEqual(jobs.stdout, 'No jobs found.\n', 'the rest of the module is the shipped one');
  const list = env.run(['list'], extra);
  assert.strictEqual(list.code, 0, list.stderr);
  assert.match(list.stdout, /^ {2}a \[OK\]$/m, 'other families are untouched');
  const l = env.run(['lua', 'list'], extra);
  assert.strictEqual(origin(l.stdout, 'ad.cli.jobs'), path.join(lua, 'ad/cli/jobs.lua'));
  assert.strictEqual(origin(l.stdout, 'ad.cli.agents'), 'embedded');
});

test('the user Lua directory next to a config given as ~/...: loaded and listed', (t) => {
  const env = newEnv(t);
  const cfgDir = path.join(env.home, 'conf');
  fs.mkdirSync(cfgDir, { mode: 0o700 });
  fs.writeFileSync(path.join(cfgDir, 'agents.yaml'), 'agents: {}\n', { mode: 0o600 });
  const lua = path.join(cfgDir, 'lua');
  writeTree(lua, { 'probe.lua': 'return { where = "user dir" }\n' });
  const script = path.join(env.root, 'probe_script.lua');
  fs.writeFileSync(script, [
    'local core = require "ad.core"',
    'print(core.embed.user_lua_dir())',
    'local ok, m = pcall(require, "probe")',
    'print(ok and m.where or "not found")', ''].join('\n'));
  const extra = { env: { AGENT_DISPATCH_CONFIG: '~/conf/agents.yaml' } };
  const r = env.run(['run', script], extra);
  assert.strictEqual(r.code, 0, r.stderr);
  assert.strictEqual(r.stdout, `${lua}\nuser dir\n`);
  writeTree(lua, { 'ad/domain/prompt.lua': 'return { build = function() return "X" end }\n' });
  const l = env.run(['lua', 'list'], extra);
  assert.strictEqual(l.code, 0, l.stderr);
  assert.strictEqual(origin(l.stdout, 'ad.domain.prompt'), path.join(lua, 'ad/domain/prompt.lua'));
});

test('`lua list` reports the directory the loader searches when AGENT_DISPATCH_USER_LUA_DIR is empty', (t) => {
  const env = newEnv(t);
  env.setup({ agents: { a: true } });
  const lua = writeTree(path.join(env.cfgDir, 'lua'), {
    'ad/domain/prompt.lua': 'return { build = function() return "X" end }\n',
  });
  const script = path.join(env.root, 'dir_script.lua');
  fs.writeFileSync(script, 'print(require("ad.core").embed.user_lua_dir())\n');
  const extra = { env: { AGENT_DISPATCH_USER_LUA_DIR: '' } };
  const r = env.run(['run', script], extra);
  assert.strictEqual(r.stdout, `${lua}\n`, r.stderr);
  const l = env.run(['lua', 'list'], extra);
  assert.strictEqual(l.code, 0, l.stderr);
  assert.strictEqual(origin(l.stdout, 'ad.domain.prompt'), path.join(lua, 'ad/domain/prompt.lua'));
});

test('a broken agents.yaml is reported with the same words by the CLI, doctor, scripts and tools', async (t) => {
  const env = newEnv(t);
  env.writeConfig('agents:\n  a: [unclosed\n');
  const words = /could not be loaded: it is not valid YAML/;
  const list = env.run(['list']);
  assert.strictEqual(list.code, 1);
  assert.match(list.stderr, /^Error: config at .*agents\.yaml could not be loaded: it is not valid YAML:$/m);
  const doctor = env.run(['doctor']);
  assert.match(doctor.stdout, /\[FAIL\] Config at .*agents\.yaml could not be loaded: it is not valid YAML$/m);
  const script = path.join(env.root, 'cfg_script.lua');
  fs.writeFileSync(script, 'require("agent_dispatch").config()\n');
  const run = env.run(['run', script]);
  assert.notStrictEqual(run.code, 0);
  assert.match(run.stderr, words);
  const srv = env.serve();
  await srv.init();
  const r = await srv.call('list_agents', {});
  assert.strictEqual(r.isError, true, r.text);
  assert.match(r.value.error, /^Config at .*agents\.yaml could not be loaded: it is not valid YAML: line/);
  await srv.close();
});

test('a broken override of one command family takes only its commands: doctor and lua list still work, saying why', (t) => {
  const env = newEnv(t);
  env.setup({ agents: { a: true } });
  const dir = writeTree(path.join(env.root, 'userlua'), { 'ad/cli/jobs.lua': 'error("broken on purpose")\n' });
  const e = { AGENT_DISPATCH_USER_LUA_DIR: dir };
  const jobs = env.run(['jobs'], { env: e });
  assert.strictEqual(jobs.code, 1, jobs.stderr);
  assert.match(jobs.stderr, /'jobs' is not available\. .*ad\/cli\/jobs\.lua: .*broken on purpose/);
  assert.ok(!/stack traceback/.test(jobs.stderr), jobs.stderr);
  const list = env.run(['lua', 'list'], { env: e });
  assert.strictEqual(list.code, 0, list.stderr);
  assert.match(list.stderr, /Warning: Some commands are unavailable/);
  const doctor = env.run(['doctor'], { env: e });
  assert.match(doctor.stdout + doctor.stderr, /ad\/cli\/jobs\.lua: .*broken on purpose/);
  const help = env.run(['--help'], { env: e });
  assert.strictEqual(help.code, 0, help.stderr);
  assert.match(help.stdout, /Some commands are unavailable/);
  writeTree(dir, { 'ad/cli/jobs.lua': 'return 42\n' });
  const n = env.run(['jobs'], { env: e });
  assert.match(n.stderr, /it returned number, not a table of commands/);
});
