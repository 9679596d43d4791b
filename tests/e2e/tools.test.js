'use strict';
// Every MCP tool of `agent-dispatch serve`, end to end with the stub claude.
const { test, describe } = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const path = require('node:path');
const { newEnv, sleep, alive, waitUntil, SANITIZED } = require('./lib');

const RESULT_ORDER = ['agent', 'success', 'result', 'session_id', 'cost_usd', 'duration_ms',
  'num_turns', 'error', 'error_type', 'parsed_result', 'denied_tools', 'hint', 'budget_exceeded', 'cached'];
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

/** Env + config + initialized legacy server: {env, srv, dirs}. */
async function start(t, cfg = { agents: { a: true } }, serverEnv = {}) {
  const env = newEnv(t);
  const dirs = cfg ? env.setup(cfg) : {};
  const srv = env.serve({ env: serverEnv });
  await srv.init();
  return { env, srv, dirs };
}

function assertKeyOrder(obj) {
  const keys = Object.keys(obj);
  const known = keys.filter((k) => RESULT_ORDER.includes(k));
  assert.deepStrictEqual(known, RESULT_ORDER.filter((k) => keys.includes(k)), `key order ${keys}`);
  for (const [k, v] of Object.entries(obj)) assert.notStrictEqual(v, null, `${k} is null`);
}

function promptOf(entry) {
  return entry.prompt;
}

function argAfter(entry, flag) {
  const i = entry.argv.indexOf(flag);
  return i >= 0 ? entry.argv[i + 1] : undefined;
}

describe('read-only tools', () => {
  test('list_agents: no agents -> envelope', async (t) => {
    const { srv } = await start(t, { agents: {} });
    const r = await srv.call('list_agents');
    assert.strictEqual(r.isError, true);
    assert.strictEqual(r.value.error, 'No agents configured. Run: agent-dispatch add <name> <directory>');
    await srv.close();
  });

  test('list_agents: fields, health, tri-state lists, introspection, raw Cyrillic', async (t) => {
    const env = newEnv(t);
    const full = env.project('full', { 'CLAUDE.md': '# T\nbackend\n', '.mcp.json': '{"mcpServers":{"postgres":{}}}',
      'Dockerfile': 'FROM x', 'pyproject.toml': '[project]\n', 'alembic.ini': '' });
    env.setup({ agents: {
      full: { directory: full, description: 'Бэкенд', permission_mode: 'plan', allowed_tools: ['Bash', 'Read'],
        disallowed_tools: [], capabilities: ['docker_logs'] },
      plain: true,
      gone: { directory: path.join(env.root, 'missing') },
    } });
    const srv = env.serve();
    await srv.init();
    const r = await srv.call('list_agents');
    assert.strictEqual(r.isError, false);
    assert.ok(r.text.includes('Бэкенд') && !r.text.includes('\\u0411'), 'Cyrillic must be raw UTF-8');
    const [f, p, g] = r.value;
    assert.deepStrictEqual(r.value.map((x) => x.name), ['full', 'plain', 'gone']);
    assert.strictEqual(f.directory, full);
    assert.strictEqual(f.healthy, true);
    assert.strictEqual(f.has_claude_md, true);
    assert.strictEqual(f.has_mcp_config, true);
    assert.deepStrictEqual(f.mcp_servers, ['postgres']);
    assert.deepStrictEqual(f.stacks, ['Docker', 'Python']);
    assert.deepStrictEqual(f.dbs, ['Alembic']);
    assert.strictEqual(f.permission_mode, 'plan');
    assert.deepStrictEqual(f.allowed_tools, ['Bash', 'Read']);
    assert.deepStrictEqual(f.disallowed_tools, []);
    assert.deepStrictEqual(f.capabilities, ['docker_logs']);
    for (const k of ['mcp_servers', 'stacks', 'dbs', 'permission_mode', 'allowed_tools', 'disallowed_tools',
      'capabilities', 'risky_capabilities', 'model', 'timeout']) {
      assert.ok(!(k in p), `plain agent has ${k}`);
    }
    assert.strictEqual(p.has_claude_md, false);
    assert.strictEqual(g.healthy, false);
    assert.strictEqual(g.has_claude_md, false);
    await srv.close();
  });

  test('inspect_agent: config, scan, previews, truncation, unknown and missing', async (t) => {
    const env = newEnv(t);
    const readme = Array.from({ length: 50 }, (_, i) => `readme line ${i}`).join('\n');
    const dir = env.project('x', { 'CLAUDE.md': 'Claude notes here\n', 'README.md': readme,
      '.mcp.json': '{"mcpServers":{"portainer":{}}}', 'requirements.txt': '' });
    env.setup({ agents: { x: { directory: dir, timeout: 120, model: 'sonnet', max_budget_usd: 1.5,
      risky_capabilities: ['restart_services'] }, gone: { directory: path.join(env.root, 'nope') } } });
    const srv = env.serve();
    await srv.init();
    let r = (await srv.call('inspect_agent', { name: 'x' })).value;
    assert.strictEqual(r.name, 'x');
    assert.strictEqual(r.timeout, 120);
    assert.strictEqual(r.model, 'sonnet');
    assert.strictEqual(r.max_budget_usd, 1.5);
    assert.deepStrictEqual(r.risky_capabilities, ['restart_services']);
    assert.strictEqual(r.healthy, true);
    assert.deepStrictEqual(r.mcp_servers, ['portainer']);
    assert.ok(r.stacks.includes('Python'));
    assert.deepStrictEqual(r.dbs, []);
    assert.strictEqual(r.has_readme, true);
    assert.match(r.claude_md_preview, /Claude notes here/);
    assert.strictEqual(r.readme_truncated, true);
    assert.strictEqual(r.readme_preview.split('\n').length, 40);
    r = (await srv.call('inspect_agent', { name: 'x', preview_lines: 0 })).value;
    assert.strictEqual(r.has_claude_md, true);
    assert.ok(!('claude_md_preview' in r) && !('readme_preview' in r));
    r = (await srv.call('inspect_agent', { name: 'gone' })).value;
    assert.strictEqual(r.healthy, false);
    assert.ok(!('mcp_servers' in r) && !('claude_md_preview' in r));
    const u = await srv.call('inspect_agent', { name: 'zzz' });
    assert.strictEqual(u.isError, true);
    assert.match(u.value.error, /^Unknown agent: 'zzz'\. Available: x, gone$/);
    await srv.close();
    assert.strictEqual(env.dispatches().length, 0, 'inspect_agent must never spawn claude');
  });

  test('list_groups / inspect_group: members, unknown members, shared context, errors', async (t) => {
    const groups = '  shop:\n    description: "The shop"\n    shared_context: "Prices in EUR"\n' +
      '    members:\n      - agent: a\n        use_for: "backend"\n      - agent: ghost\n' +
      '  empty:\n    description: ""\n';
    const { srv, dirs } = await start(t, { agents: { a: true }, groups });
    await srv.request('logging/setLevel', { level: 'info' });
    const l = (await srv.call('list_groups')).value;
    assert.deepStrictEqual(l.map((g) => g.name), ['shop', 'empty']);
    assert.strictEqual(l[0].description, 'The shop');
    assert.strictEqual(l[0].shared_context_present, true);
    assert.strictEqual(l[0].member_count, 2);
    assert.deepStrictEqual(l[0].members[0], { agent: 'a', use_for: 'backend', healthy: true });
    assert.deepStrictEqual(l[0].members[1], { agent: 'ghost', unknown: true });
    assert.strictEqual(l[1].shared_context_present, false);
    assert.ok(srv.notifications('notifications/message').length >= 1, 'list_groups emits an info log');
    const i = (await srv.call('inspect_group', { name: 'shop' })).value;
    assert.strictEqual(i.shared_context, 'Prices in EUR');
    assert.strictEqual(i.members[0].directory, dirs.a);
    assert.strictEqual(i.members[0].healthy, true);
    assert.strictEqual(i.members[1].unknown, true);
    assert.ok(!('directory' in i.members[1]));
    const u = await srv.call('inspect_group', { name: 'nope' });
    assert.match(u.value.error, /^Unknown group: 'nope'\. Available: shop, empty$/);
    await srv.close();
    const { srv: s2 } = await start(t, { agents: { a: true } });
    const n = await s2.call('list_groups');
    assert.strictEqual(n.value.error, 'No groups configured. Create one: agent-dispatch group add <name>');
    await s2.close();
  });
});

