'use strict';
// agent-dispatch benchmarks. Run through bench/run.sh, which builds the
// product and the C helpers (build/bench/, from bench/*.c) first. Every figure is compared
// with a baseline measured in the same run; see bench/README.md.
//
// Environment knobs: BENCH_QUICK=1 (fewer repetitions, for a smoke run);
// BENCH_ONLY=8,9 (only those benchmarks; results.md is then left alone).
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawn, spawnSync, execFileSync } = require('node:child_process');

const ROOT = path.resolve(__dirname, '..');
const HB = process.env.AD_BENCH_BIN || path.join(ROOT, 'build/bench');
const QUICK = process.env.BENCH_QUICK === '1';
const ONLY = process.env.BENCH_ONLY
  ? new Set(process.env.BENCH_ONLY.split(',').map(Number)) : null;
const R = (n) => (QUICK ? Math.max(5, Math.ceil(n / 10)) : n);

// ------------------------------------------------------------ helpers --

function quantile(xs, q) {
  const s = [...xs].sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const pos = (s.length - 1) * q;
  const lo = Math.floor(pos), hi = Math.ceil(pos);
  return s[lo] + (s[hi] - s[lo]) * (pos - lo);
}
const median = (xs) => quantile(xs, 0.5);
const p90 = (xs) => quantile(xs, 0.9);
const p99 = (xs) => quantile(xs, 0.99);
const ms = (us) => us / 1000;
const f2 = (x) => (Number.isFinite(x) ? x.toFixed(2) : 'n/a');
const f3 = (x) => (Number.isFinite(x) ? x.toFixed(3) : 'n/a');
const sleep = (t) => new Promise((r) => setTimeout(r, t));

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ad-bench-'));
const proj = path.join(tmp, 'proj');
fs.mkdirSync(proj);
// Private copies of the binaries under test, so that a rebuild of build/
// while the benchmarks run cannot swap them out half-way.
const BIN = path.join(tmp, 'agent-dispatch');
fs.copyFileSync(process.env.AD_BIN || path.join(ROOT, 'build/agent-dispatch'), BIN);
fs.chmodSync(BIN, 0o755);
const STUB_DIR = path.join(tmp, 'stub');
fs.mkdirSync(STUB_DIR);
fs.copyFileSync(path.join(process.env.AD_STUB_DIR || path.join(ROOT, 'build/stub'), 'claude'),
  path.join(STUB_DIR, 'claude'));
fs.chmodSync(path.join(STUB_DIR, 'claude'), 0o755);
const progBin = path.join(tmp, 'progress-bin');
fs.mkdirSync(progBin);
fs.copyFileSync(path.join(HB, 'progress_stub'), path.join(progBin, 'claude'));
fs.chmodSync(path.join(progBin, 'claude'), 0o755);

function writeConfig(name, agents, settings) {
  const lines = ['agents:'];
  if (agents.length === 0) lines[0] = 'agents: {}';
  for (const [n, dir] of agents) {
    lines.push(`  ${n}:`, `    directory: ${dir}`, `    description: benchmark agent ${n}`);
  }
  lines.push('settings:');
  for (const [k, v] of Object.entries(settings)) lines.push(`  ${k}: ${v}`);
  lines.push('  cache: {enabled: false}');
  const p = path.join(tmp, name);
  fs.writeFileSync(p, lines.join('\n') + '\n');
  return p;
}

const CONF = {
  main: writeConfig('main.yaml', [['a', proj]], { max_concurrency: 20 }),
  fan10: writeConfig('fan10.yaml', [['a', proj]], { max_concurrency: 10 }),
  live50: writeConfig('live50.yaml', [['a', proj]], { max_concurrency: 50 }),
  empty: writeConfig('empty.yaml', [], { max_concurrency: 5 }),
  hundred: writeConfig('hundred.yaml', Array.from({ length: 100 }, (_, i) => {
    const d = path.join(tmp, `p${i}`);
    fs.mkdirSync(d);
    return [`agent${String(i).padStart(3, '0')}`, d];
  }), { max_concurrency: 5 }),
};

const SCRUB = ['CLAUDECODE', 'CLAUDE_CODE_SESSION_ID', 'CLAUDE_CODE_ENTRYPOINT',
  'AGENT_DISPATCH_DEPTH', 'AGENT_DISPATCH_MCP_ERA', 'AGENT_DISPATCH_CLAUDE',
  'AGENT_DISPATCH_VERBOSE', 'AGENT_DISPATCH_USER_LUA_DIR', 'ANTHROPIC_API_KEY',
  'STUB_CLAUDE_LOG', 'STUB_CLAUDE_PIDFILE'];

function env(config, extra = {}, pathFirst = STUB_DIR) {
  const e = { ...process.env };
  for (const k of SCRUB) delete e[k];
  Object.assign(e, {
    HOME: tmp,
    AGENT_DISPATCH_CONFIG: config,
    AGENT_DISPATCH_JOBS_DIR: path.join(tmp, 'jobs'),
    PATH: `${pathFirst}:${process.env.PATH}`,
  }, extra);
  return e;
}

function harness(args, e) {
  const out = execFileSync(path.join(HB, 'harness'), args,
    { env: e, maxBuffer: 1 << 28, encoding: 'utf8' });
  return out;
}
const numbers = (text) => text.split('\n').filter((l) => l && !l.startsWith('#')).map(Number);

/** Parses paired `harness startup|list|exec N -- A -- B` output ("A t ..." and
 * "B t ..." lines, A first in each pair): {a: [t], b: [t], rest: [[...]]}. */
