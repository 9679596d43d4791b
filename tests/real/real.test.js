// Integration tests of agent-dispatch against the REAL Claude Code CLI
// (2.1.328, installed by install-claude.sh), fully offline: every `claude`
// talks to the loopback Messages API mock (tests/mock_api/server.js), whose
// replies are scripted by [mock:...] directives in the prompt.
//
//   AD_BIN=build/agent-dispatch node --test tests/real/real.test.js
//
// Environment: AD_BIN (default <repo>/build/agent-dispatch), CLAUDE_BIN (skip
// the installer), KEEP_TMP=1 (keep the temp tree; its path is printed).
// node:test only, no npm packages. See FINDINGS.md for the CLI facts relied on.
'use strict';

const { describe, it } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('fs');
const path = require('path');
const h = require('./claude-harness');

const TRACE_JS = path.join(__dirname, 'mcp-trace.js');
const AD = path.resolve(h.adBin());
const HAVE_PROC = fs.existsSync('/proc/self/environ');

let BIN = null;        // the real claude binary
let mock = null;       // the shared mock API
let root = null;       // temp tree of this run
let mockLog = null;    // the mock's request log (JSON lines)
let seq = 0;

// ----------------------------------------------------------------- helpers

/** A fresh test area: HOME, agent directories, agents.yaml and the env of
 *  `agent-dispatch serve` (which its claude children inherit). */
function area(name, agents, { settings, extraEnv = {}, claudeViaPath = false } = {}) {
  const dir = path.join(root, `${++seq}-${name}`);
  const home = path.join(dir, 'home');
  fs.mkdirSync(home, { recursive: true });
  const dirs = {};
  const spec = {};
  for (const [agent, opts] of Object.entries(agents)) {
    dirs[agent] = path.join(dir, `proj-${agent}`);
    fs.mkdirSync(dirs[agent]);
    spec[agent] = { directory: dirs[agent], ...opts };
  }
  const config = path.join(dir, 'agents.yaml');
  h.writeAgents(config, spec, settings);
  const extra = {
    AGENT_DISPATCH_CONFIG: config,
    AGENT_DISPATCH_JOBS_DIR: path.join(dir, 'jobs'),
    ...extraEnv,
  };
  if (claudeViaPath) extra.PATH = `${path.dirname(BIN)}:${process.env.PATH || '/usr/bin:/bin'}`;
  else if (!('AGENT_DISPATCH_CLAUDE' in extraEnv)) extra.AGENT_DISPATCH_CLAUDE = BIN;
  const env = h.claudeEnv({ port: mock.port, home, extra });
  return { dir, home, dirs, config, env };
}

/** Starts `agent-dispatch serve` in an area, does the legacy handshake. */
async function serve(a) {
  const s = h.startServer({ env: a.env, cwd: a.dir, bin: AD });
  await s.initialize();
  return s;
}

/** A tools/call whose result must be a DispatchResult. */
async function call(s, tool, args, opts = {}) {
  const { response, notes } = await s.callTool(tool, args, { timeoutMs: 90000, ...opts });
  assert.ok(response.result, `tools/call ${tool} got a JSON-RPC error: ${JSON.stringify(response)}`);
  return { r: s.toolResult(response), response, notes };
}

/** Mock requests whose prompt text (not reminders) contains `marker`. */
function mockRequests(marker) {
  if (!fs.existsSync(mockLog)) return [];
  return fs.readFileSync(mockLog, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l))
    .filter((e) => Array.isArray(e.messages) && e.messages.some((m) => m.role === 'user'
      && m.blocks.some((b) => b.type === 'text' && !b.reminder && b.text.includes(marker))));
}

function findFile(dir, name) {
  if (!fs.existsSync(dir)) return null;
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) { const f = findFile(p, name); if (f) return f; } else if (e.name === name) return p;
  }
  return null;
}

