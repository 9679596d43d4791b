#!/usr/bin/env node
// Loopback mock of the Anthropic Messages API, scripted by directives in the
// prompt, so tests can drive the REAL Claude Code CLI offline.
//
//   node tests/mock_api/server.js [--port N] [--port-file PATH] [--log PATH]
//
// Binds 127.0.0.1 (port 0 = ephemeral, the default), prints "LISTENING <port>"
// on stdout once bound, and writes the port to --port-file if given.
// Requests are logged as JSON lines to --log PATH or $MOCK_API_LOG (messages
// summarized; prompt_chars and prompt_sha256 describe the whole prompt).
// No dependencies; Node 18+.
//
// Endpoints
//   POST /v1/messages[?beta=true]      streaming (SSE) or plain JSON message
//   POST /v1/messages/count_tokens     {"input_tokens": N}
//   anything else                      200 {}
//
// Directives (looked up in the text of the latest user turn that is not a
// tool_result turn, i.e. the task prompt):
//   [mock:reply=TEXT]               reply exactly TEXT (TEXT ends at the first "]")
//   [mock:parts=N]                  N text blocks "part 1".."part N", ~100 ms apart
//   [mock:tool=NAME:ARG]            turn 1: tool_use NAME; ARG is a JSON object
//                                   (input) or, otherwise, a Bash command string
//                                   ({"command": ARG}; ends at the first "]").
//                                   Next turn: "TOOL DONE: <result, 200 chars>"
//   [mock:mcp=SERVER:TOOL:JSON]     turn 1: tool_use mcp__SERVER__TOOL with input
//                                   JSON; next turn: "MCP RESULT: <text, 2000 chars>"
//   [mock:tokens=N]                 claim N output tokens in usage (N=200000 costs ~$5
//                                   at the default model's list price)
//   [mock:input_tokens=N]           claim N input tokens (default 10, so that plain
//                                   replies cost ~$0.0001 and stay under small budgets)
//   [mock:sleep=S]                  wait S seconds (fractions ok) before answering
//   [mock:echo_history]             reply with JSON {"turns":[{role,text},...]} of
//                                   the user/assistant text turns in the request
//   [mock:status=CODE]              answer with an HTTP error CODE (API error JSON)
//   [mock:structured=JSON]          --json-schema runs: turn 1 calls the StructuredOutput
//                                   tool the CLI offers (its input_schema is the schema)
//                                   with input JSON, as a model answering in the asked
//                                   shape does; without that tool, says so in text. The
//                                   CLI checks the input: on a match it ends the run with
//                                   structured_output, else it asks again in a user turn
//                                   ("[structured-output-enforce] ..."), which gets the
//                                   default reply (a model that gives up on the schema).
// Default reply: "MOCK: <first 80 chars of the prompt text>".
//
// Side requests (the CLI's title/summary/haiku calls: no `tools` and
// max_tokens <= 4096) always get plain text ("Mock title"), never tool calls,
// sleeps or token claims; they are logged with "side": true. (2.1.328 with
// CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1 was not seen sending any.)
'use strict';

const http = require('http');
const fs = require('fs');
const crypto = require('crypto');

// ---------------------------------------------------------------- options
function parseArgs(argv) {
  const o = { port: 0, portFile: null, log: process.env.MOCK_API_LOG || null, host: '127.0.0.1' };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = () => {
      if (i + 1 >= argv.length) { console.error(`mock_api: ${a} needs a value`); process.exit(2); }
      return argv[++i];
    };
    if (a === '--port') o.port = Number(next());
    else if (a === '--port-file') o.portFile = next();
    else if (a === '--log') o.log = next();
    else if (a === '--help' || a === '-h') {
      console.log('usage: server.js [--port N] [--port-file PATH] [--log PATH]');
      process.exit(0);
    } else { console.error(`mock_api: unknown argument ${a}`); process.exit(2); }
  }
  return o;
}
const opts = require.main === module ? parseArgs(process.argv.slice(2))
  : { port: 0, portFile: null, log: process.env.MOCK_API_LOG || null, host: '127.0.0.1' };

