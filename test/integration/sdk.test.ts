import { expect } from 'chai';
import { connect as natsConnect, type NatsConnection } from 'nats';
import { CancelledError, connect, LeaseNotFoundError, type Client } from '@shoal/client';
import { encode, fail, ok, PROTOCOL_VERSION, readReply, ShoalError, subjects } from '@shoal/protocol';
import { call } from '@shoal/runtime';
import { startNatsServer, type NatsServer } from '../helpers/nats-server.js';
import { sleep, startPoolNode, type Service } from '../helpers/procs.js';
import { writeConfig } from '../helpers/cluster.js';

/**
 * The SDK's lease life as a program uses it, against a real pool-node process:
 * abort an acquire with a signal (a lease granted after the abort goes back),
 * explicit renew, a lease lost behind the holder's back, withLease resetting
 * after its function throws, close() releasing what is held.
 */
const s = subjects('shoal');
type PoolStatus = { total: number; active: number; idle: number; waiting: number };

describe('SDK lease life (integration: real nats-server and pool-node)', function () {
  this.timeout(30_000);
  let nats: NatsServer;
  let client: Client;
  let nc: NatsConnection;
  let n: Service & { nodeId: string; httpPort: number | null };

  before(async function () {
    nats = await startNatsServer();
    client = await connect({ servers: [nats.url], name: 'sdk-it' });
    nc = await natsConnect({ servers: nats.url });
    // One resource, reset only when asked: the resets a test sees are the SDK's.
    n = await startPoolNode({ SHOAL_NATS_URL: nats.url, SHOAL_CONFIG: writeConfig({ min_size: 1, max_size: 1, initial_size: 1, session_management: { context_reset: false } }) });
  });
  after(async () => {
    await n?.kill('SIGKILL');
    await client?.close();
    await nc?.close();
    await nats?.stop();
  });

  const status = async () => (await call<{ pools: Record<string, PoolStatus> }>(nc, s.nodeStatus(n.nodeId), {}, 3000)).pools.synthetic!;
  async function untilStatus(cond: (p: PoolStatus) => boolean, ms = 10_000): Promise<PoolStatus> {
    const end = Date.now() + ms;
    for (;;) {
      const p = await status();
      if (cond(p)) return p;
      if (Date.now() > end) throw new Error(`pool status never matched: ${JSON.stringify(p)}`);
      await sleep(20);
    }
  }
  const resets = async () => {
    const l = await client.acquire('synthetic', { nodeId: n.nodeId });
    try { return ((await l.exec('info')) as { resets: number }).resets; } finally { await l.release(); }
  };

  it('aborts a waiting acquire with its signal (CANCELLED), and hands back a lease granted after the abort', async () => {
    const held = await client.acquire('synthetic', { nodeId: n.nodeId });
    const ac = new AbortController();
    const waiting = client.acquire('synthetic', { nodeId: n.nodeId, timeoutMs: 10_000, signal: ac.signal }).then(() => null, (e: unknown) => e);
    await untilStatus((p) => p.waiting === 1);
    ac.abort();
    const err = await waiting;
    expect(err).to.be.instanceOf(CancelledError);
    expect((err as CancelledError).code).to.equal('CANCELLED');
    // The node still has the waiter: releasing grants it the resource, and the SDK gives it straight back.
    await held.release();
    await untilStatus((p) => p.waiting === 0 && p.active === 0 && p.idle === 1);
    expect(client.leases).to.deep.equal([]);
    // An already-aborted signal: nothing is sent.
    const pre = await client.acquire('synthetic', { nodeId: n.nodeId, signal: AbortSignal.abort() }).then(() => null, (e: unknown) => e);
    expect(pre).to.be.instanceOf(CancelledError);
    expect((await status()).active).to.equal(0);
  });

  it('renews explicitly: a lease without background renew outlives its first TTL', async () => {
    const manual = await connect({ servers: [nats.url], name: 'manual-renew', autoRenew: false });
    try {
      const lease = await manual.acquire('synthetic', { nodeId: n.nodeId, ttlMs: 400 });
      const first = lease.info.expiresAt;
      const r = await lease.renew(10_000);
      expect(r.ttlMs).to.equal(10_000);
      expect(r.expiresAt).to.be.greaterThan(first);
      expect(lease.info.expiresAt).to.equal(r.expiresAt);
      await sleep(1000); // well past the first TTL of 400 ms
      expect(await lease.exec('echo', 'still held')).to.equal('still held');
      await lease.release();
      // Renewing a released lease is a typed error.
      const err = await lease.renew().then(() => null, (e: unknown) => e);
      expect(err).to.be.instanceOf(LeaseNotFoundError);
    } finally {
      await manual.close();
    }
  });

  it('marks a lease lost when its background renew hears LEASE_NOT_FOUND, and stops renewing it', async () => {
    const lease = await client.acquire('synthetic', { nodeId: n.nodeId, ttlMs: 300 });
    expect(lease.lost).to.equal(undefined);
    // Released behind the holder's back (as an operator or a revoke would).
    readReply((await nc.request(s.leaseRelease(n.nodeId), encode({ v: PROTOCOL_VERSION, leaseId: lease.id, secret: lease.info.secret }), { timeout: 3000 })).data);
    const end = Date.now() + 10_000;
    while (!lease.lost && Date.now() < end) await sleep(20);
    // The SDK's one contract for a lost lease: LEASE_LOST, with the reason; the node's answer stays as the cause.
    expect(lease.lost?.code).to.equal('LEASE_LOST');
    expect(lease.lost?.details?.reason).to.equal('revoked');
    expect(lease.lost?.details?.cause).to.equal('LEASE_NOT_FOUND');
    expect(client.leases).to.not.include(lease);
    // And it stops renewing once lost: nothing more reaches the node's renew subject.
    let renews = 0;
    const sub = nc.subscribe(s.leaseRenew(n.nodeId), { callback: () => { renews++; } });
    try {
      await nc.flush();
      await sleep(400); // longer than the 100 ms renew period of a 300 ms lease
      expect(renews).to.equal(0);
    } finally {
      sub.unsubscribe();
    }
  });

  it('keeps renewing through transient renew failures, and marks the lease lost only on LEASE_EXPIRED', async () => {
    // A pretend node on the wire, so that each renew answer is chosen: two transient failures, a success, then expired.
    const answers = [fail(new ShoalError('UNAVAILABLE', 'node busy')), fail(new ShoalError('UNAVAILABLE', 'node busy')), ok({ expiresAt: Date.now() + 300, ttlMs: 300 }), fail(new ShoalError('LEASE_EXPIRED', 'too late'))];
    const renews: unknown[] = [];
    const subs = [
      nc.subscribe(s.nodeAcquire('pretend'), { callback: (_e, m) => { m.respond(encode(ok({ leaseId: 'L1', nodeId: 'pretend', pool: 'synthetic', resourceId: 'r1', expiresAt: Date.now() + 300, ttlMs: 300, reused: false }))); } }),
      nc.subscribe(s.leaseRenew('pretend'), { callback: (_e, m) => { renews.push(1); m.respond(encode(answers[Math.min(renews.length - 1, answers.length - 1)]!)); } }),
    ];
    await nc.flush();
    try {
      const lease = await client.acquire('synthetic', { nodeId: 'pretend', ttlMs: 300 });
      const end = Date.now() + 10_000;
      while (!lease.lost && Date.now() < end) {
        // Not lost while only transient failures (and a success) have come back.
        if (renews.length < 4) expect(lease.lost).to.equal(undefined);
        await sleep(5);
      }
      expect(renews.length).to.equal(4);
      expect(lease.lost?.code).to.equal('LEASE_LOST');
      expect(lease.lost?.details?.reason).to.equal('expired');
      expect(lease.lost?.details?.cause).to.equal('LEASE_EXPIRED');
      expect(client.leases).to.not.include(lease);
      // And it stops renewing once lost.
      await sleep(300);
      expect(renews.length).to.equal(4);
    } finally {
      for (const sub of subs) sub.unsubscribe();
    }
  });

  it('withLease returns the result and releases; when its function throws, rethrows and releases with a reset', async () => {
    const before = await resets();
    expect(await client.withLease('synthetic', async (l) => l.exec('echo', 5), { nodeId: n.nodeId })).to.equal(5);
    expect(await resets()).to.equal(before);
    const boom = new Error('half done');
    const err = await client.withLease('synthetic', async (l) => { await l.exec('echo', 1); throw boom; }, { nodeId: n.nodeId }).then(() => null, (e: unknown) => e);
    expect(err).to.equal(boom);
    expect(await resets()).to.equal(before + 1);
    expect((await status()).active).to.equal(0);
  });

  it('close() releases every lease it holds', async () => {
    await n.kill('SIGKILL');
    n = await startPoolNode({ SHOAL_NATS_URL: nats.url, SHOAL_CONFIG: writeConfig({ min_size: 2, max_size: 2, initial_size: 2 }) });
    const other = await connect({ servers: [nats.url], name: 'closing' });
    await other.acquire('synthetic', { nodeId: n.nodeId, ttlMs: 60_000 });
    await other.acquire('synthetic', { nodeId: n.nodeId, ttlMs: 60_000 });
    expect(other.leases).to.have.length(2);
    expect((await status()).active).to.equal(2);
    await other.close();
    // Released on close, not left to a 60 s TTL.
    expect(await status()).to.include({ active: 0, idle: 2 });
  });
});
