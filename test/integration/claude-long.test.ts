import { expect } from 'chai';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, SessionStalledError, TurnTimeoutError, type Client } from '@shoal/client';
import { encode, readReply, subjects } from '@shoal/protocol';
import { connect as natsConnect, type NatsConnection } from 'nats';
import { startNatsServer, type NatsServer } from '../helpers/nats-server.js';
import { ROOT, startPoolNode, startService, type Service } from '../helpers/procs.js';

/**
 * Long turns and hung CLIs through the SDK, a balancer process and a
 * pool-node process on a real nats-server, with the stand-in CLI: a
 * 3-minute turn completes one-shot and leased with the default lease TTL
 * (60 s) and acquire timeout (30 s); a turn over its deadline gets
 * TURN_TIMEOUT; a CLI that stops writing gets SESSION_STALLED and is
 * replaced.
 *
 * The 3-minute turn is real time (the stand-in's latency knob, not a scaled
 * clock): what is tested is that Shoal's own timers — lease TTL, acquire
 * deadline, one-shot lease, SDK deadline — no longer cut a turn. Both calls
 * run at once, so the suite pays 3 minutes once.
 */
const STAND_IN = join(ROOT, 'test', 'stand-ins', 'claude', 'claude.mjs');
const BALANCER = 'services/balancer/dist/main.js';
const s = subjects('shoal');
const LONG_MS = 180_000;

interface PoolStatus { total: number; idle: number; active: number; resources?: { id: string; status: string }[] }

