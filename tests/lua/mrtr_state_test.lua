-- MRTR's requestState (ad.protocol.mcp_mrtr) and what it stands on:
-- core.crypto against published test vectors, the canonical digest of a
-- call's arguments, and a state that verifies only unchanged.
-- Run: agent-dispatch run tests/lua/mrtr_state_test.lua
local here = arg[0]:match("(.*/)") or "./"
local tap = dofile(here .. "tap.lua")
local test, eq, ok = tap.test, tap.eq, tap.ok
local core = require "ad.core"
local json = require "ad.infra.json"
local mrtr = require "ad.protocol.mcp_mrtr"

local function hex(s) return (s:gsub(".", function(c) return string.format("%02x", c:byte()) end)) end

test("HMAC-SHA256 and SHA-256 give the RFC 4231 / FIPS 180 vectors", function()
  eq(hex(core.crypto.hmac_sha256(string.rep("\x0b", 20), "Hi There")),
    "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7", "RFC 4231 case 1")
  eq(hex(core.crypto.hmac_sha256("Jefe", "what do ya want for nothing?")),
    "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843", "RFC 4231 case 2")
  eq(hex(core.crypto.sha256("abc")),
    "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", "SHA-256 abc")
  eq(#core.crypto.random(32), 32, "32 random bytes")
  ok(core.crypto.random(16) ~= core.crypto.random(16), "random bytes differ")
  ok(core.crypto.equal("abc", "abc") and not core.crypto.equal("abc", "abd")
    and not core.crypto.equal("abc", "ab"), "equal")
  ok(not pcall(core.crypto.hmac_sha256, "", "x"), "an empty key is refused")
end)

test("the digest of a call ignores key order and spacing, not values or the tool", function()
  local a = json.decode('{"agent":"a","task":"t","n":[1,{"y":2,"x":1}]}')
  local b = json.decode('{ "n" : [1, {"x":1, "y":2}], "task":"t", "agent":"a" }')
  eq(mrtr.digest("dispatch", a), mrtr.digest("dispatch", b), "same call")
  ok(mrtr.digest("dispatch_session", a) ~= mrtr.digest("dispatch", a), "other tool")
  local c = json.decode('{"agent":"a","task":"t2","n":[1,{"y":2,"x":1}]}')
  ok(mrtr.digest("dispatch", c) ~= mrtr.digest("dispatch", a), "other arguments")
end)

test("a sealed state opens for its call only, unchanged and unexpired", function()
  local args = json.decode('{"agent":"a","task":"t"}')
  local f = { job = string.rep("a", 32), keys = { k1 = "r1" }, order = { "k1" },
    exp = core.task.time() + 60, args = mrtr.digest("dispatch", args) }
  local st = mrtr.seal(f)
  local got, why = mrtr.open(st, "dispatch", args)
  ok(got, why)
  eq(got.job, f.job, "job")
  eq(got.keys.k1, "r1", "request id")
  local _, w2 = mrtr.open(st, "dispatch", json.decode('{"agent":"a","task":"u"}'))
  ok(w2 and w2:find("another call", 1, true), w2)
  local phex, mac = st:match("^(%x+)%.(%x+)$")
  local flipped = phex:sub(1, -2) .. (phex:sub(-1) == "0" and "1" or "0") .. "." .. mac
  local _, w3 = mrtr.open(flipped, "dispatch", args)
  ok(w3 and w3:find("integrity", 1, true), w3)
  f.exp = core.task.time() - 1
  local _, w4 = mrtr.open(mrtr.seal(f), "dispatch", args)
  ok(w4 and w4:find("expired", 1, true), w4)
  local _, w5 = mrtr.open(42, "dispatch", args)
  ok(w5, "not a string")
end)

return tap.done()
