'use strict';
// A call handed off to a job outlives the MCP server that took it: the
// server's keeper (a process of its own session, the parent of the
// server's sync children) takes the job over when the server is stopped
// the way Claude Code stops it (SIGINT, SIGTERM 100 ms later, SIGKILL at
// 500 ms) and writes its progress and result; a later server waits on
// it, lists it and cancels it. Calls not handed off still end with the
// server, and nothing is ever left running. Helpers: tests/e2e/lib.js.
//
// A call that must still be running when the test looks is held by a gate
// the stub waits for ([stub:until_file]), not by a duration: under the
// sanitizer beside heavy tests a machine can be several times slower than
// alone, and a fixed sleep either ends too early there or wastes time
// everywhere. The deadlines of waits are generous for the same reason; they
// cost nothing where things go fast.
const { test, describe } = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const { newEnv, alive, groupAlive, waitUntil, readRec, recUntil, stopLikeClaudeCode, gate } = require('./lib');

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function ppid(pid) {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
  } catch { return null; }
}

function argAfter(e, flag) {
  const i = e.argv.indexOf(flag);
  return i >= 0 ? e.argv[i + 1] : undefined;
}

async function start(t, settings = '') {
  const env = newEnv(t);
  env.setup({ agents: { a: true }, settings });
  const srv = env.serve();
  await srv.init();
  return { env, srv };
}

// The first child's entry in the stub's log: a loaded machine may answer
// the hand-off before the child has written it.
async function firstChild(env) {
  assert.ok(await waitUntil(() => env.dispatches().length >= 1, 15000), 'a child was spawned');
  return env.dispatches()[0];
}

async function handOff(srv, task, tool = 'dispatch') {
  const { value } = await srv.call(tool, { agent: 'a', task, handoff_after_seconds: 1 });
  assert.strictEqual(value.status, 'running', JSON.stringify(value));
  return value.job_id;
}

