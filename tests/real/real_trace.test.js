// The delegation tree with the REAL Claude Code CLI against the loopback
// Messages API mock: a parallel fan-out with an aggregator, one of whose
// agents calls agent-dispatch again from its own Claude Code session
// (nested, through an MCP server configured for that agent), gives one
// trace with the right parent/child structure and costs that add up to
// what the CLI reported; and a tree spend cap stops the later children
// before they spawn.
//
//   AD_BIN=build/agent-dispatch node --test tests/real/real_trace.test.js
'use strict';

const { describe, it } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('fs');
const path = require('path');
const { spawnSync } = require('child_process');
const h = require('./claude-harness');

const AD = path.resolve(h.adBin());
let BIN, mock, root;

/**
 * An area: agents (each its own project), a config, and a claude wrapper
 * that logs every spawn ("cwd|argv") and gives the agents named in `mcp`
 * an agent-dispatch MCP server (the same config) they may call.
 */
function area(name, agents, { mcp = [] } = {}) {
  const dir = fs.mkdtempSync(path.join(root, `${name}-`));
  const home = path.join(dir, 'home');
  fs.mkdirSync(home);
  const spec = {};
  const dirs = {};
  for (const [agent, extra] of Object.entries(agents)) {
    const d = path.join(dir, `proj-${agent}`);
    fs.mkdirSync(d);
    dirs[agent] = d;
    spec[agent] = { directory: d, timeout: 90, ...extra };
  }
  const config = path.join(dir, 'agents.yaml');
  h.writeAgents(config, spec);
  const spawns = path.join(dir, 'spawns.log');
  const serverEnv = { AGENT_DISPATCH_CONFIG: config, AGENT_DISPATCH_JOBS_DIR: path.join(dir, 'jobs') };
  const wrapper = path.join(dir, 'claude-wrapper.sh');
  const mcpCfg = path.join(dir, 'mcp.json');
  fs.writeFileSync(mcpCfg, JSON.stringify({ mcpServers: { ad: { type: 'stdio', command: AD,
    args: ['serve'], env: { ...serverEnv, AGENT_DISPATCH_CLAUDE: wrapper } } } }));
  const cases = mcp.map((a) => `  ${JSON.stringify(dirs[a])}) exec "${BIN}" --mcp-config "${mcpCfg}" ` +
    '--allowedTools mcp__ad__dispatch "$@" ;;\n').join('');
  fs.writeFileSync(wrapper, `#!/bin/sh\necho "$PWD|$*" >> "${spawns}"\ncase "$PWD" in\n${cases}` +
    `  *) exec "${BIN}" "$@" ;;\nesac\n`, { mode: 0o755 });
  const env = h.claudeEnv({ port: mock.port, home, extra: { ...serverEnv, AGENT_DISPATCH_CLAUDE: wrapper } });
  return { dir, dirs, env, spawns, traces: path.join(dir, 'traces') };
}

function spawnsOf(a) {
  if (!fs.existsSync(a.spawns)) return [];
  return fs.readFileSync(a.spawns, 'utf8').split('\n').filter(Boolean).map((l) => {
    const [cwd, args] = [l.slice(0, l.indexOf('|')), l.slice(l.indexOf('|') + 1)];
    const m = / --max-budget-usd (\S+)/.exec(` ${args}`);
    return { cwd, args, budget: m ? Number(m[1]) : null };
  }).filter((s) => s.args !== '--help'); // the transport probe (once per binary) is no child
}

/** The spans of every trace of an area: {trace_id: [span]} (last record per span). */
function traces(a) {
  const out = {};
  if (!fs.existsSync(a.traces)) return out;
  // One file per UTC day (spans-YYYYMMDD.jsonl) holds the spans of every tree.
  const by = {};
  for (const n of fs.readdirSync(a.traces).filter((x) => /^spans-\d{8}\.jsonl$/.test(x)).sort()) {
    for (const l of fs.readFileSync(path.join(a.traces, n), 'utf8').split('\n').filter(Boolean)) {
      const rec = JSON.parse(l);
      if (!by[rec.trace_id]) by[rec.trace_id] = new Map();
      by[rec.trace_id].set(rec.span_id, rec);
    }
  }
  for (const [id, m] of Object.entries(by)) out[id] = [...m.values()];
  return out;
}

const close = (x, y) => Math.abs(x - y) < 1e-9;