function parsePairs(text) {
  const r = { a: [], b: [], rest: [] };
  for (const l of text.split('\n')) {
    if (!l) continue;
    const [side, ...f] = l.split(' ');
    const v = f.map(Number);
    if (side === 'A') { r.a.push(v[0]); r.rest.push(v); } else if (side === 'B') r.b.push(v[0]);
  }
  return r;
}

/** The median of the ratios a[i]/b[i] of runs taken back to back: a drift
 * of the machine's speed between blocks cancels out pair by pair. */
const pairRatio = (a, b) => median(a.map((x, i) => x / b[i]));

/** Parses `harness rpc` output: {lat: [[us...] per template], bytes: [...], idle, hwm}. */
function parseRpc(text, ntmpl) {
  const r = { lat: Array.from({ length: ntmpl }, () => []), bytes: [], idle: NaN, hwm: NaN };
  for (const l of text.split('\n')) {
    if (!l) continue;
    if (l.startsWith('# idle_rss_kb')) r.idle = Number(l.split(' ')[2]);
    else if (l.startsWith('# hwm_kb')) r.hwm = Number(l.split(' ')[2]);
    else if (l.startsWith('S ')) {
      const [t, us, , t0] = l.slice(2).split(' ').map(Number);
      (r.slat = r.slat || Array.from({ length: ntmpl }, () => []))[t].push(us);
      (r.st0 = r.st0 || Array.from({ length: ntmpl }, () => []))[t].push(t0);
    }
    else if (l.startsWith('b ')) {
      const f = l.split(' ');
      (r.base = r.base || []).push(Number(f[1]));
      if (f[2] !== undefined) (r.baseExit = r.baseExit || []).push(Number(f[2]));
    }
    else {
      const [t, us, b, t0] = l.split(' ').map(Number);
      r.lat[t].push(us);
      r.bytes[t] = b;
      (r.t0 = r.t0 || Array.from({ length: ntmpl }, () => []))[t].push(t0);
    }
  }
  return r;
}

const req = (method, params) => JSON.stringify(
  params === undefined ? { jsonrpc: '2.0', id: '__ID__', method }
    : { jsonrpc: '2.0', id: '__ID__', method, params }).replace('"__ID__"', '__ID__');
const call = (name, args) => req('tools/call', { name, arguments: args });

// A minimal MCP client over a spawned `agent-dispatch serve`.
class Client {
  constructor(e) {
    this.proc = spawn(BIN, ['serve'], { env: e, stdio: ['pipe', 'pipe', 'ignore'] });
    this.pid = this.proc.pid;
    this.buf = '';
    this.next = 1;
    this.waiting = new Map();
    this.onNote = null;
    this.proc.stdout.on('data', (chunk) => {
      const now = process.hrtime.bigint();
      this.buf += chunk.toString('utf8');
      let i;
      while ((i = this.buf.indexOf('\n')) >= 0) {
        const line = this.buf.slice(0, i);
        this.buf = this.buf.slice(i + 1);
        const msg = JSON.parse(line);
        if (msg.method) {
          if (this.onNote) this.onNote(msg, now);
        } else if (this.waiting.has(msg.id)) {
          this.waiting.get(msg.id)(msg);
          this.waiting.delete(msg.id);
        }
      }
    });
  }
  request(method, params) {
    const id = this.next++;
    return new Promise((resolve) => {
      this.waiting.set(id, resolve);
      this.proc.stdin.write(JSON.stringify({ jsonrpc: '2.0', id, method, params }) + '\n');
    });
  }
  async init() {
    const r = await this.request('initialize', { protocolVersion: '2025-11-25',
      capabilities: {}, clientInfo: { name: 'bench', version: '1' } });
    this.proc.stdin.write('{"jsonrpc":"2.0","method":"notifications/initialized"}\n');
    return r;
  }
  status(key) {
    const m = fs.readFileSync(`/proc/${this.pid}/status`, 'utf8').match(new RegExp(`^${key}:\\s+(\\d+)`, 'm'));
    return m ? Number(m[1]) : NaN;
  }
  // The live claude children. A dispatch's child is the keeper's, and the
  // keeper leaves the server's process tree (it must outlive the server),
  // so it is found once, as the parent of a process running this run's
  // private copy of the stub; then its children and the server's own are
  // counted (those running the stub).
  children() {
    const stub = path.join(STUB_DIR, 'claude');
    const exe = (pid) => { try { return fs.readlinkSync(`/proc/${pid}/exe`); } catch { return ''; } };
    const kids = (pid) => {
      try {
        const t = fs.readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim();
        return t ? t.split(/\s+/) : [];
      } catch { return []; }
    };
    if (!this.keeper) {
      for (const d of fs.readdirSync('/proc')) {
        if (!/^\d+$/.test(d) || exe(d) !== stub) continue;
        const ppid = Number(fs.readFileSync(`/proc/${d}/stat`, 'utf8').replace(/^.*\) /s, '').split(' ')[1]);
        if (ppid && ppid !== this.pid) { this.keeper = ppid; break; }
      }
    }
    const pids = [...kids(this.pid), ...(this.keeper ? kids(this.keeper) : [])];
    return pids.filter((k) => exe(k) === stub).length;
  }
  async close() {
    const done = new Promise((r) => this.proc.on('exit', r));
    this.proc.stdin.end();
    await done;
  }
}

function toolResult(resp) {
  if (resp.error) throw new Error(`error response: ${JSON.stringify(resp.error)}`);
  return JSON.parse(resp.result.content[0].text);
}

const rows = [];   // results table
const notes = [];  // extra lines for the report
function row(bench, measured, baseline, ratio, target, met) {
  rows.push({ bench, measured, baseline, ratio, target, met });
  console.error(`  ${bench}: ${measured} | baseline ${baseline} | ratio ${ratio} | ${met}`);
}
const verdict = (ok) => (ok === null ? '-' : ok ? 'met' : '**MISSED**');

