// Node helpers for tests that run the REAL Claude Code CLI against the mock.
// Same environment as tests/real/run-claude.sh. No dependencies (Node 18+).
//
//   const h = require('./claude-harness');
//   const mock = await h.startMock({ log: '/tmp/mock.jsonl' });   // {port, url, stop()}
//   const home = h.makeHome();                                    // fresh temp HOME
//   const r = await h.runClaude(['-p', '--output-format', 'json', '--', 'hi [mock:reply=yo]'],
//                               { port: mock.port, home, cwd: someDir, timeoutMs: 30000 });
//   // r = {code, signal, stdout, stderr, json (parsed last stdout line or null)}
//   h.removeHome(home); await mock.stop();
//
// h.claudeBin() returns $CLAUDE_BIN or runs install-claude.sh (installs on first use).
// h.claudeEnv({port, home, extra}) returns the env object for your own spawn().
//
// agent-dispatch helpers (used by real.test.js):
//   h.adBin()                          $AD_BIN or <repo>/build/agent-dispatch
//   h.writeAgents(path, agents, settings)  writes an agents.yaml (JSON-style YAML)
//   const s = h.startServer({ env, cwd });  `agent-dispatch serve` over raw JSON-RPC
//   await s.initialize();                  legacy handshake (+ notifications/initialized)
//   const { response, notes } = await s.request('tools/call', {...}, { timeoutMs });
//        notes = every notification received while this request was in flight
//   s.toolResult(response)                 the DispatchResult parsed from content[0].text
//   await s.close();                       closes stdin, waits (SIGKILL after 10 s)
// tests/real/mcp-trace.js is a stdio proxy that records an MCP server's
// environment and its JSON-RPC traffic (for the real CLI as MCP client).
'use strict';

const { spawn, execFileSync } = require('child_process');
const fs = require('fs');
const os = require('os');
const path = require('path');

const MOCK_JS = path.join(__dirname, '..', 'mock_api', 'server.js');
const INSTALLER = path.join(__dirname, 'install-claude.sh');

let cachedBin = null;
function claudeBin() {
  if (process.env.CLAUDE_BIN) return process.env.CLAUDE_BIN;
  if (!cachedBin) cachedBin = execFileSync(INSTALLER, [], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] }).trim();
  return cachedBin;
}

function startMock({ log } = {}) {
  return new Promise((resolve, reject) => {
    const args = [MOCK_JS];
    if (log) args.push('--log', log);
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'] });
    let buf = '';
    const onData = (d) => {
      buf += d;
      const m = /LISTENING (\d+)/.exec(buf);
      if (!m) return;
      child.stdout.off('data', onData);
      child.stdout.resume();
      const port = Number(m[1]);
      resolve({
        port, url: `http://127.0.0.1:${port}`, child,
        stop: () => new Promise((r) => { if (child.exitCode !== null) return r(); child.once('exit', r); child.kill('SIGTERM'); }),
      });
    };
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', onData);
    child.once('exit', (code) => reject(new Error(`mock exited early (code ${code})`)));
    child.once('error', reject);
  });
}

function makeHome() { return fs.mkdtempSync(path.join(os.tmpdir(), 'claude-home.')); }
function removeHome(home) { fs.rmSync(home, { recursive: true, force: true }); }

function claudeEnv({ port, home, extra = {} }) {
  const tmp = path.join(home, 'tmp');
  fs.mkdirSync(tmp, { recursive: true });
  return {
    HOME: home,
    PATH: process.env.PATH || '/usr/local/bin:/usr/bin:/bin',
    LANG: process.env.LANG || 'C.UTF-8',
    TERM: 'dumb',
    USER: process.env.USER || os.userInfo().username,
    SHELL: process.env.SHELL || '/bin/bash',
    TMPDIR: os.tmpdir(),
    ANTHROPIC_BASE_URL: `http://127.0.0.1:${port}`,
    ANTHROPIC_API_KEY: 'sk-test',
    CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: '1',
    DISABLE_TELEMETRY: '1',
    DISABLE_AUTOUPDATER: '1',
    DISABLE_ERROR_REPORTING: '1',
    DISABLE_BUG_COMMAND: '1',
    CLAUDE_CODE_TMPDIR: tmp,
    ...extra,
  };
}

function runClaude(args, { port, home, cwd, extraEnv, timeoutMs = 60000, bin } = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(bin || claudeBin(), args, {
      cwd: cwd || process.cwd(), env: claudeEnv({ port, home, extra: extraEnv }), stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '', stderr = '';
    child.stdout.setEncoding('utf8'); child.stderr.setEncoding('utf8');
    child.stdout.on('data', (d) => { stdout += d; });
    child.stderr.on('data', (d) => { stderr += d; });
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('error', (e) => { clearTimeout(timer); reject(e); });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      let json = null;
      const lines = stdout.trim().split('\n').filter(Boolean);
      if (lines.length) { try { json = JSON.parse(lines[lines.length - 1]); } catch (_) { /* not json */ } }
      resolve({ code, signal, stdout, stderr, json });
    });
  });
}

const REPO_ROOT = path.join(__dirname, '..', '..');
function adBin() { return path.resolve(process.env.AD_BIN || path.join(REPO_ROOT, 'build', 'agent-dispatch')); }

// agents.yaml writer: JSON is valid YAML, so each value is written with JSON.stringify.
function writeAgents(file, agents, settings) {
  const lines = ['agents:'];
  for (const [name, a] of Object.entries(agents)) {
    lines.push(`  ${name}:`);
    for (const [k, v] of Object.entries(a)) lines.push(`    ${k}: ${JSON.stringify(v)}`);
  }
  if (settings) {
    lines.push('settings:');
    for (const [k, v] of Object.entries(settings)) lines.push(`  ${k}: ${JSON.stringify(v)}`);
  }
  fs.writeFileSync(file, lines.join('\n') + '\n');
}

