'use strict';
// 2026-07-28 tasks and MRTR retries: task ids are bearer tokens of at
// least 128 random bits that resolve only with their token; a retry
// answers in the form the call asked for (return_ref); the stub's
// [stub:ask=TOOL JSON] takes a JSON input holding ']'.
const { test, describe } = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const path = require('node:path');
const { newEnv, q, modernMeta, readRec, waitUntil } = require('./lib');

const TASK_ID = /^([0-9a-f]{32})\.[0-9a-f]{32}$/;
const TASKS = { 'io.modelcontextprotocol/tasks': {} };
const meta = (c = { extensions: TASKS }) => modernMeta({ 'io.modelcontextprotocol/clientCapabilities': c });

function setup(t, perms = { relay: true, timeout_seconds: 60 }) {
  const env = newEnv(t);
  const dir = env.project('a');
  env.writeConfig(`agents:\n  a:\n    directory: ${q(dir)}\n    permissions: ${JSON.stringify(perms)}\n`);
  return env;
}

describe('2026 task ids', () => {
  test('74: 1,000 task ids are distinct, "<job id>.<32 hex>", every token digit random', (t) => {
    const env = newEnv(t);
    const r = env.run(['run', path.join(__dirname, '..', 'lua', 'task_ids_test.lua')], { timeout: 120000 });
    assert.strictEqual(r.code, 0, r.stdout + r.stderr);
    assert.doesNotMatch(r.stdout, /not ok/, r.stdout);
    assert.match(r.stdout, /^ok 1 /m, r.stdout);
    assert.match(r.stdout, /^ok 2 /m, r.stdout);
  });

  test('a task id with the right job but a wrong or missing token is answered as an unknown task', async (t) => {
    const env = setup(t);
    const srv = env.serve();
    const created = (await srv.request('tools/call', { name: 'dispatch_async',
      arguments: { agent: 'a', task: '[stub:sleep=30] slow' }, _meta: meta() }, { ms: 30000 })).result;
    assert.strictEqual(created.resultType, 'task', JSON.stringify(created));
    const m = TASK_ID.exec(created.taskId);
    assert.ok(m, `task id ${created.taskId}`);
    const job = m[1];
    const token = created.taskId.slice(33);
    const got = await srv.request('tasks/get', { taskId: created.taskId, _meta: meta() });
    assert.strictEqual(got.result && got.result.taskId, created.taskId, JSON.stringify(got));
    const flip = token.slice(0, -1) + (token.endsWith('0') ? '1' : '0');
    const unknownOf = async (method, taskId) => {
      const params = { taskId, _meta: meta() };
      if (method === 'tasks/update') params.inputResponses = {};
      const r = await srv.request(method, params);
      assert.ok(r.error, `${method} ${taskId}: ${JSON.stringify(r)}`);
      return r.error;
    };
    for (const method of ['tasks/get', 'tasks/update', 'tasks/cancel']) {
      const unknown = await unknownOf(method, `${'f'.repeat(32)}.${token}`);
      assert.strictEqual(unknown.code, -32602);
      for (const tid of [`${job}.${flip}`, job, `${job}.`, `${job}.${token}0`, `${job}.${token.toUpperCase()}`]) {
        const e = await unknownOf(method, tid);
        assert.deepStrictEqual(e, { ...unknown, message: unknown.message.replace(`${'f'.repeat(32)}.${token}`, tid) },
          `${method} ${tid}`);
      }
    }
    // Nothing was cancelled by the refused calls; the job id works as
    // before everywhere else, and no reader shows the token.
    assert.ok(['pending', 'running'].includes(readRec(env, job).status), JSON.stringify(readRec(env, job)));
    const st = await srv.call('dispatch_status', { job_id: job }, { modern: true });
    assert.strictEqual(st.value.job_id || st.value.id, job, st.text);
    assert.ok(!st.text.includes(token), st.text);
    const cli = env.run(['job', job, '--json']);
    assert.strictEqual(cli.code, 0, cli.stderr);
    assert.ok(!cli.stdout.includes(token), cli.stdout);
    const list = env.run(['jobs', '--json']);
    assert.ok(!list.stdout.includes(token), list.stdout);
    // The right id cancels it, from a later server too (the token is in
    // the record).
    await srv.close();
    const srv2 = env.serve();
    const ack = await srv2.request('tasks/cancel', { taskId: created.taskId, _meta: meta() });
    assert.strictEqual(ack.result && ack.result.resultType, 'complete', JSON.stringify(ack));
    assert.ok(await waitUntil(() => readRec(env, job).status === 'cancelled', 10000, 50),
      JSON.stringify(readRec(env, job)));
    await srv2.close();
  });
});

