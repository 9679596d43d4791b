'use strict';
// The set-up the remote-agent tests share: a file's private sshd
// (tests/e2e/sshd.js) logging in an unprivileged user with the stub claude
// on its PATH, and test environments whose ssh reaches it by host aliases.
const { before, after } = require('node:test');
const fs = require('node:fs');
const path = require('node:path');
const { spawnSync } = require('node:child_process');
const { newEnv, STUB_DIR } = require('./lib');
const { Sshd } = require('./sshd');

/**
 * Points env's processes at sshd: its client script (AGENT_DISPATCH_SSH)
 * with ~/.ssh/config naming the sshd as each of hosts (then the text
 * extraHosts), and a control-socket directory of the test's own
 * (AGENT_DISPATCH_SSH_DIR = env.sshDir). The variables are env.sshExtra,
 * which a test may change. The shared connections (ControlPersist) left
 * in env.sshDir are closed when the test ends.
 */
function useSshd(t, env, sshd, { hosts = ['buildbox'], extraHosts = '' } = {}) {
  const { ssh } = sshd.client(env.home, hosts);
  if (extraHosts) fs.appendFileSync(path.join(env.home, '.ssh', 'config'), extraHosts);
  env.sshDir = path.join(env.root, 's');
  env.sshExtra = { AGENT_DISPATCH_SSH: ssh, AGENT_DISPATCH_SSH_DIR: env.sshDir };
  const origEnv = env.env.bind(env);
  env.env = (more = {}) => origEnv({ ...env.sshExtra, ...more });
  t.after(() => {
    let socks = [];
    try { socks = fs.readdirSync(env.sshDir); } catch { /* none */ }
    for (const s of socks) {
      spawnSync('/usr/bin/ssh', ['-S', path.join(env.sshDir, s), '-O', 'exit', 'x'], { stdio: 'ignore' });
    }
  });
  return env;
}

/**
 * Starts the file's sshd with the stub claude before its tests
 * (onStart(sshd) receives it) and stops it after them. Returns
 * remoteEnv(t, {agents, settings, extraHosts}): a newEnv that uses the
 * sshd as each of hosts (useSshd), set up with those agents and settings.
 */
function remoteSuite(onStart, { hosts = ['buildbox'] } = {}) {
  let sshd;
  before(async () => {
    sshd = await Sshd.start({ claude: path.join(STUB_DIR, 'claude') });
    onStart(sshd);
  });
  after(async () => { if (sshd) await sshd.stop(); });
  return function remoteEnv(t, { agents = {}, settings = '', extraHosts = '' } = {}) {
    const env = useSshd(t, newEnv(t), sshd, { hosts, extraHosts });
    env.setup({ agents, settings });
    return env;
  };
}

module.exports = { remoteSuite, useSshd };
