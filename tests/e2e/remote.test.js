'use strict';
// Agents on other machines: dispatches over OpenSSH to a private sshd on
// 127.0.0.1 (tests/e2e/sshd.js) that logs in an unprivileged user, with the
// stub claude on that user's PATH. "Nothing left on the remote side" is
// checked by listing that user's processes (sshd's own session processes
// aside) after every teardown path.
const { test, describe } = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const net = require('node:net');
const path = require('node:path');
const { spawnSync } = require('node:child_process');
const { newEnv, waitUntil } = require('./lib');
const { freePort } = require('./sshd');
const { remoteSuite } = require('./remote_env');

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

let sshd;
// Test envs whose ~/.ssh/config names the sshd as `buildbox` and `gpubox`
// (plus extraHosts, e.g. `refused`: a port nobody listens on), with
// agents (remote ones name host:), and the variables the binary needs.
const remoteEnv = remoteSuite((s) => { sshd = s; }, { hosts: ['buildbox', 'gpubox'] });

async function serve(env) {
  const srv = env.serve();
  await srv.init();
  return srv;
}

function lastRemote() {
  const log = sshd.stubLog();
  return log[log.length - 1];
}

async function assertNoRemoteLeftovers(what) {
  const left = await sshd.leftovers(8000);
  assert.deepStrictEqual(left, [], `${what}: processes left on the remote side: ${left.join('; ')}`);
}

