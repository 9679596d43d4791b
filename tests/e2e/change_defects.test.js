'use strict';
// What a changed configuration or a cancelled call leaves behind in a
// running server: the result cache and the warm pool follow a change of
// the defaults an agent inherits (settings.default_*), a lowered
// live_sessions.max holds for the processes kept already, and a cancelled
// dispatch_dialogue keeps none of its turns' processes.
const { test, describe } = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const path = require('node:path');
const { newEnv, sleep, waitUntil } = require('./lib');

function serve(env) {
  return env.serve({ env: { STUB_CLAUDE_STARTS: path.join(env.root, 'starts.log') } });
}

const modeOf = (text) => (/--permission-mode (\S+)/.exec(text) || [])[1];

// The --permission-mode of each live process the stub saw start.
function poolModes(env) {
  let text = '';
  try { text = fs.readFileSync(path.join(env.root, 'starts.log'), 'utf8'); } catch { return []; }
  return text.split('\n').filter(Boolean).map((l) => JSON.parse(l))
    .filter((e) => e.argv.includes('stream-json')).map((e) => modeOf(e.argv.join(' ')));
}

describe('changes and cancels in a running server', () => {
  test('a changed default_permission_mode drops the cached answers of the agents that inherit it', async (t) => {
    const env = newEnv(t);
    env.setup({ agents: { a: true }, settings: '  default_permission_mode: plan\n' });
    const srv = serve(env);
    await srv.init();
    const task = 'which mode? [stub:echo_argv]';
    let { value } = await srv.call('dispatch', { agent: 'a', task });
    assert.strictEqual(modeOf(value.result), 'plan');
    ({ value } = await srv.call('dispatch', { agent: 'a', task }));
    assert.strictEqual(value.cached, true, 'the same call is a cache hit');
    env.writeConfig(env.readConfig().replace('default_permission_mode: plan',
      'default_permission_mode: acceptEdits'));
    ({ value } = await srv.call('dispatch', { agent: 'a', task }));
    assert.strictEqual(modeOf(value.result), 'acceptEdits', JSON.stringify(value));
    assert.notStrictEqual(value.cached, true);
    await srv.close();
  });

  test('a changed default restarts the warm pool with the new command line, which is then used', async (t) => {
    const env = newEnv(t);
    env.setup({ agents: { a: { warm: 1 } }, settings: '  default_permission_mode: plan\n' });
    const srv = serve(env);
    await srv.init();
    assert.ok(await waitUntil(() => poolModes(env).length === 1, 15000), 'the pool process starts');
    env.writeConfig(env.readConfig().replace('default_permission_mode: plan',
      'default_permission_mode: acceptEdits'));
    // The change is seen at the next call's re-read of the file.
    await srv.call('list_agents', {});
    assert.ok(await waitUntil(() => poolModes(env).includes('acceptEdits'), 15000),
      `a pool process with the new mode starts: ${JSON.stringify(poolModes(env))}`);
    const { value } = await srv.call('dispatch', { agent: 'a', task: 'fresh [stub:echo_argv]' });
    assert.strictEqual(value.success, true, JSON.stringify(value));
    const st = (await srv.call('live_stats', {})).value;
    assert.strictEqual(st.totals.warm_taken, 1, JSON.stringify(st));
    await srv.close();
    await env.assertNoLeftovers();
  });

  test('under settings.tree_budget_usd no warm pool is started (no process could take a request), and it says why', async (t) => {
    const env = newEnv(t);
    env.setup({ agents: { a: { warm: 2 } }, settings: '  tree_budget_usd: 5\n' });
    const srv = serve(env);
    await srv.init();
    await srv.call('list_agents', {});
    await sleep(1500);
    assert.deepStrictEqual(poolModes(env), [], 'pool processes started');
    assert.match(srv.stderr, /warm: 2 of agent a is not used: with settings\.tree_budget_usd/);
    const { value } = await srv.call('dispatch', { agent: 'a', task: 'capped' });
    assert.strictEqual(value.success, true, JSON.stringify(value));
    await srv.close();
    await env.assertNoLeftovers();
  });

  test('lowering live_sessions.max ends the sessions kept past the new bound', async (t) => {
    const env = newEnv(t);
    env.setup({ agents: { a: true }, settings: '  live_sessions:\n    max: 4\n' });
    const srv = serve(env);
    await srv.init();
    const first = await srv.call('dispatch_session', { agent: 'a', task: 'T1' });
    assert.strictEqual((await srv.call('live_stats', {})).value.sessions, 1);
    env.writeConfig(env.readConfig().replace('max: 4', 'max: 0'));
    const { value } = await srv.call('dispatch_session', { agent: 'a', task: 'T2',
      session_id: first.value.session_id });
    // (a kept process would answer with its previous turn in the reply)
    assert.doesNotMatch(value.result, /T1/, JSON.stringify(value));
    const st = (await srv.call('live_stats', {})).value;
    assert.strictEqual(st.sessions, 0, JSON.stringify(st));
    await srv.close();
    await env.assertNoLeftovers();
  });

  test('a cancelled dispatch_dialogue keeps none of its turns\' processes', async (t) => {
    const env = newEnv(t);
    env.setup({ agents: { a: true, b: true, c: true }, settings: '  live_sessions:\n    max: 1\n' });
    const srv = serve(env);
    await srv.init();
    const real = (await srv.call('dispatch_session', { agent: 'c', task: 'real turn 1' })).value.session_id;
    const id = 777;
    srv.send({ jsonrpc: '2.0', id, method: 'tools/call', params: { name: 'dispatch_dialogue',
      arguments: { requester: 'a', responder: 'b', topic: 'discuss [stub:sleep=2] [stub:reply=thinking]',
        max_rounds: 3 } } });
    // The first turn answered (its process kept for the next), the second runs.
    assert.ok(await waitUntil(() => env.dispatches().length >= 3, 20000), 'the second turn started');
    srv.send({ jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: id, reason: 'test' } });
    await sleep(500);
    const st = (await srv.call('live_stats', {})).value;
    assert.deepStrictEqual(st.processes.filter((p) => p.agent !== 'c').map((p) => p.agent), [],
      JSON.stringify(st));
    const { value } = await srv.call('dispatch_session', { agent: 'c', task: 'real turn 2', session_id: real });
    assert.strictEqual(value.success, true, JSON.stringify(value));
    await srv.close();
    await env.assertNoLeftovers();
  });
});
