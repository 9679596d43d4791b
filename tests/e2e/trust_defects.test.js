'use strict';
// Trust boundaries, end to end through the built binary: code and state
// another user could have written (tool files, overrides, agents.yaml, the
// jobs directory), project files that are not what they seem (symlinks to
// pipes and to /proc), overrides that are broken or refused, and the
// user's read-only protection of the config. Attacks that need a second
// user create one (useradd) and run as it with setpriv; this runs as root,
// as CI does.
const { test } = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const path = require('node:path');
const { spawn, spawnSync } = require('node:child_process');
const { newEnv, sleep, waitUntil } = require('./lib');

const RACER = process.env.AD_RACER || path.resolve(__dirname, '../../build/tests/e2e/rename_racer');
const ATTACKER = 'ad-attacker-trust';

/** The second user: {uid, gid}, created when absent. */
function attacker() {
  let r = spawnSync('id', ['-u', ATTACKER], { encoding: 'utf8' });
  if (r.status !== 0) {
    const add = spawnSync('useradd', ['-M', '-r', '-s', '/usr/sbin/nologin', ATTACKER], { encoding: 'utf8' });
    assert.strictEqual(add.status, 0, `useradd: ${add.stderr}`);
    r = spawnSync('id', ['-u', ATTACKER], { encoding: 'utf8' });
  }
  const uid = Number(r.stdout.trim());
  const gid = Number(spawnSync('id', ['-g', ATTACKER], { encoding: 'utf8' }).stdout.trim());
  assert.ok(uid > 0 && gid > 0, 'the attacker must not be root');
  return { uid, gid };
}