// A raw JSON-RPC client for `agent-dispatch serve` over stdio.
function startServer({ env, cwd, bin } = {}) {
  const child = spawn(bin || adBin(), ['serve'], { cwd: cwd || os.tmpdir(), env, stdio: ['pipe', 'pipe', 'pipe'] });
  const pending = new Map();
  const messages = [];   // everything received, in order: {at, msg}
  let stderr = '', buf = '', nextId = 1, exited = null;
  const exitP = new Promise((r) => {
    child.once('close', (code, signal) => { exited = exited || { code, signal }; r(exited); });
    child.once('error', (e) => { exited = { error: e.message }; r(exited); });   // e.g. ENOENT
  });
  child.stdout.setEncoding('utf8'); child.stderr.setEncoding('utf8');
  child.stderr.on('data', (d) => { stderr += d; });
  child.stdout.on('data', (d) => {
    buf += d;
    let nl;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl); buf = buf.slice(nl + 1);
      if (!line.trim()) continue;
      let msg;
      try { msg = JSON.parse(line); } catch (e) { messages.push({ at: Date.now(), bad: line }); continue; }
      messages.push({ at: Date.now(), msg });
      if (msg.method === undefined && msg.id !== undefined && pending.has(msg.id)) {
        const p = pending.get(msg.id); pending.delete(msg.id);
        clearTimeout(p.timer);
        p.resolve({ response: msg, notes: messages.slice(p.start).map((m) => m.msg).filter((m) => m && m.method) });
      }
    }
  });
  exitP.then(() => {
    for (const [id, p] of pending) {
      clearTimeout(p.timer);
      p.reject(new Error(`agent-dispatch serve exited (${JSON.stringify(exited)}) before answering request ${id}; stderr:\n${stderr}`));
    }
    pending.clear();
  });
  const send = (obj) => child.stdin.write(JSON.stringify(obj) + '\n');
  function request(method, params, { timeoutMs = 60000 } = {}) {
    const id = nextId++;
    return new Promise((resolve, reject) => {
      if (exited) return reject(new Error(`agent-dispatch serve already exited: ${JSON.stringify(exited)}; stderr:\n${stderr}`));
      const timer = setTimeout(() => {
        pending.delete(id);
        reject(new Error(`no answer to ${method} (id ${id}) within ${timeoutMs} ms; stderr:\n${stderr}`));
      }, timeoutMs);
      pending.set(id, { resolve, reject, timer, start: messages.length });
      send({ jsonrpc: '2.0', id, method, params });
    });
  }
  async function initialize() {
    const { response } = await request('initialize', {
      protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'real.test.js', version: '1' },
    });
    if (!response.result) throw new Error(`initialize failed: ${JSON.stringify(response)}`);
    send({ jsonrpc: '2.0', method: 'notifications/initialized' });
    return response.result;
  }
  function callTool(name, args, { progressToken, timeoutMs } = {}) {
    const params = { name, arguments: args };
    if (progressToken !== undefined) params._meta = { progressToken };
    return request('tools/call', params, { timeoutMs });
  }
  function toolResult(response) {
    if (!response.result) throw new Error(`tools/call failed: ${JSON.stringify(response)}`);
    const c = response.result.content;
    if (!Array.isArray(c) || !c[0] || c[0].type !== 'text') throw new Error(`unexpected tool result: ${JSON.stringify(response.result)}`);
    return JSON.parse(c[0].text);
  }
  async function close() {
    if (exited) return exited;
    child.stdin.end();
    const t = setTimeout(() => child.kill('SIGKILL'), 10000);
    const r = await exitP;
    clearTimeout(t);
    return r;
  }
  return { child, request, initialize, callTool, toolResult, close, messages, send, get stderr() { return stderr; } };
}

// The set-up every test file of agent-dispatch with the real CLI shares,
// registered as the current suite's before/after hooks: before its tests
// the CLI (installed on first use), a fresh temporary root (prefix) and
// the mock API logging to root/mock.jsonl; after them the mock stopped and
// the root removed (KEEP_TMP=1 keeps it). got({bin, root, mock, mockLog})
// is called once all is up.
function mockSuite(prefix, got) {
  const { before, after } = require('node:test');
  const s = { bin: null, root: null, mock: null, mockLog: null };
  before(async () => {
    try {
      s.bin = claudeBin();
    } catch (e) {
      throw new Error('could not install or run the real Claude Code CLI with tests/real/install-claude.sh ' +
        `(is the npm registry reachable?): ${e.message}`);
    }
    if (!s.bin || !fs.existsSync(s.bin)) throw new Error(`install-claude.sh printed no runnable binary (${s.bin})`);
    if (!fs.existsSync(adBin())) throw new Error(`agent-dispatch binary not found at ${adBin()} (set AD_BIN)`);
    s.root = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
    s.mockLog = path.join(s.root, 'mock.jsonl');
    s.mock = await startMock({ log: s.mockLog });
    got(s);
  });
  after(async () => {
    if (s.mock) await s.mock.stop();
    if (!s.root) return;
    if (process.env.KEEP_TMP === '1') console.error(`temp tree kept at ${s.root} (mock log ${s.mockLog})`);
    else fs.rmSync(s.root, { recursive: true, force: true });
  });
  return s;
}

module.exports = { claudeBin, startMock, makeHome, removeHome, claudeEnv, runClaude, MOCK_JS,
  adBin, writeAgents, startServer, mockSuite };
