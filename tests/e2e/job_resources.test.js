'use strict';
// Jobs as MCP resources (agent-dispatch://jobs/<id>): resources/list,
// resources/templates/list, resources/read, and change notifications to
// subscribers - legacy resources/subscribe, and the resourceSubscriptions
// of a 2026-07-28 subscriptions/listen (MCP.md 3.8) - whoever runs the job
// (this server, a detached job runner, another server). Legacy MCP tasks
// get notifications/tasks/status on every change of their job.
const { test, describe } = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const path = require('node:path');
const { newEnv, modernMeta, waitUntil, readRec } = require('./lib');

const SUB = 'io.modelcontextprotocol/subscriptionId';
const uriOf = (id) => `agent-dispatch://jobs/${id}`;

function serve(t, settings = '') {
  const env = newEnv(t);
  env.setup({ agents: { a: true }, settings });
  return { env, srv: env.serve() };
}

/** notifications/resources/updated for uri (optionally on one subscription). */
function updates(srv, uri, sub) {
  return srv.notifications('notifications/resources/updated').map((n) => n.msg.params)
    .filter((p) => p.uri === uri && (sub === undefined || (p._meta && p._meta[SUB] === sub)));
}

/** Updates for uri written after the response to request id (stdout keeps the server's order). */
function updatesAfter(srv, uri, id) {
  const at = srv.messages.findIndex((r) => r.msg.id === id && !('method' in r.msg));
  assert.ok(at >= 0, `no response to ${id}`);
  return srv.messages.slice(at + 1).filter((r) => r.msg.method === 'notifications/resources/updated'
    && r.msg.params.uri === uri);
}

/** Waits until the job's record is terminal and an update was sent after that. */
async function untilDoneNotified(srv, env, id, sub, ms = 15000) {
  const ok = await waitUntil(() => {
    const rec = readRec(env, id);
    if (!rec || !['done', 'failed', 'cancelled'].includes(rec.status)) return false;
    return srv.notifications('notifications/resources/updated').some((n) =>
      n.msg.params.uri === uriOf(id) && (sub === undefined || n.msg.params._meta[SUB] === sub) &&
      n.t >= rec.completed_at * 1000 - 50);
  }, ms);
  assert.ok(ok, `no update after the end of ${id}: ${JSON.stringify(readRec(env, id))}; ` +
    `got ${JSON.stringify(updates(srv, uriOf(id)))}\n${srv.stderr.slice(-1500)}`);
}

