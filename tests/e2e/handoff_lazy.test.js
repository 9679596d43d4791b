'use strict';
// The hand-off of a sync dispatch is armed as a deadline on the call's own
// task (ad.domain.handoff): once the call has been answered with its job,
// a notifications/cancelled for its id no longer reaches the job's child,
// the call is not answered a second time when the job ends, and
// dispatch_wait gets the same child's answer. Helpers: tests/e2e/lib.js.
const { test, describe } = require('node:test');
const assert = require('node:assert');
const { newEnv, alive } = require('./lib');

describe('lazy hand-off', () => {
  test('a cancel for a call already handed off leaves its job running', async (t) => {
    const env = newEnv(t);
    env.setup({ agents: { a: true } });
    const srv = env.serve();
    await srv.init();
    const { value } = await srv.call('dispatch', { agent: 'a',
      task: '[stub:sleep=3][stub:reply=still here] slow', handoff_after_seconds: 1 }, { id: 501 });
    assert.strictEqual(value.status, 'running', JSON.stringify(value));
    const [e] = env.dispatches();
    srv.send({ jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: 501 } });
    const quick = await srv.call('dispatch', { agent: 'a', task: 'quick one' });
    assert.strictEqual(quick.value.success, true, JSON.stringify(quick.value));
    assert.ok(alive(e.pid), 'the handed-off child still runs');
    const w = await srv.call('dispatch_wait', { job_id: value.job_id, timeout_seconds: 30 }, { ms: 35000 });
    assert.strictEqual(w.value.status, 'done', JSON.stringify(w.value));
    assert.strictEqual(w.value.result.result, 'still here');
    assert.strictEqual(srv.responsesTo(501).length, 1, 'the call was answered once');
    await srv.close();
  });
});