describe('dispatch', () => {
  test('DispatchResult fields, prompt sections, child cwd/env/stdin', async (t) => {
    const { env, srv, dirs } = await start(t);
    const r = await srv.call('dispatch', { agent: 'a', task: 'check logs', context: 'trace',
      caller: 'backend', goal: 'debug crash' });
    const v = r.value;
    assert.strictEqual(r.isError, false);
    assertKeyOrder(v);
    assert.strictEqual(v.agent, 'a');
    assert.strictEqual(v.success, true);
    assert.strictEqual(v.result, 'stub ok: check logs');
    assert.match(v.session_id, UUID);
    assert.strictEqual(v.cost_usd, 0.0012);
    assert.strictEqual(typeof v.duration_ms, 'number');
    assert.strictEqual(v.num_turns, 1);
    assert.ok(!('error_type' in v) && !('error' in v) && !('cached' in v));
    const [e] = env.dispatches();
    assert.strictEqual(promptOf(e), '## Goal\ndebug crash\n\n## Dispatched by\nbackend\n\n## Context\ntrace\n\n## Task\ncheck logs');
    assert.strictEqual(argAfter(e, '--output-format'), e.argv.includes('--input-format') ? 'stream-json' : 'json');
    assert.strictEqual(argAfter(e, '--session-id'), v.session_id);
    assert.ok(!e.argv.includes('--resume'));
    assert.strictEqual(e.cwd, dirs.a);
    assert.strictEqual(e.stdin_is_devnull, false); // the prompt arrives on a private pipe
    assert.ok(!e.argv.includes(promptOf(e)) && e.argv.at(-1) === '--');
    assert.deepStrictEqual(e.env, { AGENT_DISPATCH_DEPTH: '1' });
    // legacy form without caller/goal
    await srv.call('dispatch', { agent: 'a', task: 'fix bug', context: 'Error: NPE' });
    assert.strictEqual(promptOf(env.dispatches()[1]), 'Context:\nError: NPE\n\nTask:\nfix bug');
    await srv.close();
  });

  test('child env: AGENT_DISPATCH_DEPTH=1; Claude Code session variables are stripped', async (t) => {
    const { env, srv } = await start(t, { agents: { a: true } },
      { CLAUDECODE: '1', CLAUDE_CODE_SESSION_ID: 'parent-session', CLAUDE_CODE_ENTRYPOINT: 'cli' });
    const r = await srv.call('dispatch', { agent: 'a', task: 'env [stub:echo_env=CLAUDECODE]' });
    assert.strictEqual(r.value.result, '<unset>');
    const d = await srv.call('dispatch', { agent: 'a', task: 'env [stub:echo_env=AGENT_DISPATCH_DEPTH]' });
    assert.strictEqual(d.value.result, '1');
    for (const e of env.dispatches()) assert.deepStrictEqual(e.env, { AGENT_DISPATCH_DEPTH: '1' });
    await srv.close();
  });

  test('error envelopes: unknown agent, missing task', async (t) => {
    const { env, srv } = await start(t, { agents: { a: true, b: true } });
    const r = await srv.call('dispatch', { agent: 'zz', task: 'x' });
    assert.strictEqual(r.isError, true);
    assert.strictEqual(r.value.error, "Unknown agent: 'zz'. Available: a, b");
    assert.strictEqual(env.dispatches().length, 0);
    await srv.close();
  });

  test('error_type permission: stderr text and is_error text, with the hint', async (t) => {
    const { srv } = await start(t, { agents: { api: true } });
    let v = (await srv.call('dispatch', { agent: 'api',
      task: 'x [stub:no_result] [stub:exit=1] [stub:stderr=permission denied for tool Bash]' })).value;
    assert.strictEqual(v.success, false);
    assert.strictEqual(v.error_type, 'permission');
    for (const s of ['permission denied for tool Bash', 'Hint', 'api', 'bypassPermissions', 'allowed-tools',
      'agent-dispatch update']) assert.ok(v.error.includes(s), s);
    v = (await srv.call('dispatch', { agent: 'api', task: 'y [stub:is_error] [stub:reply=Tool_use is not allowed in this mode]' })).value;
    assert.strictEqual(v.error_type, 'permission');
    assert.strictEqual(v.result, 'Tool_use is not allowed in this mode');
    assert.match(v.error, /Hint/);
    v = (await srv.call('dispatch', { agent: 'api', task: 'z [stub:no_result] [stub:exit=1] [stub:stderr=connection refused]' })).value;
    assert.strictEqual(v.error_type, 'cli_error');
    assert.ok(!v.error.includes('Hint'));
    await srv.close();
  });

  test('error_type timeout: resumable session_id, message, child gone; dispatch_session resumes', async (t) => {
    const { env, srv } = await start(t, { agents: { slow: { timeout: 1 } } });
    const t0 = Date.now();
    const v = (await srv.call('dispatch', { agent: 'slow', task: 'wait [stub:hang] [stub:grandchild=30]' })).value;
    const took = Date.now() - t0;
    assert.ok(took >= 900 && took < 4000, `took ${took} ms`);
    assert.strictEqual(v.success, false);
    assert.strictEqual(v.error_type, 'timeout');
    assert.match(v.session_id, UUID);
    for (const s of ['timed out', v.session_id, 'dispatch_session', 'timeout_seconds']) {
      assert.ok(v.error.includes(s), s);
    }
    const [e] = env.dispatches();
    assert.strictEqual(argAfter(e, '--session-id'), v.session_id);
    const gc = env.grandchildPid();
    assert.ok(gc, 'the stub wrote its grandchild pid');
    assert.ok(await waitUntil(() => !alive(e.pid) && !alive(gc), 3000), 'the timed-out child or grandchild survived');
    // resume it
    const s = (await srv.call('dispatch_session', { agent: 'slow', task: 'Continue where you left off',
      session_id: v.session_id })).value;
    assert.strictEqual(s.success, true);
    assert.strictEqual(s.session_id, v.session_id);
    const e2 = env.dispatches()[1];
    assert.strictEqual(argAfter(e2, '--resume'), v.session_id);
    assert.ok(!e2.argv.includes('--session-id'));
    await srv.close();
  });

  test('error_type budget: budget stop with hint and budget_exceeded', async (t) => {
    const { env, srv } = await start(t, { agents: { b: { max_budget_usd: 0.25 } } });
    const v = (await srv.call('dispatch', { agent: 'b', task: 'spend [stub:budget]' })).value;
    assertKeyOrder(v);
    assert.strictEqual(v.success, false);
    assert.strictEqual(v.error_type, 'budget');
    assert.strictEqual(v.budget_exceeded, true);
    assert.strictEqual(v.cost_usd, 0.000583);
    assert.strictEqual(v.num_turns, 1);
    for (const s of ['Reached maximum budget', '--max-budget-usd', '$0.25', v.session_id, 'dispatch_session']) {
      assert.ok(v.error.includes(s), s);
    }
    assert.ok(!v.error.includes('no details'));
    assert.strictEqual(argAfter(env.dispatches()[0], '--max-budget-usd'), '0.25');
    await srv.close();
  });

  test('post-hoc budget_exceeded on success; such results are not cached', async (t) => {
    const { env, srv } = await start(t, { agents: { b: { max_budget_usd: 0.01 } } });
    const task = 'pricey [stub:cost=0.05]';
    const v = (await srv.call('dispatch', { agent: 'b', task })).value;
    assert.strictEqual(v.success, true);
    assert.strictEqual(v.budget_exceeded, true);
    for (const s of ['exceeded', '$0.0500', '$0.01']) assert.ok(v.hint.includes(s), s);
    const v2 = (await srv.call('dispatch', { agent: 'b', task })).value;
    assert.ok(!v2.cached);
    assert.strictEqual(env.dispatches().length, 2);
    await srv.close();
  });

  test('error_type not_found: missing directory, and no claude on PATH; stub not invoked', async (t) => {
    const env = newEnv(t);
    env.setup({ agents: { gone: { directory: path.join(env.root, 'nope') }, a: true } });
    const srv = env.serve();
    await srv.init();
    const v = (await srv.call('dispatch', { agent: 'gone', task: 'x' })).value;
    assert.strictEqual(v.error_type, 'not_found');
    assert.match(v.error, /does not exist/);
    assert.strictEqual(v.result, '');
    await srv.close();
    const srv2 = env.serve({ env: { PATH: env.pathWithoutClaude() } });
    await srv2.init();
    const w = (await srv2.call('dispatch', { agent: 'a', task: 'x' })).value;
    assert.strictEqual(w.error_type, 'not_found');
    assert.match(w.error, /not found/);
    await srv2.close();
    assert.strictEqual(env.dispatches().length, 0);
  });

  test('error_type recursion via AGENT_DISPATCH_DEPTH; stub not invoked', async (t) => {
    const { env, srv } = await start(t, { agents: { a: true } }, { AGENT_DISPATCH_DEPTH: '3' });
    const v = (await srv.call('dispatch', { agent: 'a', task: 'x' })).value;
    assert.strictEqual(v.error_type, 'recursion');
    assert.match(v.error, /depth 3 >= max 3/);
    await srv.close();
    assert.strictEqual(env.dispatches().length, 0);
    const srv2 = env.serve({ env: { AGENT_DISPATCH_DEPTH: '2' } });
    await srv2.init();
    await srv2.call('dispatch', { agent: 'a', task: 'x' });
    assert.deepStrictEqual(env.dispatches()[0].env, { AGENT_DISPATCH_DEPTH: '3' });
    await srv2.close();
  });

  test('a depth past any integer trips the guard; a negative one counts as 0, with a warning', (t) => {
    const env = newEnv(t);
    env.setup({ agents: { a: true } });
    for (const depth of ['9999999999999999999999', '1e999']) {
      const r = env.run(['dispatch', 'a', 'x'], { env: { AGENT_DISPATCH_DEPTH: depth } });
      assert.strictEqual(r.code, 1, `${depth}: ${r.stdout}${r.stderr}`);
      assert.match(r.stderr, /recursion|depth/i, r.stderr);
    }
    assert.strictEqual(env.dispatches().length, 0, 'a dispatch ran past the depth guard');
    const r = env.run(['dispatch', 'a', 'x'], { env: { AGENT_DISPATCH_DEPTH: '-5' } });
    assert.strictEqual(r.code, 0, r.stderr);
    assert.match(r.stderr, /AGENT_DISPATCH_DEPTH=-5 is not a depth/);
    assert.deepStrictEqual(env.dispatches()[0].env, { AGENT_DISPATCH_DEPTH: '1' });
  });

  test('error_type cli_error for flag-like values; stub not invoked', async (t) => {
    const { env, srv } = await start(t, { agents: { m: { model: '--dangerously-skip' },
      p: { permission_mode: '-x' }, tl: { allowed_tools: ['--resume'] }, ok: true } });
    const cases = [['m', 'model'], ['p', 'permission_mode'], ['tl', 'allowed tool']];
    for (const [agent, label] of cases) {
      const v = (await srv.call('dispatch', { agent, task: 'x' })).value;
      assert.strictEqual(v.error_type, 'cli_error', agent);
      assert.ok(v.error.includes(label), `${agent}: ${v.error}`);
      assert.match(v.error, /flag/);
    }
    const s = (await srv.call('dispatch_session', { agent: 'ok', task: 'x', session_id: '--model' })).value;
    assert.strictEqual(s.error_type, 'cli_error');
    assert.match(s.error, /session_id/);
    await srv.close();
    assert.strictEqual(env.dispatches().length, 0);
  });

  test('denied_tools + hint on success; such results are not cached', async (t) => {
    const { env, srv } = await start(t, { agents: { api: true } });
    const task = 'look [stub:deny=Bash,WebFetch,Bash]';
    const v = (await srv.call('dispatch', { agent: 'api', task })).value;
    assertKeyOrder(v);
    assert.strictEqual(v.success, true);
    assert.deepStrictEqual(v.denied_tools, ['Bash', 'WebFetch']);
    for (const s of ['incomplete', 'api', 'Bash', 'WebFetch']) assert.ok(v.hint.includes(s), s);
    await srv.call('dispatch', { agent: 'api', task });
    assert.strictEqual(env.dispatches().length, 2);
    // is_error with a denial -> permission
    const p = (await srv.call('dispatch', { agent: 'api', task: 'e [stub:is_error] [stub:deny=Edit] [stub:reply=oops]' })).value;
    assert.strictEqual(p.error_type, 'permission');
    assert.deepStrictEqual(p.denied_tools, ['Edit']);
    assert.match(p.error, /Hint/);
    await srv.close();
  });

  test('response_format json: footer, parsed_result, unparseable text', async (t) => {
    const { env, srv } = await start(t);
    let v = (await srv.call('dispatch', { agent: 'a', task: 'j [stub:json={"a":1,"b":"x"}]', response_format: 'json' })).value;
    assert.deepStrictEqual(v.parsed_result, { a: 1, b: 'x' });
    assert.ok(promptOf(env.dispatches()[0]).endsWith('{"error": "<reason>"}.'));
    v = (await srv.call('dispatch', { agent: 'a', task: 'k [stub:json={"a":1}]' })).value;
    assert.ok(!('parsed_result' in v));
    assert.ok(!promptOf(env.dispatches()[1]).includes('Response format'));
    v = (await srv.call('dispatch', { agent: 'a', task: 'prose please', response_format: 'json' })).value;
    assert.strictEqual(v.success, true);
    assert.ok(!('parsed_result' in v));
    assert.ok(v.result.startsWith('stub ok: prose please'));
    await srv.close();
  });

  test('cache: hit marks cached and skips the stub; caller is in the key; update_agent invalidates', async (t) => {
    const { env, srv } = await start(t, { agents: { a: true, b: true } });
    const one = (await srv.call('dispatch', { agent: 'a', task: 'same' })).value;
    const two = (await srv.call('dispatch', { agent: 'a', task: 'same' })).value;
    assert.strictEqual(two.cached, true);
    assert.strictEqual(Object.keys(two).pop(), 'cached');
    assert.strictEqual(two.result, one.result);
    assert.strictEqual(two.session_id, one.session_id);
    assert.strictEqual(env.dispatches().length, 1);
    await srv.call('dispatch', { agent: 'a', task: 'same', caller: 'other' });
    assert.strictEqual(env.dispatches().length, 2);
    await srv.call('dispatch', { agent: 'b', task: 'same' });
    let s = (await srv.call('cache_stats')).value;
    assert.deepStrictEqual(s, { size: 3, max_size: 1000, hits: 1, misses: 3, evictions: 0, hit_rate: 0.25, ttl: 300 });
    // dispatch_session is never cached
    await srv.call('dispatch_session', { agent: 'a', task: 'same' });
    assert.strictEqual(env.dispatches().length, 4);
    // update_agent drops a's entries only
    await srv.call('update_agent', { name: 'a', description: 'changed' });
    await srv.call('dispatch', { agent: 'a', task: 'same' });
    assert.strictEqual(env.dispatches().length, 5);
    const b2 = (await srv.call('dispatch', { agent: 'b', task: 'same' })).value;
    assert.strictEqual(b2.cached, true);
    const c = (await srv.call('cache_clear')).value;
    assert.deepStrictEqual(c, { cleared: 2 });
    s = (await srv.call('cache_stats')).value;
    assert.deepStrictEqual(s, { size: 0, max_size: 1000, hits: 0, misses: 0, evictions: 0, hit_rate: 0, ttl: 300 });
    await srv.close();
  });

  test('cache disabled: stats/clear say so and every dispatch runs', async (t) => {
    const { env, srv } = await start(t, { agents: { a: true }, settings: '  cache:\n    enabled: false\n' });
    await srv.call('dispatch', { agent: 'a', task: 'same' });
    const v = (await srv.call('dispatch', { agent: 'a', task: 'same' })).value;
    assert.ok(!v.cached);
    assert.strictEqual(env.dispatches().length, 2);
    for (const tool of ['cache_stats', 'cache_clear']) {
      assert.deepStrictEqual((await srv.call(tool)).value, { enabled: false, message: 'Cache is disabled in settings' });
    }
    await srv.close();
  });

  test('cache ttl 0 stores but never hits; max_size evicts the oldest', async (t) => {
    const { env, srv } = await start(t, { agents: { a: true }, settings: '  cache:\n    ttl: 0\n    max_size: 2\n' });
    await srv.call('dispatch', { agent: 'a', task: 'one' });
    await sleep(20);
    const again = (await srv.call('dispatch', { agent: 'a', task: 'one' })).value;
    assert.ok(!again.cached);
    assert.strictEqual(env.dispatches().length, 2);
    await srv.call('dispatch', { agent: 'a', task: 'two' });
    await srv.call('dispatch', { agent: 'a', task: 'three' });
    const s = (await srv.call('cache_stats')).value;
    assert.strictEqual(s.max_size, 2);
    assert.strictEqual(s.ttl, 0);
    assert.strictEqual(s.hits, 0);
    assert.ok(s.evictions >= 1, JSON.stringify(s));
    await srv.close();
  });

  test('groups: shared_context folded into the prompt; membership errors dispatch nothing', async (t) => {
    const groups = '  shop:\n    shared_context: "Prices are in EUR."\n    members:\n      - agent: a\n' +
      '  other:\n    shared_context: "Other facts."\n    members:\n      - agent: a\n' +
      '  hollow:\n    description: "x"\n';
    const { env, srv } = await start(t, { agents: { a: true, b: true }, groups });
    const v = (await srv.call('dispatch', { agent: 'a', task: 'price?', context: 'caller facts', group: 'shop' })).value;
    assert.strictEqual(v.success, true);
    assert.strictEqual(promptOf(env.dispatches()[0]),
      "Context:\nShared context (group 'shop'):\nPrices are in EUR.\n\ncaller facts\n\nTask:\nprice?");
    // a different group is a different cache key; the same group hits
    await srv.call('dispatch', { agent: 'a', task: 'price?', context: 'caller facts', group: 'other' });
    assert.strictEqual(env.dispatches().length, 2);
    const hit = (await srv.call('dispatch', { agent: 'a', task: 'price?', context: 'caller facts', group: 'shop' })).value;
    assert.strictEqual(hit.cached, true);
    let e = await srv.call('dispatch', { agent: 'b', task: 'x', group: 'shop' });
    assert.strictEqual(e.value.error, "Agent 'b' is not a member of group 'shop'. Members: a");
    e = await srv.call('dispatch', { agent: 'a', task: 'x', group: 'nope' });
    assert.strictEqual(e.value.error, "Unknown group: 'nope'. Available: shop, other, hollow");
    e = await srv.call('dispatch', { agent: 'a', task: 'x', group: 'hollow' });
    assert.match(e.value.error, /no members/);
    assert.strictEqual(env.dispatches().length, 2);
    await srv.close();
  });
});