describe('dispatch to a remote agent', () => {
  test('sync: the result is a DispatchResult, claude ran there, in the directory, with the prompt on stdin', async (t) => {
    const dir = sshd.project('api', { 'CLAUDE.md': '# API\n' });
    const env = remoteEnv(t, { agents: { api: { host: 'buildbox', directory: dir } } });
    const srv = await serve(env);
    const v = (await srv.call('dispatch', { agent: 'api', task: 'hello there' })).value;
    assert.strictEqual(v.success, true, JSON.stringify(v));
    assert.strictEqual(v.agent, 'api');
    assert.strictEqual(v.result, 'stub ok: hello there');
    assert.match(v.session_id, UUID);
    const e = lastRemote();
    assert.strictEqual(e.cwd, dir);
    assert.strictEqual(e.prompt, 'hello there');
    assert.strictEqual(e.argv[0], 'claude');
    if (process.env.AD_E2E_TRANSPORT === 'live') { // e2e_remote_live: the control channel
      assert.deepStrictEqual(e.argv.slice(1, 7), ['--input-format', 'stream-json', '-p',
        '--output-format', 'stream-json', '--verbose']);
    } else {
      assert.deepStrictEqual(e.argv.slice(1, 4), ['-p', '--output-format', 'json']);
    }
    assert.strictEqual(e.argv[e.argv.length - 1], '--', 'nothing after -- (the prompt is on stdin)');
    assert.strictEqual(e.env.AGENT_DISPATCH_DEPTH, '1');
    assert.strictEqual(env.dispatches().length, 0, 'the local claude never ran');
    await srv.close();
    await assertNoRemoteLeftovers('after a sync dispatch');
  });

  test("claude's stderr and exit status come back as they would locally, nothing added", async (t) => {
    const dir = sshd.project('stderr');
    const env = remoteEnv(t, { agents: { r: { host: 'buildbox', directory: dir } } });
    const v = JSON.parse(env.run(['dispatch', 'r', 'x [stub:no_result] [stub:exit=3] [stub:stderr=boom on stderr]',
      '--json']).stdout);
    assert.strictEqual(v.success, false);
    assert.strictEqual(v.error_type, 'cli_error');
    assert.strictEqual(v.error, 'boom on stderr');
    assert.match(lastRemote().prompt, /boom on stderr/, 'it ran on the remote side');
    assert.strictEqual(env.dispatches().length, 0, 'not here');
  });

  test('only depth crosses: local environment stays here', async (t) => {
    const dir = sshd.project('envcheck');
    const env = remoteEnv(t, { agents: { r: { host: 'buildbox', directory: dir } } });
    const r = env.run(['dispatch', 'r', 'x [stub:echo_env=AD_LOCAL_SECRET]', '--json'],
      { env: { AD_LOCAL_SECRET: 'do-not-send' } });
    assert.strictEqual(r.code, 0, r.stderr);
    assert.strictEqual(JSON.parse(r.stdout).result, '<unset>');
  });

  test('prompts cross intact: newlines, quotes, shell syntax, UTF-8, 1 MB', async (t) => {
    const dir = sshd.project('echo');
    const env = remoteEnv(t, { agents: { e: { host: 'buildbox', directory: dir } } });
    const srv = await serve(env);
    const hostile = "line1\nline2 'single' \"double\" `id` $(id) ${HOME} ; | & > < \\ \t tab\r\n" +
      'Ünïcødé ✓ 日本語 🎉 \u2028 end';
    const big = 'x'.repeat(1024 * 1024 - 10) + '\nend-of-it';
    for (const task of [hostile, big, '-starts-with-dash', "'", '']) {
      if (task === '') continue; // an empty task is refused before any spawn
      const v = (await srv.call('dispatch', { agent: 'e', task }, { ms: 60000 })).value;
      assert.strictEqual(v.success, true, JSON.stringify(v).slice(0, 300));
      assert.strictEqual(lastRemote().prompt, task, `prompt of ${task.length} bytes arrived changed`);
    }
    await srv.close();
  });

  test('stream: progress notifications arrive before the result', async (t) => {
    const dir = sshd.project('stream');
    const env = remoteEnv(t, { agents: { s: { host: 'buildbox', directory: dir } } });
    const srv = await serve(env);
    await srv.request('logging/setLevel', { level: 'info' });
    const r = await srv.call('dispatch_stream', { agent: 's', task: 'go [stub:progress=3] [stub:interval=0.3]' },
      { id: 'st', meta: { progressToken: 'tok' } });
    assert.strictEqual(r.value.success, true, JSON.stringify(r.value));
    assert.strictEqual(r.value.result, 'stub ok: go');
    const respAt = srv.messages.find((m) => m.msg.id === 'st').t;
    const prog = srv.notifications('notifications/progress');
    assert.ok(prog.length >= 3, `${prog.length} progress notifications`);
    assert.ok(respAt - prog[0].t >= 400, `first progress only ${respAt - prog[0].t} ms before the result`);
    const e = lastRemote();
    assert.ok(e.argv.includes('stream-json') && e.argv.includes('--verbose'));
    await srv.close();
  });

  test('session resume: dispatch_session passes --resume over ssh', async (t) => {
    const dir = sshd.project('sess');
    const env = remoteEnv(t, { agents: { s: { host: 'buildbox', directory: dir } } });
    const srv = await serve(env);
    const first = (await srv.call('dispatch', { agent: 's', task: 'start' })).value;
    assert.strictEqual(first.success, true);
    const v = (await srv.call('dispatch_session', { agent: 's', task: 'continue', session_id: first.session_id })).value;
    assert.strictEqual(v.success, true, JSON.stringify(v));
    assert.strictEqual(v.session_id, first.session_id);
    const e = lastRemote();
    assert.strictEqual(e.argv[e.argv.indexOf('--resume') + 1], first.session_id);
    assert.ok(!e.argv.includes('--session-id'));
    await srv.close();
  });

  test('parallel across one local and two remote agents (two host names)', async (t) => {
    const d1 = sshd.project('par1');
    const d2 = sshd.project('par2');
    const env = remoteEnv(t, { agents: { here: true, one: { host: 'buildbox', directory: d1 },
      two: { host: 'gpubox', directory: d2 } } });
    const srv = await serve(env);
    const items = [
      { agent: 'here', task: 'local [stub:sleep=0.5]' },
      { agent: 'one', task: 'first remote [stub:sleep=0.5]' },
      { agent: 'two', task: 'second remote [stub:sleep=0.5]' },
    ];
    const v = (await srv.call('dispatch_parallel', { dispatches: JSON.stringify(items) })).value;
    assert.deepStrictEqual(v.map((x) => x.success), [true, true, true], JSON.stringify(v));
    assert.deepStrictEqual(v.map((x) => x.result), ['stub ok: local', 'stub ok: first remote', 'stub ok: second remote']);
    const remote = sshd.stubLog().slice(-2);
    const cwds = remote.map((e) => e.cwd).sort();
    assert.deepStrictEqual(cwds, [d1, d2].sort());
    assert.strictEqual(env.dispatches().length, 1);
    // In parallel: each child sleeps 0.5 s, so run one after the other the
    // two remote ones would start at least 0.5 s apart. Their start times
    // come from the stubs' own logs, which a loaded machine's ssh
    // handshakes (paid before each child starts) do not skew.
    const starts = remote.map((e) => e.time);
    const spread = Math.abs(starts[0] - starts[1]);
    assert.ok(spread < 0.5, `the two remote children started ${spread.toFixed(3)} s apart: not in parallel`);
    await srv.close();
    await assertNoRemoteLeftovers('after a parallel dispatch');
  });
});

