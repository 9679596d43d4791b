'use strict';
// doctor finds every broken piece: Claude Code's login state, version and
// the AGENT_DISPATCH_CLAUDE override, unknown config keys, tool files and
// overrides that do not load or are unsafe, dangling group members, and
// the jobs directory (mode, stale running jobs, free space).
const test = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const path = require('node:path');
const { spawnSync } = require('node:child_process');
const { newEnv } = require('./lib');

const PINNED = fs.readFileSync(path.join(__dirname, '../real/install-claude.sh'), 'utf8')
  .match(/CLAUDE_CODE_VERSION:-([0-9.]+)/)[1];

function doctor(env, extra) {
  return env.run(['doctor'], { env: extra });
}

test('doctor reports the Claude Code login state from claude auth status', (t) => {
  const env = newEnv(t);
  env.setup({ agents: { a: true } });
  let d = doctor(env);
  assert.match(d.stdout, /\[OK\] Claude Code is logged in \(api_key\)/);
  d = doctor(env, { STUB_CLAUDE_LOGGED_OUT: '1' });
  assert.strictEqual(d.code, 1, d.stdout);
  assert.match(d.stdout, /\[FAIL\] Claude Code is not logged in.*\n\s+Run: claude, then \/login/);
});

test('doctor names AGENT_DISPATCH_CLAUDE when it points nowhere', (t) => {
  const env = newEnv(t);
  env.setup({ agents: { a: true } });
  const d = doctor(env, { AGENT_DISPATCH_CLAUDE: '/nonexistent/claude' });
  assert.strictEqual(d.code, 1, d.stdout);
  assert.match(d.stdout, /\[FAIL\] AGENT_DISPATCH_CLAUDE=\/nonexistent\/claude does not name an executable/);
  assert.doesNotMatch(d.stdout, /not found on PATH/);
});

test('doctor compares the installed Claude Code with the version the tests pin', (t) => {
  const env = newEnv(t);
  env.setup({ agents: { a: true } });
  let d = doctor(env, { STUB_CLAUDE_VERSION: PINNED });
  assert.match(d.stdout, new RegExp(`\\[OK\\] Claude Code ${PINNED.replace(/\./g, '\\.')} `));
  d = doctor(env, { STUB_CLAUDE_VERSION: '2.0.1' });
  assert.strictEqual(d.code, 0, d.stdout);
  assert.match(d.stdout, new RegExp(`\\[WARN\\] Claude Code 2\\.0\\.1 is installed; agent-dispatch is tested with ${PINNED.replace(/\./g, '\\.')}`));
});

test('doctor reports unknown config keys with did-you-mean; FAIL for permission keys', (t) => {
  const env = newEnv(t);
  const dirs = env.setup({ agents: { a: true } });
  env.writeConfig(`agents:\n  a:\n    directory: ${dirs.a}\n    permision_mode: plan\n` +
    `    allowed_tool: [Read]\n    descripton: x\n`);
  const d = doctor(env);
  assert.strictEqual(d.code, 1, d.stdout);
  assert.match(d.stdout, /\[FAIL\] Unknown key 'permision_mode' in agent 'a' \(did you mean 'permission_mode'\?\)/);
  assert.match(d.stdout, /\[FAIL\] Unknown key 'allowed_tool' in agent 'a' \(did you mean 'allowed_tools'\?\)/);
  assert.match(d.stdout, /\[WARN\] Unknown key 'descripton' in agent 'a' \(did you mean 'description'\?\)/);
});

test('doctor reports tool files that fail to load or are unsafe, with the words of lua tools', (t) => {
  const env = newEnv(t);
  env.setup({ agents: { a: true } });
  const tools = path.join(env.cfgDir, 'tools');
  fs.mkdirSync(tools, { recursive: true, mode: 0o700 });
  fs.writeFileSync(path.join(tools, 'broken.lua'), 'tool{ name = "x",\n', { mode: 0o600 });
  fs.writeFileSync(path.join(tools, 'open.lua'), 'return 1\n');
  fs.chmodSync(path.join(tools, 'open.lua'), 0o666);
  fs.writeFileSync(path.join(tools, 'good.lua'),
    'tool{ name = "hello", handler = function() return "hi" end }\n', { mode: 0o600 });
  const lt = env.run(['lua', 'tools']);
  const problems = lt.stdout.split('\n').filter((l) => l.includes('PROBLEM'))
    .map((l) => l.replace(/^\s*PROBLEM /, ''));
  assert.strictEqual(problems.length, 2, lt.stdout);
  const d = doctor(env);
  assert.strictEqual(d.code, 1, d.stdout);
  for (const p of problems) assert.ok(d.stdout.includes(`[FAIL] ${p}`), `${p}\n${d.stdout}`);
  assert.match(d.stdout, /\[OK\] .*good\.lua: tools hello/);
});

