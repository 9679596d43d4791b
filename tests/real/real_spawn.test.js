// agent-dispatch with the REAL Claude Code CLI against the loopback mock:
// a prompt far over one argument's limit (128 KiB on Linux) reaches the
// model whole, over stdin, in both output modes.
//
//   AD_BIN=build/agent-dispatch node --test tests/real/real_spawn.test.js
'use strict';

const { describe, it } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('crypto');
const fs = require('fs');
const path = require('path');
const h = require('./claude-harness');

const AD = path.resolve(h.adBin());
let BIN = null;
let mock = null;
let root = null;
let mockLog = null;

function area(name) {
  const dir = path.join(root, name);
  const home = path.join(dir, 'home');
  const proj = path.join(dir, 'proj');
  fs.mkdirSync(home, { recursive: true });
  fs.mkdirSync(proj);
  const config = path.join(dir, 'agents.yaml');
  h.writeAgents(config, { worker: { directory: proj, timeout: 90 } });
  const env = h.claudeEnv({ port: mock.port, home, extra: {
    AGENT_DISPATCH_CONFIG: config, AGENT_DISPATCH_JOBS_DIR: path.join(dir, 'jobs'),
    AGENT_DISPATCH_CLAUDE: BIN } });
  return { dir, env };
}

function requestsWithDigest(sha) {
  return fs.readFileSync(mockLog, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l))
    .filter((e) => e.prompt_sha256 === sha);
}

describe('large prompts with the real Claude Code CLI', () => {
  h.mockSuite('ad-real-spawn.', (s) => ({ bin: BIN, root, mock, mockLog } = s));

  for (const tool of ['dispatch', 'dispatch_stream']) {
    it(`${tool}: a 300 KiB prompt reaches the model whole`, { timeout: 120000 }, async () => {
      const a = area(tool);
      const s = h.startServer({ env: a.env, cwd: a.dir, bin: AD });
      try {
        await s.initialize();
        // Distinct lines (the CLI must not see one repeated word) and the
        // directive at the very end: only a complete prompt gets the reply.
        const lines = [];
        for (let i = 0; lines.join('\n').length < 300 * 1024; i++) lines.push(`line ${i} of a long context ${tool}`);
        const task = `${lines.join('\n')}\n[mock:reply=LONG PROMPT SEEN]`;
        const { response } = await s.callTool(tool, { agent: 'worker', task }, { timeoutMs: 100000 });
        const r = s.toolResult(response);
        assert.equal(r.success, true, JSON.stringify(r).slice(0, 500));
        assert.equal(r.result, 'LONG PROMPT SEEN');
        const sha = crypto.createHash('sha256').update(task).digest('hex');
        const seen = requestsWithDigest(sha);
        assert.ok(seen.length >= 1, 'the mock never saw the whole prompt');
        assert.equal(seen[0].prompt_chars, task.length);
      } finally {
        await s.close();
      }
    });
  }
});
