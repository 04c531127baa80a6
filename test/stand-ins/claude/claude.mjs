#!/usr/bin/env node
// A stand-in for the Claude Code CLI in stream-json mode, wire-faithful to
// the recording in ../shared/reference/claude-cli-2.1.197-no-network.jsonl:
//
//   claude --output-format stream-json --verbose --input-format stream-json [flags]
//
// stdin, one JSON object per line:
//   control_request initialize → control_response success (commands, agents, models, account, pid)
//   control_request set_model {model} → a replayed user line "<local-command-stdout>Set model to …", success
//   control_request set_permission_mode {mode} → success {mode}
//   control_request interrupt  → control_response success; a running turn ends with a user
//                                "[Request interrupted by user]" line and a result
//                                error_during_execution (is_error true)
//   user message               → one turn: system/init (session_id, model, tools, cwd, permissionMode),
//                                [system/status + stream_event partials with --include-partial-messages],
//                                assistant, result (usage, total_cost_usd, num_turns, session_id)
//   user "/clear"              → a new session id: init + synthetic assistant + result (2.1.197),
//                                or conversation_reset (STANDIN_CLEAR_MODE=reset), or both
//   stdin EOF                  → exit 0
//
// The reply echoes the turn numbers so that context carry is testable:
//   "Turn <n> (message <k> of this conversation; first: "<first message>"): <your message>"
// where n counts user turns of this process and k those since the last /clear (or resumed).
// Conversations are stored in $CLAUDE_CONFIG_DIR (or $HOME/.claude)/projects/<cwd>/<id>.json, keyed by
// the working directory as the real CLI does, so --resume works across processes sharing that store.
//
// Knobs (environment):
//   STANDIN_START_DELAY_MS   boot time before stdin is read (the real CLI takes ~5.6 s cold)
//   STANDIN_TOKEN_DELAY_MS   delay between reply tokens (default 0)
//   STANDIN_TOKENS           filler tokens added to every reply (default 0)
//   STANDIN_CRASH_AT_TURN    exit 3 with a stack trace on stderr in the middle of turn n
//   STANDIN_GARBAGE=1        non-JSON lines on stdout inside every turn
//   STANDIN_GROW_MB_PER_TURN allocate and hold this many MB per turn
//   STANDIN_RATE_LIMIT_EVENT=1  a rate_limit_event line (an unknown type to old drivers) per turn
//   STANDIN_CLEAR_MODE       result (default, as 2.1.197) | reset | both
//   STANDIN_HANG=1           turns never finish (like the real CLI without network: api_retry lines) until interrupted
//   STANDIN_IGNORE_SIGTERM=1, STANDIN_IGNORE_EOF=1   for the stop sequence's escalation
//   STANDIN_EXIT_AT_START=<code>  exit at once with this code and a message on stderr
//   STANDIN_NO_INITIALIZE=1  never answer initialize
//   STANDIN_STAMP=1          add "ts" (epoch ms, fractional) to stream_event lines, for latency benchmarks
//   STANDIN_TURN_MS          every turn lasts about this long (its tokens spread over it): the latency knob
//   STANDIN_IGNORE_CONTROL=a,b  never answer control requests of these subtypes (e.g. set_model)
//   STANDIN_TURN_LOG=<file>  append "start|end <pid> <epoch ms>" per user turn (to count turns running at once across processes);
//                            "end" is written before the result line, so no reader of the result sees the turn still open
//   --no-session-persistence  nothing is written to the session store (as the real flag)
//   STANDIN_MARK_DIR=<dir>   write <dir>/<pid> holding "start <epoch ms>" at launch and append "ready <epoch ms>"
//                            when initialize is answered, so a test can count processes starting at once
// Directives inside a message's text, for one turn: [[crash]] [[crash=SIGKILL]] [[garbage]] [[hang]]
//   [[tokens=N]] [[delay=MS]] [[grow=MB]] [[rate_limit]] [[error]] (an API error: result success, is_error true)
//   [[can_use_tool]] (asks the driver for a permission over a control_request and reports the answer)
//   [[turn_ms=N]]  this turn lasts about N ms
//   [[stall]]      stop writing mid-turn, for good: no more lines, control requests unanswered (a hung CLI)
//   [[whoami]]     the reply includes model, permission mode, cwd, appended system prompt and allowed tools
//   [[list_config]]  the reply lists every file under the CLI's config dir and HOME (relative paths), and the
//                    session ids of the transcripts it can read there
//   [[api_retry=STATUS]]  first emit 3 api_retry lines with this error_status (429 → rate_limit, 529 → overloaded)
import { randomUUID } from 'node:crypto';
import { appendFileSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { performance } from 'node:perf_hooks';
// Every line printed is built in messages.mjs, typed against @anthropic-ai/claude-agent-sdk's SDKMessage.
import * as M from './messages.mjs';

const env = process.env;
const num = (v, d) => (v === undefined || v === '' || !Number.isFinite(Number(v)) ? d : Number(v));
const epochMs = () => performance.timeOrigin + performance.now();
const mark = (what, extra = '') => { if (env.STANDIN_MARK_DIR) appendFileSync(join(env.STANDIN_MARK_DIR, String(process.pid)), `${what} ${epochMs()}${extra}\n`); };
// The first argument tells a session (`--print ...`) from a subcommand such as the auth check (`auth status`).
mark('start', ` ${process.argv[2] ?? ''}`);
const VERSION = '2.1.197';

// ---- arguments, parsed as the real CLI's commander would ----------------------
const VALUE_FLAGS = new Set(['--output-format', '--input-format', '--model', '--system-prompt', '--append-system-prompt', '--allowedTools', '--allowed-tools',
  '--disallowedTools', '--disallowed-tools', '--max-turns', '--permission-mode', '--resume', '-r', '--session-id', '--mcp-config', '--add-dir',
  '--fallback-model', '--settings', '--permission-prompt-tool', '--max-budget-usd', '--json-schema', '--effort', '--setting-sources']);
const BOOL_FLAGS = new Set(['--verbose', '--include-partial-messages', '--fork-session', '--print', '-p', '--continue', '-c',
  '--dangerously-skip-permissions', '--replay-user-messages', '--strict-mcp-config', '--no-session-persistence']);
const VARIADIC = new Set(['--add-dir', '--mcp-config', '--allowedTools', '--allowed-tools', '--disallowedTools', '--disallowed-tools']);

function die(msg, code = 1) {
  process.stderr.write(msg + '\n');
  process.exit(code);
}

const flags = {};
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i++) {
  let a = argv[i];
  let inline;
  const eq = a.startsWith('--') ? a.indexOf('=') : -1;
  if (eq > 0) { inline = a.slice(eq + 1); a = a.slice(0, eq); }
  if (BOOL_FLAGS.has(a)) { flags[a] = true; continue; }
  if (!VALUE_FLAGS.has(a)) die(`error: unknown option '${a}'`);
  const values = [];
  if (inline !== undefined) values.push(inline);
  else {
    if (i + 1 >= argv.length) die(`error: option '${a} <value>' argument missing`);
    values.push(argv[++i]);
    if (VARIADIC.has(a)) while (i + 1 < argv.length && !argv[i + 1].startsWith('-')) values.push(argv[++i]);
  }
  flags[a] = [...(flags[a] ?? []), ...values];
}
const one = (name) => flags[name]?.[flags[name].length - 1];
if (one('--output-format') === 'stream-json' && !flags['--verbose']) die('Error: When using --print, --output-format=stream-json requires --verbose');
if (one('--input-format') !== 'stream-json') die('Error: this stand-in speaks only --input-format stream-json');
if (one('--output-format') !== 'stream-json') die('Error: this stand-in speaks only --output-format stream-json');
const PERMISSION_MODES = ['default', 'acceptEdits', 'plan', 'bypassPermissions', 'dontAsk', 'auto'];
let permissionMode = one('--permission-mode') ?? 'default';
if (!PERMISSION_MODES.includes(permissionMode)) die(`error: option '--permission-mode <mode>' argument '${permissionMode}' is invalid. Allowed choices are ${PERMISSION_MODES.join(', ')}.`);
const maxTurns = one('--max-turns');
if (maxTurns !== undefined && !(Number.isInteger(Number(maxTurns)) && Number(maxTurns) > 0)) die(`Error: --max-turns must be a positive integer, got ${maxTurns}`);
let model = one('--model') ?? 'claude-sonnet-4-5-20250929';
const defaultModel = model;
const partial = flags['--include-partial-messages'] === true;
const allowed = (flags['--allowedTools'] ?? flags['--allowed-tools'] ?? []).flatMap((s) => s.split(/[ ,]+/)).filter(Boolean);
const disallowed = new Set((flags['--disallowedTools'] ?? flags['--disallowed-tools'] ?? []).flatMap((s) => s.split(/[ ,]+/)).filter(Boolean));
const TOOLS = ['Task', 'Bash', 'Edit', 'Glob', 'Grep', 'NotebookEdit', 'Read', 'TodoWrite', 'WebFetch', 'WebSearch', 'Write', ...allowed.filter((t) => t.startsWith('mcp__'))];
const tools = TOOLS.filter((t) => !disallowed.has(t));
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