test('doctor reports overrides that do not compile or are writable by others', (t) => {
  const env = newEnv(t);
  env.setup({ agents: { a: true } });
  const lua = path.join(env.cfgDir, 'lua', 'ad', 'domain');
  fs.mkdirSync(lua, { recursive: true, mode: 0o700 });
  fs.writeFileSync(path.join(lua, 'aggregate.lua'), 'return {\n', { mode: 0o600 });
  let d = doctor(env);
  assert.strictEqual(d.code, 1, d.stdout);
  assert.match(d.stdout, /\[FAIL\] error loading module 'ad\.domain\.aggregate': .*aggregate\.lua:\d+:/);
  fs.writeFileSync(path.join(lua, 'aggregate.lua'), 'return {}\n');
  fs.chmodSync(path.join(lua, 'aggregate.lua'), 0o646);
  d = doctor(env);
  assert.strictEqual(d.code, 1, d.stdout);
  assert.match(d.stdout, /\[FAIL\] refusing .*aggregate\.lua: .*writable/);
  fs.chmodSync(path.join(lua, 'aggregate.lua'), 0o600);
  d = doctor(env);
  assert.match(d.stdout, /\[OK\] override of ad\.domain\.aggregate: /);
});

test('doctor names dangling group members and the one command that removes them', (t) => {
  const env = newEnv(t);
  env.setup({ agents: { a: true },
    groups: '  g:\n    members:\n      - agent: a\n      - agent: ghost\n      - agent: gone\n' });
  const d = doctor(env);
  assert.strictEqual(d.code, 1, d.stdout);
  assert.match(d.stdout, /\[FAIL\] g: unknown member\(s\): ghost, gone\n\s+Fix: agent-dispatch group update g --remove-member ghost --remove-member gone\n/);
});

test('doctor checks the jobs directory: mode and stale running jobs', (t) => {
  const env = newEnv(t);
  env.setup({ agents: { a: true } });
  fs.mkdirSync(env.jobs, { mode: 0o755 });
  fs.chmodSync(env.jobs, 0o755);
  const id = 'ab'.repeat(16);
  const now = Date.now() / 1000;
  fs.writeFileSync(path.join(env.jobs, `${id}.json`), JSON.stringify({ id, agent: 'a', task: 't',
    status: 'running', created_at: now, started_at: now, server: { pid: 999999999, start: 1 },
    process: { pid: 999999998, pgid: 999999998, start: 1 } }),
  { mode: 0o600 });
  let d = doctor(env);
  assert.match(d.stdout, /\[WARN\] Jobs directory .* is readable by others \(mode 755\).*\n\s+Run: chmod 700 /);
  assert.match(d.stdout, new RegExp(`\\[WARN\\] 1 job\\(s\\) marked running, but the agent-dispatch process that ran them is gone: ${id}\\n\\s+Run: agent-dispatch cancel ${id}`));
  assert.match(d.stdout, /\[OK\] \d+ MB free for job records/);
  const c = env.run(['cancel', id]);
  assert.strictEqual(c.code, 0, c.stdout + c.stderr);
  fs.chmodSync(env.jobs, 0o700);
  d = doctor(env);
  assert.match(d.stdout, /\[OK\] Jobs directory: .* \(mode 700\)/);
  assert.doesNotMatch(d.stdout, /marked running/);
});

test('doctor warns when the jobs directory has little free space', (t) => {
  const env = newEnv(t);
  env.setup({ agents: { a: true } });
  const jobs = fs.mkdtempSync('/tmp/ad-doctor-jobs-');
  const m = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=1m,mode=700', 'tmpfs', jobs],
    { encoding: 'utf8' });
  t.after(() => {
    spawnSync('umount', [jobs]);
    fs.rmSync(jobs, { recursive: true, force: true });
  });
  assert.strictEqual(m.status, 0, `mount (the suite runs as root): ${m.stderr}`);
  const d = doctor(env, { AGENT_DISPATCH_JOBS_DIR: jobs });
  assert.match(d.stdout, /\[WARN\] Only [01]\.\d MB free on the file system of .*\n\s+Free some space, or delete finished jobs: agent-dispatch gc/);
});

test('doctor warns about a user Lua file that overrides no shipped module, and names where it moved', (t) => {
  const env = newEnv(t);
  env.setup({ agents: { a: true } });
  const lua = path.join(env.cfgDir, 'lua', 'ad');
  fs.mkdirSync(lua, { recursive: true, mode: 0o700 });
  fs.writeFileSync(path.join(lua, 'aggregate.lua'), 'return {}\n', { mode: 0o600 });
  const d = doctor(env);
  assert.match(d.stdout, /\[WARN\] .*ad\/aggregate\.lua overrides no shipped module \(ad\.aggregate\)/);
  assert.ok(d.stdout.includes(path.join(env.cfgDir, 'lua', 'ad', 'domain', 'aggregate.lua')), d.stdout);
});

test('doctor checks that OpenSSL\'s libcrypto loads, and warns what is lost without it', (t) => {
  const env = newEnv(t);
  env.setup({ agents: { a: true } });
  let d = doctor(env);
  assert.match(d.stdout, /\[OK\] OpenSSL's libcrypto loads/, d.stdout);
  // A directory first on the library path whose libcrypto is not a
  // library: the dlopen of libcrypto.so.3 (and .so) fails.
  const dir = path.join(env.root, 'nolib');
  fs.mkdirSync(dir);
  for (const n of ['libcrypto.so.3', 'libcrypto.so']) fs.writeFileSync(path.join(dir, n), 'not a library\n');
  d = doctor(env, { LD_LIBRARY_PATH: dir });
  assert.strictEqual(d.code, 0, d.stdout); // a warning, not a failure
  assert.match(d.stdout, /\[WARN\] Cannot load OpenSSL's libcrypto \(libcrypto\.so\.3/, d.stdout);
  assert.match(d.stdout, /awaiting_approval/, d.stdout);
  assert.match(d.stdout, /libssl3/, d.stdout);
});
