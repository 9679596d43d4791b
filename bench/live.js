'use strict';
// Live sessions and the warm pool with the REAL Claude Code CLI
// (tests/.cache/claude) against the loopback Messages API mock
// (tests/mock_api/server.js), in one run: bench/run-live.sh.
//
//   1. Fresh dispatch from the warm pool vs cold: one `agent-dispatch
//      serve` with two agents in the same project, `cold` (no pool) and
//      `warm` (warm: 1). Interleaved pairs: a `dispatch` to `cold`, then a
//      `dispatch` to `warm`; before each pair the pool is refilled (live_stats)
//      and the machine left alone for SETTLE ms. Target <= 0.45x.
//   2. Session continuation on the live process vs `--resume`: two servers,
//      one with live sessions (settings.live_sessions.max 4), one without
//      (max 0: every continuation spawns `claude -p --resume`). Each has one
//      session open; interleaved pairs of `dispatch_session` continuations,
//      live then resume. Target <= 0.15x.
//   In each round the same work is also done by the CLI alone (no
//   agent-dispatch), as the floor: cold `claude -p` and `claude -p
//   --resume` to exit, a message to an idle live process to its result
//   line; the differences within a round are agent-dispatch's own time.
// Every figure is the median of the pair ratios (the ratio of the medians
// beside it), SETTLE ms of quiet before each measurement. Writes bench/results-live.md unless BENCH_QUICK=1.
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawn } = require('node:child_process');
const h = require('../tests/real/claude-harness');

const ROOT = path.resolve(__dirname, '..');
const QUICK = process.env.BENCH_QUICK === '1';
const PAIRS = QUICK ? 5 : Number(process.env.BENCH_PAIRS || 25);
const SETTLE = 1500;

const median = (xs) => { const s = [...xs].sort((a, b) => a - b); const m = (s.length - 1) / 2; return (s[Math.floor(m)] + s[Math.ceil(m)]) / 2; };
const p90 = (xs) => { const s = [...xs].sort((a, b) => a - b); return s[Math.min(s.length - 1, Math.round((s.length - 1) * 0.9))]; };
const f1 = (x) => x.toFixed(1);
const f2 = (x) => x.toFixed(2);
const now = () => Number(process.hrtime.bigint()) / 1e6;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const log = (...a) => process.stderr.write(a.join(' ') + '\n');

function yamlConfig(file, agents, live) {
  let y = 'agents:\n';
  for (const [name, a] of Object.entries(agents)) {
    y += `  ${name}:\n`;
    for (const [k, v] of Object.entries(a)) y += `    ${k}: ${JSON.stringify(v)}\n`;
  }
  y += `settings:\n  cache:\n    enabled: false\n  live_sessions:\n    max: ${live}\n`;
  fs.writeFileSync(file, y);
}

async function call(s, name, args) {
  const { response } = await s.callTool(name, args, { timeoutMs: 120000 });
  return s.toolResult(response);
}

async function ok(s, name, args) {
  const v = await call(s, name, args);
  if (v.success !== true) throw new Error(`${name} failed: ${JSON.stringify(v).slice(0, 500)}`);
  return v;
}

async function timed(fn) {
  const t0 = now();
  const v = await fn();
  return [now() - t0, v];
}

async function until(pred, ms = 30000) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await pred()) return true;
    await sleep(50);
  }
  throw new Error('timed out waiting');
}

function row(no, what, xs, ratio) {
  return `| ${no} | ${what} | ${f1(median(xs))} ms (p90 ${f1(p90(xs))}) | ${ratio || ''} |`;
}

// A live CLI process driven directly (the floor of benchmark 3).
function liveCli(bin, env, cwd) {
  const child = spawn(bin, ['-p', '--input-format', 'stream-json', '--output-format', 'stream-json',
    '--verbose'], { cwd, env, stdio: ['pipe', 'pipe', 'ignore'] });
  let buf = '', waiter = null;
  child.stdout.setEncoding('utf8');
  child.stdout.on('data', (d) => {
    buf += d;
    let nl;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const l = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      if (l.includes('"type":"result"') && waiter) { const w = waiter; waiter = null; w(); }
    }
  });
  return {
    turn: (text) => new Promise((r) => {
      waiter = r;
      child.stdin.write(JSON.stringify({ type: 'user', message: { role: 'user', content: text } }) + '\n');
    }),
    close: () => new Promise((r) => { child.once('close', r); child.stdin.end(); }),
  };
}

