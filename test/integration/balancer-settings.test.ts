import { expect } from 'chai';
import { connect, type NatsConnection } from 'nats';
import type { StrategyRequest } from '@shoal/protocol';
import { createLogger } from '@shoal/runtime';
import { SettingsStore, type SettingsStoreOptions } from '../../services/balancer/src/settings.js';
import { startNatsServer, type NatsServer } from '../helpers/nats-server.js';

/**
 * Two settings replicas (as two balancer replicas hold them) on a real
 * nats-server, each with its own connection, when the bucket is lost under
 * them: revisions start again at 1, and both must follow the new bucket.
 */
class Replica {
  readonly strategies: (string | undefined)[] = [];
  readonly weights = new Map<string, number | undefined>();
  readonly store: SettingsStore;
  /** What the store logged (info and up): how a test tells which mechanism acted. */
  readonly logs: Record<string, unknown>[] = [];

  constructor(nc: NatsConnection, bucket: string, opts: SettingsStoreOptions = {}) {
    this.store = new SettingsStore(nc, createLogger({}, 'info', (l) => { this.logs.push(JSON.parse(l) as Record<string, unknown>); }), bucket, {
      strategy: (v) => { this.strategies.push(v?.strategy); },
      weight: (nodeId, w) => { this.weights.set(nodeId, w); },
    }, { timeoutMs: 2000, ...opts });
  }

  get strategy(): string | undefined { return this.strategies.at(-1); }
}