/** A directory the attacker owns (outside the victim's config tree). */
function attackerDir(t, who) {
  const dir = fs.mkdtempSync('/tmp/ad-att-');
  fs.chmodSync(dir, 0o755);
  fs.chownSync(dir, who.uid, who.gid);
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function asAttacker(who, argv) {
  return spawn('setpriv', [`--reuid=${who.uid}`, `--regid=${who.gid}`, '--clear-groups', ...argv],
    { stdio: ['ignore', 'pipe', 'pipe'] });
}

function lit(s) {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

async function serveWith(env, extra = {}) {
  const srv = env.serve({ env: extra });
  await srv.init();
  return srv;
}

// ------------------------------------------------ code another user wrote --

test('a tool file symlinked into a directory another user owns: their swapped-in code never runs, the load is refused', async (t) => {
  const env = newEnv(t);
  env.setup({ agents: { a: true } });
  const who = attacker();
  const att = attackerDir(t, who);
  const marker = path.join(env.root, 'PWNED');
  // The victim's own file, kept (by mistake) in a directory the attacker owns.
  fs.writeFileSync(path.join(att, 'good.lua'), 'tool{ name = "good_tool", handler = function() return 1 end }\n');
  fs.chmodSync(path.join(att, 'good.lua'), 0o644);
  fs.writeFileSync(path.join(att, 'evil.lua'),
    `require("io").open(${JSON.stringify(marker)}, "w"):close()\n` +
    'tool{ name = "pwned", handler = function() return 1 end }\n');
  fs.chmodSync(path.join(att, 'evil.lua'), 0o644);
  fs.chownSync(path.join(att, 'evil.lua'), who.uid, who.gid);
  fs.copyFileSync(RACER, path.join(att, 'racer'));
  fs.chmodSync(path.join(att, 'racer'), 0o755);
  const tools = path.join(env.root, 'tools');
  fs.mkdirSync(tools, { mode: 0o700 });
  fs.symlinkSync(path.join(att, 'good.lua'), path.join(tools, 'x.lua'));

  const racer = asAttacker(who, [path.join(att, 'racer'), path.join(att, 'good.lua'),
    path.join(att, 'evil.lua'), '60']);
  let racerErr = '';
  racer.stderr.on('data', (d) => { racerErr += d; });
  t.after(() => racer.kill('SIGKILL'));
  await sleep(100);
  const runs = [];
  for (let i = 0; i < 40; i++) {
    runs.push(env.run(['lua', 'tools'], { env: { AGENT_DISPATCH_TOOLS_DIR: tools } }));
  }
  racer.kill('SIGKILL');
  assert.strictEqual(racerErr, '', 'the racer must be swapping');
  assert.ok(!fs.existsSync(marker), 'the attacker\'s Lua ran as the victim');
  for (const r of runs) {
    assert.ok(!/pwned/.test(r.stdout), r.stdout);
    assert.strictEqual(r.code, 1, r.stdout + r.stderr);
    assert.match(r.stdout, new RegExp(`PROBLEM refusing ${lit(path.join(tools, 'x.lua'))}: ` +
      '(it is owned by uid \\d+, not by you|its directory \\S+ is owned by uid \\d+, not by you)'));
  }
});

test('an override symlinked into a directory another user owns is refused with the reason', async (t) => {
  const env = newEnv(t);
  env.setup({ agents: { a: true } });
  const who = attacker();
  const att = attackerDir(t, who);
  fs.writeFileSync(path.join(att, 'prompt.lua'), 'return { build = function() return "X" end }\n');
  fs.chmodSync(path.join(att, 'prompt.lua'), 0o644);
  const lua = path.join(env.root, 'userlua');
  fs.mkdirSync(path.join(lua, 'ad', 'domain'), { recursive: true, mode: 0o700 });
  fs.symlinkSync(path.join(att, 'prompt.lua'), path.join(lua, 'ad', 'domain', 'prompt.lua'));
  const s = path.join(env.root, 's.lua');
  fs.writeFileSync(s, 'print(require("ad.domain.prompt"))\n');
  const r = env.run(['run', s], { env: { AGENT_DISPATCH_USER_LUA_DIR: lua } });
  assert.match(r.stdout + r.stderr, new RegExp(`refusing to load ${lit(path.join(lua, 'ad/domain/prompt.lua'))}: ` +
    `its directory ${lit(att)} is owned by uid ${who.uid}, not by you`));
});

// ------------------------------------------------------- project files --

test('project files that are symlinks to pipes or /proc are not read: the server stays responsive and leaks nothing', async (t) => {
  const env = newEnv(t);
  const p1 = env.project('p1');
  fs.symlinkSync('/proc/self/fd/1', path.join(p1, '.mcp.json'));
  fs.symlinkSync('/proc/self/fd/1', path.join(p1, 'CLAUDE.md'));
  const p2 = env.project('p2');
  fs.symlinkSync('/proc/self/fd/0', path.join(p2, '.mcp.json'));
  fs.symlinkSync('/proc/self/fd/0', path.join(p2, 'README.md'));
  const p3 = env.project('p3', { 'docs/README.md': 'A project whose readme lives in docs, linked from the top.\n',
    'CLAUDE.md': 'x' });
  fs.symlinkSync('/proc/self/environ', path.join(p3, 'CLAUDE.md.tmp'));
  fs.renameSync(path.join(p3, 'CLAUDE.md.tmp'), path.join(p3, 'CLAUDE.md'));
  fs.symlinkSync('docs/README.md', path.join(p3, 'README.md'));
  env.setup({ agents: { p1: p1, p2: p2, p3: p3 } });
  const secret = 'sk-ant-secret-0123456789';
  const srv = await serveWith(env, { ANTHROPIC_API_KEY: secret, AD_TEST_SECRET: secret });
  // list_agents and a ping in one write: both must be answered, and the
  // ping must not be eaten as the contents of a file.
  srv.write(JSON.stringify({ jsonrpc: '2.0', id: 'la', method: 'tools/call',
    params: { name: 'list_agents', arguments: {} } }) + '\n' +
    JSON.stringify({ jsonrpc: '2.0', id: 'pg', method: 'ping' }) + '\n');
  const la = await srv.response('la', 5000);
  const pg = await srv.response('pg', 5000);
  assert.deepStrictEqual(pg.result, {});
  const agents = JSON.parse(la.result.content[0].text);
  for (const a of agents) assert.ok(!a.mcp_servers, JSON.stringify(a));
  for (const name of ['p1', 'p2', 'p3']) {
    const r = await srv.call('inspect_agent', { name, preview_lines: 40 }, { ms: 5000 });
    assert.ok(!r.text.includes(secret), `the environment leaked through ${name}: ${r.text}`);
    assert.ok(!r.text.includes('jsonrpc'), `the protocol stream was read as a file: ${r.text}`);
    if (name === 'p3') {
      assert.match(r.value.readme_preview, /readme lives in docs/, 'a link inside the project is still read');
      assert.strictEqual(r.value.claude_md_preview, undefined);
    }
  }
  const exit = await srv.close(5000);
  assert.strictEqual(exit.code, 0);
});

test('a project file that is a FIFO does not block list_agents; SIGTERM still stops the server', async (t) => {
  const env = newEnv(t);
  const p = env.project('p');
  spawnSync('mkfifo', [path.join(p, '.mcp.json')]);
  spawnSync('mkfifo', [path.join(p, 'README.md')]);
  env.setup({ agents: { p: p } });
  const srv = await serveWith(env);
  const r = await srv.call('list_agents', {}, { ms: 5000 });
  assert.strictEqual(r.isError, false);
  const i = await srv.call('inspect_agent', { name: 'p' }, { ms: 5000 });
  assert.strictEqual(i.value.readme_preview, undefined);
  srv.child.kill('SIGTERM');
  const exit = await Promise.race([srv.exited, sleep(5000).then(() => null)]);
  assert.ok(exit, 'SIGTERM did not stop the server');
});

// ------------------------------------------------------ broken overrides --

const TOOL_FILE = `
tool{ name = "plain_tool", handler = function() return { plain = "ok" } end }
tool{ name = "api_tool", handler = function(args, ad) return ad.version end }
`;

function setupOverride(env, text, mode = 0o644) {
  const lua = path.join(env.root, 'userlua');
  fs.mkdirSync(path.join(lua, 'ad', 'domain'), { recursive: true });
  const file = path.join(lua, 'ad', 'domain', 'aggregate.lua');
  fs.writeFileSync(file, text);
  fs.chmodSync(file, mode);
  const tools = path.join(env.root, 'tools');
  fs.mkdirSync(tools);
  fs.writeFileSync(path.join(tools, 'x.lua'), TOOL_FILE);
  return { lua, file, tools };
}

test('a group-writable override plus a tool file: serve keeps serving and prints the refusal', async (t) => {
  const env = newEnv(t);
  env.setup({ agents: { a: true } });
  const { lua, file, tools } = setupOverride(env, 'return {}\n', 0o664);
  const srv = await serveWith(env, { AGENT_DISPATCH_USER_LUA_DIR: lua, AGENT_DISPATCH_TOOLS_DIR: tools });
  const list = await srv.request('tools/list', {}, { ms: 5000 });
  assert.ok(list.result, JSON.stringify(list));
  const names = list.result.tools.map((x) => x.name);
  assert.ok(names.includes('plain_tool') && names.includes('dispatch'), names.join(','));
  assert.deepStrictEqual((await srv.request('ping', {}, { ms: 5000 })).result, {});
  await waitUntil(() => /refusing to load/.test(srv.stderr), 3000);
  assert.match(srv.stderr, new RegExp(`refusing to load ${lit(file)}: it is writable by its group .*chmod go-w ${lit(file)}`));
  const d = await srv.call('dispatch', { agent: 'a', task: 'x' }, { ms: 5000 });
  assert.strictEqual(d.isError, true);
  assert.match(d.value.error, new RegExp(`refusing to load ${lit(file)}`));
  const exit = await srv.close();
  assert.strictEqual(exit.code, 0);
});

for (const late of [false, true]) {
  test(`a broken override plus a tool file (tools/list ${late ? 'after' : 'before'} startup maintenance): only what depends on it fails, with file:line`, async (t) => {
    const env = newEnv(t);
    env.setup({ agents: { a: true } });
    const { lua, file, tools } = setupOverride(env, 'local M = {}\nreturn {\n');
    const srv = await serveWith(env, { AGENT_DISPATCH_USER_LUA_DIR: lua, AGENT_DISPATCH_TOOLS_DIR: tools });
    if (late) await sleep(1500);
    const list = await srv.request('tools/list', {}, { ms: 5000 });
    assert.ok(list.result, JSON.stringify(list));
    const names = list.result.tools.map((x) => x.name);
    assert.ok(names.includes('plain_tool') && names.includes('api_tool'), names.join(','));
    assert.deepStrictEqual((await srv.request('ping', {}, { ms: 5000 })).result, {});
    const plain = await srv.call('plain_tool', {}, { ms: 5000 });
    assert.strictEqual(plain.value.plain, "ok");
    const api = await srv.call('api_tool', {}, { ms: 5000 });
    assert.strictEqual(api.isError, true);
    assert.ok(api.value.error.includes(`${file}:3:`), api.value.error);
    assert.match(srv.stderr, new RegExp(lit(`${file}:3:`)));
    assert.deepStrictEqual((await srv.request('ping', {}, { ms: 5000 })).result, {});
    const exit = await srv.close();
    assert.strictEqual(exit.code, 0);
  });
}

test('a tool that depends on a broken override says whose file is broken and where', async (t) => {
  const env = newEnv(t);
  env.setup({ agents: { a: true } });
  const { lua, file } = setupOverride(env, 'local M = {}\nreturn {\n');
  const srv = await serveWith(env, { AGENT_DISPATCH_USER_LUA_DIR: lua });
  const d = await srv.call('dispatch', { agent: 'a', task: 'x' }, { ms: 5000 });
  assert.strictEqual(d.isError, true);
  assert.ok(d.value.error.includes(`${file}:3:`), d.value.error);
  assert.doesNotMatch(d.value.hint, /bug in agent-dispatch/);
  assert.ok(d.value.hint.includes(`override ${file}:3`), d.value.hint);
  await srv.close();
});

test('a broken override: dispatch_async either fails clearly or runs; no job is left that never ends', async (t) => {
  const env = newEnv(t);
  env.setup({ agents: { a: true } });
  const { lua, file } = setupOverride(env, 'local M = {}\nreturn {\n');
  const srv = await serveWith(env, { AGENT_DISPATCH_USER_LUA_DIR: lua });
  const d = await srv.call('dispatch_async', { agent: 'a', task: '[stub:reply=fine]' }, { ms: 5000 });
  if (d.isError) {
    assert.ok(d.value.error.includes(`${file}:3:`), d.value.error);
  } else {
    const w = (await srv.call('dispatch_wait', { job_id: d.value.job_id, timeout_seconds: 15 }, { ms: 20000 })).value;
    assert.ok(['done', 'failed'].includes(w.status), JSON.stringify(w));
  }
  const jobs = (await srv.call('dispatch_jobs', {}, { ms: 5000 })).value;
  for (const j of jobs) assert.ok(!['pending', 'running'].includes(j.status), JSON.stringify(j));
  await srv.close();
});

// ------------------------------------------ state another user could write --

test('agents.yaml owned by another user or writable by others is refused; doctor FAILs', async (t) => {
  const env = newEnv(t);
  env.setup({ agents: { a: true } });
  const who = attacker();
  fs.chownSync(env.config, who.uid, who.gid);
  let l = env.run(['list']);
  assert.notStrictEqual(l.code, 0, l.stdout);
  assert.match(l.stderr, new RegExp(`refusing ${lit(env.config)}: it is owned by uid ${who.uid}, not by you`));
  let doc = env.run(['doctor']);
  assert.strictEqual(doc.code, 1);
  assert.match(doc.stdout, /\[FAIL\] Config .*\n.*refusing .*owned by uid/);
  const srv = await serveWith(env);
  const r = await srv.call('list_agents', {}, { ms: 5000 });
  assert.strictEqual(r.isError, true);
  assert.match(r.value.error, /refusing .*owned by uid/);
  assert.doesNotMatch(r.value.hint, /YAML/);
  await srv.close();

  fs.chownSync(env.config, 0, 0);
  fs.chmodSync(env.config, 0o664);
  l = env.run(['list']);
  assert.notStrictEqual(l.code, 0, l.stdout);
  assert.match(l.stderr, new RegExp(`refusing ${lit(env.config)}: it is writable by its group .*chmod go-w`));
  doc = env.run(['doctor']);
  assert.strictEqual(doc.code, 1);
  fs.chmodSync(env.config, 0o600);
  assert.strictEqual(env.run(['list']).code, 0);
});

test('a jobs directory owned by another user is not used: a forged record is never shown; doctor FAILs', async (t) => {
  const env = newEnv(t);
  env.setup({ agents: { a: true } });
  const who = attacker();
  const id = 'f'.repeat(32);
  fs.mkdirSync(env.jobs, { mode: 0o755 });
  fs.writeFileSync(path.join(env.jobs, `${id}.json`), JSON.stringify({ id, agent: 'a', task: 'forged',
    status: 'done', created_at: 1700000000, completed_at: 1700000001,
    result: { success: true, agent: 'a', result: 'FORGED RESULT' } }));
  fs.chownSync(path.join(env.jobs, `${id}.json`), who.uid, who.gid);
  fs.chownSync(env.jobs, who.uid, who.gid);
  const j = env.run(['jobs']);
  assert.ok(!j.stdout.includes(id) && !j.stdout.includes('forged'), j.stdout);
  assert.notStrictEqual(j.code, 0);
  assert.match(j.stdout + j.stderr, new RegExp(`jobs directory ${lit(env.jobs)}.*owned by uid ${who.uid}`));
  const doc = env.run(['doctor']);
  assert.strictEqual(doc.code, 1);
  assert.match(doc.stdout, new RegExp(`\\[FAIL\\] .*${lit(env.jobs)}`));
  const srv = await serveWith(env);
  const r = await srv.call('fetch_result', { job_id: id }, { ms: 5000 });
  assert.ok(!r.text.includes('FORGED RESULT'), r.text);
  assert.strictEqual(r.isError, true);
  await srv.close();
});

// ------------------------------------------------- read-only protection --

test('a config reached through a symbolic link: the read-only directory of the real file is respected too', (t) => {
  const env = newEnv(t);
  env.setup({ agents: { a: true } });
  const realDir = path.join(env.root, 'real-config');
  fs.mkdirSync(realDir, { mode: 0o700 });
  const real = path.join(realDir, 'agents.yaml');
  fs.renameSync(env.config, real);
  fs.symlinkSync(real, env.config);
  const before = fs.readFileSync(real, 'utf8');
  fs.chmodSync(realDir, 0o500);
  const r = env.run(['update', 'a', '--timeout', '77']);
  assert.notStrictEqual(r.code, 0, r.stdout);
  assert.match(r.stderr, new RegExp(`${lit(realDir)} is read-only \\(mode 500\\)`));
  assert.strictEqual(fs.readFileSync(real, 'utf8'), before, 'the file in the read-only directory was rewritten');
  // Writable again: the edit goes through the link to the real file.
  fs.chmodSync(realDir, 0o700);
  const ok = env.run(['update', 'a', '--timeout', '77']);
  assert.strictEqual(ok.code, 0, ok.stderr);
  assert.ok(fs.lstatSync(env.config).isSymbolicLink(), 'the link was replaced');
  assert.match(fs.readFileSync(real, 'utf8'), /timeout: 77/);
});

test('add respects a read-only config directory and a read-only agents.yaml', (t) => {
  const env = newEnv(t);
  env.setup({ agents: { a: true } });
  const before = env.readConfig();
  const p = env.project('b');
  fs.chmodSync(env.cfgDir, 0o500);
  let r = env.run(['add', 'b', p]);
  assert.notStrictEqual(r.code, 0, r.stdout);
  assert.match(r.stderr, new RegExp(`${lit(env.cfgDir)} is read-only \\(mode 500\\)`));
  assert.strictEqual(fs.statSync(env.cfgDir).mode & 0o7777, 0o500, 'the directory was chmod\'ed');
  assert.strictEqual(env.readConfig(), before);

  fs.chmodSync(env.cfgDir, 0o700);
  fs.chmodSync(env.config, 0o400);
  const ino = fs.statSync(env.config).ino;
  r = env.run(['add', 'b', p]);
  assert.notStrictEqual(r.code, 0, r.stdout);
  assert.match(r.stderr, new RegExp(`${lit(env.config)} is read-only \\(mode 400\\)`));
  assert.strictEqual(fs.statSync(env.config).ino, ino, 'the file was replaced');
  assert.strictEqual(fs.statSync(env.config).mode & 0o7777, 0o400);
  assert.strictEqual(env.readConfig(), before);
});