describe('nothing is left on the remote host', () => {
  test('timeout: the remote claude and everything in its group are gone', async (t) => {
    const dir = sshd.project('slow');
    const env = remoteEnv(t, { agents: { slow: { host: 'buildbox', directory: dir, timeout: 1 } } });
    const srv = await serve(env);
    // Warm the shared connection, so the timing is the dispatch's.
    await srv.call('dispatch', { agent: 'slow', task: 'warm' });
    const t0 = Date.now();
    const v = (await srv.call('dispatch', { agent: 'slow', task: 'wait [stub:hang] [stub:grandchild=30]' })).value;
    const took = Date.now() - t0;
    assert.strictEqual(v.error_type, 'timeout', JSON.stringify(v));
    assert.match(v.session_id, UUID);
    assert.ok(took < 4000, `took ${took} ms`);
    assert.match(lastRemote().prompt, /wait \[stub:hang\]/, 'it ran on the remote side');
    assert.strictEqual(env.dispatches().length, 0, 'not here');
    await assertNoRemoteLeftovers('after a timeout');
    await srv.close();
  });

  test('a remote claude that ignores SIGTERM is killed too', async (t) => {
    const dir = sshd.project('stubborn');
    const env = remoteEnv(t, { agents: { s: { host: 'buildbox', directory: dir, timeout: 1 } } });
    const r = env.run(['dispatch', 's', 'x [stub:hang] [stub:ignore_term]']);
    assert.notStrictEqual(r.code, 0);
    assert.match(r.stderr, /timed out/);
    assert.match(lastRemote().prompt, /ignore_term/, 'it ran on the remote side');
    assert.strictEqual(env.dispatches().length, 0, 'not here');
    await assertNoRemoteLeftovers('after a timeout of a TERM-ignoring claude');
  });

  test('a grandchild that ignores SIGTERM and holds the output, left by a claude that answered: the answer arrives, the grandchild is killed', async (t) => {
    const dir = sshd.project('stubborn-grandchild');
    const env = remoteEnv(t, { agents: { g: { host: 'buildbox', directory: dir } } });
    const t0 = Date.now();
    const r = env.run(['dispatch', 'g', 'x [stub:ignore_term] [stub:grandchild=30]']);
    assert.strictEqual(r.code, 0, r.stderr);
    assert.ok(Date.now() - t0 < 15000, `the answer waited for the grandchild (${Date.now() - t0} ms)`);
    assert.match(lastRemote().prompt, /grandchild/, 'it ran on the remote side');
    await assertNoRemoteLeftovers('after a claude that answered left a TERM-ignoring grandchild');
  });

  test('cancel (notifications/cancelled): the remote group is gone', async (t) => {
    const dir = sshd.project('cancel');
    const env = remoteEnv(t, { agents: { c: { host: 'buildbox', directory: dir } } });
    const srv = await serve(env);
    srv.send({ jsonrpc: '2.0', id: 7, method: 'tools/call',
      params: { name: 'dispatch', arguments: { agent: 'c', task: 'long [stub:hang] [stub:grandchild=30]' } } });
    assert.ok(await waitUntil(() => sshd.processes().some((l) => /claude/.test(l)), 8000),
      'the remote claude started');
    srv.send({ jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: 7, reason: 'test' } });
    await assertNoRemoteLeftovers('after a cancel');
    await srv.close();
  });

  test('async job cancelled (in the server, and a detached job from another process): gone there', async (t) => {
    const dir = sshd.project('async');
    for (const outlive of [false, true]) {
      const env = remoteEnv(t, { agents: { c: { host: 'buildbox', directory: dir } },
        settings: `  jobs_outlive_server: ${outlive}\n` });
      const srv = await serve(env);
      const id = (await srv.call('dispatch_async', { agent: 'c', task: 'long [stub:hang]' })).value.job_id;
      assert.ok(await waitUntil(() => sshd.processes().some((l) => /claude/.test(l)), 8000), 'started there');
      let canceller = srv;
      if (outlive) {
        await srv.close();
        canceller = await serve(env);
      }
      const c = await canceller.call('dispatch_cancel', { job_id: id }, { ms: 15000 });
      assert.match(JSON.stringify(c.value), /cancel/i);
      await assertNoRemoteLeftovers(`after cancelling a${outlive ? ' detached' : 'n'} async job`);
      await canceller.close();
    }
  });

  test('server shutdown (stdin closed) mid-dispatch: the remote group is gone', async (t) => {
    const dir = sshd.project('shutdown');
    const env = remoteEnv(t, { agents: { c: { host: 'buildbox', directory: dir } } });
    const srv = await serve(env);
    srv.send({ jsonrpc: '2.0', id: 8, method: 'tools/call',
      params: { name: 'dispatch', arguments: { agent: 'c', task: 'long [stub:hang]' } } });
    assert.ok(await waitUntil(() => sshd.processes().some((l) => /claude/.test(l)), 8000));
    await srv.close(10000);
    await assertNoRemoteLeftovers('after the server shut down');
  });

  test('Ctrl-C of the CLI and SIGKILL of the server: the remote group is gone', async (t) => {
    const dir = sshd.project('sigint');
    const env = remoteEnv(t, { agents: { c: { host: 'buildbox', directory: dir } } });
    const { child, done } = env.start(['dispatch', 'c', 'long [stub:hang]']);
    assert.ok(await waitUntil(() => sshd.processes().some((l) => /claude/.test(l)), 8000));
    child.kill('SIGINT');
    await done;
    await assertNoRemoteLeftovers('after Ctrl-C');
    // SIGKILL: the local ssh dies by PR_SET_PDEATHSIG, the connection closes.
    const srv = await serve(env);
    srv.send({ jsonrpc: '2.0', id: 9, method: 'tools/call',
      params: { name: 'dispatch', arguments: { agent: 'c', task: 'long [stub:hang]' } } });
    assert.ok(await waitUntil(() => sshd.processes().some((l) => /claude/.test(l)), 8000));
    srv.child.kill('SIGKILL');
    await srv.exited;
    await assertNoRemoteLeftovers('after SIGKILL of the server');
  });
});

