'use strict';
// State files planted by hand where the store expects its own: a FIFO
// named like a job record or a trace day file, a day file that is a
// symbolic link or larger than the reader takes. None may hang a reader
// (a FIFO's open waits for a writer), and none may hide the rest of the
// store: the file is skipped with a warning naming it, and gc removes it.
// Helpers: tests/e2e/lib.js.
const { test, describe } = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const path = require('node:path');
const { execFileSync } = require('node:child_process');
const { newEnv } = require('./lib');

const FIFO_ID = '0123456789abcdef0123456789abcdef';

function code(r, expected, what) {
  assert.strictEqual(r.signal, null, `${what}: killed by ${r.signal} (it hung)\n${r.stderr}`);
  assert.strictEqual(r.code, expected, `${what}: exit ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  return r;
}

// Runs the CLI, killed after 15 s: a hang is a failure, not a stuck test.
function run(env, args) {
  return env.run(args, { timeout: 15000, killSignal: 'SIGKILL' });
}

describe('planted files in the job store', () => {
  test('a FIFO named like a job record: jobs, job, the server and gc go on', async (t) => {
    const env = newEnv(t);
    env.setup({ agents: { a: true } });
    const id = code(run(env, ['dispatch', 'a', '[stub:reply=kept] real', '--async']), 0, 'dispatch').stdout.trim();
    code(run(env, ['wait', id]), 0, 'wait');
    const fifo = path.join(env.jobs, `${FIFO_ID}.json`);
    execFileSync('mkfifo', ['-m', '600', fifo]);
    const list = code(run(env, ['jobs']), 0, 'jobs');
    assert.match(list.stdout, new RegExp(id));
    assert.match(list.stderr, new RegExp(`${FIFO_ID}.*(skipped|not a job record)`), list.stderr);
    const one = run(env, ['job', FIFO_ID]);
    assert.strictEqual(one.signal, null, 'job <fifo id> hung');
    assert.notStrictEqual(one.code, 0);
    // A server reads the store as it starts: it must go on answering.
    const srv = env.serve();
    await srv.init();
    const jobs = (await srv.call('dispatch_jobs', {}, { ms: 10000 })).value;
    assert.deepStrictEqual(jobs.map((j) => j.id), [id]);
    const st = (await srv.call('dispatch_status', { job_id: FIFO_ID }, { ms: 10000 })).value;
    assert.ok(st.error, JSON.stringify(st));
    await srv.close();
    code(run(env, ['gc', '--all']), 0, 'gc');
    assert.ok(!fs.existsSync(fifo), 'gc left the FIFO');
  });
});

describe('planted files among the traces', () => {
  function traced(t) {
    const env = newEnv(t);
    env.setup({ agents: { a: true } });
    code(run(env, ['dispatch', 'a', '[stub:reply=ok] traced']), 0, 'dispatch');
    const dir = path.join(env.cfgDir, 'traces');
    const ids = JSON.parse(code(run(env, ['traces', '--json']), 0, 'traces').stdout);
    const list = Array.isArray(ids) ? ids : ids.traces;
    assert.strictEqual(list.length, 1);
    return { env, dir, traceId: list[0].trace_id };
  }

  for (const [what, plant] of [
    ['a FIFO', (f) => execFileSync('mkfifo', ['-m', '600', f])],
    ['a symbolic link', (f) => fs.symlinkSync('/etc/passwd', f)],
    ['a file over the reader\'s 64 MiB', (f) => { fs.writeFileSync(f, ''); fs.truncateSync(f, 70 << 20); fs.chmodSync(f, 0o600); }],
  ]) {
    test(`${what} as a day file: traces, trace and dispatch_trace still show every other trace`, async (t) => {
      const { env, dir, traceId } = traced(t);
      const planted = path.join(dir, 'spans-20200101.jsonl');
      plant(planted);
      const list = code(run(env, ['traces']), 0, 'traces');
      assert.match(list.stdout, /traced/);
      assert.match(list.stderr, /spans-20200101\.jsonl skipped/, list.stderr);
      const one = code(run(env, ['trace', traceId]), 0, 'trace');
      assert.match(one.stdout, new RegExp(`${traceId}: 1 span`), one.stdout);
      const srv = env.serve();
      await srv.init();
      const tr = await srv.call('dispatch_trace', { trace_id: traceId }, { ms: 10000 });
      assert.strictEqual(tr.value.spans.length, 1, tr.text);
      assert.match(JSON.stringify((await srv.call('list_agents', {}, { ms: 10000 })).value), /"a"/);
      await srv.close();
    });
  }

  test('gc removes a FIFO planted as a day file', (t) => {
    const { env, dir } = traced(t);
    const planted = path.join(dir, 'spans-20200101.jsonl');
    execFileSync('mkfifo', ['-m', '600', planted]);
    code(run(env, ['gc', '--all']), 0, 'gc');
    assert.ok(!fs.existsSync(planted), 'gc left the FIFO');
  });
});
