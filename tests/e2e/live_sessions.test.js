'use strict';
// Live sessions and the warm pool (ad.domain.live) with the stub claude in
// its live mode (--input-format stream-json): a session continuation goes
// to the process of that session instead of a `--resume` spawn, the pool
// starts processes ahead and hands each to one conversation only, bounds
// hold, and nothing is left behind at shutdown or after a SIGKILL.
const { test } = require('node:test');
const assert = require('node:assert');
const { newEnv, sleep, alive } = require('./lib');

// Waits (up to ms) until pred (sync or async) holds; true if it did.
async function waitUntil(pred, ms) {
  const end = Date.now() + ms;
  for (;;) {
    if (await pred()) return true;
    if (Date.now() > end) return false;
    await sleep(50);
  }
}

const fs = require('node:fs');
const path = require('node:path');

// Every live claude the stub saw start (STUB_CLAUDE_STARTS: logged before
// any input, so warm pool processes count from their start).
function liveSpawns(env) {
  let text = '';
  try { text = fs.readFileSync(path.join(env.root, 'starts.log'), 'utf8'); } catch { return []; }
  return text.split('\n').filter(Boolean).map((l) => JSON.parse(l))
    .filter((e) => e.argv.includes('-p') && e.argv.includes('stream-json'));
}

function serve(env) {
  const srv = env.serve({ env: { STUB_CLAUDE_STARTS: path.join(env.root, 'starts.log') } });
  // Every process started counts for the no-leftover check of cleanup.
  const tracked = env.trackedPids.bind(env);
  env.trackedPids = () => {
    const t = tracked();
    for (const e of liveSpawns(env)) { t.pids.push(e.pid); t.groups.push(e.pgid); }
    return t;
  };
  return srv;
}

function resumed(env) {
  return env.dispatches().filter((e) => e.argv.includes('--resume'));
}

async function stats(srv) {
  return (await srv.call('live_stats')).value;
}

async function session(srv, args, ms = 15000) {
  const r = await srv.call('dispatch_session', args, { ms });
  assert.strictEqual(r.value.success, true, JSON.stringify(r.value));
  return r.value;
}

test('two turns of one session at once take turns: never a second CLI on the transcript', async (t) => {
  const env = newEnv(t);
  env.setup({ agents: { a: true } });
  const srv = serve(env);
  await srv.init();
  const first = await session(srv, { agent: 'a', task: 'turn one' });
  const sid = first.session_id;
  const [two, three] = await Promise.all([
    session(srv, { agent: 'a', task: 'turn two [stub:sleep=1]', session_id: sid }),
    session(srv, { agent: 'a', task: 'turn three', session_id: sid })]);
  assert.strictEqual(two.session_id, sid);
  assert.strictEqual(three.session_id, sid);
  assert.deepStrictEqual(resumed(env).map((e) => e.argv.join(' ')), [], 'a --resume ran beside the live process');
  assert.strictEqual(env.dispatches().length, 1, 'one process for the three turns');
  // The later turn saw the earlier one: they ran one after the other.
  assert.match(three.result, /turn two/);
});

test('a session continuation reuses the one live process for several turns', async (t) => {
  const env = newEnv(t);
  env.setup({ agents: { a: true } });
  const srv = serve(env);
  await srv.init();
  const first = await session(srv, { agent: 'a', task: 'turn one' });
  const sid = first.session_id;
  assert.match(sid, /^[0-9a-f-]{36}$/);
  assert.strictEqual(liveSpawns(env).length, 1);
  const pid = liveSpawns(env)[0].pid;
  let s = await stats(srv);
  assert.strictEqual(s.sessions, 1, JSON.stringify(s));
  assert.strictEqual(s.processes[0].pid, pid);
  assert.strictEqual(s.processes[0].session_id, sid);
  for (const text of ['turn two', 'turn three']) {
    const r = await session(srv, { agent: 'a', task: text, session_id: sid });
    assert.strictEqual(r.session_id, sid);
    // The one process saw every message of the conversation.
    assert.match(r.result, /turn one/);
    assert.match(r.result, new RegExp(text));
  }
  assert.strictEqual(env.dispatches().length, 1, 'one process for three turns');
  assert.strictEqual(resumed(env).length, 0);
  assert.ok(alive(pid));
  s = await stats(srv);
  assert.strictEqual(s.totals.reused, 2, JSON.stringify(s.totals));
  assert.strictEqual(s.processes[0].turns, 3);
  assert.ok(s.processes[0].rss_kb > 0);
  await srv.close();
  assert.ok(!alive(pid), 'the live process ended with the server');
});

