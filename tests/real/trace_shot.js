// Run: AD_BIN=build/agent-dispatch node tests/real/trace_shot.js [OUT.png] [HEIGHT]  (makes docs/trace.png)
//
// The picture of a real delegation tree: `agent-dispatch serve` runs a
// dispatch_parallel of four agents with an aggregator through the REAL
// Claude Code CLI (tests/.cache/claude) against the loopback Messages API
// mock. One agent (backend) fans out to two more agents itself, through an
// agent-dispatch MCP server in its own Claude Code session; one
// (performance) outlives its timeout. The trace is rendered with
// `agent-dispatch trace ID --html FILE` and photographed with headless
// Chromium (Debian's `chromium`). Not a test: it only fails when the run
// does not give the tree the picture should show.
'use strict';

const assert = require('node:assert/strict');
const fs = require('fs');
const os = require('os');
const path = require('path');
const { spawnSync } = require('child_process');
const h = require('./claude-harness');

const REPO = path.join(__dirname, '..', '..');
const OUT = path.resolve(process.argv[2] || path.join(REPO, 'docs', 'trace.png'));
const HEIGHT = Number(process.argv[3] || 620);
const AD = h.adBin();

/** Agents (one project directory each) and the claude wrapper that gives
 *  the agents in `mcp` an agent-dispatch MCP server of the same config. */
function area(root, bin, port, agents, mcp) {
  const home = path.join(root, 'home');
  fs.mkdirSync(home);
  const spec = {};
  const dirs = {};
  for (const [agent, extra] of Object.entries(agents)) {
    dirs[agent] = path.join(root, agent);
    fs.mkdirSync(dirs[agent]);
    spec[agent] = { directory: dirs[agent], timeout: 90, ...extra };
  }
  const config = path.join(root, 'agents.yaml');
  h.writeAgents(config, spec);
  const serverEnv = { AGENT_DISPATCH_CONFIG: config, AGENT_DISPATCH_JOBS_DIR: path.join(root, 'jobs') };
  const wrapper = path.join(root, 'claude-wrapper.sh');
  const mcpCfg = path.join(root, 'mcp.json');
  fs.writeFileSync(mcpCfg, JSON.stringify({ mcpServers: { ad: { type: 'stdio', command: AD,
    args: ['serve'], env: { ...serverEnv, AGENT_DISPATCH_CLAUDE: wrapper } } } }));
  const cases = mcp.map((a) => `  ${JSON.stringify(dirs[a])}) exec "${bin}" --mcp-config "${mcpCfg}" ` +
    '--allowedTools mcp__ad__dispatch_parallel "$@" ;;\n').join('');
  fs.writeFileSync(wrapper, `#!/bin/sh\ncase "$PWD" in\n${cases}  *) exec "${bin}" "$@" ;;\nesac\n`,
    { mode: 0o755 });
  return h.claudeEnv({ port, home, extra: { ...serverEnv, AGENT_DISPATCH_CLAUDE: wrapper } });
}

async function main() {
  const bin = h.claudeBin();
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'ad-trace-shot.'));
  const mock = await h.startMock({ log: path.join(root, 'mock.jsonl') });
  try {
    const env = area(root, bin, mock.port, {
      security: {}, performance: { timeout: 12 }, docs: {}, backend: {}, db: {}, 'api-tests': {}, lead: {},
    }, ['backend']);
    const who = { caller: 'release-manager', goal: 'ship v2.4 safely' };
    // The mock's directives ride in each item's context (part of the
    // prompt, not of the task the trace shows). backend's session calls
    // the nested server's dispatch_parallel with `nested` as its input.
    const nested = JSON.stringify({ dispatches: JSON.stringify([
      { agent: 'db', task: 'Check the new migrations for locking and rollback',
        context: '[mock:sleep=3] [mock:tokens=3000]', caller: 'backend' },
      { agent: 'api-tests', task: 'Run the contract tests against the new endpoints',
        context: '[mock:sleep=5] [mock:tokens=5000]', caller: 'backend' },
    ]) });
    const s = h.startServer({ env, cwd: root, bin: AD });
    let res;
    try {
      await s.initialize();
      const { response } = await s.callTool('dispatch_parallel', {
        dispatches: JSON.stringify([
          { agent: 'security', task: 'Audit the payments diff for injection, authz and secrets handling',
            context: '[mock:sleep=6] [mock:tokens=4000]', ...who },
          { agent: 'performance', task: 'Profile the checkout path and flag regressions over 5% against v2.3',
            context: '[mock:sleep=60]', ...who },
          { agent: 'docs', task: 'Check that the changelog and API docs cover every change',
            context: '[mock:sleep=2] [mock:tokens=800]', ...who },
          { agent: 'backend', task: 'Review the service layer; have db and api-tests check their parts',
            context: `[mock:mcp=ad:dispatch_parallel:${nested}]`, ...who },
        ]),
        aggregate: 'lead' }, { timeoutMs: 240000 });
      res = s.toolResult(response);
    } finally {
      await s.close();
    }
    const items = res.individual_results;
    assert.deepEqual(items.map((r) => r.success), [true, false, true, true], JSON.stringify(items));
    assert.equal(items[1].error_type, 'timeout', JSON.stringify(items[1]));
    assert.equal(res.aggregated.success, true, JSON.stringify(res.aggregated));

    const list = spawnSync(AD, ['traces', '--json'], { env, encoding: 'utf8' });
    assert.equal(list.status, 0, list.stderr);
    const shown = spawnSync(AD, ['trace', '--json'], { env, encoding: 'utf8' });
    assert.equal(shown.status, 0, shown.stderr);
    const html = path.join(root, 'trace.html');
    const r = spawnSync(AD, ['trace', '--html', html], { env, encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    const txt = spawnSync(AD, ['trace'], { env: { ...env, COLUMNS: '110' }, encoding: 'utf8' });
    process.stdout.write(txt.stdout);

    const shot = spawnSync('chromium', ['--headless', '--no-sandbox', '--hide-scrollbars',
      `--screenshot=${OUT}`, `--window-size=1200,${HEIGHT}`, `file://${html}`],
    { encoding: 'utf8', timeout: 120000 });
    assert.equal(shot.status, 0, shot.stderr);
    assert.ok(fs.existsSync(OUT), `no screenshot at ${OUT}`);
    if (process.env.KEEP_TMP === '1') fs.copyFileSync(html, OUT.replace(/\.png$/, '.html'));
    console.log(`${OUT} (1200x${HEIGHT})`);
  } finally {
    await mock.stop();
    if (process.env.KEEP_TMP !== '1') fs.rmSync(root, { recursive: true, force: true });
    else console.log(`kept ${root}`);
  }
}

main().catch((e) => { console.error(e); process.exit(1); });
