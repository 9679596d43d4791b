'use strict';
// A full disk (a 1 MiB tmpfs filled up; the suite runs as root): a write
// that fails keeps what was there. A config edit that cannot be written
// leaves agents.yaml and its backups as they were; a span line cut short
// is not glued to the next one.
const { test } = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const path = require('node:path');
const { spawnSync } = require('node:child_process');
const { newEnv } = require('./lib');

/** A 1 MiB tmpfs, unmounted after the test; fill() takes every free byte. */
function smallDisk(t) {
  const dir = fs.mkdtempSync('/tmp/ad-full-');
  const m = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=1m,mode=700', 'tmpfs', dir], { encoding: 'utf8' });
  t.after(() => {
    spawnSync('umount', [dir]);
    fs.rmSync(dir, { recursive: true, force: true });
  });
  assert.strictEqual(m.status, 0, `mount (the suite runs as root): ${m.stderr}`);
  const filler = path.join(dir, 'filler');
  return {
    dir,
    fill() { spawnSync('dd', ['if=/dev/zero', `of=${filler}`, 'bs=4k'], { encoding: 'utf8' }); },
    free() { fs.rmSync(filler, { force: true }); },
  };
}

test('a config edit that fails on a full disk keeps agents.yaml and every backup as they were', (t) => {
  const disk = smallDisk(t);
  const env = newEnv(t);
  const cfg = path.join(disk.dir, 'cfg', 'agents.yaml');
  fs.mkdirSync(path.dirname(cfg), { mode: 0o700 });
  const run = (args) => env.run(args, { env: { AGENT_DISPATCH_CONFIG: cfg } });
  for (let i = 1; i <= 6; i++) {
    const r = run(['add', `a${i}`, env.project(`a${i}`), '-d', `agent ${i}`]);
    assert.strictEqual(r.code, 0, r.stderr);
  }
  const snapshot = () => Object.fromEntries(fs.readdirSync(path.dirname(cfg)).filter((n) => /^agents\.yaml(\.bak\.\d)?$/.test(n))
    .map((n) => [n, fs.readFileSync(path.join(path.dirname(cfg), n), 'utf8')]));
  const before = snapshot();
  assert.strictEqual(Object.keys(before).length, 6, JSON.stringify(Object.keys(before)));
  disk.fill();
  for (let i = 1; i <= 3; i++) {
    const r = run(['update', 'a1', '-d', `change ${i}`]);
    assert.notStrictEqual(r.code, 0, r.stdout);
    assert.match(r.stderr, /[Nn]othing changed|No space/, r.stderr);
  }
  disk.free();
  assert.deepStrictEqual(snapshot(), before, 'a failed edit changed the config or its backups');
  // Space again: the next edit keeps the previous file as .bak.1.
  const ok = run(['update', 'a1', '-d', 'change after']);
  assert.strictEqual(ok.code, 0, ok.stderr);
  const after = snapshot();
  assert.strictEqual(after['agents.yaml.bak.1'], before['agents.yaml']);
  assert.strictEqual(after['agents.yaml.bak.2'], before['agents.yaml.bak.1']);
  assert.match(after['agents.yaml'], /change after/);
});

test('a span line cut short by a full disk is not glued to the next one: every later span reads back', (t) => {
  const disk = smallDisk(t);
  const env = newEnv(t);
  env.setup({ agents: { a: true } });
  const traces = path.join(disk.dir, 'traces');
  const opts = { env: { AGENT_DISPATCH_TRACES_DIR: traces } };
  assert.strictEqual(env.run(['dispatch', 'a', 'first'], opts).code, 0);
  const day = path.join(traces, fs.readdirSync(traces).find((n) => n.endsWith('.jsonl')));
  // Fill the disk but the last bytes of the day file's page, then write
  // spans until one does not fit whole.
  disk.fill();
  for (let i = 0; i < 8; i++) {
    const r = env.run(['dispatch', 'a', `full ${i} ${'x'.repeat(150)}`], opts);
    assert.strictEqual(r.code, 0, r.stderr); // a trace that cannot be written never fails the dispatch
  }
  disk.free();
  assert.strictEqual(env.run(['dispatch', 'a', 'after the disk was freed'], opts).code, 0);
  const lines = fs.readFileSync(day, 'utf8').split('\n').filter(Boolean);
  // The line cut short stays (what reached the disk); it is alone on its
  // line, and no later record was written onto it.
  const torn = lines.filter((l) => { try { JSON.parse(l); return false; } catch { return true; } });
  assert.ok(torn.length <= 1, `${torn.length} damaged lines`);
  for (const l of torn) {
    assert.strictEqual(l.split('{"trace_id"').length - 1, 1, `records glued together: ${l.slice(0, 400)}`);
  }
  const listed = env.run(['traces', '--json'], opts);
  assert.strictEqual(listed.code, 0, listed.stderr);
  assert.ok(!/"start":0\b|1970-01-01/.test(listed.stdout), listed.stdout.slice(0, 500));
  const last = env.run(['trace', '--json'], opts);
  assert.strictEqual(last.code, 0, last.stderr);
  assert.ok(last.stdout.includes('after the disk was freed'), last.stdout.slice(0, 300));
});