// --------------------------------------------------------- benchmarks --

function benchStartup() {
  console.error('[1] startup');
  const e = env(CONF.main);
  // 300 pairs, each the product then min_server back to back.
  const n = R(300);
  const pr = parsePairs(harness(['startup', String(n), '--', BIN, 'serve', '--',
    path.join(HB, 'min_server')], e));
  const ad = pr.a, min = pr.b;
  const ratio = pairRatio(ad, min);
  row('1. startup: spawn -> `initialize` answered (serve)',
    `${f2(ms(median(ad)))} ms (p90 ${f2(ms(p90(ad)))})`,
    `min_server ${f2(ms(median(min)))} ms (p90 ${f2(ms(p90(min)))})`,
    `${f2(ratio)}x (median of ${ad.length} pairs; ratio of medians ${f2(median(ad) / median(min))}x)`,
    '<= 1.5x', verdict(ratio <= 1.5));
  const px = parsePairs(harness(['exec', String(n), '--', BIN, '--version', '--',
    path.join(HB, 'min_server')], e));
  const ver = px.a, minx = px.b;
  row('1b. `agent-dispatch --version` wall time (spawn -> exit)',
    `${f2(ms(median(ver)))} ms (p90 ${f2(ms(p90(ver)))})`,
    `min_server start->exit ${f2(ms(median(minx)))} ms`,
    `${f2(pairRatio(ver, minx))}x (median of pairs)`, '-', '-');
}

// Start -> tools/list answered: what a client waits for before its first
// call. The floor is replay_server answering with the very bytes the
// product sent (its initialize and tools/list responses, recorded here).
function benchStartList() {
  console.error('[1c] start -> tools/list');
  const e = env(CONF.main);
  const lines = [
    { jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-11-25',
      capabilities: {}, clientInfo: { name: 'bench', version: '1' } } },
    { jsonrpc: '2.0', method: 'notifications/initialized' },
    { jsonrpc: '2.0', id: 2, method: 'tools/list' },
  ].map((m) => JSON.stringify(m) + '\n').join('');
  const recorded = path.join(tmp, 'list-responses.txt');
  fs.writeFileSync(recorded, execFileSync(BIN, ['serve'], { env: e, input: lines, encoding: 'utf8' }));
  // 300 pairs, each the product then replay_server back to back.
  const n = R(300);
  const pr = parsePairs(harness(['list', String(n), '--', BIN, 'serve', '--',
    path.join(HB, 'replay_server'), recorded], e));
  const ad = pr.a, floor = pr.b;
  const bytes = pr.rest.length ? pr.rest[0][2] : NaN;
  const ratio = pairRatio(ad, floor);
  row('1c. start -> `tools/list` answered (initialize, initialized, tools/list)',
    `${f2(ms(median(ad)))} ms (p90 ${f2(ms(p90(ad)))})`,
    `replay_server, same ${bytes} bytes: ${f2(ms(median(floor)))} ms (p90 ${f2(ms(p90(floor)))})`,
    `${f2(ratio)}x (median of ${ad.length} pairs; ratio of medians ${f2(median(ad) / median(floor))}x)`,
    '<= 2x', verdict(ratio <= 2));
}

function benchToolsList() {
  console.error('[2] tools/list');
  const e = env(CONF.main);
  const out = parseRpc(harness(['rpc', String(R(1000)), '50', req('ping'), req('tools/list'),
    '--', BIN, 'serve'], e), 2);
  const [ping, list] = out.lat;
  row('2. tools/list latency (1000 requests, one server)',
    `${f3(ms(median(list)))} ms (p90 ${f3(ms(p90(list)))}); ${out.bytes[1]} bytes`,
    `ping ${f3(ms(median(ping)))} ms (p90 ${f3(ms(p90(ping)))}); ${out.bytes[0]} bytes`,
    `${f2(median(list) / median(ping))}x`, '-', '-');
  return out;
}

// What the product writes on the child's stdin: the prompt, or over the
// live transport (the default with a CLI that has the channel) the prompt
// as the first user message, the input closed after the answer.
function baselineStdin(inv) {
  if (!inv.argv.includes('--input-format')) return inv.prompt;
  return `${JSON.stringify({ type: 'user', message: { role: 'user', content: inv.prompt } })}\n`;
}

