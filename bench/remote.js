'use strict';
// Remote agents: what a dispatch over ssh costs next to a local one, in
// one run. Run as root (it creates an unprivileged user and starts a
// private sshd on 127.0.0.1, as the e2e tests do): bench/run-remote.sh.
//
//   1. Per-dispatch time, one `agent-dispatch serve`, the stub claude
//      answering at once: a local agent and a remote agent over a shared
//      connection (warm). Each round times, in a rotating order, a local
//      dispatch, a remote dispatch, the bare ssh round trip on the same
//      shared connection (`ssh host true`) and the stub run directly by
//      ssh on it; the ratios are taken round by round (so a change of the
//      machine's load hits both sides of a ratio alike) and their median
//      reported, with the load average before and after.
//      Target: remote <= 1.3 x (local + one ssh round trip).
//   2. First dispatch: with connection sharing (a fresh control directory,
//      so the master is set up by this dispatch) and without it (every
//      dispatch pays the handshake); the CLI `dispatch` command, whole
//      process, against a local dispatch by the CLI, ratios round by round.
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawn, spawnSync } = require('node:child_process');
const { Sshd } = require('../tests/e2e/sshd');

const ROOT = path.resolve(__dirname, '..');
const BIN = process.env.AD_BIN || path.join(ROOT, 'build/agent-dispatch');
const STUB = path.join(process.env.AD_STUB_DIR || path.join(ROOT, 'build/stub'), 'claude');
const QUICK = process.env.BENCH_QUICK === '1';
const R = (n) => (QUICK ? Math.max(5, Math.ceil(n / 10)) : n);

const median = (xs) => { const s = [...xs].sort((a, b) => a - b); const m = (s.length - 1) / 2; return (s[Math.floor(m)] + s[Math.ceil(m)]) / 2; };
const p90 = (xs) => { const s = [...xs].sort((a, b) => a - b); return s[Math.min(s.length - 1, Math.round((s.length - 1) * 0.9))]; };
const f2 = (x) => x.toFixed(2);
const now = () => Number(process.hrtime.bigint()) / 1e6;

function server(env) {
  const child = spawn(BIN, ['serve'], { env, stdio: ['pipe', 'pipe', 'inherit'] });
  let buf = '';
  const waiting = new Map();
  child.stdout.setEncoding('utf8');
  child.stdout.on('data', (d) => {
    buf += d;
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      const m = JSON.parse(line);
      if (m.id !== undefined && waiting.has(m.id)) { waiting.get(m.id)(m); waiting.delete(m.id); }
    }
  });
  let id = 0;
  const req = (method, params) => new Promise((resolve) => {
    const n = ++id;
    waiting.set(n, resolve);
    child.stdin.write(JSON.stringify({ jsonrpc: '2.0', id: n, method, params }) + '\n');
  });
  return {
    child, req,
    async init() {
      await req('initialize', { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'bench', version: '1' } });
      child.stdin.write('{"jsonrpc":"2.0","method":"notifications/initialized"}\n');
    },
    async dispatch(agent, task) {
      const r = await req('tools/call', { name: 'dispatch', arguments: { agent, task } });
      const v = JSON.parse(r.result.content[0].text);
      if (!v.success) throw new Error(`dispatch failed: ${JSON.stringify(v)}`);
      return v;
    },
    close() { child.stdin.end(); return new Promise((r) => child.on('exit', r)); },
  };
}

function exitMasters(dir) {
  let socks = [];
  try { socks = fs.readdirSync(dir); } catch { return; }
  for (const s of socks) spawnSync('/usr/bin/ssh', ['-S', path.join(dir, s), '-O', 'exit', 'x'], { stdio: 'ignore' });
}