describe('jobs as MCP resources', () => {
  test('legacy: capability, dispatch_async names the resource, list/read/templates, subscribe -> updated',
    async (t) => {
      const { env, srv } = serve(t);
      const init = await srv.init();
      assert.deepStrictEqual(init.result.capabilities.resources, { subscribe: true, listChanged: false });
      const { value } = await srv.call('dispatch_async', { agent: 'a', task: '[stub:sleep=1] res1' });
      const uri = uriOf(value.job_id);
      assert.strictEqual(value.resource, uri);
      const sub = await srv.request('resources/subscribe', { uri });
      assert.deepStrictEqual(sub.result, {});

      const list = await srv.request('resources/list', {});
      const item = list.result.resources.find((r) => r.uri === uri);
      assert.ok(item, JSON.stringify(list.result));
      assert.strictEqual(item.mimeType, 'application/json');
      assert.match(item.description, /^a \((pending|running)\): \[stub:sleep=1\] res1/);
      assert.ok(!('ttlMs' in list.result) && !('resultType' in list.result));
      const tpl = await srv.request('resources/templates/list', {});
      assert.strictEqual(tpl.result.resourceTemplates[0].uriTemplate, 'agent-dispatch://jobs/{job_id}');

      await untilDoneNotified(srv, env, value.job_id);
      const ups = updates(srv, uri);
      // One per change seen since the subscription: (pending -> running),
      // running -> done.
      assert.ok(ups.length >= 1 && ups.length <= 2, JSON.stringify(ups));
      assert.deepStrictEqual(ups[0], { uri });
      const read = await srv.request('resources/read', { uri });
      const [content] = read.result.contents;
      assert.strictEqual(content.uri, uri);
      assert.strictEqual(content.mimeType, 'application/json');
      const rec = JSON.parse(content.text);
      assert.strictEqual(rec.status, 'done');
      assert.strictEqual(rec.result.result, 'stub ok: res1');
      await srv.close();
    });

  test('unknown or malformed resources: -32002 (legacy), -32602 (2026); unsubscribe stops updates',
    async (t) => {
      const { env, srv } = serve(t);
      await srv.init();
      for (const uri of [uriOf('0'.repeat(32)), 'agent-dispatch://jobs/../x', 'file:///etc/passwd', 7]) {
        const r = await srv.request('resources/read', { uri });
        assert.strictEqual(r.error.code, -32002, JSON.stringify(r));
        const s = await srv.request('resources/subscribe', { uri });
        assert.strictEqual(s.error.code, -32002, JSON.stringify(s));
      }
      const m = await srv.request('resources/read', { uri: uriOf('f'.repeat(32)), _meta: modernMeta() });
      assert.strictEqual(m.error.code, -32602);
      const ms = await srv.request('resources/subscribe', { uri: uriOf('f'.repeat(32)), _meta: modernMeta() });
      assert.strictEqual(ms.error.code, -32601);

      const { value } = await srv.call('dispatch_async', { agent: 'a', task: '[stub:sleep=0.8] unsub' });
      const uri = uriOf(value.job_id);
      await srv.request('resources/subscribe', { uri });
      await srv.request('resources/unsubscribe', { uri }, { id: 'unsub' });
      await waitUntil(() => (readRec(env, value.job_id) || {}).status === 'done', 15000);
      await new Promise((r) => setTimeout(r, 300));
      assert.deepStrictEqual(updatesAfter(srv, uri, 'unsub'), []);
      await srv.close();
    });

  test('2026-07-28: list/read with cache hints; subscriptions/listen resourceSubscriptions -> updated on the stream',
    async (t) => {
      const { env, srv } = serve(t);
      const disc = await srv.request('server/discover', { _meta: modernMeta() });
      assert.deepStrictEqual(disc.result.capabilities.resources, { subscribe: true, listChanged: false });
      const { value } = await srv.call('dispatch_async', { agent: 'a', task: '[stub:sleep=1] modern' },
        { modern: true });
      const uri = uriOf(value.job_id);
      const bogus = uriOf('e'.repeat(32));
      srv.send({ jsonrpc: '2.0', id: 'listen-1', method: 'subscriptions/listen', params: {
        _meta: modernMeta(), notifications: { resourceSubscriptions: [uri, bogus], toolsListChanged: true } } });
      const ack = await srv.waitFor((m) => m.method === 'notifications/subscriptions/acknowledged');
      assert.strictEqual(ack.params._meta[SUB], 'listen-1');
      assert.deepStrictEqual(ack.params.notifications, { resourceSubscriptions: [uri] });

      const list = await srv.request('resources/list', { _meta: modernMeta() });
      assert.strictEqual(list.result.resultType, 'complete');
      assert.strictEqual(list.result.ttlMs, 0);
      assert.strictEqual(list.result.cacheScope, 'private');
      assert.ok(list.result.resources.some((r) => r.uri === uri));
      const tpl = await srv.request('resources/templates/list', { _meta: modernMeta() });
      assert.strictEqual(tpl.result.cacheScope, 'public');

      await untilDoneNotified(srv, env, value.job_id, 'listen-1');
      for (const n of updates(srv, uri)) assert.strictEqual(n._meta[SUB], 'listen-1');
      const read = await srv.request('resources/read', { uri, _meta: modernMeta() });
      assert.strictEqual(read.result.resultType, 'complete');
      assert.strictEqual(JSON.parse(read.result.contents[0].text).status, 'done');

      // After the client cancels the listen, nothing more is sent on it.
      const second = await srv.call('dispatch_async', { agent: 'a', task: '[stub:sleep=0.8] after' },
        { modern: true });
      const uri2 = uriOf(second.value.job_id);
      srv.send({ jsonrpc: '2.0', id: 'listen-2', method: 'subscriptions/listen', params: {
        _meta: modernMeta(), notifications: { resourceSubscriptions: [uri2] } } });
      await srv.waitFor((m) => m.method === 'notifications/subscriptions/acknowledged' &&
        m.params._meta[SUB] === 'listen-2');
      srv.send({ jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: 'listen-2' } });
      // A request after the cancellation: whatever the server writes after
      // its response comes after the cancellation was handled.
      await srv.request('resources/templates/list', { _meta: modernMeta() }, { id: 'after-cancel' });
      await waitUntil(() => (readRec(env, second.value.job_id) || {}).status === 'done', 15000);
      await new Promise((r) => setTimeout(r, 300));
      assert.deepStrictEqual(updatesAfter(srv, uri2, 'after-cancel'), []);
      await srv.close();
      assert.deepStrictEqual(srv.responsesTo('listen-2'), []);
    });

  test('a detached job started by another server, which exits, still notifies this server', async (t) => {
    const env = newEnv(t);
    env.setup({ agents: { a: true }, settings: '  jobs_outlive_server: true\n' });
    const starter = env.serve();
    await starter.init();
    const { value } = await starter.call('dispatch_async', { agent: 'a', task: '[stub:sleep=1.5] detached' });
    const id = value.job_id;
    const watcher = env.serve();
    await watcher.init();
    assert.deepStrictEqual((await watcher.request('resources/subscribe', { uri: uriOf(id) })).result, {});
    await starter.close();
    await waitUntil(() => (readRec(env, id) || {}).status === 'running', 10000);
    const rec = readRec(env, id);
    assert.ok(rec.server && rec.server.pid !== starter.child.pid && rec.server.pid !== watcher.child.pid,
      `the job runs in a job runner: ${JSON.stringify(rec)}`);
    env.extraPids.push(rec.server.pid);
    await untilDoneNotified(watcher, env, id);
    assert.strictEqual(readRec(env, id).status, 'done');
    assert.deepStrictEqual(starter.notifications('notifications/resources/updated'), []);
    await watcher.close();
  });

  test('resources/list pages through the recent jobs, newest first; a bad cursor is -32602', async (t) => {
    const { env, srv } = serve(t);
    fs.mkdirSync(env.jobs, { mode: 0o700 });
    const ids = [];
    for (let i = 0; i < 55; i++) {
      const id = i.toString(16).padStart(32, 'a');
      ids.push(id);
      fs.writeFileSync(path.join(env.jobs, `${id}.json`), JSON.stringify({ id, agent: 'a',
        task: `t${i}`, status: 'done', created_at: 1700000000 + i, completed_at: 1700000000 + i }));
    }
    await srv.init();
    const p1 = await srv.request('resources/list', {});
    assert.strictEqual(p1.result.resources.length, 50);
    assert.strictEqual(p1.result.resources[0].uri, uriOf(ids[54]));
    assert.ok(p1.result.nextCursor);
    const p2 = await srv.request('resources/list', { cursor: p1.result.nextCursor });
    assert.deepStrictEqual(p2.result.resources.map((r) => r.uri), ids.slice(0, 5).reverse().map(uriOf));
    assert.ok(!('nextCursor' in p2.result));
    const bad = await srv.request('resources/list', { cursor: 'nope' });
    assert.strictEqual(bad.error.code, -32602);
    await srv.close();
  });
});

