'use strict';
// agents.yaml as a person writes it: changes keep every byte they do not
// touch, keep backups, and the file's typos and schema problems are all
// reported.
const { test } = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const path = require('node:path');
const { newEnv } = require('./lib');

/** A hand-written config: comments, blank lines, unknown keys, ~, flow style. */
function handWritten(env) {
  const api = env.project('api');
  const web = env.project('web');
  fs.symlinkSync(api, path.join(env.home, 'api'));
  return `# My agents — notes I keep here.
agents:
  # the backend, see docs/api.md
  backend:
    directory: ~/api   # relative to HOME on purpose
    description: "Backend API"
    timeout: 600
    x_owner: alice       # a key agent-dispatch does not know

  frontend: {directory: ${web}, description: Web UI}

groups:
  web:
    description: web stuff
    members:
      - agent: backend
        use_for: api   # why
      - agent: frontend

# tuned for a small laptop
settings:
  max_concurrency: 3   # not more
`;
}

function ok(r) {
  assert.strictEqual(r.code, 0, `exit ${r.code}: ${r.stderr}`);
}

test('CLI changes rewrite only the entry they touch and keep the rest byte for byte', (t) => {
  const env = newEnv(t);
  const orig = handWritten(env);
  env.writeConfig(orig);

  ok(env.run(['update', 'backend', '--timeout', '900']));
  const v1 = orig.replace('    timeout: 600\n', '    timeout: 900\n');
  assert.strictEqual(env.readConfig(), v1);

  const extra = env.project('extra');
  ok(env.run(['add', 'extra', extra, '-d', 'Extra one']));
  const v2 = env.readConfig();
  const entry = `  extra:\n    directory: ${extra}\n    description: Extra one\n    timeout: 300\n`;
  assert.strictEqual(v2, v1.replace(`Web UI}\n`, `Web UI}\n${entry}`),
    'the new agent goes after the last one, nothing else moves');

  ok(env.run(['remove', 'extra']));
  assert.strictEqual(env.readConfig(), v1, 'removing it gives back the same bytes');

  ok(env.run(['group', 'update', 'web', '-d', 'the web team']));
  const v3 = v1.replace('    description: web stuff\n', '    description: the web team\n');
  assert.strictEqual(env.readConfig(), v3);

  ok(env.run(['update', 'backend', '--model', 'opus']));
  const v4 = v3.replace('    x_owner: alice       # a key agent-dispatch does not know\n',
    '    x_owner: alice       # a key agent-dispatch does not know\n    model: opus\n');
  assert.strictEqual(env.readConfig(), v4);
  ok(env.run(['update', 'backend', '--model', 'none']));
  assert.strictEqual(env.readConfig(), v3, 'clearing a field deletes its line only');

  // The agents still resolve as before (~ kept, meaning unchanged).
  const list = env.run(['describe', 'backend']);
  ok(list);
  assert.match(list.stdout, new RegExp(fs.realpathSync(path.join(env.home, 'api')).replace(/[/.]/g, '\\$&')
    + '|' + path.join(env.home, 'api').replace(/[/.]/g, '\\$&')));
  assert.strictEqual((fs.statSync(env.config).mode & 0o777), 0o600);
});

test('MCP changes keep the file too', async (t) => {
  const env = newEnv(t);
  const orig = handWritten(env);
  env.writeConfig(orig);
  const s = env.serve();
  await s.init();
  const r = await s.call('update_agent', { name: 'backend', description: 'The API' });
  assert.ok(!r.isError, r.text);
  assert.strictEqual(env.readConfig(), orig.replace('"Backend API"', 'The API'));
  await s.close();
});

test('every change keeps the previous file as a backup, five at most, 0600', (t) => {
  const env = newEnv(t);
  const orig = handWritten(env);
  env.writeConfig(orig);
  const versions = [orig];
  for (let i = 1; i <= 7; i++) {
    ok(env.run(['update', 'backend', '--timeout', String(600 + i)]));
    versions.push(env.readConfig());
  }
  const baks = fs.readdirSync(env.cfgDir).filter((n) => n.startsWith('agents.yaml.bak')).sort();
  assert.deepStrictEqual(baks, [1, 2, 3, 4, 5].map((n) => `agents.yaml.bak.${n}`));
  for (let n = 1; n <= 5; n++) {
    const p = path.join(env.cfgDir, `agents.yaml.bak.${n}`);
    assert.strictEqual(fs.readFileSync(p, 'utf8'), versions[7 - n], `bak.${n}`);
    assert.strictEqual(fs.statSync(p).mode & 0o777, 0o600);
  }
  // A change that changes nothing writes nothing.
  const before = fs.statSync(env.config).ino;
  ok(env.run(['update', 'backend', '--timeout', '607']));
  assert.strictEqual(fs.statSync(env.config).ino, before);
});

