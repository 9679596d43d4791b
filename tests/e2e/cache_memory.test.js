'use strict';
// The result cache's memory: bounded by its byte budget however many
// large results pass through it, and given back by cache_clear. (A file of
// its own: the longest case of the I/O edge cases, run beside them by
// ctest -j.)
const { test, describe } = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const { newEnv, SANITIZED } = require('./lib');

function serverWithAgent(t, opts = {}) {
  const env = newEnv(t);
  env.setup({ agents: { a: true }, settings: opts.settings || '' });
  const srv = env.serve({ env: opts.env || {} });
  return { env, srv };
}

// Memory figures are only meaningful without a sanitizer: AddressSanitizer
// keeps freed memory in quarantine and never trims its heap, so under it
// the RSS bounds are not asserted (everything else is).

function rssKb(pid) {
  const m = fs.readFileSync(`/proc/${pid}/status`, 'utf8').match(/VmRSS:\s+(\d+) kB/);
  return Number(m[1]);
}

describe('result cache memory', () => {
  // Under the sanitizer, where memory is not measured and each 1 MB result
  // costs several times more, the same eviction is shown on a 16 MiB budget
  // with 40 results, so that this case stays short beside heavy tests.
  const N = SANITIZED ? 40 : 150;
  test(`${N} results of 1 MB: bounded by the byte budget, and cache_clear gives the memory back`, async (t) => {
    const { srv } = serverWithAgent(t, { settings: SANITIZED ? '  cache:\n    max_bytes: 16777216\n' : '' });
    await srv.init();
    // Over twice the budget: the cache fills, then evicts its oldest result
    // for each new one (about 85 times at the default budget).
    for (let i = 0; i < N; i++) {
      // Drop each reply's text as soon as it is checked (the test keeps no 150 MB).
      const r = await srv.call('dispatch', { agent: 'a', task: `task ${i} [stub:huge=1000000]` }, { ms: 30000 });
      assert.strictEqual(r.value.success, true);
      assert.strictEqual(r.value.result.length, 1000000);
      srv.messages.length = 0;
    }
    const stats = (await srv.call('cache_stats')).value;
    assert.deepStrictEqual(Object.keys(stats).sort(),
      ['evictions', 'hit_rate', 'hits', 'max_size', 'misses', 'size', 'ttl']);
    // The default budget is 64 MiB: about 63 of the 1 MB results fit (16 of 16 MiB).
    const [least, most] = SANITIZED ? [12, 17] : [50, 67];
    assert.ok(stats.size >= least && stats.size <= most, `size ${stats.size}`);
    assert.strictEqual(stats.evictions, N - stats.size);
    // The newest result is a hit; the oldest was evicted.
    const hit = await srv.call('dispatch', { agent: 'a', task: `task ${N - 1} [stub:huge=1000000]` }, { ms: 30000 });
    assert.strictEqual(hit.value.cached, true);
    const full = rssKb(srv.child.pid);
    if (!SANITIZED) assert.ok(full < 200 * 1024, `RSS ${full} kB with the cache full`);
    const cleared = (await srv.call('cache_clear')).value;
    assert.strictEqual(cleared.cleared, stats.size);
    const after = rssKb(srv.child.pid);
    if (!SANITIZED) {
      assert.ok(after < 64 * 1024 && after < full - 40 * 1024,
        `RSS ${after} kB after cache_clear (was ${full} kB)`);
    }
    await srv.close();
  });

  test('a result larger than the budget is not cached', async (t) => {
    const { srv } = serverWithAgent(t, { settings: '  cache:\n    max_bytes: 500000\n' });
    await srv.init();
    for (let i = 0; i < 2; i++) {
      const r = await srv.call('dispatch', { agent: 'a', task: 'big [stub:huge=600000]' }, { ms: 30000 });
      assert.strictEqual(r.value.success, true);
      assert.ok(!r.value.cached);
    }
    const small = await srv.call('dispatch', { agent: 'a', task: 'small' });
    const again = await srv.call('dispatch', { agent: 'a', task: 'small' });
    assert.ok(!small.value.cached);
    assert.strictEqual(again.value.cached, true);
    const s = (await srv.call('cache_stats')).value;
    assert.strictEqual(s.size, 1);
    await srv.close();
  });
});