if (env.STANDIN_EXIT_AT_START) die(`stand-in: asked to fail at start (STANDIN_EXIT_AT_START=${env.STANDIN_EXIT_AT_START})`, num(env.STANDIN_EXIT_AT_START, 1));

// ---- the session store, keyed by working directory as the real CLI's ----------
const cwd = process.cwd();
const configDir = env.CLAUDE_CONFIG_DIR || join(env.HOME || '/tmp', '.claude');
const projectDir = join(configDir, 'projects', cwd.replace(/[^A-Za-z0-9]/g, '-'));
const sessionFile = (id) => join(projectDir, `${id}.json`);
const persist = flags['--no-session-persistence'] !== true;
function save() {
  if (!persist) return;
  try {
    mkdirSync(projectDir, { recursive: true });
    writeFileSync(sessionFile(sessionId), JSON.stringify({ sessionId, turns: conv.turns, first: conv.first, words: conv.words, cost: conv.cost ?? 0 }));
  } catch { /* a read-only store only loses resumability */ }
}

let sessionId;
let conv = { turns: 0, first: undefined, words: 0 };
const resume = one('--resume') ?? one('-r');
const wanted = one('--session-id');
if (wanted !== undefined && !UUID.test(wanted)) die('Error: Invalid session ID. Must be a valid UUID.');
if (resume !== undefined) {
  if (!existsSync(sessionFile(resume))) {
    process.stderr.write(`No conversation found with session ID: ${resume}\n`);
    process.stdout.write(JSON.stringify(M.resultError({ sessionId: resume, durationMs: 0, numTurns: 0, errors: [`No conversation found with session ID: ${resume}`] })) + '\n');
    process.exit(1);
  }
  const stored = JSON.parse(readFileSync(sessionFile(resume), 'utf8'));
  conv = { turns: stored.turns, first: stored.first, words: stored.words ?? 0, cost: stored.cost ?? 0 };
  sessionId = flags['--fork-session'] ? (wanted ?? randomUUID()) : resume;
} else {
  if (wanted !== undefined && existsSync(sessionFile(wanted))) die(`Error: Session ID ${wanted} is already in use.`);
  sessionId = wanted ?? randomUUID();
}

