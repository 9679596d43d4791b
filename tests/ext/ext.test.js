'use strict';
// Issue #6, Lua extensibility: custom tools and hooks from tool files
// ($AGENT_DISPATCH_TOOLS_DIR) and overrides of the shipped policy modules
// ($AGENT_DISPATCH_USER_LUA_DIR), driven end to end through the built binary
// (`agent-dispatch serve` over MCP, `agent-dispatch lua ...`) with the stub
// claude. See docs/lua-api.md, "Custom tools and hooks" and "Overriding the
// shipped policy".
const { test } = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const path = require('node:path');
const { newEnv, modernMeta, sleep, waitUntil } = require('../e2e/lib');

const SRC_LUA = path.resolve(__dirname, '../../lua');

/** Writes files {name: text} (mode 0644) into a tools dir (mode `mode`). */
function toolsDir(env, files, { name = 'tools', mode = 0o755 } = {}) {
  const dir = path.join(env.root, name);
  fs.mkdirSync(dir, { recursive: true });
  for (const [f, text] of Object.entries(files)) {
    const p = path.join(dir, f);
    fs.writeFileSync(p, text);
    fs.chmodSync(p, 0o644);
  }
  fs.chmodSync(dir, mode);
  return dir;
}

/** A user Lua dir with modules {"ad/domain/prompt.lua": text}. */
function userLua(env, files) {
  const dir = path.join(env.root, 'userlua');
  for (const [rel, text] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(dir, rel)), { recursive: true });
    fs.writeFileSync(path.join(dir, rel), text);
  }
  return dir;
}

async function serveWith(env, extra, version = '2025-11-25') {
  const srv = env.serve({ env: extra });
  await srv.init(version);
  return srv;
}

/** Waits (up to 3 s) until the server's stderr matches re (stderr and
 *  stdout are separate pipes: a response can arrive before the log line). */
async function stderrMatch(srv, re) {
  await waitUntil(() => re.test(srv.stderr), 3000);
  assert.match(srv.stderr, re);
}

