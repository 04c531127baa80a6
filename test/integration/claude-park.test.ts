import { expect } from 'chai';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, type Client, type Lease } from '@shoal/client';
import { parkKeyHash, parseHeartbeat, subjects } from '@shoal/protocol';
import { call } from '@shoal/runtime';
import { startNatsServer, type NatsServer } from '../helpers/nats-server.js';
import { ROOT, sleep, startPoolNode, startService, type Service } from '../helpers/procs.js';

/**
 * Conversations that come back, through the SDK, two balancer replicas and
 * two pool-node processes on a real nats-server (JetStream), with the
 * stand-in CLI, whose replies say which message of its conversation this is
 * and what the first one was:
 * - release with `park` → another client acquires with the key through the
 *   other balancer replica → the same session, context carried (`hit`);
 * - the parked session evicted under pressure → the key resumes on a fresh
 *   session from the shared store (`resumed`), or, in a pool with private
 *   stores, says the context is gone (`gone`);
 * - one-shot sends with a key go to the key's node (`hit`), four in a row;
 * - the node holding a parked session SIGKILLed → the key resumes on the
 *   other node (shared store).
 */
const STAND_IN = join(ROOT, 'test', 'stand-ins', 'claude', 'claude.mjs');
const BALANCER = 'services/balancer/dist/main.js';
const s = subjects('shoal');

const text = (r: unknown) => String((r as { result?: string }).result);

