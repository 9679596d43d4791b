'use strict';
// response_schema: a JSON Schema the agent's answer must match, passed to
// the claude CLI as --json-schema (before "--"); the result carries the
// CLI's structured_output, and a run that ends without one is a failure
// with error_type "schema". The stub writes structured_output for
// [stub:structured=VALUE] when it was given --json-schema (it does not
// check the schema: the prompt says what the "model" answered).
const { test, describe } = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const path = require('node:path');
const { newEnv } = require('./lib');

const SCHEMA = { type: 'object', properties: { answer: { type: 'string' } }, required: ['answer'] };

function serve(t, settings = '') {
  const env = newEnv(t);
  env.setup({ agents: { a: true }, settings });
  return { env, srv: env.serve() };
}

/** The --json-schema argument of a stub invocation (null if none); checks it precedes "--". */
function schemaArg(entry) {
  const i = entry.argv.indexOf('--json-schema');
  if (i < 0) return null;
  assert.ok(i < entry.argv.indexOf('--'), `--json-schema after "--": ${entry.argv.join(' ')}`);
  return entry.argv[i + 1];
}

describe('response_schema', () => {
  test('an object schema reaches the CLI as --json-schema; the answer is structured_output', async (t) => {
    const { env, srv } = serve(t);
    await srv.init();
    const { value, isError } = await srv.call('dispatch', { agent: 'a',
      task: '[stub:structured={"answer":"42"}] [stub:reply={"answer":"42"}] q1',
      response_schema: { ...SCHEMA, properties: { ...SCHEMA.properties, extra: {} },
        not: { required: [] } } });
    assert.strictEqual(isError, false, JSON.stringify(value));
    assert.strictEqual(value.success, true);
    assert.deepStrictEqual(value.structured_output, { answer: '42' });
    const runs = env.dispatches();
    assert.strictEqual(runs.length, 1);
    const arg = schemaArg(runs[0]);
    // Decoded and re-encoded: an empty list stays a list, an empty schema
    // an object.
    assert.deepStrictEqual(JSON.parse(arg), { ...SCHEMA,
      properties: { ...SCHEMA.properties, extra: {} }, not: { required: [] } });
    assert.match(arg, /"required":\[\]/);
    assert.match(arg, /"extra":\{\}/);
    await srv.close();
  });

  test('JSON text is passed on as written; dispatch_session takes it too', async (t) => {
    const { env, srv } = serve(t);
    await srv.init();
    const text = '{"type": "object", "required": ["n"], "properties": {"n": {"type": "integer"}}}';
    const { value } = await srv.call('dispatch_session', { agent: 'a',
      task: '[stub:structured={"n":7}] s1', response_schema: text });
    assert.strictEqual(value.success, true, JSON.stringify(value));
    assert.deepStrictEqual(value.structured_output, { n: 7 });
    assert.strictEqual(schemaArg(env.dispatches()[0]), text);
    await srv.close();
  });

  test('a run that ends without structured_output fails with error_type "schema" and a hint', async (t) => {
    const { env, srv } = serve(t);
    await srv.init();
    const { value, isError } = await srv.call('dispatch', { agent: 'a',
      task: '[stub:reply=I could not fit the schema] q2', response_schema: SCHEMA });
    assert.strictEqual(isError, true);
    assert.strictEqual(value.success, false);
    assert.strictEqual(value.error_type, 'schema');
    assert.match(value.error, /response_schema/);
    assert.match(value.hint, /dispatch again|dispatch_session/);
    assert.strictEqual(value.result, 'I could not fit the schema');
    assert.ok(value.session_id);
    assert.ok(!('structured_output' in value));
    // Not cached: the same request runs again.
    await srv.call('dispatch', { agent: 'a', task: '[stub:reply=I could not fit the schema] q2',
      response_schema: SCHEMA });
    assert.strictEqual(env.dispatches().length, 2);
    await srv.close();
  });

  test('results with different schemas never share a cache entry', async (t) => {
    const { env, srv } = serve(t);
    await srv.init();
    const task = '[stub:structured={"answer":"x"}] same task';
    const other = { type: 'object', properties: { answer: { type: 'string', maxLength: 3 } },
      required: ['answer'] };
    const first = await srv.call('dispatch', { agent: 'a', task, response_schema: SCHEMA });
    assert.strictEqual(first.value.success, true, JSON.stringify(first.value));
    const second = await srv.call('dispatch', { agent: 'a', task, response_schema: other });
    assert.ok(!second.value.cached, 'another schema must not be answered from the cache');
    const none = await srv.call('dispatch', { agent: 'a', task });
    assert.ok(!none.value.cached, 'no schema must not be answered from a schema run');
    assert.ok(!('structured_output' in none.value));
    assert.strictEqual(env.dispatches().length, 3);
    assert.strictEqual(schemaArg(env.dispatches()[2]), null);
    // The same schema again is the same request: a hit.
    const again = await srv.call('dispatch', { agent: 'a', task, response_schema: SCHEMA });
    assert.strictEqual(again.value.cached, true);
    assert.deepStrictEqual(again.value.structured_output, { answer: 'x' });
    assert.strictEqual(env.dispatches().length, 3);
    await srv.close();
  });

  for (const transport of ['live', 'oneshot']) {
    test(`empty arrays stay arrays in structured_output and parsed_result, in the job record too (${transport})`,
      async (t) => {
        const { srv } = serve(t, `  transport: ${transport}\n`);
        await srv.init();
        const schema = { type: 'object', properties: { items: { type: 'array' }, m: { type: 'object' } } };
        let { value } = await srv.call('dispatch', { agent: 'a', response_schema: schema,
          task: '[stub:structured={"items":[],"m":{},"n":[[],[ ]]}] q' });
        assert.strictEqual(value.success, true, JSON.stringify(value));
        assert.deepStrictEqual(value.structured_output, { items: [], m: {}, n: [[], []] });
        ({ value } = await srv.call('dispatch', { agent: 'a', response_format: 'json',
          task: '[stub:json={"list":[],"obj":{},"s":"[]"}] as json' }));
        assert.deepStrictEqual(value.parsed_result, { list: [], obj: {}, s: '[]' });
        const job = await srv.call('dispatch_async', { agent: 'a', response_schema: schema,
          task: '[stub:structured={"items":[]}] async' });
        const w = await srv.call('dispatch_wait', { job_id: job.value.job_id, timeout_seconds: 30 },
          { ms: 35000 });
        assert.deepStrictEqual(w.value.result.structured_output, { items: [] }, JSON.stringify(w.value));
        await srv.close();
      });
  }

  test('bad schemas are refused before anything runs, on every route', async (t) => {
    const { env, srv } = serve(t);
    await srv.init();
    const cases = [
      [5, /must be a JSON Schema object or its JSON text, got number 5/],
      [[1, 2], /must be a JSON Schema object or its JSON text, got an array/],
      ['[1, 2]', /response_schema must be a JSON Schema object .*got an array/],
      ['{"type": ', /response_schema is not valid JSON/],
      ['"text"', /response_schema must be a JSON Schema object .*got string/],
      [JSON.stringify({ type: 'object', description: 'x'.repeat(70000) }), /response_schema is too large/],
      [{ type: 'object', description: 'y'.repeat(70000) }, /response_schema is too large/],
    ];
    for (const tool of ['dispatch', 'dispatch_session', 'dispatch_async']) {
      for (const [schema, re] of cases) {
        const { value, isError } = await srv.call(tool, { agent: 'a', task: 'never runs',
          response_schema: schema });
        assert.strictEqual(isError, true, `${tool} ${JSON.stringify(schema).slice(0, 40)}`);
        assert.match(value.error, re);
      }
    }
    const par = await srv.call('dispatch_parallel', { dispatches: JSON.stringify([
      { agent: 'a', task: 'ok' }, { agent: 'a', task: 'bad', response_schema: '[]' }]) });
    assert.strictEqual(par.isError, true);
    assert.match(par.value.error, /^dispatches\[1\]\.response_schema must be a JSON Schema object/);
    assert.strictEqual(env.dispatches().length, 0);
    await srv.close();
  });

  test('response_format "json" keeps working, with or without a schema', async (t) => {
    const { env, srv } = serve(t);
    await srv.init();
    const plain = await srv.call('dispatch', { agent: 'a', task: '[stub:json={"k":1}] f1',
      response_format: 'json' });
    assert.deepStrictEqual(plain.value.parsed_result, { k: 1 });
    assert.ok(!('structured_output' in plain.value));
    assert.strictEqual(schemaArg(env.dispatches()[0]), null);
    const both = await srv.call('dispatch', { agent: 'a',
      task: '[stub:json={"answer":"z"}] [stub:structured={"answer":"z"}] f2',
      response_format: 'json', response_schema: SCHEMA });
    assert.deepStrictEqual(both.value.parsed_result, { answer: 'z' });
    assert.deepStrictEqual(both.value.structured_output, { answer: 'z' });
    await srv.close();
  });

  test('parallel items and dispatch_async (also in a detached job runner) carry their schema', async (t) => {
    for (const outlive of [false, true]) {
      const { env, srv } = serve(t, `  jobs_outlive_server: ${outlive}\n`);
      await srv.init();
      const par = await srv.call('dispatch_parallel', { dispatches: JSON.stringify([
        { agent: 'a', task: '[stub:structured={"answer":"p1"}] p1', response_schema: SCHEMA },
        { agent: 'a', task: 'p2 [stub:reply=free text]' }]) });
      assert.deepStrictEqual(par.value[0].structured_output, { answer: 'p1' }, JSON.stringify(par.value));
      assert.strictEqual(par.value[1].success, true);
      assert.ok(!('structured_output' in par.value[1]));
      const { value } = await srv.call('dispatch_async', { agent: 'a',
        task: '[stub:structured={"answer":"bg"}] bg', response_schema: SCHEMA });
      const waited = await srv.call('dispatch_wait', { job_id: value.job_id, timeout_seconds: 20 },
        { ms: 25000 });
      assert.strictEqual(waited.value.status, 'done', JSON.stringify(waited.value));
      assert.deepStrictEqual(waited.value.result.structured_output, { answer: 'bg' });
      const bg = env.dispatches().find((e) => (e.prompt || '').includes('] bg'));
      assert.deepStrictEqual(JSON.parse(schemaArg(bg)), SCHEMA);
      const miss = await srv.call('dispatch_async', { agent: 'a', task: 'no answer bg2',
        response_schema: SCHEMA });
      const w2 = await srv.call('dispatch_wait', { job_id: miss.value.job_id, timeout_seconds: 20 },
        { ms: 25000 });
      assert.strictEqual(w2.value.status, 'failed');
      assert.strictEqual(w2.value.result.error_type, 'schema');
      await srv.close();
    }
  });

  test('Lua scripts (ad.dispatch) and CLI dispatch --json-schema', async (t) => {
    const env = newEnv(t);
    env.setup({ agents: { a: true } });
    const script = path.join(env.root, 's.lua');
    fs.writeFileSync(script, `
local ad = require("agent_dispatch")
local ok = ad.dispatch{agent = "a", task = '[stub:structured={"answer":"lua"}] l1',
  response_schema = {type = "object", properties = {answer = {type = "string"}}, required = {"answer"}}}
local miss = ad.dispatch{agent = "a", task = "l2", response_schema = '{"type":"object"}'}
local bad = pcall(ad.dispatch, {agent = "a", task = "l3", response_schema = {1, 2}})
return {ok = ok.structured_output, miss = miss.error_type, bad = bad}
`);
    const res = env.run(['run', '--json', script]);
    assert.strictEqual(res.code, 0, res.stderr);
    assert.deepStrictEqual(JSON.parse(res.stdout), { ok: { answer: 'lua' }, miss: 'schema', bad: false });
    assert.deepStrictEqual(JSON.parse(schemaArg(env.dispatches()[0])), SCHEMA);

    const file = path.join(env.root, 'schema.json');
    fs.writeFileSync(file, JSON.stringify(SCHEMA));
    const cli = env.run(['dispatch', 'a', '[stub:structured={"answer":"cli"}] c1', '--json-schema', file]);
    assert.strictEqual(cli.code, 0, cli.stderr);
    assert.deepStrictEqual(JSON.parse(cli.stdout), { answer: 'cli' });
    const inline = env.run(['dispatch', 'a', 'c2', '--json-schema', '{"type":"object"}']);
    assert.strictEqual(inline.code, 1);
    assert.match(inline.stderr, /without an answer matching response_schema/);
    assert.strictEqual(schemaArg(env.dispatches().at(-1)), '{"type":"object"}');
    const missing = env.run(['dispatch', 'a', 'c3', '--json-schema', path.join(env.root, 'nope.json')]);
    assert.strictEqual(missing.code, 1);
    assert.match(missing.stderr, /--json-schema: cannot read/);
  });
});