function benchDispatch() {
  console.error('[3] per-dispatch overhead');
  // The exact argv the product runs, from the stub's invocation log.
  const log = path.join(tmp, 'stub.log');
  const d = call('dispatch', { agent: 'a', task: 'hi', caller: 'bench', goal: 'g' });
  harness(['rpc', '1', '0', d, '--', BIN, 'serve'], env(CONF.main, { STUB_CLAUDE_LOG: log }));
  const inv = JSON.parse(fs.readFileSync(log, 'utf8').trim().split('\n')[0]);
  const e = env(CONF.main);
  // The floor is a minimal C stdio server (spawn_server) that spawns the
  // same argv in the same cwd with the same prompt on stdin (as the product
  // sends it) and, like the product over the live transport, answers at the
  // child's result line. The harness talks to both servers the same way and
  // sends each request to both, back to back (alternating which goes first),
  // so each pair sees the same machine: 600 pairs.
  // Nothing else runs between the two: the same spawn timed inside one
  // process (spawn_baseline: no stdio round trip, no server), the notes'
  // in-process figures, is a run of its own, paired with the product's
  // dispatches in the same way (after every round).
  const n = R(600);
  const be = { ...e, BASELINE_STDIN: baselineStdin(inv), BASELINE_UNTIL: 'result' };
  const o = parseRpc(harness(['rpc', String(n), '10', d, req('ping'), '--', BIN, 'serve',
    '==', path.join(HB, 'spawn_server'), inv.cwd, '--', ...inv.argv], be), 2);
  const prod = o.lat[0], ping = o.lat[1], floor = o.slat[0], floorPing = o.slat[1];
  const ob = parseRpc(harness(['rpc', String(R(200)), '10', d, '--', BIN, 'serve', '--',
    path.join(HB, 'spawn_baseline'), '1', inv.cwd, '--', ...inv.argv], be), 1);
  const base = ob.base || [], exit = ob.baseExit || [];
  const ratio = pairRatio(prod, floor);
  row('3. tools/call dispatch, stub answers at once (cache off)',
    `${f2(ms(median(prod)))} ms (p90 ${f2(ms(p90(prod)))})`,
    `minimal C stdio server spawning the same stub, answering at its result line: ${f2(ms(median(floor)))} ms (p90 ${f2(ms(p90(floor)))})`,
    `${f2(ratio)}x (median of ${prod.length} pairs; ratio of medians ${f2(median(prod) / median(floor))}x); overhead ${f2(ms(median(prod) - median(floor)))} ms`,
    '<= 1.15x', verdict(ratio <= 1.15));
  splitDispatch(d, inv, e);
  notes.push(`Per-dispatch: JSON-RPC round trip alone (ping on the same server) ${f3(ms(median(ping)))} ms; ` +
    `on the floor server ${f3(ms(median(floorPing)))} ms.`);
  notes.push(`Per-dispatch against the same spawn timed inside one process (spawn_baseline: no server, ` +
    `no stdio round trip; a run of ${ob.lat[0].length} pairs of its own): to the child's result line ` +
    `${f2(ms(median(base)))} ms, ${f2(pairRatio(ob.lat[0], base))}x; to the child's exit ` +
    `${f2(ms(median(exit)))} ms, ${f2(pairRatio(ob.lat[0], exit))}x (medians of pairs).`);
}

// Where a dispatch's time goes, product and floor side by side: a separate
// run in which the stub notes (CLOCK_MONOTONIC, as the harness) when its
// main() starts and when it has written its result line. Each note falls
// inside one request's window, which splits that request into the time
// before the child runs (request written -> the stub's main), the child
// itself (main -> result line) and the time after it (result line ->
// response read by the client).
function splitDispatch(d, inv, e) {
  const times = path.join(tmp, 'stub-times');
  fs.rmSync(times, { force: true });
  const o = parseRpc(harness(['rpc', String(R(200)), '10', d, '--', BIN, 'serve',
    '==', path.join(HB, 'spawn_server'), inv.cwd, '--', ...inv.argv],
  { ...e, BASELINE_STDIN: baselineStdin(inv), STUB_CLAUDE_TIMES: times }), 1);
  const notes_ = fs.readFileSync(times, 'utf8').trim().split('\n').map((l) => l.split(' ').map(Number))
    .sort((a, b) => a[0] - b[0]);
  const split = (t0s, lats) => {
    const pre = [], child = [], post = [];
    for (let i = 0; i < t0s.length; i++) {
      const a = t0s[i], b = a + lats[i];
      const n = notes_.find(([s, r]) => s >= a && r <= b);
      if (!n) continue;
      pre.push(n[0] - a); child.push(n[1] - n[0]); post.push(b - n[1]);
    }
    return { pre: median(pre), child: median(child), post: median(post), n: pre.length };
  };
  const p = split(o.t0[0], o.lat[0]), f = split(o.st0[0], o.slat[0]);
  const fmt = (x) => `${f3(ms(x.pre))} + ${f3(ms(x.child))} + ${f3(ms(x.post))} ms`;
  notes.push(`Per-dispatch, where the time goes (separate run, ${p.n} pairs; request written -> the stub's main() ` +
    `+ main() -> its result line written + result line -> response read, medians): agent-dispatch ${fmt(p)}; ` +
    `floor ${fmt(f)}; difference ${f3(ms(p.pre - f.pre))} before the child runs, ` +
    `${f3(ms(p.child - f.child))} in the child, ${f3(ms(p.post - f.post))} after its result line.`);
}

async function parallel(config, items, sleepS, opts = {}) {
  const c = new Client(env(config, opts.log ? { STUB_CLAUDE_LOG: opts.log } : {}));
  await c.init();
  const list = Array.from({ length: items }, (_, i) => ({ agent: 'a',
    task: `item ${i} [stub:sleep=${sleepS}]`, caller: 'bench', goal: 'g' }));
  const trials = [];
  let maxKids = 0, maxRss = 0;
  for (let t = 0; t < (opts.trials || 1) + 1; t++) {
    let poll = true;
    const poller = (async () => {
      while (poll) {
        maxKids = Math.max(maxKids, c.children());
        maxRss = Math.max(maxRss, c.status('VmRSS'));
        await sleep(opts.pollMs || 20);
      }
    })();
    const t0 = process.hrtime.bigint();
    const resp = await c.request('tools/call', { name: 'dispatch_parallel',
      arguments: { dispatches: JSON.stringify(list) } });
    const dt = Number(process.hrtime.bigint() - t0) / 1e6;
    poll = false;
    await poller;
    const r = toolResult(resp);
    const results = r.results || r.individual_results || r;
    const okCount = Array.isArray(results) ? results.filter((x) => x.success).length : NaN;
    if (okCount !== items) throw new Error(`dispatch_parallel: ${okCount}/${items} succeeded: ${JSON.stringify(r).slice(0, 400)}`);
    if (t > 0) trials.push(dt); // the first run is a warm-up
  }
  const hwm = c.status('VmHWM');
  await c.close();
  return { trials, hwm, maxKids, maxRss };
}

