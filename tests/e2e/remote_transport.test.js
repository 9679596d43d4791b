'use strict';
// The transport of a remote agent under settings.transport auto: the claude
// CLI on the other host is probed for the live control channel (one ssh
// round trip; `claude --help` only when the remote CLI is new or changed),
// the answer is cached per host and remote CLI, and an agent whose remote
// CLI has the channel runs over it, so its tool uses are relayed. Uses the
// private sshd of tests/e2e/sshd.js (one suite at a time: RESOURCE_LOCK).
const { test, before, after } = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { newEnv, STUB_DIR } = require('./lib');
const net = require('node:net');
const { Sshd, freePort } = require('./sshd');
const { useSshd } = require('./remote_env');

// Every `claude --help` the remote stub answered (STUB_CLAUDE_HELP_LOG).
const helpLog = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'ad-help-')), 'help.log');

let sshd;
before(async () => {
  fs.chmodSync(path.dirname(helpLog), 0o755);
  fs.writeFileSync(helpLog, '', { mode: 0o666 });
  fs.chmodSync(helpLog, 0o666);
  sshd = await Sshd.start({ claude: path.join(STUB_DIR, 'claude'), env: { STUB_CLAUDE_HELP_LOG: helpLog } });
});
after(async () => {
  if (sshd) await sshd.stop();
  fs.rmSync(path.dirname(helpLog), { recursive: true, force: true });
});

function helps() {
  return fs.readFileSync(helpLog, 'utf8').split('\n').filter(Boolean).length;
}

function remoteEnv(t, yaml) {
  const env = useSshd(t, newEnv(t), sshd);
  env.writeConfig(yaml);
  return env;
}

function lastRemote() {
  const log = sshd.stubLog();
  return log[log.length - 1];
}

const ASK_GIT = '[stub:ask=Bash {"command":"git status"}]';

test('auto: a remote agent whose CLI has the channel runs live; its tool use is relayed', async (t) => {
  const dir = sshd.project('relayed');
  const env = remoteEnv(t, `agents:\n  r:\n    host: buildbox\n    directory: ${JSON.stringify(dir)}\n` +
    `    permissions: ${JSON.stringify({ relay: true, allow: ['Bash(git status:*)'] })}\n`);
  const srv = env.serve();
  await srv.init();
  const before = helps();
  const v = (await srv.call('dispatch', { agent: 'r', task: ASK_GIT }, { ms: 30000 })).value;
  assert.strictEqual(v.success, true, JSON.stringify(v));
  assert.match(v.result, /asked Bash: allow updatedInput=\{"command":"git status"\}/);
  assert.strictEqual(v.permissions[0].by, 'rule');
  const e = lastRemote();
  assert.deepStrictEqual(e.argv.slice(1, 5), ['--input-format', 'stream-json', '--permission-prompt-tool', 'stdio']);
  assert.strictEqual(helps(), before + 1, 'the remote CLI was probed once');
  // A second dispatch of this server asks no more.
  const v2 = (await srv.call('dispatch', { agent: 'r', task: 'plain' }, { ms: 30000 })).value;
  assert.strictEqual(v2.success, true, JSON.stringify(v2));
  assert.strictEqual(helps(), before + 1);
  await srv.close();
  assert.deepStrictEqual(await sshd.leftovers(8000), []);
});

test('the answer is kept per host and remote CLI: another process does not run --help, a changed CLI is probed',
  async (t) => {
    const dir = sshd.project('cached');
    const env = remoteEnv(t, `agents:\n  r:\n    host: buildbox\n    directory: ${JSON.stringify(dir)}\n`);
    const before = helps();
    let r = env.run(['dispatch', 'r', 'one', '--json']);
    assert.strictEqual(JSON.parse(r.stdout).success, true, r.stdout + r.stderr);
    assert.ok(lastRemote().argv.includes('--input-format'), 'live');
    assert.strictEqual(helps(), before + 1);
    r = env.run(['dispatch', 'r', 'two', '--json']);
    assert.strictEqual(JSON.parse(r.stdout).success, true);
    assert.ok(lastRemote().argv.includes('--input-format'), 'live');
    assert.strictEqual(helps(), before + 1, 'the cached answer for this host and CLI');
    // The remote CLI changes into one without the channel.
    const bin = path.join(sshd.bin, 'claude');
    const real = path.join(sshd.bin, 'claude-real');
    fs.renameSync(bin, real);
    t.after(() => fs.renameSync(real, bin)); // replaces the wrapper
    fs.writeFileSync(bin, `#!/bin/sh\nSTUB_CLAUDE_NO_LIVE=1 exec ${real} "$@"\n`, { mode: 0o755 });
    r = env.run(['dispatch', 'r', 'three', '--json']);
    const v = JSON.parse(r.stdout);
    assert.strictEqual(v.success, true, r.stdout + r.stderr);
    assert.strictEqual(v.result, 'stub ok: three');
    assert.ok(!lastRemote().argv.includes('--input-format'), 'one-shot for a CLI without the channel');
    assert.strictEqual(helps(), before + 2, 'the changed CLI was probed again');
  });

test('settings.transport oneshot: a remote agent is never probed', async (t) => {
  const dir = sshd.project('oneshot');
  const env = remoteEnv(t, `agents:\n  r:\n    host: buildbox\n    directory: ${JSON.stringify(dir)}\n` +
    'settings:\n  transport: oneshot\n');
  const before = helps();
  const r = env.run(['dispatch', 'r', 'x', '--json']);
  assert.strictEqual(JSON.parse(r.stdout).success, true, r.stdout + r.stderr);
  assert.ok(!lastRemote().argv.includes('--input-format'));
  assert.strictEqual(helps(), before);
});

test('auto: a host that cannot be reached fails the dispatch after one connection attempt', async (t) => {
  const port = await freePort();
  // A listener that never speaks: the handshake never completes.
  const silent = net.createServer(() => {});
  await new Promise((r) => silent.listen(0, '127.0.0.1', r));
  t.after(() => silent.close());
  const env = remoteEnv(t, 'agents:\n  r:\n    host: refused\n    directory: /srv/x\n' +
    '  d:\n    host: downbox\n    directory: /srv/x\nsettings:\n  ssh_connect_timeout: 3\n');
  fs.appendFileSync(path.join(env.home, '.ssh', 'config'),
    `Host refused\n  HostName 127.0.0.1\n  Port ${port}\n` +
    `Host downbox\n  HostName 127.0.0.1\n  Port ${silent.address().port}\n`);
  let v = JSON.parse(env.run(['dispatch', 'r', 'x', '--json']).stdout);
  assert.strictEqual(v.error_type, 'remote', JSON.stringify(v));
  assert.match(v.error, /ssh to refused failed: .*Connection refused/);
  const t0 = Date.now();
  v = JSON.parse(env.run(['dispatch', 'd', 'x', '--json']).stdout);
  const took = Date.now() - t0;
  assert.strictEqual(v.error_type, 'remote', JSON.stringify(v));
  assert.match(v.error, /ssh to downbox failed: .*(timed out|Timeout)/i);
  // One ssh_connect_timeout (3 s), not one for the probe and one more for the dispatch.
  assert.ok(took >= 2500 && took < 5500, `took ${took} ms`);
});
