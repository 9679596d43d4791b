// Live sessions and the warm pool with the REAL Claude Code CLI against
// the loopback mock: a dispatch_session conversation runs in one claude
// process for several turns (counted by a wrapper that logs every start),
// the model sees the earlier turns, a warm pool process answers a fresh
// dispatch, and nothing is left when the server ends.
//
//   AD_BIN=build/agent-dispatch node --test tests/real/real_live_sessions.test.js
'use strict';

const { describe, it } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('fs');
const path = require('path');
const h = require('./claude-harness');

const AD = path.resolve(h.adBin());
let mock = null;
let root = null;

function alive(pid) {
  try { process.kill(pid, 0); } catch { return false; }
  try {
    const st = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return !/^\S+ \(.*\) [ZX]/.test(st);
  } catch { return false; }
}

async function until(pred, ms) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await pred()) return true;
    await new Promise((r) => setTimeout(r, 100));
  }
  return false;
}

// A claude that logs each start (pid and argv) and execs the real CLI.
function wrapper(dir) {
  const log = path.join(dir, 'starts.log');
  const w = path.join(dir, 'claude');
  fs.writeFileSync(w, `#!/bin/sh\necho "$$ $*" >> '${log}'\nexec '${h.claudeBin()}' "$@"\n`, { mode: 0o755 });
  // Starts of claude -p (the transport's one `claude --help` probe aside).
  return { bin: w, starts: () => (fs.existsSync(log) ? fs.readFileSync(log, 'utf8').split('\n')
    .filter((l) => / -p /.test(l)) : []) };
}

describe('live sessions and warm pool with the real Claude Code CLI', () => {
  h.mockSuite('ad-real-live.', (s) => ({ root, mock } = s));

  function server(name, agents) {
    const dir = path.join(root, name);
    fs.mkdirSync(path.join(dir, 'home'), { recursive: true });
    const w = wrapper(dir);
    const config = path.join(dir, 'agents.yaml');
    h.writeAgents(config, agents);
    const env = h.claudeEnv({ port: mock.port, home: path.join(dir, 'home'), extra: {
      AGENT_DISPATCH_CONFIG: config, AGENT_DISPATCH_JOBS_DIR: path.join(dir, 'jobs'),
      AGENT_DISPATCH_CLAUDE: w.bin } });
    return { s: h.startServer({ env, cwd: dir, bin: AD }), starts: w.starts };
  }

  it('one process for several turns; the model sees the earlier turns', { timeout: 180000 }, async () => {
    const proj = fs.mkdtempSync(path.join(root, 'proj-'));
    const { s, starts } = server('session', { worker: { directory: proj, timeout: 90 } });
    let pid = null;
    try {
      await s.initialize();
      const call = async (args) => s.toolResult((await s.callTool('dispatch_session', args,
        { timeoutMs: 100000 })).response);
      const r1 = await call({ agent: 'worker', task: 'The code word is PELICAN. [mock:reply=noted]' });
      assert.equal(r1.success, true, JSON.stringify(r1).slice(0, 600));
      assert.equal(r1.result, 'noted');
      const sid = r1.session_id;
      assert.match(sid, /^[0-9a-f-]{36}$/);
      const r2 = await call({ agent: 'worker', session_id: sid, task: 'Second turn. [mock:reply=noted]' });
      assert.equal(r2.success, true, JSON.stringify(r2).slice(0, 600));
      assert.equal(r2.session_id, sid);
      const r3 = await call({ agent: 'worker', session_id: sid, task: 'What was the code word? [mock:echo_history]' });
      assert.equal(r3.success, true, JSON.stringify(r3).slice(0, 600));
      const hist = JSON.parse(r3.result).turns.map((t) => t.text).join('\n');
      assert.match(hist, /PELICAN/, 'the model saw turn one');
      assert.match(hist, /Second turn/, 'the model saw turn two');
      assert.equal(starts().length, 1, `claude started once: ${starts().join(' | ')}`);
      assert.ok(!starts()[0].includes('--resume'));
      const st = s.toolResult((await s.callTool('live_stats', {})).response);
      assert.equal(st.sessions, 1);
      assert.equal(st.totals.reused, 2);
      pid = st.processes[0].pid;
      assert.ok(st.processes[0].rss_kb > 1000, JSON.stringify(st));
      // Each turn costs what it cost, not the process's running total.
      // (turns one and two are alike: the running total would be twice)
      assert.ok(r2.cost_usd > 0 && r2.cost_usd < r1.cost_usd * 1.5, `${r1.cost_usd} ${r2.cost_usd}`);
    } finally {
      await s.close();
    }
    assert.ok(pid && await until(() => !alive(pid), 5000), 'the live process ended with the server');
  });

  it('a fresh dispatch is answered by a warm pool process', { timeout: 180000 }, async () => {
    const proj = fs.mkdtempSync(path.join(root, 'proj-'));
    const { s, starts } = server('pool', { worker: { directory: proj, timeout: 90, warm: 1 } });
    const pids = [];
    try {
      await s.initialize();
      const stats = async () => s.toolResult((await s.callTool('live_stats', {})).response);
      assert.ok(await until(async () => (await stats()).warm === 1, 30000), 'the pool filled');
      pids.push((await stats()).processes[0].pid);
      const r = s.toolResult((await s.callTool('dispatch', { agent: 'worker',
        task: 'hello [mock:reply=from the pool]' }, { timeoutMs: 100000 })).response);
      assert.equal(r.success, true, JSON.stringify(r).slice(0, 600));
      assert.equal(r.result, 'from the pool');
      assert.ok(await until(async () => (await stats()).warm === 1, 30000), 'the pool refilled');
      const st = await stats();
      pids.push(st.processes[0].pid);
      assert.notEqual(pids[0], pids[1]);
      assert.equal(st.totals.warm_taken, 1);
      assert.equal(starts().length, 2, starts().join(' | '));
    } finally {
      await s.close();
    }
    for (const p of pids) assert.ok(await until(() => !alive(p), 5000), `pid ${p} left behind`);
  });
});