async function benchConcurrency() {
  console.error('[4] concurrency');
  // Floor: one 200 ms stub run, spawned directly (fork/exec/read/waitpid).
  const e = env(CONF.main);
  const floor = numbers(execFileSync(path.join(HB, 'spawn_baseline'),
    [String(R(20)), proj, '--', path.join(STUB_DIR, 'claude'), '-p', '--output-format', 'json',
      '--', 'x [stub:sleep=0.2]'], { env: e, encoding: 'utf8' }));
  notes.push(`Concurrency floor: one 200 ms stub run spawned directly takes ${f2(ms(median(floor)))} ms (median).`);
  const c20 = await parallel(CONF.main, 20, 0.2, { trials: R(10) });
  const r20 = median(c20.trials) / 200;
  row('4a. dispatch_parallel 20 x 200 ms, limit 20',
    `${f2(median(c20.trials))} ms (p90 ${f2(p90(c20.trials))})`,
    `200 ms (direct 200 ms run: ${f2(ms(median(floor)))} ms)`,
    `${f3(r20)}x (vs direct run ${f3(median(c20.trials) / ms(median(floor)))}x)`,
    '<= 1.1x', verdict(r20 <= 1.1));
  // Diagnostic (separate server, stub invocation log on): how far apart the
  // 20 children start, from the stubs' own start times.
  const log = path.join(tmp, 'starts.log');
  await parallel(CONF.main, 20, 0.2, { trials: 3, log });
  const starts = fs.readFileSync(log, 'utf8').trim().split('\n').map((l) => JSON.parse(l).time);
  const spreads = [];
  for (let k = 0; k + 20 <= starts.length; k += 20) {
    const t = starts.slice(k, k + 20).sort((a, b) => a - b);
    spreads.push((t[19] - t[0]) * 1000);
  }
  notes.push(`Concurrency: the 20 children of one dispatch_parallel start over a spread of ` +
    `${f2(median(spreads))} ms (median of ${spreads.length} runs, first to last stub start), ` +
    `i.e. ${f2(median(spreads) / 19)} ms between consecutive starts (each stub's exec and start-up takes ~0.9 ms of CPU on the 2 cores).`);
  const f10 = await parallel(CONF.fan10, 50, 0.2, { trials: R(5) });
  const rf = median(f10.trials) / 1000;
  row('4b. fan-out 50 x 200 ms, limit 10 (issue #4)',
    `${f2(median(f10.trials))} ms (p90 ${f2(p90(f10.trials))})`,
    `5 x 200 = 1000 ms (5 x direct run: ${f2(5 * ms(median(floor)))} ms)`,
    `${f3(rf)}x (vs 5 direct runs ${f3(median(f10.trials) / (5 * ms(median(floor))))}x)`,
    '<= 1.1x', verdict(rf <= 1.1));
  const l50 = await parallel(CONF.live50, 50, 0.5, { trials: R(3), pollMs: 5 });
  row('4c. 50 live children (50 x 500 ms, limit 50): wall',
    `${f2(median(l50.trials))} ms; max ${l50.maxKids} live children seen`,
    '500 ms', `${f3(median(l50.trials) / 500)}x`, '-', '-');
  return { c20, f10, l50 };
}

async function benchMemory(idleKb, conc) {
  console.error('[5] memory');
  // Baseline: min_server's RSS after answering initialize.
  const p = spawn(path.join(HB, 'min_server'), [], { stdio: ['pipe', 'pipe', 'ignore'] });
  await new Promise((r) => { p.stdout.once('data', r); p.stdin.write('{}\n'); });
  await sleep(100);
  const minRss = Number(fs.readFileSync(`/proc/${p.pid}/status`, 'utf8').match(/^VmRSS:\s+(\d+)/m)[1]);
  p.stdin.end();
  const idleMb = idleKb / 1024;
  row('5a. idle RSS of serve after initialize',
    `${f2(idleMb)} MB (${idleKb} kB)`, `min_server ${minRss} kB`,
    `${f2(idleKb / minRss)}x`, '<= 4 MB', verdict(idleMb <= 4));
  const mb = (k) => `${f2(k / 1024)} MB`;
  row('5b. peak RSS (VmHWM) of serve during benchmark 4',
    `20 conc: ${mb(conc.c20.hwm)}; fan-out 50/10: ${mb(conc.f10.hwm)}; 50 live: ${mb(conc.l50.hwm)}`,
    `idle ${mb(idleKb)}`, `${f2(conc.l50.hwm / idleKb)}x (50 live / idle)`, '-', '-');
  notes.push(`Peak RSS with 50 live children: +${f2((conc.l50.hwm - idleKb) / 50)} kB per live child over idle.`);
}

function benchConfig() {
  console.error('[6] config re-read');
  const n = R(1000), blocks = 2;
  const cs = call('cache_stats', {});
  const big = [], small = [], bigPing = [], smallPing = [];
  for (let b = 0; b < blocks; b++) {
    const o1 = parseRpc(harness(['rpc', String(n / blocks), '20', cs, req('ping'), '--', BIN, 'serve'], env(CONF.hundred)), 2);
    big.push(...o1.lat[0]); bigPing.push(...o1.lat[1]);
    const o2 = parseRpc(harness(['rpc', String(n / blocks), '20', cs, req('ping'), '--', BIN, 'serve'], env(CONF.empty)), 2);
    small.push(...o2.lat[0]); smallPing.push(...o2.lat[1]);
  }
  const diff = ms(median(big) - median(small));
  row('6. config re-read: cache_stats, 100-agent vs empty config',
    `100 agents ${f3(ms(median(big)))} ms (p90 ${f3(ms(p90(big)))}); re-read cost ${f3(diff)} ms/call`,
    `empty config ${f3(ms(median(small)))} ms (p90 ${f3(ms(p90(small)))})`,
    `${f2(median(big) / median(small))}x`, '< 0.5 ms', verdict(diff < 0.5));
  const cfgBytes = fs.statSync(CONF.hundred).size;
  notes.push(`Config re-read: the 100-agent agents.yaml is ${cfgBytes} bytes; ping on the same servers: ` +
    `${f3(ms(median(bigPing)))} / ${f3(ms(median(smallPing)))} ms.`);
}

