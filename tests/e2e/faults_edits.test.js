'use strict';
// The fault matrix of docs/reliability.md, continued: concurrent config
// edits from CLI processes and a server at once (a file of its own, so the
// test suite runs it alongside faults.test.js rather than after it).
const { test, describe } = require('node:test');
const assert = require('node:assert');
const { newEnv } = require('./lib');

describe('config edits at once', () => {
  test('1000 concurrent CLI and server edits (add, update, remove): no agent lost, every outcome as reported', { timeout: 300000 }, async (t) => {
    const env = newEnv(t);
    const dir = env.project('p');
    let y = 'agents:\n';
    const ag = (n, d) => `  ${n}:\n    directory: ${JSON.stringify(dir)}\n    description: ${JSON.stringify(d)}\n`;
    for (let i = 0; i < 100; i++) y += ag(`k${i}`, `keep ${i}`);
    for (let i = 0; i < 100; i++) y += ag(`r${i}`, `remove ${i}`);
    for (let i = 0; i < 100; i++) y += ag(`u${i}`, `old ${i}`);
    env.writeConfig(y);
    const wait = { AGENT_DISPATCH_LOCK_WAIT: '30' };
    const srv = env.serve({ env: wait });
    await srv.init();
    const ops = []; // {kind, name, via, done}
    const cli = (kind, name, args) => ops.push({ kind, name, via: 'cli', done: env.start(args, { env: wait }).done });
    const mcp = (kind, name, tool, args) => ops.push({ kind, name, via: 'mcp',
      done: srv.call(tool, args, { ms: 280000 }) });
    for (let i = 0; i < 400; i++) {
      cli('add', `c${i}`, ['add', `c${i}`, dir, '-d', `cli ${i}`]);
      mcp('add', `m${i}`, 'add_agent', { name: `m${i}`, directory: dir, description: `mcp ${i}` });
    }
    for (let i = 0; i < 50; i++) {
      cli('remove', `r${i}`, ['remove', `r${i}`]);
      mcp('remove', `r${i + 50}`, 'remove_agent', { name: `r${i + 50}` });
      cli('update', `u${i}`, ['update', `u${i}`, '-d', `new ${i}`]);
      mcp('update', `u${i + 50}`, 'update_agent', { name: `u${i + 50}`, description: `new ${i + 50}` });
    }
    assert.strictEqual(ops.length, 1000);
    for (const o of ops) o.res = await o.done;
    await srv.close(30000);
    const listed = env.run(['list', '--json']);
    assert.strictEqual(listed.code, 0, listed.stderr);
    const agents = Object.fromEntries(JSON.parse(listed.stdout).map((a) => [a.name, a]));
    for (let i = 0; i < 100; i++) assert.strictEqual(agents[`k${i}`]?.description, `keep ${i}`, `k${i} was lost or changed`);
    let failed = 0;
    for (const o of ops) {
      const ok = o.via === 'cli' ? o.res.code === 0 : !o.res.isError;
      const why = o.via === 'cli' ? o.res.stderr : JSON.stringify(o.res.value);
      if (!ok) {
        failed++;
        assert.match(why, /could not lock/, `${o.kind} ${o.name}: ${why}`);
      }
      const a = agents[o.name];
      if (o.kind === 'add') assert.strictEqual(!!a, ok, `add ${o.name} (${o.via}) ${ok ? 'succeeded' : 'failed'}: ${why}`);
      if (o.kind === 'remove') assert.strictEqual(!a, ok, `remove ${o.name} (${o.via}) ${ok ? 'succeeded' : 'failed'}: ${why}`);
      if (o.kind === 'update') {
        assert.ok(a, `update ${o.name} lost the agent`);
        assert.strictEqual(a.description.startsWith('new'), ok, `update ${o.name} (${o.via}): ${why}`);
      }
    }
    assert.ok(failed < 1000, 'every edit failed');
  });
});
