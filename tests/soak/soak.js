#!/usr/bin/env node
'use strict';
// Soak: many dispatches through one `agent-dispatch serve` with the stub
// claude, a mix of sync, stream, async (waited for), cancelled and cached
// calls, a fixed number in flight. Reports the server's RSS and open fds
// at the start (after a warm-up) and at each tenth, zombies, and checks at
// the end that no claude child or its group outlived the run and that the
// job store's index and record files agree.
//
//   node tests/soak/soak.js [--dispatches N] [--inflight K] [--json]
//
// AD_BIN / AD_STUB_DIR name the binary and the stub dir (default build/).
// Exits 1 when a check fails; the flatness bounds are --max-rss-growth-kb
// (default 8192) between the first tenth (a warm server at full load) and
// the end (not in a sanitized build), and the same fd count at the start
// and the end (both idle).
const fs = require('node:fs');
const path = require('node:path');
const { Env } = require('../e2e/lib');

function arg(name, def) {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : def;
}
const N = arg('dispatches', 20000);
const INFLIGHT = arg('inflight', 20);
const MAX_GROWTH = arg('max-rss-growth-kb', 8192);
const JSON_OUT = process.argv.includes('--json');
// A sanitized build keeps freed memory in quarantine: its RSS is reported,
// not bounded.
const SANITIZED = fs.readFileSync(require('../e2e/lib').BIN).includes('__asan_init');

const kb = (pid, key) => Number(new RegExp(`${key}:\\s+(\\d+) kB`).exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))[1]);
// Open descriptors, leaving out the concurrency slot files (a process
// keeps one open per slot its children have used, at most
// max_concurrency) and libuv's one inotify instance (made at the first
// job watch, kept for the loop's life): bounded by design, not leaks.
const fds = (pid) => fs.readdirSync(`/proc/${pid}/fd`).filter((f) => {
  try { return !/\/slots\/\d+\.lock$|^anon_inode:inotify$/.test(fs.readlinkSync(`/proc/${pid}/fd/${f}`)); } catch { return false; }
}).length;

/** Every process: {pid, ppid, pgrp, state}. */
function procs() {
  const out = [];
  for (const e of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const st = fs.readFileSync(`/proc/${e}/stat`, 'utf8');
      const r = st.slice(st.lastIndexOf(')') + 2).split(' ');
      out.push({ pid: Number(e), state: r[0], ppid: Number(r[1]), pgrp: Number(r[2]) });
    } catch { /* gone */ }
  }
  return out;
}
const zombiesOf = (pid) => procs().filter((p) => p.ppid === pid && p.state === 'Z').length;

/** Waits (up to 10 s) until the server has no child and a steady fd count:
 * the cancelled children of the last calls are reaped, their pipes closed. */
async function idle(srv) {
  const pid = srv.child.pid;
  let last = -1;
  for (let i = 0; i < 50; i++) {
    const n = fds(pid);
    if (n === last && !procs().some((p) => p.ppid === pid)) return;
    last = n;
    await new Promise((r) => setTimeout(r, 200));
  }
}

function sample(srv, done) {
  const pid = srv.child.pid;
  return { done, rss_kb: kb(pid, 'VmRSS'), hwm_kb: kb(pid, 'VmHWM'), fds: fds(pid), zombies: zombiesOf(pid) };
}

// Operation i of the mix; resolves to null or a failure message.
async function op(srv, i) {
  const k = i % 10;
  const agent = i % 2 ? 'a' : 'b';
  if (k <= 3) {
    const { value } = await srv.call('dispatch', { agent, task: `sync ${i}` }, { ms: 60000 });
    return value.result === `stub ok: sync ${i}` ? null : `sync ${i}: ${JSON.stringify(value)}`;
  }
  if (k === 4) {
    const task = `cached ${i % 40}`;
    const { value } = await srv.call('dispatch', { agent: 'a', task }, { ms: 60000 });
    return value.result === `stub ok: ${task}` ? null : `cached ${i}: ${JSON.stringify(value)}`;
  }
  if (k <= 6) {
    const { value } = await srv.call('dispatch_stream', { agent, task: `stream ${i} [stub:progress=3] [stub:interval=0.005]` },
      { ms: 60000, meta: { progressToken: `p${i}` } });
    return value.result === `stub ok: stream ${i}` ? null : `stream ${i}: ${JSON.stringify(value)}`;
  }
  if (k <= 8) {
    const { value } = await srv.call('dispatch_async', { agent, task: `async ${i}` }, { ms: 60000 });
    if (!value.job_id) return `async ${i}: ${JSON.stringify(value)}`;
    const rec = (await srv.call('dispatch_wait', { job_id: value.job_id, timeout_seconds: 60 }, { ms: 65000 })).value;
    return rec.status === 'done' && rec.result.result === `stub ok: async ${i}` ? null : `async ${i}: ${JSON.stringify(rec)}`;
  }
  // (60 s as every other call: the soak measures what leaks, not latency,
  // and a cancel of a live child first asks it to stop, which a sanitized
  // build beside the rest of the suite once took more than 15 s to answer)
  const { value } = await srv.call('dispatch_async', { agent, task: `cancel ${i} [stub:hang]` }, { ms: 60000 });
  if (!value.job_id) return `cancel ${i}: ${JSON.stringify(value)}`;
  const c = (await srv.call('dispatch_cancel', { job_id: value.job_id }, { ms: 60000 })).value;
  return /^cancelled/.test(c.status || '') ? null : `cancel ${i}: ${JSON.stringify(c)}`;
}

