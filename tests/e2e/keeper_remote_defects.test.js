'use strict';
// A remote agent's handed-off call read to its end by the keeper's job
// runner after its server stopped: its output is interpreted as the
// server does (ad.domain.remote.failure), so a connection lost there is
// an ssh failure, not a generic CLI error. The private sshd of
// tests/e2e/sshd.js logs in an unprivileged user with the stub claude.
const { test } = require('node:test');
const assert = require('node:assert');
const { spawnSync } = require('node:child_process');
const { sleep, waitUntil } = require('./lib');
const { remoteSuite } = require('./remote_env');

let sshd;
const remoteEnv = remoteSuite((s) => { sshd = s; });

// The remote user's sshd session processes (the far end of every connection).
function remoteSessions() {
  const r = spawnSync('ps', ['-o', 'pid=,comm=', '-u', String(sshd.user.uid)], { encoding: 'utf8' });
  return (r.stdout || '').split('\n').map((l) => l.trim().split(/\s+/))
    .filter((f) => f[1] && /^sshd/.test(f[1])).map((f) => Number(f[0]));
}

for (const transport of ['oneshot', 'live']) {
  test(`a handed-off remote call whose connection is lost after its server stopped ends as an ssh failure (transport ${transport})`,
    async (t) => {
      const dir = sshd.project(`cut-${transport}`);
      const env = remoteEnv(t, { agents: { r: { host: 'buildbox', directory: dir } },
        settings: `  transport: ${transport}\n` });
      const srv = env.serve();
      await srv.init();
      const { value } = await srv.call('dispatch', { agent: 'r', task: '[stub:hang] cut off there',
        handoff_after_seconds: 1 });
      assert.strictEqual(value.status, 'running', JSON.stringify(value));
      srv.child.kill('SIGKILL');
      await srv.exited;
      await sleep(300);
      assert.ok(sshd.processes().some((l) => /claude/.test(l)), 'the remote claude runs on');
      const sessions = remoteSessions();
      assert.ok(sessions.length > 0, 'a remote session process');
      for (const pid of sessions) { try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ } }
      const srv2 = env.serve();
      await srv2.init();
      const w = await srv2.call('dispatch_wait', { job_id: value.job_id, timeout_seconds: 20 }, { ms: 25000 });
      assert.strictEqual(w.value.status, 'failed', JSON.stringify(w.value));
      assert.strictEqual(w.value.result.success, false, JSON.stringify(w.value));
      assert.strictEqual(w.value.result.error_type, 'remote', JSON.stringify(w.value));
      // (what the server says of the same loss: ssh's text, or its exit status)
      assert.match(w.value.result.error, /^ssh to buildbox failed: /, JSON.stringify(w.value));
      await srv2.close();
      assert.ok(await waitUntil(() => sshd.processes().length === 0, 8000),
        `remote leftovers: ${sshd.processes().join('; ')}`);
      await env.assertNoLeftovers();
    });
}