describe('the delegation tree with the real Claude Code CLI', { concurrency: 2 }, () => {
  h.mockSuite('ad-real-trace.', (s) => ({ bin: BIN, root, mock } = s));

  it('a fan-out with an aggregator and a nested dispatch is one tree whose costs add up', { timeout: 300000 },
    async () => {
      const a = area('fanout', { w1: {}, w2: {}, agg: {}, nest: {} }, { mcp: ['nest'] });
      const s = h.startServer({ env: a.env, cwd: a.dir, bin: AD });
      let res;
      try {
        await s.initialize();
        const nested = JSON.stringify({ agent: 'w2', task: '[mock:reply=NESTED ANSWER]', caller: 'nest' });
        const { response } = await s.callTool('dispatch_parallel', {
          dispatches: JSON.stringify([
            { agent: 'w1', task: '[mock:reply=ONE]' },
            { agent: 'w2', task: '[mock:reply=TWO]' },
            { agent: 'nest', task: `[mock:mcp=ad:dispatch:${nested}]` },
          ]),
          aggregate: 'agg' }, { timeoutMs: 240000 });
        res = s.toolResult(response);
      } finally {
        await s.close();
      }
      const items = res.individual_results;
      assert.equal(items.length, 3);
      for (const r of items) assert.equal(r.success, true, JSON.stringify(r));
      assert.equal(res.aggregated.success, true, JSON.stringify(res.aggregated));
      const nestText = items[2].result;
      assert.match(nestText, /NESTED ANSWER/, `the nested dispatch answered: ${nestText}`);
      const nestedCost = Number(/"cost_usd":\s*([0-9.eE+-]+)/.exec(nestText)[1]);

      const all = traces(a);
      assert.equal(Object.keys(all).length, 1, `one trace: ${JSON.stringify(Object.keys(all))}`);
      const spans = Object.values(all)[0];
      const group = spans.filter((x) => x.kind === 'parallel');
      assert.equal(group.length, 1);
      assert.equal(group[0].parent_id, null);
      const under = spans.filter((x) => x.parent_id === group[0].span_id);
      assert.deepEqual(under.map((x) => `${x.kind}:${x.agent}`).sort(),
        ['aggregate:agg', 'item:nest', 'item:w1', 'item:w2']);
      const nestSpan = under.find((x) => x.agent === 'nest');
      const inner = spans.filter((x) => x.parent_id === nestSpan.span_id);
      assert.equal(inner.length, 1, `one dispatch under the nest agent: ${JSON.stringify(spans)}`);
      assert.equal(inner[0].agent, 'w2');
      assert.equal(inner[0].kind, 'dispatch');
      assert.equal(inner[0].depth, 1);
      assert.notEqual(inner[0].pid, nestSpan.pid, 'written by the nested server');
      assert.equal(spans.length, 6);
      for (const x of spans) assert.equal(x.status, 'ok', JSON.stringify(x));

      const reported = items.reduce((t, r) => t + r.cost_usd, 0) + res.aggregated.cost_usd + nestedCost;
      const traced = spans.reduce((t, x) => t + x.cost_usd, 0);
      assert.ok(reported > 0);
      assert.ok(close(traced, reported), `trace total ${traced} != reported ${reported}`);

      // The CLI reads the same tree.
      const shown = spawnSync(AD, ['trace', '--json'], { env: a.env, encoding: 'utf8' });
      assert.equal(shown.status, 0, shown.stderr);
      assert.ok(close(JSON.parse(shown.stdout).summary.total_cost_usd, Math.round(reported * 1e6) / 1e6));
    });

  it('a tree cap gives the next child what is left and stops the later ones before they spawn',
    { timeout: 300000 }, async () => {
      const a = area('cap', { w: {} });
      const script = path.join(a.dir, 'cap.lua');
      // The first dispatch shows what one costs; the next ones run in a tree
      // capped at one and a half of that.
      fs.writeFileSync(script, `local ad = require "agent_dispatch"
local first = ad.dispatch{ agent = "w", task = "[mock:input_tokens=2000] first", tree_budget_usd = 10 }
local cap = first.cost_usd * 1.5
local out = { first = first, cap = cap }
for i = 1, 3 do
  out["n" .. i] = ad.dispatch{ agent = "w", task = "[mock:input_tokens=2000] next " .. i, tree_budget_usd = cap }
end
return out
`);
      const r = spawnSync(AD, ['run', '--json', script], { env: { ...a.env, AGENT_DISPATCH_QUIET: '1' },
        encoding: 'utf8', timeout: 240000 });
      assert.equal(r.status, 0, r.stderr);
      const out = JSON.parse(r.stdout);
      assert.equal(out.first.success, true, JSON.stringify(out.first));
      const c = out.first.cost_usd;
      assert.ok(c > 0);
      const sp = spawnsOf(a);
      assert.equal(sp.length, 2, `the first and one more child spawned: ${JSON.stringify(sp)}`);
      assert.ok(Math.abs(sp[1].budget - (out.cap - c)) < 1e-9,
        `the second child may spend what is left (${out.cap - c}), got ${sp[1].budget}`);
      assert.equal(out.n2.error_type, 'budget', JSON.stringify(out.n2));
      assert.equal(out.n3.error_type, 'budget');
      const spans = Object.values(traces(a))[0];
      assert.equal(spans.filter((x) => x.status === 'refused').length, 2);
      const tid = spans[0].trace_id;
      assert.ok(out.n2.error.includes(tid), out.n2.error);
    });
});
