// agent-dispatch with the REAL Claude Code CLI against the loopback mock:
// response_schema becomes --json-schema (the CLI offers the model its
// StructuredOutput tool with that schema; the mock calls it), a matching
// answer comes back as structured_output and a run that ends without one
// is error_type "schema"; a subscription to a job's resource hears when
// the job ends.
//
//   AD_BIN=build/agent-dispatch node --test tests/real/real_notify.test.js
'use strict';

const { describe, it } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('fs');
const path = require('path');
const h = require('./claude-harness');

const AD = path.resolve(h.adBin());
const SCHEMA = { type: 'object', properties: { answer: { type: 'string' } }, required: ['answer'],
  additionalProperties: false };
let BIN = null;
let mock = null;
let root = null;
let mockLog = null;

function area(name, settings) {
  const dir = path.join(root, name);
  const home = path.join(dir, 'home');
  const proj = path.join(dir, 'proj');
  fs.mkdirSync(home, { recursive: true });
  fs.mkdirSync(proj);
  const config = path.join(dir, 'agents.yaml');
  h.writeAgents(config, { worker: { directory: proj, timeout: 90 } }, settings);
  const env = h.claudeEnv({ port: mock.port, home, extra: {
    AGENT_DISPATCH_CONFIG: config, AGENT_DISPATCH_JOBS_DIR: path.join(dir, 'jobs'),
    AGENT_DISPATCH_CLAUDE: BIN } });
  return { dir, env, jobs: path.join(dir, 'jobs') };
}

function mockEntries(marker) {
  return fs.readFileSync(mockLog, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l))
    .filter((e) => JSON.stringify(e.messages || []).includes(marker));
}

async function until(pred, ms) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (pred()) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return pred();
}

describe('response_schema and job resources with the real Claude Code CLI', () => {
  h.mockSuite('ad-real-notify.', (s) => ({ bin: BIN, root, mock, mockLog } = s));

  it('a matching StructuredOutput answer is structured_output', { timeout: 120000 }, async () => {
    const a = area('schema-ok');
    const s = h.startServer({ env: a.env, cwd: a.dir, bin: AD });
    try {
      await s.initialize();
      const { response } = await s.callTool('dispatch', { agent: 'worker',
        task: 'schema-ok [mock:structured={"answer":"42"}]', response_schema: SCHEMA },
      { timeoutMs: 90000 });
      const r = s.toolResult(response);
      assert.equal(r.success, true, JSON.stringify(r));
      assert.deepEqual(r.structured_output, { answer: '42' });
      assert.equal(response.result.isError, false);
      // The CLI offered the model the schema as its StructuredOutput tool.
      const asked = mockEntries('schema-ok').find((e) => e.structured_schema);
      assert.ok(asked, 'the CLI did not offer a StructuredOutput tool');
      assert.deepEqual(asked.structured_schema.properties, SCHEMA.properties);
      assert.deepEqual(asked.structured_schema.required, SCHEMA.required);
    } finally {
      await s.close();
    }
  });

  it('an answer that does not match ends as error_type "schema"', { timeout: 120000 }, async () => {
    const a = area('schema-bad');
    const s = h.startServer({ env: a.env, cwd: a.dir, bin: AD });
    try {
      await s.initialize();
      const { response } = await s.callTool('dispatch', { agent: 'worker',
        task: 'schema-bad [mock:structured={"wrong":1}]', response_schema: JSON.stringify(SCHEMA) },
      { timeoutMs: 90000 });
      const r = s.toolResult(response);
      assert.equal(response.result.isError, true);
      assert.equal(r.success, false, JSON.stringify(r));
      assert.equal(r.error_type, 'schema');
      assert.match(r.hint, /dispatch again/);
      assert.ok(r.session_id);
      assert.ok(!('structured_output' in r));
      // The CLI refused the input and asked the model again.
      assert.ok(mockEntries('schema-bad').some((e) => /structured-output-enforce/.test(JSON.stringify(e.messages))));
    } finally {
      await s.close();
    }
  });

  it('a subscription to a job resource hears when the job ends', { timeout: 120000 }, async () => {
    const a = area('resource', { jobs_outlive_server: true });
    const s = h.startServer({ env: a.env, cwd: a.dir, bin: AD });
    let runner = null;
    try {
      const init = await s.initialize();
      assert.equal(init.capabilities.resources.subscribe, true);
      const { response } = await s.callTool('dispatch_async', { agent: 'worker',
        task: 'resource-job [mock:sleep=2] [mock:reply=job answer]' });
      const job = s.toolResult(response);
      const uri = `agent-dispatch://jobs/${job.job_id}`;
      assert.equal(job.resource, uri);
      const sub = await s.request('resources/subscribe', { uri });
      assert.deepEqual(sub.response.result, {});
      const rec = () => {
        try { return JSON.parse(fs.readFileSync(path.join(a.jobs, `${job.job_id}.json`), 'utf8')); } catch { return null; }
      };
      const updated = () => s.messages.filter((m) => m.msg && m.msg.method === 'notifications/resources/updated'
        && m.msg.params.uri === uri);
      const ok = await until(() => {
        const r = rec();
        if (r && r.server) runner = r.server.pid;
        return r && r.status === 'done' && updated().some((m) => m.at >= r.completed_at * 1000 - 50);
      }, 90000);
      assert.ok(ok, `no update after the job ended: ${JSON.stringify(rec())}\n${s.stderr.slice(-2000)}`);
      const { response: read } = await s.request('resources/read', { uri });
      const body = JSON.parse(read.result.contents[0].text);
      assert.equal(body.status, 'done');
      assert.equal(body.result.result, 'job answer');
    } finally {
      await s.close();
      if (runner) await until(() => { try { process.kill(runner, 0); return false; } catch { return true; } }, 10000);
    }
  });
});