/** Index entries and record files agree (same ids, same status). */
function storeCheck(dir) {
  const problems = [];
  const index = new Map();
  for (const line of fs.readFileSync(path.join(dir, '.index'), 'utf8').split('\n')) {
    if (!line) continue;
    const [id, , status] = line.trim().split(/\s+/);
    index.set(id, status);
  }
  const files = fs.readdirSync(dir).filter((n) => /^[0-9a-f]{32}\.json$/.test(n));
  for (const f of files) {
    const rec = JSON.parse(fs.readFileSync(path.join(dir, f), 'utf8'));
    if (!index.has(rec.id)) problems.push(`${rec.id}: record without an index entry`);
    else if (index.get(rec.id) !== rec.status) problems.push(`${rec.id}: index says ${index.get(rec.id)}, record ${rec.status}`);
    if (!['done', 'cancelled'].includes(rec.status)) problems.push(`${rec.id}: left ${rec.status}`);
  }
  for (const id of index.keys()) if (!files.includes(`${id}.json`)) problems.push(`${id}: index entry without a record`);
  return { records: files.length, index_entries: index.size, problems };
}

async function main() {
  const env = new Env();
  env.setup({ agents: { a: true, b: true }, settings: '  max_concurrency: 10\n' });
  const srv = env.serve();
  await srv.init();
  for (let i = 0; i < 20; i++) await op(srv, N + i); // warm-up, all kinds
  await idle(srv);
  const samples = [sample(srv, 0)];
  const t0 = Date.now();
  const failures = [];
  let next = 0, finished = 0;
  await new Promise((resolve) => {
    const launch = () => {
      if (next >= N) { if (finished === N) resolve(); return; }
      const i = next++;
      op(srv, i).catch((e) => `op ${i}: ${e.message}`).then((f) => {
        if (f && failures.length < 20) failures.push(f);
        else if (f) failures.push('');
        finished++;
        if (finished % Math.max(1, Math.floor(N / 10)) === 0) samples.push(sample(srv, finished));
        launch();
      });
    };
    for (let k = 0; k < INFLIGHT; k++) launch();
  });
  const seconds = (Date.now() - t0) / 1000;
  await idle(srv);
  const end = sample(srv, N);
  const stderr = srv.stderr;
  srv.child.stdin.end();
  const exit = await srv.exited;
  // No claude child, grandchild or job runner outlives the run: each of
  // them carries this run's STUB_CLAUDE_LOG in its environment (pids are
  // reused within a long run, so the logged pids cannot tell).
  const stubs = env.stubLog();
  const mark = `STUB_CLAUDE_LOG=${env.log}\0`;
  const marked = (pid) => {
    try { return fs.readFileSync(`/proc/${pid}/environ`, 'latin1').includes(mark); } catch { return false; }
  };
  let left = [];
  for (let tries = 0; tries < 50; tries++) {
    left = procs().filter((p) => p.state !== 'Z' && p.pid !== process.pid && marked(p.pid));
    if (left.length === 0) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  const store = storeCheck(env.jobs);
  const report = {
    dispatches: N, inflight: INFLIGHT, seconds, per_second: Math.round(N / seconds),
    stub_runs: stubs.filter((e) => e.argv.includes('-p')).length,
    start: samples[0], end, samples,
    rss_growth_kb: end.rss_kb - (samples[1] || samples[0]).rss_kb,
    exit, leftovers: left.length, store: { records: store.records, index_entries: store.index_entries,
      problems: store.problems.slice(0, 10) },
    failures: failures.filter(Boolean), failed: failures.length,
  };
  const checks = [
    [report.failed === 0, `${report.failed} operations failed`],
    [exit.code === 0, `server exit ${JSON.stringify(exit)}`],
    [left.length === 0, `${left.length} processes left`],
    [end.zombies === 0, `${end.zombies} zombies`],
    [end.fds === samples[0].fds, `open fds ${samples[0].fds} -> ${end.fds}`],
    [SANITIZED || report.rss_growth_kb <= MAX_GROWTH, `RSS grew by ${report.rss_growth_kb} kB after the first tenth (bound ${MAX_GROWTH})`],
    [store.problems.length === 0, `job store: ${store.problems.length} problems`],
  ];
  const bad = checks.filter(([ok]) => !ok).map(([, m]) => m);
  report.ok = bad.length === 0;
  if (JSON_OUT) console.log(JSON.stringify(report));
  else {
    console.log(`soak: ${N} dispatches (${INFLIGHT} in flight) in ${seconds.toFixed(1)} s, ${report.per_second}/s; ${report.stub_runs} claude runs`);
    for (const s of samples) console.log(`  after ${String(s.done).padStart(6)}: RSS ${s.rss_kb} kB (peak ${s.hwm_kb}), fds ${s.fds}, zombies ${s.zombies}`);
    console.log(`  job store: ${store.records} records, ${store.index_entries} index entries, ${store.problems.length} disagreements`);
    console.log(`  leftover processes: ${left.length}; server exit ${exit.code}`);
    for (const f of report.failures) console.log(`  failure: ${f}`);
    for (const p of left) console.log(`  left: pid ${p.pid} (${fs.readFileSync(`/proc/${p.pid}/cmdline`, 'latin1').replace(/\0/g, ' ').slice(0, 120)})`);
    console.log(bad.length ? `FAIL: ${bad.join('; ')}` : 'ok');
  }
  if (bad.length) {
    console.error(stderr.slice(-1500));
    process.exitCode = 1;
  } else {
    fs.rmSync(env.root, { recursive: true, force: true });
  }
}

main().catch((e) => { console.error(e); process.exitCode = 1; });
