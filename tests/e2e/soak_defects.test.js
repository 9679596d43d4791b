'use strict';
// Defects the soak (tests/soak/soak.js) found, each forced here as the
// exact interleaving that showed it once under load. The shared
// concurrency slot files (<jobs>/slots/N.lock) are made busy and free
// with the fault injector (tests/faults/inject.c, op "flock"): the first
// AD_FAULT_TIMES non-blocking tries of slot 0 find it taken, as if another
// process held it, and the next one finds it free.
const { test, describe } = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const path = require('node:path');
const { newEnv } = require('./lib');

const INJECT = process.env.AD_FAULT_INJECT
  || path.resolve(__dirname, '../../build/tests/faults/libad_fault_inject.so');

/** Environment making slot 0 look held by another process for the first
 * `times` non-blocking tries (blocking waits never get it). */
function slotBusyEnv(times, log) {
  const asan = process.env.ASAN_OPTIONS ? `${process.env.ASAN_OPTIONS}:` : '';
  return { LD_PRELOAD: INJECT, AD_FAULT_PATH: '0.lock', AD_FAULT_OPS: 'flock',
    AD_FAULT_TIMES: String(times), AD_FAULT_LOG: log,
    ASAN_OPTIONS: `${asan}verify_asan_link_order=0` };
}

describe('shared concurrency slots', () => {
  // The call found every slot file taken, queued for one, started watching
  // for releases and looked once more (a release between the first look
  // and the watch is seen only by that second look). When the second look
  // found a slot, the slot went to the queue's head, which was the calling
  // task itself, still running: the wake-up was dropped, and the task then
  // waited for ever, holding the slot and a count of the limit.
  for (const tool of ['dispatch', 'dispatch_stream']) {
    test(`${tool}: a slot that frees between the first look and the watch is taken; the call replies and the slot is given back`, async (t) => {
      const env = newEnv(t);
      env.setup({ agents: { a: true }, settings: '  max_concurrency: 1\n' });
      const log = path.join(env.root, 'faults.log');
      const srv = env.serve({ env: slotBusyEnv(2, log) });
      await srv.init();
      const first = await srv.call(tool, { agent: 'a', task: 'first [stub:progress=2]' },
        { ms: 20000, meta: { progressToken: 'p1' } }).catch((e) => ({ error: e.message }));
      assert.strictEqual(first.value && first.value.result, 'stub ok: first',
        `no reply to the call that waited for a slot: ${JSON.stringify(first)}`);
      // The interleaving really happened: slot 0 looked taken twice (the
      // fast path and the queued call's first look), then free.
      const faults = fs.readFileSync(log, 'utf8').trim().split('\n');
      assert.deepStrictEqual(faults, ['flock (fd)', 'flock (fd)']);
      // The slot and the count came back: at limit 1 the next calls run.
      for (const task of ['second', 'third']) {
        const r = await srv.call(tool, { agent: 'a', task }, { ms: 20000 }).catch((e) => ({ error: e.message }));
        assert.strictEqual(r.value && r.value.result, `stub ok: ${task}`, JSON.stringify(r));
      }
      await srv.close();
    });
  }

  // The same in a detached job runner, whose loop then had nothing left to
  // wait for: it exited, cancelling the job's worker, and the job was
  // recorded as "Cancelled before execution" though nobody cancelled it.
  test('dispatch_async: a job runner whose slot frees between the first look and the watch runs the job', async (t) => {
    const env = newEnv(t);
    env.setup({ agents: { a: true }, settings: '  max_concurrency: 1\n' });
    const log = path.join(env.root, 'faults.log');
    const srv = env.serve({ env: slotBusyEnv(2, log) });
    await srv.init();
    for (const task of ['first', 'second']) {
      const { value } = await srv.call('dispatch_async', { agent: 'a', task });
      assert.match(value.job_id || '', /^[0-9a-f]{32}$/, JSON.stringify(value));
      const rec = (await srv.call('dispatch_wait', { job_id: value.job_id, timeout_seconds: 15 },
        { ms: 20000 })).value;
      assert.strictEqual(rec.status, 'done', JSON.stringify(rec));
      assert.strictEqual(rec.result.result, `stub ok: ${task}`, JSON.stringify(rec));
      if (rec.server && rec.server.pid > 1) env.extraPids.push(rec.server.pid);
    }
    // Each runner (a process of its own) found slot 0 taken twice, then free.
    const faults = fs.readFileSync(log, 'utf8').trim().split('\n');
    assert.deepStrictEqual(faults, ['flock (fd)', 'flock (fd)', 'flock (fd)', 'flock (fd)']);
    await srv.close();
  });
});
