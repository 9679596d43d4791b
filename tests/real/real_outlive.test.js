// Jobs that outlive the server, with the REAL Claude Code CLI against the
// loopback Messages API mock (settings.jobs_outlive_server at its default):
//   (a) an async job started by a `claude -p` session (the real CLI as the
//       MCP client of agent-dispatch) finishes after that session's server
//       exited, and a new server and `agent-dispatch job` read it;
//   (b) cancel from another server kills the detached job's process group;
//   (c) SIGKILL of a job runner leaves no process behind, and the job is
//       failed with a clear error at the next start;
//   (d) two servers at max_concurrency 5 with 10 jobs never run more than
//       5 claude children at once.
//
//   AD_BIN=build/agent-dispatch node --test tests/real/real_outlive.test.js
'use strict';

const { describe, it, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('fs');
const path = require('path');
const { spawnSync } = require('child_process');
const h = require('./claude-harness');

const AD = path.resolve(h.adBin());
let BIN, mock, root;
const runners = []; // job runner pids seen, killed at the end if still alive

function area(name, settings) {
  const dir = fs.mkdtempSync(path.join(root, `${name}-`));
  const home = path.join(dir, 'home');
  fs.mkdirSync(home);
  const proj = path.join(dir, 'proj');
  fs.mkdirSync(proj);
  const config = path.join(dir, 'agents.yaml');
  h.writeAgents(config, { worker: { directory: proj, timeout: 120 } }, settings);
  const jobs = path.join(dir, 'jobs');
  const env = h.claudeEnv({ port: mock.port, home, extra: {
    AGENT_DISPATCH_CONFIG: config, AGENT_DISPATCH_JOBS_DIR: jobs, AGENT_DISPATCH_CLAUDE: BIN } });
  return { dir, home, proj, config, jobs, env };
}

async function serve(a) {
  const s = h.startServer({ env: a.env, cwd: a.dir, bin: AD });
  await s.initialize();
  return s;
}

async function tool(s, name, args) {
  const { response } = await s.callTool(name, args, { timeoutMs: 150000 });
  return s.toolResult(response);
}

function stat(pid) {
  try {
    const s = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const rest = s.slice(s.lastIndexOf(')') + 2).split(' ');
    return { state: rest[0], ppid: Number(rest[1]), pgrp: Number(rest[2]) };
  } catch { return null; }
}

function alive(pid) {
  const s = stat(pid);
  return !!s && s.state !== 'Z' && s.state !== 'X';
}

function groupAlive(pgid) {
  for (const e of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    const s = stat(e);
    if (s && s.pgrp === pgid && s.state !== 'Z' && s.state !== 'X') return true;
  }
  return false;
}

const AD_REAL = fs.realpathSync(AD);

/** The claude children agent-dispatch runs in dir: live processes working
 * there whose parent is an agent-dispatch process (a server or a job
 * runner). Not their own helpers, nor what an exited claude left behind
 * for a moment (re-parented). */
function childrenIn(dir) {
  const pids = [];
  for (const e of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    let cwd, parentExe;
    try { cwd = fs.readlinkSync(`/proc/${e}/cwd`); } catch { continue; }
    if (cwd !== dir || !alive(Number(e))) continue;
    const st = stat(e);
    try { parentExe = fs.readlinkSync(`/proc/${st.ppid}/exe`); } catch { continue; }
    if (parentExe === AD_REAL) pids.push(Number(e));
  }
  return pids;
}

function describeProcs(pids) {
  return pids.map((p) => {
    let cmd = '?';
    try { cmd = fs.readFileSync(`/proc/${p}/cmdline`, 'utf8').split('\0').join(' ').slice(0, 80); } catch { /* gone */ }
    return `${p} (ppid ${(stat(p) || {}).ppid}): ${cmd}`;
  }).join('; ');
}

function readRec(a, id) {
  try { return JSON.parse(fs.readFileSync(path.join(a.jobs, `${id}.json`), 'utf8')); } catch { return null; }
}

async function until(pred, ms, what) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await pred()) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting for ${what}`);
}

function noteRunner(rec) {
  if (rec && rec.server && rec.server.pid > 1) runners.push(rec.server.pid);
}

describe('jobs that outlive the server, with the real Claude Code CLI', { concurrency: 1 }, () => {
  h.mockSuite('ad-real-outlive.', (s) => ({ bin: BIN, root, mock } = s));
  after(() => {
    for (const pid of runners) { try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ } }
  });

  it('(a) a job started by a claude -p session finishes after its server exited; a new server and `job` read it',
    { timeout: 240000 }, async () => {
      const a = area('session');
      const outer = path.join(a.dir, 'outer');
      fs.mkdirSync(outer);
      const env = { AGENT_DISPATCH_CONFIG: a.config, AGENT_DISPATCH_JOBS_DIR: a.jobs,
        AGENT_DISPATCH_CLAUDE: BIN };
      const cfg = path.join(a.dir, 'mcp.json');
      fs.writeFileSync(cfg, JSON.stringify({ mcpServers: { ad: { type: 'stdio', command: AD,
        args: ['serve'], env } } }));
      const task = 'outlive [mock:sleep=4] [mock:reply=OUTLIVED ANSWER]';
      const prompt = `[mock:mcp=ad:dispatch_async:${JSON.stringify({ agent: 'worker', task })}]`;
      const r = await h.runClaude(['-p', '--mcp-config', cfg, '--allowedTools', 'mcp__ad__dispatch_async',
        '--output-format', 'json', '--', prompt], { port: mock.port, home: a.home, cwd: outer,
        timeoutMs: 90000, bin: BIN });
      assert.equal(r.code, 0, `outer claude exit ${r.code}; stderr:\n${r.stderr}\nstdout:\n${r.stdout}`);
      assert.deepEqual(r.json.permission_denials, [], JSON.stringify(r.json));
      const m = /"job_id":\s*"([0-9a-f]{32})"/.exec(r.json.result);
      assert.ok(m, `the session got no job id: ${r.json.result}`);
      const id = m[1];
      // The session is over and its server gone; the job is not failed.
      const rec0 = readRec(a, id);
      noteRunner(rec0);
      assert.ok(['pending', 'running'].includes(rec0.status), `right after the session: ${JSON.stringify(rec0)}`);

      const s = await serve(a);
      try {
        const w = await tool(s, 'dispatch_wait', { job_id: id, timeout_seconds: 120 });
        assert.equal(w.status, 'done', JSON.stringify(w));
        assert.equal(w.result.success, true);
        assert.equal(w.result.result, 'OUTLIVED ANSWER');
        const st = await tool(s, 'dispatch_status', { job_id: id });
        assert.equal(st.status, 'done');
      } finally {
        await s.close();
      }
      const j = spawnSync(AD, ['job', id, '--json'], { env: a.env, encoding: 'utf8' });
      assert.equal(j.status, 0, j.stderr);
      const rec = JSON.parse(j.stdout);
      assert.equal(rec.status, 'done');
      assert.equal(rec.result.result, 'OUTLIVED ANSWER');
      const wt = spawnSync(AD, ['wait', id.slice(0, 10), '--timeout', '5'], { env: a.env, encoding: 'utf8' });
      assert.equal(wt.status, 0, wt.stderr);
      assert.match(wt.stdout, /OUTLIVED ANSWER/);
    });

  it('(b) cancel of a detached job from another server kills its process group', { timeout: 180000 }, async () => {
    const a = area('cancel');
    const s1 = await serve(a);
    const started = await tool(s1, 'dispatch_async', { agent: 'worker', task: 'slow [mock:sleep=90]' });
    await s1.close();
    let rec;
    await until(() => { rec = readRec(a, started.job_id); return rec && rec.status === 'running' && rec.process; },
      60000, 'the job to be running');
    noteRunner(rec);
    const { pid, pgid } = rec.process;
    assert.ok(alive(pid), 'the real claude is running after its first server exited');
    const s2 = await serve(a);
    try {
      const c = await tool(s2, 'dispatch_cancel', { job_id: started.job_id });
      assert.equal(c.outcome, 'cancelled_running', JSON.stringify(c));
      await until(() => !alive(pid) && !groupAlive(pgid), 10000, `claude's group ${pgid} to be gone`);
      await until(() => !alive(rec.server.pid), 10000, 'the job runner to exit');
      const st = await tool(s2, 'dispatch_status', { job_id: started.job_id });
      assert.equal(st.status, 'cancelled');
    } finally {
      await s2.close();
    }
  });

  it('(c) SIGKILL of the job runner leaves no process behind; the next start fails the job clearly',
    { timeout: 180000 }, async () => {
      const a = area('killed');
      const d = spawnSync(AD, ['dispatch', 'worker', 'doomed [mock:sleep=90]', '--async'],
        { env: a.env, encoding: 'utf8' });
      assert.equal(d.status, 0, d.stderr);
      const id = d.stdout.trim();
      let rec;
      await until(() => { rec = readRec(a, id); return rec && rec.status === 'running' && rec.process; },
        60000, 'the job to be running');
      noteRunner(rec);
      const { pid, pgid } = rec.process;
      assert.ok(alive(pid));
      process.kill(rec.server.pid, 'SIGKILL');
      await until(() => !alive(pid) && !groupAlive(pgid), 10000, `claude's group ${pgid} to be gone`);
      assert.equal(childrenIn(a.proj).length, 0, 'a process still works in the agent directory');
      const s = await serve(a);
      try {
        // Startup maintenance runs at the first pause after the first
        // response.
        let st;
        await until(async () => { st = await tool(s, 'dispatch_status', { job_id: id }); return st.status === 'failed'; },
          10000, 'the job to be failed');
        assert.match(st.error, /Server stopped while the job was running .*exited without finishing it/);
      } finally {
        await s.close();
      }
    });

  it('(d) two servers at max_concurrency 5 with 10 jobs never run more than 5 claude children',
    { timeout: 300000 }, async () => {
      const a = area('limit', { max_concurrency: 5 });
      const s1 = await serve(a);
      const s2 = await serve(a);
      let max = 0, samples = 0, worst = '';
      const timer = setInterval(() => {
        const pids = childrenIn(a.proj);
        samples++;
        if (pids.length > max) { max = pids.length; worst = describeProcs(pids); }
      }, 50);
      try {
        const ids = [];
        for (let i = 0; i < 5; i++) {
          for (const s of [s1, s2]) {
            ids.push((await tool(s, 'dispatch_async', { agent: 'worker',
              task: `job ${ids.length} [mock:sleep=3] [mock:reply=ANSWER ${ids.length}]` })).job_id);
          }
        }
        for (const [i, id] of ids.entries()) {
          const w = await tool(i % 2 ? s2 : s1, 'dispatch_wait', { job_id: id, timeout_seconds: 240 });
          noteRunner(readRec(a, id));
          assert.equal(w.status, 'done', JSON.stringify(w));
          assert.equal(w.result.result, `ANSWER ${i}`);
        }
      } finally {
        clearInterval(timer);
        await s1.close();
        await s2.close();
      }
      assert.ok(samples > 20, `only ${samples} samples`);
      assert.ok(max <= 5, `${max} claude children ran at once with max_concurrency 5: ${worst}`);
      assert.equal(max, 5, 'the jobs did not run side by side up to the limit');
    });
});
