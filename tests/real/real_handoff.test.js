// agent-dispatch with the REAL Claude Code CLI against the loopback mock:
// a sync dispatch still running after a short handoff_after_seconds
// returns a job id at once, and dispatch_wait later returns the answer of
// that same child (the model was asked once).
//
//   AD_BIN=build/agent-dispatch node --test tests/real/real_handoff.test.js
'use strict';

const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('crypto');
const fs = require('fs');
const os = require('os');
const path = require('path');
const h = require('./claude-harness');

const AD = path.resolve(h.adBin());
let BIN = null;
let mock = null;
let root = null;
let mockLog = null;

function requestsWithDigest(sha) {
  return fs.readFileSync(mockLog, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l))
    .filter((e) => e.prompt_sha256 === sha && !e.side);
}

describe('sync-to-async hand-off with the real Claude Code CLI', () => {
  before(async () => {
    BIN = h.claudeBin();
    root = fs.mkdtempSync(path.join(os.tmpdir(), 'ad-real-handoff.'));
    mockLog = path.join(root, 'mock.jsonl');
    mock = await h.startMock({ log: mockLog });
  });

  after(async () => {
    if (mock) await mock.stop();
    if (root) fs.rmSync(root, { recursive: true, force: true });
  });

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
});
