'use strict';
// A remote agent's call handed off to a job outlives the server: its local
// ssh is the keeper's child, and the keeper holds ssh's input (whose end
// tells the far side to end everything) while the job runs. A remote call
// not handed off still ends with the server, there and here. The private
// sshd of tests/e2e/sshd.js logs in an unprivileged user with the stub
// claude on its PATH. A call that must be running when the test looks is
// held by a gate the stub waits for, and waits have generous deadlines:
// the sanitized build beside heavy tests can be several times slower than
// alone (tests/e2e/handoff_keeper.test.js says more).
const { test, describe } = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const { alive, waitUntil, stopLikeClaudeCode, gate } = require('./lib');
const { remoteSuite } = require('./remote_env');

let sshd;
const remoteEnv = remoteSuite((s) => { sshd = s; });

function ppid(pid) {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
  } catch { return null; }
}

// The local children of pid (their pids).
function childrenOf(pid) {
  const out = [];
  for (const n of fs.readdirSync('/proc')) {
    if (/^\d+$/.test(n) && ppid(Number(n)) === pid) out.push(Number(n));
  }
  return out;
}

// The local ssh of the dispatch whose remote directory is dir.
function localSsh(dir) {
  for (const n of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(n)) continue;
    let cmd = '';
    try { cmd = fs.readFileSync(`/proc/${n}/cmdline`, 'latin1'); } catch { continue; }
    if (cmd.includes('BatchMode=yes') && cmd.includes(dir)) return Number(n);
  }
  return null;
}

async function assertNoRemoteLeftovers(what) {
  const left = await sshd.leftovers(30000);
  assert.deepStrictEqual(left, [], `${what}: processes left on the remote side: ${left.join('; ')}`);
}

const remoteClaude = () => sshd.processes().some((l) => /claude/.test(l));

for (const transport of ['oneshot', 'live']) {
  describe(`remote calls and the keeper (transport ${transport})`, () => {
    const settings = `  transport: ${transport}\n`;

    test('a handed-off remote call survives Claude Code\'s stop of its server; a later server gets its answer',
      async (t) => {
        const dir = sshd.project(`kept-${transport}`);
        const env = remoteEnv(t, { agents: { r: { host: 'buildbox', directory: dir } }, settings });
        const srv = env.serve();
        await srv.init();
        const g = gate(dir);
        const { value } = await srv.call('dispatch', { agent: 'r',
          task: `[stub:until_file=${g.path}] long remote work ${transport}`, handoff_after_seconds: 1 });
        assert.strictEqual(value.status, 'running', JSON.stringify(value));
        const id = value.job_id;
        await stopLikeClaudeCode(srv);
        assert.ok(await waitUntil(() => remoteClaude() &&
          sshd.stubLog().some((e) => e.prompt.includes(`long remote work ${transport}`)), 30000),
          'the remote claude runs after the server was killed: ' + sshd.processes().join('; '));
        g.open();
        const srv2 = env.serve();
        await srv2.init();
        const w = await srv2.call('dispatch_wait', { job_id: id, timeout_seconds: 60 }, { ms: 65000 });
        assert.strictEqual(w.value.status, 'done', JSON.stringify(w.value));
        assert.strictEqual(w.value.result.success, true, JSON.stringify(w.value));
        assert.match(w.value.result.result, new RegExp(`long remote work ${transport}`));
        assert.strictEqual(sshd.stubLog().filter((e) => e.prompt.includes(`long remote work ${transport}`)).length, 1,
          'one remote run');
        await srv2.close();
        await assertNoRemoteLeftovers('after the handed-off remote call');
        await env.assertNoLeftovers();
      });

    test('the keeper killed after the server is gone: nothing left there, a later server settles the job failed',
      async (t) => {
        const dir = sshd.project(`killed-${transport}`);
        const env = remoteEnv(t, { agents: { r: { host: 'buildbox', directory: dir } }, settings });
        const srv = env.serve();
        await srv.init();
        const { value } = await srv.call('dispatch', { agent: 'r', task: '[stub:hang] kept until killed',
          handoff_after_seconds: 1 });
        assert.strictEqual(value.status, 'running', JSON.stringify(value));
        const ssh = localSsh(dir);
        assert.ok(ssh, 'the local ssh runs');
        const keeper = ppid(ssh);
        assert.ok(keeper && keeper !== srv.child.pid, 'the keeper is the parent of ssh');
        await stopLikeClaudeCode(srv);
        assert.ok(await waitUntil(remoteClaude, 30000), 'the remote claude runs on');
        process.kill(keeper, 'SIGKILL');
        await assertNoRemoteLeftovers('after the keeper was killed');
        assert.ok(await waitUntil(() => !alive(ssh), 15000), 'the local ssh is gone');
        const srv2 = env.serve();
        await srv2.init();
        const w = await srv2.call('dispatch_wait', { job_id: value.job_id, timeout_seconds: 30 }, { ms: 35000 });
        assert.strictEqual(w.value.status, 'failed', JSON.stringify(w.value));
        assert.match(w.value.error, /stopped|exited/);
        await srv2.close();
        await env.assertNoLeftovers();
      });

    test('a remote call not handed off ends with the server: nothing left there or here', async (t) => {
      const dir = sshd.project(`unkept-${transport}`);
      const env = remoteEnv(t, { agents: { r: { host: 'buildbox', directory: dir } }, settings });
      const srv = env.serve();
      await srv.init();
      srv.send({ jsonrpc: '2.0', id: 9, method: 'tools/call',
        params: { name: 'dispatch', arguments: { agent: 'r', task: 'long [stub:hang]' } } });
      assert.ok(await waitUntil(remoteClaude, 30000), 'started there');
      const locals = childrenOf(srv.child.pid);
      await stopLikeClaudeCode(srv);
      await assertNoRemoteLeftovers('after the stop');
      assert.ok(await waitUntil(() => locals.every((p) => !alive(p)), 15000), 'no local child left');
      await env.assertNoLeftovers();
    });
  });
}