test('two servers on one jobs directory: a turn in one makes the other\'s kept process of that session stale', async (t) => {
  // Claude Code runs a server per session of its own; two of them (same
  // config, same jobs directory) may continue one session in turn. A
  // process kept by one never saw the turns the other ran: the next turn
  // there must resume the transcript, not talk to the stale process.
  const env = newEnv(t);
  env.setup({ agents: { a: true } });
  const a = serve(env);
  const b = serve(env);
  await a.init();
  await b.init();
  const first = await session(a, { agent: 'a', task: 'turn one' });
  const sid = first.session_id;
  const pidA = liveSpawns(env)[0].pid;
  const two = await session(b, { agent: 'a', task: 'turn two', session_id: sid });
  assert.strictEqual(two.session_id, sid);
  assert.strictEqual(resumed(env).length, 1, 'server b resumed the session');
  const three = await session(a, { agent: 'a', task: 'turn three', session_id: sid });
  assert.strictEqual(three.session_id, sid);
  assert.doesNotMatch(three.result, /turn one/, 'turn three went to the process that never saw turn two');
  assert.strictEqual(resumed(env).length, 2, 'server a resumed the session');
  assert.ok(await waitUntil(() => !alive(pidA), 10000), 'the stale process was not retired');
  // And the other way round: b's process (kept after turn two) is stale now.
  const pidB = resumed(env)[0].pid;
  const four = await session(b, { agent: 'a', task: 'turn four', session_id: sid });
  assert.doesNotMatch(four.result, /turn two/, 'turn four went to the process that never saw turn three');
  assert.strictEqual(resumed(env).length, 3);
  assert.ok(await waitUntil(() => !alive(pidB), 10000));
  // A server's own kept process stays in use while nobody else ran a turn.
  const five = await session(b, { agent: 'a', task: 'turn five', session_id: sid });
  assert.match(five.result, /turn four/);
  assert.strictEqual(resumed(env).length, 3);
  await a.close();
  await b.close();
});

test('a continuation with another argv, agent or environment falls back to --resume', async (t) => {
  const env = newEnv(t);
  env.setup({ agents: { a: true } });
  const srv = serve(env);
  await srv.init();
  const first = await session(srv, { agent: 'a', task: 'turn one' });
  const pid = liveSpawns(env)[0].pid;
  // Another model for the agent: another command line.
  env.setup({ agents: { a: { directory: env.project('a'), model: 'other-model' } } });
  const r = await session(srv, { agent: 'a', task: 'turn two', session_id: first.session_id });
  assert.strictEqual(env.dispatches().length, 2);
  const second = env.dispatches()[1];
  assert.ok(second.argv.includes('--resume'), JSON.stringify(second.argv));
  assert.ok(second.argv.includes(first.session_id));
  assert.ok(!alive(pid), 'the mismatched live process was retired before --resume');
  assert.strictEqual(r.session_id, first.session_id);
  // A per-call difference (a response schema) never takes the live one.
  const third = await srv.call('dispatch_session', { agent: 'a', task: 'turn three',
    session_id: first.session_id, response_schema: { type: 'object' } });
  assert.ok(third.value.session_id);
  assert.strictEqual(env.dispatches().length, 3);
  assert.ok(env.dispatches()[2].argv.includes('--resume'));
  await srv.close();
});

test('the session of another agent is never continued in its process', async (t) => {
  const env = newEnv(t);
  const dir = env.project('shared');
  env.setup({ agents: { a: dir, b: dir } });
  const srv = serve(env);
  await srv.init();
  const first = await session(srv, { agent: 'a', task: 'for a' });
  await srv.call('dispatch_session', { agent: 'b', task: 'for b', session_id: first.session_id });
  assert.strictEqual(env.dispatches().length, 2);
  assert.ok(env.dispatches()[1].argv.includes('--resume'));
  await srv.close();
});

