'use strict';
// A server's view of agents.yaml while it runs: what a change of an agent
// (through the server, the CLI or an editor) or of the directory its
// symlink points to does to the calls that follow, the cache included.
const { test } = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const path = require('node:path');
const { newEnv, sleep } = require('./lib');

test('an answer made under an agent\'s old config is never served from the cache after the change', async (t) => {
  const env = newEnv(t);
  env.setup({ agents: { a: { model: 'm-one' } }, settings: '  transport: oneshot\n' });
  const srv = env.serve();
  await srv.init();
  const task = 'hello [stub:echo_argv][stub:sleep=1.5]';
  const running = srv.call('dispatch', { agent: 'a', task });
  await sleep(500);
  await srv.call('update_agent', { name: 'a', model: 'm-two' });
  await srv.call('list_agents', {}); // the server has read the new file
  const old = (await running).value;
  assert.match(old.result, /--model m-one/, old.result);
  const next = (await srv.call('dispatch', { agent: 'a', task })).value;
  assert.notStrictEqual(next.cached, true, 'the answer of the old config came from the cache');
  assert.match(next.result, /--model m-two/, next.result);
  // An unchanged agent keeps its cached answers.
  const again = (await srv.call('dispatch', { agent: 'a', task })).value;
  assert.strictEqual(again.cached, true, JSON.stringify(again));
  await srv.close();
});

test('an agent directory given as a symlink follows the link when it is re-pointed, agents.yaml untouched', async (t) => {
  const env = newEnv(t);
  const r1 = env.project('release1'), r2 = env.project('release2');
  const link = path.join(env.root, 'current');
  fs.symlinkSync(r1, link);
  env.setup({ agents: { a: { directory: link } }, settings: '  transport: oneshot\n' });
  const srv = env.serve();
  await srv.init();
  const task = 'where [stub:sh=pwd]';
  const before = (await srv.call('dispatch', { agent: 'a', task })).value;
  assert.strictEqual(before.result.trim(), fs.realpathSync(r1));
  fs.unlinkSync(link);
  fs.symlinkSync(r2, link);
  const after = (await srv.call('dispatch', { agent: 'a', task })).value;
  assert.strictEqual(after.result.trim(), fs.realpathSync(r2), JSON.stringify(after));
  assert.notStrictEqual(after.cached, true, 'the old directory\'s answer came from the cache');
  const listed = (await srv.call('list_agents', {})).value.find((x) => x.name === 'a');
  assert.strictEqual(listed.directory, fs.realpathSync(r2), JSON.stringify(listed));
  await srv.close();
});
