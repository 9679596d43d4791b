'use strict';
// Error messages that must say what really happened: a lock file that
// cannot be created (a full disk, no permission) and a job file that is a
// symbolic link. File-system faults come from the injector
// (tests/faults/inject.c): root ignores mode bits. Helpers: lib.js.
const { test, describe } = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const path = require('node:path');
const { newEnv } = require('./lib');

const INJECT = process.env.AD_FAULT_INJECT
  || path.resolve(__dirname, '../../build/tests/faults/libad_fault_inject.so');

function faultEnv(pathPart, errno, ops) {
  const asan = process.env.ASAN_OPTIONS ? `${process.env.ASAN_OPTIONS}:` : '';
  return { LD_PRELOAD: INJECT, AD_FAULT_PATH: pathPart, AD_FAULT_ERRNO: errno, AD_FAULT_OPS: ops,
    ASAN_OPTIONS: `${asan}verify_asan_link_order=0` };
}

const count = (text, part) => text.split(part).length - 1;

describe('the config lock', () => {
  const TEXT = { ENOSPC: 'No space left on device', EACCES: 'Permission denied' };
  for (const errno of ['ENOSPC', 'EACCES']) {
    test(`${errno} on the lock file: the error names the errno and the lock file once, and blames no other process`, async (t) => {
      const env = newEnv(t);
      const dirs = env.setup({ agents: { a: true } });
      const before = fs.readFileSync(env.config, 'utf8');
      const lock = `${env.config}.lock`;
      const r = env.run(['add', 'b', dirs.a], { env: faultEnv('agents.yaml.lock', errno, 'open') });
      assert.strictEqual(r.code, 1, r.stderr);
      const line = r.stderr.split('\n').find((l) => l.includes('could not lock')) || '';
      assert.ok(line.includes(`could not lock ${lock}: ${TEXT[errno]} (${errno})`), r.stderr);
      assert.strictEqual(count(r.stderr, lock), 1, `the lock file is named once: ${r.stderr}`);
      assert.doesNotMatch(r.stderr, /stuck agent-dispatch process|another process/, r.stderr);
      assert.match(r.stderr, new RegExp(`Check free space and permissions on ${env.cfgDir.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`), r.stderr);
      assert.strictEqual(fs.readFileSync(env.config, 'utf8'), before);

      const srv = env.serve({ env: faultEnv('agents.yaml.lock', errno, 'open') });
      await srv.init();
      const { text } = await srv.call('add_agent', { name: 'c', directory: dirs.a });
      assert.ok(text.includes(`could not lock ${lock}: ${TEXT[errno]} (${errno})`), text);
      assert.strictEqual(count(text, lock), 1, text);
      assert.doesNotMatch(text, /stuck agent-dispatch process/, text);
      await srv.close();
    });
  }
});

describe('a symlinked job file', () => {
  test('is refused with a message naming the file and that links are not followed', async (t) => {
    const env = newEnv(t);
    env.setup({ agents: { a: true } });
    fs.mkdirSync(env.jobs, { mode: 0o700 });
    const target = path.join(env.root, 'elsewhere.json');
    const id = 'cd'.repeat(16);
    fs.writeFileSync(target, JSON.stringify({ id, agent: 'a', task: 'forged', status: 'done',
      created_at: Date.now() / 1000 }));
    const file = path.join(env.jobs, `${id}.json`);
    fs.symlinkSync(target, file);
    const want = `refusing the job file ${file}: it is a symbolic link`;

    const r = env.run(['job', id]);
    assert.notStrictEqual(r.code, 0, r.stdout);
    assert.ok(r.stderr.includes(want), r.stderr);
    assert.doesNotMatch(r.stderr, /Too many levels of symbolic links|ELOOP/, r.stderr);

    const srv = env.serve();
    await srv.init();
    for (const tool of ['dispatch_status', 'dispatch_cancel']) {
      const { text } = await srv.call(tool, { job_id: id });
      assert.ok(text.includes(want), `${tool}: ${text}`);
      assert.doesNotMatch(text, /Too many levels of symbolic links|ELOOP/, text);
    }
    await srv.close();
  });
});

describe('a symlinked traces directory', () => {
  test('is refused like a symlinked jobs directory, naming the link, its target and the variable', async (t) => {
    const env = newEnv(t);
    env.setup({ agents: { a: true } });
    const real = path.join(env.root, 'real-traces');
    const link = path.join(env.root, 'traces-link');
    fs.mkdirSync(real, { mode: 0o700 });
    fs.symlinkSync(real, link);
    const r = env.run(['traces'], { env: { AGENT_DISPATCH_TRACES_DIR: link } });
    assert.strictEqual(r.code, 1, r.stdout + r.stderr);
    assert.ok(r.stderr.includes(`refusing the traces directory ${link}: it is a symbolic link (to ${real}); ` +
      'set AGENT_DISPATCH_TRACES_DIR to the directory itself'), r.stderr);
    assert.deepStrictEqual(fs.readdirSync(real), []);
  });
});