describe('failures are clear and bounded', () => {
  test('connection refused: error_type remote with the ssh text, fast', async (t) => {
    const port = await freePort();
    const env = remoteEnv(t, {
      agents: { r: { host: 'refused', directory: '/srv/x' } },
      extraHosts: `Host refused\n  HostName 127.0.0.1\n  Port ${port}\n`,
    });
    const srv = await serve(env);
    const t0 = Date.now();
    const v = (await srv.call('dispatch', { agent: 'r', task: 'x' })).value;
    assert.strictEqual(v.success, false);
    assert.strictEqual(v.error_type, 'remote', JSON.stringify(v));
    assert.match(v.error, /ssh to refused failed: .*Connection refused/);
    assert.ok(Date.now() - t0 < 5000);
    await srv.close();
  });

  test('host down (no answer): error_type remote within settings.ssh_connect_timeout', async (t) => {
    // A listener that never speaks: the handshake never completes.
    const silent = net.createServer(() => {});
    await new Promise((r) => silent.listen(0, '127.0.0.1', r));
    t.after(() => silent.close());
    const env = remoteEnv(t, {
      agents: { r: { host: 'downbox', directory: '/srv/x' } },
      settings: '  ssh_connect_timeout: 2\n',
      extraHosts: `Host downbox\n  HostName 127.0.0.1\n  Port ${silent.address().port}\n`,
    });
    const t0 = Date.now();
    const r = env.run(['dispatch', 'r', 'x', '--json']);
    const took = Date.now() - t0;
    const v = JSON.parse(r.stdout);
    assert.strictEqual(v.error_type, 'remote', r.stdout);
    assert.match(v.error, /ssh to downbox failed: .*(timed out|Timeout)/i);
    assert.ok(took >= 1500 && took < 6000, `took ${took} ms`);
  });

  test('unknown host key: refused (host-key checking stays on)', async (t) => {
    const env = remoteEnv(t, { agents: { r: { host: 'buildbox', directory: '/srv/x' } } });
    fs.writeFileSync(path.join(env.home, '.ssh', 'known_hosts'), '');
    const r = env.run(['dispatch', 'r', 'x', '--json']);
    const v = JSON.parse(r.stdout);
    assert.strictEqual(v.error_type, 'remote');
    assert.match(v.error, /Host key verification failed/);
    assert.strictEqual(sshd.stubLog().filter((e) => e.cwd === '/srv/x').length, 0);
  });

  test('missing remote directory and missing remote claude: not_found, named', async (t) => {
    const env = remoteEnv(t, { agents: { r: { host: 'buildbox', directory: '/nonexistent/proj' } } });
    let v = JSON.parse(env.run(['dispatch', 'r', 'x', '--json']).stdout);
    assert.strictEqual(v.error_type, 'not_found');
    assert.strictEqual(v.error, 'Directory does not exist on buildbox: /nonexistent/proj');
    const dir = sshd.project('noclaude');
    env.setup({ agents: { r: { host: 'buildbox', directory: dir } } });
    fs.renameSync(path.join(sshd.bin, 'claude'), path.join(sshd.bin, 'claude.off'));
    try {
      v = JSON.parse(env.run(['dispatch', 'r', 'x', '--json']).stdout);
    } finally {
      fs.renameSync(path.join(sshd.bin, 'claude.off'), path.join(sshd.bin, 'claude'));
    }
    assert.strictEqual(v.error_type, 'not_found');
    assert.match(v.error, /Claude CLI not found on buildbox/);
  });
});

