'use strict';
// The REAL Claude Code CLI on the far side of an ssh connection: a private
// sshd on 127.0.0.1 (tests/e2e/sshd.js) logs in an unprivileged user whose
// PATH has the pinned CLI and whose sessions talk to the loopback Messages
// API mock. One sync dispatch and one resumed session through ssh.
const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('fs');
const os = require('os');
const path = require('path');
const h = require('./claude-harness');
const { Sshd } = require('../e2e/sshd');

const AD = path.resolve(h.adBin());
let mock = null;
let sshd = null;
let root = null;

before(async () => {
  const bin = h.claudeBin();
  mock = await h.startMock({});
  const remoteHome = '/var/lib/ad-remote-real';
  sshd = await Sshd.start({ user: 'ad-remote-real', claude: bin, link: true, env: {
    ANTHROPIC_BASE_URL: `http://127.0.0.1:${mock.port}`, ANTHROPIC_API_KEY: 'sk-test',
    CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: '1', DISABLE_TELEMETRY: '1', DISABLE_AUTOUPDATER: '1',
    DISABLE_ERROR_REPORTING: '1', DISABLE_BUG_COMMAND: '1', LANG: 'C.UTF-8',
    CLAUDE_CODE_TMPDIR: `${remoteHome}/tmp`, TMPDIR: `${remoteHome}/tmp`,
  } });
  fs.mkdirSync(`${remoteHome}/tmp`, { recursive: true });
  fs.chownSync(`${remoteHome}/tmp`, sshd.user.uid, sshd.user.gid);
  root = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'ad-real-remote-')));
});

after(async () => {
  if (sshd) await sshd.stop();
  if (mock) await mock.stop();
  if (root) fs.rmSync(root, { recursive: true, force: true });
});

function area() {
  const home = path.join(root, 'home');
  fs.mkdirSync(home, { recursive: true });
  const { ssh } = sshd.client(home, ['builder']);
  const dir = sshd.project('api', { 'CLAUDE.md': '# API\n' });
  const config = path.join(root, 'agents.yaml');
  h.writeAgents(config, { api: { host: 'builder', directory: dir, timeout: 120 } });
  const env = { ...h.claudeEnv({ port: mock.port, home }), AGENT_DISPATCH_CONFIG: config,
    AGENT_DISPATCH_JOBS_DIR: path.join(root, 'jobs'), AGENT_DISPATCH_SSH: ssh,
    AGENT_DISPATCH_SSH_DIR: path.join(root, 's') };
  return { env, dir, home };
}

async function call(s, name, args) {
  const { response } = await s.request('tools/call', { name, arguments: args }, { timeoutMs: 150000 });
  return s.toolResult(response);
}

describe('real Claude Code CLI through ssh', () => {
  it('sync dispatch, then a resumed session that sees the first turn; nothing left there', { timeout: 300000 }, async () => {
    const a = area();
    const s = h.startServer({ env: a.env, cwd: root, bin: AD });
    try {
      await s.initialize();
      const word = `remote-${process.pid}`;
      const r1 = await call(s, 'dispatch', { agent: 'api', task: `remember [mock:reply=${word}]` });
      assert.equal(r1.success, true, JSON.stringify(r1));
      assert.equal(r1.result, word);
      assert.match(r1.session_id, /^[0-9a-f-]{36}$/);
      const r2 = await call(s, 'dispatch_session', { agent: 'api', task: 'what was it? [mock:echo_history]',
        session_id: r1.session_id });
      assert.equal(r2.success, true, JSON.stringify(r2));
      assert.equal(r2.session_id, r1.session_id);
      assert.ok(r2.result.includes(word), `the resumed turn saw the first: ${r2.result}`);
    } finally {
      await s.close();
    }
    // the session lives on the remote host, in the remote user's HOME
    const projects = path.join(sshd.user.home, '.claude', 'projects');
    assert.ok(fs.existsSync(projects), `${projects} exists`);
    const left = await sshd.leftovers(10000);
    assert.deepEqual(left, [], `left on the remote side: ${left.join('; ')}`);
  });
});