describe('dispatch_parallel', () => {
  test('input order, independent failures, group item context', async (t) => {
    const groups = '  g:\n    shared_context: "G facts"\n    members:\n      - agent: b\n';
    const { env, srv } = await start(t, { agents: { a: true, b: true }, groups });
    const items = [
      { agent: 'a', task: 'first [stub:sleep=0.4]' },
      { agent: 'b', task: 'second [stub:exit=2] [stub:no_result] [stub:stderr=boom]' },
      { agent: 'b', task: 'third', group: 'g' },
    ];
    const r = await srv.call('dispatch_parallel', { dispatches: JSON.stringify(items) });
    const v = r.value;
    assert.ok(Array.isArray(v) && v.length === 3);
    assert.strictEqual(v[0].result, 'stub ok: first');
    assert.strictEqual(v[0].success, true);
    assert.strictEqual(v[1].success, false);
    assert.strictEqual(v[1].error_type, 'cli_error');
    assert.match(v[1].error, /boom/);
    assert.strictEqual(v[2].success, true);
    const third = env.dispatches().find((e) => promptOf(e).endsWith('third'));
    assert.match(promptOf(third), /Shared context \(group 'g'\):\nG facts/);
    // a repeated item is served from the cache
    const again = (await srv.call('dispatch_parallel', { dispatches: JSON.stringify([items[0]]) })).value;
    assert.strictEqual(again[0].cached, true);
    assert.strictEqual(env.dispatches().length, 3);
    await srv.close();
  });

  test('validation happens before any dispatch', async (t) => {
    const groups = '  g:\n    members:\n      - agent: a\n';
    const { env, srv } = await start(t, { agents: { a: true, b: true }, groups });
    const ok = { agent: 'a', task: 'fine' };
    const cases = [
      ['not json', /^Invalid JSON in dispatches/],
      ['[]', /^dispatches must be a non-empty JSON array$/],
      ['{"agent":"a"}', /^dispatches must be a non-empty JSON array$/],
      [JSON.stringify([ok, { agent: 'a' }]), /dispatches\[1\] must have 'agent' and 'task' keys/],
      [JSON.stringify([ok, { task: 'x' }]), /'agent'/],
      [JSON.stringify([ok, 5]), /dispatches\[1\] must be an object/],
      [JSON.stringify([ok, { agent: ['a'], task: 'x' }]), /must be strings/],
      [JSON.stringify([ok, { agent: 'a', task: 42 }]), /must be strings/],
      [JSON.stringify([ok, { agent: 'zz', task: 'x' }]), /Unknown agent: 'zz'/],
      [JSON.stringify([ok, { agent: 'b', task: 'x', group: 'g' }]), /not a member/],
      [JSON.stringify([ok, { agent: 'a', task: 'x', timeout_seconds: 'abc' }]), /dispatches\[1\]\.timeout_seconds must be a number/],
      [JSON.stringify([ok, { agent: 'a', task: 'x', summary_chars: [] }]), /dispatches\[1\]\.summary_chars must be a number/],
      [JSON.stringify(Array.from({ length: 101 }, () => ok)), /^Too many dispatches: 101 > 100/],
    ];
    for (const [d, re] of cases) {
      const r = await srv.call('dispatch_parallel', { dispatches: d });
      assert.strictEqual(r.isError, true, d.slice(0, 80));
      assert.match(r.value.error, re, d.slice(0, 80));
    }
    const agg = await srv.call('dispatch_parallel', { dispatches: JSON.stringify([ok]), aggregate: 'nobody' });
    assert.match(agg.value.error, /Unknown agent: 'nobody'/);
    await srv.close();
    assert.strictEqual(env.dispatches().length, 0, 'a bad call must not dispatch anything');
  });

  test('aggregate: individual_results + aggregated; the aggregator sees every section', async (t) => {
    const { env, srv } = await start(t, { agents: { a: true, b: true, boss: true } });
    const items = [{ agent: 'a', task: 'alpha' }, { agent: 'b', task: 'beta [stub:exit=1] [stub:no_result] [stub:stderr=broke]' }];
    const v = (await srv.call('dispatch_parallel', { dispatches: JSON.stringify(items), aggregate: 'boss' })).value;
    assert.deepStrictEqual(Object.keys(v), ['individual_results', 'aggregated']);
    assert.strictEqual(v.individual_results.length, 2);
    assert.strictEqual(v.aggregated.agent, 'boss');
    assert.strictEqual(v.aggregated.success, true);
    const bossCall = env.dispatches().find((e) => e.cwd.endsWith('/boss'));
    const p = promptOf(bossCall);
    assert.match(p, /## Dispatched by\ndispatch_parallel/);
    assert.match(p, /## Agent: a \[OK\]\nstub ok: alpha/);
    assert.match(p, /## Agent: b \[FAILED\]\nbroke/);
    await srv.close();
  });

  test('an aggregator failure is a clean result, not an envelope', async (t) => {
    const env = newEnv(t);
    env.setup({ agents: { a: true, boss: { directory: path.join(env.root, 'gone') } } });
    const srv = env.serve();
    await srv.init();
    const r = await srv.call('dispatch_parallel', { dispatches: JSON.stringify([{ agent: 'a', task: 'x' }]), aggregate: 'boss' });
    assert.strictEqual(r.value.individual_results[0].success, true);
    assert.strictEqual(r.value.aggregated.success, false);
    assert.strictEqual(r.value.aggregated.error_type, 'not_found');
    assert.ok(!('error' in r.value));
    await srv.close();
  });

  test('max_concurrency 2: five 0.5 s items take ~1.5 s and never more than 2 stubs at once', async (t) => {
    const { env, srv } = await start(t, { agents: { a: true }, settings: '  max_concurrency: 2\n' });
    // One wave alone first, on the same path: what one 0.5 s item costs on
    // this machine at this moment (spawn, stub start, reply), so that the
    // bound below is about the waves, not about the load beside the test.
    const w0 = Date.now();
    const one = (await srv.call('dispatch_parallel', {
      dispatches: JSON.stringify([{ agent: 'a', task: 'warm [stub:sleep=0.5]' }]),
    })).value;
    const wave = (Date.now() - w0) / 1000;
    assert.ok(one[0].success);
    const items = Array.from({ length: 5 }, (_, i) => ({ agent: 'a', task: `n${i} [stub:sleep=0.5]` }));
    const t0 = Date.now();
    const v = (await srv.call('dispatch_parallel', { dispatches: JSON.stringify(items) })).value;
    const wall = (Date.now() - t0) / 1000;
    assert.ok(v.every((x) => x.success));
    assert.deepStrictEqual(v.map((x) => x.result), items.map((_, i) => `stub ok: n${i}`));
    // ceil(N/L) waves within 10% (issue #4) in the plain build, a wave
    // being what one item alone took just before (at least T); within 50%
    // under the GC stress pass (a full collection after every resume) and
    // 30% under ASan, whose slower spawns on a loaded 2-core machine are not
    // what this bound is about (the plain stage holds the 10%). A limit not
    // kept (5 at once: one wave) or a limit of one (five waves) is far out.
    const slack = process.env.AGENT_DISPATCH_GC_STRESS ? 1.5 : (SANITIZED ? 1.3 : 1.1);
    const bound = 3 * Math.max(wave, 0.5) * slack;
    assert.ok(wall >= 1.5 && wall <= bound,
      `wall time ${wall}s, expected 3 waves of ${wave}s (one item alone) within ${Math.round((slack - 1) * 100)}%`);
    // intervals [start, start + duration] from the stub log and the results
    const log = env.dispatches().filter((e) => !promptOf(e).startsWith('warm'));
    assert.strictEqual(log.length, 5);
    const spans = log.map((e) => {
      const i = Number(promptOf(e).match(/n(\d)/)[1]);
      return [e.time, e.time + v[i].duration_ms / 1000];
    });
    let maxLive = 0;
    for (const [s] of spans) {
      const live = spans.filter(([a, b]) => a <= s + 0.01 && b > s + 0.01).length;
      maxLive = Math.max(maxLive, live);
    }
    assert.strictEqual(maxLive, 2, 'the observed maximum of live children is exactly the limit');
    await srv.close();
  });
});

describe('dispatch_stream and dispatch_dialogue', () => {
  test('stream: progress notifications arrive before the result', async (t) => {
    const { srv } = await start(t);
    await srv.request('logging/setLevel', { level: 'info' });
    const r = await srv.call('dispatch_stream', { agent: 'a', task: 'go [stub:progress=3] [stub:interval=0.3]' },
      { id: 'st', meta: { progressToken: 'tok' } });
    assert.strictEqual(r.value.success, true);
    assert.strictEqual(r.value.result, 'stub ok: go');
    const respAt = srv.messages.find((m) => m.msg.id === 'st').t;
    const prog = srv.notifications('notifications/progress');
    const logs = srv.notifications('notifications/message').filter((m) => /\[a\] progress/.test(JSON.stringify(m.msg.params.data)));
    assert.ok(prog.length >= 3, `${prog.length} progress notifications`);
    assert.strictEqual(logs.length, 3);
    assert.match(JSON.stringify(logs[0].msg.params.data), /\[a\] progress 1\/3/);
    // the first progress came well before the result (0.6 s of interval remain)
    assert.ok(respAt - prog[0].t >= 400, `first progress only ${respAt - prog[0].t} ms before the result`);
    assert.ok(prog.every((p) => p.t <= respAt));
    assert.ok(!('cached' in r.value));
    await srv.close();
  });

  test('stream: argv uses stream-json + --verbose; unknown agent envelope', async (t) => {
    const { env, srv } = await start(t);
    await srv.call('dispatch_stream', { agent: 'a', task: 'x' });
    const [e] = env.dispatches();
    assert.strictEqual(argAfter(e, '--output-format'), 'stream-json');
    assert.ok(e.argv.includes('--verbose'));
    assert.ok(e.argv.includes('--session-id'));
    const u = await srv.call('dispatch_stream', { agent: 'nope', task: 'x' });
    assert.match(u.value.error, /^Unknown agent: 'nope'/);
    await srv.close();
  });

  test('dialogue: resolved by the responder in round 1', async (t) => {
    const { env, srv } = await start(t, { agents: { req: true, exp: true } });
    const v = (await srv.call('dispatch_dialogue', { requester: 'req', responder: 'exp', topic: 'How to cache?' })).value;
    assert.strictEqual(v.resolved, true);
    assert.strictEqual(v.rounds, 1);
    assert.strictEqual(v.conversation.length, 1);
    assert.strictEqual(v.conversation[0].role, 'responder');
    assert.strictEqual(v.conversation[0].agent, 'exp');
    assert.ok(!v.final_answer.includes('[RESOLVED]'));
    assert.ok(v.final_answer.includes('How to cache?'));
    assert.strictEqual(v.total_cost_usd, 0.0012);
    const [e] = env.dispatches();
    assert.match(promptOf(e), /## Dispatched by\nreq/);
    await srv.close();
  });

  test('dialogue: never resolved with max_rounds 2 -> 4 entries, sessions resumed', async (t) => {
    // live_sessions.max 0: every turn resumes (live processes: live_sessions.test.js)
    const { env, srv } = await start(t, { agents: { req: true, exp: true },
      settings: '  live_sessions:\n    max: 0\n' });
    const v = (await srv.call('dispatch_dialogue', { requester: 'req', responder: 'exp',
      topic: 'endless [stub:reply=still thinking]', max_rounds: 2 })).value;
    assert.strictEqual(v.resolved, false);
    assert.strictEqual(v.rounds, 2);
    assert.deepStrictEqual(v.conversation.map((c) => [c.role, c.round]),
      [['responder', 1], ['requester', 1], ['responder', 2], ['requester', 2]]);
    assert.strictEqual(v.final_answer, 'still thinking');
    assert.strictEqual(v.total_cost_usd, 0.0048);
    const log = env.dispatches();
    assert.strictEqual(log.length, 4);
    assert.strictEqual(argAfter(log[2], '--resume'), argAfter(log[0], '--session-id'));
    assert.strictEqual(argAfter(log[3], '--resume'), argAfter(log[1], '--session-id'));
    const u = await srv.call('dispatch_dialogue', { requester: 'nope', responder: 'exp', topic: 'x' });
    assert.match(u.value.error, /Unknown agent: 'nope'/);
    await srv.close();
  });
});

describe('agent management', () => {
  test('add_agent persists (0600 file, 0700 dir), auto-describes, validates', async (t) => {
    const env = newEnv(t);
    const dir = env.project('proj', { 'CLAUDE.md': '# Title\nPayments service in Go\n' });
    const srv = env.serve();
    await srv.init();
    // failures write nothing
    for (const [args, re] of [
      [{ name: '-bad', directory: dir }, /Invalid agent name/],
      [{ name: 'p', directory: path.join(env.root, 'nope') }, /Directory does not exist/],
      [{ name: 'p', directory: '~nonexistentuser12345/proj' }, /Invalid directory/],
      [{ name: 'p', directory: dir, timeout: -5 }, /timeout/],
      [{ name: 'p', directory: dir, max_budget_usd: -1 }, /max_budget_usd/],
    ]) {
      const r = await srv.call('add_agent', args);
      assert.strictEqual(r.isError, true);
      assert.match(r.value.error, re);
      assert.ok(!fs.existsSync(env.config), 'config created by a failed add_agent');
    }
    const r = await srv.call('add_agent', { name: 'pay', directory: dir, permission_mode: 'plan',
      allowed_tools: 'Bash, Read,Edit', disallowed_tools: 'Write', capabilities: 'docker_logs' });
    assert.deepStrictEqual(r.value, { added: 'pay', directory: dir, description: 'Payments service in Go',
      permission_mode: 'plan', allowed_tools: ['Bash', 'Read', 'Edit'], disallowed_tools: ['Write'],
      capabilities: ['docker_logs'] });
    assert.strictEqual(fs.statSync(env.config).mode & 0o777, 0o600);
    assert.strictEqual(fs.statSync(env.cfgDir).mode & 0o777, 0o700);
    const y = env.readConfig();
    assert.match(y, /pay:/);
    assert.match(y, /timeout: 300/);
    assert.match(y, /Payments service in Go/);
    assert.ok(!fs.readdirSync(env.cfgDir).some((f) => f.endsWith('.tmp')));
    const dup = await srv.call('add_agent', { name: 'pay', directory: dir });
    assert.match(dup.value.error, /already exists/);
    // visible to the next call without a restart
    const l = (await srv.call('list_agents')).value;
    assert.deepStrictEqual(l.map((a) => a.name), ['pay']);
    await srv.close();
  });

  test('update_agent / remove_agent: fields, none, persistence, errors', async (t) => {
    const { env, srv } = await start(t, { agents: { a: { allowed_tools: ['Bash'], permission_mode: 'plan' }, b: true } });
    let r = await srv.call('update_agent', { name: 'a', description: 'new desc', timeout: 600,
      permission_mode: 'bypassPermissions', capabilities: 'x,y' });
    assert.deepStrictEqual(r.value, { updated: 'a', fields: ['description', 'timeout', 'permission_mode', 'capabilities'] });
    let i = (await srv.call('inspect_agent', { name: 'a' })).value;
    assert.strictEqual(i.description, 'new desc');
    assert.strictEqual(i.timeout, 600);
    assert.deepStrictEqual(i.capabilities, ['x', 'y']);
    r = await srv.call('update_agent', { name: 'a', permission_mode: 'none', allowed_tools: 'none', capabilities: 'none' });
    assert.deepStrictEqual(r.value.fields, ['permission_mode', 'allowed_tools', 'capabilities']);
    i = (await srv.call('inspect_agent', { name: 'a' })).value;
    assert.ok(!('permission_mode' in i) && !('allowed_tools' in i) && !('capabilities' in i));
    r = await srv.call('update_agent', { name: 'a', timeout: -1 });
    assert.match(r.value.error, /timeout/);
    r = await srv.call('update_agent', { name: 'a' });
    assert.strictEqual(r.value.error, 'Nothing to update. Pass at least one non-empty field.');
    r = await srv.call('update_agent', { name: 'zz', description: 'x' });
    assert.strictEqual(r.value.error, "Agent 'zz' not found. Available: a, b");
    assert.strictEqual(fs.statSync(env.config).mode & 0o777, 0o600);
    r = await srv.call('remove_agent', { name: 'b' });
    assert.deepStrictEqual(r.value, { removed: 'b' });
    assert.ok(!/\n  b:/.test(env.readConfig()));
    r = await srv.call('remove_agent', { name: 'b' });
    assert.strictEqual(r.value.error, "Agent 'b' not found. Available: a");
    await srv.close();
  });

  test('a permission_mode claude would refuse is refused when it is set', async (t) => {
    const { srv } = await start(t);
    const r = await srv.call('update_agent', { name: 'a', permission_mode: 'yolo' });
    assert.ok(r.isError);
    assert.match(r.value.error, /permission_mode 'yolo' is not one of/);
    await srv.close();
  });

  test('a broken agents.yaml: could not be loaded + hint, file untouched', async (t) => {
    const env = newEnv(t);
    const srv = env.serve();
    await srv.init();
    const dir = env.project('p');
    const variants = [
      'agents:\n  a:\n    directory: 123\n',
      'agents:\n  a: [unclosed\n',
      Buffer.from(`agents:\n  a:\n    directory: "${dir}"\n    description: "\xcf\xf0\xe8"\n`, 'latin1'),
    ];
    for (const content of variants) {
      env.writeConfig(content);
      const before = fs.readFileSync(env.config);
      for (const [tool, args] of [['list_agents', {}], ['dispatch', { agent: 'a', task: 'x' }],
        ['list_groups', {}], ['update_agent', { name: 'a', description: 'd' }], ['add_agent', { name: 'n', directory: dir }],
        ['cache_stats', {}]]) {
        const r = await srv.call(tool, args);
        assert.strictEqual(r.isError, true, `${tool}: ${r.text}`);
        assert.match(r.value.error, /could not be loaded/, `${tool}: ${r.text}`);
        assert.strictEqual(typeof r.value.hint, 'string', tool);
      }
      assert.ok(before.equals(fs.readFileSync(env.config)), 'config changed');
    }
    await srv.close();
    assert.strictEqual(env.dispatches().length, 0);
  });
});

describe('runner edge cases seen through the tools', () => {
  test('plain-text stdout, blank stdout, invalid UTF-8, huge results, garbage stream lines', async (t) => {
    const { srv } = await start(t);
    let v = (await srv.call('dispatch', { agent: 'a', task: 'p [stub:stdout=  just plain text  ]' })).value;
    assert.strictEqual(v.success, true);
    assert.strictEqual(v.result, 'just plain text');
    assert.match(v.session_id, UUID);
    v = (await srv.call('dispatch', { agent: 'a', task: 'q [stub:stdout=]' })).value;
    assert.strictEqual(v.success, false);
    assert.strictEqual(v.error_type, 'cli_error');
    assert.match(v.session_id, UUID);
    const blank2 = (await srv.call('dispatch', { agent: 'a', task: 'q [stub:stdout=]' })).value;
    assert.ok(!blank2.cached, 'a failure must not be cached');
    v = (await srv.call('dispatch', { agent: 'a', task: 'u [stub:invalid_utf8]' })).value;
    assert.strictEqual(v.success, true);
    assert.ok(v.result.includes('\ufffd'), JSON.stringify(v.result));
    v = (await srv.call('dispatch', { agent: 'a', task: 'h [stub:huge=300000]' })).value;
    assert.strictEqual(v.result.length, 300000);
    v = (await srv.call('dispatch_stream', { agent: 'a', task: 'g [stub:garbage] [stub:progress=1]' })).value;
    assert.strictEqual(v.success, true);
    assert.strictEqual(v.result, 'stub ok: g');
    v = (await srv.call('dispatch', { agent: 'a', task: 'e [stub:is_error] [stub:null_result] [stub:errors=Reached maximum turns (5)|second]' })).value;
    assert.strictEqual(v.error_type, 'cli_error');
    assert.match(v.error, /Reached maximum turns \(5\); second/);
    await srv.close();
  });

  test('cancelling a dispatch_parallel call kills every item child', async (t) => {
    const { env, srv } = await start(t, { agents: { a: true, b: true } });
    const items = [{ agent: 'a', task: 'x [stub:hang]' }, { agent: 'b', task: 'y [stub:hang]' }];
    srv.send({ jsonrpc: '2.0', id: 'par', method: 'tools/call',
      params: { name: 'dispatch_parallel', arguments: { dispatches: JSON.stringify(items) } } });
    assert.ok(await waitUntil(() => env.dispatches().length === 2, 5000));
    srv.send({ jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: 'par' } });
    const pids = env.dispatches().map((e) => e.pid);
    assert.ok(await waitUntil(() => pids.every((p) => !alive(p)), 5000), 'item children survived the cancel');
    await sleep(300);
    assert.strictEqual(srv.responsesTo('par').length, 0);
    assert.strictEqual((await srv.call('dispatch', { agent: 'a', task: 'after' })).value.success, true);
    await srv.close();
  });

  test('modern dispatch_stream: progress with the modern token, before the response', async (t) => {
    const { srv } = await start(t);
    const r = await srv.call('dispatch_stream', { agent: 'a', task: 'm [stub:progress=2] [stub:interval=0.1]' },
      { modern: true, id: 'ms', meta: { progressToken: 42 } });
    assert.strictEqual(r.response.result.resultType, 'complete');
    const idx = srv.messages.findIndex((m) => m.msg.id === 'ms');
    const prog = srv.messages.map((m, i) => ({ ...m, i })).filter((m) => m.msg.method === 'notifications/progress');
    assert.ok(prog.length >= 2);
    assert.ok(prog.every((p) => p.msg.params.progressToken === 42 && p.i < idx));
    assert.strictEqual(srv.notifications('notifications/message').length, 0, 'no logs without logLevel');
    await srv.close();
  });
});