describe('no remote shell injection', () => {
  test('a hostile directory name is one literal path there', async (t) => {
    const marker = path.join(sshd.dir, 'pwned');
    const name = `it's $(touch ${marker}) \`touch ${marker}\`; touch ${marker} "q" \\ *`;
    const dir = sshd.project(name);
    const env = remoteEnv(t, { agents: { h: { host: 'buildbox', directory: dir } } });
    const r = env.run(['dispatch', 'h', 'hi', '--json']);
    const v = JSON.parse(r.stdout);
    assert.strictEqual(v.success, true, r.stdout);
    assert.strictEqual(lastRemote().cwd, dir);
    assert.ok(!fs.existsSync(marker), 'a command in the directory name ran');
  });

  test('hostile host values and agent names are refused by the config', async (t) => {
    const env = remoteEnv(t);
    for (const host of ['-oProxyCommand=touch /tmp/x', 'a;b', 'a b', 'a$(id)', 'user@-x', "a'b", 'a\nb', 'h:99999']) {
      env.writeConfig(`agents:\n  r:\n    host: ${JSON.stringify(host)}\n    directory: /srv/x\n`);
      const r = env.run(['list']);
      assert.notStrictEqual(r.code, 0, host);
      assert.match(r.stderr, /agents\.r\.host/, host);
    }
    env.writeConfig('agents:\n  r:\n    host: buildbox\n    directory: relative/path\n');
    assert.match(env.run(['list']).stderr, /agents\.r\.directory.*absolute/);
    env.writeConfig('agents:\n  "r;id":\n    host: buildbox\n    directory: /srv/x\n');
    assert.match(env.run(['list']).stderr, /Invalid agent name/);
  });

  test('hostile tool names and models are quoted too', async (t) => {
    const marker = path.join(sshd.dir, 'pwned2');
    const dir = sshd.project('tools');
    const env = remoteEnv(t, { agents: { h: { host: 'buildbox', directory: dir,
      allowed_tools: [`Bash(touch ${marker})`, `x';touch ${marker};'`], model: `m$(touch ${marker})` } } });
    const r = env.run(['dispatch', 'h', 'hi', '--json']);
    assert.strictEqual(JSON.parse(r.stdout).success, true, r.stdout);
    const e = lastRemote();
    assert.ok(e.argv.includes(`x';touch ${marker};'`));
    assert.ok(e.argv.includes(`m$(touch ${marker})`));
    assert.ok(!fs.existsSync(marker));
  });
});

