// The dispatch family and async jobs with the REAL Claude Code CLI against
// the loopback Messages API mock: a two-round dialogue whose agents each
// resume their own session, dispatch_async + dispatch_wait returning the real
// reply, and cancelling a running real job (its process is gone).
//
//   AD_BIN=build/agent-dispatch node --test tests/real/real_patterns.test.js
'use strict';

const { describe, it } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('fs');
const path = require('path');
const h = require('./claude-harness');

const AD = path.resolve(h.adBin());
let BIN, mock, root, mockLog;

function area(name, agents) {
  const dir = fs.mkdtempSync(path.join(root, `${name}-`));
  const home = path.join(dir, 'home');
  fs.mkdirSync(home);
  const spec = {};
  for (const agent of agents) {
    const d = path.join(dir, `proj-${agent}`);
    fs.mkdirSync(d);
    spec[agent] = { directory: d, timeout: 60 };
  }
  const config = path.join(dir, 'agents.yaml');
  h.writeAgents(config, spec);
  const env = h.claudeEnv({ port: mock.port, home, extra: {
    AGENT_DISPATCH_CONFIG: config, AGENT_DISPATCH_JOBS_DIR: path.join(dir, 'jobs'),
    AGENT_DISPATCH_CLAUDE: BIN } });
  return { dir, env };
}

async function serve(a) {
  const s = h.startServer({ env: a.env, cwd: a.dir, bin: AD });
  await s.initialize();
  return s;
}

async function tool(s, name, args) {
  const { response } = await s.callTool(name, args, { timeoutMs: 120000 });
  return s.toolResult(response);
}

function alive(pid) {
  try { process.kill(pid, 0); } catch (e) { return e.code === 'EPERM'; }
  try { return !/\) Z /.test(fs.readFileSync(`/proc/${pid}/stat`, 'utf8')); } catch (e) { return false; }
}

async function until(pred, ms, what) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await pred()) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting for ${what}`);
}

describe('dispatch patterns with the real Claude Code CLI', { concurrency: 3 }, () => {
  h.mockSuite('ad-real-patterns.', (s) => ({ bin: BIN, root, mock, mockLog } = s));

  it('dispatch_dialogue: two rounds, each agent resuming its own session', { timeout: 180000 }, async () => {
    const a = area('dialogue', ['web', 'api']);
    const s = await serve(a);
    try {
      const d = await tool(s, 'dispatch_dialogue', { requester: 'web', responder: 'api',
        topic: 'Which orders endpoint should the cart call?', max_rounds: 2 });
      assert.equal(d.resolved, false);
      assert.equal(d.rounds, 2);
      assert.deepEqual(d.conversation.map((e) => `${e.round}:${e.role}:${e.agent}`),
        ['1:responder:api', '1:requester:web', '2:responder:api', '2:requester:web']);
      for (const e of d.conversation) {
        assert.ok(!e.error, `turn failed: ${JSON.stringify(e)}`);
        assert.equal(typeof e.cost_usd, 'number');
      }
      assert.ok(d.total_cost_usd > 0);
      // The responder's second turn resumed its session: its request to
      // the API carried its first turn (user + assistant) before the new one.
      const reqs = fs.readFileSync(mockLog, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l))
        .filter((e) => Array.isArray(e.messages) && JSON.stringify(e.messages).includes('Which orders endpoint'));
      assert.ok(reqs.some((e) => e.messages.filter((m) => m.role === 'assistant').length >= 1),
        'a later turn carried the earlier turns of its session');
    } finally {
      await s.close();
    }
  });

  it('dispatch_async then dispatch_wait returns the real reply', { timeout: 120000 }, async () => {
    const a = area('async', ['worker']);
    const s = await serve(a);
    try {
      const started = await tool(s, 'dispatch_async', { agent: 'worker', task: 'go [mock:reply=ASYNC REAL ANSWER]' });
      assert.match(started.job_id, /^[0-9a-f]{32}$/);
      assert.equal(started.status, 'pending');
      const rec = await tool(s, 'dispatch_wait', { job_id: started.job_id, timeout_seconds: 90 });
      assert.equal(rec.status, 'done', JSON.stringify(rec));
      assert.equal(rec.result.success, true);
      assert.equal(rec.result.result, 'ASYNC REAL ANSWER');
      assert.match(rec.result.session_id, /^[0-9a-f-]{36}$/);
      const fetched = await tool(s, 'fetch_result', { ref: started.job_id });
      assert.equal(fetched.result, 'ASYNC REAL ANSWER');
    } finally {
      await s.close();
    }
  });

  it('dispatch_cancel of a running real job kills its claude process', { timeout: 120000 }, async () => {
    const a = area('cancel', ['worker']);
    const s = await serve(a);
    try {
      const started = await tool(s, 'dispatch_async', { agent: 'worker', task: 'slow [mock:sleep=60]' });
      let pid;
      await until(async () => {
        const st = await tool(s, 'dispatch_status', { job_id: started.job_id });
        pid = st.process && st.process.pid;
        return st.status === 'running' && pid;
      }, 30000, 'the job to be running');
      assert.ok(alive(pid), 'the real claude is running');
      const c = await tool(s, 'dispatch_cancel', { job_id: started.job_id });
      assert.equal(c.outcome, 'cancelled_running', JSON.stringify(c));
      await until(() => !alive(pid), 5000, `claude (pid ${pid}) to be gone`);
      const st = await tool(s, 'dispatch_status', { job_id: started.job_id });
      assert.equal(st.status, 'cancelled');
      assert.match(st.error, /killed/);
    } finally {
      await s.close();
    }
  });
});
