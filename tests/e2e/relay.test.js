'use strict';
// The permission relay: a child run with --permission-prompt-tool stdio
// asks can_use_tool over its control channel; agent-dispatch decides by
// the agent's permissions rules and on_permission hooks, else asks the
// caller - by elicitation/create (a legacy client that declared it), else
// by returning status "awaiting_approval" with the job that waits, answered
// by dispatch_approve or CLI approve / deny through the job's inbox. An
// unanswered request is denied after permissions.timeout_seconds. Every
// decision is recorded on the job. The stub's [stub:ask=TOOL JSON] asks
// and its result says exactly what it was answered. Helpers: lib.js.
const { test, describe } = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const path = require('node:path');
const { newEnv, q, modernMeta, readRec, recUntil, alive, waitUntil } = require('./lib');

const HEX32 = /^[0-9a-f]{32}$/;

/** A config with agent a (relay settings perms, JSON as YAML flow). */
function setup(t, perms, { tools } = {}) {
  const env = newEnv(t);
  const dir = env.project('a');
  let y = `agents:\n  a:\n    directory: ${q(dir)}\n`;
  if (perms) y += `    permissions: ${JSON.stringify(perms)}\n`;
  env.writeConfig(y);
  if (tools) {
    const td = path.join(env.cfgDir, 'tools');
    fs.mkdirSync(td, { mode: 0o700 });
    fs.writeFileSync(path.join(td, 'perm.lua'), tools, { mode: 0o600 });
  }
  return env;
}

const ASK_GIT = '[stub:ask=Bash {"command":"git status"}]';

async function dispatch(srv, task, extra = {}, opts = {}) {
  return srv.call('dispatch', { agent: 'a', task, ...extra }, { ms: 30000, ...opts });
}

/** Starts a dispatch that waits for approval; returns {value, id, req}. */
async function awaiting(srv, task = ASK_GIT) {
  const { value } = await dispatch(srv, task);
  assert.strictEqual(value.status, 'awaiting_approval', JSON.stringify(value));
  assert.match(value.job_id, HEX32);
  return { value, id: value.job_id, req: value.pending.request_id };
}