describe('claude-cli parked conversations (SDK, 2 balancers, 2 pool-nodes, stand-in CLI)', function () {
  this.timeout(60_000);
  let nats: NatsServer;
  let dir: string;
  const nodes: (Service & { nodeId: string })[] = [];
  const balancers: Service[] = [];
  let alice: Client;
  let bob: Client;

  function nodeConfig(i: number): string {
    const cfg = join(dir, `node${i}.yaml`);
    const common = { driver: 'claude-cli', min_size: 1, max_size: 1, initial_size: 1, resource_limits: { max_memory_per_session: '1GB', max_total_memory: '8GB' }, acquire_timeout: '10s', create: { timeout: '10s', retry_base: '100ms', retry_max: '1s' } };
    writeFileSync(cfg, JSON.stringify({
      node: { heartbeat_interval: '200ms', drain_grace: '1s' },
      pools: {
        // A shared session store (same HOME and working directory on both nodes): resumable anywhere.
        chat: { ...common, session_management: { max_parked: 4 }, options: { command: STAND_IN, private_config: false, env: { HOME: join(dir, 'shared-home') }, cwd: join(dir, 'project'), stop_grace: '300ms', stop_kill_after: '700ms' } },
        // Private stores: a context evicted is gone.
        solo: { ...common, session_management: { max_parked: 4 }, options: { command: STAND_IN, cwd_root: join(dir, `private${i}`), stop_grace: '300ms', stop_kill_after: '700ms' } },
      },
    }));
    return cfg;
  }

  /**
   * Until a node's heartbeat lists the key's hash as parked (what the balancers route by), and one more heartbeat.
   * Heartbeats carry only hashes, and the balancers' status only how many: a key is a credential for its conversation.
   */
  async function parkedSeen(pool: string, key: string): Promise<string> {
    const holder = await new Promise<string>((resolve, reject) => {
      const t = setTimeout(() => { sub.unsubscribe(); reject(new Error(`key ${key} never showed as parked`)); }, 10_000);
      const sub = alice.nc.subscribe(s.anyHeartbeat, { callback: (_e, m) => {
        const hb = parseHeartbeat(m.data);
        if (hb.pools[pool]?.parkedHashes?.includes(parkKeyHash(key))) { clearTimeout(t); sub.unsubscribe(); resolve(hb.nodeId); }
      } });
    });
    const st = await call<{ nodes: { nodeId: string; pools: Record<string, { parkedHashes?: string[]; parkedCount?: number }> }[] }>(alice.nc, s.adminStatus, {}, 3000);
    for (const n of st.nodes) expect(n.pools[pool]?.parkedHashes, 'parking keys never leave the node in a status').to.equal(undefined);
    await sleep(250);
    return holder;
  }

  before(async function () {
    this.timeout(40_000);
    dir = mkdtempSync(join(tmpdir(), 'shoal-claude-park-'));
    mkdirSync(join(dir, 'project'));
    nats = await startNatsServer();
    for (let i = 0; i < 2; i++) nodes.push(await startPoolNode({ SHOAL_NATS_URL: nats.url, SHOAL_CONFIG: nodeConfig(i) }));
    for (let i = 0; i < 2; i++) {
      const b = startService(BALANCER, { SHOAL_NATS_URL: nats.url, SHOAL_HTTP_PORT: '-1', SHOAL_LOG_LEVEL: 'info' });
      await b.waitFor((l) => l.msg === 'listening');
      balancers.push(b);
    }
    alice = await connect({ servers: [nats.url], name: 'alice' });
    bob = await connect({ servers: [nats.url], name: 'bob' });
    // Both balancers see both nodes.
    for (let i = 0; i < 100; i++) {
      const st = await call<{ nodes: unknown[] }>(alice.nc, s.adminStatus, {}, 3000).catch(() => ({ nodes: [] }));
      if (st.nodes.length === 2) break;
      await sleep(100);
    }
  });
  after(async () => {
    await alice?.close();
    await bob?.close();
    await Promise.all(balancers.map((b) => b.kill()));
    await Promise.all(nodes.map((n) => n.kill('SIGKILL').catch(() => {})));
    await nats?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true, maxRetries: 5, retryDelay: 100 });
  });

  it('park → another client acquires with the key through the other balancer replica → same session, context carried', async () => {
    const lease = await alice.acquire('chat');
    expect(text(await lease.exec('send', { content: 'the secret is 42' }))).to.contain('message 1 of this conversation');
    const sid = lease.meta?.session_id;
    await lease.release({ park: 'conv-1' });
    const holder = await parkedSeen('chat', 'conv-1');
    expect(holder).to.equal(lease.nodeId);
    // Only the second replica is left to place it.
    await balancers[0]!.kill();
    const back = await bob.acquire('chat', { park: 'conv-1' });
    expect(back.parked).to.equal('hit');
    expect(back.resourceId).to.equal(lease.resourceId);
    expect(back.meta?.session_id).to.equal(sid);
    expect(text(await back.exec('send', { content: 'what was it?' }))).to.contain('message 2 of this conversation; first: "the secret is 42"');
    await back.release();
    // One-shot sends with a key: each continues the conversation the previous one parked.
    expect(text(await alice.exec('chat', 'send', { content: 'one-shot first' }, { park: 'conv-os' }))).to.contain('message 1 of this conversation');
    await parkedSeen('chat', 'conv-os');
    expect(text(await bob.exec('chat', 'send', { content: 'one-shot second' }, { park: 'conv-os' }))).to.contain('message 2 of this conversation; first: "one-shot first"');
  });

  it('one-shot sends with a key go to the node that parked it (hit), through a balancer: private stores, so a miss would lose the context', async () => {
    // With private stores, landing on the other node answers "message 1": only the key's node continues the conversation.
    expect(text(await alice.exec('solo', 'send', { content: 'one-shot on solo' }, { park: 'conv-os-solo' }))).to.contain('message 1 of this conversation');
    const holder = await parkedSeen('solo', 'conv-os-solo');
    for (let n = 2; n <= 5; n++) {
      const reply = text(await bob.exec('solo', 'send', { content: `turn ${n}` }, { park: 'conv-os-solo' }));
      expect(reply, `turn ${n}`).to.contain(`message ${n} of this conversation; first: "one-shot on solo"`);
      expect(await parkedSeen('solo', 'conv-os-solo')).to.equal(holder);
    }
    const end = await alice.acquire('solo', { park: 'conv-os-solo' });
    expect(end.nodeId).to.equal(holder);
    await end.release();
  });

  it('evicted under pressure: the key resumes from the shared store; with private stores it says the context is gone', async () => {
    for (const [pool, expected] of [['chat', 'resumed'], ['solo', 'gone']] as const) {
      const lease = await alice.acquire(pool);
      await lease.exec('send', { content: `remember ${pool}` });
      await lease.release({ park: `conv-${pool}` });
      await parkedSeen(pool, `conv-${pool}`);
      // Two sessions in the cluster: two holders without a key take both; the parked one is reset for one of them.
      const [x, y] = await Promise.all([bob.acquire(pool, { timeoutMs: 10_000 }), bob.acquire(pool, { timeoutMs: 10_000 })]) as [Lease, Lease];
      await x.release();
      await y.release();
      const again = await alice.acquire(pool, { park: `conv-${pool}` });
      expect(again.parked, pool).to.equal(expected);
      const reply = text(await again.exec('send', { content: 'and now?' }));
      if (expected === 'resumed') expect(reply).to.contain(`message 2 of this conversation; first: "remember ${pool}"`);
      else expect(reply).to.contain('message 1 of this conversation; first: "and now?"');
      await again.release();
    }
  });

  it('the node holding a parked session is SIGKILLed: the key resumes on the other node (shared store)', async () => {
    const lease = await alice.acquire('chat');
    await lease.exec('send', { content: 'keep this: 7' });
    await lease.release({ park: 'conv-dead' });
    const holder = await parkedSeen('chat', 'conv-dead');
    const victim = nodes.find((n) => n.nodeId === holder)!;
    await victim.kill('SIGKILL');
    const again = await bob.acquire('chat', { park: 'conv-dead', timeoutMs: 20_000 });
    expect(again.nodeId).to.not.equal(holder);
    expect(again.parked).to.equal('resumed');
    expect(text(await again.exec('send', { content: 'what to keep?' }))).to.contain('message 2 of this conversation; first: "keep this: 7"');
    await again.release();
  });
});
