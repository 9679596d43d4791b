'use strict';
// Per-dispatch time of two builds of agent-dispatch, interleaved: one
// server each, the stub claude answering at once, `tools/call dispatch`
// alternately (the order flips every round), 20 warm-up calls each.
//   node bench/ab.js BIN_A BIN_B STUB_DIR     (N=600 for more calls)
// Prints the median of each and B/A.
const { spawn } = require('child_process');
const fs = require('fs'), os = require('os'), path = require('path');
const [A, B, STUB] = process.argv.slice(2);
const root = fs.mkdtempSync(path.join(os.tmpdir(), 'ab-'));
const proj = path.join(root, 'proj'); fs.mkdirSync(proj);
fs.writeFileSync(path.join(root, 'agents.yaml'), `agents:\n  a:\n    directory: ${JSON.stringify(proj)}\nsettings:\n  cache: {enabled: false}\n  max_concurrency: 20\n`);
function server(bin, tag) {
  const env = { ...process.env, HOME: root, PATH: `${STUB}:${process.env.PATH}`, AGENT_DISPATCH_CONFIG: path.join(root, 'agents.yaml'), AGENT_DISPATCH_JOBS_DIR: path.join(root, 'jobs-' + tag) };
  const c = spawn(bin, ['serve'], { env, stdio: ['pipe', 'pipe', 'ignore'] });
  let buf = ''; const w = new Map(); let id = 0;
  c.stdout.setEncoding('utf8');
  c.stdout.on('data', (d) => { buf += d; let i; while ((i = buf.indexOf('\n')) >= 0) { const m = JSON.parse(buf.slice(0, i)); buf = buf.slice(i + 1); if (w.has(m.id)) { w.get(m.id)(m); w.delete(m.id); } } });
  const req = (method, params) => new Promise((r) => { const n = ++id; w.set(n, r); c.stdin.write(JSON.stringify({ jsonrpc: '2.0', id: n, method, params }) + '\n'); });
  return { c, req };
}
const now = () => Number(process.hrtime.bigint()) / 1e6;
const med = (a) => { const s = [...a].sort((x, y) => x - y); return s[Math.floor(s.length / 2)]; };
(async () => {
  const sa = server(A, 'a'), sb = server(B, 'b');
  for (const s of [sa, sb]) await s.req('initialize', { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'ab', version: '1' } });
  const call = async (s) => { const t = now(); const r = await s.req('tools/call', { name: 'dispatch', arguments: { agent: 'a', task: 'hi' } }); if (!r.result || r.result.isError) throw new Error(JSON.stringify(r)); return now() - t; };
  for (let i = 0; i < 20; i++) { await call(sa); await call(sb); }
  const ta = [], tb = [];
  const N = Number(process.env.N || 300);
  for (let i = 0; i < N; i++) { if (i % 2) { ta.push(await call(sa)); tb.push(await call(sb)); } else { tb.push(await call(sb)); ta.push(await call(sa)); } }
  console.log(`A ${med(ta).toFixed(2)} ms  B ${med(tb).toFixed(2)} ms  ratio B/A ${(med(tb) / med(ta)).toFixed(3)}  (N=${N})`);
  sa.c.stdin.end(); sb.c.stdin.end();
})();
