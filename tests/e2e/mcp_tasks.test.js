'use strict';
// MCP tasks (2025-11-25 experimental wire format, MCP.md 2.10) backed by the
// job store, and modern subscriptions/listen (MCP.md 3.8, items 64-65).
const { test, describe } = require('node:test');
const assert = require('node:assert');
const { newEnv, modernMeta, waitUntil } = require('./lib');

function serve(t) {
  const env = newEnv(t);
  env.setup({ agents: { a: true } });
  return { env, srv: env.serve() };
}

async function initTasks(srv) {
  const r = await srv.request('initialize', { protocolVersion: '2025-11-25',
    capabilities: { tasks: {} }, clientInfo: { name: 'tasks-e2e', version: '1' } });
  srv.send({ jsonrpc: '2.0', method: 'notifications/initialized' });
  return r;
}

describe('MCP tasks (2025-11-25)', () => {
  test('75: declared only when the client declares tasks; tools carry taskSupport', async (t) => {
    const { srv } = serve(t);
    const r = await initTasks(srv);
    assert.ok(r.result.capabilities.tasks.requests.tools.call);
    const tools = (await srv.request('tools/list', {})).result.tools;
    const d = tools.find((x) => x.name === 'dispatch');
    assert.strictEqual(d.execution.taskSupport, 'optional');
    assert.ok(!tools.find((x) => x.name === 'list_agents').execution);
    await srv.close();

    const plain = serve(t).srv;
    const r2 = await plain.init();
    assert.ok(!r2.result.capabilities.tasks, 'no tasks capability for a client without tasks');
    const t2 = (await plain.request('tools/list', {})).result.tools;
    assert.ok(!t2.find((x) => x.name === 'dispatch').execution);
    await plain.close();
  });

  test('task-augmented calls refuse arguments that are not an object, as plain calls do', async (t) => {
    const { env, srv } = serve(t);
    await initTasks(srv);
    for (const args of [['x', 'a string'], [[1], 'an array'], [7, 'a number']]) {
      const r = await srv.request('tools/call', { name: 'dispatch', arguments: args[0], task: { ttl: 60000 } });
      assert.ok(r.error, `${args[1]}: ${JSON.stringify(r)}`);
      assert.strictEqual(r.error.code, -32602, JSON.stringify(r));
      assert.match(r.error.message, /'arguments' must be an object/);
    }
    assert.strictEqual(env.dispatches().length, 0);
    await srv.close();
  });

  test('a task whose agent waits for a permission decision says how to answer it in statusMessage', async (t) => {
    const env = newEnv(t);
    env.writeConfig(`agents:\n  a:\n    directory: ${JSON.stringify(env.project('a'))}\n    permissions: {"relay": true, "timeout_seconds": 60}\n`);
    const srv = env.serve();
    await initTasks(srv);
    const created = await srv.request('tools/call', { name: 'dispatch',
      arguments: { agent: 'a', task: '[stub:ask=Bash {"command":"ls"}] task asks' }, task: { ttl: 60000 } });
    const tid = created.result.task.taskId;
    let got;
    for (let i = 0; i < 100; i++) {
      got = (await srv.request('tasks/get', { taskId: tid })).result;
      if (/permission request/.test(got.statusMessage || '')) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.strictEqual(got.status, 'working');
    assert.match(got.statusMessage, /waits for your decision on 1 permission request/);
    assert.match(got.statusMessage, /dispatch_approve/);
    await srv.request('tools/call', { name: 'dispatch_cancel', arguments: { job_id: tid } });
    await srv.close();
  });

  test('a cancelled tasks/result request stops waiting and gets no response; the task runs on', async (t) => {
    const { env, srv } = serve(t);
    await initTasks(srv);
    const g = require('./lib').gate(env.root);
    const created = await srv.request('tools/call', { name: 'dispatch',
      arguments: { agent: 'a', task: `[stub:until_file=${g.path}] [stub:reply=ran on] waited` }, task: { ttl: 60000 } });
    const tid = created.result.task.taskId;
    srv.send({ jsonrpc: '2.0', id: 'res-1', method: 'tasks/result', params: { taskId: tid } });
    await new Promise((r) => setTimeout(r, 300));
    srv.send({ jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: 'res-1' } });
    await new Promise((r) => setTimeout(r, 300));
    // The stopped wait costs nothing while the task runs on (no spinning).
    const cpu = () => {
      const st = require('node:fs').readFileSync(`/proc/${srv.child.pid}/stat`, 'utf8');
      const f = st.slice(st.lastIndexOf(')') + 2).split(' ');
      return Number(f[11]) + Number(f[12]);
    };
    const c0 = cpu();
    await new Promise((r) => setTimeout(r, 1000));
    assert.ok(cpu() - c0 < 30, `the server used ${cpu() - c0} ticks in 1 s while idle`);
    g.open();
    // A second tasks/result (the id of the cancelled one free again) gets
    // the answer; the cancelled one never does.
    const res = await srv.request('tasks/result', { taskId: tid }, { id: 'res-1', ms: 10000 });
    assert.match(JSON.parse(res.result.content[0].text).result, /ran on/);
    await new Promise((r) => setTimeout(r, 500));
    assert.strictEqual(srv.responsesTo('res-1').length, 1, JSON.stringify(srv.responsesTo('res-1')));
    await srv.close();
  });

  test('76-77: task-augmented dispatch: working -> completed, tasks/result, status notification', async (t) => {
    const { srv } = serve(t);
    await initTasks(srv);
    const created = await srv.request('tools/call', { name: 'dispatch',
      arguments: { agent: 'a', task: '[stub:sleep=0.6] hello' }, task: { ttl: 60000 } });
    const task = created.result.task;
    assert.match(task.taskId, /^[0-9a-f]{32}$/);
    assert.strictEqual(task.status, 'working');
    assert.match(task.createdAt, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d/);
    const got = await srv.request('tasks/get', { taskId: task.taskId });
    assert.strictEqual(got.result.status, 'working');
    assert.ok('ttl' in got.result);
    const res = await srv.request('tasks/result', { taskId: task.taskId }, { ms: 10000 });
    assert.strictEqual(res.result.isError, false);
    const value = JSON.parse(res.result.content[0].text);
    assert.strictEqual(value.success, true);
    assert.match(value.result, /hello/);
    assert.strictEqual(res.result._meta['io.modelcontextprotocol/related-task'].taskId, task.taskId);
    // One notification per change of the job (queued -> running -> its
    // end); the last one says completed.
    const statuses = () => srv.notifications('notifications/tasks/status').map((n) => n.msg.params);
    await waitUntil(() => statuses().some((n) => n.status === 'completed'), 3000);
    const note = statuses().at(-1);
    assert.strictEqual(note.status, 'completed');
    assert.strictEqual(note.taskId, task.taskId);
    const again = await srv.request('tasks/get', { taskId: task.taskId });
    assert.strictEqual(again.result.status, 'completed');
    const list = await srv.request('tasks/list', {});
    assert.ok(list.result.tasks.some((x) => x.taskId === task.taskId));
    await srv.close();
  });

  test('77, 70: cancel a working task kills its child; terminal or unknown -> -32602', async (t) => {
    const { env, srv } = serve(t);
    await initTasks(srv);
    const created = await srv.request('tools/call', { name: 'dispatch_async',
      arguments: { agent: 'a', task: '[stub:hang]' }, task: {} });
    const id = created.result.task.taskId;
    await waitUntil(() => env.dispatches().length > 0, 5000);
    const c = await srv.request('tasks/cancel', { taskId: id });
    assert.strictEqual(c.result.status, 'cancelled');
    const pid = env.dispatches()[0].pid;
    const { alive } = require('./lib');
    await waitUntil(() => !alive(pid), 3000);
    const again = await srv.request('tasks/cancel', { taskId: id });
    assert.strictEqual(again.error.code, -32602);
    const unknown = await srv.request('tasks/get', { taskId: 'f'.repeat(32) });
    assert.strictEqual(unknown.error.code, -32602);
    await srv.close();
  });

  test('a tool without task support refuses task augmentation (-32601)', async (t) => {
    const { srv } = serve(t);
    await initTasks(srv);
    const r = await srv.request('tools/call', { name: 'list_agents', arguments: {}, task: {} });
    assert.strictEqual(r.error.code, -32601);
    await srv.close();
  });
});

describe('subscriptions/listen (modern)', () => {
  test('64-65: acknowledged first, closed with a completion result at EOF', async (t) => {
    const { srv } = serve(t);
    srv.send({ jsonrpc: '2.0', id: 'sub-1', method: 'subscriptions/listen',
      params: { _meta: modernMeta(), notifications: { toolsListChanged: true } } });
    const ack = await srv.waitFor((m) => m.method === 'notifications/subscriptions/acknowledged');
    assert.strictEqual(ack.params._meta['io.modelcontextprotocol/subscriptionId'], 'sub-1');
    assert.deepStrictEqual(ack.params.notifications, {});
    await srv.close();
    const done = srv.responsesTo('sub-1');
    assert.strictEqual(done.length, 1);
    assert.strictEqual(done[0].msg.result.resultType, 'complete');
  });
});
