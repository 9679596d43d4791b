// agent-dispatch with the REAL Claude Code CLI against the loopback mock:
// a sync dispatch still running after a short handoff_after_seconds
// returns a job id at once, and dispatch_wait later returns the answer of
// that same child (the model was asked once). And what the end of a
// `claude -p` session does to a job handed off by the agent-dispatch
// server it started: Claude Code stops the server by pid (SIGINT, SIGTERM,
// SIGKILL within about 0.5 s); the server's keeper runs the job on, and a
// later process reads its answer.
//
//   AD_BIN=build/agent-dispatch node --test tests/real/real_handoff.test.js
'use strict';

const { describe, it } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('crypto');
const fs = require('fs');
const path = require('path');
const h = require('./claude-harness');

const AD = path.resolve(h.adBin());
let BIN = null;
let mock = null;
let root = null;
let mockLog = null;

function alive(pid) {
  try { process.kill(pid, 0); } catch { return false; }
  try {
    const st = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return !/^[ZX]$/.test(st.slice(st.lastIndexOf(')') + 2, st.lastIndexOf(')') + 3));
  } catch { return false; }
}

function requestsWithDigest(sha) {
  return fs.readFileSync(mockLog, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l))
    .filter((e) => e.prompt_sha256 === sha && !e.side);
}

describe('sync-to-async hand-off with the real Claude Code CLI', () => {
  h.mockSuite('ad-real-handoff.', (s) => ({ bin: BIN, root, mock, mockLog } = s));

  it('dispatch past handoff_after_seconds returns a job; dispatch_wait gets the one child\'s answer',
    { timeout: 120000 }, async () => {
      const home = path.join(root, 'home');
      const proj = path.join(root, 'proj');
      fs.mkdirSync(home, { recursive: true });
      fs.mkdirSync(proj);
      const config = path.join(root, 'agents.yaml');
      h.writeAgents(config, { worker: { directory: proj, timeout: 90 } });
      const env = h.claudeEnv({ port: mock.port, home, extra: {
        AGENT_DISPATCH_CONFIG: config, AGENT_DISPATCH_JOBS_DIR: path.join(root, 'jobs'),
        AGENT_DISPATCH_CLAUDE: BIN } });
      const s = h.startServer({ env, cwd: root, bin: AD });
      try {
        await s.initialize();
        const task = '[mock:sleep=5][mock:reply=HANDED OFF ANSWER] a long delegation';
        const t0 = Date.now();
        const { response } = await s.callTool('dispatch', { agent: 'worker', task,
          handoff_after_seconds: 1 }, { timeoutMs: 60000 });
        const took = Date.now() - t0;
        const v = s.toolResult(response);
        assert.equal(v.status, 'running', JSON.stringify(v));
        assert.match(v.job_id, /^[0-9a-f]{32}$/);
        assert.match(v.hint, /dispatch_wait/);
        assert.ok(took < 4500, `the call took ${took} ms`);
        const w = await s.callTool('dispatch_wait', { job_id: v.job_id, timeout_seconds: 90 },
          { timeoutMs: 100000 });
        const rec = s.toolResult(w.response);
        assert.equal(rec.status, 'done', JSON.stringify(rec).slice(0, 800));
        assert.equal(rec.result.success, true);
        assert.equal(rec.result.result, 'HANDED OFF ANSWER');
        assert.match(rec.result.session_id, /^[0-9a-f-]{36}$/);
        const sha = crypto.createHash('sha256').update(task).digest('hex');
        assert.equal(requestsWithDigest(sha).length, 1, 'the model was asked exactly once');
      } finally {
        await s.close();
      }
    });

  it('a job handed off inside a `claude -p` session outlives the session; a later process reads its answer',
    { timeout: 120000 }, async () => {
      const dir = path.join(root, 'outer-session');
      const home = path.join(dir, 'home');
      const proj = path.join(dir, 'proj');
      const outer = path.join(dir, 'outer');
      for (const d of [home, proj, outer]) fs.mkdirSync(d, { recursive: true });
      const config = path.join(dir, 'agents.yaml');
      const jobsDir = path.join(dir, 'jobs');
      h.writeAgents(config, { worker: { directory: proj, timeout: 90 } });
      const adEnv = { AGENT_DISPATCH_CONFIG: config, AGENT_DISPATCH_JOBS_DIR: jobsDir,
        AGENT_DISPATCH_CLAUDE: BIN };
      const cfg = path.join(dir, 'mcp.json');
      fs.writeFileSync(cfg, JSON.stringify({ mcpServers: { ad: { type: 'stdio', command: AD,
        args: ['serve'], env: adEnv } } }));
      const inner = '[mock:sleep=8][mock:reply=AFTER THE SESSION] inner work';
      const call = { agent: 'worker', task: inner, handoff_after_seconds: 1 };
      const r = await h.runClaude(['-p', '--mcp-config', cfg, '--allowedTools', 'mcp__ad__dispatch',
        '--output-format', 'json', '--', `[mock:mcp=ad:dispatch:${JSON.stringify(call)}]`],
      { port: mock.port, home, cwd: outer, timeoutMs: 90000, bin: BIN });
      assert.equal(r.code, 0, `outer claude exit ${r.code}; stderr:\n${r.stderr}`);
      assert.match(r.json.result, /^MCP RESULT: /);
      const m = /"job_id":\s*"([0-9a-f]{32})"/.exec(r.json.result);
      assert.ok(m, `the tool result names a job: ${r.json.result}`);
      assert.match(r.json.result, /"status":\s*"running"/);
      const file = path.join(jobsDir, `${m[1]}.json`);
      // The session is over (its server was stopped): the job still runs.
      let rec = JSON.parse(fs.readFileSync(file, 'utf8'));
      assert.equal(rec.status, 'running', JSON.stringify(rec));
      const keeper = rec.server.pid;
      const w = require('child_process').spawnSync(AD, ['wait', m[1], '--timeout', '60'],
        { env: { ...process.env, ...adEnv, HOME: home }, encoding: 'utf8', timeout: 70000 });
      assert.equal(w.status, 0, `wait: ${w.stdout}${w.stderr}`);
      rec = JSON.parse(fs.readFileSync(file, 'utf8'));
      assert.equal(rec.status, 'done', JSON.stringify(rec).slice(0, 800));
      assert.equal(rec.result.result, 'AFTER THE SESSION');
      assert.match(rec.result.session_id, /^[0-9a-f-]{36}$/);
      const sha = crypto.createHash('sha256').update(inner).digest('hex');
      assert.equal(requestsWithDigest(sha).length, 1, 'the model was asked exactly once');
      const gone = Date.now() + 5000;
      while (Date.now() < gone && alive(keeper)) await new Promise((res) => setTimeout(res, 50));
      assert.ok(!alive(keeper), 'the keeper exits when its job is done');
    });
});