/** Live processes whose environment holds exactly `kv` ("KEY=VALUE"). */
function procsWithEnv(kv) {
  const out = [];
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d) || Number(d) === process.pid) continue;
    try {
      const env = fs.readFileSync(`/proc/${d}/environ`, 'latin1').split('\0');
      if (!env.includes(kv)) continue;
      const stat = fs.readFileSync(`/proc/${d}/stat`, 'latin1');
      if (/\) Z /.test(stat)) continue; // zombie: exited, waiting for its parent
      out.push({ pid: Number(d), cmd: fs.readFileSync(`/proc/${d}/cmdline`, 'latin1').replace(/\0/g, ' ').trim() });
    } catch (_) { /* gone or not ours */ }
  }
  return out;
}

async function waitNoProcs(kv, exclude = [], ms = 8000) {
  if (!HAVE_PROC) return [];
  const until = Date.now() + ms;
  let left;
  do {
    left = procsWithEnv(kv).filter((p) => !exclude.includes(p.pid));
    if (!left.length) return left;
    await new Promise((r) => setTimeout(r, 100));
  } while (Date.now() < until);
  return left;
}

function parseEnvDump(file) { // `env -0` output
  const env = {};
  for (const kv of fs.readFileSync(file, 'utf8').split('\0')) {
    const i = kv.indexOf('=');
    if (i > 0) env[kv.slice(0, i)] = kv.slice(i + 1);
  }
  return env;
}

function readTrace(file) {
  if (!fs.existsSync(file)) return [];
  return fs.readFileSync(file, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l));
}

/** Runs the real CLI as the MCP client of agent-dispatch (test 7/8 setup). */
async function outerRun(a, { era, trace }) {
  const outer = path.join(a.dir, 'outer');
  fs.mkdirSync(outer, { recursive: true });
  const env = {
    AGENT_DISPATCH_CONFIG: a.config,
    AGENT_DISPATCH_JOBS_DIR: path.join(a.dir, 'jobs'),
    AGENT_DISPATCH_CLAUDE: a.env.AGENT_DISPATCH_CLAUDE,
  };
  if (era) env.AGENT_DISPATCH_MCP_ERA = era;
  const server = trace
    ? { type: 'stdio', command: process.execPath, args: [TRACE_JS, trace.file, trace.env, '--', AD, 'serve'], env }
    : { type: 'stdio', command: AD, args: ['serve'], env };
  const cfg = path.join(a.dir, 'mcp.json');
  fs.writeFileSync(cfg, JSON.stringify({ mcpServers: { ad: server } }, null, 2));
  const task = '[mock:reply=WORKER ANSWER]';  // one inner request per outer run
  const prompt = `[mock:mcp=ad:dispatch:${JSON.stringify({ agent: 'worker', task, caller: `outer-${path.basename(a.dir)}` })}]`;
  const r = await h.runClaude(['-p', '--mcp-config', cfg, '--allowedTools', 'mcp__ad__dispatch',
    '--output-format', 'json', '--', prompt], { port: mock.port, home: a.home, cwd: outer, timeoutMs: 90000, bin: BIN });
  return { r, cfg, outer };
}

function assertOuterOk(r) {
  assert.equal(r.code, 0, `outer claude exit ${r.code}; stderr:\n${r.stderr}\nstdout:\n${r.stdout}`);
  assert.ok(r.json, `outer claude printed no JSON: ${r.stdout}`);
  assert.equal(r.json.is_error, false, JSON.stringify(r.json));
  assert.deepEqual(r.json.permission_denials, [], 'the outer CLI must have been allowed to call mcp__ad__dispatch');
  assert.match(r.json.result, /^MCP RESULT: /, 'the mock saw a tool_result for the dispatch call');
  assert.match(r.json.result, /WORKER ANSWER/, `the inner worker's answer must come back: ${r.json.result}`);
  assert.match(r.json.result, /"success":\s*true/);
}

// ------------------------------------------------------------------- tests

