'use strict';
// Load (docs/reliability.md): 500 concurrent requests over one stdio
// connection at max_concurrency 20. Every response arrives exactly once,
// at most 20 claude children run at a time, server memory stays bounded
// and no file descriptor is left behind.
const { test } = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const { newEnv, sleep, waitUntil, BIN } = require('./lib');

const SANITIZED = fs.readFileSync(BIN).includes('__asan_init');
const status = (pid, key) => Number(new RegExp(`${key}:\\s+(\\d+) kB`).exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))[1]);
// Open descriptors, leaving out the concurrency slot files (a process
// keeps one open per slot its children have used, at most
// max_concurrency) and libuv's one inotify instance (made at the first
// job watch, kept for the loop's life): bounded by design, not leaks.
const fdLinks = (pid) => fs.readdirSync(`/proc/${pid}/fd`).map((f) => {
  try { return fs.readlinkSync(`/proc/${pid}/fd/${f}`); } catch { return '?'; }
});
const fds = (pid) => fs.readdirSync(`/proc/${pid}/fd`).filter((f) => {
  try { return !/\/slots\/\d+\.lock$|^anon_inode:inotify$/.test(fs.readlinkSync(`/proc/${pid}/fd/${f}`)); } catch { return false; }
}).length;

/** Live children of pid (scans /proc). */
function children(pid) {
  let n = 0;
  for (const e of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const st = fs.readFileSync(`/proc/${e}/stat`, 'utf8');
      const rest = st.slice(st.lastIndexOf(')') + 2).split(' ');
      if (Number(rest[1]) === pid && rest[0] !== 'Z') n++;
    } catch { /* gone */ }
  }
  return n;
}

test('500 concurrent requests at limit 20: each answered once, 20 children at most, bounded RSS, no fd growth',
  { timeout: 300000 }, async (t) => {
    const env = newEnv(t);
    // Async jobs run in the server here, so that its limit covers them.
    env.setup({ agents: { a: true, b: true },
      settings: '  max_concurrency: 20\n  jobs_outlive_server: false\n' });
    const srv = env.serve();
    await srv.init();
    // Warm up (first dispatch loads what later ones reuse), then measure.
    await srv.call('dispatch', { agent: 'a', task: 'warm up' });
    // The baseline is taken once the warm-up child is gone and its pipes
    // are closed (a starved sanitized server may still hold them 200 ms
    // after the answer): no children, and the same count 300 ms apart.
    await waitUntil(() => children(srv.child.pid) === 0, 15000);
    let fd0 = fds(srv.child.pid);
    for (let prev = -1, n = 0; fd0 !== prev && n < 50; n++) {
      prev = fd0;
      await sleep(300);
      fd0 = fds(srv.child.pid);
    }
    const links0 = fdLinks(srv.child.pid);
    const rss0 = status(srv.child.pid, 'VmRSS');
    const N = 500;
    const kinds = ['dispatch', 'dispatch', 'dispatch', 'dispatch_stream', 'dispatch_async'];
    const t0 = Date.now();
    for (let i = 0; i < N; i++) {
      const name = kinds[i % kinds.length];
      srv.send({ jsonrpc: '2.0', id: i, method: 'tools/call', params: { name,
        arguments: { agent: i % 2 ? 'a' : 'b', task: `load ${i} [stub:sleep=0.05] [stub:progress=2] [stub:interval=0.01]` },
        _meta: name === 'dispatch_stream' ? { progressToken: `p${i}` } : undefined } });
    }
    let peakChildren = 0;
    const done = () => { for (let i = 0; i < N; i++) if (srv.responsesTo(i).length === 0) return false; return true; };
    await waitUntil(() => { peakChildren = Math.max(peakChildren, children(srv.child.pid)); return done(); }, 240000, 20);
    const elapsed = Date.now() - t0;
    const jobs = [];
    for (let i = 0; i < N; i++) {
      const rs = srv.responsesTo(i);
      assert.strictEqual(rs.length, 1, `request ${i}: ${rs.length} responses`);
      const r = rs[0].msg;
      assert.ok(r.result && !r.result.isError, JSON.stringify(r));
      const v = JSON.parse(r.result.content[0].text);
      if (kinds[i % kinds.length] === 'dispatch_async') jobs.push({ id: v.job_id });
      // A call that waited for a slot past handoff_after_seconds (a loaded
      // machine) is handed off to a job: its answer is the job's.
      else if (v.status === 'running') jobs.push({ id: v.job_id, result: `stub ok: load ${i}` });
      else assert.strictEqual(v.result, `stub ok: load ${i}`, JSON.stringify(v));
    }
    for (const { id, result } of jobs) {
      const rec = (await srv.call('dispatch_wait', { job_id: id, timeout_seconds: 60 }, { ms: 65000 })).value;
      assert.strictEqual(rec.status, 'done', JSON.stringify(rec));
      if (result) assert.strictEqual(rec.result.result, result, JSON.stringify(rec));
    }
    assert.ok(peakChildren <= 20, `${peakChildren} children at once`);
    assert.strictEqual(env.dispatches().length, N + 1);
    // A child's last pipe may close a little after its answer: a leak is a
    // count that does not come back, not one read too early.
    await waitUntil(() => fds(srv.child.pid) <= fd0, 15000);
    const fd1 = fds(srv.child.pid);
    const hwm = status(srv.child.pid, 'VmHWM');
    const rss1 = status(srv.child.pid, 'VmRSS');
    console.log(`# load: ${N} requests in ${elapsed} ms; peak children ${peakChildren}; ` +
      `RSS ${rss0} -> ${rss1} kB (peak ${hwm} kB); fds ${fd0} -> ${fd1}`);
    assert.ok(fd1 <= fd0, `open fds ${fd0} -> ${fd1}: ${JSON.stringify(links0)} -> ${JSON.stringify(fdLinks(srv.child.pid))}`);
    if (!SANITIZED) assert.ok(hwm < 64 * 1024, `peak RSS ${hwm} kB`);
    await srv.close(10000);
  });