// ---- output ---------------------------------------------------------------
// A stalled CLI ([[stall]]) writes nothing more, ever.
let frozen = false;
const out = (o) => { if (!frozen) process.stdout.write(JSON.stringify(o) + '\n'); };
const raw = (s) => { if (!frozen) process.stdout.write(s + '\n'); };
const turnLog = (what) => { if (env.STANDIN_TURN_LOG) appendFileSync(env.STANDIN_TURN_LOG, `${what} ${process.pid} ${Date.now()}\n`); };

/** Every file under `dir`, relative to `base`; nothing if unreadable. */
function listFiles(dir, base = dir) {
  let entries;
  try { entries = readdirSync(dir, { withFileTypes: true }); } catch { return []; }
  return entries.flatMap((e) => e.isDirectory() ? listFiles(join(dir, e.name), base) : [relative(base, join(dir, e.name))]);
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const held = [];
let turnNo = 0;

const usage = M.usage;
const apiKeySource = env.ANTHROPIC_API_KEY ? 'ANTHROPIC_API_KEY' : 'none';

function init() {
  out(M.init({ cwd, sessionId, tools, model, permissionMode, apiKeySource, version: VERSION }));
}

const textOf = (content) => typeof content === 'string' ? content
  : Array.isArray(content) ? content.filter((b) => b && b.type === 'text').map((b) => b.text).join('\n') : '';

function directives(text) {
  const d = {};
  for (const m of text.matchAll(/\[\[([a-z_]+)(?:=([^\]]*))?\]\]/g)) d[m[1]] = m[2] ?? true;
  return d;
}

