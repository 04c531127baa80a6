import { expect } from 'chai';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, type Client, type Lease } from '@shoal/client';
import { parkKeyHash, parseHeartbeat, subjects, type Heartbeat } from '@shoal/protocol';
import { freePort, startNatsServer, type NatsServer } from '../helpers/nats-server.js';
import { eventually, startPoolNode, startService, type Service } from '../helpers/procs.js';

/**
 * Parked keys ride in heartbeats as fixed-size hashes, as many as fit the
 * server's max_payload (newest first); the rest are counted
 * (`parkedOmitted`) and their acquires placed by strategy. Here an 8 KB
 * max_payload and 700 keys of 128 characters (90 KB of keys): heartbeats
 * still go out, and balancers route the keys that fit to their node. Before
 * the hashes and the budget, such a heartbeat could not be sent at all and
 * balancers took the node for gone.
 */
const s = subjects('shoal');
const MAX_PAYLOAD = 8192;
const KEYS = 700;
const key = (i: number) => `${String(i).padStart(3, '0')}-${'k'.repeat(124)}`;

describe('pool-node heartbeats with many long parked keys under a small max_payload (real nats-server, 2 pool-nodes, balancer)', function () {
  this.timeout(60_000);
  let nats: NatsServer;
  let dir: string;
  const nodes: (Service & { nodeId: string })[] = [];
  let balancer: Service;
  let alice: Client;
  let bob: Client;

  before(async function () {
    this.timeout(30_000);
    dir = mkdtempSync(join(tmpdir(), 'shoal-hb-payload-'));
    nats = await startNatsServer({ maxPayload: MAX_PAYLOAD });
    const cfg = join(dir, 'node.yaml');
    writeFileSync(cfg, JSON.stringify({
      node: { heartbeat_interval: '100ms', drain_grace: '500ms' },
      pools: { synthetic: { driver: 'synthetic', min_size: 0, max_size: KEYS + 10, initial_size: 4, session_management: { max_parked: 1024 } } },
    }));
    for (let i = 0; i < 2; i++) nodes.push(await startPoolNode({ SHOAL_NATS_URL: nats.url, SHOAL_CONFIG: cfg, SHOAL_LOG_LEVEL: 'debug' }));
    balancer = startService('services/balancer/dist/main.js', { SHOAL_NATS_URL: nats.url, SHOAL_HTTP_PORT: '-1' });
    await balancer.waitFor((l) => l.msg === 'listening');
    alice = await connect({ servers: [nats.url], name: 'alice' });
    bob = await connect({ servers: [nats.url], name: 'bob' });
  });
  after(async () => {
    await alice?.close();
    await bob?.close();
    await balancer?.kill();
    await Promise.all(nodes.map((n) => n.kill()));
    await nats?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true, maxRetries: 5, retryDelay: 100 });
  });

  it('heartbeats still go out, carry the newest key hashes that fit and count the rest; balancers route the listed keys to their node', async () => {
    const parker = nodes[0]!;
    const leases: Lease[] = [];
    for (let i = 0; i < KEYS; i++) leases.push(await alice.acquire('synthetic', { nodeId: parker.nodeId, timeoutMs: 10_000 }));
    for (const [i, l] of leases.entries()) await l.release({ park: key(i) });

    // A heartbeat after the last park, within max_payload, with hashes for the newest keys and a count of the others.
    const hb = await new Promise<{ hb: Heartbeat; bytes: number }>((resolve, reject) => {
      const t = setTimeout(() => { sub.unsubscribe(); reject(new Error('no heartbeat with every key accounted for')); }, 10_000);
      const sub = alice.nc.subscribe(s.heartbeat(parker.nodeId), { callback: (_e, m) => {
        const h = parseHeartbeat(m.data);
        const p = h.pools.synthetic!;
        if ((p.parkedHashes?.length ?? 0) + (p.parkedOmitted ?? 0) === KEYS) { clearTimeout(t); sub.unsubscribe(); resolve({ hb: h, bytes: m.data.length }); }
      } });
    });
    expect(hb.bytes).to.be.at.most(MAX_PAYLOAD);
    const listed = hb.hb.pools.synthetic!.parkedHashes!;
    expect(listed.length).to.be.greaterThan(50);
    expect(hb.hb.pools.synthetic!.parkedOmitted).to.be.greaterThan(0);
    // Newest first, hashes only: no key travels in a heartbeat.
    expect(listed[0]).to.equal(parkKeyHash(key(KEYS - 1)));
    expect(listed).to.not.include(parkKeyHash(key(0)));
    expect(listed.every((h) => h.length === 12)).to.equal(true);
    expect(parker.logs.some((l) => String(l.msg).startsWith('heartbeat not sent'))).to.equal(false);

    // Another client, which never parked these keys, through the balancer: the listed keys land on their node.
    await eventually('the balancer routes a listed key to its node', async () => {
      const l = await bob.acquire('synthetic', { park: key(KEYS - 1), timeoutMs: 10_000 });
      const ok = l.parked === 'hit';
      await l.release({ park: key(KEYS - 1) });
      return ok;
    }, 10_000, 100);
    for (let i = KEYS - 10; i < KEYS; i++) {
      const l = await bob.acquire('synthetic', { park: key(i), timeoutMs: 10_000 });
      expect(l.parked, key(i).slice(0, 3)).to.equal('hit');
      expect(l.nodeId).to.equal(parker.nodeId);
      await l.release();
    }
    // A key left out is placed by strategy: a lease either way (a hit only if it happens to land on its node).
    const omitted = await bob.acquire('synthetic', { park: key(0), timeoutMs: 10_000 });
    expect(omitted.parked).to.be.oneOf(['hit', 'gone']);
    await omitted.release();
  });

  it('a heartbeat too large even without parked keys (many pools) is not sent: the node warns once per streak, not every interval, and says when they are sent again', async () => {
    const cfg = join(dir, 'wide.yaml');
    const pools = Object.fromEntries(Array.from({ length: 60 }, (_, i) => [`pool${String(i).padStart(2, '0')}`, { driver: 'synthetic', min_size: 0, max_size: 1, initial_size: 0 }]));
    writeFileSync(cfg, JSON.stringify({ node: { heartbeat_interval: '100ms', drain_grace: '500ms' }, pools }));
    // Its own small server, and a second one with the default max_payload not started yet: the node moves there when the first stops.
    const small = await startNatsServer({ maxPayload: MAX_PAYLOAD });
    const roomyPort = await freePort();
    let roomy: NatsServer | undefined;
    const wide = await startPoolNode({ SHOAL_NATS_URL: `${small.url},nats://127.0.0.1:${roomyPort}`, SHOAL_CONFIG: cfg, SHOAL_LOG_LEVEL: 'debug' });
    try {
      const warns = () => wide.logs.filter((l) => l.level === 'warn' && String(l.msg).startsWith('heartbeat not sent'));
      const warned = await eventually('a warning', async () => warns()[0], 10_000, 50);
      expect(Number(warned.bytes)).to.be.greaterThan(MAX_PAYLOAD);
      await eventually('more failed heartbeats', async () => wide.logs.filter((l) => l.level === 'debug' && l.msg === 'heartbeat not sent').length >= 3, 10_000, 50);
      expect(warns()).to.have.length(1);
      expect(wide.logs.some((l) => l.msg === 'heartbeats sent again')).to.equal(false);
      // Room again (a server whose max_payload fits it): the streak ends, and the node says so.
      roomy = await startNatsServer({ port: roomyPort });
      await small.stop();
      await eventually('heartbeats again', async () => wide.logs.some((l) => l.msg === 'heartbeats sent again'), 20_000, 50);
    } finally {
      await wide.kill();
      await small.stop().catch(() => {});
      await roomy?.stop();
    }
  });
});