describe('MCP tasks: status notifications', () => {
  async function initTasks(srv) {
    await srv.request('initialize', { protocolVersion: '2025-11-25', capabilities: { tasks: {} },
      clientInfo: { name: 'tasks-e2e', version: '1' } });
    srv.send({ jsonrpc: '2.0', method: 'notifications/initialized' });
  }
  const statuses = (srv, id) => srv.notifications('notifications/tasks/status')
    .map((n) => n.msg.params).filter((p) => p.taskId === id);

  for (const outlive of [false, true]) {
    test(`a task hears when its job starts and when it ends (jobs_outlive_server: ${outlive})`, async (t) => {
      const { env, srv } = serve(t, `  jobs_outlive_server: ${outlive}\n`);
      await initTasks(srv);
      const created = await srv.request('tools/call', { name: 'dispatch_async',
        arguments: { agent: 'a', task: '[stub:sleep=1] task-notes' }, task: {} });
      const id = created.result.task.taskId;
      assert.ok(await waitUntil(() => statuses(srv, id).some((s) => s.status === 'completed'), 15000),
        JSON.stringify(statuses(srv, id)) + srv.stderr.slice(-1500));
      const seen = statuses(srv, id);
      assert.strictEqual(seen.length, 2, JSON.stringify(seen)); // running, then done
      assert.strictEqual(seen[0].status, 'working');
      assert.strictEqual(seen[1].status, 'completed');
      const rec = readRec(env, id);
      if (outlive) env.extraPids.push(rec.server.pid);
      await srv.close();
    });
  }

  test('a cancelled task is notified as cancelled', async (t) => {
    const { env, srv } = serve(t);
    await initTasks(srv);
    const created = await srv.request('tools/call', { name: 'dispatch_async',
      arguments: { agent: 'a', task: '[stub:hang] cancel-notes' }, task: {} });
    const id = created.result.task.taskId;
    await waitUntil(() => statuses(srv, id).length > 0, 10000);
    assert.strictEqual(statuses(srv, id)[0].status, 'working');
    const c = await srv.request('tasks/cancel', { taskId: id });
    assert.strictEqual(c.result.status, 'cancelled');
    assert.ok(await waitUntil(() => statuses(srv, id).some((s) => s.status === 'cancelled'), 5000),
      JSON.stringify(statuses(srv, id)));
    assert.strictEqual(readRec(env, id).status, 'cancelled');
    await srv.close();
  });
});