// ---------------------------------------------------------------- helpers
let seq = 0;
const rid = (p) => `${p}_mock${Date.now().toString(36)}${(++seq).toString(36).padStart(4, '0')}`;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function logLine(obj) {
  if (!opts.log) return;
  try { fs.appendFileSync(opts.log, JSON.stringify({ ts: new Date().toISOString(), ...obj }) + '\n'); }
  catch (e) { console.error(`mock_api: cannot write log ${opts.log}: ${e.message}`); }
}

const isReminder = (t) => /^\s*<system-reminder>/.test(t);

// Text of one message's content; tool_result blocks are rendered too when
// withToolResults is set.
function blocksOf(msg) {
  const c = msg && msg.content;
  if (typeof c === 'string') return [{ type: 'text', text: c }];
  return Array.isArray(c) ? c : [];
}
function toolResultText(block) {
  const c = block.content;
  if (typeof c === 'string') return c;
  if (Array.isArray(c)) return c.map((b) => (b && b.type === 'text' ? b.text : b && b.type ? `[${b.type}]` : '')).join('\n');
  return c == null ? '' : JSON.stringify(c);
}
function userText(msg) {
  // Human text of a user message, without <system-reminder> blocks.
  return blocksOf(msg).filter((b) => b.type === 'text' && !isReminder(b.text || ''))
    .map((b) => b.text).join('\n');
}
function allText(msg) {
  return blocksOf(msg).filter((b) => b.type === 'text').map((b) => b.text).join('\n');
}

// Index of the latest user message that is not a tool_result turn.
function promptIndex(messages) {
  for (let i = messages.length - 1; i >= 0; i--) {
    const m = messages[i];
    if (m.role !== 'user') continue;
    if (!blocksOf(m).some((b) => b.type === 'tool_result')) return i;
  }
  return -1;
}

// Scan a balanced JSON value starting at s[i] ('{' or '['); returns end index (exclusive) or -1.
function scanJson(s, i) {
  let depth = 0, inStr = false;
  for (let j = i; j < s.length; j++) {
    const ch = s[j];
    if (inStr) {
      if (ch === '\\') j++;
      else if (ch === '"') inStr = false;
    } else if (ch === '"') inStr = true;
    else if (ch === '{' || ch === '[') depth++;
    else if (ch === '}' || ch === ']') { if (--depth === 0) return j + 1; }
  }
  return -1;
}

