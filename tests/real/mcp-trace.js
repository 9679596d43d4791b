#!/usr/bin/env node
// A transparent stdio proxy for an MCP server, used by real.test.js to see
// what the REAL Claude Code CLI says to `agent-dispatch serve`.
//
//   node mcp-trace.js TRACE_JSONL ENV_JSON -- COMMAND [ARGS...]
//
// Writes its own environment (= what the MCP client gave the server) to
// ENV_JSON, starts COMMAND with the same environment, forwards stdin/stdout
// unchanged and appends every JSON-RPC line to TRACE_JSONL as
// {"dir":"in"|"out","line":<parsed or raw>}. Signals are forwarded; the
// proxy exits with the server's status. No dependencies.
'use strict';
const { spawn } = require('child_process');
const fs = require('fs');

const argv = process.argv.slice(2);
const sep = argv.indexOf('--');
if (sep !== 2 || argv.length < 4) {
  process.stderr.write('usage: mcp-trace.js TRACE_JSONL ENV_JSON -- COMMAND [ARGS...]\n');
  process.exit(2);
}
const [traceFile, envFile] = argv;
const [cmd, ...args] = argv.slice(3);
fs.writeFileSync(envFile, JSON.stringify(process.env));

function tracer(dir) {
  let buf = '';
  return (chunk) => {
    buf += chunk.toString('utf8');
    let nl;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const raw = buf.slice(0, nl); buf = buf.slice(nl + 1);
      if (!raw.trim()) continue;
      let line;
      try { line = JSON.parse(raw); } catch (_) { line = raw; }
      fs.appendFileSync(traceFile, JSON.stringify({ ts: Date.now(), dir, line }) + '\n');
    }
  };
}

const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'inherit'] });
const tin = tracer('in'), tout = tracer('out');
process.stdin.on('data', (d) => { tin(d); child.stdin.write(d); });
process.stdin.on('end', () => child.stdin.end());
child.stdin.on('error', () => {});
child.stdout.on('data', (d) => { tout(d); process.stdout.write(d); });
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.on(sig, () => child.kill(sig));
child.on('error', (e) => { process.stderr.write(`mcp-trace: ${e.message}\n`); process.exit(127); });
child.on('close', (code, signal) => {
  fs.appendFileSync(traceFile, JSON.stringify({ ts: Date.now(), dir: 'exit', line: { code, signal } }) + '\n');
  process.exit(code === null ? 128 : code);
});
