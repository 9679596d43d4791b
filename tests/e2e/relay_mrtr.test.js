'use strict';
// The permission relay for 2026-07-28 clients: a tools/call whose request
// declared elicitation, and whose child asks its caller, is answered with
// an InputRequiredResult (MRTR) carrying an elicitation/create form and an
// HMAC-protected requestState; the retry with inputResponses delivers the
// decision as dispatch_approve does and goes on as the call. The stub's
// [stub:ask=TOOL JSON] asks and its result says what it was answered.
const { test, describe } = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const path = require('node:path');
const { newEnv, q, modernMeta } = require('./lib');

const HEX32 = /^[0-9a-f]{32}$/;
const ELICITS = { 'io.modelcontextprotocol/clientCapabilities': { elicitation: { form: {}, url: {} } } };
const ASK_GIT = '[stub:ask=Bash {"command":"git status"}]';

function setup(t, perms = { relay: true, timeout_seconds: 60 }) {
  const env = newEnv(t);
  const dir = env.project('a');
  env.writeConfig(`agents:\n  a:\n    directory: ${q(dir)}\n    permissions: ${JSON.stringify(perms)}\n`);
  return env;
}

function readRec(env, id) {
  return JSON.parse(fs.readFileSync(path.join(env.jobs, `${id}.json`), 'utf8'));
}

/** A modern tools/call (elicitation declared unless meta says otherwise). */
function call(srv, args, extra = {}, meta = ELICITS) {
  const params = { name: 'dispatch', arguments: args, _meta: modernMeta(meta), ...extra };
  return srv.request('tools/call', params, { ms: 30000 });
}

/** The first call: asserts an InputRequiredResult and returns its parts. */
async function firstAsk(srv, args) {
  const res = await call(srv, args);
  assert.ok(res.result, JSON.stringify(res));
  const r = res.result;
  assert.strictEqual(r.resultType, 'input_required', JSON.stringify(r));
  const keys = Object.keys(r.inputRequests);
  assert.strictEqual(keys.length, 1, JSON.stringify(r));
  const ir = r.inputRequests[keys[0]];
  assert.strictEqual(typeof r.requestState, 'string');
  const job = Buffer.from(r.requestState.split('.')[0], 'hex').toString();
  return { r, key: keys[0], ir, state: r.requestState, job: JSON.parse(job).job };
}

function textOf(res) {
  assert.ok(res.result, JSON.stringify(res));
  assert.strictEqual(res.result.resultType, 'complete', JSON.stringify(res.result));
  return JSON.parse(res.result.content[0].text);
}

const allow = (message) => ({ action: 'accept', content: { decision: 'allow', ...(message ? { message } : {}) } });

