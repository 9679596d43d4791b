// agent-dispatch with the REAL Claude Code CLI against the loopback mock,
// over the CLI's live control channel (settings.transport auto: the CLI's
// --help lists --input-format): a dispatch answers as before; a running
// job is steered and its answer reflects the guidance; a cancelled job is
// stopped with the interrupt, keeps its session id, and dispatch_session
// resumes that session.
//
//   AD_BIN=build/agent-dispatch node --test tests/real/real_live.test.js
'use strict';

const { describe, it } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('fs');
const path = require('path');
const h = require('./claude-harness');

const AD = path.resolve(h.adBin());
let BIN = null;
let mock = null;
let root = null;
let n = 0;

function readRec(jobs, id) {
  try { return JSON.parse(fs.readFileSync(path.join(jobs, `${id}.json`), 'utf8')); } catch { return null; }
}

async function until(pred, ms) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    const v = pred();
    if (v) return v;
    await new Promise((r) => setTimeout(r, 50));
  }
  return null;
}

// A server of its own (config, jobs, HOME) for one test.
function setup(settings) {
  const dir = path.join(root, `t${++n}`);
  const home = path.join(dir, 'home');
  const proj = path.join(dir, 'proj');
  fs.mkdirSync(home, { recursive: true });
  fs.mkdirSync(proj);
  const config = path.join(dir, 'agents.yaml');
  h.writeAgents(config, { worker: { directory: proj, timeout: 120 } }, settings);
  const jobs = path.join(dir, 'jobs');
  const env = h.claudeEnv({ port: mock.port, home, extra: {
    AGENT_DISPATCH_CONFIG: config, AGENT_DISPATCH_JOBS_DIR: jobs, AGENT_DISPATCH_CLAUDE: BIN } });
  const s = h.startServer({ env, cwd: dir, bin: AD });
  return { s, jobs, dir };
}

describe('the live transport with the real Claude Code CLI', () => {
  h.mockSuite('ad-real-live.', (s) => ({ bin: BIN, root, mock } = s));

  it('auto picks the channel; a dispatch answers over it', { timeout: 120000 }, async () => {
    const { s, dir } = setup();
    try {
      await s.initialize();
      const { response } = await s.callTool('dispatch', { agent: 'worker',
        task: '[mock:reply=LIVE ANSWER] hello' }, { timeoutMs: 90000 });
      const v = s.toolResult(response);
      assert.equal(v.success, true, JSON.stringify(v));
      assert.equal(v.result, 'LIVE ANSWER');
      assert.match(v.session_id, /^[0-9a-f-]{36}$/);
      const cache = JSON.parse(fs.readFileSync(path.join(dir, 'cli-transport.json'), 'utf8'));
      assert.equal(cache[BIN].live, true, JSON.stringify(cache));
    } finally {
      await s.close();
    }
  });

  it('a running job is steered: its answer reflects the guidance', { timeout: 180000 }, async () => {
    const { s, jobs } = setup();
    try {
      await s.initialize();
      const a = s.toolResult((await s.callTool('dispatch_async', { agent: 'worker',
        task: '[mock:sleep=4] paint the shed' })).response);
      const id = a.job_id;
      assert.ok(await until(() => { const r = readRec(jobs, id); return r && r.status === 'running'; }, 30000));
      await new Promise((r) => setTimeout(r, 1500)); // the first turn is under way
      const st = s.toolResult((await s.callTool('dispatch_steer', { job_id: id,
        message: 'use blue paint' }, { timeoutMs: 30000 })).response);
      assert.equal(st.outcome, 'delivered', JSON.stringify(st));
      const w = s.toolResult((await s.callTool('dispatch_wait', { job_id: id, timeout_seconds: 120 },
        { timeoutMs: 130000 })).response);
      assert.equal(w.status, 'done', JSON.stringify(w).slice(0, 800));
      assert.equal(w.result.success, true);
      // The mock answers the latest user turn: the guidance.
      assert.match(w.result.result, /use blue paint/);
      const rec = readRec(jobs, id);
      assert.equal(rec.messages[0].kind, 'steer');
      assert.equal(rec.messages[0].text, 'use blue paint');
    } finally {
      await s.close();
    }
  });

  it('cancel interrupts: the job keeps its session_id and dispatch_session resumes it', { timeout: 180000 }, async () => {
    const { s, jobs } = setup({ interrupt_grace_seconds: 20 });
    try {
      await s.initialize();
      const a = s.toolResult((await s.callTool('dispatch_async', { agent: 'worker',
        task: '[mock:sleep=60] the long task MARKER-7' })).response);
      const id = a.job_id;
      assert.ok(await until(() => { const r = readRec(jobs, id); return r && r.status === 'running'; }, 30000));
      await new Promise((r) => setTimeout(r, 3000)); // the model request is in flight
      const t0 = Date.now();
      const c = s.toolResult((await s.callTool('dispatch_cancel', { job_id: id }, { timeoutMs: 60000 })).response);
      assert.equal(c.outcome, 'cancelled_running', JSON.stringify(c));
      const rec = await until(() => { const r = readRec(jobs, id); return r && r.session_id ? r : null; }, 30000);
      assert.ok(rec, JSON.stringify(readRec(jobs, id)));
      assert.equal(rec.status, 'cancelled');
      // The CLI stopped at the interrupt, well within the 20 s grace.
      assert.ok(Date.now() - t0 < 15000, `stopping took ${Date.now() - t0} ms`);
      const r = s.toolResult((await s.callTool('dispatch_session', { agent: 'worker',
        session_id: rec.session_id, task: '[mock:echo_history] go on' }, { timeoutMs: 90000 })).response);
      assert.equal(r.success, true, JSON.stringify(r));
      assert.equal(r.session_id, rec.session_id);
      // The resumed conversation holds the interrupted task.
      assert.match(r.result, /MARKER-7/);
    } finally {
      await s.close();
    }
  });
});