function checkClock() {
  // Node's process.hrtime.bigint() is libuv's uv_hrtime(), which reads
  // CLOCK_MONOTONIC on Linux. Check it against the stub's clock_gettime.
  let worst = 0;
  for (let i = 0; i < 20; i++) {
    const a = process.hrtime.bigint();
    const s = BigInt(execFileSync(path.join(HB, 'progress_stub'), ['--now'], { encoding: 'utf8' }).trim());
    const b = process.hrtime.bigint();
    if (!(a <= s && s <= b)) throw new Error(`clock check failed: ${a} <= ${s} <= ${b} does not hold`);
    worst = Math.max(worst, Number(b - a));
  }
  return worst;
}

async function benchProgress() {
  console.error('[7] progress latency');
  const worst = checkClock();
  notes.push(`Clock check: 20/20 stub CLOCK_MONOTONIC readings fell between two process.hrtime.bigint() readings ` +
    `of the client (window <= ${f2(worst / 1e6)} ms), so both read the same clock.`);
  const runs = R(8), N = 50, task = `[stub:progress=${N}][stub:interval=0.02]`;
  // Baseline: the stub's stdout piped straight to this client.
  const direct = [];
  for (let r = 0; r < runs; r++) {
    await new Promise((resolve, reject) => {
      const p = spawn(path.join(progBin, 'claude'), ['-p', '--output-format', 'stream-json', '--verbose',
        '--', task], { stdio: ['ignore', 'pipe', 'ignore'] });
      let buf = '';
      p.stdout.on('data', (chunk) => {
        const now = process.hrtime.bigint();
        buf += chunk.toString('utf8');
        let i;
        while ((i = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, i);
          buf = buf.slice(i + 1);
          const m = line.match(/"text":"(\d+)"/);
          if (m) direct.push(Number(now - BigInt(m[1])) / 1000);
        }
      });
      p.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`progress_stub exit ${code}`))));
    });
  }
  // Through the server: dispatch_stream progress notifications.
  const c = new Client(env(CONF.main, {}, progBin));
  await c.init();
  const via = [];
  c.onNote = (msg, now) => {
    if (msg.method !== 'notifications/progress') return;
    const m = String(msg.params.message || '').match(/(\d{6,})\s*$/);
    if (m) via.push(Number(now - BigInt(m[1])) / 1000);
  };
  for (let r = 0; r < runs; r++) {
    const resp = await c.request('tools/call', { name: 'dispatch_stream',
      arguments: { agent: 'a', task, caller: 'bench', goal: 'g' }, _meta: { progressToken: `p${r}` } });
    const res = toolResult(resp);
    if (!res.success) throw new Error(`dispatch_stream failed: ${JSON.stringify(res).slice(0, 300)}`);
  }
  await c.close();
  if (via.length < runs * N * 0.9) throw new Error(`only ${via.length} progress notifications seen`);
  const okMet = ms(median(via)) < 1;
  row(`7. progress latency: stub line -> notifications/progress (${via.length} samples)`,
    `${f3(ms(median(via)))} ms median, p99 ${f3(ms(p99(via)))} ms`,
    `direct pipe ${f3(ms(median(direct)))} ms median, p99 ${f3(ms(p99(direct)))} ms`,
    `${f2(median(via) / median(direct))}x; added ${f3(ms(median(via) - median(direct)))} ms`,
    '< 1 ms median', verdict(okMet));
}

// Job store (issue #5). A store of N finished jobs in the product's on-disk
// format, written by jobs_gen (1% failed), then checked against the
// product's own code (jobs_check.lua) and CLI before anything is timed.
function jobStore(n) {
  const dir = path.join(tmp, `jobs-${n}`);
  const ids = execFileSync(path.join(HB, 'jobs_gen'), [dir, String(n), '100'],
    { encoding: 'utf8', maxBuffer: 1 << 26 }).trim().split('\n');
  const e = env(CONF.main, { AGENT_DISPATCH_JOBS_DIR: dir });
  const check = execFileSync(BIN, ['run', path.join(__dirname, 'jobs_check.lua')],
    { env: e, encoding: 'utf8' }).trim();
  if (check !== `ok ${n} records`) throw new Error(`jobs_check on ${n} jobs: ${check}`);
  const listed = execFileSync(BIN, ['jobs', '--limit', '3'], { env: e, encoding: 'utf8' })
    .trim().split('\n').map((l) => l.split(/\s+/)[0])
    .filter((id) => /^[0-9a-f]{32}$/.test(id)); // rows only, not the table's header
  const newest = ids.slice(-3).reverse();
  if (listed.join(' ') !== newest.join(' ')) {
    throw new Error(`agent-dispatch jobs --limit 3 on the generated store: ${listed} != ${newest}`);
  }
  const mid = ids[Math.floor(n / 2)];
  const shown = execFileSync(BIN, ['job', mid], { env: e, encoding: 'utf8' });
  if (!shown.startsWith(`${mid} [`)) throw new Error(`agent-dispatch job ${mid}: ${shown.slice(0, 200)}`);
  return { dir, ids, mid, failed: n >= 50 ? 1 + Math.floor((n - 50) / 100) : 0 };
}