// ---- turns ------------------------------------------------------------------
let current; // { interrupted: boolean, wake?: () => void }
const queue = [];
const pendingControl = new Map();

async function runTurn(content) {
  const text = textOf(content);
  if (text.trim() === '/clear') return clear();
  const d = directives(text);
  const me = { interrupted: false };
  current = me;
  turnNo++;
  conv.turns++;
  conv.first ??= text;
  conv.words += text.split(/\s+/).filter(Boolean).length;
  const started = Date.now();
  turnLog('start');
  init();
  let reply = `Turn ${turnNo} (message ${conv.turns} of this conversation; first: ${JSON.stringify(conv.first)}): ${text}`;
  if (d.whoami) reply += ` [whoami ${JSON.stringify({ model, permissionMode, cwd, append: one('--append-system-prompt') ?? null, allowed })}]`;
  if (d.list_config) {
    const home = env.HOME || '/tmp';
    const files = [...new Set([...listFiles(configDir).map((f) => relative(home, join(configDir, f))), ...listFiles(home)])].sort();
    const ids = listFiles(join(configDir, 'projects')).map((f) => /([0-9a-f-]{36})\.json/.exec(f)?.[1]).filter(Boolean);
    reply += ` [config ${JSON.stringify({ configDir, home, files, transcripts: ids })}]`;
  }
  const filler = num(d.tokens, num(env.STANDIN_TOKENS, 0));
  const tokens = reply.split(/(?<= )/);
  for (let i = 0; i < filler; i++) tokens.push(` tok${i}`);
  const turnMs = num(d.turn_ms, num(env.STANDIN_TURN_MS, 0));
  const tokenDelay = turnMs > 0 ? turnMs / tokens.length : num(d.delay, num(env.STANDIN_TOKEN_DELAY_MS, 0));
  const msgId = `msg_01${randomUUID().replace(/-/g, '').slice(0, 22)}`;
  const grow = num(d.grow, num(env.STANDIN_GROW_MB_PER_TURN, 0));
  if (grow > 0) held.push(Buffer.alloc(grow * 1024 * 1024, 0x5a));
  if (d.rate_limit || env.STANDIN_RATE_LIMIT_EVENT === '1') {
    out(M.rateLimit(sessionId));
  }
  if (d.garbage || env.STANDIN_GARBAGE === '1') {
    raw('npm WARN config this line is not JSON');
    raw('\u001b[2K\u001b[1G⠋ Thinking…');
    raw('{"type": "assistant", truncated');
    raw('[1,2,3]');
  }
  let toolNote = '';
  if (d.can_use_tool) {
    const requestId = randomUUID();
    out(M.canUseTool(requestId, 'Bash', { command: 'ls' }));
    const answer = await new Promise((resolve) => pendingControl.set(requestId, resolve));
    toolNote = ` [tool Bash: ${answer?.response?.response?.behavior ?? answer?.response?.subtype ?? 'no answer'}]`;
    tokens.push(toolNote);
  }
  if (d.api_retry) {
    const status = num(d.api_retry, 429);
    for (let attempt = 1; attempt <= 3 && !me.interrupted; attempt++) {
      out({ type: 'system', subtype: 'api_retry', attempt, max_retries: 10, retry_delay_ms: 50 * attempt, error_status: status, error: status === 529 ? 'overloaded' : status === 429 ? 'rate_limit' : 'server_error', session_id: sessionId, uuid: randomUUID() });
      await new Promise((r) => { me.wake = r; setTimeout(r, 50 * attempt); });
    }
  }
  if (d.hang || env.STANDIN_HANG === '1') {
    // What the real CLI does without the API: retry lines until interrupted.
    for (let attempt = 1; !me.interrupted; attempt++) {
      out(M.apiRetry(sessionId, attempt));
      await new Promise((r) => { me.wake = r; setTimeout(r, Math.min(2000, 200 * attempt)); });
    }
  }
  const crashAt = num(env.STANDIN_CRASH_AT_TURN, 0);
  const crash = d.crash ?? (crashAt === turnNo ? true : undefined);
  const stamp = env.STANDIN_STAMP === '1';
  const ev = (event) => {
    const line = M.streamEvent(sessionId, event);
    if (stamp) line.ts = performance.timeOrigin + performance.now();
    out(line);
  };
  if (partial && !me.interrupted) {
    out(M.status(sessionId));
    ev(M.messageStart({ id: msgId, model, inputTokens: conv.words }));
    ev(M.textBlockStart());
  }
  let emitted = 0;
  for (const tok of tokens) {
    if (me.interrupted) break;
    if (crash && emitted === Math.floor(tokens.length / 2)) {
      process.stderr.write(`Error: stand-in crash requested in turn ${turnNo}\n    at runTurn (file:///stand-in/claude.mjs:1:1)\n    at process.processTicksAndRejections (node:internal/process/task_queues:95:5)\n`);
      if (typeof crash === 'string' && crash.startsWith('SIG')) process.kill(process.pid, crash);
      else process.exit(3);
      await sleep(1000);
    }
    if (d.stall && emitted === Math.floor(tokens.length / 2)) {
      // Hung: alive, reading stdin, never writing again (and never ending the turn).
      frozen = true;
      await new Promise(() => {});
    }
    if (partial) ev(M.textDelta(tok));
    emitted++;
    if (tokenDelay > 0) await new Promise((r) => { me.wake = r; setTimeout(r, tokenDelay); });
    else if (emitted % 256 === 0) await new Promise((r) => setImmediate(r));
  }
  const outText = tokens.slice(0, emitted).join('');
  const inTok = conv.words;
  const outTok = emitted;
  // The turn ends for the log just before its result line: the driver gives the account's slot back on the result,
  // and another process may start a turn before this one gets to write anything more.
  if (me.interrupted) {
    out(M.interruptedByUser(sessionId));
    turnLog('end');
    // As the real CLI: total_cost_usd is the conversation's running total, on an interrupted turn too.
    out({ ...M.resultError({ sessionId, durationMs: Date.now() - started, numTurns: 2, terminalReason: 'aborted_streaming', errors: ['[ede_diagnostic] result_type=user last_content_type=n/a stop_reason=null'] }), total_cost_usd: conv.cost ?? 0 });
  } else {
    if (partial) {
      ev(M.blockStop());
      ev(M.messageDelta(outTok));
      ev(M.messageStop());
    }
    const apiError = d.error === true;
    const resultText = apiError ? 'API Error: 529 {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}' : outText;
    out(M.assistant({ sessionId, id: msgId, model: apiError ? '<synthetic>' : model, text: resultText, stopReason: apiError ? 'stop_sequence' : null, usage: usage(inTok, outTok) }));
    const cost = apiError ? 0 : inTok * 3e-6 + outTok * 15e-6;
    // As the real CLI: total_cost_usd is the conversation's running total (reset by /clear), not this turn's.
    conv.cost = (conv.cost ?? 0) + cost;
    turnLog('end');
    out(M.resultSuccess({
      sessionId, isError: apiError, durationMs: Date.now() - started, durationApiMs: Date.now() - started, numTurns: 1, result: resultText,
      stopReason: apiError ? 'stop_sequence' : 'end_turn', costUsd: conv.cost, usage: usage(apiError ? 0 : inTok, apiError ? 0 : outTok),
      modelUsage: apiError ? {} : { [model]: M.modelUsage(inTok, outTok, cost) },
    }));
  }
  save();
  current = undefined;
}