describe('configuration, introspection and the control directory', () => {
  test('add NAME HOST:DIR and --host; list and describe show the host', async (t) => {
    const dir = sshd.project('added', { 'CLAUDE.md': '# X\nThe billing service.\n', 'go.mod': 'module x\n' });
    const env = remoteEnv(t);
    let r = env.run(['add', 'bill', `buildbox:${dir}`]);
    assert.strictEqual(r.code, 0, r.stderr);
    assert.match(r.stdout, /Auto-generated description: The billing service\./);
    r = env.run(['add', 'home', '--host', 'gpubox', '~/proj']);
    assert.strictEqual(r.code, 0, r.stderr);
    assert.match(env.readConfig(), /bill:\n    directory: \S+added\n    host: buildbox\n/);
    assert.match(env.readConfig(), /home:\n    directory: ~\/proj\n    host: gpubox\n/);
    r = env.run(['add', 'bad', '--host', '-oProxyCommand=x', '/x']);
    assert.strictEqual(r.code, 2);
    r = env.run(['list', '--json']);
    const l = JSON.parse(r.stdout);
    assert.deepStrictEqual(l.map((a) => [a.name, a.host, a.health]),
      [['bill', 'buildbox', 'ok'], ['home', 'gpubox', 'not_found']]);
    r = env.run(['describe', 'bill']);
    assert.match(r.stdout, /^bill \[OK\]\nhost: +buildbox\ndirectory: +\S+added/);
    assert.match(r.stdout, /project files: +CLAUDE\.md/);
    // a local path with a colon stays local
    const local = env.project('a:b');
    r = env.run(['add', 'loc', `./projects/a:b`]);
    assert.strictEqual(r.code, 0, r.stderr);
    assert.ok(env.readConfig().includes(`directory: ${local}`));
  });

  test('add_agent (MCP) takes HOST:DIR; a bad host is refused', async (t) => {
    const dir = sshd.project('mcpadd', { 'README.md': 'A service that answers questions about orders.\n' });
    const env = remoteEnv(t, { agents: {} });
    const srv = await serve(env);
    const r = await srv.call('add_agent', { name: 'orders', directory: `buildbox:${dir}` });
    assert.strictEqual(r.isError, false, JSON.stringify(r.value));
    assert.strictEqual(r.value.host, 'buildbox');
    assert.strictEqual(r.value.directory, dir);
    assert.strictEqual(r.value.description, 'A service that answers questions about orders.');
    const v = (await srv.call('dispatch', { agent: 'orders', task: 'hi' })).value;
    assert.strictEqual(v.success, true, JSON.stringify(v));
    assert.strictEqual(lastRemote().cwd, dir);
    const bad = await srv.call('add_agent', { name: 'evil', directory: 'a;b:/x' });
    assert.strictEqual(bad.isError, true);
    assert.match(bad.value.error, /Invalid directory 'a;b:\/x': Invalid host/);
    await srv.close();
  });

  test('inspect_agent and list_agents: one probe, previews, MCP servers, stacks; a dead host is fast', async (t) => {
    const dir = sshd.project('intro', { 'CLAUDE.md': '# Intro\nline two\n', 'README.md': 'readme text\n',
      '.mcp.json': '{"mcpServers":{"pg":{},"redis":{}}}', 'Cargo.toml': '', 'migrations/.keep': '' });
    const silent = net.createServer(() => {});
    await new Promise((r) => silent.listen(0, '127.0.0.1', r));
    t.after(() => silent.close());
    const env = remoteEnv(t, {
      agents: { intro: { host: 'buildbox', directory: dir }, dead: { host: 'downbox', directory: '/x' },
        dead2: { host: 'downbox', directory: '/y' } },
      extraHosts: `Host downbox\n  HostName 127.0.0.1\n  Port ${silent.address().port}\n`,
    });
    const srv = await serve(env);
    const i = (await srv.call('inspect_agent', { name: 'intro' })).value;
    assert.strictEqual(i.host, 'buildbox');
    assert.strictEqual(i.healthy, true);
    assert.deepStrictEqual(i.mcp_servers, ['pg', 'redis']);
    assert.deepStrictEqual(i.stacks, ['Rust']);
    assert.deepStrictEqual(i.dbs, ['migrations']);
    assert.strictEqual(i.claude_md_preview, '# Intro\nline two');
    assert.strictEqual(i.readme_preview, 'readme text');
    const t0 = Date.now();
    const l = (await srv.call('list_agents', {}, { ms: 20000 })).value;
    const took = Date.now() - t0;
    const byName = Object.fromEntries(l.map((a) => [a.name, a]));
    assert.strictEqual(byName.intro.healthy, true);
    assert.strictEqual(byName.dead.healthy, 'UNREACHABLE');
    assert.strictEqual(byName.dead2.healthy, 'UNREACHABLE');
    assert.ok(byName.dead.host_error);
    // one bounded wait for the dead host, not one per agent
    assert.ok(took < 5500, `list_agents took ${took} ms`);
    const t1 = Date.now();
    await srv.call('list_agents');
    assert.ok(Date.now() - t1 < 1000, 'the second listing waited again');
    await srv.close();
  });

  test('the control directory is private (0700), and the second dispatch reuses the connection', async (t) => {
    const dir = sshd.project('ctl');
    const env = remoteEnv(t, { agents: { c: { host: 'buildbox', directory: dir } } });
    const rt = path.join(env.root, 'rt');
    fs.mkdirSync(rt, { mode: 0o700 });
    env.sshExtra = { AGENT_DISPATCH_SSH: env.sshExtra.AGENT_DISPATCH_SSH, XDG_RUNTIME_DIR: rt };
    env.sshDir = path.join(rt, 'agent-dispatch-ssh');
    assert.strictEqual(env.run(['dispatch', 'c', 'one']).code, 0);
    const st = fs.statSync(env.sshDir);
    assert.strictEqual(st.mode & 0o777, 0o700);
    const socks = fs.readdirSync(env.sshDir);
    assert.strictEqual(socks.length, 1, `control sockets: ${socks}`);
    assert.ok(fs.statSync(path.join(env.sshDir, socks[0])).isSocket());
    // opened up by someone: made private again before use
    fs.chmodSync(env.sshDir, 0o755);
    assert.strictEqual(env.run(['dispatch', 'c', 'two']).code, 0);
    assert.strictEqual(fs.statSync(env.sshDir).mode & 0o777, 0o700);
    // another user's directory is refused, not used
    fs.chownSync(env.sshDir, sshd.user.uid, sshd.user.gid);
    const v = JSON.parse(env.run(['dispatch', 'c', 'three', '--json']).stdout);
    fs.chownSync(env.sshDir, 0, 0);
    assert.strictEqual(v.error_type, 'remote');
    assert.match(v.error, /must be a directory of this user that nobody else can enter/);
  });
});