function benchJobStore() {
  console.error('[8] job store: listing and status with 100 / 1,000 / 10,000 job files');
  const sizes = [100, 1000, 10000];
  const t0 = process.hrtime.bigint();
  const stores = Object.fromEntries(sizes.map((n) => [n, jobStore(n)]));
  const genMs = Number(process.hrtime.bigint() - t0) / 1e6;
  // Each tool runs on its own servers, interleaved with ping (the baseline),
  // so the garbage one tool leaves for Lua's GC is not paid inside another
  // tool's figure. One server per (block, size, tool); sizes in alternating
  // order over 2 blocks.
  const tools = {
    list: () => call('dispatch_jobs', { limit: 50 }),
    status: (s) => call('dispatch_status', { job_id: s.mid }),
    failed: () => call('dispatch_jobs', { status: 'failed', limit: 50 }),
    none: () => call('dispatch_jobs', { status: 'pending', limit: 50 }),
  };
  const res = {};
  for (const size of sizes) {
    res[size] = {};
    for (const k of Object.keys(tools)) res[size][k] = { lat: [], ping: [], bytes: NaN };
  }
  const n = R(300), blocks = 2;
  for (let b = 0; b < blocks; b++) {
    for (const size of (b % 2 ? [...sizes].reverse() : sizes)) {
      const s = stores[size];
      for (const [k, tmpl] of Object.entries(tools)) {
        const o = parseRpc(harness(['rpc', String(Math.ceil(n / blocks)), '20', req('ping'), tmpl(s),
          '--', BIN, 'serve'], env(CONF.main, { AGENT_DISPATCH_JOBS_DIR: s.dir })), 2);
        res[size][k].ping.push(...o.lat[0]);
        res[size][k].lat.push(...o.lat[1]);
        res[size][k].bytes = o.bytes[1];
      }
    }
  }
  const med = (size, k) => median(res[size][k].lat);
  const pp = (size, k) => p90(res[size][k].lat);
  const pingOf = (size, k) => median(res[size][k].ping);
  const per = (k) => sizes.map((s) => `${s}: ${f3(ms(med(s, k)))}`).join('; ');
  const pings = (k) => `ping ${sizes.map((s) => f3(ms(pingOf(s, k)))).join(' / ')} ms`;
  const growth = (k) => med(10000, k) / med(100, k);
  const added = (k) => ms(med(10000, k) - med(100, k));
  // "Flat": 9,900 more job files add < 0.5 ms (< 0.05 ms per 1,000 files, so
  // even 100,000 files would stay within the 5 ms budget). Linear growth
  // would be 100x from 100 to 10,000 files.
  const flat = (k) => ms(med(10000, k)) < 5 && added(k) < 0.5;
  const grew = (k) => `100 -> 10,000 files: ${added(k) >= 0 ? '+' : ''}${f3(added(k))} ms (${f2(growth(k))}x)`;
  row('8a. dispatch_jobs {limit: 50}, 100 / 1,000 / 10,000 job files',
    `${per('list')} ms (p90 at 10,000: ${f3(ms(pp(10000, 'list')))}); ${res[10000].list.bytes} bytes`,
    pings('list'),
    `${f2(med(10000, 'list') / pingOf(10000, 'list'))}x ping; ${grew('list')}`,
    '< 5 ms, flat', verdict(flat('list')));
  row('8b. dispatch_status {job_id}, 100 / 1,000 / 10,000 job files',
    `${per('status')} ms (p90 at 10,000: ${f3(ms(pp(10000, 'status')))}); ${res[10000].status.bytes} bytes`,
    pings('status'),
    `${f2(med(10000, 'status') / pingOf(10000, 'status'))}x ping; ${grew('status')}`,
    '< 5 ms, flat', verdict(flat('status')));
  row('8c. dispatch_jobs {status: "failed", limit: 50}, 1% failed',
    `${per('failed')} ms (p90 at 10,000: ${f3(ms(pp(10000, 'failed')))}); ` +
    `${sizes.map((s) => Math.min(50, stores[s].failed)).join(' / ')} jobs returned`,
    pings('failed'),
    `${f2(med(10000, 'failed') / pingOf(10000, 'failed'))}x ping; ${grew('failed')}`,
    '< 5 ms at 10,000', verdict(ms(med(10000, 'failed')) < 5));
  row('8d. dispatch_jobs {status: "pending"}, no match: whole-index scan',
    `${per('none')} ms (p90 at 10,000: ${f3(ms(pp(10000, 'none')))})`,
    pings('none'),
    `${f2(med(10000, 'none') / pingOf(10000, 'none'))}x ping; ${grew('none')}`,
    '-', '-');
  notes.push(`Job store: ${sizes.map((s) => `${s}`).join(' + ')} job files (1% failed, ~620 B each) ` +
    `generated and checked against the product (jobs_check.lua, \`jobs --limit 3\`, \`job <id>\`) in ${f2(genMs / 1000)} s; ` +
    `the index of 10,000 jobs is ${f2(10000 * 61 / 1024)} kB. Page cache warm. ` +
    `The failed filter at 10,000 files scans the newest ${49 + 49 * 100 + 1} index lines to find 50 matches.`);
}

function writeStats(text) {
  const by = {};
  let bytes = NaN;
  for (const l of text.split('\n')) {
    if (!l) continue;
    if (l.startsWith('# bytes')) { bytes = Number(l.split(' ')[2]); continue; }
    const [k, v] = l.split(' ');
    (by[k] = by[k] || []).push(Number(v));
  }
  return { by, bytes };
}