function parseDirectives(text) {
  const d = {};
  const re = /\[mock:([a-z_]+)(=)?/g;
  let m;
  while ((m = re.exec(text))) {
    const key = m[1];
    let start = re.lastIndex, value = null, end;
    if (m[2]) {
      // JSON-valued tail for tool/mcp: NAME[:NAME]:{...}
      if (key === 'tool' || key === 'mcp' || key === 'structured') {
        const colonsNeeded = key === 'tool' ? 1 : key === 'mcp' ? 2 : 0;
        let p = start, ok = true;
        for (let k = 0; k < colonsNeeded; k++) {
          const c = text.indexOf(':', p);
          const close = text.indexOf(']', p);
          if (c < 0 || (close >= 0 && close < c)) { ok = false; break; }
          p = c + 1;
        }
        if (ok && (text[p] === '{' || text[p] === '[')) {
          const e = scanJson(text, p);
          if (e > 0 && text[e] === ']') { value = text.slice(start, e); end = e + 1; }
        }
      }
      if (value === null) {
        const close = text.indexOf(']', start);
        if (close < 0) continue;
        value = text.slice(start, close); end = close + 1;
      }
    } else {
      if (text[start] !== ']') continue;
      value = true; end = start + 1;
    }
    d[key] = value;
    re.lastIndex = end;
  }
  return d;
}

function splitToolSpec(spec, n) {
  // split "A:B:rest" into n names + rest
  const parts = [];
  let rest = spec;
  for (let k = 0; k < n; k++) {
    const c = rest.indexOf(':');
    if (c < 0) { parts.push(rest); rest = ''; continue; }
    parts.push(rest.slice(0, c)); rest = rest.slice(c + 1);
  }
  parts.push(rest);
  return parts;
}

function parseInput(raw, fallbackKey) {
  const t = raw.trim();
  if (t.startsWith('{')) {
    try { return JSON.parse(t); } catch (_) { /* fall through */ }
  }
  return fallbackKey ? { [fallbackKey]: raw } : {};
}

function summarizeMessages(messages) {
  return messages.map((m) => {
    const blocks = blocksOf(m).map((b) => {
      if (b.type === 'text') return { type: 'text', text: (b.text || '').slice(0, 300), reminder: isReminder(b.text || '') || undefined };
      if (b.type === 'tool_use') return { type: 'tool_use', id: b.id, name: b.name, input: b.input };
      if (b.type === 'tool_result') return { type: 'tool_result', tool_use_id: b.tool_use_id, is_error: b.is_error, text: toolResultText(b).slice(0, 300) };
      return { type: b.type };
    });
    return { role: m.role, blocks };
  });
}

const DEFAULT_INPUT_TOKENS = 10;
const SIDE_MAX_TOKENS = 4096;
const estimateTokens = (s) => Math.max(1, Math.ceil(s.length / 4));

// ---------------------------------------------------------------- planning
// Returns { blocks: [{type:'text',text}|{type:'tool_use',id,name,input}], stop_reason,
//           output_tokens, sleepMs, blockDelayMs, status, side }
function plan(body) {
  const messages = Array.isArray(body.messages) ? body.messages : [];
  // Side request (title/summary/haiku call): no tools and a small max_tokens. The
  // main loop always asks for a large max_tokens (128000 with 2.1.328), even when
  // run with --tools "" (no tools), so it is never mistaken for one.
  const side = (!Array.isArray(body.tools) || body.tools.length === 0)
    && typeof body.max_tokens === 'number' && body.max_tokens <= SIDE_MAX_TOKENS;
  const pi = promptIndex(messages);
  const prompt = pi >= 0 ? messages[pi] : null;
  const promptText = prompt ? userText(prompt) : '';
  const d = parseDirectives(prompt ? allText(prompt) : '');
  const p = { blocks: [], stop_reason: 'end_turn', output_tokens: null, sleepMs: 0, blockDelayMs: 0, status: 0, side, directives: d };

  if (side) {
    p.blocks.push({ type: 'text', text: 'Mock title' });
    return p;
  }
  if (d.sleep) p.sleepMs = Math.max(0, Number(d.sleep) * 1000) || 0;
  if (d.tokens) p.output_tokens = Math.max(0, Math.floor(Number(d.tokens))) || 0;
  if (d.input_tokens) p.input_tokens = Math.max(0, Math.floor(Number(d.input_tokens))) || 0;
  if (d.status) { p.status = Number(d.status) || 500; return p; }

  // Tool follow-up: the last message is a user turn with a tool_result after the prompt.
  // (2.1.328 may append a role "system" message after the last user turn.)
  let li = messages.length - 1;
  while (li >= 0 && messages[li].role !== 'user') li--;
  const lastResults = li > pi ? blocksOf(messages[li]).filter((b) => b.type === 'tool_result') : [];
  if (lastResults.length) {
    const texts = lastResults.map(toolResultText).join('\n');
    if (d.mcp) p.blocks.push({ type: 'text', text: `MCP RESULT: ${texts.slice(0, 2000)}` });
    else p.blocks.push({ type: 'text', text: `TOOL DONE: ${texts.slice(0, 200)}` });
    return p;
  }

  if (typeof d.structured === 'string') {
    const offered = (Array.isArray(body.tools) ? body.tools : []).find((t) => t && t.name === 'StructuredOutput');
    if (offered) {
      p.blocks.push({ type: 'tool_use', id: rid('toolu'), name: 'StructuredOutput', input: parseInput(d.structured, null) });
      p.stop_reason = 'tool_use';
      p.structured_schema = offered.input_schema;
    } else {
      p.blocks.push({ type: 'text', text: 'MOCK: no StructuredOutput tool was offered' });
    }
  } else if (d.mcp && typeof d.mcp === 'string') {
    const [srv, tool, args] = splitToolSpec(d.mcp, 2);
    p.blocks.push({ type: 'tool_use', id: rid('toolu'), name: `mcp__${srv}__${tool}`, input: parseInput(args, null) });
    p.stop_reason = 'tool_use';
  } else if (d.tool && typeof d.tool === 'string') {
    const [name, arg] = splitToolSpec(d.tool, 1);
    p.blocks.push({ type: 'tool_use', id: rid('toolu'), name, input: parseInput(arg, 'command') });
    p.stop_reason = 'tool_use';
  } else if (d.echo_history) {
    const turns = [];
    for (const m of messages) {
      const t = m.role === 'user' ? userText(m) : allText(m);
      if ((m.role === 'user' || m.role === 'assistant') && t) turns.push({ role: m.role, text: t });
    }
    p.blocks.push({ type: 'text', text: JSON.stringify({ turns }) });
  } else if (d.parts) {
    const n = Math.max(1, Math.min(1000, Math.floor(Number(d.parts)) || 1));
    for (let k = 1; k <= n; k++) p.blocks.push({ type: 'text', text: `part ${k}` });
    p.blockDelayMs = 100;
  } else if (typeof d.reply === 'string') {
    p.blocks.push({ type: 'text', text: d.reply });
  } else {
    p.blocks.push({ type: 'text', text: `MOCK: ${promptText.trim().slice(0, 80)}` });
  }
  return p;
}

// ---------------------------------------------------------------- responses
function messageObject(body, p, inputTokens) {
  const outTokens = p.output_tokens != null ? p.output_tokens
    : p.blocks.reduce((n, b) => n + estimateTokens(b.type === 'text' ? b.text : JSON.stringify(b.input)), 0);
  return {
    id: rid('msg'),
    type: 'message',
    role: 'assistant',
    model: body.model || 'claude-mock',
    content: p.blocks.map((b) => (b.type === 'text' ? { type: 'text', text: b.text }
      : { type: 'tool_use', id: b.id, name: b.name, input: b.input })),
    stop_reason: p.stop_reason,
    stop_sequence: null,
    usage: { input_tokens: inputTokens, output_tokens: outTokens, cache_creation_input_tokens: 0, cache_read_input_tokens: 0 },
  };
}

async function streamMessage(res, msg, p, alive) {
  res.writeHead(200, {
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-cache',
    'connection': 'keep-alive',
    'request-id': rid('req'),
  });
  const send = (event, data) => { if (alive()) res.write(`event: ${event}\ndata: ${JSON.stringify({ type: event, ...data })}\n\n`); };
  send('message_start', { message: { ...msg, content: [], stop_reason: null, usage: { ...msg.usage, output_tokens: 1 } } });
  send('ping', {});
  for (let i = 0; i < msg.content.length; i++) {
    if (i > 0 && p.blockDelayMs) await sleep(p.blockDelayMs);
    if (!alive()) return;
    const b = msg.content[i];
    if (b.type === 'text') {
      send('content_block_start', { index: i, content_block: { type: 'text', text: '' } });
      send('content_block_delta', { index: i, delta: { type: 'text_delta', text: b.text } });
    } else {
      send('content_block_start', { index: i, content_block: { type: 'tool_use', id: b.id, name: b.name, input: {} } });
      send('content_block_delta', { index: i, delta: { type: 'input_json_delta', partial_json: JSON.stringify(b.input) } });
    }
    send('content_block_stop', { index: i });
  }
  send('message_delta', { delta: { stop_reason: msg.stop_reason, stop_sequence: null }, usage: { output_tokens: msg.usage.output_tokens } });
  send('message_stop', {});
  if (alive()) res.end();
}

function sendJson(res, status, obj) {
  const s = JSON.stringify(obj);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(s), 'request-id': rid('req') });
  res.end(s);
}

