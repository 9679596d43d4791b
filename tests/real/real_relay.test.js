// The permission relay with the REAL Claude Code CLI against the loopback
// mock: the model asks to run a Bash command the agent's settings do not
// allow; the child (run with --permission-prompt-tool stdio) asks
// can_use_tool over its control channel, the sync dispatch returns
// status "awaiting_approval", and (a) dispatch_approve allow -> the command
// ran (the file it creates exists); (b) dispatch_approve deny with a message
// -> it did not run and the model saw the message; (c) no answer -> denied
// after permissions.timeout_seconds, and the model saw why.
//
//   AD_BIN=build/agent-dispatch node --test tests/real/real_relay.test.js
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

// A server with one agent (relay on) in a fresh project; returns {s, proj, jobs}.
async function serve(timeoutSeconds) {
  const dir = path.join(root, `case${++n}`);
  const home = path.join(dir, 'home');
  const proj = path.join(dir, 'proj');
  fs.mkdirSync(home, { recursive: true });
  fs.mkdirSync(proj, { recursive: true });
  const config = path.join(dir, 'agents.yaml');
  h.writeAgents(config, { worker: { directory: proj, timeout: 120,
    permissions: { relay: true, timeout_seconds: timeoutSeconds } } });
  const jobs = path.join(dir, 'jobs');
  const env = h.claudeEnv({ port: mock.port, home, extra: {
    AGENT_DISPATCH_CONFIG: config, AGENT_DISPATCH_JOBS_DIR: jobs, AGENT_DISPATCH_CLAUDE: BIN } });
  const s = h.startServer({ env, cwd: dir, bin: AD });
  await s.initialize();
  return { s, proj };
}

async function askToTouch(s, file) {
  const { response } = await s.callTool('dispatch', { agent: 'worker',
    task: `[mock:tool=Bash:touch ${file}] create the marker file` }, { timeoutMs: 90000 });
  const v = s.toolResult(response);
  assert.equal(v.status, 'awaiting_approval', JSON.stringify(v));
  assert.equal(v.pending.tool, 'Bash');
  assert.equal(v.pending.input.command, `touch ${file}`, 'the request carries exactly what the child asked');
  return v;
}

// dispatch_wait until the job ends (it returns early while a request waits).
async function waitJob(s, id) {
  const until = Date.now() + 100000;
  for (;;) {
    const w = await s.callTool('dispatch_wait', { job_id: id, timeout_seconds: 90 }, { timeoutMs: 100000 });
    const rec = s.toolResult(w.response);
    if (!rec.awaiting_approval || Date.now() > until) return rec;
    await new Promise((r) => setTimeout(r, 200));
  }
}

describe('permission relay with the real Claude Code CLI', () => {
  h.mockSuite('ad-real-relay.', (s) => ({ bin: BIN, root, mock } = s));

  it('(a) allowed by the caller: the command ran', { timeout: 150000 }, async () => {
    const { s, proj } = await serve(90);
    try {
      const file = path.join(proj, 'allowed.txt');
      const v = await askToTouch(s, file);
      assert.ok(!fs.existsSync(file), 'nothing ran before the decision');
      const ap = s.toolResult((await s.callTool('dispatch_approve', { job_id: v.job_id,
        request_id: v.pending.request_id, decision: 'allow' })).response);
      assert.equal(ap.applied, true, JSON.stringify(ap));
      const rec = await waitJob(s, v.job_id);
      assert.equal(rec.status, 'done', JSON.stringify(rec).slice(0, 800));
      assert.ok(fs.existsSync(file), 'the approved command created its file');
      assert.match(rec.result.result, /^TOOL DONE: /);
      assert.equal(rec.permissions.decisions[0].by, 'dispatch_approve');
      assert.equal(rec.permissions.decisions[0].decision, 'allow');
    } finally {
      await s.close();
    }
  });

  it('(b) denied by the caller: the command did not run and the model saw the message',
    { timeout: 150000 }, async () => {
      const { s, proj } = await serve(90);
      try {
        const file = path.join(proj, 'denied.txt');
        const v = await askToTouch(s, file);
        await s.callTool('dispatch_approve', { job_id: v.job_id, request_id: v.pending.request_id,
          decision: 'deny', message: 'RELAY-DENIED: no files today' });
        const rec = await waitJob(s, v.job_id);
        assert.equal(rec.status, 'done', JSON.stringify(rec).slice(0, 800));
        assert.ok(!fs.existsSync(file), 'the denied command did not run');
        // The mock answers the next turn with the tool result it was given.
        assert.match(rec.result.result, /^TOOL DONE: .*RELAY-DENIED: no files today/s);
        assert.equal(rec.permissions.decisions[0].decision, 'deny');
      } finally {
        await s.close();
      }
    });

  it('(c) unanswered: denied after timeout_seconds, and the model saw why', { timeout: 150000 }, async () => {
    const { s, proj } = await serve(2);
    try {
      const file = path.join(proj, 'unanswered.txt');
      const v = await askToTouch(s, file);
      const rec = await waitJob(s, v.job_id);
      assert.equal(rec.status, 'done', JSON.stringify(rec).slice(0, 800));
      assert.ok(!fs.existsSync(file), 'the unanswered command did not run');
      assert.match(rec.result.result, /^TOOL DONE: .*No decision on the permission request for Bash within 2 s/s);
      assert.equal(rec.permissions.decisions[0].by, 'timeout');
    } finally {
      await s.close();
    }
  });
});