describe('permission relay', () => {
  test('relay off (the default): the child gets no --permission-prompt-tool and asks no one', async (t) => {
    const env = setup(t, null);
    const srv = env.serve();
    await srv.init();
    const { value } = await dispatch(srv, 'plain task');
    assert.strictEqual(value.success, true, JSON.stringify(value));
    const argv = env.dispatches().at(-1).argv;
    assert.ok(!argv.includes('--permission-prompt-tool'), argv.join(' '));
    await srv.close();
  });

  test('an allow rule lets the tool run with exactly the input the child asked for', async (t) => {
    const env = setup(t, { relay: true, allow: ['Bash(git status:*)'] });
    const srv = env.serve();
    await srv.init();
    const { value } = await dispatch(srv, ASK_GIT);
    assert.strictEqual(value.success, true, JSON.stringify(value));
    assert.match(value.result, /asked Bash: allow updatedInput=\{"command":"git status"\}/);
    // A sync call that never became a job carries its decisions itself.
    assert.strictEqual(value.permissions.length, 1);
    assert.strictEqual(value.permissions[0].by, 'rule');
    assert.strictEqual(value.permissions[0].rule, 'Bash(git status:*)');
    // ... and is not cached: the same call asks again.
    const again = (await dispatch(srv, ASK_GIT)).value;
    assert.strictEqual(again.cached, undefined);
    assert.strictEqual(env.dispatches().length, 2);
    const argv = env.dispatches().at(-1).argv;
    const i = argv.indexOf('--permission-prompt-tool');
    assert.ok(i >= 0 && argv[i + 1] === 'stdio', argv.join(' '));
    await srv.close();
  });

  test('the child gets back its input byte for byte: [] stays [], long numbers and 1.0 unchanged', async (t) => {
    const env = setup(t, { relay: true, allow: ['MultiEdit'] });
    const srv = env.serve();
    await srv.init();
    const input = '{"file_path":"/x","edits":[],"n":12345678901234567,"f":1.0,"s":"a,}]b"}';
    const spec = path.join(env.root, 'ask.txt');
    fs.writeFileSync(spec, `MultiEdit ${input}\n`);
    const { value } = await dispatch(srv, `[stub:ask_file=${spec}]`);
    assert.ok(value.result.includes(`asked MultiEdit: allow updatedInput=${input}`), value.result);
    await srv.close();
  });

  test('a deny rule wins over an allow rule and the child sees why', async (t) => {
    const env = setup(t, { relay: true, allow: ['Bash'], deny: ['Bash(rm:*)'] });
    const srv = env.serve();
    await srv.init();
    const { value } = await dispatch(srv, '[stub:ask=Bash {"command":"ls && rm -rf x"}]');
    assert.match(value.result, /asked Bash: deny message=Denied by the rule Bash\(rm:\*\) of agent a/);
    await srv.close();
  });

  test('a permission request whose tool_name is not a string is denied at once, never shown as "table: 0x..."', async (t) => {
    const env = setup(t, { relay: true }, { tools: `
hook("on_permission", function(req) return "allow" end)
` });
    const srv = env.serve();
    await srv.init();
    for (const tool of ['#5', '#{"name":"Bash"}', '#null', '#""']) {
      const { value } = await dispatch(srv, `[stub:ask=${tool} {"command":"ls"}]`);
      assert.match(value.result, /deny message=The permission request named no tool/, JSON.stringify(value));
      assert.doesNotMatch(JSON.stringify(value), /table: 0x/);
    }
    await srv.close();
  });

  test('on_permission hooks decide allow and deny (with their message); "ask" goes on to the caller', async (t) => {
    const env = setup(t, { relay: true, timeout_seconds: 30 }, { tools: `
hook("on_permission", function(req)
  if req.tool == "Read" then return "allow" end
  if req.tool == "Write" then return "deny", "hook says no to " .. req.input.file_path end
  return "ask"
end)
` });
    const srv = env.serve();
    await srv.init();
    let { value } = await dispatch(srv, '[stub:ask=Read {"file_path":"/x"}]');
    assert.match(value.result, /asked Read: allow updatedInput=\{"file_path":"\/x"\}/);
    ({ value } = await dispatch(srv, '[stub:ask=Write {"file_path":"/y"}]'));
    assert.match(value.result, /asked Write: deny message=hook says no to \/y/);
    ({ value } = await dispatch(srv, '[stub:ask=Edit {"file_path":"/z"}]'));
    assert.strictEqual(value.status, 'awaiting_approval', JSON.stringify(value));
    await srv.call('dispatch_approve', { job_id: value.job_id, request_id: value.pending.request_id,
      decision: 'deny' });
    await srv.close();
  });

  test('a client that declared elicitation (2025-11-25) is asked with elicitation/create; allow and deny', async (t) => {
    const env = setup(t, { relay: true });
    const srv = env.serve();
    await srv.request('initialize', { protocolVersion: '2025-11-25',
      capabilities: { elicitation: { form: {} } }, clientInfo: { name: 'e2e', version: '1' } });
    srv.send({ jsonrpc: '2.0', method: 'notifications/initialized' });
    const call = dispatch(srv, '[stub:ask=Bash {"command":"make test"}]', {}, { id: 'c1' });
    const el = await srv.waitFor((m) => m.method === 'elicitation/create', 15000, 'elicitation/create');
    assert.ok(el.id !== undefined, 'a request, with an id');
    assert.strictEqual(el.params.mode, 'form');
    assert.match(el.params.message, /Agent a asks to use the tool Bash/);
    assert.ok(el.params.message.includes('{"command":"make test"}'), el.params.message);
    assert.deepStrictEqual(el.params.requestedSchema.properties.decision.enum, ['allow', 'deny']);
    // The server stays responsive while it waits for the answer.
    const ping = await srv.request('ping', undefined, { id: 'p1' });
    assert.deepStrictEqual(ping.result, {});
    srv.send({ jsonrpc: '2.0', id: el.id, result: { action: 'accept', content: { decision: 'allow' } } });
    const { value } = await call;
    assert.match(value.result, /asked Bash: allow updatedInput=\{"command":"make test"\}/);

    const call2 = dispatch(srv, '[stub:ask=Bash {"command":"make clean"}]', {}, { id: 'c2' });
    const el2 = await srv.waitFor((m) => m.method === 'elicitation/create' && m.id !== el.id, 15000,
      'second elicitation/create');
    srv.send({ jsonrpc: '2.0', id: el2.id, result: { action: 'accept',
      content: { decision: 'deny', message: 'not the clean target' } } });
    const r2 = await call2;
    assert.match(r2.value.result, /asked Bash: deny message=not the clean target/);
    await srv.close();
  });

  test('elicitation declined, or unanswered within timeout_seconds, denies; the child sees why', async (t) => {
    const env = setup(t, { relay: true, timeout_seconds: 1 });
    const srv = env.serve();
    await srv.request('initialize', { protocolVersion: '2025-06-18',
      capabilities: { elicitation: {} }, clientInfo: { name: 'e2e', version: '1' } });
    srv.send({ jsonrpc: '2.0', method: 'notifications/initialized' });
    const call = dispatch(srv, '[stub:ask=Write {"file_path":"/a"}]', {}, { id: 'd1' });
    const el = await srv.waitFor((m) => m.method === 'elicitation/create', 15000, 'elicitation/create');
    assert.strictEqual(el.params.mode, undefined, '2025-06-18 has no mode');
    srv.send({ jsonrpc: '2.0', id: el.id, result: { action: 'decline' } });
    assert.match((await call).value.result, /asked Write: deny message=The caller declined the permission request/);
    // No answer at all: denied after the timeout, and a late answer is ignored.
    const call2 = dispatch(srv, '[stub:ask=Write {"file_path":"/b"}]', {}, { id: 'd2' });
    const el2 = await srv.waitFor((m) => m.method === 'elicitation/create' && m.id !== el.id, 15000, 'second');
    const { value } = await call2;
    assert.match(value.result, /asked Write: deny message=No answer to the permission request for Write within 1 s/);
    assert.strictEqual(value.permissions[0].by, 'timeout');
    srv.send({ jsonrpc: '2.0', id: el2.id, result: { action: 'accept', content: { decision: 'allow' } } });
    assert.deepStrictEqual((await srv.request('ping', undefined, { id: 'p2' })).result, {});
    await srv.close();
  });

  test('the 2026-07-28 era (stateless: no server requests) gets input_required when it declares elicitation; dispatch_approve answers too', async (t) => {
    const env = setup(t, { relay: true, timeout_seconds: 60 });
    const srv = env.serve();
    const res = await srv.request('tools/call', { name: 'dispatch', arguments: { agent: 'a', task: ASK_GIT },
      _meta: modernMeta({ 'io.modelcontextprotocol/clientCapabilities': { elicitation: { form: {} } } }) },
      { ms: 30000 });
    assert.strictEqual(res.result.resultType, 'input_required', JSON.stringify(res));
    assert.strictEqual(srv.notifications('elicitation/create').length, 0);
    // The waiting job (relay_mrtr.test.js covers the retry that answers it).
    const jobs = (await srv.call('dispatch_jobs', {}, { modern: true })).value;
    const value = { job_id: jobs[0].id };
    value.pending = readRec(env, value.job_id).permissions.pending[0];
    await srv.call('dispatch_approve', { job_id: value.job_id, request_id: value.pending.request_id,
      decision: 'allow' }, { modern: true });
    const rec = await recUntil(env, value.job_id, (r) => r.status === 'done', 20000, 'the end');
    assert.match(rec.result.result, /allow updatedInput=\{"command":"git status"\}/);
    await srv.close();
  });

  test('without elicitation: awaiting_approval, then dispatch_approve allows with the input unchanged', async (t) => {
    const env = setup(t, { relay: true, timeout_seconds: 60 });
    const srv = env.serve();
    await srv.init();
    const { value, id, req } = await awaiting(srv);
    assert.strictEqual(srv.notifications('elicitation/create').length, 0, 'not asked: no elicitation declared');
    assert.strictEqual(value.agent, 'a');
    assert.strictEqual(value.pending.tool, 'Bash');
    assert.deepStrictEqual(value.pending.input, { command: 'git status' });
    assert.strictEqual(value.pending.agent, 'a');
    assert.deepStrictEqual(value.answer, { tool: 'dispatch_approve',
      arguments: { job_id: id, request_id: req, decision: 'allow' } });
    assert.ok(value.hint.includes(`dispatch_approve(job_id="${id}", request_id="${req}"`), value.hint);
    // The pending request shows in dispatch_status and dispatch_jobs.
    const st = (await srv.call('dispatch_status', { job_id: id })).value;
    assert.strictEqual(st.status, 'running');
    assert.strictEqual(st.permissions.pending.length, 1);
    assert.strictEqual(st.permissions.pending[0].request_id, req);
    const list = (await srv.call('dispatch_jobs', {})).value;
    assert.strictEqual(list.find((j) => j.id === id).pending_permissions[0].request_id, req);
    const ap = (await srv.call('dispatch_approve', { job_id: id, request_id: req, decision: 'allow' })).value;
    assert.strictEqual(ap.applied, true, JSON.stringify(ap));
    const done = (await srv.call('dispatch_wait', { job_id: id, timeout_seconds: 20 }, { ms: 30000 })).value;
    assert.strictEqual(done.status, 'done', JSON.stringify(done));
    assert.match(done.result.result, /asked Bash: allow updatedInput=\{"command":"git status"\}/);
    const d = done.permissions.decisions;
    assert.strictEqual(d.length, 1);
    assert.strictEqual(d[0].decision, 'allow');
    assert.strictEqual(d[0].by, 'dispatch_approve');
    assert.strictEqual(d[0].tool, 'Bash');
    assert.strictEqual(typeof d[0].at, 'number');
    assert.strictEqual(d[0].edited, undefined);
    assert.strictEqual(done.permissions.pending.length, 0);
    // One child for the whole call: the hand-off adopted it.
    assert.strictEqual(env.dispatches().length, 1);
    await srv.close();
  });

  // The child works on for 30 s after any answer: a cancel must stop it
  // (interrupt, then its group killed after interrupt_grace_seconds), not
  // let it finish its turn.
  const WORKS_ON = '[stub:ask=Bash {"command":"ls"}] [stub:ask_sleep=30] works on';

  test('dispatch_cancel while the child waits for approval: the child is stopped, not left to finish its turn', async (t) => {
    const env = setup(t, { relay: true, timeout_seconds: 60 });
    const srv = env.serve();
    await srv.init();
    const { id } = await awaiting(srv, WORKS_ON);
    const [child] = env.dispatches();
    const c = (await srv.call('dispatch_cancel', { job_id: id })).value;
    assert.strictEqual(c.outcome, 'cancelled_running', JSON.stringify(c));
    assert.ok(await waitUntil(() => !alive(child.pid), 8000), 'the child worked on after the cancel');
    const rec = (await srv.call('dispatch_status', { job_id: id })).value;
    assert.strictEqual(rec.status, 'cancelled');
    assert.strictEqual(rec.permissions.pending.length, 0, JSON.stringify(rec.permissions));
    await srv.close();
  });

  test('notifications/cancelled while the client is asked (elicitation): the child is stopped', async (t) => {
    const env = setup(t, { relay: true, timeout_seconds: 60 });
    const srv = env.serve();
    await srv.request('initialize', { protocolVersion: '2025-11-25',
      capabilities: { elicitation: { form: {} } }, clientInfo: { name: 'e2e', version: '1' } });
    srv.send({ jsonrpc: '2.0', method: 'notifications/initialized' });
    dispatch(srv, WORKS_ON, {}, { id: 'c9' }).catch(() => {});
    const el = await srv.waitFor((m) => m.method === 'elicitation/create', 15000, 'elicitation/create');
    const [child] = env.dispatches();
    srv.send({ jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: 'c9' } });
    assert.ok(await waitUntil(() => !alive(child.pid), 8000), 'the child worked on after the cancel');
    assert.strictEqual(srv.responsesTo('c9').length, 0, 'a cancelled call gets no response');
    // The question put to the client is withdrawn: its dialog can close.
    const gone = await srv.waitFor((m) => m.method === 'notifications/cancelled' && m.params.requestId === el.id,
      5000, 'notifications/cancelled of the elicitation');
    assert.strictEqual(typeof gone.params.reason, 'string');
    await srv.close();
  });

  test('a request put to the client (elicitation) when the call is handed off: on the job, answered by dispatch_approve', async (t) => {
    const env = newEnv(t);
    const dir = env.project('a');
    env.writeConfig(`agents:\n  a:\n    directory: ${q(dir)}\n    permissions: {"relay": true, "timeout_seconds": 60}\n` +
      'settings:\n  handoff_after_seconds: 1\n');
    const srv = env.serve();
    await srv.request('initialize', { protocolVersion: '2025-11-25',
      capabilities: { elicitation: { form: {} } }, clientInfo: { name: 'e2e', version: '1' } });
    srv.send({ jsonrpc: '2.0', method: 'notifications/initialized' });
    const call = dispatch(srv, '[stub:ask=Bash {"command":"ls"}] handed', {}, { id: 'h1' });
    await srv.waitFor((m) => m.method === 'elicitation/create', 15000, 'elicitation/create');
    // Not answered: at the hand-off the call says what the job waits for.
    const { value } = await call;
    assert.strictEqual(value.status, 'awaiting_approval', JSON.stringify(value));
    const id = value.job_id;
    const req = value.pending.request_id;
    const st = (await srv.call('dispatch_status', { job_id: id })).value;
    assert.strictEqual(st.permissions.pending.length, 1, JSON.stringify(st));
    assert.strictEqual(st.permissions.pending[0].request_id, req);
    const ap = (await srv.call('dispatch_approve', { job_id: id, request_id: req, decision: 'allow' })).value;
    assert.strictEqual(ap.applied, true, JSON.stringify(ap));
    const done = (await srv.call('dispatch_wait', { job_id: id, timeout_seconds: 20 }, { ms: 30000 })).value;
    assert.strictEqual(done.status, 'done', JSON.stringify(done));
    assert.match(done.result.result, /asked Bash: allow/);
    assert.strictEqual(done.permissions.decisions.length, 1);
    assert.strictEqual(done.permissions.decisions[0].by, 'dispatch_approve');
    await srv.close();
  });

  test('updated_input is used (and recorded as an edit) only when the caller sends it', async (t) => {
    const env = setup(t, { relay: true, timeout_seconds: 60 });
    const srv = env.serve();
    await srv.init();
    const { id, req } = await awaiting(srv);
    const ap = (await srv.call('dispatch_approve', { job_id: id, request_id: req, decision: 'allow',
      updated_input: { command: 'git status --short' } })).value;
    assert.strictEqual(ap.edited, true);
    const done = (await srv.call('dispatch_wait', { job_id: id, timeout_seconds: 20 }, { ms: 30000 })).value;
    assert.match(done.result.result, /allow updatedInput=\{"command":"git status --short"\}/);
    assert.strictEqual(done.permissions.decisions[0].edited, true);
    assert.deepStrictEqual(done.permissions.decisions[0].updated_input, { command: 'git status --short' });
    await srv.close();
  });

  test('dispatch_approve refuses what answers nothing: a wrong request id, a bad decision', async (t) => {
    const env = setup(t, { relay: true, timeout_seconds: 60 });
    const srv = env.serve();
    await srv.init();
    const { id, req } = await awaiting(srv);
    let r = await srv.call('dispatch_approve', { job_id: id, request_id: 'nope', decision: 'allow' });
    assert.match(JSON.stringify(r.value), /no pending permission request 'nope'/);
    r = await srv.call('dispatch_approve', { job_id: id, request_id: req, decision: 'maybe' });
    assert.match(JSON.stringify(r.value), /decision must be \\"allow\\" or \\"deny\\"/);
    await srv.call('dispatch_approve', { job_id: id, request_id: req, decision: 'deny' });
    await srv.call('dispatch_wait', { job_id: id, timeout_seconds: 20 }, { ms: 30000 });
    await srv.close();
  });

  test('CLI job shows the pending request; CLI deny --message reaches the child; CLI approve allows', async (t) => {
    const env = setup(t, { relay: true, timeout_seconds: 60 });
    const srv = env.serve();
    await srv.init();
    let { id, req } = await awaiting(srv);
    const shown = env.run(['job', id]);
    assert.strictEqual(shown.code, 0, shown.stderr);
    assert.match(shown.stdout, /awaiting approval:/);
    assert.ok(shown.stdout.includes(req), shown.stdout);
    assert.ok(shown.stdout.includes(`agent-dispatch approve ${id} ${req}`), shown.stdout);
    const denied = env.run(['deny', id.slice(0, 8), '--message', 'use git log instead']);
    assert.strictEqual(denied.code, 0, denied.stderr);
    let done = (await srv.call('dispatch_wait', { job_id: id, timeout_seconds: 20 }, { ms: 30000 })).value;
    assert.match(done.result.result, /asked Bash: deny message=use git log instead/);
    assert.strictEqual(done.permissions.decisions[0].by, 'cli');
    assert.strictEqual(done.permissions.decisions[0].decision, 'deny');

    ({ id, req } = await awaiting(srv));
    const ok = env.run(['approve', id, req]);
    assert.strictEqual(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, /Allowed: Bash/);
    done = (await srv.call('dispatch_wait', { job_id: id, timeout_seconds: 20 }, { ms: 30000 })).value;
    assert.match(done.result.result, /asked Bash: allow updatedInput=\{"command":"git status"\}/);
    const shownAfter = env.run(['job', id]).stdout;
    assert.match(shownAfter, /allow Bash by cli/);
    await srv.close();
  });

  test('an unanswered request is denied after timeout_seconds and the child sees why', async (t) => {
    const env = setup(t, { relay: true, timeout_seconds: 1 });
    const srv = env.serve();
    await srv.init();
    const { id } = await awaiting(srv);
    // While it waits, dispatch_wait says so at once.
    const w = (await srv.call('dispatch_wait', { job_id: id, timeout_seconds: 20 }, { ms: 30000 })).value;
    assert.ok(w.awaiting_approval === true || w.status === 'done', JSON.stringify(w));
    const done = await recUntil(env, id, (r) => r.status === 'done', 20000, 'the job to end');
    assert.match(done.result.result, /asked Bash: deny message=No decision on the permission request for Bash within 1 s/);
    assert.strictEqual(done.permissions.decisions[0].by, 'timeout');
    // Too late now: the request is no longer pending.
    const late = env.run(['approve', id]);
    assert.notStrictEqual(late.code, 0);
    assert.match(late.stderr, /has ended|already decided|no pending/);
    await srv.close();
  });

  test('a call that can neither elicit nor hand off (handoff_after_seconds 0, CLI dispatch) denies and says why', async (t) => {
    const env = setup(t, { relay: true, timeout_seconds: 60 });
    const srv = env.serve();
    await srv.init();
    const { value } = await dispatch(srv, ASK_GIT, { handoff_after_seconds: 0 });
    assert.match(value.result, /asked Bash: deny message=The use of Bash needs the caller's approval, but this call can neither ask/);
    assert.strictEqual(value.permissions[0].by, 'relay');
    await srv.close();
    const cli = env.run(['dispatch', 'a', ASK_GIT]);
    assert.strictEqual(cli.code, 0, cli.stderr);
    assert.match(cli.stdout, /asked Bash: deny message=The use of Bash needs the caller's approval/);
  });

  test('a background job (dispatch_async) records rule decisions and waits for approval of the rest', async (t) => {
    const env = setup(t, { relay: true, timeout_seconds: 60, deny: ['Bash(rm:*)'] });
    const srv = env.serve();
    await srv.init();
    const { value } = await srv.call('dispatch_async', { agent: 'a',
      task: '[stub:ask=Bash {"command":"rm -rf build"}]' });
    let rec = (await srv.call('dispatch_wait', { job_id: value.job_id, timeout_seconds: 20 }, { ms: 30000 })).value;
    assert.match(rec.result.result, /deny message=Denied by the rule Bash\(rm:\*\)/);
    assert.strictEqual(rec.permissions.decisions[0].by, 'rule');
    assert.strictEqual(rec.permissions.decisions[0].rule, 'Bash(rm:*)');

    const j = (await srv.call('dispatch_async', { agent: 'a', task: ASK_GIT })).value;
    // dispatch_wait returns as soon as the agent waits for a decision.
    const t0 = Date.now();
    const w = (await srv.call('dispatch_wait', { job_id: j.job_id, timeout_seconds: 60 }, { ms: 30000 })).value;
    assert.ok(Date.now() - t0 < 20000, 'dispatch_wait returned early');
    assert.strictEqual(w.awaiting_approval, true, JSON.stringify(w));
    assert.strictEqual(w.status, 'running');
    assert.strictEqual(w.permissions.pending[0].tool, 'Bash');
    assert.ok(w.hint.includes(`dispatch_approve(job_id="${j.job_id}"`), w.hint);
    rec = await recUntil(env, j.job_id, (r) => r.permissions && r.permissions.pending.length === 1,
      15000, 'a pending request');
    const cli = env.run(['approve', j.job_id]);
    assert.strictEqual(cli.code, 0, cli.stderr);
    rec = (await srv.call('dispatch_wait', { job_id: j.job_id, timeout_seconds: 20 }, { ms: 30000 })).value;
    assert.match(rec.result.result, /asked Bash: allow updatedInput=\{"command":"git status"\}/);
    assert.strictEqual(rec.permissions.decisions[0].by, 'cli');
    await srv.close();
  });

  test('a request pending when the process running its job dies is closed with the job, not left pending', async (t) => {
    const env = setup(t, { relay: true, timeout_seconds: 60 });
    // A handed-off call whose server is killed: the keeper ends the job.
    const srv = env.serve();
    await srv.init();
    const { value } = await dispatch(srv, `${ASK_GIT} [stub:ask_sleep=1] kill9`);
    assert.strictEqual(value.status, 'awaiting_approval', JSON.stringify(value));
    srv.child.kill('SIGKILL');
    await srv.exited;
    const fin = await recUntil(env, value.job_id, (x) => ['done', 'failed', 'cancelled'].includes(x.status), 20000, 'its end');
    assert.deepStrictEqual(fin.permissions.pending, [], JSON.stringify(fin.permissions));
    assert.strictEqual(fin.permissions.decisions.length, 1, JSON.stringify(fin.permissions));
    assert.strictEqual(fin.permissions.decisions[0].decision, 'deny');
    assert.strictEqual(fin.permissions.decisions[0].by, 'relay');
    // A detached job whose runner is killed while its child asks.
    const srv2 = env.serve();
    await srv2.init();
    const id2 = (await srv2.call('dispatch_async', { agent: 'a', task: `${ASK_GIT} runner-kill` })).value.job_id;
    const rec2 = await recUntil(env, id2, (x) => x.permissions && x.permissions.pending && x.permissions.pending.length, 15000, 'pending');
    process.kill(rec2.server.pid, 'SIGKILL');
    let st;
    for (let i = 0; i < 50; i++) {
      st = (await srv2.call('dispatch_status', { job_id: id2 })).value;
      if (st.status !== 'running') break;
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.strictEqual(st.status, 'failed', JSON.stringify(st));
    assert.deepStrictEqual(st.permissions.pending, [], JSON.stringify(st.permissions));
    await srv2.close();
    // The SIGTERM of a server (Claude Code's stop) is no cancel: a request
    // whose wait it ends is recorded as one nobody could be asked.
    const srv3 = env.serve();
    await srv3.init();
    const v3 = (await dispatch(srv3, `${ASK_GIT} [stub:ask_sleep=1] term`)).value;
    srv3.child.kill('SIGTERM');
    await srv3.exited;
    const fin3 = await recUntil(env, v3.job_id, (x) => ['done', 'failed', 'cancelled'].includes(x.status), 20000, 'its end');
    for (const d of fin3.permissions.decisions) {
      assert.notStrictEqual(d.by, 'cancel', JSON.stringify(fin3.permissions));
      assert.doesNotMatch(d.message || '', /cancelled/, JSON.stringify(fin3.permissions));
    }
    assert.deepStrictEqual(fin3.permissions.pending, []);
  });

  test('a decision message is bounded as a steer is: the CLI refuses a longer one, nothing is delivered', async (t) => {
    const env = setup(t, { relay: true, timeout_seconds: 60 });
    const srv = env.serve();
    await srv.init();
    const id = (await srv.call('dispatch_async', { agent: 'a', task: `${ASK_GIT} long deny` })).value.job_id;
    await recUntil(env, id, (x) => x.permissions && x.permissions.pending && x.permissions.pending.length, 15000, 'pending');
    const big = env.run(['deny', id, '--message', 'x'.repeat(40000)]);
    assert.strictEqual(big.code, 1, big.stderr);
    assert.match(big.stderr, /at most 32768/);
    assert.strictEqual(readRec(env, id).permissions.pending.length, 1, 'delivered anyway');
    const ok = env.run(['deny', id, '--message', 'no']);
    assert.strictEqual(ok.code, 0, ok.stderr);
    const done = await recUntil(env, id, (x) => x.status === 'done', 20000, 'its end');
    assert.match(done.result.result, /asked Bash: deny message=no/);
    await srv.close();
  });
});
