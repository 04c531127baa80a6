import { expect } from 'chai';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Registry } from 'prom-client';
import { ShoalError } from '@shoal/protocol';
import { systemClock, type Driver } from '@shoal/pool-node';
import { claudeCliDriver, type ClaudeSession, type CliMessage } from '../../services/pool-node/src/drivers/claude-cli/index.js';
import { ROOT, sleep, until } from '../helpers/procs.js';

/**
 * The claude-cli driver in this process against the stand-in CLI: the turn
 * state machine, interrupts, aborts, crashes, resets and the stop sequence,
 * without NATS. (test/integration/claude.test.ts runs it inside a pool-node.)
 */
export const STAND_IN = join(ROOT, 'test', 'stand-ins', 'claude', 'claude.mjs');

const alive = (pid: number | undefined) => {
  if (!pid) return false;
  try { process.kill(pid, 0); return true; } catch { return false; }
};

describe('claude-cli driver (in-process, stand-in CLI)', function () {
  this.timeout(20_000);
  let home: string;
  const made: { d: Driver<ClaudeSession>; s: ClaudeSession }[] = [];

  before(() => { home = mkdtempSync(join(tmpdir(), 'claude-home-')); });
  after(() => rmSync(home, { recursive: true, force: true }));
  afterEach(async () => { await Promise.all(made.splice(0).map(({ d, s }) => d.destroy(s))); });

  function driver(options: Record<string, unknown> = {}, registry?: Registry): Driver<ClaudeSession> {
    return claudeCliDriver({
      clock: systemClock, random: Math.random, poolName: 'claude', registry, labels: { pool: 'claude', node: 't' },
      options: { command: STAND_IN, cwd_root: join(home, 'work'), interrupt_timeout: '2s', stop_grace: '300ms', stop_kill_after: '700ms', ...options },
    }) as Driver<ClaudeSession>;
  }

  async function session(options: Record<string, unknown> = {}, registry?: Registry) {
    const d = driver(options, registry);
    const s = await d.create({ resourceId: 'r1', signal: new AbortController().signal });
    made.push({ d, s });
    return { d, s };
  }

  const send = (d: Driver<ClaudeSession>, s: ClaudeSession, content: unknown, signal = new AbortController().signal) => {
    const events: CliMessage[] = [];
    const result = d.exec(s, 'send', { content }, { emit: (e) => events.push(e as CliMessage), signal }) as Promise<CliMessage>;
    return { events, result };
  };

  it('creates a session whose id is known before the first turn, and streams a turn in order', async () => {
    const registry = new Registry();
    const { d, s } = await session({ include_partial_messages: true, model: 'sonnet' }, registry);
    const meta = d.describe!(s)!;
    expect(meta.session_id).to.match(/^[0-9a-f-]{36}$/);
    expect(alive(s.pid)).to.equal(true);
    const { events, result } = send(d, s, 'hello');
    const r = await result;
    expect(r).to.include({ type: 'result', subtype: 'success', is_error: false, session_id: meta.session_id });
    expect(r.result).to.contain('Turn 1 (message 1 of this conversation');
    const kinds = events.map((e) => e.type);
    expect(kinds[0]).to.equal('system');
    expect(events[0]).to.include({ subtype: 'init', model: 'sonnet', session_id: meta.session_id });
    expect(kinds).to.include('stream_event');
    expect(kinds[kinds.length - 1]).to.equal('assistant');
    expect(kinds).to.not.include('result');
    const text = events.filter((e) => e.type === 'stream_event' && (e.event as any).type === 'content_block_delta').map((e) => (e.event as any).delta.text).join('');
    expect(text).to.equal(r.result);
    expect(d.describe!(s)).to.deep.equal({ session_id: meta.session_id, model: 'sonnet' });
    expect(d.usage(s).memoryBytes).to.be.greaterThan(10 * 1024 * 1024);
    const metrics = await registry.metrics();
    expect(metrics).to.match(/shoal_claude_turns_total\{pool="claude",node="t",outcome="success"\} 1/);
    expect(metrics).to.match(/shoal_claude_tokens_total\{pool="claude",node="t",type="output"\} \d+/);
    expect(metrics).to.match(/shoal_claude_sessions\{pool="claude",node="t",state="idle"\} 1/);
  });

  it('raw mode: events are the text of stdout reads, the driver still ends the turn on its result', async () => {
    const { d, s } = await session({ include_partial_messages: true });
    const events: unknown[] = [];
    const r = await d.exec(s, 'send', { content: 'fast [[tokens=3000]]', raw: true }, { emit: (e) => events.push(e), signal: new AbortController().signal }) as CliMessage;
    expect(r).to.include({ type: 'result', subtype: 'success' });
    expect(events.every((e) => typeof e === 'string' && e.endsWith('\n'))).to.equal(true);
    const lines = (events as string[]).join('').split('\n').filter(Boolean).map((l) => JSON.parse(l));
    expect(lines[0]).to.include({ type: 'system', subtype: 'init', session_id: s.sessionId });
    expect(lines.filter((l) => l.type === 'stream_event').length).to.be.greaterThan(3000);
    expect(lines.some((l) => l.type === 'result')).to.equal(false);
    expect(lines[lines.length - 1].type).to.equal('assistant');
    expect(events.length).to.be.lessThan(lines.length);
    // The next turn in the default mode is one object per line again.
    const { events: objs } = await (async () => { const ev: unknown[] = []; await d.exec(s, 'send', { content: 'slow' }, { emit: (e) => ev.push(e), signal: new AbortController().signal }); return { events: ev }; })();
    expect(objs.every((e) => typeof e === 'object')).to.equal(true);
  });

  it('refuses a second send during a turn (SESSION_BUSY) and interrupts the turn', async () => {
    const { d, s } = await session();
    const { events, result } = send(d, s, 'wait for it [[hang]]');
    await until('the turn to be under way', () => events.some((e) => e.type === 'system' && e.subtype === 'api_retry'));
    const busy = await (d.exec(s, 'send', { content: 'me too' }, { emit() {}, signal: new AbortController().signal }) as Promise<any>).catch((e: any) => e);
    expect(busy).to.be.instanceOf(ShoalError);
    expect(busy.code).to.equal('SESSION_BUSY');
    expect(await d.exec(s, 'interrupt', {}, { emit() {}, signal: new AbortController().signal })).to.deep.equal({ interrupted: true });
    const r = await result;
    expect(r).to.include({ subtype: 'error_during_execution', is_error: true });
    expect(events.some((e) => e.type === 'system' && e.subtype === 'api_retry')).to.equal(true);
    expect(events.some((e) => e.type === 'user' && JSON.stringify(e.message).includes('[Request interrupted by user]'))).to.equal(true);
    expect(await d.validate(s)).to.equal(true);
    expect(await d.exec(s, 'interrupt', {}, { emit() {}, signal: new AbortController().signal })).to.deep.equal({ interrupted: false });
    expect((await send(d, s, 'next').result).result).to.contain('message 2 of this conversation');
  });

  it('interrupts the turn when the exec signal aborts, rejects at once, and is reusable after', async () => {
    const { d, s } = await session();
    const ac = new AbortController();
    const { events, result } = send(d, s, 'long [[tokens=1000]] [[delay=20]]', ac.signal);
    await until('the turn to start (its system/init line)', () => events.some((e) => e.type === 'system'));
    const t0 = Date.now();
    ac.abort(new ShoalError('CANCELLED', 'lease ended'));
    const err = await result.catch((e: any) => e);
    expect(err.code).to.equal('CANCELLED');
    // At once, not after the 20 s turn (the bound only catches waiting for the turn; CI machines are shared).
    expect(Date.now() - t0).to.be.lessThan(10_000);
    expect(await d.validate(s)).to.equal(true);
    expect(s.state).to.equal('idle');
  });

  it('ends a turn whose CLI dies with DRIVER_ERROR (exit code, signal, stderr tail); validate then fails', async () => {
    const { d, s } = await session();
    const err = await send(d, s, 'boom [[crash]] [[tokens=50]]').result.catch((e: any) => e);
    expect(err.code).to.equal('DRIVER_ERROR');
    expect(err.message).to.match(/exited \(code 3, signal none\) mid-turn/);
    expect(err.message).to.contain('stand-in crash requested');
    expect(err.details).to.include({ exitCode: 3, signal: null });
    expect(await d.validate(s)).to.equal(false);
    const again = await send(d, s, 'anyone?').result.catch((e: any) => e);
    expect(again.code).to.equal('DRIVER_ERROR');

    const { d: d2, s: s2 } = await session();
    const killed = await send(d2, s2, 'boom [[crash=SIGKILL]] [[tokens=50]]').result.catch((e: any) => e);
    expect(killed.details).to.include({ exitCode: null, signal: 'SIGKILL' });
  });

  it('skips and counts non-JSON lines, passes unknown types on, and denies tool permission requests', async () => {
    const { d, s } = await session();
    const { events, result } = send(d, s, 'noise [[garbage]] [[rate_limit]] [[can_use_tool]]');
    const r = await result;
    expect(r.result).to.contain('[tool Bash: deny]');
    expect(events.some((e) => e.type === 'rate_limit_event')).to.equal(true);
    expect(events.some((e) => e.type === 'control_request')).to.equal(true);
    const info = await d.exec(s, 'info', {}, { emit() {}, signal: new AbortController().signal }) as Record<string, unknown>;
    expect(info).to.include({ non_json_lines: 4, state: 'idle', turns: 1 });
  });

  for (const mode of ['result', 'reset', 'both']) {
    it(`resets with /clear to a new session id (stand-in clear mode ${mode})`, async () => {
      const { d, s } = await session({ env: { STANDIN_CLEAR_MODE: mode } });
      const first = await send(d, s, 'remember me').result;
      const before = s.sessionId;
      expect(first.session_id).to.equal(before);
      const pid = s.pid;
      const t0 = Date.now();
      await d.reset(s);
      // The same process (no respawn) is what proves /clear was used; the time bound only catches a hang.
      expect(Date.now() - t0).to.be.lessThan(5000);
      expect(s.pid).to.equal(pid);
      expect(s.sessionId).to.not.equal(before);
      const after = await send(d, s, 'who am I').result;
      expect(after.result).to.contain('message 1 of this conversation; first: "who am I"');
      expect(after.session_id).to.equal(s.sessionId);
    });
  }

  it('fails reset when the process is gone (the pool replaces it); respawns with reset_mode respawn', async () => {
    const { d, s } = await session();
    const crashed = await send(d, s, 'x [[crash]] [[tokens=10]]').result.then(() => null, (e: any) => e);
    expect(crashed?.code, 'the crashed turn fails').to.equal('DRIVER_ERROR');
    const err = await d.reset(s).catch((e: any) => e);
    expect(err.code).to.equal('DRIVER_ERROR');
    expect(err.message).to.contain('mid-turn');

    const { d: d2, s: s2 } = await session({ reset_mode: 'respawn' });
    const pid = s2.pid;
    await d2.reset(s2);
    expect(s2.pid).to.not.equal(pid);
    expect(alive(pid)).to.equal(false);
  });

  it('resumes a conversation on another process sharing the session store (resume op, pool option)', async () => {
    // A shared session store: private_config off, one HOME for every session.
    const shared = { cwd: join(home, 'project'), allow_resume_op: true, private_config: false, env: { HOME: home } };
    const { d, s } = await session(shared);
    await send(d, s, 'the secret is 42').result;
    await send(d, s, 'and more').result;
    const id = s.sessionId!;
    const { d: d2, s: s2 } = await session(shared);
    expect(await d2.exec(s2, 'resume', { session_id: id }, { emit() {}, signal: new AbortController().signal })).to.deep.equal({ session_id: id });
    expect((await send(d2, s2, 'what was it?').result).result).to.contain('message 3 of this conversation; first: "the secret is 42"');
    const missing = await (d2.exec(s2, 'resume', { session_id: '00000000-0000-4000-8000-000000000000' }, { emit() {}, signal: new AbortController().signal }) as Promise<any>).catch((e: any) => e);
    expect(missing.code).to.equal('DRIVER_ERROR');
    expect(missing.message).to.contain('No conversation found with session ID');
    expect(await d2.validate(s2)).to.equal(true);
    // The pool option: every fresh process forks from the given conversation.
    const { d: d3, s: s3 } = await session({ cwd: join(home, 'project'), resume: id, fork_session: true, private_config: false, env: { HOME: home } });
    expect(s3.sessionId).to.not.equal(id);
    expect((await send(d3, s3, 'forked').result).result).to.contain('first: "the secret is 42"');
    const bad = await (d.exec(s, 'resume', { session_id: 'x; rm -rf /' }, { emit() {}, signal: new AbortController().signal }) as Promise<any>).catch((e: any) => e);
    expect(bad.code).to.equal('BAD_REQUEST');
  });

  it('fails creates clearly: command not found, exit at start, no answer (aborted by the create timeout)', async () => {
    const missing = await driver({ command: 'claude-not-installed-here' }).create({ resourceId: 'x', signal: new AbortController().signal }).catch((e: any) => e);
    expect(missing.message).to.match(/^claude command not found: claude-not-installed-here/);
    const exits = await driver({ env: { STANDIN_EXIT_AT_START: '7' } }).create({ resourceId: 'x', signal: new AbortController().signal }).catch((e: any) => e);
    expect(exits.code).to.equal('DRIVER_ERROR');
    expect(exits.message).to.match(/exited \(code 7.*before answering initialize.*STANDIN_EXIT_AT_START/);
    const ac = new AbortController();
    const silent = driver({ env: { STANDIN_NO_INITIALIZE: '1' } }).create({ resourceId: 'x', signal: ac.signal }).catch((e: any) => e);
    await sleep(300);
    ac.abort();
    expect((await silent).code).to.equal('DRIVER_ERROR');
    const bad = await driver({ args: ['--bogus'] }).create({ resourceId: 'x', signal: new AbortController().signal }).catch((e: any) => e);
    expect(bad.message).to.contain("unknown option '--bogus'");
  });

  it('environment knobs of the stand-in: slow start, crash at turn n, garbage and rate-limit lines every turn', async () => {
    const t0 = Date.now();
    const { d, s } = await session({ env: { STANDIN_START_DELAY_MS: '600', STANDIN_CRASH_AT_TURN: '2', STANDIN_GARBAGE: '1', STANDIN_RATE_LIMIT_EVENT: '1', STANDIN_TOKENS: '20' } });
    expect(Date.now() - t0).to.be.at.least(600);
    const one = send(d, s, 'first');
    expect((await one.result).subtype).to.equal('success');
    expect(one.events.some((e) => e.type === 'rate_limit_event')).to.equal(true);
    expect(s.nonJsonLines).to.equal(4);
    const err = await send(d, s, 'second').result.catch((e: any) => e);
    expect(err.details).to.include({ exitCode: 3 });
  });

  it('destroys with stdin EOF, then SIGTERM, then SIGKILL; removes its working directory', async () => {
    const d = driver({ env: { STANDIN_IGNORE_EOF: '1', STANDIN_IGNORE_SIGTERM: '1' } });
    const s = await d.create({ resourceId: 'r', signal: new AbortController().signal });
    const pid = s.pid;
    const info = await d.exec(s, 'info', {}, { emit() {}, signal: new AbortController().signal }) as { pid: number };
    expect(info.pid).to.equal(pid);
    const t0 = Date.now();
    await d.destroy(s);
    const took = Date.now() - t0;
    // The escalation waited its grace periods (lower bound); the upper one only catches a hang.
    expect(took).to.be.within(900, 15_000);
    expect(alive(pid)).to.equal(false);
    const { d: d2, s: s2 } = await session();
    const dirs = (await d2.exec(s2, 'send', { content: 'where' }, { emit() {}, signal: new AbortController().signal }) as CliMessage);
    expect(dirs.type).to.equal('result');
    const cwd = (s2 as unknown as { workDir: string }).workDir;
    expect(existsSync(cwd)).to.equal(true);
    await d2.destroy(s2);
    made.splice(0);
    expect(existsSync(cwd)).to.equal(false);
  });

  it('reports RSS from /proc (growing memory is seen after the turn)', async () => {
    const { d, s } = await session();
    const before = d.usage(s).memoryBytes;
    await send(d, s, 'eat [[grow=64]]').result;
    await until('the growth to show in RSS', () => d.usage(s).memoryBytes - before > 50 * 1024 * 1024);
  });
});