describe('permission relay over MRTR (2026-07-28)', () => {
  test('a child that asks: input_required with an elicitation form; the retry allows and returns the result', async (t) => {
    const env = setup(t);
    const srv = env.serve();
    const args = { agent: 'a', task: ASK_GIT, caller: 'e2e' };
    const { ir, key, state, job } = await firstAsk(srv, args);
    assert.match(job, HEX32);
    assert.strictEqual(ir.method, 'elicitation/create');
    assert.strictEqual(ir.params.mode, 'form');
    assert.match(ir.params.message, /Agent a asks to use the tool Bash/);
    assert.match(ir.params.message, /"command":"git status"/);
    assert.deepStrictEqual(ir.params.requestedSchema.properties.decision.enum, ['allow', 'deny']);
    assert.deepStrictEqual(ir.params.requestedSchema.required, ['decision']);
    // The child still waits, as a job with the pending request.
    const rec = readRec(env, job);
    assert.strictEqual(rec.permissions.pending.length, 1);
    // The key file: 0600, private.
    const st = fs.statSync(path.join(env.jobs, 'request_state.key'));
    assert.strictEqual(st.mode & 0o777, 0o600);
    // The retry: same call, new id, inputResponses + requestState.
    const res = await call(srv, args, { inputResponses: { [key]: allow() }, requestState: state });
    const value = textOf(res);
    assert.strictEqual(value.success, true, JSON.stringify(value));
    assert.match(value.result, /asked Bash: allow updatedInput=\{"command":"git status"\}/);
    const done = readRec(env, job);
    assert.strictEqual(done.permissions.pending.length, 0);
    assert.strictEqual(done.permissions.decisions.length, 1);
    const d = done.permissions.decisions[0];
    assert.strictEqual(d.decision, 'allow');
    assert.strictEqual(d.by, 'elicitation');
    assert.strictEqual(typeof d.at, 'number');
    await srv.close();
  });

  test('decline denies with a message the child sees; accept+deny passes the caller\'s message', async (t) => {
    const env = setup(t);
    const srv = env.serve();
    const args = { agent: 'a', task: ASK_GIT };
    let a = await firstAsk(srv, args);
    let value = textOf(await call(srv, args, { inputResponses: { [a.key]: { action: 'decline' } },
      requestState: a.state }));
    assert.match(value.result, /asked Bash: deny message=The caller declined the permission request/);
    a = await firstAsk(srv, { ...args, caller: 'x' });
    value = textOf(await call(srv, { ...args, caller: 'x' }, { inputResponses: {
      [a.key]: { action: 'accept', content: { decision: 'deny', message: 'use git log' } } },
      requestState: a.state }));
    assert.match(value.result, /asked Bash: deny message=use git log/);
    assert.strictEqual(readRec(env, a.job).permissions.decisions[0].by, 'elicitation');
    await srv.close();
  });

  test('a tampered, foreign, mismatched or expired requestState is a JSON-RPC error and delivers nothing', async (t) => {
    const env = setup(t);
    const srv = env.serve();
    const args = { agent: 'a', task: ASK_GIT };
    const a = await firstAsk(srv, args);
    const responses = { [a.key]: allow() };
    const [phex, mac] = a.state.split('.');
    const payload = JSON.parse(Buffer.from(phex, 'hex').toString());
    const forge = (p) => Buffer.from(JSON.stringify(p)).toString('hex') + '.' + mac;
    const cases = [
      ['bad MAC', phex + '.' + (mac[0] === '0' ? '1' : '0') + mac.slice(1), /integrity/],
      ['other job', forge({ ...payload, job: 'f'.repeat(32) }), /integrity/],
      ['later expiry', forge({ ...payload, exp: payload.exp + 86400 }), /integrity/],
      ['garbage', 'not a state', /malformed/],
    ];
    for (const [what, state, re] of cases) {
      const res = await call(srv, args, { inputResponses: responses, requestState: state });
      assert.ok(res.error, `${what}: ${JSON.stringify(res)}`);
      assert.strictEqual(res.error.code, -32602, what);
      assert.match(res.error.message, re, what);
    }
    // The same state with other arguments (another call).
    let res = await call(srv, { ...args, task: 'something else' },
      { inputResponses: responses, requestState: a.state });
    assert.strictEqual(res.error && res.error.code, -32602, JSON.stringify(res));
    assert.match(res.error.message, /another call/);
    // An answer to a request the state did not ask.
    res = await call(srv, args, { inputResponses: { other: allow() }, requestState: a.state });
    assert.match(res.error.message, /answers nothing/);
    // inputResponses without a requestState.
    res = await call(srv, args, { inputResponses: responses });
    assert.match(res.error.message, /requestState/);
    // Nothing was delivered: the request still waits.
    const rec = readRec(env, a.job);
    assert.strictEqual(rec.permissions.pending.length, 1);
    assert.strictEqual(rec.permissions.decisions.length, 0);
    // A state made with another key (a new key file) does not verify either.
    await srv.call('dispatch_approve', { job_id: a.job, request_id: rec.permissions.pending[0].request_id,
      decision: 'deny' }, { modern: true });
    await srv.close();
    fs.unlinkSync(path.join(env.jobs, 'request_state.key'));
    const srv2 = env.serve();
    res = await call(srv2, args, { inputResponses: responses, requestState: a.state });
    assert.match(res.error.message, /integrity/);
    await srv2.close();
  });

  test('an expired requestState (its requests timed out) is refused', async (t) => {
    const env = setup(t, { relay: true, timeout_seconds: 1 });
    const srv = env.serve();
    const args = { agent: 'a', task: ASK_GIT };
    const a = await firstAsk(srv, args);
    await new Promise((r) => setTimeout(r, 2500));
    const res = await call(srv, args, { inputResponses: { [a.key]: allow() }, requestState: a.state });
    assert.ok(res.error, JSON.stringify(res));
    assert.strictEqual(res.error.code, -32602);
    assert.match(res.error.message, /expired/);
    const rec = readRec(env, a.job);
    assert.ok(!rec.permissions.decisions.some((d) => d.by === 'elicitation'), JSON.stringify(rec.permissions));
    await srv.close();
  });

  test('a retry after the request was answered by CLI approve continues without delivering again', async (t) => {
    const env = setup(t);
    const srv = env.serve();
    const args = { agent: 'a', task: ASK_GIT };
    const a = await firstAsk(srv, args);
    const rid = readRec(env, a.job).permissions.pending[0].request_id;
    const ok = env.run(['approve', a.job, rid]);
    assert.strictEqual(ok.code, 0, ok.stderr);
    const value = textOf(await call(srv, args, { inputResponses: { [a.key]: { action: 'decline' } },
      requestState: a.state }));
    assert.match(value.result, /asked Bash: allow/);
    const rec = readRec(env, a.job);
    assert.strictEqual(rec.permissions.decisions.length, 1);
    assert.strictEqual(rec.permissions.decisions[0].by, 'cli');
    await srv.close();
  });

  test('a child that asks again: the retry returns a second input_required, then the result', async (t) => {
    const env = setup(t);
    const srv = env.serve();
    const spec = path.join(env.root, 'ask.txt');
    fs.writeFileSync(spec, 'Read {"file_path":"/x"}\n');
    const args = { agent: 'a', task: `[stub:ask_file=${spec}] ${ASK_GIT}` };
    const a = await firstAsk(srv, args);
    assert.match(a.ir.params.message, /tool Read/);
    const res = await call(srv, args, { inputResponses: { [a.key]: allow() }, requestState: a.state });
    const r = res.result;
    assert.strictEqual(r && r.resultType, 'input_required', JSON.stringify(res));
    const keys = Object.keys(r.inputRequests);
    assert.strictEqual(keys.length, 1);
    assert.notStrictEqual(keys[0], a.key);
    assert.match(r.inputRequests[keys[0]].params.message, /tool Bash/);
    const value = textOf(await call(srv, args, { inputResponses: { [keys[0]]: allow() },
      requestState: r.requestState }));
    assert.match(value.result, /asked Read: allow .*; asked Bash: allow/);
    assert.strictEqual(readRec(env, a.job).permissions.decisions.length, 2);
    await srv.close();
  });

  test('a retry answers with the hand-off when the job still runs past handoff_after_seconds', async (t) => {
    const env = setup(t);
    const srv = env.serve();
    const args = { agent: 'a', task: `[stub:ask_sleep=3] ${ASK_GIT}`, handoff_after_seconds: 1 };
    const a = await firstAsk(srv, args);
    const value = textOf(await call(srv, args, { inputResponses: { [a.key]: allow() }, requestState: a.state }));
    assert.strictEqual(value.status, 'running', JSON.stringify(value));
    assert.strictEqual(value.job_id, a.job);
    await srv.close();
  });

  test('a cancelled retry cancels the call\'s work: the child is stopped, the job cancelled, no response', async (t) => {
    const env = setup(t);
    const srv = env.serve();
    const args = { agent: 'a', task: `${ASK_GIT} [stub:ask_sleep=20] abandoned` };
    const a = await firstAsk(srv, args);
    srv.send({ jsonrpc: '2.0', id: 'retry', method: 'tools/call', params: { name: 'dispatch', arguments: args,
      _meta: modernMeta(ELICITS), inputResponses: { [a.key]: allow() }, requestState: a.state } });
    const { waitUntil, alive, sleep } = require('./lib');
    const child = env.dispatches().find((d) => d.prompt.includes('abandoned'));
    assert.ok(child);
    await sleep(800);
    srv.send({ jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: 'retry', _meta: modernMeta() } });
    assert.ok(await waitUntil(() => !alive(child.pid), 6000), 'the child works on after its retry was cancelled');
    assert.ok(await waitUntil(() => readRec(env, a.job).status === 'cancelled', 6000),
      JSON.stringify(readRec(env, a.job).status));
    await sleep(300);
    assert.strictEqual(srv.responsesTo('retry').length, 0);
    await srv.close();
  });

  test('a client that did not declare elicitation keeps awaiting_approval (no elicitation sent)', async (t) => {
    const env = setup(t);
    const srv = env.serve();
    const res = await call(srv, { agent: 'a', task: ASK_GIT }, {}, {});
    const value = textOf(res);
    assert.strictEqual(value.status, 'awaiting_approval', JSON.stringify(value));
    assert.ok(!srv.messages.some((m) => m.msg && m.msg.method === 'elicitation/create'));
    assert.ok(!JSON.stringify(res).includes('inputRequests'));
    await srv.call('dispatch_approve', { job_id: value.job_id, request_id: value.pending.request_id,
      decision: 'deny' }, { modern: true });
    await srv.close();
  });

  test('tasks extension: a task whose child asks is input_required in tasks/get; tasks/update answers it', async (t) => {
    const env = setup(t);
    const srv = env.serve();
    const TASKS = { 'io.modelcontextprotocol/tasks': {} };
    const caps = { elicitation: { form: {} }, extensions: TASKS };
    const meta = (c) => modernMeta({ 'io.modelcontextprotocol/clientCapabilities': c });
    const disc = (await srv.request('server/discover', { _meta: modernMeta() })).result;
    assert.deepStrictEqual(disc.capabilities.extensions, TASKS);
    const created = (await srv.request('tools/call', { name: 'dispatch_async',
      arguments: { agent: 'a', task: ASK_GIT }, _meta: meta(caps) }, { ms: 30000 })).result;
    assert.strictEqual(created.resultType, 'task', JSON.stringify(created));
    assert.match(created.taskId, /^[0-9a-f]{32}\.[0-9a-f]{32}$/); // "<job id>.<token>"
    const get = async (c = caps) => {
      const r = await srv.request('tasks/get', { taskId: created.taskId, _meta: meta(c) });
      assert.ok(r.result, JSON.stringify(r));
      return r.result;
    };
    let task;
    const until = Date.now() + 20000;
    do { task = await get(); } while (task.status !== 'input_required' && Date.now() < until
      && await new Promise((r) => setTimeout(r, 50)) === undefined);
    assert.strictEqual(task.status, 'input_required', JSON.stringify(task));
    assert.strictEqual(task.resultType, 'complete');
    const keys = Object.keys(task.inputRequests);
    assert.strictEqual(keys.length, 1);
    assert.strictEqual(task.inputRequests[keys[0]].method, 'elicitation/create');
    assert.match(task.inputRequests[keys[0]].params.message, /tool Bash/);
    // A tasks/get whose request declared no elicitation gets no elicitation.
    const plain = await get({ extensions: TASKS });
    assert.strictEqual(plain.status, 'working', JSON.stringify(plain));
    assert.strictEqual(plain.inputRequests, undefined);
    assert.match(plain.statusMessage, /dispatch_approve/);
    // Unknown keys are ignored: nothing is delivered, the ack comes anyway.
    let ack = await srv.request('tasks/update', { taskId: created.taskId,
      inputResponses: { nope: allow() }, _meta: meta(caps) });
    assert.deepStrictEqual(ack.result.resultType, 'complete', JSON.stringify(ack));
    assert.strictEqual((await get()).status, 'input_required');
    ack = await srv.request('tasks/update', { taskId: created.taskId,
      inputResponses: { [keys[0]]: allow() }, _meta: meta(caps) });
    assert.strictEqual(ack.result.resultType, 'complete', JSON.stringify(ack));
    const end = Date.now() + 20000;
    do { task = await get(); } while (task.status !== 'completed' && Date.now() < end
      && await new Promise((r) => setTimeout(r, 50)) === undefined);
    assert.strictEqual(task.status, 'completed', JSON.stringify(task));
    const value = JSON.parse(task.result.content[0].text);
    assert.match(value.result, /asked Bash: allow/);
    assert.strictEqual(task.result.isError, false);
    const d = readRec(env, created.taskId.split('.')[0]).permissions.decisions;
    assert.strictEqual(d.length, 1);
    assert.strictEqual(d[0].by, 'elicitation');
    // Unknown task ids: -32602; a request without the extension: -32021.
    let r = await srv.request('tasks/update', { taskId: 'f'.repeat(32), inputResponses: {}, _meta: meta(caps) });
    assert.strictEqual(r.error.code, -32602);
    r = await srv.request('tasks/get', { taskId: created.taskId, _meta: meta({}) });
    assert.strictEqual(r.error.code, -32021);
    await srv.close();
  });

  test('a key file open to others or owned by someone else is refused: no input_required, no state verifies', async (t) => {
    const env = setup(t);
    fs.mkdirSync(env.jobs, { recursive: true, mode: 0o700 });
    const keyFile = path.join(env.jobs, 'request_state.key');
    fs.writeFileSync(keyFile, 'ab'.repeat(32) + '\n', { mode: 0o644 });
    fs.chmodSync(keyFile, 0o644);
    const srv = env.serve();
    const args = { agent: 'a', task: ASK_GIT };
    const value = textOf(await call(srv, args));
    assert.strictEqual(value.status, 'awaiting_approval', JSON.stringify(value));
    assert.match(srv.stderr || '', /open to group or others/);
    // Owned by another user (root passes permission checks: the owner is checked).
    fs.chmodSync(keyFile, 0o600);
    fs.chownSync(keyFile, 65534, 65534);
    const res = await call(srv, args, { inputResponses: {}, requestState: 'ab.cd' });
    assert.ok(res.error, JSON.stringify(res));
    assert.match(res.error.message, /owned by uid 65534/);
    await srv.call('dispatch_approve', { job_id: value.job_id, request_id: value.pending.request_id,
      decision: 'deny' }, { modern: true });
    await srv.close();
  });

  test('another server of the same user verifies the state and delivers through the job\'s inbox', async (t) => {
    const env = setup(t);
    const srv = env.serve();
    const args = { agent: 'a', task: ASK_GIT };
    const a = await firstAsk(srv, args);
    const other = env.serve();
    const value = textOf(await call(other, { ...args }, { inputResponses: { [a.key]: allow() },
      requestState: a.state }));
    assert.match(value.result, /asked Bash: allow updatedInput=\{"command":"git status"\}/);
    assert.strictEqual(readRec(env, a.job).permissions.decisions[0].by, 'elicitation');
    await other.close();
    await srv.close();
  });
});
