'use strict';
// A private OpenSSH server for the remote-agent tests: sshd (Debian
// openssh-server) on 127.0.0.1 on a free port, with a host key and a user
// key made for the run, logging in an unprivileged user created here with
// useradd (never root: what runs "remotely" runs with that user's rights).
// The client side is a `~/.ssh/config` in the test's HOME naming the host,
// with the generated host key in its UserKnownHostsFile (host-key checking
// stays on). ssh reads the config of the passwd home, not $HOME, so the
// tests point AGENT_DISPATCH_SSH at a two-line script that passes
// `-F $HOME/.ssh/config`.
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const { spawn, spawnSync, execFileSync } = require('node:child_process');

const SSHD = '/usr/sbin/sshd';
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function sh(cmd, args, opts = {}) {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], ...opts });
}

/** A TCP port nobody listens on right now. */
function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/** The unprivileged remote user (created once; home made for it). */
function ensureUser(name) {
  const home = `/var/lib/${name}`;
  if (spawnSync('id', ['-u', name]).status !== 0) {
    // '*' (not '!'): an account without a password that sshd does not
    // consider locked (UsePAM is off, key authentication only).
    sh('useradd', ['-r', '-M', '-d', home, '-s', '/bin/sh', '-p', '*', name]);
  }
  fs.mkdirSync(home, { recursive: true, mode: 0o755 });
  const uid = Number(sh('id', ['-u', name]).trim());
  const gid = Number(sh('id', ['-g', name]).trim());
  fs.chownSync(home, uid, gid);
  return { name, uid, gid, home };
}

function chownR(p, uid, gid) {
  fs.chownSync(p, uid, gid);
  if (fs.statSync(p).isDirectory()) {
    for (const n of fs.readdirSync(p)) chownR(path.join(p, n), uid, gid);
  }
}

class Sshd {
  /**
   * opts.user: the remote user's name (default $AD_E2E_SSHD_USER, else
   * ad-remote-e2e: test runs that share a machine each need a user of
   * their own, since "nothing left there" lists all of its processes);
   * opts.claude: the program installed
   * as `claude` on the remote PATH (copied; linked with opts.link);
   * opts.env: extra variables of remote sessions (SetEnv).
   */
  static async start({ user = process.env.AD_E2E_SSHD_USER || 'ad-remote-e2e', claude, link = false,
    env = {} } = {}) {
    const s = new Sshd();
    await s._start(user, claude, link, env);
    return s;
  }