async function handleMessages(req, res, body, raw) {
  const p = plan(body);
  const messages = Array.isArray(body.messages) ? body.messages : [];
  // Claim few input tokens by default: the CLI's ~12k-token system prompt would
  // otherwise cost ~$0.05 per call (opus list price) and trip small budgets.
  const inputTokens = p.input_tokens != null ? p.input_tokens : DEFAULT_INPUT_TOKENS;
  let closed = false;
  res.on('close', () => { closed = true; });
  const alive = () => !closed && !res.writableEnded;

  logLine({
    method: req.method, path: req.url, model: body.model, stream: !!body.stream, max_tokens: body.max_tokens,
    tools: Array.isArray(body.tools) ? body.tools.length : 0, side: p.side || undefined,
    directives: Object.keys(p.directives).length ? p.directives : undefined,
    messages: summarizeMessages(messages),
    // The whole prompt is only summarized above: its size and digest tell
    // whether it arrived complete.
    prompt_chars: promptIndex(messages) >= 0 ? userText(messages[promptIndex(messages)]).length : undefined,
    prompt_sha256: promptIndex(messages) >= 0
      ? crypto.createHash('sha256').update(userText(messages[promptIndex(messages)])).digest('hex') : undefined,
    reply: { status: p.status || 200, stop_reason: p.stop_reason, blocks: p.blocks, output_tokens: p.output_tokens, sleep_ms: p.sleepMs || undefined },
    structured_schema: p.structured_schema,
  });

  if (p.sleepMs) {
    const until = Date.now() + p.sleepMs;
    while (alive() && Date.now() < until) await sleep(Math.min(200, until - Date.now()));
    if (!alive()) return;
  }
  if (p.status) {
    return sendJson(res, p.status, { type: 'error', error: { type: p.status === 529 ? 'overloaded_error' : 'api_error', message: `mock error ${p.status}` } });
  }
  const msg = messageObject(body, p, inputTokens);
  if (body.stream) return streamMessage(res, msg, p, alive);
  return sendJson(res, 200, msg);
}

