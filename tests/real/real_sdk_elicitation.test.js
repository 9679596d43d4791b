// The permission relay with the REAL Claude Code CLI against the loopback
// mock, asked through the official TypeScript MCP SDK client
// (@modelcontextprotocol/sdk, pinned in tests/e2e/install-mcp-sdk.sh): the
// client declares form elicitation, the model asks to run a Bash command
// the agent's settings do not allow, the SDK's elicitation/create handler
// approves it, and the command ran.
//
//   AD_BIN=build/agent-dispatch node --test tests/real/real_sdk_elicitation.test.js
'use strict';

const { describe, it } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('fs');
const path = require('path');
const { createRequire } = require('module');
const h = require('./claude-harness');

const SDK_DIR = process.env.AD_MCP_SDK || path.resolve(__dirname, '../.cache/mcp-sdk/node_modules');
const sdkRequire = createRequire(path.join(SDK_DIR, 'x.js'));
const { Client } = sdkRequire('@modelcontextprotocol/sdk/client/index.js');
const { StdioClientTransport } = sdkRequire('@modelcontextprotocol/sdk/client/stdio.js');
const { ElicitRequestSchema } = sdkRequire('@modelcontextprotocol/sdk/types.js');

const AD = path.resolve(h.adBin());
let BIN = null;
let mock = null;
let root = null;

describe('permission relay with the real Claude Code CLI and the MCP SDK client', () => {
  h.mockSuite('ad-real-sdk.', (s) => ({ bin: BIN, root, mock } = s));

  it('the SDK client approves a Bash call by elicitation: the command ran', { timeout: 150000 }, async () => {
    const dir = path.join(root, 'case1');
    const home = path.join(dir, 'home');
    const proj = path.join(dir, 'proj');
    fs.mkdirSync(home, { recursive: true });
    fs.mkdirSync(proj, { recursive: true });
    const config = path.join(dir, 'agents.yaml');
    h.writeAgents(config, { worker: { directory: proj, timeout: 120,
      permissions: { relay: true, timeout_seconds: 90 } } });
    const env = h.claudeEnv({ port: mock.port, home, extra: {
      AGENT_DISPATCH_CONFIG: config, AGENT_DISPATCH_JOBS_DIR: path.join(dir, 'jobs'),
      AGENT_DISPATCH_CLAUDE: BIN } });
    const transport = new StdioClientTransport({ command: AD, args: ['serve'], env, cwd: dir, stderr: 'pipe' });
    const client = new Client({ name: 'sdk-real', version: '1' }, { capabilities: { elicitation: { form: {} } } });
    const file = path.join(proj, 'approved.txt');
    const asked = [];
    client.setRequestHandler(ElicitRequestSchema, async (req) => {
      asked.push(req.params);
      // Nothing ran before the decision.
      return { action: 'accept', content: { decision: fs.existsSync(file) ? 'deny' : 'allow' } };
    });
    await client.connect(transport);
    try {
      const res = await client.callTool({ name: 'dispatch', arguments: { agent: 'worker',
        task: `[mock:tool=Bash:touch ${file}] create the marker file` } }, undefined, { timeout: 120000 });
      const v = JSON.parse(res.content[0].text);
      assert.equal(asked.length, 1, JSON.stringify(asked));
      assert.equal(asked[0].mode, 'form');
      assert.match(asked[0].message, /^Agent worker asks to use the tool Bash/);
      assert.ok(asked[0].message.includes(`"command":"touch ${file}"`), asked[0].message);
      assert.equal(v.success, true, JSON.stringify(v).slice(0, 800));
      assert.ok(fs.existsSync(file), 'the approved command created its file');
      assert.match(v.result, /^TOOL DONE: /);
      assert.equal(v.permissions[0].by, 'elicitation');
      assert.equal(v.permissions[0].decision, 'allow');
      assert.equal(v.permissions[0].tool, 'Bash');
    } finally {
      await client.close();
    }
  });
});