function benchJobWrite() {
  console.error('[9] job write latency');
  const lua = path.join(__dirname, 'job_write.lua');
  const base = path.join(tmp, 'write-baseline');
  fs.mkdirSync(base);
  const runLua = (mode, count) => {
    const dir = path.join(tmp, `jobs-write-${mode}`);
    fs.rmSync(dir, { recursive: true, force: true });
    return writeStats(execFileSync(BIN, ['run', lua, mode, String(count)],
      { env: env(CONF.main, { AGENT_DISPATCH_JOBS_DIR: dir }), encoding: 'utf8', maxBuffer: 1 << 26 }));
  };
  const n = R(300), blocks = 3;
  const prog = [], plain = [], sync = [], create = [], finish = [];
  let bytes = NaN;
  for (let b = 0; b < blocks; b++) {
    const p = runLua('progress', n / blocks);
    prog.push(...p.by.progress);
    bytes = p.bytes;
    plain.push(...numbers(execFileSync(path.join(HB, 'write_baseline'),
      [base, String(n / blocks), String(bytes), 'plain'], { encoding: 'utf8' })));
    sync.push(...numbers(execFileSync(path.join(HB, 'write_baseline'),
      [base, String(n / blocks), String(bytes), 'fsync'], { encoding: 'utf8' })));
    create.push(...runLua('create', Math.ceil(n / blocks / 2)).by.create);
    finish.push(...runLua('finish', Math.ceil(n / blocks / 2)).by.finish);
  }
  const parts = runLua('parts', R(150)).by;
  const mp = median(prog), mpl = median(plain), ms_ = median(sync);
  row(`9a. job write: jobs.update_progress, ${bytes}-byte record (fsync'd)`,
    `${f3(ms(mp))} ms (p90 ${f3(ms(p90(prog)))})`,
    `write+rename ${f3(ms(mpl))} ms (p90 ${f3(ms(p90(plain)))}); + fsync file and dir ${f3(ms(ms_))} ms (p90 ${f3(ms(p90(sync)))})`,
    `${f2(mp / mpl)}x no-fsync; ${f2(mp / ms_)}x fsync`, '-', '-');
  row('9b. job write: jobs.create (record + index append)',
    `${f3(ms(median(create)))} ms (p90 ${f3(ms(p90(create)))})`,
    `+ fsync file and dir ${f3(ms(ms_))} ms`,
    `${f2(median(create) / ms_)}x fsync`, '-', '-');
  row('9c. job write: jobs.finish (status change: record + index line in place)',
    `${f3(ms(median(finish)))} ms (p90 ${f3(ms(p90(finish)))})`,
    `+ fsync file and dir ${f3(ms(ms_))} ms`,
    `${f2(median(finish) / ms_)}x fsync`, '-', '-');
  const sum = ['lock', 'get', 'encode', 'write'].map((k) => median(parts[k]));
  notes.push(`Job write, where an update_progress goes (medians of ${parts.write.length}): lock+unlock ` +
    `${f3(ms(sum[0]))} ms, jobs.get (read + decode) ${f3(ms(sum[1]))} ms, encode ${f3(ms(sum[2]))} ms, ` +
    `core.jobs.write (temp, fsync, rename, dir fsync) ${f3(ms(sum[3]))} ms; the write is ` +
    `${f2(100 * sum[3] / sum.reduce((a, x) => a + x, 0))}% of the sum. Filesystem of the temp dir: ` +
    `${fsType(tmp)}.`);
}

function fsType(p) {
  try {
    return execFileSync('findmnt', ['-n', '-o', 'FSTYPE', '-T', p], { encoding: 'utf8' }).trim();
  } catch { return 'unknown'; }
}

// ---------------------------------------------------------------- main --

function table() {
  const head = '| Benchmark | Measured (median) | Baseline (same run) | Ratio | Target | Result |\n' +
    '| --- | --- | --- | --- | --- | --- |\n';
  return head + rows.map((r) => `| ${r.bench} | ${r.measured} | ${r.baseline} | ${r.ratio} | ${r.target} | ${r.met} |`).join('\n') + '\n';
}

async function main() {
  const t0 = Date.now();
  const version = execFileSync(BIN, ['--version'], { encoding: 'utf8' }).trim();
  const want = (k) => !ONLY || ONLY.has(k);
  if (want(1)) benchStartup();
  if (want(1)) benchStartList();
  const tl = want(2) || want(5) ? benchToolsList() : null;
  if (want(3)) benchDispatch();
  const conc = want(4) || want(5) ? await benchConcurrency() : null;
  if (want(5)) await benchMemory(tl.idle, conc);
  if (want(6)) benchConfig();
  if (want(7)) await benchProgress();
  if (want(8)) benchJobStore();
  if (want(9)) benchJobWrite();
  const secs = ((Date.now() - t0) / 1000).toFixed(1);
  const cpu = (os.cpus()[0] || {}).model || 'unknown CPU';
  const md = `# agent-dispatch benchmark results\n\n` +
    `${new Date().toISOString()} - ${version} - ${os.cpus().length} cores (${cpu}) - ` +
    `Linux ${os.release()} - node ${process.version}${QUICK ? ' - QUICK run' : ''}` +
    `${ONLY ? ` - only ${[...ONLY].join(',')}` : ''} - ${secs} s\n\n` +
    table() + '\n' + notes.map((n) => `- ${n}`).join('\n') + '\n';
  // A partial run (BENCH_ONLY) prints its table but keeps the last full results.md.
  if (!ONLY) fs.writeFileSync(path.join(__dirname, 'results.md'), md);
  process.stdout.write(md);
  fs.rmSync(tmp, { recursive: true, force: true });
}

main().catch((e) => {
  console.error(e.stack || String(e));
  fs.rmSync(tmp, { recursive: true, force: true });
  process.exitCode = 1;
});