describe('claude-cli long turns and hangs (SDK, balancer, pool-node, stand-in CLI)', function () {
  this.timeout(60_000);
  let nats: NatsServer;
  let dir: string;
  let node: Service & { nodeId: string; httpPort: number | null };
  let balancer: Service;
  let client: Client;
  let nc: NatsConnection;

  before(async function () {
    this.timeout(30_000);
    dir = mkdtempSync(join(tmpdir(), 'shoal-claude-long-'));
    nats = await startNatsServer();
    const cfg = join(dir, 'node.yaml');
    writeFileSync(cfg, JSON.stringify({
      node: { heartbeat_interval: '200ms', drain_grace: '1s' },
      pools: {
        claude: {
          driver: 'claude-cli', min_size: 3, max_size: 4, initial_size: 3,
          resource_limits: { max_memory_per_session: '1GB', max_total_memory: '8GB' },
          create: { timeout: '10s', retry_base: '100ms', retry_max: '1s' },
          options: { command: STAND_IN, cwd_root: join(dir, 'work'), include_partial_messages: true, interrupt_timeout: '1s', stall_timeout: '2s', turn_timeout: '5m', stop_grace: '300ms', stop_kill_after: '700ms' },
        },
      },
    }));
    node = await startPoolNode({ SHOAL_NATS_URL: nats.url, SHOAL_CONFIG: cfg });
    balancer = startService(BALANCER, { SHOAL_NATS_URL: nats.url, SHOAL_HTTP_PORT: '-1', SHOAL_LOG_LEVEL: 'info' });
    await balancer.waitFor((l) => l.msg === 'listening');
    client = await connect({ servers: [nats.url], name: 'claude-long' });
    nc = await natsConnect({ servers: nats.url });
    // The balancer has seen the node's heartbeat.
    for (let i = 0; i < 100; i++) {
      const r = await client.exec('claude', 'send', { content: 'warm' }, { timeoutMs: 3000 }).then(() => true, () => false);
      if (r) break;
      await new Promise((res) => setTimeout(res, 100));
    }
  });
  after(async () => {
    await client?.close();
    await nc?.close();
    await balancer?.kill();
    await node?.kill();
    await nats?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true, maxRetries: 5, retryDelay: 100 });
  });

  async function status(): Promise<PoolStatus> {
    const m = await nc.request(s.nodeStatus(node.nodeId), encode({ v: 1, leases: true }), { timeout: 3000 });
    return readReply<{ pools: Record<string, PoolStatus> }>(m.data).pools.claude!;
  }

  it('a 3-minute turn completes through a one-shot send and a leased send (default TTL and timeouts; the SDK renews)', async function () {
    this.timeout(LONG_MS + 60_000);
    const content = `a long one ${'w '.repeat(60)}[[turn_ms=${LONG_MS}]]`;
    const t0 = Date.now();
    // One-shot through the balancer: no timeouts given at all.
    const oneShot = (async () => {
      const call = client.exec('claude', 'send', { content });
      let events = 0;
      for await (const _e of call) events++;
      return { result: await call.result as Record<string, unknown>, events, ms: Date.now() - t0 };
    })();
    // Leased, with background renew off: the SDK renews while the exec runs.
    const quiet = await connect({ servers: [nats.url], name: 'claude-long-leased', autoRenew: false });
    const lease = await quiet.acquire('claude', { ttlMs: 5000 });
    const leased = (async () => {
      const call = lease.exec('send', { content });
      let events = 0;
      for await (const _e of call) events++;
      return { result: await call.result as Record<string, unknown>, events, ms: Date.now() - t0 };
    })();
    const [a, b] = await Promise.all([oneShot, leased]);
    for (const r of [a, b]) {
      expect(r.result).to.include({ type: 'result', subtype: 'success', is_error: false });
      expect(r.ms).to.be.greaterThan(LONG_MS - 5000);
      expect(r.events).to.be.greaterThan(60);
    }
    // The 5 s lease outlived its TTL 36 times over: still held, still usable.
    expect(lease.lost).to.equal(undefined);
    expect((await lease.exec('info')) as Record<string, unknown>).to.include({ state: 'idle' });
    await lease.release();
    await quiet.close();
  });

  it('a turn over its deadline is interrupted with a typed error carrying what streamed; the session goes back clean', async () => {
    const lease = await client.acquire('claude');
    const before = await lease.exec('info') as Record<string, unknown>;
    const call = lease.exec('send', { content: `slow ${'w '.repeat(30)}[[turn_ms=20000]]` }, { timeoutMs: 2000 });
    const seen: unknown[] = [];
    const err = await (async () => { for await (const e of call) seen.push(e); })().then(() => undefined, (e: unknown) => e) as TurnTimeoutError;
    expect(err).to.be.instanceOf(TurnTimeoutError);
    expect(err.code).to.equal('TURN_TIMEOUT');
    expect(String(err.details?.partialText)).to.match(/^Turn \d+ /);
    expect(seen.length).to.be.greaterThan(2);
    // Same session, interrupted (not killed): the next send waits for the interrupted turn's end, then runs.
    const next = await lease.exec('send', { content: 'after the deadline' }) as Record<string, unknown>;
    expect(next.subtype).to.equal('success');
    expect(next.is_error).to.equal(false);
    // Back clean: the same process (interrupted, not killed), idle, one more turn in the same conversation.
    const after = await lease.exec('info') as Record<string, unknown>;
    expect(after).to.include({ state: 'idle', pid: before.pid, session_id: before.session_id });
    expect(after.conversation_turns).to.equal(Number(before.conversation_turns) + 2);
    await lease.release();
    // One-shot: the exec deadline is its own (execTimeoutMs), not the acquire timeout.
    const one = await client.exec('claude', 'send', { content: 'x [[turn_ms=10000]]' }, { execTimeoutMs: 1500 }).then(() => undefined, (e: unknown) => e) as TurnTimeoutError;
    expect(one).to.be.instanceOf(TurnTimeoutError);
  });

  it('a CLI that stops writing mid-turn: SESSION_STALLED within stall_timeout + 1 s, and the pool replaces the session', async () => {
    const lease = await client.acquire('claude');
    const resourceId = lease.resourceId;
    const t0 = Date.now();
    const err = await lease.exec('send', { content: 'a b c d e f [[stall]]' }).then(() => undefined, (e: unknown) => e) as SessionStalledError;
    const took = Date.now() - t0;
    expect(err).to.be.instanceOf(SessionStalledError);
    expect(err.details?.retryable).to.equal(true);
    expect((err.details?.lastLines as string[]).length).to.be.greaterThan(0);
    expect(took).to.be.lessThan(3000 + 1000);
    await lease.release();
    // The hung process does not answer the interrupt: killed, destroyed, replaced by a fresh one.
    for (let i = 0; i < 200; i++) {
      const st = await status();
      const ids = (st.resources ?? []).map((r) => r.id);
      if (!ids.includes(resourceId) && st.total >= 3) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    const st = await status();
    expect((st.resources ?? []).map((r) => r.id)).to.not.include(resourceId);
    expect(st.total).to.be.at.least(3);
    const m = await fetchMetrics();
    expect(m).to.match(/shoal_claude_stalls_total\{[^}]*stage="turn",action="killed"\} 1/);
  });

  async function fetchMetrics(): Promise<string> {
    return (await fetch(`http://127.0.0.1:${node.httpPort}/metrics`)).text();
  }
});
