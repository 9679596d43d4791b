'use strict';
// What the server says and what it lets through: the instructions sent at
// initialize name every tool a caller needs for the flows they describe,
// and redact hooks see every text a result carries that came from the
// child, including the permission decisions of a relayed run.
const { test, describe } = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const path = require('node:path');
const { newEnv, q } = require('./lib');

describe('server text', () => {
  test('the initialize instructions name dispatch_steer and dispatch_approve', async (t) => {
    const env = newEnv(t);
    env.writeConfig(`agents:\n  a:\n    directory: ${q(env.project('a'))}\n`);
    const srv = env.serve();
    const res = (await srv.init()).result;
    assert.strictEqual(typeof res.instructions, 'string');
    for (const name of ['dispatch_steer', 'dispatch_approve', 'dispatch_async', 'dispatch_wait']) {
      assert.ok(res.instructions.includes(name), `${name} missing from: ${res.instructions}`);
    }
    await srv.close();
  });
});

describe('redact hooks and permission decisions', () => {
  // An on_permission hook denies with a message that quotes the child's
  // input; the redact hook must clean it wherever the result carries it.
  const TOOLS = `
hook("on_permission", function(req)
  return "deny", "no writes to " .. req.input.file_path
end)
hook("redact", function(text)
  return (text:gsub("SECRET%-%d+", "[redacted]"))
end)
`;
  function setup(t) {
    const env = newEnv(t);
    env.writeConfig(`agents:\n  a:\n    directory: ${q(env.project('a'))}\n` +
      '    permissions: {"relay": true, "timeout_seconds": 30}\n');
    const td = path.join(env.cfgDir, 'tools');
    fs.mkdirSync(td, { mode: 0o700 });
    fs.writeFileSync(path.join(td, 'perm.lua'), TOOLS, { mode: 0o600 });
    return env;
  }
  const TASK = '[stub:ask=Write {"file_path":"/srv/SECRET-4711"}]';

  test('a sync dispatch: the decision\'s message in permissions is redacted', async (t) => {
    const env = setup(t);
    const srv = env.serve();
    await srv.init();
    const { value } = await srv.call('dispatch', { agent: 'a', task: TASK }, { ms: 30000 });
    assert.strictEqual(value.success, true, JSON.stringify(value));
    assert.strictEqual(value.permissions.length, 1, JSON.stringify(value));
    assert.strictEqual(value.permissions[0].decision, 'deny');
    assert.strictEqual(value.permissions[0].message, 'no writes to /srv/[redacted]');
    assert.ok(!JSON.stringify(value).includes('SECRET-4711'), JSON.stringify(value));
    await srv.close();
  });

  test('a job: the result dispatch_wait returns carries redacted decisions', async (t) => {
    const env = setup(t);
    const srv = env.serve();
    await srv.init();
    const { value: started } = await srv.call('dispatch_async', { agent: 'a', task: TASK });
    assert.ok(started.job_id, JSON.stringify(started));
    const { value } = await srv.call('dispatch_wait', { job_id: started.job_id, timeout_seconds: 30 },
      { ms: 40000 });
    const text = JSON.stringify(value);
    assert.strictEqual(value.status, 'done', text);
    // The job's result and its record's decisions.
    assert.strictEqual(value.result.permissions[0].message, 'no writes to /srv/[redacted]', text);
    assert.strictEqual(value.permissions.decisions[0].message, 'no writes to /srv/[redacted]', text);
    // The task is the caller's own text; nothing else carries the secret.
    assert.ok(!text.replaceAll(JSON.stringify(TASK).slice(1, -1), '').includes('SECRET-4711'), text);
    await srv.close();
  });
});
