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

module.exports = { claudeBin, startMock, makeHome, removeHome, claudeEnv, runClaude, MOCK_JS };