async function until(what: string, ok: () => boolean, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('balancer settings store (real nats-server)', function () {
  this.timeout(60_000);
  let server: NatsServer;
  const conns: NatsConnection[] = [];
  const stores: SettingsStore[] = [];
  let n = 0;

  before(async () => { server = await startNatsServer(); });
  after(async () => { await server?.stop(); });
  afterEach(async () => {
    for (const s of stores.splice(0)) s.stop();
    await Promise.all(conns.splice(0).map((c) => c.close()));
  });

  async function replicas(bucket: string, opts: SettingsStoreOptions = {}): Promise<[Replica, Replica, NatsConnection]> {
    const [ca, cb, admin] = await Promise.all([1, 2, 3].map(() => connect({ servers: server.url, maxReconnectAttempts: -1, reconnectTimeWait: 100 })));
    conns.push(ca!, cb!, admin!);
    const a = new Replica(ca!, bucket, opts);
    const b = new Replica(cb!, bucket, opts);
    stores.push(a.store, b.store);
    expect(await a.store.start()).to.equal(true);
    expect(await b.store.start()).to.equal(true);
    return [a, b, admin!];
  }

  const set = (strategy: StrategyRequest['strategy']): StrategyRequest => ({ strategy });

  async function deletedThenWritten(opts: SettingsStoreOptions, within: number): Promise<void> {
    const bucket = `settings_${process.pid}_${n++}`;
    const [a, b, admin] = await replicas(bucket, opts);
    // Push the strategy key to revision 3 on both replicas.
    await a.store.putStrategy(set('round_robin'));
    await a.store.putStrategy(set('least_connections'));
    expect(await a.store.putStrategy(set('p2c'))).to.equal(3);
    await until('b to apply revision 3', () => b.strategy === 'p2c', 10_000);

    // The bucket is lost (deleted, or NATS restarted with an ephemeral store).
    const jsm = await admin.jetstreamManager();
    expect(await jsm.streams.delete(`KV_${bucket}`)).to.equal(true);

    // A write through one replica recreates it and starts again at revision 1...
    const t0 = Date.now();
    const rev = await a.store.putStrategy(set('performance_based'));
    expect(rev).to.be.lessThan(3);
    expect(a.strategy).to.equal('performance_based');
    // ...and the other replica takes it although it has seen revision 3 of the key.
    await until('b to apply the write to the new bucket', () => b.strategy === 'performance_based', within);
    expect(Date.now() - t0).to.be.lessThan(within);

    // Later writes through either replica keep both in step.
    await b.store.putStrategy(set('weighted_round_robin'));
    await until('a to follow b', () => a.strategy === 'weighted_round_robin', 10_000);
    expect(b.strategy).to.equal('weighted_round_robin');
    expect(a.store.ready && b.store.ready).to.equal(true);
  }

  it('both replicas follow a new write after the bucket was deleted and revisions restarted', async () => {
    await deletedThenWritten({}, 3000);
  });

  it('without advisories, the periodic check still brings the other replica to the new bucket', async () => {
    await deletedThenWritten({ advisories: false, checkMs: 300 }, 15_000);
  });

  it('both replicas follow the new bucket when NATS restarts with an empty store', async () => {
    const bucket = `settings_${process.pid}_${n++}`;
    const [a, b] = await replicas(bucket);
    await a.store.putWeight('n1', 0);
    await a.store.putStrategy(set('least_connections'));
    await a.store.putStrategy(set('p2c'));
    await until('b to apply both', () => b.strategy === 'p2c' && b.weights.get('n1') === 0, 10_000);

    const port = server.port;
    await server.stop();
    server = await startNatsServer({ port });
    // Both reconnect to a server without the bucket: what it held is no longer set...
    await until('both to drop the lost settings', () =>
      a.strategy === undefined && b.strategy === undefined && a.weights.get('n1') === undefined && b.weights.get('n1') === undefined, 8000);
    // ...and a write through either replica (revision 1 again) reaches both.
    expect(await b.store.putStrategy(set('round_robin'))).to.be.lessThan(3);
    await until('a to take the write', () => a.strategy === 'round_robin', 10_000);
    await a.store.putWeight('n1', 4);
    await until('b to take the weight', () => b.weights.get('n1') === 4, 10_000);
  });

  it('a replica that was never written to also recreates the bucket, and keys the lost bucket held fall back to the config', async () => {
    const bucket = `settings_${process.pid}_${n++}`;
    // Nothing is written after the delete, so nothing but the delete advisory
    // tells, and nats-server 2.9 may lose that one: the periodic check is what
    // makes this bounded (short here, 5 s by default).
    const [a, b, admin] = await replicas(bucket, { checkMs: 500 });
    await a.store.putWeight('n1', 0);
    await a.store.putStrategy(set('p2c'));
    await until('b to apply both', () => b.strategy === 'p2c' && b.weights.get('n1') === 0, 10_000);

    const jsm = await admin.jetstreamManager();
    await jsm.streams.delete(`KV_${bucket}`);
    // Nobody writes: the replicas see the bucket is gone and what it held is no longer set.
    await until('both to drop the lost settings', () =>
      a.strategy === undefined && b.strategy === undefined && a.weights.get('n1') === undefined && b.weights.get('n1') === undefined, 15_000);

    // The bucket is back (a replica recreated it), and a write through b reaches a.
    expect((await jsm.streams.info(`KV_${bucket}`)).config.name).to.equal(`KV_${bucket}`);
    await b.store.putWeight('n1', 2);
    await until('a to take weight 2', () => a.weights.get('n1') === 2, 10_000);
    expect(b.weights.get('n1')).to.equal(2);
  });

  it('without JetStream: start does not wait, and a write fails at once as UNAVAILABLE (no_jetstream), not after retries', async () => {
    const plain = await startNatsServer({ jetstream: false });
    try {
      const c = await connect({ servers: plain.url });
      conns.push(c);
      const r = new Replica(c, 'settings_none', { startWaitMs: 10_000 });
      stores.push(r.store);
      const t0 = Date.now();
      expect(await r.store.start()).to.equal(false);
      let err: unknown;
      try { await r.store.putStrategy(set('p2c')); } catch (e) { err = e; }
      // Well under the 10 s start wait plus the 2 s write budget of this replica.
      expect(Date.now() - t0).to.be.below(5000);
      expect(err).to.have.property('code', 'UNAVAILABLE');
      expect((err as { details?: { reason?: string } }).details?.reason).to.equal('no_jetstream');
    } finally {
      await plain.stop();
    }
  });

  it('a watch whose consumer stopped delivering is restarted by the check (entries in the stream it has not delivered, none delivered since)', async () => {
    const bucket = `settings_${process.pid}_${n++}`;
    const [a, , admin] = await replicas(bucket, { checkMs: 300 });
    await a.store.putStrategy(set('p2c'));
    await until('a to apply p2c', () => a.strategy === 'p2c', 10_000);
    // Stall a's watch: remove its consumer behind its back.
    const jsm = await admin.jetstreamManager();
    const consumers = await jsm.consumers.list(`KV_${bucket}`).next();
    expect(consumers.length).to.be.greaterThan(0);
    for (const c of consumers) await jsm.consumers.delete(`KV_${bucket}`, c.name);
    // Another writer (as another replica would) sets a value.
    const kv = await admin.jetstream().views.kv(bucket);
    await kv.put('strategy', new TextEncoder().encode(JSON.stringify({ strategy: 'round_robin' })));
    // Two checks (0.3 s apart) see it behind and idle; nats.js alone would take two missed 5 s heartbeats.
    // Assert the mechanism, not a deadline: the check restarted the watch, and that restart applied the write.
    const stalled = () => a.logs.some((l) => l.msg === 'settings watch restarting' && l.why === 'settings watch stalled behind the bucket');
    await until('the check to restart a\'s stalled watch', stalled, 20_000);
    await until('a to apply the other write', () => a.strategy === 'round_robin', 20_000);
  });
});
