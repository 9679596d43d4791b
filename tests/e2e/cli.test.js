'use strict';
// The agent-dispatch command line (SPEC F70-F77, F83), end to end.
const { test, describe } = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const path = require('node:path');
const { newEnv, BIN } = require('./lib');

function ok(r, code = 0) {
  assert.strictEqual(r.code, code, `exit ${r.code}, want ${code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  assert.ok(!/traceback|stack traceback|internal error/i.test(r.stdout + r.stderr), r.stderr);
  return r;
}
const out = (r) => r.stdout + r.stderr;

describe('global behavior', () => {
  test('--version prints the version; --help and no args', (t) => {
    const env = newEnv(t);
    const v = ok(env.run(['--version']));
    assert.match(v.stdout, /^agent-dispatch \d+\.\d+\.\d+\ncommit /);
    const h = ok(env.run(['--help']));
    for (const c of ['serve', 'init', 'add', 'update', 'remove', 'list', 'describe', 'test', 'group', 'run']) {
      assert.match(h.stdout, new RegExp(`^\\s+${c}\\s`, 'm'), c);
    }
    ok(env.run([]), 2);
  });

  test('--help works on every command and group subcommand', (t) => {
    const env = newEnv(t);
    const cmds = [['serve'], ['init'], ['add'], ['update'], ['remove'], ['list'], ['describe'], ['test'],
      ['run'], ['group'], ['group', 'add'], ['group', 'list'], ['group', 'inspect'], ['group', 'update'],
      ['group', 'remove']];
    for (const c of cmds) {
      const r = ok(env.run([...c, '--help']));
      assert.match(r.stdout, /Usage: agent-dispatch/, c.join(' '));
    }
    const add = env.run(['add', '--help']);
    for (const f of ['--description', '--timeout', '--model', '--max-budget', '--max-budget-usd',
      '--permission-mode', '--allowed-tools', '--disallowed-tools', '--capabilities', '--risky-capabilities']) {
      assert.ok(add.stdout.includes(f), f);
    }
    assert.ok(!fs.existsSync(env.config), '--help must not create the config');
  });

  test('usage errors exit 2', (t) => {
    const env = newEnv(t);
    const dir = env.project('p');
    ok(env.run(['nosuchcommand']), 2);
    ok(env.run(['list', '--bogus']), 2);
    ok(env.run(['add', 'onlyname']), 2);
    ok(env.run(['add', 'x', path.join(env.root, 'missing')]), 2);
    ok(env.run(['add', 'x', dir, '--timeout', 'abc']), 2);
    ok(env.run(['add', 'x', dir, '--timeout']), 2);
    ok(env.run(['remove']), 2);
    ok(env.run(['group', 'nosuch']), 2);
    assert.ok(!fs.existsSync(env.config));
  });
});

describe('agents', () => {
  test('add: success message, auto description, stored fields', (t) => {
    const env = newEnv(t);
    const dir = env.project('api', { 'CLAUDE.md': '# API\nThe public REST API\n' });
    let r = ok(env.run(['add', 'api', dir]));
    assert.match(r.stdout, /Auto-generated description: The public REST API/);
    assert.ok(r.stdout.includes(`Added agent 'api' -> ${dir}`));
    assert.strictEqual(fs.statSync(env.config).mode & 0o777, 0o600);
    assert.strictEqual(fs.statSync(env.cfgDir).mode & 0o777, 0o700);
    r = ok(env.run(['add', 'w', dir, '-d', 'Worker', '--timeout', '600', '--model', 'sonnet', '--max-budget', '1.5',
      '--permission-mode', 'bypassPermissions', '--allowed-tools', 'Bash,Read', '--disallowed-tools', 'Write',
      '--capabilities', 'docker_logs', '--risky-capabilities', 'restart_services']));
    assert.ok(!r.stdout.includes('Auto-generated'));
    ok(env.run(['add', 'w2', dir, '--max-budget-usd', '2.5']));
    ok(env.run(['add', 'w3', dir, '-d', 'x', '--max-budget', '2']));
    const y = env.readConfig();
    for (const s of ['timeout: 600', 'model: sonnet', 'max_budget_usd: 1.5', 'permission_mode: bypassPermissions',
      'max_budget_usd: 2.5', 'docker_logs', 'restart_services']) assert.ok(y.includes(s), s);
    // list shows it all
    const l = ok(env.run(['list']));
    for (const s of ['  api [OK]', `    dir:  ${dir}`, '    desc: The public REST API', '  w [OK]',
      '    config: timeout=600s, model=sonnet, budget=$1.5', '    permission_mode: bypassPermissions',
      '    allowed_tools: Bash, Read', '    disallowed_tools: Write', '    capabilities: docker_logs',
      '    risky_capabilities: restart_services', '    config: budget=$2.0\n']) assert.ok(l.stdout.includes(s), s);
    const apiBlock = l.stdout.split('\n\n')[0];
    assert.ok(!apiBlock.includes('config:') && !apiBlock.includes('allowed_tools'), apiBlock);
  });

  test('add: validation failures exit 1 and write nothing', (t) => {
    const env = newEnv(t);
    const dir = env.project('p');
    let r = ok(env.run(['add', '--', '-bad', dir]), 1);
    assert.match(r.stderr, /Invalid agent name/);
    r = ok(env.run(['add', 'p', dir, '--timeout', '-5']), 1);
    assert.match(r.stderr, /--timeout/);
    r = ok(env.run(['add', 'p', dir, '--max-budget', '-1']), 1);
    assert.match(r.stderr, /--max-budget/);
    assert.ok(!fs.existsSync(env.config));
    ok(env.run(['add', 'p', dir, '-d', 'x']));
    r = ok(env.run(['add', 'p', dir, '-d', 'y']), 1);
    assert.match(out(r), /Agent 'p' already exists/);
    r = ok(env.run(['add', 'q', dir, '-d', 'x', '--permission-mode', 'yolo']), 2);
    assert.match(r.stderr, /Invalid value for --permission-mode: 'yolo'/);
    assert.doesNotMatch(env.readConfig(), /yolo/);
  });

  test('update: fields, none/empty clearing, errors keep the config', (t) => {
    const env = newEnv(t);
    const dir = env.project('p');
    ok(env.run(['add', 'p', dir, '-d', 'x', '--allowed-tools', 'Bash', '--capabilities', 'a,b']));
    let r = ok(env.run(['update', 'p', '--permission-mode', 'plan', '--max-budget', '2.5']));
    assert.match(r.stdout, /Updated agent 'p': max_budget_usd, permission_mode/);
    assert.match(env.readConfig(), /max_budget_usd: 2\.5/);
    ok(env.run(['update', 'p', '--max-budget', '0', '--permission-mode', 'none', '--allowed-tools', '',
      '--capabilities', 'none', '--model', '']));
    const y = env.readConfig();
    assert.ok(!/\n    (max_budget_usd|permission_mode|allowed_tools|capabilities|model):/.test(y), y);
    const before = env.readConfig();
    r = ok(env.run(['update', 'p', '--timeout', '-1']), 1);
    assert.match(r.stderr, /--timeout/);
    r = ok(env.run(['update', 'p', '--max-budget', '-2']), 1);
    assert.match(r.stderr, /--max-budget/);
    r = ok(env.run(['update', 'p']), 1);
    assert.match(r.stderr, /Nothing to update/);
    r = ok(env.run(['update', 'zz', '-d', 'x']), 1);
    assert.match(r.stderr, /Agent 'zz' not found/);
    assert.strictEqual(env.readConfig(), before);
    r = ok(env.run(['update', 'p', '--permission-mode', 'yolo']), 2);
    assert.match(r.stderr, /Invalid value for --permission-mode/);
    assert.strictEqual(env.readConfig(), before);
    ok(env.run(['update', 'p', '--max-budget-usd', '2.0']));
    assert.match(env.readConfig(), /max_budget_usd: 2(\.0)?\n/);
  });

  test('remove and list', (t) => {
    const env = newEnv(t);
    let r = ok(env.run(['list']));
    assert.match(r.stdout, /No agents configured\. Run: agent-dispatch add <name> <directory>/);
    const dir = env.project('p');
    ok(env.run(['add', 'p', dir, '-d', 'x']));
    r = ok(env.run(['remove', 'p']));
    assert.match(r.stdout, /Removed agent 'p'\./);
    r = ok(env.run(['remove', 'p']), 1);
    assert.match(r.stderr, /Agent 'p' not found\./);
    // explicit [] and missing directory
    env.setup({ agents: { e: { allowed_tools: [], disallowed_tools: [] }, gone: { directory: path.join(env.root, 'nope') } } });
    r = ok(env.run(['list']));
    assert.match(r.stdout, /allowed_tools: \(none\)/);
    assert.match(r.stdout, /disallowed_tools: \(none\)/);
    assert.match(r.stdout, /gone \[NOT FOUND\]/);
  });

  test('describe: details, padding, tri-state lists, project files, errors', (t) => {
    const env = newEnv(t);
    const dir = env.project('d', { 'CLAUDE.md': 'x', 'README.md': 'y', '.mcp.json': '{}' });
    env.setup({ agents: {
      d: { directory: dir, description: 'Desc here', timeout: 600, model: 'sonnet', max_budget_usd: 1.5,
        permission_mode: 'bypassPermissions', allowed_tools: ['Bash', 'Read'], disallowed_tools: [],
        capabilities: ['docker_logs'], risky_capabilities: ['restart_services'] },
      gone: { directory: path.join(env.root, 'nope') },
    } });
    const r = ok(env.run(['describe', 'd']));
    for (const s of ['d [OK]', 'Desc here', '600s', 'sonnet', '$1.5', 'bypassPermissions', 'Bash, Read',
      'capabilities:     docker_logs', 'risky_caps:       restart_services', '(none — explicit override)',
      'CLAUDE.md', '.mcp.json', 'README.md']) assert.ok(r.stdout.includes(s), s);
    const g = ok(env.run(['describe', 'gone']));
    assert.match(g.stdout, /NOT FOUND/);
    assert.match(g.stdout, /\(inherit defaults\)/);
    const u = ok(env.run(['describe', 'zz']), 1);
    assert.match(u.stderr, /not found/);
  });

  test('config load errors: message, exit 1, file untouched', (t) => {
    const env = newEnv(t);
    const dir = env.project('p');
    const cases = [
      ['agents:\n  a:\n    directory: 123\n', /has an invalid schema:/],
      ['agents: 42\n', /has an invalid schema:/],
      ['agents:\n  a: [unclosed\n', /is not valid YAML:/],
      [Buffer.from(`agents:\n  a:\n    directory: "${dir}"\n    description: "\xcf\xf0\xe8"\n`, 'latin1'), /is not valid UTF-8/],
    ];
    for (const [content, re] of cases) {
      env.writeConfig(content);
      const before = fs.readFileSync(env.config);
      for (const args of [['list'], ['describe', 'a'], ['add', 'n', dir, '-d', 'x'], ['update', 'a', '-d', 'y'],
        ['remove', 'a'], ['group', 'list'], ['group', 'add', 'g'], ['test', 'a']]) {
        const r = ok(env.run(args), 1);
        assert.ok(r.stderr.includes(`Error: config at ${env.config} `), `${args}: ${r.stderr}`);
        assert.match(r.stderr, re, args.join(' '));
      }
      assert.ok(before.equals(fs.readFileSync(env.config)), 'config file changed');
    }
    assert.strictEqual(env.dispatches().length, 0);
  });
});

describe('groups', () => {
  test('group add/list/inspect/update/remove', (t) => {
    const env = newEnv(t);
    ok(env.run(['add', 'api', env.project('api'), '-d', 'a']));
    ok(env.run(['add', 'web', env.project('web'), '-d', 'w']));
    let r = ok(env.run(['group', 'list']));
    assert.match(r.stdout, /No groups configured\. Run: agent-dispatch group add <name> --member <agent>/);
    r = ok(env.run(['group', 'add', 'shop', '-d', 'The shop', '--shared-context', 'EUR only',
      '--member', 'web', '--member', 'api']));
    assert.match(r.stdout, /Added group 'shop' \(2 member\(s\)\)\./);
    assert.match(env.readConfig(), /members:\n\s+- agent: web\n\s+- agent: api/);
    r = ok(env.run(['group', 'list']));
    for (const s of ['  shop (2 member(s))', '    desc: The shop', '    members: web, api', '    shared context: yes']) {
      assert.ok(r.stdout.includes(s), s);
    }
    r = ok(env.run(['group', 'add', 'shop', '--member', 'api']), 1);
    assert.match(out(r), /Group 'shop' already exists/);
    const before = env.readConfig();
    r = ok(env.run(['group', 'add', 'g2', '--member', 'ghost']), 1);
    assert.match(r.stderr, /agent 'ghost' not found/);
    r = ok(env.run(['group', 'add', '--', '-bad']), 1);
    assert.match(r.stderr, /Invalid group name/);
    assert.strictEqual(env.readConfig(), before);
    r = ok(env.run(['group', 'add', 'lonely']));
    assert.match(out(r), /no members/);
    r = ok(env.run(['group', 'inspect', 'shop']));
    assert.match(r.stdout, /EUR only/);
    assert.match(r.stdout, /members \(2\):\n\s+- web\n\s+- api/);
    r = ok(env.run(['group', 'inspect', 'nope']), 1);
    assert.match(r.stderr, /Group 'nope' not found/);
    r = ok(env.run(['group', 'update', 'shop', '--shared-context', 'new facts']));
    assert.match(r.stdout, /Updated group 'shop': shared_context/);
    assert.match(env.readConfig(), /shared_context: new facts/);
    ok(env.run(['group', 'update', 'shop', '--shared-context', '']));
    r = ok(env.run(['group', 'list']));
    assert.match(r.stdout, /shop \(2 member\(s\)\)[\s\S]*shared context: no/);
    r = ok(env.run(['group', 'update', 'shop']), 1);
    assert.match(r.stderr, /Nothing to update/);
    r = ok(env.run(['group', 'remove', 'shop']));
    assert.match(r.stdout, /Removed group 'shop'\./);
    r = ok(env.run(['group', 'remove', 'shop']), 1);
    assert.match(r.stderr, /Group 'shop' not found\./);
    r = ok(env.run(['list']));
    assert.match(r.stdout, /api \[OK\]/);
    // a removed agent shows up as unknown in the group listing
    ok(env.run(['group', 'add', 'pair', '--member', 'web']));
    ok(env.run(['remove', 'web']));
    r = ok(env.run(['group', 'list']));
    assert.match(r.stdout, /members: web\(unknown\)/);
  });
});

describe('init', () => {
  test('init with the stub claude creates the config and registers once', (t) => {
    const env = newEnv(t);
    let r = ok(env.run(['init']));
    assert.ok(r.stdout.includes(`Created config: ${env.config}`));
    assert.match(r.stdout, /Registered MCP server with Claude Code \(user scope\)\./);
    assert.strictEqual(fs.statSync(env.config).mode & 0o777, 0o600);
    assert.match(env.readConfig(), /settings:/);
    const calls = env.stubLog();
    assert.strictEqual(calls.length, 1);
    const a = calls[0].argv;
    assert.deepStrictEqual(a.slice(1, 4), ['mcp', 'add-json', 'agent-dispatch']);
    assert.deepStrictEqual(a.slice(5), ['--scope', 'user']);
    const spec = JSON.parse(a[4]);
    assert.strictEqual(spec.type, 'stdio');
    assert.strictEqual(spec.command, fs.realpathSync(BIN));
    assert.deepStrictEqual(spec.args, ['serve']);
    // list of the stub now has it; a second init keeps the config
    r = ok(env.run(['init']));
    assert.match(r.stdout, /Config already exists/);
    assert.ok(!/Created config/.test(r.stdout));
  });

  test('init without claude on PATH warns and exits 0', (t) => {
    const env = newEnv(t);
    const r = ok(env.run(['init'], { env: { PATH: env.pathWithoutClaude() } }));
    assert.match(r.stdout, /Created config/);
    assert.match(r.stderr, /claude CLI not found/);
    assert.ok(fs.existsSync(env.config));
  });
});

describe('test command', () => {
  test('success prints the answer and the cost', (t) => {
    const env = newEnv(t);
    const dirs = env.setup({ agents: { a: true } });
    let r = ok(env.run(['test', 'a', 'hello there']));
    assert.ok(r.stdout.includes(`Dispatching to 'a' (${dirs.a})...`));
    assert.match(r.stdout, /Task: hello there\n---\nstub ok: hello there\n/);
    assert.match(r.stdout, /--- Cost: \$0\.0012 \| Turns: 1/);
    r = ok(env.run(['test', 'a', 'look [stub:deny=Bash]']));
    assert.match(r.stdout, /\n\nNote: 1 tool call\(s\) were denied by permissions \(Bash\)/);
    r = ok(env.run(['test', 'a']));
    assert.match(r.stdout, /What project is this\? Describe in one sentence\./);
    r = ok(env.run(['test', 'zz']), 1);
    assert.match(r.stderr, /not found/);
    const p = promptOf(env.dispatches()[0]);
    assert.strictEqual(p, 'hello there'); // no caller/goal/context from `test`
  });

  test('--stream prints progress on stderr and uses stream-json', (t) => {
    const env = newEnv(t);
    env.setup({ agents: { a: true } });
    const r = ok(env.run(['test', 'a', 'go [stub:progress=2] [stub:tool=Read]', '--stream']));
    assert.match(r.stderr, /  -> progress 1\/2/);
    assert.match(r.stderr, /  -> Using tool: Read/);
    assert.match(r.stdout, /stub ok: go/);
    const e = env.dispatches()[0];
    assert.ok(e.argv.includes('stream-json') && e.argv.includes('--verbose'));
    const plain = ok(env.run(['test', 'a', 'x']));
    assert.ok(!plain.stderr.includes('->'));
    const p1 = env.dispatches()[1];
    assert.ok(p1.argv.includes(p1.argv.includes('--input-format') ? 'stream-json' : 'json')); // live: stream-json both ways
  });

  test('diagnoses permission, timeout and budget failures (exit 1)', (t) => {
    const env = newEnv(t);
    env.setup({ agents: { a: { max_budget_usd: 0.25 }, slow: { timeout: 1 } } });
    let r = ok(env.run(['test', 'a', 'x [stub:no_result] [stub:exit=1] [stub:stderr=permission denied]']), 1);
    assert.match(r.stderr, /Diagnosis: permission error/);
    assert.match(r.stderr, /agent-dispatch update a --permission-mode bypassPermissions/);
    r = ok(env.run(['test', 'slow', 'x [stub:hang]']), 1);
    assert.match(r.stderr, /Diagnosis: timeout/);
    assert.match(r.stderr, /agent-dispatch test slow --timeout 2 .*\n.*agent-dispatch update slow --timeout 2 /);
    r = ok(env.run(['test', 'a', 'x [stub:budget]']), 1);
    assert.match(r.stderr, /Diagnosis: spend cap reached/);
    assert.match(r.stderr, /--max-budget-usd/);
    // every --flag the budget hint names is a real `update` flag
    const flags = [...new Set(r.stderr.match(/agent-dispatch update a (--[a-z-]+ \S+)/g))];
    assert.ok(flags.length >= 1);
    for (const f of flags) {
      const [, flag, value] = f.match(/(--[a-z-]+) (\S+)/);
      ok(env.run(['update', 'a', flag, value.replace(/[,.]$/, '')]));
    }
  });

  test('--timeout is a one-off override and is not saved', (t) => {
    const env = newEnv(t);
    env.setup({ agents: { slow: { timeout: 1 } } });
    const r = ok(env.run(['test', 'slow', 'x [stub:sleep=1.5]', '--timeout', '5']));
    assert.match(r.stdout, /stub ok: x/);
    assert.match(env.readConfig(), /timeout: 1\n/);
  });
});

function promptOf(entry) {
  return entry.prompt;
}