async function main() {
  const sshd = await Sshd.start({ user: 'ad-remote-bench', claude: STUB });
  const tmp = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'ad-rbench-')));
  const home = path.join(tmp, 'home');
  fs.mkdirSync(home);
  const { ssh } = sshd.client(home, ['buildbox']);
  // The same client without connection sharing: options given first win.
  const sshNoShare = path.join(home, 'ssh-noshare');
  fs.writeFileSync(sshNoShare, '#!/bin/sh\nexec /usr/bin/ssh -F "$HOME/.ssh/config" -o ControlMaster=no -o ControlPath=none "$@"\n', { mode: 0o755 });
  const local = path.join(tmp, 'local');
  fs.mkdirSync(local);
  const remoteDir = sshd.project('bench');
  const config = path.join(tmp, 'agents.yaml');
  fs.writeFileSync(config, `agents:\n  here:\n    directory: ${JSON.stringify(local)}\n` +
    `  there:\n    host: buildbox\n    directory: ${JSON.stringify(remoteDir)}\n` +
    'settings:\n  cache:\n    enabled: false\n');
  const ctl = path.join(tmp, 'ctl');
  const env = { ...process.env, HOME: home, PATH: `${path.dirname(STUB)}:${process.env.PATH}`,
    AGENT_DISPATCH_CONFIG: config, AGENT_DISPATCH_JOBS_DIR: path.join(tmp, 'jobs'),
    AGENT_DISPATCH_SSH: ssh, AGENT_DISPATCH_SSH_DIR: ctl };
  delete env.CLAUDECODE;
  const rows = [];
  let load = '';
  try {
    // ---- 1. per-dispatch, warm shared connection
    const srv = server(env);
    await srv.init();
    for (let i = 0; i < 10; i++) { await srv.dispatch('here', 'warm'); await srv.dispatch('there', 'warm'); }
    // Rounds of four (local dispatch, remote dispatch, ssh round trip,
    // direct ssh run of the stub), in an order that rotates, so that a
    // change of load on the machine hits all four alike; ratios per round.
    const sock = fs.readdirSync(ctl);
    if (sock.length !== 1) throw new Error(`control sockets after the warm-up: ${sock}`);
    const sockPath = path.join(ctl, sock[0]);
    const check = () => spawnSync('/usr/bin/ssh', ['-S', sockPath, '-O', 'check', 'x'], { encoding: 'utf8' });
    if (check().status !== 0) throw new Error(`no master running: ${check().stderr}`);
    const stubCmd = `cd '${remoteDir}' && exec claude -p --output-format json --session-id ` +
      '00000000-0000-4000-8000-000000000000 --';
    const sshArgs = ['-S', sockPath, '-T', '-o', 'BatchMode=yes', 'buildbox'];
    const timed = async (fn) => { const t0 = now(); await fn(); return now() - t0; };
    const steps = {
      here: () => srv.dispatch('here', 'x'),
      there: () => srv.dispatch('there', 'x'),
      rtt: () => spawnSync(ssh, [...sshArgs, 'true'], { env }),
      floor: () => {
        const r = spawnSync(ssh, [...sshArgs, stubCmd], { env, input: 'x' });
        if (r.status !== 0) throw new Error(`floor: ${r.stderr}`);
      },
    };
    const names = Object.keys(steps);
    const t = Object.fromEntries(names.map((k) => [k, []]));
    const load0 = os.loadavg()[0];
    const rounds = R(400);
    for (let i = 0; i < rounds; i++) {
      for (let j = 0; j < names.length; j++) {
        const k = names[(i + j) % names.length];
        t[k].push(await timed(steps[k]));
      }
    }
    const load1 = os.loadavg()[0];
    await srv.close();
    if (fs.readdirSync(ctl).length !== 1 || check().status !== 0) {
      throw new Error('the dispatches did not all share the one master connection');
    }
    const per = (f) => median(t.here.map((_, i) => f(i)));
    const lm = median(t.here), rm = median(t.there), sm = median(t.rtt), fm = median(t.floor);
    load = `load average ${load0.toFixed(1)} before block 1, ${load1.toFixed(1)} after`;
    rows.push(['1', 'dispatch, local agent (serve, stub answers at once)', `${f2(lm)} ms (p90 ${f2(p90(t.here))})`, 'baseline']);
    rows.push(['1', 'dispatch, remote agent, shared connection', `${f2(rm)} ms (p90 ${f2(p90(t.there))})`,
      `${f2(per((i) => t.there[i] / t.here[i]))}x of local`]);
    rows.push(['1', 'ssh round trip on the shared connection (`ssh host true`)', `${f2(sm)} ms`, '']);
    rows.push(['1', 'the stub run directly by ssh on that connection (no agent-dispatch)', `${f2(fm)} ms`, '']);
    rows.push(['1', 'remote - (local + ssh round trip)', `${f2(per((i) => t.there[i] - t.here[i] - t.rtt[i]))} ms`, '']);
    rows.push(['1', 'remote / (local + ssh round trip)', '',
      `**${f2(per((i) => t.there[i] / (t.here[i] + t.rtt[i])))}x** (target <= 1.3x)`]);
    rows.push(['1', 'remote / direct ssh run of the stub', '', `**${f2(per((i) => t.there[i] / t.floor[i]))}x**`]);
    exitMasters(ctl);

    // ---- 2. first dispatch: with and without connection sharing (CLI)
    const cli = (agent, extra) => {
      const t0 = now();
      const r = spawnSync(BIN, ['dispatch', agent, 'x'], { env: { ...env, ...extra }, encoding: 'utf8' });
      if (r.status !== 0) throw new Error(`${agent}: ${r.stderr}`);
      return now() - t0;
    };
    const cold = [], noshare = [], warm = [], loc = [];
    for (let i = 0; i < R(30); i++) {
      const dir = path.join(tmp, `ctl-${i}`);
      cold.push(cli('there', { AGENT_DISPATCH_SSH_DIR: dir }));
      warm.push(cli('there', { AGENT_DISPATCH_SSH_DIR: dir }));
      exitMasters(dir);
      noshare.push(cli('there', { AGENT_DISPATCH_SSH: sshNoShare }));
      loc.push(cli('here', {}));
    }
    const lc = median(loc);
    const vs = (xs) => `${f2(median(xs.map((x, i) => x / loc[i])))}x`;
    rows.push(['2', 'CLI dispatch, local agent', `${f2(lc)} ms`, 'baseline']);
    rows.push(['2', 'CLI dispatch, remote, first with sharing (sets the master up)', `${f2(median(cold))} ms`, vs(cold)]);
    rows.push(['2', 'CLI dispatch, remote, second with sharing (reuses it)', `${f2(median(warm))} ms`, vs(warm)]);
    rows.push(['2', 'CLI dispatch, remote, no sharing (handshake every time)', `${f2(median(noshare))} ms`, vs(noshare)]);
  } finally {
    exitMasters(ctl);
    await sshd.stop();
    fs.rmSync(tmp, { recursive: true, force: true });
  }
  const table = ['| # | measurement | median | ratio |', '| --- | --- | --- | --- |']
    .concat(rows.map((r) => `| ${r.join(' | ')} |`)).join('\n');
  const text = `# Remote agents over ssh (bench/remote.js)\n\n${os.cpus().length} CPUs, ` +
    `${new Date().toISOString().slice(0, 10)}${QUICK ? ', BENCH_QUICK' : ''}, ${load}. ` +
    'Ratios are medians of the ratios taken round by round.\n\n' + `${table}\n`;
  process.stdout.write(text);
  if (!QUICK) fs.writeFileSync(path.join(__dirname, 'results-remote.md'), text);
}

main().catch((e) => { console.error(e); process.exit(1); });
