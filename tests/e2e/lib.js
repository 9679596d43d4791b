'use strict';
// Helpers for the end-to-end tests of the built agent-dispatch binary.
//
// Every test gets an isolated Env: a fresh temp dir holding HOME, the config
// (AGENT_DISPATCH_CONFIG), the jobs dir (AGENT_DISPATCH_JOBS_DIR), the stub
// claude's invocation log (STUB_CLAUDE_LOG) and grandchild pid file
// (STUB_CLAUDE_PIDFILE), with the stub `claude` first on PATH. When the test
// ends, env.cleanup() (registered with t.after) stops any server the test
// left running and asserts that no process the test caused is still alive:
// every stub claude (pid and process group from the log) and every
// grandchild the stub forked.
const assert = require('node:assert');
const fs = require('node:fs');
const path = require('node:path');
const os = require('node:os');
const { spawn, spawnSync } = require('node:child_process');

const BIN = process.env.AD_BIN || path.resolve(__dirname, '../../build/agent-dispatch');
const STUB_DIR = process.env.AD_STUB_DIR || path.resolve(__dirname, '../../build/stub');

// A binary built with AddressSanitizer (AD_SANITIZE): bounds on memory
// and time that its quarantine and slower spawns would break are relaxed.
const SANITIZED = (() => {
  try { return fs.readFileSync(BIN).includes('__asan_init'); } catch { return false; }
})();

// AD_VALGRIND=DIR runs the binary under valgrind memcheck, one log per
// process in DIR (tests/valgrind/e2e.sh runs a chosen set of e2e files so
// and fails on any log that is not empty); waits are then 10 times longer.
const VALGRIND = process.env.AD_VALGRIND || '';
const SLOW = VALGRIND ? 10 : 1;
function command(args) {
  if (!VALGRIND) return [BIN, args];
  return ['valgrind', ['-q', '--leak-check=full', '--show-leak-kinds=definite',
    '--errors-for-leak-kinds=definite', '--trace-children=no',
    `--log-file=${VALGRIND}/vg.%p.log`, BIN, ...args]];
}

const MODERN = '2026-07-28';
const SUPPORTED = ['2026-07-28', '2025-11-25', '2025-06-18', '2025-03-26', '2024-11-05'];

// Variables of a calling Claude Code session (or of the test runner) that
// must not leak into the product under test unless a test sets them.
const SCRUB = ['CLAUDECODE', 'CLAUDE_CODE_SESSION_ID', 'CLAUDE_CODE_ENTRYPOINT',
  'AGENT_DISPATCH_DEPTH', 'AGENT_DISPATCH_MCP_ERA', 'AGENT_DISPATCH_CLAUDE',
  'AGENT_DISPATCH_VERBOSE', 'AGENT_DISPATCH_USER_LUA_DIR', 'ANTHROPIC_API_KEY'];

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Is pid alive (a zombie counts as gone: it holds no resources). */
function alive(pid) {
  try {
    process.kill(pid, 0);
  } catch (e) {
    return e.code === 'EPERM';
  }
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state !== 'Z' && state !== 'X';
  } catch {
    return false;
  }
}

function ownPgrp() {
  try {
    const stat = fs.readFileSync('/proc/self/stat', 'utf8');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[2]);
  } catch { return -1; }
}
const OWN_PGRP = ownPgrp();