describe('handed-off calls and the keeper', () => {
  test('a handed-off call survives Claude Code\'s stop of its server; a later server gets its answer',
    async (t) => {
      const { env, srv } = await start(t);
      const g = gate(env.root);
      const id = await handOff(srv, `[stub:until_file=${g.path}][stub:reply=kept answer] long one`);
      const handedOff = Date.now();
      const e = await firstChild(env);
      const keeper = ppid(e.pid);
      assert.ok(keeper && keeper !== srv.child.pid, 'the child\'s parent is the keeper, not the server');
      await stopLikeClaudeCode(srv);
      assert.ok(alive(e.pid), 'the child still runs after the server was killed');
      // The keeper runs the job on; its command line (readable by any user)
      // carries only numbers, as a detached job runner's carries only its id.
      let cmd = [];
      await waitUntil(() => {
        cmd = fs.readFileSync(`/proc/${keeper}/cmdline`, 'latin1').split('\0').filter(Boolean);
        return cmd[1] === '__keeper-run';
      }, 15000);
      assert.strictEqual(cmd[1], '__keeper-run', cmd.join(' '));
      assert.ok(cmd.slice(2).every((a) => /^-?\d+$/.test(a)), cmd.join(' '));
      const running = readRec(env, id);
      assert.strictEqual(running.status, 'running', JSON.stringify(running));
      const srv2 = env.serve();
      await srv2.init();
      const st = await srv2.call('dispatch_status', { job_id: id });
      assert.strictEqual(st.value.status, 'running');
      const list = await srv2.call('dispatch_jobs', {});
      assert.ok(list.value.some((j) => j.id === id && j.status === 'running'), JSON.stringify(list.value));
      const held = Date.now() - handedOff;
      g.open();
      const w = await srv2.call('dispatch_wait', { job_id: id, timeout_seconds: 30 }, { ms: 35000 });
      assert.strictEqual(w.value.status, 'done', JSON.stringify(w.value));
      assert.strictEqual(w.value.result.success, true);
      assert.strictEqual(w.value.result.result, 'kept answer');
      assert.strictEqual(w.value.result.session_id, argAfter(e, '--session-id'), 'session id kept');
      assert.strictEqual(env.dispatches().length, 1, 'one spawn');
      // The call's span, handed off, is ended by the keeper with the result.
      const tr = await srv2.call('dispatch_trace', { job_id: id });
      assert.strictEqual(tr.value.spans.length, 1, tr.text);
      assert.strictEqual(tr.value.spans[0].kind, 'handoff');
      assert.strictEqual(tr.value.spans[0].status, 'ok', tr.text);
      assert.ok(tr.value.spans[0].duration_ms >= held, `${held} ms held: ${tr.text}`);
      await srv2.close();
      assert.ok(await waitUntil(() => !alive(keeper), 15000), 'the keeper exits when its work is done');
      await env.assertNoLeftovers();
    });

  test('dispatch_stream: the keeper writes the progress tail on, then the result', async (t) => {
    const { env, srv } = await start(t);
    // Every progress line comes after the release, so after the stop: only
    // the keeper can have written them.
    const g = gate(env.root);
    const id = await handOff(srv,
      `[stub:until_file=${g.path}][stub:progress=8][stub:interval=0.05][stub:reply=streamed] watched`,
      'dispatch_stream');
    const e = await firstChild(env);
    await stopLikeClaudeCode(srv);
    const before = (readRec(env, id).progress || []).join('\n');
    assert.doesNotMatch(before, /progress \d/, 'no progress before the release');
    g.open();
    const srv2 = env.serve();
    await srv2.init();
    const w = await srv2.call('dispatch_wait', { job_id: id, timeout_seconds: 60 }, { ms: 65000 });
    assert.strictEqual(w.value.status, 'done', JSON.stringify(w.value));
    assert.strictEqual(w.value.result.result, 'streamed');
    assert.strictEqual(w.value.result.session_id, argAfter(e, '--session-id'));
    assert.match(w.value.progress.join('\n'), /progress 8\/8/, JSON.stringify(w.value.progress));
    await srv2.close();
    await env.assertNoLeftovers();
  });

  test('the keeper applies the output cap of the server: a 20 MB result is refused, naming the limit', async (t) => {
    const { env, srv } = await start(t);
    const g = gate(env.root);
    const ids = [];
    for (const tool of ['dispatch', 'dispatch_stream']) {
      ids.push(await handOff(srv, `[stub:until_file=${g.path}][stub:huge=20000000] ${tool} flood`, tool));
    }
    await stopLikeClaudeCode(srv);
    g.open();
    const srv2 = env.serve();
    await srv2.init();
    for (const id of ids) {
      const w = await srv2.call('dispatch_wait', { job_id: id, timeout_seconds: 60 }, { ms: 65000 });
      assert.strictEqual(w.value.status, 'failed', JSON.stringify(w.value).slice(0, 300));
      assert.match(w.value.error, /more than 8388608 bytes/, w.value.error.slice(0, 300));
      assert.ok(JSON.stringify(w.value).length < 64 * 1024, 'the record carries the output');
    }
    await srv2.close();
    await env.assertNoLeftovers();
  });

  test('the result was read by the server when it was stopped: the server records it, the child ends on its own',
    async (t) => {
      const { env, srv } = await start(t);
      const ids = [];
      const g = gate(env.root);
      for (const tool of ['dispatch', 'dispatch_stream']) {
        ids.push(await handOff(srv, `[stub:until_file=${g.path}][stub:reply=read by ${tool}]` +
          `[stub:mark_file=${g.mark(tool)}][stub:linger=6] lingering`, tool));
      }
      // Both children have written their result and linger before exiting;
      // the server reads a line as soon as it is written.
      g.open();
      assert.ok(await waitUntil(() => g.marked('dispatch') && g.marked('dispatch_stream'), 30000), 'results written');
      await sleep(300);
      const spawned = env.dispatches();
      await stopLikeClaudeCode(srv);
      for (const [i, tool] of ['dispatch', 'dispatch_stream'].entries()) {
        // (A server starved past its stop leaves the line to the keeper,
        // which records the same: the record is waited for, not read once.)
        let rec;
        await waitUntil(() => (rec = readRec(env, ids[i])).status !== 'running', 15000);
        assert.strictEqual(rec.status, 'done', JSON.stringify(rec));
        assert.strictEqual(rec.result.result, `read by ${tool}`);
        // (Matched by prompt: under load the second child may log first.)
        const child = spawned.find((e) => (e.prompt || '').includes(`reply=read by ${tool}]`));
        assert.strictEqual(rec.result.session_id, argAfter(child, '--session-id'));
      }
      assert.ok(spawned.every((e) => alive(e.pid)), 'the children were not killed');
      assert.ok(await waitUntil(() => spawned.every((e) => !alive(e.pid)), 30000), 'they exit on their own');
      assert.strictEqual(env.dispatches().length, 2);
      await env.assertNoLeftovers();
    });

  test('the result was read by a server then killed outright (SIGKILL alone): the keeper records it', async (t) => {
    const { env, srv } = await start(t);
    const ids = [];
    const g = gate(env.root);
    for (const tool of ['dispatch', 'dispatch_stream']) {
      ids.push(await handOff(srv, `[stub:until_file=${g.path}][stub:reply=kept by ${tool}]` +
        `[stub:mark_file=${g.mark(tool)}][stub:linger=4] lingering`, tool));
    }
    g.open();
    assert.ok(await waitUntil(() => g.marked('dispatch') && g.marked('dispatch_stream'), 30000), 'results written');
    // The server reads each line as it is written (and keeps a result
    // line in the record at once): waited for where the record shows it.
    await waitUntil(() => ids.every((id) => {
      try { return fs.readFileSync(`${env.jobs}/${id}.json`, 'utf8').includes('kept by'); } catch { return false; }
    }), 3000);
    await sleep(300);
    srv.child.kill('SIGKILL');
    await srv.exited;
    for (const [i, tool] of ['dispatch', 'dispatch_stream'].entries()) {
      let rec;
      await waitUntil(() => (rec = readRec(env, ids[i])).status !== 'running', 30000);
      assert.strictEqual(rec.status, 'done', JSON.stringify(rec));
      assert.strictEqual(rec.result.result, `kept by ${tool}`);
      assert.ok(!('result_read' in rec), 'the kept line goes with the job\'s end');
    }
    await env.assertNoLeftovers();
  });

  test('a handed-off job that ends while its server runs leaves the keeper holding none of its pipes', async (t) => {
    const { env, srv } = await start(t);
    const g = gate(env.root);
    const id = await handOff(srv, `[stub:until_file=${g.path}] short one`);
    const e = await firstChild(env);
    const keeper = ppid(e.pid);
    g.open();
    const w = await srv.call('dispatch_wait', { job_id: id, timeout_seconds: 60 }, { ms: 65000 });
    assert.strictEqual(w.value.status, 'done');
    const pipesOf = (pid) => fs.readdirSync(`/proc/${pid}/fd`)
      .map((f) => { try { return fs.readlinkSync(`/proc/${pid}/fd/${f}`); } catch { return ''; } })
      .filter((l) => l.startsWith('pipe:'));
    // Not even what the server inherited from the test's environment.
    const pipes = () => pipesOf(keeper);
    assert.ok(await waitUntil(() => pipes().length === 0, 15000), `the keeper still holds ${pipes()}`);
    await srv.close();
  });

  test('a call not handed off still ends with its server: no orphan, the keeper exits too', async (t) => {
    const { env, srv } = await start(t);
    const call = srv.call('dispatch', { agent: 'a', task: '[stub:hang] in flight',
      handoff_after_seconds: 60 }, { ms: 2000 }).catch(() => null);
    const e = await firstChild(env);
    const keeper = ppid(e.pid);
    assert.ok(keeper && keeper !== srv.child.pid, 'the child\'s parent is the keeper');
    await stopLikeClaudeCode(srv);
    await call;
    assert.ok(await waitUntil(() => !alive(e.pid) && !groupAlive(e.pgid), 15000), 'the child group is gone');
    assert.ok(await waitUntil(() => !alive(keeper), 15000), 'the keeper is gone');
  });

  test('the keeper killed with SIGKILL takes its children along and the job settles failed', async (t) => {
    const { env, srv } = await start(t);
    const id = await handOff(srv, '[stub:hang] kept until killed');
    const e = await firstChild(env);
    const keeper = ppid(e.pid);
    assert.ok(keeper && keeper !== srv.child.pid);
    process.kill(keeper, 'SIGKILL');
    assert.ok(await waitUntil(() => !alive(e.pid) && !groupAlive(e.pgid), 15000), 'the child is gone');
    const w = await srv.call('dispatch_wait', { job_id: id, timeout_seconds: 30 }, { ms: 35000 });
    assert.strictEqual(w.value.status, 'failed', JSON.stringify(w.value));
    assert.match(w.value.error, /killed|keeper/i);
    // The server still works: a new dispatch gets a new keeper.
    const r = await srv.call('dispatch', { agent: 'a', task: 'after the keeper died', handoff_after_seconds: 5 });
    assert.strictEqual(r.value.success, true, JSON.stringify(r.value));
    await srv.close();
    await env.assertNoLeftovers();
  });

  test('the keeper killed after the server is gone: no orphan, a later server settles the job failed',
    async (t) => {
      const { env, srv } = await start(t);
      // (a grandchild in the child's group outlives the child's
      // parent-death signal: whoever settles the job ends it)
      const id = await handOff(srv, '[stub:hang] [stub:grandchild=120] orphaned keeper');
      const e = await firstChild(env);
      const keeper = ppid(e.pid);
      await stopLikeClaudeCode(srv);
      assert.ok(alive(e.pid) && alive(keeper));
      assert.ok(await waitUntil(() => env.grandchildPid(), 5000), 'no grandchild');
      process.kill(keeper, 'SIGKILL');
      assert.ok(await waitUntil(() => !alive(e.pid), 15000), 'the child is gone');
      const srv2 = env.serve();
      await srv2.init();
      const w = await srv2.call('dispatch_wait', { job_id: id, timeout_seconds: 30 }, { ms: 35000 });
      assert.strictEqual(w.value.status, 'failed', JSON.stringify(w.value));
      assert.match(w.value.error, /stopped|exited/);
      assert.ok(await waitUntil(() => !groupAlive(e.pgid), 5000),
        `the child's group outlived the settled job (grandchild ${env.grandchildPid()})`);
      await srv2.close();
      await env.assertNoLeftovers();
    });

  test('a later server cancels a keeper-owned job: its group is killed, the keeper exits', async (t) => {
    const { env, srv } = await start(t);
    const id = await handOff(srv, '[stub:hang] to be cancelled');
    const e = await firstChild(env);
    const keeper = ppid(e.pid);
    await stopLikeClaudeCode(srv);
    assert.ok(alive(e.pid));
    const srv2 = env.serve();
    await srv2.init();
    const c = await srv2.call('dispatch_cancel', { job_id: id });
    assert.strictEqual(c.value.outcome, 'cancelled_running', JSON.stringify(c.value));
    assert.ok(await waitUntil(() => !alive(e.pid) && !groupAlive(e.pgid), 15000), 'the group is gone');
    assert.ok(await waitUntil(() => !alive(keeper), 15000), 'the keeper exits');
    assert.strictEqual(readRec(env, id).status, 'cancelled');
    await srv2.close();
    await env.assertNoLeftovers();
  });

  test('the concurrency limit holds across servers: a keeper-owned child keeps its slot', async (t) => {
    const { env, srv } = await start(t, '  max_concurrency: 1\n');
    const id = await handOff(srv, '[stub:hang] holds the only slot');
    await stopLikeClaudeCode(srv);
    const srv2 = env.serve();
    await srv2.init();
    const second = srv2.call('dispatch', { agent: 'a', task: 'waits for the slot', handoff_after_seconds: 60 },
      { ms: 30000 });
    await sleep(1500);
    assert.strictEqual(env.dispatches().length, 1, 'no second child while the kept one runs');
    const c = await srv2.call('dispatch_cancel', { job_id: id });
    assert.strictEqual(c.value.outcome, 'cancelled_running', JSON.stringify(c.value));
    const r = await second;
    assert.strictEqual(r.value.success, true, JSON.stringify(r.value));
    assert.strictEqual(env.dispatches().length, 2);
    await srv2.close();
    await env.assertNoLeftovers();
  });

  test('a call handed off while it waits for a slot, started later, still outlives the server', async (t) => {
    // The hand-off finds no child yet; the keeper must learn of the child
    // when it is spawned, or the server's stop kills a job it announced.
    const { env, srv } = await start(t, '  max_concurrency: 1\n');
    const first = gate(env.root);
    const later = gate(env.root);
    const holder = srv.call('dispatch', { agent: 'a', task: `[stub:until_file=${first.path}] holds the slot` },
      { ms: 60000 });
    assert.ok(await waitUntil(() => env.dispatches().length === 1, 15000), 'the first child runs');
    const id = await handOff(srv, `[stub:until_file=${later.path}][stub:reply=queued then kept] queued`);
    assert.strictEqual(env.dispatches().length, 1, 'the second waits for the slot');
    first.open();
    assert.strictEqual((await holder).value.success, true);
    assert.ok(await waitUntil(() => env.dispatches().length === 2, 15000), 'the queued child starts');
    assert.ok(await waitUntil(() => (readRec(env, id) || {}).status === 'running', 15000), 'the job names its child');
    const e = env.dispatches()[1];
    assert.notStrictEqual(ppid(e.pid), srv.child.pid, 'the child is the keeper\'s');
    await stopLikeClaudeCode(srv);
    assert.ok(alive(e.pid), 'the child still runs after the server was killed');
    later.open();
    const srv2 = env.serve();
    await srv2.init();
    const w = await srv2.call('dispatch_wait', { job_id: id, timeout_seconds: 30 }, { ms: 35000 });
    assert.strictEqual(w.value.status, 'done', JSON.stringify(w.value));
    assert.strictEqual(w.value.result.result, 'queued then kept');
    await srv2.close();
    await env.assertNoLeftovers();
  });

  test('a handed-off call still waiting for a slot when the server stops goes on in a job runner, in its tree',
    async (t) => {
      const { env, srv } = await start(t, '  max_concurrency: 1\n');
      const first = gate(env.root);
      srv.call('dispatch', { agent: 'a', task: `[stub:until_file=${first.path}] holds the slot` },
        { ms: 60000 }).catch(() => {});
      assert.ok(await waitUntil(() => env.dispatches().length === 1, 15000), 'the first child runs');
      const id = await handOff(srv, '[stub:reply=ran after all] queued');
      await stopLikeClaudeCode(srv);
      // (the first call's child ends with the server unless handed off
      // meanwhile: the slot may come free at once)
      const rec = readRec(env, id);
      assert.ok(['pending', 'running', 'done'].includes(rec.status), JSON.stringify(rec));
      assert.ok(rec.server && rec.server.pid !== srv.child.pid, `owned by a runner: ${JSON.stringify(rec.server)}`);
      env.extraPids.push(rec.server.pid);
      first.open();
      const done = await recUntil(env, id, (r) => r.status === 'done' || r.status === 'failed', 20000);
      assert.strictEqual(done.status, 'done', JSON.stringify(done));
      assert.strictEqual(done.result.result, 'ran after all');
      // Its span is in the call's tree: the runner's ends it.
      const tr = env.run(['trace', id, '--json']);
      assert.strictEqual(tr.code, 0, tr.stderr);
      assert.match(tr.stdout, /"job_id":\s*"[0-9a-f]{32}"/);
      await env.assertNoLeftovers();
    });

  test('with jobs_outlive_server: false, a handed-off call still waiting for a slot when the server stops fails saying it never started',
    async (t) => {
      const { env, srv } = await start(t, '  max_concurrency: 1\n  jobs_outlive_server: false\n');
      const first = gate(env.root);
      srv.call('dispatch', { agent: 'a', task: `[stub:until_file=${first.path}] holds the slot` },
        { ms: 60000 }).catch(() => {});
      assert.ok(await waitUntil(() => env.dispatches().length === 1, 15000), 'the first child runs');
      const id = await handOff(srv, '[stub:reply=never] queued');
      await stopLikeClaudeCode(srv);
      const rec = readRec(env, id);
      assert.strictEqual(rec.status, 'failed', JSON.stringify(rec));
      assert.match(rec.error, /waited to start.*never started/);
      assert.strictEqual(env.dispatches().length, 1, 'the queued one never ran');
      first.open();
      await env.assertNoLeftovers();
    });

  test('a session turn the keeper runs after its server stopped: the next server\'s turn of it waits for it', async (t) => {
    const { env, srv } = await start(t);
    const first = await srv.call('dispatch_session', { agent: 'a', task: 'turn-1' });
    const sid = first.value.session_id;
    const g = gate(env.root);
    const { value } = await srv.call('dispatch_session', { agent: 'a', session_id: sid,
      task: `[stub:until_file=${g.path}][stub:reply=turn two] turn-2`, handoff_after_seconds: 1 });
    assert.strictEqual(value.status, 'running', JSON.stringify(value));
    await stopLikeClaudeCode(srv);
    const srv2 = env.serve();
    await srv2.init();
    const third = srv2.call('dispatch_session', { agent: 'a', session_id: sid, task: 'turn-3' }, { ms: 60000 });
    const onSession = () => env.dispatches().filter((e) => e.argv.includes(sid) && alive(e.pid));
    await sleep(1500);
    assert.strictEqual(onSession().length, 1, `two processes on session ${sid}`);
    g.open();
    const r = await third;
    assert.strictEqual(r.value.success, true, JSON.stringify(r.value));
    const w = await srv2.call('dispatch_wait', { job_id: value.job_id, timeout_seconds: 30 }, { ms: 35000 });
    assert.strictEqual(w.value.status, 'done', JSON.stringify(w.value));
    assert.match(w.value.result.result, /turn-2/);
    await srv2.close();
    await env.assertNoLeftovers();
  });

  test('with jobs_outlive_server off there is no keeper: the child is the server\'s', async (t) => {
    const { env, srv } = await start(t, '  jobs_outlive_server: false\n');
    const id = await handOff(srv, '[stub:sleep=2] no keeper');
    const e = await firstChild(env);
    assert.strictEqual(ppid(e.pid), srv.child.pid);
    const w = await srv.call('dispatch_wait', { job_id: id, timeout_seconds: 20 }, { ms: 25000 });
    assert.strictEqual(w.value.status, 'done');
    await srv.close();
  });
});