const ELICITS = { 'io.modelcontextprotocol/clientCapabilities': { elicitation: { form: {} } } };
const allow = { action: 'accept', content: { decision: 'allow' } };

function call(srv, args, extra = {}) {
  return srv.request('tools/call', { name: 'dispatch', arguments: args, _meta: modernMeta(ELICITS), ...extra },
    { ms: 30000 });
}

/** The first call's InputRequiredResult: its one key and requestState. */
async function firstAsk(srv, args) {
  const res = await call(srv, args);
  const r = res.result;
  assert.strictEqual(r && r.resultType, 'input_required', JSON.stringify(res));
  const keys = Object.keys(r.inputRequests);
  assert.strictEqual(keys.length, 1, JSON.stringify(r));
  const job = JSON.parse(Buffer.from(r.requestState.split('.')[0], 'hex').toString()).job;
  return { key: keys[0], state: r.requestState, job, ir: r.inputRequests[keys[0]] };
}

function valueOf(res) {
  assert.ok(res.result, JSON.stringify(res));
  assert.strictEqual(res.result.resultType, 'complete', JSON.stringify(res.result));
  return JSON.parse(res.result.content[0].text);
}

describe('MRTR retries', () => {
  test('a retry of a call with return_ref returns the ref form, as the direct call does', async (t) => {
    const env = setup(t);
    const srv = env.serve();
    const args = { agent: 'a', task: '[stub:ask=Bash {"command":"git status"}] refd', return_ref: true,
      summary_chars: 10 };
    // The direct call's form, for comparison (no permission asked).
    const direct = valueOf(await call(srv, { agent: 'a', task: 'plain', return_ref: true, summary_chars: 10 }));
    assert.strictEqual(typeof direct.ref, 'string', JSON.stringify(direct));
    const a = await firstAsk(srv, args);
    const value = valueOf(await call(srv, args, { inputResponses: { [a.key]: allow }, requestState: a.state }));
    assert.deepStrictEqual(Object.keys(value).filter((k) => !['session_id', 'cost_usd', 'duration_ms',
      'num_turns', 'hint'].includes(k)).sort(),
    Object.keys(direct).filter((k) => !['session_id', 'cost_usd', 'duration_ms', 'num_turns', 'hint']
      .includes(k)).sort(), JSON.stringify({ value, direct }));
    assert.strictEqual(value.result, undefined, JSON.stringify(value));
    assert.strictEqual(value.success, true, JSON.stringify(value));
    assert.strictEqual(value.summary_chars, 10);
    assert.strictEqual(value.summary.length, 10, JSON.stringify(value));
    // The ref reads the full result.
    const full = await srv.call('fetch_result', { ref: value.ref }, { modern: true });
    assert.match(full.text, /asked Bash: allow/, full.text);
    assert.strictEqual(value.size, [...full.value.result].length, full.text);
    await srv.close();
  });
});

describe('stub claude', () => {
  test('[stub:ask=TOOL JSON] takes a JSON input holding "]" (it asks with that input)', async (t) => {
    const env = setup(t);
    const srv = env.serve();
    const args = { agent: 'a', task: '[stub:ask=Bash {"command":"ls [ab]* x]"}] brackets', timeout_seconds: 20 };
    const a = await firstAsk(srv, args);
    assert.match(a.ir.params.message, /"command":"ls \[ab\]\* x\]"/, a.ir.params.message);
    const value = valueOf(await call(srv, args, { inputResponses: { [a.key]: allow }, requestState: a.state }));
    assert.strictEqual(value.success, true, JSON.stringify(value));
    assert.match(value.result, /asked Bash: allow updatedInput=\{"command":"ls \[ab\]\* x\]"\}/, value.result);
    await srv.close();
  });
});
