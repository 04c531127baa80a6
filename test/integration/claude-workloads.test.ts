import { expect } from 'chai';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Registry } from 'prom-client';
import { systemClock, type Driver } from '@shoal/pool-node';
import { claudeCliDriver, type ClaudeSession, type CliMessage } from '../../services/pool-node/src/drivers/claude-cli/index.js';
import { ROOT } from '../helpers/procs.js';

/**
 * The claude-cli driver against the stand-in CLI, in this process, for what
 * real workloads need: the hang watchdog, private transcripts and a turn's
 * own deadline. (claude-long.test.ts runs long turns through the SDK and a
 * balancer.)
 */
const STAND_IN = join(ROOT, 'test', 'stand-ins', 'claude', 'claude.mjs');

const alive = (pid: number | undefined) => {
  if (!pid) return false;
  try { process.kill(pid, 0); return true; } catch { return false; }
};

async function until(what: string, cond: () => boolean | Promise<boolean>, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** The stand-in's [[list_config]] report inside a reply. */
function configReport(text: string): { configDir: string; home: string; files: string[]; transcripts: string[] } {
  const m = /\[config (\{.*\})\]/.exec(text);
  if (!m) throw new Error(`no config report in ${text}`);
  return JSON.parse(m[1]!);
}

describe('claude-cli driver for real workloads (in-process, stand-in CLI)', function () {
  this.timeout(30_000);
  let root: string;
  const made: { d: Driver<ClaudeSession>; s: ClaudeSession }[] = [];

  before(() => { root = mkdtempSync(join(tmpdir(), 'claude-work-')); });
  after(() => rmSync(root, { recursive: true, force: true }));
  afterEach(async () => { await Promise.all(made.splice(0).map(({ d, s }) => d.destroy(s))); });

  function driver(options: Record<string, unknown> = {}, registry?: Registry): Driver<ClaudeSession> {
    return claudeCliDriver({
      clock: systemClock, random: Math.random, poolName: 'claude', registry, labels: { pool: 'claude', node: 't' },
      options: { command: STAND_IN, cwd_root: join(root, 'sessions'), interrupt_timeout: '1s', stop_grace: '300ms', stop_kill_after: '700ms', ...options },
    }) as Driver<ClaudeSession>;
  }

  async function session(options: Record<string, unknown> = {}, registry?: Registry) {
    const d = driver(options, registry);
    const s = await d.create({ resourceId: `r${made.length}`, signal: new AbortController().signal });
    made.push({ d, s });
    return { d, s };
  }

  const send = (d: Driver<ClaudeSession>, s: ClaudeSession, content: unknown, timeoutMs?: number, client?: string) => {
    const events: CliMessage[] = [];
    const result = d.exec(s, 'send', { content }, { emit: (e) => events.push(e as CliMessage), signal: new AbortController().signal, timeoutMs, client }) as Promise<CliMessage>;
    return { events, result };
  };

  describe('hang watchdog (stall_timeout)', () => {
    it('a CLI that stops writing mid-turn: SESSION_STALLED (retryable, last lines) within stall_timeout + 1 s, then killed and refused by validate', async () => {
      const registry = new Registry();
      const { d, s } = await session({ stall_timeout: '1500ms', include_partial_messages: true }, registry);
      const pid = s.pid;
      const t0 = Date.now();
      const { events, result } = send(d, s, 'one two three four five six seven eight [[stall]]');
      const err = await result.then(() => undefined, (e: any) => e);
      const took = Date.now() - t0;
      expect(err?.code, String(err)).to.equal('SESSION_STALLED');
      expect(took).to.be.within(1400, 2500);
      expect(err.details.retryable).to.equal(true);
      expect(err.details.lastLines.length).to.be.greaterThan(0);
      expect(err.details.lastLines.join('\n')).to.contain('content_block_delta');
      expect(err.details.partialText).to.contain('Turn 1');
      expect(events.length).to.be.greaterThan(2);
      // Interrupt unanswered (the CLI is hung): killed after interrupt_timeout, the pool replaces it.
      await until('the hung CLI killed', () => !alive(pid));
      expect(await d.validate(s)).to.equal(false);
      const metrics = await registry.metrics();
      expect(metrics).to.match(/shoal_claude_stalls_total\{pool="claude",node="t",stage="turn",action="interrupted"\} 1/);
      expect(metrics).to.match(/shoal_claude_stalls_total\{pool="claude",node="t",stage="turn",action="killed"\} 1/);
      expect(metrics).to.match(/shoal_claude_turns_total\{pool="claude",node="t",outcome="stalled"\} 1/);
    });

    it('a slow but talking turn is not a stall; a silent one that answers the interrupt keeps its session', async () => {
      const { d, s } = await session({ stall_timeout: '600ms', include_partial_messages: true });
      // Tokens every 200 ms for ~2.4 s: never 600 ms of silence.
      const slow = await send(d, s, 'a b c d e f [[delay=200]]').result;
      expect(slow.subtype).to.equal('success');
      // Silent (no partial messages, no api_retry): interrupted at 600 ms; the stand-in answers, the session stays.
      const { d: d2, s: s2 } = await session({ stall_timeout: '600ms' });
      const err = await send(d2, s2, 'x [[turn_ms=5000]]').result.then(() => undefined, (e: any) => e);
      expect(err?.code).to.equal('SESSION_STALLED');
      expect(await d2.validate(s2)).to.equal(true);
      expect((await send(d2, s2, 'after').result).result).to.contain('Turn 2');
    });

    it('a control request left unanswered (set_model) kills the CLI: SESSION_STALLED, counted', async () => {
      const registry = new Registry();
      const { d, s } = await session({ lease_options: { model: ['haiku'] }, env: { STANDIN_IGNORE_CONTROL: 'set_model' } }, registry);
      const pid = s.pid;
      const err = await d.prepare!(s, { model: 'haiku' }, new AbortController().signal).then(() => undefined, (e: any) => e);
      expect(err?.code).to.equal('SESSION_STALLED');
      expect(err.details).to.include({ retryable: true, request: 'set_model' });
      await until('the CLI killed', () => !alive(pid));
      expect(await d.validate(s)).to.equal(false);
      expect(await registry.metrics()).to.match(/shoal_claude_stalls_total\{pool="claude",node="t",stage="control",action="killed"\} 1/);
    });

    it('stall_timeout 0 turns the watchdog off', async () => {
      const { d, s } = await session({ stall_timeout: 0 });
      const r = await send(d, s, 'quiet [[turn_ms=1200]]').result;
      expect(r.subtype).to.equal('success');
    });
  });

  describe('a turn of its own deadline', () => {
    it('over its deadline: interrupted with the CLI interrupt, TURN_TIMEOUT with what streamed, the session clean after', async () => {
      const { d, s } = await session({ include_partial_messages: true });
      const t0 = Date.now();
      const { result } = send(d, s, 'w1 w2 w3 w4 w5 w6 w7 w8 w9 w10 [[turn_ms=8000]]', 1500);
      const err = await result.then(() => undefined, (e: any) => e);
      expect(err?.code, String(err)).to.equal('TURN_TIMEOUT');
      expect(Date.now() - t0).to.be.lessThan(4000);
      expect(err.details).to.include({ retryable: false, timeoutMs: 1500 });
      expect(err.details.partialText).to.match(/^Turn 1 /);
      expect(err.details.events).to.be.greaterThan(2);
      // Interrupted, not killed: same process, idle, the next turn is fine.
      const pid = s.pid;
      expect(await d.validate(s)).to.equal(true);
      expect(s.pid).to.equal(pid);
      expect((await send(d, s, 'next').result).subtype).to.equal('success');
    });

    it('the pool default for send is turn_timeout; other ops have none', () => {
      const d = driver({ turn_timeout: '45m' });
      expect(d.defaultExecTimeoutMs!('send')).to.equal(45 * 60_000);
      expect(d.defaultExecTimeoutMs!('info')).to.equal(undefined);
      expect(d.ownsExecDeadline).to.equal(true);
    });
  });

  describe('private transcripts', () => {
    it('each session has its own HOME and config dir; the next holder cannot read the previous holder\'s transcript', async () => {
      const { d, s } = await session();
      const first = await send(d, s, 'my secret is 1234 [[list_config]]').result;
      const before = configReport(String(first.result));
      expect(before.configDir).to.equal(join(before.home, '.claude'));
      expect(before.home.startsWith(join(root, 'sessions'))).to.equal(true);
      await send(d, s, 'still me').result;
      const mine = s.sessionId!;
      const again = configReport(String((await send(d, s, '[[list_config]]').result).result));
      expect(again.transcripts).to.include(mine);
      // Another session of the same pool has its own, empty store.
      const { d: d2, s: s2 } = await session();
      const other = configReport(String((await send(d2, s2, '[[list_config]]').result).result));
      expect(other.home).to.not.equal(before.home);
      expect(other.transcripts).to.deep.equal([]);
      // Release: reset (/clear) wipes the holder's files; the next holder sees none of them.
      await d.reset(s);
      expect(s.sessionId).to.not.equal(mine);
      const next = configReport(String((await send(d, s, '[[list_config]]').result).result));
      expect(next.home).to.equal(before.home);
      expect(next.transcripts).to.not.include(mine);
      expect(next.transcripts).to.deep.equal([]);
      expect(next.files.join(' ')).to.not.contain(mine);
      // A late write of the old conversation (the real CLI flushes lazily) cannot bring it back.
      const project = join(before.configDir, 'projects');
      const blocker = readdirSync(project).map((p) => join(project, p, `${mine}.jsonl`)).find((p) => existsSync(p));
      expect(blocker, 'old transcript path blocked').to.not.equal(undefined);
      // Destroy removes the session's folder, HOME included.
      await d.destroy(s);
      made.splice(made.findIndex((m) => m.s === s), 1);
      expect(existsSync(before.home)).to.equal(false);
    });

    it('session_persistence: false writes no transcript at all (--no-session-persistence)', async () => {
      const { d, s } = await session({ session_persistence: false });
      await send(d, s, 'forget me').result;
      const r = configReport(String((await send(d, s, '[[list_config]]').result).result));
      expect(r.transcripts).to.deep.equal([]);
    });

    it('private_config: false shares the node\'s HOME (for a shared session store)', async () => {
      const home = join(root, 'shared-home');
      const { d, s } = await session({ private_config: false, env: { HOME: home } });
      const r = configReport(String((await send(d, s, '[[list_config]]').result).result));
      expect(r.home).to.equal(home);
    });
  });

  describe('cost per client', () => {
    const sum = (text: string, re: RegExp) => Number(re.exec(text)?.[1] ?? NaN);

    it('counts each turn\'s own cost (the CLI reports a running total) by the holder\'s client name; api_retry by status', async () => {
      const registry = new Registry();
      const { d, s } = await session({}, registry);
      const a1 = await send(d, s, 'one two three', undefined, 'alpha').result;
      const a2 = await send(d, s, 'four five six seven', undefined, 'alpha').result;
      // The stand-in, like the CLI, reports the conversation's running total.
      expect(a2.total_cost_usd as number).to.be.greaterThan(a1.total_cost_usd as number);
      await d.reset(s);
      const b1 = await send(d, s, 'eight [[api_retry=529]]', undefined, 'beta').result;
      const alpha = a2.total_cost_usd as number;
      const beta = b1.total_cost_usd as number;
      const m = await registry.metrics();
      expect(sum(m, /shoal_claude_client_cost_usd_total\{pool="claude",node="t",client="alpha"\} ([\d.e-]+)/)).to.be.closeTo(alpha, 1e-9);
      expect(sum(m, /shoal_claude_client_cost_usd_total\{pool="claude",node="t",client="beta"\} ([\d.e-]+)/)).to.be.closeTo(beta, 1e-9);
      expect(sum(m, /shoal_claude_cost_usd_total\{pool="claude",node="t"\} ([\d.e-]+)/)).to.be.closeTo(alpha + beta, 1e-9);
      expect(m).to.match(/shoal_claude_client_tokens_total\{pool="claude",node="t",client="alpha",type="output"\} \d+/);
      expect(m).to.match(/shoal_claude_api_retries_total\{pool="claude",node="t",status="529"\} 3/);
      const clients = (d.stats!({} as never) as { clients: Record<string, { turns: number; cost_usd: number }> }).clients;
      expect(clients.alpha).to.include({ turns: 2 });
      expect(clients.alpha!.cost_usd).to.be.closeTo(alpha, 1e-9);
      expect(clients.beta).to.include({ turns: 1 });
    });
  });

  describe('account limits (in one process)', () => {
    it('a 429 from the API holds the account\'s next turns on this node for at least a second', async () => {
      const d = driver({ account: { key: 'acct', max_concurrent_turns: 4 } });
      const s1 = await d.create({ resourceId: 'a1', signal: new AbortController().signal });
      const s2 = await d.create({ resourceId: 'a2', signal: new AbortController().signal });
      made.push({ d, s: s1 }, { d, s: s2 });
      // When the driver saw the last 429 (the hook runs in the same call as the emit): the hold counts from there,
      // not from the end of the first turn, which a loaded machine can delay past the hold.
      let lastRetryAt = 0;
      const first = d.exec(s1, 'send', { content: 'first [[api_retry=429]]' }, {
        emit: (e) => { if ((e as CliMessage).subtype === 'api_retry') lastRetryAt = Date.now(); }, signal: new AbortController().signal,
      });
      await first;
      expect(lastRetryAt).to.be.above(0);
      await send(d, s2, 'second').result;
      expect(Date.now() - lastRetryAt).to.be.at.least(950);
    });
  });
});
