import { expect } from 'chai';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import type { SDKControlRequest, SDKControlResponse, SDKMessage } from '@anthropic-ai/claude-agent-sdk';
import * as M from '../stand-ins/claude/messages.mjs';
import { ROOT } from '../helpers/procs.js';

/**
 * The Claude stand-in against the published stream-json types of
 * @anthropic-ai/claude-agent-sdk (the recorded real-CLI exchange has no
 * successful turn, so the shapes of partial messages, usage, cost,
 * can_use_tool and rate-limit lines rest on these types).
 *
 * Type level: every builder in test/stand-ins/claude/messages.mjs is checked
 * by `tsc -p test/tsconfig.json` against the SDK type it names (// @ts-check),
 * and `Line` below must accept each one. Run time: the stand-in process,
 * driven through every kind of line it prints, has each line's required
 * fields with the published types.
 */
type Line = SDKMessage | SDKControlRequest | SDKControlResponse;

// Compile-time: each builder's result is a published stream-json line (a wrong field fails `tsc`).
const sid = randomUUID();
const EXAMPLES: Line[] = [
  M.init({ cwd: '/w', sessionId: sid, tools: ['Bash'], model: 'm', permissionMode: 'default', apiKeySource: 'none', version: '2.1.197' }),
  M.status(sid),
  M.streamEvent(sid, M.messageStart({ id: 'msg_1', model: 'm', inputTokens: 3 })),
  M.streamEvent(sid, M.textBlockStart()),
  M.streamEvent(sid, M.textDelta('hi')),
  M.streamEvent(sid, M.blockStop()),
  M.streamEvent(sid, M.messageDelta(1)),
  M.streamEvent(sid, M.messageStop()),
  M.assistant({ sessionId: sid, id: 'msg_1', model: 'm', text: 'hi', stopReason: null, usage: M.usage(3, 1) }),
  M.resultSuccess({ sessionId: sid, isError: false, durationMs: 1, durationApiMs: 1, numTurns: 1, result: 'hi', stopReason: 'end_turn', costUsd: 0.1, usage: M.usage(3, 1), modelUsage: { m: M.modelUsage(3, 1, 0.1) } }),
  M.resultError({ sessionId: sid, durationMs: 1, numTurns: 2, errors: ['x'], terminalReason: 'aborted_streaming' }),
  M.interruptedByUser(sid),
  M.apiRetry(sid, 1),
  M.rateLimit(sid),
  M.conversationReset(sid),
  M.canUseTool('r1', 'Bash', { command: 'ls' }),
  M.controlSuccess('r2'),
  M.controlSuccess('r3', M.initializeResponse({ model: 'm', apiKeySource: 'none', pid: 1 })),
  M.controlError('r4', 'no'),
];

type Kind = 'string' | 'number' | 'boolean' | 'null' | 'array' | 'object';
const kindOf = (v: unknown): Kind | 'undefined' => (v === null ? 'null' : Array.isArray(v) ? 'array' : typeof v as Kind);
/** Required fields of each line kind, read off the SDK's sdk.d.ts (0.3.x); `a|b` allows either. */
const UUID_S = 'string';
const REQUIRED: Record<string, Record<string, string>> = {
  'system/init': { cwd: 'string', session_id: 'string', tools: 'array', mcp_servers: 'array', model: 'string', permissionMode: 'string', slash_commands: 'array', apiKeySource: 'string', claude_code_version: 'string', output_style: 'string', skills: 'array', plugins: 'array', uuid: UUID_S },
  'system/status': { status: 'string|null', uuid: UUID_S, session_id: 'string' },
  'system/api_retry': { attempt: 'number', max_retries: 'number', retry_delay_ms: 'number', error_status: 'number|null', error: 'string', uuid: UUID_S, session_id: 'string' },
  stream_event: { event: 'object', parent_tool_use_id: 'string|null', uuid: UUID_S, session_id: 'string' },
  assistant: { message: 'object', parent_tool_use_id: 'string|null', uuid: UUID_S, session_id: 'string' },
  user: { message: 'object', parent_tool_use_id: 'string|null' },
  'result/success': { duration_ms: 'number', duration_api_ms: 'number', is_error: 'boolean', num_turns: 'number', result: 'string', stop_reason: 'string|null', total_cost_usd: 'number', usage: 'object', modelUsage: 'object', permission_denials: 'array', uuid: UUID_S, session_id: 'string' },
  'result/error_during_execution': { duration_ms: 'number', duration_api_ms: 'number', is_error: 'boolean', num_turns: 'number', stop_reason: 'string|null', total_cost_usd: 'number', usage: 'object', modelUsage: 'object', permission_denials: 'array', errors: 'array', uuid: UUID_S, session_id: 'string' },
  rate_limit_event: { rate_limit_info: 'object', uuid: UUID_S, session_id: 'string' },
  conversation_reset: { new_conversation_id: 'string', uuid: UUID_S, session_id: 'string' },
  'control_request/can_use_tool': { request_id: 'string', request: 'object' },
  'control_response/success': { response: 'object' },
  'control_response/error': { response: 'object' },
};
/** BetaMessage (assistant lines, message_start) and NonNullableUsage: every key is required. */
const BETA_MESSAGE = ['id', 'container', 'content', 'context_management', 'diagnostics', 'model', 'role', 'stop_details', 'stop_reason', 'stop_sequence', 'type', 'usage'];
const USAGE = ['cache_creation', 'cache_creation_input_tokens', 'cache_read_input_tokens', 'fallback_credit', 'inference_geo', 'input_tokens', 'iterations', 'output_tokens', 'output_tokens_details', 'server_tool_use', 'service_tier', 'speed'];
const STREAM_EVENTS = new Set(['message_start', 'content_block_start', 'content_block_delta', 'content_block_stop', 'message_delta', 'message_stop']);

