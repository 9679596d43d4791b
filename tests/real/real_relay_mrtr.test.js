// The permission relay for a 2026-07-28 client with the REAL Claude Code
// CLI against the loopback mock: the model asks to run a Bash command the
// agent's settings do not allow; the child asks can_use_tool over its
// control channel; the caller's tools/call (a 2026-07-28 request that
// declares elicitation) is answered with an InputRequiredResult whose
// elicitation form names the command; the client retries the call with
// inputResponses (allow) and the requestState, and that retry returns the
// child's finished result: the command ran.
//
//   AD_BIN=build/agent-dispatch node --test tests/real/real_relay_mrtr.test.js
'use strict';

const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('fs');
const os = require('os');
const path = require('path');
const h = require('./claude-harness');

const AD = path.resolve(h.adBin());
const META = {
  'io.modelcontextprotocol/protocolVersion': '2026-07-28',
  'io.modelcontextprotocol/clientCapabilities': { elicitation: { form: {} } },
  'io.modelcontextprotocol/clientInfo': { name: 'real_relay_mrtr.test.js', version: '1' },
};
let BIN = null;
let mock = null;
let root = null;

describe('permission relay over MRTR with the real Claude Code CLI', () => {
  before(async () => {
    BIN = h.claudeBin();
    root = fs.mkdtempSync(path.join(os.tmpdir(), 'ad-real-mrtr.'));
    mock = await h.startMock({ log: path.join(root, 'mock.jsonl') });
  });

  after(async () => {
    if (mock) await mock.stop();
    if (root) fs.rmSync(root, { recursive: true, force: true });
  });

  it('a 2026-07-28 client allows the Bash call through input_required; the retry returns the result',
    { timeout: 200000 }, async () => {
      const home = path.join(root, 'home');
      const proj = path.join(root, 'proj');
      fs.mkdirSync(home, { recursive: true });
      fs.mkdirSync(proj, { recursive: true });
      const config = path.join(root, 'agents.yaml');
      h.writeAgents(config, { worker: { directory: proj, timeout: 120,
        permissions: { relay: true, timeout_seconds: 90 } } });
      const env = h.claudeEnv({ port: mock.port, home, extra: { AGENT_DISPATCH_CONFIG: config,
        AGENT_DISPATCH_JOBS_DIR: path.join(root, 'jobs'), AGENT_DISPATCH_CLAUDE: BIN } });
      const s = h.startServer({ env, cwd: root, bin: AD });
      try {
        const file = path.join(proj, 'mrtr.txt');
        const args = { agent: 'worker', task: `[mock:tool=Bash:touch ${file}] create the marker file`,
          handoff_after_seconds: 120 };
        const first = (await s.request('tools/call', { name: 'dispatch', arguments: args, _meta: META },
          { timeoutMs: 90000 })).response;
        const r = first.result;
        assert.equal(r && r.resultType, 'input_required', JSON.stringify(first).slice(0, 800));
        const [key] = Object.keys(r.inputRequests);
        const form = r.inputRequests[key];
        assert.equal(form.method, 'elicitation/create');
        assert.equal(form.params.mode, 'form');
        assert.ok(form.params.message.includes(`touch ${file}`), form.params.message);
        assert.ok(!fs.existsSync(file), 'nothing ran before the decision');
        const retry = (await s.request('tools/call', { name: 'dispatch', arguments: args, _meta: META,
          inputResponses: { [key]: { action: 'accept', content: { decision: 'allow' } } },
          requestState: r.requestState }, { timeoutMs: 150000 })).response;
        assert.equal(retry.result && retry.result.resultType, 'complete', JSON.stringify(retry).slice(0, 800));
        const v = s.toolResult(retry);
        assert.equal(v.success, true, JSON.stringify(v).slice(0, 800));
        assert.match(v.result, /^TOOL DONE: /);
        assert.ok(fs.existsSync(file), 'the approved command created its file');
      } finally {
        await s.close();
      }
    });
});
