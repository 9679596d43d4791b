'use strict';
// Cancelling a running live job interrupts its agent first: a child that
// hears the interrupt stops by itself, long before
// settings.interrupt_grace_seconds, and what it left in its process group
// (a tool's background process) goes with it. The grace here is far
// longer than the bound, so a group that is only killed at the end of the
// grace (the interrupt never reached the child) fails the test.
const { test } = require('node:test');
const assert = require('node:assert');
const { newEnv, sleep, alive, groupAlive, waitUntil } = require('../e2e/lib');

test('live: cancelled running jobs with a grandchild stop at the interrupt, well before the grace', async (t) => {
  const env = newEnv(t);
  env.setup({ agents: { a: true },
    settings: '  transport: live\n  interrupt_grace_seconds: 60\n  jobs_outlive_server: false\n' });
  const srv = env.serve();
  await srv.init();
  // Several jobs: the child must hear each interrupt, not most of them.
  const ids = [];
  for (let i = 0; i < 4; i++) {
    const { value } = await srv.call('dispatch_async',
      { agent: 'a', task: `[stub:progress=600][stub:interval=0.1][stub:grandchild=120] long ${i}` });
    ids.push(value.job_id);
  }
  const stubs = [];
  for (let i = 0; i < ids.length; i++) {
    assert.ok(await waitUntil(() => env.dispatches().find((e) => e.prompt.includes(`long ${i}`)), 10000),
      `job ${i} started`);
    stubs.push(env.dispatches().find((e) => e.prompt.includes(`long ${i}`)));
  }
  // Each stub has forked its grandchild (the log line comes after the fork).
  await sleep(500);
  for (const id of ids) {
    const c = (await srv.call('dispatch_cancel', { job_id: id })).value;
    assert.strictEqual(c.outcome, 'cancelled_running', JSON.stringify(c));
  }
  for (const [i, stub] of stubs.entries()) {
    assert.ok(await waitUntil(() => !groupAlive(stub.pgid) && !alive(stub.pid), 20000),
      `job ${i}: its child did not stop at the interrupt (group still alive 20 s after cancel, grace 60 s)`);
  }
  await srv.close();
  await env.assertNoLeftovers();
});