describe('agent-dispatch with the real Claude Code CLI', { concurrency: 4 }, () => {
  h.mockSuite('ad-real.', (s) => ({ bin: BIN, root, mock, mockLog } = s));

  // 1 -----------------------------------------------------------------------
  it('dispatch: a real successful run in the agent directory (claude found on PATH)', { timeout: 120000 }, async () => {
    const a = area('success', { worker: { timeout: 60 } }, { claudeViaPath: true });
    const s = await serve(a);
    try {
      const { r, response } = await call(s, 'dispatch', {
        agent: 'worker', task: 'say it [mock:reply=REAL ANSWER one]', caller: 'real.test.js', goal: 'test 1',
      });
      assert.equal(response.result.isError, false);
      assert.equal(r.success, true, JSON.stringify(r));
      assert.equal(r.agent, 'worker');
      assert.equal(r.result, 'REAL ANSWER one');
      assert.match(r.session_id, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
      assert.equal(typeof r.cost_usd, 'number');
      assert.ok(r.cost_usd > 0, `cost_usd ${r.cost_usd}`);
      assert.equal(r.num_turns, 1);
      assert.equal(r.error, undefined);
      // The CLI really ran in the agent's directory, with our prompt.
      const reqs = mockRequests('REAL ANSWER one');
      assert.equal(reqs.length, 1, 'exactly one API request for this dispatch');
      const dump = JSON.stringify(reqs[0].messages);
      assert.ok(dump.includes(`Primary working directory: ${fs.realpathSync(a.dirs.worker)}`), dump.slice(0, 2000));
      assert.ok(dump.includes('## Dispatched by\\nreal.test.js'), 'caller= reaches the prompt');
      // ... and the session it reports exists in the child's HOME.
      assert.ok(findFile(path.join(a.home, '.claude', 'projects'), `${r.session_id}.jsonl`),
        `session transcript ${r.session_id}.jsonl under ${a.home}/.claude/projects`);
    } finally { await s.close(); }
  });

  // 2 -----------------------------------------------------------------------
  it('dispatch: a tool call the CLI denies in -p is reported with denied_tools and a hint', { timeout: 120000 }, async () => {
    const a = area('denial', { worker: { timeout: 60 } });
    const target = path.join(a.dirs.worker, 'should-not-exist');
    const s = await serve(a);
    try {
      const { r } = await call(s, 'dispatch', { agent: 'worker', task: `[mock:tool=Bash:touch ${target}]` });
      assert.equal(r.success, true, JSON.stringify(r));
      assert.ok(Array.isArray(r.denied_tools), `denied_tools: ${JSON.stringify(r)}`);
      assert.ok(r.denied_tools.includes('Bash'), JSON.stringify(r.denied_tools));
      assert.equal(typeof r.hint, 'string');
      assert.match(r.hint, /incomplete/);
      assert.match(r.hint, /Bash/);
      assert.match(r.result, /^TOOL DONE: /, 'the run continued after the denial');
      assert.ok(r.session_id);
      assert.equal(fs.existsSync(target), false, 'the denied command must not have run');
    } finally { await s.close(); }
  });

  // 3 -----------------------------------------------------------------------
  it('dispatch: max_budget_usd 0.01 and an expensive reply stop as a budget error', { timeout: 120000 }, async () => {
    const a = area('budget', { cheap: { timeout: 60, max_budget_usd: 0.01 } });
    const s = await serve(a);
    try {
      const { r, response } = await call(s, 'dispatch', { agent: 'cheap', task: 'spend [mock:tokens=200000]' });
      assert.equal(response.result.isError, true);
      assert.equal(r.success, false, JSON.stringify(r));
      assert.equal(r.error_type, 'budget');
      assert.equal(r.budget_exceeded, true);
      assert.match(r.error, /--max-budget-usd/);
      assert.match(r.error, /\$0\.01/);
      assert.ok(r.cost_usd > 0.01, `cost_usd ${r.cost_usd}`);
      assert.ok(r.session_id);
      // The cap really was passed to the CLI: it made one request and stopped.
      assert.equal(mockRequests('spend [mock:tokens=200000]').length, 1);
    } finally { await s.close(); }
  });

  // 4 -----------------------------------------------------------------------
  it('dispatch: a timeout kills the child and returns a session that dispatch_session resumes', { timeout: 150000 }, async () => {
    const a = area('timeout', { worker: { timeout: 300 } });
    const s = await serve(a);
    try {
      const marker = `slow-${process.pid}-${Date.now()}`;
      const t0 = Date.now();
      const { r } = await call(s, 'dispatch', { agent: 'worker', task: `${marker} [mock:sleep=60]`, timeout_seconds: 10 });
      const took = Date.now() - t0;
      assert.equal(r.success, false, JSON.stringify(r));
      assert.equal(r.error_type, 'timeout');
      assert.ok(took >= 9500 && took < 30000, `timed out after ${took} ms (expected ~10 s)`);
      assert.match(r.error, /10s/);
      assert.match(r.error, /dispatch_session/);
      assert.match(r.session_id, /^[0-9a-f-]{36}$/);
      assert.ok(r.error.includes(r.session_id), 'the resume call in the error names the session');
      // Precondition for resumability (FINDINGS f): the request had gone out.
      assert.equal(mockRequests(marker).length, 1, 'the CLI sent its request before it was killed');
      // Nothing of the killed child is left (its whole process group went away).
      // (The server's keeper, the parent of its sync children, lives as long
      // as the server: handoff_keeper.test.js checks that it goes with it.)
      const keepers = procsWithEnv(`AGENT_DISPATCH_CONFIG=${a.config}`)
        .filter((p) => / __keeper \d+ \d+$/.test(p.cmd)).map((p) => p.pid);
      const left = await waitNoProcs(`AGENT_DISPATCH_CONFIG=${a.config}`, [s.child.pid, ...keepers]);
      assert.deepEqual(left, [], `leftover processes after the timeout: ${JSON.stringify(left)}`);

      const { r: r2 } = await call(s, 'dispatch_session', {
        agent: 'worker', task: 'Continue where you left off [mock:echo_history]', session_id: r.session_id,
      });
      assert.equal(r2.success, true, JSON.stringify(r2));
      assert.equal(r2.session_id, r.session_id);
      const turns = JSON.parse(r2.result).turns;
      assert.ok(turns.length >= 3, JSON.stringify(turns));
      assert.equal(turns[0].role, 'user');
      assert.ok(turns[0].text.includes(marker), `the mock sees the timed-out turn: ${JSON.stringify(turns)}`);
      assert.ok(turns[turns.length - 1].text.includes('Continue where you left off'));
    } finally { await s.close(); }
  });

  // 5 -----------------------------------------------------------------------
  it('dispatch_session twice: the second turn sees the first', { timeout: 120000 }, async () => {
    const a = area('session', { worker: { timeout: 60 } });
    const s = await serve(a);
    try {
      const word = `banana-${process.pid}`;
      const { r: r1 } = await call(s, 'dispatch_session', { agent: 'worker', task: `remember [mock:reply=${word}]` });
      assert.equal(r1.success, true, JSON.stringify(r1));
      assert.equal(r1.result, word);
      assert.ok(r1.session_id);
      const { r: r2 } = await call(s, 'dispatch_session', {
        agent: 'worker', task: 'what was it? [mock:echo_history]', session_id: r1.session_id,
      });
      assert.equal(r2.success, true, JSON.stringify(r2));
      assert.equal(r2.session_id, r1.session_id);
      const turns = JSON.parse(r2.result).turns;
      assert.deepEqual(turns.map((t) => t.role), ['user', 'assistant', 'user']);
      assert.ok(turns[0].text.includes(`remember [mock:reply=${word}]`), JSON.stringify(turns));
      assert.equal(turns[1].text, word);
      assert.ok(turns[2].text.includes('what was it?'));
    } finally { await s.close(); }
  });

  // 6 -----------------------------------------------------------------------
  it('dispatch_stream: progress notifications arrive before the result', { timeout: 120000 }, async () => {
    const a = area('stream', { worker: { timeout: 60 } });
    const s = await serve(a);
    try {
      const token = `tok-${seq}`;
      const { r, notes } = await call(s, 'dispatch_stream', { agent: 'worker', task: 'count [mock:parts=3]' },
        { progressToken: token });
      assert.equal(r.success, true, JSON.stringify(r));
      assert.equal(r.result, 'part 3', 'the final result is the last text block');
      assert.ok(r.session_id);
      const prog = notes.filter((n) => n.method === 'notifications/progress');
      assert.ok(prog.length >= 3, `expected >= 3 progress notifications before the result, got ${JSON.stringify(notes)}`);
      for (const p of prog) assert.equal(p.params.progressToken, token);
      const values = prog.map((p) => p.params.progress);
      for (let i = 1; i < values.length; i++) assert.ok(values[i] > values[i - 1], `progress must increase: ${values}`);
      const msgs = prog.map((p) => p.params.message || '').join('\n');
      for (const part of ['part 1', 'part 2', 'part 3']) assert.ok(msgs.includes(part), msgs);
      // Nothing for this token after the response.
      const respAt = s.messages.findIndex((m) => m.msg && m.msg.result && m.msg.result.content
        && m.msg.result.content[0].text.includes('"part 3"'));
      assert.ok(respAt >= 0);
      await new Promise((res) => setTimeout(res, 300));
      const late = s.messages.slice(respAt + 1).filter((m) => m.msg && m.msg.params && m.msg.params.progressToken === token);
      assert.deepEqual(late, [], 'no progress after the result');
    } finally { await s.close(); }
  });

  // 7 -----------------------------------------------------------------------
  for (const era of ['modern', 'legacy']) {
    it(`Claude Code as the MCP client of agent-dispatch (${era} era): outer claude -> dispatch -> inner claude`, { timeout: 120000 }, async () => {
      const a = area(`client-${era}`, { worker: { timeout: 60 } });
      const { r } = await outerRun(a, { era: era === 'legacy' ? 'legacy' : undefined });
      assertOuterOk(r);
      // The inner worker really ran in its directory against the mock.
      const inner = mockRequests('[mock:reply=WORKER ANSWER]').filter((e) =>
        JSON.stringify(e.messages).includes(`Primary working directory: ${fs.realpathSync(a.dirs.worker)}`));
      assert.equal(inner.length, 1, 'one API request from the inner worker');
      // The CLI stopped our server at the end of its run: nothing is left.
      const left = await waitNoProcs(`AGENT_DISPATCH_CONFIG=${a.config}`);
      assert.deepEqual(left, [], `agent-dispatch (or a child) outlived the outer claude run: ${JSON.stringify(left)}`);
    });
  }

  // 8 -----------------------------------------------------------------------
  for (const era of ['modern', 'legacy']) {
    it(`environment of the inner worker and MCP traffic (${era} era, traced)`, { timeout: 120000 }, async () => {
      const a0 = area(`env-${era}`, { worker: { timeout: 60 } });
      // A wrapper around the real claude that records the worker's environment.
      const wrapper = path.join(a0.dir, 'claude-wrapper.sh');
      fs.writeFileSync(wrapper, `#!/bin/sh\n[ "$1" = --help ] || env -0 > "${a0.dir}/worker-env.$$"\nexec "${BIN}" "$@"\n`, { mode: 0o755 });
      a0.env.AGENT_DISPATCH_CLAUDE = wrapper;
      const trace = { file: path.join(a0.dir, 'mcp-trace.jsonl'), env: path.join(a0.dir, 'server-env.json') };
      const { r } = await outerRun(a0, { era: era === 'legacy' ? 'legacy' : undefined, trace });
      assertOuterOk(r);

      // The premise: the CLI gave the MCP server its session markers.
      const serverEnv = JSON.parse(fs.readFileSync(trace.env, 'utf8'));
      assert.equal(serverEnv.CLAUDECODE, '1', 'the CLI-started server sees CLAUDECODE=1');
      assert.ok(serverEnv.CLAUDE_CODE_SESSION_ID, 'the CLI-started server sees CLAUDE_CODE_SESSION_ID');
      assert.ok(serverEnv.CLAUDE_CODE_ENTRYPOINT, 'the CLI-started server sees CLAUDE_CODE_ENTRYPOINT');
      assert.equal(serverEnv.AGENT_DISPATCH_DEPTH, undefined);

      // The worker does not inherit them; the depth counter is set.
      const dumps = fs.readdirSync(a0.dir).filter((f) => f.startsWith('worker-env.'));
      assert.equal(dumps.length, 1, `one worker run expected, got ${dumps}`);
      const wenv = parseEnvDump(path.join(a0.dir, dumps[0]));
      for (const k of ['CLAUDECODE', 'CLAUDE_CODE_SESSION_ID', 'CLAUDE_CODE_ENTRYPOINT']) {
        assert.equal(wenv[k], undefined, `${k} must not reach the worker (got ${JSON.stringify(wenv[k])})`);
      }
      assert.equal(wenv.AGENT_DISPATCH_DEPTH, '1');
      // What it needs does reach it.
      assert.equal(wenv.ANTHROPIC_BASE_URL, `http://127.0.0.1:${mock.port}`);
      assert.equal(wenv.HOME, a0.home);
      assert.equal(wenv.AGENT_DISPATCH_CONFIG, a0.config);

      // The MCP conversation the real CLI had with agent-dispatch.
      const t = readTrace(trace.file);
      const ins = t.filter((e) => e.dir === 'in' && typeof e.line === 'object').map((e) => e.line);
      const outs = t.filter((e) => e.dir === 'out' && typeof e.line === 'object').map((e) => e.line);
      const reply = (req) => outs.find((o) => o.id === req.id && o.method === undefined);
      assert.ok(ins.length > 0, 'trace recorded the client messages');
      assert.equal(ins[0].method, 'server/discover', `first client message: ${JSON.stringify(ins[0])}`);
      const discover = reply(ins[0]);
      const init = ins.find((m) => m.method === 'initialize');
      const callReq = ins.find((m) => m.method === 'tools/call');
      assert.ok(callReq, 'the CLI called a tool');
      assert.equal(callReq.params.name, 'dispatch');
      const callResp = reply(callReq);
      assert.ok(callResp && callResp.result, `tools/call answered: ${JSON.stringify(callResp)}`);
      assert.match(callResp.result.content[0].text, /WORKER ANSWER/);
      if (era === 'modern') {
        assert.ok(discover && discover.result, `server/discover answered: ${JSON.stringify(discover)}`);
        assert.ok(discover.result.supportedVersions.includes('2026-07-28'));
        assert.equal(init, undefined, 'no initialize handshake in the modern era');
        assert.equal(callReq.params._meta['io.modelcontextprotocol/protocolVersion'], '2026-07-28');
        assert.equal(callResp.result.resultType, 'complete');
      } else {
        assert.ok(discover && discover.error, `server/discover refused: ${JSON.stringify(discover)}`);
        assert.equal(discover.error.code, -32601);
        assert.ok(init, 'the CLI fell back to initialize');
        assert.equal(reply(init).result.protocolVersion, init.params.protocolVersion);
        assert.ok(ins.some((m) => m.method === 'notifications/initialized'));
        assert.ok(ins.indexOf(init) < ins.indexOf(callReq));
      }
      // Every request the CLI made got exactly one answer.
      for (const q of ins.filter((m) => m.id !== undefined && m.method)) {
        assert.equal(outs.filter((o) => o.id === q.id && o.method === undefined).length, 1, `one answer to ${q.method} id ${q.id}`);
      }
    });
  }

  // 8b ----------------------------------------------------------------------
  // Beyond the three documented variables, 2.1.328 gives the MCP server more
  // of the calling session's identity (observed: CLAUDE_PROJECT_DIR=<caller's
  // project>, CLAUDE_CODE_LAUNCHED_BY_SESSION_IDS=<caller's session>,
  // CLAUDE_CODE_CHILD_NOTES_DIR=<...>/<caller's session>/started,
  // CLAUDE_CODE_MESSAGING_SOCKET/_TOKEN). The worker is a separate top-level
  // session in another project (runner.lua STRIPPED_ENV: "a caller's session
  // id must not leak into the child's bookkeeping"), so none of its
  // environment may name the caller's session, and CLAUDE_PROJECT_DIR (which
  // the worker's own tools see verbatim) must not point at the caller's project.
  it('the inner worker carries no identifier of the calling session or its project', { timeout: 120000 }, async () => {
    const a0 = area('env-leak', { worker: { timeout: 60 } });
    const wrapper = path.join(a0.dir, 'claude-wrapper.sh');
    fs.writeFileSync(wrapper, `#!/bin/sh\n[ "$1" = --help ] || env -0 > "${a0.dir}/worker-env.$$"\nexec "${BIN}" "$@"\n`, { mode: 0o755 });
    a0.env.AGENT_DISPATCH_CLAUDE = wrapper;
    const trace = { file: path.join(a0.dir, 'mcp-trace.jsonl'), env: path.join(a0.dir, 'server-env.json') };
    const { r, outer } = await outerRun(a0, { trace });
    assertOuterOk(r);
    const serverEnv = JSON.parse(fs.readFileSync(trace.env, 'utf8'));
    const callerSession = serverEnv.CLAUDE_CODE_SESSION_ID;
    assert.ok(callerSession, 'premise: the server knows the caller session id');
    assert.equal(callerSession, r.json.session_id, 'premise: it is the outer run\'s session');
    const dumps = fs.readdirSync(a0.dir).filter((f) => f.startsWith('worker-env.'));
    assert.equal(dumps.length, 1);
    const wenv = parseEnvDump(path.join(a0.dir, dumps[0]));
    const leaks = Object.entries(wenv).filter(([, v]) => v.includes(callerSession)).map(([k, v]) => `${k}=${v}`);
    const pd = wenv.CLAUDE_PROJECT_DIR;
    if (pd !== undefined && fs.existsSync(pd) && fs.realpathSync(pd) === fs.realpathSync(outer)) {
      leaks.push(`CLAUDE_PROJECT_DIR=${pd} (the caller's project, not ${a0.dirs.worker})`);
    }
    assert.deepEqual(leaks, [], 'the worker inherited the calling session\'s identity');
  });

  // 9 -----------------------------------------------------------------------
  it('init registers with the real CLI, and `claude mcp list` reports it connected', { timeout: 120000 }, async () => {
    const a = area('init', {}, { claudeViaPath: true });
    const env = { ...a.env };
    delete env.AGENT_DISPATCH_CONFIG; // the default location under HOME
    const run = (cmd, args) => new Promise((resolve, reject) => {
      const { spawn } = require('child_process');
      const c = spawn(cmd, args, { cwd: a.dir, env, stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = '', stderr = '';
      c.stdout.on('data', (d) => { stdout += d; }); c.stderr.on('data', (d) => { stderr += d; });
      const timer = setTimeout(() => c.kill('SIGKILL'), 60000);
      c.once('error', reject);
      c.once('close', (code) => { clearTimeout(timer); resolve({ code, stdout, stderr }); });
    });
    const i1 = await run(AD, ['init']);
    assert.equal(i1.code, 0, `init: ${i1.stdout}${i1.stderr}`);
    const cfg = path.join(a.home, '.config', 'agent-dispatch', 'agents.yaml');
    assert.match(i1.stdout, /Created config: /);
    assert.ok(fs.existsSync(cfg), 'init created the config under HOME');
    assert.match(i1.stdout, /Registered MCP server with Claude Code \(user scope\)/, i1.stdout + i1.stderr);
    const cj = path.join(a.home, '.claude.json');
    const reg = JSON.parse(fs.readFileSync(cj, 'utf8')).mcpServers['agent-dispatch'];
    assert.deepEqual(reg, { type: 'stdio', command: fs.realpathSync(AD), args: ['serve'] });
    assert.equal(fs.statSync(cj).mode & 0o777, 0o600);

    const list = await run(BIN, ['mcp', 'list']);
    assert.equal(list.code, 0, `claude mcp list: ${list.stdout}${list.stderr}`);
    assert.match(list.stdout, /agent-dispatch: \S+ serve - [✓✔] Connected/, list.stdout);

    const i2 = await run(AD, ['init']);
    assert.equal(i2.code, 0, `second init: ${i2.stdout}${i2.stderr}`);
    assert.match(i2.stdout, /Config already exists: /);
    assert.match(i2.stdout, /already registered/, i2.stdout + i2.stderr);
  });

  // 10 ----------------------------------------------------------------------
  it('Claude Code as the MCP client calls a custom tool from a tool file (issue #6)', { timeout: 120000 }, async () => {
    const a = area('custom-tool', {});
    const toolsDir = path.join(a.dir, 'tools');
    fs.mkdirSync(toolsDir);
    fs.chmodSync(toolsDir, 0o755);
    const file = path.join(toolsDir, 'upper.lua');
    fs.writeFileSync(file, 'tool{ name = "echo_upper", description = "Uppercase a text.",\n' +
      '  params = { { name = "text", type = "string", required = true } },\n' +
      '  handler = function(args) return "UPPER: " .. string.upper(args.text) end }\n');
    fs.chmodSync(file, 0o644);
    const outer = path.join(a.dir, 'outer');
    fs.mkdirSync(outer);
    const env = { AGENT_DISPATCH_CONFIG: a.config, AGENT_DISPATCH_JOBS_DIR: path.join(a.dir, 'jobs'),
      AGENT_DISPATCH_TOOLS_DIR: toolsDir };
    const cfg = path.join(a.dir, 'mcp.json');
    fs.writeFileSync(cfg, JSON.stringify({ mcpServers: { ad: { type: 'stdio', command: AD, args: ['serve'], env } } }));
    const word = `custom tool ${seq}`;
    const r = await h.runClaude(['-p', '--mcp-config', cfg, '--allowedTools', 'mcp__ad__echo_upper',
      '--output-format', 'json', '--', `[mock:mcp=ad:echo_upper:${JSON.stringify({ text: word })}]`],
    { port: mock.port, home: a.home, cwd: outer, timeoutMs: 90000, bin: BIN });
    assert.equal(r.code, 0, `outer claude exit ${r.code}; stderr:\n${r.stderr}\nstdout:\n${r.stdout}`);
    assert.ok(r.json, `outer claude printed no JSON: ${r.stdout}`);
    assert.equal(r.json.is_error, false, JSON.stringify(r.json));
    assert.deepEqual(r.json.permission_denials, [], 'the CLI must have been allowed to call mcp__ad__echo_upper');
    assert.equal(r.json.result, `MCP RESULT: UPPER: ${word.toUpperCase()}`);
    const left = await waitNoProcs(`AGENT_DISPATCH_CONFIG=${a.config}`);
    assert.deepEqual(left, [], `agent-dispatch outlived the outer claude run: ${JSON.stringify(left)}`);
  });
});
