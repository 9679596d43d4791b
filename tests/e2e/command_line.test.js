'use strict';
// The command line of a dispatch's child: made again for what changes
// between calls (a fresh session id each time, the agent's settings as the
// config file says now, a response_schema, a resumed session), the same
// otherwise.
const { test } = require('node:test');
const assert = require('node:assert');
const { newEnv } = require('./lib');

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

function argAfter(e, flag) {
  const i = e.argv.indexOf(flag);
  return i >= 0 ? e.argv[i + 1] : undefined;
}

// The argv with its session id left out.
function withoutSession(e) {
  const a = e.argv.slice();
  const i = a.indexOf('--session-id');
  if (i >= 0) a.splice(i, 2);
  return a;
}

test('each dispatch gets its own session id; the rest of its command line follows the config', async (t) => {
  const env = newEnv(t);
  env.setup({ agents: { a: true, b: true } });
  const srv = env.serve();
  await srv.init();
  for (const task of ['one', 'two', 'three']) {
    const r = await srv.call('dispatch', { agent: 'a', task });
    assert.strictEqual(r.value.success, true, JSON.stringify(r.value));
  }
  let d = env.dispatches();
  const ids = d.map((e) => argAfter(e, '--session-id'));
  assert.ok(ids.every((id) => UUID.test(id)), JSON.stringify(ids));
  assert.strictEqual(new Set(ids).size, 3, 'three different session ids');
  // Each answer names the session its child was started with.
  assert.deepStrictEqual(withoutSession(d[1]), withoutSession(d[0]));
  assert.deepStrictEqual(withoutSession(d[2]), withoutSession(d[0]));
  // Another agent: its own command line.
  await srv.call('dispatch', { agent: 'b', task: 'other' });
  // A changed agent: the new setting is on the next command line.
  await srv.call('update_agent', { name: 'a', model: 'opus', permission_mode: 'plan' });
  await srv.call('dispatch', { agent: 'a', task: 'four' });
  // A schema: on that call's command line only.
  await srv.call('dispatch', { agent: 'a', task: 'five',
    response_schema: { type: 'object', properties: { x: { type: 'string' } } } });
  await srv.call('dispatch', { agent: 'a', task: 'six' });
  d = env.dispatches();
  assert.strictEqual(d.length, 7);
  assert.strictEqual(argAfter(d[3], '--model'), undefined, JSON.stringify(d[3].argv));
  assert.strictEqual(argAfter(d[4], '--model'), 'opus', JSON.stringify(d[4].argv));
  assert.strictEqual(argAfter(d[4], '--permission-mode'), 'plan', JSON.stringify(d[4].argv));
  assert.ok(d[5].argv.includes('--json-schema'), JSON.stringify(d[5].argv));
  assert.ok(!d[6].argv.includes('--json-schema'), JSON.stringify(d[6].argv));
  assert.deepStrictEqual(withoutSession(d[6]), withoutSession(d[4]));
  const all = d.map((e) => argAfter(e, '--session-id'));
  assert.strictEqual(new Set(all).size, 7, 'seven different session ids');
  // A resumed session: --resume with its id, no fresh one.
  const sid = argAfter(d[6], '--session-id');
  await srv.call('dispatch_session', { agent: 'a', task: 'again', session_id: sid });
  const last = env.dispatches()[7];
  assert.strictEqual(argAfter(last, '--resume'), sid, JSON.stringify(last.argv));
  assert.ok(!last.argv.includes('--session-id'), JSON.stringify(last.argv));
  await srv.close();
});
