'use strict';
// The permission relay seen from the official TypeScript MCP SDK client
// (@modelcontextprotocol/sdk, the pinned version that install-mcp-sdk.sh
// puts in tests/.cache/mcp-sdk; AD_MCP_SDK names its node_modules). The
// client declares form elicitation and answers elicitation/create with a
// handler registered for ElicitRequestSchema, as a host does. The stub's
// [stub:ask=TOOL JSON] makes the child ask, and its result says exactly
// what it was answered.
//
// The pinned SDK speaks the 2025 eras only (its SUPPORTED_PROTOCOL_VERSIONS
// end at 2025-11-25): the 2026-07-28 input_required route is covered by
// relay_mrtr.test.js with a raw client, not here.
const { test, describe } = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const path = require('node:path');
const { createRequire } = require('node:module');
const { BIN, newEnv, q } = require('./lib');

const SDK_DIR = process.env.AD_MCP_SDK || path.resolve(__dirname, '../.cache/mcp-sdk/node_modules');
// No fallback: without the SDK this file fails (the install step is the
// mcp_sdk_install test, a fixture of this one).
const sdkRequire = createRequire(path.join(SDK_DIR, 'x.js'));
const { Client } = sdkRequire('@modelcontextprotocol/sdk/client/index.js');
const { StdioClientTransport } = sdkRequire('@modelcontextprotocol/sdk/client/stdio.js');
const { ElicitRequestSchema, LATEST_PROTOCOL_VERSION, SUPPORTED_PROTOCOL_VERSIONS } =
  sdkRequire('@modelcontextprotocol/sdk/types.js');

// What the child asks: input whose bytes a decode/encode would change
// ([] would become {}, 1.0 would become 1, the long number would round).
const INPUT = '{"command":"make  test","timeout":1.0,"n":12345678901234567890,"env":[]}';

/** A config with agent a (relay on), and an SDK client connected to serve. */
async function connect(t, perms = { relay: true, timeout_seconds: 60 }) {
  // Registered before the Env's own check that nothing is left running:
  // the client closes the server's stdin (then SIGTERM after 2 s) first.
  let client = null;
  t.after(() => client && client.close());
  const env = newEnv(t);
  const dir = env.project('a');
  env.writeConfig(`agents:\n  a:\n    directory: ${q(dir)}\n    permissions: ${JSON.stringify(perms)}\n`);
  const transport = new StdioClientTransport({ command: BIN, args: ['serve'], env: env.env(),
    cwd: env.root, stderr: 'ignore' });
  let negotiated = null;
  // The SDK tells its transport the version initialize agreed on.
  transport.setProtocolVersion = (v) => { negotiated = v; };
  client = new Client({ name: 'sdk-e2e', version: '1' },
    { capabilities: { elicitation: { form: {} } } });
  const asked = [];
  let answer = null;
  client.setRequestHandler(ElicitRequestSchema, async (req) => {
    asked.push(req.params);
    return answer(req.params);
  });
  const spec = path.join(env.root, 'ask.txt');
  fs.writeFileSync(spec, `Bash ${INPUT}\n`);
  await client.connect(transport);
  env.extraPids.push(transport.pid);
  return { env, client, asked, ask: `[stub:ask_file=${spec}]`, setAnswer: (f) => { answer = f; },
    negotiated: () => negotiated };
}

async function dispatch(client, task, extra = {}) {
  const res = await client.callTool({ name: 'dispatch', arguments: { agent: 'a', task, ...extra } },
    undefined, { timeout: 60000 });
  assert.strictEqual(res.content[0].type, 'text');
  return JSON.parse(res.content[0].text);
}

/** Checks the elicitation/create the SDK handler got for the ask. */
function checkAsked(p) {
  assert.strictEqual(p.mode, 'form');
  assert.match(p.message, /^Agent a asks to use the tool Bash/);
  assert.ok(p.message.includes(`\nInput:\n${INPUT}\n`), p.message);
  assert.deepStrictEqual(p.requestedSchema.properties.decision.enum, ['allow', 'deny']);
  assert.deepStrictEqual(p.requestedSchema.required, ['decision']);
}

describe('permission relay with the MCP SDK client', () => {
  test('the pinned SDK speaks 2025-11-25 at most (no 2026-07-28 client to test)', () => {
    assert.strictEqual(LATEST_PROTOCOL_VERSION, '2025-11-25');
    assert.ok(!SUPPORTED_PROTOCOL_VERSIONS.includes('2026-07-28'), SUPPORTED_PROTOCOL_VERSIONS.join());
  });

  test('accept with allow: the handler got the tool, input byte for byte and agent; the tool ran', async (t) => {
    const c = await connect(t);
    assert.strictEqual(c.negotiated(), '2025-11-25');
    c.setAnswer(() => ({ action: 'accept', content: { decision: 'allow' } }));
    const value = await dispatch(c.client, c.ask);
    assert.strictEqual(c.asked.length, 1);
    checkAsked(c.asked[0]);
    assert.strictEqual(value.success, true, JSON.stringify(value));
    assert.ok(value.result.includes(`asked Bash: allow updatedInput=${INPUT}`), value.result);
    assert.strictEqual(value.permissions.length, 1);
    assert.strictEqual(value.permissions[0].decision, 'allow');
    assert.strictEqual(value.permissions[0].by, 'elicitation');
    assert.strictEqual(value.permissions[0].tool, 'Bash');
  });

  test('decline, and accept with deny: denied, the child sees why, the decision is by elicitation', async (t) => {
    const c = await connect(t);
    c.setAnswer(() => ({ action: 'decline' }));
    let value = await dispatch(c.client, c.ask);
    checkAsked(c.asked[0]);
    assert.match(value.result, /asked Bash: deny message=The caller declined the permission request/);
    assert.strictEqual(value.permissions[0].decision, 'deny');
    assert.strictEqual(value.permissions[0].by, 'elicitation');

    c.setAnswer(() => ({ action: 'accept', content: { decision: 'deny', message: 'run make check instead' } }));
    value = await dispatch(c.client, c.ask);
    assert.strictEqual(c.asked.length, 2);
    assert.match(value.result, /asked Bash: deny message=run make check instead/);
    assert.strictEqual(value.permissions[0].by, 'elicitation');
  });
});
