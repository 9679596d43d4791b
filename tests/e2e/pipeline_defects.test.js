'use strict';
// One request builder for every route: what a request carries (a group's
// shared context, a timeout override) and what it refuses does not depend
// on the route that built it.
const { test } = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const path = require('node:path');
const { newEnv } = require('./lib');

const GROUPS = '  shop:\n    shared_context: "Prices in EUR"\n    members:\n      - agent: a\n';

function script(env, name, text) {
  const p = path.join(env.root, name);
  fs.writeFileSync(p, text);
  return p;
}

test('ad.async folds a group\'s shared context and checks membership, like ad.dispatch', (t) => {
  const env = newEnv(t);
  env.setup({ agents: { a: true, b: true }, groups: GROUPS });
  const s = script(env, 'g.lua', `
local ad = require("agent_dispatch")
local id = ad.async{agent = "a", task = "bg task", group = "shop", context = "own"}
local rec = ad.wait(id, 30)
local ok, err = pcall(ad.async, {agent = "b", task = "x", group = "shop"})
local ok2, err2 = pcall(ad.async, {agent = "a", task = "x", group = "nope"})
return {context = rec.context, result = rec.result.result, refused = not ok, err = tostring(err),
        refused2 = not ok2, err2 = tostring(err2)}
`);
  const r = env.run(['run', '--json', s]);
  assert.strictEqual(r.code, 0, r.stderr);
  const v = JSON.parse(r.stdout);
  assert.strictEqual(v.context, "Shared context (group 'shop'):\nPrices in EUR\n\nown");
  assert.strictEqual(v.refused, true);
  assert.match(v.err, /not a member/);
  assert.strictEqual(v.refused2, true);
  assert.match(v.err2, /Unknown group/);
  const [d] = env.dispatches();
  assert.match(d.prompt, /Prices in EUR/);
});

test('a bad timeout_seconds is refused with a message on every script route', (t) => {
  const env = newEnv(t);
  env.setup({ agents: { a: true } });
  const s = script(env, 't.lua', `
local ad = require("agent_dispatch")
local a_ok, a_err = pcall(ad.async, {agent = "a", task = "x", timeout_seconds = {}})
local d_ok, d_err = pcall(ad.dispatch, {agent = "a", task = "x", timeout_seconds = true})
return {a = not a_ok and tostring(a_err) or "ran", d = not d_ok and tostring(d_err) or "ran"}
`);
  const r = env.run(['run', '--json', s]);
  assert.strictEqual(r.code, 0, r.stderr);
  const v = JSON.parse(r.stdout);
  assert.match(v.a, /timeout_seconds must be a number, got/);
  assert.match(v.d, /timeout_seconds must be a number, got/);
  assert.strictEqual(env.dispatches().length, 0);
});