test('bounds: at most max idle sessions, the least recently used is evicted', async (t) => {
  const env = newEnv(t);
  env.setup({ agents: { a: true }, settings: '  live_sessions:\n    max: 2\n' });
  const srv = serve(env);
  await srv.init();
  const ids = [];
  for (const n of [1, 2]) ids.push((await session(srv, { agent: 'a', task: `s${n}` })).session_id);
  // Touch the first so the second is the least recently used.
  await session(srv, { agent: 'a', task: 's1 again', session_id: ids[0] });
  ids.push((await session(srv, { agent: 'a', task: 's3' })).session_id);
  const pids = liveSpawns(env).map((e) => e.pid);
  assert.strictEqual(pids.length, 3);
  const s = await stats(srv);
  assert.strictEqual(s.sessions, 2, JSON.stringify(s));
  assert.strictEqual(s.bounds.max, 2);
  assert.strictEqual(s.totals.evicted, 1);
  assert.deepStrictEqual(s.processes.map((p) => p.session_id).sort(), [ids[0], ids[2]].sort());
  await waitUntil(() => !alive(pids[1]), 5000);
  assert.ok(!alive(pids[1]), 'the evicted process ended');
  // Its session still continues, with --resume.
  await session(srv, { agent: 'a', task: 's2 again', session_id: ids[1] });
  assert.ok(env.dispatches()[3].argv.includes('--resume'));
  await srv.close();
});

test('max 0 keeps nothing: every continuation resumes', async (t) => {
  const env = newEnv(t);
  env.setup({ agents: { a: true }, settings: '  live_sessions:\n    max: 0\n' });
  const srv = serve(env);
  await srv.init();
  const first = await session(srv, { agent: 'a', task: 'one' });
  assert.strictEqual((await stats(srv)).sessions, 0);
  await session(srv, { agent: 'a', task: 'two', session_id: first.session_id });
  assert.strictEqual(resumed(env).length, 1);
  await srv.close();
});

test('an idle session process is retired after idle_seconds', async (t) => {
  const env = newEnv(t);
  env.setup({ agents: { a: true }, settings: '  live_sessions:\n    idle_seconds: 1\n' });
  const srv = serve(env);
  await srv.init();
  const first = await session(srv, { agent: 'a', task: 'one' });
  const pid = liveSpawns(env)[0].pid;
  await waitUntil(() => !alive(pid), 15000);
  assert.ok(!alive(pid), 'expired');
  const s = await stats(srv);
  assert.strictEqual(s.sessions, 0);
  assert.strictEqual(s.totals.expired, 1);
  await session(srv, { agent: 'a', task: 'two', session_id: first.session_id });
  assert.strictEqual(resumed(env).length, 1);
  await srv.close();
});

test('an idle live process holds no concurrency slot', async (t) => {
  const env = newEnv(t);
  env.setup({ agents: { a: true, b: true }, settings: '  max_concurrency: 1\n' });
  const srv = serve(env);
  await srv.init();
  const first = await session(srv, { agent: 'a', task: 'one' });
  // With the one slot held by the idle process this would wait forever.
  const r = await srv.call('dispatch', { agent: 'b', task: 'other' }, { ms: 8000 });
  assert.strictEqual(r.value.success, true);
  await session(srv, { agent: 'a', task: 'two', session_id: first.session_id });
  assert.strictEqual(resumed(env).length, 0);
  await srv.close();
});

test('the warm pool starts processes ahead, refills, and serves one conversation each', async (t) => {
  const env = newEnv(t);
  env.setup({ agents: { a: { directory: env.project('a'), warm: 2 } } });
  const srv = serve(env);
  await srv.init();
  await waitUntil(() => liveSpawns(env).length === 2, 15000);
  let s;
  await waitUntil(async () => { s = await stats(srv); return s.warm === 2; }, 15000);
  assert.strictEqual(s.warm, 2, JSON.stringify(s));
  const poolPids = s.processes.map((p) => p.pid).sort();
  assert.deepStrictEqual(liveSpawns(env).map((e) => e.pid).sort(), poolPids);
  // A fresh dispatch takes one: no spawn on its path.
  const r1 = (await srv.call('dispatch', { agent: 'a', task: 'first conversation' })).value;
  assert.strictEqual(r1.success, true, JSON.stringify(r1));
  assert.ok(r1.session_id);
  const pidOf = (sid) => liveSpawns(env).find((e) => e.argv.includes(sid));
  const p1 = pidOf(r1.session_id);
  assert.ok(p1 && poolPids.includes(p1.pid), 'served by a pool process');
  // Refilled to two.
  await waitUntil(() => liveSpawns(env).length === 3, 15000);
  await waitUntil(async () => (await stats(srv)).warm === 2, 15000);
  // A second conversation gets another process, never the first one.
  const r2 = (await srv.call('dispatch', { agent: 'a', task: 'second conversation' })).value;
  assert.strictEqual(r2.success, true);
  assert.notStrictEqual(r2.session_id, r1.session_id);
  const p2 = pidOf(r2.session_id);
  assert.notStrictEqual(p2.pid, p1.pid);
  assert.doesNotMatch(r2.result, /first conversation/);
  // The plain dispatch's process is not kept: it served its one conversation.
  await waitUntil(() => !alive(p1.pid), 5000);
  assert.ok(!alive(p1.pid));
  s = await stats(srv);
  assert.strictEqual(s.totals.warm_taken, 2);
  await srv.close();
  for (const e of liveSpawns(env)) assert.ok(!alive(e.pid), `pid ${e.pid} left`);
});