function lit(s) {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

async function listTools(srv, modern = false) {
  const params = modern ? { _meta: modernMeta() } : {};
  const r = await srv.request('tools/list', params);
  assert.ok(r.result, JSON.stringify(r));
  return r.result.tools;
}

/** A raw tools/call: {text, isError, result}. */
async function callRaw(srv, name, args, { modern = false, ms = 15000 } = {}) {
  const params = { name, arguments: args };
  if (modern) params._meta = modernMeta();
  const r = await srv.request('tools/call', params, { ms });
  assert.ok(r.result, `tools/call ${name}: ${JSON.stringify(r)}`);
  return { text: r.result.content[0].text, isError: r.result.isError === true, result: r.result };
}

const REVIEW_TOOL = `
tool{
  name = "review_changes",
  description = "Review a repository's last commit with its own agent",
  params = {
    { name = "agent", type = "string", required = true, description = "which agent" },
    { name = "depth", type = "integer", default = 1 },
  },
  handler = function(args, ad)
    ad.log("HANDLER RAN depth=" .. tostring(args.depth))
    ad.progress("asking " .. args.agent)
    local r = ad.dispatch{ agent = args.agent, task = "Review HEAD~" .. args.depth .. (args.extra or "") }
    return { agent = r.agent, ok = r.success, review = r.result, depth = args.depth }
  end,
}

tool{
  name = "echo_upper",
  params = { { name = "text", type = "string", required = true } },
  handler = function(args) return string.upper(args.text) end,
}
`;

// ---------------------------------------------------------------- tools

for (const era of ['legacy', 'modern']) {
  test(`custom tool end to end (${era}): listed with its schema, dispatches, returns the handler's value`, async (t) => {
    const env = newEnv(t);
    const dirs = env.setup({ agents: { a: true } });
    const dir = toolsDir(env, { 'review.lua': REVIEW_TOOL });
    const modern = era === 'modern';
    const srv = env.serve({ env: { AGENT_DISPATCH_TOOLS_DIR: dir } });
    if (!modern) await srv.init();
    const tools = await listTools(srv, modern);
    const names = tools.map((x) => x.name);
    assert.ok(names.includes('dispatch'), 'built-ins are still listed');
    const rev = tools.find((x) => x.name === 'review_changes');
    assert.ok(rev, `review_changes not in tools/list: ${names}`);
    assert.strictEqual(rev.description, "Review a repository's last commit with its own agent");
    assert.deepStrictEqual(rev.inputSchema, {
      type: 'object',
      properties: {
        agent: { type: 'string', description: 'which agent' },
        depth: { type: 'integer', default: 1 },
      },
      required: ['agent'],
    });
    assert.strictEqual(names.filter((n) => n === 'review_changes').length, 1);
    assert.ok(names.includes('echo_upper'));

    const c = await srv.call('review_changes', { agent: 'a', depth: 3 }, { modern });
    assert.strictEqual(c.isError, false, c.text);
    assert.deepStrictEqual(c.value, { agent: 'a', ok: true, review: 'stub ok: Review HEAD~3', depth: 3 });
    if (modern) assert.strictEqual(c.response.result.resultType, 'complete');
    const d = env.dispatches();
    assert.strictEqual(d.length, 1);
    assert.strictEqual(d[0].cwd, dirs.a, 'the dispatch ran in the agent directory');
    // the default applies when the argument is omitted
    const c2 = await srv.call('review_changes', { agent: 'a' }, { modern });
    assert.strictEqual(c2.value.review, 'stub ok: Review HEAD~1');
    // a string return value is the text of the result, as is
    const up = await callRaw(srv, 'echo_upper', { text: 'hello ext' }, { modern });
    assert.strictEqual(up.isError, false);
    assert.strictEqual(up.text, 'HELLO EXT');
    await srv.close();
  });
}

test('custom tool: arguments are validated before the handler runs', async (t) => {
  const env = newEnv(t);
  env.setup({ agents: { a: true } });
  const dir = toolsDir(env, { 'review.lua': REVIEW_TOOL });
  const srv = await serveWith(env, { AGENT_DISPATCH_TOOLS_DIR: dir });
  const wrongType = await callRaw(srv, 'review_changes', { agent: 'a', depth: 'deep' });
  assert.strictEqual(wrongType.isError, true);
  assert.match(JSON.parse(wrongType.text).error,
    /Invalid arguments for review_changes: 'depth' must be an integer, got string ['"]deep['"]/);
  const missing = await callRaw(srv, 'review_changes', { depth: 2 });
  assert.strictEqual(missing.isError, true);
  assert.match(JSON.parse(missing.text).error, /'agent' is required/);
  const notString = await callRaw(srv, 'echo_upper', { text: 42 });
  assert.strictEqual(notString.isError, true);
  assert.match(JSON.parse(notString.text).error, /'text' must be a string, got number 42/);
  // the handler never ran: no dispatch, no log line
  assert.strictEqual(env.dispatches().length, 0, 'the handler dispatched despite invalid arguments');
  // the side effects are real: a valid call shows both (the check above can fail)
  const ok = await srv.call('review_changes', { agent: 'a', depth: '2' });
  assert.strictEqual(ok.value.depth, 2, 'an integer given as a string is coerced');
  assert.strictEqual(env.dispatches().length, 1);
  await stderrMatch(srv, /HANDLER RAN depth=2/);
  assert.strictEqual(srv.stderr.split('HANDLER RAN').length - 1, 1, 'the handler ran for an invalid call');
  await srv.close();
});

test('custom tool: a handler waiting on a dispatch does not block tools/list or ping', async (t) => {
  const env = newEnv(t);
  env.setup({ agents: { a: true } });
  const dir = toolsDir(env, { 'review.lua': REVIEW_TOOL.replace('(args.extra or "")', '" [stub:sleep=1]"') });
  const srv = await serveWith(env, { AGENT_DISPATCH_TOOLS_DIR: dir });
  srv.send({ jsonrpc: '2.0', id: 'slow', method: 'tools/call',
    params: { name: 'review_changes', arguments: { agent: 'a' } } });
  assert.ok(await waitUntil(() => env.dispatches().length === 1, 5000), 'the handler never dispatched');
  const best = async (method) => {
    let min = Infinity;
    for (let i = 0; i < 3; i++) {
      const t0 = Date.now();
      const r = await srv.request(method, method === 'ping' ? undefined : {});
      assert.ok(r.result, JSON.stringify(r));
      min = Math.min(min, Date.now() - t0);
    }
    return min;
  };
  assert.ok(await best('tools/list') < 150, 'tools/list waited for the handler');
  assert.ok(await best('ping') < 150, 'ping waited for the handler');
  assert.strictEqual(srv.responsesTo('slow').length, 0, 'premise: the handler was still waiting');
  const r = await srv.response('slow', 5000);
  assert.strictEqual(r.result.isError, false);
  assert.strictEqual(JSON.parse(r.result.content[0].text).review, 'stub ok: Review HEAD~1');
  await srv.close();
});

test('broken tool files are reported with file:line; the others load and the server answers', async (t) => {
  const env = newEnv(t);
  env.setup({ agents: { a: true } });
  const dir = toolsDir(env, {
    'a_syntax.lua': 'tool{ name = "syn", handler = function() return 1 end }\nlocal x = = 2\n',
    'b_runtime.lua': 'local cfg = nil\n\nlocal v = cfg.field\n',
    'c_global.lua': 'tool{ name = "typo_tool", handler = function() return 1 end }\nlocal v = undefined_thing\n',
    'd_loop.lua': 'local n = 0\nwhile true do n = n + 1 end\n',
    'e_good.lua': 'tool{ name = "good_tool", handler = function() return {fine = true} end }\n',
  });
  const p = (f) => path.join(dir, f);
  const t0 = Date.now();
  const srv = await serveWith(env, { AGENT_DISPATCH_TOOLS_DIR: dir });
  assert.ok(Date.now() - t0 < 6000, 'loading a looping file must stop at its budget');
  await stderrMatch(srv, new RegExp(lit(`${p('a_syntax.lua')}:2:`)));
  await stderrMatch(srv, new RegExp(lit(`${p('b_runtime.lua')}:3:`)));
  await stderrMatch(srv, new RegExp(lit(`${p('c_global.lua')}:2: undefined global 'undefined_thing'`)));
  await stderrMatch(srv, new RegExp(lit(`${p('d_loop.lua')}:2: ran for more than 2`)));
  const names = (await listTools(srv)).map((x) => x.name);
  assert.ok(names.includes('good_tool'), names.join(','));
  assert.ok(names.includes('dispatch'));
  for (const n of ['syn', 'typo_tool']) assert.ok(!names.includes(n), `${n} from a broken file was registered`);
  const good = await srv.call('good_tool', {});
  assert.deepStrictEqual(good.value, { fine: true });
  const d = await srv.call('dispatch', { agent: 'a', task: 'still works' });
  assert.strictEqual(d.value.result, 'stub ok: still works');
  assert.strictEqual((await srv.request('ping')).result !== undefined, true);
  await srv.close();

  const lt = env.run(['lua', 'tools'], { env: { AGENT_DISPATCH_TOOLS_DIR: dir } });
  assert.strictEqual(lt.code, 1, lt.stdout + lt.stderr);
  assert.ok(lt.stdout.includes(`${p('e_good.lua')}: tools good_tool`), lt.stdout);
  for (const needle of [`${p('a_syntax.lua')}:2:`, `${p('b_runtime.lua')}:3:`, `${p('c_global.lua')}:2:`, `${p('d_loop.lua')}:2:`]) {
    assert.ok(lt.stdout.split('\n').some((l) => l.includes('PROBLEM') && l.includes(needle)), `no PROBLEM line with ${needle}:\n${lt.stdout}`);
  }
  // without problems it exits 0
  fs.rmSync(p('a_syntax.lua')); fs.rmSync(p('b_runtime.lua')); fs.rmSync(p('c_global.lua')); fs.rmSync(p('d_loop.lua'));
  const clean = env.run(['lua', 'tools'], { env: { AGENT_DISPATCH_TOOLS_DIR: dir } });
  assert.strictEqual(clean.code, 0, clean.stdout + clean.stderr);
});

test('a tools/list that arrives while the tool files are still loading lists every tool', async (t) => {
  const env = newEnv(t);
  env.setup({ agents: { a: true } });
  const files = {
    // slow to load (it waits 1.5 s, e.g. for an agent), then fine
    'a_slow.lua': 'ad.sleep(1.5)\n' +
      'tool{ name = "slow_tool", handler = function() return 1 end }\n',
  };
  for (const c of 'bcdefgh') files[`${c}_tool.lua`] = `tool{ name = "${c}_tool", handler = function() return "${c}" end }\n`;
  const dir = toolsDir(env, files);
  const srv = await serveWith(env, { AGENT_DISPATCH_TOOLS_DIR: dir });
  // the server loads the files in the background ~0.5 s after start;
  // ask while a_slow.lua is loading
  await sleep(900);
  const names = (await listTools(srv)).map((x) => x.name);
  const expected = ['slow_tool', ...[...'bcdefgh'].map((c) => `${c}_tool`)];
  assert.deepStrictEqual(expected.filter((n) => !names.includes(n)), [], 'tools missing from tools/list');
  await srv.close();
});

test('tool files next to the config are loaded by default', async (t) => {
  const env = newEnv(t);
  env.setup({ agents: { a: true } });
  toolsDir(env, { 'up.lua': REVIEW_TOOL }, { name: 'cfg/tools' });
  const srv = await serveWith(env, { AGENT_DISPATCH_TOOLS_DIR: undefined });
  const up = await callRaw(srv, 'echo_upper', { text: 'abc' });
  assert.strictEqual(up.text, 'ABC');
  await srv.close();
});

test('unsafe permissions: a group/world-writable file or directory is refused with the chmod to run', async (t) => {
  const env = newEnv(t);
  env.setup({ agents: { a: true } });
  const dir = toolsDir(env, {
    'open.lua': 'tool{ name = "open_tool", handler = function() return 1 end }\n',
    'safe.lua': 'tool{ name = "safe_tool", handler = function() return "safe" end }\n',
  });
  fs.chmodSync(path.join(dir, 'open.lua'), 0o666);
  const srv = await serveWith(env, { AGENT_DISPATCH_TOOLS_DIR: dir });
  await stderrMatch(srv, new RegExp(`refusing ${path.join(dir, 'open.lua')}.*chmod go-w ${path.join(dir, 'open.lua')}`));
  const names = (await listTools(srv)).map((x) => x.name);
  assert.ok(!names.includes('open_tool'), 'a world-writable file was loaded');
  assert.ok(names.includes('safe_tool'), 'the safe file must still load');
  await srv.close();
  const lt = env.run(['lua', 'tools'], { env: { AGENT_DISPATCH_TOOLS_DIR: dir } });
  assert.strictEqual(lt.code, 1);
  assert.match(lt.stdout, /PROBLEM .*open\.lua.*chmod/);

  // group-writable is refused too
  fs.chmodSync(path.join(dir, 'open.lua'), 0o664);
  const g = env.run(['lua', 'tools'], { env: { AGENT_DISPATCH_TOOLS_DIR: dir } });
  assert.strictEqual(g.code, 1);
  assert.match(g.stdout, /PROBLEM .*open\.lua.*group.*chmod go-w/);

  // a world-writable directory: nothing in it is loaded, the server answers
  fs.chmodSync(path.join(dir, 'open.lua'), 0o644);
  fs.chmodSync(dir, 0o777);
  const srv2 = await serveWith(env, { AGENT_DISPATCH_TOOLS_DIR: dir });
  await stderrMatch(srv2, new RegExp(`refusing ${dir}: .*chmod go-w ${dir}`));
  const names2 = (await listTools(srv2)).map((x) => x.name);
  assert.ok(!names2.includes('safe_tool') && !names2.includes('open_tool'), names2.join(','));
  const d = await srv2.call('dispatch', { agent: 'a', task: 'ok' });
  assert.strictEqual(d.value.success, true);
  await srv2.close();
  const lt2 = env.run(['lua', 'tools'], { env: { AGENT_DISPATCH_TOOLS_DIR: dir } });
  assert.strictEqual(lt2.code, 1);
  assert.match(lt2.stdout, /PROBLEM .*chmod go-w/);
  fs.chmodSync(dir, 0o755);
});

test('a tool named like a built-in is refused unless override = true, which replaces it', async (t) => {
  const env = newEnv(t);
  env.setup({ agents: { a: true } });
  const mine = (override) => `
tool{
  name = "dispatch",
  description = "My own dispatch",
  params = { { name = "who", type = "string", required = true } },
  ${override ? 'override = true,' : ''}
  handler = function(args, ad) return { mine = true, who = args.who } end,
}
tool{ name = "sibling_tool", handler = function() return 1 end }
`;
  const dir = toolsDir(env, { 'd.lua': mine(false) });
  const srv = await serveWith(env, { AGENT_DISPATCH_TOOLS_DIR: dir });
  await stderrMatch(srv, /tool 'dispatch' is built in; set override = true/);
  let tools = await listTools(srv);
  assert.strictEqual(tools.filter((x) => x.name === 'dispatch').length, 1);
  assert.notStrictEqual(tools.find((x) => x.name === 'dispatch').description, 'My own dispatch');
  const b = await srv.call('dispatch', { agent: 'a', task: 'built-in' });
  assert.strictEqual(b.value.result, 'stub ok: built-in', 'the built-in dispatch must still answer');
  await srv.close();
  const lt = env.run(['lua', 'tools'], { env: { AGENT_DISPATCH_TOOLS_DIR: dir } });
  assert.strictEqual(lt.code, 1);
  assert.match(lt.stdout, /PROBLEM .*'dispatch' is built in/);

  fs.writeFileSync(path.join(dir, 'd.lua'), mine(true));
  const srv2 = await serveWith(env, { AGENT_DISPATCH_TOOLS_DIR: dir });
  tools = await listTools(srv2);
  const ds = tools.filter((x) => x.name === 'dispatch');
  assert.strictEqual(ds.length, 1, 'exactly one dispatch tool');
  assert.strictEqual(ds[0].description, 'My own dispatch');
  assert.deepStrictEqual(ds[0].inputSchema.required, ['who']);
  assert.ok(tools.some((x) => x.name === 'sibling_tool'));
  const c = await srv2.call('dispatch', { who: 'me' });
  assert.deepStrictEqual(c.value, { mine: true, who: 'me' });
  assert.strictEqual(env.dispatches().length, 1, 'the replaced built-in did not run');
  await srv2.close();
});

// ---------------------------------------------------------------- hooks

const HOOKS = {
  '10_context.lua': `
hook("before_dispatch", function(req)
  if req.agent == "prod" then return false, "no dispatches to prod from Claude" end
  if req.task:find("explode", 1, true) then local t = nil; return t.boom end
  req.context = (req.context or "") .. "\\nFollow the team's style guide."
  req.task = req.task .. " (rewritten)"
  return req
end)
`,
  '20_second.lua': `
hook("before_dispatch", function(req)
  req.context = req.context .. "\\nSECOND HOOK"
  return req
end)
hook("after_result", function(req, result)
  if result.result:find("after-boom", 1, true) then error("after hook exploded") end
  result.result = result.result:gsub("sk%-%w+", "sk-REDACTED")
  result.hint = "seen by " .. req.agent
  return result
end)
`,
};

test('before_dispatch rewrites task and context in file order; a refusal names the hook and never dispatches', async (t) => {
  const env = newEnv(t);
  env.setup({ agents: { a: true, prod: true } });
  const dir = toolsDir(env, HOOKS);
  const srv = await serveWith(env, { AGENT_DISPATCH_TOOLS_DIR: dir });
  const c = await srv.call('dispatch', { agent: 'a', task: 'do it [stub:echo_argv]', context: 'ctx' });
  assert.strictEqual(c.isError, false, c.text);
  const prompt = env.dispatches()[0].prompt;
  assert.ok(prompt.includes("ctx\nFollow the team's style guide.\nSECOND HOOK"), prompt);
  assert.ok(prompt.includes('do it [stub:echo_argv] (rewritten)'), prompt);
  assert.ok(c.value.result.includes('(rewritten)'), 'echo_argv shows the rewritten prompt');
  // no context given: the hook's context still reaches the agent
  const c2 = await srv.call('dispatch', { agent: 'a', task: 'plain' });
  assert.strictEqual(c2.value.result, 'stub ok: plain (rewritten)');
  assert.match(env.dispatches()[1].prompt, /Context:\n\nFollow the team's style guide\.\nSECOND HOOK/);

  const refused = await srv.call('dispatch', { agent: 'prod', task: 'deploy' });
  assert.strictEqual(refused.isError, true);
  assert.match(refused.text, /Refused by before_dispatch hook in 10_context\.lua: no dispatches to prod from Claude/);
  assert.strictEqual(env.dispatches().filter((e) => e.prompt.includes('deploy')).length, 0,
    'a refused dispatch reached the agent');
  // dispatch_parallel items go through the hooks too
  const par = await srv.call('dispatch_parallel', { dispatches: JSON.stringify([{ agent: 'a', task: 'p1' }, { agent: 'prod', task: 'p2' }]) });
  const items = Array.isArray(par.value) ? par.value : par.value.individual_results || par.value.results;
  assert.ok(Array.isArray(items), par.text);
  assert.strictEqual(items[0].result, 'stub ok: p1 (rewritten)');
  assert.strictEqual(items[1].success, false);
  assert.match(items[1].error, /no dispatches to prod/);
  assert.strictEqual(env.dispatches().filter((e) => e.prompt.includes('p2')).length, 0);
  await srv.close();
});

test('before_dispatch also guards dispatch_async and dispatch_dialogue', async (t) => {
  const env = newEnv(t);
  env.setup({ agents: { a: true, prod: true } });
  const dir = toolsDir(env, HOOKS);
  const srv = await serveWith(env, { AGENT_DISPATCH_TOOLS_DIR: dir });
  try {
    const as = await srv.call('dispatch_async', { agent: 'prod', task: 'deploy async' });
    if (!as.isError) {
      await srv.call('dispatch_wait', { job_id: as.value.job_id, timeout_seconds: 10 });
    }
    assert.strictEqual(env.dispatches().filter((e) => e.prompt.includes('deploy async')).length, 0,
      'dispatch_async reached prod despite the refusing hook');
    await srv.call('dispatch_dialogue', { requester: 'a', responder: 'prod', topic: 'deploy dialogue', max_rounds: 1 });
    assert.strictEqual(env.dispatches().filter((e) => e.prompt.includes('deploy dialogue') && e.cwd.endsWith('/prod')).length, 0,
      'dispatch_dialogue reached prod despite the refusing hook');
  } finally { await srv.close(); }
});

test('after_result redacts; a hook error fails only that request', async (t) => {
  const env = newEnv(t);
  env.setup({ agents: { a: true } });
  const dir = toolsDir(env, HOOKS);
  const srv = await serveWith(env, { AGENT_DISPATCH_TOOLS_DIR: dir });
  const c = await srv.call('dispatch', { agent: 'a', task: 'key [stub:reply=the key is sk-abc123XYZ ok]' });
  assert.strictEqual(c.value.result, 'the key is sk-REDACTED ok');
  assert.strictEqual(c.value.hint, 'seen by a');
  // a cached result is post-processed as well
  const again = await srv.call('dispatch', { agent: 'a', task: 'key [stub:reply=the key is sk-abc123XYZ ok]' });
  assert.strictEqual(again.value.cached, true, 'premise: the second identical call is a cache hit');
  assert.strictEqual(again.value.result, 'the key is sk-REDACTED ok');
  assert.ok(!again.text.includes('abc123XYZ'));

  // an error in before_dispatch fails that request with the hook's file:line ...
  const bad = await srv.call('dispatch', { agent: 'a', task: 'explode now' });
  assert.strictEqual(bad.isError, true);
  assert.match(bad.text, /before_dispatch hook in 10_context\.lua failed: .*10_context\.lua:4:/);
  assert.strictEqual(env.dispatches().filter((e) => e.prompt.includes('explode')).length, 0);
  // ... and the next request succeeds
  const next = await srv.call('dispatch', { agent: 'a', task: 'after the error' });
  assert.strictEqual(next.value.result, 'stub ok: after the error (rewritten)');

  // an error in after_result fails that request without leaking the raw result
  const ab = await srv.call('dispatch', { agent: 'a', task: 'x [stub:reply=after-boom sk-secret999]' });
  assert.strictEqual(ab.isError, true, ab.text);
  assert.match(ab.text, /after_result hook in 20_second\.lua failed: .*after hook exploded/);
  assert.ok(!ab.text.includes('sk-secret999'), `the unprocessed result leaked: ${ab.text}`);
  const next2 = await srv.call('dispatch', { agent: 'a', task: 'fine again' });
  assert.strictEqual(next2.isError, false);
  assert.strictEqual(next2.value.result, 'stub ok: fine again (rewritten)');
  assert.strictEqual((await srv.request('ping')).result !== undefined, true);
  await srv.close();
});

test('job_done runs after a dispatch_async job ends, with the final record', async (t) => {
  const env = newEnv(t);
  env.setup({ agents: { a: true } });
  const out = path.join(env.root, 'job-done.json');
  const dir = toolsDir(env, {
    'jobs.lua': `
hook("job_done", function(record)
  local io = require("io")
  local f = assert(io.open(${JSON.stringify(out)}, "w"))
  f:write(json.encode({ id = record.id, status = record.status, result = record.result.result }))
  f:close()
end)
`,
  });
  const srv = await serveWith(env, { AGENT_DISPATCH_TOOLS_DIR: dir });
  const s = await srv.call('dispatch_async', { agent: 'a', task: 'background [stub:sleep=0.3]' });
  const id = s.value.job_id;
  assert.match(id, /^[0-9a-f]{32}$/);
  assert.ok(!fs.existsSync(out), 'job_done ran before the job ended');
  assert.ok(await waitUntil(() => fs.existsSync(out) && fs.readFileSync(out, 'utf8').length > 0, 5000),
    `job_done never wrote its file; stderr:\n${srv.stderr}`);
  const v = JSON.parse(fs.readFileSync(out, 'utf8'));
  assert.deepStrictEqual(v, { id, status: 'done', result: 'stub ok: background' });
  const st = await srv.call('dispatch_status', { job_id: id });
  assert.strictEqual(st.value.status, 'done');
  await srv.close();
});

test('a handler with `while true do end` fails with a time-budget error; the server keeps answering', { timeout: 60000 }, async (t) => {
  const env = newEnv(t);
  env.setup({ agents: { a: true } });
  const dir = toolsDir(env, {
    'spin.lua': 'tool{ name = "spin", handler = function() while true do end end }\n' +
      'tool{ name = "quick", handler = function() return "quick ok" end }\n',
  });
  const srv = await serveWith(env, { AGENT_DISPATCH_TOOLS_DIR: dir });
  const t0 = Date.now();
  const r = await callRaw(srv, 'spin', {}, { ms: 20000 });
  const took = Date.now() - t0;
  assert.ok(took < 15000, `the budget stopped the loop after ${took} ms`);
  assert.strictEqual(r.isError, true);
  assert.match(r.text, /spin failed: ran for more than 10(\.0)? s without yielding/);
  assert.match(r.text, /spin\.lua/);
  assert.strictEqual((await srv.request('ping')).result !== undefined, true);
  const q = await callRaw(srv, 'quick', {});
  assert.strictEqual(q.text, 'quick ok');
  const d = await srv.call('dispatch', { agent: 'a', task: 'alive' });
  assert.strictEqual(d.value.result, 'stub ok: alive', d.text + srv.stderr);
  await srv.close();
});

// -------------------------------------------------------------- overrides

const FROM_SHIPPED = (mod, body) => `
local core = require "ad.core"
local M = load(core.embed.source("${mod}"), "=${mod}")()
${body}
return M
`;

test('user override of ad.aggregate changes the aggregator prompt', async (t) => {
  const env = newEnv(t);
  env.setup({ agents: { a: true, b: true, agg: true } });
  const lua = userLua(env, { 'ad/domain/aggregate.lua': FROM_SHIPPED('ad.domain.aggregate', 'M.TASK = "Merge the results into a release checklist."') });
  const srv = await serveWith(env, { AGENT_DISPATCH_USER_LUA_DIR: lua });
  const c = await srv.call('dispatch_parallel', { dispatches: JSON.stringify([{ agent: 'a', task: 't1' }, { agent: 'b', task: 't2' }]), aggregate: 'agg' });
  assert.strictEqual(c.isError, false, c.text);
  const aggRun = env.dispatches().find((e) => e.cwd.endsWith('/agg'));
  assert.ok(aggRun, 'the aggregator ran');
  const prompt = aggRun.prompt;
  assert.ok(prompt.includes('Merge the results into a release checklist.'), prompt);
  assert.ok(!prompt.includes('Synthesize the results below'), 'the shipped TASK is gone');
  assert.ok(prompt.includes('## Agent: a [OK]\nstub ok: t1'), 'the shipped sections are kept');
  assert.strictEqual(c.value.aggregated.result, 'stub ok: Merge the results into a release checklist.');
  await srv.close();
});

test('user override of ad.prompt changes the prompt an agent receives', async (t) => {
  const env = newEnv(t);
  env.setup({ agents: { a: true } });
  const lua = userLua(env, { 'ad/domain/prompt.lua': FROM_SHIPPED('ad.domain.prompt',
    'local build = M.build\nfunction M.build(p) return "HOUSE RULES: be brief.\\n\\n" .. build(p) end') });
  const srv = await serveWith(env, { AGENT_DISPATCH_USER_LUA_DIR: lua });
  const c = await srv.call('dispatch', { agent: 'a', task: 'hello', caller: 'me' });
  assert.strictEqual(c.value.success, true);
  const prompt = env.dispatches()[0].prompt;
  assert.ok(prompt.startsWith('HOUSE RULES: be brief.\n\n## Dispatched by\nme'), prompt);
  assert.ok(prompt.endsWith('## Task\nhello'), prompt);
  await srv.close();
  // run scripts use it too
  const s = path.join(env.root, 's.lua');
  fs.writeFileSync(s, 'return require("agent_dispatch").dispatch{agent = "a", task = "from script"}.success\n');
  const r = env.run(['run', s], { env: { AGENT_DISPATCH_USER_LUA_DIR: lua } });
  assert.strictEqual(r.code, 0, r.stderr);
  assert.ok(env.dispatches()[1].prompt.startsWith('HOUSE RULES: be brief.'));
});

test('a broken ad/tools/cache.lua override: cache tools answer with the load error, the rest works', async (t) => {
  const env = newEnv(t);
  env.setup({ agents: { a: true } });
  const lua = userLua(env, { 'ad/tools/cache.lua': 'local tools = require "ad.tools"\nlocal x = = 1\n' });
  const file = path.join(lua, 'ad/tools/cache.lua');
  const srv = await serveWith(env, { AGENT_DISPATCH_USER_LUA_DIR: lua });
  await stderrMatch(srv, new RegExp(lit(`${file}:2:`)));
  const names = (await listTools(srv)).map((x) => x.name);
  assert.ok(names.includes('cache_stats') && names.includes('cache_clear'), 'the broken tools stay listed');
  assert.deepStrictEqual(names.slice(-3), ['cache_stats', 'cache_clear', 'live_stats'],
    'in their documented place');
  for (const name of ['cache_stats', 'cache_clear']) {
    const c = await srv.call(name, {});
    assert.strictEqual(c.isError, true, c.text);
    assert.ok(c.value.error.includes(`${file}:2:`), c.value.error);
    assert.match(c.value.hint, /lua list/);
  }
  const d = await srv.call('dispatch', { agent: 'a', task: 'works' });
  assert.strictEqual(d.value.result, 'stub ok: works');
  const la = await srv.call('list_agents', {});
  assert.strictEqual(la.isError, false);
  await srv.close();
});

test('`lua list` shows the override path; `lua cat` prints the shipped module', (t) => {
  const env = newEnv(t);
  env.setup({ agents: { a: true } });
  const lua = userLua(env, { 'ad/domain/prompt.lua': 'return { build = function(p) return "X" end }\n' });
  const l = env.run(['lua', 'list'], { env: { AGENT_DISPATCH_USER_LUA_DIR: lua } });
  assert.strictEqual(l.code, 0, l.stderr);
  const line = (mod) => l.stdout.split('\n').find((x) => x.split(/\s+/)[0] === mod);
  assert.match(line('ad.domain.prompt') || '', new RegExp(`^ad\\.domain\\.prompt\\s+${path.join(lua, 'ad/domain/prompt.lua')}$`));
  assert.match(line('ad.domain.aggregate') || '', /^ad\.domain\.aggregate\s+embedded$/);
  assert.match(line('ad.tools.cache') || '', /^ad\.tools\.cache\s+embedded$/);
  const cat = env.run(['lua', 'cat', 'ad.domain.prompt'], { env: { AGENT_DISPATCH_USER_LUA_DIR: lua } });
  assert.strictEqual(cat.code, 0);
  assert.strictEqual(cat.stdout, fs.readFileSync(path.join(SRC_LUA, 'ad/domain/prompt.lua'), 'utf8'),
    '`lua cat` prints the shipped text, not the override');
  const none = env.run(['lua', 'cat', 'ad.nope']);
  assert.strictEqual(none.code, 1);
  assert.match(none.stderr, /no embedded module 'ad\.nope'/);
});

test('a tool whose value cannot be JSON (a table that contains itself) gets an error answer, not silence', async (t) => {
  const env = newEnv(t);
  env.setup({ agents: { a: true } });
  const dir = toolsDir(env, { 'cyc.lua': `
tool{ name = "t_cyc", description = "returns a cycle", params = {},
  handler = function() local t = {} t.t = t return t end }
` });
  const srv = await serveWith(env, { AGENT_DISPATCH_TOOLS_DIR: dir });
  const c = await callRaw(srv, 't_cyc', {});
  assert.strictEqual(c.isError, true, c.text);
  assert.match(c.text, /not JSON .*contains itself/);
  assert.deepStrictEqual((await srv.request('ping')).result, {});
  await srv.close();
});

test('redact reaches the keys of parsed_result and strings nested past 64 levels', async (t) => {
  const env = newEnv(t);
  env.setup({ agents: { a: true } });
  const dir = toolsDir(env, {
    'r.lua': 'hook("redact", function(t) return (t:gsub("sk%-%w+", "sk-REDACTED")) end)\n' });
  const srv = await serveWith(env, { AGENT_DISPATCH_TOOLS_DIR: dir });
  let deep = '"sk-deepsecret"';
  for (let i = 0; i < 70; i++) deep = `{"d":${deep}}`;
  const answer = `{"sk-keysecret":1,"v":"sk-valsecret","deep":${deep}}`;
  const c = await srv.call('dispatch', { agent: 'a', task: `x [stub:json=${answer}]`, response_format: 'json' });
  assert.strictEqual(c.value.success, true, c.text);
  assert.ok(!/deepsecret|keysecret|valsecret/.test(c.text), c.text);
  assert.strictEqual(c.value.parsed_result['sk-REDACTED'], 1);
  let d = c.value.parsed_result.deep;
  for (let i = 0; i < 70; i++) d = d.d;
  assert.strictEqual(d, 'sk-REDACTED');
  await srv.close();
});

test('a before_dispatch hook that leaves a bad task or context fails the call naming the hook; nothing runs', async (t) => {
  const env = newEnv(t);
  env.setup({ agents: { a: true } });
  const dir = toolsDir(env, { 'bad.lua': `
hook("before_dispatch", function(req)
  if req.task:find("number") then req.task = 5
  elseif req.task:find("empty") then return { task = "  " }
  elseif req.task:find("table") then return { context = { "x" } } end
end)
` });
  const srv = await serveWith(env, { AGENT_DISPATCH_TOOLS_DIR: dir });
  for (const [task, why] of [['number', /task must be a string, got number/], ['empty', /task is empty/],
    ['table', /context must be a string, got table/]]) {
    const c = await srv.call('dispatch', { agent: 'a', task });
    assert.strictEqual(c.isError, true, c.text);
    assert.match(c.text, /before_dispatch hook in bad\.lua.* left a bad request: /);
    assert.match(c.text, why);
    assert.ok(!/internal error|bug in agent-dispatch/i.test(c.text), c.text);
  }
  assert.strictEqual(env.dispatches().length, 0);
  const ok = await srv.call('dispatch', { agent: 'a', task: 'fine' });
  assert.strictEqual(ok.value.success, true, ok.text);
  await srv.close();
});

test('two tool files defining one custom tool: the later file is skipped and reported, the first answers', async (t) => {
  const env = newEnv(t);
  env.setup({ agents: { a: true } });
  const dir = toolsDir(env, {
    'ok2.lua': 'tool{ name = "twin", description = "first", handler = function() return {from = "ok2"} end }\n',
    'ok3.lua': 'tool{ name = "twin", description = "second", handler = function() return {from = "ok3"} end }\n' +
      'tool{ name = "other", handler = function() return 1 end }\n',
  });
  const lt = env.run(['lua', 'tools'], { env: { AGENT_DISPATCH_TOOLS_DIR: dir } });
  assert.strictEqual(lt.code, 1, lt.stdout + lt.stderr);
  assert.ok(lt.stdout.split('\n').some((l) => l.includes('PROBLEM') &&
    /ok3\.lua: tool 'twin' is defined in ok2\.lua already/.test(l)), lt.stdout);
  const srv = await serveWith(env, { AGENT_DISPATCH_TOOLS_DIR: dir });
  const c = await srv.call('twin', {});
  assert.deepStrictEqual(c.value, { from: 'ok2' });
  const names = (await listTools(srv)).map((x) => x.name);
  assert.ok(!names.includes('other'), 'a skipped file registered a tool');
  await srv.close();
});

test('the CLI test and dispatch commands apply the tool files\' hooks (redact, before_dispatch) as the server does', (t) => {
  const env = newEnv(t);
  env.setup({ agents: { a: true } });
  const dir = toolsDir(env, {
    'h.lua': 'hook("redact", function(t) return (t:gsub("sk%-%w+", "sk-REDACTED")) end)\n' +
      'hook("before_dispatch", function(req) req.task = req.task .. " [stub:reply=key sk-secret42]" end)\n' });
  for (const cmd of ['test', 'dispatch']) {
    const r = env.run([cmd, 'a', 'show me'], { env: { AGENT_DISPATCH_TOOLS_DIR: dir } });
    assert.strictEqual(r.code, 0, `${cmd}: ${r.stderr}`);
    assert.match(r.stdout, /key sk-REDACTED/, `${cmd}: the hooks did not run: ${r.stdout}`);
    assert.ok(!r.stdout.includes('secret42'), r.stdout);
  }
});