  async _start(userName, claude, link, env) {
    this.user = ensureUser(userName);
    // World-traversable (the remote user reaches its projects and log),
    // writable by root only.
    this.dir = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'ad-sshd-')));
    fs.chmodSync(this.dir, 0o755);
    this.bin = path.join(this.dir, 'bin');
    fs.mkdirSync(this.bin, { mode: 0o755 });
    if (claude && link) {
      fs.symlinkSync(claude, path.join(this.bin, 'claude')); // a large binary, world-readable
    } else if (claude) {
      fs.copyFileSync(claude, path.join(this.bin, 'claude'));
      fs.chmodSync(path.join(this.bin, 'claude'), 0o755);
    }
    this.projects = path.join(this.dir, 'projects');
    fs.mkdirSync(this.projects, { mode: 0o755 });
    fs.chownSync(this.projects, this.user.uid, this.user.gid);
    this.log = path.join(this.dir, 'remote.log');
    fs.writeFileSync(this.log, '');
    fs.chownSync(this.log, this.user.uid, this.user.gid);
    const hostKey = path.join(this.dir, 'host_ed25519');
    this.clientKey = path.join(this.dir, 'client_ed25519');
    sh('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'ad-test-host', '-f', hostKey]);
    sh('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'ad-test-client', '-f', this.clientKey]);
    fs.copyFileSync(`${this.clientKey}.pub`, path.join(this.dir, 'authorized_keys'));
    fs.chmodSync(path.join(this.dir, 'authorized_keys'), 0o644);
    this.hostPub = fs.readFileSync(`${hostKey}.pub`, 'utf8').trim();
    this.port = await freePort();
    const setenv = { PATH: `${this.bin}:/usr/local/bin:/usr/bin:/bin`, STUB_CLAUDE_LOG: this.log, ...env };
    const conf = [
      `Port ${this.port}`,
      'ListenAddress 127.0.0.1',
      `HostKey ${hostKey}`,
      `PidFile ${path.join(this.dir, 'sshd.pid')}`,
      `AuthorizedKeysFile ${path.join(this.dir, 'authorized_keys')}`,
      'StrictModes no', // the key file lives under /tmp (world-writable)
      'UsePAM no',
      'PasswordAuthentication no',
      'KbdInteractiveAuthentication no',
      'PubkeyAuthentication yes',
      `AllowUsers ${this.user.name}`,
      'MaxSessions 64',
      'MaxStartups 64',
      `SetEnv ${Object.entries(setenv).map(([k, v]) => `${k}=${v}`).join(' ')}`,
      'LogLevel ERROR',
    ].join('\n') + '\n';
    this.config = path.join(this.dir, 'sshd_config');
    fs.writeFileSync(this.config, conf);
    fs.mkdirSync('/run/sshd', { recursive: true, mode: 0o755 }); // privilege separation
    this.stderr = '';
    this.child = spawn(SSHD, ['-D', '-e', '-f', this.config], { stdio: ['ignore', 'ignore', 'pipe'] });
    this.child.stderr.on('data', (d) => { this.stderr += d; });
    this.exited = new Promise((r) => this.child.on('exit', r));
    for (let i = 0; i < 200; i++) {
      if (await new Promise((r) => {
        const c = net.connect(this.port, '127.0.0.1', () => { c.destroy(); r(true); });
        c.on('error', () => r(false));
      })) return;
      if (this.child.exitCode !== null) break;
      await sleep(25);
    }
    throw new Error(`sshd did not start: ${this.stderr}`);
  }

  /**
   * Client files in a test's HOME: ~/.ssh/config naming `alias` (and any
   * more aliases), known_hosts with the host key, the key; and the ssh
   * script to use as AGENT_DISPATCH_SSH. Returns {ssh, alias}.
   */
  client(home, aliases = ['buildbox']) {
    const dotssh = path.join(home, '.ssh');
    fs.mkdirSync(dotssh, { recursive: true, mode: 0o700 });
    const known = path.join(dotssh, 'known_hosts');
    fs.writeFileSync(known, `[127.0.0.1]:${this.port} ${this.hostPub}\n`);
    fs.copyFileSync(this.clientKey, path.join(dotssh, 'id_ed25519'));
    fs.chmodSync(path.join(dotssh, 'id_ed25519'), 0o600);
    let conf = '';
    for (const a of aliases) {
      conf += `Host ${a}\n  HostName 127.0.0.1\n  Port ${this.port}\n  User ${this.user.name}\n` +
        `  IdentityFile ${path.join(dotssh, 'id_ed25519')}\n  IdentitiesOnly yes\n` +
        `  UserKnownHostsFile ${known}\n  StrictHostKeyChecking yes\n  LogLevel ERROR\n`;
    }
    fs.writeFileSync(path.join(dotssh, 'config'), conf);
    const script = path.join(home, 'ssh');
    fs.writeFileSync(script, '#!/bin/sh\nexec /usr/bin/ssh -F "$HOME/.ssh/config" "$@"\n', { mode: 0o755 });
    return { ssh: script, alias: aliases[0] };
  }

  /** A project directory on the "remote" side, owned by the remote user. */
  project(name, files = {}) {
    const dir = path.join(this.projects, name);
    fs.mkdirSync(dir, { recursive: true });
    for (const [rel, text] of Object.entries(files)) {
      fs.mkdirSync(path.dirname(path.join(dir, rel)), { recursive: true });
      fs.writeFileSync(path.join(dir, rel), text);
    }
    chownR(this.projects, this.user.uid, this.user.gid);
    return dir;
  }

  /** Invocations of the remote stub (its STUB_CLAUDE_LOG). */
  stubLog() {
    return fs.readFileSync(this.log, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l));
  }

  /**
   * Processes of the remote user other than sshd's own (the session
   * processes of live connections): what a dispatch may have left behind.
   */
  processes() {
    const r = spawnSync('ps', ['-o', 'pid=,comm=,args=', '-u', String(this.user.uid)], { encoding: 'utf8' });
    return (r.stdout || '').split('\n').map((l) => l.trim()).filter(Boolean)
      .filter((l) => !/^\d+\s+sshd\b/.test(l));
  }

  /** Waits up to ms for the remote user to have no processes; returns the rest. */
  async leftovers(ms = 6000) {
    const end = Date.now() + ms;
    let left = this.processes();
    while (left.length > 0 && Date.now() < end) {
      await sleep(50);
      left = this.processes();
    }
    return left;
  }

  async stop() {
    if (this.child && this.child.exitCode === null) {
      this.child.kill('SIGTERM');
      await this.exited;
    }
    // What is left of the run's user (sessions of shared connections),
    // by pid: the user exists for these tests only.
    const r = spawnSync('ps', ['-o', 'pid=', '-u', String(this.user.uid)], { encoding: 'utf8' });
    for (const pid of (r.stdout || '').split('\n').map(Number).filter((n) => n > 1)) {
      try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
    }
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

module.exports = { Sshd, freePort };