/** Any live process in process group pgid (scans /proc). */
function groupAlive(pgid) {
  let entries = [];
  try { entries = fs.readdirSync('/proc'); } catch { return false; }
  for (const e of entries) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${e}/stat`, 'utf8');
      const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      // rest[0] = state, rest[1] = ppid, rest[2] = pgrp
      if (Number(rest[2]) === pgid && rest[0] !== 'Z' && rest[0] !== 'X') return true;
    } catch { /* raced with exit */ }
  }
  return false;
}

async function waitUntil(pred, timeoutMs, stepMs = 25) {
  const end = Date.now() + timeoutMs;
  for (;;) {
    if (pred()) return true;
    if (Date.now() > end) return false;
    await sleep(stepMs);
  }
}

/** A release a stub call waits for ([stub:until_file=PATH]): a test that
 * must see a call still running holds it there, instead of racing a
 * duration against a machine of unknown speed. `mark(name)` is a path for
 * [stub:mark_file=PATH] (created once the result line is written). */
let gateSeq = 0;
function gate(dir, name = 'gate') {
  const p = path.join(dir, `${name}-${process.pid}-${++gateSeq}`);
  return {
    path: p,
    open: () => fs.writeFileSync(p, ''),
    mark: (m) => `${p}.${m}`,
    marked: (m) => fs.existsSync(`${p}.${m}`),
  };
}

/** YAML double-quoted scalar. */
function q(s) {
  return JSON.stringify(String(s));
}

class Env {
  constructor(t) {
    this.root = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'ad-e2e-')));
    this.home = path.join(this.root, 'home');
    this.cfgDir = path.join(this.root, 'cfg');
    this.config = path.join(this.cfgDir, 'agents.yaml');
    this.jobs = path.join(this.root, 'jobs');
    this.log = path.join(this.root, 'stub.log');
    this.pidfile = path.join(this.root, 'grandchild.pid');
    fs.mkdirSync(this.home);
    this.servers = [];
    this.extraPids = [];
    if (t && typeof t.after === 'function') t.after(() => this.cleanup());
  }

  /** The environment for the binary; extra overrides (undefined deletes). */
  env(extra = {}) {
    const e = { ...process.env };
    for (const k of SCRUB) delete e[k];
    Object.assign(e, {
      HOME: this.home,
      PATH: `${STUB_DIR}:${process.env.PATH || '/usr/bin:/bin'}`,
      AGENT_DISPATCH_CONFIG: this.config,
      AGENT_DISPATCH_JOBS_DIR: this.jobs,
      STUB_CLAUDE_LOG: this.log,
      STUB_CLAUDE_PIDFILE: this.pidfile,
    });
    for (const [k, v] of Object.entries(extra)) {
      if (v === undefined) delete e[k]; else e[k] = v;
    }
    return e;
  }

  /** A PATH without the stub dir (and without any real claude). */
  pathWithoutClaude() {
    const dirs = (process.env.PATH || '/usr/bin:/bin').split(':')
      .filter((d) => d && !fs.existsSync(path.join(d, 'claude')));
    return dirs.join(':');
  }

  /** Creates a project dir (files: {relpath: text}); returns its real path. */
  project(name, files = {}) {
    const dir = path.join(this.root, 'projects', name);
    fs.mkdirSync(dir, { recursive: true });
    for (const [rel, text] of Object.entries(files)) {
      fs.mkdirSync(path.dirname(path.join(dir, rel)), { recursive: true });
      fs.writeFileSync(path.join(dir, rel), text);
    }
    return fs.realpathSync(dir);
  }

  writeConfig(text) {
    fs.mkdirSync(this.cfgDir, { recursive: true });
    fs.writeFileSync(this.config, text);
  }

  /**
   * Writes a config with agents {name: dirOrObject} (a project dir is made
   * for names given as true), optional groups and settings YAML text.
   * Returns {name: directory}.
   */
  setup({ agents = {}, groups = '', settings = '' } = {}) {
    const dirs = {};
    let y = 'agents:\n';
    for (const [name, spec] of Object.entries(agents)) {
      const s = spec === true ? {} : typeof spec === 'string' ? { directory: spec } : spec;
      const dir = s.directory || this.project(name);
      dirs[name] = dir;
      y += `  ${name}:\n    directory: ${q(dir)}\n`;
      for (const [k, v] of Object.entries(s)) {
        if (k === 'directory') continue;
        y += `    ${k}: ${Array.isArray(v) ? JSON.stringify(v) : typeof v === 'string' ? q(v) : v}\n`;
      }
    }
    if (Object.keys(agents).length === 0) y = 'agents: {}\n';
    if (groups) y += `groups:\n${groups}`;
    // AD_E2E_TRANSPORT=live|oneshot runs a test file with that transport
    // (settings.transport; e2e_remote_live runs the remote tests live).
    const tr = process.env.AD_E2E_TRANSPORT;
    if (tr && !/^\s*transport:/m.test(settings)) settings = `  transport: ${tr}\n${settings}`;
    if (settings) y += `settings:\n${settings}`;
    this.writeConfig(y);
    return dirs;
  }

  readConfig() {
    return fs.readFileSync(this.config, 'utf8');
  }

  /** Parsed STUB_CLAUDE_LOG entries (one per stub invocation). A line a
   * stub is still writing (no newline yet) is left for the next look: a
   * reader racing the write once saw half of one. */
  stubLog() {
    let text = '';
    try { text = fs.readFileSync(this.log, 'utf8'); } catch { return []; }
    return text.slice(0, text.lastIndexOf('\n') + 1).split('\n').filter(Boolean).map((l) => JSON.parse(l));
  }

  /** Stub invocations that were dispatches (not `claude mcp ...`). */
  dispatches() {
    return this.stubLog().filter((e) => e.argv.includes('-p'));
  }

  grandchildPid() {
    try {
      const n = Number(fs.readFileSync(this.pidfile, 'utf8').trim());
      return n > 0 ? n : null;
    } catch { return null; }
  }

  /** Every pid/pgid this test caused (stubs, their groups, grandchildren). */
  trackedPids() {
    const pids = new Set(this.extraPids);
    const groups = new Set();
    for (const e of this.stubLog()) {
      pids.add(e.pid);
      if (e.pgid && e.pgid !== OWN_PGRP && e.pgid > 1) groups.add(e.pgid);
    }
    const g = this.grandchildPid();
    if (g) pids.add(g);
    // Detached job runners: each job record names the process that owns it.
    let names = [];
    try { names = fs.readdirSync(this.jobs).filter((n) => /^[0-9a-f]{32}\.json$/.test(n)); } catch { /* none */ }
    for (const n of names) {
      try {
        const rec = JSON.parse(fs.readFileSync(path.join(this.jobs, n), 'utf8'));
        if (rec.server && rec.server.pid > 1 && rec.server.pid !== process.pid) pids.add(rec.server.pid);
      } catch { /* being rewritten */ }
    }
    return { pids: [...pids], groups: [...groups] };
  }

  /** Waits (up to ms) until every tracked process is gone; returns the rest. */
  async leftovers(ms = 5000) {
    let left = [];
    await waitUntil(() => {
      const { pids, groups } = this.trackedPids();
      left = pids.filter(alive).map((p) => `pid ${p}`)
        .concat(groups.filter((g) => groupAlive(g)).map((g) => `pgrp ${g}`));
      return left.length === 0;
    }, ms, 50);
    return left;
  }

  async assertNoLeftovers(ms = 5000) {
    const left = await this.leftovers(ms);
    assert.deepStrictEqual(left, [], `processes still alive: ${left.join(', ')}`);
  }

  /** Runs the CLI synchronously: {code, stdout, stderr, signal}. */
  run(args, { env = {}, input, timeout = 30000, cwd, killSignal } = {}) {
    const r = spawnSync(...command(args), { env: this.env(env), input, timeout: timeout * SLOW, cwd: cwd || this.root,
      encoding: 'utf8', maxBuffer: 64 << 20, killSignal });
    if (r.error) throw r.error;
    return { code: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr };
  }

  /** run() with arguments as bytes (a Buffer each; a string is UTF-8), for
   * arguments a string cannot carry (not UTF-8): passed through bash's
   * printf. */
  runBytes(args, { env = {}, timeout = 30000 } = {}) {
    const quote = (a) => {
      const b = Buffer.isBuffer(a) ? a : Buffer.from(a, 'utf8');
      return `"$(printf '${[...b].map((x) => `\\${x.toString(8).padStart(3, '0')}`).join('')}')"`;
    };
    const [file, argv] = command([]);
    const script = `exec ${[file, ...argv, ...args].map(quote).join(' ')}`;
    const r = spawnSync('bash', ['-c', script], { env: this.env(env), timeout: timeout * SLOW,
      cwd: this.root, encoding: 'utf8', maxBuffer: 64 << 20 });
    if (r.error) throw r.error;
    return { code: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr };
  }

  /** Starts the CLI as a child: {child, done: Promise<{code, signal, stdout, stderr}>}. */
  start(args, { env = {}, cwd } = {}) {
    const child = spawn(...command(args), { env: this.env(env), cwd: cwd || this.root,
      stdio: ['ignore', 'pipe', 'pipe'] });
    this.extraPids.push(child.pid);
    let stdout = '', stderr = '';
    child.stdout.on('data', (d) => { stdout += d; });
    child.stderr.on('data', (d) => { stderr += d; });
    const done = new Promise((resolve) => child.on('close',
      (code, signal) => resolve({ code, signal, stdout, stderr })));
    return { child, done };
  }

  /** Starts `agent-dispatch serve`. */
  serve({ env = {} } = {}) {
    const s = new Server(this, env);
    this.servers.push(s);
    this.extraPids.push(s.child.pid);
    return s;
  }

  async cleanup() {
    for (const s of this.servers) {
      if (s.exit === null) {
        s.child.stdin.end();
        const res = await Promise.race([s.exited, sleep(5000 * SLOW).then(() => null)]);
        if (!res) s.child.kill('SIGKILL');
        await s.exited;
      }
    }
    const left = await this.leftovers(5000);
    for (const s of this.servers) {
      // Checked here (after the test's own assertions) so that every test
      // enforces "every stdout line is exactly one JSON object".
      assert.deepStrictEqual(s.violations, [], `bad stdout lines from the server`);
    }
    if (left.length === 0) fs.rmSync(this.root, { recursive: true, force: true });
    assert.deepStrictEqual(left, [], `processes still alive: ${left.join(', ')}`);
  }
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** A running `agent-dispatch serve` speaking raw JSON-RPC lines. */
class Server {
  constructor(env, extraEnv) {
    this.child = spawn(...command(['serve']), { env: env.env(extraEnv), cwd: env.root,
      stdio: ['pipe', 'pipe', 'pipe'] });
    this.child.stdin.on('error', () => {}); // EPIPE after exit is fine
    this.messages = []; // {msg, raw, t}
    this.violations = [];
    this.stderr = '';
    this.exit = null;
    this.waiters = [];
    this.nextId = 1000;
    let pending = Buffer.alloc(0);
    this.child.stdout.on('data', (chunk) => {
      pending = Buffer.concat([pending, chunk]);
      let nl;
      while ((nl = pending.indexOf(0x0a)) >= 0) {
        this.onLine(pending.subarray(0, nl));
        pending = pending.subarray(nl + 1);
      }
    });
    this.child.stdout.on('end', () => {
      if (pending.length) this.violations.push(`unterminated last line: ${pending.toString().slice(0, 200)}`);
    });
    this.child.stderr.on('data', (d) => { this.stderr += d; });
    this.exited = new Promise((resolve) => this.child.on('exit', (code, signal) => {
      this.exit = { code, signal, t: Date.now() };
      resolve(this.exit);
    }));
    this.closed = new Promise((resolve) => this.child.on('close', resolve));
  }

  onLine(buf) {
    let text;
    try {
      text = utf8.decode(buf);
    } catch {
      this.violations.push(`invalid UTF-8 on stdout: ${buf.toString('latin1').slice(0, 200)}`);
      return;
    }
    if (text.includes('\r')) this.violations.push(`raw CR in line: ${text.slice(0, 200)}`);
    let msg;
    try {
      msg = JSON.parse(text);
    } catch {
      this.violations.push(`not JSON: ${text.slice(0, 200)}`);
      return;
    }
    if (msg === null || typeof msg !== 'object' || Array.isArray(msg) || msg.jsonrpc !== '2.0') {
      if (!(Array.isArray(msg) && this.allowBatch)) {
        this.violations.push(`not one JSON-RPC object: ${text.slice(0, 200)}`);
      }
    }
    const rec = { msg, raw: text, t: Date.now() };
    this.messages.push(rec);
    for (const w of [...this.waiters]) {
      if (w.pred(msg, rec)) {
        this.waiters.splice(this.waiters.indexOf(w), 1);
        clearTimeout(w.timer);
        w.resolve(msg);
      }
    }
  }

  /** Writes obj as one JSON line, or a string as given plus '\n'. */
  send(obj) {
    this.child.stdin.write(typeof obj === 'string' ? obj + '\n' : JSON.stringify(obj) + '\n');
  }

  /** Writes raw bytes (no newline added). */
  write(data) {
    this.child.stdin.write(data);
  }

  /** The first message (past or future) matching pred; rejects after ms. */
  waitFor(pred, ms = 5000, what = 'message') {
    ms *= SLOW;
    for (const r of this.messages) if (pred(r.msg, r)) return Promise.resolve(r.msg);
    return new Promise((resolve, reject) => {
      const w = { pred, resolve };
      w.timer = setTimeout(() => {
        this.waiters.splice(this.waiters.indexOf(w), 1);
        reject(new Error(`timed out after ${ms} ms waiting for ${what}; got:\n` +
          this.messages.map((m) => m.raw.slice(0, 300)).join('\n') + `\nstderr:\n${this.stderr.slice(-2000)}`));
      }, ms);
      this.waiters.push(w);
    });
  }

  /** The response whose id equals id (same JSON type). */
  response(id, ms = 5000) {
    return this.waitFor((m) => isResponse(m) && m.id === id, ms, `response to ${JSON.stringify(id)}`);
  }

  responsesTo(id) {
    return this.messages.filter((r) => isResponse(r.msg) && r.msg.id === id);
  }

  /** Sends a request and waits for its response. */
  request(method, params, { id, ms = 5000 } = {}) {
    if (id === undefined) id = this.nextId++;
    const m = { jsonrpc: '2.0', id, method };
    if (params !== undefined) m.params = params;
    this.send(m);
    return this.response(id, ms);
  }

  async init(version = '2025-11-25') {
    const r = await this.request('initialize', { protocolVersion: version, capabilities: {},
      clientInfo: { name: 'e2e', version: '1' } });
    this.send({ jsonrpc: '2.0', method: 'notifications/initialized' });
    return r;
  }

  /**
   * tools/call; returns {value (parsed JSON text), isError, response}.
   * opts: modern (bool), meta (extra _meta), id, ms.
   */
  async call(name, args = {}, opts = {}) {
    const params = { name, arguments: args };
    const meta = { ...(opts.meta || {}) };
    if (opts.modern) Object.assign(meta, modernMeta());
    if (Object.keys(meta).length) params._meta = meta;
    const res = await this.request('tools/call', params, { id: opts.id, ms: opts.ms || 15000 });
    assert.ok(res.result, `tools/call ${name} failed: ${JSON.stringify(res.error)}`);
    const block = res.result.content[0];
    assert.strictEqual(block.type, 'text');
    return { value: JSON.parse(block.text), text: block.text, isError: res.result.isError === true, response: res };
  }

  /** Closes stdin and waits for the exit (rejects after ms). */
  async close(ms = 5000) {
    ms *= SLOW;
    this.child.stdin.end();
    const r = await Promise.race([this.exited, sleep(ms).then(() => null)]);
    assert.ok(r, `server did not exit within ${ms} ms of EOF`);
    await this.closed;
    return r;
  }

  notifications(method) {
    return this.messages.filter((r) => r.msg && r.msg.method === method);
  }
}

function isResponse(m) {
  return m && typeof m === 'object' && !Array.isArray(m) && 'id' in m && !('method' in m);
}

function modernMeta(extra = {}) {
  return {
    'io.modelcontextprotocol/protocolVersion': MODERN,
    'io.modelcontextprotocol/clientCapabilities': {},
    'io.modelcontextprotocol/clientInfo': { name: 'e2e', version: '1' },
    ...extra,
  };
}

function newEnv(t) {
  return new Env(t);
}

/** The job record id in env's jobs store, or null (absent, mid-write). */
function readRec(env, id) {
  try {
    return JSON.parse(fs.readFileSync(path.join(env.jobs, `${id}.json`), 'utf8'));
  } catch { return null; }
}

/** Waits until the job record satisfies pred; fails with the last record. */
async function recUntil(env, id, pred, ms, what) {
  let last = null;
  const ok = await waitUntil(() => { last = readRec(env, id); return last && pred(last); }, ms, 25);
  assert.ok(ok, `timed out waiting for ${what}: ${JSON.stringify(last)}`);
  return last;
}

/** The stub's log entry of the dispatch whose prompt holds marker. */
function stubFor(env, marker) {
  return env.dispatches().find((e) => (e.prompt || '').includes(marker));
}

/** Claude Code 2.1.328's stop of a stdio MCP server, by pid: SIGINT,
 * SIGTERM 100 ms later, SIGKILL at 500 ms; resolves once it has exited. */
async function stopLikeClaudeCode(srv) {
  const pid = srv.child.pid;
  const send = (sig) => { try { process.kill(pid, sig); } catch { /* gone */ } };
  send('SIGINT');
  await sleep(100);
  send('SIGTERM');
  await sleep(400);
  send('SIGKILL');
  await srv.exited;
}

module.exports = { stopLikeClaudeCode, gate, BIN, STUB_DIR, SANITIZED, MODERN, SUPPORTED, Env, Server, newEnv, modernMeta,
  sleep, alive, groupAlive, waitUntil, isResponse, q, readRec, recUntil, stubFor };