test('a warm process taken by dispatch_session becomes that session\'s live process', async (t) => {
  const env = newEnv(t);
  env.setup({ agents: { a: { directory: env.project('a'), warm: 1 } } });
  const srv = serve(env);
  await srv.init();
  await waitUntil(async () => (await stats(srv)).warm === 1, 15000);
  const first = await session(srv, { agent: 'a', task: 'hello' });
  const r = await session(srv, { agent: 'a', task: 'again', session_id: first.session_id });
  assert.match(r.result, /hello/);
  assert.strictEqual(resumed(env).length, 0);
  // pool (1) + its replacement (1): the session used no spawn of its own.
  assert.ok(await waitUntil(async () => (await stats(srv)).warm === 1, 15000), 'refilled');
  await waitUntil(() => liveSpawns(env).length >= 2, 15000); // the stub logs once it runs
  await sleep(300);
  const s = await stats(srv);
  assert.strictEqual(s.sessions, 1);
  assert.strictEqual(liveSpawns(env).length, 2);
  await srv.close();
});

test('a pool process that dies idle is replaced with backoff, not in a loop', async (t) => {
  const env = newEnv(t);
  env.setup({ agents: { a: { directory: env.project('a'), warm: 1 } } });
  const srv = serve(env);
  await srv.init();
  await waitUntil(async () => (await stats(srv)).warm === 1, 15000);
  const victim = (await stats(srv)).processes[0].pid;
  // Killed once it runs (the stub logs its start): a crash while idle.
  await waitUntil(() => liveSpawns(env).some((e) => e.pid === victim), 15000);
  process.kill(victim, 'SIGKILL');
  await waitUntil(async () => { const s = await stats(srv); return s.warm === 1 && s.processes[0].pid !== victim; }, 10000);
  const s = await stats(srv);
  assert.strictEqual(s.totals.died, 1);
  await waitUntil(() => liveSpawns(env).length >= 2, 15000); // the stub logs once it runs
  await sleep(1500); // no loop: nothing more is started
  assert.strictEqual(liveSpawns(env).length, 2);
  await srv.close();
});

test('CLI live lists the processes of a running server', async (t) => {
  const env = newEnv(t);
  env.setup({ agents: { a: { directory: env.project('a'), warm: 1 } } });
  const srv = serve(env);
  await srv.init();
  const first = await session(srv, { agent: 'a', task: 'x' });
  await waitUntil(async () => (await stats(srv)).warm === 1, 15000);
  let j;
  await waitUntil(() => {
    const r = env.run(['live', '--json']);
    j = JSON.parse(r.stdout);
    return j.processes === 2;
  }, 5000);
  assert.strictEqual(j.servers.length, 1, JSON.stringify(j));
  assert.strictEqual(j.servers[0].server_pid, srv.child.pid);
  const kinds = j.servers[0].processes.map((p) => p.kind).sort();
  assert.deepStrictEqual(kinds, ['session', 'warm']);
  assert.ok(j.servers[0].processes.some((p) => p.session_id === first.session_id));
  const text = env.run(['live']);
  assert.strictEqual(text.code, 0);
  assert.match(text.stdout, /1 live session\(s\) \(max 4, idle 300 s\), 1 warm/);
  await srv.close();
  const after = JSON.parse(env.run(['live', '--json']).stdout);
  assert.strictEqual(after.processes, 0);
});

