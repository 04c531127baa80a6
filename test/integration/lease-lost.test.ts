import { expect } from 'chai';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, LeaseLostError, type Client, type Lease } from '@shoal/client';
import { ShoalError } from '@shoal/protocol';
import { startNatsServer, type NatsServer } from '../helpers/nats-server.js';
import { sleep, startPoolNode, startService, type Service } from '../helpers/procs.js';

/**
 * Issue 9, items 3 and 4, with real processes: a pool-node SIGKILLed under
 * holders (SDK clients) — every holder learns within 3 s, whether the node
 * comes back under a new id, the same id, or not at all — and acquires in
 * flight on it are served by another node within their deadline. Heartbeats
 * at the default 1 s: the bound is the issue's, not a fast test setting's.
 */
const BOUND_MS = 3000;
/** A loaded machine's slack on top of the bound (the test says "it did not wait the exec's 30 s"). */
const SLACK_MS = 1500;

type Node = Service & { nodeId: string };

describe('lost leases (integration: pool-nodes SIGKILLed under SDK holders)', function () {
  this.timeout(120_000);
  let nats: NatsServer;
  let dir: string;
  const clients: Client[] = [];
  const procs: Service[] = [];

  function config(name: string, pool: Record<string, unknown>, hb = '1s'): string {
    const file = join(dir, `${name}.yaml`);
    writeFileSync(file, JSON.stringify({ node: { heartbeat_interval: hb, drain_grace: '500ms' }, pools: { synthetic: { driver: 'synthetic', ...pool } } }));
    return file;
  }
  async function node(id: string, file: string): Promise<Node> {
    const n = await startPoolNode({ SHOAL_NATS_URL: nats.url, SHOAL_CONFIG: file, SHOAL_NODE_ID: id });
    procs.push(n);
    return n;
  }
  async function client(name: string): Promise<Client> {
    const c = await connect({ servers: [nats.url], name, timeoutMs: 5000 });
    clients.push(c);
    return c;
  }

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'shoal-lease-lost-'));
    nats = await startNatsServer({ jetstream: false });
  });
  after(async () => {
    await Promise.all(clients.map((c) => c.close().catch(() => {})));
    await Promise.all(procs.map((p) => p.kill('SIGKILL')));
    await nats?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  /** Holders with a running exec each; returns when each has noticed, with how long after `killedAt`. */
  async function holdAndRun(nodeId: string, n: number): Promise<{ leases: Lease[]; outcomes: Promise<{ err: ShoalError; at: number; event: boolean; aborted: boolean }[]> }> {
    const leases: Lease[] = [];
    for (let i = 0; i < n; i++) {
      const c = await client(`holder-${nodeId}-${i}`);
      // A short TTL: the background renew runs every 500 ms, and must stop with the loss.
      leases.push(await c.acquire('synthetic', { nodeId, ttlMs: 1500 }));
    }
    const outcomes = Promise.all(leases.map(async (l) => {
      let event = false;
      l.once('lost', () => { event = true; });
      // A long exec: without the announcement it would wait its full 30 s.
      const err = await Promise.resolve(l.exec('sleep', { ms: 60_000 }, { timeoutMs: 30_000 })).then(() => { throw new Error('the exec finished'); }, (e: unknown) => e as ShoalError);
      return { err, at: Date.now(), event, aborted: l.signal.aborted };
    }));
    await sleep(200); // the execs are running on the node
    return { leases, outcomes };
  }

  function expectLost(results: { err: ShoalError; at: number; event: boolean; aborted: boolean }[], leases: Lease[], killedAt: number): number[] {
    const took = results.map((r) => r.at - killedAt);
    results.forEach((r, i) => {
      expect(r.err, r.err.message).to.be.instanceOf(LeaseLostError);
      expect(r.err.code).to.equal('LEASE_LOST');
      expect(r.err.retryable).to.equal(true);
      expect(r.event, 'the lease emitted lost').to.equal(true);
      expect(r.aborted, 'lease.signal aborted').to.equal(true);
      expect(leases[i]!.lost?.code).to.equal('LEASE_LOST');
    });
    expect(Math.max(...took), `noticed after ${took.join(', ')} ms`).to.be.below(BOUND_MS + SLACK_MS);
    return took;
  }

  it('the node does not come back: every holder\'s running exec rejects with LEASE_LOST within 3 s', async () => {
    const file = config('a', { min_size: 3, max_size: 3, initial_size: 3 });
    const a = await node('gone-1', file);
    const { leases, outcomes } = await holdAndRun(a.nodeId, 3);
    const killedAt = Date.now();
    await a.kill('SIGKILL');
    expectLost(await outcomes, leases, killedAt);
    // A lost lease is no longer held: nothing renews it (no silent loop against the dead node), and its release does not hang.
    for (const l of leases) expect(clients.some((c) => c.leases.includes(l))).to.equal(false);
    const spy = await client('spy');
    let renews = 0;
    const sub = spy.nc.subscribe(`shoal.node.${a.nodeId}.lease.renew`, { callback: () => { renews++; } });
    await sleep(1500);
    sub.unsubscribe();
    expect(renews).to.equal(0);
    await leases[0]!.release().catch(() => {});
  });

  it('the node comes back under a new id: the same', async () => {
    const file = config('b', { min_size: 2, max_size: 2, initial_size: 2 });
    const b = await node('old-id', file);
    const { leases, outcomes } = await holdAndRun(b.nodeId, 2);
    const killedAt = Date.now();
    await b.kill('SIGKILL');
    await node('new-id', file);
    expectLost(await outcomes, leases, killedAt);
  });

  it('the node comes back under the same id at once: the same (a new incarnation does not know the leases)', async () => {
    const file = config('c', { min_size: 2, max_size: 2, initial_size: 2 });
    const c = await node('same-id', file);
    const { leases, outcomes } = await holdAndRun(c.nodeId, 2);
    const killedAt = Date.now();
    await c.kill('SIGKILL');
    const again = await node('same-id', file);
    const results = await outcomes;
    expectLost(results, leases, killedAt);
    // The restarted node answers lease ops for leases it never granted with LEASE_NOT_FOUND.
    const cl = await client('asker');
    const l2 = await cl.acquire('synthetic', { nodeId: again.nodeId });
    expect(l2.nodeId).to.equal('same-id');
    await l2.release();
  });

  it('a lease the node reclaims (TTL) or revokes (drain past its grace) is announced: lost, with the reason', async () => {
    const file = config('d', { min_size: 2, max_size: 2, initial_size: 2 }, '200ms');
    const d = await node('drainer', file);
    const c1 = await connect({ servers: [nats.url], name: 'no-renew', autoRenew: false });
    clients.push(c1);
    const short = await c1.acquire('synthetic', { nodeId: d.nodeId, ttlMs: 500 });
    const lostShort = new Promise<ShoalError>((r) => short.once('lost', r));
    expect((await lostShort).details?.reason).to.equal('expired');
    const c2 = await client('drained-holder');
    const held = await c2.acquire('synthetic', { nodeId: d.nodeId, ttlMs: 60_000 });
    const running = Promise.resolve(held.exec('sleep', { ms: 60_000 })).then(() => undefined, (e: unknown) => e as ShoalError);
    const t0 = Date.now();
    await d.kill('SIGTERM'); // drains with a 500 ms grace, then revokes
    const err = await running;
    // The node announces the loss before the aborted exec's error: the holder sees LEASE_LOST.
    expect(err?.code, err?.message).to.equal('LEASE_LOST');
    expect(held.lost?.code).to.equal('LEASE_LOST');
    expect(held.lost?.details?.reason).to.be.oneOf(['drained', 'revoked', 'node_gone']);
    expect(Date.now() - t0).to.be.below(10_000);
  });

  it('a NATS server restart is not a node\'s death: the holder keeps its lease', async () => {
    const port = nats.port;
    const file = config('r', { min_size: 1, max_size: 1, initial_size: 1 });
    const n = await node('survivor', file);
    const c = await client('steady-holder');
    const lease = await c.acquire('synthetic', { nodeId: n.nodeId, ttlMs: 60_000 });
    await nats.stop();
    // The node is held back (SIGSTOP) so that the holder reconnects first and finds nobody on the node's subjects for a while.
    n.proc.kill('SIGSTOP');
    await sleep(1500); // heartbeats silent, as after a death
    nats = await startNatsServer({ jetstream: false, port });
    await sleep(1000);
    n.proc.kill('SIGCONT');
    await sleep(4000);
    expect(lease.lost, lease.lost?.message).to.equal(undefined);
    expect(await lease.exec('echo', { still: 'held' })).to.deep.equal({ still: 'held' });
    await lease.release();
  });

  it('acquires in flight on a node that is SIGKILLed are served by another node within their deadline', async () => {
    await Promise.all(procs.splice(0).map((p) => p.kill('SIGKILL')));
    const fileA = config('e', { min_size: 1, max_size: 1, initial_size: 1 });
    const a = await node('busy-a', fileA);
    const bal = startService('services/balancer/dist/main.js', { SHOAL_NATS_URL: nats.url, SHOAL_CONFIG: fileA, SHOAL_HTTP_PORT: '0', SHOAL_LOG_LEVEL: 'info' });
    procs.push(bal);
    await bal.waitFor((l) => l.msg === 'listening');
    const b = await node('busy-b', config('f', { min_size: 4, max_size: 4, initial_size: 4 }));
    await bal.waitFor((l) => l.msg === 'node joined' && l.nodeId === b.nodeId);
    // Both nodes busy: the acquires wait in their queues, some on A.
    const holder = await client('holder');
    await holder.acquire('synthetic', { nodeId: a.nodeId, ttlMs: 60_000 });
    const onB = await Promise.all(Array.from({ length: 4 }, () => holder.acquire('synthetic', { nodeId: b.nodeId, ttlMs: 60_000 })));
    const waiters = await client('waiters');
    // The figure: a 2 s deadline, which a balancer waiting for A to turn suspect (3 missed heartbeats) would miss.
    const deadlineMs = 2000;
    const sent = Date.now();
    const pending = Array.from({ length: 4 }, () => waiters.acquire('synthetic', { timeoutMs: deadlineMs }).then((l) => ({ l, at: Date.now() }), (e: unknown) => e as ShoalError));
    await sleep(300);
    await a.kill('SIGKILL');
    await Promise.all(onB.map((l) => l.release()));
    const got = await Promise.all(pending);
    for (const g of got) {
      expect(g, (g as ShoalError).message).to.not.be.instanceOf(ShoalError);
      const { l, at } = g as { l: Lease; at: number };
      expect(l.nodeId).to.equal(b.nodeId);
      expect(at - sent).to.be.below(deadlineMs);
      await l.release();
    }
  });
});
