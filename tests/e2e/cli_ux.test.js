'use strict';
// The command line as a person uses it: --json output of the read
// commands, job id prefixes, group membership edits, remove and the groups
// it touches, did-you-mean, help for every option, permission modes checked
// where they are set, and timeout advice in the CLI's own terms.
const { test, describe } = require('node:test');
const assert = require('node:assert');
const { newEnv } = require('./lib');

function ok(r, code = 0) {
  assert.strictEqual(r.code, code, `exit ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  return r;
}

/** stdout parsed as JSON (the whole of it: nothing else may be printed there). */
function parsed(r) {
  try {
    return JSON.parse(r.stdout);
  } catch (e) {
    assert.fail(`stdout is not JSON (${e.message}): ${r.stdout}`);
  }
}

/** Two agents, one group, and n finished jobs created through the MCP server. */
async function withJobs(t, n) {
  const env = newEnv(t);
  env.setup({ agents: { a: true } });
  const srv = env.serve();
  await srv.init();
  const ids = [];
  for (let i = 0; i < n; i++) {
    const { value } = await srv.call('dispatch_async', { agent: 'a', task: `job ${i} [stub:reply=answer ${i}]` });
    ids.push(value.job_id);
    await srv.call('dispatch_wait', { job_id: value.job_id, timeout_seconds: 20 }, { ms: 25000 });
  }
  await srv.close();
  return { env, ids };
}

describe('--json output', () => {
  test('list and describe --json print the agents as JSON on stdout', (t) => {
    const env = newEnv(t);
    const dirs = env.setup({ agents: { web: { description: 'The web', timeout: 120, permission_mode: 'plan',
      allowed_tools: ['Read'] }, api: true } });
    let r = ok(env.run(['list', '--json']));
    const list = parsed(r);
    assert.ok(Array.isArray(list));
    assert.deepStrictEqual(list.map((a) => a.name), ['web', 'api']);
    const web = list[0];
    assert.strictEqual(web.directory, dirs.web);
    assert.strictEqual(web.health, 'ok');
    assert.strictEqual(web.description, 'The web');
    assert.strictEqual(web.timeout, 120);
    assert.strictEqual(web.permission_mode, 'plan');
    assert.deepStrictEqual(web.allowed_tools, ['Read']);
    assert.strictEqual(web.disallowed_tools, null);
    assert.deepStrictEqual(web.capabilities, []);
    r = ok(env.run(['describe', 'web', '--json']));
    const d = parsed(r);
    assert.strictEqual(d.name, 'web');
    assert.strictEqual(d.timeout, 120);
    assert.strictEqual(d.model, null);
    assert.deepStrictEqual(d.project_files, []);
    // An empty config is an empty array, not a sentence.
    env.writeConfig('agents: {}\n');
    assert.deepStrictEqual(parsed(ok(env.run(['list', '--json']))), []);
  });

  test('group list and group inspect --json', (t) => {
    const env = newEnv(t);
    env.setup({ agents: { web: true, api: true },
      groups: '  shop:\n    description: The shop\n    shared_context: EUR only\n' +
        '    members:\n      - agent: web\n        use_for: pages\n      - agent: ghost\n' });
    const list = parsed(ok(env.run(['group', 'list', '--json'])));
    assert.strictEqual(list.length, 1);
    assert.strictEqual(list[0].name, 'shop');
    assert.strictEqual(list[0].description, 'The shop');
    assert.strictEqual(list[0].shared_context, 'EUR only');
    assert.deepStrictEqual(list[0].members, [{ agent: 'web', use_for: 'pages', known: true },
      { agent: 'ghost', use_for: '', known: false }]);
    const g = parsed(ok(env.run(['group', 'inspect', 'shop', '--json'])));
    assert.deepStrictEqual(g, list[0]);
    env.writeConfig('agents: {}\n');
    assert.deepStrictEqual(parsed(ok(env.run(['group', 'list', '--json']))), []);
  });

  test('jobs --json and job --json; jobs has a header; success is true, not True', async (t) => {
    const { env, ids } = await withJobs(t, 2);
    let r = ok(env.run(['jobs']));
    const lines = r.stdout.trim().split('\n');
    assert.match(lines[0], /^ID\s+STATUS\s+AGENT\s+AGE\s+TASK$/);
    assert.strictEqual(lines.length, 3);
    const list = parsed(ok(env.run(['jobs', '--json'])));
    assert.deepStrictEqual(list.map((j) => j.id).sort(), [...ids].sort());
    for (const j of list) {
      assert.strictEqual(j.status, 'done');
      assert.strictEqual(j.agent, 'a');
      assert.strictEqual(typeof j.created_at, 'number');
    }
    assert.deepStrictEqual(parsed(ok(env.run(['jobs', '--json', '--status', 'failed']))), []);
    const one = parsed(ok(env.run(['job', ids[0], '--json'])));
    assert.strictEqual(one.id, ids[0]);
    assert.strictEqual(one.result.success, true);
    assert.strictEqual(one.result.result, 'answer 0');
    r = ok(env.run(['job', ids[0]]));
    assert.match(r.stdout, /success: +true/);
    assert.doesNotMatch(r.stdout, /True|False|None/);
  });
});

describe('job id prefixes', () => {
  test('job and cancel take a unique prefix', async (t) => {
    const { env, ids } = await withJobs(t, 2);
    // Twelve hex digits of a random id tell it apart from the other one.
    const unique = ids[0].slice(0, 12);
    let r = ok(env.run(['job', unique]));
    assert.ok(r.stdout.startsWith(`${ids[0]} [done]`), r.stdout);
    r = ok(env.run(['job', unique.toUpperCase()]));
    assert.ok(r.stdout.startsWith(`${ids[0]} [done]`), r.stdout);
    r = ok(env.run(['cancel', unique]));
    assert.match(r.stdout, /Job already done; nothing to cancel\./);
    const none = ids.some((id) => id.startsWith('fffff')) ? '00000' : 'fffff';
    r = ok(env.run(['job', none]), 1);
    assert.match(r.stderr, new RegExp(`No job id starts with '${none}'`));
    r = ok(env.run(['job', 'xyz']), 1);
    assert.match(r.stderr, /Invalid job id: 'xyz'/);
  });

  test('an ambiguous prefix names every candidate', async (t) => {
    const { env, ids } = await withJobs(t, 1);
    // A second record file whose id shares the first 8 characters.
    const fs = require('node:fs');
    const path = require('node:path');
    const other = ids[0].slice(0, 8) + (ids[0][8] === '0' ? '1' : '0') + ids[0].slice(9);
    const rec = JSON.parse(fs.readFileSync(path.join(env.jobs, `${ids[0]}.json`), 'utf8'));
    rec.id = other;
    fs.writeFileSync(path.join(env.jobs, `${other}.json`), JSON.stringify(rec), { mode: 0o600 });
    const r = ok(env.run(['job', ids[0].slice(0, 8)]), 1);
    assert.match(r.stderr, /ambiguous/i);
    assert.ok(r.stderr.includes(ids[0]) && r.stderr.includes(other), r.stderr);
    ok(env.run(['job', ids[0].slice(0, 9)]));
    ok(env.run(['cancel', ids[0].slice(0, 8)]), 1);
  });
});

describe('group membership and remove', () => {
  test('group update --add-member / --remove-member', (t) => {
    const env = newEnv(t);
    env.setup({ agents: { web: true, api: true, db: true },
      groups: '  shop:\n    members:\n      - agent: web\n' });
    let r = ok(env.run(['group', 'update', 'shop', '--add-member', 'api', '--add-member', 'db',
      '--remove-member', 'web']));
    assert.match(r.stdout, /Updated group 'shop': members/);
    let g = parsed(ok(env.run(['group', 'inspect', 'shop', '--json'])));
    assert.deepStrictEqual(g.members.map((m) => m.agent), ['api', 'db']);
    const before = env.readConfig();
    r = ok(env.run(['group', 'update', 'shop', '--add-member', 'ghost']), 1);
    assert.match(r.stderr, /agent 'ghost' not found/);
    r = ok(env.run(['group', 'update', 'shop', '--remove-member', 'web']), 1);
    assert.match(r.stderr, /'web' is not a member of group 'shop'/);
    r = ok(env.run(['group', 'update', 'shop', '--add-member', 'api']), 1);
    assert.match(r.stderr, /'api' is already a member of group 'shop'/);
    assert.strictEqual(env.readConfig(), before);
    // A dangling member (its agent is gone) can be removed.
    env.setup({ agents: { web: true }, groups: '  shop:\n    members:\n      - agent: gone\n      - agent: web\n' });
    ok(env.run(['group', 'update', 'shop', '--remove-member', 'gone']));
    g = parsed(ok(env.run(['group', 'inspect', 'shop', '--json'])));
    assert.deepStrictEqual(g.members.map((m) => m.agent), ['web']);
  });

  test('remove names the groups that lose the member; --force drops it from them', (t) => {
    const env = newEnv(t);
    env.setup({ agents: { web: true, api: true },
      groups: '  shop:\n    members:\n      - agent: web\n      - agent: api\n' +
        '  site:\n    members:\n      - agent: web\n  other:\n    members:\n      - agent: api\n' });
    let r = ok(env.run(['remove', 'web']));
    assert.match(r.stdout, /Removed agent 'web'\./);
    assert.match(r.stderr, /groups shop, site still name 'web'/);
    assert.ok(r.stderr.includes('agent-dispatch group update shop --remove-member web'), r.stderr);
    assert.ok(r.stderr.includes('agent-dispatch group update site --remove-member web'), r.stderr);
    let groups = parsed(ok(env.run(['group', 'list', '--json'])));
    assert.deepStrictEqual(groups[0].members.map((m) => m.agent), ['web', 'api']);
    r = ok(env.run(['remove', 'api', '--force']));
    assert.match(r.stdout, /Removed agent 'api' and its membership in groups shop, other\./);
    groups = parsed(ok(env.run(['group', 'list', '--json'])));
    assert.deepStrictEqual(groups.map((g) => [g.name, g.members.map((m) => m.agent)]),
      [['shop', ['web']], ['site', ['web']], ['other', []]]);
  });
});

describe('did you mean', () => {
  test('unknown commands, subcommands, options, agents and groups get a suggestion', (t) => {
    const env = newEnv(t);
    env.setup({ agents: { frontend: true }, groups: '  shop:\n    members:\n      - agent: frontend\n' });
    let r = ok(env.run(['lsit']), 2);
    assert.match(r.stderr, /No such command 'lsit'\. Did you mean 'list'\?/);
    r = ok(env.run(['group', 'inspcet', 'shop']), 2);
    assert.match(r.stderr, /No such command 'inspcet'\. Did you mean 'inspect'\?/);
    r = ok(env.run(['update', 'frontend', '--permision-mode', 'plan']), 2);
    assert.match(r.stderr, /No such option: --permision-mode\. Did you mean --permission-mode\?/);
    r = ok(env.run(['describe', 'frontnd']), 1);
    assert.match(r.stderr, /Agent 'frontnd' not found\. Did you mean 'frontend'\?/);
    r = ok(env.run(['group', 'inspect', 'shp']), 1);
    assert.match(r.stderr, /Group 'shp' not found\. Did you mean 'shop'\?/);
    r = ok(env.run(['lua', 'lsit']), 2);
    assert.match(r.stderr, /Did you mean 'list'\?/);
    // Nothing close: no suggestion, the listing hint stays.
    r = ok(env.run(['describe', 'zzzzzzzz']), 1);
    assert.doesNotMatch(r.stderr, /Did you mean/);
    assert.match(r.stderr, /Run 'agent-dispatch list' to see agents\./);
  });
});

describe('help', () => {
  /** Command paths from the top-level and group help. */
  function commandPaths(env) {
    const top = ok(env.run(['--help'])).stdout;
    const names = [...top.split('Commands:')[1].matchAll(/^ {2}([a-z]+) /gm)].map((m) => m[1]);
    const paths = [];
    for (const n of names) {
      if (n === 'group') {
        const g = ok(env.run(['group', '--help'])).stdout;
        for (const m of g.split('Commands:')[1].matchAll(/^ {2}([a-z]+) /gm)) paths.push(['group', m[1]]);
      } else {
        paths.push([n]);
      }
    }
    return paths;
  }

  test('every option of every command has a line of help', (t) => {
    const env = newEnv(t);
    const paths = commandPaths(env);
    assert.ok(paths.length >= 20, paths.join(' '));
    for (const p of paths) {
      const h = ok(env.run([...p, '--help'])).stdout;
      const usage = h.split('\n')[0];
      // Every --option the usage line mentions is described.
      for (const m of usage.matchAll(/--[a-z][a-z-]*/g)) {
        assert.match(h, new RegExp(`^ {2}(-[a-zA-Z], )?${m[0]}\\b`, 'm'), `${p.join(' ')}: ${m[0]} has no line`);
      }
      if (h.includes('Options:')) {
        for (const line of h.split('Options:')[1].split('\n').filter((l) => /^ {2}-/.test(l))) {
          assert.match(line, /^ {2}\S.*\S {2,}\S/, `${p.join(' ')}: option without a description: ${line}`);
        }
      }
    }
  });

  test('help CMD shows the command help; run --help explains --json and --timeout', (t) => {
    const env = newEnv(t);
    let r = ok(env.run(['help', 'add']));
    assert.strictEqual(r.stdout, ok(env.run(['add', '--help'])).stdout);
    r = ok(env.run(['help', 'group', 'update']));
    assert.strictEqual(r.stdout, ok(env.run(['group', 'update', '--help'])).stdout);
    r = ok(env.run(['help', 'group']));
    assert.strictEqual(r.stdout, ok(env.run(['group', '--help'])).stdout);
    r = ok(env.run(['help', 'lsit']), 2);
    assert.match(r.stderr, /No such command 'lsit'\. Did you mean 'list'\?/);
    r = ok(env.run(['run', '--help']));
    assert.match(r.stdout, /^ {2}--json +\S/m);
    assert.match(r.stdout, /^ {2}--timeout SECONDS +\S/m);
  });

  test('lua without a module or with an unknown action says what to do', (t) => {
    const env = newEnv(t);
    let r = ok(env.run(['lua', 'cat']), 2);
    assert.match(r.stderr, /lua cat needs a module name/);
    assert.match(r.stderr, /agent-dispatch lua list/);
    r = ok(env.run(['lua', 'cat', 'ad.nope']), 1);
    assert.match(r.stderr, /no embedded module 'ad\.nope'/);
    assert.match(r.stderr, /agent-dispatch lua list/);
    // A module named without its layer folder: the hint names it in full,
    // and the name the hint for no module gives is one that exists.
    r = ok(env.run(['lua', 'cat', 'ad.aggregate']), 1);
    assert.match(r.stderr, /Did you mean 'ad\.domain\.aggregate'\?/);
    r = ok(env.run(['lua', 'cat']), 2);
    const named = /e\.g\. 'agent-dispatch lua cat ([\w.]+)'/.exec(r.stderr)[1];
    r = ok(env.run(['lua', 'cat', named]));
    assert.match(r.stdout, /local/);
    r = ok(env.run(['lua', 'frob']), 2);
    assert.match(r.stderr, /unknown action 'frob'/);
    assert.match(r.stderr, /list, path, cat MODULE or tools/);
    assert.doesNotMatch(r.stderr, /None|nil|traceback/);
  });
});

describe('permission modes', () => {
  test('add and update reject a permission mode claude would reject, with a suggestion', (t) => {
    const env = newEnv(t);
    const dir = env.project('p');
    env.writeConfig('agents: {}\n');
    let r = ok(env.run(['add', 'a', dir, '-d', 'x', '--permission-mode', 'bypasspermissions']), 2);
    assert.match(r.stderr, /Invalid value for --permission-mode: 'bypasspermissions'/);
    assert.match(r.stderr, /Did you mean 'bypassPermissions'\?/);
    assert.strictEqual(env.readConfig(), 'agents: {}\n');
    for (const m of ['default', 'plan', 'acceptEdits', 'bypassPermissions', 'dontAsk', 'auto', 'manual']) {
      ok(env.run(['add', `a-${m}`, dir, '-d', 'x', '--permission-mode', m]));
    }
    ok(env.run(['add', 'b', dir, '-d', 'x', '--permission-mode', 'none']));
    const before = env.readConfig();
    r = ok(env.run(['update', 'b', '--permission-mode', 'yolo']), 2);
    assert.match(r.stderr, /Invalid value for --permission-mode: 'yolo'/);
    assert.match(r.stderr, /acceptEdits/);
    assert.strictEqual(env.readConfig(), before);
    ok(env.run(['update', 'b', '--permission-mode', 'plan']));
  });

  test('add_agent and update_agent reject an unknown permission mode', async (t) => {
    const env = newEnv(t);
    const dir = env.project('p');
    env.writeConfig('agents: {}\n');
    const srv = env.serve();
    await srv.init();
    let r = await srv.call('add_agent', { name: 'a', directory: dir, description: 'x', permission_mode: 'Plan ' });
    assert.ok(r.isError, JSON.stringify(r));
    assert.match(r.value.error, /permission_mode 'Plan ' is not one of .*plan/);
    assert.match(r.value.error, /Did you mean 'plan'\?/);
    assert.strictEqual(env.readConfig(), 'agents: {}\n');
    r = await srv.call('add_agent', { name: 'a', directory: dir, description: 'x', permission_mode: 'plan' });
    assert.ok(!r.isError, JSON.stringify(r));
    const before = env.readConfig();
    r = await srv.call('update_agent', { name: 'a', permission_mode: 'accept' });
    assert.ok(r.isError, JSON.stringify(r));
    assert.match(r.value.error, /permission_mode 'accept' is not one of/);
    assert.strictEqual(env.readConfig(), before);
    r = await srv.call('update_agent', { name: 'a', permission_mode: 'none' });
    assert.ok(!r.isError, JSON.stringify(r));
    await srv.close();
  });
});

describe('timeout advice', () => {
  test('test --timeout: the advice speaks CLI options with one consistent number', (t) => {
    const env = newEnv(t);
    env.setup({ agents: { a: { timeout: 300 } } });
    const r = ok(env.run(['test', 'a', 'slow [stub:sleep=30]', '--timeout', '1']), 1);
    assert.match(r.stderr, /Agent 'a' timed out after 1s\./);
    assert.doesNotMatch(r.stderr, /timeout_seconds|dispatch_async|dispatch_session\(/);
    assert.ok(r.stderr.includes('agent-dispatch test a --timeout 2'), r.stderr);
    assert.ok(r.stderr.includes('agent-dispatch update a --timeout 2'), r.stderr);
    assert.doesNotMatch(r.stderr, /--timeout 600/);
  });

  test('an async job that timed out: whole seconds in the advice, as a sync call gives them', async (t) => {
    const env = newEnv(t);
    // (timeout_seconds read from the request's JSON is a float: it came
    // out as "10.0s" and "--timeout 20.0")
    env.setup({ agents: { a: true } });
    const srv = env.serve();
    await srv.init();
    const { value } = await srv.call('dispatch_async', { agent: 'a', task: 'slow [stub:sleep=40]', timeout_seconds: 10 });
    const w = await srv.call('dispatch_wait', { job_id: value.job_id, timeout_seconds: 30 }, { ms: 35000 });
    await srv.close();
    assert.strictEqual(w.value.status, 'failed', JSON.stringify(w.value));
    const msg = w.value.error;
    assert.match(msg, /Agent 'a' timed out after 10s\./, msg);
    assert.match(msg, /timeout_seconds=20 /, msg);
    assert.ok(msg.includes('agent-dispatch update a --timeout 20.'), msg);
    assert.doesNotMatch(msg, /\d\.0\b/, msg);
  });

  test('dispatch --timeout: the same advice, in the same terms', (t) => {
    const env = newEnv(t);
    env.setup({ agents: { a: { timeout: 300 } } });
    const r = ok(env.run(['dispatch', 'a', 'slow [stub:sleep=30]', '--timeout', '1']), 1);
    assert.match(r.stderr, /Agent 'a' timed out after 1s\./);
    assert.doesNotMatch(r.stderr, /timeout_seconds|dispatch_async|dispatch_session\(/);
    assert.ok(r.stderr.includes('agent-dispatch dispatch a --timeout 2'), r.stderr);
    assert.ok(r.stderr.includes('agent-dispatch update a --timeout 2'), r.stderr);
  });
});
