'use strict';
// Inputs a person types that the CLI and the MCP tools once mishandled:
// text that is not UTF-8 in a config edit, a long agent name in the jobs
// table, a schema file that is huge or a directory, an empty directory or
// task, and an SVG or HTML file that cannot be written.
const { test, describe } = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const path = require('node:path');
const { newEnv } = require('./lib');

function code(r, expected) {
  assert.strictEqual(r.code, expected, `exit ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  return r;
}

function noInternalError(r) {
  assert.doesNotMatch(r.stdout + r.stderr, /internal error|stack traceback|\.lua:\d+:/);
  return r;
}

describe('config edits', () => {
  test('a description, a group description or a directory that is not UTF-8: a clear error, the file untouched', (t) => {
    const env = newEnv(t);
    const dir = env.project('p');
    env.writeConfig('agents: {}\n');
    code(env.run(['add', 'a', dir, '-d', 'fine']), 0);
    const before = env.readConfig();
    const bad = Buffer.from([0x62, 0xff, 0x61, 0x64]);
    for (const args of [['add', 'b', dir, '-d', bad], ['update', 'a', '-d', bad],
      ['group', 'add', 'g', '--member', 'a', '-d', bad]]) {
      const r = noInternalError(env.runBytes(args));
      assert.notStrictEqual(r.code, 0, `${args.join(' ')} succeeded`);
      assert.match(r.stderr, /not valid UTF-8/, args.join(' '));
      assert.strictEqual(env.readConfig(), before);
    }
    const odd = Buffer.concat([Buffer.from(`${env.root}/`), Buffer.from([0x64, 0xff])]);
    fs.mkdirSync(odd);
    const r = noInternalError(env.runBytes(['add', 'c', odd]));
    assert.notStrictEqual(r.code, 0);
    assert.match(r.stderr, /not valid UTF-8/);
    assert.strictEqual(env.readConfig(), before);
  });

  test('an empty directory is refused, not taken as the current one (CLI and add_agent)', async (t) => {
    const env = newEnv(t);
    env.writeConfig('agents: {}\n');
    const r = noInternalError(env.run(['add', 'e', '']));
    assert.strictEqual(r.code, 2, r.stderr);
    assert.match(r.stderr, /directory/i);
    assert.strictEqual(env.readConfig(), 'agents: {}\n');
    const srv = env.serve();
    await srv.init();
    const { value } = await srv.call('add_agent', { name: 'e1', directory: '', description: 'x' });
    assert.ok(value.error, JSON.stringify(value));
    assert.match(value.error, /directory/i);
    assert.strictEqual(env.readConfig(), 'agents: {}\n');
    await srv.close();
  });
});

describe('values every dispatch would refuse', () => {
  test('a model or tool name starting with "-" is refused where it is set (CLI and MCP), and doctor fails an agent that has one', async (t) => {
    const env = newEnv(t);
    const dir = env.project('p');
    env.writeConfig('agents: {}\n');
    for (const args of [['--model', '--dangerous'], ['--allowed-tools', 'Read,--evil'],
      ['--disallowed-tools', '-x']]) {
      const r = noInternalError(env.run(['add', 'a', dir, '-d', 'x', ...args]));
      assert.strictEqual(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, /starts with '-'/);
      assert.strictEqual(env.readConfig(), 'agents: {}\n');
    }
    code(env.run(['add', 'a', dir, '-d', 'x']), 0);
    const before = env.readConfig();
    let r = noInternalError(env.run(['update', 'a', '--model', '-m']));
    assert.strictEqual(r.code, 2, r.stderr);
    assert.strictEqual(env.readConfig(), before);
    const srv = env.serve();
    await srv.init();
    for (const args of [{ model: '--x' }, { allowed_tools: 'Read, --evil' }, { disallowed_tools: '-x' }]) {
      const { value } = await srv.call('update_agent', { name: 'a', ...args });
      assert.match(value.error || '', /starts with '-'/, JSON.stringify(value));
    }
    const added = (await srv.call('add_agent', { name: 'b', directory: dir, description: 'x',
      allowed_tools: 'Read, --evil' })).value;
    assert.match(added.error || '', /starts with '-'/, JSON.stringify(added));
    await srv.close();
    assert.strictEqual(env.readConfig(), before);
    // Written by hand: doctor says every dispatch to it is refused.
    env.writeConfig(`agents:\n  a:\n    directory: ${dir}\n    model: --dangerous\n`);
    r = env.run(['doctor']);
    assert.strictEqual(r.code, 1, r.stdout);
    assert.match(r.stdout, /\[FAIL\] a: model '--dangerous' starts with '-'/);
  });
});

describe('names, paths and numbers', () => {
  test('a file for a directory, an empty group name, a repeated member, a limit or timeout below 1', (t) => {
    const env = newEnv(t);
    const dir = env.project('p');
    env.writeConfig('agents: {}\n');
    const file = path.join(env.root, 'afile');
    fs.writeFileSync(file, 'x');
    let r = noInternalError(env.run(['add', 'f', file]));
    assert.strictEqual(r.code, 2, r.stderr);
    assert.match(r.stderr, /is a file, not a directory/);
    code(env.run(['add', 'a', dir, '-d', 'x']), 0);
    r = noInternalError(env.run(['group', 'add', '', '--member', 'a']));
    assert.strictEqual(r.code, 1, r.stderr);
    assert.match(r.stderr, /Invalid group name ''/);
    code(env.run(['group', 'add', 'g', '--member', 'a', '--member', 'a']), 0);
    const g = JSON.parse(code(env.run(['group', 'inspect', 'g', '--json']), 0).stdout);
    assert.deepStrictEqual(g.members.map((m) => m.agent), ['a'], 'a member is listed once');
    for (const n of ['0', '-1']) {
      r = noInternalError(env.run(['jobs', '--limit', n]));
      assert.strictEqual(r.code, 2, r.stderr);
      assert.match(r.stderr, /--limit must be at least 1/);
      for (const cmd of ['dispatch', 'test']) {
        r = noInternalError(env.run([cmd, 'a', 'hi', '--timeout', n]));
        assert.strictEqual(r.code, 1, r.stderr);
        assert.match(r.stderr, /--timeout must be a positive number of seconds/);
      }
    }
  });

  test('AGENT_DISPATCH_CLAUDE naming nothing runnable is named in the error', (t) => {
    const env = newEnv(t);
    env.setup({ agents: { a: true } });
    for (const bad of [path.join(env.root, 'nonexistent'), env.root]) {
      const r = noInternalError(env.run(['dispatch', 'a', 'hi'], { env: { AGENT_DISPATCH_CLAUDE: bad } }));
      assert.strictEqual(r.code, 1, r.stderr);
      assert.ok(r.stderr.includes(`AGENT_DISPATCH_CLAUDE=${bad}`), r.stderr);
      assert.doesNotMatch(r.stderr, /not found in PATH/);
    }
  });
});

describe('smaller edges', () => {
  test('add prints the generated description only once the agent is added', (t) => {
    const env = newEnv(t);
    const dir = env.project('p');
    env.writeConfig('agents: {}\n');
    code(env.run(['add', 'a', dir]), 0);
    const r = code(env.run(['add', 'a', dir]), 1);
    assert.match(r.stderr, /already exists/);
    assert.doesNotMatch(r.stdout, /Auto-generated description/);
  });

  test('list and describe show control characters of a description escaped, not sent to the terminal', (t) => {
    const env = newEnv(t);
    const dir = env.project('p');
    env.writeConfig('agents: {}\n');
    code(env.run(['add', 'a', dir, '-d', '\u001b[31mred\u0007']), 0);
    for (const cmd of [['list'], ['describe', 'a']]) {
      const r = code(env.run(cmd), 0);
      assert.ok(!r.stdout.includes('\u001b') && !r.stdout.includes('\u0007'), r.stdout);
      assert.ok(r.stdout.includes('\\x1b[31mred\\x07'), r.stdout);
    }
    // --json keeps the value as it is (JSON escapes it).
    assert.strictEqual(JSON.parse(code(env.run(['list', '--json']), 0).stdout)[0].description,
      '\u001b[31mred\u0007');
  });

  test('run: wrong types given to the Lua API are errors naming the argument', (t) => {
    const env = newEnv(t);
    env.setup({ agents: { a: true } });
    const script = path.join(env.root, 's.lua');
    for (const [body, msg] of [
      ['ad.stream{ agent = "a", task = "x", on_progress = 5 }', /on_progress must be a function/],
      ['ad.all(5)', /all: expected a list of functions/],
      ['ad.all({ 5 })', /all: expected a list of functions/]]) {
      fs.writeFileSync(script, `local ad = require "agent_dispatch"\n${body}\n`);
      const r = env.run(['run', script]);
      assert.strictEqual(r.code, 1, r.stderr);
      assert.match(r.stderr, msg);
      assert.doesNotMatch(r.stderr, /internal error|attempt to/);
    }
  });
});

describe('overrides', () => {
  test("a runtime error in the user's override is reported as theirs: file and line, no traceback", (t) => {
    const env = newEnv(t);
    env.setup({ agents: { a: true } });
    const dir = path.join(env.root, 'ulua');
    fs.mkdirSync(path.join(dir, 'ad', 'domain'), { recursive: true, mode: 0o700 });
    for (const d of [dir, path.join(dir, 'ad'), path.join(dir, 'ad', 'domain')]) fs.chmodSync(d, 0o700);
    const file = path.join(dir, 'ad', 'domain', 'prompt.lua');
    fs.writeFileSync(file, 'local M = {}\nfunction M.build(req) local x = nil; return x.y end\nreturn M\n',
      { mode: 0o600 });
    const r = env.run(['dispatch', 'a', 'hi'], { env: { AGENT_DISPATCH_USER_LUA_DIR: dir } });
    assert.strictEqual(r.code, 1, r.stderr);
    assert.ok(r.stderr.includes(`${file}:2: attempt to index a nil value`), r.stderr);
    assert.match(r.stderr, /The error is in your override/);
    assert.doesNotMatch(r.stderr, /internal error|stack traceback/);
  });
});

describe('run: stopping a script', () => {
  function script(env, body) {
    const f = path.join(env.root, `s${Math.random().toString(16).slice(2)}.lua`);
    fs.writeFileSync(f, `local ad = require "agent_dispatch"\n${body}\n`);
    return f;
  }

  test('--timeout and SIGINT stop a script inside ad.sleep: nothing runs after', async (t) => {
    const env = newEnv(t);
    env.setup({ agents: { a: true } });
    const log = path.join(env.root, 'stub.log');
    const s = script(env, 'ad.sleep(3)\nad.dispatch{ agent = "a", task = "after the deadline" }\n' +
      'while true do ad.sleep(0.1) end');
    const r = env.run(['run', '--timeout', '1', s], { env: { STUB_CLAUDE_LOG: log, AGENT_DISPATCH_QUIET: '1' },
      timeout: 15000, killSignal: 'SIGKILL' });
    assert.strictEqual(r.code, 124, r.stderr);
    assert.ok(!fs.existsSync(log), 'a dispatch started after the deadline');
    // SIGINT once the script runs (a fixed delay raced the start of a
    // sanitized build on a loaded machine: the signal came before its
    // handler and killed the process outright).
    const mark = path.join(env.root, 'running');
    const h = env.start(['run', script(env, `io.open(${JSON.stringify(mark)}, "w"):close()\n` +
      'while true do ad.sleep(0.1) end')], { env: { AGENT_DISPATCH_QUIET: '1' } });
    for (let i = 0; i < 300 && !fs.existsSync(mark); i++) await new Promise((res) => setTimeout(res, 50));
    assert.ok(fs.existsSync(mark), 'the script did not start within 15 s');
    h.child.kill('SIGINT');
    const done = await Promise.race([h.done, new Promise((res) => setTimeout(() => res(null), 10000))]);
    if (!done) h.child.kill('SIGKILL');
    assert.ok(done, 'still running 10 s after SIGINT');
    assert.strictEqual(done.code, 130, done.stderr);
  });

  test('a cancelled task stops at its next ad.sleep', (t) => {
    const env = newEnv(t);
    env.setup({ agents: { a: true } });
    const r = env.run(['run', '--timeout', '20', script(env, `
local t = ad.spawn(function() ad.sleep(5); return "finished" end)
ad.sleep(0.1)
t:cancel()
local ok, v = t:wait()
print(ok, type(v) == "table" and v.type or v)
return ok and 1 or 0`)], { env: { AGENT_DISPATCH_QUIET: '1' } });
    assert.strictEqual(r.code, 0, r.stderr);
    assert.match(r.stdout, /false\tcancelled/);
  });

  test('--timeout stops a script that never yields', (t) => {
    const env = newEnv(t);
    env.setup({ agents: { a: true } });
    const r = env.run(['run', '--timeout', '1', script(env, 'while true do end')],
      { env: { AGENT_DISPATCH_QUIET: '1' }, timeout: 15000, killSignal: 'SIGKILL' });
    assert.strictEqual(r.code, 124, r.stderr);
    assert.match(r.stderr, /--timeout/);
  });

  test('wrong arguments to the rest of the Lua API are errors naming them', (t) => {
    const env = newEnv(t);
    env.setup({ agents: { a: true } });
    for (const [body, msg] of [
      ['ad.session{ agent = "a", task = "t", session_id = 42 }', /session_id must be a string/],
      ['ad.parallel()', /parallel: expected a list/],
      ['ad.dialogue()', /dialogue: expected a table/],
      ['ad.wait(nil)', /invalid job id/],
      ['ad.cancel(5)', /invalid job id/],
      ['ad.jobs("running")', /jobs: expected a table/],
      ['ad.jobs{ status = "weird" }', /status must be one of/],
      ['ad.jobs{ limit = -1 }', /limit must be at least 1/],
      ['ad.dialogue{ requester = "a" }', /responder must be an agent name/],
      ['ad.dialogue{ requester = "a", responder = "a", topic = "  " }', /topic is empty/],
      ['ad.dialogue{ requester = "a", responder = "a", topic = "t", max_rounds = "3" }', /max_rounds must be a number/]]) {
      const r = env.run(['run', script(env, body)]);
      assert.strictEqual(r.code, 1, `${body}: ${r.stderr}`);
      assert.match(r.stderr, msg, body);
      assert.doesNotMatch(r.stderr, /attempt to|bad argument|internal error/, body);
    }
    const r = code(env.run(['run', script(env, 'local v, e = ad.json.decode(nil)\nprint(v, e)')]), 0);
    assert.match(r.stdout, /nil\texpected a string/);
  });

  test('an exit status outside 0-255 is not taken modulo 256', (t) => {
    const env = newEnv(t);
    env.setup({ agents: { a: true } });
    for (const [v, want] of [['256', 1], ['300', 1], ['-1', 1], ['3', 3], ['0', 0]]) {
      const r = env.run(['run', script(env, `return ${v}`)]);
      assert.strictEqual(r.code, want, `return ${v}: ${r.stderr}`);
      if (want === 1) assert.match(r.stderr, /0 to 255/);
    }
  });
});

describe('dispatch input', () => {
  test('an empty task is refused before any claude starts (CLI and dispatch)', async (t) => {
    const env = newEnv(t);
    env.setup({ agents: { a: true } });
    const log = path.join(env.root, 'stub.log');
    for (const cmd of ['dispatch', 'test']) {
      for (const task of ['', '   ']) {
        const r = noInternalError(env.run([cmd, 'a', task], { env: { STUB_CLAUDE_LOG: log } }));
        assert.strictEqual(r.code, 2, `${cmd} ${JSON.stringify(task)}: ${r.stderr}`);
        assert.match(r.stderr, /task/i);
        assert.doesNotMatch(r.stderr, /Error: Error:/);
        assert.doesNotMatch(r.stdout, /Dispatching/, 'nothing was dispatched');
      }
    }
    const srv = env.serve({ env: { STUB_CLAUDE_LOG: log } });
    await srv.init();
    const { value } = await srv.call('dispatch', { agent: 'a', task: '' });
    assert.ok(value.error, JSON.stringify(value));
    assert.match(value.error, /task/i);
    await srv.close();
    assert.ok(!fs.existsSync(log), 'no claude was started');
  });

  test('a child killed after progress lines: the error says it sent no result, not that it produced no output', async (t) => {
    const env = newEnv(t);
    env.setup({ agents: { a: true } });
    const srv = env.serve();
    await srv.init();
    const { value } = await srv.call('dispatch', { agent: 'a', task: 'x [stub:progress=5][stub:die=2]' });
    assert.strictEqual(value.success, false, JSON.stringify(value));
    assert.match(value.error, /killed by signal 9 before it sent a result/, JSON.stringify(value));
    await srv.close();
  });

  test('an empty dialogue topic is refused before any claude starts', async (t) => {
    const env = newEnv(t);
    env.setup({ agents: { a: true, b: true } });
    const log = path.join(env.root, 'stub.log');
    const srv = env.serve({ env: { STUB_CLAUDE_LOG: log } });
    await srv.init();
    const { value } = await srv.call('dispatch_dialogue', { requester: 'a', responder: 'b', topic: '' });
    assert.match(value.error || '', /topic is empty/, JSON.stringify(value));
    await srv.close();
    assert.ok(!fs.existsSync(log), 'no claude was started');
  });

  test('--json-schema: a file over the limit is refused without reading it all; a directory says so', (t) => {
    const env = newEnv(t);
    env.setup({ agents: { a: true } });
    // /dev/zero never ends: only a bounded read can answer.
    let r = noInternalError(env.run(['dispatch', 'a', 'x', '--json-schema', '/dev/zero'], { timeout: 15000 }));
    assert.strictEqual(r.code, 1, r.stderr);
    assert.match(r.stderr, /larger than|too large|over/i);
    r = noInternalError(env.run(['dispatch', 'a', 'x', '--json-schema', env.root]));
    assert.strictEqual(r.code, 1, r.stderr);
    assert.match(r.stderr, /directory/i);
  });
});

describe('output', () => {
  test('jobs lists a job whose agent name is 100 characters or more', async (t) => {
    const env = newEnv(t);
    const name = 'b'.repeat(120);
    env.setup({ agents: { [name]: true } });
    const srv = env.serve();
    await srv.init();
    const { value } = await srv.call('dispatch_async', { agent: name, task: 'long name' });
    await srv.call('dispatch_wait', { job_id: value.job_id, timeout_seconds: 20 }, { ms: 25000 });
    await srv.close();
    const r = noInternalError(env.run(['jobs']));
    code(r, 0);
    assert.match(r.stdout, new RegExp(`${value.job_id}\\s+done\\s+${name}\\s`));
  });

  test('trace --svg and --html write through a link or a device, and fail when the write does', (t) => {
    const env = newEnv(t);
    env.setup({ agents: { a: true } });
    code(env.run(['dispatch', 'a', 'hi']), 0);
    // Links in the test's directory: a file replaced instead of written
    // through would be the link, never the device or the file it names.
    const full = path.join(env.root, 'full');
    fs.symlinkSync('/dev/full', full);
    const target = path.join(env.root, 'pictures-target.svg');
    fs.writeFileSync(target, 'old');
    const link = path.join(env.root, 'picture.svg');
    fs.symlinkSync(target, link);
    for (const flag of ['--svg', '--html']) {
      let r = noInternalError(env.run(['trace', flag, full]));
      assert.strictEqual(r.code, 1, `${flag}: ${r.stderr}`);
      assert.match(r.stderr, /No space left on device/);
      assert.ok(fs.lstatSync(full).isSymbolicLink(), 'the link to the device is still a link');
      assert.ok(fs.statSync('/dev/full').isCharacterDevice());
      r = code(noInternalError(env.run(['trace', flag, link])), 0);
      assert.ok(fs.lstatSync(link).isSymbolicLink(), 'the link is kept');
      assert.match(fs.readFileSync(target, 'utf8'), flag === '--svg' ? /<svg/ : /<html/i);
      r = noInternalError(env.run(['trace', flag, env.root]));
      assert.strictEqual(r.code, 1);
      assert.match(r.stderr, /directory/);
    }
  });
});

describe('huge numbers of seconds', () => {
  // A number of seconds becomes milliseconds for a timer in C: past what a
  // 64-bit integer holds, the conversion must saturate (the sanitized build
  // stops at an overflowing one), and the wait is as good as forever.
  test('an agent timeout of 2^63 - 1 seconds: the dispatch runs and answers', (t) => {
    const env = newEnv(t);
    const dir = env.project('p');
    env.writeConfig('agents: {}\n');
    code(env.run(['add', 'a', dir, '-d', 'x', '--timeout', '9223372036854775807']), 0);
    const r = noInternalError(code(env.run(['dispatch', 'a', 'hi']), 0));
    assert.match(r.stdout, /stub ok: hi/);
  });

  test('ad.sleep(math.huge), ad.wait(id, 1e300) and a task timer of 1e300 s end at run --timeout', (t) => {
    const env = newEnv(t);
    env.setup({ agents: { a: true }, settings: '  jobs_outlive_server: false\n' });
    const scripts = {
      sleep: 'ad.sleep(math.huge)',
      wait: 'local id = ad.async{agent = "a", task = "[stub:hang] w"}\nad.wait(id, 1e300)',
      event: 'ad.spawn(function() ad.sleep(1e300) end):wait()',
    };
    for (const [name, body] of Object.entries(scripts)) {
      const file = path.join(env.root, `${name}.lua`);
      fs.writeFileSync(file, `local ad = require "agent_dispatch"\n${body}\n`);
      const started = Date.now();
      const r = noInternalError(env.run(['run', '--timeout', '1', file]));
      assert.strictEqual(r.code, 124, `${name}: exit ${r.code}\n${r.stderr}`);
      assert.ok(Date.now() - started < 20000, `${name} took ${Date.now() - started} ms`);
    }
  });

  test('a comma inside a tool rule\'s parentheses belongs to the rule (add, update, add_agent)', async (t) => {
    const env = newEnv(t);
    env.setup({ agents: { a: true } });
    let r = env.run(['update', 'a', '--allowed-tools', 'Bash(git log --format=%H,%s), Read',
      '--disallowed-tools', 'Bash(rm:*),Write(a,b)']);
    assert.strictEqual(r.code, 0, r.stderr);
    r = env.run(['dispatch', 'a', 'x [stub:echo_argv]', '--json']);
    const argv = env.dispatches()[0].argv;
    const after = (flag) => argv.flatMap((v, i) => (v === flag ? [argv[i + 1]] : []));
    assert.deepStrictEqual(after('--allowedTools'), ['Bash(git log --format=%H,%s)', 'Read']);
    assert.deepStrictEqual(after('--disallowedTools'), ['Bash(rm:*)', 'Write(a,b)']);
    const srv = env.serve();
    await srv.init();
    const dir = env.project('b');
    const add = await srv.call('add_agent', { name: 'b', directory: dir, description: 'b',
      allowed_tools: 'Bash(npm run test,lint), Edit' });
    assert.strictEqual(add.isError, false, add.text);
    assert.match(env.readConfig(), /- Bash\(npm run test,lint\)\n\s+- Edit/);
    await srv.close();
  });

  test('options that exclude each other or make no sense are refused with exit 2 (gc, traces)', (t) => {
    const env = newEnv(t);
    env.setup({ agents: { a: true } });
    const both = noInternalError(env.run(['gc', '--days', '30', '--all']));
    code(both, 2);
    assert.match(both.stderr, /--days and --all exclude each other/);
    for (const n of ['0', '-5']) {
      const r = noInternalError(env.run(['traces', '--limit', n]));
      code(r, 2);
      assert.match(r.stderr, /--limit must be at least 1/);
    }
    // Adding and removing one member in one update contradict each other.
    assert.strictEqual(env.run(['group', 'add', 'g', '--member', 'a']).code, 0);
    const both2 = noInternalError(env.run(['group', 'update', 'g', '--add-member', 'a', '--remove-member', 'a']));
    code(both2, 2);
    assert.match(both2.stderr, /contradict each other; nothing changed/);
    // Numbers are decimal: 0x10 is not 16 seconds.
    for (const [args, what] of [[['test', 'a', 'x', '--timeout', '0x10'], 'integer'],
      [['gc', '--days', '0x1'], 'number'], [['jobs', '--limit', '1e1'], 'integer']]) {
      const r = noInternalError(env.run(args));
      code(r, 2);
      assert.match(r.stderr, new RegExp(`is not a valid ${what}`), args.join(' '));
    }
    // An empty ID (an unset variable in a script) is not "the last tree".
    const empty = noInternalError(env.run(['trace', '']));
    code(empty, 2);
    assert.match(empty.stderr, /'ID': it is empty/);
  });

  test('help of help, and a bare command family prints its usage on stderr with exit 2', (t) => {
    const env = newEnv(t);
    env.setup({ agents: { a: true } });
    const h = noInternalError(env.run(['help', '--help']));
    code(h, 0);
    assert.match(h.stdout, /help/);
    const g = noInternalError(env.run(['group']));
    code(g, 2);
    assert.strictEqual(g.stdout, '', 'usage went to stdout');
    assert.match(g.stderr, /group/);
  });

  test('approve and deny of an ended job: the verb of the command, and JSON on stdout with --json', async (t) => {
    const env = newEnv(t);
    env.setup({ agents: { a: true } });
    const r = env.run(['dispatch', 'a', 'quick', '--async']);
    code(r, 0);
    const id = r.stdout.trim();
    code(env.run(['wait', id, '--timeout', '30']), 0);
    for (const verb of ['approve', 'deny']) {
      const plain = noInternalError(env.run([verb, id]));
      code(plain, 1);
      assert.match(plain.stderr, new RegExp(`has ended \\(done\\); there is nothing to ${verb}`));
      const j = noInternalError(env.run([verb, id, '--json']));
      code(j, 1);
      const v = JSON.parse(j.stdout);
      assert.strictEqual(v.job_id, id);
      assert.strictEqual(v.applied, false);
      assert.match(v.error, /has ended/);
    }
  });
});