function kindKey(l: Record<string, any>): string {
  if (l.type === 'system' || l.type === 'result') return `${l.type}/${l.subtype}`;
  if (l.type === 'control_request') return `control_request/${l.request?.subtype}`;
  if (l.type === 'control_response') return `control_response/${l.response?.subtype}`;
  return String(l.type);
}

/** The problems of one line against the published shapes ([] when it conforms). */
function problems(l: Record<string, any>): string[] {
  const key = kindKey(l);
  const req = REQUIRED[key];
  if (!req) return [`${key}: not a line kind the stand-in is known to print`];
  const out: string[] = [];
  for (const [f, want] of Object.entries(req)) {
    const got = kindOf(l[f]);
    if (!want.split('|').includes(got)) out.push(`${key}.${f}: ${got}, want ${want}`);
  }
  const message = key === 'assistant' ? l.message : key === 'stream_event' && l.event?.type === 'message_start' ? l.event.message : undefined;
  if (message) {
    for (const f of BETA_MESSAGE) if (!(f in message)) out.push(`${key}: message.${f} missing`);
    for (const f of USAGE) if (!(f in message.usage)) out.push(`${key}: message.usage.${f} missing`);
  }
  if (key.startsWith('result/')) for (const f of USAGE) if (!(f in l.usage)) out.push(`${key}: usage.${f} missing`);
  if (key === 'stream_event' && !STREAM_EVENTS.has(l.event?.type)) out.push(`stream_event: event.type ${l.event?.type}`);
  if (key === 'stream_event' && l.event?.type === 'message_delta') for (const f of ['fallback_credit', 'output_tokens_details', 'output_tokens']) if (!(f in l.event.usage)) out.push(`message_delta: usage.${f} missing`);
  if (key === 'control_request/can_use_tool') for (const f of ['tool_name', 'input', 'tool_use_id']) if (l.request[f] === undefined) out.push(`can_use_tool: request.${f} missing`);
  if (key.startsWith('control_response/') && typeof l.response.request_id !== 'string') out.push(`${key}: response.request_id missing`);
  if (key === 'control_response/error' && typeof l.response.error !== 'string') out.push(`${key}: response.error missing`);
  if (key === 'rate_limit_event' && !['allowed', 'allowed_warning', 'rejected'].includes(l.rate_limit_info.status)) out.push('rate_limit_event: rate_limit_info.status');
  return out;
}