function clear() {
  const mode = env.STANDIN_CLEAR_MODE || 'result';
  const started = Date.now();
  sessionId = randomUUID();
  conv = { turns: 0, first: undefined, words: 0 };
  if (mode === 'reset' || mode === 'both') out(M.conversationReset(sessionId));
  if (mode === 'reset') return;
  init();
  out(M.assistant({ sessionId, id: randomUUID(), model: '<synthetic>', text: '(no content)', stopReason: 'stop_sequence', stopSequence: '', usage: usage(0, 0) }));
  out(M.resultSuccess({ sessionId, isError: false, durationMs: Date.now() - started, durationApiMs: 0, numTurns: 0, result: '', stopReason: null, costUsd: 0, usage: usage(0, 0), modelUsage: {} }));
}

let running = false;
async function pump() {
  if (running) return;
  running = true;
  while (queue.length) await runTurn(queue.shift());
  running = false;
  if (eof && env.STANDIN_IGNORE_EOF !== '1') process.exit(0);
}

function onControl(msg) {
  const req = msg.request ?? {};
  const id = msg.request_id;
  // A hung CLI for this kind of request: no answer ever.
  if ((env.STANDIN_IGNORE_CONTROL ?? '').split(',').includes(req.subtype)) return;
  if (req.subtype === 'initialize') {
    if (env.STANDIN_NO_INITIALIZE === '1') return;
    mark('ready');
    out(M.controlSuccess(id, M.initializeResponse({ model, apiKeySource, pid: process.pid })));
  } else if (req.subtype === 'set_model') {
    // As 2.1.197: a replayed local-command line, then the success.
    model = !req.model || req.model === 'default' ? defaultModel : req.model;
    out({ type: 'user', message: { role: 'user', content: `<local-command-stdout>Set model to ${model}</local-command-stdout>` }, session_id: sessionId, parent_tool_use_id: null, uuid: randomUUID(), timestamp: new Date().toISOString(), isReplay: true });
    out(M.controlSuccess(id));
  } else if (req.subtype === 'set_permission_mode') {
    if (!PERMISSION_MODES.includes(req.mode)) {
      out(M.controlError(id, `Invalid permission mode: ${req.mode}`));
      return;
    }
    permissionMode = req.mode;
    out(M.controlSuccess(id, { mode: permissionMode }));
  } else if (req.subtype === 'interrupt') {
    out(M.controlSuccess(id));
    if (current) { current.interrupted = true; current.wake?.(); }
  } else {
    out(M.controlError(id, `Unsupported control request subtype: ${req.subtype}`));
  }
}

