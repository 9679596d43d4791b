'use strict';
// Commands that start a child: shutdown signals stop the whole group,
// `dispatch` from the shell, signs of life while waiting, and the `run`
// board, its --json stdout and its script errors.
const { test } = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const path = require('node:path');
const { newEnv, sleep, waitUntil, alive } = require('./lib');

for (const [cmd, extra] of [['test', []], ['test', ['--stream']]]) {
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
    test(`${sig} on '${cmd} ${extra.join(' ')}' stops the child and its group, exits 128+signal number`, async (t) => {
      const env = newEnv(t);
      env.setup({ agents: { a: true } });
      const { child, done } = env.start([cmd, 'a', 'wait [stub:hang] [stub:grandchild=30]', ...extra]);
      assert.ok(await waitUntil(() => env.dispatches().length === 1 && env.grandchildPid(), 5000),
        'the stub did not start');
      const stub = env.dispatches()[0];
      const gc = env.grandchildPid();
      child.kill(sig);
      const r = await Promise.race([done, sleep(5000).then(() => null)]);
      assert.ok(r, `${cmd} did not exit within 5 s of ${sig}`);
      const want = { SIGINT: 130, SIGTERM: 143, SIGHUP: 129 }[sig];
      assert.strictEqual(r.code, want, `exit ${r.code} ${r.signal} ${r.stderr}`);
      assert.ok(await waitUntil(() => !alive(stub.pid) && !alive(gc), 2000), 'child or grandchild survived');
    });
  }
}