test('unknown keys are reported with a did-you-mean on stderr', (t) => {
  const env = newEnv(t);
  const dir = env.project('a');
  env.writeConfig(`agents:
  a:
    directory: ${dir}
    permision_mode: plan
    allowed_tool: [Read]
settings:
  max_concurency: 2
`);
  const r = env.run(['list']);
  ok(r);
  assert.match(r.stderr, /unknown key agents\.a\.permision_mode \(did you mean permission_mode\?\); it is ignored, so this agent runs with the inherited permission settings/);
  assert.match(r.stderr, /unknown key agents\.a\.allowed_tool \(did you mean allowed_tools\?\)/);
  assert.match(r.stderr, /unknown key settings\.max_concurency \(did you mean max_concurrency\?\)/);
  assert.doesNotMatch(r.stdout, /unknown key/, 'stdout stays the listing');

  env.setup({ agents: { a: dir } });
  const clean = env.run(['list']);
  ok(clean);
  assert.strictEqual(clean.stderr, '', 'a clean file gives no warning');
});

test('the MCP server logs unknown keys on its stderr', async (t) => {
  const env = newEnv(t);
  const dir = env.project('a');
  env.writeConfig(`agents:\n  a:\n    directory: ${dir}\n    disalowed_tools: [Bash]\n`);
  const s = env.serve();
  await s.init();
  const r = await s.call('list_agents', {});
  assert.ok(!r.isError, r.text);
  await s.close();
  assert.match(s.stderr, /unknown key agents\.a\.disalowed_tools \(did you mean disallowed_tools\?\)/);
});

test('the MCP client gets unknown keys as warning log notifications, once per file version', async (t) => {
  const env = newEnv(t);
  const dir = env.project('a');
  env.writeConfig(`agents:\n  a:\n    directory: ${dir}\n    permision_mode: plan\n`);
  const s = env.serve();
  await s.init();
  assert.ok(!(await s.call('list_agents', {})).isError);
  assert.ok(!(await s.call('list_agents', {})).isError);
  const warns = s.notifications('notifications/message').map((m) => m.msg.params)
    .filter((p) => p.level === 'warning' && /unknown key agents\.a\.permision_mode \(did you mean permission_mode\?\)/.test(JSON.stringify(p.data)));
  assert.strictEqual(warns.length, 1, JSON.stringify(s.notifications('notifications/message')));
  await s.close();
});

test('every schema problem of the file is reported at once', (t) => {
  const env = newEnv(t);
  const dir = env.project('a');
  env.writeConfig(`agents:
  a:
    directory: ${dir}
    timeout: soon
  b:
    description: no directory
settings:
  max_concurrency: 0
  cache: {ttl: -1}
`);
  const r = env.run(['list']);
  assert.strictEqual(r.code, 1);
  for (const want of ['agents.a.timeout: expected an integer', 'agents.b.directory: field required',
    'settings.max_concurrency: must be >= 1', 'settings.cache.ttl: must be >= 0']) {
    assert.ok(r.stderr.includes(want), `${want} in ${r.stderr}`);
  }
  assert.match(r.stderr, /4 problems:/);
});

test('a list or a mapping where a number belongs is named as such, not by a table address', (t) => {
  const env = newEnv(t);
  const dir = env.project('a');
  env.writeConfig(`agents:\n  a:\n    directory: ${dir}\n    warm: [1]\n    timeout: {n: 1}\n` +
    `    permissions: {relay: [true]}\n`);
  const r = env.run(['list']);
  assert.strictEqual(r.code, 1);
  assert.ok(r.stderr.includes('agents.a.warm: expected an integer, got a list'), r.stderr);
  assert.ok(r.stderr.includes('agents.a.timeout: expected an integer, got a mapping'), r.stderr);
  assert.ok(r.stderr.includes('agents.a.permissions.relay: expected true or false, got a list'), r.stderr);
  assert.doesNotMatch(r.stderr, /0x[0-9a-f]+/);
});

test('a change through the CLI reports the file\'s unknown keys too', (t) => {
  const env = newEnv(t);
  const dir = env.project('a');
  env.writeConfig(`agents:\n  a:\n    directory: ${dir}\n    permission_mod: plan\n`);
  const r = env.run(['update', 'a', '--timeout', '60']);
  ok(r);
  assert.match(r.stderr, /unknown key agents\.a\.permission_mod \(did you mean permission_mode\?\)/);
  assert.strictEqual(env.readConfig(), `agents:\n  a:\n    directory: ${dir}\n    permission_mod: plan\n    timeout: 60\n`);
});