let eof = false;
function onLine(line) {
  if (!line.trim()) return;
  let msg;
  try { msg = JSON.parse(line); } catch { process.stderr.write(`Error parsing streaming input line: ${line.slice(0, 200)}\n`); process.exit(1); }
  if (msg.type === 'control_request') onControl(msg);
  else if (msg.type === 'control_response') {
    const resolve = pendingControl.get(msg.response?.request_id);
    if (resolve) { pendingControl.delete(msg.response.request_id); resolve(msg); }
  } else if (msg.type === 'user') {
    queue.push(msg.message?.content ?? '');
    pump();
  } else process.stderr.write(`Error: Expected message type 'user' or 'control', got '${msg.type}'\n`);
}

if (env.STANDIN_IGNORE_SIGTERM === '1') process.on('SIGTERM', () => process.stderr.write('stand-in: ignoring SIGTERM\n'));
setTimeout(() => {
  let buf = '';
  process.stdin.setEncoding('utf8');
  process.stdin.on('data', (d) => {
    buf += d;
    for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) { const l = buf.slice(0, i); buf = buf.slice(i + 1); onLine(l); }
  });
  process.stdin.on('end', () => {
    eof = true;
    if (env.STANDIN_IGNORE_EOF === '1') { setInterval(() => {}, 1 << 30); return; }
    if (!running) process.exit(0);
    // A turn in flight is abandoned, as when the SDK's transport closes.
    if (current) { current.interrupted = true; current.wake?.(); }
  });
}, num(env.STANDIN_START_DELAY_MS, 0));