const server = http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', async () => {
    const raw = Buffer.concat(chunks).toString('utf8');
    const path = (req.url || '').split('?')[0];
    try {
      if (req.method === 'POST' && path === '/v1/messages/count_tokens') {
        logLine({ method: req.method, path: req.url, count_tokens: true });
        return sendJson(res, 200, { input_tokens: estimateTokens(raw) });
      }
      if (req.method === 'POST' && path === '/v1/messages') {
        let body;
        try { body = JSON.parse(raw || '{}'); } catch (e) {
          logLine({ method: req.method, path: req.url, error: 'bad json' });
          return sendJson(res, 400, { type: 'error', error: { type: 'invalid_request_error', message: 'mock: body is not JSON' } });
        }
        return await handleMessages(req, res, body, raw);
      }
      logLine({ method: req.method, path: req.url, other: true });
      return sendJson(res, 200, {});
    } catch (e) {
      console.error(`mock_api: ${e.stack || e}`);
      if (!res.headersSent) sendJson(res, 500, { type: 'error', error: { type: 'api_error', message: String(e) } });
      else res.end();
    }
  });
});
server.keepAliveTimeout = 60000;

if (require.main === module) {
server.listen(opts.port, opts.host, () => {
  const port = server.address().port;
  if (opts.portFile) {
    const tmp = `${opts.portFile}.tmp${process.pid}`;
    fs.writeFileSync(tmp, `${port}\n`);
    fs.renameSync(tmp, opts.portFile);
  }
  process.stdout.write(`LISTENING ${port}\n`);
});
server.on('error', (e) => { console.error(`mock_api: ${e.message}`); process.exit(1); });

const stop = () => { server.close(); for (const s of [process.stdout]) s.end(); setTimeout(() => process.exit(0), 200).unref(); };
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
}

module.exports = { parseDirectives, plan, server };