describe('doctor', () => {
  test('per host: reachable with BatchMode, claude and its version, logged in; failures named', async (t) => {
    const dir = sshd.project('doc', { 'CLAUDE.md': 'x\n' });
    const port = await freePort();
    const env0 = newEnv(t);
    const otherKey = path.join(env0.root, 'other_key');
    spawnSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', otherKey]);
    const env = remoteEnv(t, {
      agents: { ok: { host: 'buildbox', directory: dir }, gone: { host: 'buildbox', directory: '/nonexistent/d' },
        refused: { host: 'refused', directory: '/x' }, nokey: { host: 'nokey', directory: '/x' } },
      extraHosts: `Host refused\n  HostName 127.0.0.1\n  Port ${port}\n` +
        // another host name (a shared connection is per host, port and user)
        `Host nokey\n  HostName localhost\n  AddressFamily inet\n  Port ${sshd.port}\n  User ${sshd.user.name}\n` +
        `  IdentityFile ${otherKey}\n  IdentitiesOnly yes\n  UserKnownHostsFile ${path.join(env0.root, 'kh')}\n`,
    });
    // nokey: its host key is known, but its key is not authorized
    fs.writeFileSync(path.join(env0.root, 'kh'), `[localhost]:${sshd.port} ${sshd.hostPub}\n`);
    const r = env.run(['doctor'], { timeout: 60000 });
    assert.strictEqual(r.code, 1, r.stdout);
    const out = r.stdout;
    assert.match(out, /\[OK\] host buildbox: reachable with BatchMode \(no prompt\)/);
    assert.match(out, /\[OK\] host buildbox: claude 2\.1\.328 \(\S+\/bin\/claude\)/);
    assert.match(out, /\[OK\] host buildbox: Claude Code is logged in \(api_key\)/);
    assert.match(out, /\[OK\] ok: buildbox:\S+doc/);
    assert.match(out, /\[FAIL\] gone: directory missing - buildbox:\/nonexistent\/d/);
    assert.match(out, /\[FAIL\] host refused: unreachable - .*Connection refused/);
    assert.match(out, /\[FAIL\] host nokey: reachable, but a login without a prompt \(BatchMode\) failed: .*Permission denied/);
    assert.match(out, /\[FAIL\] refused: refused:\/x not checked \(host unreachable\)/);
  });
});