async function main() {
  const bin = h.claudeBin();
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'ad-bench-live.'));
  const mock = await h.startMock({});
  const home = path.join(root, 'home');
  const proj = path.join(root, 'proj');
  fs.mkdirSync(home);
  fs.mkdirSync(proj);
  const servers = [];
  const start = async (name, agents, live) => {
    const cfg = path.join(root, `${name}.yaml`);
    yamlConfig(cfg, agents, live);
    const env = h.claudeEnv({ port: mock.port, home, extra: { AGENT_DISPATCH_CONFIG: cfg,
      AGENT_DISPATCH_JOBS_DIR: path.join(root, `jobs-${name}`), AGENT_DISPATCH_CLAUDE: bin } });
    const s = h.startServer({ env, cwd: root });
    servers.push(s);
    await s.initialize();
    return s;
  };
  const lines = [];
  try {
    // ---- 1. warm pool vs cold
    log('bench live: 1. fresh dispatch, warm pool vs cold');
    const s1 = await start('pool', { cold: { directory: proj, timeout: 120 },
      warm: { directory: proj, timeout: 120, warm: 1 } }, 4);
    const poolReady = async () => (await call(s1, 'live_stats', {})).warm === 1;
    await until(poolReady);
    await ok(s1, 'dispatch', { agent: 'cold', task: 'warm-up [mock:reply=ok]' });
    const cold = [], warm = [], r1 = [], cc = [], d1 = [];
    for (let i = 0; i < PAIRS; i++) {
      await until(poolReady);
      await sleep(SETTLE);
      const [tc] = await timed(() => ok(s1, 'dispatch', { agent: 'cold', task: `cold ${i} [mock:reply=ok]` }));
      await sleep(SETTLE);
      const [tw] = await timed(() => ok(s1, 'dispatch', { agent: 'warm', task: `warm ${i} [mock:reply=ok]` }));
      await sleep(SETTLE);
      const [ta] = await timed(() => h.runClaude(['-p', '--output-format', 'json', '--',
        `alone ${i} [mock:reply=ok]`], { port: mock.port, home, cwd: proj, bin }));
      cold.push(tc); warm.push(tw); r1.push(tw / tc); cc.push(ta); d1.push(tc - ta);
    }
    const st1 = await call(s1, 'live_stats', {});
    lines.push(row(1, 'fresh dispatch, cold (`dispatch`, a new claude process)', cold, 'baseline'));
    lines.push(row(1, 'fresh dispatch taken from the warm pool (`warm: 1`)', warm,
      `**${f2(median(r1))}x** of cold (medians ${f2(median(warm) / median(cold))}x; target <= 0.45x)`));
    lines.push(row(1, '`claude -p` alone (no agent-dispatch), cold, to exit', cc, ''));
    lines.push(`| 1 | cold dispatch minus \`claude -p\` alone (median of the differences within a round) | ${f1(median(d1))} ms | |`);
    lines.push(`| 1 | memory of one idle pool process (VmRSS) | ${Math.round(st1.rss_kb / 1024)} MB | |`);

    // ---- 2. live continuation vs --resume
    log('bench live: 2. session continuation, live process vs --resume');
    const sl = await start('live', { a: { directory: proj, timeout: 120 } }, 4);
    const sr = await start('resume', { a: { directory: proj, timeout: 120 } }, 0);
    const live0 = await ok(sl, 'dispatch_session', { agent: 'a', task: 'open [mock:reply=ok]' });
    const res0 = await ok(sr, 'dispatch_session', { agent: 'a', task: 'open [mock:reply=ok]' });
    const env = h.claudeEnv({ port: mock.port, home });
    const first = await h.runClaude(['-p', '--output-format', 'json', '--', 'open [mock:reply=ok]'],
      { port: mock.port, home, cwd: proj, bin });
    const sid = first.json.session_id;
    const lc = liveCli(bin, env, proj);
    await lc.turn('open [mock:reply=ok]');
    const lt = [], rt = [], r2 = [], cl = [], cr = [], d2 = [], d3 = [];
    for (let i = 0; i < PAIRS; i++) {
      await sleep(SETTLE);
      const [tl, vl] = await timed(() => ok(sl, 'dispatch_session', { agent: 'a',
        session_id: live0.session_id, task: `turn ${i} [mock:reply=ok]` }));
      await sleep(200);
      const [tc] = await timed(() => lc.turn(`live ${i} [mock:reply=ok]`));
      await sleep(SETTLE);
      const [tr] = await timed(() => ok(sr, 'dispatch_session', { agent: 'a',
        session_id: res0.session_id, task: `turn ${i} [mock:reply=ok]` }));
      await sleep(SETTLE);
      const [ta] = await timed(() => h.runClaude(['-p', '--output-format', 'json', '--resume', sid,
        '--', `again ${i} [mock:reply=ok]`], { port: mock.port, home, cwd: proj, bin }));
      if (vl.session_id !== live0.session_id) throw new Error('live session changed id');
      lt.push(tl); rt.push(tr); r2.push(tl / tr); cl.push(tc); cr.push(ta);
      d2.push(tl - tc); d3.push(tr - ta);
    }
    await lc.close();
    const st2 = await call(sl, 'live_stats', {});
    if (st2.totals.reused !== PAIRS) throw new Error(`live turns not reused: ${JSON.stringify(st2.totals)}`);
    lines.push(row(2, 'session continuation with `--resume` (live_sessions.max 0)', rt, 'baseline'));
    lines.push(row(2, 'session continuation on the live process', lt,
      `**${f2(median(r2))}x** of --resume (medians ${f2(median(lt) / median(rt))}x; target <= 0.15x)`));
    lines.push(row(2, '`claude -p --resume` alone (no agent-dispatch), to exit', cr, ''));
    lines.push(row(2, 'a message to an idle live `claude` alone, to its result line', cl, ''));
    lines.push(`| 2 | continuation with --resume minus \`claude --resume\` alone (median of the differences) | ${f1(median(d3))} ms | |`);
    lines.push(`| 2 | continuation on the live process minus the live \`claude\` alone (median of the differences) | ${f1(median(d2))} ms | |`);

  } finally {
    for (const s of servers) await s.close();
    await mock.stop();
    fs.rmSync(root, { recursive: true, force: true });
  }
  const head = `# Live sessions and warm pool (bench/live.js)\n\n${os.cpus().length} CPUs, ` +
    `${new Date().toISOString().slice(0, 10)}, real Claude Code CLI against the loopback mock, ` +
    `${PAIRS} interleaved pairs per figure.\n\n| # | measurement | median | ratio |\n| --- | --- | --- | --- |\n`;
  const text = head + lines.join('\n') + '\n';
  process.stdout.write(text);
  if (!QUICK) fs.writeFileSync(path.join(__dirname, 'results-live.md'), text);
}

main().catch((e) => { console.error(e); process.exit(1); });