/** Run the stand-in through `script`: each step waits for a line, then writes. Resolves with every stdout line once it exits. */
function drive(env: Record<string, string>, args: string[], script: (line: Record<string, any>, write: (o: unknown) => void, end: () => void) => void): Promise<{ lines: Record<string, any>[]; code: number | null }> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [join(ROOT, 'test/stand-ins/claude/claude.mjs'), '--output-format', 'stream-json', '--verbose', '--input-format', 'stream-json', ...args], {
      env: { PATH: process.env.PATH ?? '', ...env }, stdio: ['pipe', 'pipe', 'pipe'],
    });
    const lines: Record<string, any>[] = [];
    let buf = '';
    const write = (o: unknown) => p.stdin.write(JSON.stringify(o) + '\n');
    const end = () => p.stdin.end();
    p.stdout.on('data', (d: Buffer) => {
      buf += d.toString();
      for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
        const raw = buf.slice(0, i);
        buf = buf.slice(i + 1);
        let l: Record<string, any>;
        try { l = JSON.parse(raw) as Record<string, any>; } catch { continue; } // [[garbage]] lines are meant not to be JSON...
        if (l === null || typeof l !== 'object' || Array.isArray(l)) continue; // ...or not an object
        lines.push(l);
        script(l, write, end);
      }
    });
    p.once('error', reject);
    p.once('exit', (code) => resolve({ lines, code }));
    const t = setTimeout(() => { p.kill('SIGKILL'); reject(new Error(`stand-in did not finish; lines so far: ${lines.map(kindKey).join(', ')}`)); }, 15_000);
    p.once('exit', () => clearTimeout(t));
    write({ type: 'control_request', request_id: 'init-1', request: { subtype: 'initialize', hooks: null } });
  });
}

const user = (text: string) => ({ type: 'user', message: { role: 'user', content: [{ type: 'text', text }] }, parent_tool_use_id: null, session_id: '' });

describe('claude stand-in fidelity: its lines against @anthropic-ai/claude-agent-sdk\'s published types', function () {
  this.timeout(30_000);
  let home: string;
  before(() => { home = mkdtempSync(join(tmpdir(), 'shoal-standin-types-')); });
  after(() => rmSync(home, { recursive: true, force: true }));

  it('builds every line kind as a published stream-json message (compile time, and each builder\'s output at run time)', () => {
    const kinds = new Set(EXAMPLES.map((l) => kindKey(l as Record<string, any>)));
    expect([...kinds].sort()).to.deep.equal(Object.keys(REQUIRED).sort());
    for (const l of EXAMPLES) expect(problems(l as Record<string, any>), kindKey(l as Record<string, any>)).to.deep.equal([]);
  });

  it('prints only conforming lines through a whole session: partials, tool permission, rate limit, interrupt, clear', async () => {
    let step = 0;
    const { lines, code } = await drive({ HOME: home, STANDIN_CLEAR_MODE: 'both' }, ['--include-partial-messages'], (l, write, end) => {
      if (l.type === 'control_response' && l.response.request_id === 'init-1') { write(user('hello [[rate_limit]] [[can_use_tool]] [[garbage]]')); return; }
      if (l.type === 'control_request' && l.request.subtype === 'can_use_tool') {
        write({ type: 'control_response', response: { subtype: 'success', request_id: l.request_id, response: { behavior: 'deny', message: 'no tools here' } } });
        return;
      }
      if (l.type === 'result' && step === 0) { step = 1; write(user('take your time [[hang]]')); return; }
      if (l.type === 'system' && l.subtype === 'api_retry' && step === 1) { step = 2; write({ type: 'control_request', request_id: 'int-1', request: { subtype: 'interrupt' } }); return; }
      if (l.type === 'result' && step === 2) { step = 3; write(user('/clear')); write({ type: 'control_request', request_id: 'bad-1', request: { subtype: 'no_such_thing' } }); return; }
      if (l.type === 'control_response' && l.response.request_id === 'bad-1') end();
    });
    expect(code).to.equal(0);
    const seen = new Set(lines.map(kindKey));
    // Every kind of line the stand-in has was printed here, and each conforms.
    expect([...seen].sort()).to.deep.equal(Object.keys(REQUIRED).sort());
    const bad = lines.flatMap(problems);
    expect(bad).to.deep.equal([]);
    const events = new Set(lines.filter((l) => l.type === 'stream_event').map((l) => l.event.type));
    expect([...events].sort()).to.deep.equal([...STREAM_EVENTS].sort());
  });

  it('a --resume of an unknown session prints a conforming error result and exits 1', async () => {
    const { lines, code } = await drive({ HOME: home }, ['--resume', randomUUID()], () => {});
    expect(code).to.equal(1);
    expect(lines.map(kindKey)).to.deep.equal(['result/error_during_execution']);
    expect(lines.flatMap(problems)).to.deep.equal([]);
  });
});