test('SIGKILL of the server leaves no live or warm process behind', async (t) => {
  const env = newEnv(t);
  env.setup({ agents: { a: { directory: env.project('a'), warm: 2 } } });
  const srv = serve(env);
  await srv.init();
  await session(srv, { agent: 'a', task: 'x' });
  await waitUntil(async () => (await stats(srv)).warm === 2, 15000);
  await waitUntil(() => liveSpawns(env).length >= 3, 15000); // the stub logs once it runs
  const pids = liveSpawns(env).map((e) => e.pid);
  assert.ok(pids.length >= 3);
  srv.child.kill('SIGKILL');
  await srv.exited;
  await waitUntil(() => pids.every((p) => !alive(p)), 5000);
  assert.deepStrictEqual(pids.filter(alive), []);
});

test('schema: warm and live_sessions are validated and bounded', async (t) => {
  const env = newEnv(t);
  env.setup({ agents: { a: { directory: env.project('a'), warm: 9 } },
    settings: '  live_sessions:\n    max: 65\n    idle_seconds: 0\n' });
  const r = env.run(['list']);
  assert.strictEqual(r.code, 1);
  assert.match(r.stderr, /agents\.a\.warm: must be <= 8/);
  assert.match(r.stderr, /settings\.live_sessions\.max: must be <= 64/);
  assert.match(r.stderr, /settings\.live_sessions\.idle_seconds: must be >= 1/);
  env.setup({ agents: { a: { directory: env.project('a'), warm: -1 } } });
  assert.match(env.run(['list']).stderr, /agents\.a\.warm: must be >= 0/);
});

test('dialogue turns continue on the two agents\' live processes, which end with it', async (t) => {
  const env = newEnv(t);
  env.setup({ agents: { req: true, exp: true } });
  const srv = serve(env);
  await srv.init();
  const v = (await srv.call('dispatch_dialogue', { requester: 'req', responder: 'exp',
    topic: 'endless [stub:reply=still thinking]', max_rounds: 2 })).value;
  assert.ok(v.conversation.length >= 3, JSON.stringify(v));
  assert.strictEqual(liveSpawns(env).length, 2, 'one process per agent');
  assert.strictEqual(resumed(env).length, 0);
  // Nobody can continue a dialogue's sessions: their processes end with it.
  assert.strictEqual((await stats(srv)).sessions, 0);
  assert.ok(await waitUntil(() => liveSpawns(env).every((e) => !alive(e.pid)), 5000));
  await srv.close();
});

test('warm: N added to a running server\'s config starts the pool at its next call', async (t) => {
  const env = newEnv(t);
  const dir = env.project('a');
  env.setup({ agents: { a: dir } });
  const srv = serve(env);
  await srv.init();
  await sleep(700); // past the first pause: the server has looked for pools
  assert.strictEqual((await stats(srv)).warm, 0);
  env.setup({ agents: { a: { directory: dir, warm: 1 } } });
  await srv.call('list_agents'); // any call re-reads agents.yaml
  assert.ok(await waitUntil(async () => (await stats(srv)).warm === 1, 15000), 'pool started');
  env.setup({ agents: { a: dir } });
  await srv.call('list_agents');
  assert.ok(await waitUntil(async () => (await stats(srv)).warm === 0, 15000), 'pool ended');
  await srv.close();
});

test('a turn on a live process times out like any dispatch; the session resumes', async (t) => {
  const env = newEnv(t);
  env.setup({ agents: { a: { directory: env.project('a'), timeout: 2 } } });
  const srv = serve(env);
  await srv.init();
  const first = await session(srv, { agent: 'a', task: 'one' });
  const pid = liveSpawns(env)[0].pid;
  const r = (await srv.call('dispatch_session', { agent: 'a', task: 'two [stub:hang]',
    session_id: first.session_id }, { ms: 20000 })).value;
  assert.strictEqual(r.success, false, JSON.stringify(r));
  assert.strictEqual(r.error_type, 'timeout');
  assert.strictEqual(r.session_id, first.session_id);
  assert.ok(await waitUntil(() => !alive(pid), 5000), 'the timed-out process is gone');
  assert.strictEqual((await stats(srv)).sessions, 0);
  await session(srv, { agent: 'a', task: 'three', session_id: first.session_id });
  assert.strictEqual(resumed(env).length, 1);
  await srv.close();
});
